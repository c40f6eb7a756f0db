#!/usr/bin/env python3
"""A guided single-node demo of hafd: DHCP service with a virtual IP and a data disk.

Why it is built this way: the demo must run on any fresh Debian 12 machine without
touching it.  So the "node" is a network namespace created here (its own eth1, eth2,
addresses), and hafd runs in a private mount namespace held open by a long-lived
holder process (`ip netns exec` alone makes a fresh mount namespace per call, which
could not keep /data mounted between commands).  A loop device stands in for the
replicated disk: there is no DRBD kernel module here, so the drbd resource is left
out.  Everything the demo creates is removed at the end, also on failure or Ctrl-C.

Run it as root with the hafd venv's python (scripts/demo.sh does that):
    /opt/hafd-venv/bin/python integration/demo_single.py
Exit status: 0 if every step behaved as expected, 1 if one did not, 2 if the machine
lacks something, 130 if interrupted.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration.demorun import DemoFailed, on_signals_interrupt, run_steps  # noqa: E402
from integration.testbed import alive, wait_until  # noqa: E402  (one copy of the bounded poll)

PREFIX = "hafd-demo-"
BIN = Path(sys.executable).parent
NEEDED = ("ip", "nsenter", "unshare", "losetup", "mkfs.ext4", "truncate", "findmnt")
DHCPD = "/usr/sbin/dhcpd"
READY_TIMEOUT = 20.0  # hafd up and every resource started
STEP_TIMEOUT = 10.0  # one expected change (a restart, a standby, ...)
CMD_TIMEOUT = 20.0  # any single command

DHCPD_CONF = """\
authoritative;
server-identifier 10.10.101.1;
shared-network demo {
  subnet 10.10.102.0 netmask 255.255.255.0 {}
  subnet 10.10.101.0 netmask 255.255.255.0 { range 10.10.101.100 10.10.101.200; }
}
"""

CONFIG = """\
# hafd demo: one node, the DHCP service of config/hafd.yaml without DRBD.
cluster:
  name: demo
  state_dir: {d}/state
  control_socket: {d}/hafd.sock

nodes:
  nodeone:
    priority: 100
    links: [10.10.100.1]          # on eth1: that is how hafd knows it is nodeone

resources:
  data:
    type: filesystem              # on a real cluster: /dev/drbd/by-res/r0, requires [drbd]
    device: {loop}
    directory: {d}/data
    fstype: ext4
  vip:
    type: ipaddr
    address: 10.10.101.1/24
    interface: eth2
  dhcpd:
    type: process                 # hafd runs dhcpd itself and hears at once when it dies
    command: [{dhcpd}, -4, -f, -d, -cf, {d}/dhcpd.conf, -lf, {d}/data/dhcpd.leases, -pf, {d}/dhcpd.pid, eth2]
    ready: {{udp_port: 67}}
    requires: [data, vip]
    monitor_interval: 2
    migration_threshold: 1
