#!/usr/bin/env bash
# Prove that scripts/setup.sh (the README's and CI's set-up) and `setup.sh --bench` (bench/run's) work on a
# truly fresh Debian 12: debootstrap a minbase bookworm root under /var/tmp, clone this repo into it, and run
# the scripts inside it with systemd-nspawn (not booted; shares the host's network so apt and pip work).
#   bash scripts/fresh-check.sh            plain setup + test.sh --collect-only in one fresh root, --bench in another
#   bash scripts/fresh-check.sh --demo     also run the demo (in its own network namespace; expect it to stop at
#                                          loop devices, which an unbooted nspawn container does not get)
#   bash scripts/fresh-check.sh --keep     keep the roots (printed) instead of removing them
#   FRESH_TIMEOUT=1500 (seconds, whole run)  FRESH_MIRROR=http://deb.debian.org/debian
# Exit status: 0 every check passed, 1 one failed, 2 the host cannot run the check.
# The host gets debootstrap (apt) if it is missing; nothing else on the host is changed, /opt/hafd-venv included.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
MIRROR=${FRESH_MIRROR:-http://deb.debian.org/debian}
TOTAL=${FRESH_TIMEOUT:-1500}
START=$SECONDS
keep=0 demo=0
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    --demo) demo=1 ;;
    -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "fresh-check: unknown option $a (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then echo "fresh-check: needs root (debootstrap, systemd-nspawn)" >&2; exit 2; fi
command -v systemd-nspawn >/dev/null || { echo "fresh-check: systemd-nspawn missing (apt-get install systemd-container)" >&2; exit 2; }
if ! command -v debootstrap >/dev/null; then
  apt-get install -y -q debootstrap >/dev/null || { echo "fresh-check: cannot install debootstrap" >&2; exit 2; }
fi

