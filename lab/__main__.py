"""Command line of the lab: python3 -m lab up|down|status|..."""
import argparse
import sys

from . import LAB_DIR, util
from .cluster import Cluster
from .stacks import STACKS
from .util import LabError, say


def cmd_up(args):
    bring_up(args)


def bring_up(args):
    """Create, start, fence and configure; returns (cluster, stack)."""
    if Cluster.load(args.lab_dir):
        raise LabError(f"a lab exists in {args.lab_dir}; run `python3 -m lab down` first")
    cluster = Cluster(args.nodes, args.lab_dir, token_ms=args.token)
    stack = STACKS[args.stack]() if args.stack else None
    cluster.stack = args.stack
    cluster.create()
    if stack:
        stack.prepare(cluster)
    cluster.start()
    cluster.configure_fencing()
    if stack:
        stack.configure(cluster)
    say("lab is up: " + " ".join(f"{n.name}={n.address}" for n in cluster.nodes))
    return cluster, stack


def cmd_down(args):
    cluster = Cluster.load(args.lab_dir) or Cluster(3, args.lab_dir)
    cluster.destroy()
    say("lab removed")


def cmd_status(args):
    cluster = Cluster.load(args.lab_dir)
    if not cluster:
        print("no lab")
        return 1
    for node in cluster.nodes + cluster.clients:
        print(f"{node.name:8} {node.address:12} {'on' if node.is_on() else 'off'}")
    node = cluster.running_nodes()
    if node:
        print(node[0].run(["crm_mon", "-1", "-r"], check=False).stdout)
    return 0


def cmd_run(args):
    cluster = Cluster.load(args.lab_dir)
    proc = cluster.node(args.node).run(args.argv, check=False, timeout=600)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m lab", description=__doc__)
    parser.add_argument("--lab-dir", default=LAB_DIR)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="create and start the cluster")
    p.add_argument("--nodes", type=int, default=2, choices=(2, 3))
    p.add_argument("--token", type=int, default=1000, help="corosync token timeout (ms)")
    p.add_argument("--stack", choices=sorted(STACKS), help="configure a service stack")
    p.set_defaults(func=cmd_up)
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
