#!/usr/bin/env python3
"""The test bed's fence agent: "power off" a peer node, as an IPMI or PDU agent would.

hafd runs it (cluster.fencing.command) from inside the fencing node as
`fence_node.py RUN_DIR PEER`.  It reads the PIDs the test bed recorded in
RUN_DIR/nodes.json and, in this order: takes the peer's links down (its cables are
pulled), kills -9 its hafd, its dhcpd (from hafd's own pid record) and its holder (so
the peer's mount namespace, and /data with it, is gone), and downs the peer's DRBD in
the shared stand-in state.  A PID is only killed if its command line or network
namespace shows it belongs to this run, so a recycled PID is never hit.
Exit 0 when the peer is off; 1 if something of it still runs.  Every fence is appended
to RUN_DIR/fence.log as "<wall> <monotonic> fenced PEER pids=... left=[...] done=<wall>,<monotonic>"
(the times when it began and when the peer was off).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: fence_node.py RUN_DIR PEER", file=sys.stderr)
        return 2
    run_dir, peer = Path(argv[0]), argv[1]
    t_wall, t_mono = time.time(), time.monotonic()
    nodes = json.loads((run_dir / "nodes.json").read_text())
    if peer not in nodes:
        print(f"fence_node: unknown node {peer!r}", file=sys.stderr)
        return 1
    n = nodes[peer]
    holder = n.get("holder")
    if holder and alive(holder):
        for dev in n["devs"]:  # pull the cables first: nothing of it answers from now on
            subprocess.run(["nsenter", "-t", str(holder), "-n", "ip", "link", "set", dev, "down"],
                           capture_output=True, timeout=10)
    pids: list[int] = []
    if n.get("hafd"):
        pids.append(int(n["hafd"]))
    try:
        pids.append(int(json.loads((Path(n["varlib"]) / "dhcpd.pid").read_text())["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if holder:
        pids.append(int(holder))
    killed = []
    for pid in pids:
        if alive(pid) and ("hafd" in cmdline(pid) or "dhcpd" in cmdline(pid) or "sleep" in cmdline(pid)):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while any(alive(p) for p in killed) and time.monotonic() < deadline:
        time.sleep(0.01)
    subprocess.run(n["drbd_crash"], capture_output=True, timeout=10)  # its DRBD is gone with it
    left = [p for p in killed if alive(p)]
    with open(run_dir / "fence.log", "a") as f:
        f.write(f"{t_wall:.6f} {t_mono:.6f} fenced {peer} pids={','.join(map(str, killed))} left={left} "
                f"done={time.time():.6f},{time.monotonic():.6f}\n")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
