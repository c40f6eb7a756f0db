#!/usr/bin/env bash
# The README's first command: install everything (scripts/setup.sh), then the guided two-node demo
# (integration/demo.py): a DHCP cluster in network namespaces that the demo creates and removes again,
# whose active node crashes while a client keeps its address. Run as root on Debian 12.
#   bash scripts/demo.sh            the two-node demo (a few seconds)
#   bash scripts/demo.sh --step     the same, pausing before each step
#   bash scripts/demo.sh --single   the single-node demo (integration/demo_single.py)
# Exit status: 0 every step behaved as expected, 1 one did not, 2 the machine is not ready, 130 interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (network namespaces, loop devices, mounts): sudo bash scripts/demo.sh" >&2
  exit 2
fi
demo=integration/demo.py
args=()
for a in "$@"; do
  case "$a" in
    --single) demo=integration/demo_single.py ;;
    --step) args+=("$a") ;;
    -h|--help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $a (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$demo" = integration/demo_single.py ] && ((${#args[@]})); then
  echo "demo: --step is for the two-node demo only" >&2
  exit 2
fi
bash scripts/setup.sh || { echo "demo: scripts/setup.sh failed: the machine is not ready" >&2; exit 2; }
exec "${HAFD_VENV:-/opt/hafd-venv}/bin/python" "$demo" "${args[@]}"
