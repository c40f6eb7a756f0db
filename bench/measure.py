"""The measurements of issue 5 (items 1-5), written once against a `Driver`.

A Driver is one HA system on the test-bed topology (hafd at a timing profile today;
keepalived and Pacemaker later): it knows how to start the pair, crash a node, bring it
back, ask for a switchover and list its processes.  Everything timed here is timed the
same way for every system: by the DHCP prober in the client namespace (a DISCOVER every
20 ms), on CLOCK_MONOTONIC shared with this process.  Every wait is bounded.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from bench.stats import interruptions, summary

VIP = "10.10.101.1"
ACK_TIMEOUT = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The prober's period.  Waiting for an ACK locks this process to the probe grid, so each timed
# event gets an extra random delay of 0..PROBE_INTERVAL too: otherwise every figure comes out on
# a multiple of 20 ms, biased.  (U(0,T) + anything independent is still uniform modulo T, so the
# crash also stays at a uniformly random phase of the heartbeat cycle.)
PROBE_INTERVAL = 0.02


class BenchError(RuntimeError):
    """A system did not reach the state a measurement needs, within its bound."""


class Driver(ABC):
    """One HA system on the two-node DHCP topology; see the module docstring."""

    key: str  # the results key: "hafd", "hafd_fast", "keepalived_default", ...
    interval: float  # the heartbeat/advert period: the crash is placed at a random phase of it
    detection: float  # the configured time to declare the peer lost (hafd: deadtime)
    timings: dict[str, Any]
    nodes: tuple[str, str]
    client_netns: str

    @abstractmethod
    def build(self) -> None: ...

    @abstractmethod
    def close(self) -> list[str]: ...

    @abstractmethod
    def spawn(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """A helper process killed when the driver closes (prober, CPU burners)."""

    @abstractmethod
    def start_pair(self) -> str:
        """Start both nodes; return the active one once it serves and the other is its backup."""

    @abstractmethod
    def wait_settled(self, active: str, timeout: float = 20.0) -> None:
        """Until `active` serves everything and its peer is a ready backup."""

    @abstractmethod
    def crash(self, node: str) -> float:
        """Hard crash (kill -9 of the daemons and dhcpd, links down); the monotonic time of it."""

    @abstractmethod
    def recover(self, node: str) -> None:
        """Power a crashed node on and start its daemons (it must come back as the backup)."""

    @abstractmethod
    def switchover(self, active: str) -> float:
        """Ask for a planned switchover away from `active`; the monotonic time the command started."""

    @abstractmethod
    def pids(self, node: str) -> list[int]:
        """The HA system's own processes on `node` (footprint)."""

    @abstractmethod
    def add_heartbeat_loss(self, percent: int) -> None: ...

    @abstractmethod
    def remove_heartbeat_loss(self) -> None: ...

    @abstractmethod
    def mark(self) -> Any:
        """A position in the system's logs, for `role_changes_since`."""

    @abstractmethod
    def role_changes_since(self, mark: Any) -> dict[str, int]:
        """{"role_changes": n, "peer_lost": n} since `mark`, both nodes together."""

    def peer(self, node: str) -> str:
        return self.nodes[1] if node == self.nodes[0] else self.nodes[0]

    def timeline(self, node: str, t_crash: float) -> dict[str, float] | None:
        """The system's own account of a takeover: phase -> seconds after t_crash (None: it has none)."""
        return None

    def loss_seen(self) -> Any:
        """The system's own view of heartbeat loss (proof the drop rules bite), if it reports one."""
        return None

    def switchover_received(self, node: str) -> float | None:
        """When the system itself saw the switchover request (monotonic), if it says."""
        return None


def ack_from(node: str) -> Callable[[dict[str, Any]], bool]:
    """A DHCPACK naming the VIP, sent by `node` (told apart by its per-node domain-name)."""
    return lambda e: e.get("type") == "ACK" and e.get("server_id") == VIP and e.get("domain") == node


