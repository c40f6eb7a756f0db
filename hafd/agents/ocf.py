"""The `ocf` resource: run an existing OCF resource agent unchanged.

The agent is the executable OCF_ROOT/resource.d/PROVIDER/TYPE, called as
`AGENT ACTION` (argv, no shell) with the environment Pacemaker gives it:

    OCF_ROOT                     ctx.programs.ocf_root (default /usr/lib/ocf)
    OCF_RESOURCE_INSTANCE        the resource's name
    OCF_RESOURCE_TYPE            TYPE      (e.g. IPaddr2)
    OCF_RESOURCE_PROVIDER        PROVIDER  (e.g. heartbeat)
    OCF_RA_VERSION_MAJOR/MINOR   1 / 1
    OCF_RESKEY_<name>            each of the resource's `params`
    OCF_RESKEY_CRM_meta_timeout  this operation's timeout, in milliseconds
    OCF_RESKEY_CRM_meta_interval the monitor interval in ms for monitor, else 0

Exit codes, as Pacemaker reads them:
    monitor  0 OCF_SUCCESS, 8 RUNNING_PROMOTED, 190/191 DEGRADED   RUNNING
             7 OCF_NOT_RUNNING                                     STOPPED
             1-6, 9 FAILED_PROMOTED, anything else                 FAILED (detail names the code)
    start    0 only; anything else is an AgentError naming the code
    stop     0, or 7 (already stopped): a resource that is down is what stop promises
A run that times out or cannot be executed is an AgentError for every action: the
agent said nothing, so nothing can be concluded about the resource.

Timeouts: the operator's `timeout` if written in the file, else the agent's meta-data
advice for that action (`<action name="start" timeout="20s"/>`), else `timeout`'s
default.  `meta-data` is read once, lazily, on the first operation, and cached even when
it fails (a broken description only loses the advice); `validate-all` runs before the
first start until it passes once (3, "unimplemented", counts as passing).
`timeout_for(op)` is the whole call's budget (the operation plus whichever of those
one-time steps are still due) and every step inside a call is cut to what is left of
it, so the daemon's backstop never fires before the agent's own timeout does.

promote/demote are run by `promote()`/`demote()` when the agent advertises them; the
engine does not use them yet, so status only reports that the agent is promotable.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import structlog

from hafd.agents.base import Agent, AgentContext, AgentError, Health, Status
from hafd.core.config import OcfParams, Resource
from hafd.core.ocfmeta import (
    OCF_DEGRADED,
    OCF_DEGRADED_PROMOTED,
    OCF_ERR_UNIMPLEMENTED,
    OCF_FAILED_PROMOTED,
    OCF_NOT_RUNNING,
    OCF_RUNNING_PROMOTED,
    OCF_SUCCESS,
    MetadataError,
    OcfMetadata,
    code_name,
    parse_metadata,
)
from hafd.io.runner import RunResult, run

log = structlog.get_logger(__name__)

META_DATA_TIMEOUT = 10.0
EXIT_REASON_PREFIX = "ocf-exit-reason:"
MAX_REASON = 300
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_MONITOR: dict[int, Health] = {
    OCF_SUCCESS: Health.RUNNING,
    OCF_RUNNING_PROMOTED: Health.RUNNING,
    OCF_DEGRADED: Health.RUNNING,
    OCF_DEGRADED_PROMOTED: Health.RUNNING,
    OCF_NOT_RUNNING: Health.STOPPED,
}
_PROMOTED_CODES = (OCF_RUNNING_PROMOTED, OCF_FAILED_PROMOTED, OCF_DEGRADED_PROMOTED)


def exit_reason(result: RunResult) -> str:
    """Why the agent failed, in one line: its ocf_exit_reason if it gave one (the line
    Pacemaker shows as "exitreason"), else the last line of stderr, else of stdout."""
    reasons = [ln[len(EXIT_REASON_PREFIX):].strip() for ln in result.stderr.splitlines() if ln.startswith(EXIT_REASON_PREFIX)]
    if reasons and reasons[-1]:
        return reasons[-1][:MAX_REASON]
    for text in (result.stderr, result.stdout):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            return lines[-1][:MAX_REASON]
    return ""


class OcfAgent(Agent):
    def __init__(self, resource: Resource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        params = resource.params
        if not isinstance(params, OcfParams):
            raise TypeError(f"resource {resource.name}: ocf agent needs OcfParams, got {params!r}")
        parts = params.agent.removeprefix("ocf:").split(":")
        if len(parts) != 2 or not all(_NAME.fullmatch(p) for p in parts):
            raise AgentError(f"resource {resource.name}: OCF agent must be PROVIDER:TYPE (e.g. heartbeat:IPaddr2), not {params.agent!r}")
        self.provider, self.kind = parts
        self.agent_id = f"{self.provider}:{self.kind}"
        for key, value in params.params.items():
            if not _PARAM.fullmatch(key):
                raise AgentError(f"resource {resource.name}: OCF parameter name {key!r} may only hold letters, digits and '_'")
            if not isinstance(value, str) or "\0" in value:
                raise AgentError(f"resource {resource.name}: OCF parameter {key} must be a string without NUL bytes")
        self.params: OcfParams = params
        self.path = os.path.join(ctx.programs.ocf_root, "resource.d", self.provider, self.kind)
        self.metadata: OcfMetadata | None = None
        self.metadata_error: str = ""
        self.param_warnings: tuple[str, ...] = ()
        self.validated = False
        self._meta_lock = asyncio.Lock()

    # --- timeouts ----------------------------------------------------------------

    def action_timeout(self, action: str) -> float:
        """One action's own limit: the operator's, else the agent's advice, else the default."""
        if self.resource.timeout_set:
            return self.resource.timeout
        advised = self.metadata.timeout(action) if self.metadata is not None else None
        return advised if advised is not None and advised > 0 else self.resource.timeout

    def timeout_for(self, op: str) -> float:
        budget = self.action_timeout(op)
        if self.metadata is None:
            budget += META_DATA_TIMEOUT
        if op == "start" and not self.validated:
            budget += self.action_timeout("validate-all")
        return budget

    # --- running the agent --------------------------------------------------------

    def environment(self, action: str, timeout: float) -> dict[str, str]:
        env = {
            "OCF_ROOT": self.ctx.programs.ocf_root,
            "OCF_RESOURCE_INSTANCE": self.name,
            "OCF_RESOURCE_TYPE": self.kind,
            "OCF_RESOURCE_PROVIDER": self.provider,
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "1",
            "OCF_RESKEY_CRM_meta_timeout": str(int(round(timeout * 1000))),
            "OCF_RESKEY_CRM_meta_interval": str(int(round(self.resource.monitor_interval * 1000))) if action == "monitor" else "0",
        }
        env.update({f"OCF_RESKEY_{k}": v for k, v in self.params.params.items()})
        return env

    def _check_installed(self) -> None:
        if not os.path.isfile(self.path):
            raise AgentError(f"OCF agent {self.agent_id} not found at {self.path}; install resource-agents?")
        if not os.access(self.path, os.X_OK):
            raise AgentError(f"OCF agent {self.agent_id} at {self.path} is not executable")

    async def _run(self, action: str, timeout: float, deadline: float | None = None) -> RunResult:
        """Run one action; AgentError if it could not run or timed out (never for its exit code)."""
        self._check_installed()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentError(f"{self.agent_id} {action}: the operation's time budget is used up")
            timeout = min(timeout, left)
        result = await run([self.path, action], timeout=timeout, env=self.environment(action, timeout))
        log.debug("ocf_action", resource=self.name, agent=self.agent_id, action=action, rc=result.returncode, duration=round(result.duration, 3))
        if result.error:
            raise AgentError(f"{self.agent_id} {action} could not run: {result.error}", argv=result.argv)
        if result.timed_out:
            raise AgentError(
                f"{self.agent_id} {action} timed out after {timeout:.1f}s and was killed",
                stderr=result.stderr.strip(),
                argv=result.argv,
            )
        return result

    def _failure(self, action: str, result: RunResult) -> AgentError:
        reason = exit_reason(result)
        msg = f"{self.agent_id} {action} failed: {code_name(result.returncode)}" + (f": {reason}" if reason else "")
        return AgentError(msg, exit_code=result.returncode, stderr=result.stderr.strip(), argv=result.argv)

    async def load_metadata(self) -> OcfMetadata | None:
        """Read `meta-data` once; the daemon may call this early so the first
        operation's budget is already the advised one."""
        async with self._meta_lock:
            if self.metadata is not None:
                return self.metadata
            self._check_installed()  # a missing agent may be installed later: not cached
            try:
                result = await self._run("meta-data", META_DATA_TIMEOUT)
                if result.returncode != OCF_SUCCESS:
                    raise self._failure("meta-data", result)
                meta = parse_metadata(result.stdout)
            except (AgentError, MetadataError) as e:
                self.metadata_error = str(e)
                log.warning("ocf_metadata_unusable", resource=self.name, agent=self.agent_id, error=self.metadata_error)
                meta = OcfMetadata(name=self.kind, warnings=(self.metadata_error,))
            else:
                given = set(self.params.params)
                warnings = [f"meta-data: {w}" for w in meta.warnings]
                warnings += [f"parameter {n} is not described by {self.agent_id}'s meta-data" for n in meta.unknown(given)]
                warnings += [f"required parameter {n} is not set" for n in meta.missing_required(given)]
                self.param_warnings = tuple(warnings)
                for w in warnings:
                    log.warning("ocf_parameter_warning", resource=self.name, agent=self.agent_id, warning=w)
            self.metadata = meta
            return meta

    async def _prepare(self, op: str) -> float:
        """Fix the call's deadline (before the one-time steps, which it covers) and load meta-data."""
        deadline = time.monotonic() + self.timeout_for(op)
        await self.load_metadata()
        return deadline

    # --- the Agent contract ---------------------------------------------------------

    async def validate(self, deadline: float | None = None) -> None:
        result = await self._run("validate-all", self.action_timeout("validate-all"), deadline)
        if result.returncode == OCF_ERR_UNIMPLEMENTED:
            log.info("ocf_validate_unimplemented", resource=self.name, agent=self.agent_id)
        elif result.returncode != OCF_SUCCESS:
            raise self._failure("validate-all", result)
        self.validated = True

    async def start(self) -> None:
        deadline = await self._prepare("start")
        if not self.validated:
            await self.validate(deadline)
        result = await self._run("start", self.action_timeout("start"), deadline)
        if result.returncode != OCF_SUCCESS:
            raise self._failure("start", result)
        log.info("ocf_started", resource=self.name, agent=self.agent_id, duration=round(result.duration, 3))

    async def stop(self) -> None:
        deadline = await self._prepare("stop")
        result = await self._run("stop", self.action_timeout("stop"), deadline)
        if result.returncode not in (OCF_SUCCESS, OCF_NOT_RUNNING):
            raise self._failure("stop", result)
        log.info("ocf_stopped", resource=self.name, agent=self.agent_id, rc=result.returncode, duration=round(result.duration, 3))

    async def monitor(self) -> Status:
        deadline = await self._prepare("monitor")
        result = await self._run("monitor", self.action_timeout("monitor"), deadline)
        code = result.returncode if result.returncode is not None else -1  # _run raised for None
        health = _MONITOR.get(code, Health.FAILED)
        extra = self._extra(code)
        reason = exit_reason(result)
        if health is Health.FAILED:
            extra["stderr"] = result.stderr.strip()[-2000:]
            detail = f"{code_name(code)}: {reason}" if reason else code_name(code)
        else:
            detail = f"{self.agent_id}: {code_name(code)}"
            if code in (OCF_DEGRADED, OCF_DEGRADED_PROMOTED):
                extra["degraded"] = True
                detail += f": {reason}" if reason else ""
        return Status(health, detail, extra)

    def _extra(self, code: int) -> dict[str, object]:
        meta = self.metadata
        extra: dict[str, object] = {
            "agent": self.agent_id,
            "exit_code": code,
            "ocf_code": code_name(code),
            "actions": sorted({a.name for a in meta.actions}) if meta is not None else [],
            "promotable": bool(meta is not None and meta.promotable),
        }
        if code in _PROMOTED_CODES:
            extra["role"] = "promoted"
        if self.metadata_error:
            extra["metadata_error"] = self.metadata_error
        if self.param_warnings:
            extra["warnings"] = list(self.param_warnings)
        return extra

    # --- promotable agents (not driven by the engine yet) ------------------------------

    async def promote(self) -> None:
        await self._role_change("promote")

    async def demote(self) -> None:
        await self._role_change("demote")

    async def _role_change(self, action: str) -> None:
        deadline = await self._prepare(action)
        if self.metadata is not None and self.metadata.actions and not self.metadata.advertises(action):
            raise AgentError(f"{self.agent_id} does not advertise {action} in its meta-data")
        result = await self._run(action, self.action_timeout(action), deadline)
        if result.returncode != OCF_SUCCESS:
            raise self._failure(action, result)
        log.info(f"ocf_{action}d", resource=self.name, agent=self.agent_id)

