"""The `process` agent against real child processes (python3 -c scripts, sleep)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
from structlog.testing import capture_logs

from hafd.agents.base import AgentContext, AgentError, Health
from hafd.agents.process import ProcessAgent, parse_stat, port_bound, read_stat
from hafd.core.config import ProcessParams, Programs, ReadyCheck, Resource

PY = sys.executable


class Exits:
    """Collects on_unexpected_exit calls; `event` is set on the first one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.event = asyncio.Event()

    def __call__(self, name: str, why: str) -> None:
        self.calls.append((name, why))
        self.event.set()


class Bed:
    """Makes agents on one state_dir and remembers every PID to kill in teardown."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.exits = Exits()
        self.agents: list[ProcessAgent] = []
        self.pids: set[int] = set()

    def agent(self, *command: str, ready: ReadyCheck | None = None, timeout: float = 20.0,
              stop_signal: str = "TERM", name: str = "svc") -> ProcessAgent:
        res = Resource(name=name, type="process", timeout=timeout,
                       params=ProcessParams(command=command, ready=ready, stop_signal=stop_signal))
        a = ProcessAgent(res, AgentContext(Programs(), str(self.state_dir), self.exits))
        self.agents.append(a)
        return a

    async def start(self, agent: ProcessAgent) -> int:
        try:
            await agent.start()
        finally:
            if agent.pid is not None:
                self.pids.add(agent.pid)
        assert agent.pid is not None
        return agent.pid

    def popen(self, *argv: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, start_new_session=True)
        self.pids.add(p.pid)
        return p


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    b = Bed(tmp_path / "state")
    try:
        yield b
    finally:
        for a in b.agents:
            await a.close()
        for pid in b.pids:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def reaped(pid: int) -> bool:
    """True if `pid` is no longer our child (so no zombie of it is left)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # running, or a zombie nobody reaped: either way not reaped
    except ChildProcessError:
        return True
    return False


def alive(pid: int) -> bool:
    st = read_stat(pid)
    return st is not None and st[0] != "Z"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(kind: int, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
        return False


# --- pure helpers -------------------------------------------------------------


def test_parse_stat_with_hostile_command_name() -> None:
    fields = " ".join(str(n) for n in range(4, 30))
    assert parse_stat(f"123 (we ird) (x)) S {fields}") == ("S", 22)


def test_port_bound_tables() -> None:
    udp = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "  1: 0100007F:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1\n"
    )
    tcp6 = (
        "  sl  local_address                         remote_address                        st\n"
        "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A\n"
        "   1: 00000000000000000000000000000000:0050 00000000000000000000000001000000:D431 01\n"
    )
    assert port_bound(udp, 67, listen_only=False)
    assert not port_bound(udp, 68, listen_only=False)
    assert port_bound(tcp6, 8080, listen_only=True)
    assert not port_bound(tcp6, 80, listen_only=True)  # established, not listening
    assert not port_bound("header only\n", 67, listen_only=False)


def test_bad_stop_signal_is_a_clear_error(tmp_path: Path) -> None:
    res = Resource(name="x", type="process", params=ProcessParams(command=("sleep", "1"), stop_signal="NOPE"))
    with pytest.raises(AgentError, match="unknown stop_signal 'NOPE'"):
        ProcessAgent(res, AgentContext(Programs(), str(tmp_path)))


# --- lifecycle ----------------------------------------------------------------


async def test_start_monitor_stop(bed: Bed) -> None:
    a = bed.agent("sleep", "60")
    assert (await a.monitor()).health is Health.STOPPED
    await a.stop()  # stop when stopped: nothing to do
    pid = await bed.start(a)
    assert alive(pid)
    st = await a.monitor()
    assert st.health is Health.RUNNING and st.extra["pid"] == pid
    rec = json.loads((bed.state_dir / "svc.pid").read_text())
    assert rec == {"pid": pid, "starttime": read_stat(pid)[1], "argv": ["sleep", "60"]}  # type: ignore[index]
    await a.start()  # idempotent: same process
    assert a.pid == pid
    await a.stop()
    assert reaped(pid)
    assert (await a.monitor()).health is Health.STOPPED
    assert not (bed.state_dir / "svc.pid").exists()
    assert bed.exits.calls == []  # a requested stop is not an unexpected exit


async def test_exec_failure_is_agent_error(bed: Bed, tmp_path: Path) -> None:
    a = bed.agent(str(tmp_path / "no-such-program"))
    with pytest.raises(AgentError, match="cannot execute .*no-such-program"):
        await a.start()
    assert not (bed.state_dir / "svc.pid").exists()


