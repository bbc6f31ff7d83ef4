"""ocf:pyha:mfsmaster under faults, with a real MooseFS in a network namespace:
killed mid-restore and mid-stop, missing and hanging tools, corrupted state."""

import os
import subprocess
import time

import pytest

from rigs.agents import exit_reason
from rigs.faults import hanging_tool, kill_all, kill_both_when_reached, masked, wait_for_file

pytestmark = pytest.mark.fault("mfsmaster")
DIRS = 20


def files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def dirs_served(lab):
    info = lab.wait_for(lab.master_info, "master answering")
    return info["dirs"] - 1  # without the root


def running_with_dirs(lab, agent):
    cfg = lab.master_cfg("master")
    result = agent("start", config=cfg, create_filesystem="true")
    assert result.returncode == 0, result.stderr
    mnt = lab.mount()
    for index in range(DIRS):
        os.mkdir(mnt / f"d{index}")
    assert agent("monitor", config=cfg).returncode == 0
    return cfg, lab.root / "master"


def kill_agent_at(lab, agent, action, stand_in, reached, tool="mfsmaster", **params):
    proc = subprocess.Popen(agent.argv(action), env=agent.env(dict(params, **{tool: stand_in})),
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kill_both_when_reached(proc, reached, timeout=30)


def contents(directory):
    """The bytes of every file under directory."""
    return {p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize("method,match", [("staged", "-a restore"), ("single-pass", "-a -c")])
def test_start_killed_mid_restore_keeps_originals_and_start_again_loses_nothing(
        mfs, tmp_path, record_property, method, match):
    lab, agent = mfs
    cfg, data = running_with_dirs(lab, agent)
    lab.kill_master(data)
    originals = files(data)
    reached = tmp_path / "reached"
    stand_in = hanging_tool(tmp_path, "mfsmaster", "/usr/sbin/mfsmaster", match, reached)
    kill_agent_at(lab, agent, "start", stand_in, reached, config=cfg, restore_method=method)
    staging = data / "pyha-restore.staging"
    if method == "staged":
        assert staging.is_dir()  # killed in the middle: the copy exists ...
        # ... and the originals are intact
        assert {n: b for n, b in files(data).items() if n in originals} == originals
    else:  # killed while mfsmaster -a start ran: every original's bytes are still there
        assert set(originals.values()) <= contents(data)
    result = agent("start", config=cfg, restore_method=method)
    assert result.returncode == 0, result.stderr
    lost = DIRS - dirs_served(lab)
    record_property("data_lost", lost)
    assert lost == 0
    assert not staging.exists()
    assert agent("monitor", config=cfg).returncode == 0


@pytest.mark.parametrize("when", ["while-the-master-exits", "while-recording"])
def test_stop_killed_midway_then_stop_again_and_nothing_lost(mfs, tmp_path, when,
                                                            record_property):
    lab, agent = mfs
    cfg, data = running_with_dirs(lab, agent)
    if when == "while-recording":   # the master is gone, mfsmetadump reads its version
        reached = tmp_path / "reached"
        stand_in = hanging_tool(tmp_path, "mfsmetadump", "/usr/sbin/mfsmetadump",
                                "metadata.mfs", reached)
        kill_agent_at(lab, agent, "stop", stand_in, reached, tool="mfsmetadump", config=cfg)
    else:   # SIGTERM sent, the master takes ~3 s to exit: the agent dies in between
        proc = subprocess.Popen(agent.argv("stop"), env=agent.env({"config": cfg}),
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(1.0)   # (if the agent was slower to send it, this is another midway)
        kill_all(proc.pid)
        proc.wait()
    result = agent("stop", config=cfg)
    assert result.returncode == 0, result.stderr
    assert agent("monitor", config=cfg).returncode == 7
    assert not lab.master_pids(data)
    result = agent("start", config=cfg)
    assert result.returncode == 0, result.stderr
    lost = DIRS - dirs_served(lab)
    record_property("data_lost", lost)
    assert lost == 0


@pytest.mark.parametrize("tool", ["/usr/sbin/mfsmaster", "/usr/sbin/mfsmetadump"])
def test_missing_tools_are_not_installed(mfs, not_a_program, tool):
    lab, agent = mfs
    cfg = lab.master_cfg("master")
    wrap = lambda argv: masked(argv, [tool], not_a_program)  # noqa: E731
    for action, expected in (("start", 5), ("validate-all", 5), ("stop", 0)):
        result = agent(action, wrap=wrap, config=cfg, create_filesystem="true")
        assert result.returncode == expected, (action, result.stderr)
        if expected:
            assert "not installed" in exit_reason(result)
    # a probe: "not running" or "cannot run here" (Pacemaker reads 5 on a probe as both)
    probe = agent("monitor", wrap=wrap, config=cfg)
    assert probe.returncode in (5, 7), probe.stderr


def crashed_new_filesystem(lab):
    """A DATA_PATH that needs a restore: only a metadata.mfs.back of a new filesystem."""
    cfg = lab.master_cfg("master")
    data = lab.root / "master"
    (data / "metadata.mfs.back").write_bytes(b"MFSM NEW")
    return cfg, data


def fake_metadata(lab):
    """A metadata.mfs whose version only mfsmetadump can tell."""
    cfg = lab.master_cfg("master")
    (lab.root / "master" / "metadata.mfs").write_bytes(b"MFSM 2.0" + b"\0" * 64)
    return cfg, lab.root / "master"


@pytest.mark.parametrize("setup,tool,match,method", [
    (crashed_new_filesystem, "mfsmaster", "-a restore", "staged"),
    (fake_metadata, "mfsmetadump", "metadata.mfs", "staged"),
    (crashed_new_filesystem, "mfsmaster", " start", "staged"),
    (crashed_new_filesystem, "mfsmaster", "-a -c", "single-pass"),
], ids=["restore", "metadump", "launch", "restoring-start"])
def test_a_hanging_tool_ends_start_within_its_timeout(mfs, tmp_path, setup, tool, match, method):
    lab, agent = mfs
    cfg, data = setup(lab)
    before = files(data)
    reached = tmp_path / "reached"
    stand_in = hanging_tool(tmp_path, tool, f"/usr/sbin/{tool}", match, reached)
    started = time.monotonic()
    result = agent("start", timeout=3, config=cfg, restore_method=method, **{tool: stand_in})
    elapsed = time.monotonic() - started
    kill_all(wait_for_file(reached))
    assert elapsed < 3.5, elapsed
    assert result.returncode == 1, result.stderr
    assert exit_reason(result) and "unexpectedly" not in result.stderr, result.stderr
    assert not (data / "pyha-restore.staging").exists()
    # Nothing installed, nothing half-done: a staged restore whose master did not start in
    # time is undone too (issue 13.7; it stayed installed before).
    assert files(data) == before


@pytest.mark.parametrize("how", ["garbage", "empty", "directory", "symlink"])
def test_corrupted_state_files_are_recovered(mfs, tmp_path, how):
    lab, agent = mfs
    cfg = lab.master_cfg("master")
    state = agent.state / "mfsmaster"
    state.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("ABC:7")
    for name in ("mfs.recorded", "mfs.metaid"):
        path = state / name
        if how == "garbage":
            path.write_bytes(b"\xff\xfe:zz:" * 30)
        elif how == "empty":
            path.write_text("")
        elif how == "directory":
            path.mkdir()
        else:
            os.symlink(victim, path)
    codes = []
    for action in ("monitor", "start", "monitor", "stop", "monitor"):
        result = agent(action, config=cfg, create_filesystem="true")
        assert "unexpectedly" not in result.stderr and "Traceback" not in result.stderr, \
            (action, result.stderr)
        codes.append(result.returncode)
    assert codes == [7, 0, 0, 0, 7]
    assert victim.read_text() == "ABC:7"