"""

# hafd log events worth showing a newcomer, and the keys to show with them.
SHOWN_KEYS = ("resource", "op", "outcome", "duration", "error", "pid", "status", "old", "new", "reason",
              "resources_left_running", "errors", "why", "node", "command", "role", "changed")


def tool(name: str) -> str:
    """hafd/hafctl from the venv that runs this demo (setup.sh also links them into /usr/local/bin)."""
    p = BIN / name
    return str(p) if p.exists() else (shutil.which(name) or name)


class Demo:
    def __init__(self) -> None:
        self.name = PREFIX + secrets.token_hex(4)
        self.dir = Path("/tmp") / self.name
        self.cfg = self.dir / "hafd.yaml"
        self.state = self.dir / "state"
        self.data = self.dir / "data"
        self.image = self.dir / "disk.img"
        self.hafd_log = self.dir / "hafd.log"
        self.ns_made = False
        self.holder: subprocess.Popen[bytes] | None = None
        self.hafd: subprocess.Popen[bytes] | None = None
        self.loop: str | None = None
        self.failures: list[str] = []
        self.log_seen = 0  # hafd log events already shown

    # -- output ----------------------------------------------------------------

    def step(self, n: int, title: str, text: str = "") -> None:
        print(f"\n=== {n}. {title} ===", flush=True)
        if text:
            print(text, flush=True)

    def say(self, text: str) -> None:
        print(text, flush=True)

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            print(f"  ok: {what}", flush=True)
        else:
            print(f"  UNEXPECTED: {what}", flush=True)
            self.failures.append(what)
        return ok

    def must(self, ok: bool, what: str) -> None:
        if not self.check(ok, what):
            raise DemoFailed(what)

    def shown(self, argv: Sequence[str]) -> str:
        """The command as the reader would type it, with the $DEMO and $NODE shorthands."""
        words = list(argv)
        prefix = ""
        if self.holder and words[:5] == ["nsenter", "-t", str(self.holder.pid), "-m", "-n"]:
            prefix, words = "$NODE ", words[5:]
        elif self.holder and words[:4] == ["nsenter", "-t", str(self.holder.pid), "-n"]:
            prefix, words = "$NODE_NET ", words[4:]
        nice = {tool("hafd"): "hafd", tool("hafctl"): "hafctl", sys.executable: "python3"}
        words = [nice.get(w, w) for w in words]
        return prefix + shlex.join(words).replace(str(self.dir), "$DEMO")

    # -- running things --------------------------------------------------------

    def run(self, argv: Sequence[str], *, show: bool = True, output: bool = True,
            timeout: float = CMD_TIMEOUT, note: str = "") -> subprocess.CompletedProcess[str]:
        if show:
            self.say(f"$ {self.shown(argv)}" + (f"    # {note}" if note else ""))
        try:
            res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"{self.shown(argv)} did not finish within {timeout:g}s") from None
        if show and output:
            for line in (res.stdout + res.stderr).rstrip("\n").splitlines():
                print(f"    {line}")
            if res.returncode != 0:
                print(f"    (exit status {res.returncode})")
        return res

    def sh(self, argv: Sequence[str], **kw: Any) -> str:
        """A set-up command that must succeed."""
        res = self.run(argv, **kw)
        if res.returncode != 0:
            raise DemoFailed(f"{self.shown(argv)} failed (exit {res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def node(self, *argv: str) -> list[str]:
        """argv run inside the node: its network namespace and hafd's private mount namespace."""
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", *argv]

    def hafctl(self, *args: str, show: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.node(tool("hafctl"), "--config", str(self.cfg), *args), show=show)

    def status(self) -> dict[str, Any] | None:
        # By socket, not --config: the reload step breaks the config file on purpose.
        res = self.run(self.node(tool("hafctl"), "--socket", str(self.dir / "hafd.sock"), "status", "--json"),
                       show=False)
        try:
            return json.loads(res.stdout) if res.returncode == 0 else None
        except ValueError:
            return None

    def wait_status(self, cond: Callable[[dict[str, Any]], bool], what: str,
                    timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        last: dict[str, Any] | None = None

        def probe() -> bool:
            nonlocal last
            if self.hafd is not None and self.hafd.poll() is not None:
                raise DemoFailed(f"hafd exited (status {self.hafd.returncode}) while waiting for: {what}")
            last = self.status()
            return last is not None and cond(last)

        if not wait_until(probe, timeout, 0.1):
            self.show_log(everything=True)
            raise DemoFailed(f"timed out after {timeout:g}s waiting for: {what}; last status: {json.dumps(last)}")
        assert last is not None
        return last

    # -- facts about the node --------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        out = []
        try:
            text = self.hafd_log.read_text(errors="replace")
        except OSError:
            return []
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def show_log(self, *, everything: bool = False, only: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Print the hafd log events written since the last call; return them."""
        evs = self.events()
        new, self.log_seen = evs[self.log_seen:], len(evs)
        if not new:
            return new
        self.say(f"  hafd's log ($DEMO/hafd.log, {'all' if everything else 'new'} lines{', selected' if only else ''}):")
        for e in new:
            if only and e.get("event") not in only and not everything:
                continue
            try:
                ts = datetime.datetime.fromisoformat(e["timestamp"]).astimezone().strftime("%H:%M:%S.%f")[:-3]
            except (KeyError, ValueError):
                ts = "?"
            keys = " ".join(f"{k}={e[k]}" for k in SHOWN_KEYS if k in e)
            print(f"    {ts} {e.get('level', ''):7} {e.get('event')} {keys}")
        return new

    def dhcpd_pid(self) -> int | None:
        """From hafd's record of the process it supervises (JSON: pid, starttime, argv)."""
        try:
            pid = int(json.loads((self.state / "dhcpd.pid").read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if alive(pid) else None

    def vip_on_eth2(self) -> bool:
        res = self.run(["ip", "-j", "-n", self.name, "-4", "addr", "show", "dev", "eth2"], show=False)
        try:
            addrs = [a["local"] + "/" + str(a["prefixlen"]) for link in json.loads(res.stdout or "[]")
                     for a in link.get("addr_info", [])]
        except (ValueError, KeyError):
            return False
        return "10.10.101.1/24" in addrs

    def mounted(self, pid: int | None = None) -> bool:
        """Whether $DEMO/data is a mount point in hafd's mount namespace (the holder's), or in pid's."""
        who = pid if pid is not None else (self.holder.pid if self.holder else None)
        if who is None:
            return False
        try:
            with open(f"/proc/{who}/mountinfo") as f:
                return any(line.split()[4] == str(self.data) for line in f if len(line.split()) > 4)
        except OSError:
            return False

    # -- the steps ---------------------------------------------------------------

    def setup_node(self) -> None:
        self.step(1, "A node in a network namespace",
                  "hafd finds out which node it is from the addresses on the host, as Corosync does: the\n"
                  "namespace gets eth1 with nodeone's link address 10.10.100.1 and eth2, the client side,\n"
                  "with a fixed address 10.10.102.10. Nothing is added to this machine's own network.")
        os.mkdir(self.dir, 0o700)
        self.state.mkdir()
        self.data.mkdir()
        self.say(f"  (shorthand used below: DEMO={self.dir})")
        ns = self.name
        self.ns_made = True  # before the command: a signal may land just after it
        self.sh(["ip", "netns", "add", ns])
        self.sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        self.sh(["ip", "-n", ns, "link", "add", "eth1", "type", "veth", "peer", "name", "ha-peer"])
        self.sh(["ip", "-n", ns, "link", "add", "eth2", "type", "veth", "peer", "name", "client0"])
        for dev in ("eth1", "ha-peer", "eth2", "client0"):
            self.sh(["ip", "-n", ns, "link", "set", dev, "up"], show=dev.startswith("eth"))
        self.sh(["ip", "-n", ns, "addr", "add", "10.10.100.1/24", "dev", "eth1"])
        self.sh(["ip", "-n", ns, "addr", "add", "10.10.102.10/24", "dev", "eth2"])
        self.say("\nA holder process keeps a private mount namespace alive, so /data mounted by hafd stays\n"
                 "invisible to the rest of the machine; every command for the node enters it with nsenter.")
        argv = ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sleep", "infinity"]
        self.say(f"$ {shlex.join(argv)} &")
        self.holder = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL)
        own = os.readlink("/proc/self/ns/mnt")

        def entered() -> bool:
            try:
                return (os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != own  # type: ignore[union-attr]
                        and Path(f"/proc/{self.holder.pid}/comm").read_text().strip() == "sleep")  # type: ignore[union-attr]
            except OSError:
                return False

        self.must(wait_until(entered, 5.0), f"holder running in its own mount namespace (pid {self.holder.pid})")
        self.say(f"  (shorthands used below: NODE=\"nsenter -t {self.holder.pid} -m -n\" enters the node's network\n"
                 f"   and mount namespaces; NODE_NET=\"nsenter -t {self.holder.pid} -n\" only its network)")

    def setup_disk(self) -> None:
        self.step(2, "A stand-in for the replicated disk",
                  "There is no DRBD on this machine, so the demo leaves out the drbd resource and uses an ext4\n"
                  "image on a loop device instead of /dev/drbd0. The disk already holds dhcpd's (empty)\n"
                  "leases file, as a real cluster's /data would after installation.")
        self.sh(["truncate", "-s", "32M", str(self.image)])
        seed = self.dir / "seed"
        seed.mkdir()
        (seed / "dhcpd.leases").touch()
        self.sh(["mkfs.ext4", "-q", "-d", str(seed), str(self.image)])
        self.loop = self.sh(["losetup", "--find", "--show", str(self.image)]).strip()
        self.must(self.loop.startswith("/dev/loop"), f"loop device {self.loop} attached")

    def write_config(self) -> None:
        self.step(3, "The configuration",
                  "Three resources: the filesystem, the virtual IP and dhcpd, which requires both, so hafd\n"
                  "starts them in that order and stops them in reverse.")
        (self.dir / "dhcpd.conf").write_text(DHCPD_CONF)
        self.cfg.write_text(CONFIG.format(d=self.dir, loop=self.loop, dhcpd=DHCPD))
        self.say(f"$ cat $DEMO/hafd.yaml")
        for line in self.cfg.read_text().splitlines():
            print(f"    {line.replace(str(self.dir), '$DEMO')}")
        res = self.run(self.node(tool("hafd"), "--check-config", str(self.cfg)))
        self.must(res.returncode == 0 and "local node nodeone" in res.stdout, "the configuration is valid, local node nodeone")

    def start_hafd(self) -> None:
        argv = self.node(tool("hafd"), "--config", str(self.cfg), "--log-format", "json")
        self.say(f"$ {self.shown(argv)} 2>>$DEMO/hafd.log &")
        with open(self.hafd_log, "ab") as logf:
            self.hafd = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        s = self.wait_status(lambda s: s.get("role") == "active", "hafd active with every resource started",
                             READY_TIMEOUT)
        self.check(all(r.get("state") == "started" for r in s["resources"].values()),
                   f"hafd (pid {self.hafd.pid}) is active: " +
                   ", ".join(f"{n} {r.get('state')}" for n, r in s["resources"].items()))

    def first_start(self) -> None:
        self.step(4, "Start hafd",
                  "hafd probes what already runs, then starts data, vip and dhcpd in dependency order.")
        self.start_hafd()
        self.show_log(only=("hafd_started", "ready", "operation", "role_changed", "process_started"))
        self.say("")
        self.hafctl("status")
        self.say("\nThe virtual IP is on eth2:")
        self.run(["ip", "-n", self.name, "-4", "addr", "show", "eth2"])
        self.check(self.vip_on_eth2(), "10.10.101.1/24 is on eth2")
        self.say("\nThe disk is mounted inside the node, and only there:")
        self.run(self.node("findmnt", str(self.data)))
        self.check(self.mounted(), "$DEMO/data is mounted in the node's mount namespace")
        self.run(["findmnt", str(self.data)])
        self.check(not self.mounted(os.getpid()), "... and not in this machine's")
        pid = self.dhcpd_pid()
        self.say("\ndhcpd runs, started and watched by hafd (its output goes to $DEMO/state/dhcpd.log):")
        if self.check(pid is not None, f"dhcpd runs (pid {pid})"):
            self.run(["ps", "-o", "pid,ppid,args", "-p", str(pid)])
        self.run(["tail", "-n", "3", str(self.state / "dhcpd.log")])
        self.say("\nA client on the other end of eth2 asks for an address (one DHCPDISCOVER):")
        res = self.run(["nsenter", "-t", str(self.holder.pid), "-n", sys.executable,  # type: ignore[union-attr]
                        str(Path(__file__).resolve()), "--dhcp-probe", "client0"])
        self.check(res.returncode == 0 and "server 10.10.101.1" in res.stdout,
                   "dhcpd answers, naming the virtual IP as its server")

    def crash(self) -> None:
        self.step(5, "dhcpd crashes",
                  "hafd is dhcpd's parent: it hears of the crash the instant it happens and restarts it\n"
                  "(migration_threshold 1: one local restart; a second failure would give up on dhcpd).")
        old = self.dhcpd_pid()
        self.must(old is not None, "dhcpd runs before the crash")
        self.run(["kill", "-9", str(old)], note="dhcpd's PID, from $DEMO/state/dhcpd.pid")
        self.wait_status(lambda s: s["resources"]["dhcpd"]["failures"] == 1
                             and s["resources"]["dhcpd"]["state"] == "started"
                             and self.dhcpd_pid() not in (None, old), "dhcpd restarted")
        new = self.dhcpd_pid()
        evs = self.show_log(only=("resource_exited", "process_exited_unexpectedly", "operation", "process_ready"))
        t_exit = next((e["timestamp"] for e in evs if e.get("event") in ("resource_exited", "process_exited_unexpectedly")), None)
        t_ready = next((e["timestamp"] for e in evs if e.get("event") == "operation" and e.get("resource") == "dhcpd"
                        and e.get("op") == "start" and e.get("outcome") == "ok"), None)
        took = ""
        if t_exit and t_ready:
            ms = (datetime.datetime.fromisoformat(t_ready) - datetime.datetime.fromisoformat(t_exit)).total_seconds() * 1000
            took = f" {ms:.0f} ms after the crash"
        self.check(new is not None and new != old, f"hafd restarted dhcpd{took} (pid {old} -> {new}), failures 1")
        self.say("")
        self.hafctl("status")
        self.say("\nThe failure count is what decides when hafd gives up; `cleanup` forgets it:")
        self.hafctl("cleanup", "dhcpd")
        self.wait_status(lambda s: s["resources"]["dhcpd"]["failures"] == 0, "failures forgotten")
        self.show_log(only=("operator_request",))
        self.check(True, "dhcpd failures back to 0")

    def standby(self) -> None:
        self.step(6, "Standby and back",
                  "`hafctl standby` takes the node out of service: everything stops, in reverse order.")
        pid = self.dhcpd_pid()
        self.hafctl("standby")
        self.wait_status(lambda s: s.get("role") == "standby", "standby")
        evs = self.show_log(only=("operator_request", "operation", "role_changed"))
        stops = [e["resource"] for e in evs if e.get("event") == "operation" and e.get("op") == "stop"]
        self.check(stops.index("dhcpd") == 0 and set(stops) == {"dhcpd", "data", "vip"} if stops else False,
                   f"stopped in reverse order: {', '.join(stops)}")
        self.check(pid is not None and not alive(pid) and not self.vip_on_eth2() and not self.mounted(),
                   "dhcpd ended, 10.10.101.1 removed from eth2, $DEMO/data unmounted")
        self.say("")
        self.hafctl("unstandby")
        self.wait_status(lambda s: s.get("role") == "active", "active again")
        evs = self.show_log(only=("operation",))
        starts = [e["resource"] for e in evs if e.get("event") == "operation" and e.get("op") == "start"]
        self.check(starts[-1:] == ["dhcpd"] and self.dhcpd_pid() is not None and self.vip_on_eth2() and self.mounted(),
                   f"back in service, started in order: {', '.join(starts)}")

    def reload(self) -> None:
        self.step(7, "A mistake in the configuration",
                  "A typo in hafd.yaml, then `hafctl reload`: hafd rejects the file, names the line, and\n"
                  "changes nothing.")
        good = self.cfg.read_text()
        pid = self.dhcpd_pid()
        self.say("$ sed -i 's/requires: \\[data, vip\\]/requires: [data, vpi]/' $DEMO/hafd.yaml")
        self.cfg.write_text(good.replace("requires: [data, vip]", "requires: [data, vpi]"))
        # hafctl finds the socket through the config file; while that file is broken it cannot
        # read it, so name the socket (the same as cluster.control_socket) explicitly.
        self.say("(hafctl learns the socket's path from the config file; while the file is broken, name it)")
        res = self.run(self.node(tool("hafctl"), "--socket", str(self.dir / "hafd.sock"), "reload"))
        self.check(res.returncode == 1 and f"{self.cfg}:" in res.stderr and "vpi" in res.stderr,
                   "reload rejected with file:line (exit 1)")
        s = self.status()
        self.check(s is not None and s.get("role") == "active" and self.dhcpd_pid() == pid,
                   f"still active, dhcpd untouched (pid {pid})")
        self.say("\nFixed again:")
        self.cfg.write_text(good)
        res = self.hafctl("reload")
        self.check(res.returncode == 0, "the corrected file is accepted")
        self.show_log(only=("reload_rejected", "reloaded"))

    def restart(self) -> None:
        self.step(8, "Restarting hafd leaves the service running",
                  "On SIGTERM hafd exits but leaves the resources running (so `systemctl restart hafd` does\n"
                  "not interrupt DHCP); the next hafd finds them and adopts them.")
        assert self.hafd is not None
        pid = self.dhcpd_pid()
        self.run(["kill", "-TERM", str(self.hafd.pid)], note="hafd's PID (systemctl restart hafd does the same)")
        try:
            rc = self.hafd.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"hafd did not exit within {STEP_TIMEOUT:g}s of SIGTERM") from None
        self.show_log(only=("hafd_stopped",))
        self.check(rc == 0, "hafd exited cleanly (status 0)")
        self.check(pid is not None and alive(pid) and self.vip_on_eth2() and self.mounted(),
                   f"dhcpd (pid {pid}), the VIP and $DEMO/data are still there")
        res = self.hafctl("status")
        self.check(res.returncode == 3, "hafctl says hafd is not running (exit 3)")
        self.say("")
        self.start_hafd()
        evs = self.show_log(only=("hafd_started", "process_adopted", "operation", "ready", "role_changed"))
        ops = [e for e in evs if e.get("event") == "operation" and e.get("op") in ("start", "stop")]
        self.check(self.dhcpd_pid() == pid and not ops, f"adopted: dhcpd kept its PID {pid}, nothing was restarted")

    def finish(self) -> None:
        self.step(9, "Stop everything",
                  "To stop the service and hafd: standby (stops the resources), then SIGTERM.")
        self.hafctl("standby")
        self.wait_status(lambda s: s.get("role") == "standby", "standby")
        self.show_log(only=("operation",))
        self.check(self.dhcpd_pid() is None and not self.vip_on_eth2() and not self.mounted(), "all resources stopped")
        assert self.hafd is not None
        self.run(["kill", "-TERM", str(self.hafd.pid)])
        try:
            rc = self.hafd.wait(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"hafd did not exit within {STEP_TIMEOUT:g}s of SIGTERM") from None
        self.check(rc == 0, "hafd exited cleanly")

    # -- cleaning up -----------------------------------------------------------------

    def _ours(self, pid: int) -> bool:
        """A PID from a file is only killed if its command line names this demo's directory."""
        try:
            return str(self.dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False

    def cleanup(self) -> list[str]:
        """Undo everything, each part independently, bounded; return what could not be undone."""
        problems: list[str] = []
        print("\n=== Cleaning up ===", flush=True)
        for p in (self.hafd,):
            if p is not None and p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    problems.append(f"hafd pid {p.pid} did not die")
        for pidfile in (self.state / "dhcpd.pid", self.dir / "dhcpd.pid"):
            try:
                text = pidfile.read_text()
                pid = int(json.loads(text)["pid"]) if text.startswith("{") else int(text.split()[0])
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                continue
            if alive(pid) and self._ours(pid):
                print(f"  killing dhcpd pid {pid}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if not wait_until(lambda: not alive(pid), 5.0):
                    problems.append(f"dhcpd pid {pid} did not die")
        if self.holder is not None and self.holder.poll() is None:
            self.holder.kill()
            try:
                self.holder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                problems.append(f"holder pid {self.holder.pid} did not die")
        # With no process left in it, the node's mount namespace is gone and the loop device is free.
        # By image, not only self.loop: a signal may land between losetup and the assignment.
        def attached() -> list[str]:
            r = subprocess.run(["losetup", "-j", str(self.image)], capture_output=True, text=True, timeout=CMD_TIMEOUT)
            return [line.split(":")[0] for line in r.stdout.splitlines() if line.startswith("/dev/")]

        if self.image.exists():
            for dev in attached():
                subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=CMD_TIMEOUT)
            if not wait_until(lambda: not attached(), 5.0, 0.1):
                problems.append(f"loop device {', '.join(attached())} still attached to {self.image}")
        if self.ns_made:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=CMD_TIMEOUT)
            if Path("/run/netns", self.name).exists():
                problems.append(f"namespace {self.name} still exists")
        if self.dir.exists():
            with open("/proc/self/mountinfo") as f:
                busy = [line for line in f if str(self.dir) in line]
            if busy:
                problems.append(f"something is mounted under {self.dir} here; left it in place")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
        for p in problems:
            print(f"  PROBLEM: {p}")
        print(f"  removed namespace {self.name}, loop device {self.loop or '-'}, {self.dir}" if not problems
              else "  cleanup incomplete", flush=True)
        return problems


def by_hand() -> str:
    return """
=== Doing it by hand ===
The same steps in a shell, as root (names are examples; clean up at the end):
  NS=hafd-demo-1; DEMO=/tmp/$NS; mkdir -p $DEMO/state $DEMO/data
  ip netns add $NS; ip -n $NS link set lo up
  ip -n $NS link add eth1 type veth peer name ha-peer
  ip -n $NS link add eth2 type veth peer name client0
  for d in eth1 ha-peer eth2 client0; do ip -n $NS link set $d up; done
  ip -n $NS addr add 10.10.100.1/24 dev eth1; ip -n $NS addr add 10.10.102.10/24 dev eth2
  ip netns exec $NS unshare --mount --propagation private sleep infinity &  HOLDER=$!
  NODE="nsenter -t $HOLDER -m -n"
  truncate -s 32M $DEMO/disk.img; mkdir $DEMO/seed; touch $DEMO/seed/dhcpd.leases
  mkfs.ext4 -q -d $DEMO/seed $DEMO/disk.img; LOOP=$(losetup --find --show $DEMO/disk.img)
  # write $DEMO/dhcpd.conf, and $DEMO/hafd.yaml as printed above with $DEMO and $LOOP spelled out, then:
  $NODE hafd --check-config $DEMO/hafd.yaml
  $NODE hafd --config $DEMO/hafd.yaml &  HAFD=$!  # it logs to the terminal
  $NODE hafctl --config $DEMO/hafd.yaml status
  kill -9 $(python3 -c "import json;print(json.load(open('$DEMO/state/dhcpd.pid'))['pid'])")
  $NODE hafctl --config $DEMO/hafd.yaml standby    # and unstandby, reload, cleanup dhcpd
  # clean up: hafctl standby, kill $HAFD $HOLDER, losetup -d $LOOP, ip netns del $NS, rm -r $DEMO
"""


def dhcp_probe(ifname: str, timeout: float = 3.0) -> int:
    """Send one DHCPDISCOVER out of ifname and print the first OFFER; exit status 0 if one came.

    The answer is read with a packet socket: dhcpd and this client share one namespace,
    and the IP stack would drop a reply whose source (the VIP) is a local address.
    """
    xid = random.getrandbits(32)
    mac = bytes([0x02]) + os.urandom(5)
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4),
                        bytes(4), mac, b"", b"")
    packet = bootp + b"\x63\x82\x53\x63" + bytes([53, 1, 1, 55, 2, 1, 3, 255])
    eth_p_ip = 0x0800
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(eth_p_ip)) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind((ifname, eth_p_ip))
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        tx.bind(("0.0.0.0", 68))
        tx.sendto(packet, ("255.255.255.255", 67))
        print(f"DHCPDISCOVER sent on {ifname} (xid {xid:#010x})")
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            rx.settimeout(left)
            try:
                frame, addr = rx.recvfrom(4096)
            except TimeoutError:
                break
            if addr[2] == socket.PACKET_OUTGOING or len(frame) < 28 or frame[9] != 17:
                continue
            ihl = (frame[0] & 0x0F) * 4
            dport = struct.unpack("!H", frame[ihl + 2:ihl + 4])[0]
            msg = frame[ihl + 8:]
            if dport != 68 or len(msg) < 240 or msg[0] != 2 or struct.unpack("!I", msg[4:8])[0] != xid:
                continue
            opts, i, kind, server = msg[240:], 0, None, None
            while i < len(opts) and opts[i] != 255:
                if opts[i] == 0:
                    i += 1
                    continue
                code, length = opts[i], opts[i + 1]
                val = opts[i + 2:i + 2 + length]
                if code == 53 and length == 1:
                    kind = val[0]
                elif code == 54 and length == 4:
                    server = socket.inet_ntoa(val)
                i += 2 + length
            name = {2: "DHCPOFFER", 5: "DHCPACK", 6: "DHCPNAK"}.get(kind or 0, f"DHCP type {kind}")
            print(f"{name} of {socket.inet_ntoa(msg[16:20])} from server {server}")
            return 0 if kind == 2 else 1
    print(f"no answer within {timeout:g}s")
    return 1


def preflight() -> str | None:
    if os.geteuid() != 0:
        return "the demo needs root (network namespaces, loop devices, mounts): run it with sudo"
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if not os.access(DHCPD, os.X_OK):
        missing.append(DHCPD)
    if not os.path.exists(tool("hafd")) and shutil.which("hafd") is None:
        missing.append("hafd")
    if missing:
        return f"missing: {', '.join(missing)} (run `bash scripts/setup.sh` first)"
    return None


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "--dhcp-probe":
        return dhcp_probe(argv[1])
    problem = preflight()
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2

    on_signals_interrupt()
    demo = Demo()
    print(f"hafd single-node demo (namespace {demo.name})\n"
          "A one-node DHCP service: a data disk, a virtual IP and dhcpd, managed by hafd.\n"
          "Lines starting with $ are the commands run; 'ok:' marks what the demo checked.")
    steps = [demo.setup_node, demo.setup_disk, demo.write_config, demo.first_start, demo.crash, demo.standby, demo.reload, demo.restart, demo.finish]
    return run_steps(demo, steps, by_hand)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
