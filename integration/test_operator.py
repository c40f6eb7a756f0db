"""Scenarios 8-10: standby/unstandby, config reload, forged heartbeats and hafctl permissions."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from integration.conftest import start_pair
from integration.test_failover import ALL, NONE, all_started
from integration.testbed import Node, Testbed, run


@pytest.mark.parametrize("failback", [False, True])
def test_standby_of_the_active_node_and_failback_only_when_configured(make_bed: Callable[..., Testbed],
                                                                      failback: bool) -> None:
    bed = make_bed(failback=failback)
    start_pair(bed)
    r = bed.one.hafctl("standby", timeout=60)
    assert r.returncode == 0, r.stderr
    bed.wait_roles(bed.two, 10.0)
    assert bed.one.serving() == NONE and bed.two.serving() == ALL
    s1 = bed.one.status()
    assert s1 is not None and s1["nodes"]["nodeone"]["state"] == "standby"
    assert any("standby" in w for w in s1["warnings"])
    r = bed.one.hafctl("unstandby", timeout=60)
    assert r.returncode == 0, r.stderr
    bed.wait(lambda: (bed.two.status() or {}).get("nodes", {}).get("nodeone", {}).get("state") == "online",
             "nodeone back in service", 5.0)
    if failback:
        bed.wait_roles(bed.one, 10.0)
        assert bed.one.serving() == ALL and bed.two.serving() == NONE
    else:
        end = time.monotonic() + 1.5  # several deadtimes: nothing may move back
        while time.monotonic() < end:
            assert bed.two.role() == "active" and bed.one.serving() == NONE
            time.sleep(0.05)
        assert bed.two.serving() == ALL
    assert bed.dual_active() == []


def edit(node: Node, old: str, new: str) -> str:
    text = node.cfg.read_text()
    assert old in text
    node.cfg.write_text(text.replace(old, new))
    return text


def test_reload_applies_a_valid_change_and_rejects_an_invalid_one(bed: Testbed) -> None:
    start_pair(bed)
    pid = bed.one.dhcpd_pid()
    assert pid is not None
    # Invalid: a typo in a dependency. Rejected with file:line, nothing changes.
    good = edit(bed.one, "requires: [data, vip]", "requires: [data, vpi]")
    line = next(i for i, ln in enumerate(bed.one.cfg.read_text().splitlines(), 1) if "vpi" in ln)
    r = bed.one.hafctl("--socket", "/run/hafd/hafd.sock", "reload")
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(rf"/etc/hafd/hafd\.yaml:{line}\b", r.stderr) and "vpi" in r.stderr, r.stderr
    assert bed.one.dhcpd_pid() == pid and all_started(bed.one)
    assert any(e.get("event") == "reload_rejected" for e in bed.one.events())
    bed.one.cfg.write_text(good)
    # Valid: dhcpd's command line gains -q, on both nodes (configs must agree). dhcpd is restarted with it.
    for n in (bed.one, bed.two):
        edit(n, "-f, -d, -cf", "-f, -d, -q, -cf")
    for n in (bed.one, bed.two):
        r = n.hafctl("reload")
        assert r.returncode == 0, r.stderr
        assert "dhcpd" in r.stdout
    new = bed.wait(lambda: (p := bed.one.dhcpd_pid()) not in (None, pid) and all_started(bed.one) and p,
                   "dhcpd restarted with the new command line", 10.0)
    assert " -q " in Path(f"/proc/{new}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert bed.two.serving() == NONE and bed.two.role() == "standby"
    s = bed.two.status()
    assert s is not None and s["nodes"]["nodeone"]["config_match"] is True


CAPTURE = """
import socket, sys
cap = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
cap.settimeout(3)
for _ in range(500):
    pkt, addr = cap.recvfrom(65535)
    ihl = (pkt[0] & 15) * 4
    if addr[0] == "10.10.100.2" and int.from_bytes(pkt[ihl + 2:ihl + 4], "big") == 694:
        print(pkt[ihl + 8:].hex())
        break
"""

INJECT = """
import socket, sys, time
from hafd.core import codec
real = bytes.fromhex(sys.argv[1])
fake = codec.Message("nodetwo", b"x" * 16, 10**9, 0.0, codec.Heartbeat(codec.Role.ACTIVE, 99, b"h" * 32, 1000))
forged = codec.encode(fake, b"not-the-key-at-all-0123456789")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.10.100.2", 0))
for i in range(20):
    s.sendto(forged, ("10.10.100.1", 694))
    s.sendto(b"\\x00garbage" * (i + 1), ("10.10.100.1", 694))
time.sleep(0.1)
for i in range(5):
    s.sendto(real, ("10.10.100.1", 694))
print("sent")
"""


def test_forged_and_replayed_heartbeats_are_counted_and_change_nothing(bed: Testbed) -> None:
    start_pair(bed)
    mark = bed.one.mark_log()
    cap = bed.one.sh(sys.executable, "-c", CAPTURE)
    real = cap.stdout.strip()
    assert real, "captured no heartbeat from nodetwo"
    r = bed.two.sh(sys.executable, "-c", INJECT, real)
    assert "sent" in r.stdout
    bed.wait(lambda: sum((bed.one.status() or {}).get("rejected_packets", {}).values()) >= 45,
             "45 rejections counted", 5.0)
    rej = bed.one.status()["rejected_packets"]  # type: ignore[index]
    assert rej.get("bad_mac", 0) >= 20 and rej.get("replayed", 0) >= 5, rej
    assert all_started(bed.one) and bed.two.role() == "standby" and bed.two.serving() == NONE
    evs = bed.one.events_since(mark)
    assert any(e.get("event") == "packet_rejected" for e in evs)
    assert [e for e in evs if e.get("event") in ("role_changed", "role_target", "peer_lost")] == []


def test_a_non_root_user_gets_permission_denied(bed: Testbed) -> None:
    start_pair(bed)
    r = bed.one.hafctl("status", user="nobody")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "permission denied" in r.stderr.lower()
    r = bed.one.hafctl("standby", user="nobody")
    assert r.returncode == 4 and all_started(bed.one)
