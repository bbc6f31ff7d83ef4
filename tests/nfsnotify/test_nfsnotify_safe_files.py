"""Files ocf:pyha:nfsnotify creates: where, with which modes, no temporary files left
behind, and a symlink planted at every path it writes is not followed."""

import os

import pytest

from rigs.faults import assert_safe, created, tree


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
