#!/bin/bash
# The whole test suite, on a fresh Debian 12 root machine: installs what is
# missing, then runs every test (the lab tests too) with Debian's python3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider --durations=20 tests "$@"
