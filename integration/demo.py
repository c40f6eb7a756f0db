#!/usr/bin/env python3
"""The guided two-node demo: a DHCP cluster loses its active node and the client keeps its address.

Why it is built this way: the demo must run on any fresh Debian 12 machine without
touching it, and show the product exactly as the integration scenarios prove it.  So it
drives the same test bed (integration/testbed.py: two nodes, a client and a switch in
network namespaces, each node with its own mount namespace and root, one ext4 image on a
loop device shared through the drbdadm stand-in) with the product's default timings, and
it measures the outage with the same millisecond DHCP prober (integration/prober.py) the
scenarios use.  What it shows is what the scenarios assert; it checks each step itself,
and everything it creates is removed at the end, also on failure, Ctrl-C or SIGTERM.

Run it as root with the hafd venv's python (scripts/demo.sh does that):
    /opt/hafd-venv/bin/python integration/demo.py [--step]
--step waits for Enter before each step (when run in a terminal).
Exit status: 0 if every step behaved as expected, 1 if one did not, 2 if the machine
lacks something, 130 if interrupted.
"""

from __future__ import annotations

import datetime
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration.demorun import DemoFailed, on_signals_interrupt, run_steps  # noqa: E402
from integration.prober import Prober  # noqa: E402
from integration.testbed import (DHCPD, HAFCTL, HAFD, REPO, VIP, Node, Testbed, TestbedError,  # noqa: E402
                                 drbd_programs, wait_until)

NEEDED = ("ip", "nsenter", "unshare", "losetup", "mkfs.ext4", "truncate", "dhclient", "sh")
ROLES_TIMEOUT = 20.0  # both daemons up, nodeone active with every resource started
TAKEOVER_TIMEOUT = 15.0  # crash -> nodetwo active and answering
# hafd log events worth showing a newcomer, and the keys to show with them.
SHOWN_KEYS = ("resource", "op", "outcome", "duration", "old", "new", "reason")


