#!/usr/bin/env python3
"""A fast DHCP prober: how long the service is unreachable, to the millisecond.

Why not dhclient or dhcping: they work in whole seconds (anchors.md).  This sends a
fresh DHCPDISCOVER with the broadcast flag every `interval` (10-50 ms) from a UDP socket
bound to :68 with SO_BINDTODEVICE + SO_BROADCAST, so the client needs no address, and
answers each OFFER with a DHCPREQUEST so it also sees the ACK (the answer that means a
client really got a lease).  Each reply is printed as one JSON line:

    {"type": "ACK", "mono": 1234.5678, "wall": ..., "xid": ..., "yiaddr": "10.10.101.100",
     "server_id": "10.10.101.1", "src": "10.10.102.11", "domain": "nodeone"}

`domain` is the answering node's per-node `option domain-name`, so a test can tell the
nodes apart even though both name the VIP as server identifier.  `mono` is
CLOCK_MONOTONIC, shared with the test process, so replies line up with fault times.

Run inside the client namespace: `ip netns exec NS python3 prober.py eth0 [--interval S]`.
`Prober` (below) does that from a test and collects the events.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Sequence

MAGIC = b"\x63\x82\x53\x63"
TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 5: "ACK", 6: "NAK"}


def build(kind: int, xid: int, mac: bytes, extra: bytes = b"") -> bytes:
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4),
                        bytes(4), mac, b"", b"")
    client_id = bytes([61, 7, 1]) + mac
    return bootp + MAGIC + bytes([53, 1, kind]) + client_id + extra + bytes([55, 3, 1, 3, 15, 255])


def parse(msg: bytes) -> dict[str, Any] | None:
    """A BOOTREPLY's type and the options a test needs; None for anything else."""
    if len(msg) < 240 or msg[0] != 2 or msg[236:240] != MAGIC:
        return None
    out: dict[str, Any] = {"xid": struct.unpack("!I", msg[4:8])[0], "yiaddr": socket.inet_ntoa(msg[16:20])}
    opts, i = msg[240:], 0
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if i + 1 >= len(opts):
            break
        code, length = opts[i], opts[i + 1]
        val = opts[i + 2:i + 2 + length]
        if code == 53 and length == 1:
            out["type"] = TYPES.get(val[0], str(val[0]))
        elif code == 54 and length == 4:
            out["server_id"] = socket.inet_ntoa(val)
        elif code == 15:
            out["domain"] = val.decode(errors="replace").rstrip("\0")
        i += 2 + length
    return out if "type" in out else None


def probe(ifname: str, interval: float, duration: float | None, mac: bytes, request: bool) -> None:
    """The probing loop; prints JSON lines on stdout until killed or `duration` passes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    s.bind(("0.0.0.0", 68))
    s.setblocking(False)
    end = None if duration is None else time.monotonic() + duration
    sent: dict[int, float] = {}  # our xids, so a stray reply to someone else is ignored
    next_at = time.monotonic()
    print(json.dumps({"type": "STARTED", "mono": time.monotonic(), "mac": mac.hex(":")}), flush=True)
    while end is None or time.monotonic() < end:
        now = time.monotonic()
        if now >= next_at:
            xid = random.getrandbits(32)
            sent[xid] = now
            if len(sent) > 2000:
                for k in list(sent)[:1000]:
                    del sent[k]
            try:
                s.sendto(build(1, xid, mac), ("255.255.255.255", 67))
            except OSError as e:  # e.g. ENETDOWN while a link is cut
                print(json.dumps({"type": "SEND_ERROR", "mono": now, "error": str(e)}), flush=True)
            next_at += interval
            if next_at < now:
                next_at = now + interval
        ready, _, _ = select.select([s], [], [], max(0.0, next_at - time.monotonic()))
        if not ready:
            continue
        try:
            data, (src, _port) = s.recvfrom(4096)
        except OSError:
            continue
        info = parse(data)
        if info is None or info["xid"] not in sent:
            continue
        info.update(mono=time.monotonic(), wall=time.time(), src=src)
        info["rtt"] = round(info["mono"] - sent[info["xid"]], 6)
        print(json.dumps(info), flush=True)
        if request and info["type"] == "OFFER" and "server_id" in info:
            extra = bytes([50, 4]) + socket.inet_aton(info["yiaddr"]) + bytes([54, 4]) + socket.inet_aton(info["server_id"])
            try:
                s.sendto(build(3, info["xid"], mac, extra), ("255.255.255.255", 67))
            except OSError:
                pass


class Prober:
    """Runs the prober in a client namespace and collects its events (thread-safe)."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    @classmethod
    def start(cls, spawn: Callable[..., subprocess.Popen[Any]], netns: str, ifname: str = "eth0",
              interval: float = 0.02, mac: str | None = None, request: bool = True) -> "Prober":
        """`spawn` is the test bed's (so the process is killed at close)."""
        argv = ["ip", "netns", "exec", netns, sys.executable, os.path.abspath(__file__), ifname,
                "--interval", str(interval)]
        if mac:
            argv += ["--mac", mac]
        if not request:
            argv.append("--no-request")
        p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        prober = cls(p)
        if prober.wait_for(lambda e: e["type"] == "STARTED", 10.0) is None:
            prober.stop()
            raise RuntimeError("the DHCP prober did not start")
        return prober

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.changed:
                self.events.append(ev)
                self.changed.notify_all()

    def snapshot(self, since: float = 0.0, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["mono"] >= since and (kind is None or e["type"] == kind)]

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float, since: float = 0.0) -> dict[str, Any] | None:
        """The first event at/after `since` matching pred, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for e in self.events:
                    if e["mono"] >= since and pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    return None
                self.changed.wait(min(left, 0.1))

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ifname")
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--duration", type=float)
    p.add_argument("--mac", help="client MAC (default: a random locally administered one)")
    p.add_argument("--no-request", action="store_true", help="only DISCOVER (OFFERs), never REQUEST")
    a = p.parse_args(argv)
    if not 0.005 <= a.interval <= 5:
        p.error("--interval must be between 0.005 and 5 seconds")
    mac = bytes.fromhex(a.mac.replace(":", "")) if a.mac else bytes([0x02]) + os.urandom(5)
    try:
        probe(a.ifname, a.interval, a.duration, mac, not a.no_request)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
