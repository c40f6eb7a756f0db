"""bench/wire.py: the user-space jitter wire on a bridge port, on a small switch the test builds.

Topology (all in namespaces made here, deleted at teardown): a switch namespace with bridge
br0 and two "nodes", each with eth1 whose peer (p1, p2) is a port of br0.  UDP packets carry
their send time (CLOCK_MONOTONIC is shared by every namespace), so the receiver measures
one-way delays directly.
"""

from __future__ import annotations

import json
import os
import select
import signal
import statistics
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from bench.wire import Jitter, WireError, add_jitter, remove_jitter
from ns_helpers import NetNs, requires_root, veth_pair

pytestmark = requires_root

ADDR = {"n1": "192.168.77.1", "n2": "192.168.77.2"}
UDP_PORT = 7777
MAX_DELAY = 0.05
SLACK_MS = 8.0  # the relay's target is ~2 ms late at most on an idle machine; other tests may run alongside

RECEIVER = r"""
import json, socket, struct, sys, time
addr, port, count, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), time.monotonic() + float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
print("ready", flush=True)
delays = {}
while len(delays) < count and time.monotonic() < deadline:
    s.settimeout(max(0.001, deadline - time.monotonic()))
    try:
        data = s.recv(64)
    except TimeoutError:
        break
    now = time.monotonic()
    seq, sent = struct.unpack("!Id", data[:12])
    delays[seq] = (now - sent) * 1000
print(json.dumps(delays))
"""

SENDER = r"""
import json, socket, struct, sys, time
dst, port, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.monotonic()
for i in range(count):
    time.sleep(max(0.0, t0 + i * gap - time.monotonic()))
    s.sendto(struct.pack("!Id", i, time.monotonic()), (dst, port))
print(json.dumps(count))
"""


@dataclass
class Bed:
    sw: NetNs
    n1: NetNs
    n2: NetNs

    def masters(self, bridge: str = "br0") -> list[str]:
        return sorted(link["ifname"] for link in self.sw.ip_json("link", "show", "master", bridge))

    def links(self) -> list[str]:
        return sorted(link["ifname"] for link in self.sw.ip_json("link", "show"))


@pytest.fixture
def bed() -> Iterator[Bed]:
    made: list[NetNs] = []
    try:
        for _ in range(3):
            made.append(NetNs.create())
        sw, n1, n2 = made
        sw.ip("link", "add", "br0", "type", "bridge")
        sw.ip("link", "set", "br0", "up")
        for node, port, name in ((n1, "p1", "n1"), (n2, "p2", "n2")):
            veth_pair(node, "eth1", sw, port)
            sw.ip("link", "set", port, "master", "br0", "up")
            node.ip("addr", "add", f"{ADDR[name]}/24", "dev", "eth1")
        # static neighbours: no ARP exchange inside a measurement, so every delay is the wire's
        mac = {name: node.ip_json("link", "show", "dev", "eth1")[0]["address"]
               for node, name in ((n1, "n1"), (n2, "n2"))}
        n1.ip("neigh", "replace", ADDR["n2"], "lladdr", mac["n2"], "dev", "eth1", "nud", "permanent")
        n2.ip("neigh", "replace", ADDR["n1"], "lladdr", mac["n1"], "dev", "eth1", "nud", "permanent")
        yield Bed(sw, n1, n2)
    finally:
        for ns in reversed(made):
            ns.delete()


def one_way_ms(src: NetNs, dst: NetNs, dst_addr: str, count: int = 200, gap: float = 0.005,
               grace: float = 3.0) -> list[float]:
    """Send `count` timestamped datagrams src -> dst; the one-way delays (ms) of those that arrived."""
    rx = dst.popen([sys.executable, "-c", RECEIVER, dst_addr, str(UDP_PORT), str(count), str(count * gap + grace)])
    try:
        assert rx.stdout is not None
        r, _, _ = select.select([rx.stdout], [], [], 10.0)
        assert r and rx.stdout.readline().strip() == "ready", rx.stderr.read() if rx.stderr else ""
        src.python(SENDER, dst_addr, str(UDP_PORT), str(count), str(gap))
        out, err = rx.communicate(timeout=count * gap + 10.0)
        assert rx.returncode == 0, err
        return list(json.loads(out.strip().splitlines()[-1]).values())
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(timeout=5)