class Demo:
    def __init__(self, pause: bool = False) -> None:
        self.bed = Testbed()
        self.pause = pause
        self.failures: list[str] = []
        self.steps = 0
        self.dhclient_seen = 0  # lines of dhclient's log already shown
        self.prober: Prober | None = None
        self.lease: dict[str, str] = {}
        self.t_crash = 0.0  # monotonic, shared with the prober
        self.wall_crash = 0.0  # wall clock, to line up with hafd's timeline

    # -- output ----------------------------------------------------------------

    def step(self, title: str, text: str = "") -> None:
        self.steps += 1
        if self.pause and sys.stdin.isatty():
            input(f"\n[press Enter for step {self.steps}: {title}] ")
        print(f"\n=== {self.steps}. {title} ===", flush=True)
        if text:
            print(text, flush=True)

    def say(self, text: str) -> None:
        print(text, flush=True)

    def check(self, ok: bool, what: str) -> bool:
        print(f"  {'ok' if ok else 'UNEXPECTED'}: {what}", flush=True)
        if not ok:
            self.failures.append(what)
        return ok

    def must(self, ok: bool, what: str) -> None:
        if not self.check(ok, what):
            raise DemoFailed(what)

    def shown(self, argv: Sequence[str]) -> str:
        """The command as a reader would type it, with the $ONE/$TWO/$BED shorthands."""
        words = list(argv)
        prefix = ""
        for node, var in ((self.bed.one, "$ONE"), (self.bed.two, "$TWO")):
            if node.holder is not None and words[:5] == ["nsenter", "-t", str(node.holder.pid), "-m", "-n"]:
                prefix, words = var + " ", words[5:]
        nice = {HAFD: "hafd", HAFCTL: "hafctl", sys.executable: "python3"}
        text = prefix + shlex.join(nice.get(w, w) for w in words)
        return text.replace(str(self.bed.dir), "$BED").replace(self.bed.cli, "$CLI")

    def run(self, argv: Sequence[str], note: str = "", timeout: float = 30.0,
            show_output: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command the reader could type, show it and (indented) what it printed."""
        self.say(f"$ {self.shown(argv)}" + (f"    # {note}" if note else ""))
        try:
            res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"{self.shown(argv)} did not finish within {timeout:g}s") from None
        if show_output:
            for line in (res.stdout + res.stderr).rstrip("\n").splitlines():
                print(f"    {line}")
        if res.returncode != 0:
            print(f"    (exit status {res.returncode})")
        return res

    def show_log(self, node: Node, mark: int, events: Sequence[str]) -> list[dict[str, Any]]:
        """hafd's log lines of `node` since `mark` (selected events), as local times."""
        evs = [e for e in node.events_since(mark) if e.get("event") in events]
        if evs:
            self.say(f"  {node.name}'s hafd log ($BED/{node.name}/hafd.log, selected lines):")
        for e in evs:
            try:
                ts = datetime.datetime.fromisoformat(e["timestamp"]).astimezone().strftime("%H:%M:%S.%f")[:-3]
            except (KeyError, ValueError):
                ts = "?"
            keys = " ".join(f"{k}={e[k]}" for k in SHOWN_KEYS if k in e)
            print(f"    {ts} {e.get('event')} {keys}")
        return evs

    def show_dhclient_log(self) -> None:
        try:
            lines = (self.bed.dir / "dhclient.log").read_text(errors="replace").splitlines()
        except OSError:
            return
        new, self.dhclient_seen = lines[self.dhclient_seen:], len(lines)
        keep = [ln for ln in new if ln.startswith(("DHCP", "bound to"))]
        if keep:
            self.say("  dhclient's own log ($BED/dhclient.log):")
            for line in keep:
                print(f"    {line}")

    # -- the steps ---------------------------------------------------------------

    def build(self) -> None:
        bed = self.bed
        self.step("Build the test bed",
                  "Two nodes, a DHCP client and a switch, each in a network namespace of its own; nothing is\n"
                  "added to this machine's own network, and the names carry this run's prefix:\n\n"
                  f"    nodeone ({bed.one.ns})                         nodetwo ({bed.two.ns})\n"
                  "    eth1 10.10.100.1  --- bridge ha  ---  eth1 10.10.100.2     HA link 1: heartbeats\n"
                  "    eth3 10.10.103.1  --- bridge ha2 ---  eth3 10.10.103.2     HA link 2: heartbeats\n"
                  "    eth2 10.10.102.11 --- bridge lan ---  eth2 10.10.102.12    client side: the VIP 10.10.101.1\n"
                  f"                              |          (bridges in {bed.sw})\n"
                  f"                  client ({bed.cli}) eth0: no address, it asks DHCP\n\n"
                  "Each node also gets a private mount namespace and root (/etc/hafd, /var/lib/hafd, /run/hafd,\n"
                  "/data are its own). There is no DRBD kernel module here: one ext4 image on a loop device is the\n"
                  "replicated disk, both nodes see it as /dev/drbd/by-res/r0, and a drbdadm stand-in keeps the DRBD\n"
                  "state they share (it refuses a second Primary, as DRBD does). dhcpd's leases file lives on that\n"
                  "disk, in /data: that is why a client keeps its address when the service moves.")
        t0 = time.monotonic()
        try:
            bed.build()
        except TestbedError as e:
            raise DemoFailed(f"building the test bed failed: {e}") from None
        self.check(True, f"built in {time.monotonic() - t0:.1f}s: namespaces {', '.join(bed.namespaces)}, "
                         f"disk {bed.loop}")
        self.say(f"\n  (shorthands used below: BED={bed.dir}  CLI={bed.cli}\n"
                 f"   ONE=\"nsenter -t {bed.one.holder_pid} -m -n\"  TWO=\"nsenter -t {bed.two.holder_pid} -m -n\"\n"
                 "   $ONE/$TWO run a command inside that node: its network and its mount namespace)")
        self.run(["ip", "-n", bed.one.ns, "-br", "-4", "addr"], note="nodeone's interfaces")
        self.say("\nBoth nodes have the same hafd.yaml (the product's default timings: a heartbeat every 25 ms\n"
                 "on each link, a peer is lost after 0.36 s without one). hafd knows which node it is from\n"
                 "the link addresses it finds on the machine:")
        self.run(bed.one.enter("cat", "/etc/hafd/hafd.yaml"))
        res = self.run(bed.one.enter(HAFD, "--check-config", "/etc/hafd/hafd.yaml"), show_output=False)
        self.must(res.returncode == 0 and "local node nodeone" in res.stdout,
                  "`hafd --check-config` accepts it (local node nodeone)")

    def start(self) -> None:
        bed = self.bed
        self.step("Start hafd on both nodes",
                  "Each node runs `hafd --config /etc/hafd/hafd.yaml`, as an operator (or systemd) would. They\n"
                  "hear each other's heartbeats, agree that nodeone (priority 100) is preferred, and nodeone\n"
                  "starts drbd -> data (/data) -> vip -> dhcpd in dependency order.")
        for node in (bed.one, bed.two):
            self.say(f"$ {self.shown(node.enter(HAFD, '--config', '/etc/hafd/hafd.yaml', '--log-format', 'json'))}"
                     f" >>$BED/{node.name}/hafd.log 2>&1 &")
        t0 = time.monotonic()
        bed.start()
        try:
            bed.wait_roles(bed.one, ROLES_TIMEOUT)
        except TestbedError as e:
            raise DemoFailed(f"the cluster did not come up: {e}") from None
        self.check(True, f"nodeone active with every resource started, nodetwo standby "
                         f"({time.monotonic() - t0:.1f}s after the start)")
        for node in (bed.one, bed.two):
            self.say(f"\n`hafctl status` on {node.name}:")
            res = self.run(node.enter(HAFCTL, "status"))
            self.check(res.returncode == 0 and f"node {node.name} is" in res.stdout, f"{node.name}'s status shown")
        self.say("(The warnings are expected: this demo configures neither fencing nor a tiebreaker; scenario 7\n"
                 " of the test suite covers both.)")
        one, two = bed.one.serving(), bed.two.serving()
        self.check(all(one.values()), "the kernel agrees: nodeone has the VIP, /data mounted, dhcpd running, DRBD Primary")
        self.check(not any(two.values()), "... and none of it runs on nodetwo")

    def first_lease(self) -> None:
        bed = self.bed
        self.step("The client gets a lease",
                  "Debian's real dhclient in the client namespace. Its -sf script only records what dhclient\n"
                  "hands it, so nothing on this machine is reconfigured. Each node's dhcpd.conf sets a different\n"
                  "domain-name (nodeone or nodetwo): that tells us which node answered, because both use the\n"
                  "VIP 10.10.101.1 as their server identifier.")
        self.say(f"$ ip netns exec $CLI dhclient -4 -d -1 -sf $BED/dhclient-script -lf $BED/dhclient.leases "
                 f"-pf $BED/dhclient.pid eth0")
        try:
            self.lease = bed.dhclient()
        except TestbedError as e:
            raise DemoFailed(str(e)) from None
        self.show_dhclient_log()
        lease = self.lease
        self.must(lease["reason"] == "BOUND" and lease["server"] == VIP and lease["ip"].startswith("10.10.101."),
                  f"lease of {lease['ip']} from server {lease['server']} ({lease['reason']})")
        self.check(lease["domain"] == "nodeone", f"answered by {lease['domain']}")
        self.say("\ndhcpd wrote the lease to /data, the replicated disk:")
        self.run(bed.one.enter("grep", "-A", "3", f"^lease {lease['ip']} ", "/data/dhcpd.leases"))

    def crash(self) -> None:
        bed = self.bed
        self.step("Crash the active node",
                  "First a prober starts in the client namespace: it sends a DHCPDISCOVER every 20 ms and\n"
                  "REQUESTs every OFFER, so it sees the first DHCPACK after the crash to the millisecond\n"
                  "(dhclient retries in whole seconds, far too coarse to measure a takeover).")
        self.say(f"$ ip netns exec $CLI python3 integration/prober.py eth0 --interval 0.02 &")
        self.prober = Prober.start(bed.spawn, bed.cli, interval=0.02)
        first = self.prober.wait_for(lambda e: e["type"] == "ACK", 5.0)
        self.must(first is not None and first.get("domain") == "nodeone", "the prober gets ACKs from nodeone")
        hafd_pid = bed.one.hafd.pid if bed.one.hafd else None
        dhcpd_pid = bed.one.dhcpd_pid()
        self.say("\nNow nodeone dies as in a power loss: hafd and dhcpd are killed with SIGKILL (no chance to\n"
                 "say goodbye), its links go down, and its namespace's mounts and DRBD go with it:")
        self.say(f"$ kill -9 {hafd_pid} {dhcpd_pid}    # nodeone's hafd and dhcpd")
        self.say(f"$ for d in eth1 eth2 eth3; do ip -n {bed.one.ns} link set $d down; done")
        self.say(f"$ kill -9 {bed.one.holder_pid}    # nodeone's mount namespace holder: /data is gone with it")
        m2 = bed.two.mark_log()
        self.wall_crash = time.time()
        self.t_crash = bed.crash(bed.one)

        def takeover_done() -> bool:
            s = bed.two.status()
            return bool(s and s.get("role") == "active"
                        and all(r.get("state") == "started" for r in s["resources"].values()))

        ack = self.prober.wait_for(lambda e: e["type"] == "ACK" and e.get("domain") == "nodetwo",
                                   TAKEOVER_TIMEOUT, since=self.t_crash)
        if ack is None or not wait_until(takeover_done, TAKEOVER_TIMEOUT, 0.05):
            raise DemoFailed("nodetwo did not take over within "
                             f"{TAKEOVER_TIMEOUT:g}s\n{bed.describe()}")
        took = (ack["mono"] - self.t_crash) * 1000
        before = [e for e in self.prober.snapshot(kind="ACK") if e["mono"] < self.t_crash]
        self.check(True, f"takeover time: the first DHCPACK from nodetwo came {took:.0f} ms after the crash")
        if before:
            self.say(f"  (the prober's last ACK from nodeone came {(self.t_crash - before[-1]['mono']) * 1000:.0f} ms "
                     "before the crash; nothing answered its DISCOVERs in between)")
        late = [e for e in self.prober.snapshot(since=self.t_crash) if e.get("domain") == "nodeone"
                and e["mono"] > self.t_crash + 0.05]
        self.check(not late, "no answer from nodeone after the crash")
        self.check(ack.get("server_id") == VIP, f"nodetwo answers as {VIP}")
        self.show_log(bed.two, m2, ("role_changed", "operation"))

    def takeover(self) -> None:
        bed = self.bed
        self.step("The takeover, as nodetwo tells it",
                  "`hafctl status` on the survivor: nodeone is LOST, the resources run on nodetwo, and the\n"
                  "\"Last takeover\" section is the timeline, measured from the moment nodetwo declared nodeone\n"
                  "lost (one deadtime, 0.36 s, after its last heartbeat).")
        res = self.run(bed.two.enter(HAFCTL, "status"))
        self.check(res.returncode == 0 and "Last takeover:" in res.stdout and "nodeone lost" in res.stdout,
                   "status shows the last takeover: nodeone lost")
        s = bed.two.status() or {}
        tl = s.get("last_failover") or {}
        self.check(bool(tl.get("finished")) and (s.get("nodes") or {}).get("nodeone", {}).get("state") == "lost",
                   "the takeover finished; nodeone is lost")
        facts = bed.two.serving()
        self.check(all(facts.values()) and not bed.one.powered,
                   "the kernel agrees: VIP, /data, dhcpd and DRBD Primary on nodetwo; nodeone is off")
        started = tl.get("started_at")
        ack = self.prober.wait_for(lambda e: e["type"] == "ACK" and e.get("domain") == "nodetwo", 1.0,
                                   since=self.t_crash) if self.prober else None
        if isinstance(started, (int, float)):
            self.say("\nThe whole story on one clock (milliseconds after the crash):")
            trig = (started - self.wall_crash) * 1000
            rows = [(0.0, "nodeone crashed (kill -9, links down)")]
            for ph in tl.get("phases", []):
                at = ph.get("at")
                if isinstance(at, (int, float)):
                    what = {"trigger": "nodetwo: nodeone lost (no heartbeat for the deadtime, 0.36 s)",
                            "elected": "nodetwo: elected",
                            "active": "nodetwo: active, every resource started"}.get(ph["name"], f"nodetwo: {ph['name']}")
                    rows.append((trig + at * 1000, what))
            if ack is not None:
                rows.append(((ack["mono"] - self.t_crash) * 1000, "the prober's first DHCPACK from nodetwo"))
            for ms, what in sorted(rows, key=lambda r: r[0]):
                print(f"    +{ms:6.0f} ms  {what}")
            self.say("  (hafd's times are wall-clock to the millisecond, the prober's monotonic: a few ms apart)")

    def renew(self) -> None:
        bed = self.bed
        self.step("The client keeps its address",
                  "nodetwo mounted the same disk, so its dhcpd started from the leases file nodeone's dhcpd\n"
                  "wrote, with the client's lease in it:")
        self.run(bed.two.enter("grep", "-A", "3", f"^lease {self.lease['ip']} ", "/data/dhcpd.leases"))
        self.say("\nThe client asks again for the address it holds (dhclient starts from its lease file, as\n"
                 "after a reboot; a renewal asks the same way), and nodetwo confirms it:")
        self.say("$ ip netns exec $CLI dhclient -4 -d -1 -sf $BED/dhclient-script -lf $BED/dhclient.leases "
                 "-pf $BED/dhclient.pid eth0")
        try:
            again = bed.dhclient()
        except TestbedError as e:
            raise DemoFailed(str(e)) from None
        self.show_dhclient_log()
        self.check(again["ip"] == self.lease["ip"] and again["server"] == VIP,
                   f"same address {again['ip']} from server {again['server']} ({again['reason']})")
        self.check(again["domain"] == "nodetwo", f"answered by {again['domain']}")

    # -- cleaning up -----------------------------------------------------------------

    def cleanup(self) -> list[str]:
        bed = self.bed
        print("\n=== Cleaning up ===", flush=True)
        namespaces, loop = list(bed.namespaces), bed.loop
        problems = bed.close()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        stray = [ln.split()[0] for ln in left.splitlines() if ln.startswith(bed.prefix + "-")]
        if stray:
            problems.append(f"namespaces still there: {', '.join(stray)}")
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=10).stdout
        if str(bed.dir) in loops:
            problems.append(f"a loop device still uses {bed.image}")
        if bed.dir.exists() and not os.environ.get("HAFD_TESTBED_KEEP"):
            problems.append(f"{bed.dir} still exists")
        for p in problems:
            print(f"  PROBLEM: {p}")
        if not problems:
            print(f"  killed every process of the run, removed namespaces {', '.join(namespaces) or '-'}, "
                  f"loop device {loop or '-'}, {bed.dir}", flush=True)
        return problems


