"""Scenario 1 (cold start) and the test bed's own promise: nothing is left behind, even on failure."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

from integration.conftest import start_pair
from integration.prober import Prober
from integration.testbed import RUN_MARKER, VIP, Testbed


def test_cold_start_one_active_node_serves_dhcp(bed: Testbed, prober_for: Callable[..., Prober]) -> None:
    t0 = time.monotonic()
    start_pair(bed)
    took = time.monotonic() - t0
    s1, s2 = bed.one.status(), bed.two.status()
    assert s1 and s2
    assert s1["active_node"] == s2["active_node"] == "nodeone"
    assert "highest priority" in s1["reason"]
    # Kernel facts, not hafd's word: DRBD primary, /data, VIP and dhcpd on nodeone only.
    assert bed.one.serving() == {"vip": True, "data": True, "dhcpd": True, "primary": True}
    assert bed.two.serving() == {"vip": False, "data": False, "dhcpd": False, "primary": False}
    assert bed.dual_active() == []
    assert s2["nodes"]["nodeone"]["state"] == "online"
    assert all(ln["state"] == "up" for ln in s2["nodes"]["nodeone"]["links"].values())
    assert len(s2["nodes"]["nodeone"]["links"]) == 2
    # A client gets a lease from the VIP, answered by nodeone.
    p = prober_for(bed)
    ack = p.wait_for(lambda e: e["type"] == "ACK", 5.0)
    assert ack is not None, "no DHCPACK within 5 s"
    assert ack["server_id"] == VIP and ack["domain"] == "nodeone"
    assert ipaddress.ip_address(ack["yiaddr"]) in ipaddress.ip_network("10.10.101.0/24")
    time.sleep(0.5)  # a window of answers: none may come from nodetwo
    assert {e.get("domain") for e in p.snapshot(kind="ACK")} == {"nodeone"}
    lease = bed.dhclient()
    assert lease["reason"] == "BOUND" and lease["server"] == VIP and lease["domain"] == "nodeone"
    print(f"\ncold start to active: {took:.2f}s (test bed build {bed.build_seconds:.2f}s); "
          f"first ACK rtt {ack['rtt'] * 1000:.1f} ms")


LEAKY = """
import sys, time
sys.path.insert(0, {repo!r})
from integration.testbed import Testbed
bed = Testbed({tmp!r})
with bed:
    bed.start()
    bed.wait_roles(bed.one, 20)
    print("PREFIX", bed.prefix, bed.loop, flush=True)
    raise RuntimeError("deliberate failure inside the test bed")
"""


def _prefix_left(prefix: str) -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(prefix + "-")]


def test_a_failing_run_leaves_nothing_behind(tmp_path: Path, bed: Testbed) -> None:
    # `bed` only for the skip conditions; the run under test is a separate process.
    repo = str(Path(__file__).resolve().parent.parent)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(LEAKY.format(repo=repo, tmp=str(tmp_path)))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "deliberate failure" in r.stderr, r.stdout + r.stderr
    words = next(line for line in r.stdout.splitlines() if line.startswith("PREFIX")).split()
    prefix, loop = words[1], words[2]
    run_dir = tmp_path / f"{RUN_MARKER}{prefix}"
    assert _prefix_left(prefix) == []
    assert not run_dir.exists()
    losetup = subprocess.run(["losetup", "-j", str(run_dir / "disk.img")], capture_output=True, text=True, timeout=30)
    assert losetup.stdout.strip() == ""
    back = subprocess.run(["losetup", "--noheadings", "-O", "BACK-FILE", loop], capture_output=True, text=True,
                          timeout=30)
    assert str(run_dir) not in back.stdout
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(run_dir) in cmd or prefix + "-" in cmd:
                leftovers.append((entry, cmd.replace("\0", " ")))
    assert leftovers == []
    with open("/proc/self/mountinfo") as f:
        assert [line for line in f if str(run_dir) in line] == []
