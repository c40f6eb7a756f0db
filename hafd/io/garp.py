"""Gratuitous ARP: tell the LAN that an IPv4 address now lives at this MAC.

Why we send it ourselves: adding an address with netlink sends nothing, and pyroute2
has no GARP.  Without one, clients and the router keep the old node's MAC in their ARP
caches for minutes after a failover.  Running `arping` would cost a process start per
burst and a dependency on iputils-arping (Debian ships a different `arping` too).

The frame follows RFC 5227 section 3 and the kernel's own arp_notify: an ARP *request*
broadcast, sender IP = target IP = the address, target hardware address zero.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
BROADCAST_MAC = b"\xff" * 6
FRAME_LEN = 42  # 14 Ethernet + 28 ARP; the NIC pads to the 60-byte minimum on the wire


def garp_frame(mac: bytes, ip: str) -> bytes:
    """The 42-byte gratuitous ARP request announcing `ip` at `mac`. Pure: no I/O.

    Raises ValueError for a MAC that is not 6 bytes, a broadcast/multicast MAC, or an
    `ip` that is not a plain IPv4 address.
    """
    if len(mac) != 6:
        raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
    if mac[0] & 1:
        raise ValueError(f"MAC {format_mac(mac)} is multicast/broadcast, not a station address")
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError as e:
        raise ValueError(f"not an IPv4 address: {ip!r}") from e
    ip_b = addr.packed
    ethernet = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST) + mac + ip_b + bytes(6) + ip_b
    return ethernet + arp


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """'52:54:00:9d:4e:3d' -> 6 bytes; ValueError otherwise."""
    parts = text.strip().split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError as e:
        raise ValueError(f"not a MAC address: {text!r}") from e


def read_sys_mac(ifname: str, sysfs: str = "/sys/class/net") -> bytes:
    """The interface's MAC from sysfs.

    Prefer the MAC from netlink (hafd.io.netlink.LinkState.mac) in the daemon: sysfs shows
    the namespace it was mounted in, which under `nsenter -n` without `-m` is not ours.
    """
    if "/" in ifname or ifname in ("", ".", ".."):
        raise ValueError(f"invalid interface name: {ifname!r}")
    return parse_mac(Path(sysfs, ifname, "address").read_text())


class GarpSender:
    """Sends raw Ethernet frames on any interface through one long-lived AF_PACKET socket.

    Why one socket kept open: closing a packet socket waits for an RCU grace period
    (synchronize_net), measured at 12-21 ms here, and a socket per frame would block the
    event loop that long on every GARP, inside the takeover.  `sendto` names the interface
    per frame, so an interface deleted and re-created later needs no reopen.  Protocol 0:
    the socket receives nothing, so no frames queue up in it.  Needs CAP_NET_RAW.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def __call__(self, ifname: str, frame: bytes) -> None:
        """Send one frame on ifname; OSError on failure (ENODEV for a missing interface,
        EAGAIN for a full device queue: the socket is non-blocking, the loop never stalls)."""
        if self._sock is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.setblocking(False)
            self._sock = sock
        sent = self._sock.sendto(frame, (ifname, ETH_P_ARP))
        if sent != len(frame):
            raise OSError(f"short send on {ifname}: {sent} of {len(frame)} bytes")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
