"""Random jitter on one test-bed link without netem (issue 5, item 5: "the same with 50 ms of added jitter").

This kernel has no netem, no fq qdisc and no nfnetlink_queue, so the delay comes from a
user-space relay.  It sits in the switch namespace, between a node's switch-side veth port
("one-eth1") and a fresh veth pair whose "a" end takes the port's place on the bridge:

    node eth1 === one-eth1 <-[relay: AF_PACKET, random delay each way]-> jw..b === jw..a -- bridge "ha"

Why there, and why AF_PACKET: the switch is outside every node, so the same wire applies
unchanged to every system measured (hafd, keepalived, Pacemaker + Corosync) whatever
sockets, ports or protocols they use; it touches none of the nodes' configuration; and
packet sockets need no kernel module.  Each frame gets an independent uniform delay in
[0, max_delay] from a seeded RNG, so frames may be reordered, as with netem's jitter.

The relay uses PACKET_VNET_HDR so that frames the nodes' veths leave with a partial
checksum (or as one GSO super-frame) keep their offload metadata across the relay; without
it every forwarded UDP/TCP packet would arrive with a wrong checksum and be dropped.  Due
times count from the kernel's receive timestamp (SO_TIMESTAMPNS), so time a frame spends in
the socket buffer is part of its delay rather than added to it.

Run as a process: `ip netns exec SW python -m bench.wire --port one-eth1 --peer jwXb
--max-delay 0.05 --seed 1`; it prints "ready" once bound and one JSON line of stats at exit
(SIGTERM, SIGINT or --max-seconds).  The bench uses `Jitter` / `add_jitter` / `remove_jitter`.
"""

from __future__ import annotations

import argparse
import errno
import heapq
import json
import os
import random
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import structlog

log = structlog.get_logger(__name__)

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
ETH_P_ALL = 3
SO_TIMESTAMPNS = 35  # asm-generic and x86; SCM_TIMESTAMPNS has the same value
VNET_HDR_LEN = 10  # struct virtio_net_hdr, prepended to every frame read and written
BUF_SIZE = 131072  # a GSO super-frame of up to 64 KiB, with room to spare
MAX_QUEUED = 100_000  # bounded memory if something floods the link
BIN_S = 1e-5  # histogram bins of 10 us for the stats: bounded, exact enough for medians
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
REPO = Path(__file__).resolve().parent.parent
CMD_TIMEOUT = 30.0
READY_TIMEOUT = 15.0


class WireError(RuntimeError):
    """The jitter wire could not be put in place (or removed); the message says which step and why."""


# ----------------------------------------------------------------------------- the relay process


class _Hist:
    """Median and max of a stream in bounded memory (a 10 us histogram)."""

    def __init__(self) -> None:
        self.bins: Counter[int] = Counter()
        self.n = 0
        self.max = 0.0

    def add(self, x: float) -> None:
        self.bins[int(x / BIN_S)] += 1
        self.n += 1
        self.max = max(self.max, x)

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        rank, seen = q * (self.n - 1), 0
        for b in sorted(self.bins):
            seen += self.bins[b]
            if seen > rank:
                return (b + 0.5) * BIN_S
        return self.max

    def summary(self) -> dict[str, Any]:
        def ms(x: float | None) -> float | None:
            return None if x is None else round(x * 1000, 3)
        return {"median_ms": ms(self.quantile(0.5)), "p99_ms": ms(self.quantile(0.99)),
                "max_ms": ms(self.max if self.n else None), "n": self.n}


