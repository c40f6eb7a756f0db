#!/usr/bin/env bash
# The README's first command: install everything (scripts/setup.sh), then a guided single-node demo of
# hafd in a network namespace that the demo creates and removes again. Run as root on Debian 12.
# The demo itself is integration/demo_single.py (exit 0 = every step behaved as expected).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (network namespaces, a loop device, mounts): sudo bash scripts/demo.sh" >&2
  exit 2
fi
bash scripts/setup.sh
exec "${HAFD_VENV:-/opt/hafd-venv}/bin/python" integration/demo_single.py "$@"
