#!/usr/bin/env bash
# Set everything up, then run the whole test suite (unit, agents in namespaces, integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${HAFD_VENV:-/opt/hafd-venv}/bin/python" -m pytest -q -p no:cacheprovider "$@"
