"""The lab: a real multi-node Pacemaker cluster in namespaces on this machine.

  python3 -m lab demo [--backend vm|ns]
                                 install what is missing, bring up 2 nodes with
                                 the NFS-on-DRBD stack (vm: and a client VM that
                                 mounts it), crash the active node, show the
                                 service and the data on the other one
  python3 -m lab up [--backend ns|vm] [--nodes 3] [--stack nfs|drbd|mfs|mfs-2vip|mfs-ml|stateful]
  python3 -m lab scenarios [standby kill9 crash linkdown]   (on the running lab)
  python3 -m lab measure [--backend vm] [nfs mfs mfs-2vip]  failover table of every scenario vs corosync's floor
  python3 -m lab status | run NODE CMD... | down
"""
import argparse
from pathlib import Path
import sys
import time

from . import LAB_DIR, util
from .cluster import Cluster, build
from .install import ensure_packages
from .scenarios import SCENARIOS, run_scenario, table
from .stacks import STACKS
from .util import LabError, say


def new_cluster(backend, lab_dir, nodes, token, stack=None):
    if backend == "vm":
        from .vm import VmCluster
        clients = stack.vm_clients if stack is not None else ("client",)
        return VmCluster(nodes, lab_dir, token_ms=token, clients=clients)
    return Cluster(nodes, lab_dir, token_ms=token or 1000)


def bring_up(lab_dir, nodes=2, stack_name=None, token=1000, backend="ns"):
    """Create, start, fence and configure; returns (cluster, stack)."""
    if Cluster.load(lab_dir):
        raise LabError(f"a lab exists in {lab_dir}; run `python3 -m lab down` first")
    stack = STACKS[stack_name]() if stack_name else None
    cluster = new_cluster(backend, lab_dir, nodes, token, stack)
    build(cluster, stack)
    say("lab is up: " + " ".join(f"{n.name}={n.address}" for n in cluster.nodes)
        + (f", stack {stack_name}" if stack_name else ""))
    return cluster, stack


def loaded(lab_dir):
    cluster = Cluster.load(lab_dir)
    if cluster is None:
        raise LabError("no lab is up (python3 -m lab up --stack nfs)")
    return cluster


def cmd_up(args):
    bring_up(args.lab_dir, args.nodes, args.stack, args.token, args.backend)


def cmd_down(args):
    cluster = Cluster.load(args.lab_dir) or Cluster(3, args.lab_dir)
    lab_dir = Path(args.lab_dir)
    # The VM backend's network (netns pyha-vm) and fence agent are global: only a VM lab's
    # `down` removes them (a namespace lab's `down` cut a running VM lab's network and
    # deleted its fence agent under it).
    vm_lab = cluster.backend == "vm" or (lab_dir / "power.pid").exists() or \
        any(lab_dir.glob("*/vm.json"))
    cluster.destroy()
    if vm_lab:
        from .vm import vm_leftovers
        vm_leftovers(args.lab_dir)
    say("lab removed")


def cmd_status(args):
    cluster = Cluster.load(args.lab_dir)
    if not cluster:
        print("no lab")
        return 1
    for node in cluster.nodes + cluster.clients:
        print(f"{node.name:8} {node.address:12} {'on' if node.is_on() else 'off'}")
    running = cluster.running_nodes()
    if running:
        print(running[0].run(["crm_mon", "-1", "-r"], check=False).stdout)
    return 0


def cmd_run(args):
    cluster = loaded(args.lab_dir)
    proc = cluster.node(args.node).run(args.argv, check=False, timeout=600)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def cmd_scenarios(args):
    cluster = loaded(args.lab_dir)
    if not cluster.stack:
        raise LabError("the running lab has no stack (python3 -m lab up --stack nfs)")
    stack = STACKS[cluster.stack]()
    unknown = set(args.names) - set(SCENARIOS)
    if unknown:
        raise LabError(f"unknown scenario(s) {' '.join(unknown)}; known: {' '.join(SCENARIOS)}")
    results = [run_scenario(cluster, stack, name) for name in args.names or stack.scenarios]
    print(table(results))


