"""Two real hafd daemons on loopback addresses inside a network namespace the test owns.

They exchange real UDP heartbeats (127.0.0.2 <-> 127.0.0.3); partitions are nft drop
rules in that namespace, so nothing touches the host's network.  Resources are
`command` markers (tests/cluster_bin/res.py) logging every start/stop with its time,
so tests can check order and dual-active windows; a `process` resource checks that a
fence kills what a node runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hafd import ctl
from hafd.core import codec
from ns_helpers import NetNs, requires_root

BIN = Path(sys.executable).parent
HAFD, HAFCTL = str(BIN / "hafd"), str(BIN / "hafctl")
RES = str(Path(__file__).parent / "cluster_bin" / "res.py")
FENCE = str(Path(__file__).parent / "cluster_bin" / "fence.py")
NODES = {"nodeone": "127.0.0.2", "nodetwo": "127.0.0.3"}
INTERVAL, DEADTIME = 0.05, 0.33
KEY = b"5e6f1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100"

pytestmark = requires_root


def config(root: Path, node: str, port: int, *, fencing: bool, failback: bool = False, tiebreaker: str | None = None,
           threshold: int = 3) -> str:
    fence = f"""
          fencing:
            command: [{sys.executable}, {FENCE}, "{{peer}}"]
            timeout: 5""" if fencing else ""
    if tiebreaker:
        fence += f"""
          tiebreaker:
            ping: {tiebreaker}
            interval: 0.2"""
    res = [sys.executable, RES]
    return textwrap.dedent(
        f"""\
        cluster:
          name: pair
          key_file: {root}/authkey
          port: {port}
          interval: {INTERVAL}
          deadtime: {DEADTIME}
          startup_wait: 1.0
          restart_grace: 3.0
          failback: {str(failback).lower()}
          state_dir: {root}/{node}/state
          control_socket: {root}/{node}/hafd.sock{fence}
        nodes:
          nodeone: {{priority: 100, links: [{NODES['nodeone']}]}}
          nodetwo: {{priority: 90, links: [{NODES['nodetwo']}]}}
        resources:
          base:
            type: command
            start: {json.dumps(res + ['base', 'start'])}
            stop: {json.dumps(res + ['base', 'stop'])}
            monitor: {json.dumps(res + ['base', 'monitor'])}
            monitor_interval: 0.5
          app:
            type: process
            command: [{sys.executable}, -c, "import time; time.sleep(3600)"]
            requires: [base]
            monitor_interval: 0.5
            migration_threshold: {threshold}
        """
    )


class Node:
    def __init__(self, pair: "Pair", name: str) -> None:
        self.pair, self.name = pair, name
        self.dir = pair.root / name
        (self.dir / "state").mkdir(parents=True, exist_ok=True)
        self.cfg = self.dir / "hafd.yaml"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, **kw: Any) -> None:
        kw.setdefault("fencing", False)
        self.cfg.write_text(config(self.pair.root, self.name, self.pair.port, **kw))

    def start(self) -> None:
        env = {**os.environ, "HAFD_TEST_NODE_DIR": str(self.dir), "HAFD_TEST_ROOT": str(self.pair.root)}
        log = open(self.dir / "hafd.log", "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.pair.ns.name, HAFD, "--config", str(self.cfg), "--node", self.name,
             "--log-format", "json"],
            stdout=log, stderr=log, env=env,
        )
        log.close()
        (self.dir / "hafd.pidlist").write_text(str(self.proc.pid))

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([HAFCTL, "--socket", str(self.dir / "hafd.sock"), *args],
                              capture_output=True, text=True, timeout=30)

    def status(self) -> dict[str, Any] | None:
        r = self.ctl("--timeout", "2", "status", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def running(self) -> bool:
        return (self.dir / "base.running").exists()

    def app_pid(self) -> int | None:
        try:
            return int(json.loads((self.dir / "state" / "app.pid").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def events(self) -> list[tuple[float, str, str]]:
        p = self.dir / "events"
        return [(float(t), n, a) for t, n, a in (l.split() for l in p.read_text().splitlines())] if p.exists() else []

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in (self.dir / "hafd.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


class Pair:
    def __init__(self, root: Path, ns: NetNs) -> None:
        self.root, self.ns = root, ns
        self.port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
        key = root / "authkey"
        key.write_bytes(KEY + b"\n")
        os.chmod(key, 0o600)
        self.one, self.two = Node(self, "nodeone"), Node(self, "nodetwo")

    def nodes(self) -> list[Node]:
        return [self.one, self.two]

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        """Bounded poll of observable state (status answers, marker files)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}: " + json.dumps(
            {n.name: n.status() for n in self.nodes() if n.proc and n.proc.poll() is None}, indent=1)[:4000])

    def role(self, node: Node) -> str | None:
        s = node.status()
        return None if s is None else s["role"]

    def nft(self, *rules: str) -> None:
        script = "\n".join(rules) + "\n"
        self.ns.run(["nft", "-f", "-"], input=script)

    def partition(self) -> None:
        self.nft("add table inet hafdtest",
                 "add chain inet hafdtest input { type filter hook input priority 0; }",
                 f"add rule inet hafdtest input udp dport {self.port} drop")

    def heal(self) -> None:
        self.ns.run(["nft", "delete", "table", "inet", "hafdtest"], check=False)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    ns = NetNs.create()
    p = Pair(tmp_path, ns)
    try:
        ns.ip("addr", "add", "127.0.0.2/8", "dev", "lo")
        ns.ip("addr", "add", "127.0.0.3/8", "dev", "lo")
        yield p
    finally:
        for n in p.nodes():
            n.kill9()
            pid = n.app_pid()
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        ns.delete()


