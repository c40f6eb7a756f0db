"""Which of the configured link addresses live on this host.

The daemon finds its own node the way Corosync does: the node whose link address is
configured here.  Binding a UDP socket to (address, 0) asks the kernel exactly that
question (EADDRNOTAVAIL = not ours), for IPv4 and IPv6 alike, without parsing
`ip addr` or needing netlink.

Caveat: with the sysctl net.ipv4.ip_nonlocal_bind (or net.ipv6.ip_nonlocal_bind) set
to 1 the kernel lets any address be bound and this test says "local" for everything;
we log a warning then, and the operator should pass --node.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Iterable

import structlog

log = structlog.get_logger(__name__)

_NONLOCAL_BIND = {
    socket.AF_INET: "/proc/sys/net/ipv4/ip_nonlocal_bind",
    socket.AF_INET6: "/proc/sys/net/ipv6/ip_nonlocal_bind",
}


def configured_addresses(candidates: Iterable[str]) -> set[str]:
    """The candidates (as given) that are configured on this host; invalid ones are not."""
    found: set[str] = set()
    warned: set[int] = set()
    for candidate in candidates:
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(candidate).version == 6 else socket.AF_INET
        except ValueError:
            log.debug("localaddr_not_an_address", address=candidate)
            continue
        if _is_local(candidate, family):
            found.add(candidate)
            if family not in warned and _nonlocal_bind_enabled(family):
                warned.add(family)
                log.warning("localaddr_nonlocal_bind", address=candidate, sysctl=_NONLOCAL_BIND[family],
                            hint="every address binds; pass --node to name the local node")
    return found


def _is_local(address: str, family: int) -> bool:
    try:
        # getaddrinfo builds the right sockaddr, including an IPv6 scope (fe80::1%eth1).
        infos = socket.getaddrinfo(address, 0, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror as exc:
        log.debug("localaddr_unresolvable", address=address, error=str(exc))
        return False
    sockaddr = infos[0][4]
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind(sockaddr)
    except OSError as exc:
        if exc.errno != errno.EADDRNOTAVAIL:
            # e.g. EAFNOSUPPORT with IPv6 disabled, or ENODEV for a bad scope: not usable here either way.
            log.debug("localaddr_bind_failed", address=address, error=str(exc))
        return False
    return True


def _nonlocal_bind_enabled(family: int) -> bool:
    try:
        with open(_NONLOCAL_BIND[family], encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:
        return False