def cmd_measure(args):
    """A fresh lab per stack, every scenario, one table."""
    results = []
    for stack_name in args.stacks:
        if Cluster.load(args.lab_dir):
            Cluster.load(args.lab_dir).destroy()
        cluster, stack = bring_up(args.lab_dir, 2, stack_name, args.token, args.backend)
        try:
            for name in stack.scenarios:
                # Steady state before each failure, as in production: the service has run
                # for more than one monitor interval (ocf:pyha:mfsmaster's monitor records
                # the clients' connections, which start tickles after a move; a failure
                # within 10 s of the last move finds none and waits for TCP's backoff).  The
                # previous scenario ended with the service verified on its new node.
                time.sleep(args.settle)
                results.append(run_scenario(cluster, stack, name))
        finally:
            if not args.keep:
                cluster.destroy()
    print(f"\nFailover time (s): failure injected -> service verified on the peer; floor = "
          f"corosync token + consensus = {cluster.floor_s:.1f} s")
    print(table(results))


def cmd_clients(args):
    """What NFS applications see: a fresh VM lab per stack, each scenario with a writer
    and lock holders on two client VMs."""
    from .scenarios import CLIENT_TABLE_HEADER, run_client_scenario
    rows = []
    for stack_name in args.stacks:
        if Cluster.load(args.lab_dir):
            Cluster.load(args.lab_dir).destroy()
        cluster, stack = bring_up(args.lab_dir, 2, stack_name, args.token, "vm")
        try:
            for name in args.scenarios:
                seen = run_client_scenario(cluster, stack, name)
                rows += seen.rows()
                say("\n".join(seen.rows()))
                if seen.client_log:
                    say(f"client 1's kernel log (lockd):\n{seen.client_log}")
        finally:
            if not args.keep:
                cluster.destroy()
    print(f"\nwrites = an application's longest wait for append+fsync; locks = client 2's "
          f"longest wait for a new lock; lock = the application's lock held across the "
          f"failure; lost = acknowledged lines missing (s; floor {cluster.floor_s:.1f} s)")
    print(CLIENT_TABLE_HEADER)
    print("\n".join(rows))


def cmd_cycle(args):
    """Failover back and forth on the running lab (standby), checking the data, the
    mount list (showmount -a) and rmtab's size after each."""
    cluster = loaded(args.lab_dir)
    stack = STACKS[cluster.stack]()
    results = []
    for i in range(args.count):
        results.append(run_scenario(cluster, stack, args.scenario))
        node = cluster.node(results[-1].new_node)
        rmtab = node.run(["cat", "/var/lib/nfs/rmtab"], quiet=True).stdout
        say(f"failover {i + 1}/{args.count}: {results[-1].failed_node} -> {node.name}, "
            f"rmtab {len(rmtab.splitlines())} lines")
    print(table(results))


