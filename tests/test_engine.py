"""The engine's decisions, driven by a fake world: no agents, no sleeping, a hand-held clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hafd.core.config import Resource
from hafd.core.engine import Action, Engine, Op, Outcome, RState


def res(name: str, requires: tuple[str, ...] = (), **kw: object) -> Resource:
    return Resource(name=name, type="command", requires=requires, **kw)  # type: ignore[arg-type]


SEED = {
    "drbd": res("drbd"),
    "data": res("data", ("drbd",)),
    "vip": res("vip"),
    "dhcpd": res("dhcpd", ("data", "vip"), monitor_interval=5, migration_threshold=2, failure_timeout=300),
}


@dataclass
class World:
    """What is really running, and a log of every operation in the order the engine asked."""

    running: set[str] = field(default_factory=set)
    log: list[tuple[str, str]] = field(default_factory=list)
    fail_start: set[str] = field(default_factory=set)
    fail_stop: set[str] = field(default_factory=set)

    def outcome(self, a: Action) -> Outcome:
        self.log.append((a.op.value, a.resource))
        if a.op is Op.START:
            if a.resource in self.fail_start:
                return Outcome.FAILED
            self.running.add(a.resource)
            return Outcome.OK
        if a.op is Op.STOP:
            if a.resource in self.fail_stop:
                return Outcome.FAILED
            self.running.discard(a.resource)
            return Outcome.OK
        return Outcome.OK if a.resource in self.running else Outcome.STOPPED


def settle(eng: Engine, world: World, actions: list[Action], now: float, limit: int = 200) -> None:
    """Carry out actions one at a time (FIFO) until the engine asks for nothing more."""
    pending = list(actions)
    for _ in range(limit):
        if not pending:
            return
        a = pending.pop(0)
        pending += eng.op_done(a.resource, a.op, world.outcome(a), now, error="boom" if a.resource in world.fail_start | world.fail_stop else None)
    raise AssertionError("engine did not settle")


def boot(resources=SEED, running=(), active=True, now=0.0):
    eng = Engine(resources)
    world = World(running=set(running))
    settle(eng, world, eng.start_probes(), now)
    world.log.clear()
    settle(eng, world, eng.set_target(active, "test says so", now), now)
    return eng, world


def starts(world: World) -> list[str]:
    return [r for op, r in world.log if op == "start"]


def stops(world: World) -> list[str]:
    return [r for op, r in world.log if op == "stop"]


def test_nothing_happens_before_every_resource_is_probed():
    eng = Engine(SEED)
    probes = eng.start_probes()
    assert {a.op for a in probes} == {Op.PROBE} and len(probes) == 4
    assert eng.set_target(True, "x", 0) == []  # still probing: no decision yet
    assert eng.probing()


def test_active_starts_dependencies_first_and_independent_ones_together():
    eng = Engine(SEED)
    world = World()
    settle(eng, world, eng.start_probes(), 0)
    first = eng.set_target(True, "configured alone", 0)
    assert [(a.op, a.resource) for a in first] == [(Op.START, "drbd"), (Op.START, "vip")]
    settle(eng, world, first, 0)
    assert starts(world) == ["drbd", "vip", "data", "dhcpd"]
    assert eng.role() == "active"
    assert all(eng.state(n) is RState.STARTED for n in SEED)


def test_start_reason_names_the_requirements():
    eng = Engine(SEED)
    world = World()
    settle(eng, world, eng.start_probes(), 0)
    acts = eng.set_target(True, "it is the only node", 0)
    nxt = eng.op_done("drbd", Op.START, Outcome.OK, 0)
    assert nxt == [Action(Op.START, "data", "this node is active (it is the only node) and drbd is started")]
    assert acts[0].reason == "this node is active (it is the only node)"


def test_standby_stops_in_reverse_order():
    eng, world = boot()
    world.log.clear()
    settle(eng, world, eng.set_target(False, "operator asked for standby", 1), 1)
    order = stops(world)
    assert order.index("dhcpd") < order.index("data") < order.index("drbd")
    assert order.index("dhcpd") < order.index("vip")
    assert eng.role() == "standby" and not world.running


def test_probe_adopts_what_runs_instead_of_restarting_it():
    eng, world = boot(running=set(SEED))
    assert world.log == []  # nothing started, nothing stopped
    assert eng.role() == "active"


def test_probe_of_a_partly_running_graph_starts_only_what_is_missing():
    eng, world = boot(running={"drbd", "data"})
    assert starts(world) == ["vip", "dhcpd"]
    assert stops(world) == []


def test_standby_node_stops_stale_resources_found_by_the_probe():
    eng, world = boot(running={"vip", "dhcpd"}, active=False)
    assert stops(world) == ["dhcpd", "vip"]
    assert eng.role() == "standby"


def test_probe_that_finds_a_broken_resource_restarts_it():
    eng = Engine(SEED)
    world = World(running=set(SEED))
    probes = eng.start_probes()
    acts: list[Action] = []
    for a in probes:
        out = Outcome.FAILED if a.resource == "data" else world.outcome(a)
        acts += eng.op_done(a.resource, a.op, out, 0, error="mounted read-only")
    world.log.clear()
    settle(eng, world, acts + eng.set_target(True, "x", 0), 0)
    assert world.log == [("stop", "dhcpd"), ("stop", "data"), ("start", "data"), ("start", "dhcpd")]


def test_monitor_failure_restarts_the_resource_and_its_dependents_in_order():
    eng, world = boot()
    world.running.discard("data")  # someone unmounted /data
    world.log.clear()
    acts = eng.tick(10.0)
    assert {a.resource for a in acts} == set(SEED)  # all monitors are due at 10 s
    settle(eng, world, acts, 10.0)
    assert world.log[4:] == [("stop", "dhcpd"), ("stop", "data"), ("start", "data"), ("start", "dhcpd")]
    snap = eng.snapshot()["data"]
    assert snap["failures"] == 1 and snap["state"] == "started"
    assert snap["last_error"] == "monitor found it stopped"


def test_monitors_run_at_each_resources_interval():
    eng, world = boot()
    assert eng.next_deadline() == 5.0  # dhcpd's 5 s before the others' 10 s
    assert [a.resource for a in eng.tick(4.9)] == []
    assert [(a.op, a.resource) for a in eng.tick(5.0)] == [(Op.MONITOR, "dhcpd")]
    # A monitor in flight is not issued twice.
    assert eng.tick(5.5) == []


def test_unexpected_exit_is_handled_at_once_and_past_the_threshold_gives_up():
    eng, world = boot()
    for i, t in enumerate((1.0, 2.0), start=1):
        world.running.discard("dhcpd")
        world.log.clear()
        settle(eng, world, eng.unexpected_exit("dhcpd", "killed by signal SIGKILL", t), t)
        assert world.log == [("stop", "dhcpd"), ("start", "dhcpd")]
        assert eng.snapshot()["dhcpd"]["failures"] == i
        assert eng.role() == "active"
    world.running.discard("dhcpd")
    world.log.clear()
    settle(eng, world, eng.unexpected_exit("dhcpd", "killed by signal SIGKILL", 3.0), 3.0)
    assert world.log == [("stop", "dhcpd")]  # third failure > migration_threshold 2: not restarted
    assert eng.role() == "failed"
    snap = eng.snapshot()["dhcpd"]
    assert snap["state"] == "failed" and snap["blocked"]
    assert "3 failures within 300s exceed migration_threshold 2" in snap["last_error"]
    # The rest of the graph keeps running: only dhcpd (and its dependents) is given up on.
    assert world.running == {"drbd", "data", "vip"}


def test_failures_expire_after_failure_timeout_and_the_resource_comes_back():
    eng, world = boot()
    for t in (1.0, 2.0, 3.0):
        world.running.discard("dhcpd")
        settle(eng, world, eng.unexpected_exit("dhcpd", "gone", t), t)
    assert eng.role() == "failed"
    world.log.clear()
    settle(eng, world, eng.tick(302.9), 302.9)
    assert "start" not in [op for op, _ in world.log]
    settle(eng, world, eng.tick(303.0), 303.0)
    assert starts(world) == ["dhcpd"]
    assert eng.role() == "active"


def test_cleanup_forgets_failures_and_retries():
    eng, world = boot()
    for t in (1.0, 2.0, 3.0):
        world.running.discard("dhcpd")
        settle(eng, world, eng.unexpected_exit("dhcpd", "gone", t), t)
    world.log.clear()
    settle(eng, world, eng.cleanup("dhcpd", 4.0), 4.0)
    assert world.log == [("start", "dhcpd")]
    snap = eng.snapshot()["dhcpd"]
    assert snap["failures"] == 0 and snap["last_error"] is None and eng.role() == "active"


def test_start_failure_counts_and_retries_then_gives_up():
    eng = Engine(SEED)
    world = World(fail_start={"dhcpd"})
    settle(eng, world, eng.start_probes(), 0)
    settle(eng, world, eng.set_target(True, "x", 0), 0)
    # migration_threshold 2: three start attempts, each failure followed by a stop (cleanup).
    assert starts(world).count("dhcpd") == 3
    assert eng.role() == "failed"
    assert eng.snapshot()["dhcpd"]["last_error"].startswith("start failed: boom")


def test_failed_stop_blocks_and_is_retried_later():
    eng, world = boot()
    world.fail_stop.add("dhcpd")
    world.log.clear()
    settle(eng, world, eng.set_target(False, "standby", 1.0), 1.0)
    assert world.log == [("stop", "dhcpd")]  # data must not be unmounted under a running dhcpd
    assert eng.role() == "stopping"
    assert eng.snapshot()["dhcpd"]["last_error"] == "stop failed: boom"
    world.fail_stop.clear()
    assert eng.tick(5.9) == []
    settle(eng, world, eng.tick(6.0), 6.0)
    assert eng.role() == "standby" and not world.running


def test_results_the_engine_did_not_ask_for_are_ignored():
    eng, world = boot()
    assert eng.op_done("dhcpd", Op.START, Outcome.FAILED, 1.0) == []
    assert eng.op_done("nope", Op.MONITOR, Outcome.FAILED, 1.0) == []
    assert eng.role() == "active"


def test_target_flip_mid_start_converges():
    eng = Engine(SEED)
    world = World()
    settle(eng, world, eng.start_probes(), 0)
    acts = eng.set_target(True, "x", 0)  # drbd and vip starting
    more = eng.set_target(False, "changed mind", 0)
    assert more == []  # nothing to stop yet: the starts are in flight
    settle(eng, world, acts, 0)
    assert eng.role() == "standby" and not world.running


@pytest.mark.parametrize(
    "change, restarted",
    [
        ({"dhcpd": res("dhcpd", ("data", "vip"), monitor_interval=7)}, []),
        ({"data": res("data", ("drbd",), timeout=99)}, []),
        ({"vip": Resource(name="vip", type="ipaddr")}, ["vip"]),
    ],
)
def test_reconfigure_restarts_only_what_changed_identity(change, restarted):
    eng, world = boot()
    world.log.clear()
    new = {**SEED, **change}
    renew, acts = eng.reconfigure(new, 1.0)
    settle(eng, world, acts, 1.0)
    assert renew == restarted
    if restarted:
        assert ("start", restarted[0]) in world.log
        assert world.log.index(("stop", "dhcpd")) < world.log.index(("stop", restarted[0]))
    else:
        assert world.log == []


def test_reconfigure_removes_and_adds_resources():
    eng, world = boot()
    world.log.clear()
    new = {k: v for k, v in SEED.items() if k != "vip"}
    new["dhcpd"] = res("dhcpd", ("data",), monitor_interval=5, migration_threshold=2)
    new["extra"] = res("extra")
    renew, acts = eng.reconfigure(new, 1.0)
    assert "extra" in renew and "dhcpd" in renew
    settle(eng, world, acts, 1.0)
    assert ("stop", "vip") in world.log and ("start", "extra") in world.log
    assert "vip" not in eng.names()
    assert eng.role() == "active"


def test_probed_resources_are_left_alone_until_a_role_is_decided():
    eng = Engine(SEED)
    world = World(running={"vip", "dhcpd"})
    settle(eng, world, eng.start_probes(), 0)
    assert stops(world) == [] and starts(world) == []
    assert world.running == {"vip", "dhcpd"}


def test_adopted_resources_are_monitored_like_started_ones():
    eng, world = boot(running=set(SEED))  # everything adopted by the probes at t=0
    assert world.log == []
    assert eng.next_deadline() == 5.0  # dhcpd's interval, then the others' 10 s
    assert [a.resource for a in eng.tick(5.0)] == ["dhcpd"]
    world.running.discard("dhcpd")
    world.log.clear()
    settle(eng, world, [a for a in eng.tick(10.0) if a.resource != "dhcpd"], 10.0)
    settle(eng, world, eng.op_done("dhcpd", Op.MONITOR, Outcome.STOPPED, 10.0), 10.0)
    assert ("start", "dhcpd") in world.log  # an adopted resource that dies is restarted
