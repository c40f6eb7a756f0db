"""`filesystem`: mount DEVICE on DIRECTORY (e.g. a DRBD device on /data).

The truth is /proc/self/mountinfo, never `mount`'s exit code: a start is reported
only when the table shows the device on the directory, and a stop only when it no
longer does.  Devices are compared by canonical path (so /dev/drbd/by-res/r0 and
/dev/drbd0 are one device) or, for block devices, by major:minor, which is what
the kernel records and survives any naming.

Stopping a filesystem that a process still uses fails with EBUSY; with
`kill_holders` (the default, as Pacemaker's Filesystem force_unmount) the holders
are found by scanning /proc and killed, TERM first, then KILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat

import structlog

from hafd.agents.base import Agent, AgentContext, AgentError, Health, Status
from hafd.core.config import FilesystemParams, Resource
from hafd.core.mountinfo import MountEntry, MountinfoError, parse_mountinfo, visible_mount
from hafd.io.pidfd import PidWatcher
from hafd.io.runner import run

log = structlog.get_logger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
HOLDER_TERM_WAIT = 1.0  # after SIGTERM, before SIGKILL
HOLDER_KILL_WAIT = 1.0  # after SIGKILL, before giving up on the holders
UMOUNT_ATTEMPTS = 3  # umount; if busy, kill holders (if enabled) and try again


def read_mounts() -> list[MountEntry]:
    try:
        with open(MOUNTINFO) as f:
            return parse_mountinfo(f.read())
    except (OSError, MountinfoError) as e:
        raise AgentError(f"cannot read {MOUNTINFO}: {e}") from None


def _under(path: str, directory: str) -> bool:
    path = path.removesuffix(" (deleted)")
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _holds(pid: str, directory: str) -> bool:
    """Whether process `pid` uses anything under `directory`: cwd, root, exe, open files, mappings."""
    base = f"/proc/{pid}"
    links = [f"{base}/cwd", f"{base}/root", f"{base}/exe"]
    try:
        links += [f"{base}/fd/{fd}" for fd in os.listdir(f"{base}/fd")]
    except OSError:
        pass
    for link in links:
        try:
            if _under(os.readlink(link), directory):
                return True
        except OSError:
            continue
    try:
        with open(f"{base}/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/") and _under(parts[5].rstrip("\n"), directory):
                    return True
    except OSError:
        pass
    return False


def find_holders(directory: str) -> list[int]:
    """PIDs in our mount namespace using `directory` (never ourselves).

    Processes in other mount namespaces hold their own copy of the mount, which does
    not keep ours busy, so they are left alone (on a test bed both "nodes" can have
    the same device mounted on the same path).
    """
    me = os.getpid()
    try:
        my_ns = os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        my_ns = None
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if my_ns is not None and os.stat(f"/proc/{name}/ns/mnt").st_ino != my_ns:
                continue
        except OSError:
            continue  # gone, or a kernel thread
        if _holds(name, directory):
            found.append(int(name))
    return sorted(found)


class FilesystemAgent(Agent):
    def __init__(self, resource: Resource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        if not isinstance(resource.params, FilesystemParams):
            raise AgentError(f"resource {resource.name}: filesystem agent needs FilesystemParams")
        self.params: FilesystemParams = resource.params

    @property
    def directory(self) -> str:
        return os.path.realpath(self.params.directory)

    def _is_our_device(self, entry: MountEntry) -> bool:
        want = os.path.realpath(self.params.device)
        if os.path.realpath(entry.source) == want:
            return True
        try:
            st = os.stat(want)
        except OSError:
            return False
        return stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (entry.major, entry.minor)

    def _mounted(self) -> MountEntry | None:
        return visible_mount(read_mounts(), self.directory)

    def _wants_read_only(self) -> bool:
        return "ro" in self.params.options.split(",")

    async def monitor(self) -> Status:
        entry = self._mounted()
        if entry is None:
            return Status(Health.STOPPED, "not mounted")
        extra: dict[str, object] = {"source": entry.source, "fstype": entry.fstype, "dev": entry.dev}
        if not self._is_our_device(entry):
            why = f"{entry.source} is mounted on {self.directory}, not {self.params.device}"
            return Status(Health.FAILED, why, extra)
        if entry.read_only and not self._wants_read_only():
            return Status(Health.FAILED, f"{entry.source} on {self.directory} is read-only", extra)
        return Status(Health.RUNNING, f"{entry.source} on {self.directory} ({entry.fstype})", extra)

    async def start(self) -> None:
        directory, device = self.directory, self.params.device
        entry = self._mounted()
        if entry is not None:
            if self._is_our_device(entry):
                return
            raise AgentError(f"{directory} already has {entry.source} mounted on it, not {device}")
        if not os.path.isdir(directory):
            # Not created here: a missing mount point means a wrong config or an unprepared host.
            raise AgentError(f"mount point {directory} does not exist or is not a directory")
        argv = [self.ctx.programs.mount]
        if self.params.fstype:
            argv += ["-t", self.params.fstype]
        if self.params.options:
            argv += ["-o", self.params.options]
        argv += [device, directory]
        res = await run(argv, timeout=self.resource.timeout)
        if not res.ok:
            raise AgentError(res.describe(), exit_code=res.returncode, stderr=res.stderr, argv=res.argv)
        entry = self._mounted()
        if entry is None or not self._is_our_device(entry):
            found = f" ({entry.source} is)" if entry is not None else ""
            raise AgentError(
                f"mount reported success but {device} is not mounted on {directory}{found}", argv=res.argv
            )
        ms = round(res.duration * 1000, 1)
        log.info("filesystem_mounted", resource=self.name, device=device, directory=directory, ms=ms)

    async def stop(self) -> None:
        directory = self.directory
        last = ""
        for attempt in range(1, UMOUNT_ATTEMPTS + 1):
            entry = self._mounted()
            if entry is None:
                if attempt > 1:
                    log.info("filesystem_unmounted", resource=self.name, directory=directory)
                return
            if not self._is_our_device(entry):
                # Not ours to unmount; our resource is down.  monitor() reports FAILED meanwhile.
                log.warning("filesystem_foreign_mount", resource=self.name, directory=directory, source=entry.source)
                return
            if self.params.kill_holders and attempt > 1:
                # Only after umount said busy: finding holders reads every process's fds and
                # cwd (~20 ms here, and it holds up the event loop), while on a switchover the
                # service that used the filesystem has already stopped (Pacemaker's Filesystem
                # agent also tries first and kills on failure).
                await self._kill_holders(directory)
            res = await run([self.ctx.programs.umount, directory], timeout=self.resource.timeout)
            if res.ok:
                continue  # re-check: umount's word is not proof, and a second mount may lie beneath
            last = res.describe()
            log.warning("filesystem_umount_failed", resource=self.name, attempt=attempt, error=last)
            if not self.params.kill_holders:
                raise AgentError(last, exit_code=res.returncode, stderr=res.stderr, argv=res.argv)
        entry = self._mounted()
        if entry is not None and self._is_our_device(entry):
            raise AgentError(
                f"{self.params.device} is still mounted on {directory} after {UMOUNT_ATTEMPTS} attempts"
                + (f": {last}" if last else "")
            )
        log.info("filesystem_unmounted", resource=self.name, directory=directory)

    async def _kill_holders(self, directory: str) -> None:
        watchers: list[PidWatcher] = []
        for pid in find_holders(directory):
            try:
                w = PidWatcher(pid)  # reaps it if it happens to be our child
            except ProcessLookupError:
                continue
            if not _holds(str(pid), directory):  # re-check through the pidfd's lifetime: no PID reuse
                w.close()
                continue
            comm = _comm(pid)
            if w.send_signal(signal.SIGTERM):
                log.warning("filesystem_holder_killed", resource=self.name, pid=pid, comm=comm, signal="SIGTERM")
            watchers.append(w)
        try:
            await self._wait_all(watchers, HOLDER_TERM_WAIT)
            for w in watchers:
                if not w.exited.is_set() and w.send_signal(signal.SIGKILL):
                    log.warning("filesystem_holder_killed", resource=self.name, pid=w.pid, signal="SIGKILL")
            await self._wait_all(watchers, HOLDER_KILL_WAIT)
        finally:
            for w in watchers:
                w.close()

    @staticmethod
    async def _wait_all(watchers: list[PidWatcher], timeout: float) -> None:
        pending = [w.exited.wait() for w in watchers if not w.exited.is_set()]
        if pending:
            try:
                await asyncio.wait_for(asyncio.gather(*pending), timeout)
            except asyncio.TimeoutError:
                pass


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"
