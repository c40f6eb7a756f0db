"""Watch one process through a pidfd, and reap it if it is our child.

A pidfd names one process, not a number: it cannot be fooled by PID reuse, it
becomes readable the moment the process exits (whoever its parent is, so it also
works for a process adopted after a daemon restart), and `waitid(P_PIDFD)` reaps
exactly that process.  PID 1 on some hosts reaps orphans only after a second or
more, so the daemon must reap its own children at once rather than leave zombies
that look alive to `kill(pid, 0)`.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from typing import Callable

import structlog

log = structlog.get_logger(__name__)

# pidfd readable means the process has exited; its zombie is normally waitable at
# the same moment, but allow a few short retries before calling the status unknown.
_REAP_RETRIES = 20
_REAP_RETRY_DELAY = 0.005


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended. `known` is False for a process that is not our child."""

    code: int | None = None  # exit status, when it exited
    signal: int | None = None  # signal number, when a signal killed it
    known: bool = True

    @property
    def returncode(self) -> int | None:
        """subprocess's convention: the exit status, or minus the signal number."""
        if self.signal is not None:
            return -self.signal
        return self.code

    def describe(self) -> str:
        if not self.known:
            return "exited (status unknown: not our child)"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            return f"killed by signal {name}"
        return f"exited with status {self.code}"


def _decode(res: os.waitid_result) -> ExitStatus:
    if res.si_code == os.CLD_EXITED:
        return ExitStatus(code=res.si_status)
    return ExitStatus(signal=res.si_status)  # CLD_KILLED / CLD_DUMPED


class PidWatcher:
    """One pidfd registered with the event loop; `exited` is set once, with `status`.

    Raises ProcessLookupError from the constructor if the process is already gone
    (reaped); a zombie is still "there" and makes the watcher fire at once.
    """

    def __init__(
        self,
        pid: int,
        *,
        on_exit: Callable[[ExitStatus], None] | None = None,
        reap: bool = True,
    ) -> None:
        self.pid = pid
        self.status: ExitStatus | None = None
        self.exited = asyncio.Event()
        self._on_exit = on_exit
        self._reap = reap
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = os.pidfd_open(pid)
        self._tries = 0
        self._loop.add_reader(self._fd, self._readable)

    @property
    def fd(self) -> int | None:
        return self._fd

    def send_signal(self, sig: int) -> bool:
        """Signal exactly this process (never a recycled PID); False if it is gone."""
        if self._fd is None:
            return False
        try:
            signal.pidfd_send_signal(self._fd, sig)
            return True
        except ProcessLookupError:
            return False

    async def wait(self, timeout: float) -> ExitStatus | None:
        """The exit status, or None if the process still runs after `timeout` seconds."""
        try:
            await asyncio.wait_for(self.exited.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self.status

    def _readable(self) -> None:
        if self._fd is None:
            return
        self._loop.remove_reader(self._fd)
        self._try_reap()

    def _try_reap(self) -> None:
        if self._fd is None:
            return
        status = ExitStatus(known=False)
        if self._reap:
            try:
                res = os.waitid(os.P_PIDFD, self._fd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                res = None  # not our child: its parent (or PID 1) reaps it
            else:
                if res is None:
                    # Exited but not yet waitable; bounded retries, then give up on the status.
                    self._tries += 1
                    if self._tries <= _REAP_RETRIES:
                        self._loop.call_later(_REAP_RETRY_DELAY, self._try_reap)
                        return
                    log.warning("pidfd_reap_gave_up", pid=self.pid)
            if res is not None:
                status = _decode(res)
        self._finish(status)

    def _finish(self, status: ExitStatus) -> None:
        self.status = status
        self._close_fd()
        self.exited.set()
        if self._on_exit is not None:
            try:
                self._on_exit(status)
            except Exception:  # a callback bug must not kill the event loop's reader
                log.exception("pidfd_on_exit_failed", pid=self.pid)

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                self._loop.remove_reader(self._fd)
            except (ValueError, RuntimeError):
                pass  # loop already closed
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Stop watching; the process is left alone and `on_exit` will not be called."""
        self._on_exit = None
        self._close_fd()
