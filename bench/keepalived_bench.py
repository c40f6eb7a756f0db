"""keepalived 2.2.7 as a benchmark Driver (bench/measure.py), on the same test bed as hafd.

What keepalived does here, per node, inside the node's network and mount namespaces:
- one VRRP instance on the HA link eth1 (unicast to the peer's eth1 address, IP protocol 112, so
  the soak's nft rule `ip protocol vrrp` drops it), holding the VIP 10.10.101.1/24 on eth2;
- notify_master / notify_backup / notify_fault / notify_stop run one generated /bin/sh script (argv
  from the config, never a shell string of ours) that does what hafd does: on MASTER drbdadm
  primary r0 (the bed's stand-in, retried while the old primary demotes), mount /data, start
  dhcpd with the bed's exact argv; on BACKUP/FAULT/STOP stop dhcpd, umount /data, drbdadm
  secondary r0.  Each step is logged with a wall-clock stamp to etc/ka-notify.log: the driver's
  role changes and takeover timeline come from there.  keepalived forks notify scripts without
  ordering them (anchors.md saw them run out of order once in 21 heals), so the script takes a
  flock: runs never overlap, although two transitions a few ms apart can still run swapped.
- Both nodes are `state BACKUP` + `nopreempt` (priorities 150/100): a recovered node stays backup,
  as the measurement loop needs.
- Less than hafd: VRRP runs on ONE link (eth1; hafd heartbeats on eth1 and eth3), no DRBD
  fence-peer handler (keepalived has none, so the bed's handlers are off), no monitoring of
  dhcpd after it started.

Planned switchover: keepalived has no move command; as in anchors.md, SIGTERM of the master's
keepalived (it sends a priority-0 advert, so the backup takes over after its skew time), then the
driver starts it again, as a backup, before the next run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.measure import BenchError, Driver, add_loss, remove_loss
from integration.testbed import DHCPD, SPECS, VIP, Node, Options, Testbed, alive, run, wait_until

KEEPALIVED = "/usr/sbin/keepalived"
SECONDS_PER_YEAR = 365.25 * 86400
PRIORITY = {"nodeone": 150, "nodetwo": 100}
NOTIFY = "/etc/hafd/ka-notify"  # inside the node (the bed bind-mounts node.etc at /etc/hafd)
NOTIFY_LOG = "ka-notify.log"  # in node.etc, so readable from here and kept across the node's power cycles
DHCPD_PIDFILE = "/run/hafd/ka-dhcpd.pid"
# keepalived's own words (vrrp_scheduler.c) when the master-down timer fires: the peer is lost.
PEER_LOST_TEXT = "Receive advertisement timeout"


@dataclass(frozen=True)
class Profile:
    key: str
    version: int
    advert_int: float
    down_adverts: int  # vrrp_down_timer_adverts (the RFC's 3 by default)
    why: str


PROFILES = {
    "keepalived_default": Profile("keepalived_default", 2, 1.0, 3, "Debian's defaults: VRRPv2, advert_int 1, "
                                  "master down after 3 adverts + skew"),
    "keepalived_fast": Profile("keepalived_fast", 3, 0.02, 15, "VRRPv3, advert_int 0.02, vrrp_down_timer_adverts 15: "
                               "the loss-proof choice by (1/interval)(1-p)p^k"),
}


def master_down(p: Profile, priority: int) -> float:
    """RFC 5798's Master_Down_Interval as keepalived computes it: k adverts + skew ((256-prio)/256 x interval)."""
    return p.down_adverts * p.advert_int + (256 - priority) * p.advert_int / 256


def false_failovers_per_year(interval: float, k: int, loss: float) -> float:
    """Issue 5's formula (1/interval)(1-p)p^k: runs of k lost adverts per second, one direction, per year."""
    return (1.0 / interval) * (1.0 - loss) * loss**k * SECONDS_PER_YEAR


