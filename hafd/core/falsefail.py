"""How often given heartbeat timings declare a healthy peer lost, under random packet loss.

Used to check an operator's interval/deadtime before they find out in production
(anchors.md: four minutes of zero events proves little; the rate is what matters).

Model.  Heartbeats leave every `interval`; each is lost independently with probability
p on each link, and a heartbeat gets through if any of `links` independent links
delivers it, so p_eff = p ** links.  Membership declares a peer lost when the silence
after the last received heartbeat exceeds `deadtime` (strictly).  After a received
heartbeat, n lost ones in a row leave a gap of (n + 1) x interval (+ the lateness of the
next one, `jitter`), so the smallest run that trips it is

    k = floor((deadtime - jitter) / interval)

(deadtime 0.36 at interval 0.025: k = 14; deadtime 0.45 at 0.05: k = 9).  A run starts
after any received heartbeat, so per direction:

    rate = (1 / interval) x (1 - p_eff) x p_eff ** k      events per second

On an exact multiple (0.45 / 0.05) any lateness at all lowers k by one and multiplies
the rate by 1/p: that is why anchors.md says never to put deadtime there; pass `jitter`
to see it.

Directions: a false "peer lost" can happen on either node.  Only the passive node's
turns into a failover (the active node that loses its peer keeps the service), so
`expected_false_failovers_per_year` counts one direction by default and
`expected_false_peer_lost_per_year` two.  The figures in anchors.md (0.7 a day at
0.05/0.45, 0.04 a year at 0.02/0.3) and hafd.yaml's comment (0.2 a year at 0.025/0.36)
are one direction.
"""

from __future__ import annotations

import math

SECONDS_PER_YEAR = 365.25 * 86400


def losses_needed(interval: float, deadtime: float, jitter: float = 0.0) -> int:
    """The number of consecutive lost heartbeats that makes a peer look lost."""
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval}")
    if deadtime <= interval:
        raise ValueError(f"deadtime ({deadtime}) must be longer than the interval ({interval})")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    ratio = (deadtime - jitter) / interval
    nearest = round(ratio)
    if math.isclose(ratio, nearest, rel_tol=1e-9, abs_tol=1e-9):
        ratio = nearest  # 0.3 / 0.02 must be 15, not 14.999999999999998
    return max(0, math.floor(ratio))


def false_lost_rate(interval: float, deadtime: float, loss: float, links: int = 1, jitter: float = 0.0) -> float:
    """False "peer lost" events per second, one direction."""
    if not 0.0 <= loss < 1.0:
        raise ValueError(f"loss must be in [0, 1), got {loss}")
    if links < 1:
        raise ValueError(f"links must be >= 1, got {links}")
    k = losses_needed(interval, deadtime, jitter)
    p = loss**links
    return (1.0 / interval) * (1.0 - p) * p**k


def expected_false_peer_lost_per_year(
    interval: float, deadtime: float, loss: float, links: int = 1, directions: int = 2, jitter: float = 0.0
) -> float:
    """False "peer lost" events a year in a two-node cluster (both nodes watch each other)."""
    return directions * false_lost_rate(interval, deadtime, loss, links, jitter) * SECONDS_PER_YEAR


def expected_false_failovers_per_year(
    interval: float, deadtime: float, loss: float, links: int = 1, directions: int = 1, jitter: float = 0.0
) -> float:
    """False failovers a year: the passive node wrongly deciding the active one is gone."""
    return directions * false_lost_rate(interval, deadtime, loss, links, jitter) * SECONDS_PER_YEAR
