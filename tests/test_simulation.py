"""The deterministic cluster simulation (tests/sim.py) over thousands of seeded schedules.

A failure prints the seed, the event index and the last events; replay it with
`python tests/sim.py --seed N --verbose`, fix it, and add the seed to REGRESSION_SEEDS.
HAFD_SIM_SCHEDULES sets how many schedules the bulk test runs (default 10,000, on up to
two processes).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import sim  # noqa: E402
from hafd.core.cluster import ClusterCore  # noqa: E402

# Seeds that once broke an invariant (see each commit in hafd/core/cluster.py).
REGRESSION_SEEDS = {
    9: "a rebooted ex-holder fenced the healthy survivor on its first tick: endless fence loop",
    11: "a node named active but waiting (fence/start-up) was marked decided and never stopped its adopted resources",
    45: "a switchover command overtaken by a heartbeat (ReplayGuard drop) left nobody active for 120 s",
    279: "a restarted target never learnt of a pending switchover the active honoured",
    733: "checker: a dependency killed behind the engine's back is not a dependency-order violation",
    2085: "checker: two nodes that still see each other racing on stale heartbeats is not a fencing failure",
    4168: "checker: no baseline loss once the network healed",
    104746: "a peer heard first through a command was left out of may_start: started next to the active",
    103994: "a lost peer whose new boot first said goodbye was taken as clean: takeover without fencing",
    102208: "checker: a dependency is only known dead once an op on it completed",
    101778: "a fence was reused for a later takeover after the fenced peer had rebooted unseen",
    9309: "checker: no baseline loss once the network healed",
    101962: "two crossing switchover requests: each node started on the other's stale consent (now: claim, then echo)",
}

SCHEDULES = int(os.environ.get("HAFD_SIM_SCHEDULES", "10000"))
FIRST_SEED = 100_000  # the bulk run uses seeds the regression list does not


@pytest.mark.parametrize("seed", sorted(REGRESSION_SEEDS))
def test_regression_seed(seed: int) -> None:
    sim.run_seed(seed, out=lambda _line: None)


def _run_chunk(seeds: range) -> tuple[int, int, str | None]:
    races = 0
    for seed in seeds:
        try:
            races += sim.run_seed(seed, out=lambda _line: None).races
        except sim.InvariantViolation as e:
            return seed - seeds.start, races, str(e)
    return len(seeds), races, None


def test_thousands_of_random_schedules_keep_every_invariant() -> None:
    procs = max(1, min(2, os.cpu_count() or 1))
    chunk = 250
    chunks = [range(s, min(s + chunk, FIRST_SEED + SCHEDULES)) for s in range(FIRST_SEED, FIRST_SEED + SCHEDULES, chunk)]
    t0 = time.monotonic()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(procs) as pool:
        results = pool.map(_run_chunk, chunks, chunksize=1)
    elapsed = time.monotonic() - t0
    failures = [msg for _, _, msg in results if msg]
    done = sum(n for n, _, _ in results)
    races = sum(r for _, r, _ in results)
    print(f"\n{done} schedules in {elapsed:.1f} s on {procs} process(es) "
          f"({done / elapsed:.0f}/s); {races} overlap(s) between nodes that could talk, all ended in time")
    seeds = [m.split(":", 1)[0] for m in failures]
    assert not failures, f"{len(failures)} chunk(s) failed ({', '.join(seeds)}); the first:\n{failures[0]}"
    assert done == SCHEDULES


def test_a_seed_replays_exactly() -> None:
    a: list[str] = []
    b: list[str] = []
    sim.run_seed(29, verbose=True, out=a.append)
    sim.run_seed(29, verbose=True, out=b.append)
    assert a == b and len(a) > 100


def test_schedules_exercise_what_they_claim() -> None:
    """The generator really produces fencing, three-node, partition and crash schedules."""
    scs = [sim.make_scenario(s) for s in range(300)]
    assert sum(sc.fencing for sc in scs) > 60
    assert sum(len(sc.nodes) == 3 for sc in scs) > 50
    kinds = {k for sc in scs for _, k, _ in sc.events}
    assert {"partition", "crash_node", "crash_daemon", "restart_daemon", "switchover", "res_fail", "lossy"} <= kinds


def test_the_checker_catches_a_core_that_takes_over_without_fencing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: forget that lost peers are unclean, and invariant 4 (or 1) must fire."""
    real = ClusterCore._on_membership

    def forgetful(self: ClusterCore, e: object) -> None:
        real(self, e)  # type: ignore[arg-type]
        self.unclean.clear()

    monkeypatch.setattr(ClusterCore, "_on_membership", forgetful)
    caught = []
    for seed in range(400):
        if not sim.make_scenario(seed).fencing:
            continue
        try:
            sim.run_seed(seed, out=lambda _line: None)
        except sim.InvariantViolation as e:
            caught.append(str(e))
            if len(caught) >= 3:
                break
    assert caught, "the simulation did not notice takeovers without fencing"
    assert any("without having fenced" in c or "fencing configured" in c for c in caught)
    assert "replay: python tests/sim.py --seed" in caught[0] and "last events:" in caught[0]


def test_the_checker_catches_a_core_that_ignores_split_brain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: a holder that never steps down keeps an overlap going past the bound."""
    real = ClusterCore._act_on

    def stubborn(self: ClusterCore, d, nodes, now):  # type: ignore[no-untyped-def]
        if self.target_active and d.split_brain:
            return []
        return real(self, d, nodes, now)

    monkeypatch.setattr(ClusterCore, "_act_on", stubborn)
    caught = []
    for seed in range(400):
        if sim.make_scenario(seed).fencing:
            continue
        try:
            sim.run_seed(seed, out=lambda _line: None)
        except sim.InvariantViolation as e:
            caught.append(str(e))
            break
    assert caught and ("both run resources for" in caught[0] or "expected 1 active" in caught[0]), caught
