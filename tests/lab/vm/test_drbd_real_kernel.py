"""The DRBD stack (pcs-examples/drbd.sh) on the kernel's DRBD 8.4 (VM backend), one VM
cluster for the whole module: the real module on both nodes, ocf:pyha:drbd's promotion
scores in crm_mon -A; resource-level fencing (crm-fence-peer/crm-unfence-peer) with only
the replication link cut; stop_outdates_secondary; a real split brain reported and
recovered by split_brain_recovery; then a power loss of the Primary promotes the peer with
the data intact, and after the old node resynced the service moves back to it with every
file (read from the resynced disk)."""
import hashlib
import os
import re
import time
import xml.etree.ElementTree as ET

import pytest

from lab.scenarios import run_scenario, table
from lab.stacks import DrbdStack
from lab.util import wait_for

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


def test_the_nodes_run_the_agents_of_the_installed_debian_package(drbd):
    """Issue 14: the real-kernel lab's nodes use the package (dpkg -i in their own root),
    not the checkout: the provider directory belongs to ocf-agents-pyha, and the agent
    Pacemaker runs imports ocf_agents from dist-packages."""
    cluster, _ = drbd
    for node in cluster.nodes:
        status = node.run(["dpkg-query", "-W", "-f=${Status}", "ocf-agents-pyha"]).stdout
        assert status == "install ok installed", status
        owner = node.run(["dpkg", "-S", "/usr/lib/ocf/resource.d/pyha/drbd"]).stdout
        assert owner.startswith("ocf-agents-pyha:"), owner
        wrapper = node.run(["cat", "/usr/lib/ocf/resource.d/pyha/drbd"]).stdout
        assert "sys.path.insert(0, '/usr/lib/python3/dist-packages')" in wrapper, wrapper

# ---- resource-level fencing, stop_outdates_secondary and split brain on the real module ----
# Only DRBD's replication link is cut (its TCP port dropped by tc on the Primary's eth0):
# corosync keeps talking, so nothing is STONITHed and DRBD's own fencing has to do the work.

FENCE_CONSTRAINT = "drbd-fence-by-handler-r0-drbd_r0-clone"   # crm-fence-peer.sh's id


def _pair(cluster, stack):
    """(Primary, Secondary) once the cluster is idle (no reload or filesystem start pending:
    a write must land on DRBD)."""
    cluster.nodes[0].run(["crm_resource", "--wait", "--timeout=240"], timeout=270)
    primary = stack.wait_active(cluster)
    return primary, next(n for n in cluster.nodes[:2] if n is not primary)


def _constraints(node):
    return node.run(["cibadmin", "--query", "--scope", "constraints"], quiet=True).stdout


def _fence_rule(node):
    """(role, score, expression) of crm-fence-peer's constraint in the live CIB, or None."""
    root = ET.fromstring(_constraints(node))
    for loc in root.iter("rsc_location"):
        if loc.get("id") == FENCE_CONSTRAINT:
            rule = loc.find("rule")
            expr = rule.find("expression")
            return (rule.get("role"), rule.get("score"),
                    (expr.get("attribute"), expr.get("operation"), expr.get("value")))
    return None


def _wait_resynced(cluster, stack, timeout=120):
    def synced():
        return all("cs:Connected" in line and "ds:UpToDate/UpToDate" in line
                   for line in (stack.proc_drbd(cluster, n.name) for n in cluster.nodes[:2]))
    wait_for(synced, timeout, "DRBD connected and both disks UpToDate (/proc/drbd)")


def _wait_unfenced(cluster, timeout=60):
    wait_for(lambda: _fence_rule(cluster.nodes[0]) is None, timeout,
             f"crm-unfence-peer to remove {FENCE_CONSTRAINT}")


def _node_attributes(crm_mon):
    """{node: {attribute: value}} from crm_mon -A's "Node Attributes" section."""
    found, node = {}, None
    for line in crm_mon.split("Node Attributes:", 1)[-1].splitlines():
        words = line.split()
        if words[:2] == ["*", "Node:"]:
            node = found.setdefault(words[2].rstrip(":"), {})
        elif node is not None and len(words) >= 4 and words[0] == "*" and words[2] == ":":
            node[words[1]] = words[3]
        elif line and not line.startswith(" "):
            break
    return found


