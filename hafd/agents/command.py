"""The `command` resource: the operator's own start/stop/monitor argv lists.

Monitor exit codes, following OCF (the convention most existing check scripts already
speak):
    0            RUNNING
    7            STOPPED  (OCF_NOT_RUNNING: cleanly not running)
    anything else FAILED  (OCF's 1..6 all mean "an error", not "stopped": treating them
                          as STOPPED would let a broken resource look merely idle, and
                          the engine would restart it where it should count a failure)
A monitor that times out or cannot be executed raises AgentError: the check itself did
not run, so the agent cannot say anything about the resource.

start and stop are made idempotent here rather than trusted to the operator's scripts:
start does nothing when monitor already says RUNNING, stop nothing when STOPPED, and
both confirm the outcome with monitor afterwards.

This module also holds `run_program`, the one way the agents run a program and turn a
failed run into an AgentError, so that every agent's errors read the same.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import structlog

from hafd.agents.base import Agent, AgentContext, AgentError, Health, Status
from hafd.core.config import CommandParams, Resource
from hafd.io.runner import RunResult, run

log = structlog.get_logger(__name__)

MONITOR_RUNNING = 0
MONITOR_STOPPED = 7

# Trailer lines that repeat what the exit code already says; the first real line is the cause.
_NOISE = (
    re.compile(r"^Command '.*' terminated with exit code \d+$"),
    re.compile(r"^additional info from kernel:$"),
)


def command_line(argv: Sequence[str]) -> str:
    """argv for a message: the program's base name, so the path does not drown the point."""
    if not argv:
        return "(empty command)"
    return " ".join([os.path.basename(argv[0]), *argv[1:]])


def first_reason(result: RunResult) -> str:
    """The line of a failed program's output that says why (first of stderr, else stdout)."""
    for text in (result.stderr, result.stdout):
        for line in text.splitlines():
            line = line.strip()
            if line and not any(p.match(line) for p in _NOISE):
                return line
    return ""


def failure(result: RunResult, doing: str | None = None) -> AgentError:
    """An AgentError for a run that did not exit 0, with one readable line as message."""
    cmd = doing or command_line(result.argv)
    if result.error:
        msg = f"{cmd} could not run: {result.error}"
    elif result.timed_out:
        msg = f"{cmd} timed out after {result.duration:.1f}s and was killed"
    else:
        reason = first_reason(result)
        msg = f"{cmd} failed (exit {result.returncode})" + (f": {reason}" if reason else "")
    return AgentError(msg, exit_code=result.returncode, stderr=result.stderr.strip(), argv=result.argv)


async def run_program(argv: Sequence[str], timeout: float, *, check: bool = True) -> RunResult:
    """Run argv; raise AgentError if it could not run or timed out, and (check) if it exited non-zero."""
    if not argv:
        raise AgentError("no command configured")
    result = await run(argv, timeout=timeout)
    log.debug("program_ran", argv=list(result.argv), returncode=result.returncode, duration=round(result.duration, 3))
    if result.error or result.timed_out or (check and not result.ok):
        raise failure(result)
    return result


class CommandAgent(Agent):
    def __init__(self, resource: Resource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        if not isinstance(resource.params, CommandParams):
            raise TypeError(f"resource {resource.name}: command agent needs CommandParams, got {resource.params!r}")
        self.params: CommandParams = resource.params

    async def start(self) -> None:
        if (await self.monitor()).health is Health.RUNNING:
            log.info("command_already_running", resource=self.name)
            return
        await run_program(self.params.start, self.resource.timeout)
        after = await self.monitor()
        if after.health is not Health.RUNNING:
            raise AgentError(f"{self.name}: start command succeeded but monitor says {after.detail}")
        log.info("command_started", resource=self.name)

    async def stop(self) -> None:
        if (await self.monitor()).health is Health.STOPPED:
            log.info("command_already_stopped", resource=self.name)
            return
        await run_program(self.params.stop, self.resource.timeout)
        after = await self.monitor()
        if after.health is not Health.STOPPED:
            raise AgentError(f"{self.name}: stop command succeeded but monitor says {after.detail}")
        log.info("command_stopped", resource=self.name)

    async def monitor(self) -> Status:
        result = await run_program(self.params.monitor, self.resource.timeout, check=False)
        code = result.returncode
        cmd = command_line(result.argv)
        if code == MONITOR_RUNNING:
            return Status(Health.RUNNING, f"{cmd}: exit 0 (running)", {"exit_code": code})
        if code == MONITOR_STOPPED:
            return Status(Health.STOPPED, f"{cmd}: exit 7 (not running)", {"exit_code": code})
        reason = first_reason(result)
        detail = f"{cmd}: exit {code} (failed: 0 = running, 7 = stopped, anything else = failed)"
        return Status(Health.FAILED, detail + (f": {reason}" if reason else ""), {"exit_code": code, "stderr": result.stderr.strip()})
