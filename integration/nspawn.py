"""A real systemd, booted in a container inside a network namespace the test created.

Why: scenario 13 of issue 4 must show hafd under the systemd it ships a unit for
(Type=notify readiness, the watchdog, Restart=, KillMode=process), but PID 1 on these
machines is not systemd.  anchors.md found a recipe that works here:
`systemd-nspawn --volatile=yes -D /` boots systemd on a tmpfs root with the host's
/usr (read-only) inside a given network namespace.  Everything else the container
needs (the venv, the repository, config files) comes in through read-only binds.

Teardown is by PID: `kill -9` of the container's systemd (its PID 1) tears down the
whole PID namespace; then the nspawn process exits and is reaped.  `close()` is
idempotent and is meant to be called from a finally / fixture teardown.

    c = Container("h1a2b-one", "/run/netns/h1a2b-one", log_dir,
                  binds_ro=[("/opt/hafd-venv", "/opt/hafd-venv")], tmpfs=["/var/lib/dhcp"])
    try:
        c.boot()
        c.systemctl("start", "hafd")
        print(c.show("hafd", "ActiveState", "MainPID"))
    finally:
        c.close()
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

NSPAWN = "/usr/bin/systemd-nspawn"
NSENTER = "/usr/bin/nsenter"
BOOT_TIMEOUT = 60.0  # systemd up and `is-system-running` settled
CMD_TIMEOUT = 30.0  # any single command inside the container
EXIT_TIMEOUT = 10.0  # nspawn gone after its container's PID 1 was killed
POLL = 0.05
# A clean environment for commands in the container: the host's PATH may name
# directories (pyenv shims, ...) that are not there.
CONTAINER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                 "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}

T = TypeVar("T")


class ContainerError(RuntimeError):
    """The container did not boot, or a command in it failed; the message says which and why."""


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = POLL) -> T:
    """Poll `probe` until it returns something other than None/False, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    max_polls = int(timeout / interval) + 2
    last: T | None = None
    for _ in range(max_polls):
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Container:
    """One booted systemd container; `pid` is its systemd (PID 1 inside) as the host sees it."""

    def __init__(
        self,
        machine: str,
        netns_path: str,
        log_dir: str | os.PathLike[str],
        *,
        binds_ro: Sequence[tuple[str, str]] = (),
        binds: Sequence[tuple[str, str]] = (),
        tmpfs: Sequence[str] = (),
    ) -> None:
        self.machine = machine
        self.netns_path = netns_path
        self.console_log = Path(log_dir) / f"{machine}.console.log"
        self.binds_ro = list(binds_ro)
        self.binds = list(binds)
        self.tmpfs = list(tmpfs)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.closed = False

    def argv(self) -> list[str]:
        argv = [NSPAWN, "--register=no", "--keep-unit", "--volatile=yes", "-D", "/", f"--machine={self.machine}",
                f"--network-namespace-path={self.netns_path}", "--console=pipe"]
        argv += [f"--bind-ro={src}:{dst}" for src, dst in self.binds_ro]
        argv += [f"--bind={src}:{dst}" for src, dst in self.binds]
        argv += [f"--tmpfs={path}" for path in self.tmpfs]
        return [*argv, "-b"]

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        """Launch nspawn (returns at once; `wait_booted` waits).  Split so two nodes boot in parallel."""
        if self.proc is not None:
            raise ContainerError(f"{self.machine}: already started")
        with open(self.console_log, "wb") as out:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_booted(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Wait for systemd to finish booting; returns is-system-running's word (running/degraded)."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout

        def init_pid() -> int | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise ContainerError(f"{self.machine}: systemd-nspawn exited {self.proc.returncode}; "
                                     f"see {self.console_log}:\n{self._console_tail()}")
            kids = [p for p in _children(self.proc.pid) if _comm(p) == "systemd"] if self.proc else []
            return kids[0] if kids else None

        self.pid = wait_until(init_pid, timeout, f"{self.machine}'s systemd to be forked")

        def settled() -> str | None:
            remaining = max(1.0, deadline - time.monotonic())
            r = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=remaining)
            word = r.stdout.strip()
            return word if word in ("running", "degraded") else None  # "offline"/errors: bus not up yet

        return wait_until(settled, max(0.0, deadline - time.monotonic()), f"{self.machine} to finish booting",
                          interval=0.2)

    def boot(self, timeout: float = BOOT_TIMEOUT) -> str:
        self.start()
        return self.wait_booted(timeout)

    def close(self) -> None:
        """kill -9 the container's PID 1 (ends every process in it), then reap nspawn; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.pid is None and self.proc is not None:
            kids = [p for p in _children(self.proc.pid) if _comm(p) == "systemd"]
            self.pid = kids[0] if kids else None
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by PID
                self.proc.wait(timeout=EXIT_TIMEOUT)

    # -- inside ----------------------------------------------------------------

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv in all of the container's namespaces (as `nsenter -t PID -a`), output captured."""
        if self.pid is None or self.closed:
            raise ContainerError(f"{self.machine}: not running")
        full = [NSENTER, "-t", str(self.pid), "-a", *argv]
        try:
            r = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input,
                               env=CONTAINER_ENV, check=False)
        except subprocess.TimeoutExpired as e:
            raise ContainerError(f"{self.machine}: {' '.join(argv)} timed out after {timeout:g} s") from e
        if check and r.returncode != 0:
            raise ContainerError(f"{self.machine}: {' '.join(argv)} exited {r.returncode}: "
                                 f"{(r.stderr or r.stdout).strip()}")
        return r

    def systemctl(self, *args: str, check: bool = True, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show -p A,B UNIT` as a dict (every asked property present, '' if systemd printed none)."""
        out = self.systemctl("show", "-p", ",".join(props), unit).stdout
        values = dict.fromkeys(props, "")
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
        return values

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Create a file inside the container (its root is a tmpfs: nothing on the host changes)."""
        self.run(["install", "-D", "-m", f"{mode:o}", "/dev/stdin", path], input=text)

    def journal(self, unit: str | None = None) -> str:
        argv = ["journalctl", "--no-pager", "-o", "short-monotonic"]
        if unit:
            argv += ["-u", unit]
        return self.run(argv, check=False).stdout

    def _console_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console log)"