@dataclass
class FailoverRuns:
    samples: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    active: str = ""


def _serving(drv: Driver, prober: Any, node: str) -> None:
    drv.wait_settled(node)
    if prober.wait_for(ack_from(node), 10.0, since=time.monotonic()) is None:
        raise BenchError(f"{drv.key}: {node} is active but the prober got no DHCPACK from it within 10 s")


def hard_failovers(drv: Driver, prober: Any, active: str, n: int, rng: random.Random,
                   log: Callable[[str], None]) -> FailoverRuns:
    """Item 1: crash the active node at a random phase of the heartbeat cycle, n times, alternating nodes."""
    out = FailoverRuns(active=active)
    while len(out.samples) < n and len(out.failures) < 3:
        _serving(drv, prober, active)
        time.sleep(rng.uniform(0.0, drv.interval) + rng.uniform(0.0, PROBE_INTERVAL))
        t = drv.crash(active)
        survivor = drv.peer(active)
        ack = prober.wait_for(ack_from(survivor), ACK_TIMEOUT, since=t)
        if ack is None:
            out.failures.append(f"run {len(out.samples) + 1}: no ACK from {survivor} within {ACK_TIMEOUT:g}s")
        else:
            out.samples.append(ack["mono"] - t)
            tl = _timeline_after(drv, survivor, t)
            if tl is not None:
                tl["first DHCPACK"] = ack["mono"] - t
                out.phases.append(tl)
            log(f"  {drv.key} hard failover {len(out.samples)}/{n}: {(ack['mono'] - t) * 1000:.0f} ms "
                f"({active} crashed, {survivor} answered)")
        drv.recover(active)
        active = out.active = survivor
    return out


def _timeline_after(drv: Driver, node: str, t: float) -> dict[str, float] | None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        tl = drv.timeline(node, t)
        if tl is None or "active" in tl:
            return tl
        time.sleep(0.05)
    return drv.timeline(node, t)


@dataclass
class SwitchoverRuns:
    samples: list[float] = field(default_factory=list)
    from_daemon: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    active: str = ""


def switchovers(drv: Driver, prober: Any, active: str, n: int, rng: random.Random,
                log: Callable[[str], None]) -> SwitchoverRuns:
    """Item 2: the planned switchover command -> the first DHCPACK from the new active node."""
    out = SwitchoverRuns(active=active)
    _serving(drv, prober, active)
    while len(out.samples) < n and len(out.failures) < 3:
        new = drv.peer(active)
        time.sleep(rng.uniform(0.0, PROBE_INTERVAL))
        t0 = drv.switchover(active)
        ack = prober.wait_for(ack_from(new), ACK_TIMEOUT, since=t0)
        if ack is None:
            out.failures.append(f"run {len(out.samples) + 1}: no ACK from {new} within {ACK_TIMEOUT:g}s")
            break
        out.samples.append(ack["mono"] - t0)
        got = drv.switchover_received(new)
        if got is not None and got >= t0 - 0.01:
            out.from_daemon.append(ack["mono"] - got)
        log(f"  {drv.key} switchover {len(out.samples)}/{n}: {(ack['mono'] - t0) * 1000:.0f} ms to {new}")
        _serving(drv, prober, new)
        active = out.active = new
    return out


# -- footprint ---------------------------------------------------------------------------------


