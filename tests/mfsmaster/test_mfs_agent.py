"""monitor, stop, validation and ocf-tester for the installed ocf:pyha:mfsmaster."""
import json
import os
import signal
import subprocess

import pytest

from rigs.moosefs import FAKEBIN


@pytest.fixture
def running(lab, agent):
    cfg = lab.master_cfg("master")
    code, err = agent("start", config=cfg, create_filesystem="true")
    assert code == 0, err
    return cfg


def test_monitor_is_not_running_before_start_and_after_stop(lab, agent, running):
    assert agent("monitor", config=running)[0] == 0
    assert agent("start", config=running)[0] == 0          # already running: success
    assert agent("stop", config=running)[0] == 0
    assert agent("monitor", config=running)[0] == 7
    assert agent("stop", config=running)[0] == 0           # already stopped: success
    # a probe on a node where DATA_PATH is not even there (DRBD not mounted)
    assert agent("monitor", config=lab.master_cfg("elsewhere"))[0] == 7


def test_monitor_fails_when_the_master_holds_its_lock_but_does_not_answer(lab, agent, running):
    pids = lab.master_pids(lab.root / "master")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        code, err = agent("monitor", config=running, timeout=5)
        assert code == 1 and "does not answer" in err, err
        # stop escalates to SIGKILL within its timeout and waits for the lock
        code, err = agent("stop", config=running, timeout=12)
        assert code == 0, err
        assert "SIGKILL" in err
        assert not lab.master_pids(lab.root / "master")
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert agent("monitor", config=running)[0] == 7


def test_a_busy_filesystem_is_recorded_once_a_minute_not_at_every_monitor(lab, agent, running,
                                                                           tmp_path):
    """Issue 13.9: the version grows between any two monitors of a busy filesystem, and
    every monitor forked crm_attribute to record it. Now the record is rewritten at most
    once a minute while the master runs (start and stop always write it), never lower."""
    log = tmp_path / "calls"
    counting = tmp_path / "bin"
    counting.mkdir()
    (counting / "crm_attribute").write_text(
        f'#!/bin/sh\necho "$*" >> {log}\nexec {FAKEBIN}/crm_attribute "$@"\n')
    (counting / "crm_attribute").chmod(0o755)
    mnt = lab.mount()
    # the first monitor may record the filesystem's id, which a new filesystem's start
    # does not know yet (a different id is always written)
    assert agent("monitor", config=running, interval=10000)[0] == 0
    recorded = int(agent.recorded().split(":")[1])
    for round in range(3):
        os.mkdir(mnt / f"busy{round}")
        assert lab.master_info()["metaversion"] > recorded
        assert agent("monitor", config=running, interval=10000, path_first=counting)[0] == 0
    assert not log.exists()                                  # no fork: written < 60 s ago
    cache = agent.state / "mfsmaster" / "mfs.recorded"
    os.utime(cache, (cache.stat().st_mtime - 61,) * 2)
    assert agent("monitor", config=running, interval=10000, path_first=counting)[0] == 0
    assert len(log.read_text().splitlines()) == 1
    assert int(agent.recorded().split(":")[1]) == lab.master_info()["metaversion"]


def test_deeper_monitor_counts_chunkservers(lab, agent, running):
    assert agent("monitor", config=running, check_level=10, min_chunkservers=0)[0] == 0
    # Right after start the chunkservers may not have found the new master yet.
    code, err = agent("monitor", config=running, check_level=10)
    assert code == 0 and "within chunkserver_grace" in err, err
    code, err = agent("monitor", config=running, check_level=10, chunkserver_grace=0)
    assert code == 1 and "0 chunkserver(s) connected" in err, err
    lab.start_chunkserver(1)
    lab.wait_ready(1)
    assert agent("monitor", config=running, check_level=10)[0] == 0
    assert agent("monitor", config=running, check_level=20)[0] == 0


def test_validate_reports_configuration_errors(lab, agent):
    assert agent("validate-all", config=lab.root / "missing.cfg")[0] == 6
    assert agent("stop", config=lab.root / "missing.cfg")[0] == 0
    assert agent("validate-all", config="relative.cfg")[0] == 6
    cfg = lab.master_cfg("master")
    assert agent("validate-all", config=cfg)[0] == 0
    assert agent("validate-all", config=cfg, restore="sometimes")[0] == 6
    assert agent("validate-all", config=cfg, mfsmaster="/nonexistent/mfsmaster")[0] == 5
    bad_user = lab.master_cfg("baduser", WORKING_USER="pyha-mfs-nobody")
    assert agent("validate-all", config=bad_user)[0] == 6


