#!/bin/bash
# The main demo: installs what is missing, then brings up the lab (a real
# 2-node Pacemaker cluster with fencing in namespaces on this machine) with the
# NFS-on-DRBD stack, writes data, crashes the active node and shows service and
# data on the other node with the failover time. Extra arguments go to
# `python3 -m lab demo` (e.g. --nodes 3). `python3 -m lab down` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec /usr/bin/python3 -m lab demo "$@"