def read_mem_kb(pid: int) -> dict[str, int]:
    """Rss and Pss (kB) from /proc/PID/smaps_rollup."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key] = int(rest.split()[0])
    return out


def read_cpu_ticks(pid: int) -> tuple[int, int]:
    """(own utime+stime, reaped children's cutime+cstime) in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def footprint(drv: Driver, active: str, window: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Item 4: RSS/PSS of each node's processes, CPU over an idle window (per node, % of one core)."""
    pids = {node: drv.pids(node) for node in drv.nodes}
    mem = {node: [read_mem_kb(p) for p in ps] for node, ps in pids.items()}
    before = {node: [read_cpu_ticks(p) for p in ps] for node, ps in pids.items()}
    t0 = time.monotonic()
    log(f"  {drv.key}: idle CPU window of {window:g} s")
    time.sleep(window)
    wall = time.monotonic() - t0
    res: dict[str, Any] = {"window_s": round(wall, 1), "nodes": {}}
    for node, ps in pids.items():
        after = [read_cpu_ticks(p) for p in ps]
        own = sum(a[0] - b[0] for a, b in zip(after, before[node])) / CLK_TCK
        kids = sum(a[1] - b[1] for a, b in zip(after, before[node])) / CLK_TCK
        res["nodes"][node] = {
            "role": "active" if node == active else "standby",
            "pids": ps,
            "rss_mb": round(sum(m.get("Rss", 0) for m in mem[node]) / 1024, 1),
            "pss_mb": round(sum(m.get("Pss", 0) for m in mem[node]) / 1024, 1),
            "cpu_pct": round(100 * own / wall, 2),
            "children_cpu_pct": round(100 * kids / wall, 2),
        }
    return res


# -- false failovers ---------------------------------------------------------------------------


def loss_rules(table: str, match: str, percent: int) -> str:
    """An nft script dropping `percent` % of the packets that `match` (e.g. "udp dport 694") arriving
    on any interface; the counter shows the rule bit.  nft's numgen needs a value below its modulus,
    so 100 % is a plain drop."""
    if not 0 <= percent <= 100:
        raise BenchError(f"heartbeat loss of {percent} % is not a percentage")
    sample = f"numgen random mod 100 < {int(percent)} " if percent < 100 else ""
    return "\n".join([f"add table inet {table}",
                      f"add chain inet {table} input {{ type filter hook input priority 0; }}",
                      f"add rule inet {table} input {match} {sample}counter drop"]) + "\n"


def add_loss(namespaces: Sequence[str], table: str, match: str, percent: int) -> None:
    """Item 5's heartbeat loss, the same way for every system: the rule in each node's namespace."""
    script = loss_rules(table, match, percent)
    for ns in namespaces:
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise BenchError(f"nft in {ns} exited {r.returncode}: {r.stderr.strip()}")


def remove_loss(namespaces: Sequence[str], table: str) -> None:
    for ns in namespaces:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", table], capture_output=True,
                       timeout=30)


BURNER = "import time\nend = time.monotonic() + {secs}\nwhile time.monotonic() < end: pass\n"


def heartbeat_ports(drv: Driver) -> tuple[str, list[tuple[str, str]]]:
    """The switch namespace and (bridge, port) of nodeone's side of every heartbeat link:
    a wire there jitters the link both ways, by up to its delay (not twice that)."""
    bed = getattr(drv, "bed")
    short = bed.one.spec.short
    ports = [("ha", f"{short}-eth1")] + ([("ha2", f"{short}-eth3")] if bed.options.second_link else [])
    return bed.sw, ports


def soak(drv: Driver, prober: Any, active: str, minutes: float, loss_percent: int, gap_limit: float,
         log: Callable[[str], None], jitter_s: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Item 5: heartbeat loss on every link plus two CPU burners; count role changes and interruptions.
    With `jitter_s`, every heartbeat link also gets a random delay in [0, jitter_s] each way (bench/wire.py)."""
    secs = minutes * 60.0
    burners: list[subprocess.Popen[Any]] = []
    wires: list[Any] = []
    wire_stats: list[dict[str, Any]] = []
    mark = drv.mark()
    t0 = time.monotonic()
    seen: Any = None
    try:
        if jitter_s > 0:
            from bench import wire
            ns, ports = heartbeat_ports(drv)
            wires = wire.add_jitter(ns, ports, jitter_s, seed)
        drv.add_heartbeat_loss(loss_percent)
        for _ in range(2):  # self-bounded too: they end on their own a little after the soak
            burners.append(drv.spawn([sys.executable, "-c", BURNER.format(secs=secs + 30)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        end = t0 + secs
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            counts = drv.role_changes_since(mark)
            log(f"  {drv.key} soak {(time.monotonic() - t0) / 60:.1f}/{minutes:g} min: {counts}")
        seen = drv.loss_seen()
    finally:
        for b in burners:
            if b.poll() is None:
                b.kill()
            b.wait(timeout=10)
        drv.remove_heartbeat_loss()
        if wires:
            from bench import wire
            wire_stats = wire.remove_jitter(wires)
    t1 = time.monotonic()
    acks = [e["mono"] for e in prober.snapshot(since=t0, kind="ACK") if e["mono"] <= t1]
    wrong = [e for e in prober.snapshot(since=t0, kind="ACK") if e["mono"] <= t1 and e.get("domain") != active]
    counts = drv.role_changes_since(mark)
    holes = interruptions([t0, *acks, t1], gap_limit)
    return {"minutes": round((t1 - t0) / 60, 2), "loss_percent": loss_percent, "cpu_burners": len(burners),
            "role_changes": counts["role_changes"], "peer_lost": counts["peer_lost"],
            "interruptions": len(holes), "interruption_threshold_s": gap_limit,
            "largest_gap_s": round(max([0.0, *(b - a for a, b in zip([t0, *acks], [*acks, t1]))]), 3),
            "acks": len(acks), "acks_from_the_other_node": len(wrong), "loss_seen_by_the_system": seen,
            **({"jitter_max_s": jitter_s, "jitter_wires": [_wire_summary(w) for w in wire_stats]} if jitter_s > 0 else {})}


def _wire_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """What the jitter relay did, short: frames each way and the delay it added."""
    return {k: stats.get(k) for k in ("port", "frames", "added", "late", "errors") if k in stats}


def loss_sweep(drv: Driver, levels: Sequence[int], minutes: float, log: Callable[[str], None],
               jitter_s: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Item 5's last question: which heartbeat loss rate (on every link, no CPU load) first causes a
    false failover.  Each level runs `minutes` or until the first role change; the sweep stops there.
    With `jitter_s`, the whole sweep runs with bench/wire.py's random delay on every heartbeat link."""
    out: dict[str, Any] = {"minutes_per_level": minutes, "levels": [], "first_false_failover_at_percent": None,
                           "jitter_max_s": jitter_s}
    wires: list[Any] = []
    if jitter_s > 0:
        from bench import wire
        ns, ports = heartbeat_ports(drv)
        wires = wire.add_jitter(ns, ports, jitter_s, seed)
    try:
        _sweep_levels(drv, levels, minutes, log, out)
    finally:
        if wires:
            from bench import wire
            out["jitter_wires"] = [_wire_summary(w) for w in wire.remove_jitter(wires)]
    return out


def _sweep_levels(drv: Driver, levels: Sequence[int], minutes: float, log: Callable[[str], None],
                  out: dict[str, Any]) -> None:
    for pct in levels:
        mark = drv.mark()
        t0 = time.monotonic()
        counts = {"role_changes": 0, "peer_lost": 0}
        drv.add_heartbeat_loss(pct)
        try:
            end = t0 + minutes * 60.0
            while time.monotonic() < end and not counts["role_changes"]:
                time.sleep(min(5.0, max(0.0, end - time.monotonic())))
                counts = drv.role_changes_since(mark)
        finally:
            drv.remove_heartbeat_loss()
        level = {"loss_percent": pct, "minutes": round((time.monotonic() - t0) / 60, 2), **counts,
                 "loss_seen_by_the_system": drv.loss_seen()}
        out["levels"].append(level)
        log(f"  {drv.key} loss sweep {pct} %: {counts}")
        if counts["role_changes"]:
            out["first_false_failover_at_percent"] = pct
            break


def summarize_runs(runs: FailoverRuns | SwitchoverRuns) -> dict[str, Any]:
    s = summary(runs.samples)
    if runs.failures:
        s["failures"] = runs.failures
    return s
