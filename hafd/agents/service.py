"""The `service` resource: a systemd unit (systemctl) or a SysV init script (service).

systemd, `systemctl is-active UNIT` is read by the word it prints, not only its exit
code (is-active exits 3 for every non-active state):
    active, reloading, refreshing    RUNNING
    inactive                         STOPPED  (also what it prints for an unknown unit)
    activating, deactivating         STOPPED  (not serving: activating is typically
                                              "auto-restart" after a crash, and calling
                                              that RUNNING would hide a crash loop; the
                                              engine's start then waits for the job)
    failed                           FAILED
    anything else / nothing printed  AgentError: systemctl could not tell (e.g. "System
                                     has not been booted with systemd as init system")
start returns once the start job finished for most unit types; we still confirm with
is-active and, for units that are still activating (Type=simple with a slow
ExecStartPost, --no-block set by an admin's drop-in), poll it until active, failed or
the resource timeout.

SysV, by the LSB status exit codes of `service UNIT status`:
    0 RUNNING, 3 STOPPED, 1/2 ("dead but pid/lock file exists") and 4 ("unknown") and
    anything else FAILED.

stop succeeds when the service is not running afterwards (inactive or failed), even
if the stop command itself failed (`systemctl stop` of a unit that is not loaded exits
5): a unit that is down is what stop promises.  Still deactivating is not down, nor is
an LSB status of 4 ("unknown") or anything but 1, 2 and 3.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from hafd.agents.base import Agent, AgentContext, AgentError, Health, Status
from hafd.agents.command import command_line, first_reason, run_program
from hafd.core.config import Resource, ServiceParams

log = structlog.get_logger(__name__)

_SYSTEMD_STATES = {
    "active": Health.RUNNING,
    "reloading": Health.RUNNING,
    "refreshing": Health.RUNNING,
    "inactive": Health.STOPPED,
    "activating": Health.STOPPED,
    "deactivating": Health.STOPPED,
    "failed": Health.FAILED,
}
_LSB_STATUS = {0: Health.RUNNING, 3: Health.STOPPED}
_LSB_DOWN = (1, 2, 3)  # not running (1, 2: dead, a pid or lock file left behind)
POLL_INTERVAL = 0.2
_TRANSITIONAL = ("activating", "deactivating")


class ServiceAgent(Agent):
    def __init__(self, resource: Resource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        params = resource.params
        if not isinstance(params, ServiceParams):
            raise TypeError(f"resource {resource.name}: service agent needs ServiceParams, got {params!r}")
        if params.init not in ("systemd", "sysv"):
            raise ValueError(f"resource {resource.name}: init must be systemd or sysv, not {params.init!r}")
        self.params: ServiceParams = params

    def _argv(self, action: str) -> list[str]:
        if self.params.init == "systemd":
            verb = "is-active" if action == "status" else action
            return [self.ctx.programs.systemctl, verb, self.params.unit]
        return [self.ctx.programs.service, self.params.unit, action]

    async def start(self) -> None:
        deadline = time.monotonic() + self.resource.timeout
        await run_program(self._argv("start"), self.resource.timeout)
        status = await self._wait_for(deadline)
        if status.health is not Health.RUNNING:
            raise AgentError(f"{command_line(self._argv('start'))} returned 0 but the service is not running: {status.detail}")
        log.info("service_started", resource=self.name, unit=self.params.unit)

    async def stop(self) -> None:
        deadline = time.monotonic() + self.resource.timeout
        try:
            await run_program(self._argv("stop"), self.resource.timeout)
        except AgentError as e:
            # `systemctl stop` of a unit that is not loaded exits 5; it is down all the same.
            try:
                status = await self.monitor()
            except AgentError:
                raise e from None
            if not self._is_down(status):
                raise
            log.warning("service_stop_failed_but_down", resource=self.name, error=e.message, detail=status.detail)
            return
        status = await self._wait_for(deadline)
        if not self._is_down(status):
            raise AgentError(f"{command_line(self._argv('stop'))} returned 0 but the service is not down: {status.detail}")
        log.info("service_stopped", resource=self.name, unit=self.params.unit, health=status.health.value)

    def _is_down(self, status: Status) -> bool:
        """Positively not running: LSB 4 ("unknown") or a unit still deactivating is not down."""
        if self.params.init == "sysv":
            return status.extra.get("exit_code") in _LSB_DOWN
        return status.health is not Health.RUNNING and status.extra.get("state") not in _TRANSITIONAL

    async def _wait_for(self, deadline: float) -> Status:
        """Monitor until the unit leaves activating/deactivating, bounded by the resource timeout."""
        max_polls = int(self.resource.timeout / POLL_INTERVAL) + 2
        status = await self.monitor()
        for _ in range(max_polls):
            if status.extra.get("state") not in _TRANSITIONAL or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
            status = await self.monitor()
        return status

    async def monitor(self) -> Status:
        if self.params.init == "systemd":
            return await self._monitor_systemd()
        return await self._monitor_sysv()

    async def _monitor_systemd(self) -> Status:
        result = await run_program(self._argv("status"), self.resource.timeout, check=False)
        word = (result.stdout.strip().splitlines() or [""])[0].strip()
        health = _SYSTEMD_STATES.get(word)
        if health is None:
            reason = first_reason(result) or "no output"
            raise AgentError(
                f"{command_line(result.argv)} could not tell the unit's state (exit {result.returncode}): {reason}",
                exit_code=result.returncode,
                stderr=result.stderr.strip(),
                argv=result.argv,
            )
        return Status(health, f"{self.params.unit}: {word}", {"state": word, "exit_code": result.returncode})

    async def _monitor_sysv(self) -> Status:
        result = await run_program(self._argv("status"), self.resource.timeout, check=False)
        code = result.returncode
        health = _LSB_STATUS.get(code if code is not None else -1, Health.FAILED)
        detail = f"{self.params.unit}: status exit {code}"
        reason = first_reason(result)
        if reason:
            detail += f": {reason}"
        state = {Health.RUNNING: "running", Health.STOPPED: "stopped"}.get(health, "failed")
        return Status(health, detail, {"state": state, "exit_code": code})
