"""ClusterCore scenarios: two cores joined by an in-memory pipe and a hand-held clock.

Each test plays one operator-visible story and asserts both what the node does (the
acts) and the sentence it gives for it, because that sentence is what `hafctl status`
and the log show.  Time is in seconds; interval 1 s, deadtime 3 s, start-up wait 2 s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hafd.core.cluster import ClusterCore, Fence, Note, Persist, Reannounce, SendCommand, SendNow, SetTarget, Settings
from hafd.core.codec import Command, Leaving, Message, Role

H = b"\x11" * 32
ONE, TWO = "one", "two"
BASE = Settings(
    local=ONE,
    priorities={ONE: 100, TWO: 50},
    links={ONE: ("10.0.0.1",), TWO: ("10.0.0.2",)},
    interval=1.0,
    deadtime=3.0,
    failback=False,
    config_hash=H,
    startup_wait=2.0,
    restart_grace=10.0,
)


class Pair:
    """Two cores and the pipe between them; `now` is the hand-held clock."""

    def __init__(self, now: float = 0.0, **kw: Any) -> None:
        self.now = now
        self.kw = kw
        self.cores: dict[str, ClusterCore] = {}
        self.boots: dict[str, bytes] = {}
        self.seq: dict[str, int] = {}
        self.nboot = 0
        for n in (ONE, TWO):
            self.boot(n)

    def settings(self, n: str) -> Settings:
        extra = self.kw.get(n, {})
        common = {k: v for k, v in self.kw.items() if k not in (ONE, TWO)}
        return replace(BASE, local=n, **{**common, **extra})

    def boot(self, n: str, **state: Any) -> ClusterCore:
        """A (re)started daemon: a new core and a new boot id."""
        self.nboot += 1
        self.boots[n] = bytes([self.nboot]) * 16
        self.seq[n] = 0
        self.cores[n] = ClusterCore(self.settings(n), self.now, **state)
        return self.cores[n]

    def other(self, n: str) -> str:
        return TWO if n == ONE else ONE

    def send(self, src: str, body: Any = None) -> list[Any]:
        """Deliver one message from src to its peer; returns the peer's acts."""
        core = self.cores[src]
        self.seq[src] += 1
        msg = Message(src, self.boots[src], self.seq[src], self.now, core.heartbeat() if body is None else body)
        return self.cores[self.other(src)].on_message(msg, core.s.links[src][0], self.now)

    def exchange(self) -> dict[str, list[Any]]:
        """One heartbeat each way (one's first)."""
        return {TWO: self.send(ONE), ONE: self.send(TWO)}

    def engine(self, n: str, role: str, failed: bool = False) -> list[Any]:
        return self.cores[n].engine_changed(role, failed, self.now)

    def tick(self, n: str) -> list[Any]:
        return self.cores[n].tick(self.now)

    def at(self, t: float) -> Pair:
        self.now = t
        return self


def targets(acts: list[Any]) -> list[tuple[bool, str]]:
    return [(a.active, a.reason) for a in acts if isinstance(a, SetTarget)]


def fences(acts: list[Any]) -> list[tuple[str, str]]:
    return [(a.peer, a.reason) for a in acts if isinstance(a, Fence)]


def notes(acts: list[Any], event: str) -> list[str]:
    return [a.reason for a in acts if isinstance(a, Note) and a.event == event]


def echo(p: Pair, n: str, acts: list[Any]) -> list[Any]:
    """`n` just claimed the role (no SetTarget yet): deliver its claim to the peer and
    the peer's echo back; returns n's acts on hearing the echo."""
    assert targets(acts) == [] and notes(acts, "claim"), acts
    assert p.cores[n].role() is Role.STARTING  # claimed: peers hold off; nothing runs yet
    p.send(n)
    return p.send(p.other(n))