def start_both(pair: Pair, **kw: Any) -> None:
    for n in pair.nodes():
        n.write_config(**kw)
        n.start()
    pair.wait(lambda: pair.role(pair.one) == "active" and pair.role(pair.two) == "standby", "nodeone active")


def test_cold_start_elects_exactly_the_preferred_node(pair: Pair) -> None:
    start_both(pair, fencing=False)
    s1, s2 = pair.one.status(), pair.two.status()
    assert s1 and s2
    assert s1["active_node"] == "nodeone" and s2["active_node"] == "nodeone"
    assert pair.one.running() and not pair.two.running()
    assert s2["nodes"]["nodeone"]["state"] == "online"
    assert s2["nodes"]["nodeone"]["links"]["127.0.0.2"]["state"] == "up"
    assert "nodeone becomes active" in s1["reason"]
    assert any("no fencing and no tiebreaker" in w for w in s1["warnings"])


def test_node_crash_fails_over_after_the_deadtime(pair: Pair) -> None:
    start_both(pair, fencing=False)
    t0 = time.monotonic()
    pair.one.kill9()
    pid = pair.one.app_pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    (pair.one.dir / "base.running").unlink()
    pair.wait(lambda: pair.role(pair.two) == "active", "nodetwo takes over", timeout=10)
    elapsed = time.monotonic() - t0
    assert elapsed > DEADTIME  # not before the peer could be declared lost
    s = pair.two.status()
    assert s is not None and s["nodes"]["nodeone"]["state"] == "lost"
    tl = s["last_failover"]
    names = [p["name"] for p in tl["phases"]]
    assert tl["finished"] and names[0] == "trigger" and "base started" in names and names[-1] == "active"
    assert "nodeone lost" in tl["trigger"]


def test_with_fencing_the_survivor_fences_before_it_serves(pair: Pair) -> None:
    start_both(pair, fencing=True)
    pair.one.kill9()  # only hafd dies: its resources keep running until fenced
    assert pair.one.running()
    pair.wait(lambda: pair.role(pair.two) == "active", "nodetwo takes over", timeout=15)
    fenced_at = float((pair.root / "fence.log").read_text().split()[0])
    started = [t for t, n, a in pair.two.events() if a == "start"]
    assert started and min(started) > fenced_at
    assert not pair.one.running()
    s = pair.two.status()
    assert s is not None and s["nodes"]["nodeone"]["state"] == "fenced"
    assert any(p["name"] == "fenced" for p in s["last_failover"]["phases"])


def test_planned_switchover_stops_the_old_node_before_the_new_one_starts(pair: Pair) -> None:
    start_both(pair, fencing=False)
    r = pair.two.ctl("failover")
    assert r.returncode == 0, r.stderr
    assert "nodetwo is active" in r.stdout
    pair.wait(lambda: pair.role(pair.one) == "standby" and pair.role(pair.two) == "active", "switched")
    stopped = max(t for t, n, a in pair.one.events() if a == "stop")
    started = min(t for t, n, a in pair.two.events() if a == "start")
    assert stopped < started
    # And back, asked on the node that is now standby, with an explicit target.
    r = pair.one.ctl("failover", "--to", "nodeone")
    assert r.returncode == 0, r.stderr
    pair.wait(lambda: pair.role(pair.one) == "active" and pair.role(pair.two) == "standby", "switched back")


