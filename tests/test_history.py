"""`hafctl history` and the status sentence: the record, the file, the daemon end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from hafd.core.history import (Explainer, decode, encode, event, lost_sentence, phase_durations, program_name,
                                strip_election)
from hafd.core.membership import EventKind, MembershipEvent
from hafd.io.historyfile import HistoryFile
from hafd.render import render_history, render_status

from test_cluster_daemons import pair  # noqa: F401 - two daemons in a namespace
from test_daemon import Hafd, alive


# -- the record ---------------------------------------------------------------------


def test_decode_skips_a_torn_last_line_and_garbage_but_keeps_the_rest() -> None:
    good = [event("operator", 100.0, "a", "x", command="standby"), event("role_changed", 101.0, "a", "y")]
    data = b"".join(encode(r) for r in good) + b"\x00\xffnot json\n" + b'["a list"]\n' + encode(good[0])[:17]
    assert decode(data) == good


def test_event_drops_empty_and_private_fields_and_keeps_its_own() -> None:
    ev = event("peer_lost", 1.23456, "b", "a lost", peer="a", link=None, _event=object())
    assert ev == {"event": "peer_lost", "at": 1.235, "node": "b", "reason": "a lost", "peer": "a"}
    assert event("operator", 1.0, "b", "x", node="a", event="y")["node"] == "b"


def test_phase_durations_are_the_gaps_between_offsets() -> None:
    phases = [{"name": "trigger", "at": 0.0}, {"name": "fence_started", "at": 0.001},
              {"name": "fenced", "at": 0.4}, {"name": "vip started", "at": 0.45}, {"name": "active", "at": 0.45}]
    got = phase_durations(phases)
    assert [(p["name"], p["took"]) for p in got] == [("trigger", 0.0), ("fence_started", 0.001), ("fenced", 0.399),
                                                    ("vip started", 0.05), ("active", 0.0)]
    assert phase_durations("nonsense") == [] and phase_durations([{"name": "x"}]) == []


def _lost(peer: str, silent: tuple[tuple[str, float | None], ...], reason: str = "") -> dict[str, object]:
    ev = MembershipEvent(EventKind.PEER_LOST, peer, reason or f"{peer} lost: no valid heartbeat", silent=silent)
    return {"peer": peer, "_event": ev}


def test_explainer_names_the_lost_peer_its_silent_links_and_the_fence_program() -> None:
    ex = Explainer("nodetwo", ["/usr/local/sbin/fence-node", "{peer}"])
    ex.note("peer_lost", "nodeone lost: no valid heartbeat ...", _lost("nodeone", (("10.10.100.1", 0.3612),)))
    ex.note("peer_fenced", "nodeone was fenced: fence-node exited 0", {"peer": "nodeone"})
    reason = "nodetwo becomes active: it is the only visible node (nodeone fenced), after nodeone lost: ..."
    assert ex.role_changed("standby", "starting", reason) == (
        "nodeone was lost (no heartbeats on 10.10.100.1 for 0.36 s) and was fenced by fence-node", "nodetwo")
    because, _ = ex.role_changed("starting", "active", reason)
    assert because.startswith("nodeone was lost")
    # Used up once settled: a later change without a new cause says what the election said.
    assert ex.role_changed("active", "stopping", "nodeone becomes active: failback is on") == (
        "nodeone becomes active: failback is on", "nodetwo")
    assert ex.role_changed("active", "failed", "gave up on dhcpd (see last_error)")[1] == "failure"


def test_explainer_operator_and_other_loss_shapes() -> None:
    ex = Explainer("a")
    ex.note("switchover_requested", "switchover to b requested on a", {})
    assert ex.role_changed("active", "stopping", "stepping down") == (
        "the operator requested it (switchover to b requested on a)", "operator")
    ex.note("standby_changed", "a is standby (operator)", {})
    assert ex.role_changed("active", "standby", "x")[0] == "a is standby by the operator"
    assert lost_sentence("b", (("10.0.0.1", 0.5), ("10.0.1.1", None))) == \
        "b was lost (no heartbeats on 10.0.0.1 for 0.50 s and 10.0.1.1 for ever)"
    assert lost_sentence("b", (), "b lost: it said goodbye") == "b said goodbye and stopped"
    assert program_name(["/usr/bin/python3", "-u", "/usr/local/sbin/fence-node", "{peer}"]) == "fence-node"
    assert program_name(["/usr/bin/env", "bash", "/opt/fence.sh"]) == "fence.sh" and program_name([]) is None
    assert strip_election("a becomes active: it is the only visible node", "a") == "it is the only visible node"
    assert strip_election("b stays active: it holds the role", "a") == "b stays active: it holds the role"


def test_status_shows_the_one_sentence_reason() -> None:
    now = time.mktime((2024, 5, 1, 12, 5, 0, 0, 0, -1))
    since = time.mktime((2024, 5, 1, 12, 1, 33, 0, 0, -1))
    text = render_status({"node": "nodetwo", "role": "active", "since": since, "reason": "long election text",
                          "because": "nodeone was lost (no heartbeats on 10.10.100.1 for 0.36 s) and was fenced by "
                                     "fence-node"}, now)
    assert ("  nodetwo active since 12:01:33 because nodeone was lost (no heartbeats on 10.10.100.1 for 0.36 s) "
            "and was fenced by fence-node") in text.splitlines()


def test_render_history_shows_transition_who_and_phases() -> None:
    now = time.mktime((2024, 5, 1, 12, 5, 0, 0, 0, -1))
    at = time.mktime((2024, 5, 1, 12, 1, 33, 0, 0, -1))
    ev = event("role_changed", at, "nodetwo", "r", **{"from": "standby", "to": "active"}, because="nodeone was lost",
               by="nodetwo", duration=0.45, phases=phase_durations([{"name": "trigger", "at": 0},
                                                                    {"name": "fenced", "at": 0.4},
                                                                    {"name": "active", "at": 0.45}]))
    lines = render_history([ev, event("operator", at, "nodetwo", "the operator requested cleanup")], now).splitlines()
    assert lines[0] == "12:01:33  nodetwo standby -> active because nodeone was lost [decided by nodetwo]"
    assert lines[1].strip() == "took 0.450s: fenced 0.400s, active 0.050s"
    assert lines[2] == "12:01:33  operator: the operator requested cleanup"
    assert render_history([], now) == "no events recorded yet"
    assert "unexpected" in render_history("x", now)


# -- the file -------------------------------------------------------------------------


def test_file_is_bounded_numbered_and_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "history.jsonl")
    h = HistoryFile(path, keep=5)
    for i in range(23):  # no running loop: written at once
        h.append(event("operator", float(i), "a", f"e{i}"))
    lines = Path(path).read_bytes().splitlines()
    assert 5 <= len(lines) <= 10
    assert [r["reason"] for r in h.read()][-5:] == [f"e{i}" for i in range(18, 23)]
    assert [r["seq"] for r in h.read(3)] == [21, 22, 23]
    again = HistoryFile(path, keep=5)
    again.append(event("operator", 99.0, "a", "after restart"))
    assert again.read(1)[0]["seq"] == 24 and again.read(0) == []


def test_a_torn_last_line_is_skipped_and_the_next_event_gets_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(encode({"event": "operator", "seq": 1, "reason": "kept"}) + b'{"event": "role_ch')
    h = HistoryFile(str(path))
    h.append(event("role_changed", 5.0, "a", "new"))
    assert [(r["seq"], r["reason"]) for r in h.read()] == [(1, "kept"), (2, "new")]
    assert path.read_bytes().endswith(b"\n")


def test_write_failure_is_counted_not_raised(tmp_path: Path) -> None:
    h = HistoryFile(str(tmp_path / "no" / "such" / "dir" / "history.jsonl"))
    h.append(event("operator", 1.0, "a", "x"))
    assert h.errors == 1


async def test_in_the_loop_appends_are_background_writes_readable_at_once(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    h = HistoryFile(str(path))
    for i in range(3):
        h.append(event("operator", float(i), "a", f"e{i}"))
    assert [r["reason"] for r in h.read()] == ["e0", "e1", "e2"]  # pending ones included
    await h.flush(timeout=5)
    assert [r["reason"] for r in decode(path.read_bytes())] == ["e0", "e1", "e2"]


# -- the daemon -------------------------------------------------------------------------


@pytest.fixture
def solo(tmp_path: Path) -> Iterator[Hafd]:
    d = Hafd(tmp_path)
    try:
        yield d
    finally:
        d.close()


def test_history_lists_transitions_across_restarts(solo: Hafd) -> None:
    solo.start()
    s = solo.wait_for(lambda s: s["role"] == "active", "active")
    assert s["because"] == "it is the only visible node"
    assert f"solo active since {time.strftime('%H:%M:%S', time.localtime(s['since']))} because it is the only " \
           "visible node" in solo.ctl("status").stdout
    assert solo.ctl("standby").returncode == 0
    solo.wait_for(lambda s: s["role"] == "standby", "standby")
    solo.stop()
    solo.start()
    assert solo.ctl("unstandby").returncode == 0
    solo.wait_for(lambda s: s["role"] == "active", "active again")
    r = solo.ctl("history", "--json")
    assert r.returncode == 0, r.stderr
    events = json.loads(r.stdout)
    kinds = [e["event"] for e in events]
    assert kinds.count("hafd_started") == 2
    changes = [(e["from"], e["to"], e["by"]) for e in events if e["event"] == "role_changed"]
    assert ("probing", "starting", "solo") in changes and ("starting", "active", "solo") in changes
    assert any(to == "standby" and by == "operator" for _, to, by in changes)
    assert changes[-1][1] == "active"
    ops = [e["command"] for e in events if e["event"] == "operator"]
    assert ops == ["standby", "unstandby"]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    takeover = next(e for e in events if e["event"] == "role_changed" and e["to"] == "active")
    assert [p["name"] for p in takeover["phases"]][-3:] == ["marker started", "server started", "active"]
    assert takeover["duration"] >= takeover["phases"][-2]["took"] >= 0
    human = solo.ctl("history", "-n", "2")
    assert human.returncode == 0 and len([ln for ln in human.stdout.splitlines() if not ln.startswith(" ")]) == 2
    assert "-> active because" in human.stdout
    bad = solo.ctl("history", "-n", "x")
    assert bad.returncode == 2 and "whole number" in bad.stderr


def test_history_file_is_in_the_state_dir(solo: Hafd) -> None:
    solo.start()
    solo.wait_for(lambda s: s["role"] == "active", "active")
    solo.stop()
    records = decode((solo.tmp / "state" / "history.jsonl").read_bytes())
    assert records[0]["event"] == "hafd_started" and records[-1]["event"] == "role_changed"
    assert all(r["node"] == "solo" for r in records)



def test_a_fenced_failover_is_explained_in_status_and_history(pair) -> None:  # noqa: F811, ANN001
    """Two real daemons in a namespace (tests/test_cluster_daemons.py's bed): nodeone's hafd dies."""
    from test_cluster_daemons import start_both

    start_both(pair, fencing=True)
    pair.one.kill9()
    pair.wait(lambda: pair.role(pair.two) == "active", "nodetwo takes over", timeout=15)
    s = pair.two.status()
    assert s is not None
    assert re.fullmatch(r"nodeone was lost \(no heartbeats on \S+ for 0\.\d\d s\) and was fenced by fence\S*",
                        s["because"]), s["because"]
    text = pair.two.ctl("status").stdout
    assert f"nodetwo active since {time.strftime('%H:%M:%S', time.localtime(s['since']))} because nodeone was " \
           "lost (no heartbeats on" in text
    events = json.loads(pair.two.ctl("history", "--json").stdout)
    kinds = [e["event"] for e in events]
    assert kinds.index("peer_lost") < kinds.index("fenced") < len(kinds) - 1
    takeover = [e for e in events if e["event"] == "role_changed" and e["to"] == "active"][-1]
    assert takeover["by"] == "nodetwo" and takeover["because"] == s["because"]
    names = [p["name"] for p in takeover["phases"]]
    assert names[0] == "trigger" and "fenced" in names and names[-1] == "active"
    assert takeover["duration"] == pytest.approx(sum(p["took"] for p in takeover["phases"]), abs=0.01)
