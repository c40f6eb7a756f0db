"""Run an external program from an argv list, with a timeout, and capture its output.

Every external program hafd runs (drbdadm, mount, systemctl, fence agents, hooks)
goes through `run` so that all of them share the same guarantees: no shell, a hard
timeout after which the whole process group is killed, the child reaped at once,
and a result that carries exit code and stderr for the operator.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

# After SIGTERM on timeout, how long a program gets before SIGKILL.
KILL_GRACE = 1.0
# Output beyond this is cut; a runaway program must not eat the daemon's memory.
MAX_OUTPUT = 64 * 1024


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    returncode: int | None  # None: timed out (killed) or could not be executed
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    error: str = ""  # exec failure ("No such file or directory: ...")

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One line for logs and `hafctl status`."""
        cmd = " ".join(self.argv)
        if self.error:
            return f"{cmd}: {self.error}"
        if self.timed_out:
            return f"{cmd}: timed out after {self.duration:.1f}s"
        tail = self.stderr.strip().splitlines()[-1:] or self.stdout.strip().splitlines()[-1:]
        msg = f"{cmd}: exit {self.returncode}"
        return f"{msg}: {tail[0]}" if tail else msg


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> RunResult:
    """Run argv; never raises for the program's own failures, only returns them.

    The child gets its own session so that, on timeout or cancellation, the whole
    group (including anything it forked) is killed and nothing lingers.
    """
    args = tuple(str(a) for a in argv)
    t0 = time.monotonic()
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as e:
        return RunResult(args, None, "", "", time.monotonic() - t0, error=f"{e.strerror or e}: {args[0]}")

    async def communicate() -> tuple[bytes, bytes]:
        out, err = await proc.communicate(stdin)
        return out[:MAX_OUTPUT], err[:MAX_OUTPUT]

    timed_out = False
    try:
        out, err = await asyncio.wait_for(communicate(), timeout)
    except asyncio.TimeoutError:
        timed_out = True
        out, err = await _terminate(proc)
    except asyncio.CancelledError:
        await asyncio.shield(_terminate(proc))
        raise
    return RunResult(
        args,
        None if timed_out else proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - t0,
        timed_out=timed_out,
    )


async def _terminate(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """SIGTERM the group, then SIGKILL after a grace period; always reap."""
    if proc.returncode is None:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE)
        except asyncio.TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    # The group may outlive its leader (a forked grandchild holding our pipes).
    _kill_group(proc.pid, signal.SIGKILL)
    return await _drain(proc.stdout), await _drain(proc.stderr)


async def _drain(stream: asyncio.StreamReader | None) -> bytes:
    """Read what is left, but never wait on a pipe held open by an escaped grandchild."""
    if stream is None:
        return b""
    try:
        return await asyncio.wait_for(stream.read(MAX_OUTPUT), 0.5)
    except asyncio.TimeoutError:
        return b""