def cold_pair(**kw: Any) -> Pair:
    """Both nodes up, probed (nothing runs), one active and two standby."""
    p = Pair(**kw)
    p.engine(ONE, "standby")
    p.engine(TWO, "standby")
    acts = p.at(0.1).exchange()
    assert [t for t, _ in targets(echo(p, ONE, acts[ONE]))] == [True]
    p.engine(ONE, "starting")
    p.engine(ONE, "active")
    p.at(0.2).exchange()
    assert p.cores[ONE].role() is Role.ACTIVE and p.cores[TWO].role() is Role.STANDBY
    return p


def lose_one(p: Pair, t0: float = 1.0) -> None:
    """two keeps hearing nothing from one after t0 (one's heartbeats stop)."""
    p.at(t0).send(ONE)


# -- cold start ---------------------------------------------------------------------


def test_cold_start_of_both_picks_the_higher_priority_once_they_hear_each_other() -> None:
    p = Pair()
    assert SendNow() in p.engine(ONE, "standby")  # stopping -> standby is news for the peer
    p.engine(TWO, "standby")
    assert targets(p.at(0.5).tick(ONE)) == []  # start-up wait, peer not heard yet
    acts = p.at(0.6).exchange()
    why = "one becomes active: it has the highest priority among the eligible nodes (100 vs 50)"
    # two heard one first: it gives up the role at once (stops whatever its probes adopted)
    assert targets(acts[TWO]) == [(False, why)]
    assert notes(acts[ONE], "claim") == [f"one claims the role (epoch 1): {why}; waiting for two to agree"]
    acts = echo(p, ONE, acts[ONE])
    assert targets(acts) == [(True, why)]
    assert SendNow() in acts and any(isinstance(a, Persist) for a in acts)
    assert p.cores[ONE].role() is Role.STARTING
    assert p.cores[ONE].heartbeat().restarting is False


def test_start_up_alone_waits_the_start_up_wait_then_takes_over() -> None:
    p = Pair()
    p.engine(ONE, "standby")
    assert targets(p.at(1.99).tick(ONE)) == []
    assert p.cores[ONE].status(1.99)["decision"] == "no node becomes active yet: one is in its start-up wait and sees no peer"
    assert targets(p.at(2.0).tick(ONE)) == [(True, "one becomes active: it is the only visible node")]


def test_start_up_alone_with_fencing_fences_the_unseen_peer_first() -> None:
    p = Pair(fencing=True)
    p.engine(ONE, "standby")
    assert p.at(1.5).tick(ONE) == [] or fences(p.tick(ONE)) == []
    acts = p.at(2.0).tick(ONE)
    assert fences(acts) == [(TWO, "two is lost and may still run resources; fencing it before taking over")]
    assert targets(acts) == []
    assert fences(p.at(2.5).tick(ONE)) == []  # already running: not fenced twice
    acts = p.cores[ONE].fence_done(TWO, True, "powered off via IPMI", 2.7)
    assert notes(acts, "peer_fenced") == ["two was fenced: powered off via IPMI"]
    assert targets(acts) == [(True, "one becomes active: it is the only visible node (two fenced)")]
    assert p.cores[ONE].status(2.7)["nodes"][TWO]["state"] == "fenced"


# -- losing the active node --------------------------------------------------------


def test_survivor_takes_over_after_deadtime_and_not_before() -> None:
    p = cold_pair()
    lose_one(p, 1.0)
    assert targets(p.at(4.0).tick(TWO)) == []  # silence is judged strictly: exactly deadtime is not enough
    acts = p.at(4.01).tick(TWO)
    assert notes(acts, "peer_lost")[0].startswith("one lost: no valid heartbeat within 3 s on any link")
    assert targets(acts) == [(True, "two becomes active: it is the only visible node")]


