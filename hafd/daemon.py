"""hafd, the daemon: the one place that wires the pure core to the adapters.

Events (heartbeats, operation results, timers, operator commands, a supervised
process dying) go into the cores — `ClusterCore` decides the role, `Engine` the
operations — and the actions they return are carried out through the agents and
adapters; their outcomes go back in.  Nothing here decides policy: to learn why
the node took the role read hafd/core/cluster.py and election.py; why a resource
was started or stopped, hafd/core/engine.py.  This file makes it happen and
writes it down.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import signal
import sys
import time
from typing import Any

import structlog

from hafd import __version__
from hafd.agents.base import Agent, AgentContext, AgentError, Health
from hafd.agents.registry import make_agent
from hafd.core import codec
from hafd.core.cluster import (
    Act,
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
from hafd.core.config import DEFAULT_CONFIG_PATH, Config
from hafd.core.configload import ConfigError, load_config
from hafd.core.engine import Action, Engine, Op, Outcome
from hafd.core.falsefail import expected_false_failovers_per_year
from hafd.core.fingerprint import config_hash
from hafd.core.history import HISTORY_EVENTS, HISTORY_FILE, NOTE_EVENTS, Explainer, event, phase_durations
from hafd.io import memory, sdnotify
from hafd.io.control import ControlServer
from hafd.io.heartbeat import HeartbeatTransport
from hafd.io.historyfile import HistoryFile
from hafd.io.hooks import HookRunner
from hafd.io.keyfile import KeyFileError, load_key
from hafd.io.localaddr import configured_addresses
from hafd.io.runner import run
from hafd.log import configure_logging
from hafd.protocol import RequestError
from hafd.timeline import TimelineRecorder

log = structlog.get_logger("hafd")

# An agent gets this long beyond its own timeout before the daemon gives up on the
# call (agents enforce `timeout` themselves; this is the backstop for a bug).
OP_GRACE = 2.0
STATE_FILE = "cluster.json"
# Goodbyes and forwarded commands are sent this many times (UDP may drop one).
REPEAT = 3
# Membership deadlines are strict ("more than deadtime"): tick a moment after them.
TICK_SLACK = 0.001

_HEALTH = {Health.RUNNING: Outcome.OK, Health.STOPPED: Outcome.STOPPED, Health.FAILED: Outcome.FAILED}


def load(path: str, node: str | None) -> Config:
    """Load and validate, finding the local node from the addresses on this host."""
    candidates: list[str] = []
    try:
        raw = load_config(path)  # a first pass to learn the link addresses
        candidates = [a for n in raw.nodes.values() for a in n.links]
    except ConfigError:
        pass  # the full load below reports every error
    return load_config(path, node=node, local_addresses=configured_addresses(candidates))


class Daemon:
    def __init__(self, config: Config, key: bytes) -> None:
        self.config = config
        self.key = key
        self.decoder = codec.Decoder()
        self.node = config.local_node or next(iter(config.nodes))
        self.engine = Engine(config.resources)
        self.ctx = AgentContext(
            programs=config.programs, state_dir=config.cluster.state_dir, on_unexpected_exit=self._on_unexpected_exit
        )
        self.agents: dict[str, Agent] = {n: make_agent(r, self.ctx) for n, r in config.resources.items()}
        # A changed resource keeps its old agent until it is stopped, so the old
        # address is removed / the old process ended, then the new agent takes over.
        self.next_agents: dict[str, Agent] = {}
        saved = self._read_state()
        self.core = ClusterCore(
            settings_from_config(config, config_hash(config)),
            time.monotonic(),
            epoch=int(saved.get("epoch", 0)),
            was_active=bool(saved.get("was_active", False)),
            standby=bool(saved.get("standby", False)),
            outdated=saved.get("outdated") if isinstance(saved.get("outdated"), str) else None,
        )
        self.guard = codec.ReplayGuard(config.nodes, self.node, hold=config.cluster.deadtime)
        self.boot_id = codec.new_boot_id()
        # One counter for every message; the heartbeat thread takes the numbers (see
        # hafd/io/heartbeat.py), so they leave in order.
        self._seq = itertools.count(1)
        self._hb_body: codec.Heartbeat | None = None
        self._hb_template: codec.Template | None = None
        self.rejected: collections.Counter[str] = collections.Counter()
        self._last_reject_log = 0.0
        self.transport: HeartbeatTransport | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.wakeup = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ready = False
        self.role = "starting"
        self.role_since = time.time()
        self.role_reason = "hafd is starting: probing resources"
        self.timeline = TimelineRecorder()
        self.server: ControlServer | None = None
        # Explaining (history, hooks, metrics): see the "explaining" section below.
        self.history = HistoryFile(os.path.join(config.cluster.state_dir, HISTORY_FILE))
        self.hooks = HookRunner(config.events, config.cluster.name)
        self.explainer = Explainer(self.node, config.cluster.fencing.command if config.cluster.fencing else ())
        self.because = self.role_reason
        self.metrics: Any = None  # hafd.io.metrics.Metrics when `metrics.listen` is set
        self.failovers = 0

    # -- life cycle ------------------------------------------------------------

    async def run(self) -> int:
        cl = self.config.cluster
        os.makedirs(cl.state_dir, mode=0o700, exist_ok=True)
        self.server = ControlServer(cl.control_socket, self.handle_request)
        await self.server.start()
        await self._start_metrics()
        peers = self.config.peers()
        if peers:
            self._publish_heartbeat()
            self.transport = HeartbeatTransport(self.config.nodes[self.node].links, cl.port, [p.links for p in peers],
                                                cl.interval, self._beat, self._on_batch, codec.repeat_key)
            await self.transport.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        background = [asyncio.create_task(self._watchdog(), name="watchdog")]
        if cl.tiebreaker is not None:
            background.append(asyncio.create_task(self._tiebreaker_loop(), name="tiebreaker"))
        log.info("hafd_started", version=__version__, node=self.node, config=self.config.path, pid=os.getpid(),
                 peers=[p.name for p in peers], boot_id=self.boot_id.hex()[:8])
        for w in self.config.warnings:
            log.warning("config_warning", warning=w)
        self._emit("hafd_started", f"hafd {__version__} started on {self.node}", pid=os.getpid())
        await self._load_agent_metadata()
        self.execute(self.engine.start_probes())
        self.timeline.trigger("hafd started", time.monotonic())
        try:
            await self._main_loop()
        finally:
            for t in background:
                t.cancel()
            await self._shutdown()
        return 0 if self.transport is None or self.transport.failure is None else 1

    async def _main_loop(self) -> None:
        due: float | None = None
        while not self.stopping.is_set():
            if self.transport is not None:
                if not self.transport.alive():
                    # Silent now: the peer will take over (and fence us); we must not go on as if heard.
                    log.critical("heartbeat_thread_dead", reason="no heartbeats are sent or read any more; stopping",
                                 error=repr(self.transport.failure))
                    self._stop()
                    break
                self._on_batch()
                now = time.monotonic()
                heard_by = self.core.membership.next_deadline()
                if heard_by is not None and heard_by <= now:
                    # A deadline is still up after what the thread had read: before judging,
                    # have it read the sockets now, so a heartbeat that arrived counts.
                    if not await self.transport.flush(self.config.cluster.interval):
                        log.warning("heartbeat_flush_late", reason="the heartbeat thread did not answer in an interval")
            now = time.monotonic()
            if not self.ready and not self.engine.probing():
                self.ready = True
                sdnotify.notify("READY=1\nSTATUS=" + self._status_line())
                log.info("probing_done", resources={n: s["state"] for n, s in self.engine.snapshot().items()})
                memory.release_free_heap()
            self.apply(self.core.tick(now))
            self.execute(self.engine.tick(now))
            self._engine_changed()
            now = time.monotonic()
            deadlines = [d for d in (self.engine.next_deadline(now), self.core.next_deadline(now)) if d is not None]
            due = None if not deadlines else min(deadlines) + TICK_SLACK
            self._publish_heartbeat()
            self.wakeup.clear()
            # A timer that sets the event, not asyncio.wait: no tasks to create and cancel
            # on every pass (an idle node passes here every deadtime, and it showed in CPU).
            timer = None if due is None else asyncio.get_running_loop().call_at(due, self.wakeup.set)
            await self.wakeup.wait()
            if timer is not None:
                timer.cancel()

    def _stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()

    async def _shutdown(self) -> None:
        sdnotify.notify("STOPPING=1")
        stop_all = self.config.cluster.stop_resources_on_exit
        if stop_all:
            log.info("stopping_resources_on_exit", reason="cluster.stop_resources_on_exit is true")
            self.execute(self.engine.set_target(False, "hafd is shutting down", time.monotonic()))
            limit = time.monotonic() + sum(r.timeout + OP_GRACE for r in self.config.resources.values())
            while not self.engine.all_stopped() and time.monotonic() < limit:
                await self._wait_for_tasks(limit - time.monotonic())
                self._engine_changed()
                self._publish_heartbeat()
        # Let operations in flight finish (each is bounded by its timeout) so no
        # mount or start is cut in half; the next daemon's probe sees a clean state.
        await self._wait_for_tasks(max((r.timeout for r in self.config.resources.values()), default=0) + OP_GRACE)
        if self.transport is not None:
            clean = stop_all and self.engine.all_stopped()
            await self._send_repeated(codec.Leaving(restarting=not clean))
            await self.transport.close()
        if self.server:
            await self.server.close()
        for a in {*self.agents.values(), *self.next_agents.values()}:
            try:
                await a.close()
            except Exception as e:  # noqa: BLE001 - closing must not stop the shutdown
                log.warning("agent_close_failed", resource=a.name, error=str(e))
        await self._close_explaining()
        log.info("hafd_stopped", resources_left_running=not self.engine.all_stopped())

    async def _load_agent_metadata(self) -> None:
        """OCF agents advise their own timeouts in their meta-data: read them before the
        first operation so that even the probe runs with the agent's limit."""
        loaders = [a.load_metadata() for a in self.agents.values() if hasattr(a, "load_metadata")]
        if loaders:
            results = await asyncio.gather(*loaders, return_exceptions=True)
            for r in results:
                if isinstance(r, Exception):
                    log.warning("agent_metadata_failed", error=str(r))

    async def _wait_for_tasks(self, timeout: float) -> None:
        busy = {t for t in self.tasks if not t.get_name().startswith("send")}
        if busy and timeout > 0:
            await asyncio.wait(busy, timeout=timeout)

    async def _watchdog(self) -> None:
        """WATCHDOG=1 from the event loop itself, so a wedged loop gets us restarted."""
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    # -- heartbeats ------------------------------------------------------------

    def _publish_heartbeat(self) -> None:
        """Give the heartbeat thread what to say from now on.  Called after everything
        that can change the core's state (apply, each main-loop pass), so a heartbeat is
        at most one event-loop step behind the decision it reports."""
        hb = self.core.heartbeat()
        if hb != self._hb_body:
            self._hb_template = codec.Template(self.node, self.boot_id, hb)  # one reference swap
            self._hb_body = hb

    def _beat(self) -> bytes:
        """In the heartbeat thread: the current heartbeat, numbered and signed."""
        t = self._hb_template
        assert t is not None
        return t.sign(next(self._seq), time.monotonic(), self.key)

    def _send(self, body: codec.Body) -> None:
        if self.transport is None:
            return
        t = codec.Template(self.node, self.boot_id, body)
        self.transport.send(lambda: t.sign(next(self._seq), time.monotonic(), self.key))

    def _send_heartbeat(self) -> None:
        self._publish_heartbeat()
        if self.transport is not None:
            self.transport.beat_now()

    async def _send_repeated(self, body: codec.Body) -> None:
        for i in range(REPEAT):
            self._send(body)
            if i + 1 < REPEAT:
                await asyncio.sleep(self.config.cluster.interval)

    def _update_transport_mode(self) -> None:
        if self.transport is not None:
            self._publish_heartbeat()
            self.transport.set_immediate(self.core.in_transition())

    def _on_batch(self) -> None:
        """Datagrams the heartbeat thread read, each with its arrival time, oldest first."""
        if self.transport is not None:
            for r in self.transport.take():
                self._on_packet(r.data, r.source, r.link, r.at)

    def _on_packet(self, data: bytes, src: str, local_link: str, now: float) -> None:
        try:
            msg = self.decoder.decode(data, self.key)
            self.guard.admit(msg, src, now)
        except codec.DecodeError as e:
            self.rejected[e.reason.name.lower()] += 1
            if now - self._last_reject_log >= 1.0:  # rate-limited: a flood must not flood the log
                self._last_reject_log = now
                log.warning("packet_rejected", reason=e.reason.name.lower(), detail=e.detail, source=src,
                            link=local_link, total=dict(self.rejected))
            return
        acts = self.core.on_message(msg, src, now)
        if acts:
            self.apply(acts)
            self.wakeup.set()

    async def _check_tiebreaker(self) -> None:
        tb = self.config.cluster.tiebreaker
        assert tb is not None
        started = time.monotonic()
        r = await run([self.config.programs.ping, "-n", "-q", "-c", "1", "-W", f"{tb.timeout:g}", tb.ping],
                      timeout=tb.timeout + 0.5)
        self.apply(self.core.set_tiebreaker(r.ok, time.monotonic(), checked_at=started))
        self.wakeup.set()

    async def _tiebreaker_loop(self) -> None:
        tb = self.config.cluster.tiebreaker
        assert tb is not None
        while True:
            await self._check_tiebreaker()
            await asyncio.sleep(tb.interval)

    # -- carrying out the cluster's decisions -----------------------------------

    def apply(self, acts: list[Act]) -> None:
        now = time.monotonic()
        for a in acts:
            if isinstance(a, Note):
                fields = {k: v for k, v in a.fields.items() if not k.startswith("_")}
                getattr(log, a.level, log.info)(a.event, reason=a.reason, **fields)
                self._on_note(a)
                if a.event in ("peer_lost", "switchover_requested", "split_brain"):
                    self.timeline.trigger(a.reason, now)
                elif a.event == "peer_fenced":
                    self.timeline.phase("fenced", now, peer=a.fields.get("peer"))
            elif isinstance(a, SetTarget):
                if a.active:
                    cause = self.timeline.pending_trigger
                    if cause and cause[0] != "hafd started":
                        self.core.role_reason = f"{a.reason}, after {cause[0]}"
                    self.timeline.begin(now, a.reason)
                self.execute(self.engine.set_target(a.active, a.reason, now))
                self._engine_changed()
            elif isinstance(a, Fence):
                self.timeline.phase("fence_started", now, peer=a.peer)
                self._spawn(self._fence(a.peer, a.reason), f"fence:{a.peer}")
            elif isinstance(a, SendNow):
                self._send_heartbeat()
            elif isinstance(a, SendCommand):
                self._spawn(self._send_repeated(a.command), "send-command")
            elif isinstance(a, Reannounce):
                log.warning("reannounce", reason=a.reason)
                for agent in self.agents.values():
                    self._spawn(agent.announce(), f"announce:{agent.name}")
            elif isinstance(a, Persist):
                self._write_state(a.state)
            elif isinstance(a, CheckTiebreaker):
                log.info("tiebreaker_check", reason=a.reason)
                self._spawn(self._check_tiebreaker(), "tiebreaker-now")
        self._update_transport_mode()

    async def _fence(self, peer: str, reason: str) -> None:
        f = self.config.cluster.fencing
        assert f is not None
        argv = [part.replace("{peer}", peer) for part in f.command]
        log.warning("fencing", peer=peer, reason=reason, command=argv)
        r = await run(argv, timeout=f.timeout)
        detail = f"{argv[0]} exited 0" if r.ok else r.describe()
        self.apply(self.core.fence_done(peer, r.ok, detail, time.monotonic()))
        self.wakeup.set()

    def _spawn(self, coro: Any, name: str) -> None:
        t = asyncio.create_task(coro, name=name)
        self.tasks.add(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task[Any]) -> None:
        self.tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("task_failed", task=t.get_name(), error=repr(t.exception()))

    def _engine_changed(self) -> None:
        role = self.engine.role()
        now = time.monotonic()
        if role != self.role:
            old = self.role
            reason = self.core.role_reason
            if role == "failed":
                reason = "gave up on " + ", ".join(self.engine.blocked()) + " (see last_error)"
            log.info("role_changed", old=self.role, new=role, reason=reason)
            self.role, self.role_since, self.role_reason = role, time.time(), reason
            if role == "active":
                self.timeline.finish(now)
            self._on_role_changed(old, role, reason)
            sdnotify.notify("STATUS=" + self._status_line())
        self.apply(self.core.engine_changed(role, bool(self.engine.blocked()), now))

    def _status_line(self) -> str:
        return f"{self.node} {self.role}: {self.role_reason}"

    # -- carrying out the engine's actions ---------------------------------------

    def execute(self, actions: list[Action]) -> None:
        for a in actions:
            self._spawn(self._run_action(a), f"{a.op.value}:{a.resource}")

    async def _run_action(self, a: Action) -> None:
        agent = self.agents[a.resource]
        spec = agent.resource
        if a.op is not Op.MONITOR:
            log.info("operation_begin", resource=a.resource, op=a.op.value, reason=a.reason)
        t0 = time.monotonic()
        error: str | None = None
        detail: str | None = None
        extra: dict[str, object] | None = None
        limit = agent.timeout_for("monitor" if a.op is Op.PROBE else a.op.value) + OP_GRACE
        try:
            async with asyncio.timeout(limit):
                if a.op is Op.START:
                    await agent.start()
                    outcome = Outcome.OK
                elif a.op is Op.STOP:
                    await agent.stop()
                    outcome = Outcome.OK
                else:
                    st = await agent.monitor()
                    outcome, detail, extra = _HEALTH[st.health], st.detail, dict(st.extra)
                    if outcome is Outcome.FAILED:
                        error = st.detail or "unhealthy"
        except AgentError as e:
            outcome, error = Outcome.FAILED, e.message
        except TimeoutError:
            outcome, error = Outcome.FAILED, f"{a.op.value} timed out after {limit:g}s"
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an agent bug must not kill the daemon
            log.exception("agent_crashed", resource=a.resource, op=a.op.value)
            outcome, error = Outcome.FAILED, f"internal error in {spec.type} agent: {e!r}"
        now = time.monotonic()
        duration = now - t0
        if a.op is not Op.MONITOR or outcome is not Outcome.OK:
            log.info("operation", resource=a.resource, op=a.op.value, outcome=outcome.value,
                     duration=round(duration, 4), **({"error": error} if error else {}))
        self._on_operation(a.resource, a.op.value, outcome, duration, error)
        if a.op is Op.START and outcome is Outcome.OK:
            self.timeline.phase(f"{a.resource} started", now, duration=round(duration, 4))
        if a.op is Op.STOP and outcome is Outcome.OK and a.resource in self.next_agents:
            await self._swap_agent(a.resource)
        self.execute(
            self.engine.op_done(a.resource, a.op, outcome, now, duration=duration, error=error, detail=detail, extra=extra)
        )
        if a.resource not in self.engine.names():
            await self._drop_agent(a.resource)
        self._engine_changed()
        self.wakeup.set()

    async def _swap_agent(self, name: str) -> None:
        old = self.agents[name]
        self.agents[name] = self.next_agents.pop(name)
        await old.close()

    async def _drop_agent(self, name: str) -> None:
        agent = self.agents.pop(name, None)
        if agent is not None:
            await agent.close()

    def _on_unexpected_exit(self, name: str, why: str) -> None:
        log.warning("resource_exited", resource=name, why=why)
        self._emit("resource_failed", f"{name} exited: {why}", resource=name)
        self.execute(self.engine.unexpected_exit(name, why, time.monotonic()))
        self._engine_changed()
        self.wakeup.set()

    # -- operator requests -----------------------------------------------------

    async def handle_request(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        if command == "status":
            return self.status()
        if command == "history":
            return await self._history(args)
        self._on_operator(command, args)
        if command in ("standby", "unstandby"):
            return await self._standby(args.get("node") or self.node, command == "standby")
        if command == "cleanup":
            name = args.get("resource")
            if name is not None and name not in self.engine.names():
                raise RequestError("unknown_resource", f"unknown resource {name!r}", details={"known": list(self.engine.names())})
            log.info("operator_request", command="cleanup", resource=name)
            self.execute(self.engine.cleanup(name, now))
            if name is None:
                self.apply(self.core.clear_split_brain())
            self._engine_changed()
            self.wakeup.set()
            return {"message": f"cleaned up {name or 'all resources'}; failures forgotten"}
        if command == "reload":
            return self.reload()
        if command == "failover":
            return await self._failover(args.get("to"))
        if command == "fence-peer":
            return await self._drbd_fence_peer(args.get("resource") or "drbd", args.get("peer"))
        if command == "unfence-peer":
            res = args.get("resource") or "drbd"
            self.apply(self.core.set_outdated(None, f"DRBD resynced {res} here (after-resync-target)", time.monotonic()))
            return {"message": f"{self.node} may take over again ({res} is in sync)", "exit_code": 0}
        raise RequestError("unknown_command", f"unknown command {command!r}")

    async def _standby(self, node: str, on: bool) -> dict[str, Any]:
        if node not in self.config.nodes:
            raise RequestError("unknown_node", f"unknown node {node!r}", details={"known": list(self.config.nodes)})
        log.info("operator_request", command="standby" if on else "unstandby", node=node)
        self.apply(self.core.set_standby(node, on, time.monotonic()))
        self.wakeup.set()
        word = "standby" if on else "back in service"
        if node == self.node:
            return {"message": f"{node} is {word}", "node": node, "standby": on}
        deadline = time.monotonic() + 10 * self.config.cluster.deadtime + 1
        while time.monotonic() < deadline:
            hb = self.core.membership.heartbeat_of(node)
            if hb is not None and hb.standby == on:
                return {"message": f"{node} is {word}", "node": node, "standby": on}
            await asyncio.sleep(self.config.cluster.interval)
        raise RequestError("invalid_argument", f"asked {node} to go {word}, but it has not confirmed (is it online?)")

    async def _drbd_fence_peer(self, resource: str, peer: str | None) -> dict[str, Any]:
        """DRBD's fence-peer handler: the answer is the core's (ClusterCore.drbd_fence_peer);
        this only names the peer DRBD means and runs the fence command when asked."""
        peers = [p.name for p in self.config.peers()]
        if peer not in peers:
            if peer is not None and peer not in self.config.nodes:
                log.warning("fence_peer_unknown_name", peer=peer, using=peers)
            if len(peers) != 1:
                raise RequestError("unknown_node", f"cannot tell which peer DRBD means ({peer!r}); pass --peer")
            peer = peers[0]
        log.warning("drbd_fence_peer", resource=resource, peer=peer)
        code, message, acts = self.core.drbd_fence_peer(peer, resource)
        self.apply(acts)
        f = self.config.cluster.fencing
        if code is None and f is not None:
            argv = [part.replace("{peer}", peer) for part in f.command]
            r = await run(argv, timeout=f.timeout)
            if r.ok:
                self.core.peer_fenced_outside(peer)
                code, message = 7, f"{peer} fenced ({argv[0]} exited 0)"
            else:
                log.error("drbd_fence_peer_failed", peer=peer, error=r.describe())
        if code is None:
            code = 5
        return {"message": message, "exit_code": code}

    async def _failover(self, target: str | None) -> dict[str, Any]:
        t0 = time.monotonic()
        err, acts = self.core.request_switchover(target, t0)
        if err:
            raise RequestError("invalid_argument", err)
        log.info("operator_request", command="failover", to=target)
        self.apply(acts)
        self.wakeup.set()
        target = self.core.requested_target or target
        limit = t0 + 2 * sum(r.timeout for r in self.config.resources.values()) + 10 * self.config.cluster.deadtime
        while time.monotonic() < limit:
            if target == self.node and self.role == "active":
                break
            hb = self.core.membership.heartbeat_of(target) if target and target != self.node else None
            if hb is not None and hb.role is codec.Role.ACTIVE:
                break
            await asyncio.sleep(self.config.cluster.interval / 2)
        else:
            return {"message": f"switchover to {target} requested; not finished yet, see `hafctl status`", "to": target}
        return {"message": f"{target} is active (switchover took {time.monotonic() - t0:.3f} s)", "to": target,
                "duration": round(time.monotonic() - t0, 4)}

    def reload(self) -> dict[str, Any]:
        try:
            new = load(self.config.path, self.config.local_node)
        except ConfigError as e:
            log.warning("reload_rejected", errors=[str(i) for i in e.issues])
            raise RequestError("invalid_config", str(e), details=[str(i) for i in e.issues]) from None
        old_cl, new_cl = self.config.cluster, new.cluster
        restart_keys = [k for k in ("control_socket", "state_dir", "port", "interval", "deadtime", "key_file")
                        if getattr(new_cl, k) != getattr(old_cl, k)]
        if {n: node.links for n, node in new.nodes.items()} != {n: node.links for n, node in self.config.nodes.items()}:
            restart_keys.append("nodes")
        renew, actions = self.engine.reconfigure(new.resources, time.monotonic())
        self.ctx.programs = new.programs
        for name in renew:
            agent = make_agent(new.resources[name], self.ctx)
            if name in self.agents and self.engine.state(name).value != "stopped":
                self.next_agents[name] = agent
            else:
                self.agents[name] = agent
        s = self.core.s
        self.core.s = type(s)(**{**s.__dict__, "config_hash": config_hash(new), "failback": new_cl.failback,
                                 "priorities": {n: node.priority for n, node in new.nodes.items()} if "nodes" not in restart_keys else s.priorities})
        self.config = new
        self.execute(actions)
        self.wakeup.set()
        log.info("reloaded", changed=renew, needs_restart=restart_keys)
        msg = f"reloaded {new.path}: " + (f"restarting {', '.join(renew)}" if renew else "no resource changed")
        if restart_keys:
            msg += f"; {', '.join(restart_keys)} take effect at the next daemon restart"
        return {"message": msg, "changed": renew, "needs_restart": restart_keys, "warnings": list(new.warnings)}

    def status(self) -> dict[str, Any]:
        self._on_batch()  # heartbeats that have arrived count, even if not yet handled
        mono, wall = time.monotonic(), time.time()
        resources = self.engine.snapshot()
        for r in resources.values():
            op = r.get("last_op")
            if isinstance(op, dict):
                op["at"] = round(wall - (mono - float(op["at"])), 3)
        cl = self.core.status(mono)
        nodes = cl["nodes"]
        nodes[self.node]["role"] = self.role
        active = self.node if self.role in ("active", "starting", "failed") and self.core.target_active else None
        if active is None:
            for name, n in nodes.items():
                if not n["local"] and n.get("role") in ("active", "starting"):
                    active = name
        warnings = list(self.config.warnings)
        if self.core.outdated:
            warnings.append(f"{self.node}'s {self.core.outdated} data is outdated (DRBD fence-peer): it cannot take over "
                            "until DRBD resyncs it (after-resync-target runs `hafctl unfence-peer`)")
        if self.core.standby:
            warnings.append(f"{self.node} is in standby: it runs nothing until `hafctl unstandby`")
        if cl["split_brain"]:
            warnings.append("SPLIT BRAIN was detected: " + cl["split_brain"]["reason"] + " (clear with `hafctl cleanup`)")
        for name, n in nodes.items():
            if n.get("config_match") is False:
                warnings.append(f"{name} runs a different configuration: it cannot take over until they agree")
            f = n.get("fencing")
            if f and f["state"] in ("failed", "halted"):
                warnings.append(f"fencing {name} {f['state']}: {f['detail']}")
        if self.config.peers() and self.config.cluster.fencing is None and self.config.cluster.tiebreaker is None:
            warnings.append("no fencing and no tiebreaker: if only hafd dies or only the HA links fail, both nodes may "
                            "serve until the cluster heals")
        drbd_sb = [n for n, r in resources.items() if isinstance(r.get("extra"), dict) and r["extra"].get("split_brain")]
        if drbd_sb:
            warnings.append(f"DRBD reports a split brain (StandAlone) on {', '.join(drbd_sb)}: resolve it by hand")
        cl_ = self.config.cluster
        return {
            "version": __version__,
            "node": self.node,
            "cluster": cl_.name,
            "role": self.role,
            "active_node": active,
            "since": round(self.role_since, 3),
            "reason": self.role_reason,
            "decision": cl["decision"],
            "epoch": cl["epoch"],
            "nodes": nodes,
            "resources": resources,
            "split_brain": cl["split_brain"],
            "rejected_packets": dict(self.rejected),
            "warnings": warnings,
            "last_failover": self.timeline.as_json(),
            "because": self.because,
            "hooks": self.hooks.status(),
            "timings": {"interval": cl_.interval, "deadtime": cl_.deadtime,
                        "receive": "immediate" if self.transport is not None and self.transport.immediate else "batched"},
        }

    # -- explaining: history, event hooks, metrics ---------------------------------

    def _emit(self, kind: str, reason: str, **fields: Any) -> None:
        """One event to the history (transitions only) and to the hooks that want it."""
        try:
            ev = event(kind, time.time(), self.node, reason, **fields)
            if kind in HISTORY_EVENTS:
                self.history.append(ev)
            self.hooks.emit(ev)
        except Exception:  # noqa: BLE001 - explaining must never break what it explains
            log.exception("history_write_failed", kind=kind)

    def _on_note(self, note: Note) -> None:
        self.explainer.note(note.event, note.reason, note.fields)
        kind = NOTE_EVENTS.get(note.event)
        if kind is not None:
            self._emit(kind, note.reason, peer=note.fields.get("peer"),
                       link=getattr(note.fields.get("_event"), "link", None))

    def _on_role_changed(self, old: str, new: str, reason: str) -> None:
        if old == "starting" and new == "probing":
            return  # every start: `hafd_started` says it
        because, by = self.explainer.role_changed(old, new, reason)
        self.because = because
        extra: dict[str, Any] = {}
        last = self.timeline.last
        if new == "active" and last is not None and last.finished:
            phases = phase_durations(last.phases)
            extra = {"trigger": last.trigger, "phases": phases, "duration": phases[-1]["at"] if phases else None}
            if last.trigger != "hafd started":
                self.failovers += 1
        self._emit("role_changed", reason, **{"from": old, "to": new, "because": because, "by": by}, **extra)

    def _on_operation(self, resource: str, op: str, outcome: Outcome, duration: float, error: str | None) -> None:
        if self.metrics is not None:
            self.metrics.observe_operation(resource, op, outcome.value, duration)
        if outcome is Outcome.FAILED:
            self._emit("resource_failed", f"{op} of {resource} failed: {error}", resource=resource, op=op,
                       error=error, duration=round(duration, 4))

    def _on_operator(self, command: str, args: dict[str, Any]) -> None:
        if command not in ("standby", "unstandby", "failover", "cleanup", "reload"):
            return
        if args.get("node") not in (None, *self.config.nodes) or args.get("to") not in (None, *self.config.nodes):
            return  # refused below: not an event
        if args.get("resource") not in (None, *self.engine.names()):
            return
        what = " ".join([command, *(f"{k}={v}" for k, v in args.items())])
        self._emit("operator", f"the operator requested {what}", command=command,
                   target=args.get("node") or args.get("to"), resource=args.get("resource"))

    async def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        raw = args.get("limit", "50")
        if not raw.isdigit():
            raise RequestError("invalid_argument", f"history: limit must be a whole number, got {raw!r}")
        events = await asyncio.to_thread(self.history.read, int(raw))
        return {"events": events, "file": self.history.path, "keep": self.history.keep}

    def _metrics_extra(self) -> dict[str, Any]:
        last = self.timeline.last
        active = [p["at"] for p in (last.phases if last is not None else []) if p.get("name") == "active"]
        return {"failovers": self.failovers, "hooks": self.hooks.status(),
                "last_failover_seconds": active[-1] if active and last and last.trigger != "hafd started" else None}

    async def _start_metrics(self) -> None:
        m = self.config.metrics
        if m is None:
            return
        from hafd.io.metrics import Metrics  # prometheus_client only when enabled: it costs RSS

        self.metrics = Metrics(m.host, m.port, self.status, self._metrics_extra)
        try:
            await self.metrics.start()
        except OSError as e:  # a taken port must not stop failover; say so loudly
            log.error("metrics_listen_failed", address=f"{m.host}:{m.port}", error=str(e))
            self.metrics = None

    async def _close_explaining(self) -> None:
        if self.metrics is not None:
            await self.metrics.close()
        await self.hooks.close()
        await self.history.flush()

    # -- persisted state -------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.config.cluster.state_dir, STATE_FILE)) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict[str, Any]) -> None:
        path = os.path.join(self.config.cluster.state_dir, STATE_FILE)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            log.error("state_write_failed", path=path, error=str(e))


def check_config(path: str, node: str | None) -> int:
    try:
        cfg = load(path, node)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{path}: OK (local node {cfg.local_node}, {len(cfg.nodes)} nodes, {len(cfg.resources)} resources)")
    cl = cfg.cluster
    if len(cfg.nodes) > 1:
        links = min(len(n.links) for n in cfg.nodes.values())
        rate = expected_false_failovers_per_year(cl.interval, cl.deadtime, 0.2, links=links)
        print(f"timings: heartbeat every {cl.interval:g}s, peer lost after {cl.deadtime:g}s on {links} link(s): "
              f"expected false failovers at a sustained 20% loss on every link: {rate:.3g} a year")
        if rate >= 1.0:
            print(f"warning: {rate:.3g} false failovers a year at 20% loss is high; raise deadtime or add a link")
    for w in cfg.warnings:
        print(f"warning: {w}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hafd", description="hafd: high-availability failover daemon")
    p.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="configuration file (default %(default)s)")
    p.add_argument("--node", help="this node's name (default: the node whose link address is on this host)")
    p.add_argument(
        "--check-config", nargs="?", const=True, default=None, metavar="PATH", help="validate the configuration and exit"
    )
    p.add_argument("--log-format", choices=("auto", "console", "json"), default="auto")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.add_argument("--version", action="version", version=f"hafd {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    if args.check_config is not None:
        return check_config(args.config if args.check_config is True else args.check_config, args.node)
    try:
        config = load(args.config, args.node)
    except ConfigError as e:
        log.error("config_invalid", errors=[str(i) for i in e.issues])
        print(e, file=sys.stderr)
        return 1
    key = b""
    if config.peers():
        try:
            key = load_key(config.cluster.key_file)
        except KeyFileError as e:
            log.error("key_invalid", error=str(e))
            print(f"hafd: {e}", file=sys.stderr)
            return 1
    try:
        return asyncio.run(Daemon(config, key).run())
    except RuntimeError as e:  # e.g. another hafd owns the control socket
        log.error("startup_failed", error=str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
