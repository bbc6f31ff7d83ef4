"""The published resource-agents recipe (lab/nfs-resource-agents.sh: linbit:drbd,
Filesystem, heartbeat nfsserver with nfs_shared_infodir, exportfs, IPaddr2, heartbeat
nfsnotify) under the same power loss as pcs-examples/nfs-drbd.sh, with the same clients
and the same grace period: the side-by-side figures in README come from this run. What
it must do whatever the locks: every acknowledged write is on the new node."""
import pytest

from lab.scenarios import CLIENT_TABLE_HEADER, run_client_scenario
from lab.stacks import NfsResourceAgentsStack

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def recipe(vm_lab):
    stack = NfsResourceAgentsStack()
    return vm_lab(stack), stack


def test_the_recipe_under_the_same_power_loss_keeps_data_and_reports_its_locks(recipe):
    cluster, stack = recipe
    seen = run_client_scenario(cluster, stack, "crash")
    print("\n" + CLIENT_TABLE_HEADER + "\n" + "\n".join(seen.rows()))
    print(seen.client_log)
    for app in seen.apps:
        assert app.lost == [], app
