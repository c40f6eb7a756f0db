"""bench/run's Python half: build each system's test bed, measure, print a table, write the JSON.

Systems are named entries in SYSTEMS: a factory for a Driver (bench/measure.py), or None with the
reason it is not measured yet.  keepalived and Pacemaker join by adding their Driver factories
there; every measurement, the table and the JSON then treat them exactly as hafd.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bench import keepalived_bench, measure, pacemaker_bench
from bench.hafd_bench import DRBD_CALLS_PER_PROMOTE, DRBD_CALLS_PER_SWITCHOVER, PROFILES, REAL_DRBDADM_S, HafdDriver
from bench.stats import (SOAK_LOSS, expected_rates, format_rate, not_measured, phase_medians, shape_problems, split_phases,
                         summary, table)
from integration.prober import Prober

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS: dict[str, Callable[[], measure.Driver]] = {
    "hafd": lambda: HafdDriver(PROFILES["hafd"]),
    "hafd_fast": lambda: HafdDriver(PROFILES["hafd_fast"]),
    "keepalived_default": lambda: keepalived_bench.driver("keepalived_default"),
    "keepalived_fast": lambda: keepalived_bench.driver("keepalived_fast"),
    "pacemaker_default": lambda: pacemaker_bench.driver("pacemaker_default"),
    "pacemaker_token1000": lambda: pacemaker_bench.driver("pacemaker_token1000"),
}
# The soak is what proves a timing loss-proof, so it runs where that is claimed: hafd's two
# profiles and keepalived's fast setting (the issue's "fastest setting that shows no false
# failover").  keepalived's default and Pacemaker are slow enough not to need it, and 10 min
# each would double the bench's length.
SOAKED = ("hafd", "hafd_fast", "keepalived_fast")
# Ratios hafd / peer (below 1: hafd is faster), per figure: (hafd profile, peer).
RATIOS = (("hafd", "keepalived_default"), ("hafd", "pacemaker_default"), ("hafd", "pacemaker_token1000"),
          ("hafd_fast", "keepalived_fast"), ("hafd", "keepalived_fast"))
GAP_LIMIT = 1.0  # a prober gap longer than this during the soak counts as a service interruption
PROBE_INTERVAL = measure.PROBE_INTERVAL


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "kernel": platform.release(), "cpus": os.cpu_count(), "cpu": model,
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()[0]}


def overheads(samples: list[float], detection: float, limit: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Each failover minus the physical limit; and the same with the stand-in's calls costed as the real tool's."""
    base = detection + limit["steps_total_s"]
    extra = (DRBD_CALLS_PER_PROMOTE - 1) * (limit["_standin_call"] - REAL_DRBDADM_S)
    with_standin = [s - base for s in samples]
    return with_standin, [o - extra for o in with_standin]


