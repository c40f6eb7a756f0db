"""Scenarios 6 and 7: HA links cut (one of two, then all of them)."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import pytest

from integration.conftest import start_pair
from integration.prober import Prober
from integration.test_failover import ALL, NONE, all_started, ops, ts, watch_dual_active
from integration.testbed import Node, Testbed


def link_state(node: Node, peer: str, address: str) -> str | None:
    s = node.status()
    try:
        return None if s is None else s["nodes"][peer]["links"][address]["state"]
    except KeyError:
        return None


@pytest.mark.parametrize("how", ["carrier", "nft"])
def test_one_ha_link_cut_with_a_second_link_changes_nothing_but_the_link(bed: Testbed, how: str) -> None:
    start_pair(bed)
    if how == "carrier":
        bed.cut(bed.one, "eth1")
    else:  # carrier stays up, heartbeats on eth1 are dropped in both nodes
        bed.drop_heartbeats(bed.one, ["eth1"])
        bed.drop_heartbeats(bed.two, ["eth1"])
    bed.wait(lambda: link_state(bed.two, "nodeone", "10.10.100.1") == "down"
             and link_state(bed.one, "nodetwo", "10.10.100.2") == "down", "eth1 shown down on both", 5.0)
    assert link_state(bed.two, "nodeone", "10.10.103.1") == "up"
    both = watch_dual_active(bed, 1.5)
    assert both == []
    s1, s2 = bed.one.status(), bed.two.status()
    assert s1 and s2 and s1["role"] == "active" and s2["role"] == "standby"
    assert s2["nodes"]["nodeone"]["state"] == "online"
    assert bed.one.serving() == ALL and bed.two.serving() == NONE
    if how == "carrier":
        bed.restore(bed.one, "eth1")
    else:
        bed.allow_heartbeats(bed.one)
        bed.allow_heartbeats(bed.two)
    bed.wait(lambda: link_state(bed.two, "nodeone", "10.10.100.1") == "up"
             and link_state(bed.one, "nodetwo", "10.10.100.2") == "up", "eth1 up again on both", 5.0)
    assert [e for e in bed.two.events() if e.get("event") == "operation" and e.get("op") == "start"] == []


def cut_ha_links(bed: Testbed, node: Node, lan: bool = False) -> None:
    for dev in ("eth1", "eth3") + (("eth2",) if lan else ()):
        bed.cut(node, dev)


def heal(bed: Testbed, node: Node, lan: bool = False) -> None:
    for dev in ("eth1", "eth3") + (("eth2",) if lan else ()):
        bed.restore(node, dev)


def test_partition_with_fencing_the_survivor_fences_before_it_serves(make_bed: Callable[..., Testbed],
                                                                      prober_for: Callable[..., Prober]) -> None:
    bed = make_bed(fencing=True)
    start_pair(bed)
    p = prober_for(bed)
    assert p.wait_for(lambda e: e["type"] == "ACK" and e["domain"] == "nodeone", 5.0)
    mark = bed.two.mark_log()
    t_cut = time.monotonic()
    cut_ha_links(bed, bed.one)
    bed.wait(lambda: all_started(bed.two), "nodetwo active after fencing nodeone", 15.0)
    fences = (bed.dir / "fence.log").read_text().split("\n")
    fenced = [line.split() for line in fences if "fenced nodeone" in line]
    assert len(fenced) == 1, fences
    fence_wall, fence_mono = (float(x) for x in fenced[0][-1].removeprefix("done=").split(","))
    starts = ops(bed.two.events_since(mark), "start", outcome=None)
    starts += [e for e in bed.two.events_since(mark) if e.get("event") == "operation_begin" and e.get("op") == "start"]
    assert starts and min(ts(e) for e in starts) >= fence_wall, "nodetwo started a resource before the fence"
    assert not bed.one.powered and bed.one.serving() == NONE
    assert "fenced nodetwo" not in (bed.dir / "fence.log").read_text()
    late = [e for e in p.snapshot(since=fence_mono) if e.get("domain") == "nodeone"]
    assert late == [], "nodeone answered after it was fenced"
    assert p.wait_for(lambda e: e["type"] == "ACK" and e["domain"] == "nodetwo", 5.0, since=t_cut)
    s = bed.two.status()
    assert s is not None and s["nodes"]["nodeone"]["state"] == "fenced"
    assert any(ph["name"] == "fenced" for ph in s["last_failover"]["phases"])
    # Heal and boot nodeone again: exactly one active node (nodetwo keeps it: no failback).
    heal(bed, bed.one)
    bed.power_on(bed.one)
    bed.start_hafd(bed.one)
    bed.wait_roles(bed.two, 20.0)
    assert bed.dual_active() == [] and bed.two.serving() == ALL
    print(f"\npartition -> fence after {(fence_mono - t_cut) * 1000:.0f} ms")


def test_partition_with_a_tiebreaker_the_isolated_node_does_not_take_over(make_bed: Callable[..., Testbed]) -> None:
    bed = make_bed(tiebreaker=True)
    start_pair(bed)
    cut_ha_links(bed, bed.two, lan=True)  # nodetwo sees neither nodeone nor the tiebreaker
    bed.wait(lambda: (bed.two.status() or {}).get("nodes", {}).get("nodeone", {}).get("state") == "lost",
             "nodetwo lost nodeone", 5.0)
    assert watch_dual_active(bed, 2.0) == []
    s2 = bed.two.status()
    assert s2 is not None and s2["role"] == "standby" and "tiebreaker" in s2["decision"], s2["decision"]
    assert bed.two.serving() == NONE and bed.one.serving() == ALL
    attempts = [e for e in bed.two.events() if e.get("event") == "operation_begin" and e.get("op") == "start"]
    heal(bed, bed.two, lan=True)
    bed.wait(lambda: (bed.two.status() or {}).get("nodes", {}).get("nodeone", {}).get("state") == "online",
             "healed", 5.0)
    bed.wait_roles(bed.one, 10.0)
    assert bed.dual_active() == []
    # A peer lost while the last tiebreaker answer predates the loss: the node asks
    # again and decides on the fresh answer, so the isolated node tries nothing.
    assert attempts == [], f"isolated nodetwo tried to take over: {attempts[:2]}"


def test_ha_links_cut_without_fencing_drbd_handler_keeps_one_primary(make_bed: Callable[..., Testbed]) -> None:
    """No fencing, no tiebreaker, but DRBD's fence-peer handler wired to hafctl (the
    seed's set-up): DRBD loses replication while nodeone still sees nodetwo, so the
    handler outdates nodetwo (exit 4) and nodetwo can never promote: it gives up and
    stops the VIP it had added. The data never runs twice."""
    bed = make_bed()
    start_pair(bed)
    cut_ha_links(bed, bed.one)
    bed.drbd_sim("disconnect", "r0")
    bed.wait(lambda: (bed.two.status() or {}).get("role") in ("standby", "failed")
             and (bed.two.status() or {}).get("resources", {}).get("drbd", {}).get("state") == "failed",
             "nodetwo gave up on drbd", 15.0)
    assert watch_dual_active(bed, 1.0) == []
    assert bed.one.serving() == ALL and bed.two.serving() == NONE
    calls = json.loads(bed.drbd_sim("calls").stdout)
    assert [c["exit_code"] for c in calls if c.get("handler") == "fence-peer"][:1] == [4]


def test_partition_without_fencing_both_serve_then_one_remains_and_split_brain_shows(
        make_bed: Callable[..., Testbed]) -> None:
    bed = make_bed(drbd_handlers=False)
    start_pair(bed)
    # The replication link runs over eth1 too. Real DRBD notices a cut ~10 s after hafd
    # does, and until then refuses the second primary (nodetwo would try, fail and give
    # up: DRBD acting as a last guard). To show the warned risk itself, DRBD is told at
    # once, before hafd declares the peer lost.
    cut_ha_links(bed, bed.one)
    bed.drbd_sim("disconnect", "r0")
    bed.wait(lambda: (bed.one.status() or {}).get("nodes", {}).get("nodetwo", {}).get("state") == "lost",
             "nodeone lost nodetwo", 5.0)
    bed.wait(lambda: all_started(bed.two), "nodetwo active too (no fencing, no tiebreaker: the warned risk)", 15.0)
    assert set(bed.dual_active()) >= {"vip", "dhcpd"}
    heal(bed, bed.one)
    bed.drbd_sim("connect", "r0", check=False)

    def one_active() -> bool:
        roles = [bed.one.role(), bed.two.role()]
        return roles.count("active") == 1 and "standby" in roles

    bed.wait(one_active, "exactly one active after healing", 15.0)
    bed.wait(lambda: bed.dual_active() == [] or None, "the loser stopped everything", 15.0)
    for n in (bed.one, bed.two):
        s = n.status()
        assert s is not None and s["split_brain"] is not None
        assert any("SPLIT BRAIN" in w for w in s["warnings"])