def _kernel_log(node, text):
    return [line for line in node.run(["journalctl", "-k", "--no-pager", "-o", "cat"],
                                      quiet=True).stdout.splitlines() if text in line]


def test_replication_link_cut_fences_the_secondary_in_the_cib_until_it_resynced(drbd):
    """LINBIT's resource-level fencing with Pacemaker (fencing resource-and-stonith,
    crm-fence-peer.sh / crm-unfence-peer.sh) on the real module: the Primary loses only
    the replication link while it writes; its frozen I/O resumes once crm-fence-peer put
    a -INFINITY Promoted constraint for every other node in the CIB and DRBD marked the
    peer Outdated; with the Primary in standby Pacemaker does not promote the stale
    Secondary; after the link heals the Secondary resyncs and crm-unfence-peer (DRBD's
    after-resync-target handler) removes the constraint."""
    cluster, stack = drbd
    primary, secondary = _pair(cluster, stack)
    t0 = time.monotonic()
    stack.cut_replication(cluster, primary)
    try:
        # Frozen until the fence handler returned, then written on the Primary only.
        stack.write_data(cluster, "during-replication-cut")
        rule = wait_for(lambda: _fence_rule(secondary), 60, "crm-fence-peer's constraint")
        assert rule == ("Master", "-INFINITY", ("#uname", "ne", primary.name)), rule
        fenced_s = time.monotonic() - t0
        mine = stack.proc_drbd(cluster, primary.name)
        assert "ro:Primary/Unknown" in mine and "ds:UpToDate/Outdated" in mine, mine
        # The Secondary notices the cut at its own pace (its ping times out).
        wait_for(lambda: "ro:Secondary/Unknown" in stack.proc_drbd(cluster, secondary.name),
                 60, f"{secondary.name} to lose the connection")
        assert "fence-peer helper returned 4 (peer was fenced)" in \
            "\n".join(_kernel_log(primary, "fence-peer helper returned"))
        # The Primary leaves: Pacemaker must not promote the Secondary's stale data.
        cluster.pcs("node", "standby", primary.name)
        wait_for(lambda: not cluster.where("drbd_r0", via=secondary).count(primary.name)
                 and not cluster.where("fs_r0", via=secondary), 120,
                 f"drbd_r0 and fs_r0 stopped on {primary.name}", interval=cluster.poll_s)
        secondary.run(["crm_resource", "--wait", "--timeout=120"], timeout=150)
        assert cluster.where("drbd_r0", "Promoted", via=secondary) == []
        assert cluster.where("drbd_r0", "Unpromoted", via=secondary) == [secondary.name]
        scores = secondary.run(["crm_simulate", "--live-check", "--show-scores"],
                               quiet=True).stdout
        assert re.search(rf"promotion score on {secondary.name}: -INFINITY", scores), scores
        assert "ro:Secondary" in stack.proc_drbd(cluster, secondary.name)
        # Back: the constraint lets only the node with the data be promoted.
        cluster.pcs("node", "unstandby", primary.name)
        assert stack.wait_active(cluster).name == primary.name
    finally:
        stack.heal_replication(cluster, primary)
        cluster.pcs("node", "unstandby", primary.name, check=False)
    t_heal = time.monotonic()
    _wait_resynced(cluster, stack)
    _wait_unfenced(cluster)
    assert _kernel_log(secondary, "helper command: /sbin/drbdadm after-resync-target")
    stack.check_data(cluster, primary)
    print(f"\nreplication cut: constraint after {fenced_s:.1f}s, healed -> resynced and "
          f"unfenced in {time.monotonic() - t_heal:.1f}s, whole test "
          f"{time.monotonic() - t0:.0f}s")


