"""ocf:pyha:nfsexport faults not in test_nfsexport_faults.py: a hanging
exportfs, a missing exportfs for every action, corrupted state files, a
symlink planted at the rmtab lock."""

import os
import time

import pytest

from rigs.agents import exit_reason
from rigs.faults import hanging_tool, kill_all, wait_for_file

pytestmark = pytest.mark.fault("nfsexport")


@pytest.fixture
def export(tmp_path):
    directory = tmp_path / "export"
    directory.mkdir()
    return {"clientspec": "10.213.0.0/24", "directory": str(directory), "fsid": "5"}


@pytest.mark.parametrize("action,match", [("start", "10.213.0.0/24:"), ("stop", "-u")])
def test_a_hanging_exportfs_ends_the_action_within_its_timeout(make_node, export, tmp_path,
                                                               action, match):
    node = make_node()
    if action == "stop":
        assert node.agent("nfsexport", "start", export).returncode == 0
    reached = tmp_path / "reached"
    hanging_tool(node.bin, "exportfs", "/usr/sbin/exportfs", match, reached)
    started = time.monotonic()
    result = node.agent("nfsexport", action, export, OCF_RESKEY_CRM_meta_timeout=3000)
    elapsed = time.monotonic() - started
    kill_all(wait_for_file(reached))
    (node.bin / "exportfs").unlink()
    assert elapsed < 3.5, elapsed
    assert result.returncode == 1, result.stderr
    assert "timed out" in exit_reason(result)
    # nothing half-done: the action can be completed once the tool answers
    assert node.agent("nfsexport", action, export).returncode == 0
    assert node.agent("nfsexport", "monitor", export).returncode == \
        (0 if action == "start" else 7)


def test_missing_exportfs_for_every_action(make_node, export, not_a_program):
    node = make_node()
    node.extra_mounts.append((str(not_a_program), "/usr/sbin/exportfs"))
    for action, expected in (("start", 5), ("validate-all", 5), ("stop", 0)):
        result = node.agent("nfsexport", action, export)
        assert result.returncode == expected, (action, result.stderr)
        if expected:
            assert "exportfs is not installed" in exit_reason(result)
    assert node.agent("nfsexport", "monitor", export).returncode == 7


@pytest.mark.parametrize("how", ["garbage", "empty", "directory", "symlink"])
def test_corrupted_state_marker_is_recovered(make_node, export, tmp_path, how):
    node = make_node()
    state = node.rsctmp / "nfsexport"
    state.mkdir()
    marker = state / "export1"
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    if how == "garbage":
        marker.write_bytes(b"\xff\x00" * 100)
    elif how == "empty":
        marker.write_text("")
    elif how == "directory":
        marker.mkdir()
        (marker / "x").write_text("x")
    else:
        os.symlink(victim, marker)
    codes = []
    for action in ("monitor", "start", "monitor", "stop", "monitor"):
        result = node.agent("nfsexport", action, export)
        assert "unexpectedly" not in result.stderr and "Traceback" not in result.stderr
        codes.append(result.returncode)
    assert codes == [7, 0, 0, 0, 7]
    assert victim.read_text() == "keep\n"


def test_a_symlink_at_the_rmtab_lock_is_refused_with_a_reason(make_node, export, tmp_path):
    node = make_node()
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    os.symlink(victim, node.nfs / ".rmtab.lock")
    directory = export["directory"]
    (tmp_path / "export" / ".rmtab").write_text(f"10.213.0.9:{directory}:0x00000001\n")
    result = node.agent("nfsexport", "start", export)
    assert result.returncode == 1, result.stderr
    assert "is a symlink" in exit_reason(result)
    assert victim.read_text() == "keep\n"
    assert node.read("rmtab") == ""