def test_with_fencing_the_survivor_fences_before_it_starts() -> None:
    p = cold_pair(fencing=True)
    lose_one(p, 1.0)
    acts = p.at(4.01).tick(TWO)
    assert fences(acts) == [(ONE, "one is lost and may still run resources; fencing it before taking over")]
    assert targets(acts) == []
    assert targets(p.at(4.5).tick(TWO)) == []  # no role while the fence runs
    acts = p.cores[TWO].fence_done(ONE, True, "power cycled", 4.6)
    assert targets(acts) == [(True, "two becomes active: it is the only visible node (one fenced)")]
    assert p.cores[TWO].status(4.6)["nodes"][ONE]["state"] == "fenced"


def test_a_failed_fence_is_retried_after_the_delay() -> None:
    p = cold_pair(fencing=True)
    lose_one(p, 1.0)
    p.at(4.01).tick(TWO)
    acts = p.cores[TWO].fence_done(ONE, False, "ipmitool: timeout", 4.5)
    assert notes(acts, "fencing_failed") == ["fencing one failed (ipmitool: timeout); retrying in 1s"]
    assert targets(acts) == [] and fences(acts) == []
    assert p.cores[TWO].next_deadline(4.5) == 5.5
    assert fences(p.at(5.4).tick(TWO)) == []
    assert fences(p.at(5.5).tick(TWO)) == [(ONE, "one is lost and may still run resources; fencing it before taking over")]
    acts = p.cores[TWO].fence_done(ONE, True, "power cycled", 5.9)
    assert targets(acts) == [(True, "two becomes active: it is the only visible node (one fenced)")]


def test_a_failed_fence_with_halt_never_takes_over_and_status_says_so() -> None:
    p = cold_pair(fencing=True, fence_halt_on_failure=True)
    lose_one(p, 1.0)
    p.at(4.01).tick(TWO)
    acts = p.cores[TWO].fence_done(ONE, False, "ipmitool: timeout", 4.5)
    assert notes(acts, "fencing_halted") == ["fencing one failed (ipmitool: timeout); not taking over (on_failure: halt)"]
    for t in (5.5, 10.0, 60.0):
        acts = p.at(t).tick(TWO)
        assert targets(acts) == [] and fences(acts) == []
    st = p.cores[TWO].status(60.0)
    assert st["nodes"][ONE]["fencing"] == {"state": "halted", "detail": "ipmitool: timeout"}
    assert st["nodes"][ONE]["state"] == "lost"
    assert p.cores[TWO].role() is Role.STANDBY


# -- planned moves -----------------------------------------------------------------


def _finish_switchover(p: Pair) -> None:
    """one stops (its engine reports it), then two starts only once it hears one's standby."""
    why = "two becomes active: the operator requested a switchover to it"
    p.engine(ONE, "stopping")
    assert targets(p.at(1.3).send(ONE)) == []  # one still stopping: two must wait
    p.engine(ONE, "standby")
    acts = p.at(1.4).send(ONE)
    assert targets(echo(p, TWO, acts)) == [(True, why)]
    p.engine(TWO, "active")
    p.at(1.5).exchange()
    assert p.cores[ONE].requested_target is None and p.cores[TWO].requested_target is None


def test_switchover_requested_on_the_active_node() -> None:
    p = cold_pair()
    err, acts = p.cores[ONE].request_switchover(None, 1.0)
    why = "two becomes active: the operator requested a switchover to it"
    assert err is None
    assert SendCommand(Command("failover", TWO)) in acts
    assert notes(acts, "switchover_requested") == ["switchover to two requested on one"]
    assert targets(acts) == [(False, why)]
    p.at(1.1)
    acts = p.send(ONE, Command("failover", TWO))
    assert notes(acts, "switchover_requested") == ["switchover to two requested on one"]
    assert targets(acts) == []  # one is still active
    _finish_switchover(p)


def test_switchover_requested_on_the_standby_node() -> None:
    p = cold_pair()
    err, acts = p.cores[TWO].request_switchover(None, 1.0)
    assert err is None and SendCommand(Command("failover", TWO)) in acts
    assert targets(acts) == []  # one is still active: two may not start
    acts = p.at(1.1).send(TWO, Command("failover", TWO))
    assert targets(acts) == [(False, "two becomes active: the operator requested a switchover to it")]
    _finish_switchover(p)