@pytest.mark.vm_full   # 120-165 s under emulation; the link-cut test above proves fencing in CI
def test_stop_outdates_secondary_outdates_the_disconnected_secondary_which_is_never_promoted(
        drbd):
    """stop_outdates_secondary=true (changed on the running cluster: Pacemaker reloads the
    agent): with the replication link cut and the Primary still Primary, stopping the
    Secondary outdates the Secondary's own disk (not the Primary's); started again it is
    Outdated in the kernel, has no promotion score and the module refuses to make it
    Primary; after the link heals it resyncs to UpToDate."""
    cluster, stack = drbd
    r = stack.drbd_resource
    t0 = time.monotonic()
    cluster.pcs("resource", "update", "drbd_r0", "stop_outdates_secondary=true")
    primary, secondary = _pair(cluster, stack)
    stack.cut_replication(cluster, primary)
    try:
        stack.write_data(cluster, "before-outdate")
        wait_for(lambda: _fence_rule(secondary), 60, "crm-fence-peer's constraint")
        cluster.pcs("node", "standby", secondary.name)
        wait_for(lambda: secondary.name not in cluster.where("drbd_r0", via=primary), 90,
                 f"drbd_r0 stopped on {secondary.name}", interval=cluster.poll_s)
        primary.run(["crm_resource", "--wait", "--timeout=120"], timeout=150)
        cluster.pcs("node", "unstandby", secondary.name)
        wait_for(lambda: secondary.name in cluster.where("drbd_r0", "Unpromoted", via=primary),
                 90, f"drbd_r0 started on {secondary.name}", interval=cluster.poll_s)
        theirs = stack.proc_drbd(cluster, secondary.name)
        assert "ro:Secondary/Unknown" in theirs and "ds:Outdated/DUnknown" in theirs, theirs
        mine = stack.proc_drbd(cluster, primary.name)
        assert "ro:Primary/Unknown" in mine and "ds:UpToDate/" in mine, mine
        score = secondary.run(["crm_attribute", "--node", secondary.name, "--name",
                               "master-drbd_r0", "--lifetime", "reboot", "--query",
                               "--quiet"], check=False, quiet=True)
        assert score.returncode != 0 or not score.stdout.strip(), score.stdout
        refused = secondary.run(["drbdadm", "primary", r], check=False, quiet=True)
        assert refused.returncode == 17, refused.stdout + refused.stderr
        assert "Need access to UpToDate data" in refused.stdout + refused.stderr
        assert stack.active_node(cluster) == primary.name
    finally:
        stack.heal_replication(cluster, primary)
        cluster.pcs("node", "unstandby", secondary.name, check=False)
    _wait_resynced(cluster, stack)
    _wait_unfenced(cluster)
    stack.check_data(cluster, primary)
    print(f"\nstop_outdates_secondary: {time.monotonic() - t0:.0f}s")