def timings_of(p: Profile) -> dict[str, Any]:
    downs = {n: round(master_down(p, prio), 4) for n, prio in PRIORITY.items()}
    rate = false_failovers_per_year(p.advert_int, p.down_adverts, 0.2)
    return {
        "profile": p.why, "vrrp_version": p.version, "advert_int": p.advert_int,
        "down_timer_adverts": p.down_adverts, "priorities": dict(PRIORITY), "preempt": "nopreempt, both state BACKUP",
        "master_down_interval_s (when this node takes over)": downs,
        "expected_false_failovers_per_year_at_20pct_loss": float(f"{rate:.3g}"),
        "false_failover_reasoning": (
            f"(1/{p.advert_int:g} s)(1-0.2)(0.2^{p.down_adverts}) = {rate:.3g} a year on one link: "
            + ("loss-proof by the issue's bar (< 1 a year)" if rate < 1 else
               f"{rate / 365.25:.3g} a day under sustained 20 % loss: not loss-proof")),
        "switchover": "SIGTERM of the master's keepalived (priority-0 advert); it is restarted as backup after",
        "notes": ["VRRP adverts on eth1 only (hafd heartbeats on eth1 and eth3)",
                  "no DRBD fence-peer handler (keepalived has none; the bed's handlers are off)",
                  "dhcpd is not monitored once started (no track_script)",
                  "notify scripts are serialised with flock; keepalived itself does not order them"],
    }


def config_text(node: str, peer: str, p: Profile) -> str:
    """keepalived.conf for `node` (its eth1 address is the unicast source, the peer's the destination)."""
    me, other = SPECS[node].links[0], SPECS[peer].links[0]
    notify = "\n".join(f'  notify_{s} "{NOTIFY} {s}"' for s in ("master", "backup", "fault", "stop"))
    down = f"  vrrp_down_timer_adverts {p.down_adverts}\n" if p.down_adverts != 3 else ""
    return (f"# {node}: keepalived for the hafd bench, profile {p.key}\n"
            "global_defs {\n"
            f"  router_id {node}\n"
            "  script_user root\n"
            "  enable_script_security\n"
            f"  vrrp_version {p.version}\n"
            f"{down}"
            "}\n"
            "vrrp_instance dhcp {\n"
            "  state BACKUP\n"
            "  nopreempt\n"
            "  interface eth1\n"
            "  virtual_router_id 51\n"
            f"  priority {PRIORITY[node]}\n"
            f"  advert_int {p.advert_int:g}\n"
            f"  unicast_src_ip {me}\n"
            f"  unicast_peer {{\n    {other}\n  }}\n"
            f"  virtual_ipaddress {{\n    {VIP}/24 dev eth2\n  }}\n"
            f"{notify}\n"
            "}\n")


def dhcpd_argv() -> list[str]:
    """The bed's dhcpd, word for word (integration/testbed.py config_text)."""
    return [DHCPD, "-4", "-f", "-d", "-cf", "/etc/hafd/dhcpd.conf", "-lf", "/data/dhcpd.leases",
            "-pf", "/run/hafd/dhcpd.pid", "eth2"]