async def test_ready_by_udp_port(bed: Bed) -> None:
    port = free_port(socket.SOCK_DGRAM)
    script = (
        "import socket, time; time.sleep(0.2); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('127.0.0.1', {port})); time.sleep(60)"
    )
    a = bed.agent(PY, "-c", script, ready=ReadyCheck(udp_port=port, timeout=10))
    t0 = time.monotonic()
    await bed.start(a)
    assert time.monotonic() - t0 >= 0.2
    assert port_in_use(socket.SOCK_DGRAM, port)  # bound at the moment start returned
    await a.stop()
    assert not port_in_use(socket.SOCK_DGRAM, port)


async def test_ready_by_tcp_listen(bed: Bed) -> None:
    port = free_port(socket.SOCK_STREAM)
    script = (
        "import socket, time; time.sleep(0.2); s = socket.socket(); "
        f"s.bind(('127.0.0.1', {port})); time.sleep(0.2); s.listen(); time.sleep(60)"
    )
    a = bed.agent(PY, "-c", script, ready=ReadyCheck(tcp_port=port, timeout=10))
    t0 = time.monotonic()
    await bed.start(a)
    assert time.monotonic() - t0 >= 0.4  # bound is not enough for TCP: it must listen
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


async def test_ready_by_file(bed: Bed, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    script = f"import time; time.sleep(0.2); open({str(flag)!r}, 'w').close(); time.sleep(60)"
    a = bed.agent(PY, "-c", script, ready=ReadyCheck(file=str(flag), timeout=10))
    await bed.start(a)
    assert flag.exists()


async def test_dies_before_ready(bed: Bed) -> None:
    script = "import sys, time; time.sleep(0.1); print('no subnet declaration', file=sys.stderr); sys.exit(3)"
    a = bed.agent(PY, "-c", script, ready=ReadyCheck(udp_port=free_port(socket.SOCK_DGRAM), timeout=10))
    t0 = time.monotonic()
    with pytest.raises(AgentError) as info:
        await a.start()
    assert time.monotonic() - t0 < 5  # seen at once, not at the ready timeout
    err = info.value
    assert "exited with status 3 before it was ready" in err.message
    assert err.exit_code == 3
    assert "no subnet declaration" in err.stderr
    assert (bed.state_dir / "svc.log").read_text().count("no subnet declaration") == 1
    assert not (bed.state_dir / "svc.pid").exists()
    assert bed.exits.calls == []  # reported by the exception, not as an unexpected exit
    assert (await a.monitor()).health is Health.STOPPED


async def test_not_ready_in_time_is_stopped(bed: Bed, tmp_path: Path) -> None:
    a = bed.agent("sleep", "60", ready=ReadyCheck(file=str(tmp_path / "never"), timeout=0.3))
    with capture_logs() as logs, pytest.raises(AgentError, match="not ready after 0.3s"):
        await a.start()
    (pid,) = [e["pid"] for e in logs if e["event"] == "process_started"]
    bed.pids.add(pid)
    assert reaped(pid)
    assert (await a.monitor()).health is Health.STOPPED


# --- supervision --------------------------------------------------------------


async def test_unexpected_kill_is_reported_and_reaped(bed: Bed) -> None:
    a = bed.agent("sleep", "60")
    pid = await bed.start(a)
    os.kill(pid, signal.SIGKILL)
    await asyncio.wait_for(bed.exits.event.wait(), 5)
    assert bed.exits.calls == [("svc", "killed by signal SIGKILL")]
    assert reaped(pid)  # no zombie left behind for a slow PID 1
    assert (await a.monitor()).health is Health.STOPPED
    assert not (bed.state_dir / "svc.pid").exists()


async def test_unexpected_exit_status_is_reported(bed: Bed) -> None:
    a = bed.agent(PY, "-c", "import time; time.sleep(0.2); raise SystemExit(7)")
    pid = await bed.start(a)
    await asyncio.wait_for(bed.exits.event.wait(), 5)
    assert bed.exits.calls == [("svc", "exited with status 7")]
    assert reaped(pid)


async def test_adoption_after_close(bed: Bed) -> None:
    first = bed.agent("sleep", "60")
    pid = await bed.start(first)
    await first.close()  # the daemon exits, leaving the service running
    assert alive(pid)
    second = bed.agent("sleep", "60")
    st = await second.monitor()
    assert st.health is Health.RUNNING and st.extra["pid"] == pid
    await second.start()  # already running: adopt, do not spawn another
    assert second.pid == pid
    await second.stop()
    assert not alive(pid)
    assert (await second.monitor()).health is Health.STOPPED
    assert bed.exits.calls == []


async def test_adopted_process_exit_is_reported(bed: Bed) -> None:
    first = bed.agent("sleep", "60")
    pid = await bed.start(first)
    await first.close()
    second = bed.agent("sleep", "60")
    assert (await second.monitor()).health is Health.RUNNING
    os.kill(pid, signal.SIGKILL)
    await asyncio.wait_for(bed.exits.event.wait(), 5)
    assert bed.exits.calls[0][0] == "svc"
    assert (await second.monitor()).health is Health.STOPPED


async def test_stale_pid_file_with_recycled_pid(bed: Bed) -> None:
    other = bed.popen("sleep", "60")  # stands for an unrelated process that got the old PID
    st = read_stat(other.pid)
    assert st is not None
    bed.state_dir.mkdir()
    (bed.state_dir / "svc.pid").write_text(json.dumps({"pid": other.pid, "starttime": st[1] + 1, "argv": ["x"]}))
    a = bed.agent("sleep", "60")
    assert (await a.monitor()).health is Health.STOPPED
    assert not (bed.state_dir / "svc.pid").exists()
    await a.stop()
    assert alive(other.pid)  # never signal a stranger
    pid = await bed.start(a)
    assert pid != other.pid


async def test_pid_file_pointing_at_a_zombie(bed: Bed) -> None:
    z = bed.popen("true")
    deadline = time.monotonic() + 5
    while (read_stat(z.pid) or ("?",))[0] != "Z":  # bounded: `true` exits at once
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    bed.state_dir.mkdir()
    st = read_stat(z.pid)
    assert st is not None
    (bed.state_dir / "svc.pid").write_text(json.dumps({"pid": z.pid, "starttime": st[1], "argv": []}))
    assert (await bed.agent("true").monitor()).health is Health.STOPPED


async def test_garbage_pid_file_is_stopped(bed: Bed) -> None:
    bed.state_dir.mkdir()
    (bed.state_dir / "svc.pid").write_text("{not json")
    assert (await bed.agent("sleep", "60").monitor()).health is Health.STOPPED
    assert not (bed.state_dir / "svc.pid").exists()


async def test_stop_escalates_to_sigkill(bed: Bed, tmp_path: Path) -> None:
    flag = tmp_path / "armed"
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(flag)!r}, 'w').close(); time.sleep(60)"
    )
    a = bed.agent(PY, "-c", script, ready=ReadyCheck(file=str(flag)), timeout=0.3)
    pid = await bed.start(a)
    t0 = time.monotonic()
    with capture_logs() as logs:
        await a.stop()
    assert time.monotonic() - t0 >= 0.3
    assert reaped(pid)
    assert any(e["event"] == "process_stop_timeout_sigkill" for e in logs)
    assert any(e["event"] == "process_stopped" and e["status"] == "killed by signal SIGKILL" for e in logs)


