"""Fixtures of the real-kernel lab tests: clusters of qemu VMs running Debian's kernel
(real DRBD 8.4, nfsd, the kernel NFS client), see lab/vm.py and rigs/vm/.

They skip, printing why, only where qemu cannot start a VM at all.  Each module gets
its own lab in PYHA_VM_LAB_DIR (default /var/lib/pyha-vmlab-test, apart from the
namespace lab's directory), removed afterwards.
"""
import os
from pathlib import Path

import pytest

from lab.cluster import build
from lab.vm import VmCluster, vm_leftovers
from rigs.vm.machine import vm_unavailable

LAB_DIR = Path(os.environ.get("PYHA_VM_LAB_DIR", "/var/lib/pyha-vmlab-test"))

# Tests marked vm_full run only with PYHA_VM_FULL=1: under emulation each costs minutes, and
# CI's hour holds the scenarios that prove the most (power loss with writing, locking
# clients; a planned move; DRBD's fencing and split brain); the others (link cut and
# kill -9 of rpc.statd on the NFS stack, the DRBD stack's own power loss, which the NFS
# stack's covers, and stop_outdates_secondary) run in the full real-kernel run before an
# issue about them is closed.
FULL = os.environ.get("PYHA_VM_FULL") == "1"


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    skip = pytest.mark.skip(reason="part of the full real-kernel run: PYHA_VM_FULL=1")
    for item in items:
        if item.get_closest_marker("vm_full"):
            item.add_marker(skip)


def wipe():
    existing = VmCluster.load(LAB_DIR)
    if existing:
        existing.destroy()
    vm_leftovers(LAB_DIR)


@pytest.fixture(scope="module")
def vm_lab():
    """make(stack=None, nodes=2) -> a running VM cluster (with the stack's client VMs) with fencing (and the stack
    configured); removed at the end of the module."""
    reason = vm_unavailable()
    if reason:
        print(f"\nVM lab tests skipped: {reason}")
        pytest.skip(reason)
    made = []

    def make(stack=None, nodes=2):
        wipe()
        cluster = VmCluster(nodes, LAB_DIR,
                            clients=stack.vm_clients if stack else ("client",))
        made.append(cluster)
        return build(cluster, stack)

    yield make
    for cluster in made:
        cluster.destroy()
    wipe()
