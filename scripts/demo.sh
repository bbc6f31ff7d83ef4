#!/bin/bash
# The main demo: installs what is missing, then brings up the real-kernel lab
# (qemu VMs with Debian's kernel: two Pacemaker nodes with real DRBD and nfsd,
# fencing on, and a client VM with the kernel's NFS client), wires the
# NFS-on-DRBD stack, writes through the client, cuts the active node's power and
# shows the service, the client's data and its rmtab line on the other node with
# the failover time.  Extra arguments go to `python3 -m lab demo` (e.g.
# --backend ns for the namespace lab).  `python3 -m lab down` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec /usr/bin/python3 -m lab demo "$@"
