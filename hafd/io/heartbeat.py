"""UDP transport for heartbeats: one socket per local link, bytes in and out, no policy.

Uses asyncio-dgram (small, does one thing: an awaitable recv/send over a datagram
endpoint) rather than a hand-written DatagramProtocol.  Each local link address gets
its own socket bound to (address, port), so a packet's source address names the
peer's link it came from, and a dead link shows up as silence on exactly that link.
ICMP errors (a peer's port unreachable while its daemon restarts) surface on a later
call in asyncio-dgram; they are counted and otherwise ignored.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Sequence

import asyncio_dgram
import structlog

log = structlog.get_logger(__name__)

OnPacket = Callable[[bytes, str, str], None]  # (data, source address, local link address)


class HeartbeatTransport:
    def __init__(self, local_links: Sequence[str], port: int, on_packet: OnPacket) -> None:
        self.local_links = tuple(local_links)
        self.port = port
        self.on_packet = on_packet
        self._streams: dict[str, asyncio_dgram.aio.DatagramServer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.send_errors = 0
        self.recv_errors = 0

    async def start(self) -> None:
        for addr in self.local_links:
            self._streams[addr] = await asyncio_dgram.bind((addr, self.port))
        for addr, stream in self._streams.items():
            self._tasks.append(asyncio.create_task(self._recv_loop(addr, stream), name=f"hb-recv-{addr}"))
        log.info("heartbeat_transport_started", links=list(self.local_links), port=self.port)

    async def send(self, data: bytes, peer_links: Sequence[str]) -> None:
        """Send one packet on every link: local link i talks to the peer's link i.

        Never raises: a failing link must not delay or stop the others.
        """
        for local, remote in zip(self.local_links, peer_links):
            stream = self._streams.get(local)
            if stream is None:
                continue
            for _attempt in range(2):
                try:
                    await stream.send(data, (remote, self.port))
                    break
                except asyncio_dgram.TransportClosed:
                    break
                except Exception as e:  # noqa: BLE001 - an earlier ICMP error surfaces here; the send is retried once
                    self.send_errors += 1
                    if self.send_errors % 1000 == 1:
                        log.warning("heartbeat_send_error", link=local, peer=remote, error=str(e), count=self.send_errors)

    async def _recv_loop(self, addr: str, stream: asyncio_dgram.aio.DatagramServer) -> None:
        while True:
            try:
                data, peer = await stream.recv()
                src_addr = peer[0]
            except asyncio_dgram.TransportClosed:
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - an ICMP error queued for this socket
                self.recv_errors += 1
                continue
            try:
                self.on_packet(data, src_addr, addr)
            except Exception:  # noqa: BLE001 - a bug in handling one packet must not stop the link
                log.exception("heartbeat_handler_failed", link=addr)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for s in self._streams.values():
            s.close()
        self._streams.clear()
        self._tasks.clear()
