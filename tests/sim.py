"""A deterministic discrete-event simulation of a hafd cluster: ClusterCore + Engine per node.

No real time, sockets, threads or asyncio: one priority queue keyed by (time, seq), and
one `random.Random(seed)` that generates the whole schedule (crashes, partitions, loss,
operator commands, resource failures, fencing outcomes) and every network delay, so a
failing run is replayed exactly from its seed:

    python tests/sim.py --seed 1234 --verbose
    python tests/sim.py --count 2000            # seeds 0..1999, stops at the first failure

Each node is driven the way the daemon drives it: heartbeats every `interval` on every
link, received messages through `ReplayGuard.admit` then `ClusterCore.on_message`,
`tick` at `next_deadline` (a hair after) and every interval, the engine's actions run
against the node's "world" (what really runs there), `engine_changed` after every
engine state change, Persist kept per node and used when the daemon comes back.

Invariants, checked after every event (see `Sim._check`):
1. Overlap: two nodes with resources up (starting, started, failed or stopping) at the
   same time.  With fencing: never, under any network (a node starts only with the
   consent of every peer it hears, and fences every peer it cannot hear).  Without
   fencing a broken network (one-way loss, a node booting cut off) can still make two
   nodes serve; such an overlap must end within OVERLAP_BOUND
   of the later of (a) the moment it began and (b) the moment the pair became
   connected (both daemons running, and in each direction at least one link that is
   neither partitioned, cut, nor in a loss burst).  The bound is
       2 * deadtime          (a restarted peer's new boot id is refused by ReplayGuard for
                              up to `deadtime` after its last old message, and it may take
                              up to another deadtime to be heard through baseline loss)
     + interval + 2 * max delay   (the next heartbeat, and the SendNow that answers it)
     + 2 * resources * max op     (finish the starts in flight, then stop in order)
   Overlaps that begin while connected are false failures (baseline loss): they too must
   be resolved within the bound.
2. After the network heals and every node is up and no event comes, within SETTLE
   seconds exactly one node has engine role "active", unless no node is eligible (all in
   standby or with a failed resource): then none.
3. A START is issued only when every resource it requires is started in that world.
4. With fencing, SetTarget(True) while a peer is lost comes only after a successful
   fence of that peer that completed after the last time we heard from it.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

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
    Settings,
)
from hafd.core.codec import DecodeError, Heartbeat, Leaving, Message, ReplayGuard
from hafd.core.config import Resource
from hafd.core.engine import Action, Engine, Op, Outcome

INTERVAL = 1.0
DEADTIME = 3.0
MAX_DELAY = 0.15
MIN_OP, MAX_OP = 0.01, 0.2
STARTUP_WAIT = 4.0
RESTART_GRACE = 6.0
FAILURE_TIMEOUT = 8.0
SETTLE = 25.0
# A power cycle takes longer than deadtime.  A node back sooner is refused by its peers'
# ReplayGuard (BOOT_CONFLICT for `deadtime` after its old boot was last heard), then
# declared lost and, with fencing, fenced again on every reboot: a loop real machines,
# booting in tens of seconds against a sub-second deadtime, cannot enter.
REBOOT_MIN = DEADTIME + 1.0
N_RES = 4
OVERLAP_BOUND = 2 * DEADTIME + INTERVAL + 2 * MAX_DELAY + 2 * N_RES * MAX_OP

RESOURCES = {
    "drbd": Resource(name="drbd", type="command", monitor_interval=3.0, migration_threshold=1, failure_timeout=FAILURE_TIMEOUT),
    "data": Resource(name="data", type="command", requires=("drbd",), monitor_interval=3.0, migration_threshold=1,
                     failure_timeout=FAILURE_TIMEOUT),
    "vip": Resource(name="vip", type="command", monitor_interval=3.0, migration_threshold=1, failure_timeout=FAILURE_TIMEOUT),
    "dhcpd": Resource(name="dhcpd", type="command", requires=("data", "vip"), monitor_interval=3.0,
                      migration_threshold=1, failure_timeout=FAILURE_TIMEOUT),
}
HASH = b"\x42" * 32


class InvariantViolation(AssertionError):
    pass


@dataclass
class Scenario:
    """The cluster's shape and the schedule, all drawn from the seed."""

    seed: int
    nodes: list[str]
    priorities: dict[str, int]
    nets: dict[str, tuple[int, ...]]  # node -> the networks it has a link on
    fencing: bool
    halt: bool
    tiebreaker: bool
    failback: bool
    base_loss: float
    dup: float
    fence_ok_prob: float
    start_fail_prob: float
    events: list[tuple[float, str, tuple[Any, ...]]]  # (time, kind, args)
    end: float


