"""Test-side control of the fake programs: install them in a directory, set their state, read their call log.

The fakes are symlinked into the test's own directory and read `fake-state.json` next
to the symlink, so tests do not share state and need not touch the environment.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hafd.core.config import Programs

FAKES_DIR = Path(__file__).resolve().parent
PROGRAMS = ("drbdadm", "systemctl", "service")


class FakeBed:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        for prog in PROGRAMS:
            link = directory / prog
            if not link.exists():
                link.symlink_to(FAKES_DIR / prog)
        self.state_file = directory / "fake-state.json"
        self.write({})

    @property
    def programs(self) -> Programs:
        return Programs(
            drbdadm=str(self.dir / "drbdadm"), systemctl=str(self.dir / "systemctl"), service=str(self.dir / "service")
        )

    def write(self, state: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(state))

    def read(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def update(self, **top: Any) -> None:
        state = self.read()
        state.update(top)
        self.write(state)

    def calls(self, prog: str | None = None) -> list[list[str]]:
        path = Path(str(self.state_file) + ".calls")
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [r[1:] for r in rows if prog is None or r[0] == prog]

    def hang_pids(self) -> list[int]:
        path = Path(str(self.state_file) + ".hang.pids")
        return [int(p) for p in path.read_text().split()] if path.exists() else []


def drbd_res(
    role: str = "Secondary",
    disk: str | list[str] = "UpToDate",
    peers: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One up resource for the fake drbdadm; `disk` as a list makes it multi-volume."""
    disks = disk if isinstance(disk, list) else [disk]
    r: dict[str, Any] = {
        "role": role,
        "volumes": [{"disk": d, "open": role == "Primary", "minor": 1 + i} for i, d in enumerate(disks)],
        "peers": peers if peers is not None else [drbd_peer()],
    }
    r.update(extra)
    return r


def drbd_peer(
    name: str = "nodetwo",
    connection: str = "Connected",
    role: str = "Secondary",
    peer_disk: str | list[str] = "UpToDate",
    replication: str = "Established",
    done: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    disks = peer_disk if isinstance(peer_disk, list) else [peer_disk]
    p: dict[str, Any] = {
        "name": name,
        "connection": connection,
        "role": role,
        "volumes": [{"peer_disk": d, "replication": replication, "done": done} for d in disks],
    }
    p.update(extra)
    return p


def process_gone(pid: int) -> bool:
    """True when pid no longer runs: absent, or a zombie waiting for a reaper we do not control."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def wait_gone(pids: list[int], timeout: float = 3.0) -> bool:
    """Whether all pids are gone within timeout (SIGKILL delivery is not instantaneous)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01) + 1):
        if all(process_gone(p) for p in pids):
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    return all(process_gone(p) for p in pids)


def kill_if_alive(pids: list[int]) -> None:
    """Teardown: kill the fakes' hanging pids should a test fail before the runner did."""
    for pid in pids:
        if not process_gone(pid):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