def by_hand(prefix: str) -> str:
    return f"""
=== Doing it by hand, step by step ===
The same steps in the hafd venv's Python, as root (each line is one step; the test bed's
names differ per run, like {prefix}-one above):
  cd {REPO} && /opt/hafd-venv/bin/python -i -c 'from integration.testbed import Testbed; from integration.prober import Prober'
  >>> bed = Testbed(); bed.build()                    # namespaces, disk, both nodes' /etc/hafd
  >>> bed.start(); bed.wait_roles(bed.one)            # hafd on both; nodeone active
  >>> print(bed.one.hafctl("status").stdout); print(bed.two.hafctl("status").stdout)
  >>> bed.dhclient()                                  # a lease from 10.10.101.1 (domain: nodeone)
  >>> p = Prober.start(bed.spawn, bed.cli)            # a DHCPDISCOVER every 20 ms
  >>> t = bed.crash(bed.one)                          # kill -9 hafd and dhcpd, links down, power off
  >>> ack = p.wait_for(lambda e: e["type"] == "ACK" and e["domain"] == "nodetwo", 10, since=t); ack["mono"] - t
  >>> print(bed.two.hafctl("status").stdout)          # the "Last takeover" timeline
  >>> bed.dhclient()                                  # the same address, now from nodetwo
  >>> bed.close()                                     # removes everything (also runs when Python exits)
Between steps, a second root shell can look inside a node (bed.one.holder.pid and bed.dir give the values):
  ONE="nsenter -t <holder pid> -m -n"; $ONE hafctl status; $ONE findmnt /data; $ONE cat /etc/hafd/hafd.yaml
  tail -f <bed.dir>/nodeone/hafd.log                  # hafd's JSON log
Run this demo again without setup: /opt/hafd-venv/bin/python integration/demo.py [--step]
(--step pauses before each step; bash scripts/demo.sh --single runs the one-node demo).
"""


