"""fast_stop on a real MooseFS: a stopping mfsmaster runs on for 2-3 s until its data writer
is told to end (bgsaver.c); stop ends the writer once the changelog holds every change, and
nothing is lost: the master saves metadata.mfs covering the changelog and starts again
with every file."""
import os
import signal
import subprocess
import threading

from ocf_agents.moosefs import data_writer_of, last_change_written

ENDED = "ended mfsmaster's data writer"


def metadata_version(path):
    out = subprocess.run(["mfsmetadump", str(path)], capture_output=True, text=True,
                         check=True).stdout
    header = next(line for line in out.splitlines() if line.startswith("# version:"))
    return int(header.split()[2])


def master_pid(lab):
    return lab.master_pids(lab.root / "master")[0]


def test_stop_ends_the_exit_delay_once_the_changelog_holds_every_change(cluster, agent):
    lab, parts = cluster
    written = lab.write_files(parts["mnt"], 30)
    assert data_writer_of(master_pid(lab)) is not None     # MooseFS forks one: found by name
    code, err = agent("stop", config=parts["cfg"])
    assert code == 0, err
    assert ENDED in err, err
    assert "connection lost with background data writer" in lab.log("master")
    data = lab.root / "master"
    # the metadata saved at exit covers the changelog exactly: nothing is only in one of them
    assert metadata_version(data / "metadata.mfs") == last_change_written(str(data)) + 1
    code, err = agent("start", config=parts["cfg"])
    assert code == 0, err
    assert "no restore needed" in err, err
    assert lab.checksums(parts["mnt"]) == written
    assert agent("stop", config=parts["cfg"])[0] == 0


def test_without_fast_stop_the_master_exits_on_its_own(cluster, agent):
    lab, parts = cluster
    lab.write_files(parts["mnt"], 5)
    code, err = agent("stop", config=parts["cfg"], fast_stop="false")
    assert code == 0, err
    assert ENDED not in err, err
    assert "connection lost with background data writer" not in lab.log("master")


def test_a_changelog_behind_the_master_is_left_to_mooses_own_exit(cluster, agent):
    """The writer is frozen while a client makes a change: the change is in the master, not
    yet in the changelog. Stop must not end the writer then (the line would be lost); it
    waits for MooseFS's own exit, which writes it."""
    lab, parts = cluster
    lab.write_files(parts["mnt"], 5)
    writer = data_writer_of(master_pid(lab))
    os.kill(writer, signal.SIGSTOP)
    thaw = threading.Timer(2.0, os.kill, (writer, signal.SIGCONT))
    try:
        (parts["mnt"] / "made-while-frozen").mkdir()
        data = lab.root / "master"
        behind = last_change_written(str(data))
        thaw.start()
        code, err = agent("stop", config=parts["cfg"])
    finally:
        thaw.cancel()
        try:
            os.kill(writer, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert code == 0, err
    assert ENDED not in err, err
    assert f"the changelog ends at {behind}" in err, err
    assert "connection lost with background data writer" not in lab.log("master")
    # MooseFS's own exit wrote the change the frozen writer held
    assert last_change_written(str(data)) > behind
    assert metadata_version(data / "metadata.mfs") == last_change_written(str(data)) + 1
