"""HA MooseFS master with SERVER_VIP (pcs-examples/mfs.sh, unmodified): the chunkservers
reach the master through their own floating address, started before the master, the FUSE
client through the clients' address after it. After a failure the master's start waits
for the chunkservers and lets the clients in itself, before the clients' address is up;
every file reads back through the client."""
import pytest

from lab.scenarios import run_scenario, table
from lab.stacks import MfsTwoAddressStack
from lab.util import wait_for

pytestmark = pytest.mark.lab

RESULTS = []


@pytest.fixture(scope="module")
def mfs(lab_factory):
    stack = MfsTwoAddressStack()
    cluster = lab_factory(2, stack=stack)
    yield cluster, stack
    print("\n" + table(RESULTS))


@pytest.mark.parametrize("scenario", ["kill9", "crash"])
def test_the_master_moves_and_lets_its_clients_in_before_their_address(mfs, scenario):
    cluster, stack = mfs
    # Steady state first: a monitor (every 10 s) has recorded the chunkservers'
    # connections to their address, which the next start finds local.
    active = stack.wait_active(cluster)
    recorded = f"{stack.data_path}/pyha-connections"
    wait_for(lambda: active.run(["grep", "-q", f"^{stack.server_vip} 9420 ", recorded],
                                check=False, quiet=True).returncode == 0,
             30, "the chunkservers' connections recorded by monitor")
    syslog = cluster.lab_dir / "syslog.log"
    seen = len(syslog.read_text(errors="replace")) if syslog.exists() else 0
    result = run_scenario(cluster, stack, scenario)
    RESULTS.append(result)
    assert result.new_node != result.failed_node
    assert stack.drbd_state(cluster, result.failed_node) == ("Secondary", "UpToDate")
    # start, not a detached opener, let the clients in (the chunkservers' address was up)
    logged = syslog.read_text(errors="replace")[seen:]
    assert "after the master answered: all 2 chunkserver(s)" in logged, logged[-3000:]
    client = cluster.clients[0]
    assert stack.vip in client.run(["findmnt", "-n", "-o", "SOURCE", stack.mnt]).stdout
    assert f"MASTER_HOST = {stack.server_vip}" in (
        cluster.lab_dir / "client-mfs" / "cs1.cfg").read_text()