async def test_stop_kills_the_whole_group(bed: Bed, tmp_path: Path) -> None:
    pidf = tmp_path / "grandchild"
    a = bed.agent("/bin/sh", "-c", f"sleep 60 & echo $! > {pidf}.tmp; mv {pidf}.tmp {pidf}; exec sleep 60",
                  ready=ReadyCheck(file=str(pidf)))
    await bed.start(a)
    grandchild = int(pidf.read_text())
    assert alive(grandchild)
    await a.stop()
    deadline = time.monotonic() + 5
    while alive(grandchild):  # an orphan: PID 1 reaps it, maybe slowly; bounded wait for it to die
        assert time.monotonic() < deadline, "grandchild survived the stop"
        await asyncio.sleep(0.01)


async def test_stop_signal_is_configurable(bed: Bed, tmp_path: Path) -> None:
    flag = tmp_path / "armed"
    script = (
        "import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(42)); "
        f"open({str(flag)!r}, 'w').close(); time.sleep(60)"
    )
    a = bed.agent(PY, "-c", script, ready=ReadyCheck(file=str(flag)), stop_signal="INT")
    await bed.start(a)
    with capture_logs() as logs:
        await a.stop()
    assert any(e["event"] == "process_stopped" and e["status"] == "exited with status 42" for e in logs)
