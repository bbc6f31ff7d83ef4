"""HA MooseFS master on DRBD (pcs-examples/mfs.sh STORAGE=drbd, unmodified):
chunkservers and a FUSE client on a third machine reach the master only
through the VIP; every failure moves the master with every file (checksums
read back through the client) and the failed node rejoins UpToDate."""
import pytest

from lab.scenarios import run_scenario, table
from lab.stacks import MfsDrbdStack

pytestmark = pytest.mark.lab

RESULTS = []


@pytest.fixture(scope="module")
def mfs(lab_factory):
    stack = MfsDrbdStack()
    cluster = lab_factory(2, stack=stack)
    yield cluster, stack
    print("\n" + table(RESULTS))


@pytest.mark.parametrize("scenario", ["standby", "kill9", "crash", "linkdown"])
def test_failure_moves_the_master_with_every_file(mfs, scenario):
    cluster, stack = mfs
    result = run_scenario(cluster, stack, scenario)
    RESULTS.append(result)
    assert result.new_node != result.failed_node
    # run_scenario read every file written so far back through the client
    # (checksums) and waited for the failed node to rejoin; once more here.
    assert stack.drbd_state(cluster, result.failed_node) == ("Secondary", "UpToDate")
    assert result.failed_node in cluster.where("drbd-r0", "Unpromoted")
    # The client only ever knew the VIP.
    client = cluster.clients[0]
    mounts = client.run(["findmnt", "-n", "-o", "SOURCE", stack.mnt]).stdout
    assert stack.vip in mounts
