"""Scenario 13 (issue 4): hafd under a real systemd, with the shipped systemd/hafd.service.

Each node is a systemd container (integration/nspawn.py) in its own network namespace;
the two are joined by a bridge in a third namespace (10.10.100.1/24 and .2/24 exist
only inside these namespaces).  hafd runs as the operator runs it: the shipped unit
is installed in /run/systemd/system, the config in /etc/hafd (the containers' /etc is
a tmpfs), and the test drives it with `systemctl`, `hafctl` and signals only.

The resources:
  slow    command: its monitor sleeps 2 s, so probing at start-up visibly takes 2 s
          and the unit must stay `activating` until hafd sent READY=1 after it;
  keeper  process: `sleep infinity`, a child of hafd in hafd.service's cgroup: the
          process that KillMode=process must leave alone on stop, kill and watchdog;
  dhcpd   service: isc-dhcp-server through Debian's own unit (systemd-sysv-generator
          makes it from /etc/init.d/isc-dhcp-server, as on any Debian 12 host; we
          bind in the init script, /etc/default/isc-dhcp-server and dhcpd.conf).

The kill -9 and watchdog steps run with nodetwo's hafd stopped, so that nodeone is
still the active node when its daemon comes back and the adoption path is what runs.
With a live peer it cannot be: a restarted daemon has a new boot id, which the peer's
replay guard (hafd/core/codec.py ReplayGuard) refuses until the old one was silent for
the deadtime, so the peer always declares it lost and starts taking over; that path
(the peer took over, the returning node must give way) is the last step's, made
deterministic there with `systemctl stop hafd`.  restart_grace 3 s makes that
takeover come quickly.

Tests run in file order on one module-scoped cluster: each step starts from the state
the previous one left (they are the steps of one story, as in the issue).  The whole
module takes about 45-50 s (two container boots ~1.5 s; the rest is hafd's 2 s probes,
RestartSec, the watchdog's 5 s and restart_grace).  Teardown: kill -9 of each
container's systemd by PID, then the namespaces, also when a step fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from integration.nspawn import Container, ContainerError, wait_until  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "hafd.service"
VENV = Path(sys.prefix)
IP = "/usr/sbin/ip"
INITD = "/etc/init.d/isc-dhcp-server"
CMD_TIMEOUT = 30.0
SETTLE = 20.0  # one expected change (a start, a restart, a takeover)
WATCHDOG_WAIT = 20.0  # WatchdogSec=5: the wedge is caught within 5 s, restarted 1 s later
NODES = {"one": "10.10.100.1/24", "two": "10.10.100.2/24"}

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, systemd-nspawn)"),
    pytest.mark.skipif(not shutil.which("systemd-nspawn"), reason="systemd-container is not installed"),
    pytest.mark.skipif(not (os.path.exists(INITD) and os.path.exists("/usr/sbin/dhcpd")),
                       reason="isc-dhcp-server is not installed"),
]

HAFD_YAML = """\
cluster:
  name: sd
  key_file: /etc/hafd/authkey
  interval: 0.05
  deadtime: 1.025           # relaxed from 0.36: two containers and the test share two cores
  restart_grace: 3          # `systemctl stop hafd` on the active node: the peer takes over 3 s later
  startup_wait: 3

nodes:
  nodeone:
    priority: 100
    links: [10.10.100.1]
  nodetwo:
    priority: 90
    links: [10.10.100.2]

resources:
  slow:
    type: command
    start: [/usr/bin/touch, /run/hafd-test-slow]
    stop: [/usr/bin/rm, -f, /run/hafd-test-slow]
    monitor: [/bin/sh, -c, "sleep 2; test -e /run/hafd-test-slow || exit 7"]
    monitor_interval: 60
    timeout: 10
  keeper:
    type: process
    command: [/usr/bin/sleep, infinity]
    monitor_interval: 5
  dhcpd:
    type: service
    unit: isc-dhcp-server
    monitor_interval: 5
    timeout: 20