def test_switchover_errors_are_sentences() -> None:
    p = cold_pair()
    assert p.cores[ONE].request_switchover(ONE, 1.0) == ("one is already active", [])
    assert p.cores[ONE].request_switchover("three", 1.0) == ("unknown node 'three'", [])
    alone = Pair()
    alone.engine(ONE, "standby")
    assert targets(alone.at(2.0).tick(ONE)) == [(True, "one becomes active: it is the only visible node")]
    assert alone.cores[ONE].request_switchover(None, 2.1) == ("no other node is online to take over", [])


def test_a_lost_switchover_command_is_repeated_until_it_happens() -> None:
    p = cold_pair()
    p.cores[ONE].request_switchover(TWO, 1.0)  # the command datagram is lost
    p.engine(ONE, "standby")
    assert targets(p.at(1.1).send(ONE)) == []  # two does not know: it waits for one
    acts = p.at(2.0).tick(ONE)
    assert SendCommand(Command("failover", TWO)) in acts
    acts = p.send(ONE, Command("failover", TWO))
    assert targets(echo(p, TWO, acts)) == [(True, "two becomes active: the operator requested a switchover to it")]


def test_a_late_repeat_of_a_finished_switchover_is_ignored() -> None:
    p = cold_pair()
    p.cores[ONE].request_switchover(TWO, 1.0)
    p.at(1.1).send(ONE, Command("failover", TWO))
    _finish_switchover(p)
    # A repeat two sent while it was still starting arrives after the switchover is done:
    # one must neither log a new request nor start repeating it itself.
    acts = p.at(1.6).send(TWO, Command("failover", TWO))
    assert notes(acts, "switchover_requested") == [] and targets(acts) == []
    assert p.cores[ONE].requested_target is None
    assert not any(isinstance(a, SendCommand) for a in p.at(3.0).tick(ONE))


def test_standby_of_a_remote_node_travels_as_a_command() -> None:
    p = cold_pair()
    acts = p.cores[TWO].set_standby(ONE, True, 1.0)
    assert acts == [SendCommand(Command("standby", ONE))]
    acts = p.at(1.1).send(TWO, Command("standby", ONE))
    assert notes(acts, "standby_changed") == ["one is standby (operator)"]
    assert [a.state["standby"] for a in acts if isinstance(a, Persist)] == [True]
    assert targets(acts) == [(False, "two becomes active: one is in standby")]
    assert targets(p.at(1.2).send(ONE)) == []  # one still stopping
    p.engine(ONE, "standby")
    acts = p.at(1.3).send(ONE)
    assert targets(echo(p, TWO, acts)) == [(True, "two becomes active: it is the only eligible node (one is in standby)")]
    assert p.cores[TWO].status(1.3)["nodes"][ONE]["state"] == "standby"


def _two_active_one_back(failback: bool) -> Pair:
    p = cold_pair(failback=failback)
    lose_one(p, 1.0)
    p.at(4.01).tick(TWO)
    p.engine(TWO, "active")
    p.boot(ONE, epoch=1, was_active=False)  # one came back after stopping cleanly
    p.engine(ONE, "standby")
    return p


def test_failback_off_keeps_the_role_where_it_is() -> None:
    p = _two_active_one_back(failback=False)
    acts = p.at(5.0).exchange()
    assert targets(acts[TWO]) == []
    assert targets(acts[ONE]) == [(False, "two stays active: it already holds the role and failback is off (one has a higher priority)")]


