"""The gratuitous ARP frame, byte for byte, and its input checks (no root needed).

Sending on a real interface and capturing on the peer is tested in test_agent_ipaddr.py.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hafd.io.garp import FRAME_LEN, GarpSender, format_mac, garp_frame, parse_mac, read_sys_mac

MAC = bytes.fromhex("525400123456")


def test_frame_byte_for_byte() -> None:
    expected = bytes.fromhex(
        "ffffffffffff"  # Ethernet destination: broadcast
        "525400123456"  # Ethernet source: the interface's MAC
        "0806"  # ethertype ARP
        "0001"  # htype Ethernet
        "0800"  # ptype IPv4
        "06"  # hlen
        "04"  # plen
        "0001"  # op: request (RFC 5227 announcement)
        "525400123456"  # sender hardware address
        "0a0a6501"  # sender IP 10.10.101.1
        "000000000000"  # target hardware address: zero (ignored by receivers)
        "0a0a6501"  # target IP = sender IP: that is what makes it gratuitous
    )
    frame = garp_frame(MAC, "10.10.101.1")
    assert len(frame) == FRAME_LEN == 42
    assert frame == expected


def test_frame_depends_on_inputs() -> None:
    other = garp_frame(bytes.fromhex("02aabbccddee"), "192.168.1.254")
    assert other[6:12] == other[22:28] == bytes.fromhex("02aabbccddee")
    assert other[28:32] == other[38:42] == bytes([192, 168, 1, 254])
    assert other[:6] == b"\xff" * 6


@pytest.mark.parametrize(
    "mac, ip, message",
    [
        (b"\x52\x54\x00", "10.10.101.1", "MAC must be 6 bytes"),
        (b"\xff" * 6, "10.10.101.1", "multicast/broadcast"),
        (MAC, "fe80::1", "not an IPv4 address"),
        (MAC, "10.10.101.1/24", "not an IPv4 address"),
        (MAC, "", "not an IPv4 address"),
    ],
)
def test_frame_rejects_bad_input(mac: bytes, ip: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        garp_frame(mac, ip)


def test_parse_and_format_mac_round_trip() -> None:
    assert parse_mac("52:54:00:12:34:56\n") == MAC
    assert format_mac(MAC) == "52:54:00:12:34:56"


@pytest.mark.parametrize("text", ["", "52:54:00:12:34", "52:54:00:12:34:zz", "525400123456", "52:54:00:12:34:5678"])
def test_parse_mac_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        parse_mac(text)


def test_read_sys_mac(tmp_path: Path) -> None:
    (tmp_path / "eth2").mkdir()
    (tmp_path / "eth2" / "address").write_text("52:54:00:12:34:56\n")
    assert read_sys_mac("eth2", sysfs=str(tmp_path)) == MAC
    with pytest.raises(ValueError, match="invalid interface name"):
        read_sys_mac("../eth2", sysfs=str(tmp_path))
    with pytest.raises(FileNotFoundError):
        read_sys_mac("eth9", sysfs=str(tmp_path))


@pytest.mark.skipif(os.geteuid() != 0, reason="packet sockets need CAP_NET_RAW")
def test_sender_reports_a_missing_interface_and_survives_it() -> None:
    # Nothing leaves the host: the interface does not exist.  Sending on a real
    # interface is tested (captured on the peer) in test_agent_ipaddr.py.
    sender = GarpSender()
    try:
        for _ in range(2):  # the socket stays usable after a failed send
            with pytest.raises(OSError) as ei:
                sender("hafdt-none0", garp_frame(MAC, "10.10.101.1"))
            assert ei.value.errno == errno.ENODEV
    finally:
        sender.close()
    sender.close()  # idempotent