def test_standby_of_a_remote_node_works_cluster_wide(pair: Pair) -> None:
    start_both(pair, fencing=False)
    r = pair.two.ctl("standby", "nodeone")
    assert r.returncode == 0, r.stderr
    pair.wait(lambda: pair.role(pair.two) == "active" and pair.role(pair.one) == "standby", "moved")
    s = pair.one.status()
    assert s is not None and s["nodes"]["nodeone"]["state"] == "standby"
    assert pair.two.ctl("unstandby", "nodeone").returncode == 0
    # failback is off: nodetwo keeps the role although nodeone has the higher priority.
    pair.wait(lambda: (pair.two.status() or {}).get("nodes", {}).get("nodeone", {}).get("state") == "online", "unstandby")
    assert pair.role(pair.two) == "active"


def test_sigterm_restart_of_the_active_daemon_neither_fails_over_nor_interrupts(pair: Pair) -> None:
    start_both(pair, fencing=False)
    pid = pair.one.app_pid()
    assert pair.one.proc is not None
    pair.one.proc.send_signal(signal.SIGTERM)
    pair.one.proc.wait(timeout=15)
    time.sleep(DEADTIME * 3)  # longer than a deadtime: without the restart grace nodetwo would take over
    assert pair.role(pair.two) == "standby" and not pair.two.running()
    pair.one.start()
    pair.wait(lambda: pair.role(pair.one) == "active", "nodeone back")
    assert pair.one.app_pid() == pid  # adopted, not restarted
    assert [e for e in pair.one.events() if e[2] == "stop"] == []
    assert not pair.two.running()


def test_forged_and_replayed_packets_are_counted_and_change_nothing(pair: Pair) -> None:
    start_both(pair, fencing=False)
    port = pair.port
    before = len(pair.one.logs())
    # A forged heartbeat (wrong key) claiming nodetwo is active, garbage, and a replay
    # of a real packet captured from nodetwo.
    src = f"""
import json, socket, time
from hafd import ctl
from hafd.core import codec
fake = codec.Message("nodetwo", b"x" * 16, 10**9, 0.0, codec.Heartbeat(codec.Role.ACTIVE, 99, b"h" * 32, 1000))
forged = codec.encode(fake, b"not-the-key-at-all-0123456789")
cap = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
cap.settimeout(2)
real = None
for _ in range(200):
    pkt, addr = cap.recvfrom(65535)
    ihl = (pkt[0] & 15) * 4
    dport = int.from_bytes(pkt[ihl + 2:ihl + 4], "big")
    if addr[0] == "127.0.0.3" and dport == {port}:
        real = pkt[ihl + 8:]
        break
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.3", 0))
for i in range(20):
    s.sendto(forged, ("127.0.0.2", {port}))
    s.sendto(b"\\x00garbage" * i, ("127.0.0.2", {port}))
time.sleep(0.2)
for i in range(5):
    s.sendto(real, ("127.0.0.2", {port}))
print(json.dumps(real is not None))
"""
    assert pair.ns.python(src) is True
    pair.wait(lambda: sum((pair.one.status() or {}).get("rejected_packets", {}).values()) >= 45, "rejections counted")
    rej = pair.one.status()["rejected_packets"]  # type: ignore[index]
    assert rej.get("bad_mac", 0) >= 20 and rej.get("replayed", 0) >= 5
    assert rej.get("bad_magic", 0) + rej.get("too_short", 0) >= 19
    assert pair.role(pair.one) == "active" and pair.role(pair.two) == "standby"
    events = pair.one.logs()[before:]
    assert any(e.get("event") == "packet_rejected" for e in events)
    assert [e for e in events if e.get("event") in ("role_changed", "election", "role_target")] == []


def test_split_brain_after_a_partition_is_resolved_deterministically(pair: Pair) -> None:
    start_both(pair, fencing=False)
    pair.partition()
    pair.wait(lambda: pair.role(pair.two) == "active", "both active in the partition", timeout=10)
    assert pair.one.running() and pair.two.running()  # no fencing, no tiebreaker: the known risk
    pair.heal()
    pair.wait(lambda: pair.role(pair.two) == "standby" and pair.role(pair.one) == "active", "resolved", timeout=10)
    assert pair.one.running() and not pair.two.running()
    for n in pair.nodes():
        s = n.status()
        assert s is not None and s["split_brain"] is not None
        assert any("SPLIT BRAIN" in w for w in s["warnings"])
    assert any(e.get("event") == "split_brain" for e in pair.one.logs())
    assert any(e.get("event") == "reannounce" for e in pair.one.logs())
    assert pair.one.ctl("cleanup").returncode == 0
    pair.wait(lambda: (pair.one.status() or {}).get("split_brain") is None
              and (pair.two.status() or {}).get("split_brain") is None, "cleared on both")