def test_failback_on_moves_the_role_back_to_the_higher_priority() -> None:
    p = _two_active_one_back(failback=True)
    acts = p.at(5.0).exchange()
    why = "one becomes active: failback is on and it has a higher priority than two (100 vs 50)"
    assert targets(acts[TWO]) == [(False, why)]
    assert targets(acts[ONE]) == [(False, why)] or targets(acts[ONE]) == []  # one waits: two is still active
    p.engine(TWO, "stopping")
    assert targets(p.at(5.1).send(TWO)) == []
    p.engine(TWO, "standby")
    acts = p.at(5.2).send(TWO)
    assert targets(echo(p, ONE, acts)) == [(True, "one becomes active: it has the highest priority among the eligible nodes (100 vs 50)")]


# -- restarts -----------------------------------------------------------------------


def test_restart_of_the_active_daemon_keeps_the_role_and_the_peer_holds_off() -> None:
    p = cold_pair()
    acts = p.at(1.0).send(ONE, Leaving(restarting=True))
    assert notes(acts, "peer_leaving") == ["one is restarting; holding off until it is back"]
    for t in (4.5, 8.0, 10.9):  # past the deadtime, within restart_grace
        assert targets(p.at(t).tick(TWO)) == []
    one = p.boot(ONE, epoch=1, was_active=True)
    assert one.heartbeat().role is Role.STARTING and one.heartbeat().restarting
    acts = p.send(ONE)
    assert notes(acts, "peer_restarted") and targets(acts) == []
    p.engine(ONE, "stopping")  # probes found everything up; no target yet
    acts = p.at(11.0).send(TWO)
    # two held one's role through the restart and already echoes one's epoch: no wait.
    if not targets(acts):
        acts = echo(p, ONE, acts)
    assert targets(acts) == [(True, "one stays active: it already holds the role")]
    assert p.cores[ONE].heartbeat().restarting is False
    p.engine(ONE, "active")
    assert targets(p.at(11.1).send(ONE)) == []
    assert p.cores[TWO].decision.active == ONE


def test_restart_that_does_not_come_back_in_time_is_a_loss() -> None:
    p = cold_pair()
    p.at(1.0).send(ONE, Leaving(restarting=True))
    assert targets(p.at(11.0).tick(TWO)) == []
    acts = p.at(11.01).tick(TWO)
    assert notes(acts, "peer_lost")[0].startswith("one lost: did not come back from its restart within 3 s")
    assert targets(acts) == [(True, "two becomes active: it is the only visible node")]


def test_restarted_ex_active_finding_the_peer_active_steps_down() -> None:
    p = cold_pair()
    lose_one(p, 1.0)
    p.at(4.01).tick(TWO)
    p.engine(TWO, "active")
    one = p.boot(ONE, epoch=1, was_active=True)  # came back with stale resources still up
    p.engine(ONE, "stopping")
    acts = p.at(20.0).send(TWO)
    assert targets(acts) == [(False, "two stays active: it already holds the role and failback is off (one has a higher priority)")]
    p.engine(ONE, "standby")
    assert one.was_active is False
    assert targets(p.at(20.1).send(ONE)) == []  # two keeps the role


def test_restarted_ex_active_with_fencing_does_not_fence_before_the_start_up_wait() -> None:
    p = cold_pair(fencing=True)
    p.boot(ONE, epoch=1, was_active=True)
    p.engine(ONE, "standby")  # a power cycle: nothing runs any more
    assert fences(p.at(0.5).tick(ONE)) == [] and targets(p.tick(ONE)) == []
    acts = p.at(0.6).send(TWO)  # two's heartbeat arrives within the wait
    assert fences(acts) == []
    acts = echo(p, ONE, acts)
    assert fences(acts) == []
    assert targets(acts) == [(True, "one becomes active: it has the highest priority among the eligible nodes (100 vs 50)")]


# -- split brain --------------------------------------------------------------------


