#!/usr/bin/env bash
# Install everything hafd, its tests and its demo need on a fresh Debian 12 machine (as root).
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${HAFD_VENV:-/opt/hafd-venv}
PACKAGES=(
  python3 python3-venv python3-pip     # the daemon's runtime
  iproute2 nftables util-linux         # namespaces, veth, drop rules, unshare/nsenter, losetup
  e2fsprogs                            # mkfs.ext4 for the test bed's replicated disk
  isc-dhcp-server isc-dhcp-client      # the seed's service and a real client
  iputils-arping iputils-ping          # tiebreaker ping; arping to watch gratuitous ARP by hand
  psmisc procps                        # fuser / ps for operators
  systemd systemd-container            # systemd-analyze verify; systemd-nspawn for the systemd scenario
  resource-agents                      # OCF agents (IPaddr2, Dummy) for the ocf resource tests
  gcc libc6-dev                        # the bench's drbdadm client (integration/drbdfast.c), tested by the suite
)

# bench/run also measures the peers operators would use instead (issue 5): `setup.sh --bench`.
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(keepalived pacemaker corosync crmsh pacemaker-cli-utils kmod)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Nothing installed here may start as a service (isc-dhcp-server, keepalived, corosync,
  # pacemaker): the cluster, or the bench inside its namespaces, starts them.  policy-rc.d
  # exit 101 tells Debian's maintainer scripts not to; ours is removed afterwards.
  # It goes however this script ends (apt failing, Ctrl-C, a CI job's SIGTERM): a stale one would
  # silently keep every service on the machine from starting at later installs and upgrades.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; trap - EXIT INT TERM HUP; fi
fi
# The distribution's unit must stay off; hafd decides where dhcpd runs.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now isc-dhcp-server >/dev/null 2>&1 || true
  if [ "${1:-}" = "--bench" ]; then  # the peers run only inside the bench's namespaces
    systemctl disable --now keepalived corosync pacemaker >/dev/null 2>&1 || true
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
# compat mode: a plain path entry in a .pth file.  The default editable mode installs an
# import finder that costs every hafd/hafctl start ~10 ms (pathlib, importlib.util), and
# `hafctl fence-peer` / `hafctl failover` starts are on the failover clock.
"$VENV/bin/python" -m pip install -q -e ".[test]" --config-settings editable_mode=compat
ln -sf "$VENV/bin/hafd" /usr/local/bin/hafd
ln -sf "$VENV/bin/hafctl" /usr/local/bin/hafctl
echo "setup: hafd $("$VENV/bin/hafd" --version | cut -d' ' -f2) installed in $VENV (hafd, hafctl in /usr/local/bin)"
