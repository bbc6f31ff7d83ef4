"""HA MooseFS master on the kernel's DRBD (VM backend, pcs-examples/mfs.sh STORAGE=drbd):
chunkservers and a FUSE client on the client VM reach the master only through the
floating address; a power loss of the master's node moves it with every file the client
had written and synced (read back through the client), and the node resyncs and rejoins.

On real kernels a power loss takes the master's page cache with it: the lab sets
CHANGELOG_SAVE_MODE = 2 (fsync per changelog write), without which a file synced just
before the power loss was lost (measured here)."""
import pytest

from lab.scenarios import VM_FAILOVER_TIMEOUT_S, run_scenario, table
from lab.stacks import MfsDrbdStack

pytestmark = pytest.mark.lab


def test_power_loss_moves_the_master_with_every_file_the_client_synced(vm_lab):
    stack = MfsDrbdStack()
    cluster = vm_lab(stack)
    config = cluster.nodes[0].run(["cat", "/etc/mfs/mfsmaster.cfg"]).stdout
    assert "CHANGELOG_SAVE_MODE = 2" in config
    result = run_scenario(cluster, stack, "crash", timeout=VM_FAILOVER_TIMEOUT_S)
    print("\n" + table([result]))
    assert result.new_node != result.failed_node
    # run_scenario read every file back through the client and waited for the failed
    # node to rejoin Unpromoted with UpToDate data; once more here.
    assert stack.drbd_state(cluster, result.failed_node) == ("Secondary", "UpToDate")
    client = cluster.clients[0]
    assert stack.vip in client.run(["findmnt", "-n", "-o", "SOURCE", stack.mnt]).stdout
