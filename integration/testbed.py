"""The seed's two-node DHCP cluster, built in network and mount namespaces on one machine.

Why it is built this way (see /work/shared/reference/anchors.md, "Test-bed facts"):
- Each node is a network namespace plus a long-lived *holder* process that owns a private
  mount namespace (`ip netns exec` makes a fresh mount namespace per call, so it could not
  keep /data mounted).  Everything for the node runs as `nsenter -t HOLDER -m -n ...`.
- The holder's mount namespace gets its own root: an overlay of the host's / with a tmpfs
  upper layer, then pivot_root.  So the product's real paths (/etc/hafd, /var/lib/hafd,
  /run/hafd, /data, /dev/drbd/by-res/r0) exist inside the node without creating a single
  directory on the host, and the node's /dev is a tmpfs with only the devices it needs.
  /etc/hafd and /var/lib/hafd are bind mounts of per-node directories in the run's tmpdir,
  so the test edits the config from outside and hafd's state survives a node "reboot".
- One ext4 image on one loop device is the replicated disk; both nodes see it at
  /dev/drbd/by-res/r0.  The drbdadm stand-in (integration/bin/drbdadm) keeps the DRBD state
  both nodes share, so a second primary is refused as DRBD would.
- Everything started is recorded by PID and torn down in reverse even on failure;
  `close()` is idempotent and also runs from atexit.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from integration.drbdserve import FastDrbdadm

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
HAFD = str(BIN / "hafd")
HAFCTL = str(BIN / "hafctl")
PYTHON = sys.executable
DHCPD = "/usr/sbin/dhcpd"
FENCE = str(HERE / "fence_node.py")
PREFIX = "h"
NODES = ("nodeone", "nodetwo")
VIP = "10.10.101.1"
TIEBREAKER = "10.10.102.254"  # the switch's address on the client bridge
CMD_TIMEOUT = 30.0
RUN_MARKER = "hafd-testbed-"  # in every run directory's name: cleanup checks and leak tests look for it


def drbd_programs() -> tuple[str, str]:
    """(drbdadm, drbd-sim): the stand-in in the tree, or an override from the environment."""
    adm = os.environ.get("HAFD_TESTBED_DRBDADM") or str(HERE / "bin" / "drbdadm")
    sim = os.environ.get("HAFD_TESTBED_DRBDSIM") or str(Path(adm).parent / "drbd-sim")
    return adm, sim


@dataclass(frozen=True)
class NodeSpec:
    name: str
    short: str
    index: int  # 1 or 2: the last octet of its link addresses
    priority: int

    @property
    def links(self) -> list[str]:
        return [f"10.10.100.{self.index}", f"10.10.103.{self.index}"]

    @property
    def lan_address(self) -> str:
        return f"10.10.102.{10 + self.index}"


SPECS = {"nodeone": NodeSpec("nodeone", "one", 1, 100), "nodetwo": NodeSpec("nodetwo", "two", 2, 90)}


@dataclass
class Options:
    """What a scenario may vary in the nodes' hafd.yaml (defaults: the product's)."""

    fencing: bool = False
    tiebreaker: bool = False
    failback: bool = False
    second_link: bool = True
    interval: float = 0.025
    deadtime: float = 0.36
    startup_wait: float = 2.0
    restart_grace: float = 10.0
    monitor_interval: float = 5.0
    migration_threshold: int = 3
    failure_timeout: float = 300.0
    dhcpd_extra_args: tuple[str, ...] = ()
    # DRBD's fence-peer / after-resync-target handlers wired to `hafctl fence-peer`
    # (the seed's set-up); off shows what happens without resource-level fencing.
    drbd_handlers: bool = True
    # The bench's drbdadm: the same stand-in kept warm (integration/drbdserve.py) behind a
    # compiled client, ~3 ms a call like the real tool's ~2 instead of ~10.  Needs gcc.
    fast_drbdadm: bool = False


class TestbedError(RuntimeError):
    """A set-up step failed or an expected state did not come about in time."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input, env=env)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"{' '.join(argv)}: no answer within {timeout:g}s") from None
    if check and res.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} exited {res.returncode}: {(res.stderr or res.stdout).strip()}")
    return res


