"""`process`: hafd itself runs and supervises one foreground program (e.g. `dhcpd -f`).

Being the parent lets hafd hear of a crash the instant it happens (a pidfd becomes
readable) instead of at the next monitor, and reap the child at once (PID 1 on
some hosts reaps orphans only after a second or more).  A daemon restart must not
kill the service, so the identity of the process — PID plus its start time, which
a recycled PID cannot share — is kept in `<state_dir>/<resource>.pid`; a new
agent instance adopts the process from it and watches it with a pidfd again.

Output: the program's stdout and stderr are appended to `<state_dir>/<resource>.log`
(rotated once to `.log.1` when it exceeds LOG_ROTATE_BYTES at start), so a program
that dies at start leaves its reason where the operator looks, and the tail of it
goes into the AgentError.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from dataclasses import dataclass

import structlog

from hafd.agents.base import Agent, AgentContext, AgentError, Health, Status
from hafd.core.config import ProcessParams, ReadyCheck, Resource
from hafd.io.pidfd import ExitStatus, PidWatcher

log = structlog.get_logger(__name__)

READY_POLL = 0.005  # seconds between readiness probes
KILL_WAIT = 5.0  # after SIGKILL, how long before we call the stop failed
LOG_ROTATE_BYTES = 1 << 20
_TCP_LISTEN = "0A"

# Popen objects of children we stopped watching (close()) while they run: kept alive
# so that Popen.__del__ never puts them on subprocess's own reaping list, which
# would waitpid() their PID later, maybe after it was recycled for another child.
_DETACHED: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class PidRecord:
    pid: int
    starttime: int
    argv: tuple[str, ...]


def parse_stat(text: str) -> tuple[str, int]:
    """(state, starttime) from /proc/PID/stat; the command name may hold spaces and ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])  # fields 3 (state) and 22 (starttime)


def read_stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None


def port_bound(table: str, port: int, *, listen_only: bool) -> bool:
    """Whether a /proc/net/{tcp,udp}[6] table has a socket bound to local `port`."""
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        _, _, hexport = fields[1].rpartition(":")
        try:
            if int(hexport, 16) != port:
                continue
        except ValueError:
            continue
        if not listen_only or fields[3] == _TCP_LISTEN:
            return True
    return False


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _signal_number(name: str) -> int:
    n = name.upper()
    n = n if n.startswith("SIG") else "SIG" + n
    try:
        return int(signal.Signals[n])
    except KeyError:
        raise AgentError(f"unknown stop_signal {name!r}") from None


@dataclass
class _Child:
    """The process this agent watches; `popen` only if this instance started it."""

    record: PidRecord
    watcher: PidWatcher
    popen: subprocess.Popen[bytes] | None = None


