"""The heartbeat thread (hafd/io/heartbeat.py) on loopback: what it sends, when it wakes
the event loop, arrival times, ordering of queued messages, and surviving bugs."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import time
from typing import Any, AsyncIterator, Callable

import pytest

from hafd.core import codec
from hafd.core.codec import Heartbeat, Leaving, Message, Role
from hafd.io.heartbeat import MAX_BATCH, HeartbeatTransport, Received

KEY = b"h" * 32
INTERVAL = 0.01
A_LINKS = ("127.0.0.1", "127.0.0.3")
B_LINKS = ("127.0.0.2", "127.0.0.4")


def hb(epoch: int = 1) -> Heartbeat:
    return Heartbeat(role=Role.ACTIVE, epoch=epoch, config_hash=b"c" * 32, priority=100, active_view="a")


class Node:
    """One transport plus what a daemon would give it: a swappable template, a counter,
    and a record of every batch the loop was handed."""

    def __init__(self, name: str, links: tuple[str, ...], peer_links: tuple[str, ...], port: int,
                 interval: float = INTERVAL) -> None:
        self.name = name
        self.boot = bytes(random.randrange(256) for _ in range(16))
        self.seq = itertools.count(1)
        self.template = codec.Template(name, self.boot, hb())
        self.fail_beat = False
        self.beats = 0
        self.batches: list[list[Received]] = []
        self.got = asyncio.Event()
        self.t = HeartbeatTransport(links, port, [peer_links], interval, self.beat, self.on_batch, codec.repeat_key)

    def beat(self) -> bytes:
        self.beats += 1
        if self.fail_beat:
            raise RuntimeError("a bug in making the heartbeat")
        return self.template.sign(next(self.seq), time.monotonic(), KEY)

    def on_batch(self) -> None:
        self.batches.append(self.t.take())
        self.got.set()

    def received(self) -> list[tuple[Received, Message]]:
        return [(r, codec.decode(r.data, KEY)) for b in self.batches for r in b]

    def calls(self) -> int:
        return len(self.batches)


def free_port() -> int:
    for _ in range(50):
        port = random.randrange(20000, 60000)
        socks = []
        try:
            for addr in A_LINKS + B_LINKS:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((addr, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port on loopback")


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Node, Node]]:
    port = free_port()
    a, b = Node("nodeone", A_LINKS, B_LINKS, port), Node("nodetwo", B_LINKS, A_LINKS, port)
    try:
        await a.t.start()
        await b.t.start()
        yield a, b
    finally:
        await a.t.close()
        await b.t.close()


async def until(cond: Callable[[], Any], timeout: float = 5.0) -> None:
    """Await a condition the transport's callbacks make true (bounded)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


async def test_repeats_wait_for_a_flush_and_carry_their_arrival_time(pair: tuple[Node, Node]) -> None:
    a, b = pair
    await until(lambda: b.calls() >= 1)  # the first heartbeat on a link is news
    t_before = time.monotonic()
    await until(lambda: b.t.ticks >= 30 and a.t.ticks >= 30)
    woken = b.calls()
    assert woken <= 3, "repeats of an unchanged heartbeat must not wake the loop"
    assert await b.t.flush(1.0)
    t_after = time.monotonic()
    got = b.received()
    assert len(got) >= 40  # ~30 ticks x 2 links, all delivered by the flush
    links = {r.link for r, _ in got}
    assert links == set(B_LINKS)
    for link in B_LINKS:
        seqs = [m.seq for r, m in got if r.link == link]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    late = [r for r, m in got if r.at >= t_before]
    assert late and all(r.at <= t_after for r in late)
    for r, m in got:
        assert r.at >= m.sent_at - 0.001


async def test_arrival_times_are_the_kernels_not_when_the_thread_read_them() -> None:
    port = free_port()
    a = Node("nodeone", A_LINKS, B_LINKS, port)
    b = Node("nodetwo", B_LINKS, A_LINKS, port, interval=5.0)  # reads at its first tick, then not for 5 s
    try:
        await b.t.start()
        await until(lambda: b.t.ticks >= 1)
        await a.t.start()
        t0 = time.monotonic()
        await until(lambda: a.t.ticks >= 30)
        assert await b.t.flush(1.0)  # the only read since they were sent
        got = b.received()
        assert len(got) >= 50
        spread = max(r.at for r, _ in got) - min(r.at for r, _ in got)
        assert spread >= 0.2, "stamped when read, all at once, instead of when each arrived"
        for r, m in got:
            assert t0 - 0.01 <= m.sent_at - 0.001 <= r.at <= m.sent_at + 0.05
    finally:
        await a.t.close()
        await b.t.close()


