"""A real hafd on loopback, driven only through hafctl, signals and its config file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

BIN = Path(sys.executable).parent
HAFD = str(BIN / "hafd")
HAFCTL = str(BIN / "hafctl")

# A server that proves it serves by binding a UDP port (readiness), and a command
# resource whose state is a file: enough to exercise ordering, monitors and restarts.
SERVER = "import socket,sys,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',int(sys.argv[1]))); time.sleep(3600)"


def config_text(tmp: Path, port: int, *, extra_arg: str = "x", broken: bool = False) -> str:
    return textwrap.dedent(
        f"""\
        cluster:
          name: solo
          state_dir: {tmp}/state
          control_socket: {tmp}/hafd.sock
        nodes:
          solo:
            priority: 100
            links: [127.0.0.1]
        resources:
          marker:
            type: command
            start: [touch, {tmp}/marker]
            stop: [rm, -f, {tmp}/marker]
            monitor: [{sys.executable}, -c, "import os,sys; sys.exit(0 if os.path.exists(sys.argv[1]) else 7)", {tmp}/marker]
            monitor_interval: 0.2
          server:
            type: process
            command: [{sys.executable}, -c, "{SERVER}", "{port}", "{extra_arg}"]
            ready: {{udp_port: {port}}}
            requires: [{'markr' if broken else 'marker'}]
            monitor_interval: 0.2
            migration_threshold: 1
            timeout: 5
        """
    )


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hafd:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_udp_port()
        self.config = tmp / "hafd.yaml"
        self.config.write_text(config_text(tmp, self.port))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(tmp / "hafd.log", "ab")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [HAFD, "--config", str(self.config), "--log-format", "json"], stdout=self.log, stderr=self.log
        )
        self.wait_for(lambda s: s["role"] in ("active", "standby", "failed"), "daemon up")

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([HAFCTL, "--socket", str(self.tmp / "hafd.sock"), *args], capture_output=True, text=True, timeout=10)

    def status(self) -> dict[str, Any] | None:
        r = self.ctl("status", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def wait_for(self, cond: Callable[[dict[str, Any]], bool], what: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll status until cond holds (bounded); the daemon exposes no event stream yet."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"hafd exited with {self.proc.returncode}: {self.logs()[-2000:]}")
            last = self.status()
            if last is not None and cond(last):
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last status: {json.dumps(last, indent=1)}")

    def server_pid(self) -> int:
        rec = json.loads((self.tmp / "state" / "server.pid").read_text())
        return int(rec["pid"])

    def logs(self) -> str:
        return (self.tmp / "hafd.log").read_text(errors="replace")

    def close(self) -> None:
        """Teardown by PID, also after a failed test: hafd, then the supervised server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        pidfile = self.tmp / "state" / "server.pid"
        if pidfile.exists():
            try:
                pid = int(json.loads(pidfile.read_text())["pid"])
                if alive(pid):
                    os.killpg(pid, signal.SIGKILL)
            except (ValueError, KeyError, ProcessLookupError):
                pass
        self.log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def hafd(tmp_path: Path) -> Iterator[Hafd]:
    d = Hafd(tmp_path)
    try:
        yield d
    finally:
        d.close()


def test_cold_start_runs_the_graph_in_order_and_status_explains_it(hafd: Hafd) -> None:
    hafd.start()
    s = hafd.wait_for(lambda s: s["role"] == "active", "active")
    assert s["node"] == "solo" and s["active_node"] == "solo"
    assert s["reason"] == "solo becomes active: it is the only visible node"
    assert {n: r["state"] for n, r in s["resources"].items()} == {"marker": "started", "server": "started"}
    assert (hafd.tmp / "marker").exists() and alive(hafd.server_pid())
    events = [json.loads(line) for line in hafd.logs().splitlines() if line.startswith("{")]
    starts = [e["resource"] for e in events if e.get("event") == "operation" and e.get("op") == "start"]
    assert starts == ["marker", "server"]
    human = hafd.ctl("status")
    assert human.returncode == 0 and "solo" in human.stdout and "server" in human.stdout


