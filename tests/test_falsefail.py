"""The false-failover estimate against anchors.md's figures, and against a simulation."""

from __future__ import annotations

import random

import pytest

from hafd.core.codec import Heartbeat, Message, Role

from hafd.core.falsefail import (
    SECONDS_PER_YEAR,
    expected_false_failovers_per_year,
    expected_false_peer_lost_per_year,
    false_lost_rate,
    losses_needed,
)
from hafd.core.membership import EventKind, Membership


@pytest.mark.parametrize(
    "interval, deadtime, k",
    [(0.05, 0.45, 9), (0.02, 0.3, 15), (0.025, 0.36, 14), (0.05, 0.75, 15), (0.1, 0.35, 3), (1.0, 3.0, 3)],
)
def test_losses_needed(interval: float, deadtime: float, k: int) -> None:
    assert losses_needed(interval, deadtime) == k


def test_exact_multiple_loses_one_heartbeat_of_margin_to_any_jitter() -> None:
    assert losses_needed(0.05, 0.45, jitter=0.001) == 8
    assert losses_needed(0.025, 0.36, jitter=0.001) == 14  # 0.36 sits between multiples
    on = expected_false_failovers_per_year(0.05, 0.45, 0.2, jitter=0.001)
    assert on == pytest.approx(expected_false_failovers_per_year(0.05, 0.45, 0.2) / 0.2)


# anchors.md and hafd.yaml, one direction
@pytest.mark.parametrize(
    "interval, deadtime, per_year",
    [
        (0.05, 0.45, 0.7 * 365.25),  # "~0.7 a day"
        (0.05, 0.75, 1 / 60),  # "about one in 60 years"
        (0.02, 0.3, 0.04),  # "~0.04 a year"
        (0.025, 0.36, 0.2),  # hafd.yaml: "~0.2 false failovers a year"
    ],
)
def test_anchor_figures(interval: float, deadtime: float, per_year: float) -> None:
    got = expected_false_failovers_per_year(interval, deadtime, 0.2)
    assert per_year / 1.3 < got < per_year * 1.3
    assert expected_false_peer_lost_per_year(interval, deadtime, 0.2) == pytest.approx(2 * got)


def test_redundant_links_need_a_run_on_all_of_them() -> None:
    one = expected_false_failovers_per_year(0.025, 0.36, 0.2, links=1)
    two = expected_false_failovers_per_year(0.025, 0.36, 0.2, links=2)
    # p_eff = 0.04: fourteen in a row on both links at once
    assert two == pytest.approx(40 * 0.96 * 0.04**14 * SECONDS_PER_YEAR)
    assert two < one * 1e-9


def test_no_loss_no_false_failovers() -> None:
    assert expected_false_failovers_per_year(0.025, 0.36, 0.0) == 0.0


@pytest.mark.parametrize(
    "args, match",
    [
        ((0.0, 0.36, 0.2), "interval"),
        ((0.5, 0.4, 0.2), "deadtime"),
        ((0.025, 0.36, 1.0), "loss"),
        ((0.025, 0.36, -0.1), "loss"),
    ],
)
def test_bad_input_is_a_clear_error(args: tuple[float, float, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        expected_false_failovers_per_year(*args)
    with pytest.raises(ValueError, match="links"):
        false_lost_rate(0.025, 0.36, 0.2, links=0)


def test_formula_matches_the_real_membership_under_simulated_loss() -> None:
    """Drive Membership itself with random loss and count PEER_LOST; compare with the formula."""
    interval, deadtime, p = 1.0, 3.5, 0.5  # k = 3: about 6 events per 100 heartbeats
    rng = random.Random(7)
    ms = Membership("nodeone", {"nodetwo": ["10.0.0.2"]}, interval, deadtime)
    hb = Heartbeat(role=Role.ACTIVE, epoch=1, config_hash=b"\0" * 32, priority=1)
    beats = 50_000
    events = 0
    for seq in range(1, beats + 1):
        t = seq * interval
        events += sum(e.kind is EventKind.PEER_LOST for e in ms.tick(t))
        if seq == 1 or rng.random() >= p:
            ms.on_heartbeat("nodetwo", "10.0.0.2", Message("nodetwo", b"\1" * 16, seq, t, hb), t)
    expected = false_lost_rate(interval, deadtime, p) * beats * interval
    assert expected * 0.9 < events < expected * 1.1
