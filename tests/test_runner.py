"""hafd.io.runner.run: exit codes, output capture, and that nothing it started outlives a timeout or a cancel."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.harness import kill_if_alive, wait_gone
from hafd.io import runner
from hafd.io.runner import MAX_OUTPUT, run


@pytest.fixture
def pids_to_reap() -> Iterator[list[int]]:
    """PIDs a test learns about; killed in teardown should the runner have failed to."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        kill_if_alive(pids)


async def wait_for_file(path: Path, timeout: float = 5.0) -> str:
    """The file's content once a child wrote it (a bounded poll: the child is in another process)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01) + 1):
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} was not written within {timeout}s")


async def test_exit_code_stdout_stderr() -> None:
    r = await run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5)
    assert r.returncode == 3 and not r.ok and not r.timed_out and r.error == ""
    assert r.stdout == "out\n" and r.stderr == "err\n"
    assert r.argv == ("/bin/sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.describe() == "/bin/sh -c echo out; echo err >&2; exit 3: exit 3: err"


async def test_success() -> None:
    r = await run(["/bin/true"], timeout=5)
    assert r.ok and r.returncode == 0 and r.stdout == "" and r.stderr == ""
    assert r.describe() == "/bin/true: exit 0"


async def test_stdin_env_and_non_string_args() -> None:
    r = await run(["/bin/cat"], timeout=5, stdin=b"hello")
    assert r.stdout == "hello"
    r = await run(["/bin/sh", "-c", 'echo "$HAFD_T $PATH"'], timeout=5, env={"HAFD_T": "x1"})
    value, path = r.stdout.split()
    assert value == "x1" and path == os.environ["PATH"]  # env is added to, not replacing, ours
    r = await run(["/bin/echo", 42], timeout=5)  # type: ignore[list-item]
    assert r.stdout == "42\n" and r.argv == ("/bin/echo", "42")


async def test_output_is_capped() -> None:
    r = await run(["/bin/sh", "-c", f"head -c {MAX_OUTPUT * 2} /dev/zero"], timeout=10)
    assert r.ok and len(r.stdout) == MAX_OUTPUT


async def test_exec_failures_are_returned_not_raised(tmp_path: Path) -> None:
    r = await run([str(tmp_path / "missing")], timeout=5)
    assert r.returncode is None and not r.ok
    assert r.error == f"No such file or directory: {tmp_path / 'missing'}"
    assert r.describe() == f"{tmp_path / 'missing'}: No such file or directory: {tmp_path / 'missing'}"
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    r = await run([str(script)], timeout=5)
    assert r.returncode is None and r.error.startswith("Permission denied")


async def test_timeout_kills_the_whole_process_group(tmp_path: Path, pids_to_reap: list[int]) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 60 & echo $$ $! > {pidfile}; wait"
    t0 = time.monotonic()
    r = await run(["/bin/sh", "-c", script], timeout=0.5)
    assert r.timed_out and r.returncode is None and not r.ok
    assert re.fullmatch(r"/bin/sh -c .*: timed out after 0\.\ds", r.describe()), r.describe()
    assert time.monotonic() - t0 < 0.5 + runner.KILL_GRACE
    leader, grandchild = map(int, pidfile.read_text().split())
    pids_to_reap += [leader, grandchild]
    with pytest.raises(ProcessLookupError):
        os.kill(leader, 0)  # killed and reaped
    assert wait_gone([grandchild]), "the grandchild survived the timeout"


async def test_timeout_escalates_to_sigkill(tmp_path: Path, pids_to_reap: list[int]) -> None:
    pidfile = tmp_path / "pid"
    # The shell ignores SIGTERM and so does the sleep it forks (ignored signals are inherited).
    script = f"trap '' TERM; sleep 60 & echo $$ $! > {pidfile}; wait; wait"
    t0 = time.monotonic()
    r = await run(["/bin/sh", "-c", script], timeout=0.3)
    took = time.monotonic() - t0
    assert r.timed_out
    assert runner.KILL_GRACE <= took < 0.3 + runner.KILL_GRACE + 1.0
    pids = list(map(int, pidfile.read_text().split()))
    pids_to_reap += pids
    assert wait_gone(pids)


async def test_grandchild_holding_the_pipe_after_leader_exit_is_killed(tmp_path: Path, pids_to_reap: list[int]) -> None:
    # A program that leaves a background child with our stdout: the read never ends on its own.
    pidfile = tmp_path / "pid"
    r = await run(["/bin/sh", "-c", f"sleep 60 & echo $! > {pidfile}; exit 0"], timeout=0.5)
    grandchild = int(pidfile.read_text())
    pids_to_reap.append(grandchild)
    assert r.timed_out
    assert wait_gone([grandchild])


async def test_cancellation_kills_and_reaps_the_child(tmp_path: Path, pids_to_reap: list[int]) -> None:
    pidfile = tmp_path / "pids"
    task = asyncio.create_task(run(["/bin/sh", "-c", f"sleep 60 & echo $$ $! > {pidfile}; wait"], timeout=30))
    leader, grandchild = map(int, (await wait_for_file(pidfile)).split())
    pids_to_reap += [leader, grandchild]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(leader, 0)
    assert wait_gone([grandchild])


async def test_child_runs_in_its_own_session(tmp_path: Path) -> None:
    r = await run(["/bin/sh", "-c", "ps -o sid= -p $$"], timeout=5)
    assert r.ok
    assert int(r.stdout.strip()) != os.getsid(0)