NOTIFY_SCRIPT = """\
#!/bin/sh
# keepalived notify script for {node} (generated by bench/keepalived_bench.py): $1 = master|backup|fault|stop.
# Every step is logged as "<epoch seconds> <pid> <state> <step>" to {log}.
# keepalived SIGTERMs the scripts it forked when it stops (SIGKILL 1 s later), which would cut
# notify_stop short: ignore TERM and leave its process tree at once (setsid -f forks a new session).
trap '' TERM HUP INT
if [ "${{KA_NOTIFY_DETACHED:-}}" != 1 ]; then KA_NOTIFY_DETACHED=1 exec setsid -f "$0" "$@"; fi
set -u
state="${{1:-}}"
LOG={log}
note() {{ echo "$(date +%s.%N) $$ $state $1" >> "$LOG"; }}
case "$state" in master|backup|fault|stop) ;; *) echo "usage: $0 master|backup|fault|stop" >&2; exit 2;; esac
# Only the newest transition matters: an older run still waiting (for the lock, or for DRBD while
# the peer is still Primary) gives way to it instead of acting late.
note begin
echo $$ > /run/hafd/ka-notify.latest
newest() {{ [ "$(cat /run/hafd/ka-notify.latest 2>/dev/null)" = "$$" ]; }}
exec 9>/run/hafd/ka-notify.lock
flock 9
newest || {{ note superseded; exit 0; }}
if [ "$state" = master ]; then
  i=0
  until /etc/hafd/drbdadm primary r0 2>>/run/hafd/ka-notify.err; do
    newest || {{ note superseded; exit 0; }}
    i=$((i + 1)); if [ $i -ge 500 ]; then note failed-drbd; exit 1; fi; sleep 0.01
  done
  note drbd
  mountpoint -q /data || mount -t ext4 /dev/drbd/by-res/r0 /data || {{ note failed-mount; exit 1; }}
  note mounted
  pid=$(cat {pidfile} 2>/dev/null || true)
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    rm -f /run/hafd/dhcpd.pid  # dhcpd leaves it behind, and refuses to start while its PID is a zombie
    setsid {dhcpd} >>/run/hafd/dhcpd.log 2>&1 </dev/null 9>&- &
    echo $! > {pidfile}
  fi
  note done
else
  pid=$(cat {pidfile} 2>/dev/null || true)
  if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
    i=0  # gone or a zombie (PID 1 here reaps late): its files are closed either way
    while [ -r /proc/$pid/stat ] && [ "$(cut -d' ' -f3 /proc/$pid/stat)" != Z ] && [ $i -lt 500 ]; do
      i=$((i + 1)); sleep 0.01
    done
    if [ -r /proc/$pid/stat ] && [ "$(cut -d' ' -f3 /proc/$pid/stat)" != Z ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f {pidfile} /run/hafd/dhcpd.pid
  note dhcpd-stopped
  if mountpoint -q /data; then umount /data || {{ note failed-umount; exit 1; }}; fi
  /etc/hafd/drbdadm secondary r0 2>>/run/hafd/ka-notify.err || {{ note failed-drbd; exit 1; }}
  note done
fi
"""


def notify_script(node: str) -> str:
    return NOTIFY_SCRIPT.format(node=node, log=f"/etc/hafd/{NOTIFY_LOG}", pidfile=DHCPD_PIDFILE,
                                dhcpd=" ".join(dhcpd_argv()))


@dataclass(frozen=True)
class Record:
    """One line of the notify log."""
    wall: float
    pid: int
    state: str
    step: str


def parse_notify_log(text: str) -> list[Record]:
    """The notify log's records; torn or foreign lines are skipped (a crash can cut a line)."""
    out: list[Record] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[2] not in ("master", "backup", "fault", "stop"):
            continue
        try:
            out.append(Record(float(parts[0]), int(parts[1]), parts[2], parts[3]))
        except ValueError:
            continue
    return out


def role_changes(records: Sequence[Record], before: str | None = None) -> int:
    """Transitions into or out of MASTER among the scripts' runs (`before`: the state preceding them)."""
    n, last = 0, before
    for r in records:
        if r.step != "begin":
            continue
        if last is not None and (r.state == "master") != (last == "master"):
            n += 1
        last = r.state
    return n


def settled_state(records: Sequence[Record]) -> str | None:
    """The state of the last script run if it finished ('done'), else None (running or failed).

    A run that gave way to a newer one ('superseded') may log after that one finished: skipped.
    """
    gone = {r.pid for r in records if r.step == "superseded"}
    live = [r for r in records if r.pid not in gone]
    if not live or live[-1].step != "done":
        return None
    return live[-1].state


