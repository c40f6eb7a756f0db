"""The command agent: the operator's own argv lists, monitor by OCF-style exit codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hafd.agents.base import AgentContext, AgentError, Health
from hafd.agents.command import CommandAgent
from hafd.core.config import CommandParams, Programs, Resource


def agent(tmp_path: Path, *, start: list[str] | None = None, stop: list[str] | None = None,
          monitor: list[str] | None = None, timeout: float = 5.0) -> CommandAgent:
    flag = tmp_path / "running"
    log = tmp_path / "log"
    params = CommandParams(
        start=tuple(start if start is not None else ["/bin/sh", "-c", f"echo start >> {log}; touch {flag}"]),
        stop=tuple(stop if stop is not None else ["/bin/sh", "-c", f"echo stop >> {log}; rm -f {flag}"]),
        monitor=tuple(monitor if monitor is not None else ["/bin/sh", "-c", f"test -e {flag} || exit 7"]),
    )
    res = Resource(name="thing", type="command", timeout=timeout, params=params)
    return CommandAgent(res, AgentContext(programs=Programs(), state_dir=str(tmp_path)))


def ran(tmp_path: Path) -> list[str]:
    log = tmp_path / "log"
    return log.read_text().split() if log.exists() else []


async def test_start_stop_and_idempotency(tmp_path: Path) -> None:
    a = agent(tmp_path)
    assert (await a.monitor()).health is Health.STOPPED
    await a.start()
    assert (tmp_path / "running").exists()
    await a.start()  # monitor says running: start is not run again
    assert ran(tmp_path) == ["start"]
    status = await a.monitor()
    assert status.health is Health.RUNNING and status.extra == {"exit_code": 0}
    await a.stop()
    await a.stop()
    assert ran(tmp_path) == ["start", "stop"]
    assert not (tmp_path / "running").exists()


@pytest.mark.parametrize("code, health", [(0, Health.RUNNING), (7, Health.STOPPED), (1, Health.FAILED),
                                          (2, Health.FAILED), (6, Health.FAILED), (127, Health.FAILED)])
async def test_monitor_exit_codes(tmp_path: Path, code: int, health: Health) -> None:
    a = agent(tmp_path, monitor=["/bin/sh", "-c", f"echo 'check says {code}' >&2; exit {code}"])
    status = await a.monitor()
    assert status.health is health
    assert status.extra["exit_code"] == code
    if health is Health.FAILED:
        assert status.detail == f"sh -c echo 'check says {code}' >&2; exit {code}: exit {code} " \
            f"(failed: 0 = running, 7 = stopped, anything else = failed): check says {code}"


async def test_start_failure_carries_exit_code_and_stderr(tmp_path: Path) -> None:
    a = agent(tmp_path, start=["/bin/sh", "-c", "echo 'port 67 in use' >&2; exit 3"])
    with pytest.raises(AgentError) as ei:
        await a.start()
    assert ei.value.message == "sh -c echo 'port 67 in use' >&2; exit 3 failed (exit 3): port 67 in use"
    assert ei.value.exit_code == 3 and ei.value.stderr == "port 67 in use"
    assert ei.value.argv == ("/bin/sh", "-c", "echo 'port 67 in use' >&2; exit 3")


async def test_start_that_does_not_start_is_an_error(tmp_path: Path) -> None:
    a = agent(tmp_path, start=["/bin/true"])
    with pytest.raises(AgentError, match="thing: start command succeeded but monitor says .*exit 7 \\(not running\\)"):
        await a.start()


async def test_stop_that_does_not_stop_is_an_error(tmp_path: Path) -> None:
    a = agent(tmp_path)
    await a.start()
    b = agent(tmp_path, stop=["/bin/true"])
    with pytest.raises(AgentError, match="thing: stop command succeeded but monitor says .*exit 0 \\(running\\)"):
        await b.stop()


async def test_failed_resource_is_stopped_by_stop(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    a = agent(tmp_path, stop=["/bin/rm", "-f", str(broken)],
              monitor=["/bin/sh", "-c", f"test -e {broken} && exit 1; exit 7"])
    assert (await a.monitor()).health is Health.FAILED
    await a.stop()
    assert not broken.exists()


async def test_hanging_monitor_times_out(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    a = agent(tmp_path, monitor=["/bin/sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout=0.5)
    with pytest.raises(AgentError) as ei:
        await a.monitor()
    assert ei.value.message.startswith("sh -c echo $$ > ")
    assert "timed out after 0." in ei.value.message
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the runner reaped it


async def test_missing_program_and_empty_command(tmp_path: Path) -> None:
    a = agent(tmp_path, monitor=[str(tmp_path / "nope")])
    with pytest.raises(AgentError, match="nope could not run: No such file or directory"):
        await a.monitor()
    b = agent(tmp_path, start=[], monitor=["/bin/sh", "-c", "exit 7"])
    with pytest.raises(AgentError, match="no command configured"):
        await b.start()


def test_wrong_params_type_is_a_clear_error(tmp_path: Path) -> None:
    res = Resource(name="x", type="command", params=None)
    with pytest.raises(TypeError, match="command agent needs CommandParams"):
        CommandAgent(res, AgentContext(programs=Programs(), state_dir=str(tmp_path)))