WORK=$(mktemp -d /var/tmp/hafd-fresh-XXXXXXXX)
SUMMARY=()
failed=0
cleanup() {
  # Nothing may stay mounted below WORK before it is removed (nspawn unmounts on exit; be sure).
  local m
  [ -n "${WATCHER:-}" ] && watch_stop
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  if ((keep)); then echo "fresh-check: kept $WORK"; else rm -rf --one-file-system "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { SUMMARY+=("$(printf '%-4s %6ss  %s' "$1" "$2" "$3")"); echo "fresh-check: $1 ($2 s) $3"; }
check() {  # check NAME COMMAND...: a host-side assertion for the summary
  local name=$1; shift
  if "$@"; then note ok - "$name"; else note FAIL - "$name"; failed=1; fi
}
left() { echo $((TOTAL - (SECONDS - START))); }

# run ROOT NAME TIMEOUT [NSPAWN-OPTIONS...] -- SCRIPT: one command in the container, logged to WORK/NAME.log.
run() {
  local root=$1 name=$2 limit=$3; shift 3
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done; shift
  local t0=$SECONDS rc remaining
  remaining=$(left)
  ((limit > remaining)) && limit=$remaining
  if ((limit <= 0)); then note SKIP 0 "$name (out of time)"; failed=1; return 1; fi
  timeout --kill-after=20 "$limit" systemd-nspawn --register=no --keep-unit -q -D "$root" --console=pipe \
    --setenv=DEBIAN_FRONTEND=noninteractive --setenv=LC_ALL=C.UTF-8 "${opts[@]}" \
    bash -c "set -o pipefail; $1" >"$WORK/$name.log" 2>&1 </dev/null
  rc=$?
  if ((rc == 0)); then note ok $((SECONDS - t0)) "$name"
  else note FAIL $((SECONDS - t0)) "$name (exit $rc, log $WORK/$name.log)"; failed=1; grep -v 'nspawn/propagate' "$WORK/$name.log" | tail -n 15 | sed 's/^/    /'; fi
  return $rc
}

# Services the installs must not start. Without a booted systemd, invoke-rc.d falls back to /etc/init.d, so only
# policy-rc.d stands between apt and a running keepalived/dhcpd. A process counts as the container's only if its
# root directory is the container's (same device and inode through /proc/PID/root, valid across namespaces); a
# watcher samples while the installs run, since the container's PID namespace takes its processes along on exit.
# comm is cut at 15 characters; pacemaker-.* would also match dpkg's pacemaker-common.postinst.
SERVICES='^(keepalived|corosync|pacemakerd|pacemaker-(based|fence|execd|attrd|sched|contr)|dhcpd|crmd|cib)$'
strays() {  # strays ROOT: "PID COMM" of such services whose / is ROOT
  local want pid comm
  want=$(stat -c %d:%i "$1")
  ps -eo pid=,comm= | while read -r pid comm; do
    [[ $comm =~ $SERVICES ]] || continue
    [ "$(stat -L -c %d:%i "/proc/$pid/root" 2>/dev/null)" = "$want" ] || continue
    echo "$pid $comm: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-100)"
  done
}
watch_start() {  # watch_start ROOT FILE: sample strays every 0.5 s (at most TOTAL s) into FILE; sets WATCHER
  local root=$1 file=$2
  : >"$file"
  ( for ((i = 0; i < TOTAL * 2; i++)); do strays "$root" >>"$file"; sleep 0.5; done ) &
  WATCHER=$!
}
watch_stop() { kill "$WATCHER" 2>/dev/null; wait "$WATCHER" 2>/dev/null; WATCHER=; }
no_services() {  # no_services ROOT FILE: none was seen; kill (by PID) any still running, proven the container's
  local root=$1 file=$2 now
  now=$(strays "$root")
  if [ -n "$now" ]; then
    while read -r pid _; do kill -9 "$pid" 2>/dev/null || true; done <<<"$now"
    echo "$now" >>"$file"
  fi
  if [ -s "$file" ]; then echo "fresh-check: services started from $root:" >&2; sort -u "$file" >&2; return 1; fi
  return 0
}
WATCHER=

# 1. The fresh root: minbase plus the suites a Debian 12 installer configures, and the host's extra CA
#    certificates (a TLS-intercepting egress proxy needs them for pip; a no-op elsewhere). The repo arrives by
#    git clone from the host: the root has no git, as a fresh machine may not.
t0=$SECONDS
BASE=$WORK/base
if ! timeout "$(left)" debootstrap --variant=minbase bookworm "$BASE" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  note FAIL $((SECONDS - t0)) "debootstrap (log $WORK/debootstrap.log)"; printf '%s\n' "${SUMMARY[@]}"; exit 1
fi
security=${MIRROR%/debian}/debian-security
cat >"$BASE/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $security bookworm-security main
EOF
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$BASE/usr/local/share/ca-certificates" && cp /usr/local/share/ca-certificates/*.crt "$BASE/usr/local/share/ca-certificates/"
fi
note ok $((SECONDS - t0)) "debootstrap minbase bookworm ($(du -sh "$BASE" | cut -f1))"
A=$WORK/plain B=$WORK/bench
cp -a "$BASE" "$A" && mv "$BASE" "$B"
for r in "$A" "$B"; do git clone -q "$REPO" "$r/repo"; done
REV=$(git -C "$A/repo" log --oneline -1)

# 2. Root A: what CI does (.ci/run = scripts/test.sh = setup.sh + pytest); collection only, the suite needs a
#    real machine. Then setup.sh again (already set up: no apt, idempotent) and --bench on top.
watch_start "$A" "$WORK/services-plain"
run "$A" setup-plain 900 -- 'cd /repo && bash scripts/setup.sh'
run "$A" test-sh-collect 600 -- 'cd /repo && bash scripts/test.sh --collect-only -q | tail -n 3'
run "$A" setup-again 300 -- 'cd /repo && out=$(bash scripts/setup.sh 2>&1); rc=$?; echo "$out";
  ((rc == 0)) || exit $rc; ! grep -q "setup: installing" <<<"$out"'
watch_stop
check "plain: no service started (sampled every 0.5 s)" no_services "$A" "$WORK/services-plain"

# 3. Root B: bench/run's set-up straight from fresh.
watch_start "$B" "$WORK/services-bench"
run "$B" setup-bench 900 -- 'cd /repo && bash scripts/setup.sh --bench'
watch_stop
check "bench: no service started (sampled every 0.5 s)" no_services "$B" "$WORK/services-bench"
check "bench: invoke-rc.d was refused by policy-rc.d" grep -q "policy-rc.d denied execution of start" "$WORK/setup-bench.log"
run "$B" bench-packages 60 -- 'for p in keepalived pacemaker corosync crmsh pacemaker-cli-utils kmod isc-dhcp-server; do
  dpkg-query -W -f="\${Status}\n" $p | grep -q "install ok installed" || { echo "missing $p"; exit 1; }; done'
run "$B" policy-rc.d-removed 60 -- 'test ! -e /usr/sbin/policy-rc.d'
run "$B" hafd-hafctl 60 -- '/opt/hafd-venv/bin/hafd --version && hafd --version && hafctl --help >/dev/null'
run "$B" pytest-collect 600 -- 'cd /repo && /opt/hafd-venv/bin/python -m pytest --collect-only -q -p no:cacheprovider | tail -n 3'
run "$B" bench-run-help 60 -- 'cd /repo && bench/run --help >/dev/null'
watch_start "$B" "$WORK/services-again"
run "$B" setup-bench-again 300 -- 'cd /repo && out=$(bash scripts/setup.sh --bench 2>&1); rc=$?; echo "$out";
  ((rc == 0)) || exit $rc; ! grep -q "setup: installing" <<<"$out" && test ! -e /usr/sbin/policy-rc.d'
watch_stop
check "bench again: no service started" no_services "$B" "$WORK/services-again"

# 4. Root A again: a signal while apt-get runs must not leave our policy-rc.d behind (it would keep every
#    service on the machine from starting at later upgrades). apt-get and dpkg-query are stubbed for this.
mkdir -p "$A/root/fresh-stub"
printf '#!/bin/sh\nexit 1\n' >"$A/root/fresh-stub/dpkg-query"
printf '#!/bin/sh\n[ "$1" = update ] || sleep 30\n' >"$A/root/fresh-stub/apt-get"
chmod +x "$A/root/fresh-stub/"*
cat >"$A/root/fresh-stub/signals.py" <<'PY'
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell starts us with SIGINT ignored
bad = 0
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    env = dict(os.environ, PATH="/root/fresh-stub:" + os.environ["PATH"])
    p = subprocess.Popen(["bash", "scripts/setup.sh"], cwd="/repo", env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists("/usr/sbin/policy-rc.d"):
            break
        time.sleep(0.1)
    created = os.path.exists("/usr/sbin/policy-rc.d")
    time.sleep(0.5)
    os.killpg(p.pid, sig)
    rc = p.wait(timeout=40)
    left = os.path.exists("/usr/sbin/policy-rc.d")
    print(sig.name, "created" if created else "NOT created", "exit", rc, "LEFT BEHIND" if left else "removed")
    bad |= left or not created or rc == 0
    if left:
        os.remove("/usr/sbin/policy-rc.d")
sys.exit(bad)
PY
run "$A" signal-removes-policy-rc.d 200 -- 'python3 /root/fresh-stub/signals.py'
rm -rf "$A/root/fresh-stub"

# 5. Optional: the demo, after its set-up, in a network namespace of its own (never the host's interfaces).
if ((demo)); then
  loops_before=$(losetup -a | sort)
  watch_start "$A" "$WORK/services-demo"
  # Informational: exit 1 at losetup is what an unbooted container gives (no /dev/loop-control).
  saved=$failed
  if ! run "$A" demo 180 --private-network -- 'cd /repo && /opt/hafd-venv/bin/python integration/demo.py'; then
    failed=$saved
    SUMMARY[-1]=${SUMMARY[-1]/#FAIL/info}
    SUMMARY[-1]+="; not counted: $(grep -m1 -o 'demo: stopped early: .*' "$WORK/demo.log" | cut -c1-110)"
  fi
  check "demo: no loop device left on the host" test "$(losetup -a | sort)" = "$loops_before"
  watch_stop
  check "demo: no service left running" no_services "$A" "$WORK/services-demo"
fi

echo
echo "fresh-check: $REV on debootstrap bookworm minbase, $((SECONDS - START)) s in all"
printf '  %s\n' "${SUMMARY[@]}"
exit $failed
