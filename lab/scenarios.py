"""Failover scenarios: inject a failure on the active node, time until the
service is verified on the peer, check the data, then recover the failed node
and check it rejoins as a healthy standby.

Failover time = failure injected -> service verified on the peer (the
stack's own check, e.g. the export and the data through the VIP), compared with
the detection floor corosync is configured with (token + consensus).
"Placed" = failure injected -> crm_mon first shows the whole stack started on
the peer; the rest of the failover is the service becoming usable (for
MooseFS: the FUSE client reconnecting to the new master behind the VIP).
"""
import time
from dataclasses import dataclass, field

from .util import LabError, say, step, wait_for


@dataclass
class Result:
    scenario: str
    stack: str
    failed_node: str
    new_node: str
    failover_s: float
    floor_s: float
    rejoin_s: float = None
    placed_s: float = None      # failure -> Pacemaker shows it all started on the peer
    notes: list = field(default_factory=list)

    def row(self):
        rejoin = f"{self.rejoin_s:6.1f}" if self.rejoin_s is not None else "     -"
        placed = f"{self.placed_s:6.1f}" if self.placed_s is not None else "     -"
        return (f"{self.stack:9} {self.scenario:9} {self.failed_node:>6} -> {self.new_node:6}"
                f" {placed} {self.failover_s:8.1f} {self.floor_s:6.1f}"
                f" {self.failover_s - self.floor_s:+7.1f} {rejoin}")


TABLE_HEADER = (f"{'stack':9} {'scenario':9} {'from':>6} -> {'to':6} {'placed':>6} {'failover':>8}"
                f" {'floor':>6} {'over':>7} {'rejoin':>6}")


def table(results):
    """Failover times as a plain-text table (seconds)."""
    return "\n".join([TABLE_HEADER] + [r.row() for r in results])


# ---- failure injection and recovery, per scenario --------------------------
def _standby(cluster, stack, node):
    cluster.pcs("node", "standby", node.name, via=node)


def _unstandby(cluster, stack, node):
    cluster.pcs("node", "unstandby", node.name)


def _kill9(cluster, stack, node):
    pids = node.pids_of(stack.service_process)
    if not pids:
        raise LabError(f"no {stack.service_process} process on {node.name}")
    node.run(["kill", "-9", *map(str, pids)])


def _crash(cluster, stack, node):
    node.power_off()


def _cut(cluster, stack, node):
    node.cable(False)


def _reboot(cluster, stack, node):
    """Recovery of a crashed (fenced) node: power on, start the stack."""
    node.cable(True)
    cluster.start([node], timeout=60)


def _restart_and_cleanup(cluster, stack, node):
    """After kill -9: the service manager restarts the killed process (as
    systemd's Restart= would), then the admin clears the failure."""
    node.start_services()
    cluster.pcs("resource", "cleanup")


SCENARIOS = {
    # name: (inject, recover, the failed node is fenced)
    "standby": (_standby, _unstandby, False),
    "kill9": (_kill9, _restart_and_cleanup, False),
    "crash": (_crash, _reboot, True),
    "linkdown": (_cut, _reboot, True),
}


DEGRADED = ("190", "191")   # OCF degraded / degraded promoted: shown, never counted


def failures(cluster):
    """Failed actions crm_mon still shows that count toward migration-threshold
    (they would ban the resource from the node in the next scenario)."""
    status = cluster.status(quiet=True)
    if status is None:
        return ["(crm_mon did not answer)"]
    return [f for f in status["failures"] if f.get("exitcode") not in DEGRADED]


def run_scenario(cluster, stack, name, timeout=90, recover=True):
    """Inject failure `name` on the active node; returns a Result."""
    inject, recover_fn, fenced = SCENARIOS[name]
    active = stack.wait_active(cluster)
    peers = [n for n in cluster.running_nodes() if n is not active]
    tag = f"before-{name}-{int(time.time())}"
    with step(f"[{stack.name}/{name}] writing data on {active.name}", cluster.explain):
        stack.write_data(cluster, tag)
    fenced_before = cluster.fence_count(active)
    with step(f"[{stack.name}/{name}] failing {active.name}", cluster.explain):
        t0 = time.monotonic()
        inject(cluster, stack, active)

    placed = {}

    def moved():
        for peer in peers:
            if stack.active_node(cluster, via=peer) != peer.name:
                continue
            placed.setdefault(peer.name, time.monotonic() - t0)
            if stack.service_ok(cluster, peer):
                return peer
        return None
    with step(f"[{stack.name}/{name}] waiting for the service on a peer", cluster.explain):
        new = wait_for(moved, timeout, f"{stack.name} to fail over", interval=0.2)
        failover = time.monotonic() - t0
    say(f"[{stack.name}/{name}] service on {new.name} after {failover:.1f}s "
        f"(placed by Pacemaker after {placed.get(new.name, failover):.1f}s, "
        f"floor {cluster.floor_s:.1f}s)")
    result = Result(name, stack.name, active.name, new.name, failover, cluster.floor_s,
                    placed_s=placed.get(new.name))
    with step(f"[{stack.name}/{name}] checking data on {new.name}", cluster.explain):
        stack.check_data(cluster, new)
    if fenced:
        with step(f"[{stack.name}/{name}] checking {active.name} was fenced", cluster.explain):
            wait_for(lambda: cluster.fence_count(active) > fenced_before, 30,
                     f"{active.name} to be fenced")
    if recover:
        with step(f"[{stack.name}/{name}] recovering {active.name}", cluster.explain):
            t1 = time.monotonic()
            recover_fn(cluster, stack, active)
            wait_for(lambda: stack.rejoined_ok(cluster, active) and not failures(cluster),
                     90, f"{active.name} to rejoin as standby, no failed actions left")
            result.rejoin_s = time.monotonic() - t1
            say(f"[{stack.name}/{name}] {active.name} rejoined in {result.rejoin_s:.1f}s")
            stack.check_data(cluster, new)
    return result