def takeover_timeline(records: Sequence[Record], t_crash_wall: float) -> dict[str, float]:
    """The last MASTER run that began after the crash, as seconds after it; {} until there is one."""
    runs = [i for i, r in enumerate(records) if r.state == "master" and r.step == "begin" and r.wall >= t_crash_wall - 0.01]
    if not runs:
        return {}
    names = {"begin": "MASTER (notify_master began)", "drbd": "drbdadm primary done", "mounted": "/data mounted",
             "done": "dhcpd started"}
    out: dict[str, float] = {}
    start = records[runs[-1]]
    for r in records[runs[-1]:]:
        if r.pid != start.pid:
            continue
        if r.step in names:
            out[names[r.step]] = r.wall - t_crash_wall
        if r.step == "done":
            out["active"] = r.wall - t_crash_wall
            break
    return out


def count_peer_lost(log_text: str) -> int:
    return log_text.count(PEER_LOST_TEXT)


def _wall_to_mono(wall: float) -> float:
    return wall - (time.time() - time.monotonic())


def _netns_pids(ns: str) -> list[int]:
    """Live processes in the named network namespace (what still runs 'in' a node)."""
    try:
        ino = os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == ino and alive(int(entry)):
                out.append(int(entry))
        except OSError:
            continue
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class KeepalivedDriver(Driver):
    def __init__(self, profile: Profile) -> None:
        self.key = profile.key
        self.profile = profile
        self.interval = profile.advert_int
        # Which node takes over alternates; the two Master_Down_Intervals differ by the priority skew.
        self.detection = sum(master_down(profile, prio) for prio in PRIORITY.values()) / len(PRIORITY)
        self.timings = timings_of(profile)
        self.nodes = ("nodeone", "nodetwo")
        self.bed = Testbed(options=Options(drbd_handlers=False, fast_drbdadm=True))
        self.client_netns = self.bed.cli
        self.loss_table = f"{self.bed.prefix}kaloss"
        self.procs: dict[str, subprocess.Popen[bytes] | None] = {n: None for n in self.nodes}
        self.started_at: dict[str, int] = {n: 0 for n in self.nodes}  # notify records before this keepalived run

    # -- files -------------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        return self.bed.node(name)

    def notify_log(self, name: str) -> Path:
        return self.node(name).etc / NOTIFY_LOG

    def ka_log(self, name: str) -> Path:
        return self.node(name).dir / "keepalived.log"

    def records(self, name: str) -> list[Record]:
        try:
            return parse_notify_log(self.notify_log(name).read_text(errors="replace"))
        except OSError:
            return []

    def ka_text(self, name: str) -> str:
        try:
            return self.ka_log(name).read_text(errors="replace")
        except OSError:
            return ""

    # -- life cycle ----------------------------------------------------------------------------

    def build(self) -> None:
        if not os.access(KEEPALIVED, os.X_OK):
            raise BenchError(f"{KEEPALIVED} is missing (apt-get install keepalived)")
        self.bed.build()
        for name in self.nodes:
            n = self.node(name)
            (n.etc / "keepalived.conf").write_text(config_text(name, self.peer(name), self.profile))
            script = n.etc / "ka-notify"
            script.write_text(notify_script(name))
            script.chmod(0o700)
            self.notify_log(name).touch()

    def close(self) -> list[str]:
        """Freeze and kill keepalived first (a parent killed alone makes its child hand over and run
        notify_stop while the bed is being torn down), then the bed kills the rest by PID and namespace."""
        for name in self.nodes:
            try:
                self._kill_keepalived(name)
            except BenchError:
                pass
        return self.bed.close()

    def spawn(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        return self.bed.spawn(argv, **kw)

    def start_keepalived(self, name: str) -> None:
        p = self.procs[name]
        if p is not None and p.poll() is None:
            raise BenchError(f"keepalived already runs on {name} (pid {p.pid})")
        n = self.node(name)
        self.started_at[name] = len(self.records(name))
        argv = n.enter(KEEPALIVED, "-n", "-l", "-D", "-G", "-P", "-f", "/etc/hafd/keepalived.conf",
                       "-p", "/run/hafd/keepalived.pid", "-r", "/run/hafd/keepalived_vrrp.pid",
                       "-c", "/run/hafd/keepalived_checkers.pid")
        with open(self.ka_log(name), "ab") as logf:
            self.procs[name] = self.spawn(argv, stdout=logf, stderr=logf)

    def state(self, name: str) -> str | None:
        """The settled VRRP state of this node's current keepalived (from its notify runs), if it runs."""
        p = self.procs[name]
        if p is None or p.poll() is not None:
            return None
        return settled_state(self.records(name)[self.started_at[name]:])

    def dhcpd_pid(self, name: str) -> int | None:
        n = self.node(name)
        if not n.powered:
            return None
        try:
            pid = int(n.root_path(DHCPD_PIDFILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) and _comm(pid) == "dhcpd" else None

    def serves(self, name: str) -> bool:
        n = self.node(name)
        return (self.state(name) == "master" and n.has_vip() and n.mounted() and self.dhcpd_pid(name) is not None
                and n.drbd_role() == "Primary")

    def ready_backup(self, name: str) -> bool:
        n = self.node(name)
        return (self.state(name) == "backup" and not n.has_vip() and not n.mounted()
                and self.dhcpd_pid(name) is None and n.drbd_role() == "Secondary")

    def describe(self) -> str:
        out = []
        for name in self.nodes:
            n = self.node(name)
            facts = {"vip": n.has_vip(), "data": n.mounted(), "dhcpd": self.dhcpd_pid(name),
                     "drbd": n.drbd_role()} if n.powered else "off"
            dhcpd_log: list[str] = []
            if n.powered:
                try:
                    dhcpd_log = n.root_path("/run/hafd/dhcpd.log").read_text(errors="replace").splitlines()[-6:]
                except OSError:
                    pass
            out.append(f"{name}: keepalived {self.procs[name] and self.procs[name].poll()}, state {self.state(name)}, "
                       f"kernel {facts}; notify tail {self.records(name)[-4:]}; "
                       f"log tail {self.ka_text(name).splitlines()[-6:]}; dhcpd log tail {dhcpd_log}")
        return "\n".join(out)

    def _wait(self, cond: Any, what: str, timeout: float) -> None:
        if not wait_until(cond, timeout, 0.02):
            raise BenchError(f"{self.key}: timed out after {timeout:g}s waiting for {what}\n{self.describe()}")

    def start_pair(self) -> str:
        """nodeone first, alone, so it becomes MASTER (nopreempt: start order decides); then nodetwo as BACKUP."""
        self.start_keepalived("nodeone")
        self._wait(lambda: self.serves("nodeone"), "nodeone MASTER and serving", 30.0)
        self.start_keepalived("nodetwo")
        self.wait_settled("nodeone", 30.0)
        return "nodeone"

    def wait_settled(self, active: str, timeout: float = 20.0) -> None:
        other = self.peer(active)
        self._wait(lambda: self.serves(active) and self.ready_backup(other),
                   f"{active} MASTER serving, {other} a ready BACKUP", timeout)

    def _kill_keepalived(self, name: str) -> list[int]:
        """kill -9 of keepalived's VRRP child and parent, stopped first.

        Killing only the parent is no crash: the child gets SIGTERM (its parent-death signal),
        sends a priority-0 advert and runs notify_stop: a graceful hand-over.  Killing the child
        first lets the parent respawn it.  So both are frozen (SIGSTOP), then killed.
        """
        pids = self.pids(name, strict=False)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in reversed(pids):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        return pids

    def crash(self, node: str) -> float:
        n = self.node(node)
        t = time.monotonic()
        dhcpd = self.dhcpd_pid(node)
        self._kill_keepalived(node)
        if dhcpd is not None:
            try:
                os.kill(dhcpd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for dev in ("eth1", "eth2", "eth3"):
            n.ip("link", "set", dev, "down", check=False)
        self.bed.power_off(n)
        p = self.procs[node]
        if p is not None:
            p.wait(timeout=10)
        # A notify script caught mid-run, the dhcpd it started: nothing survives a power loss.
        for pid in _netns_pids(n.ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return t

    def recover(self, node: str) -> None:
        n = self.node(node)
        if not n.powered:
            self.bed.power_on(n)
        self.start_keepalived(node)
        self.wait_settled(self.peer(node), 30.0)

    def switchover(self, active: str) -> float:
        """SIGTERM of the master's keepalived; once it has stopped (and its notify_stop ran), restart it as backup."""
        p = self.procs[active]
        if p is None or p.poll() is not None:
            raise BenchError(f"keepalived does not run on {active}")
        mark = len(self.records(active))
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise BenchError(f"keepalived on {active} did not exit within 15 s of SIGTERM") from None
        self._wait(lambda: any(r.state == "stop" and r.step == "done" for r in self.records(active)[mark:]),
                   f"{active}'s notify_stop to finish", 15.0)
        self.start_keepalived(active)
        return t0

    def pids(self, node: str, strict: bool = True) -> list[int]:  # type: ignore[override]
        """keepalived's parent (nsenter execs it: the Popen's PID) and its children named keepalived (VRRP)."""
        p = self.procs[node]
        if p is None or p.poll() is not None:
            if strict:
                raise BenchError(f"keepalived does not run on {node}")
            return []
        if _comm(p.pid) != "keepalived":
            raise BenchError(f"pid {p.pid} on {node} is not keepalived ({_comm(p.pid)!r})")
        kids: list[int] = []
        for task in Path(f"/proc/{p.pid}/task").glob("*"):
            try:
                kids += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        return [p.pid, *(k for k in kids if _comm(k) == "keepalived")]

    # -- faults and logs ---------------------------------------------------------------------

    def add_heartbeat_loss(self, percent: int) -> None:
        """Random loss of VRRP (IP protocol 112) arriving on every link of both nodes, counted."""
        add_loss([n.ns for n in self.bed.nodes.values()], self.loss_table, "ip protocol vrrp", percent)

    def remove_heartbeat_loss(self) -> None:
        remove_loss([n.ns for n in self.bed.nodes.values()], self.loss_table)

    def loss_seen(self) -> dict[str, Any]:
        """keepalived reports no loss figure; the drop rule's own counters show it bit (packets dropped per node)."""
        out: dict[str, Any] = {}
        for name, n in self.bed.nodes.items():
            r = run(["ip", "netns", "exec", n.ns, "nft", "list", "table", "inet", self.loss_table], check=False)
            words = r.stdout.split()
            out[name] = {"vrrp_dropped_by_nft": int(words[words.index("packets") + 1])
                         if "packets" in words else None}
        return out

    def mark(self) -> dict[str, tuple[int, int]]:
        return {name: (len(self.records(name)), len(self.ka_text(name))) for name in self.nodes}

    def role_changes_since(self, mark: dict[str, tuple[int, int]]) -> dict[str, int]:
        changes = lost = 0
        for name in self.nodes:
            recs = self.records(name)
            before = next((r.state for r in reversed(recs[:mark[name][0]]) if r.step == "begin"), None)
            changes += role_changes(recs[mark[name][0]:], before)
            lost += count_peer_lost(self.ka_text(name)[mark[name][1]:])
        return {"role_changes": changes, "peer_lost": lost}

    def timeline(self, node: str, t_crash: float) -> dict[str, float] | None:
        wall = time.time() - (time.monotonic() - t_crash)
        return takeover_timeline(self.records(node), wall)


def driver(key: str) -> KeepalivedDriver:
    """bench/main.py's factory: the driver for a profile key (KeyError names an unknown one)."""
    return KeepalivedDriver(PROFILES[key])
