"""Who is alive, on which link, from admitted messages and an injected clock.

Pure: the daemon feeds it messages that already passed `codec.decode` and
`codec.ReplayGuard.admit`, and calls `tick(now)` when a deadline may have passed
(`next_deadline()` says when).  A peer is alive while ANY of its links delivered a message
within `deadtime`; silence is judged strictly (`now > last_seen + deadtime`, so a tick at
exactly `next_deadline()` changes nothing: schedule it a hair later), and the number of
consecutive losses that declares a peer lost is floor(deadtime / interval), the figure
`falsefail` computes with.

Every message of a boot goes out on every link with the same sequence number, so the
per-link loss estimate is exact: over a sliding window (the last `window_seqs` sequence
numbers and `window_seconds`), loss = 1 - received / (last seq - first seq + 1).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from hafd.core.codec import Heartbeat, Leaving, Message


class EventKind(enum.Enum):
    PEER_UP = "peer_up"
    PEER_LOST = "peer_lost"
    PEER_RESTARTED = "peer_restarted"
    PEER_LEAVING = "peer_leaving"
    LINK_UP = "link_up"
    LINK_DOWN = "link_down"


@dataclass(frozen=True)
class MembershipEvent:
    kind: EventKind
    node: str
    reason: str  # one sentence, for the log and `hafctl history`
    link: str | None = None
    # PEER_LOST: each link and how long it had been silent (None: never heard on it)
    silent: tuple[tuple[str, float | None], ...] = ()
    restarting: bool = False  # PEER_LEAVING: the peer said it is coming back


@dataclass(frozen=True)
class LinkView:
    address: str
    up: bool
    last_seen_ago: float | None
    loss: float | None  # None until two messages give a span
    received: int  # messages in the loss window


@dataclass(frozen=True)
class PeerView:
    name: str
    alive: bool
    boot_id: str | None  # hex
    last_seen_ago: float | None
    leaving: bool
    restarting: bool
    heartbeat: Heartbeat | None  # the last one from the current boot
    links: tuple[LinkView, ...]


@dataclass(frozen=True)
class MembershipSnapshot:
    local: str
    peers: tuple[PeerView, ...]
    ignored: int  # messages for unknown nodes or links

    def as_json(self) -> dict[str, Any]:
        """Plain types only, for the control socket's status answer."""
        out: list[dict[str, Any]] = []
        for p in self.peers:
            hb = p.heartbeat
            out.append(
                {
                    "name": p.name,
                    "alive": p.alive,
                    "boot_id": p.boot_id,
                    "last_seen_ago": p.last_seen_ago,
                    "leaving": p.leaving,
                    "restarting": p.restarting,
                    "heartbeat": None
                    if hb is None
                    else {
                        "role": hb.role.name.lower(),
                        "epoch": hb.epoch,
                        "config_hash": hb.config_hash.hex(),
                        "priority": hb.priority,
                        "active_view": hb.active_view or None,
                        "standby": hb.standby,
                        "has_failed_resource": hb.has_failed_resource,
                        "tiebreaker_ok": hb.tiebreaker_ok,
                        "restarting": hb.restarting,
                    },
                    "links": [
                        {
                            "address": ln.address,
                            "up": ln.up,
                            "last_seen_ago": ln.last_seen_ago,
                            "loss": ln.loss,
                            "received": ln.received,
                        }
                        for ln in p.links
                    ],
                }
            )
        return {"local": self.local, "peers": out, "ignored": self.ignored}


@dataclass
class _Link:
    address: str
    up: bool = False
    last_seen: float | None = None
    window: deque[tuple[int, float]] = field(default_factory=deque)  # (seq, arrival)


@dataclass
class _Peer:
    name: str
    links: dict[str, _Link]
    alive: bool = False
    boot_id: bytes | None = None
    heartbeat: Heartbeat | None = None
    leaving: bool = False
    restarting: bool = False
    hold_until: float | None = None  # a restarting peer counts as alive until then


def _fmt(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.3f} s"