def test_killed_process_is_restarted_then_given_up_past_the_threshold(hafd: Hafd) -> None:
    hafd.start()
    hafd.wait_for(lambda s: s["role"] == "active", "active")
    first = hafd.server_pid()
    os.kill(first, signal.SIGKILL)
    s = hafd.wait_for(lambda s: s["resources"]["server"]["failures"] == 1 and s["resources"]["server"]["state"] == "started", "restart")
    second = hafd.server_pid()
    assert second != first and alive(second)
    # Whichever notices first (the pidfd watch or a monitor due at that moment) names it.
    err = s["resources"]["server"]["last_error"]
    assert "exited unexpectedly: killed by signal SIGKILL" in err or err == "monitor found it stopped"
    os.kill(second, signal.SIGKILL)  # migration_threshold 1: the second failure gives up
    s = hafd.wait_for(lambda s: s["role"] == "failed", "given up")
    assert s["resources"]["server"]["state"] == "failed"
    assert s["resources"]["marker"]["state"] == "started"
    r = hafd.ctl("cleanup", "server")
    assert r.returncode == 0, r.stderr
    hafd.wait_for(lambda s: s["role"] == "active", "back after cleanup")


def test_standby_stops_in_reverse_and_survives_a_restart(hafd: Hafd) -> None:
    hafd.start()
    hafd.wait_for(lambda s: s["role"] == "active", "active")
    pid = hafd.server_pid()
    assert hafd.ctl("standby").returncode == 0
    s = hafd.wait_for(lambda s: s["role"] == "standby", "standby")
    assert not alive(pid) and not (hafd.tmp / "marker").exists()
    assert any("standby" in w for w in s["warnings"])
    hafd.stop()
    hafd.start()
    assert hafd.wait_for(lambda s: True, "up")["role"] == "standby"  # standby is persistent
    assert hafd.ctl("unstandby").returncode == 0
    hafd.wait_for(lambda s: s["role"] == "active", "active again")


def test_sigterm_leaves_resources_running_and_the_next_daemon_adopts_them(hafd: Hafd) -> None:
    hafd.start()
    hafd.wait_for(lambda s: s["role"] == "active", "active")
    pid = hafd.server_pid()
    hafd.stop()
    assert hafd.proc is not None and hafd.proc.returncode == 0
    assert alive(pid) and (hafd.tmp / "marker").exists()
    hafd.start()
    hafd.wait_for(lambda s: s["role"] == "active", "active")
    assert hafd.server_pid() == pid  # adopted, not restarted
    events = [json.loads(line) for line in hafd.logs().splitlines() if line.startswith("{")]
    boots = [i for i, e in enumerate(events) if e.get("event") == "hafd_started"]
    assert len(boots) == 2
    second_life = events[boots[1]:]
    assert [e for e in second_life if e.get("event") == "operation" and e.get("op") in ("start", "stop")] == []


def test_reload_applies_a_valid_change_and_rejects_a_broken_one(hafd: Hafd) -> None:
    hafd.start()
    hafd.wait_for(lambda s: s["role"] == "active", "active")
    pid = hafd.server_pid()
    hafd.config.write_text(config_text(hafd.tmp, hafd.port, broken=True))
    r = hafd.ctl("reload")
    assert r.returncode == 1
    assert "resources.server.requires" in r.stderr and "did you mean 'marker'" in r.stderr
    assert hafd.server_pid() == pid and hafd.status()["role"] == "active"  # nothing changed
    hafd.config.write_text(config_text(hafd.tmp, hafd.port, extra_arg="y"))
    r = hafd.ctl("reload")
    assert r.returncode == 0, r.stderr
    hafd.wait_for(lambda s: s["resources"]["server"]["state"] == "started" and hafd.server_pid() != pid, "restarted with new args")
    with open(f"/proc/{hafd.server_pid()}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[-2] == b"y"


def test_bad_requests_get_structured_errors_and_change_nothing(hafd: Hafd) -> None:
    import socket

    hafd.start()
    hafd.wait_for(lambda s: s["role"] == "active", "active")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(str(hafd.tmp / "hafd.sock"))
        c.sendall(b"\x00garbage{{\n")
        reply = json.loads(c.recv(65536))
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    r = hafd.ctl("cleanup", "nosuch")
    assert r.returncode == 1 and "unknown resource 'nosuch'" in r.stderr
    assert hafd.status()["role"] == "active"


def test_check_config_reports_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config_text(tmp_path, 1234, broken=True))
    r = subprocess.run([HAFD, "--check-config", str(cfg), "--node", "solo"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{cfg}:" in r.stderr and "resources.server.requires: unknown resource 'markr'" in r.stderr
    cfg.write_text(config_text(tmp_path, 1234))
    r = subprocess.run([HAFD, "--check-config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "local node solo" in r.stdout
