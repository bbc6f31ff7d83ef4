"""The lab: a real multi-node Pacemaker cluster on one machine.

Every node is a network namespace (own address on a private bridge) plus a
mount/UTS namespace held open by one long-lived "holder" process, with private
tmpfs on /run, /dev/shm and /tmp and private bind mounts over the directories
corosync, Pacemaker and NFS keep state in.  Corosync and Pacemaker run in the
foreground inside it, started by hand (there is no systemd here).

Pieces:
  node.py       namespaces, private mounts, daemons, running commands on a node
  cluster.py    corosync.conf, bring-up, waiting for quorum, pcs helpers
  fencing.py    the lab fence device (fence_pyha_lab) and its installation
  stacks.py     the service stacks the scenarios fail over (NFS on DRBD, ...)
  scenarios.py  failure injection + verification + timing
  syslog.py     the daemons' syslog, per machine, in LAB_DIR/syslog.log
  __main__.py   the command line: python3 -m lab up|down|status|demo|...

Everything the lab creates carries the "pyha-lab" prefix and lives below
LAB_DIR, so `down` can find and remove all of it.
"""
import os
from pathlib import Path

LAB_DIR = Path(os.environ.get("PYHA_LAB_DIR", "/var/lib/pyha-lab"))
BRIDGE = "pyha-br0"
NETNS_PREFIX = "pyha-lab-"
SUBNET = "10.213.0"
PREFIXLEN = 24
# Addresses: nodes 10.213.0.1-99 (node N = .N, extra namespaces from .50),
# floating IPs 10.213.0.100-150.
FIRST_VIP = 100
CLIENT_BASE = 50
REPO_ROOT = Path(__file__).resolve().parent.parent
