"""`hafctl status` text: the facts an operator needs are on screen, whatever the daemon sends."""

from __future__ import annotations

from typing import Any

import pytest

from hafd.render import format_duration, render_status

NOW = 1_800_000_000.0

FULL: dict[str, Any] = {
    "node": "nodeone",
    "cluster": "dhcp",
    "role": "active",
    "active_node": "nodeone",
    "since": NOW - 125,
    "reason": "nodetwo was lost 0.36s ago; nodeone took over after fencing it.",
    "nodes": {
        "nodeone": {"state": "online", "local": True, "priority": 100, "role": "active",
                    "links": {"10.10.100.1": {"state": "up", "last_seen": NOW, "loss": 0.0}}},
        "nodetwo": {"state": "lost", "local": False, "priority": 90, "role": "standby",
                    "links": {"10.10.100.2": {"state": "down", "last_seen": NOW - 12, "loss": 1.0},
                              "10.10.200.2": {"state": "up", "last_seen": NOW, "loss": 0.05}}},
    },
    "resources": {
        "drbd": {"type": "drbd", "state": "started", "requires": [], "failures": 0, "last_error": None,
                 "last_op": {"op": "start", "ok": True, "duration": 0.012, "at": NOW - 120},
                 "detail": "role:Primary disk:UpToDate"},
        "dhcpd": {"type": "service", "state": "failed", "requires": ["drbd"], "failures": 3,
                  "last_error": "systemctl start isc-dhcp-server: exit 1: Job failed",
                  "last_op": {"op": "start", "ok": False, "duration": 2.5, "at": NOW - 5}, "detail": None},
    },
    "warnings": ["fencing is not configured: a split brain cannot be ruled out"],
    "last_failover": {"started_at": NOW - 125, "reason": "peer lost",
                      "phases": [{"name": "fence", "duration": 0.5}, {"name": "start", "duration": 0.25}]},
}


def test_full_status_answers_what_runs_where_and_why() -> None:
    text = render_status(FULL, NOW)
    lines = text.splitlines()
    assert "cluster dhcp" in lines[0] and "nodeone is ACTIVE" in lines[0] and "2m 05s" in lines[0]
    assert "service runs on: nodeone" in text
    assert "why: nodetwo was lost 0.36s ago; nodeone took over after fencing it." in text
    node_line = next(line for line in lines if line.strip().startswith("nodetwo"))
    assert "LOST" in node_line and "90" in node_line
    assert "10.10.100.2 DOWN 100% loss (last seen 12s ago)" in node_line
    assert "10.10.200.2 up 5% loss" in node_line
    assert "nodeone (local)" in text
    res_lines = [line for line in lines if line.strip().startswith(("drbd ", "dhcpd "))]
    assert [line.split()[0] for line in res_lines] == ["drbd", "dhcpd"]  # the daemon's (start) order
    assert "start ok 0.012s" in res_lines[0] and "role:Primary disk:UpToDate" in res_lines[0]
    assert "FAILED" in res_lines[1] and "start FAILED 2.5s" in res_lines[1]
    assert "error: systemctl start isc-dhcp-server: exit 1: Job failed" in res_lines[1]
    assert "took 0.750s: fence 0.500s, start 0.250s" in text
    # Warnings come last, where the eye lands.
    assert lines[-2].startswith("WARNINGS (1)")
    assert lines[-1] == "  ! fencing is not configured: a split brain cannot be ruled out"


def test_columns_line_up() -> None:
    lines = render_status(FULL, NOW).splitlines()
    header = next(line for line in lines if "RESOURCE" in line)
    rows = [line for line in lines if line.strip().startswith(("drbd ", "dhcpd "))]
    col = header.index("STATE")
    assert all(row[col - 2 : col] == "  " and row[col] != " " for row in rows)


def test_no_active_node_is_prominent() -> None:
    text = render_status({"node": "a", "cluster": "c", "role": "standby", "active_node": None}, NOW)
    assert "NO NODE" in text


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"node": "x"},
        {"nodes": None, "resources": "garbage", "warnings": "one warning as a string"},
        {"nodes": {"a": None, "b": {"links": {"1.2.3.4": None}, "priority": "high"}}},
        {"resources": {"r": {"last_op": {"op": "start"}, "failures": None, "state": 5}}},
        {"since": "yesterday", "last_failover": {"phases": [None, {"duration": "x"}]}},
        {"since": float("nan"), "last_failover": {"started_at": 1e300}},
        {"role": None, "reason": "line one\nline two\x1b[31m"},
    ],
)
def test_partial_or_odd_status_never_crashes(status: dict[str, Any]) -> None:
    text = render_status(status, NOW)
    assert isinstance(text, str) and text
    assert "\x1b" not in text


def test_control_characters_cannot_break_the_table() -> None:
    text = render_status({"reason": "a\nb\x1b[2Jc"}, NOW)
    assert "why: a b [2Jc" in text


def test_not_a_dict() -> None:
    assert "unexpected status" in render_status(["x"], NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "seconds,text",
    [(0.0123, "0.012s"), (3.45, "3.5s"), (42, "42s"), (125, "2m 05s"), (7500, "2h 05m"), (3 * 86400 + 7200, "3d 2h"), (-1, "0.000s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
