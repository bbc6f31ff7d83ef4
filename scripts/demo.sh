#!/bin/bash
# Installs what is missing, installs the ocf:pyha agents, and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
PYTHONPATH="$PWD" /usr/bin/python3 -m ocf_agents install
exec /usr/bin/python3 scripts/demo_nfs.py