def make_scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    three = rng.random() < 0.3
    nodes = ["a", "b", "c"] if three else ["a", "b"]
    prios = {n: rng.choice([0, 10, 50, 100]) for n in nodes}
    if three:
        nets = {n: (0,) if rng.random() < 0.5 else (0, 1) for n in nodes}
    else:
        nets = {n: (0, 1) if rng.random() < 0.8 else (0,) for n in nodes}
        if nets["a"] != nets["b"]:
            nets = {n: (0,) for n in nodes}
    fencing = rng.random() < 0.4
    sc = Scenario(
        seed=seed, nodes=nodes, priorities=prios, nets=nets, fencing=fencing,
        halt=fencing and rng.random() < 0.2, tiebreaker=rng.random() < 0.3, failback=rng.random() < 0.3,
        base_loss=rng.choice([0.0, 0.0, 0.01, 0.05]), dup=rng.choice([0.0, 0.05]),
        fence_ok_prob=rng.choice([1.0, 1.0, 0.7, 0.3]) if fencing else 1.0,
        start_fail_prob=rng.choice([0.0, 0.0, 0.02]), events=[], end=0.0,
    )
    duration = rng.uniform(10.0, 30.0)
    t = 0.0
    # Sometimes a node starts late (a cold start alone, then the other joins).
    for n in nodes:
        sc.events.append((rng.choice([0.0, 0.0, rng.uniform(0, 8)]), "boot", (n,)))
    kinds = ["crash_daemon", "crash_node", "restart_daemon", "partition", "cut", "burst", "standby",
             "switchover", "res_fail", "tb"]
    while True:
        t += rng.expovariate(1 / 3.0)
        if t >= duration:
            break
        k = rng.choice(kinds)
        n = rng.choice(nodes)
        if k in ("crash_daemon", "crash_node"):
            # A daemon may come back at once (systemd); a machine takes longer than deadtime.
            sc.events.append((t, k, (n,)))
            sc.events.append((t + rng.uniform(0.5 if k == "crash_daemon" else REBOOT_MIN, 10.0), "boot", (n,)))
        elif k == "restart_daemon":
            sc.events.append((t, k, (n, rng.uniform(0.2, 8.0))))
        elif k == "partition":
            side = tuple(x for x in nodes if rng.random() < 0.5) or (n,)
            sc.events.append((t, "partition", (side,)))
            sc.events.append((t + rng.uniform(1.0, 10.0), "heal", ()))
        elif k in ("cut", "burst"):
            m = rng.choice([x for x in nodes if x != n])
            net = rng.choice(sc.nets[n])
            both = rng.random() < 0.7
            rate = 1.0 if k == "cut" else rng.uniform(0.3, 1.0)
            sc.events.append((t, "lossy", (n, m, net, both, rate)))
            sc.events.append((t + rng.uniform(0.5, 10.0), "lossy", (n, m, net, both, 0.0)))
        elif k == "standby":
            sc.events.append((t, "standby", (n, rng.choice(nodes), rng.random() < 0.6)))
        elif k == "switchover":
            sc.events.append((t, "switchover", (n, rng.choice([None, *nodes]))))
        elif k == "res_fail":
            sc.events.append((t, "res_fail", (n, rng.choice(list(RESOURCES)))))
        elif k == "tb":
            if sc.tiebreaker:
                sc.events.append((t, "tb", (n, False)))
                sc.events.append((t + rng.uniform(0.5, 8.0), "tb", (n, True)))
        if k == "standby" and rng.random() < 0.7:
            sc.events.append((t + rng.uniform(1.0, 10.0), "standby", (n, sc.events[-1][2][1], False)))
    sc.end = max(t for t, _, _ in sc.events) + 0.01
    sc.events.sort(key=lambda e: e[0])
    return sc


