"""hafd, the daemon: the one place that wires the pure core to the adapters.

Events (operation results, timers, operator commands, a supervised process dying)
go into the engine; the actions it returns are carried out through the agents, and
their outcomes go back in.  Nothing here decides policy: if you are looking for
why a resource was started or stopped, read hafd/core/engine.py; this file only
makes it happen and writes it down.
"""

from __future__ import annotations

import argparse
import asyncio
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
from hafd.core.config import DEFAULT_CONFIG_PATH, Config
from hafd.core.configload import ConfigError, load_config
from hafd.core.engine import Action, Engine, Op, Outcome
from hafd.io import sdnotify
from hafd.io.control import ControlServer
from hafd.io.localaddr import configured_addresses
from hafd.log import configure_logging
from hafd.protocol import RequestError

log = structlog.get_logger("hafd")

# An agent gets this long beyond its own timeout before the daemon gives up on the
# call (agents enforce `timeout` themselves; this is the backstop for a bug).
OP_GRACE = 2.0
STANDBY_FILE = "standby"

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
    def __init__(self, config: Config) -> None:
        self.config = config
        self.node = config.local_node or next(iter(config.nodes))
        self.engine = Engine(config.resources)
        self.ctx = AgentContext(
            programs=config.programs,
            state_dir=config.cluster.state_dir,
            on_unexpected_exit=self._on_unexpected_exit,
        )
        self.agents: dict[str, Agent] = {n: make_agent(r, self.ctx) for n, r in config.resources.items()}
        # A changed resource keeps its old agent until it is stopped, so the old
        # address is removed / the old process ended, then the new agent takes over.
        self.next_agents: dict[str, Agent] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.wakeup = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ready = False
        self.role = "starting"
        self.role_since = time.time()
        self.role_reason = "hafd is starting: probing resources"
        self.standby = self._read_standby()
        self.server: ControlServer | None = None

    # -- life cycle ------------------------------------------------------------

    async def run(self) -> int:
        cl = self.config.cluster
        os.makedirs(cl.state_dir, mode=0o700, exist_ok=True)
        if self.config.peers():
            log.error(
                "unsupported_config",
                reason="this build runs single-node only: heartbeats and election between nodes are not wired yet",
                peers=[p.name for p in self.config.peers()],
            )
            return 2
        self.server = ControlServer(cl.control_socket, self.handle_request)
        await self.server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        watchdog = asyncio.create_task(self._watchdog())
        log.info("hafd_started", version=__version__, node=self.node, config=self.config.path, pid=os.getpid())
        for w in self.config.warnings:
            log.warning("config_warning", warning=w)
        self.execute(self.engine.start_probes())
        try:
            await self._main_loop()
        finally:
            watchdog.cancel()
            await self._shutdown()
        return 0

    async def _main_loop(self) -> None:
        while not self.stopping.is_set():
            if not self.ready and not self.engine.probing():
                self.ready = True
                self._decide_target("probing done")
                sdnotify.notify("READY=1\nSTATUS=" + self._status_line())
                log.info("ready", role=self.engine.role())
            now = time.monotonic()
            self.execute(self.engine.tick(now))
            self._update_role()
            deadline = self.engine.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.wakeup.clear()
            waiters = [asyncio.ensure_future(self.wakeup.wait()), asyncio.ensure_future(self.stopping.wait())]
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def _shutdown(self) -> None:
        sdnotify.notify("STOPPING=1")
        if self.config.cluster.stop_resources_on_exit:
            log.info("stopping_resources_on_exit", reason="cluster.stop_resources_on_exit is true")
            self.execute(self.engine.set_target(False, "hafd is shutting down", time.monotonic()))
            limit = time.monotonic() + sum(r.timeout + OP_GRACE for r in self.config.resources.values())
            while not self.engine.all_stopped() and time.monotonic() < limit:
                await self._wait_for_tasks(limit - time.monotonic())
        # Let operations in flight finish (each is bounded by its timeout) so no
        # mount or start is cut in half; the next daemon's probe sees a clean state.
        await self._wait_for_tasks(max((r.timeout for r in self.config.resources.values()), default=0) + OP_GRACE)
        if self.server:
            await self.server.close()
        for a in {*self.agents.values(), *self.next_agents.values()}:
            try:
                await a.close()
            except Exception as e:  # noqa: BLE001 - closing must not stop the shutdown
                log.warning("agent_close_failed", resource=a.name, error=str(e))
        log.info("hafd_stopped", resources_left_running=not self.config.cluster.stop_resources_on_exit)

    async def _wait_for_tasks(self, timeout: float) -> None:
        if self.tasks and timeout > 0:
            await asyncio.wait(set(self.tasks), timeout=timeout)

    async def _watchdog(self) -> None:
        """WATCHDOG=1 from the event loop itself, so a wedged loop gets us restarted."""
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    # -- decisions -------------------------------------------------------------

    def _decide_target(self, why: str) -> None:
        """Single-node role: active unless the operator put the node in standby."""
        if self.standby:
            reason = f"{self.node} is in standby (hafctl standby)"
        else:
            reason = f"{self.node} is the only configured node"
        active = not self.standby
        log.info("target_decided", active=active, reason=reason, trigger=why)
        self.execute(self.engine.set_target(active, reason, time.monotonic()))
        self._update_role()

    def _update_role(self) -> None:
        role = self.engine.role()
        if role == self.role:
            return
        if role == "failed":
            reason = "gave up on " + ", ".join(self.engine.blocked()) + " (see last_error)"
        else:
            reason = self.engine.target_reason
        log.info("role_changed", old=self.role, new=role, reason=reason)
        self.role, self.role_since, self.role_reason = role, time.time(), reason
        sdnotify.notify("STATUS=" + self._status_line())

    def _status_line(self) -> str:
        return f"{self.node} {self.role}: {self.role_reason}"

    # -- carrying out actions --------------------------------------------------

    def execute(self, actions: list[Action]) -> None:
        for a in actions:
            t = asyncio.create_task(self._run_action(a), name=f"{a.op.value}:{a.resource}")
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def _run_action(self, a: Action) -> None:
        agent = self.agents[a.resource]
        spec = agent.resource
        if a.op is not Op.MONITOR:
            log.info("operation_begin", resource=a.resource, op=a.op.value, reason=a.reason)
        t0 = time.monotonic()
        error: str | None = None
        detail: str | None = None
        extra: dict[str, object] | None = None
        try:
            async with asyncio.timeout(spec.timeout + OP_GRACE):
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
            outcome, error = Outcome.FAILED, f"{a.op.value} timed out after {spec.timeout + OP_GRACE:g}s"
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an agent bug must not kill the daemon
            log.exception("agent_crashed", resource=a.resource, op=a.op.value)
            outcome, error = Outcome.FAILED, f"internal error in {spec.type} agent: {e!r}"
        now = time.monotonic()
        duration = now - t0
        if a.op is not Op.MONITOR or outcome is not Outcome.OK:
            log.info(
                "operation",
                resource=a.resource,
                op=a.op.value,
                outcome=outcome.value,
                duration=round(duration, 4),
                **({"error": error} if error else {}),
            )
        if a.op is Op.STOP and outcome is Outcome.OK and a.resource in self.next_agents:
            await self._swap_agent(a.resource)
        self.execute(
            self.engine.op_done(a.resource, a.op, outcome, now, duration=duration, error=error, detail=detail, extra=extra)
        )
        if a.resource not in self.engine.names():
            await self._drop_agent(a.resource)
        self._update_role()
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
        self.execute(self.engine.unexpected_exit(name, why, time.monotonic()))
        self._update_role()
        self.wakeup.set()

    # -- operator requests -----------------------------------------------------

    async def handle_request(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        if command == "status":
            return self.status()
        if command in ("standby", "unstandby"):
            node = args.get("node") or self.node
            if node != self.node:
                raise RequestError("unknown_node", f"unknown node {node!r} (this cluster has only {self.node})")
            self.standby = command == "standby"
            self._write_standby()
            log.info("operator_request", command=command, node=node)
            self._decide_target(f"hafctl {command}")
            return {"node": node, "standby": self.standby}
        if command == "cleanup":
            name = args.get("resource")
            if name is not None and name not in self.engine.names():
                raise RequestError("unknown_resource", f"unknown resource {name!r}", details={"known": list(self.engine.names())})
            log.info("operator_request", command="cleanup", resource=name)
            self.execute(self.engine.cleanup(name, time.monotonic()))
            self.wakeup.set()
            return {"cleaned": name or "all"}
        if command == "reload":
            return self.reload()
        if command == "failover":
            raise RequestError("invalid_argument", "failover needs a second node; this is a single-node configuration")
        raise RequestError("unknown_command", f"unknown command {command!r}")

    def reload(self) -> dict[str, Any]:
        try:
            new = load(self.config.path, self.config.local_node)
        except ConfigError as e:
            log.warning("reload_rejected", errors=[str(i) for i in e.issues])
            raise RequestError("invalid_config", str(e), details=[str(i) for i in e.issues]) from None
        if new.peers():
            raise RequestError("invalid_config", "this build runs single-node only; the new file configures peers")
        renew, actions = self.engine.reconfigure(new.resources, time.monotonic())
        self.ctx.programs = new.programs
        for name in renew:
            agent = make_agent(new.resources[name], self.ctx)
            if name in self.agents and self.engine.state(name).value != "stopped":
                self.next_agents[name] = agent
            else:
                self.agents[name] = agent
        ignored = [k for k in ("control_socket", "state_dir", "port") if getattr(new.cluster, k) != getattr(self.config.cluster, k)]
        self.config = new
        self.execute(actions)
        self.wakeup.set()
        log.info("reloaded", changed=renew, needs_restart=ignored)
        return {"changed": renew, "needs_restart": ignored, "warnings": list(new.warnings)}

    def status(self) -> dict[str, Any]:
        mono, wall = time.monotonic(), time.time()
        resources = self.engine.snapshot()
        for r in resources.values():
            op = r.get("last_op")
            if isinstance(op, dict):
                op["at"] = round(wall - (mono - float(op["at"])), 3)
        node = self.config.nodes[self.node]
        active = self.role in ("active", "starting")
        warnings = list(self.config.warnings)
        if self.standby:
            warnings.append(f"{self.node} is in standby: resources stay stopped until `hafctl unstandby`")
        return {
            "version": __version__,
            "node": self.node,
            "cluster": self.config.cluster.name,
            "role": self.role,
            "active_node": self.node if active else None,
            "since": round(self.role_since, 3),
            "reason": self.role_reason,
            "nodes": {
                self.node: {
                    "state": "standby" if self.standby else "online",
                    "local": True,
                    "priority": node.priority,
                    "role": self.role,
                    "links": {},
                }
            },
            "resources": resources,
            "warnings": warnings,
            "last_failover": None,
        }

    # -- persisted operator state ---------------------------------------------

    def _read_standby(self) -> bool:
        try:
            with open(os.path.join(self.config.cluster.state_dir, STANDBY_FILE)) as f:
                return bool(json.load(f).get("standby"))
        except (OSError, ValueError, AttributeError):
            return False

    def _write_standby(self) -> None:
        path = os.path.join(self.config.cluster.state_dir, STANDBY_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"standby": self.standby}, f)
        os.replace(tmp, path)


def check_config(path: str, node: str | None) -> int:
    try:
        cfg = load(path, node)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{path}: OK (local node {cfg.local_node}, {len(cfg.resources)} resources)")
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
    try:
        return asyncio.run(Daemon(config).run())
    except RuntimeError as e:  # e.g. another hafd owns the control socket
        log.error("startup_failed", error=str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