def measure_system(key: str, factory: Callable[[], measure.Driver], a: argparse.Namespace,
                   rng: random.Random) -> dict[str, Any]:
    drv = factory()
    entry: dict[str, Any] = {"timings": drv.timings}
    prober: Prober | None = None
    t_start = time.monotonic()
    try:
        log(f"{key}: building the test bed")
        drv.build()
        prober = Prober.start(drv.spawn, drv.client_netns, interval=PROBE_INTERVAL)
        limit = None
        if isinstance(drv, HafdDriver):
            log(f"{key}: the physical limit, by hand (no HA daemon running)")
            limit = drv.physical_limit(prober, max(3, min(a.n, 10)), log)
        active = drv.start_pair()
        log(f"{key}: {active} active; {a.n} hard failovers")
        fo = measure.hard_failovers(drv, prober, active, a.n, rng, log)
        entry["hard_failover_s"] = measure.summarize_runs(fo)
        offsets, took = split_phases(phase_medians(fo.phases))
        entry["failover_phases_s"], entry["failover_step_durations_s"] = offsets, took
        if limit is not None:
            with_s, real = overheads(fo.samples, drv.detection, limit)
            entry["overhead_s"] = summary(with_s)
            entry["overhead_real_drbdadm_s"] = summary(real)
            entry["physical_limit"] = {k: v for k, v in limit.items() if not k.startswith("_")}
            entry["physical_limit"]["detection_s"] = drv.detection
        else:
            entry["overhead_s"] = not_measured(f"no by-hand physical limit for {key}")
        log(f"{key}: {a.n} planned switchovers")
        so = measure.switchovers(drv, prober, fo.active, a.n, rng, log)
        entry["switchover_s"] = measure.summarize_runs(so)
        entry["switchover_from_daemon_s"] = summary(so.from_daemon)
        if limit is not None:
            # An estimate, labelled as one: the stand-in's calls costed as drbd-utils' (~2 ms).
            extra = DRBD_CALLS_PER_SWITCHOVER * (limit["_standin_call"] - REAL_DRBDADM_S)
            entry["switchover_real_drbdadm_s"] = summary([s - extra for s in so.samples])
        idle = a.idle_seconds if isinstance(drv, HafdDriver) else min(a.idle_seconds, a.peer_idle_seconds)
        fp = measure.footprint(drv, so.active, idle, log)
        by_role = {v["role"]: v for v in fp["nodes"].values()}
        for out_key, k in (("rss_mb", "rss_mb"), ("pss_mb", "pss_mb"), ("idle_cpu_pct", "cpu_pct"),
                           ("idle_cpu_with_children_pct", "children_cpu_pct")):
            vals = {role: v[k] for role, v in by_role.items()}
            if out_key == "idle_cpu_with_children_pct":
                vals = {role: round(v["cpu_pct"] + v["children_cpu_pct"], 2) for role, v in by_role.items()}
            entry[out_key] = {**vals, "max": max(vals.values())}
        entry["footprint"] = fp
        if a.soak_minutes > 0 and key in a.soak_systems:
            log(f"{key}: soak, {a.soak_minutes:g} min, {SOAK_LOSS:.0%} heartbeat loss on every link, 2 CPU burners")
            entry["false_failovers"] = measure.soak(drv, prober, so.active, a.soak_minutes, round(SOAK_LOSS * 100),
                                                    GAP_LIMIT, log)
        elif a.soak_minutes > 0:
            entry["false_failovers"] = not_measured(f"soaked only: {', '.join(a.soak_systems)} (--soak-systems)")
        else:
            entry["false_failovers"] = not_measured("soak skipped (--quick or --soak-minutes 0)")
        if a.jitter_minutes > 0 and key in a.jitter_systems:
            log(f"{key}: jitter soak, {a.jitter_minutes:g} min, {SOAK_LOSS:.0%} loss and 0-{a.jitter_ms:g} ms random "
                f"delay on every heartbeat link, 2 CPU burners")
            entry["false_failovers_with_jitter"] = measure.soak(
                drv, prober, so.active, a.jitter_minutes, round(SOAK_LOSS * 100), GAP_LIMIT, log,
                jitter_s=a.jitter_ms / 1000.0, seed=rng.randrange(2**31))
        if a.sweep_minutes > 0:
            log(f"{key}: loss sweep, {a.sweep_minutes:g} min per level: {a.sweep_levels}")
            entry["loss_sweep"] = measure.loss_sweep(drv, a.sweep_levels, a.sweep_minutes, log,
                                                     jitter_s=a.sweep_jitter_ms / 1000.0, seed=rng.randrange(2**31))
    except Exception as e:  # noqa: BLE001 - one system's failure must not lose the others' figures
        log(f"{key}: FAILED: {e}")
        entry["error"] = f"{type(e).__name__}: {e}"
        entry["traceback"] = traceback.format_exc(limit=5)
        for k in ("hard_failover_s", "switchover_s", "overhead_s", "rss_mb", "idle_cpu_pct", "false_failovers"):
            entry.setdefault(k, not_measured(f"the run failed before this: {e}"[:300]))
    finally:
        if prober is not None:
            prober.stop()
        problems = drv.close()
        if problems:
            entry["teardown_problems"] = problems
    if isinstance(drv, HafdDriver):
        entry["expected_false_failovers"] = expected_rates(drv.interval, drv.detection, links_in_bed=2)
    entry["duration_s"] = round(time.monotonic() - t_start, 1)
    return entry


