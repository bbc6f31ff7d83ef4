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
import os
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


# A failover on the VM backend: under emulation a standby's stop and start of the whole NFS
# stack once took more than 180 s here (each operation 5-40 s), and CI's machine is slower.
VM_FAILOVER_TIMEOUT_S = 300


def run_scenario(cluster, stack, name, timeout=None, recover=True):
    """Inject failure `name` on the active node; returns a Result. timeout: for the
    failover (default by backend: 90 s in namespaces, VM_FAILOVER_TIMEOUT_S in VMs)."""
    if timeout is None:
        timeout = VM_FAILOVER_TIMEOUT_S if cluster.backend == "vm" else 90
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
        new = wait_for(moved, timeout, f"{stack.name} to fail over", interval=cluster.poll_s)
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
            # A rebooted VM probes every resource and resyncs under emulation: 80 s seen
            # here; on CI's slower machine its boot alone took 107 s.
            wait_for(lambda: stack.rejoined_ok(cluster, active) and not failures(cluster),
                     max(90, 2 * timeout), f"{active.name} to rejoin as standby, no failed "
                     "actions left", interval=max(0.5, cluster.poll_s))
            result.rejoin_s = time.monotonic() - t1
            say(f"[{stack.name}/{name}] {active.name} rejoined in {result.rejoin_s:.1f}s")
            stack.check_data(cluster, new)
    return result


# ---- what NFS applications see across a failover ----------------------------
@dataclass
class AppResult:
    """One application on a client VM: it locked its file, then appended and fsynced."""
    client: str
    protocol: str               # the mount it used: "v3", "v4.1"
    write_error: str            # the I/O error it saw ("" = none)
    acknowledged: int           # lines whose fsync returned
    lost: list                  # acknowledged line numbers missing on the new node
    writes_resumed_s: float     # its longest wait for one append + fsync
    lock_kept: bool             # another client was refused its file's lock afterwards
    lock_released: bool         # ... and got it once the application ended


@dataclass
class ClientResult:
    """What the client VMs saw while `scenario` ran (times from the clients' clocks)."""
    scenario: Result
    apps: list                  # AppResult per application
    new_locks_after_s: float    # longest wait of client 2 for a new lock (NFSv3)
    client_log: str             # the clients' lockd / NFSv4 state complaints (kernel log)

    def rows(self):
        return [f"{self.scenario.stack:9} {self.scenario.scenario:9} {a.protocol:5} "
                f"{a.writes_resumed_s:8.1f} {self.new_locks_after_s:8.1f} "
                f"{'kept' if a.lock_kept else 'LOST':>6} {len(a.lost):5} "
                f"{'none' if not a.write_error else 'ERROR':>6}" for a in self.apps]

    @property
    def ok(self):
        return all(not a.write_error and not a.lost and a.lock_kept and a.lock_released
                   for a in self.apps)


CLIENT_TABLE_HEADER = (f"{'stack':9} {'scenario':9} {'mount':5} {'writes':>8} {'locks':>8} "
                       f"{'lock':>6} {'lost':>5} {'errors':>6}")
KERNEL_COMPLAINTS = ("lockd", "reclaim", "NFS4ERR", "nfs4", "state manager")


def _read_json(machine, path):
    import json
    return json.loads(machine.run(["cat", path], quiet=True).stdout)


def _stop_applications(pid_files):
    """Kill the client applications whose JSON state files are given, as far as they
    can be found; never raises (it runs while another error is going up)."""
    for client, path in pid_files:
        try:
            pid = _read_json(client, path)["pid"]
            client.run(["kill", "-9", str(pid)], check=False, quiet=True)
        except Exception:    # noqa: BLE001 - best effort on the way out
            pass