class ProcessAgent(Agent):
    def __init__(self, resource: Resource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        if not isinstance(resource.params, ProcessParams) or not resource.params.command:
            raise AgentError(f"resource {resource.name}: process agent needs ProcessParams with a command")
        self.params: ProcessParams = resource.params
        self.stop_signal = _signal_number(self.params.stop_signal)
        self.pid_file = os.path.join(ctx.state_dir, f"{resource.name}.pid")
        self.log_file = os.path.join(ctx.state_dir, f"{resource.name}.log")
        self._child: _Child | None = None
        self._expect_exit = False  # set by start (a failure is raised instead) and stop (exit is wanted)
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """PID of the watched process, if any (for tests and status)."""
        return self._child.record.pid if self._child else None

    # --- identity -----------------------------------------------------------

    def _load_record(self) -> PidRecord | None:
        try:
            with open(self.pid_file) as f:
                d = json.load(f)
            return PidRecord(int(d["pid"]), int(d["starttime"]), tuple(str(a) for a in d["argv"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("process_pid_file_unreadable", resource=self.name, path=self.pid_file, error=str(e))
            self._remove_pid_file()
            return None

    def _write_record(self, rec: PidRecord) -> None:
        tmp = self.pid_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": rec.pid, "starttime": rec.starttime, "argv": list(rec.argv)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.pid_file)

    def _remove_pid_file(self) -> None:
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass

    @staticmethod
    def _alive(rec: PidRecord) -> bool:
        st = read_stat(rec.pid)
        return st is not None and st[1] == rec.starttime and st[0] != "Z"

    def _current(self) -> PidRecord | None:
        """The running process of this resource, watched; None if there is none."""
        child = self._child
        if child is not None and not child.watcher.exited.is_set():
            # Our own record is authoritative while its watcher runs. A zombie here has
            # exited and the watcher's callback (reap, report) is about to run: leave it be.
            return child.record if self._alive(child.record) else None
        self._forget()
        rec = self._load_record()
        if rec is None:
            return None
        if not self._alive(rec):
            log.info("process_stale_pid_file", resource=self.name, pid=rec.pid, starttime=rec.starttime)
            self._remove_pid_file()
            return None
        return rec if self._adopt(rec) else None

    def _adopt(self, rec: PidRecord) -> bool:
        """Watch a process this instance did not start (after a daemon restart)."""
        try:
            child = _Child(rec, PidWatcher(rec.pid, on_exit=lambda st: self._exited(child, st)))
        except ProcessLookupError:
            return False
        if not self._alive(rec):  # recycled or exited between our check and pidfd_open
            child.watcher.close()
            return False
        self._child = child
        log.info("process_adopted", resource=self.name, pid=rec.pid)
        return True

    def _forget(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.watcher.close()
        if child.popen is not None and child.popen.returncode is None:
            child.popen.poll()  # reap it if it is a zombie; safe: an unreaped PID is not recycled
            if child.popen.returncode is None:
                _DETACHED.append(child.popen)

    def _exited(self, child: _Child, status: ExitStatus) -> None:
        if child.popen is not None and status.known:
            child.popen.returncode = status.returncode  # we reaped it; Popen must not waitpid again
        pid = child.record.pid
        if child is not self._child:
            log.info("process_exited", resource=self.name, pid=pid, status=status.describe(), superseded=True)
            return
        if self._expect_exit:
            log.info("process_exited", resource=self.name, pid=pid, status=status.describe())
            return
        log.warning("process_exited_unexpectedly", resource=self.name, pid=pid, status=status.describe())
        self._remove_pid_file()
        self.ctx.on_unexpected_exit(self.name, status.describe())

    # --- operations ---------------------------------------------------------

    async def start(self) -> None:
        async with self._lock:
            if self._current() is not None:
                return
            self._forget()
            self._expect_exit = True
            try:
                child = self._spawn()
                await self._wait_ready(child, self.params.ready)
            finally:
                self._expect_exit = False

    def _spawn(self) -> _Child:
        argv = self.params.command
        os.makedirs(self.ctx.state_dir, exist_ok=True)
        self._rotate_log()
        try:
            with open(self.log_file, "ab") as out:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as e:
            raise AgentError(f"cannot execute {argv[0]}: {e.strerror or e}", argv=argv) from None
        # Our unreaped child cannot vanish, so its stat and pidfd are there even if it already died.
        st = read_stat(popen.pid)
        rec = PidRecord(popen.pid, st[1] if st else 0, tuple(argv))
        child = _Child(rec, PidWatcher(popen.pid, on_exit=lambda s: self._exited(child, s)), popen)
        self._child = child
        self._write_record(rec)
        log.info("process_started", resource=self.name, pid=popen.pid, argv=list(argv), log=self.log_file)
        return child

    def _rotate_log(self) -> None:
        try:
            if os.path.getsize(self.log_file) > LOG_ROTATE_BYTES:
                os.replace(self.log_file, self.log_file + ".1")
        except OSError:
            pass

    def _log_tail(self, limit: int = 2000) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @staticmethod
    def _ready(ready: ReadyCheck) -> bool:
        if ready.udp_port is not None and not any(
            port_bound(_read(f"/proc/net/{t}"), ready.udp_port, listen_only=False) for t in ("udp", "udp6")
        ):
            return False
        if ready.tcp_port is not None and not any(
            port_bound(_read(f"/proc/net/{t}"), ready.tcp_port, listen_only=True) for t in ("tcp", "tcp6")
        ):
            return False
        if ready.file is not None and not os.path.exists(ready.file):
            return False
        return True

    async def _wait_ready(self, child: _Child, ready: ReadyCheck | None) -> None:
        argv = self.params.command
        watcher = child.watcher
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (ready.timeout if ready else 0.0)
        polls = 0
        while True:
            if watcher.exited.is_set():
                status = watcher.status or ExitStatus(known=False)
                self._remove_pid_file()
                self._forget()
                raise AgentError(
                    f"{argv[0]} {status.describe()} before it was ready",
                    exit_code=status.returncode,
                    stderr=self._log_tail(),
                    argv=argv,
                )
            if ready is None or self._ready(ready):
                log.info("process_ready", resource=self.name, pid=watcher.pid, polls=polls)
                return
            if loop.time() >= deadline:
                await self._terminate(child)
                raise AgentError(
                    f"{argv[0]} not ready after {ready.timeout:g}s (stopped it)",
                    stderr=self._log_tail(),
                    argv=argv,
                )
            polls += 1
            await watcher.wait(READY_POLL)  # a sleep that ends at once if the process dies

    async def stop(self) -> None:
        async with self._lock:
            if self._current() is None or self._child is None:
                self._remove_pid_file()
                return
            self._expect_exit = True
            try:
                await self._terminate(self._child)
            finally:
                self._expect_exit = False

    async def _terminate(self, child: _Child) -> None:
        """stop_signal to the group, SIGKILL after resource.timeout; leftovers of the group die too."""
        watcher = child.watcher
        pid = watcher.pid
        self._kill_group(watcher, self.stop_signal)
        status = await watcher.wait(self.resource.timeout)
        if status is None:
            log.warning("process_stop_timeout_sigkill", resource=self.name, pid=pid, timeout=self.resource.timeout)
            self._kill_group(watcher, signal.SIGKILL)
            status = await watcher.wait(KILL_WAIT)
            if status is None:
                raise AgentError(f"pid {pid} still alive {KILL_WAIT:g}s after SIGKILL")
        # The group may outlive its leader (a forked helper); a stop must leave nothing behind.
        # A PID is not recycled while any member of its group exists, so this reaches only them.
        self._kill_group(watcher, signal.SIGKILL)
        log.info("process_stopped", resource=self.name, pid=pid, status=status.describe())
        self._remove_pid_file()
        self._forget()

    @staticmethod
    def _kill_group(watcher: PidWatcher, sig: int) -> None:
        try:
            os.killpg(watcher.pid, sig)
        except ProcessLookupError:
            watcher.send_signal(sig)  # not (or no longer) a group leader: signal the process alone

    async def monitor(self) -> Status:
        rec = self._current()
        if rec is None:
            return Status(Health.STOPPED, "not running")
        return Status(Health.RUNNING, f"pid {rec.pid}", {"pid": rec.pid, "argv": list(rec.argv)})

    async def close(self) -> None:
        """Stop watching; the process keeps running and the pid file stays for the next instance."""
        self._forget()