async def test_a_changed_heartbeat_wakes_the_loop_at_once(pair: tuple[Node, Node]) -> None:
    a, b = pair
    await until(lambda: b.calls() >= 1)
    await until(lambda: b.t.ticks >= 5)
    before = b.calls()
    t0 = time.monotonic()
    a.template = codec.Template(a.name, a.boot, hb(epoch=2))
    await until(lambda: any(m.body == hb(epoch=2) for _, m in b.received()))
    assert b.calls() > before
    assert time.monotonic() - t0 < 0.5


async def test_immediate_mode_hands_over_every_datagram(pair: tuple[Node, Node]) -> None:
    a, b = pair
    b.t.set_immediate(True)
    await until(lambda: b.calls() >= 1)
    start = b.calls()
    await until(lambda: b.calls() >= start + 10)
    per_call = [len(x) for x in b.batches[start:]]
    assert max(per_call) <= 2, per_call  # one tick's copies at most, never a backlog
    b.t.set_immediate(False)
    await until(lambda: b.t.ticks >= a.t.ticks - 1)
    settled = b.calls()
    await until(lambda: a.t.ticks >= 40)
    assert b.calls() - settled <= 2


async def test_queued_messages_leave_in_sequence_order_between_heartbeats(pair: tuple[Node, Node]) -> None:
    a, b = pair
    b.t.set_immediate(True)
    await until(lambda: b.calls() >= 1)
    for i in range(20):
        a.t.send(lambda: codec.Template(a.name, a.boot, Leaving(restarting=True)).sign(next(a.seq), time.monotonic(), KEY))
        if i % 5 == 0:
            await asyncio.sleep(INTERVAL)
    await until(lambda: sum(isinstance(m.body, Leaving) for _, m in b.received()) >= 40)
    for link in B_LINKS:
        seqs = [m.seq for r, m in b.received() if r.link == link]
        assert all(x < y for x, y in zip(seqs, seqs[1:])), "a receiver's replay guard would drop one"


async def test_beat_now_sends_an_extra_heartbeat_without_waiting_for_the_tick() -> None:
    port = free_port()
    a, b = Node("nodeone", A_LINKS, B_LINKS, port, interval=1.0), Node("nodetwo", B_LINKS, A_LINKS, port, interval=1.0)
    try:
        await a.t.start()
        await b.t.start()
        b.t.set_immediate(True)
        await until(lambda: len(b.received()) >= 2)  # the first tick sends at once
        n = len(b.received())
        t0 = time.monotonic()
        a.t.beat_now()
        await until(lambda: len(b.received()) >= n + 2)
        assert time.monotonic() - t0 < 0.5  # not the 1 s tick
    finally:
        await a.t.close()
        await b.t.close()


async def test_a_failing_beat_is_survived(pair: tuple[Node, Node]) -> None:
    a, b = pair
    b.t.set_immediate(True)
    await until(lambda: b.calls() >= 1)
    a.fail_beat = True
    failing_from = a.beats
    await until(lambda: a.beats >= failing_from + 3 or not a.t.alive(), timeout=2.0)
    assert a.t.alive()
    n = len(b.received())
    a.fail_beat = False
    await until(lambda: len(b.received()) > n)


async def test_close_sends_what_is_queued_and_stops_the_thread(pair: tuple[Node, Node]) -> None:
    a, b = pair
    b.t.set_immediate(True)
    await until(lambda: b.calls() >= 1)
    a.t.send(lambda: codec.Template(a.name, a.boot, Leaving(restarting=False)).sign(next(a.seq), time.monotonic(), KEY))
    await a.t.close()
    assert not a.t.alive()
    assert not await a.t.flush(0.1)
    await until(lambda: any(m.body == Leaving(restarting=False) for _, m in b.received()))


async def test_a_flood_is_handed_over_in_bounded_batches(pair: tuple[Node, Node]) -> None:
    a, b = pair
    await until(lambda: b.calls() >= 1)
    flood = codec.Template("nodeone", a.boot, hb()).sign(1, 0.0, KEY)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(MAX_BATCH * 2):
            s.sendto(flood, (B_LINKS[0], b.t.port))
    finally:
        s.close()
    await until(lambda: len(b.received()) >= MAX_BATCH)  # without any flush
