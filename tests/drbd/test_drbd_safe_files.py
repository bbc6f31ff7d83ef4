"""Files ocf:pyha:drbd creates: where, with which modes, no temporary files left
behind, and a symlink planted at every path it writes is not followed."""

import os

import pytest

from rigs.faults import assert_safe, tree


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