def test_ocf_tester_passes_for_the_installed_agent(lab, agent):
    result = agent.ocf_tester(lab.master_cfg("master"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed all tests" in result.stdout


def test_a_full_disk_that_stops_the_changelog_fails_the_monitor(lab, agent, tmp_path):
    """Issue 13.8: on a full DATA_PATH the changelog stops growing while the master serves
    newer versions from memory (all lost in a crash), and monitor said all was well."""
    data = lab.data_dir("small")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=755", "tmpfs", str(data)],
                   check=True)
    try:
        os.chown(data, *lab_ids())
        cfg = lab.master_cfg("small")
        code, err = agent("start", config=cfg, create_filesystem="true")
        assert code == 0, err
        mnt = lab.mount()
        os.mkdir(mnt / "before")
        assert agent("monitor", config=cfg, interval=10000)[0] == 0
        subprocess.run(["dd", "if=/dev/zero", f"of={data}/filler", "bs=64k"],
                       capture_output=True)                     # fills it: ENOSPC
        for round in range(2):              # (the changelog's last page takes ~40 lines)
            for index in range(150):
                os.mkdir(mnt / f"full{round}-{index}")
            code, err = agent("monitor", config=cfg, interval=10000)
        assert code == 1 and "changelog stopped" in err and "KiB free" in err, err
        os.unlink(data / "filler")
    finally:
        lab.kill_master(data)
        subprocess.run(["umount", "-l", str(data)], check=False)


def lab_ids():
    import pwd
    user = pwd.getpwnam("mfs")
    return user.pw_uid, user.pw_gid


def test_monitor_records_the_masters_connections_for_the_node_taking_over(lab, agent, running):
    """What a failover leaves dangling: the connections of clients and metaloggers (and
    chunkservers) to the master's ports, recorded in DATA_PATH (it moves with the service)
    from /proc/net/tcp, rewritten only when they changed; the next start tickles them."""
    lab.mount()
    lab.start_metalogger()
    recorded = lab.root / "master" / "pyha-connections"
    lab.wait_for(lambda: agent("monitor", config=running)[0] == 0 and recorded.exists()
                 and {line.split()[1] for line in recorded.read_text().splitlines()}
                 == {"9419", "9421"}, "the client and the metalogger recorded")
    assert all(line.split()[0] == lab.address for line in recorded.read_text().splitlines())
    written = recorded.stat().st_mtime_ns
    assert agent("monitor", config=running)[0] == 0
    assert recorded.stat().st_mtime_ns == written                # unchanged: not rewritten
    assert agent("stop", config=running)[0] == 0
    code, err = agent("start", config=running)
    assert code == 0 and "tickling the previous master's connections" in err, err


def test_a_master_whose_data_path_stayed_behind_tickles_the_connections_the_cluster_kept(
        lab, agent, running):
    """Each node restoring from its own metalogger (mfs.sh STORAGE=metalogger): DATA_PATH
    does not move, so its pyha-connections is this node's own, old list. Monitor also copies
    the list into a crm_config attribute (a CIB write only when it changed), and the next
    master, on another DATA_PATH, tickles what that copy names."""
    lab.mount()
    lab.start_metalogger()

    def shared():
        store = json.loads(agent.cib.read_text()) if agent.cib.exists() else {}
        return store.get("crm_config//mfs-connections") or ""
    lab.wait_for(lambda: agent("monitor", config=running)[0] == 0
                 and {e.split()[1] for e in shared().split(";") if e} == {"9419", "9421"},
                 "the client and the metalogger copied into the cluster")
    value = shared()
    assert all(e.split()[0] == lab.address for e in value.split(";"))
    assert value.index(" 9419 ") < value.index(" 9421 ")   # the servers' first
    cib_written = agent.cib.stat().st_mtime_ns
    assert agent("monitor", config=running)[0] == 0
    assert agent.cib.stat().st_mtime_ns == cib_written      # unchanged: no CIB write
    assert agent("stop", config=running)[0] == 0

    elsewhere = lab.master_cfg("elsewhere")   # the other node's DATA_PATH: no list of its own
    code, err = agent("start", config=elsewhere, metadata_sources=lab.root / "master")
    assert code == 0 and "tickling the previous master's connections" in err, err
    assert not (lab.root / "elsewhere" / "pyha-connections").exists()
    tickled = (agent.state / "mfsmaster" / "mfs.tickle").read_text().splitlines()
    assert sorted(tickled) == sorted(value.split(";"))
    assert agent("stop", config=elsewhere)[0] == 0


def test_a_cib_that_refuses_the_connections_copy_fails_no_monitor_and_gets_it_later(
        lab, agent, running, tmp_path):
    """The copy only saves seconds: a CIB that refuses it (exit 102, as Pacemaker's
    crm_attribute without a CIB) fails no monitor, and the next monitor with the CIB back
    writes it (nothing remembered as written that was not)."""
    refusing = tmp_path / "bin"
    refusing.mkdir()
    (refusing / "crm_attribute").write_text(
        '#!/bin/sh\ncase " $* " in *" --update "*) exit 102;; esac\n'
        f'exec {FAKEBIN}/crm_attribute "$@"\n')
    (refusing / "crm_attribute").chmod(0o755)
    lab.mount()
    recorded = lab.root / "master" / "pyha-connections"
    lab.wait_for(lambda: agent("monitor", config=running, path_first=refusing)[0] == 0
                 and recorded.exists() and " 9421 " in recorded.read_text(),
                 "the client recorded in DATA_PATH")

    def shared():
        return json.loads(agent.cib.read_text()).get("crm_config//mfs-connections") or ""
    assert " 9421 " not in shared()
    assert agent("monitor", config=running)[0] == 0
    assert " 9421 " in shared()
