"""The `filesystem` agent: real ext4 mounts in a private mount namespace, and fakes of mount.

The real scenarios run in tests/fs_helpers.py under `unshare --mount --propagation
private`, so their mounts die with that namespace; this module owns the loop device
(attached per test, detached in teardown) and kills the helper's process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from hafd.agents.base import AgentContext, AgentError, Health
from hafd.agents.filesystem import FilesystemAgent, find_holders
from hafd.core.config import FilesystemParams, Programs, Resource

HELPER = Path(__file__).with_name("fs_helpers.py")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("losetup") or not shutil.which("mkfs.ext4"),
    reason="needs root, unshare, losetup and mkfs.ext4",
)


@pytest.fixture
def loopdev(tmp_path: Path) -> Iterator[str]:
    image = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert dev.startswith("/dev/loop")
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def run_helper(scenario: str, device: str, work: Path) -> dict[str, Any]:
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, str(HELPER), scenario, device, str(work)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the helper left in its group
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(out)
    return result


def host_mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if f" {path}" in line]




@pytest.mark.root
@needs_root
def test_lifecycle_through_a_symlinked_device(loopdev: str, tmp_path: Path) -> None:
    r = run_helper("lifecycle", loopdev, tmp_path)
    assert r["before"] == "stopped"
    assert r["mounts_after_start"] == [{"source": loopdev, "fstype": "ext4", "ro": False}]
    assert r["running"] == "running"
    assert len(r["mounts_after_second_start"]) == 1  # start on a started filesystem does not mount twice
    assert r["mounts_after_stop"] == []
    assert r["stopped"] == "stopped"
    assert r["file_visible_after_stop"] is False  # the file went to the device, not the directory
    assert r["file_after_remount"] == "ok"
    assert host_mounts_under(tmp_path) == []  # the host never saw any of it


@pytest.mark.root
@needs_root
def test_stop_kills_holders_in_our_namespace_only(loopdev: str, tmp_path: Path) -> None:
    r = run_helper("holders", loopdev, tmp_path)
    assert r["stop_error"] is None
    assert r["mounts_after_stop"] == []
    assert r["monitor"] == "stopped"
    assert r["killed"] == r["expected_killed"]  # the cwd holder and the open-file holder, logged by PID
    assert not r["cwd_holder_alive"] and not r["fd_holder_alive"]
    assert r["other_ns_alive"]  # same path in another mount namespace: not ours, not killed
    assert r["stop_s"] < 1.5  # they died of SIGTERM; no wait for the SIGKILL round


@pytest.mark.root
@needs_root
def test_busy_without_kill_holders_is_an_error(loopdev: str, tmp_path: Path) -> None:
    r = run_helper("no_kill", loopdev, tmp_path)
    err = r["stop_error"]
    assert err is not None and err["exit_code"] == 32  # umount: target is busy
    assert "busy" in err["stderr"]
    assert r["holder_alive"]
    assert len(r["still_mounted"]) == 1
    assert r["monitor_busy"] == "running"
    assert r["second_stop_error"] is None and r["mounts_after"] == []


@pytest.mark.root
@needs_root
def test_another_device_on_the_directory(loopdev: str, tmp_path: Path) -> None:
    r = run_helper("foreign", loopdev, tmp_path)
    assert r["monitor"] == "failed"
    assert "other is mounted on" in r["detail"]
    assert "already has other mounted on it" in r["start_error"]["message"]
    assert r["stop_error"] is None  # our device is not mounted: stopped, and the stranger's mount is left alone
    assert r["mounts_after"] == [{"source": "other", "fstype": "tmpfs", "ro": False}]


@pytest.mark.root
@needs_root
def test_read_only_mount_is_failed(loopdev: str, tmp_path: Path) -> None:
    r = run_helper("readonly", loopdev, tmp_path)
    assert r["monitor"] == "failed"
    assert "read-only" in r["detail"]
    assert r["mounts_after"] == []


# --- fakes: no mount ever happens, so these need no namespace -------------------------


def fake_program(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def make_agent(tmp_path: Path, *, device: str = "/dev/hafd-test-nodev", directory: str | None = None,
               mount_body: str = "exit 0\n", options: str = "") -> tuple[FilesystemAgent, Path]:
    calls = tmp_path / "calls"
    mount = fake_program(tmp_path / "mount", f'echo "mount $*" >> {calls}\n' + mount_body)
    umount = fake_program(tmp_path / "umount", f'echo "umount $*" >> {calls}\nexit 0\n')
    if directory is None:
        directory = str(tmp_path / "mnt")
        os.makedirs(directory, exist_ok=True)
    res = Resource(name="data", type="filesystem", timeout=5,
                   params=FilesystemParams(device=device, directory=directory, fstype="ext4", options=options))
    return FilesystemAgent(res, AgentContext(Programs(mount=mount, umount=umount), str(tmp_path))), calls


async def test_mount_that_lies_is_caught(tmp_path: Path) -> None:
    agent, calls = make_agent(tmp_path, options="noatime,nodev")
    with pytest.raises(AgentError) as info:
        await agent.start()
    assert info.value.message == f"mount reported success but /dev/hafd-test-nodev is not mounted on {tmp_path}/mnt"
    # The argv the agent built, as the fake saw it.
    assert calls.read_text() == f"mount -t ext4 -o noatime,nodev /dev/hafd-test-nodev {tmp_path}/mnt\n"


async def test_mount_failure_carries_exit_code_and_stderr(tmp_path: Path) -> None:
    agent, _ = make_agent(tmp_path, mount_body='echo "mount: wrong fs type, bad superblock" >&2\nexit 32\n')
    with pytest.raises(AgentError) as info:
        await agent.start()
    assert info.value.exit_code == 32
    assert "bad superblock" in info.value.stderr
    assert "exit 32" in info.value.message


async def test_missing_mount_point_is_not_created(tmp_path: Path) -> None:
    agent, calls = make_agent(tmp_path, directory=str(tmp_path / "absent"))
    with pytest.raises(AgentError, match="mount point .*absent does not exist"):
        await agent.start()
    assert not (tmp_path / "absent").exists()
    assert not calls.exists()


async def test_stop_and_monitor_when_not_mounted(tmp_path: Path) -> None:
    agent, calls = make_agent(tmp_path)
    assert (await agent.monitor()).health is Health.STOPPED
    await agent.stop()
    assert not calls.exists()  # nothing mounted: umount never runs


async def test_a_foreign_mount_is_never_touched(tmp_path: Path) -> None:
    # /proc is mounted here with source "proc": another device than ours.
    agent, calls = make_agent(tmp_path, directory="/proc")
    st = await agent.monitor()
    assert st.health is Health.FAILED and st.extra["source"] == "proc"
    with pytest.raises(AgentError, match="already has proc mounted"):
        await agent.start()
    await agent.stop()
    assert not calls.exists()


def test_find_holders_sees_our_cwd_child(tmp_path: Path) -> None:
    sub = tmp_path / "d"
    sub.mkdir()
    p = subprocess.Popen(["sleep", "60"], cwd=sub)
    try:
        # Bounded: the child's cwd is set before exec, so it is there at once or very soon.
        for _ in range(500):
            if p.pid in find_holders(str(tmp_path)):
                break
            os.sched_yield()
        assert p.pid in find_holders(str(tmp_path))
        assert os.getpid() not in find_holders(str(tmp_path))
        assert p.pid not in find_holders(str(tmp_path) + "x")  # a sibling with a common prefix
    finally:
        p.kill()
        p.wait()