def ratios(doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """hafd / peer for each timed figure both have a median of: below 1, hafd is faster."""
    out: dict[str, dict[str, float]] = {}
    for mine, peer in RATIOS:
        for fig in ("hard_failover_s", "switchover_s"):
            a, b = (doc.get(k, {}).get(fig, {}) for k in (mine, peer))
            if isinstance(a, Mapping) and isinstance(b, Mapping) and a.get("median") and b.get("median"):
                out.setdefault(f"{mine}/{peer}", {})[fig] = round(float(a["median"]) / float(b["median"]), 3)
    return out


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description="hafd's benchmark (issue 5): failover, switchover, "
                                "overhead, footprint and false failovers on the namespace test bed.")
    p.add_argument("--quick", action="store_true", help="n = 3, 30 s idle window, no soak")
    p.add_argument("--only", help=f"comma-separated systems ({', '.join(SYSTEMS)})")
    p.add_argument("--n", type=int, help="runs per timed figure (default 20; --quick 3)")
    p.add_argument("--soak-minutes", type=float, help="false-failover soak (default 10; --quick 0)")
    p.add_argument("--idle-seconds", type=float, help="idle CPU window (default 300; --quick 30)")
    p.add_argument("--peer-idle-seconds", type=float, default=60.0,
                   help="idle CPU window for keepalived and Pacemaker (default 60; hafd gets --idle-seconds)")
    p.add_argument("--soak-systems", default=",".join(SOAKED),
                   help=f"systems that get the soak (default {','.join(SOAKED)})")
    p.add_argument("--jitter-minutes", type=float, help="soak with added jitter too (default 5; --quick 0)")
    p.add_argument("--jitter-ms", type=float, default=50.0, help="the jitter soak's maximum added delay (default 50)")
    p.add_argument("--jitter-systems", default="hafd", help="systems that get the jitter soak (default hafd)")
    p.add_argument("--sweep-minutes", type=float, default=0.0,
                   help="minutes per loss level of the sweep for the first false failover (default 0: no sweep)")
    p.add_argument("--sweep-levels", default="40,60,70,80,90", help="loss percentages of the sweep, in order")
    p.add_argument("--sweep-jitter-ms", type=float, default=0.0,
                   help="run the sweep with this much random delay on every heartbeat link (default 0)")
    p.add_argument("--seed", type=int, help="random crash phases (default: random)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    p.add_argument("--no-setup", action="store_true", help="(bench/run) skip scripts/setup.sh")
    a = p.parse_args(argv)
    a.n = a.n if a.n is not None else (3 if a.quick else 20)
    a.soak_minutes = a.soak_minutes if a.soak_minutes is not None else (0.0 if a.quick else 10.0)
    a.idle_seconds = a.idle_seconds if a.idle_seconds is not None else (30.0 if a.quick else 300.0)
    a.only = [s.strip() for s in a.only.split(",") if s.strip()] if a.only else list(SYSTEMS)
    a.soak_systems = [s.strip() for s in a.soak_systems.split(",") if s.strip()]
    a.jitter_minutes = a.jitter_minutes if a.jitter_minutes is not None else (0.0 if a.quick else 5.0)
    a.jitter_systems = [s.strip() for s in a.jitter_systems.split(",") if s.strip()]
    if not 0 <= a.jitter_minutes <= 24 * 60 or not 0 < a.jitter_ms <= 1000 or not 0 <= a.sweep_jitter_ms <= 1000:
        p.error("--jitter-minutes must be 0-1440, --jitter-ms and --sweep-jitter-ms 0-1000")
    try:
        a.sweep_levels = [int(x) for x in a.sweep_levels.split(",") if x.strip()]
    except ValueError:
        p.error("--sweep-levels: comma-separated whole percentages")
    if not all(0 < x <= 100 for x in a.sweep_levels) or not 0 <= a.sweep_minutes <= 60:
        p.error("--sweep-levels must be 1-100 each, --sweep-minutes 0-60")
    unknown = [s for s in a.only + a.soak_systems + a.jitter_systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    if not 1 <= a.n <= 1000 or not 0 <= a.soak_minutes <= 24 * 60 or not 1 <= a.idle_seconds <= 3600:
        p.error("--n must be 1-1000, --soak-minutes 0-1440, --idle-seconds 1-3600")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench/run: needs root (network namespaces, loop devices, mounts)", file=sys.stderr)
        return 2
    # SIGTERM/SIGHUP unwind like ^C, so every test bed is closed (the finally blocks run).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    now = datetime.datetime.now(datetime.timezone.utc)
    doc: dict[str, Any] = {"machine": machine(), "date": now.isoformat(timespec="seconds"),
                           "mode": "quick" if a.quick else "full",
                           "command": "bench/run " + " ".join(sys.argv[1:] if argv is None else argv),
                           "settings": {"n": a.n, "soak_minutes": a.soak_minutes, "idle_seconds": a.idle_seconds,
                                        "jitter_minutes": a.jitter_minutes, "jitter_ms": a.jitter_ms,
                                        "seed": seed, "probe_interval_s": PROBE_INTERVAL,
                                        # every system's bed: the warm stand-in behind a compiled client
                                        "drbdadm": "warm stand-in (integration/drbdserve.py + drbdfast.c)"}}
    t0 = time.monotonic()
    for key in SYSTEMS:
        factory = SYSTEMS[key]
        if key not in a.only:
            continue
        doc[key] = measure_system(key, factory, a, rng)
    doc["duration_s"] = round(time.monotonic() - t0, 1)
    doc["ratios"] = ratios(doc)
    for key in ("hafd", "hafd_fast"):
        if key in a.only:
            p = PROFILES[key]
            print(f"\nexpected false failovers ({key}):")
            for r in expected_rates(p.interval, p.deadtime, links_in_bed=2):
                print("  " + format_rate(r))
    print("\n" + table(doc))
    problems = shape_problems(doc)
    if problems:
        print(f"\nresults shape problems: {problems}", file=sys.stderr)
    a.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2) + "\n"
    path = a.out / f"{now.strftime('%Y-%m-%dT%H%M%SZ')}.json"
    path.write_text(text)
    (a.out / "latest.json").write_text(text)
    print(f"\nwrote {path} and {a.out / 'latest.json'} ({doc['duration_s']:g} s)")
    failed = [k for k, v in doc.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