@dataclass
class Node:
    name: str
    nets: tuple[int, ...]
    powered: bool = False
    up: bool = False
    boot: int = 0
    boot_id: bytes = b""
    seq: int = 0
    core: ClusterCore | None = None
    engine: Engine | None = None
    guard: ReplayGuard | None = None
    world: dict[str, str] = field(default_factory=lambda: dict.fromkeys(RESOURCES, "stopped"))
    persisted: dict[str, Any] = field(default_factory=dict)
    reported: tuple[str, bool] | None = None
    tick_at: float = -1.0
    etick_at: float = -1.0
    tiebreaker: bool = True
    heard: dict[str, float] = field(default_factory=dict)  # peer -> last admitted message (this boot)
    fenced_at: dict[str, float] = field(default_factory=dict)  # peer -> last successful fence done (this boot)
    dead_unnoticed: set[str] = field(default_factory=set)  # killed by the schedule, no op has looked since

    def running(self) -> bool:
        return any(s != "stopped" for s in self.world.values())


class Sim:
    def __init__(self, sc: Scenario, verbose: bool = False, out: Callable[[str], None] = print) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed * 7919 + 1)
        self.verbose = verbose
        self.out = out
        self.now = 0.0
        self.q: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self.qseq = 0
        self.n_events = 0
        self.trace: deque[str] = deque(maxlen=60)
        self.nodes = {n: Node(n, sc.nets[n]) for n in sc.nodes}
        self.group: dict[str, int] = dict.fromkeys(sc.nodes, 0)
        self.loss: dict[tuple[str, str, int], float] = {}  # directed (src, dst, net) -> loss rate (1.0 = cut)
        self.connected_since: dict[tuple[str, str], float | None] = {}
        self.overlap_since: dict[tuple[str, str], float] = {}
        self.pairs = [(x, y) for i, x in enumerate(sc.nodes) for y in sc.nodes[i + 1:]]
        self.settling = False
        self.dirty = True  # something _check looks at may have changed since it last ran
        self.races = 0  # overlaps that began while the pair could talk (decisions on stale heartbeats)
        self.links = {n: tuple(f"{n}{k}" for k in sc.nets[n]) for n in sc.nodes}

    # -- plumbing ----------------------------------------------------------------

    def at(self, t: float, kind: str, *args: Any) -> None:
        self.qseq += 1
        heapq.heappush(self.q, (t, self.qseq, kind, args))

    def log(self, text: str) -> None:
        line = f"{self.now:9.4f} {text}"
        self.trace.append(line)
        if self.verbose:
            self.out(line)

    def settings(self, n: str) -> Settings:
        sc = self.sc
        return Settings(
            local=n, priorities=dict(sc.priorities), links=dict(self.links), interval=INTERVAL, deadtime=DEADTIME,
            failback=sc.failback, config_hash=HASH, fencing=sc.fencing, fence_halt_on_failure=sc.halt,
            tiebreaker=sc.tiebreaker, startup_wait=STARTUP_WAIT, restart_grace=RESTART_GRACE,
        )

    def fail(self, what: str) -> None:
        lines = "\n".join(self.trace)
        raise InvariantViolation(
            f"seed {self.sc.seed}: invariant broken at event #{self.n_events} (t={self.now:.4f}): {what}\n"
            f"replay: python tests/sim.py --seed {self.sc.seed} --verbose\nlast events:\n{lines}"
        )

    # -- the run -----------------------------------------------------------------

    def run(self) -> None:
        for t, kind, args in self.sc.events:
            self.at(t, "sched", kind, *args)
        self.at(self.sc.end, "heal_all")
        stop = self.sc.end + SETTLE
        while self.q:
            t, _, kind, args = heapq.heappop(self.q)
            if t > stop:
                break
            self.now = t
            self.n_events += 1
            if kind in ("sched", "heal_all", "op_done", "fence_done"):
                self.dirty = True
            getattr(self, "ev_" + kind)(*args)
            self._check()
        self.now = stop
        self._final_check()

    # -- daemon life -------------------------------------------------------------

    def start_daemon(self, n: str) -> None:
        node = self.nodes[n]
        if node.up:
            return
        node.powered = node.up = True
        node.boot += 1
        node.boot_id = self.rng.randbytes(16)
        node.seq = 0
        node.reported = None
        node.heard, node.fenced_at = {}, {}
        p = node.persisted
        node.core = ClusterCore(self.settings(n), self.now, epoch=p.get("epoch", 0),
                                was_active=p.get("was_active", False), standby=p.get("standby", False))
        node.engine = Engine(RESOURCES)
        node.guard = ReplayGuard(self.sc.nodes, n, hold=DEADTIME)
        self.log(f"{n}: daemon starts (boot {node.boot}, persisted {p}, world {self._world(node)})")
        self.run_actions(node, node.engine.start_probes())
        if self.sc.tiebreaker:
            self.at(self.now + self.rng.uniform(0.01, 0.3), "tb_result", n, node.boot)
        self.ev_hb(n, node.boot)

    def stop_daemon(self, n: str, why: str) -> None:
        node = self.nodes[n]
        if not node.up:
            return
        node.up = False
        node.core = node.engine = node.guard = None
        # Operations in flight finish as the daemon dies: the agent's child process completes.
        for r, s in node.world.items():
            node.world[r] = {"starting": "started", "stopping": "stopped"}.get(s, s)
        self.log(f"{n}: daemon dies ({why}); world {self._world(node)}")

    def power_off(self, n: str, why: str) -> None:
        node = self.nodes[n]
        self.stop_daemon(n, why)
        node.powered = False
        node.world = dict.fromkeys(RESOURCES, "stopped")
        self.log(f"{n}: node is down ({why}): every resource is gone")

    @staticmethod
    def _world(node: Node) -> str:
        up = [f"{r}:{s}" for r, s in node.world.items() if s != "stopped"]
        return ",".join(up) or "-"

    # -- acts --------------------------------------------------------------------

    def handle(self, node: Node, acts: list[Any]) -> None:
        work = deque(acts)
        while work and node.up:
            a = work.popleft()
            core, engine = node.core, node.engine
            assert core is not None and engine is not None
            if isinstance(a, SetTarget):
                self.log(f"{node.name}: SetTarget({a.active}) {a.reason}")
                if a.active and self.sc.fencing:
                    self._check_fenced_before_take(node)
                self.run_actions(node, engine.set_target(a.active, a.reason, self.now))
            elif isinstance(a, Fence):
                self.log(f"{node.name}: Fence({a.peer}) {a.reason}")
                self.at(self.now + self.rng.uniform(0.05, 1.0), "fence_done", node.name, node.boot, a.peer)
            elif isinstance(a, SendNow):
                self.send(node, core.heartbeat())
            elif isinstance(a, SendCommand):
                self.log(f"{node.name}: SendCommand {a.command}")
                self.send(node, a.command)
            elif isinstance(a, Persist):
                node.persisted = dict(a.state)
            elif isinstance(a, Reannounce):
                self.log(f"{node.name}: Reannounce {a.reason}")
            elif isinstance(a, CheckTiebreaker):
                self.log(f"{node.name}: CheckTiebreaker {a.reason}")
                self.at(self.now + self.rng.uniform(0.001, 0.05), "tb_result", node.name, node.boot)
            elif isinstance(a, Note):
                if a.event in ("link_up", "link_down"):
                    continue
                self.log(f"{node.name}: {a.event}: {a.reason}")
            else:
                raise AssertionError(f"unknown act {a!r}")
            work.extend(self._report(node))
        self._schedule_ticks(node)

    def _report(self, node: Node) -> list[Any]:
        if not node.up:
            return []
        assert node.engine is not None and node.core is not None
        now_state = (node.engine.role(), bool(node.engine.blocked()))
        if now_state == node.reported:
            return []
        node.reported = now_state
        self.log(f"{node.name}: engine {now_state[0]}{' (blocked)' if now_state[1] else ''}")
        return node.core.engine_changed(now_state[0], now_state[1], self.now)

    def _schedule_ticks(self, node: Node) -> None:
        if not node.up:
            return
        assert node.core is not None and node.engine is not None
        # A deadline already past is left to the periodic tick: both cores report past
        # deadlines while an operation is in flight (a due monitor, a fence retry that
        # cannot run yet), and chasing them would spin.
        d = node.core.next_deadline(self.now)
        if d is not None and d > self.now:
            d += 1e-3
            if not (self.now <= node.tick_at <= d):
                node.tick_at = d
                self.at(d, "tick", node.name, node.boot)
        e = node.engine.next_deadline()
        if e is not None and e > self.now:
            e += 1e-3
            if not (self.now <= node.etick_at <= e):
                node.etick_at = e
                self.at(e, "etick", node.name, node.boot)

    def run_actions(self, node: Node, actions: list[Action]) -> None:
        for a in actions:
            if a.op is Op.START or a.op is Op.STOP:
                self.dirty = True
            if a.op is Op.START:
                eng = node.engine
                assert eng is not None
                missing = [d for d in eng.graph.requires[a.resource]
                           if node.world[d] != "started" and d not in node.dead_unnoticed]
                if missing:
                    self.fail(f"{node.name} starts {a.resource} while {missing} are not started: {node.world}")
                node.world[a.resource] = "starting"
                self.log(f"{node.name}: start {a.resource}")
            elif a.op is Op.STOP:
                node.world[a.resource] = "stopping"
                self.log(f"{node.name}: stop {a.resource}")
            self.at(self.now + self.rng.uniform(MIN_OP, MAX_OP), "op_done", node.name, node.boot, a)
        self.handle(node, self._report(node))

    # -- network -----------------------------------------------------------------

    def send(self, node: Node, body: Any) -> None:
        node.seq += 1
        msg = Message(node.name, node.boot_id, node.seq, self.now, body)
        for net in node.nets:
            for peer in self.sc.nodes:
                if peer == node.name or net not in self.sc.nets[peer]:
                    continue
                if self.group[peer] != self.group[node.name]:
                    continue
                loss = self.loss.get((node.name, peer, net), 0.0 if self.settling else self.sc.base_loss)
                if loss and self.rng.random() < loss:
                    continue
                copies = 2 if self.sc.dup and self.rng.random() < self.sc.dup else 1
                for _ in range(copies):
                    self.at(self.now + self.rng.uniform(0.0005, MAX_DELAY), "deliver", peer, f"{node.name}{net}", msg)

    def ev_deliver(self, dst: str, link: str, msg: Message) -> None:
        node = self.nodes[dst]
        if not node.up:
            return
        assert node.guard is not None and node.core is not None
        try:
            node.guard.admit(msg, link, self.now)
        except DecodeError:
            return
        node.heard[msg.sender] = self.now
        if not isinstance(msg.body, Heartbeat):
            self.log(f"{dst}: receives {msg.body} from {msg.sender} via {link}")
        self.handle(node, node.core.on_message(msg, link, self.now))

    def ev_hb(self, n: str, boot: int) -> None:
        node = self.nodes[n]
        if not node.up or node.boot != boot:
            return
        assert node.core is not None
        self.handle(node, node.core.tick(self.now))
        if node.up and node.engine is not None:
            due = node.engine.next_deadline()
            if due is not None and due <= self.now:  # the future ones have their own event
                self.run_actions(node, node.engine.tick(self.now))
        if node.up and node.core is not None:
            self.send(node, node.core.heartbeat())
            self.at(self.now + INTERVAL, "hb", n, boot)

    def ev_tick(self, n: str, boot: int) -> None:
        node = self.nodes[n]
        if node.up and node.boot == boot and node.core is not None:
            node.tick_at = -1.0
            self.handle(node, node.core.tick(self.now))

    def ev_etick(self, n: str, boot: int) -> None:
        node = self.nodes[n]
        if node.up and node.boot == boot and node.engine is not None:
            node.etick_at = -1.0
            self.run_actions(node, node.engine.tick(self.now))

    def ev_op_done(self, n: str, boot: int, a: Action) -> None:
        node = self.nodes[n]
        if not node.up or node.boot != boot:
            return
        assert node.engine is not None
        r = a.resource
        node.dead_unnoticed.discard(r)  # the engine learns what this op found
        if a.op is Op.START:
            if self.sc.start_fail_prob and self.rng.random() < self.sc.start_fail_prob:
                node.world[r], out = "failed", Outcome.FAILED
            else:
                node.world[r], out = "started", Outcome.OK
        elif a.op is Op.STOP:
            node.world[r], out = "stopped", Outcome.OK
        else:
            s = node.world[r]
            out = Outcome.OK if s == "started" else Outcome.STOPPED if s == "stopped" else Outcome.FAILED
        if a.op is not Op.MONITOR or out is not Outcome.OK:
            self.log(f"{n}: {a.op.value} {r} -> {out.value}")
        self.run_actions(node, node.engine.op_done(r, a.op, out, self.now, error="simulated"))

    def ev_fence_done(self, n: str, boot: int, peer: str) -> None:
        node = self.nodes[n]
        if not node.up or node.boot != boot:
            return
        assert node.core is not None
        ok = self.settling or self.rng.random() < self.sc.fence_ok_prob
        if ok:
            self.power_off(peer, f"fenced by {n}")
            self.at(self.now + self.rng.uniform(REBOOT_MIN, 10.0), "sched", "boot", peer)
            node.fenced_at[peer] = self.now
        self.log(f"{n}: fence {peer} -> {'ok' if ok else 'FAILED'}")
        self.handle(node, node.core.fence_done(peer, ok, "power cycled" if ok else "simulated failure", self.now))

    def ev_tb_result(self, n: str, boot: int) -> None:
        node = self.nodes[n]
        if node.up and node.boot == boot and node.core is not None:
            self.handle(node, node.core.set_tiebreaker(node.tiebreaker, self.now))

    # -- schedule events -----------------------------------------------------------

    def ev_sched(self, kind: str, *args: Any) -> None:
        self.log(f"EVENT {kind} {args}")
        if kind == "boot":
            (n,) = args
            node = self.nodes[n]
            if not node.up:
                node.world = node.world if node.powered else dict.fromkeys(RESOURCES, "stopped")
                self.start_daemon(n)
        elif kind == "crash_daemon":
            self.stop_daemon(args[0], "daemon crash")
        elif kind == "crash_node":
            self.power_off(args[0], "node crash")
        elif kind == "restart_daemon":
            n, after = args
            node = self.nodes[n]
            if node.up:
                self.send(node, Leaving(restarting=True))
                self.stop_daemon(n, "restart")
                self.at(self.now + after, "sched", "boot", n)
        elif kind == "partition":
            (side,) = args
            self.group = {x: 1 if x in side else 0 for x in self.sc.nodes}
        elif kind == "heal":
            self.group = dict.fromkeys(self.sc.nodes, 0)
        elif kind == "lossy":
            n, m, net, both, rate = args
            for key in [(n, m, net)] + ([(m, n, net)] if both else []):
                if rate:
                    self.loss[key] = rate
                else:
                    self.loss.pop(key, None)
        elif kind == "standby":
            n, target, on = args
            node = self.nodes[n]
            if node.up and node.core is not None:
                self.handle(node, node.core.set_standby(target, on, self.now))
        elif kind == "switchover":
            n, target = args
            node = self.nodes[n]
            if node.up and node.core is not None:
                err, acts = node.core.request_switchover(target, self.now)
                self.log(f"{n}: switchover to {target}: {err or 'accepted'}")
                self.handle(node, acts)
        elif kind == "res_fail":
            n, r = args
            node = self.nodes[n]
            if node.world[r] == "started":
                node.world[r] = "stopped"
                node.dead_unnoticed.add(r)
        elif kind == "tb":
            n, ok = args
            self.nodes[n].tiebreaker = ok
            node = self.nodes[n]
            if node.up:
                self.at(self.now + self.rng.uniform(0.01, 0.5), "tb_result", n, node.boot)
        else:
            raise AssertionError(kind)

    def ev_heal_all(self) -> None:
        self.log("EVENT heal everything; no further events")
        self.settling = True
        self.group = dict.fromkeys(self.sc.nodes, 0)
        self.loss.clear()
        for n, node in self.nodes.items():
            node.tiebreaker = True
            if node.up:
                self.at(self.now + 0.01, "tb_result", n, node.boot)
            else:
                self.at(self.now + self.rng.uniform(0.0, 3.0), "sched", "boot", n)

    # -- invariants ----------------------------------------------------------------

    def _link_works(self, src: str, dst: str) -> bool:
        if self.group[src] != self.group[dst]:
            return False
        return any(
            net in self.sc.nets[dst] and (src, dst, net) not in self.loss for net in self.sc.nets[src]
        )

    def _check(self) -> None:
        if not self.dirty:
            # Nothing that runs, nor any link or daemon, changed: only the clock moved.
            for pair, began in self.overlap_since.items():
                c = self.connected_since.get(pair)
                if c is not None and self.now - max(c, began) > OVERLAP_BOUND:
                    self._overlap_too_long(pair, began, c)
            return
        self.dirty = False
        for pair in self.pairs:
            x, y = self.nodes[pair[0]], self.nodes[pair[1]]
            conn = x.up and y.up and self._link_works(x.name, y.name) and self._link_works(y.name, x.name)
            since = self.connected_since.get(pair)
            if conn and since is None:
                self.connected_since[pair] = self.now
            elif not conn and since is not None:
                self.connected_since[pair] = None
            if x.running() and y.running():
                c = self.connected_since.get(pair)
                if pair not in self.overlap_since:
                    self.overlap_since[pair] = self.now
                    if self.sc.fencing:
                        # Consent + fencing: no overlap at all, whatever the network does.
                        self.fail(f"{x.name} and {y.name} both run resources with fencing configured: "
                                  f"{x.name} {x.world}, {y.name} {y.world}")
                    if c is not None or self._members(x, y):
                        # Both took the role on heartbeats that were already stale (an
                        # eligibility change in flight) or on a false failure: not what
                        # fencing is for; the split-brain rule must end it in time.
                        self.races += 1
                        self.log(f"RACE: {x.name} and {y.name} both run resources while they can talk")
                    elif self.sc.fencing:
                        self.fail(f"{x.name} and {y.name} both run resources with fencing configured: "
                                  f"{x.name} {x.world}, {y.name} {y.world}")
                began = self.overlap_since[pair]
                if c is not None and self.now - max(c, began) > OVERLAP_BOUND:
                    self._overlap_too_long(pair, began, c)
            else:
                self.overlap_since.pop(pair, None)

    def _overlap_too_long(self, pair: tuple[str, str], began: float, c: float) -> None:
        x, y = self.nodes[pair[0]], self.nodes[pair[1]]
        self.fail(f"{x.name} and {y.name} both run resources for {self.now - began:.3f}s, connected "
                  f"for {self.now - c:.3f}s (bound {OVERLAP_BOUND:g}s): {x.world} / {y.world}")

    @staticmethod
    def _members(x: Node, y: Node) -> bool:
        return (x.core is not None and y.core is not None and y.name in x.core.membership.alive_peers()
                and x.name in y.core.membership.alive_peers())

    def _check_fenced_before_take(self, node: Node) -> None:
        assert node.core is not None
        alive = set(node.core.membership.alive_peers())
        for p in self.sc.nodes:
            if p == node.name or p in alive:
                continue
            fenced = node.fenced_at.get(p)
            if fenced is None or fenced < node.heard.get(p, -1.0):
                self.fail(f"{node.name} takes over while {p} is lost without having fenced it "
                          f"(last heard {node.heard.get(p)}, fenced {fenced})")

    def _final_check(self) -> None:
        roles = {}
        for n, node in self.nodes.items():
            if not node.up:
                self.fail(f"{n} is not up at the end")
            assert node.engine is not None and node.core is not None
            roles[n] = node.engine.role()
        eligible = [n for n, node in self.nodes.items()
                    if node.core is not None and not node.core.standby and node.engine is not None
                    and not node.engine.blocked()]
        active = [n for n, r in roles.items() if r == "active"]
        want = 1 if eligible else 0
        if len(active) != want:
            self.fail(f"after {SETTLE:g}s of calm: engine roles {roles}, eligible {eligible}: "
                      f"expected {want} active node(s), got {active}")
        for n, node in self.nodes.items():
            if n not in active and node.running():
                self.fail(f"after {SETTLE:g}s of calm {n} ({roles[n]}) still runs {node.world}")


def run_seed(seed: int, verbose: bool = False, out: Callable[[str], None] = print) -> Sim:
    sim = Sim(make_scenario(seed), verbose=verbose, out=out)
    sim.run()
    return sim


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Deterministic simulation of a hafd cluster.")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--count", type=int, default=1, help="how many consecutive seeds")
    ap.add_argument("--verbose", action="store_true", help="print every event")
    args = ap.parse_args(argv)
    races = 0
    for seed in range(args.seed, args.seed + args.count):
        if args.verbose:
            sc = make_scenario(seed)
            print(f"seed {seed}: nodes {sc.priorities} nets {sc.nets} fencing={sc.fencing} halt={sc.halt} "
                  f"tiebreaker={sc.tiebreaker} failback={sc.failback} loss={sc.base_loss} dup={sc.dup} "
                  f"fence_ok={sc.fence_ok_prob} start_fail={sc.start_fail_prob}")
        try:
            races += run_seed(seed, verbose=args.verbose).races
        except InvariantViolation as e:
            print(e)
            return 1
    print(f"{args.count} schedule(s) from seed {args.seed}: all invariants held "
          f"({races} overlap(s) began between nodes that could talk, each ended within {OVERLAP_BOUND:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
