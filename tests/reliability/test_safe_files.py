"""Files the agents create: where, with which modes, no temporary files left
behind, and a symlink planted at every path an agent writes is not followed."""

import os
import stat

import pytest

from support import exit_reason


def tree(root):
    """{relative path: (kind, mode)} of everything under root (symlinks not followed)."""
    found = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
            found[os.path.relpath(path, root)] = (kind, stat.S_IMODE(st.st_mode))
    return found


def created(before, after):
    return {path: value for path, value in after.items() if path not in before}


def assert_safe(files):
    for path, (kind, mode) in files.items():
        assert ".tmp" not in os.path.basename(path), f"temporary file left: {path}"
        assert not mode & 0o002, f"{path} is world-writable ({mode:o})"
        assert kind != "l", f"{path} is a symlink"


# --- nfsexport ------------------------------------------------------------------
@pytest.mark.fault("nfsexport")
@pytest.mark.parametrize("rmtab_mode", [0o644, 0o600])
def test_nfsexport_files_and_modes(make_node, tmp_path, rmtab_mode):
    node = make_node()
    export = tmp_path / "export"
    export.mkdir()
    (node.nfs / "rmtab").chmod(rmtab_mode)
    params = {"clientspec": "10.213.0.0/24", "directory": str(export), "fsid": "3"}
    roots = {"rsctmp": node.rsctmp, "nfs": node.nfs, "export": export}
    before = {name: tree(root) for name, root in roots.items()}
    assert node.agent("nfsexport", "start", params).returncode == 0
    node.write("rmtab", f"10.213.0.7:{export}:0x00000001\n")
    (node.nfs / "rmtab").chmod(rmtab_mode)
    assert node.agent("nfsexport", "monitor", params).returncode == 0
    new = {name: created(before[name], tree(root)) for name, root in roots.items()}
    assert set(new["rsctmp"]) == {"nfsexport", "nfsexport/export1"}
    assert new["export"] == {".rmtab": ("f", rmtab_mode)}  # never wider than rmtab
    assert set(new["nfs"]) <= {"etab", "xtab", ".etab.lock", ".xtab.lock", ".rmtab.lock",
                                "export-lock"}
    for files in new.values():
        assert_safe(files)
    assert node.agent("nfsexport", "stop", params).returncode == 0
    assert created(before["rsctmp"], tree(node.rsctmp)) == {"nfsexport": ("d", 0o755)}


@pytest.mark.fault("nfsexport")
def test_nfsexport_symlinks_at_written_paths_are_not_followed(make_node, tmp_path):
    node = make_node()
    export = tmp_path / "export"
    export.mkdir()
    params = {"clientspec": "10.213.0.0/24", "directory": str(export), "fsid": "3"}
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    state = node.rsctmp / "nfsexport"
    state.mkdir()
    os.symlink(victim, state / "export1")
    os.symlink(victim, export / ".rmtab")
    assert node.agent("nfsexport", "start", params).returncode == 0
    node.write("rmtab", f"10.213.0.7:{export}:0x00000001\n")
    assert node.agent("nfsexport", "monitor", params).returncode == 0
    assert node.agent("nfsexport", "stop", params).returncode == 0
    assert victim.read_text() == "keep\n"
    assert not (export / ".rmtab").is_symlink()


# --- nfsnotify ------------------------------------------------------------------
@pytest.mark.fault("nfsnotify")
def test_nfsnotify_files_modes_and_planted_symlinks(statd_sandbox, tmp_path):
    statd = statd_sandbox
    statd.add_client("127.0.0.2")
    params = {"source_host": "10.213.0.241,10.213.0.242"}
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    (victim_dir / "keep").write_text("keep\n")
    # every path the agent writes in the statd directory
    for name in ("nfsnotify.bu", "nfsnotify.bu.notify1", "nfsnotify.bu.notify1.0",
                 "nfsnotify.bu.notify1.1"):
        os.symlink(victim_dir, statd.nfs / name)
    before = {"nfs": tree(statd.nfs), "rsctmp": {}}
    result = statd.agent("start", params)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(victim_dir)) == ["keep"]
    assert (victim_dir / "keep").read_text() == "keep\n"
    new_nfs = created(before["nfs"], tree(statd.nfs))
    statd_uid = os.stat(statd.nfs / "sm").st_uid
    for path, (kind, mode) in new_nfs.items():
        assert path.startswith("nfsnotify.bu"), path
        if kind == "d":  # sm-notify runs as the owner of the directory it is given
            assert os.lstat(statd.nfs / path).st_uid == statd_uid, path
    assert_safe(new_nfs)
    written = ("nfsnotify.bu", "nfsnotify.bu.notify1", "nfsnotify.bu.notify1.1")
    assert_safe({p: v for p, v in tree(statd.nfs).items()
                 if p in written or p.startswith(tuple(w + "/" for w in written))})
    assert all((statd.nfs / name).is_dir() and not (statd.nfs / name).is_symlink()
               for name in written)  # the planted symlinks were replaced
    rsctmp = tree(statd.rsctmp)
    assert set(rsctmp) == {"nfsnotify", "nfsnotify/notify1.statd-pid",
                           "nfsnotify/statd-dir.lock"}
    assert rsctmp["nfsnotify/statd-dir.lock"][1] == 0o600
    assert_safe(rsctmp)
    # a symlink planted at the state files is not followed either
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    for name in ("notify1.statd-pid", "statd-dir.lock"):
        os.unlink(statd.rsctmp / "nfsnotify" / name)
        os.symlink(victim, statd.rsctmp / "nfsnotify" / name)
    for action in ("start", "monitor", "stop"):
        result = statd.agent(action, params, OCF_RESKEY_CRM_meta_interval=30000)
        assert result.returncode in (0, 7), result.stderr
    assert victim.read_text() == "keep\n"


# --- drbd -----------------------------------------------------------------------
@pytest.mark.fault("drbd")
def test_drbd_files_and_modes(drbd_lab):
    lab = drbd_lab
    lab.init("r0")
    rsctmp = os.path.join(lab.base, "rsc-node1")
    for action in ("start", "monitor", "promote", "monitor"):
        assert lab.agent("node1", action).returncode in (0, 8, 190, 191)  # no peer: degraded
    files = tree(rsctmp)
    assert set(files) == {"drbd", "drbd/p_drbd_r0.state"}
    assert files["drbd/p_drbd_r0.state"] == ("f", 0o644)
    assert_safe(files)
    assert lab.agent("node1", "demote").returncode == 0
    assert lab.agent("node1", "stop").returncode == 0
    assert set(tree(rsctmp)) == {"drbd"}


# --- mfsmaster --------------------------------------------------------------------
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
    if method == "staged":  # the crashed files make way for the restored metadata.mfs
        assert len(replaced) == 1 and new[replaced[0]] == ("d", 0o750)
    else:  # DATA_PATH's own, intact files are used where they are
        assert replaced == []
    assert_safe(new)
    state = tree(agent.state)
    assert set(state) == {"mfsmaster", "mfsmaster/mfs.metaid", "mfsmaster/mfs.recorded"}
    assert_safe(state)
    assert exit_reason(result) is None