def cmd_demo(args):
    installed = ensure_packages(with_vm=args.backend == "vm")
    if installed:
        say(f"installed: {' '.join(installed)}")
    if Cluster.load(args.lab_dir):
        say("removing the previous lab")
        Cluster.load(args.lab_dir).destroy()
    cluster, stack = bring_up(args.lab_dir, args.nodes, "nfs", args.token, args.backend)
    active = stack.wait_active(cluster)
    print(active.run(["crm_mon", "-1", "-r"]).stdout)
    client = stack.client_mounted(cluster)
    if client is not None:
        say(f"{client.name} (kernel NFS client) writes through {stack.vip} "
            f"to {active.name} (the DRBD Primary) ...")
        print(client.run(["grep", stack.client_mnt, "/proc/mounts"]).stdout)
    else:
        say(f"writing data on {active.name} (the DRBD Primary) ...")
    stack.write_data(cluster, "demo")
    where, path = (client, stack.client_mnt) if client else (active, stack.export_dir)
    print(where.run(["ls", "-l", path]).stdout)
    say(f"power loss of {active.name} ...")
    t0 = time.monotonic()
    active.power_off()
    peer = [n for n in cluster.nodes if n is not active][0]
    util.wait_for(lambda: stack.active_node(cluster, via=peer) == peer.name
                  and stack.service_ok(cluster, peer), 180, "the service on the peer",
                  interval=0.2)
    failover = time.monotonic() - t0
    print(peer.run(["crm_mon", "-1", "-r"]).stdout)
    stack.check_data(cluster, peer)
    print(where.run(["ls", "-l", path]).stdout)
    print(where.run(["sha256sum", f"{path}/data-demo"]).stdout)
    print(peer.run(["cat", "/var/lib/nfs/rmtab"]).stdout)
    print((cluster.lab_dir / "fence.log").read_text())
    reader = f"read back by {client.name} through {stack.vip}" if client else "intact"
    print(f"FAILOVER: {active.name} -> {peer.name} in {failover:.1f} s "
          f"(corosync token+consensus floor {cluster.floor_s:.1f} s); data {reader}, "
          "client list (rmtab) intact")
    print("The lab stays up: python3 -m lab status | run node2 pcs status | down")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab-dir", default=LAB_DIR)
    parser.add_argument("-v", "--verbose", action="store_true", help="show every command")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_cluster_options(p):
        p.add_argument("--backend", choices=("ns", "vm"), default="ns",
                       help="ns: namespaces on this kernel (fast, DRBD emulated); "
                            "vm: qemu VMs with Debian's kernel (real DRBD, nfsd, NFS client)")
        p.add_argument("--nodes", type=int, default=2, choices=(2, 3))
        p.add_argument("--token", type=int, default=None,
                       help="corosync token timeout in ms (consensus = 1.2 x token; "
                            "default 1000, on VMs 3000)")
    p = sub.add_parser("up", help="create and start the cluster")
    with_cluster_options(p)
    p.add_argument("--stack", choices=sorted(STACKS), help="configure a service stack")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("demo", help="install, up with the NFS stack, crash the active node")
    with_cluster_options(p)
    p.set_defaults(backend="vm")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("scenarios", help="run failover scenarios on the running lab")
    p.add_argument("names", nargs="*", help=" ".join(SCENARIOS))
    p.set_defaults(func=cmd_scenarios)
    p = sub.add_parser("measure", help="failover time table (fresh lab per stack)")
    p.add_argument("--token", type=int, default=None)
    p.add_argument("--backend", choices=("ns", "vm"), default="ns")
    p.add_argument("--keep", action="store_true", help="leave the last lab up")
    p.add_argument("--settle", type=float, default=12.0,
                   help="seconds in steady state before each failure (default 12: more than "
                        "one 10 s monitor)")
    p.add_argument("stacks", nargs="*", default=["nfs"])
    p.set_defaults(func=cmd_measure)
    p = sub.add_parser("clients", help="NFS clients' view of failures (fresh VM lab per "
                                       "stack): writer, lock holder, second locker")
    p.add_argument("--token", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="leave the last lab up")
    p.add_argument("--scenarios", nargs="+", default=["crash"], choices=sorted(SCENARIOS))
    p.add_argument("stacks", nargs="*", default=["nfs", "nfs-ra"])
    p.set_defaults(func=cmd_clients)
    p = sub.add_parser("cycle", help="fail over COUNT times on the running lab, checking "
                                     "data and client lists each time")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--scenario", default="standby", choices=sorted(SCENARIOS))
    p.set_defaults(func=cmd_cycle)
    sub.add_parser("down", help="remove everything the lab made").set_defaults(func=cmd_down)
    sub.add_parser("status", help="nodes and crm_mon").set_defaults(func=cmd_status)
    p = sub.add_parser("run", help="run a command on a node")
    p.add_argument("node")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    util.VERBOSE = args.verbose
    try:
        return args.func(args) or 0
    except LabError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