def preflight() -> str | None:
    if os.geteuid() != 0:
        return "the demo needs root (network namespaces, loop devices, mounts): run it with sudo"
    missing = [t for t in NEEDED if shutil.which(t) is None]
    for path in (DHCPD, HAFD, HAFCTL, *drbd_programs()):
        if not os.access(path, os.X_OK):
            missing.append(path)
    if missing:
        return f"missing: {', '.join(missing)} (run `bash scripts/setup.sh` first)"
    return None


def main(argv: Sequence[str]) -> int:
    if any(a not in ("--step",) for a in argv):
        print("usage: demo.py [--step]", file=sys.stderr)
        return 2
    problem = preflight()
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2

    on_signals_interrupt()
    demo = Demo(pause="--step" in argv)
    print(f"hafd two-node demo (test bed {demo.bed.prefix})\n"
          "A two-node DHCP cluster (DRBD -> /data -> VIP -> dhcpd) loses its active node; the other takes\n"
          "over and the client keeps its address. Lines starting with $ are the commands run (or their\n"
          "equivalent); 'ok:' marks what the demo checked. It takes a few seconds.")
    steps = [demo.build, demo.start, demo.first_lease, demo.crash, demo.takeover, demo.renew]
    return run_steps(demo, steps, lambda: by_hand(demo.bed.prefix))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
