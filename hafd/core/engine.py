"""The single-node engine: from a target role and what the agents report, which
operation to run next, and why.

It is pure: events go in with the time they happened, actions come out, each with a
one-sentence reason.  The daemon runs the actions through the agents and feeds the
outcomes back as events.  Instead of replaying a fixed plan the engine reconciles
towards the target after every event — a resource starts once everything it
requires runs, stops once nothing that requires it runs — so a daemon restart in
the middle of a start, a failure during a stop, or a target flipping mid-way needs
no special case: the next reconcile simply continues from what is true now.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from hafd.core.config import Resource
from hafd.core.graph import Graph
from hafd.core.policy import FailureRecord, gives_up

# After a failed stop, wait this long (capped by the resource timeout) before retrying.
STOP_RETRY_DELAY = 5.0


class RState(enum.Enum):
    UNKNOWN = "unknown"  # not probed yet
    STOPPED = "stopped"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    FAILED = "failed"  # not healthy (may still be partly up): must be stopped before anything else


class Op(enum.Enum):
    PROBE = "probe"
    START = "start"
    STOP = "stop"
    MONITOR = "monitor"


class Outcome(enum.Enum):
    """What an operation found or achieved, as the engine needs to know it."""

    OK = "ok"  # start/stop succeeded, or monitor/probe: running
    STOPPED = "stopped"  # monitor/probe: not running
    FAILED = "failed"  # the operation failed, or monitor/probe: running but broken


@dataclass(frozen=True)
class Action:
    op: Op
    resource: str
    reason: str


@dataclass(frozen=True)
class OpRecord:
    op: Op
    ok: bool
    duration: float
    at: float


@dataclass
class _Res:
    spec: Resource
    state: RState = RState.UNKNOWN
    in_flight: Op | None = None
    failures: FailureRecord = FailureRecord()
    blocked: bool = False  # given up on (threshold, or a stop that failed): stays down until cleanup
    restart: bool = False  # must go down once and come back (after a failure or a changed config)
    removing: bool = False  # gone from the config: stop, then forget
    stop_failed: bool = False
    last_error: str | None = None
    last_op: OpRecord | None = None
    next_monitor: float | None = None
    not_before: float = 0.0
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)


class Engine:
    """Per-node resource state and the reconcile rule. Not thread-safe; one per daemon."""

    def __init__(self, resources: Mapping[str, Resource]) -> None:
        self._res: dict[str, _Res] = {n: _Res(r) for n, r in resources.items()}
        self._graph = self._build_graph()
        self.target_active = False
        self.target_reason = "not yet told to be active"
        # Until someone decides the role, probed resources are left exactly as found:
        # a restarting daemon must not stop what it is about to adopt.
        self.target_known = False

    # -- queries ---------------------------------------------------------------

    @property
    def graph(self) -> Graph:
        return self._graph

    def state(self, name: str) -> RState:
        return self._res[name].state

    def names(self) -> tuple[str, ...]:
        return tuple(self._res)

    def probing(self) -> bool:
        return any(r.state is RState.UNKNOWN for r in self._res.values())

    def busy(self) -> bool:
        return any(r.in_flight in (Op.START, Op.STOP, Op.PROBE) for r in self._res.values())

    def blocked(self) -> list[str]:
        return [n for n, r in self._res.items() if r.blocked]

    def all_stopped(self) -> bool:
        return all(r.state is RState.STOPPED and r.in_flight is None for r in self._res.values())

    def role(self) -> str:
        """active / starting / failed / stopping / standby / probing, as `hafctl status` shows it."""
        if self.probing():
            return "probing"
        if self.target_active:
            if self.blocked():
                return "failed"
            if all(r.state is RState.STARTED for r in self._res.values()):
                return "active"
            return "starting"
        return "standby" if self.all_stopped() else "stopping"

    def next_deadline(self, now: float | None = None) -> float | None:
        """The earliest time `tick` has something to do (a monitor, a retry, an expiry).

        With `now`, only future times count: a past one was handled by the tick that
        just ran, or waits on an operation in flight, and would make a caller spin.
        """
        times: list[float] = []
        for r in self._res.values():
            if r.next_monitor is not None and r.state is RState.STARTED and r.in_flight is None:
                times.append(r.next_monitor)
            if r.not_before:
                times.append(r.not_before)
            exp = r.failures.next_expiry(r.spec.failure_timeout)
            if exp is not None:
                times.append(exp)
        if now is not None:
            times = [t for t in times if t > now]
        return min(times) if times else None

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per-resource facts for status JSON (configuration order)."""
        out: dict[str, dict[str, object]] = {}
        for n in self._graph.order:
            r = self._res[n]
            state = r.state.value
            if r.in_flight is Op.START:
                state = RState.STARTING.value
            elif r.in_flight is Op.STOP:
                state = RState.STOPPING.value
            elif r.blocked and r.state is RState.STOPPED:
                state = RState.FAILED.value
            out[n] = {
                "type": r.spec.type,
                "state": state,
                "requires": list(r.spec.requires),
                "failures": r.failures.count(),
                "blocked": r.blocked,
                "last_error": r.last_error,
                "last_op": None
                if r.last_op is None
                else {"op": r.last_op.op.value, "ok": r.last_op.ok, "duration": round(r.last_op.duration, 4), "at": r.last_op.at},
                "detail": r.detail,
                **({"extra": r.extra} if r.extra else {}),
            }
        return out

    # -- events ----------------------------------------------------------------

    def start_probes(self) -> list[Action]:
        """At start-up: find out what already runs, so it is adopted rather than restarted."""
        acts = []
        for n, r in self._res.items():
            if r.state is RState.UNKNOWN and r.in_flight is None:
                r.in_flight = Op.PROBE
                acts.append(Action(Op.PROBE, n, "find out whether it already runs before deciding anything"))
        return acts

    def set_target(self, active: bool, reason: str, now: float) -> list[Action]:
        self.target_active = active
        self.target_reason = reason
        self.target_known = True
        return self._reconcile(now)

    def op_done(
        self,
        name: str,
        op: Op,
        outcome: Outcome,
        now: float,
        *,
        duration: float = 0.0,
        error: str | None = None,
        detail: str | None = None,
        extra: dict[str, object] | None = None,
    ) -> list[Action]:
        """An operation finished. Results of operations the engine did not ask for are ignored."""
        r = self._res.get(name)
        if r is None or r.in_flight is not op:
            return []
        r.in_flight = None
        if detail is not None:
            r.detail = detail
        elif op in (Op.START, Op.STOP):
            r.detail, r.extra = "", {}  # what the last probe or monitor saw no longer holds
        if extra is not None:
            r.extra = extra
        if op is not Op.MONITOR or outcome is not Outcome.OK:
            r.last_op = OpRecord(op, outcome is not Outcome.FAILED if op in (Op.PROBE, Op.MONITOR) else outcome is Outcome.OK, duration, now)
        if op is Op.PROBE:
            self._probed(r, outcome, error)
            if r.state is RState.STARTED:  # adopted: watched like anything this engine started
                r.next_monitor = now + r.spec.monitor_interval
        elif op is Op.START:
            if outcome is Outcome.OK:
                r.state = RState.STARTED
                r.next_monitor = now + r.spec.monitor_interval
            else:
                r.state = RState.FAILED
                self._failure(r, f"start failed: {error or 'unknown error'}", now)
        elif op is Op.STOP:
            if outcome is Outcome.OK:
                r.state = RState.STOPPED
                r.stop_failed = False
                r.next_monitor = None
                if r.removing:
                    del self._res[name]
                    self._graph = self._build_graph()
            else:
                r.state = RState.FAILED
                r.stop_failed = True
                r.blocked = True
                r.last_error = f"stop failed: {error or 'unknown error'}"
                r.not_before = now + min(STOP_RETRY_DELAY, r.spec.timeout)
        elif op is Op.MONITOR:
            r.next_monitor = now + r.spec.monitor_interval
            if r.state is RState.STARTED and outcome is not Outcome.OK:
                what = "found it stopped" if outcome is Outcome.STOPPED else f"failed: {error or 'unhealthy'}"
                r.state = RState.FAILED
                self._failure(r, f"monitor {what}", now)
        return self._reconcile(now)

    def unexpected_exit(self, name: str, why: str, now: float) -> list[Action]:
        """A supervised resource died between monitors: handle it like a failed monitor, now."""
        r = self._res.get(name)
        if r is None or r.state is not RState.STARTED or r.in_flight is Op.STOP:
            return []
        r.state = RState.FAILED
        self._failure(r, f"exited unexpectedly: {why}", now)
        return self._reconcile(now)

    def tick(self, now: float) -> list[Action]:
        """Time passed: run due monitors, retry failed stops, expire old failures."""
        acts: list[Action] = []
        for n, r in self._res.items():
            before = r.failures.count()
            r.failures = r.failures.expire(now, r.spec.failure_timeout)
            if r.blocked and not r.stop_failed and before and r.failures.count() == 0:
                r.blocked = False
                r.last_error = (r.last_error or "") + " (failures expired after failure_timeout)"
        for n, r in self._res.items():
            if r.state is RState.STARTED and r.in_flight is None and r.next_monitor is not None and now >= r.next_monitor:
                r.in_flight = Op.MONITOR
                acts.append(Action(Op.MONITOR, n, f"monitor interval of {r.spec.monitor_interval:g}s elapsed"))
        return acts + self._reconcile(now)

    def cleanup(self, name: str | None, now: float) -> list[Action]:
        """Forget failures (of one resource or all) and try again, as `hafctl cleanup` asks."""
        for n, r in self._res.items():
            if name is None or n == name:
                r.failures = FailureRecord()
                r.blocked = False
                r.stop_failed = False
                r.last_error = None
                r.not_before = 0.0
                if r.state is RState.FAILED:
                    r.restart = True
        return self._reconcile(now)

    def reconfigure(self, resources: Mapping[str, Resource], now: float) -> tuple[list[str], list[Action]]:
        """Apply a new resource set. Changed resources restart (with their dependents),
        removed ones are stopped then forgotten, new ones are probed. Returns the names
        whose agent must be (re)created, and the actions."""
        renew: list[str] = []
        for n, r in self._res.items():
            if n not in resources:
                r.removing = True
        for n, spec in resources.items():
            old = self._res.get(n)
            if old is None:
                self._res[n] = _Res(spec)
                renew.append(n)
            elif old.spec != spec:
                old.removing = False
                if _same_identity(old.spec, spec):
                    old.spec = spec  # only timings / policy changed: no restart needed
                else:
                    old.spec = spec
                    old.restart = old.state is not RState.STOPPED
                    renew.append(n)
        # Keep the new config's order; resources being removed go last.
        order = list(resources) + [n for n in self._res if n not in resources]
        self._res = {n: self._res[n] for n in order}
        self._graph = self._build_graph()
        return renew, self.start_probes() + self._reconcile(now)

    # -- the rule --------------------------------------------------------------

    def _build_graph(self) -> Graph:
        return Graph.build({n: [d for d in r.spec.requires if d in self._res] for n, r in self._res.items()})

    def _probed(self, r: _Res, outcome: Outcome, error: str | None) -> None:
        if outcome is Outcome.OK:
            r.state = RState.STARTED
        elif outcome is Outcome.STOPPED:
            r.state = RState.STOPPED
        else:
            # Unknown or broken: it may be partly up, so it is stopped before anything else.
            r.state = RState.FAILED
            r.restart = True
            r.last_error = f"probe: {error or 'unhealthy'}"

    def _failure(self, r: _Res, why: str, now: float) -> None:
        r.failures = r.failures.add(now, r.spec.failure_timeout)
        r.last_error = why
        n = r.failures.count()
        if gives_up(n, r.spec.migration_threshold):
            r.blocked = True
            r.last_error = (
                f"{why}; {n} failures within {r.spec.failure_timeout:g}s exceed migration_threshold "
                f"{r.spec.migration_threshold}: given up on this node"
            )
        else:
            r.restart = True

    def _wanted(self, name: str, memo: dict[str, bool]) -> bool:
        """Should `name` run now? Only if this node is active, it is not given up on or
        being removed or restarted, and everything it requires is wanted too."""
        if name in memo:
            return memo[name]
        r = self._res[name]
        ok = self.target_active and not (r.blocked or r.removing or r.restart)
        ok = ok and all(self._wanted(d, memo) for d in self._graph.requires[name])
        memo[name] = ok
        return ok

    def _reconcile(self, now: float) -> list[Action]:
        if self.probing() or not self.target_known:
            return []
        # A resource marked for restart comes back once it has been stopped.
        for r in self._res.values():
            if r.restart and r.state is RState.STOPPED and r.in_flight is None:
                r.restart = False
        memo: dict[str, bool] = {}
        acts: list[Action] = []
        for n in self._graph.order:
            r = self._res[n]
            if r.in_flight is not None or now < r.not_before:
                continue
            wanted = self._wanted(n, memo)
            deps = self._graph.requires[n]
            dependents = self._graph.dependents(n)
            if wanted and r.state is RState.STOPPED:
                if all(self._res[d].state is RState.STARTED and self._res[d].in_flight is not Op.STOP for d in deps):
                    r.in_flight = Op.START
                    acts.append(Action(Op.START, n, self._start_reason(n)))
            elif not wanted and r.state in (RState.STARTED, RState.FAILED):
                if all(self._res[d].state is RState.STOPPED and self._res[d].in_flight is None for d in dependents):
                    r.in_flight = Op.STOP
                    acts.append(Action(Op.STOP, n, self._stop_reason(n, memo)))
        return acts

    def _start_reason(self, name: str) -> str:
        deps = self._graph.requires[name]
        base = f"this node is active ({self.target_reason})"
        return f"{base} and {', '.join(deps)} {'is' if len(deps) == 1 else 'are'} started" if deps else base

    def _stop_reason(self, name: str, memo: dict[str, bool]) -> str:
        r = self._res[name]
        if r.removing:
            return "it was removed from the configuration"
        if r.stop_failed:
            return f"retrying a failed stop ({r.last_error})"
        if r.blocked:
            return f"it is given up on: {r.last_error}"
        if r.restart:
            return f"restarting it: {r.last_error or 'its configuration changed'}"
        if not self.target_active:
            return f"this node is not active ({self.target_reason})"
        down = [d for d in self._graph.requires[name] if not self._wanted(d, memo)]
        return f"it requires {', '.join(down)}, which must stop or restart" if down else "it is not wanted here"


def _same_identity(a: Resource, b: Resource) -> bool:
    """True when only policy/timing keys changed, so the running resource can stay."""
    return a.type == b.type and a.params == b.params and a.requires == b.requires


def outcomes_by_name(actions: Iterable[Action]) -> dict[str, Op]:
    """Handy for tests and logs: {resource: op}."""
    return {a.resource: a.op for a in actions}