def test_a_key_readable_by_others_is_refused(pair: Pair) -> None:
    os.chmod(pair.root / "authkey", 0o644)
    pair.one.write_config(fencing=False)
    r = subprocess.run(["ip", "netns", "exec", pair.ns.name, HAFD, "--config", str(pair.one.cfg), "--node", "nodeone"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "readable by others" in r.stderr


def test_drbd_fence_peer_handler_outdates_a_reachable_peer_until_resync(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    start_both(pair, fencing=False)
    env = {**os.environ, "DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "1", "DRBD_NODE_ID_0": "nodeone",
           "DRBD_NODE_ID_1": "nodetwo"}
    # The form DRBD runs (`hafctl fence-peer`, default socket) takes hafd.ctl's fast path.
    monkeypatch.setattr(ctl, "DEFAULT_SOCKET", str(pair.one.dir / "hafd.sock"))
    monkeypatch.setattr(ctl, "DEFAULT_CONFIG_PATH", str(pair.one.cfg))
    assert ctl.fast(["fence-peer"], env) == 4, capsys.readouterr()  # peer outdated at resource level
    assert "outdated" in capsys.readouterr().out
    pair.wait(lambda: any("outdated" in w for w in (pair.two.status() or {}).get("warnings", [])), "outdated shown")
    # An outdated node must not take over, even when the active node goes to standby.
    assert pair.one.ctl("standby").returncode == 0
    pair.wait(lambda: pair.role(pair.one) == "standby", "nodeone stopped")
    s = pair.two.status()
    assert s is not None and s["role"] == "standby" and "no node is eligible" in s["decision"]
    assert not pair.two.running()
    r = subprocess.run([HAFCTL, "--socket", str(pair.two.dir / "hafd.sock"), "unfence-peer"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    pair.wait(lambda: pair.role(pair.two) == "active", "nodetwo takes over once resynced")


def test_fence_peer_without_a_daemon_says_helper_broken(tmp_path: Path) -> None:
    r = subprocess.run([HAFCTL, "--socket", str(tmp_path / "none.sock"), "fence-peer"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1  # DRBD: "fence-peer helper broken" -> keep I/O frozen


def test_a_resource_failing_past_its_threshold_moves_the_service(pair: Pair) -> None:
    start_both(pair, threshold=0)  # the first failure gives up locally
    pid = pair.one.app_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    pair.wait(lambda: pair.role(pair.two) == "active", "nodetwo takes over")
    s1 = pair.one.status()
    assert s1 is not None and s1["resources"]["app"]["state"] == "failed"
    assert not pair.one.running()  # the whole graph stopped on the failed node
    s2 = pair.two.status()
    assert s2 is not None and "has a failed resource" in s2["reason"]


def test_a_node_that_cannot_reach_the_tiebreaker_does_not_serve(pair: Pair) -> None:
    # 192.0.2.1 (TEST-NET) has no route in the test namespace: ping fails at once.
    start_nodes = pair.nodes()
    for n in start_nodes:
        n.write_config(tiebreaker="192.0.2.1")
        n.start()
    pair.wait(lambda: (pair.one.status() or {}).get("role") == "standby"
              and "cannot reach the tiebreaker" in (pair.one.status() or {}).get("decision", ""), "nobody eligible")
    assert not pair.one.running() and not pair.two.running()


def test_a_tiebreaker_that_answers_lets_the_cluster_run(pair: Pair) -> None:
    for n in pair.nodes():
        n.write_config(tiebreaker="127.0.0.1")
        n.start()
    pair.wait(lambda: pair.role(pair.one) == "active", "nodeone active")
    s = pair.one.status()
    assert s is not None and not any("no fencing and no tiebreaker" in w for w in s["warnings"])


def test_a_config_mismatch_is_shown_on_both_nodes(pair: Pair) -> None:
    # With no holder, nobody starts while a healthy node with another config is
    # visible (each side could pick itself), so nodeone starts first and alone.
    pair.one.write_config()
    pair.two.write_config(threshold=7)
    pair.one.start()
    pair.wait(lambda: pair.role(pair.one) == "active", "nodeone active alone")
    pair.two.start()
    for n, other in ((pair.one, "nodetwo"), (pair.two, "nodeone")):
        pair.wait(lambda: (n.status() or {}).get("nodes", {}).get(other, {}).get("config_match") is False, "mismatch")
        assert any("different configuration" in w for w in n.status()["warnings"])  # type: ignore[index]
    # A mismatched node does not take over: stop nodeone's resources via standby.
    assert pair.one.ctl("standby").returncode == 0
    pair.wait(lambda: pair.role(pair.one) == "standby", "nodeone standby")
    assert pair.role(pair.two) == "standby" and not pair.two.running()
