"""Runs one filesystem-agent scenario inside a private mount namespace; prints JSON.

Invoked by tests/test_agent_filesystem.py as
    unshare --mount --propagation private PYTHON tests/fs_helpers.py SCENARIO DEVICE WORKDIR
so every mount it makes dies with the namespace and the host's mounts are never
touched.  The outer test owns the loop device; this script owns the processes it
starts and kills them (by PID) before it exits, whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

import structlog
from structlog.testing import capture_logs

from hafd.agents.base import AgentContext, AgentError
from hafd.agents.filesystem import FilesystemAgent
from hafd.core.config import FilesystemParams, Programs, Resource
from hafd.core.mountinfo import parse_mountinfo

structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr), cache_logger_on_first_use=False)

PIDS: list[int] = []


def spawn(argv: list[str], cwd: str | None = None) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL)
    PIDS.append(p.pid)
    return p


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def mounts_at(directory: str) -> list[dict[str, Any]]:
    with open("/proc/self/mountinfo") as f:
        entries = parse_mountinfo(f.read())
    return [{"source": e.source, "fstype": e.fstype, "ro": e.read_only} for e in entries if e.mount_point == directory]


def agent(device: str, directory: str, *, kill_holders: bool = True, timeout: float = 10.0) -> FilesystemAgent:
    params = FilesystemParams(device=device, directory=directory, fstype="ext4", kill_holders=kill_holders)
    res = Resource(name="data", type="filesystem", timeout=timeout, params=params)
    return FilesystemAgent(res, AgentContext(Programs(), "/tmp"))


async def error_of(op: Callable[[], Awaitable[None]]) -> dict[str, Any] | None:
    try:
        await op()
    except AgentError as e:
        return e.to_dict()
    return None


async def wait_holding(pid: int, directory: str, link: str = "cwd") -> None:
    """Until /proc/PID/LINK points under `directory` (the child has to get there first); bounded."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/{link}").startswith(directory):
                return
        except OSError:
            pass
        await asyncio.sleep(0.01)
    raise RuntimeError(f"pid {pid} never reached {directory}")


async def lifecycle(device: str, work: str) -> dict[str, Any]:
    mnt = os.path.join(work, "mnt")
    os.makedirs(os.path.join(work, "by-res"))
    link = os.path.join(work, "by-res", "r0")  # like /dev/drbd/by-res/r0 -> ../../drbd0
    os.symlink(device, link)
    a = agent(link, mnt)
    out: dict[str, Any] = {"before": (await a.monitor()).health.value}
    await a.stop()  # stop when stopped: nothing to do
    t0 = time.monotonic()
    await a.start()
    out["start_ms"] = (time.monotonic() - t0) * 1000
    out["mounts_after_start"] = mounts_at(mnt)
    out["running"] = (await a.monitor()).health.value
    await a.start()  # idempotent
    out["mounts_after_second_start"] = mounts_at(mnt)
    with open(os.path.join(mnt, "lease"), "w") as f:
        f.write("ok")
    await a.stop()
    out["mounts_after_stop"] = mounts_at(mnt)
    out["stopped"] = (await a.monitor()).health.value
    out["file_visible_after_stop"] = os.path.exists(os.path.join(mnt, "lease"))
    await a.stop()  # idempotent
    await a.start()
    with open(os.path.join(mnt, "lease")) as f:
        out["file_after_remount"] = f.read()
    await a.stop()
    return out


async def holders(device: str, work: str) -> dict[str, Any]:
    mnt = os.path.join(work, "mnt")
    a = agent(device, mnt)
    await a.start()
    os.makedirs(os.path.join(mnt, "sub"))
    cwd_holder = spawn(["sleep", "60"], cwd=os.path.join(mnt, "sub"))
    fd_holder = spawn([sys.executable, "-c", f"import time; f = open({mnt + '/held'!r}, 'w'); time.sleep(60)"])
    # Same path, other mount namespace: holds its own copy of the mount, which never blocks ours.
    other_ns = spawn(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", f"cd {mnt} && exec sleep 60"])
    await wait_holding(cwd_holder.pid, mnt)
    await wait_holding(other_ns.pid, mnt)
    await wait_holding(fd_holder.pid, mnt, "fd/3")
    t0 = time.monotonic()
    with capture_logs() as logs:
        err = await error_of(a.stop)
    return {
        "stop_error": err,
        "stop_s": time.monotonic() - t0,
        "cwd_holder_alive": alive(cwd_holder.pid),
        "fd_holder_alive": alive(fd_holder.pid),
        "other_ns_alive": alive(other_ns.pid),
        "killed": sorted({e["pid"] for e in logs if e["event"] == "filesystem_holder_killed"}),
        "expected_killed": sorted([cwd_holder.pid, fd_holder.pid]),
        "mounts_after_stop": mounts_at(mnt),
        "monitor": (await a.monitor()).health.value,
    }


async def no_kill(device: str, work: str) -> dict[str, Any]:
    mnt = os.path.join(work, "mnt")
    a = agent(device, mnt, kill_holders=False)
    await a.start()
    holder = spawn(["sleep", "60"], cwd=mnt)
    await wait_holding(holder.pid, mnt)
    out: dict[str, Any] = {"stop_error": await error_of(a.stop)}
    out["holder_alive"] = alive(holder.pid)
    out["still_mounted"] = mounts_at(mnt)
    out["monitor_busy"] = (await a.monitor()).health.value
    holder.kill()
    holder.wait()
    out["second_stop_error"] = await error_of(a.stop)
    out["mounts_after"] = mounts_at(mnt)
    return out


async def foreign(device: str, work: str) -> dict[str, Any]:
    mnt = os.path.join(work, "mnt")
    subprocess.run(["mount", "-t", "tmpfs", "other", mnt], check=True)
    a = agent(device, mnt)
    st = await a.monitor()
    out: dict[str, Any] = {"monitor": st.health.value, "detail": st.detail}
    out["start_error"] = await error_of(a.start)
    out["stop_error"] = await error_of(a.stop)
    out["mounts_after"] = mounts_at(mnt)
    return out


async def readonly(device: str, work: str) -> dict[str, Any]:
    mnt = os.path.join(work, "mnt")
    a = agent(device, mnt)
    await a.start()
    subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
    st = await a.monitor()
    await a.stop()
    return {"monitor": st.health.value, "detail": st.detail, "mounts_after": mounts_at(mnt)}


SCENARIOS = {"lifecycle": lifecycle, "holders": holders, "no_kill": no_kill, "foreign": foreign, "readonly": readonly}


def main() -> None:
    scenario, device, work = sys.argv[1:4]
    os.makedirs(os.path.join(work, "mnt"), exist_ok=True)
    try:
        result = asyncio.run(SCENARIOS[scenario](device, work))
        print(json.dumps(result))
    finally:
        for pid in PIDS:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


if __name__ == "__main__":
    main()
