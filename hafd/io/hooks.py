"""Events hooks: run the operator's programs on hafd's events, never in the way of a failover.

Each hook (hafd.yaml `events.hooks`) runs through `hafd.io.runner.run` (argv, no
shell, its own timeout, the process group killed when it expires) with the event
as HAFD_* environment variables and as one JSON object on stdin.  `emit` only
queues: hooks run as background tasks, at most `max_concurrent` at a time, and a
queue that overflows drops the newest runs (counted, logged) rather than grow
without bound while an alerting endpoint hangs.  Failures are logged and counted
in `hafctl status` (`hooks`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Mapping

import structlog

from hafd.core.config import Events, Hook
from hafd.io.runner import RunResult, run

log = structlog.get_logger(__name__)

# Runs waiting for a free slot beyond this are dropped: a hook stuck at its timeout
# on every event must not let memory grow with every heartbeat-loss flap.
MAX_QUEUED = 100


def hook_env(ev: Mapping[str, Any]) -> dict[str, str]:
    """HAFD_EVENT, HAFD_NODE, HAFD_REASON, HAFD_AT, and HAFD_<FIELD> for every plain field.

    Nested values (a timeline's phases) are only in the JSON on stdin.
    """
    env: dict[str, str] = {}
    for key, value in ev.items():
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            continue
        name = "HAFD_" + "".join(c if c.isalnum() else "_" for c in key).upper()
        env[name] = text.replace("\0", " ")
    return env


class HookRunner:
    def __init__(self, events: Events, cluster: str = "") -> None:
        self.hooks = events.hooks
        self.cluster = cluster
        self._slots = asyncio.Semaphore(events.max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: dict[str, Any] = {"run": 0, "failed": 0, "timed_out": 0, "dropped": 0, "last_error": None}

    def emit(self, ev: Mapping[str, Any]) -> None:
        """Start every hook that subscribes to this event, in the background; never raises."""
        try:
            self._emit(ev)
        except Exception:  # noqa: BLE001 - called from the daemon's decision path
            log.exception("hook_failed", hook_event=ev.get("event"), error="internal error starting the hooks")

    def _emit(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("event")
        for hook in self.hooks:
            if kind not in hook.on:
                continue
            if len(self._tasks) >= MAX_QUEUED:
                self.stats["dropped"] += 1
                log.warning("hook_dropped", hook_event=kind, command=hook.command[0], queued=len(self._tasks))
                continue
            try:
                task = asyncio.get_running_loop().create_task(self._run(hook, ev), name=f"hook:{hook.command[0]}")
            except RuntimeError:  # no loop: nothing can run hooks (a tool, shutting down)
                return
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, hook: Hook, ev: Mapping[str, Any]) -> None:
        payload = {**ev, "cluster": self.cluster} if self.cluster else dict(ev)
        async with self._slots:
            started = time.monotonic()
            try:
                r = await run(hook.command, timeout=hook.timeout, env=hook_env(payload),
                              stdin=json.dumps(payload, default=str).encode() + b"\n")
            except Exception as e:  # noqa: BLE001 - a hook must never take anything else down
                r = RunResult(tuple(hook.command), None, "", "", time.monotonic() - started, error=repr(e))
        self._account(hook, str(ev.get("event")), r)

    def _account(self, hook: Hook, kind: str, r: RunResult) -> None:
        self.stats["run"] += 1
        if r.ok:
            log.info("hook_done", hook_event=kind, command=hook.command[0], duration=round(r.duration, 3))
            return
        self.stats["failed"] += 1
        if r.timed_out:
            self.stats["timed_out"] += 1
        self.stats["last_error"] = {"event": kind, "error": r.describe(), "at": round(time.time(), 3)}
        log.warning("hook_failed", hook_event=kind, command=hook.command[0], error=r.describe(), line=hook.line,
                    timed_out=r.timed_out)

    def status(self) -> dict[str, Any]:
        return {**self.stats, "running": len(self._tasks), "configured": len(self.hooks)}

    async def close(self, timeout: float = 2.0) -> None:
        """Give running hooks a moment (the last event is often 'stopping'), then cancel them
        (runner kills their process groups)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=timeout + 2.0)
