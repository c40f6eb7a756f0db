"""What happened and why, kept for `hafctl history`, hooks and the status sentence.

At three in the morning the operator asks "why is nodetwo active?" and "what
happened in the last hour?".  The daemon turns what it already notes (role changes,
peers lost and fenced, operator requests) into flat JSON *events*; this module holds
their shape, their one-line-per-event file format (append-only, a torn last line is
skipped, never fatal) and the plain-words cause ("nodeone was lost (no heartbeats on
10.10.100.1 for 0.36 s) and was fenced by fence-node") that explains a role.

Pure: no I/O, the clock comes in as arguments.  hafd.io.historyfile writes the file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

HISTORY_FILE = "history.jsonl"
# The file keeps at least this many events (and at most twice as many before it is
# compacted): months of a quiet cluster, a bounded file on a flapping one.
KEEP = 500
# Transitions go to the history; noisier events (a resource failing its monitor, a
# link flapping) only to hooks and the log, or they would push the transitions out.
HISTORY_EVENTS = frozenset({"role_changed", "peer_lost", "fenced", "fencing_failed", "split_brain", "operator",
                            "hafd_started"})
# Notes of the cluster core -> event names (config.EVENT_NAMES).
NOTE_EVENTS: Mapping[str, str] = {
    "peer_lost": "peer_lost",
    "peer_up": "peer_up",
    "peer_restarted": "peer_up",
    "link_down": "link_down",
    "link_up": "link_up",
    "peer_fenced": "fenced",
    "fencing_failed": "fencing_failed",
    "fencing_halted": "fencing_failed",
    "split_brain": "split_brain",
}
# Roles in which a node has settled; a cause is used up once a role change reached one.
_SETTLED = frozenset({"active", "standby", "failed"})


def event(kind: str, at: float, node: str, reason: str, /, **fields: Any) -> dict[str, Any]:
    """One event as plain JSON: kind, wall-clock time, the recording node, one sentence, details
    (a detail cannot replace those four)."""
    out: dict[str, Any] = {"event": kind, "at": round(at, 3), "node": node, "reason": reason}
    out.update({k: v for k, v in fields.items() if v is not None and not k.startswith("_") and k not in out})
    return out


def encode(record: Mapping[str, Any]) -> bytes:
    """One line; anything that is not plain JSON is written as its text, never refused."""
    return json.dumps(record, separators=(",", ":"), default=str, allow_nan=False).encode() + b"\n"


def decode(data: bytes) -> list[dict[str, Any]]:
    """Every complete, valid line; a torn or garbled line (a crash mid-write) is skipped."""
    out: list[dict[str, Any]] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("event"), str):
            out.append(obj)
    return out


def phase_durations(phases: Any) -> list[dict[str, Any]]:
    """Timeline phases (offsets from the trigger) with how long each took since the previous one."""
    out: list[dict[str, Any]] = []
    prev = 0.0
    if not isinstance(phases, Sequence) or isinstance(phases, str):
        return out
    for p in phases:
        if not isinstance(p, Mapping) or not isinstance(p.get("at"), (int, float)):
            continue
        at = float(p["at"])
        out.append({"name": str(p.get("name", "?")), "at": round(at, 4), "took": round(max(0.0, at - prev), 4)})
        prev = max(prev, at)
    return out


def _seconds(s: float | None) -> str:
    return "ever" if s is None else f"{s:.2f} s"


def lost_sentence(peer: str, silent: Iterable[tuple[str, float | None]], reason: str = "") -> str:
    """'nodeone was lost (no heartbeats on 10.10.100.1 for 0.36 s)'."""
    if "goodbye" in reason:
        return f"{peer} said goodbye and stopped"
    if "restart" in reason:
        return f"{peer} did not come back from its restart"
    parts = [f"{addr} for {_seconds(s)}" for addr, s in silent]
    return f"{peer} was lost" + (f" (no heartbeats on {' and '.join(parts)})" if parts else "")


_ELECTION = re.compile(r"^(\S+) (?:becomes|stays) active: (.*)$", re.S)


def strip_election(reason: str, local: str) -> str:
    """'nodetwo becomes active: it is the only visible node' -> 'it is the only visible node' on
    nodetwo (the sentence already starts "nodetwo active since ..."); kept whole elsewhere."""
    m = _ELECTION.match(reason)
    return m.group(2) if m and m.group(1) == local else reason


_INTERPRETERS = re.compile(r"^(python[0-9.]*|perl|ruby|node|(ba|da|z|k)?sh|env)$")


def program_name(argv: Sequence[str]) -> str | None:
    """The name an operator knows a command by: fence-node, not the python running it."""
    names = [os.path.basename(a) for a in argv if a and not a.startswith("-")]
    for name in names:
        if not _INTERPRETERS.match(name):
            return name
    return names[0] if names else None


@dataclass
class Cause:
    """The latest thing that moved the role (a lost peer, an operator, a failure)."""

    text: str  # the 'because' clause
    by: str  # who decided: a node name, "operator" or "failure"
    peer: str | None = None
    used: bool = False  # a role change settled on it: a later change needs a newer cause


class Explainer:
    """Follows the daemon's notes and tells, at each role change, why and who decided."""

    def __init__(self, local: str, fence_command: Sequence[str] = ()) -> None:
        self.local = local
        self.fence_program = program_name(fence_command)
        self.cause: Cause | None = None

    def note(self, name: str, reason: str, fields: Mapping[str, Any]) -> None:
        peer = fields.get("peer") if isinstance(fields.get("peer"), str) else None
        if name == "peer_lost" and peer:
            ev = fields.get("_event")
            silent = tuple(getattr(ev, "silent", ()) or ())
            self.cause = Cause(lost_sentence(peer, silent, reason), self.local, peer)
        elif name == "peer_fenced" and peer:
            by = f" by {self.fence_program}" if self.fence_program else ""
            if self.cause is not None and self.cause.peer == peer and not self.cause.used:
                self.cause.text += f" and was fenced{by}"
            else:
                self.cause = Cause(f"{peer} was fenced{by}", self.local, peer)
        elif name == "switchover_requested":
            self.cause = Cause(f"the operator requested it ({reason})", "operator")
        elif name == "standby_changed":
            self.cause = Cause(reason.replace(" (operator)", " by the operator"), "operator")
        elif name == "split_brain":
            self.cause = Cause(f"a split brain was resolved ({reason})", self.local)

    def operator(self, what: str) -> None:
        self.cause = Cause(f"the operator asked: {what}", "operator")

    def role_changed(self, old: str, new: str, reason: str) -> tuple[str, str]:
        """(because, decided by) for a role change, consuming the cause once settled."""
        cause = self.cause
        if new == "failed":
            because, by = strip_election(reason, self.local), "failure"
        elif cause is not None and not cause.used:
            because, by = cause.text, cause.by
        else:
            because, by = strip_election(reason, self.local), self.local
        if cause is not None and new in _SETTLED:
            cause.used = True
        return because, by