class Membership:
    def __init__(
        self,
        local: str,
        peers: Mapping[str, Sequence[str]],
        interval: float,
        deadtime: float,
        *,
        window_seqs: int = 200,
        window_seconds: float = 10.0,
        restart_grace: float = 10.0,
    ) -> None:
        if interval <= 0 or deadtime <= interval:
            raise ValueError(f"need 0 < interval < deadtime, got interval={interval} deadtime={deadtime}")
        self.local = local
        self.interval = interval
        self.deadtime = deadtime
        self.window_seqs = window_seqs
        self.window_seconds = window_seconds
        self.restart_grace = restart_grace
        self._peers = {
            name: _Peer(name, {a: _Link(a) for a in addrs}) for name, addrs in peers.items() if name != local
        }
        self._ignored = 0

    # ------------------------------------------------------------ input

    def on_heartbeat(self, node: str, link_addr: str, msg: Message, now: float) -> list[MembershipEvent]:
        """Take one admitted message of any type; returns the events it causes at once.

        PEER_UP / LINK_UP / PEER_RESTARTED / PEER_LEAVING come from here (so the election
        can run without waiting for a tick); PEER_LOST / LINK_DOWN come from `tick`.
        """
        peer = self._peers.get(node)
        link = peer.links.get(link_addr) if peer else None
        if peer is None or link is None:
            self._ignored += 1
            return []
        events: list[MembershipEvent] = []
        if peer.boot_id is not None and msg.boot_id != peer.boot_id:
            events.append(
                MembershipEvent(
                    EventKind.PEER_RESTARTED,
                    node,
                    f"{node} restarted: new boot id {msg.boot_id.hex()[:8]} replaces {peer.boot_id.hex()[:8]}",
                )
            )
            for ln in peer.links.values():
                ln.window.clear()
            peer.heartbeat = None
            peer.leaving = peer.restarting = False
            peer.hold_until = None
        peer.boot_id = msg.boot_id

        link.last_seen = now
        link.window.append((msg.seq, now))
        self._prune(link, now)

        if isinstance(msg.body, Leaving):
            if peer.leaving and peer.restarting == msg.body.restarting:
                return events  # the same goodbye, arriving on another link
            peer.leaving = True
            peer.restarting = msg.body.restarting
            what = "is restarting; holding off until it is back" if msg.body.restarting else "is leaving the cluster"
            events.append(MembershipEvent(EventKind.PEER_LEAVING, node, f"{node} {what}", restarting=msg.body.restarting))
            if msg.body.restarting:
                peer.hold_until = now + self.restart_grace
            elif peer.alive:
                # A clean goodbye: no need to wait a deadtime before taking over.
                peer.alive = False
                for ln in peer.links.values():
                    ln.up = False
                events.append(MembershipEvent(EventKind.PEER_LOST, node, f"{node} lost: it said goodbye"))
            return events

        if peer.leaving:
            return events  # stragglers of a run that already said goodbye must not revive it
        if not link.up:
            link.up = True
            events.append(MembershipEvent(EventKind.LINK_UP, node, f"link {link_addr} to {node} is up", link=link_addr))
        if isinstance(msg.body, Heartbeat):
            peer.heartbeat = msg.body
        if not peer.alive:
            peer.alive = True
            events.append(MembershipEvent(EventKind.PEER_UP, node, f"{node} is up (via {link_addr})", link=link_addr))
        return events

    def tick(self, now: float) -> list[MembershipEvent]:
        """Expire silent links and peers; link events come before the peer's."""
        events: list[MembershipEvent] = []
        for peer in self._peers.values():
            for ln in peer.links.values():
                self._prune(ln, now)
                if ln.up and ln.last_seen is not None and now > ln.last_seen + self.deadtime:
                    ln.up = False
                    events.append(
                        MembershipEvent(
                            EventKind.LINK_DOWN,
                            peer.name,
                            f"link {ln.address} to {peer.name} is down: silent for {_fmt(now - ln.last_seen)}",
                            link=ln.address,
                        )
                    )
            if not peer.alive or any(ln.up for ln in peer.links.values()):
                continue
            if peer.hold_until is not None and now <= peer.hold_until:
                continue
            peer.alive = False
            silent = tuple(
                (ln.address, None if ln.last_seen is None else now - ln.last_seen) for ln in peer.links.values()
            )
            detail = ", ".join(f"{a} ({_fmt(s)})" for a, s in silent)
            why = "did not come back from its restart" if peer.hold_until is not None else "no valid heartbeat"
            events.append(
                MembershipEvent(
                    EventKind.PEER_LOST,
                    peer.name,
                    f"{peer.name} lost: {why} within {self.deadtime:g} s on any link: {detail}",
                    silent=silent,
                )
            )
            peer.hold_until = None
        return events

    def _prune(self, link: _Link, now: float) -> None:
        w = link.window
        if not w:
            return
        newest = w[-1][0]  # ReplayGuard makes seqs strictly increase per link
        while w and (w[0][0] <= newest - self.window_seqs or now - w[0][1] > self.window_seconds):
            w.popleft()

    # ------------------------------------------------------------ queries

    def next_deadline(self) -> float | None:
        """The earliest time a tick may change something (None: nothing is pending)."""
        times: list[float] = []
        for peer in self._peers.values():
            times += [ln.last_seen + self.deadtime for ln in peer.links.values() if ln.up and ln.last_seen is not None]
            if peer.alive and peer.hold_until is not None:
                times.append(peer.hold_until)
        return min(times) if times else None

    def alive_peers(self) -> list[str]:
        return sorted(p.name for p in self._peers.values() if p.alive)

    def heartbeat_of(self, node: str) -> Heartbeat | None:
        peer = self._peers.get(node)
        return peer.heartbeat if peer else None

    def loss(self, node: str, link_addr: str) -> float | None:
        w = self._peers[node].links[link_addr].window
        if len(w) < 2:
            return None
        seqs = [s for s, _ in w]
        span = max(seqs) - min(seqs) + 1
        return max(0.0, 1.0 - len(w) / span)

    def snapshot(self, now: float) -> MembershipSnapshot:
        peers = []
        for p in self._peers.values():
            links = tuple(
                LinkView(
                    address=ln.address,
                    up=ln.up,
                    last_seen_ago=None if ln.last_seen is None else now - ln.last_seen,
                    loss=self.loss(p.name, ln.address),
                    received=len(ln.window),
                )
                for ln in p.links.values()
            )
            seen = [ln.last_seen for ln in p.links.values() if ln.last_seen is not None]
            peers.append(
                PeerView(
                    name=p.name,
                    alive=p.alive,
                    boot_id=p.boot_id.hex() if p.boot_id else None,
                    last_seen_ago=now - max(seen) if seen else None,
                    leaving=p.leaving,
                    restarting=p.restarting,
                    heartbeat=p.heartbeat,
                    links=links,
                )
            )
        return MembershipSnapshot(local=self.local, peers=tuple(peers), ignored=self._ignored)
