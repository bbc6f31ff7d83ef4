"""HA MooseFS master with pcs-examples/mfs.sh's default STORAGE=metalogger (unmodified):
DATA_PATH local on each node, a metalogger on every node following the master through
the VIP, the master restored from the local metalogger's files where it moves. Failures
in both directions, so every restore after the first is a round trip: the node taking
over holds its own older DATA_PATH and a metalogger that followed the other node (the
case mfshistory.py separates). Every file is read back through the client each time."""
import pytest

from lab.scenarios import run_scenario, table
from lab.stacks import MfsMetaloggerStack

pytestmark = pytest.mark.lab

RESULTS = []


@pytest.fixture(scope="module")
def mfs(lab_factory):
    stack = MfsMetaloggerStack()
    cluster = lab_factory(2, stack=stack)
    yield cluster, stack
    print("\n" + table(RESULTS))


@pytest.mark.parametrize("scenario", ["standby", "crash", "kill9", "crash"])
def test_the_master_moves_there_and_back_with_every_file(mfs, scenario):
    cluster, stack = mfs
    result = run_scenario(cluster, stack, scenario)
    RESULTS.append(result)
    assert result.new_node != result.failed_node
    # the failed node's metalogger runs again, following the new master
    assert result.failed_node in cluster.where("mfs-metalogger")
    client = cluster.clients[0]
    mounts = client.run(["findmnt", "-n", "-o", "SOURCE", stack.mnt]).stdout
    assert stack.vip in mounts