def _packet_socket(ifname: str) -> socket.socket:
    """A promiscuous raw packet socket on one interface, carrying offload metadata (see module doc)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing queued before bind
    try:
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((ifname, ETH_P_ALL))
        mreq = struct.pack("iHH8s", socket.if_nametoindex(ifname), PACKET_MR_PROMISC, 0, b"")
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def relay(port: str, peer: str, max_delay: float, seed: int, max_seconds: float,
          rt_priority: int = 0) -> dict[str, Any]:
    """Forward frames both ways between two interfaces, each after its own random delay; returns the stats.

    Ends on SIGTERM/SIGINT or after max_seconds; frames already queued are still sent at their
    due time (at most max_delay later), so stopping loses nothing already accepted.
    """
    rng = random.Random(seed)
    if rt_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
        except OSError as e:
            print(f"wire: SCHED_FIFO {rt_priority} refused: {e}", file=sys.stderr)
            rt_priority = 0
    socks = [_packet_socket(port), _packet_socket(peer)]
    names = ["from_port", "to_port"]  # index of the receiving socket -> direction name
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    frames = {n: 0 for n in names}
    errors: Counter[str] = Counter()
    drawn, late, added = _Hist(), _Hist(), _Hist()
    heap: list[tuple[float, int, int, bytes, float]] = []  # (due, seq, out socket, vnet hdr + frame, arrival)
    seq = 0
    buf = bytearray(BUF_SIZE)
    anc = socket.CMSG_SPACE(16)
    end = time.monotonic() + max_seconds
    drain_until: float | None = None
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            due, _, out, data, arrival = heapq.heappop(heap)
            try:
                socks[out].send(data, socket.MSG_DONTWAIT)
            except OSError as e:  # link down, queue full: a lost frame, as on a real wire
                errors[f"send_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1
            sent = time.monotonic()
            late.add(max(0.0, sent - due))
            added.add(sent - arrival)
            now = sent
        if stopping or now >= end:
            if drain_until is None:
                drain_until = now + max_delay + 0.5
            if not heap or now >= drain_until:
                break
            time.sleep(max(0.0, min(heap[0][0], drain_until) - now))
            continue
        wait = min(heap[0][0] - now if heap else end - now, end - now)
        ready, _, _ = select.select([*socks, wake_r], [], [], max(0.0, wait))
        for s in ready:
            if s is wake_r:
                try:
                    wake_r.recv(64)
                except OSError:
                    pass
                continue
            i = socks.index(s)
            for _ in range(64):  # bounded burst per wake-up so due frames are not starved
                try:
                    n, ancdata, flags, addr = s.recvmsg_into([buf], anc)
                except BlockingIOError:
                    break
                except OSError as e:  # ENETDOWN once when the link goes down: keep relaying
                    errors[f"recv_{errno.errorcode.get(e.errno or 0, e.errno)}"] += 1
                    break
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                if flags & socket.MSG_TRUNC:
                    errors["truncated"] += 1
                    continue
                mono, real = time.monotonic(), time.time()
                arrival = mono
                for level, typ, cdata in ancdata:
                    if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(cdata) >= 16:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        age = real - (sec + nsec * 1e-9)
                        if 0.0 <= age < 1.0:  # else the wall clock stepped: count from now
                            arrival = mono - age
                if len(heap) >= MAX_QUEUED:
                    errors["queue_full"] += 1
                    continue
                d = rng.uniform(0.0, max_delay)
                drawn.add(d)
                frames[names[i]] += 1
                seq += 1
                heapq.heappush(heap, (arrival + d, seq, 1 - i, bytes(buf[:n]), arrival))
    for s in socks:
        s.close()
    signal.set_wakeup_fd(-1)
    return {"port": port, "peer": peer, "max_delay_ms": round(max_delay * 1000, 3), "seed": seed,
            "rt_priority": rt_priority,
            "frames": frames, "drawn": drawn.summary(), "added": added.summary(), "late": late.summary(),
            "errors": dict(errors)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.wire",
                                description="Random delay each way between two interfaces (issue 5 jitter).")
    p.add_argument("--port", required=True, help="the node's switch-side veth, taken off its bridge")
    p.add_argument("--peer", required=True, help="the 'b' end of the veth pair whose 'a' end is on the bridge")
    p.add_argument("--max-delay", type=float, required=True, help="seconds; each frame waits U(0, max)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=3600.0)
    p.add_argument("--rt-priority", type=int, default=0, help="SCHED_FIFO priority (0: normal scheduling)")
    a = p.parse_args(argv)
    if not (0.0 <= a.max_delay <= 10.0) or a.max_seconds <= 0:
        p.error("--max-delay must be in [0, 10] s and --max-seconds > 0")
    try:
        stats = relay(a.port, a.peer, a.max_delay, a.seed, a.max_seconds, a.rt_priority)
    except OSError as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps(stats), flush=True)
    return 0


# ----------------------------------------------------------------------------- the bench's API


def _ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([IP, "-n", ns, *args], capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if check and r.returncode != 0:
        raise WireError(f"ip -n {ns} {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def _ip_batch(ns: str, lines: Sequence[str], *, force: bool = False) -> subprocess.CompletedProcess[str]:
    """Several link changes in one `ip` process, so the link is switched over in about a millisecond."""
    argv = [IP, "-n", ns, *(["-force"] if force else []), "-batch", "-"]
    return subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=CMD_TIMEOUT)


def _link(ns: str, dev: str) -> dict[str, Any] | None:
    r = subprocess.run([IP, "-n", ns, "-j", "link", "show", "dev", dev], capture_output=True, text=True,
                       timeout=CMD_TIMEOUT)
    if r.returncode != 0:
        return None
    links = json.loads(r.stdout or "[]")
    return links[0] if links else None


class Jitter:
    """One port's jitter wire: the rewiring plus its relay process, undone by stop() whatever happened.

    rt_priority: the relay runs SCHED_FIFO at this priority (0: normal scheduling).  On by
    default because the soak keeps both cores busy with CPU burners: at normal priority the
    relay itself was measured up to ~10 ms late (p99 ~5 ms) there, an unplanned extra jitter;
    at FIFO 10 it stayed under 0.4 ms.  It needs a fraction of a percent of a core.
    """

    def __init__(self, ns: str, bridge: str, port: str, max_delay_s: float, seed: int,
                 python: str = sys.executable, max_seconds: float = 3600, rt_priority: int = 10) -> None:
        if not 0.0 <= max_delay_s <= 10.0:
            raise WireError(f"max_delay_s {max_delay_s} out of [0, 10]")
        self.ns, self.bridge, self.port = ns, bridge, port
        self.max_delay_s, self.seed, self.python = max_delay_s, seed, python
        self.max_seconds, self.rt_priority = max_seconds, rt_priority
        tag = "jw" + secrets.token_hex(4)
        self.a, self.b = tag + "a", tag + "b"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self._veth = False
        self._stats: dict[str, Any] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Make the veth pair, start the relay, then swap the port for the "a" end on the bridge."""
        if self.proc is not None or self._stats is not None:
            raise WireError(f"jitter on {self.port} already started")
        link = _link(self.ns, self.port)
        if link is None:
            raise WireError(f"no interface {self.port} in namespace {self.ns}")
        if link.get("master") != self.bridge:
            raise WireError(f"{self.port} is on {link.get('master')!r}, not on bridge {self.bridge!r}")
        mtu = str(link.get("mtu", 1500))
        try:
            self._veth = True
            r = _ip_batch(self.ns, [f"link add {self.a} mtu {mtu} type veth peer name {self.b} mtu {mtu}",
                                    # no IPv6 link-local on the relay's own ends: they must add no traffic
                                    f"link set {self.a} addrgenmode none", f"link set {self.b} addrgenmode none",
                                    f"link set {self.a} up", f"link set {self.b} up"])
            if r.returncode != 0:
                raise WireError(f"veth {self.a}/{self.b} in {self.ns}: {r.stderr.strip()}")
            self._spawn()
            r = _ip_batch(self.ns, [f"link set {self.port} nomaster", f"link set {self.a} master {self.bridge}"])
            if r.returncode != 0:
                raise WireError(f"swapping {self.port} for {self.a} on {self.bridge}: {r.stderr.strip()}")
        except BaseException:
            self.stop()
            raise
        log.info("wire_started", ns=self.ns, port=self.port, bridge=self.bridge, veth=self.a,
                 max_delay_s=self.max_delay_s, seed=self.seed, pid=self.pid)

    def _spawn(self) -> None:
        argv = [IP, "netns", "exec", self.ns, self.python, "-m", "bench.wire", "--port", self.port,
                "--peer", self.b, "--max-delay", repr(self.max_delay_s), "--seed", str(self.seed),
                "--max-seconds", repr(float(self.max_seconds)), "--rt-priority", str(self.rt_priority)]
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: the relay can never block on it
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, start_new_session=True)
        assert self.proc.stdout is not None
        fd, got, deadline = self.proc.stdout.fileno(), b"", time.monotonic() + READY_TIMEOUT
        while b"\n" not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireError(f"relay for {self.port} not ready within {READY_TIMEOUT} s")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise WireError(f"relay for {self.port} exited before ready: {got.decode(errors='replace')}"
                                    f" {self._stderr_text()}")
                got += chunk
        if got.split(b"\n", 1)[0].strip() != b"ready":
            raise WireError(f"relay for {self.port} said {got!r} instead of ready")

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace").strip()[-2000:]
        except (OSError, ValueError):
            return ""

    def stop(self) -> dict[str, Any]:
        """Put the port back on its bridge, end the relay, delete the veth; returns the relay's stats.

        The port goes back first (one `ip` batch), so the link is whole again at once even if
        the relay is wedged or already dead; the relay then drains what it holds toward the
        node, while what it still holds toward the bridge (at most max_delay's worth) is lost
        at the swap, like frames on a cable being re-plugged.  Idempotent, and never raises for
        a process that is already gone; problems land in stats["errors"]["wire"].
        """
        if self._stats is not None:
            return self._stats
        problems: list[str] = []
        if self._veth:
            r = _ip_batch(self.ns, [f"link set {self.a} nomaster", f"link set {self.port} master {self.bridge}"],
                          force=True)
            link = _link(self.ns, self.port)
            if link is None or link.get("master") != self.bridge:
                problems.append(f"{self.port} not back on {self.bridge}: {r.stderr.strip()}")
        out = b""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                out, _ = self.proc.communicate(timeout=self.max_delay_s + 5.0)
            except subprocess.TimeoutExpired:
                problems.append("relay ignored SIGTERM; killed")
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    out, _ = self.proc.communicate(timeout=5.0)
                except subprocess.TimeoutExpired:
                    problems.append(f"relay {self.proc.pid} survived SIGKILL")
        stats: dict[str, Any] = {}
        for line in reversed(out.decode(errors="replace").splitlines()):
            if line.startswith("{"):
                try:
                    stats = json.loads(line)
                except ValueError:
                    continue
                break
        if self.proc is not None and not stats:
            problems.append(f"relay exited {self.proc.returncode} without stats {self._stderr_text()}".strip())
        if self._veth:
            if _link(self.ns, self.a) is not None:
                r = _ip(self.ns, "link", "del", self.a, check=False)
                if r.returncode != 0 and _link(self.ns, self.a) is not None:
                    problems.append(f"veth {self.a} not deleted: {r.stderr.strip()}")
            self._veth = False
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if problems:
            stats.setdefault("errors", {})["wire"] = problems
            log.warning("wire_stop_problems", ns=self.ns, port=self.port, problems=problems)
        log.info("wire_stopped", ns=self.ns, port=self.port, frames=stats.get("frames"), late=stats.get("late"))
        self._stats = stats
        return stats


def add_jitter(ns: str, ports: Sequence[tuple[str, str]], max_delay_s: float, seed: int,
               **kw: Any) -> list[Jitter]:
    """One wire per (bridge, port), each with its own seed (seed + i); on a failure the started ones are undone."""
    started: list[Jitter] = []
    try:
        for i, (bridge, port) in enumerate(ports):
            j = Jitter(ns, bridge, port, max_delay_s, seed + i, **kw)
            j.start()
            started.append(j)
    except BaseException:
        remove_jitter(started)
        raise
    return started


def remove_jitter(jitters: Sequence[Jitter]) -> list[dict[str, Any]]:
    """Stop every wire (in reverse order); each returns its stats, a failure in one does not skip the others."""
    return [j.stop() for j in reversed(list(jitters))][::-1]


if __name__ == "__main__":
    sys.exit(main())
