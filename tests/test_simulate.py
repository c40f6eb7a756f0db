"""`hafctl simulate`: the daemon's cores replayed on a virtual clock, from a cold start or a live daemon.

Offline stories run on the shipped config/hafd.yaml (which configures fencing and a
tiebreaker) and on variants of it; the live tests start real daemons and check that
the simulation starts from what they report and changes nothing in it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from hafd import cli
from hafd.core.configload import load_config, parse_config
from hafd.simulate import SimulateError, Simulation, parse_events, simulate

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "hafd.yaml"


def variant(tmp_path: Path, name: str = "variant.yaml", *, fencing: bool = True, tiebreaker: bool = True,
            two_links: bool = False) -> Path:
    doc = yaml.safe_load(SHIPPED.read_text())
    if not fencing:
        del doc["cluster"]["fencing"]
    if not tiebreaker:
        del doc["cluster"]["tiebreaker"]
    if two_links:
        doc["nodes"]["nodeone"]["links"] = ["10.10.100.1", "10.10.102.1"]
        doc["nodes"]["nodetwo"]["links"] = ["10.10.100.2", "10.10.102.2"]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(path: Path, *words: str, status: dict[str, Any] | None = None) -> Simulation:
    cfg = load_config(str(path))
    return simulate(cfg, parse_events(list(words), cfg), status)


def steps(sim: Simulation, i: int = 0) -> list[tuple[float, str | None, str, str]]:
    r = sim.results[i]
    return [(round(s.at - r.t0, 4), s.node, s.kind, s.text) for s in r.steps]


def ops(sim: Simulation, kind: str, node: str, i: int = 0) -> list[str]:
    """Resources started (kind "start") or stopped on `node`, in order."""
    return [text.split(":")[0].split()[1] for _, n, k, text in steps(sim, i) if k == kind and n == node]


def index(sim: Simulation, pred: Any, i: int = 0) -> int:
    return next(j for j, s in enumerate(steps(sim, i)) if pred(s))


def before(order: list[str], a: str, b: str) -> bool:
    return order.index(a) < order.index(b)


# -- the starting state ---------------------------------------------------------------------


def test_cold_start_puts_the_preferred_node_in_charge_of_everything() -> None:
    sim = run(SHIPPED, "unstandby", "nodetwo")
    assert sim.start["active_node"] == "nodeone"
    assert sim.start["nodes"]["nodeone"]["running"] == ["drbd", "data", "vip", "dhcpd"]
    assert sim.start["nodes"]["nodetwo"]["role"] == "standby" and sim.start["nodes"]["nodetwo"]["running"] == []
    assert sim.render().startswith("starting state (")


# -- node lost -------------------------------------------------------------------------------


def test_node_lost_the_standby_takes_over_in_dependency_order_after_the_deadtime(tmp_path: Path) -> None:
    sim = run(variant(tmp_path, fencing=False), "node-lost", "nodeone")
    st = steps(sim)
    assert st[0][:3] == (0.0, "nodeone", "down")
    lost = [s for s in st if s[2] == "peer_lost"]
    assert [(n, t) for t, n, _, _ in lost] == [("nodetwo", 0.361)]  # deadtime 0.36 s, strictly more
    assert "no valid heartbeat within 0.36 s" in lost[0][3]
    starts = ops(sim, "start", "nodetwo")
    assert sorted(starts) == ["data", "dhcpd", "drbd", "vip"]
    assert before(starts, "drbd", "data") and before(starts, "data", "dhcpd") and before(starts, "vip", "dhcpd")
    assert all(t >= 0.36 for t, _, k, _ in st if k == "start")
    assert not [s for s in st if s[2] == "fence"]
    r = sim.results[0].state
    assert r["active_node"] == "nodetwo" and r["nodes"]["nodetwo"]["running"] == ["drbd", "data", "vip", "dhcpd"]
    assert not r["nodes"]["nodeone"]["up"] and not r["nodes"]["nodeone"]["fenced"]
    assert sim.results[0].settled
    text = sim.render()
    assert "after node-lost nodeone:" in text
    assert "result: nodetwo active, running drbd, data, vip, dhcpd; nodeone down" in text


def test_with_fencing_the_fence_comes_before_any_start(tmp_path: Path) -> None:
    sim = run(variant(tmp_path, tiebreaker=False), "node-lost", "nodeone")
    st = steps(sim)
    fence = index(sim, lambda s: s[2] == "fence")
    fenced = index(sim, lambda s: s[2] == "peer_fenced")
    first_start = index(sim, lambda s: s[2] == "start")
    assert fence < fenced < first_start
    assert st[fence][1] == "nodetwo"
    assert "/usr/local/sbin/fence-node nodeone (cluster.fencing)" in st[fence][3]
    assert sim.results[0].state["nodes"]["nodeone"]["fenced"] is True
    assert "nodeone down (fenced)" in sim.render()


def test_when_fencing_fails_nobody_takes_over_and_the_retries_are_counted() -> None:
    sim = run(SHIPPED, "fence-fails", "nodeone", "node-lost", "nodeone")
    assert steps(sim, 0)[0][2] == "fence_fails"
    r = sim.results[1]
    assert not r.settled and any("fencing nodeone failed" in w for w in r.waiting)
    assert not [s for s in steps(sim, 1) if s[2] == "start"]
    fence = next(s for s in r.steps if s.kind == "fence")
    assert fence.repeats >= 5 and fence.last_at > fence.at  # retried every second, shown once
    assert r.state["active_node"] is None
    assert "repeated" in sim.render() and "not settled" in sim.render()


def test_tiebreaker_lost_on_the_standby_while_the_active_is_lost_means_nobody_takes_over() -> None:
    sim = run(SHIPPED, "tiebreaker-lost", "nodetwo", "node-lost", "nodeone")
    assert [k for _, _, k, _ in steps(sim, 0)] == ["tiebreaker", "tiebreaker_changed"]
    assert sim.results[0].state["active_node"] == "nodeone"  # nothing moves yet: nodeone is healthy
    st = steps(sim, 1)
    assert not [s for s in st if s[2] in ("start", "fence", "claim", "role_target")]
    election = [text for _, n, k, text in st if k == "election" and n == "nodetwo"]
    assert election == ["election: no node is eligible: nodetwo cannot reach the tiebreaker"]
    assert sim.results[1].settled and sim.results[1].state["active_node"] is None
    assert "no node is active" in sim.render()


def test_node_back_after_a_failover_does_not_take_the_service_back_without_failback(tmp_path: Path) -> None:
    sim = run(variant(tmp_path, fencing=False), "node-lost", "nodeone", "node-back", "nodeone")
    st = steps(sim, 1)
    assert st[0][1:3] == ("nodeone", "boot")
    assert not [s for s in st if s[2] == "start"]
    assert sim.results[1].state["active_node"] == "nodetwo"
    assert sim.results[1].state["nodes"]["nodeone"]["role"] == "standby"


# -- resource failures --------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3])
def test_resource_failures_up_to_the_threshold_restart_it_where_it_runs(count: int) -> None:
    words = ["resource-failed", "dhcpd"] + ([f"x{count}"] if count > 1 else [])
    sim = run(SHIPPED, *words)
    st = steps(sim)
    assert st[0][:3] == (0.0, "nodeone", "monitor_failed")
    assert ops(sim, "stop", "nodeone") == ["dhcpd"] * count
    assert ops(sim, "start", "nodeone") == ["dhcpd"] * count
    assert not ops(sim, "start", "nodetwo")
    assert [round(t, 3) for t, _, k, _ in st if k == "monitor_failed"] == [5.0 * i for i in range(count)]
    r = sim.results[0].state
    assert r["active_node"] == "nodeone" and r["nodes"]["nodeone"]["failures"] == {"dhcpd": count}
    assert r["nodes"]["nodeone"]["running"] == ["drbd", "data", "vip", "dhcpd"]


def test_a_failure_past_the_threshold_moves_the_service_stopping_before_starting() -> None:
    sim = run(SHIPPED, "resource-failed", "dhcpd", "nodeone", "x4")
    st = steps(sim)
    gave_up = index(sim, lambda s: s[2] == "stop" and "given up on" in s[3])
    assert "4 failures within 300s exceed migration_threshold 3" in st[gave_up][3]
    stops = ops(sim, "stop", "nodeone")
    assert stops[:3] == ["dhcpd"] * 3  # three restarts, then the fourth failure gives up
    tail = stops[3:]
    assert sorted(tail) == ["data", "dhcpd", "drbd", "vip"]
    assert before(tail, "dhcpd", "data") and before(tail, "dhcpd", "vip") and before(tail, "data", "drbd")
    last_stop = max(j for j, s in enumerate(st) if s[2] == "stop")
    first_remote = index(sim, lambda s: s[2] == "start" and s[1] == "nodetwo")
    assert last_stop < first_remote
    assert ops(sim, "start", "nodetwo") == ["drbd", "vip", "data", "dhcpd"]
    r = sim.results[0].state
    assert r["active_node"] == "nodetwo" and r["nodes"]["nodeone"]["blocked"] == ["dhcpd"]
    assert "nodeone standby (gave up on dhcpd)" in sim.render()


def test_a_resource_that_runs_nowhere_cannot_fail() -> None:
    sim = run(SHIPPED, "standby", "nodeone", "standby", "nodetwo", "resource-failed", "dhcpd")
    assert sim.results[1].state["active_node"] is None
    assert [k for _, _, k, _ in steps(sim, 2)] == ["refused"]
    assert "dhcpd does not run anywhere" in steps(sim, 2)[0][3]


# -- operator commands and links -------------------------------------------------------------------


def test_standby_of_the_active_node_stops_in_order_then_starts_on_the_peer() -> None:
    sim = run(SHIPPED, "standby", "nodeone")
    st = steps(sim)
    stops = ops(sim, "stop", "nodeone")
    assert sorted(stops) == ["data", "dhcpd", "drbd", "vip"]
    assert before(stops, "dhcpd", "data") and before(stops, "dhcpd", "vip") and before(stops, "data", "drbd")
    assert max(j for j, s in enumerate(st) if s[2] == "stop") < index(sim, lambda s: s[2] == "start")
    assert ops(sim, "start", "nodetwo") == ["drbd", "vip", "data", "dhcpd"]
    assert not [s for s in st if s[2] == "fence"]  # nodeone is seen stopping: no fencing needed
    r = sim.results[0].state
    assert r["active_node"] == "nodetwo" and r["nodes"]["nodeone"]["standby"] is True


def test_failover_moves_the_service_and_a_refused_one_says_why() -> None:
    sim = run(SHIPPED, "failover", "failover", "nodetwo")
    assert sim.results[0].state["active_node"] == "nodetwo"
    assert ops(sim, "start", "nodetwo") == ["drbd", "vip", "data", "dhcpd"]
    st = steps(sim, 1)
    assert [k for _, _, k, _ in st] == ["refused"] and "nodetwo is already active" in st[0][3]


def test_one_of_two_links_down_moves_nothing(tmp_path: Path) -> None:
    sim = run(variant(tmp_path, two_links=True), "link-down", "nodeone", "10.10.100.1")
    st = steps(sim)
    kinds = {k for _, _, k, _ in st}
    assert kinds == {"link", "link_down"}, st
    assert {n for _, n, k, _ in st if k == "link_down"} == {"nodeone", "nodetwo"}
    assert sim.results[0].state == sim.start | {"nodes": sim.results[0].state["nodes"]}
    assert sim.results[0].state["active_node"] == "nodeone"
    assert sim.results[0].state["nodes"]["nodeone"]["running"] == ["drbd", "data", "vip", "dhcpd"]


def test_both_links_down_with_fencing_the_standby_fences_the_active(tmp_path: Path) -> None:
    sim = run(variant(tmp_path, two_links=True, tiebreaker=False),
              "link-down", "nodeone", "10.10.100.1", "link-down", "nodeone", "10.10.102.1")
    st = steps(sim, 1)
    assert index(sim, lambda s: s[2] == "fence" and s[1] == "nodetwo", 1) < index(sim, lambda s: s[2] == "start", 1)
    assert ("nodeone", "down") in [(n, k) for _, n, k, _ in st]
    assert sim.results[1].state["active_node"] == "nodetwo"


# -- input errors, determinism, the command line ---------------------------------------------------


@pytest.mark.parametrize("words, message", [
    ([], "no event given"),
    (["explode", "nodeone"], "unknown event 'explode'"),
    (["node-lost"], "node-lost needs a node name"),
    (["node-lost", "nodethree"], "unknown node 'nodethree'"),
    (["link-down", "nodeone", "10.10.100.2"], "10.10.100.2 is not a link of nodeone"),
    (["link-down", "nodeone"], "needs one of its link addresses (10.10.100.1)"),
    (["resource-failed", "dhcp"], "not 'dhcp'"),
    (["resource-failed", "dhcpd", "x0"], "the count must be 1..100"),
    (["resource-failed", "dhcpd", "nodeone", "twice"], "unknown event 'twice'"),
])
def test_bad_events_are_clear_errors(words: list[str], message: str) -> None:
    with pytest.raises(SimulateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_events(words, load_config(str(SHIPPED)))


def test_features_an_event_needs_must_be_configured(tmp_path: Path) -> None:
    cfg = load_config(str(variant(tmp_path, fencing=False, tiebreaker=False)))
    with pytest.raises(SimulateError, match="no fencing is configured"):
        parse_events(["fence-fails", "nodeone"], cfg)
    with pytest.raises(SimulateError, match="no tiebreaker is configured"):
        parse_events(["tiebreaker-lost", "nodeone"], cfg)


def test_event_syntax_variants_parse_as_documented() -> None:
    cfg = load_config(str(SHIPPED))
    evs = parse_events("resource-failed dhcpd nodetwo x2 failover failover nodeone standby nodetwo".split(), cfg)
    assert [(e.kind, e.node, e.resource, e.count, str(e)) for e in evs] == [
        ("resource-failed", "nodetwo", "dhcpd", 2, "resource-failed dhcpd nodetwo x2"),
        ("failover", None, None, 1, "failover"),
        ("failover", "nodeone", None, 1, "failover nodeone"),
        ("standby", "nodetwo", None, 1, "standby nodetwo"),
    ]


def test_the_same_events_always_give_the_same_story() -> None:
    a = run(SHIPPED, "node-lost", "nodeone", "node-back", "nodeone").as_json()
    b = run(SHIPPED, "node-lost", "nodeone", "node-back", "nodeone").as_json()
    assert a == b


def test_hafctl_simulate_offline_json_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "--config", str(SHIPPED), "--json", "node-lost", "nodeone"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["start"]["active_node"] == "nodeone" and doc["final"]["active_node"] == "nodetwo"
    ev = doc["events"][0]
    assert ev["event"] == "node-lost nodeone" and ev["settled"] is True
    assert ev["steps"][0] == {"at": 0.0, "node": "nodeone", "kind": "down",
                              "text": "is lost (node-lost): it stops sending heartbeats and nothing runs there any more"}
    assert ev["summary"] == "nodetwo active, running drbd, data, vip, dhcpd; nodeone down (fenced)"
    assert cli.main(["simulate", "--config", str(SHIPPED), "standby", "nodeone"]) == 0
    out = capsys.readouterr().out
    assert "after standby nodeone:" in out and "+0.000s  nodeone: stop dhcpd" in out


def test_hafctl_simulate_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["simulate", "--config", str(SHIPPED), "node-lost", "nodethree"])
    assert e.value.code == 2 and "unknown node 'nodethree'" in capsys.readouterr().err


def test_hafctl_simulate_live_without_a_daemon_exits_3_and_suggests_config(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--socket", str(tmp_path / "none.sock"), "--config", str(SHIPPED), "simulate", "node-lost", "nodeone"])
    assert code == 3 and "hafctl simulate --config PATH" in capsys.readouterr().err


# -- from a status answer (no daemon) -------------------------------------------------------------


def status_of(local: str, active: str | None, *, standby: tuple[str, ...] = (), lost: tuple[str, ...] = (),
              running: bool = True, failures: dict[str, int] | None = None,
              links_down: tuple[str, ...] = ()) -> dict[str, Any]:
    """A `status` answer as hafd/daemon.py builds it (only the fields simulate reads, and some others)."""
    nodes: dict[str, Any] = {}
    for n, addr in (("nodeone", "10.10.100.1"), ("nodetwo", "10.10.100.2")):
        state = "standby" if n in standby else "lost" if n in lost else "online"
        nodes[n] = {"state": state, "local": n == local, "priority": 100 if n == "nodeone" else 90,
                    "role": "active" if n == active else "standby",
                    "links": {addr: {"state": "down" if addr in links_down else "up"}}}
    res = {r: {"type": "x", "state": "started" if running else "stopped", "failures": (failures or {}).get(r, 0),
               "blocked": False} for r in ("drbd", "data", "vip", "dhcpd")}
    return {"node": local, "role": "active" if local == active else "standby", "active_node": active,
            "nodes": nodes, "resources": res}


def test_live_state_keeps_the_lower_priority_node_active_and_simulates_from_there() -> None:
    sim = run(SHIPPED, "node-lost", "nodetwo", status=status_of("nodetwo", "nodetwo"))
    assert sim.source.startswith("the live state of nodetwo")
    assert sim.start["active_node"] == "nodetwo"  # not the cold start's answer (nodeone)
    assert sim.results[0].state["active_node"] == "nodeone"
    assert ops(sim, "start", "nodeone") == ["drbd", "vip", "data", "dhcpd"]


def test_live_failure_counts_bring_the_threshold_closer() -> None:
    status = status_of("nodeone", "nodeone", failures={"dhcpd": 3})
    live = run(SHIPPED, "resource-failed", "dhcpd", status=status)
    assert live.start["nodes"]["nodeone"]["failures"] == {"dhcpd": 3}
    assert live.results[0].state["active_node"] == "nodetwo"  # the 4th failure gives up
    cold = run(SHIPPED, "resource-failed", "dhcpd")
    assert cold.results[0].state["active_node"] == "nodeone"  # the 1st only restarts it


def test_live_standby_lost_peer_and_down_links_are_carried_over(tmp_path: Path) -> None:
    sim = run(SHIPPED, "unstandby", "nodeone", status=status_of("nodeone", None, standby=("nodeone",), lost=("nodetwo",),
                                                                 running=False))
    assert sim.start["nodes"]["nodeone"]["standby"] is True and sim.start["active_node"] is None
    assert sim.start["nodes"]["nodetwo"]["up"] is False
    assert sim.results[0].state["active_node"] == "nodeone"
    cfg2 = variant(tmp_path, two_links=True)
    st = status_of("nodeone", "nodeone")
    st["nodes"]["nodetwo"]["links"] = {"10.10.100.2": {"state": "down"}, "10.10.102.2": {"state": "up"}}
    sim = run(cfg2, "link-down", "nodeone", "10.10.102.1", status=st)
    assert sim.results[0].state["active_node"] == "nodetwo"  # the last working link goes: a partition


def test_a_status_that_does_not_match_the_config_is_refused(tmp_path: Path) -> None:
    st = status_of("nodeone", "nodeone")
    del st["resources"]["dhcpd"]
    with pytest.raises(SimulateError, match="does not describe the running cluster"):
        run(SHIPPED, "node-lost", "nodeone", status=st)
    with pytest.raises(SimulateError, match="lacks"):
        run(SHIPPED, "node-lost", "nodeone", status={"node": "nodeone"})


# -- against real daemons ----------------------------------------------------------------------------


def comparable(status: dict[str, Any] | None) -> Any:
    """A status without what changes by itself (ages, loss estimates, timestamps of monitors)."""
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in ("last_seen_ago", "loss", "at")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return strip(status)


def steady(read: Any, timeout: float = 10.0) -> Any:
    """A status that no longer changes by itself (the first monitors fill in details): bounded poll."""
    import time

    deadline = time.monotonic() + timeout
    last = comparable(read())
    while time.monotonic() < deadline:
        time.sleep(0.3)  # a few monitor intervals apart (0.2 s here, 0.5 s in the pair)
        now = comparable(read())
        if now == last and comparable(read()) == now:
            return now
        last = now
    raise AssertionError(f"status keeps changing: {differences(last, comparable(read()))}")


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


@pytest.fixture
def solo(tmp_path: Path) -> Iterator[Any]:
    from test_daemon import Hafd, alive

    d = Hafd(tmp_path)
    try:
        yield d
    finally:
        d.close()


def hafctl(*args: str) -> subprocess.CompletedProcess[str]:
    from test_daemon import HAFCTL

    return subprocess.run([HAFCTL, *args], capture_output=True, text=True, timeout=60)


def test_live_simulation_starts_from_the_daemon_state_and_changes_nothing(solo: Any) -> None:
    solo.start()
    solo.wait_for(lambda s: s["role"] == "active", "active")
    first = solo.server_pid()
    os.kill(first, signal.SIGKILL)  # one real failure: migration_threshold 1 allows no more
    solo.wait_for(lambda s: s["resources"]["server"]["failures"] == 1 and s["resources"]["server"]["state"] == "started"
                  and s["role"] == "active", "restarted once")
    pid = solo.server_pid()
    was = steady(solo.status)
    r = hafctl("--config", str(solo.config), "simulate", "--json", "resource-failed", "server")
    assert r.returncode == 0, r.stderr
    live = json.loads(r.stdout)
    assert live["source"].startswith("the live state of solo")
    assert live["start"]["nodes"]["solo"]["failures"] == {"server": 1}
    final = live["final"]["nodes"]["solo"]
    assert final["role"] == "failed" and final["blocked"] == ["server"] and final["running"] == ["marker"]
    cold = json.loads(hafctl("simulate", "--config", str(solo.config), "--json", "resource-failed", "server").stdout)
    assert cold["start"]["nodes"]["solo"]["failures"] == {}
    assert cold["final"]["nodes"]["solo"]["role"] == "active"  # a fresh start only restarts it
    text = hafctl("--config", str(solo.config), "simulate", "node-lost", "solo")
    assert text.returncode == 0 and "result: no node is active; solo down" in text.stdout
    assert "not settled" not in text.stdout
    assert differences(was, comparable(solo.status())) == []
    assert solo.server_pid() == pid and (solo.tmp / "marker").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_live_simulation_on_a_pair_reads_the_peer_and_changes_nothing(tmp_path: Path) -> None:
    from ns_helpers import NetNs
    from test_cluster_daemons import Pair, start_both

    ns = NetNs.create()
    pair = Pair(tmp_path, ns)
    try:
        ns.ip("addr", "add", "127.0.0.2/8", "dev", "lo")
        ns.ip("addr", "add", "127.0.0.3/8", "dev", "lo")
        start_both(pair)
        was = steady(lambda: {n.name: n.status() for n in pair.nodes()})
        r = hafctl("--socket", str(pair.two.dir / "hafd.sock"), "--config", str(pair.two.cfg), "simulate", "--json",
                   "node-lost", "nodeone")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["start"]["active_node"] == "nodeone" and doc["start"]["nodes"]["nodetwo"]["role"] == "standby"
        assert doc["final"]["active_node"] == "nodetwo"
        starts = [s["text"].split(":")[0] for s in doc["events"][0]["steps"] if s["kind"] == "start"]
        assert starts == ["start base", "start app"]
        assert differences(was, comparable({n.name: n.status() for n in pair.nodes()})) == []
        assert pair.one.running() and not pair.two.running()
    finally:
        for n in pair.nodes():
            n.kill9()
            pid = n.app_pid()
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        ns.delete()


def test_the_variant_configs_validate(tmp_path: Path) -> None:
    for kw in ({"fencing": False}, {"tiebreaker": False}, {"two_links": True}):
        parse_config(variant(tmp_path, **kw).read_text(), "v.yaml")