def alive(pid: int) -> bool:
    """Running and not a zombie (PID 1 here reaps orphans late: anchors.md)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_until(cond: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll cond, bounded; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# The node's private root: run inside the holder's mount namespace (sh, set -e).
ROOT_SCRIPT = """\
set -e
S={scratch}
mount -t tmpfs -o mode=0700 hafd-scratch $S
mkdir $S/upper $S/work $S/root
mount -t overlay overlay -o lowerdir=/,upperdir=$S/upper,workdir=$S/work $S/root
R=$S/root
mount -t tmpfs -o mode=0755 hafd-dev $R/dev
for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  n=${{d%%:*}}; mm=${{d#*:}}; mknod -m 666 $R/dev/$n c ${{mm%:*}} ${{mm#*:}}
done
ln -s /proc/self/fd $R/dev/fd; ln -s /proc/self/fd/0 $R/dev/stdin
ln -s /proc/self/fd/1 $R/dev/stdout; ln -s /proc/self/fd/2 $R/dev/stderr
mknod -m 660 $R/dev/{loopname} b {major} {minor}
mkdir -p $R/dev/drbd/by-res $R/dev/shm; ln -s /dev/{loopname} $R/dev/drbd/by-res/r0
mount --bind /tmp $R/tmp
mount --rbind /work $R/work
mount --rbind /opt $R/opt
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t tmpfs -o mode=0755 hafd-run $R/run
mkdir -p $R/data $R/etc/hafd $R/var/lib/hafd $R/run/hafd $R/.oldroot
mount --bind {etc} $R/etc/hafd
mount --bind {varlib} $R/var/lib/hafd
cd $R
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
"""

DHCPD_CONF = """\
# {node}: the seed's dhcpd.conf; domain-name tells the prober which node answered.
authoritative;
ddns-update-style none;
ping-check false;
server-identifier {vip};
option domain-name "{node}";
default-lease-time 600;
max-lease-time 7200;
shared-network seed {{
  subnet 10.10.102.0 netmask 255.255.255.0 {{}}
  subnet 10.10.101.0 netmask 255.255.255.0 {{ range 10.10.101.100 10.10.101.200; }}
}}
"""


class Node:
    """One node: its namespace names, holder, hafd process and per-node directories."""

    def __init__(self, bed: "Testbed", spec: NodeSpec) -> None:
        self.bed, self.spec, self.name = bed, spec, spec.name
        self.ns = f"{bed.prefix}-{spec.short}"
        self.dir = bed.dir / spec.name
        self.etc = self.dir / "etc"
        self.varlib = self.dir / "varlib"
        self.scratch = self.dir / "scratch"
        self.cfg = self.etc / "hafd.yaml"
        self.log = self.dir / "hafd.log"
        self.holder: subprocess.Popen[bytes] | None = None
        self.hafd: subprocess.Popen[bytes] | None = None
        self.old_hafds: list[subprocess.Popen[bytes]] = []
        self.log_offset = 0

    @property
    def powered(self) -> bool:
        """The node is 'on' while its holder (its mount namespace) lives; a fence kills it."""
        return self.holder is not None and self.holder.poll() is None

    # -- running things inside the node -----------------------------------------------

    @property
    def holder_pid(self) -> int:
        if self.holder is None or self.holder.poll() is not None:
            raise TestbedError(f"{self.name} is powered off (no holder)")
        return self.holder.pid

    def enter(self, *argv: str) -> list[str]:
        """argv run in the node's network and mount namespaces (absolute paths: nsenter -m cds to /)."""
        return ["nsenter", "-t", str(self.holder_pid), "-m", "-n", *argv]

    def sh(self, *argv: str, check: bool = True, timeout: float = CMD_TIMEOUT,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(self.enter(*argv), check=check, timeout=timeout, input=input)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "-n", self.ns, *args], check=check)

    def hafctl(self, *args: str, user: str | None = None, timeout: float = CMD_TIMEOUT,
               check: bool = False) -> subprocess.CompletedProcess[str]:
        """hafctl inside the node (socket in its private /run/hafd); as `user` via setpriv if given."""
        argv = [HAFCTL, *args]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *argv]
        return run(self.enter(*argv), check=check, timeout=timeout)

    def status(self) -> dict[str, Any] | None:
        """`hafctl status --json`, or None if hafd does not answer (or the node is off)."""
        if not self.powered:
            return None
        try:
            r = self.hafctl("--timeout", "2", "status", "--json", timeout=10)
        except TestbedError:
            return None
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def role(self) -> str | None:
        s = self.status()
        return None if s is None else s.get("role")

    # -- facts, read from the kernel, not from hafd ------------------------------------

    def root_path(self, path: str) -> Path:
        """A path inside the node's private root, reachable from here."""
        return Path(f"/proc/{self.holder_pid}/root") / path.lstrip("/")

    def addresses(self, dev: str) -> list[str]:
        r = run(["ip", "-j", "-n", self.ns, "-4", "addr", "show", "dev", dev], check=False)
        try:
            return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(r.stdout or "[]")
                    for a in link.get("addr_info", [])]
        except (ValueError, KeyError):
            return []

    def has_vip(self) -> bool:
        """The VIP is configured on eth2 and eth2 is up (an address on a downed link answers nobody)."""
        r = run(["ip", "-j", "-n", self.ns, "-4", "addr", "show", "dev", "eth2"], check=False)
        try:
            links = json.loads(r.stdout or "[]")
        except ValueError:
            return False
        return any("UP" in link.get("flags", []) and any(f"{a['local']}/{a['prefixlen']}" == f"{VIP}/24"
                                                        for a in link.get("addr_info", [])) for link in links)

    def mounted(self) -> bool:
        """Whether /data is a mount point in the node's mount namespace (from the holder's mountinfo)."""
        if self.holder is None or self.holder.poll() is not None:
            return False
        try:
            with open(f"/proc/{self.holder.pid}/mountinfo") as f:
                return any(len(p) > 4 and p[4] == "/data" for p in (line.split() for line in f))
        except OSError:
            return False

    def dhcpd_pid(self) -> int | None:
        """From hafd's record of the process it supervises, if that process is alive."""
        try:
            pid = int(json.loads((self.varlib / "dhcpd.pid").read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if alive(pid) else None

    def drbd_role(self) -> str | None:
        r = run([self.bed.drbd_wrapper(self.name), "role", "r0"], check=False)
        return r.stdout.strip() or None if r.returncode == 0 else None

    def serving(self) -> dict[str, bool]:
        """What of the service runs here, each fact checked independently."""
        return {"vip": self.has_vip(), "data": self.mounted(), "dhcpd": self.dhcpd_pid() is not None,
                "primary": self.drbd_role() == "Primary"}

    def events(self) -> list[dict[str, Any]]:
        """hafd's JSON log lines (every daemon run of this node, in order)."""
        out: list[dict[str, Any]] = []
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def mark_log(self) -> int:
        """Remember how far the log goes, for `events_since`."""
        self.log_offset = len(self.events())
        return self.log_offset

    def events_since(self, mark: int | None = None) -> list[dict[str, Any]]:
        return self.events()[self.log_offset if mark is None else mark:]


class Testbed:
    __test__ = False  # not a pytest test class

    """Two nodes, a client and a switch in namespaces named `<prefix>-one|two|cli|sw`.

    Use as a context manager (or call `build()` and `close()`).  `close()` is idempotent,
    bounded and runs every undo step even when earlier ones fail.
    """

    def __init__(self, tmpdir: Path | str | None = None, *, options: Options | None = None,
                 prefix: str | None = None) -> None:
        self.prefix = prefix or PREFIX + secrets.token_hex(2)
        base = Path(tmpdir) if tmpdir is not None else Path("/tmp")
        self.dir = base / f"{RUN_MARKER}{self.prefix}"
        self.options = options or Options()
        self.nodes = {name: Node(self, SPECS[name]) for name in NODES}
        self.one, self.two = self.nodes["nodeone"], self.nodes["nodetwo"]
        self.sw, self.cli = f"{self.prefix}-sw", f"{self.prefix}-cli"
        self.namespaces: list[str] = []
        self.image = self.dir / "disk.img"
        self.loop: str | None = None
        self.drbd_state = self.dir / "drbd.json"
        self.children: list[subprocess.Popen[Any]] = []  # probers, dhclients: killed at close
        self.nft_tables: list[tuple[str, str]] = []
        self.closed = False
        self.build_seconds: float | None = None
        self.fast_drbdadm: FastDrbdadm | None = None
        atexit.register(self.close)

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> "Testbed":
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def peer(self, node: Node) -> Node:
        return self.two if node is self.one else self.one

    # -- building ------------------------------------------------------------------------

    def build(self) -> None:
        t0 = time.monotonic()
        adm, sim = drbd_programs()
        if not os.access(adm, os.X_OK) or not os.access(sim, os.X_OK):
            raise TestbedError(f"the drbdadm stand-in is missing ({adm}, {sim})")
        self.dir.mkdir(parents=True, mode=0o700)
        self._network()
        self._disk()
        run([HAFCTL, "keygen", str(self.dir / "authkey")])
        if self.options.fast_drbdadm:
            self.fast_drbdadm = FastDrbdadm.start(self.dir)
            self.children.append(self.fast_drbdadm.proc)
        for node in self.nodes.values():
            for d in (node.etc, node.varlib, node.scratch):
                d.mkdir(parents=True, mode=0o700)
            shutil.copy(self.dir / "authkey", node.etc / "authkey")
            os.chmod(node.etc / "authkey", 0o600)
            (node.etc / "dhcpd.conf").write_text(DHCPD_CONF.format(node=node.name, vip=VIP))
            wrapper = node.etc / "drbdadm"
            if self.fast_drbdadm is not None:
                self.fast_drbdadm.install(wrapper, node.name, self.drbd_state)
            else:
                wrapper.write_text(f"#!/bin/sh\nHAFD_DRBD_NODE={node.name} HAFD_DRBD_STATE={self.drbd_state} "
                                   f"exec {adm} \"$@\"\n")
            wrapper.chmod(0o755)
            self.write_config(node)
            self.power_on(node)
        self.drbd_sim("init", "r0", "--nodes", ",".join(NODES), "--device", self.loop or "")
        for node in self.nodes.values():
            self._drbd_handlers(node)
        self._write_pids()
        self.build_seconds = time.monotonic() - t0

    def _ns(self, name: str) -> None:
        self.namespaces.append(name)  # before: a failure mid-command must still delete it
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _network(self) -> None:
        for ns in (self.sw, self.one.ns, self.two.ns, self.cli):
            self._ns(ns)
        bridges = ("ha", "lan") + (("ha2",) if self.options.second_link else ())
        for br in bridges:
            run(["ip", "-n", self.sw, "link", "add", br, "type", "bridge"])
            run(["ip", "-n", self.sw, "link", "set", br, "up"])
        run(["ip", "-n", self.sw, "addr", "add", f"{TIEBREAKER}/24", "dev", "lan"])
        for node in self.nodes.values():
            i = node.spec.index
            ports = [("eth1", "ha", node.spec.links[0] + "/24"), ("eth2", "lan", node.spec.lan_address + "/24")]
            if self.options.second_link:
                ports.append(("eth3", "ha2", node.spec.links[1] + "/24"))
            for dev, br, addr in ports:
                self._port(node.ns, dev, f"{node.spec.short}-{dev}", br)
                run(["ip", "-n", node.ns, "addr", "add", addr, "dev", dev])
            del i
        self._port(self.cli, "eth0", "cli-eth0", "lan")

    def _port(self, ns: str, dev: str, sw_dev: str, bridge: str) -> None:
        """A veth made inside `ns` (never in the root namespace) with its other end on a bridge."""
        run(["ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", sw_dev])
        run(["ip", "-n", ns, "link", "set", sw_dev, "netns", self.sw])
        run(["ip", "-n", self.sw, "link", "set", sw_dev, "master", bridge, "up"])
        run(["ip", "-n", ns, "link", "set", dev, "up"])

    def _disk(self) -> None:
        run(["truncate", "-s", "64M", str(self.image)])
        seed = self.dir / "seed"
        seed.mkdir()
        (seed / "dhcpd.leases").touch()
        run(["mkfs.ext4", "-q", "-d", str(seed), str(self.image)])
        self.loop = run(["losetup", "--find", "--show", str(self.image)]).stdout.strip()
        if not self.loop.startswith("/dev/loop"):
            raise TestbedError(f"losetup gave {self.loop!r}")

    def power_on(self, node: Node) -> None:
        """Start the node's holder and give it its private root (a fresh 'boot': nothing runs)."""
        if node.holder is not None and node.holder.poll() is None:
            raise TestbedError(f"{node.name} is already on")
        argv = ["ip", "netns", "exec", node.ns, "unshare", "--mount", "--propagation", "private", "sleep", "infinity"]
        node.holder = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append(node.holder)
        own = os.readlink("/proc/self/ns/mnt")
        holder = node.holder

        def entered() -> bool:
            try:
                return (os.readlink(f"/proc/{holder.pid}/ns/mnt") != own
                        and Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep")
            except OSError:
                return False

        if not wait_until(entered, 5.0, 0.01):
            raise TestbedError(f"{node.name}'s holder did not start")
        assert self.loop is not None
        st = os.stat(self.loop)
        script = ROOT_SCRIPT.format(scratch=node.scratch, loopname=Path(self.loop).name, major=os.major(st.st_rdev),
                                    minor=os.minor(st.st_rdev), etc=node.etc, varlib=node.varlib)
        run(["nsenter", "-t", str(holder.pid), "-m", "-n", "sh", "-c", script])
        # A fresh boot: only the fixed addresses; a VIP left by a crash or fence is gone.
        node.ip("addr", "del", f"{VIP}/24", "dev", "eth2", check=False)
        for dev in self._devs(node):
            node.ip("link", "set", dev, "up", check=False)
        if self.drbd_state.exists():  # a reboot: DRBD comes up again, as drbd.service would
            run([self.drbd_wrapper(node.name), "up", "r0"], check=False)
            self._drbd_handlers(node)
        self._write_pids()

    def _devs(self, node: Node) -> list[str]:
        return ["eth1", "eth2"] + (["eth3"] if self.options.second_link else [])

    def _drbd_handlers(self, node: Node) -> None:
        """DRBD's handlers as the seed set them, pointing at hafctl inside that node."""
        if not self.options.drbd_handlers:
            return
        enter = ["nsenter", "-t", str(node.holder_pid), "-m", "-n", HAFCTL]
        self.drbd_sim("set-handler", "r0", node.name, "fence-peer", "--", *enter, "fence-peer")
        self.drbd_sim("set-handler", "r0", node.name, "after-resync-target", "--", *enter, "unfence-peer")

    def drbd_wrapper(self, node: str) -> str:
        return str(self.nodes[node].etc / "drbdadm")

    def drbd_sim(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([drbd_programs()[1], "--state", str(self.drbd_state), *args], check=check)

    def _write_pids(self) -> None:
        """What the fence script may kill, per node (it checks each PID's command line too)."""
        data = {}
        for n in self.nodes.values():
            data[n.name] = {
                "ns": n.ns,
                "holder": n.holder.pid if n.holder and n.holder.poll() is None else None,
                "hafd": n.hafd.pid if n.hafd and n.hafd.poll() is None else None,
                "varlib": str(n.varlib),
                "drbd_crash": [drbd_programs()[1], "--state", str(self.drbd_state), "crash", "r0", n.name],
                "devs": self._devs(n),
            }
        tmp = self.dir / "nodes.json.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.dir / "nodes.json")

    # -- configuration -------------------------------------------------------------------

    def config_text(self, node: Node, options: Options | None = None) -> str:
        o = options or self.options
        links = {n.name: n.spec.links[: 2 if o.second_link else 1] for n in self.nodes.values()}
        extra = ""
        if o.fencing:
            extra += (f"  fencing:\n    command: [{PYTHON}, {FENCE}, {self.dir}, \"{{peer}}\"]\n"
                      f"    timeout: 10\n")
        if o.tiebreaker:
            extra += f"  tiebreaker:\n    ping: {TIEBREAKER}\n    interval: 0.2\n    timeout: 0.5\n"
        dhcpd_args = ", ".join([DHCPD, "-4", "-f", "-d", *o.dhcpd_extra_args, "-cf", "/etc/hafd/dhcpd.conf",
                                "-lf", "/data/dhcpd.leases", "-pf", "/run/hafd/dhcpd.pid", "eth2"])
        return textwrap.dedent(f"""\
            # {node.name} in test bed {self.prefix}: config/hafd.yaml with a process-run dhcpd.
            cluster:
              name: dhcp
              key_file: /etc/hafd/authkey
              port: 694
              interval: {o.interval}
              deadtime: {o.deadtime}
              failback: {str(o.failback).lower()}
              state_dir: /var/lib/hafd
              control_socket: /run/hafd/hafd.sock
              startup_wait: {o.startup_wait}
              restart_grace: {o.restart_grace}
            """) + extra + textwrap.dedent(f"""\
            nodes:
              nodeone:
                priority: {SPECS['nodeone'].priority}
                links: [{', '.join(links['nodeone'])}]
              nodetwo:
                priority: {SPECS['nodetwo'].priority}
                links: [{', '.join(links['nodetwo'])}]
            programs:
              drbdadm: /etc/hafd/drbdadm
            resources:
              drbd:
                type: drbd
                resource: r0
              data:
                type: filesystem
                device: /dev/drbd/by-res/r0
                directory: /data
                fstype: ext4
                requires: [drbd]
              vip:
                type: ipaddr
                address: {VIP}/24
                interface: eth2
              dhcpd:
                type: process
                command: [{dhcpd_args}]
                ready: {{udp_port: 67}}
                requires: [data, vip]
                monitor_interval: {o.monitor_interval}
                migration_threshold: {o.migration_threshold}
                failure_timeout: {o.failure_timeout}
            """)

    def write_config(self, node: Node, options: Options | None = None) -> None:
        node.cfg.write_text(self.config_text(node, options))

    def configure(self, **changes: Any) -> None:
        """Change options and rewrite both nodes' hafd.yaml (takes effect at their next start/reload)."""
        for k, v in changes.items():
            if not hasattr(self.options, k):
                raise TypeError(f"unknown option {k}")
            setattr(self.options, k, v)
        for node in self.nodes.values():
            self.write_config(node)

    # -- hafd ----------------------------------------------------------------------------

    def start_hafd(self, node: Node) -> None:
        if node.hafd is not None and node.hafd.poll() is None:
            raise TestbedError(f"hafd already runs on {node.name} (pid {node.hafd.pid})")
        argv = node.enter(HAFD, "--config", "/etc/hafd/hafd.yaml", "--log-format", "json")
        with open(node.log, "ab") as logf:
            node.hafd = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.children.append(node.hafd)
        self._write_pids()

    def start(self, *nodes: Node) -> None:
        for node in nodes or tuple(self.nodes.values()):
            self.start_hafd(node)

    def stop_hafd(self, node: Node, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal hafd and wait for it to exit; its exit status (None if it was not running)."""
        p = node.hafd
        if p is None or p.poll() is not None:
            return None
        p.send_signal(sig)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestbedError(f"hafd on {node.name} did not exit within {timeout:g}s of {signal.Signals(sig).name}") from None

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 15.0, interval: float = 0.05) -> Any:
        """Bounded poll of observable state; on timeout the error shows both nodes' status."""
        value = wait_until(cond, timeout, interval)
        if not value:
            raise TestbedError(f"timed out after {timeout:g}s waiting for {what}\n" + self.describe())
        return value

    def wait_roles(self, active: Node, timeout: float = 20.0) -> None:
        """Until `active` is active with every resource started and its peer is standby."""
        other = self.peer(active)

        def ok() -> bool:
            s = active.status()
            if s is None or s["role"] != "active" or any(r["state"] != "started" for r in s["resources"].values()):
                return False
            return other.role() == "standby"

        self.wait(ok, f"{active.name} active, {other.name} standby", timeout)

    def describe(self) -> str:
        out = []
        for n in self.nodes.values():
            s = n.status()
            brief = None if s is None else {k: s.get(k) for k in ("role", "active_node", "reason", "decision",
                                                                    "split_brain", "warnings")}
            if s is not None:
                brief["resources"] = {r: (v.get("state"), v.get("detail")) for r, v in s["resources"].items()}  # type: ignore[index]
            facts = n.serving() if n.powered else "off"
            out.append(f"{n.name}: hafd pid {n.hafd.pid if n.hafd else None} "
                       f"rc {n.hafd.poll() if n.hafd else None}: {json.dumps(brief)}; kernel: {facts}")
            try:
                lines = n.log.read_text(errors="replace").splitlines()[-20:]
            except OSError:
                lines = []
            tail = [f"    {line[:400]}" for line in lines]
            out.extend(tail)
        return "\n".join(out)

    # -- faults --------------------------------------------------------------------------

    def crash(self, node: Node) -> float:
        """Power the node off hard: kill -9 hafd and dhcpd, its links down, its DRBD gone.

        Returns the monotonic time of the crash.  The holder dies too, so /data is no
        longer mounted anywhere in that node (as after a real power loss); `power_on`
        and `start_hafd` bring it back.
        """
        t = time.monotonic()
        pids = [p for p in (node.hafd.pid if node.hafd and node.hafd.poll() is None else None, node.dhcpd_pid()) if p]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for dev in self._devs(node):
            node.ip("link", "set", dev, "down", check=False)
        self.power_off(node)
        return t

    def power_off(self, node: Node) -> None:
        """Kill whatever still runs in the node and its holder; its DRBD goes down."""
        if node.hafd is not None and node.hafd.poll() is None:
            node.hafd.kill()
            node.hafd.wait(timeout=10)
        pid = node.dhcpd_pid()
        if pid is not None:
            _kill_wait(pid)
        if node.holder is not None and node.holder.poll() is None:
            node.holder.kill()
            node.holder.wait(timeout=10)
        if self.drbd_state.exists():  # its DRBD dies with it: no demote, no graceful outdate
            self.drbd_sim("crash", "r0", node.name, check=False)
        self._write_pids()

    def links_up(self, node: Node) -> None:
        for dev in self._devs(node):
            node.ip("link", "set", dev, "up", check=False)

    def cut(self, node: Node, dev: str) -> None:
        """Carrier loss: the switch's side of the node's cable goes down."""
        run(["ip", "-n", self.sw, "link", "set", f"{node.spec.short}-{dev}", "down"])

    def restore(self, node: Node, dev: str) -> None:
        run(["ip", "-n", self.sw, "link", "set", f"{node.spec.short}-{dev}", "up"])

    def drop_heartbeats(self, node: Node, devs: Iterable[str]) -> None:
        """Silent failure: carrier stays up, an nft rule in the node drops heartbeats arriving on devs."""
        table = f"{self.prefix}drop"
        rules = [f"add table inet {table}",
                 f"add chain inet {table} input {{ type filter hook input priority 0; }}"]
        rules += [f"add rule inet {table} input iifname \"{d}\" udp dport 694 drop" for d in devs]
        run(["ip", "netns", "exec", node.ns, "nft", "-f", "-"], input="\n".join(rules) + "\n")
        self.nft_tables.append((node.ns, table))

    def allow_heartbeats(self, node: Node) -> None:
        table = f"{self.prefix}drop"
        run(["ip", "netns", "exec", node.ns, "nft", "delete", "table", "inet", table], check=False)
        self.nft_tables = [t for t in self.nft_tables if t != (node.ns, table)]

    def spawn(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """A helper process (prober, dhclient) the test bed kills at close."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(list(argv), **kw)
        self.children.append(p)
        return p

    def dhclient(self, timeout: float = 20.0) -> dict[str, str]:
        """One lease (or renewal) by Debian's dhclient in the client namespace; the script's environment.

        The -sf script only records what dhclient hands it (reason, new_ip_address,
        new_dhcp_server_identifier, new_domain_name): it never configures anything, so
        the host's resolv.conf is safe.  The lease database persists across calls, so a
        second call asks for the same address again (INIT-REBOOT), as a rebooted client does.
        """
        script = self.dir / "dhclient-script"
        record = self.dir / "dhclient.events"
        if not script.exists():
            script.write_text("#!/bin/sh\n"
                              f"echo \"$reason $new_ip_address $new_dhcp_server_identifier $new_domain_name\" >> {record}\n")
            script.chmod(0o755)
        before = record.read_text().splitlines() if record.exists() else []
        p = self.spawn(["ip", "netns", "exec", self.cli, "dhclient", "-4", "-d", "-1", "-sf", str(script),
                        "-lf", str(self.dir / "dhclient.leases"), "-pf", str(self.dir / "dhclient.pid"), "eth0"],
                       stdout=subprocess.DEVNULL, stderr=open(self.dir / "dhclient.log", "ab"))

        def bound() -> list[str] | None:
            lines = record.read_text().splitlines()[len(before):] if record.exists() else []
            got = [ln for ln in lines if ln.split()[0] in ("BOUND", "RENEW", "REBOOT", "REBIND")]
            return got or None

        try:
            got = wait_until(bound, timeout, 0.05)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        if not got:
            raise TestbedError(f"dhclient got no lease within {timeout:g}s: "
                               f"{(self.dir / 'dhclient.log').read_text(errors='replace')[-1500:]}")
        reason, ip, server, *domain = got[-1].split() + [""]
        return {"reason": reason, "ip": ip, "server": server, "domain": domain[0] if domain else ""}

    # -- dual-active detection -------------------------------------------------------------

    def serving_nodes(self) -> dict[str, dict[str, bool]]:
        return {n.name: n.serving() for n in self.nodes.values() if n.powered}

    def dual_active(self) -> list[str]:
        """Facts that hold on both nodes at once (VIP on both, /data mounted in both, ...)."""
        facts = self.serving_nodes()
        if len(facts) < 2:
            return []
        a, b = facts.values()
        return [k for k in a if a[k] and b[k]]

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Undo everything, each step independently and bounded; return what could not be undone."""
        if self.closed:
            return []
        self.closed = True
        problems: list[str] = []
        for node in self.nodes.values():
            pid = node.dhcpd_pid()
            procs = [p for p in (node.hafd, *node.old_hafds) if p is not None]
            for p in procs:
                if p.poll() is None:
                    p.kill()
            if pid is not None and self._ours(pid):
                _kill_wait(pid)
        if self.fast_drbdadm is not None:
            try:
                self.fast_drbdadm.close()
            except Exception as e:  # noqa: BLE001 - every undo step runs; the loop below kills it anyway
                problems.append(f"the warm drbdadm stand-in did not close cleanly: {e!r}")
        for p in reversed(self.children):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append(f"pid {p.pid} did not die")
        # Orphans of this run (a dhcpd whose hafd died, a fence script...): by command line.
        for pid in self.leftover_pids():
            _kill_wait(pid)
        if self.image.exists():
            for dev in self.attached():
                subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=CMD_TIMEOUT)
            if not wait_until(lambda: not self.attached(), 5.0, 0.1):
                problems.append(f"loop device {', '.join(self.attached())} still attached to {self.image}")
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT)
            if Path("/run/netns", ns).exists():
                problems.append(f"namespace {ns} still exists")
        if self.dir.exists():
            with open("/proc/self/mountinfo") as f:
                busy = [line for line in f if str(self.dir) in line]
            if busy:
                problems.append(f"something is mounted under {self.dir} here; left it in place")
            elif not os.environ.get("HAFD_TESTBED_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001 - unregistering is best effort
            pass
        return problems

    def attached(self) -> list[str]:
        r = subprocess.run(["losetup", "-j", str(self.image)], capture_output=True, text=True, timeout=CMD_TIMEOUT)
        return [line.split(":")[0] for line in r.stdout.splitlines() if line.startswith("/dev/")]

    def _ours(self, pid: int) -> bool:
        return str(self.dir) in _cmdline(pid) or pid in self.leftover_pids()

    def leftover_pids(self) -> list[int]:
        """Processes of this run still alive: any whose command line or network namespace is ours."""
        ours: list[int] = []
        inodes = set()
        for ns in self.namespaces:
            try:
                inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
            except OSError:
                pass
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            pid = int(entry)
            try:
                netns = os.stat(f"/proc/{pid}/ns/net").st_ino
            except OSError:
                continue
            if (netns in inodes or str(self.dir) in _cmdline(pid)) and alive(pid):
                ours.append(pid)
        return ours


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_wait(pid: int, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until(lambda: not alive(pid), timeout, 0.02)
