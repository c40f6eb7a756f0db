"""bench/'s pure parts: statistics, phase summaries, the false-failover figures and the JSON shape (no timing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import stats  # noqa: E402
from bench.hafd_bench import PROFILES  # noqa: E402
from bench.main import SYSTEMS, overheads, parse, ratios  # noqa: E402


def test_summary_is_median_min_max_n() -> None:
    assert stats.summary([0.3, 0.1, 0.2, 0.4]) == {"median": 0.25, "min": 0.1, "max": 0.4, "n": 4}
    assert stats.summary([0.5]) == {"median": 0.5, "min": 0.5, "max": 0.5, "n": 1}
    assert stats.summary([]) == {"median": None, "min": None, "max": None, "n": 0}


def test_phase_medians_handle_a_phase_missing_from_some_runs_and_sort_by_time() -> None:
    runs = [{"peer lost": 0.37, "active": 0.6}, {"peer lost": 0.36, "fenced": 0.4, "active": 0.5}]
    out = stats.phase_medians(runs)
    assert list(out) == ["peer lost", "fenced", "active"]
    assert out["fenced"]["n"] == 1 and out["active"]["median"] == pytest.approx(0.55)


def test_split_phases_separates_step_durations() -> None:
    offsets, took = stats.split_phases({"peer lost": 1, "drbd start took": 2, "active": 3})
    assert offsets == {"peer lost": 1, "active": 3} and took == {"drbd start": 2}


def test_interruptions_are_gaps_over_the_threshold() -> None:
    assert stats.interruptions([0.0, 0.02, 1.5, 1.52, 3.0], 1.0) == pytest.approx([1.48, 1.48])
    assert stats.interruptions([0.0, 0.5, 1.0], 1.0) == []


def test_expected_rate_of_the_shipped_and_fast_profiles_is_under_one_a_year() -> None:
    for key in ("hafd", "hafd_fast"):
        p = PROFILES[key]
        for r in stats.expected_rates(p.interval, p.deadtime, links_in_bed=2):
            assert r["per_year"] < 1.0, (key, r)
    shipped = stats.expected_false_failovers(0.025, 0.36)
    assert shipped["k"] == 14 and 0.1 < shipped["per_year"] < 0.3  # hafd.yaml says ~0.2 a year
    fast = stats.expected_false_failovers(PROFILES["hafd_fast"].interval, PROFILES["hafd_fast"].deadtime)
    assert fast["k"] == 15
    # anchors.md: 0.05 / 0.45 is ~0.7 a day; the printed line says so.
    bad = stats.format_rate(stats.expected_false_failovers(0.05, 0.45))
    assert "k = 9" in bad and "/day" in bad


def test_fast_profile_is_not_on_an_exact_multiple() -> None:
    p = PROFILES["hafd_fast"]
    ratio = p.deadtime / p.interval
    assert abs(ratio - round(ratio)) > 0.1


def test_shape_accepts_measured_and_not_measured_entries_and_flags_gaps() -> None:
    s = stats.summary([0.5, 0.6])
    good = {"machine": {}, "date": "2026-11-25", "settings": {"n": 2},
            "hafd": {"timings": {}, "hard_failover_s": s, "switchover_s": s, "overhead_s": s, "rss_mb": {"max": 39},
                     "idle_cpu_pct": {"max": 1.0}, "false_failovers": stats.not_measured("quick")},
            "keepalived_default": stats.not_measured("later session")}
    assert stats.shape_problems(good) == []
    bad = {"machine": {}, "date": "x", "hafd": {"timings": {}, "hard_failover_s": {"median": 1}},
           "pacemaker_default": {"status": stats.NOT_MEASURED}}
    problems = stats.shape_problems(bad)
    assert "hafd: missing switchover_s" in problems
    assert "hafd.hard_failover_s: needs median, min, max and n" in problems
    assert "pacemaker_default: not measured without a reason" in problems
    text = stats.table(good)
    assert "550 ms (500-600, n=2)" in text and "keepalived_default: not measured yet (later session)" in text


def test_overhead_subtracts_detection_and_the_steps_and_costs_the_stand_in() -> None:
    limit = {"steps_total_s": 0.1, "_standin_call": 0.027}
    with_s, real = overheads([0.5, 0.6], 0.36, limit)
    assert with_s == pytest.approx([0.04, 0.14])
    # hafd's promote makes DRBD_CALLS_PER_PROMOTE (2) stand-in calls; the by-hand limit has one of them
    assert real == pytest.approx([0.04 - 1 * 0.025, 0.14 - 1 * 0.025])


def test_cli_defaults_quick_and_unknown_systems() -> None:
    q = parse(["--quick"])
    assert (q.n, q.soak_minutes, q.idle_seconds) == (3, 0.0, 30.0) and q.only == list(SYSTEMS)
    f = parse(["--only", "hafd", "--soak-minutes", "2"])
    assert (f.n, f.soak_minutes, f.idle_seconds, f.only) == (20, 2.0, 300.0, ["hafd"])
    with pytest.raises(SystemExit):
        parse(["--only", "heartbeat"])
    assert set(SYSTEMS) == {"hafd", "hafd_fast", "keepalived_default", "keepalived_fast", "pacemaker_default",
                            "pacemaker_token1000"}
    assert f.soak_systems == ["hafd", "hafd_fast", "keepalived_fast"] and f.peer_idle_seconds == 60.0
    with pytest.raises(SystemExit):
        parse(["--soak-systems", "hafd,heartbeat"])
    assert (q.jitter_minutes, f.jitter_minutes, f.jitter_ms, f.jitter_systems) == (0.0, 5.0, 50.0, ["hafd"])
    assert f.sweep_jitter_ms == 0.0 and parse(["--sweep-jitter-ms", "50"]).sweep_jitter_ms == 50.0
    for bad in (["--jitter-ms", "0"], ["--jitter-minutes", "-1"], ["--jitter-systems", "heartbeat"],
                ["--sweep-jitter-ms", "-5"]):
        with pytest.raises(SystemExit):
            parse(bad)


def test_the_jitter_wire_goes_on_nodeones_side_of_every_heartbeat_link() -> None:
    from types import SimpleNamespace

    from bench.measure import heartbeat_ports

    def drv(second: bool) -> object:
        bed = SimpleNamespace(sw="s1-sw", one=SimpleNamespace(spec=SimpleNamespace(short="one")),
                              options=SimpleNamespace(second_link=second))
        return SimpleNamespace(bed=bed)

    assert heartbeat_ports(drv(True)) == ("s1-sw", [("ha", "one-eth1"), ("ha2", "one-eth3")])  # type: ignore[arg-type]
    assert heartbeat_ports(drv(False)) == ("s1-sw", [("ha", "one-eth1")])  # type: ignore[arg-type]


def test_ratios_divide_hafd_by_the_peer_where_both_have_medians() -> None:
    doc = {"hafd": {"hard_failover_s": {"median": 0.5}, "switchover_s": {"median": 0.1}},
           "keepalived_default": {"hard_failover_s": {"median": 3.0}, "switchover_s": stats.not_measured("x")},
           "pacemaker_default": {"status": stats.NOT_MEASURED, "reason": "later"}}
    assert ratios(doc) == {"hafd/keepalived_default": {"hard_failover_s": 0.167}}
    assert "hafd/keepalived_default" in stats.table({**doc, "ratios": ratios(doc)}) and "(6.0x)" in stats.table(
        {**doc, "ratios": ratios(doc)})


def test_loss_rules_drop_a_share_of_the_matching_packets_and_count_them() -> None:
    from bench.measure import BenchError, loss_rules

    text = loss_rules("hafdloss", "udp dport 694", 20)
    assert text.splitlines() == [
        "add table inet hafdloss",
        "add chain inet hafdloss input { type filter hook input priority 0; }",
        "add rule inet hafdloss input udp dport 694 numgen random mod 100 < 20 counter drop",
    ]
    assert "numgen" not in loss_rules("t", "ip protocol vrrp", 100)  # nft: the value must be below the modulus
    with pytest.raises(BenchError):
        loss_rules("t", "ip protocol vrrp", 101)


class _SweepDriver:
    """Loses the role at 70 % loss: enough of a Driver for loss_sweep."""

    key = "fake"

    def __init__(self) -> None:
        self.loss: list[int | None] = []
        self.pct = 0

    def mark(self) -> int:
        return 0

    def add_heartbeat_loss(self, pct: int) -> None:
        self.pct = pct
        self.loss.append(pct)

    def remove_heartbeat_loss(self) -> None:
        self.loss.append(None)

    def role_changes_since(self, mark: int) -> dict[str, int]:
        return {"role_changes": int(self.pct >= 70), "peer_lost": int(self.pct >= 60)}

    def loss_seen(self) -> None:
        return None


def test_loss_sweep_stops_at_the_first_level_with_a_role_change() -> None:
    from bench.measure import loss_sweep

    drv = _SweepDriver()
    out = loss_sweep(drv, [40, 60, 70, 80], 0.0001, lambda m: None)  # type: ignore[arg-type]
    assert out["first_false_failover_at_percent"] == 70
    assert [lv["loss_percent"] for lv in out["levels"]] == [40, 60, 70]
    assert drv.loss == [40, None, 60, None, 70, None]  # every rule removed again
    assert "first false failover at 70 %" in stats._sweep_brief(out)
    a = parse(["--sweep-minutes", "1", "--sweep-levels", "50,75"])
    assert (a.sweep_minutes, a.sweep_levels) == (1.0, [50, 75])
    with pytest.raises(SystemExit):
        parse(["--sweep-levels", "50,x"])
