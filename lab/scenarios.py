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
            # A rebooted VM probes every resource and resyncs under emulation: 80 s seen.
            wait_for(lambda: stack.rejoined_ok(cluster, active) and not failures(cluster),
                     max(90, timeout), f"{active.name} to rejoin as standby, no failed "
                     "actions left")
            result.rejoin_s = time.monotonic() - t1
            say(f"[{stack.name}/{name}] {active.name} rejoined in {result.rejoin_s:.1f}s")
            stack.check_data(cluster, new)
    return result


# ---- what NFS applications see across a failover ----------------------------
@dataclass
class ClientResult:
    """What two NFS client VMs saw while `scenario` ran (times from the clients' clocks)."""
    scenario: Result
    write_error: str            # the writer's I/O error ("" = none)
    acknowledged: int           # lines whose fsync returned
    lost: list                  # acknowledged line numbers missing on the new node
    writes_resumed_s: float     # the writer's longest wait for one write + fsync
    new_locks_after_s: float    # longest wait for a new lock (client 2)
    lock_kept: bool             # client 2 refused while client 1 holds its lock
    lock_released: bool         # ... and granted once client 1 let go
    client_log: str             # client 1's lockd complaints (kernel log)

    def row(self):
        return (f"{self.scenario.stack:9} {self.scenario.scenario:9} "
                f"{self.writes_resumed_s:8.1f} {self.new_locks_after_s:8.1f} "
                f"{'yes' if self.lock_kept else 'LOST':>6} {len(self.lost):5} "
                f"{'none' if not self.write_error else 'ERROR':>6}")


CLIENT_TABLE_HEADER = (f"{'stack':9} {'scenario':9} {'writes':>8} {'locks':>8} "
                       f"{'lock':>6} {'lost':>5} {'errors':>6}")


def _read_json(machine, path):
    import json
    return json.loads(machine.run(["cat", path], quiet=True).stdout)


def run_client_scenario(cluster, stack, name, timeout=180):
    """run_scenario with applications on two client VMs: client 1 appends and fsyncs
    continuously and holds a POSIX lock, client 2 takes new locks in a loop. Afterwards:
    the writer's errors and lost lines, whether client 1 still holds its lock (client 2
    refused) and client 2 gets it once client 1 lets go."""
    from rigs import nfs_client
    client1, client2 = cluster.clients[:2]
    mnt = stack.client_mnt
    for client in (client1, client2):
        client.run(["rm", "-f", "/tmp/ack", "/tmp/err", "/tmp/holder", "/tmp/probe"])
    tag = int(time.time())
    written, locked = f"{mnt}/writer-{tag}.log", f"{mnt}/locked-{tag}"
    with step(f"[{stack.name}/{name}] client 1 writes and holds a lock, client 2 locks",
              cluster.explain):
        client1.spawn(nfs_client.writer_argv(written, "/tmp/ack", "/tmp/err"))
        client1.spawn(nfs_client.holder_argv(locked, "/tmp/holder"))
        wait_for(lambda: client1.run(["test", "-s", "/tmp/holder"], check=False,
                                     quiet=True).returncode == 0, 60, "client 1's lock")
        refused = client2.run(nfs_client.try_lock_argv(locked), check=False).returncode
        if refused != 1:
            raise LabError(f"client 2 got client 1's lock before the failure ({refused})")
        client2.spawn(nfs_client.lock_probe_argv(f"{mnt}/probe-{tag}", "/tmp/probe"))
        wait_for(lambda: _read_json(client1, "/tmp/ack")["n"] > 20, 60, "the first writes")
    result = run_scenario(cluster, stack, name, timeout=timeout)
    with step(f"[{stack.name}/{name}] what the clients saw", cluster.explain):
        error = client1.run(["cat", "/tmp/err"], check=False, quiet=True).stdout.strip()
        if not error:
            before = _read_json(client1, "/tmp/ack")["n"]
            wait_for(lambda: _read_json(client1, "/tmp/ack")["n"] > before + 5, 60,
                     "the writer going on")
        kept = client2.run(nfs_client.try_lock_argv(locked), check=False).returncode == 1
        kernel = client1.run(["dmesg"], quiet=True).stdout
        complaints = "\n".join(x for x in kernel.splitlines() if "lockd" in x)
        holder = client1.run(["cat", "/tmp/holder"], quiet=True).stdout.strip()
        client1.run(["kill", holder])
        try:
            released = wait_for(lambda: client2.run(nfs_client.try_lock_argv(locked),
                                                    check=False).returncode == 0,
                                60, "client 2 to get the lock")
        except LabError:
            released = False
        ack = _read_json(client1, "/tmp/ack")
        client1.run(["kill", str(ack["pid"])], check=False)
        ack = _read_json(client1, "/tmp/ack")
        probe = _read_json(client2, "/tmp/probe")
        client2.run(["kill", str(probe["pid"])], check=False)
        lines = set(nfs_client.decode_written(
            client1.run(["cat", written], quiet=True, timeout=60).stdout))
        lost = [n for n in range(1, ack["n"] + 1) if n not in lines]
    return ClientResult(result, error, ack["n"], lost,
                        max([g[1] for g in ack["gaps"]] or [0.0]),
                        max([g[1] for g in probe["gaps"]] or [0.0]),
                        kept, released, complaints)
