"""HA NFS on DRBD (pcs-examples/nfs-drbd.sh, unmodified) in the lab: every
failure moves the service to the peer with the data and the client list, the
failed node comes back as an UpToDate Unpromoted, split brain is reported,
and the usual debugging commands give useful output."""
import pytest

from lab.scenarios import run_scenario, table
from lab.stacks import NfsDrbdStack

pytestmark = pytest.mark.lab

RESULTS = []


@pytest.fixture(scope="module")
def nfs(lab_factory):
    stack = NfsDrbdStack()
    cluster = lab_factory(2, stack=stack)
    yield cluster, stack
    print("\n" + table(RESULTS))


@pytest.mark.parametrize("scenario", ["standby", "kill9", "crash", "linkdown"])
def test_failure_moves_the_service_with_its_data_and_the_node_rejoins(nfs, scenario):
    cluster, stack = nfs
    result = run_scenario(cluster, stack, scenario)
    RESULTS.append(result)
    assert result.new_node != result.failed_node
    # run_scenario verified the export/VIP/mount on the peer, every file and
    # checksum and rmtab line written before, and that the failed node came
    # back Unpromoted with UpToDate data; check the last part once more here.
    assert stack.drbd_state(cluster, result.failed_node) == ("Secondary", "UpToDate")
    assert result.failed_node in cluster.where("nfs-drbd", "Unpromoted")
    if scenario == "crash":
        assert result.failover_s <= cluster.floor_s + 5
    # Issue 12.6: the survivor's peer was away for a while, and Pacemaker keeps every
    # 190/191 as a failed action until a cleanup: nothing of that must be left.
    status = cluster.node(result.new_node).run(["crm_mon", "-1"], check=False).stdout
    failed = status.partition("Failed Resource Actions:")[2]
    assert "degraded" not in status.lower() and "nfs-drbd" not in failed, status


def test_debugging_commands_explain_themselves(nfs):
    cluster, stack = nfs
    active = cluster.node(stack.active_node(cluster))
    pcs = cluster.pcs
    # A second export of the same directory, kept out of the cluster's hands.
    pcs("resource", "create", "dbg-export", "ocf:pyha:nfsexport", "clientspec=10.213.0.99",
        f"directory={stack.export_dir}", "fsid=2", "--disabled")
    try:
        validate = active.run(["crm_resource", "--validate", "-r", "dbg-export"], check=False)
        assert validate.returncode == 0, validate.stdout + validate.stderr

        def force(op):
            return active.run(["crm_resource", f"--force-{op}", "-r", "dbg-export", "-V"],
                              check=False)
        assert force("start").returncode == 0
        assert force("check").returncode == 0
        assert "10.213.0.99" in active.run(["exportfs", "-v"]).stdout
        assert force("stop").returncode == 0
        check = force("check")
        assert check.returncode == 7  # not running, said so
        # A broken configuration: the reason reaches the user both ways.
        pcs("resource", "update", "dbg-export", "directory=/srv/nfs/no/such/dir")
        bad = force("start")
        assert bad.returncode != 0
        assert "/srv/nfs/no/such/dir" in bad.stdout + bad.stderr
        pcs("constraint", "location", "dbg-export", "prefers", f"{active.name}=INFINITY")
        pcs("resource", "enable", "dbg-export")

        def reason_shown():
            out = pcs("status", check=False).stdout
            return "dbg-export" in out and "/srv/nfs/no/such/dir" in out and out
        from lab.util import wait_for
        status = wait_for(reason_shown, 30, "the exit reason in pcs status")
        print(status)
    finally:
        pcs("resource", "delete", "dbg-export", "--force", check=False)
        pcs("resource", "cleanup", check=False)
    stack.wait_active(cluster)


def test_split_brain_without_fencing_is_reported_and_nothing_discarded(nfs):
    cluster, stack = nfs
    active = stack.wait_active(cluster)
    peer = [n for n in cluster.nodes if n is not active][0]
    cluster.pcs("property", "set", "stonith-enabled=false")
    # Partition: the cable and DRBD's replication link go down together.
    active.cable(False)
    stack.drbdemu(cluster, "cut", stack.drbd_resource)
    from lab.util import wait_for
    wait_for(lambda: stack.active_node(cluster, via=peer) == peer.name, 60,
             "the other side to take over without fencing")
    assert stack.drbd_state(cluster, active.name)[0] == "Primary"
    assert stack.drbd_state(cluster, peer.name)[0] == "Primary"   # both: split brain
    # Both sides write different data.
    for node in (active, peer):
        node.run(["sh", "-c", f"echo {node.name} > {stack.export_dir}/split-{node.name}; sync"])
    # DRBD 9 starts the new data generation at a Primary's first write (not at the promote):
    # let each side's monitor publish its new UUIDs before the link returns.
    def published_current(node):
        gi = node.run(["drbdsetup", "get-gi", stack.drbd_resource,
                       "1" if node is cluster.nodes[0] else "0", "0"],
                      check=False, quiet=True).stdout.split(":")[0]
        attr = node.run(["crm_attribute", "-G", "-q", "-N", node.name, "-l", "reboot",
                         "-n", f"drbd-{stack.drbd_resource}-gi"], check=False, quiet=True)
        return gi and attr.stdout.split(":")[0] == gi
    wait_for(lambda: all(published_current(n) for n in (active, peer)), 90,
             "both sides to publish their new generation UUIDs")
    # Heal.
    active.cable(True)
    stack.drbdemu(cluster, "heal", stack.drbd_resource)

    def reported():
        out = cluster.pcs("status", via=peer, check=False).stdout
        return "split brain" in out.lower() and out
    status = wait_for(reported, 90, "split brain to be reported in pcs status")
    print(status)
    # Nothing discarded: both nodes keep their own data image.
    import json
    emu = json.loads(stack.drbdemu(cluster, "status", stack.drbd_resource).stdout)
    images = {emu["node"][n]["image"] for n in emu["nodes"]}
    assert len(images) == 2


def test_down_removes_loop_devices_and_drbd_device_too(nfs):
    cluster, stack = nfs
    lab_dir = str(cluster.lab_dir)
    import subprocess
    import time
    from pathlib import Path
    # The Primary's disk (after the split brain: both sides' disks).
    assert lab_dir in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    cluster.destroy()
    deadline = time.monotonic() + 10   # autoclear happens when the mount dies
    while True:
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        if lab_dir not in loops or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert lab_dir not in loops
    assert not Path(stack.drbd_device).exists()
    assert not Path(lab_dir).exists()
