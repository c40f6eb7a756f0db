"""`hafctl status` for humans: what runs where, and why, at a glance.

Works on the plain status dict of the control protocol (not on daemon objects) and
reads every key defensively: hafctl may be newer or older than the daemon it talks
to, and a status view that crashes is useless exactly when it is needed.  Text that
comes from outside (program error output) is flattened to one line and stripped of
control characters so it can neither break the tables nor drive the terminal.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping, Sequence

# States shown in capitals so that trouble stands out in a table of lower case.
_ALARM = frozenset({"failed", "lost", "fenced", "down", "unknown", "stopping", "blocked"})


def _clean(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _state(value: Any) -> str:
    text = _clean(value)
    return text.upper() if text.lower() in _ALARM else text


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def format_duration(seconds: float) -> str:
    """A short human duration: 0.012s, 3.4s, 5m 03s, 2h 05m, 3d 4h."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{seconds:.3f}s" if seconds < 1 else f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def format_time(at: float, now: float) -> str:
    """Local wall-clock time, with the date once it is not today's."""
    try:
        t = time.localtime(at)
        fmt = "%H:%M:%S" if time.localtime(now)[:3] == t[:3] else "%Y-%m-%d %H:%M:%S"
        return time.strftime(fmt, t)
    except (OverflowError, OSError, ValueError):
        return "?"