def quantile(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def assert_fast(bed: Bed) -> None:
    delays = one_way_ms(bed.n1, bed.n2, ADDR["n2"], count=50, gap=0.002)
    assert len(delays) == 50
    assert max(delays) < 5.0, sorted(delays)[-5:]


def assert_restored(bed: Bed) -> None:
    assert bed.masters() == ["p1", "p2"]
    assert not [name for name in bed.links() if name.startswith("jw")]


def test_a_50ms_wire_spreads_delays_both_ways_loses_nothing_and_goes_away(bed: Bed) -> None:
    assert_fast(bed)
    j = Jitter(bed.sw.name, "br0", "p1", MAX_DELAY, seed=7)
    try:
        j.start()
        assert bed.masters() == sorted(["p2", j.a])  # p1 is off the bridge, the relay's end is on it
        forward = one_way_ms(bed.n1, bed.n2, ADDR["n2"])
        back = one_way_ms(bed.n2, bed.n1, ADDR["n1"], count=100)
    finally:
        stats = j.stop()
    assert_restored(bed)
    assert_fast(bed)

    assert len(forward) == 200 and len(back) == 100  # no loss, either way
    for delays in (forward, back):
        assert min(delays) >= 0.0
        assert max(delays) <= MAX_DELAY * 1000 + SLACK_MS, sorted(delays)[-5:]
        assert quantile(delays, 0.1) < 15.0 and quantile(delays, 0.9) > 35.0, (quantile(delays, 0.1),
                                                                                quantile(delays, 0.9))
        assert 15.0 < statistics.median(delays) < 35.0

    assert stats["frames"]["from_port"] >= 200 and stats["frames"]["to_port"] >= 100, stats
    assert stats["drawn"]["max_ms"] <= MAX_DELAY * 1000
    assert stats["late"]["median_ms"] < 1.0 and stats["late"]["p99_ms"] < 3.0, stats["late"]
    assert stats["rt_priority"] == 10
    assert stats["added"]["max_ms"] <= MAX_DELAY * 1000 + SLACK_MS, stats["added"]
    assert not stats["errors"], stats["errors"]
    print("wire stats:", json.dumps(stats))
    assert j.stop() is stats  # idempotent


def test_stop_restores_the_port_after_the_relay_was_killed(bed: Bed) -> None:
    j = Jitter(bed.sw.name, "br0", "p1", MAX_DELAY, seed=1)
    try:
        j.start()
        assert j.proc is not None
        os.kill(j.proc.pid, signal.SIGKILL)
        j.proc.wait(timeout=5)
    finally:
        stats = j.stop()
    assert_restored(bed)
    assert_fast(bed)
    assert "frames" not in stats and stats["errors"]["wire"], stats  # no stats, said so, no exception
    assert j.stop() is stats


def test_the_relay_ends_on_its_own_after_max_seconds(bed: Bed) -> None:
    j = Jitter(bed.sw.name, "br0", "p1", 0.001, seed=1, max_seconds=0.5)
    try:
        j.start()
        assert j.proc is not None
        j.proc.wait(timeout=5)  # raises if it did not end by itself
    finally:
        stats = j.stop()
    assert_restored(bed)
    assert stats["frames"] == {"from_port": stats["frames"]["from_port"], "to_port": stats["frames"]["to_port"]}


def test_add_jitter_undoes_the_started_wires_when_one_fails(bed: Bed) -> None:
    with pytest.raises(WireError, match="nope"):
        add_jitter(bed.sw.name, [("br0", "p1"), ("br0", "nope")], MAX_DELAY, seed=3)
    assert_restored(bed)
    with pytest.raises(WireError, match="not on bridge"):
        Jitter(bed.sw.name, "other", "p2", MAX_DELAY, seed=3).start()
    assert_restored(bed)


def test_add_and_remove_jitter_on_two_ports(bed: Bed) -> None:
    jitters: list[Any] = []
    try:
        jitters = add_jitter(bed.sw.name, [("br0", "p1"), ("br0", "p2")], 0.02, seed=5)
        assert len(bed.masters()) == 2 and not {"p1", "p2"} & set(bed.masters())
        delays = one_way_ms(bed.n1, bed.n2, ADDR["n2"], count=100)
    finally:
        stats = remove_jitter(jitters)
    assert_restored(bed)
    assert len(delays) == 100
    assert max(delays) <= 2 * 20 + SLACK_MS  # two wires in series: U(0,20) + U(0,20)
    assert quantile(delays, 0.9) > 20.0
    assert [s["seed"] for s in stats] == [5, 6]
    assert stats[0]["frames"]["from_port"] >= 100 and stats[1]["frames"]["to_port"] >= 100, stats


def test_the_wire_keeps_working_after_its_port_goes_down_and_up(bed: Bed) -> None:
    j = Jitter(bed.sw.name, "br0", "p1", 0.005, seed=2)
    try:
        j.start()
        bed.sw.ip("link", "set", "p1", "down")  # what the test bed's cut() does to a node's cable
        lost = one_way_ms(bed.n1, bed.n2, ADDR["n2"], count=20, gap=0.002, grace=0.5)
        bed.sw.ip("link", "set", "p1", "up")
        delays = one_way_ms(bed.n1, bed.n2, ADDR["n2"], count=50, gap=0.002)
    finally:
        stats = j.stop()
    assert_restored(bed)
    assert lost == [] and len(delays) == 50
    assert j.proc is not None and j.proc.returncode == 0 and "frames" in stats, stats