def test_real_split_brain_is_reported_three_ways_and_recovery_keeps_the_primarys_data(drbd):
    """A real split brain: the administrator turns DRBD's fencing off (it would refuse the
    second Primary: that is its job) and uses DRBD's default after-sb-1pri disconnect;
    with the replication link cut the Primary writes a file and the Secondary, made
    Primary by hand for a moment, writes a block. When the link heals the kernel finds
    the split brain and drops the connection (StandAlone). ocf:pyha:drbd reports it by
    all three signals on both nodes (a crit log line, drbd-r0-split-brain=1 in crm_mon
    -A, the monitor's exit reason) and split_brain_recovery=discard-secondary recovers
    it: the Secondary's block is gone, the Primary's file kept, both UpToDate."""
    cluster, stack = drbd
    r, dev = stack.drbd_resource, stack.drbd_device
    t0 = time.monotonic()
    stack.apply_real_drbd_conf(cluster, stack.real_drbd_conf(
        cluster, fencing=False, after_sb_1pri="disconnect"))
    cluster.pcs("resource", "update", "drbd_r0", "split_brain_recovery=discard-secondary")
    primary, secondary = _pair(cluster, stack)   # after the agent's reload settled
    nodes = (primary, secondary)
    marker = os.urandom(2048).hex()   # one 4 KiB block
    try:
        stack.cut_replication(cluster, primary)
        wait_for(lambda: all("cs:WFConnection" in stack.proc_drbd(cluster, n.name)
                             for n in nodes), 60, "DRBD to notice the cut")
        stack.write_data(cluster, "split-brain-survivor")
        wrote = secondary.run(["sh", "-c",
                               'set -e; drbdadm primary "$1"; '
                               'block=$(( $(blockdev --getsize64 "$2") / 4096 - 1 )); '
                               'dd of="$2" bs=4096 seek=$block iflag=fullblock oflag=direct '
                               'conv=notrunc status=none; drbdadm secondary "$1"; echo $block',
                               "sh", r, dev], input=marker)
        block = int(wrote.stdout.split()[-1])
    finally:
        stack.heal_replication(cluster, primary)
    t_heal = time.monotonic()
    try:
        wait_for(lambda: _kernel_log(primary, "Split-Brain detected but unresolved"), 60,
                 "DRBD to detect the split brain")

        def reported():
            mon = primary.run(["crm_mon", "-1", "-A"], quiet=True).stdout
            attrs = _node_attributes(mon)
            flagged = [n.name for n in nodes
                       if attrs.get(n.name, {}).get(f"drbd-{r}-split-brain") == "1"]
            reasons = [n.name for n in nodes if re.search(
                rf"monitor on {n.name} returned [^\n]*SPLIT BRAIN", mon)]
            return len(flagged) == 2 and len(reasons) == 2 and mon
        print(wait_for(reported, 90, "drbd-r0-split-brain=1 and the SPLIT BRAIN exit reason "
                                     "for both nodes"))
        for node in nodes:
            crit = node.run(["journalctl", "--no-pager", "-p", "crit", "-o", "cat"],
                            quiet=True).stdout
            assert f"DRBD resource {r}: SPLIT BRAIN detected by DRBD" in crit, crit   # handler
            assert f"DRBD resource {r}: SPLIT BRAIN with" in crit, crit   # monitor
        _wait_resynced(cluster, stack)
        assert _kernel_log(secondary, "Split-Brain detected, manually solved. Sync from peer")
        read = f"dd if={{}} bs=4096 skip={block} count=1 iflag=direct status=none | sha256sum"
        theirs = secondary.run(["sh", "-c", read.format("/dev/vdb")], quiet=True).stdout
        mine = primary.run(["sh", "-c", read.format(dev)], quiet=True).stdout
        assert theirs.split()[0] == mine.split()[0] != hashlib.sha256(
            marker.encode()).hexdigest()
        stack.check_data(cluster, primary)
        assert stack.active_node(cluster) == primary.name
        print(f"\nsplit brain: healed -> reported and recovered in "
              f"{time.monotonic() - t_heal:.1f}s, whole test {time.monotonic() - t0:.0f}s")
    finally:
        stack.apply_real_drbd_conf(cluster, stack.real_drbd_conf(cluster))


# Last: the power loss runs with the parameters and drbd.conf the tests above left
# (stop_outdates_secondary=true, split_brain_recovery=discard-secondary, fencing back on):
# the peer of a Primary that lost its power is still promoted.  In the full run only: the NFS
# stack's power-loss test proves promotion and resync on the real module in CI.
@pytest.mark.vm_full
def test_power_loss_of_the_primary_promotes_the_peer_and_the_old_node_resyncs(drbd):
    cluster, stack = drbd
    outdated = "disk( UpToDate -> Outdated )"
    before = {n.name: len(_kernel_log(n, outdated)) for n in cluster.nodes[:2]}
    # 240 s: Pacemaker waits for a cancel of the monitor (its timeout + cluster-delay,
    # lab/README.md) before it fences, and the VM lab gives pyha's monitors 60 s.
    crash = run_scenario(cluster, stack, "crash", timeout=240)
    RESULTS.append(crash)
    # stop_outdates_secondary=true did not outdate the survivor for the dead Primary
    # (Pacemaker's promoted list still names it in the notifications of its stop).
    survivor = cluster.node(crash.new_node)
    assert len(_kernel_log(survivor, outdated)) == before[survivor.name]
    assert stack.drbd_state(cluster, crash.failed_node) == ("Secondary", "UpToDate")
    # Back to the node that lost its power: its disk now holds what the peer wrote.
    back = run_scenario(cluster, stack, "standby", timeout=180)
    RESULTS.append(back)
    assert back.new_node == crash.failed_node
    stack.check_data(cluster, cluster.node(back.new_node))
