"""The pure half of the benchmark: summaries, the expected false-failover rate, the JSON shape, the table.

Kept free of I/O so tests/test_bench.py can check it without a test bed, and so the peers'
runners (keepalived, Pacemaker: a later session) report through exactly the same shapes.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping, Sequence

from hafd.core import falsefail

# The loss the soak applies (issue 5, item 5) and the sender lateness measured under two busy
# cores (anchors.md: "at most 7 ms"): the expected rate is printed with and without it.
SOAK_LOSS = 0.2
CPU_LATENESS = 0.007
NOT_MEASURED = "not measured yet"


def summary(values: Iterable[float], digits: int = 4) -> dict[str, Any]:
    """{median, min, max, n} of a sample; an empty sample gives n = 0 and None figures, never an error."""
    xs = sorted(float(v) for v in values)
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(xs), digits), "min": round(xs[0], digits),
            "max": round(xs[-1], digits), "n": len(xs)}


def phase_medians(runs: Sequence[Mapping[str, float]], digits: int = 4) -> dict[str, dict[str, Any]]:
    """Per phase name, the summary over the runs that had it (a phase may be missing from some)."""
    names: list[str] = []
    for r in runs:
        names += [k for k in r if k not in names]
    out = {name: summary([r[name] for r in runs if name in r], digits) for name in names}
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["median"] is None, kv[1]["median"] or 0.0)))


def gaps(times: Sequence[float]) -> list[float]:
    """Intervals between consecutive event times (sorted first)."""
    ts = sorted(times)
    return [b - a for a, b in zip(ts, ts[1:])]


def interruptions(times: Sequence[float], threshold: float) -> list[float]:
    """The gaps longer than `threshold`: each one a moment a probing client got no answer."""
    return [g for g in gaps(times) if g > threshold]


def expected_false_failovers(interval: float, deadtime: float, loss: float = SOAK_LOSS,
                             links: int = 1, jitter: float = 0.0) -> dict[str, Any]:
    """The formula of issue 5 / hafd.core.falsefail, one direction (the passive node's), per year."""
    k = falsefail.losses_needed(interval, deadtime, jitter)
    per_year = falsefail.expected_false_failovers_per_year(interval, deadtime, loss, links=links, jitter=jitter)
    return {"interval": interval, "deadtime": deadtime, "loss": loss, "links": links, "jitter": jitter,
            "k": k, "per_year": per_year}


def expected_rates(interval: float, deadtime: float, links_in_bed: int) -> list[dict[str, Any]]:
    """The rates worth printing: one link (the shipped config), the bed's links, and with CPU lateness."""
    cases = [(1, 0.0), (1, CPU_LATENESS), (links_in_bed, 0.0)]
    seen: list[dict[str, Any]] = []
    for links, jitter in cases:
        r = expected_false_failovers(interval, deadtime, links=links, jitter=jitter)
        if r not in seen:
            seen.append(r)
    return seen


def format_rate(r: Mapping[str, Any]) -> str:
    per_year = float(r["per_year"])
    pretty = f"{per_year:.3g}/year" if per_year >= 1e-3 else f"{per_year:.2e}/year"
    if per_year > 0:
        pretty += f" (one in {1 / per_year:.3g} years)" if per_year < 1 else f" ({per_year / 365.25:.3g}/day)"
    return (f"interval {r['interval']:g}s deadtime {r['deadtime']:g}s, {r['loss']:.0%} loss on "
            f"{r['links']} link{'s' if r['links'] != 1 else ''}, lateness {r['jitter'] * 1000:g} ms: "
            f"k = {r['k']} lost in a row -> {pretty}")


def not_measured(reason: str) -> dict[str, Any]:
    return {"status": NOT_MEASURED, "reason": reason}


SUMMARY_KEYS = ("hard_failover_s", "switchover_s", "overhead_s")
REQUIRED_KEYS = (*SUMMARY_KEYS, "rss_mb", "idle_cpu_pct", "false_failovers")


def shape_problems(doc: Mapping[str, Any]) -> list[str]:
    """What keeps a results document from the shape issue 5 asks for (empty: fine)."""
    problems = [f"missing {k}" for k in ("machine", "date", "hafd") if k not in doc]
    for system, entry in doc.items():
        if not is_system(entry):
            continue
        if entry.get("status") == NOT_MEASURED:
            if not entry.get("reason"):
                problems.append(f"{system}: not measured without a reason")
            continue
        for key in REQUIRED_KEYS:
            if key not in entry:
                problems.append(f"{system}: missing {key}")
        for key in SUMMARY_KEYS:
            s = entry.get(key)
            if isinstance(s, dict) and s.get("status") != NOT_MEASURED and set(s) < {"median", "min", "max", "n"}:
                problems.append(f"{system}.{key}: needs median, min, max and n")
    return problems


def is_system(entry: Any) -> bool:
    """A system's entry (measured, failed or not measured yet), not machine/settings/..."""
    return isinstance(entry, dict) and ("timings" in entry or entry.get("status") == NOT_MEASURED)


def split_phases(phases: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(offsets after the crash, durations of single steps: the names ending in ' took')."""
    offsets = {k: v for k, v in phases.items() if not k.endswith(" took")}
    took = {k.removesuffix(" took"): v for k, v in phases.items() if k.endswith(" took")}
    return offsets, took


def ms(v: Any) -> str:
    return "-" if v is None else f"{float(v) * 1000:.0f}"


def fmt_summary(s: Any) -> str:
    """'median (min-max, n=N)' in ms, or why there is no figure."""
    if not isinstance(s, dict):
        return "-" if s is None else str(s)
    if s.get("status") == NOT_MEASURED:
        return "not measured"
    if not s.get("n"):
        return "no sample"
    return f"{ms(s['median'])} ms ({ms(s['min'])}-{ms(s['max'])}, n={s['n']})"


def fmt_value(v: Any, unit: str = "") -> str:
    if isinstance(v, dict):
        if v.get("status") == NOT_MEASURED:
            return "not measured"
        if "value" in v:
            return fmt_value(v["value"], unit)
        if "median" in v:
            return f"{v['median']}{unit} ({v['min']}-{v['max']}, n={v['n']})"
        return ", ".join(f"{k} {fmt_value(x, unit)}" for k, x in v.items())
    return "-" if v is None else f"{v}{unit}"


def table(doc: Mapping[str, Any]) -> str:
    """A readable side-by-side table of every system in a results document."""
    systems = [k for k, v in doc.items() if is_system(v)]
    rows = [("hard failover", lambda e: fmt_summary(e.get("hard_failover_s"))),
            ("planned switchover", lambda e: fmt_summary(e.get("switchover_s"))),
            ("  from the daemon's receipt", lambda e: fmt_summary(e.get("switchover_from_daemon_s"))),
            ("  with a real drbdadm (est.)", lambda e: fmt_summary(e.get("switchover_real_drbdadm_s"))),
            ("overhead over the limit", lambda e: fmt_summary(e.get("overhead_s"))),
            ("  with a real drbdadm", lambda e: fmt_summary(e.get("overhead_real_drbdadm_s"))),
            ("RSS MB per node", lambda e: fmt_value(e.get("rss_mb"))),
            ("PSS MB per node", lambda e: fmt_value(e.get("pss_mb"))),
            ("idle CPU % of a core", lambda e: fmt_value(e.get("idle_cpu_pct"))),
            ("false failovers (soak)", lambda e: fmt_value(_soak_brief(e.get("false_failovers")))),
            ("  with jitter", lambda e: fmt_value(_soak_brief(e.get("false_failovers_with_jitter")) or "not run")),
            ("loss sweep", lambda e: _sweep_brief(e.get("loss_sweep")))]
    lines = [f"machine: {doc.get('machine')}   date: {doc.get('date')}"]
    for system in systems:
        entry = doc[system]
        lines.append("")
        if entry.get("status") == NOT_MEASURED:
            lines.append(f"{system}: {NOT_MEASURED} ({entry.get('reason')})")
            continue
        timings = entry.get("timings") or {}
        lines.append(f"{system}: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
        for label, get in rows:
            lines.append(f"  {label:<26} {get(entry)}")
        if entry.get("error"):
            lines.append(f"  ERROR {entry['error']}")
        for name, s in (entry.get("failover_phases_s") or {}).items():
            lines.append(f"    after the crash: {name:<22} {fmt_summary(s)}")
        for name, s in (entry.get("failover_step_durations_s") or {}).items():
            lines.append(f"    step took: {name:<28} {fmt_summary(s)}")
    if doc.get("ratios"):
        lines += ["", "ratios of medians, hafd / peer (below 1: hafd is faster; 1/ratio = how many times faster):"]
        for pair, figs in doc["ratios"].items():
            text = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {r:.3f} ({1 / r:.1f}x)" for k, r in figs.items())
            lines.append(f"  {pair:<34} {text}")
    return "\n".join(lines)


def _soak_brief(v: Any) -> Any:
    if isinstance(v, dict) and "role_changes" in v:
        return (f"{v['role_changes']} role changes, {v['interruptions']} interruptions, "
                f"{v['peer_lost']} peer-lost in {v['minutes']:g} min")
    return v


def _sweep_brief(v: Any) -> str:
    if not isinstance(v, dict):
        return "not run"
    steps = ", ".join(f"{lv['loss_percent']} %: {lv['role_changes']}" for lv in v.get("levels", []))
    first = v.get("first_false_failover_at_percent")
    head = f"first false failover at {first} % loss" if first else "no false failover at any level"
    if v.get("jitter_max_s"):
        head += f", with 0-{v['jitter_max_s'] * 1000:g} ms jitter"
    return f"{head} (role changes per level, {v.get('minutes_per_level')} min each: {steps})"