def _ago(at: Any, now: float) -> str:
    value = _num(at)
    if value is None:
        return "never"
    return f"{format_duration(now - value)} ago"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns; the last column is free length (it carries the details)."""
    rows = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + row[-1:]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _links(links: Any, now: float) -> str:
    parts = []
    for addr, info in _dict(links).items():
        info = _dict(info)
        state = _clean(info.get("state", "unknown")).lower()
        text = f"{_clean(addr)} {_state(state)}"
        loss = _num(info.get("loss"))
        if loss is not None and loss > 0:
            text += f" {loss * 100:.0f}% loss"
        if state != "up" and "last_seen" in info:
            text += f" (last seen {_ago(info.get('last_seen'), now)})"
        ago = _num(info.get("last_seen_ago"))
        if state != "up" and "last_seen_ago" in info:
            text += f" (last heard {format_duration(ago)} ago)" if ago is not None else " (never heard)"
        parts.append(text)
    return ", ".join(parts) or "-"


def _last_op(op: Any) -> str:
    op = _dict(op)
    if not op:
        return "-"
    name = _clean(op.get("op", "?"))
    ok = op.get("ok")
    verdict = "ok" if ok is True else "FAILED" if ok is False else "?"
    duration = _num(op.get("duration"))
    return f"{name} {verdict}" + (f" {format_duration(duration)}" if duration is not None else "")


def _header(status: Mapping[str, Any], now: float) -> list[str]:
    cluster = _clean(status.get("cluster", "?"))
    node = _clean(status.get("node", "?"))
    role = _clean(status.get("role", "unknown"))
    head = f"cluster {cluster}: node {node} is {role.upper()}"
    since = _num(status.get("since"))
    if since is not None:
        head += f" since {format_time(since, now)} (for {format_duration(now - since)})"
    lines = [head]
    because = status.get("because")
    if because and since is not None:  # the one-sentence answer to "why is it like this?"
        lines.append(f"  {node} {_clean(role)} since {format_time(since, now)} because {_clean(because)}")
    active = status.get("active_node")
    if "active_node" in status:
        if active:
            lines.append(f"  service runs on: {_clean(active)}")
        else:
            lines.append("  service runs on: NO NODE (the service is not running anywhere)")
    reason = status.get("reason")
    if reason:
        lines.append(f"  why: {_clean(reason)}")
    decision = status.get("decision")
    if decision and decision != reason:
        lines.append(f"  election now: {_clean(decision)}")
    rejected = _dict(status.get("rejected_packets"))
    if rejected:
        counts = ", ".join(f"{_clean(k)} {_clean(v)}" for k, v in sorted(rejected.items()))
        lines.append(f"  rejected packets: {counts}")
    return lines


def _nodes(status: Mapping[str, Any], now: float) -> list[str]:
    nodes = _dict(status.get("nodes"))
    if not nodes:
        return []
    rows = []
    for name, info in nodes.items():
        info = _dict(info)
        label = _clean(name) + (" (local)" if info.get("local") is True else "")
        prio = info.get("priority")
        rows.append(
            [
                label,
                _state(info.get("state", "unknown")),
                _clean(info.get("role")),
                _clean(prio) if prio is not None else "-",
                _links(info.get("links"), now),
            ]
        )
    return ["", "Nodes:", *_table(["NODE", "STATE", "ROLE", "PRIO", "LINKS"], rows)]


def _resources(status: Mapping[str, Any]) -> list[str]:
    resources = _dict(status.get("resources"))
    if not resources:
        return []
    rows = []
    for name, info in resources.items():
        info = _dict(info)
        failures = info.get("failures")
        detail = _clean(info.get("detail")) if info.get("detail") else ""
        error = info.get("last_error")
        if error:
            detail = (detail + "; " if detail else "") + f"error: {_clean(error)}"
        rows.append(
            [
                _clean(name),
                _clean(info.get("type")),
                _state(info.get("state", "unknown")),
                _clean(failures) if failures is not None else "-",
                _last_op(info.get("last_op")),
                detail or "-",
            ]
        )
    return ["", "Resources (start order):", *_table(["RESOURCE", "TYPE", "STATE", "FAILS", "LAST OP", "DETAIL"], rows)]


def _failover(status: Mapping[str, Any], now: float) -> list[str]:
    fo = status.get("last_failover")
    if not isinstance(fo, Mapping) or not fo:
        return []
    started = _num(fo.get("started_at"))
    line = "Last takeover:"
    if started is not None:
        line += f" {format_time(started, now)} ({_ago(started, now)})"
    why = fo.get("trigger") or fo.get("reason")
    if why:
        line += f": {_clean(why)}"
    if fo.get("finished") is False:
        line += " [in progress]"
    phases = fo.get("phases")
    parts = []
    total = 0.0
    if isinstance(phases, Sequence) and not isinstance(phases, str):
        for phase in phases:
            phase = _dict(phase)
            at = _num(phase.get("at"))
            duration = _num(phase.get("duration"))
            if at is not None:  # offsets from the trigger (hafd >= 0.1)
                total = max(total, at)
                parts.append(f"{_clean(phase.get('name', '?'))} +{format_duration(at)}")
            else:
                total += duration or 0.0
                parts.append(
                    f"{_clean(phase.get('name', '?'))} {format_duration(duration) if duration is not None else '?'}"
                )
    lines = ["", line]
    if parts:
        lines.append(f"  took {format_duration(total)}: " + ", ".join(parts))
    return lines


def _warnings(status: Mapping[str, Any]) -> list[str]:
    warnings = status.get("warnings")
    if isinstance(warnings, str):
        warnings = [warnings]
    if not isinstance(warnings, Sequence) or not warnings:
        return []
    return ["", f"WARNINGS ({len(warnings)}):", *(f"  ! {_clean(w)}" for w in warnings)]


def render_status(status: Mapping[str, Any], now: float) -> str:
    """The whole `hafctl status` text (no trailing newline)."""
    if not isinstance(status, Mapping):
        return f"unexpected status from hafd: {_clean(status)}"
    lines = _header(status, now)
    lines += _nodes(status, now)
    lines += _resources(status)
    lines += _failover(status, now)
    lines += _warnings(status)
    return "\n".join(lines)


def _phases(phases: Any) -> str:
    """'fenced 0.412s, vip started 0.050s' (each phase's own duration, from the previous one)."""
    parts = []
    if isinstance(phases, Sequence) and not isinstance(phases, str):
        for p in phases:
            p = _dict(p)
            took = _num(p.get("took"))
            if took is not None and p.get("name") not in ("trigger",):
                parts.append(f"{_clean(p.get('name', '?'))} {format_duration(took)}")
    return ", ".join(parts)


def _history_line(ev: Mapping[str, Any], now: float) -> list[str]:
    at = _num(ev.get("at"))
    when = format_time(at, now) if at is not None else "?"
    kind = _clean(ev.get("event", "?"))
    node = _clean(ev.get("node"))
    if kind == "role_changed":
        what = f"{node} {_clean(ev.get('from'))} -> {_state(ev.get('to'))}"
        why = ev.get("because") or ev.get("reason")
        text = f"{what} because {_clean(why)}" if why else what
        if ev.get("by"):
            text += f" [decided by {_clean(ev.get('by'))}]"
    else:
        text = f"{kind.replace('_', ' ')}: {_clean(ev.get('reason'))}"
    lines = [f"{when}  {text}"]
    duration = _num(ev.get("duration"))
    phases = _phases(ev.get("phases"))
    if duration is not None or phases:
        took = f"took {format_duration(duration)}" if duration is not None else "took"
        lines.append(f"          {took}" + (f": {phases}" if phases else ""))
    return lines


def render_history(events: Any, now: float) -> str:
    """`hafctl history`: one event per line (oldest first), a takeover's phases under it."""
    if not isinstance(events, Sequence) or isinstance(events, str):
        return f"unexpected history from hafd: {_clean(events)}"
    if not events:
        return "no events recorded yet"
    lines: list[str] = []
    for ev in events:
        lines += _history_line(_dict(ev), now)
    return "\n".join(lines)