"""

DHCPD_CONF = """\
authoritative;
subnet 10.10.100.0 netmask 255.255.255.0 { range 10.10.100.100 10.10.100.110; }
"""
DHCPD_DEFAULT = 'INTERFACESv4="eth1"\nINTERFACESv6=""\n'


def ip(*args: str) -> None:
    r = subprocess.run([IP, *args], capture_output=True, text=True, timeout=CMD_TIMEOUT, check=False)
    if r.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")


# -- what the test reads from a node ----------------------------------------------


def status(c: Container) -> dict[str, Any]:
    out = c.run(["hafctl", "--timeout", "5", "status", "--json"], timeout=10).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def try_status(c: Container) -> dict[str, Any] | None:
    try:
        return status(c)
    except (ContainerError, ValueError):
        return None


def hafd(c: Container) -> dict[str, str]:
    return c.show("hafd", "ActiveState", "SubState", "MainPID", "NRestarts", "Result")


def dhcpd(c: Container) -> dict[str, str]:
    """Debian's unit says active (RemainAfterExit=yes); dhcpd's own pid file says which process."""
    s = c.show("isc-dhcp-server", "ActiveState", "InvocationID")
    r = c.run(["cat", "/run/dhcpd.pid"], check=False)
    pid = r.stdout.strip() if r.returncode == 0 else ""
    alive = bool(pid) and c.run(["cat", f"/proc/{pid}/comm"], check=False).stdout.strip() == "dhcpd"
    s["pid"] = pid if alive else ""
    return s


def keeper_pid(c: Container) -> str:
    r = c.run(["pgrep", "-x", "-f", "/usr/bin/sleep infinity"], check=False)
    pids = r.stdout.split()
    assert len(pids) <= 1, f"{c.machine}: more than one keeper process: {pids}"
    return pids[0] if pids else ""


def slow_flag(c: Container) -> bool:
    return c.run(["test", "-e", "/run/hafd-test-slow"], check=False).returncode == 0


def wait_role(c: Container, role: str, timeout: float = SETTLE) -> dict[str, Any]:
    last: list[dict[str, Any] | None] = [None]

    def probe() -> dict[str, Any] | None:
        s = last[0] = try_status(c)
        return s if s is not None and s["role"] == role and not _busy(s) else None

    try:
        return wait_until(probe, timeout, f"{c.machine} to be {role} with every resource settled", interval=0.2)
    except TimeoutError as e:
        s = last[0]
        brief = None if s is None else {k: s.get(k) for k in ("role", "active_node", "reason", "resources")}
        raise AssertionError(f"{e}; last status: {json.dumps(brief, default=str)[:3000]}") from None


def _busy(s: dict[str, Any]) -> bool:
    return any(r.get("state") not in ("started", "stopped") for r in s["resources"].values())


def assert_serving(active: Container, passive: Container) -> None:
    """The service runs where hafd says it is active, and nowhere else."""
    for c, on in ((active, True), (passive, False)):
        d = dhcpd(c)
        assert (d["ActiveState"] == "active") is on, f"{c.machine}: isc-dhcp-server {d}"
        assert bool(d["pid"]) is on, f"{c.machine}: dhcpd process {d}"
        assert bool(keeper_pid(c)) is on, f"{c.machine}: keeper"
        assert slow_flag(c) is on, f"{c.machine}: slow resource flag"


# -- the cluster -----------------------------------------------------------------


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.prefix = "hs" + secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.containers: dict[str, Container] = {}

    def build(self) -> None:
        sw = self._netns("sw")
        ip("-n", sw, "link", "add", "ha", "type", "bridge")
        ip("-n", sw, "link", "set", "ha", "up")
        files = self.tmp / "files"
        files.mkdir()
        (files / "dhcpd.conf").write_text(DHCPD_CONF)
        (files / "dhcpd6.conf").write_text("")
        (files / "default").write_text(DHCPD_DEFAULT)
        base = Path(os.path.realpath(sys.executable)).parents[1]  # the interpreter the venv points at
        binds = [(str(VENV), str(VENV)), (str(REPO), str(REPO)), (INITD, INITD),
                 (str(files / "default"), "/etc/default/isc-dhcp-server"),
                 (str(files / "dhcpd.conf"), "/etc/dhcp/dhcpd.conf"),
                 (str(files / "dhcpd6.conf"), "/etc/dhcp/dhcpd6.conf")]
        if not str(base).startswith("/usr"):
            binds.append((str(base), str(base)))
        for node, addr in NODES.items():
            ns = self._netns(node)
            ip("-n", sw, "link", "add", f"p{node}", "type", "veth", "peer", "name", "eth1", "netns", ns)
            ip("-n", sw, "link", "set", f"p{node}", "master", "ha", "up")
            ip("-n", ns, "addr", "add", addr, "dev", "eth1")
            ip("-n", ns, "link", "set", "eth1", "up")
            self.containers[node] = Container(f"{self.prefix}-{node}", f"/run/netns/{ns}", self.tmp,
                                              binds_ro=binds, tmpfs=["/var/lib/dhcp"])
        for c in self.containers.values():  # boot both at once: half the wait
            c.start()
        for c in self.containers.values():
            c.wait_booted()
        one, two = self.containers["one"], self.containers["two"]
        key = "/etc/hafd/authkey"
        for c in (one, two):
            c.write("/run/systemd/system/hafd.service", UNIT.read_text())
            c.write("/etc/hafd/hafd.yaml", HAFD_YAML)
            c.systemctl("daemon-reload")
        one.run(["hafctl", "keygen", key])  # as an operator would, then copied to the peer
        two.write(key, one.run(["cat", key]).stdout, 0o600)

    def _netns(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def close(self) -> None:
        """Containers first (kill -9 of their systemd, by PID), then the namespaces; never raises."""
        for node, c in self.containers.items():
            try:
                (self.tmp / f"{node}.journal.log").write_text(c.journal())
            except Exception:  # noqa: BLE001 - the journal is a diagnostic; the teardown must go on
                pass
            c.close()
        for ns in reversed(self.namespaces):
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT, check=False)
        self.namespaces.clear()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cl = Cluster(tmp_path_factory.mktemp("systemd"))
    try:
        cl.build()
        yield cl
    finally:
        cl.close()
        left = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, check=False).stdout
        assert cl.prefix not in left, f"namespaces left behind: {left}"


# -- the scenario ----------------------------------------------------------------


def test_shipped_unit_verifies_in_the_container(cluster: Cluster) -> None:
    c = cluster.containers["one"]
    r = c.run(["systemd-analyze", "verify", "/run/systemd/system/hafd.service"], check=False)
    assert r.returncode == 0, r.stderr
    assert hafd(c)["ActiveState"] == "inactive"


def test_start_is_active_only_after_ready(cluster: Cluster) -> None:
    one, two = cluster.containers["one"], cluster.containers["two"]
    two.systemctl("start", "--no-block", "hafd")
    one.systemctl("start", "--no-block", "hafd")
    seen: list[tuple[float, str, str, str]] = []
    t0 = time.monotonic()

    def active() -> bool:
        s = hafd(one)
        seen.append((time.monotonic() - t0, s["ActiveState"], s["SubState"], s["MainPID"]))
        assert s["ActiveState"] in ("inactive", "activating", "active"), seen
        return s["ActiveState"] == "active"

    wait_until(active, SETTLE, "hafd on nodeone to become active", interval=0.05)
    # "activating/start" with a main process: hafd runs and has not said READY=1 yet.
    waiting = [t for t, a, sub, pid in seen if a == "activating" and sub == "start" and pid != "0"]
    assert waiting, f"never saw hafd running but not ready: {seen}"
    became_active = seen[-1][0]
    assert became_active - waiting[0] >= 1.5, f"active before the 2 s probe could have finished: {seen}"
    # READY=1 came after probing: systemd's own clocks say the unit went active at least the
    # slow probe's 2 s after it forked hafd (the journal's line order would race: hafd's
    # stdout and its notify datagram reach journald and systemd by different paths).
    t = one.show("hafd", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    ready_after = (int(t["ActiveEnterTimestampMonotonic"]) - int(t["ExecMainStartTimestampMonotonic"])) / 1e6
    assert ready_after >= 2.0, (t, seen)
    assert '"event": "probing_done"' in one.journal("hafd")
    wait_until(lambda: hafd(two)["ActiveState"] == "active", SETTLE, "hafd on nodetwo to become active")


def test_service_runs_on_the_active_node_only(cluster: Cluster) -> None:
    one, two = cluster.containers["one"], cluster.containers["two"]
    s = wait_role(one, "active")
    assert s["active_node"] == "nodeone", s
    wait_role(two, "standby")
    assert_serving(one, two)
    assert one.show("isc-dhcp-server", "LoadState", "SourcePath")["SourcePath"] == INITD  # Debian's own unit


def test_kill_9_restarts_hafd_and_it_adopts(cluster: Cluster) -> None:
    one, two = cluster.containers["one"], cluster.containers["two"]
    two.systemctl("stop", "hafd")  # see the module docstring: nodeone stays the active node
    assert_serving(one, two)
    before = hafd(one)
    unit_before, keeper_before = dhcpd(one), keeper_pid(one)
    assert unit_before["pid"] and keeper_before
    one.run(["kill", "-9", before["MainPID"]])

    def restarted() -> dict[str, str] | None:
        s = hafd(one)
        return s if s["ActiveState"] == "active" and s["MainPID"] not in ("0", before["MainPID"]) else None

    after = wait_until(restarted, SETTLE, "systemd to restart hafd after kill -9")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
    s = wait_role(one, "active")
    assert s["active_node"] == "nodeone", s
    # Adopted, not restarted: the same unit invocation, the same dhcpd, the same child process.
    unit_after = dhcpd(one)
    assert unit_after == unit_before, (unit_before, unit_after)
    assert keeper_pid(one) == keeper_before
    assert_serving(one, two)
    assert "Failed with result 'signal'" in one.journal("hafd")


def test_watchdog_kills_a_wedged_loop(cluster: Cluster) -> None:
    one, two = cluster.containers["one"], cluster.containers["two"]
    before = hafd(one)
    keeper_before = keeper_pid(one)
    one.run(["kill", "-STOP", before["MainPID"]])
    t0 = time.monotonic()

    def restarted() -> dict[str, str] | None:
        s = hafd(one)
        return s if s["ActiveState"] == "active" and s["MainPID"] not in ("0", before["MainPID"]) else None

    after = wait_until(restarted, WATCHDOG_WAIT, "the watchdog to kill the stopped hafd and systemd to restart it",
                       interval=0.1)
    took = time.monotonic() - t0
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
    assert "Watchdog timeout" in one.journal("hafd")
    assert took < 5 + 1 + 10, took  # WatchdogSec + RestartSec + a probe
    # Still the active node (nodetwo's hafd is stopped): the restarted daemon adopted what ran.
    s = wait_role(one, "active")
    assert s["active_node"] == "nodeone", s
    assert keeper_pid(one) == keeper_before
    assert_serving(one, two)


def test_peer_comes_back_as_standby(cluster: Cluster) -> None:
    one, two = cluster.containers["one"], cluster.containers["two"]
    two.systemctl("start", "hafd", timeout=60)  # returns after READY=1
    assert hafd(two)["ActiveState"] == "active"
    s = wait_role(two, "standby")
    assert s["active_node"] == "nodeone", s
    assert_serving(one, two)


def test_stop_leaves_resources_running_and_a_late_start_reconciles(cluster: Cluster) -> None:
    one, two = cluster.containers["one"], cluster.containers["two"]
    wait_role(one, "active")
    unit_before, keeper_before = dhcpd(one), keeper_pid(one)
    one.systemctl("stop", "hafd", timeout=120)
    assert hafd(one)["ActiveState"] in ("inactive", "failed")
    # KillMode=process: only hafd got SIGTERM; the keeper in hafd.service's own cgroup lives on.
    assert keeper_pid(one) == keeper_before
    assert dhcpd(one) == unit_before
    # The peer was told "restarting"; after restart_grace it takes over (both serve now:
    # the dual-active window an operator opens by stopping hafd and leaving it stopped).
    wait_role(two, "active")
    assert dhcpd(two)["pid"] and keeper_pid(two)
    # hafd comes back on nodeone: the peer is active, so nodeone's stale resources go at once.
    one.systemctl("start", "hafd", timeout=60)
    s = wait_role(one, "standby")
    assert s["active_node"] == "nodetwo", s
    assert_serving(two, one)
