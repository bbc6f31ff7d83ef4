"""The DRBD stack (pcs-examples/drbd.sh) on the kernel's DRBD 8.4 (VM backend): the real
module on both nodes, ocf:pyha:drbd's promotion scores in crm_mon -A, a power loss of
the Primary promotes the peer with the data intact, and after the old node resynced the
service moves back to it with every file (read from the resynced disk)."""
import pytest

from lab.scenarios import run_scenario, table
from lab.stacks import DrbdStack

pytestmark = pytest.mark.lab

RESULTS = []


@pytest.fixture(scope="module")
def drbd(vm_lab):
    stack = DrbdStack()
    cluster = vm_lab(stack)
    yield cluster, stack
    print("\n" + table(RESULTS))


def test_proc_drbd_is_the_real_module_and_crm_mon_shows_the_scores(drbd):
    cluster, stack = drbd
    for node in cluster.nodes:
        proc_drbd = node.run(["cat", "/proc/drbd"]).stdout
        assert proc_drbd.startswith("version: 8.4."), proc_drbd
        assert f"{stack.drbd_minor}: cs:Connected" in proc_drbd
    attrs = cluster.nodes[0].run(["crm_mon", "-1", "-A"]).stdout
    scores = [int(line.split(":")[1]) for line in attrs.splitlines()
              if "master-drbd_r0" in line]
    assert len(scores) == 2 and all(score > 0 for score in scores), attrs

def test_power_loss_of_the_primary_promotes_the_peer_and_the_old_node_resyncs(drbd):
    cluster, stack = drbd
    crash = run_scenario(cluster, stack, "crash", timeout=180)
    RESULTS.append(crash)
    assert stack.drbd_state(cluster, crash.failed_node) == ("Secondary", "UpToDate")
    # Back to the node that lost its power: its disk now holds what the peer wrote.
    back = run_scenario(cluster, stack, "standby", timeout=180)
    RESULTS.append(back)
    assert back.new_node == crash.failed_node
    stack.check_data(cluster, cluster.node(back.new_node))
