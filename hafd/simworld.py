"""The simulated cluster behind `hafctl simulate`: every node's own ClusterCore and Engine,
driven exactly as hafd/daemon.py drives them, in a deterministic world.

Only the outside is simulated: a virtual clock, a network with neither loss nor delay
(links can be cut), operations and fences that succeed at once unless told otherwise,
tiebreaker checks every `tiebreaker.interval`.  One event queue ordered by (time, seq);
nothing random, so the same inputs give the same story.  Like tests/sim.py, which checks
the cores' invariants under random schedules, but written for explaining, not fuzzing:
every decision worth a sentence becomes a `Step`.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hafd.core.cluster import (
    CheckTiebreaker,
    ClusterCore,
    Fence,
    Note,
    Persist,
    Reannounce,
    SendCommand,
    SendNow,
    SetTarget,
    settings_from_config,
)
from hafd.core.codec import DecodeError, Message, ReplayGuard
from hafd.core.config import Config
from hafd.core.engine import Action, Engine, Op, Outcome
from hafd.core.fingerprint import config_hash

TICK_SLACK = 0.001  # as the daemon: membership deadlines are strict, tick a moment after them
MAX_STEPS = 2_000_000  # queue items per run: a livelock in the cores must end in an error, not a hang
# Acts that repeat while a node waits (a fence retried every second): shown once, with a count.
REPEATING = ("fence", "fencing_failed", "tiebreaker_check")


class SimulateError(Exception):
    """Bad events or a starting state that cannot be built; the message says which and why."""


@dataclass
class Step:
    at: float  # absolute virtual time; shown relative to the event
    node: str | None
    kind: str
    text: str
    repeats: int = 0
    last_at: float = 0.0

    def as_json(self, t0: float) -> dict[str, Any]:
        d: dict[str, Any] = {"at": round(self.at - t0, 4), "node": self.node, "kind": self.kind, "text": self.text}
        if self.repeats:
            d["repeats"], d["last_at"] = self.repeats, round(self.last_at - t0, 4)
        return d


@dataclass
class _Node:
    name: str
    index: int
    resources: tuple[str, ...]
    up: bool = False
    boot: int = 0
    boot_id: bytes = b""
    seq: int = 0
    core: ClusterCore | None = None
    engine: Engine | None = None
    guard: ReplayGuard | None = None
    world: dict[str, str] = field(default_factory=dict)  # what really runs there: started / stopped / failed
    persisted: dict[str, Any] = field(default_factory=dict)
    reported: tuple[str, bool] | None = None
    tick_at: float = -1.0
    etick_at: float = -1.0
    hb_base: float = 0.0
    hb_k: int = 0
    tiebreaker_ok: bool = True
    fence_fails: bool = False  # fencing THIS node fails
    fail_next: dict[str, list[int]] = field(default_factory=dict)  # resource -> [failures left, of how many]


class World:
    """Every node's cores plus a loss-free network and instant operations, on a virtual clock."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.hash = config_hash(cfg)
        res = tuple(cfg.resources)
        self.nodes = {n: _Node(n, i, res, world=dict.fromkeys(res, "stopped")) for i, n in enumerate(cfg.nodes)}
        self.interval = cfg.cluster.interval
        self.cut: set[tuple[str, str, int]] = set()  # (from, to, link index): carries nothing
        self.q: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self.qseq = 0
        self.now = 0.0
        self.steps: list[Step] | None = None  # recording after an event; None while setting up
        self.t0 = 0.0  # when the current event happened
        self.armed = False  # a resource-failed event waits for a monitor to find the failure
        self.last_activity = 0.0
        self.elected: dict[str, str | None] = {}  # per node: who its last shown election named
        tb = cfg.cluster.tiebreaker
        self.quiet = max(cfg.cluster.deadtime + 3 * self.interval, (tb.interval + 2 * self.interval) if tb else 0.0)

    # -- plumbing -----------------------------------------------------------------

    def at(self, t: float, kind: str, *args: Any) -> None:
        self.qseq += 1
        heapq.heappush(self.q, (t, self.qseq, kind, args))

    def record(self, node: str | None, kind: str, text: str) -> None:
        self.last_activity = self.now
        if self.steps is None:
            return
        if kind in REPEATING:
            for s in self.steps:
                if (s.node, s.kind, s.text) == (node, kind, text):
                    s.repeats += 1
                    s.last_at = self.now
                    return
        self.steps.append(Step(self.now, node, kind, text))

    def run(self, horizon: float, done: Callable[[], bool]) -> bool:
        """Process events in time order until `done()` holds between two instants, or the horizon."""
        n = 0
        while self.q:
            t, _, kind, args = self.q[0]
            if t > horizon:
                self.now = horizon
                return False
            heapq.heappop(self.q)
            self.now = t
            getattr(self, "_ev_" + kind)(*args)
            n += 1
            if n > MAX_STEPS:
                raise SimulateError(f"the simulation did not settle after {MAX_STEPS} steps (t={self.now:.3f}s)")
            if (not self.q or self.q[0][0] > self.now) and done():
                return True
        return self.settled()  # nothing left to happen: every node is down

    def settled(self) -> bool:
        for node in self.nodes.values():
            if not node.up:
                continue
            core, eng = node.core, node.engine
            assert core is not None and eng is not None
            if eng.probing() or eng.busy() or not core.decided or core.in_transition():
                return False
            if any(left and node.world[r] == "started" for r, (left, _) in node.fail_next.items()):
                return False
        return True

    def quiet_and_settled(self) -> bool:
        if self.armed:
            return False
        return self.now - max(self.last_activity, self.t0) >= self.quiet and self.settled()

    def waiting(self) -> list[str]:
        out = []
        for n, node in self.nodes.items():
            if node.up and node.core is not None and node.engine is not None:
                core = node.core
                fences = [f"fencing {p} {f.state}" + (f" ({f.detail})" if f.detail else "")
                          for p, f in core.fencing.items() if f.state != "done"]
                out.append(f"{n} ({node.engine.role()}): {core.decision.reason}"
                           + (f"; {', '.join(fences)}" if fences else ""))
        return out

    # -- nodes --------------------------------------------------------------------

    def boot(self, n: str, *, world: Mapping[str, str] | None = None, was_active: bool | None = None,
             standby: bool | None = None) -> None:
        node = self.nodes[n]
        node.up, node.boot, node.seq, node.reported = True, node.boot + 1, 0, None
        node.boot_id = bytes([node.index + 1, node.boot % 256]) * 8
        if world is not None:
            node.world = dict(world)
        p = dict(node.persisted)
        if was_active is not None:
            p["was_active"] = was_active
        if standby is not None:
            p["standby"] = standby
        cfg = dataclasses.replace(self.cfg, local_node=n)
        node.core = ClusterCore(settings_from_config(cfg, self.hash), self.now, epoch=int(p.get("epoch", 0)),
                                was_active=bool(p.get("was_active")), standby=bool(p.get("standby")),
                                outdated=p.get("outdated"))
        node.engine = Engine(self.cfg.resources)
        node.guard = ReplayGuard(self.cfg.nodes, n, hold=self.cfg.cluster.deadtime)
        node.hb_base, node.hb_k = self.now, 0
        self.record(n, "boot", "boots; hafd starts and probes what runs there")
        self._run_actions(node, node.engine.start_probes())
        if self.cfg.cluster.tiebreaker is not None:
            self._ev_tb(n, node.boot, True)
        self._ev_hb(n, node.boot)

    def power_off(self, n: str, why: str) -> None:
        node = self.nodes[n]
        node.up = False
        node.core = node.engine = node.guard = None
        node.world = dict.fromkeys(node.world, "stopped")
        node.fail_next.clear()
        self.record(n, "down", why)

    def next_heartbeat(self, n: str) -> float:
        node = self.nodes[n]
        return node.hb_base + node.hb_k * self.interval

    # -- acts, as hafd/daemon.py's apply() carries them out ------------------------

    def _handle(self, node: _Node, acts: list[Any]) -> None:
        work = list(acts)
        while work and node.up:
            a = work.pop(0)
            core, eng = node.core, node.engine
            assert core is not None and eng is not None
            if isinstance(a, SetTarget):
                self._run_actions(node, eng.set_target(a.active, a.reason, self.now))
            elif isinstance(a, Fence):
                fence = self.cfg.cluster.fencing
                argv = " ".join(part.replace("{peer}", a.peer) for part in fence.command) if fence else "?"
                self.record(node.name, "fence", f"fences {a.peer} with {argv} (cluster.fencing): {a.reason}")
                self.at(self.now, "fence_done", node.name, node.boot, a.peer)
            elif isinstance(a, SendNow):
                self._send(node, core.heartbeat())
            elif isinstance(a, SendCommand):
                self._send(node, a.command)
            elif isinstance(a, Reannounce):
                self.record(node.name, "reannounce", f"re-announces its addresses: {a.reason}")
            elif isinstance(a, CheckTiebreaker):
                self.record(node.name, "tiebreaker_check", f"asks the tiebreaker again: {a.reason}")
                self.at(self.now, "tb", node.name, node.boot, False)
            elif isinstance(a, Persist):
                node.persisted = dict(a.state)
            elif isinstance(a, Note):
                if a.event == "election":
                    # Shown when who is elected changes, not each time the sentence does.
                    if self.elected.get(node.name, "?") != a.fields.get("active"):
                        self.elected[node.name] = a.fields.get("active")
                        self.record(node.name, a.event, "election: " + a.reason)
                else:
                    self.record(node.name, a.event, a.reason)
            work += self._report(node)
        self._schedule_ticks(node)

    def _report(self, node: _Node) -> list[Any]:
        if not node.up:
            return []
        assert node.engine is not None and node.core is not None
        role, blocked = node.engine.role(), bool(node.engine.blocked())
        if (role, blocked) == node.reported:
            return []
        node.reported = (role, blocked)
        if role == "active":
            running = [r for r in node.engine.graph.order if node.world[r] == "started"]
            self.record(node.name, "role", f"is active: {', '.join(running)} run here")
        elif role == "standby":
            self.record(node.name, "role", "is standby: nothing runs here")
        elif role == "failed":
            self.record(node.name, "role", f"is failed: gave up on {', '.join(node.engine.blocked())}")
        return node.core.engine_changed(role, blocked, self.now)

    def _schedule_ticks(self, node: _Node) -> None:
        if not node.up:
            return
        assert node.core is not None and node.engine is not None
        d = node.core.next_deadline(self.now)
        if d is not None and d > self.now:
            d += TICK_SLACK
            if not (self.now <= node.tick_at <= d):
                node.tick_at = d
                self.at(d, "tick", node.name, node.boot)
        e = node.engine.next_deadline(self.now)
        if e is not None:
            e += TICK_SLACK
            if not (self.now <= node.etick_at <= e):
                node.etick_at = e
                self.at(e, "etick", node.name, node.boot)

    def _run_actions(self, node: _Node, actions: list[Action]) -> None:
        eng = node.engine
        assert eng is not None
        for a in actions:
            if a.op in (Op.START, Op.STOP):
                reason = a.reason.replace(f" ({eng.target_reason})", "")
                self.record(node.name, a.op.value, f"{a.op.value} {a.resource}: {reason}")
            self.at(self.now, "op_done", node.name, node.boot, a)
        self._handle(node, self._report(node))

    # -- the network ----------------------------------------------------------------

    def _send(self, node: _Node, body: Any) -> None:
        node.seq += 1
        msg = Message(node.name, node.boot_id, node.seq, self.now, body)
        mine = self.cfg.nodes[node.name].links
        for peer in self.nodes.values():
            if peer.name == node.name or not peer.up:
                continue
            for k, addr in enumerate(mine):
                if k < len(self.cfg.nodes[peer.name].links) and (node.name, peer.name, k) not in self.cut:
                    self.at(self.now, "deliver", peer.name, peer.boot, addr, msg)

    # -- queue events -----------------------------------------------------------------

    def _live(self, n: str, boot: int) -> _Node | None:
        node = self.nodes[n]
        return node if node.up and node.boot == boot else None

    def _ev_deliver(self, n: str, boot: int, link: str, msg: Message) -> None:
        node = self._live(n, boot)
        if node is None:
            return
        assert node.guard is not None and node.core is not None
        try:
            node.guard.admit(msg, link, self.now)
        except DecodeError:
            return
        self._handle(node, node.core.on_message(msg, link, self.now))

    def _ev_hb(self, n: str, boot: int) -> None:
        node = self._live(n, boot)
        if node is None:
            return
        assert node.core is not None and node.engine is not None
        self._handle(node, node.core.tick(self.now))
        if node.up:
            due = node.engine.next_deadline()
            if due is not None and due <= self.now:
                self._run_actions(node, node.engine.tick(self.now))
        if node.up and node.core is not None:
            self._send(node, node.core.heartbeat())
            node.hb_k += 1
            self.at(self.next_heartbeat(n), "hb", n, boot)

    def _ev_tick(self, n: str, boot: int) -> None:
        node = self._live(n, boot)
        if node is not None and node.core is not None:
            node.tick_at = -1.0
            self._handle(node, node.core.tick(self.now))

    def _ev_etick(self, n: str, boot: int) -> None:
        node = self._live(n, boot)
        if node is not None and node.engine is not None:
            node.etick_at = -1.0
            self._run_actions(node, node.engine.tick(self.now))

    def _ev_op_done(self, n: str, boot: int, a: Action) -> None:
        node = self._live(n, boot)
        if node is None:
            return
        eng = node.engine
        assert eng is not None
        r, error = a.resource, None
        if a.op is Op.START:
            node.world[r], out = "started", Outcome.OK
        elif a.op is Op.STOP:
            node.world[r], out = "stopped", Outcome.OK
        else:
            pending = node.fail_next.get(r)
            if a.op is Op.MONITOR and pending and pending[0] > 0 and node.world[r] == "started":
                pending[0] -= 1
                node.world[r] = "failed"
                if self.armed:
                    self.armed, self.t0 = False, self.now  # the event happens when a monitor finds it
                i, total = pending[1] - pending[0], pending[1]
                spec = self.cfg.resources[r]
                self.record(n, "monitor_failed", f"monitor finds {r} failed (simulated failure {i} of {total}; "
                            f"migration_threshold {spec.migration_threshold} allows that many restarts within "
                            f"{spec.failure_timeout:g} s)")
                error = "simulated failure"
            s = node.world[r]
            out = Outcome.OK if s == "started" else Outcome.STOPPED if s == "stopped" else Outcome.FAILED
        self._run_actions(node, eng.op_done(r, a.op, out, self.now, error=error or "simulated"))

    def _ev_fence_done(self, n: str, boot: int, peer: str) -> None:
        node = self._live(n, boot)
        if node is None or node.core is None:
            return
        target = self.nodes[peer]
        ok = not target.fence_fails
        fence = self.cfg.cluster.fencing
        prog = fence.command[0] if fence else "the fence command"
        if ok and target.up:
            self.power_off(peer, f"is powered off by {n}'s fence")
        detail = f"{prog} exited 0" if ok else f"{prog} failed (simulated: fence-fails {peer})"
        self._handle(node, node.core.fence_done(peer, ok, detail, self.now))

    def _ev_tb(self, n: str, boot: int, periodic: bool) -> None:
        node = self._live(n, boot)
        if node is None or node.core is None:
            return
        self._handle(node, node.core.set_tiebreaker(node.tiebreaker_ok, self.now))
        tb = self.cfg.cluster.tiebreaker
        if periodic and tb is not None:
            self.at(self.now + tb.interval, "tb", n, boot, True)
