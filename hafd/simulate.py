"""`hafctl simulate`: what the cluster would do after some events, and why, without touching anything.

The answer comes from the daemon's own pure cores: one `ClusterCore` and one `Engine`
per node, driven the way hafd/daemon.py drives them (heartbeats every interval on every
link through `ReplayGuard.admit` and `on_message`, `tick` a hair after each deadline,
engine actions carried out and fed back with `op_done`, `engine_changed` after every
engine change).  Only the outside world is simulated, deterministically: a virtual clock,
no loss, no delay, operations and fences that succeed at once (or fail where an event
says so), tiebreaker checks every `tiebreaker.interval`.  So the decisions shown are the
ones the daemon would take; only the timing of I/O is idealised.

Events (each applied once the cluster has settled after the previous one):
    node-lost NODE               the machine dies (power, kernel): heartbeats stop, nothing runs there
    node-back NODE               it boots again and its daemon starts
    resource-failed RES [NODE] [xN]
                                 the next N monitors of RES on NODE (default: where it runs) find it
                                 failed; each restart succeeds until the next monitor
    link-down NODE ADDRESS       NODE's HA link ADDRESS carries nothing (both directions)
    link-up NODE ADDRESS         it works again
    standby NODE / unstandby NODE
    failover [NODE]              `hafctl failover [--to NODE]`, issued on the active node
    fence-fails NODE             from now on, fencing NODE fails
    tiebreaker-lost NODE         NODE can no longer reach the tiebreaker (tiebreaker-back NODE: again)

The starting state is a cold start of the configuration (every node up, the election's
winner active, everything started) or, with a daemon's `status` answer, that daemon's
view: who is active, which nodes are lost or in standby, which links are down, and the
local resources' states and failure counts.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hafd.core.config import Config
from hafd.simworld import SimulateError, Step, World

__all__ = ["Event", "EventResult", "SimulateError", "Simulation", "parse_events", "simulate", "summary"]

SETTLE_HORIZON = 60.0  # virtual seconds a start-up may take before we call it stuck
EVENT_HORIZON = 10.0  # virtual seconds after an event (plus start-up wait, monitors) before "not settled"

ONE_NODE = ("node-lost", "node-back", "standby", "unstandby", "fence-fails", "tiebreaker-lost", "tiebreaker-back")
KINDS = (*ONE_NODE, "resource-failed", "link-down", "link-up", "failover")
SYNTAX = (
    "events: node-lost NODE | node-back NODE | resource-failed RESOURCE [NODE] [xN] | link-down NODE ADDRESS | "
    "link-up NODE ADDRESS | standby NODE | unstandby NODE | failover [NODE] | fence-fails NODE | "
    "tiebreaker-lost NODE | tiebreaker-back NODE"
)


@dataclass(frozen=True)
class Event:
    kind: str
    node: str | None = None
    resource: str | None = None
    address: str | None = None
    count: int = 1
    text: str = ""

    def __str__(self) -> str:
        return self.text or self.kind


def parse_events(tokens: Sequence[str], cfg: Config) -> list[Event]:
    """Words -> events, checked against the configuration (names, addresses, features)."""
    nodes, resources = list(cfg.nodes), list(cfg.resources)
    out: list[Event] = []
    i = 0

    def need_node(kind: str, j: int) -> str:
        if j >= len(tokens) or tokens[j] in KINDS:
            raise SimulateError(f"{kind} needs a node name (one of {', '.join(nodes)})")
        if tokens[j] not in cfg.nodes:
            raise SimulateError(f"{kind}: unknown node {tokens[j]!r} (known: {', '.join(nodes)})")
        return tokens[j]

    while i < len(tokens):
        kind = tokens[i]
        if kind not in KINDS:
            raise SimulateError(f"unknown event {kind!r}; {SYNTAX}")
        start = i
        if kind in ONE_NODE:
            node = need_node(kind, i + 1)
            i += 2
            if kind == "fence-fails" and cfg.cluster.fencing is None:
                raise SimulateError("fence-fails: no fencing is configured (cluster.fencing), so nothing is fenced")
            if kind.startswith("tiebreaker") and cfg.cluster.tiebreaker is None:
                raise SimulateError(f"{kind}: no tiebreaker is configured (cluster.tiebreaker)")
            ev = Event(kind, node=node)
        elif kind in ("link-down", "link-up"):
            node = need_node(kind, i + 1)
            if i + 2 >= len(tokens):
                raise SimulateError(f"{kind} {node} needs one of its link addresses ({', '.join(cfg.nodes[node].links)})")
            addr = tokens[i + 2]
            if addr not in cfg.nodes[node].links:
                raise SimulateError(f"{kind}: {addr} is not a link of {node} (its links: {', '.join(cfg.nodes[node].links)})")
            ev = Event(kind, node=node, address=addr)
            i += 3
        elif kind == "failover":
            node = tokens[i + 1] if i + 1 < len(tokens) and tokens[i + 1] in cfg.nodes else None
            ev = Event(kind, node=node)
            i += 2 if node else 1
        else:  # resource-failed RESOURCE [NODE] [xN]
            if i + 1 >= len(tokens) or tokens[i + 1] not in cfg.resources:
                got = f" {tokens[i + 1]!r}" if i + 1 < len(tokens) else ""
                raise SimulateError(f"resource-failed needs a resource name{got and ', not' + got} "
                                    f"(one of {', '.join(resources)})")
            res, node, count, i = tokens[i + 1], None, 1, i + 2
            if i < len(tokens) and tokens[i] in cfg.nodes:
                node, i = tokens[i], i + 1
            if i < len(tokens) and (m := re.fullmatch(r"[x×](\d+)", tokens[i])):
                count, i = int(m.group(1)), i + 1
                if not 1 <= count <= 100:
                    raise SimulateError(f"resource-failed {res}: x{count}: the count must be 1..100")
            ev = Event(kind, node=node, resource=res, count=count)
        out.append(dataclasses.replace(ev, text=" ".join(tokens[start:i])))
    if not out:
        raise SimulateError(f"no event given; {SYNTAX}")
    return out


@dataclass
class EventResult:
    event: str
    t0: float
    steps: list[Step]
    settled: bool
    waiting: list[str]  # when not settled: what each node still waits for
    state: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"event": self.event, "steps": [s.as_json(self.t0) for s in self.steps], "settled": self.settled,
                "waiting": self.waiting, "result": self.state, "summary": summary(self.state)}


@dataclass
class Simulation:
    source: str
    start: dict[str, Any]
    notes: list[str]
    results: list[EventResult]

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "start": self.start, "start_summary": summary(self.start), "notes": self.notes,
                "events": [r.as_json() for r in self.results],
                "final": self.results[-1].state if self.results else self.start}

    def render(self) -> str:
        lines = [f"starting state ({self.source}): {summary(self.start)}"]
        lines += [f"note: {n}" for n in self.notes]
        for r in self.results:
            lines += ["", f"after {r.event}:"]
            width = max([len(f"{s.at - r.t0:+.3f}") for s in r.steps] or [6])
            for s in r.steps:
                who = f"{s.node}: " if s.node else ""
                lines.append(f"  {s.at - r.t0:+.3f}s".rjust(width + 3) + f"  {who}{s.text}")
                if s.repeats:
                    lines.append(" " * (width + 5) + f"  (repeated {s.repeats} more time{'s' * (s.repeats > 1)}, "
                                 f"last at {s.last_at - r.t0:+.3f}s)")
            if not r.steps:
                lines.append("  nothing happens")
            if not r.settled:
                lines.append("  not settled by the end of the simulation: " + "; ".join(r.waiting))
            lines.append(f"  result: {summary(r.state)}")
        return "\n".join(lines)


def summary(state: Mapping[str, Any]) -> str:
    """One sentence: who is active and runs what, and what the others are doing."""
    parts: list[str] = []
    nodes = state["nodes"]
    for n, v in nodes.items():
        if not v["up"]:
            parts.append(f"{n} down" + (" (fenced)" if v.get("fenced") else ""))
            continue
        word = v["role"] + (" (standby)" if v["standby"] and v["role"] != "standby" else "")
        word = "in standby" if v["standby"] and v["role"] == "standby" else word
        text = f"{n} {word}"
        if v["running"]:
            text += ", running " + ", ".join(v["running"])
        if v["blocked"]:
            text += f" (gave up on {', '.join(v['blocked'])})"
        parts.append(text)
    active = [n for n, v in nodes.items() if v["role"] == "active"]
    order = active + [n for n in nodes if n not in active]
    ranked = [p for n in order for p in parts if p.startswith(n + " ")]
    lead = "" if active else "no node is active; "
    return lead + "; ".join(ranked)


# -- events ------------------------------------------------------------------------------


def _where_runs(w: World, res: str) -> str | None:
    for n, node in w.nodes.items():
        if node.up and node.world[res] == "started":
            return n
    return None


def _active(w: World) -> str | None:
    for n, node in w.nodes.items():
        if node.up and node.engine is not None and node.engine.role() in ("active", "failed") and node.core is not None \
                and node.core.target_active:
            return n
    return None


def _apply(w: World, ev: Event) -> None:
    """Make the event happen now (node-lost: right after the node's next heartbeat)."""
    n = ev.node
    node = w.nodes[n] if n else None
    if ev.kind == "node-lost":
        assert node is not None and n is not None
        if not node.up:
            w.record(n, "refused", f"{n} is already down: nothing changes")
            return
        t = w.next_heartbeat(n)
        w.run(t, lambda: False)  # its last heartbeat goes out, then it dies
        w.now = t
        w.t0 = t
        w.power_off(n, "is lost (node-lost): it stops sending heartbeats and nothing runs there any more")
    elif ev.kind == "node-back":
        assert node is not None and n is not None
        if node.up:
            w.record(n, "refused", f"{n} is already up: nothing changes")
            return
        w.boot(n, world=dict.fromkeys(node.world, "stopped"))
    elif ev.kind == "resource-failed":
        res = ev.resource
        assert res is not None
        where = n or _where_runs(w, res)
        if where is None or not w.nodes[where].up or w.nodes[where].world[res] != "started":
            w.record(where, "refused", f"{res} does not run {'on ' + where if where else 'anywhere'}: nothing fails")
            return
        w.nodes[where].fail_next[res] = [ev.count, ev.count]
        w.armed = True  # t0 is when the first monitor finds it failed
    elif ev.kind in ("link-down", "link-up"):
        assert n is not None and ev.address is not None
        k = w.cfg.nodes[n].links.index(ev.address)
        pairs = {(n, p, k) for p in w.nodes if p != n} | {(p, n, k) for p in w.nodes if p != n}
        if ev.kind == "link-down":
            w.cut |= pairs
            w.record(n, "link", f"its link {ev.address} goes down: nothing passes on it in either direction")
        else:
            w.cut -= pairs
            w.record(n, "link", f"its link {ev.address} works again")
    elif ev.kind in ("standby", "unstandby"):
        assert node is not None and n is not None
        if not node.up or node.core is None:
            w.record(n, "refused", f"hafctl {ev.kind} {n}: {n} is down")
            return
        w._handle(node, node.core.set_standby(n, ev.kind == "standby", w.now))
    elif ev.kind == "failover":
        on = _active(w) or next((x for x, nd in w.nodes.items() if nd.up), None)
        if on is None:
            w.record(None, "refused", "hafctl failover: no node is up")
            return
        core = w.nodes[on].core
        assert core is not None
        err, acts = core.request_switchover(ev.node, w.now)
        if err:
            w.record(on, "refused", f"hafctl failover{' --to ' + ev.node if ev.node else ''} is refused: {err}")
        w._handle(w.nodes[on], acts)
    elif ev.kind == "fence-fails":
        assert node is not None and n is not None
        node.fence_fails = True
        w.record(n, "fence_fails", f"from now on, fencing {n} fails")
    elif ev.kind in ("tiebreaker-lost", "tiebreaker-back"):
        assert node is not None and n is not None and w.cfg.cluster.tiebreaker is not None
        node.tiebreaker_ok = ev.kind == "tiebreaker-back"
        what = "can reach the tiebreaker again" if node.tiebreaker_ok else "can no longer reach the tiebreaker"
        w.record(n, "tiebreaker", f"{what} ({w.cfg.cluster.tiebreaker.ping}); its next check finds out")


def state_of(w: World) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    fenced = {p for node in w.nodes.values() if node.up and node.core for p in node.core.fenced}
    for n, node in w.nodes.items():
        if not node.up or node.engine is None or node.core is None:
            nodes[n] = {"up": False, "role": "down", "standby": bool(node.persisted.get("standby")), "running": [],
                        "failures": {}, "blocked": [], "fenced": n in fenced, "decision": None}
            continue
        snap = node.engine.snapshot()
        nodes[n] = {
            "up": True,
            "role": node.engine.role(),
            "standby": node.core.standby,
            "running": [r for r in node.engine.graph.order if node.world[r] == "started"],
            "failures": {r: v["failures"] for r, v in snap.items() if v["failures"]},
            "blocked": node.engine.blocked(),
            "fenced": False,
            "decision": node.core.decision.reason,
        }
    return {"active_node": _active(w), "nodes": nodes}


# -- starting states -----------------------------------------------------------------------


def _cold_start(w: World) -> None:
    for n in w.nodes:
        w.boot(n)
    if not w.run(SETTLE_HORIZON, w.quiet_and_settled):
        raise SimulateError("the cold start did not settle: " + "; ".join(w.waiting()))


def _live_start(w: World, status: Mapping[str, Any]) -> list[str]:
    """Rebuild a daemon's view (its `status` answer) in the simulated world; returns caveats.

    The node the daemon reports active boots first, alone: it takes the role as the only
    visible node, whatever the priorities say, and starts every resource afresh (so they
    are monitored, as in a daemon that started them; resources adopted by a probe are not
    monitored by the engine).  Then every other node it sees boots and finds it holding
    the role.  The local failure counts are reached the engine's own way: that many
    monitors find the resource failed.
    """
    notes: list[str] = []
    try:
        local = str(status["node"])
        snodes: Mapping[str, Any] = status["nodes"]
        sres: Mapping[str, Any] = status["resources"]
    except (KeyError, TypeError) as e:
        raise SimulateError(f"the daemon's status lacks {e}: is it an older hafd?") from None
    if set(snodes) != set(w.cfg.nodes) or set(sres) != set(w.cfg.resources):
        raise SimulateError(
            f"the configuration ({w.cfg.path}) does not describe the running cluster: it has nodes "
            f"{sorted(w.cfg.nodes)} and resources {sorted(w.cfg.resources)}, the daemon reports nodes "
            f"{sorted(snodes)} and resources {sorted(sres)}; pass the daemon's configuration with --config")
    down = {n for n, v in snodes.items() if n != local and v.get("state") in ("lost", "fenced", "unknown")}
    standby = {n for n, v in snodes.items() if v.get("state") == "standby"}
    active = status.get("active_node")
    for p, v in snodes.items():
        if p == local or p in down:
            continue
        for addr, link in (v.get("links") or {}).items():
            if isinstance(link, Mapping) and link.get("state") == "down" and addr in w.cfg.nodes[p].links:
                k = w.cfg.nodes[p].links.index(addr)
                w.cut |= {(local, p, k), (p, local, k)}
    first = [active] if isinstance(active, str) and active in w.nodes and active not in down else []
    for group in (first, [n for n in w.nodes if n not in down and n not in first]):
        for n in group:
            w.boot(n, standby=n in standby)
        if group and not w.run(w.now + SETTLE_HORIZON, w.quiet_and_settled):
            raise SimulateError("the live state could not be rebuilt: " + "; ".join(w.waiting()))
    for r, v in sres.items():
        k = int(v.get("failures") or 0)
        if k and w.nodes[local].up and w.nodes[local].world[r] == "started":
            w.nodes[local].fail_next[r] = [k, k]
        elif k:
            notes.append(f"{r}'s {k} failure(s) on {local} are not carried over: it does not run there")
        if v.get("blocked") and not k:
            notes.append(f"{r} is given up on {local} after a failed stop: the simulation starts it as stopped")
    horizon = w.now + SETTLE_HORIZON + sum(w.cfg.resources[r].monitor_interval * (f[0] + 1)
                                           for r, f in w.nodes[local].fail_next.items())
    if not w.run(horizon, w.quiet_and_settled):
        raise SimulateError("the live state could not be rebuilt: " + "; ".join(w.waiting()))
    for n in w.nodes:
        w.nodes[n].fail_next.clear()
    st = state_of(w)
    if st["active_node"] != active:
        notes.append(f"the daemon reports {active or 'no node'} active, but from that state the cores settle with "
                     f"{st['active_node'] or 'no node'} active (the simulation starts from the latter)")
    if len(w.nodes) > 1:
        notes.append(f"the status shows only {local}'s resources: the peers' failure counts are taken as 0")
    if w.cfg.cluster.tiebreaker is not None:
        notes.append("every node is assumed to reach the tiebreaker (the status does not say)")
    return notes


def simulate(cfg: Config, events: Sequence[Event], status: Mapping[str, Any] | None = None) -> Simulation:
    """Run `events` from a cold start of `cfg` or, with `status`, from that daemon's live state."""
    w = World(cfg)
    if status is None:
        _cold_start(w)
        source, notes = f"{cfg.path}, a cold start", []
    else:
        notes = _live_start(w, status)
        source = f"the live state of {status.get('node')}, with {cfg.path}"
    start = state_of(w)
    results: list[EventResult] = []
    deadtime = cfg.cluster.deadtime
    for ev in events:
        w.steps, w.t0 = [], w.now
        w.last_activity = w.now
        _apply(w, ev)
        extra = 0.0
        if ev.kind == "resource-failed" and ev.resource:
            extra = 2 * ev.count * (cfg.resources[ev.resource].monitor_interval + 1.0)
        horizon = w.now + max(EVENT_HORIZON, 20 * deadtime) + cfg.cluster.startup_wait + extra
        settled = w.run(horizon, w.quiet_and_settled)
        w.armed = False
        results.append(EventResult(str(ev), w.t0, w.steps, settled, [] if settled else w.waiting(), state_of(w)))
    w.steps = None
    return Simulation(source, start, notes, results)
