"""The timeline of the last takeover: what happened, when, relative to its trigger.

An operator asked "why did failover take 3 s" needs the phases (peer lost, fenced,
each resource started) with their offsets, not a log to grep; `hafctl status`
shows the last one and `bench/` reads the same record to split a failover into
detection, fencing and resource start times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timeline:
    trigger: str
    started_mono: float
    started_wall: float
    phases: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False

    def add(self, name: str, now_mono: float, **detail: Any) -> None:
        if not self.finished:
            self.phases.append({"name": name, "at": round(now_mono - self.started_mono, 4), **detail})

    def as_json(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "started_at": round(self.started_wall, 3),
            "phases": self.phases,
            "finished": self.finished,
        }


class TimelineRecorder:
    """Opens a timeline on a trigger (peer lost, switchover, start-up) and closes it when active."""

    def __init__(self) -> None:
        self.current: Timeline | None = None
        self.last: Timeline | None = None
        self.pending_trigger: tuple[str, float, float] | None = None
        self.pending_phases: list[tuple[str, float, dict[str, Any]]] = []  # e.g. fencing, before the takeover

    def trigger(self, what: str, now_mono: float) -> None:
        """Remember the newest cause; a takeover that follows is attributed to it."""
        self.pending_trigger = (what, now_mono, time.time() - (time.monotonic() - now_mono))
        self.pending_phases = []

    def begin(self, now_mono: float, reason: str) -> None:
        what, t0, w0 = self.pending_trigger or (reason, now_mono, time.time())
        self.current = Timeline(what, t0, w0)
        if self.pending_trigger:
            self.current.add("trigger", t0, reason=what)
        for name, at, detail in self.pending_phases:
            self.current.add(name, at, **detail)
        self.current.add("elected", now_mono, reason=reason)
        self.pending_trigger = None
        self.pending_phases = []

    def phase(self, name: str, now_mono: float, **detail: Any) -> None:
        if self.current is not None:
            self.current.add(name, now_mono, **detail)
        elif self.pending_trigger is not None:
            self.pending_phases.append((name, now_mono, detail))

    def finish(self, now_mono: float) -> None:
        if self.current is not None:
            self.current.add("active", now_mono)
            self.current.finished = True
            self.last, self.current = self.current, None

    def as_json(self) -> dict[str, Any] | None:
        t = self.current or self.last
        return None if t is None else t.as_json()