def test_split_brain_after_a_partition_heals() -> None:
    p = cold_pair()
    lose_one(p, 1.0)
    p.at(4.01).tick(TWO)
    p.engine(TWO, "active")
    p.at(4.02).tick(ONE)  # one lost two as well: the partition is symmetric
    why = "split brain: one and two both claim the role; one keeps it because it has the highest priority (100 vs 50), and two must stop"
    acts = p.at(6.0).send(ONE)  # heals
    assert notes(acts, "split_brain") == [
        "split brain: one comes back active while two holds the role; they ran resources at the same time while apart",
        why,
    ]
    assert targets(acts) == [(False, why)]
    acts = p.send(TWO)  # two already steps down when one first hears it
    assert notes(acts, "split_brain") == [
        "split brain: two comes back stopping while one holds the role; they ran resources at the same time while apart"
    ]
    assert not any(isinstance(a, Reannounce) for a in acts)
    p.engine(TWO, "stopping")
    assert not any(isinstance(a, Reannounce) for a in p.at(6.1).send(TWO))
    p.engine(TWO, "standby")
    acts = p.at(6.2).send(TWO)
    assert [a for a in acts if isinstance(a, Reannounce)] == [Reannounce("won the split brain; two stopped")]
    assert p.cores[ONE].status(6.2)["split_brain"]["losers"] == [TWO]


# -- tiebreaker and config ----------------------------------------------------------


def test_active_node_that_loses_the_tiebreaker_while_the_peer_is_lost_steps_down() -> None:
    p = Pair(tiebreaker=True)
    for n in (ONE, TWO):
        p.cores[n].set_tiebreaker(True, 0.0)
        p.engine(n, "standby")
    p.at(0.1).exchange()
    p.engine(ONE, "active")
    p.at(0.2).exchange()
    p.at(4.0).tick(ONE)  # two went silent
    assert p.cores[ONE].membership.alive_peers() == []
    acts = p.cores[ONE].set_tiebreaker(False, 4.5)
    assert notes(acts, "tiebreaker_changed") == ["the tiebreaker is unreachable: this node is not eligible"]
    assert targets(acts) == [(False, "no node is eligible: one cannot reach the tiebreaker")]


def test_config_hash_mismatch_is_shown_in_status_and_nobody_starts() -> None:
    p = Pair(two={"config_hash": b"\x22" * 32})
    p.engine(ONE, "standby")
    p.engine(TWO, "standby")
    acts = p.at(0.1).exchange()
    assert targets(acts[ONE]) == [(False, "no node becomes active: two has a different configuration than one and each side could pick itself")]
    assert targets(acts[TWO]) == [(False, "no node becomes active: one has a different configuration than two and each side could pick itself")]
    st = p.cores[ONE].status(0.1)
    assert st["nodes"][TWO]["config_match"] is False
    assert st["decision"].startswith("no node becomes active: two has a different configuration")


def test_a_fence_covers_one_takeover_only() -> None:
    """After stepping down, a peer fenced long ago may have booted and be serving unseen."""
    p = cold_pair(fencing=True)
    lose_one(p, 1.0)
    p.at(4.01).tick(TWO)
    assert targets(p.cores[TWO].fence_done(ONE, True, "power cycled", 4.5))[0][0] is True
    p.engine(TWO, "active")
    assert targets(p.cores[TWO].set_standby(TWO, True, 5.0)) == [(False, "no node is eligible: two is in standby")]
    p.engine(TWO, "standby")
    acts = p.cores[TWO].set_standby(TWO, False, 30.0)
    assert targets(acts) == []
    assert fences(acts) == [(ONE, "one is lost and may still run resources; fencing it before taking over")]


def test_a_lost_peer_whose_new_boot_only_says_goodbye_still_needs_fencing() -> None:
    p = cold_pair(fencing=True)
    lose_one(p, 1.0)
    p.at(4.01).tick(TWO)
    p.cores[TWO].fence_done(ONE, False, "ipmitool: timeout", 4.1)
    p.at(4.2).boot(ONE, epoch=1, was_active=True)
    acts = p.send(ONE, Leaving(restarting=True))  # its daemon restarts at once, resources left running
    assert notes(acts, "peer_restarted") and targets(acts) == []
    # still lost and unclean: fenced anew (the old attempt's record went with the old boot)
    assert fences(acts) == [(ONE, "one is lost and may still run resources; fencing it before taking over")]
    assert targets(p.at(5.5).tick(TWO)) == []


