"""Fixtures of the lab tests: a real Pacemaker cluster in namespaces.

The tests need root, corosync, pacemaker and pcs; they are marked `lab` and
skip (with the reason) where those are missing.  A lab left over from an
interrupted run is removed first; every lab made here is removed afterwards.
"""
import os
import shutil
from pathlib import Path

import pytest

from lab import LAB_DIR
from lab.cluster import Cluster, build, leftovers

TOOLS = ("corosync", "pacemakerd", "pcs", "crm_mon", "nsenter", "unshare", "ip")


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs the namespaced multi-node cluster (root)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


def _missing():
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [t for t in TOOLS if not shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    return f"missing: {' '.join(missing)}" if missing else None


def wipe():
    existing = Cluster.load(LAB_DIR)
    if existing:
        existing.destroy()
    leftovers(LAB_DIR)
    Cluster(3, LAB_DIR).destroy()


@pytest.fixture(scope="module")
def lab_factory():
    """make(n_nodes, **kw) -> a running, fenced cluster; removed at the end."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    made = []

    def make(n_nodes=2, stack=None, fencing=True, **kw):
        wipe()
        cluster = Cluster(n_nodes, LAB_DIR, **kw)
        made.append(cluster)
        return build(cluster, stack, fencing)

    yield make
    for cluster in made:
        cluster.destroy()
    wipe()
