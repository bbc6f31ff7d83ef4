"""Files ocf:pyha:nfsexport creates: where, with which modes, no temporary files left
behind, and a symlink planted at every path it writes is not followed."""

import os

import pytest

from rigs.faults import assert_safe, created, tree


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
