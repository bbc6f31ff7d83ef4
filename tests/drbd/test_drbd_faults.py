"""ocf:pyha:drbd under faults: killed mid-action, missing or hanging tools,
corrupted state files. Runs against the DRBD emulator (rigs/drbd_emulator)."""

import os
import subprocess
import time

import pytest

from rigs.agents import exit_reason
from rigs.drbd import EMU_BIN
from rigs.faults import hanging_tool, kill_all, kill_both_when_reached, masked

pytestmark = pytest.mark.fault("drbd")
SCORE = "master-p_drbd_r0"


def start_pair(lab):
    lab.init("r0")
    for node in ("node1", "node2"):
        result = lab.agent(node, "start")
        assert result.returncode == 0, result.stderr
    assert [lab.agent(n, "monitor").returncode for n in ("node1", "node2")] == [0, 0]


def memory_file(lab, node):
    return os.path.join(lab.base, f"rsc-{node}", "drbd", "p_drbd_r0.state")


def role(lab, node):
    state = lab.state_of("r0")
    text = repr(state)
    assert node in text
    return lab.run(node, "drbdadm", "role", "r0").stdout.strip().split("/")[0]


def killed_midway(lab, node, action, tool, match, before, tmp_path):
    """Run action on node with tool hanging at match; kill -9 the agent (and the
    stand-in) once the stand-in is reached."""
    hang_dir = tmp_path / "hang"
    hang_dir.mkdir(exist_ok=True)
    reached = tmp_path / "reached"
    hanging_tool(hang_dir, tool, EMU_BIN / tool, match, reached, before=before)
    env = lab.agent_env(node)
    env["PATH"] = f"{hang_dir}:{env['PATH']}"
    agent = subprocess.Popen([lab.agent_path, action], env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_both_when_reached(agent, reached)
    (hang_dir / tool).unlink()


def assert_memory_is_consistent(lab, node):
    path = memory_file(lab, node)
    if os.path.exists(path):
        for line in open(path).read().splitlines():
            assert "=" in line, line


def test_start_killed_after_adjust_then_start_again_completes(drbd_lab, tmp_path):
    lab = drbd_lab
    lab.init("r0")
    assert lab.agent("node2", "start").returncode == 0
    killed_midway(lab, "node1", "start", "drbdsetup", "events2", True, tmp_path)
    result = lab.agent("node1", "start")
    assert result.returncode == 0, result.stderr
    assert [lab.agent(n, "monitor").returncode for n in ("node1", "node2")] == [0, 0]
    assert lab.attribute("node1", SCORE) == "10000"
    assert_memory_is_consistent(lab, "node1")


@pytest.mark.parametrize("before", [True, False], ids=["before-primary", "after-primary"])
def test_promote_killed_midway_then_promote_again_completes(drbd_lab, tmp_path, before):
    lab = drbd_lab
    start_pair(lab)
    killed_midway(lab, "node1", "promote", "drbdadm", " primary ", before, tmp_path)
    result = lab.agent("node1", "promote")
    assert result.returncode == 0, result.stderr
    assert lab.agent("node1", "monitor").returncode == 8
    assert lab.agent("node2", "monitor").returncode == 0
    assert lab.attribute("node1", SCORE) == "10000"
    assert_memory_is_consistent(lab, "node1")


def test_demote_killed_after_secondary_then_demote_again_completes(drbd_lab, tmp_path):
    lab = drbd_lab
    start_pair(lab)
    assert lab.agent("node1", "promote").returncode == 0
    killed_midway(lab, "node1", "demote", "drbdadm", " secondary ", False, tmp_path)
    result = lab.agent("node1", "demote")
    assert result.returncode == 0, result.stderr
    assert lab.agent("node1", "monitor").returncode == 0
    assert lab.agent("node1", "promote").returncode == 0  # still promotable
    assert lab.agent("node1", "monitor").returncode == 8
    assert_memory_is_consistent(lab, "node1")


@pytest.mark.parametrize("promoted,match", [(False, " down "), (True, " secondary ")],
                         ids=["secondary-before-down", "primary-after-secondary"])
def test_stop_killed_midway_then_stop_again_completes(drbd_lab, tmp_path, promoted, match):
    lab = drbd_lab
    start_pair(lab)
    if promoted:
        assert lab.agent("node1", "promote").returncode == 0
    killed_midway(lab, "node1", "stop", "drbdadm", match, not promoted, tmp_path)
    result = lab.agent("node1", "stop")
    assert result.returncode == 0, result.stderr
    assert lab.agent("node1", "monitor").returncode == 7
    assert lab.attribute("node1", SCORE) is None
    assert not os.path.exists(memory_file(lab, "node1"))
    # and it comes back: nothing half-done stands in the way
    assert lab.agent("node1", "start").returncode == 0
    assert lab.agent("node1", "monitor").returncode == 0


def test_missing_drbd_utils_is_not_installed(drbd_lab, not_a_program):
    lab = drbd_lab
    lab.init("r0")
    env = lab.agent_env("node1")
    env["PATH"] = f"{lab.fake_bin}:/usr/sbin:/usr/bin:/sbin:/bin"
    tools = ["/usr/sbin/drbdadm", "/usr/sbin/drbdsetup"]
    for action, expected in (("start", 5), ("validate-all", 5), ("promote", 5), ("stop", 0)):
        result = subprocess.run(masked([lab.agent_path, action], tools, not_a_program),
                                env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == expected, (action, result.stderr)
        if expected:
            assert "drbdadm" in exit_reason(result), result.stderr
    env["OCF_RESKEY_CRM_meta_interval"] = "0"
    probe = subprocess.run(masked([lab.agent_path, "monitor"], tools, not_a_program),
                           env=env, capture_output=True, text=True, timeout=30)
    assert probe.returncode == 7, probe.stderr


# stop falls back to drbdsetup down when drbdadm fails (a hang included), so both hang
@pytest.mark.parametrize("action,tool,match,setup", [
    ("start", "drbdadm", " adjust ", "init"),
    ("monitor", "drbdsetup", "events2", "pair"),
    ("promote", "drbdadm", " primary ", "pair"),
    ("demote", "drbdadm", " secondary ", "promoted"),
    ("stop", "drbdadm+drbdsetup", " down ", "pair"),
])
def test_a_hanging_tool_ends_the_action_within_its_timeout(drbd_lab, tmp_path, action, tool,
                                                           match, setup):
    lab = drbd_lab
    if setup == "init":
        lab.init("r0")
    else:
        start_pair(lab)
    if setup == "promoted":
        assert lab.agent("node1", "promote").returncode == 0
    hang_dir = tmp_path / "hang"
    hang_dir.mkdir()
    reached = tmp_path / "reached"
    for name in tool.split("+"):
        hanging_tool(hang_dir, name, EMU_BIN / name, match, reached)
    env = lab.agent_env("node1", meta={"timeout": "3000", "interval": "10000"
                                       if action == "monitor" else "0"})
    env["PATH"] = f"{hang_dir}:{env['PATH']}"
    started = time.monotonic()
    result = subprocess.run([lab.agent_path, action], env=env, capture_output=True, text=True,
                            timeout=30)
    elapsed = time.monotonic() - started
    assert os.path.exists(reached)
    assert elapsed < 3.5, f"{action} took {elapsed:.1f} s"
    assert result.returncode not in (0, 7, 8), result.stderr
    assert exit_reason(result), result.stderr
    assert "unexpectedly" not in result.stderr
    kill_all(int(reached.read_text()))


CORRUPTIONS = ["garbage", "empty", "directory", "symlink", "bad-kernel"]


def corrupt(path, how, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("kernel=9.1.17\nscore=none\n")
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)
    if how == "garbage":
        with open(path, "wb") as f:
            f.write(b"\x00\xff=\n==kernel\n\xfe" * 100)
    elif how == "empty":
        open(path, "w").close()
    elif how == "directory":
        os.mkdir(path)
    elif how == "symlink":
        os.symlink(victim, path)
    elif how == "bad-kernel":
        with open(path, "w") as f:
            f.write("kernel=nine\nscore=10000\n")
    return victim


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupted_score_memory_is_recovered_or_reported(drbd_lab, tmp_path, how):
    lab = drbd_lab
    start_pair(lab)
    path = memory_file(lab, "node1")
    victim = corrupt(path, how, tmp_path)
    before = victim.read_text()
    results = {}
    for action in ("monitor", "promote", "monitor", "demote", "stop", "start", "monitor"):
        result = lab.agent("node1", action)
        assert "unexpectedly" not in result.stderr, (action, result.stderr)
        assert "Traceback" not in result.stderr
        if result.returncode not in (0, 7, 8):
            assert exit_reason(result), (action, result.stderr)
        results.setdefault(action, []).append(result.returncode)
    assert victim.read_text() == before  # a planted symlink is never followed
    if how != "directory":
        assert results == {"monitor": [0, 8, 0], "promote": [0], "demote": [0], "stop": [0],
                           "start": [0]}
