"""Membership with an injected clock: links, peers, restarts, goodbyes, loss estimates."""

from __future__ import annotations

import json

import pytest

from hafd.core.codec import Command, Heartbeat, Leaving, Message, Role
from hafd.core.membership import EventKind, Membership, MembershipEvent

INTERVAL = 0.025
DEADTIME = 0.36
A, B = "10.10.100.2", "10.10.200.2"
BOOT1, BOOT2 = b"\x01" * 16, b"\x02" * 16
HB = Heartbeat(role=Role.ACTIVE, epoch=3, config_hash=b"\xaa" * 32, priority=90, active_view="nodetwo")


def mem() -> Membership:
    return Membership("nodeone", {"nodeone": ["10.10.100.1"], "nodetwo": [A, B]}, INTERVAL, DEADTIME)


def m(seq: int, body: object = HB, boot: bytes = BOOT1) -> Message:
    return Message(sender="nodetwo", boot_id=boot, seq=seq, sent_at=0.0, body=body)  # type: ignore[arg-type]


def kinds(events: list[MembershipEvent]) -> list[tuple[EventKind, str | None]]:
    return [(e.kind, e.link) for e in events]


def test_first_heartbeat_brings_peer_and_link_up_at_once() -> None:
    ms = mem()
    ev = ms.on_heartbeat("nodetwo", A, m(1), now=10.0)
    assert kinds(ev) == [(EventKind.LINK_UP, A), (EventKind.PEER_UP, A)]
    assert ev[1].reason == "nodetwo is up (via 10.10.100.2)"
    assert ms.alive_peers() == ["nodetwo"]
    assert ms.heartbeat_of("nodetwo") == HB
    assert kinds(ms.on_heartbeat("nodetwo", B, m(1), now=10.0)) == [(EventKind.LINK_UP, B)]
    assert ms.on_heartbeat("nodetwo", A, m(2), now=10.025) == []


def test_one_link_silent_gives_link_down_only() -> None:
    ms = mem()
    t = 0.0
    for seq in range(1, 41):  # one second of heartbeats on both links
        t = seq * INTERVAL
        ms.on_heartbeat("nodetwo", A, m(seq), t)
        if seq <= 10:
            ms.on_heartbeat("nodetwo", B, m(seq), t)
        assert [e for e in ms.tick(t) if e.kind is not EventKind.LINK_DOWN] == []
    snap = ms.snapshot(t)
    peer = snap.peers[0]
    assert peer.alive
    assert [(ln.address, ln.up) for ln in peer.links] == [(A, True), (B, False)]
    assert ms.alive_peers() == ["nodetwo"]


def test_link_down_event_names_the_silence() -> None:
    ms = mem()
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    ms.on_heartbeat("nodetwo", B, m(1), 0.0)
    ms.on_heartbeat("nodetwo", A, m(2), 0.3)
    ev = ms.tick(0.37)
    assert kinds(ev) == [(EventKind.LINK_DOWN, B)]
    assert ev[0].reason == "link 10.10.200.2 to nodetwo is down: silent for 0.370 s"


def test_peer_lost_after_exactly_deadtime_not_before() -> None:
    ms = mem()
    ms.on_heartbeat("nodetwo", A, m(1), 5.0)
    ms.on_heartbeat("nodetwo", B, m(1), 5.0)
    assert ms.next_deadline() == pytest.approx(5.0 + DEADTIME)
    assert ms.tick(5.0 + DEADTIME) == []  # silence equal to deadtime is not yet loss
    ev = ms.tick(5.0 + DEADTIME + 1e-6)
    assert kinds(ev) == [(EventKind.LINK_DOWN, A), (EventKind.LINK_DOWN, B), (EventKind.PEER_LOST, None)]
    lost = ev[-1]
    assert [a for a, _ in lost.silent] == [A, B]
    assert all(s == pytest.approx(DEADTIME, abs=1e-5) for _, s in lost.silent)
    assert lost.reason.startswith("nodetwo lost: no valid heartbeat within 0.36 s on any link: 10.10.100.2 (0.360 s)")
    assert ms.alive_peers() == []
    assert ms.tick(7.0) == []  # reported once
    assert ms.next_deadline() is None


def test_peer_lost_names_a_link_never_heard_on() -> None:
    ms = mem()
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    lost = ms.tick(1.0)[-1]
    assert lost.kind is EventKind.PEER_LOST
    assert lost.silent == ((A, 1.0), (B, None))
    assert "10.10.200.2 (never)" in lost.reason


def test_peer_comes_back_after_loss() -> None:
    ms = mem()
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    ms.tick(1.0)
    ev = ms.on_heartbeat("nodetwo", A, m(50), 1.2)
    assert kinds(ev) == [(EventKind.LINK_UP, A), (EventKind.PEER_UP, A)]


def test_restart_with_new_boot_id_is_a_fresh_start() -> None:
    ms = mem()
    for seq in (1, 3, 5):
        ms.on_heartbeat("nodetwo", A, m(seq), seq * INTERVAL)
    assert ms.loss("nodetwo", A) == pytest.approx(2 / 5)
    ev = ms.on_heartbeat("nodetwo", A, m(1, boot=BOOT2), 0.2)
    assert kinds(ev) == [(EventKind.PEER_RESTARTED, None)]
    assert ev[0].reason == "nodetwo restarted: new boot id 02020202 replaces 01010101"
    assert ms.loss("nodetwo", A) is None  # the window starts over
    assert ms.snapshot(0.2).peers[0].boot_id == BOOT2.hex()


def test_loss_rate_from_sequence_gaps() -> None:
    ms = mem()
    received = [s for s in range(1, 101) if s % 5 != 0]  # every fifth lost: 20 %
    for s in received:
        ms.on_heartbeat("nodetwo", A, m(s), s * INTERVAL)
    assert ms.loss("nodetwo", A) == pytest.approx(1 - 80 / 99)  # span 1..99
    assert ms.loss("nodetwo", B) is None