def run_client_scenario(cluster, stack, name, timeout=VM_FAILOVER_TIMEOUT_S):
    """run_scenario with applications on two client VMs: client 1 (NFSv3) and client 2
    (NFSv4.1, where the stack mounts it) each lock a file and append + fsync to it
    without end; client 2 also takes new locks in a loop (NFSv3). Afterwards: their
    errors and lost lines, whether each still holds its lock (the other client is
    refused) and the other client gets it once the application ends."""
    from rigs import nfs_client
    client1, client2 = cluster.clients[:2]
    tag = int(time.time())
    apps = [(client1, "v3", stack.client_mnt, client2)]
    if getattr(stack, "v4_mnt", None):
        apps.append((client2, "v4.1", stack.v4_mnt, client1))
    for client in (client1, client2):
        client.run(["sh", "-c", "rm -f /tmp/ack-* /tmp/err-* /tmp/probe"])

    def in_v3(path):   # the same file through the other client's NFSv3 mount
        return f"{stack.client_mnt}/{os.path.basename(path)}"
    files = {proto: f"{mnt}/writer-{proto}-{tag}.log" for _, proto, mnt, _ in apps}
    with step(f"[{stack.name}/{name}] applications lock and write on "
              f"{', '.join(f'{c.name} ({p})' for c, p, _, _ in apps)}", cluster.explain):
        for client, proto, _, other in apps:
            client.spawn(nfs_client.writer_argv(files[proto], f"/tmp/ack-{proto}",
                                                f"/tmp/err-{proto}"))
        for client, proto, _, other in apps:
            wait_for(lambda: client.run(["test", "-s", f"/tmp/ack-{proto}"], check=False,
                                        quiet=True).returncode == 0, 60, f"{proto} lock")
            refused = other.run(nfs_client.try_lock_argv(in_v3(files[proto])),
                                check=False).returncode
            if refused != 1:
                raise LabError(f"{other.name} got the {proto} application's lock before "
                               f"the failure ({refused})")
        client2.spawn(nfs_client.lock_probe_argv(f"{stack.client_mnt}/probe-{tag}",
                                                 "/tmp/probe"))
        for client, proto, _, _ in apps:
            wait_for(lambda: _read_json(client, f"/tmp/ack-{proto}")["n"] > 20, 60,
                     f"the {proto} application's first writes")
    try:
        result = run_scenario(cluster, stack, name, timeout=timeout)
    except BaseException:
        # Applications left writing would load the next test's stack (on a slow
        # machine enough to fail it too): stop them before the error goes up.
        _stop_applications([(c, f"/tmp/ack-{p}") for c, p, _, _ in apps]
                           + [(client2, "/tmp/probe")])
        raise
    seen = []
    with step(f"[{stack.name}/{name}] what the clients saw", cluster.explain):
        for client, proto, _, other in apps:
            error = client.run(["cat", f"/tmp/err-{proto}"], check=False,
                               quiet=True).stdout.strip()
            if not error:
                before = _read_json(client, f"/tmp/ack-{proto}")["n"]
                wait_for(lambda: _read_json(client, f"/tmp/ack-{proto}")["n"] > before + 5,
                         60, f"the {proto} application going on")
            kept = other.run(nfs_client.try_lock_argv(in_v3(files[proto])),
                             check=False).returncode == 1
            ack = _read_json(client, f"/tmp/ack-{proto}")
            client.run(["kill", str(ack["pid"])], check=False)
            try:
                released = wait_for(lambda: other.run(
                    nfs_client.try_lock_argv(in_v3(files[proto])),
                    check=False).returncode == 0, 60, f"{other.name} to get the lock")
            except LabError:
                released = False
            ack = _read_json(client, f"/tmp/ack-{proto}")
            lines = set(nfs_client.decode_written(
                client.run(["cat", files[proto]], quiet=True, timeout=60).stdout))
            seen.append(AppResult(client.name, proto, error, ack["n"],
                                  [n for n in range(1, ack["n"] + 1) if n not in lines],
                                  max([g[1] for g in ack["gaps"]] or [0.0]), kept,
                                  bool(released)))
        probe = _read_json(client2, "/tmp/probe")
        client2.run(["kill", str(probe["pid"])], check=False)
        complaints = []
        for client in (client1, client2):
            kernel = client.run(["dmesg"], quiet=True).stdout
            complaints += [f"{client.name}: {x}" for x in kernel.splitlines()
                           if any(w in x for w in KERNEL_COMPLAINTS)]
    return ClientResult(result, seen, max([g[1] for g in probe["gaps"]] or [0.0]),
                        "\n".join(complaints))