def test_a_peer_heard_only_through_a_command_is_not_taken_as_absent() -> None:
    """A rebooted node whose first message from the active peer is a command must not start."""
    p = cold_pair()
    p.boot(TWO)
    p.engine(TWO, "standby")
    acts = p.at(0.5).send(ONE, Command("failover", TWO))  # one's heartbeat has not arrived yet
    assert notes(acts, "peer_up") and targets(acts) == []
    assert targets(p.at(0.6).send(ONE)) == []  # now it knows: one is active, so two waits for it to stop


def test_after_losing_the_peer_a_takeover_waits_for_a_fresh_tiebreaker_answer() -> None:
    from hafd.core.cluster import CheckTiebreaker

    p = Pair(tiebreaker=True)
    for n in (ONE, TWO):
        p.cores[n].set_tiebreaker(True, 0.0)
        p.engine(n, "standby")
    p.at(0.1).exchange()
    p.engine(ONE, "active")
    p.at(0.2).exchange()
    lose_one(p, 1.0)
    acts = p.at(4.01).tick(TWO)
    assert notes(acts, "peer_lost") and targets(acts) == []  # the "reachable" answer predates the loss
    assert [a for a in acts if isinstance(a, CheckTiebreaker)]
    assert p.cores[TWO].in_transition()
    # An answer from a check that began before the loss does not count either.
    assert targets(p.cores[TWO].set_tiebreaker(True, 4.2, checked_at=3.9)) == []
    # Isolated: the fresh check fails, so it never serves.
    acts = p.cores[TWO].set_tiebreaker(False, 4.3, checked_at=4.05)
    assert targets(acts) == []
    assert p.cores[TWO].decision.reason == "no node is eligible: two cannot reach the tiebreaker"
    # Reachable again: now it may take over.
    acts = p.cores[TWO].set_tiebreaker(True, 4.5, checked_at=4.4)
    assert targets(acts) == [(True, "two becomes active: it is the only visible node")]


def test_a_failed_takeover_does_not_keep_half_a_service_while_the_lost_peer_may_serve() -> None:
    p = cold_pair()
    lose_one(p, 1.0)
    acts = p.at(4.01).tick(TWO)
    assert targets(acts) == [(True, "two becomes active: it is the only visible node")]
    p.engine(TWO, "starting")
    # DRBD refused to promote (the lost peer is still Primary): given up on drbd.
    acts = p.engine(TWO, "failed", failed=True)
    assert [t for t, _ in targets(acts)] == [False]  # stop the VIP it did add
    assert p.cores[TWO].role() is Role.STOPPING


def test_drbd_fence_peer_answers_with_drbds_exit_codes() -> None:
    p = cold_pair()
    # Replication broke but one (active) still hears two: two is outdated cluster-wide.
    code, why, acts = p.cores[ONE].drbd_fence_peer(TWO, "r0")
    assert (code, why) == (4, "two is reachable over the HA links; marked outdated for r0")
    assert SendCommand(Command("outdate", {"node": TWO, "resource": "r0"})) in acts
    # Asked on the standby about the active peer: DRBD must outdate the asker.
    assert p.cores[TWO].drbd_fence_peer(ONE, "r0")[:2] == (6, "one is the active node: outdate ourselves")
    # A lost peer: nothing known -> the caller fences (None), then 7 once fenced.
    lose_one(p, 1.0)
    p.at(4.01).tick(TWO)
    assert p.cores[TWO].drbd_fence_peer(ONE, "r0")[:2] == (None, "one is unreachable and not fenced")
    p.cores[TWO].peer_fenced_outside(ONE)
    assert p.cores[TWO].drbd_fence_peer(ONE, "r0")[:2] == (7, "one was fenced by hafd")
