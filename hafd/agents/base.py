"""The contract every resource agent honours.

An agent only does I/O for one resource: start it, stop it, say whether it runs.
It holds no policy (no retries, no failure counting, no ordering): the engine
decides, the daemon calls.  Every operation must be idempotent (start on a running
resource and stop on a stopped one succeed) because the engine re-issues operations
after a daemon restart or a probe.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Callable

from hafd.core.config import Programs, Resource


class Health(enum.Enum):
    """What a monitor found. UNKNOWN means the check itself could not tell."""

    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"  # present but broken (e.g. DRBD primary with a Failed disk)


@dataclass(frozen=True)
class Status:
    health: Health
    detail: str = ""  # one line for `hafctl status`, e.g. "role:Primary disk:UpToDate"
    extra: dict[str, object] = field(default_factory=dict)  # machine-readable facts for status --json


class AgentError(Exception):
    """An operation failed; carries what an operator needs to act on it."""

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        stderr: str = "",
        argv: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.stderr = stderr
        self.argv = argv

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"message": self.message}
        if self.exit_code is not None:
            d["exit_code"] = self.exit_code
        if self.stderr:
            d["stderr"] = self.stderr
        if self.argv is not None:
            d["argv"] = list(self.argv)
        return d


@dataclass
class AgentContext:
    """What the daemon lends an agent: program paths, where to keep state, and a way
    to report that a supervised resource died between monitors (so the engine hears
    of it at once rather than at the next monitor interval)."""

    programs: Programs
    state_dir: str
    on_unexpected_exit: Callable[[str, str], None] = lambda name, why: None


class Agent(abc.ABC):
    """Base class: one instance per configured resource."""

    def __init__(self, resource: Resource, ctx: AgentContext) -> None:
        self.resource = resource
        self.ctx = ctx

    @property
    def name(self) -> str:
        return self.resource.name

    @abc.abstractmethod
    async def start(self) -> None:
        """Bring the resource up; raise AgentError if it is not up afterwards."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Bring the resource down; raise AgentError if it is not down afterwards."""

    @abc.abstractmethod
    async def monitor(self) -> Status:
        """Report the resource's health; raise AgentError only if the check could not run."""

    def timeout_for(self, op: str) -> float:
        """The time limit of one operation ("start", "stop", "monitor"); agents whose
        programs advise their own timeouts (OCF meta-data) override this."""
        return self.resource.timeout

    async def announce(self) -> None:
        """Tell the network again that this node holds the resource (only addresses do)."""

    async def close(self) -> None:
        """Release what the agent holds (sockets, watchers) without touching the resource."""
