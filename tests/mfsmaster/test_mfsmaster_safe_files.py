"""Files ocf:pyha:mfsmaster creates: where, with which modes, no temporary files left
behind, and a symlink planted at every path it writes is not followed."""

import os

import pytest

from rigs.agents import exit_reason
from rigs.faults import assert_safe, created, tree


@pytest.mark.fault("mfsmaster")
@pytest.mark.parametrize("method", ["single-pass", "staged"])
def test_mfsmaster_files_modes_and_planted_symlinks(mfs, tmp_path, method):
    lab, agent = mfs
    cfg = lab.master_cfg("master")
    data = lab.root / "master"
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    (victim_dir / "keep").write_text("keep\n")
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    # a new filesystem is copied in through metadata.mfs.pyha-new
    os.symlink(victim, data / "metadata.mfs.pyha-new")
    result = agent("start", config=cfg, create_filesystem="true")
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep\n"
    assert agent("monitor", config=cfg).returncode == 0
    lab.kill_master(data)
    # a crash: the restore stages in pyha-restore.staging
    os.symlink(victim_dir, data / "pyha-restore.staging")
    before = tree(data)
    result = agent("start", config=cfg, restore_method=method)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(victim_dir)) == ["keep"]
    new = created(before, tree(data))
    assert "pyha-restore.staging" not in tree(data)  # cleaned up
    replaced = [p for p in new if p.startswith("pyha-replaced.") and "/" not in p]
    # staged: the crashed files make way for the restored metadata.mfs; single-pass: the
    # changelog whose changes the new changelog.1.mfs holds is kept aside
    assert len(replaced) == 1 and new[replaced[0]] == ("d", 0o750)
    assert_safe(new)
    state = tree(agent.state)
    # the configuration the master runs from: once its clients are let in, a symlink to the
    # user's file (mfsgate.py), the one symlink the agent makes; never written through
    gate_config = "mfsmaster/mfs.mfsmaster.cfg"
    assert state.pop(gate_config)[0] == "l"
    assert os.readlink(agent.state / gate_config) == str(cfg)
    assert set(state) == {"mfsmaster", "mfsmaster/mfs.metaid", "mfsmaster/mfs.recorded"}
    assert_safe(state)
    assert exit_reason(result) is None
