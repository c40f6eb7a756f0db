"""Failure policy: how many failures a resource may have before it is given up on.

The meaning follows the shipped hafd.yaml: `migration_threshold` is the number of
local restarts allowed within `failure_timeout`; the failure after those gives up
on the resource on this node (the cluster then moves the service).  Pacemaker's
`migration-threshold=N` moves on the N-th failure, so it equals our N-1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FailureRecord:
    """Failure timestamps within the window, oldest first."""

    times: tuple[float, ...] = ()

    def add(self, now: float, window: float) -> "FailureRecord":
        return FailureRecord(self.expire(now, window).times + (now,))

    def expire(self, now: float, window: float) -> "FailureRecord":
        return FailureRecord(tuple(t for t in self.times if now - t < window))

    def count(self) -> int:
        return len(self.times)

    def next_expiry(self, window: float) -> float | None:
        return self.times[0] + window if self.times else None


def gives_up(failures: int, migration_threshold: int) -> bool:
    """True when `failures` within the window exceed the allowed local restarts."""
    return failures > migration_threshold
