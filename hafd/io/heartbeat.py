"""UDP transport for heartbeats: one socket per local link, run by one thread; no policy.

Each local link address gets its own socket bound to (address, port), so a packet's
source address names the peer's link it came from, and a dead link shows up as
silence on exactly that link.

Why a thread, and not the event loop (nor asyncio-dgram): an idle cluster exchanges 40
heartbeats a second in each direction, and on these machines every wake-up of the
event loop costs ~0.2 ms of CPU before any of our code runs, with caches cold after
25 ms asleep.  Measured on this 2-core VM, 40 Hz, two links, sending and receiving
with an HMAC each way: an asyncio timer 1.3-1.6 % of a core, a plain thread 0.7-1.0 %
(the bar is 1.5 %).  asyncio-dgram's queue-and-task receive path costs more still (2.15 %
in an earlier measurement).  hafd itself, idle pair on the test bed, 3 alternating rounds
of 40 s per node: 2.41 % of a core on average with the asyncio tick, 2.00 % with this
thread (the rest is the wake-up itself and the event loop's pass at each deadline).

So the thread owns the sockets.  Every interval, on an absolute schedule, it reads what
arrived and sends the next heartbeat; the daemon's event loop is woken only when a
datagram says something new (its bytes, but for sequence number, send time and MAC,
differ from the last one on that link), when a flush is asked for, or always while the
cluster is in transition (`immediate`).  Repeats wait in `pending` and are processed in
one warm batch when the loop next runs (at the latest at a membership deadline, after a
`flush`).  Every datagram still gets the full check in the loop: the thread only
decides when.

Each datagram carries the kernel's arrival time (SO_TIMESTAMPNS), so membership sees
when a heartbeat arrived, not when it was read: peer loss is detected at deadtime after
the last arrival, without the up-to-one-interval lag of reading in the tick.

Messages the loop sends (commands, goodbyes) are signed in the thread just before they
go out: one thread allocates every sequence number, so they leave in order and no
heartbeat overtakes a command (the receiver's replay guard would drop it).
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from typing import Callable, NamedTuple, Sequence

import structlog

log = structlog.get_logger(__name__)

MAX_DATAGRAM = 2048
# Bounded work per socket per read: a flood must not starve the sending.
MAX_PER_DRAIN = 256
# A batch this long goes to the loop at once rather than waiting for the next deadline.
MAX_BATCH = 256
# Pending datagrams beyond this are dropped, oldest first (only a flood gets here).
MAX_PENDING = 8192
_TIMESPEC = struct.Struct("@ll")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
_SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", 35)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class Received(NamedTuple):
    data: bytes
    source: str  # the peer's link address it came from
    link: str  # our local link address it arrived on
    at: float  # time.monotonic() of its arrival


Sign = Callable[[], bytes]


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class HeartbeatTransport:
    """Sends `beat()` on every link each interval and hands received datagrams to the loop.

    `beat` and the `make` functions given to `send` run in the heartbeat thread: they
    must only read immutable data (the daemon swaps in a new codec.Template when its
    heartbeat changes).  `on_batch` runs in the event loop and should call `take()`.
    """

    def __init__(
        self,
        local_links: Sequence[str],
        port: int,
        peers: Sequence[Sequence[str]],
        interval: float,
        beat: Sign,
        on_batch: Callable[[], None],
        repeat_key: Callable[[bytes], bytes],
    ) -> None:
        self.local_links = tuple(local_links)
        self.port = port
        self.peers = [tuple(p) for p in peers]
        self.interval = interval
        self.beat = beat
        self.on_batch = on_batch
        self.repeat_key = repeat_key
        self.send_errors = 0
        self.recv_errors = 0
        self.dropped = 0
        self.ticks = 0
        self._socks: dict[str, socket.socket] = {}
        self._targets: list[tuple[socket.socket, tuple[str, int], str]] = []  # (socket, peer address, our link)
        self._pending: deque[Received] = deque()
        self._outbox: deque[Sign] = deque()
        self._flushes: deque[asyncio.Future[bool]] = deque()
        self._last_key: dict[str, bytes] = {}
        self._last_read: dict[str, float] = {}
        self._immediate = False
        self._beat_now = False
        self._scheduled = False
        self._stop = False
        self._wake_fd = -1
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._died: BaseException | None = None

    # -- life cycle (event loop) ---------------------------------------------------

    async def start(self) -> None:
        """Bind every link's socket and start the thread (it sends the first heartbeat at once)."""
        self._loop = asyncio.get_running_loop()
        for addr in self.local_links:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            try:
                s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                s.bind((addr, self.port))
            except OSError:
                s.close()
                self.close_sockets()
                raise
            self._socks[addr] = s
            self._last_read[addr] = time.monotonic()
        # Local link i talks to each peer's link i.
        self._targets = [(self._socks[local], (remote, self.port), local)
                         for peer in self.peers for local, remote in zip(self.local_links, peer)]
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        log.info("heartbeat_transport_started", links=list(self.local_links), port=self.port, interval=self.interval)

    async def close(self) -> None:
        """Send what is queued, stop the thread, close the sockets."""
        self._stop = True
        self._wake()
        t = self._thread
        if t is not None:
            await asyncio.get_running_loop().run_in_executor(None, t.join, 5.0)
            if t.is_alive():
                log.error("heartbeat_thread_did_not_stop")
        self.close_sockets()

    def close_sockets(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()
        self._targets = []
        if self._wake_fd >= 0 and (self._thread is None or not self._thread.is_alive()):
            os.close(self._wake_fd)
            self._wake_fd = -1

    def alive(self) -> bool:
        """False once the thread has died: the node has gone silent and must not serve on."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def failure(self) -> BaseException | None:
        return self._died

    # -- the event loop's side -----------------------------------------------------

    def send(self, make: Sign) -> None:
        """Queue one message; the thread signs (`make()`) and sends it on every link at once."""
        self._outbox.append(make)
        self._wake()

    def beat_now(self) -> None:
        """An extra heartbeat now (the role changed), without moving the schedule."""
        self._beat_now = True
        self._wake()

    def set_immediate(self, on: bool) -> None:
        """Hand every datagram to the loop as it arrives (transition) or batch repeats (steady)."""
        if on != self._immediate:
            self._immediate = on
            self._wake()

    @property
    def immediate(self) -> bool:
        return self._immediate

    def take(self) -> list[Received]:
        """What arrived since the last call, oldest first."""
        self._scheduled = False  # before taking: a datagram appended after this reschedules
        out: list[Received] = []
        pending = self._pending
        while pending:
            out.append(pending.popleft())
        return out

    async def flush(self, timeout: float) -> bool:
        """Have the thread read every socket now and deliver; False if it did not answer in time."""
        if not self.alive():
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._flushes.append(fut)
        self._wake()
        timer = loop.call_later(timeout, _resolve, fut, False)  # not wait_for: no task per flush
        try:
            return await fut
        finally:
            timer.cancel()

    def _wake(self) -> None:
        if self._wake_fd >= 0:
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:  # closed during shutdown
                pass

    def _delivered(self, flushes: list[asyncio.Future[bool]]) -> None:
        self.on_batch()
        for f in flushes:
            _resolve(f, True)

    # -- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_fd, select.POLLIN)
        watched = False
        next_tick = time.monotonic()
        try:
            while True:
                if self._immediate != watched:
                    watched = self._immediate
                    for s in self._socks.values():
                        if watched:
                            poller.register(s.fileno(), select.POLLIN)
                        else:
                            poller.unregister(s.fileno())
                timeout_ms = max(0.0, (next_tick - time.monotonic()) * 1000.0)
                events = poller.poll(timeout_ms)
                now = time.monotonic()
                tick = now >= next_tick
                try:
                    self._iteration(events, tick)
                except Exception:  # noqa: BLE001 - the heartbeat must survive any bug in one tick
                    log.exception("heartbeat_tick_failed")
                    time.sleep(self.interval)  # a bug must not turn into a busy loop
                if tick:
                    next_tick += self.interval
                    if next_tick < now - self.interval:  # we were starved: do not burst to catch up
                        next_tick = now
                if self._stop:
                    self._send_outbox()
                    return
        except BaseException as e:  # noqa: BLE001 - recorded for the daemon, which stops on it
            self._died = e
            log.critical("heartbeat_thread_died", error=repr(e))
            raise

    def _iteration(self, events: list[tuple[int, int]], tick: bool) -> None:
        woken = any(fd == self._wake_fd for fd, _ in events)
        if woken:
            try:
                os.eventfd_read(self._wake_fd)
            except BlockingIOError:
                pass
        self._send_outbox()
        flushes: list[asyncio.Future[bool]] = []
        while self._flushes:
            flushes.append(self._flushes.popleft())
        urgent = False
        if tick or flushes or self._immediate:
            # Arrival stamps are CLOCK_REALTIME: mapped to monotonic with one offset per read,
            # and clamped to (previous read, now] so a clock step cannot move them far.
            now = time.monotonic()
            offset = time.time() - now
            for addr in self._socks:
                urgent |= self._read(addr, now, offset)
        if tick or self._beat_now:
            self._beat_now = False
            self._send_all(self.beat())
            self.ticks += tick
        if flushes or (self._pending and (urgent or self._immediate)):
            self._deliver(flushes)

    def _deliver(self, flushes: list[asyncio.Future[bool]]) -> None:
        if not flushes and self._scheduled:
            return
        self._scheduled = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._delivered, flushes)
        except RuntimeError:  # the loop closed under us (shutdown)
            pass

    def _read(self, addr: str, now: float, offset: float) -> bool:
        """Read what waits on one link; True if something must reach the loop now."""
        s = self._socks.get(addr)
        if s is None:
            return False
        urgent = False
        floor = self._last_read[addr]
        self._last_read[addr] = now
        for _ in range(MAX_PER_DRAIN):
            try:
                data, anc, _flags, peer = s.recvmsg(MAX_DATAGRAM, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ECONNREFUSED queued by an ICMP error: skip it
                self.recv_errors += 1
                continue
            at = now
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(raw) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(raw)
                    at = min(now, max(floor, sec + nsec * 1e-9 - offset))
            key = self.repeat_key(data)
            if key != self._last_key.get(addr):
                self._last_key[addr] = key
                urgent = True
            if len(self._pending) >= MAX_PENDING:
                try:
                    self._pending.popleft()
                    self.dropped += 1
                    if self.dropped % 1000 == 1:
                        log.warning("heartbeat_backlog_dropped", link=addr, count=self.dropped, limit=MAX_PENDING)
                except IndexError:  # the loop took them meanwhile
                    pass
            self._pending.append(Received(data, peer[0], addr, at))
        return urgent or len(self._pending) >= MAX_BATCH

    def _send_outbox(self) -> None:
        while self._outbox:
            make = self._outbox.popleft()
            try:
                data = make()
            except Exception:  # noqa: BLE001 - one unencodable message must not stop the others
                log.exception("heartbeat_message_failed")
                continue
            self._send_all(data)

    def _send_all(self, data: bytes) -> None:
        """One packet on every link to every peer.  Never blocks and never raises: a
        failing link must not delay the others."""
        for s, dest, local in self._targets:
            try:
                s.sendto(data, dest)
            except OSError as e:  # unreachable, buffer full, an ICMP error from an earlier send; closed at shutdown
                self.send_errors += 1
                if self.send_errors % 1000 == 1:
                    log.warning("heartbeat_send_error", link=local, peer=dest[0], error=str(e), count=self.send_errors)