def test_loss_window_slides_by_sequence_and_by_time() -> None:
    ms = Membership("nodeone", {"nodetwo": [A]}, INTERVAL, DEADTIME, window_seqs=200, window_seconds=10.0)
    for s in range(1, 201, 2):  # 50 % loss for the first 200 seqs
        ms.on_heartbeat("nodetwo", A, m(s), s * INTERVAL)
    assert ms.loss("nodetwo", A) == pytest.approx(0.5, abs=0.01)
    for s in range(201, 601):  # then none
        ms.on_heartbeat("nodetwo", A, m(s), s * INTERVAL)
    assert ms.loss("nodetwo", A) == 0.0
    # by time: a 1 s window keeps only the last second's messages
    ms2 = Membership("nodeone", {"nodetwo": [A]}, 0.5, 2.0, window_seqs=1000, window_seconds=1.0)
    for s in (1, 2, 10, 11, 12):
        ms2.on_heartbeat("nodetwo", A, m(s), s * 0.5)
    assert ms2.snapshot(6.0).peers[0].links[0].received == 3
    assert ms2.loss("nodetwo", A) == 0.0


def test_goodbye_declares_the_peer_lost_at_once_and_stragglers_do_not_revive_it() -> None:
    ms = mem()
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    ms.on_heartbeat("nodetwo", A, m(2), 0.025)
    ev = ms.on_heartbeat("nodetwo", A, m(3, Leaving()), 0.03)
    assert kinds(ev) == [(EventKind.PEER_LEAVING, None), (EventKind.PEER_LOST, None)]
    assert ev[1].reason == "nodetwo lost: it said goodbye"
    # a slower link B still delivers the last heartbeats, then the goodbye's copy
    assert ms.on_heartbeat("nodetwo", B, m(2), 0.031) == []
    assert ms.on_heartbeat("nodetwo", B, m(3, Leaving()), 0.032) == []
    assert ms.alive_peers() == []
    assert ms.tick(5.0) == []


def test_restarting_peer_is_held_alive_until_it_returns() -> None:
    ms = Membership("nodeone", {"nodetwo": [A]}, INTERVAL, DEADTIME, restart_grace=5.0)
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    ev = ms.on_heartbeat("nodetwo", A, m(2, Leaving(restarting=True)), 0.01)
    assert kinds(ev) == [(EventKind.PEER_LEAVING, None)] and ev[0].restarting
    assert kinds(ms.tick(1.0)) == [(EventKind.LINK_DOWN, A)]  # the link is silent, the peer is held
    assert ms.alive_peers() == ["nodetwo"]
    ev = ms.on_heartbeat("nodetwo", A, m(1, boot=BOOT2), 2.0)
    assert kinds(ev) == [(EventKind.PEER_RESTARTED, None), (EventKind.LINK_UP, A)]
    assert ms.tick(2.1) == []


def test_restarting_peer_that_never_returns_is_lost_after_the_grace() -> None:
    ms = Membership("nodeone", {"nodetwo": [A]}, INTERVAL, DEADTIME, restart_grace=5.0)
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    ms.on_heartbeat("nodetwo", A, m(2, Leaving(restarting=True)), 0.0)
    ms.tick(1.0)
    assert ms.next_deadline() == pytest.approx(5.0)
    assert ms.tick(5.0) == []
    ev = ms.tick(5.01)
    assert kinds(ev) == [(EventKind.PEER_LOST, None)]
    assert "did not come back from its restart" in ev[0].reason


def test_non_heartbeat_messages_count_as_life_but_keep_the_last_heartbeat() -> None:
    ms = mem()
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    ms.on_heartbeat("nodetwo", A, m(2, Command("standby")), 0.3)
    assert ms.tick(0.5) == []
    assert ms.heartbeat_of("nodetwo") == HB


def test_unknown_node_or_link_is_ignored_and_counted() -> None:
    ms = mem()
    assert ms.on_heartbeat("nodethree", A, m(1), 0.0) == []
    assert ms.on_heartbeat("nodetwo", "192.0.2.9", m(1), 0.0) == []
    assert ms.alive_peers() == [] and ms.snapshot(0.0).ignored == 2


def test_snapshot_is_plain_json() -> None:
    ms = mem()
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    ms.on_heartbeat("nodetwo", A, m(2), 0.025)
    doc = ms.snapshot(0.1).as_json()
    text = json.dumps(doc)
    assert json.loads(text)["peers"][0]["heartbeat"]["role"] == "active"
    link = doc["peers"][0]["links"][0]
    assert link["address"] == A and link["up"] and link["loss"] == 0.0
    assert link["last_seen_ago"] == pytest.approx(0.075)
    assert doc["peers"][0]["links"][1]["last_seen_ago"] is None


def test_rejects_impossible_timings() -> None:
    with pytest.raises(ValueError, match="interval < deadtime"):
        Membership("a", {"b": [A]}, 0.5, 0.4)


def test_a_peer_that_left_comes_back_with_a_new_boot() -> None:
    ms = mem()
    ms.on_heartbeat("nodetwo", A, m(1), 0.0)
    ms.on_heartbeat("nodetwo", A, m(2, Leaving()), 0.01)
    ev = ms.on_heartbeat("nodetwo", A, m(1, boot=BOOT2), 3.0)
    assert kinds(ev) == [(EventKind.PEER_RESTARTED, None), (EventKind.LINK_UP, A), (EventKind.PEER_UP, A)]
    assert ms.alive_peers() == ["nodetwo"] and not ms.snapshot(3.0).peers[0].leaving
