"""A thin async adapter over pyroute2's AsyncIPRoute for what the ipaddr agent needs.

Why an adapter: the agent must speak in "already in the wanted state" rather than in
errno numbers, must see one clear error for an interface that does not exist, and
must survive a netlink socket that overflowed (ENOBUFS), after which every call on
that socket fails until it is reopened.  Putting that here keeps the agent free of
pyroute2 details and lets its unit tests use a plain fake of `Netlink`.

Netlink talks to the network namespace of the thread that opened the socket: a
`Netlink` opened inside `ip netns exec NS` manages NS, never the root namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import structlog
from pyroute2 import AsyncIPRoute, NetlinkError

log = structlog.get_logger(__name__)

IFF_UP = 0x1  # administratively up (`ip link set X up`)
IFF_LOWER_UP = 0x10000  # the driver reports carrier (cable, peer veth up)
IFNAMSIZ = 16  # kernel limit, including the trailing NUL

T = TypeVar("T")


class NetlinkFailure(Exception):
    """A netlink request failed for a reason the caller cannot treat as success."""

    def __init__(self, op: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{op}: {message}")
        self.op = op
        self.code = code


class InterfaceNotFound(NetlinkFailure):
    """The named interface does not exist in this network namespace (or its name is invalid)."""

    def __init__(self, ifname: str, why: str = "no such interface") -> None:
        super().__init__(f"interface {ifname!r}", why, errno.ENODEV)
        self.ifname = ifname


@dataclass(frozen=True)
class LinkState:
    """What the kernel says about one link, decoded once so callers never read flag bits."""

    ifname: str
    index: int
    admin_up: bool
    carrier: bool
    operstate: str  # "UP", "DOWN", "LOWERLAYERDOWN", "UNKNOWN" (dummy, lo)...
    mac: bytes  # 6 bytes on Ethernet; b"" when the link has no hardware address


def valid_ifname(ifname: str) -> bool:
    """The kernel's own rule (dev_valid_name), checked here so a typo gives a clear error."""
    return (
        0 < len(ifname.encode()) < IFNAMSIZ
        and ifname not in (".", "..")
        and not any(c == "/" or c == ":" or c.isspace() for c in ifname)
    )


def _mac_bytes(text: str | None) -> bytes:
    if not text:
        return b""
    try:
        return bytes(int(part, 16) for part in text.split(":"))
    except ValueError:
        return b""


def _code(exc: BaseException) -> int | None:
    if isinstance(exc, NetlinkError):
        return int(exc.code)
    if isinstance(exc, OSError):
        return exc.errno
    return None


class Netlink:
    """One lazily opened AsyncIPRoute, reopened after ENOBUFS.

    Every method resolves the interface by name on each call rather than caching its
    index: an interface that was deleted and re-created (a NIC driver reload, a veth
    rebuilt by a test bed) gets a new index, and a stale one would manage the wrong link.
    """

    def __init__(self, factory: Callable[[], Any] = AsyncIPRoute) -> None:
        self._factory = factory
        self._ipr: Any = None

    async def _call(self, op: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run fn(ipr); on ENOBUFS close, reopen and try once more."""
        for attempt in (1, 2):
            if self._ipr is None:
                self._ipr = self._factory()
            try:
                return await fn(self._ipr)
            except (NetlinkError, OSError) as e:
                if _code(e) == errno.ENOBUFS and attempt == 1:
                    log.warning("netlink_reopen", op=op, reason="ENOBUFS")
                    await self.close()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def link(self, ifname: str) -> LinkState:
        """The link's state; InterfaceNotFound if there is no such link."""
        if not valid_ifname(ifname):
            raise InterfaceNotFound(ifname, "invalid interface name")

        async def get(ipr: Any) -> LinkState:
            msgs = list(await ipr.link("get", ifname=ifname))
            if not msgs:
                raise InterfaceNotFound(ifname)
            m = msgs[0]
            flags = int(m["flags"])
            return LinkState(
                ifname=ifname,
                index=int(m["index"]),
                admin_up=bool(flags & IFF_UP),
                carrier=bool(flags & IFF_LOWER_UP),
                operstate=str(m.get("operstate") or "UNKNOWN"),
                mac=_mac_bytes(m.get("address")),
            )

        try:
            return await self._call("link get", get)
        except (NetlinkError, OSError) as e:
            if _code(e) in (errno.ENODEV, errno.ERANGE, errno.EINVAL):
                raise InterfaceNotFound(ifname) from e
            raise NetlinkFailure(f"link get {ifname}", str(e), _code(e)) from e

    async def index(self, ifname: str) -> int:
        return (await self.link(ifname)).index

    async def add_address(self, ifname: str, address: str, prefixlen: int) -> bool:
        """Add address/prefixlen; True if added now, False if it was already there (EEXIST)."""
        index = await self.index(ifname)
        kwargs: dict[str, Any] = {"index": index, "address": address, "prefixlen": prefixlen}
        brd = _broadcast(address, prefixlen)
        if brd is not None:
            kwargs["broadcast"] = brd
        try:
            await self._call("addr add", lambda ipr: ipr.addr("add", **kwargs))
        except (NetlinkError, OSError) as e:
            code = _code(e)
            if code == errno.EEXIST:
                return False
            if code == errno.ENODEV:
                raise InterfaceNotFound(ifname) from e
            raise NetlinkFailure(f"addr add {address}/{prefixlen} dev {ifname}", str(e), code) from e
        return True

    async def delete_address(self, ifname: str, address: str, prefixlen: int) -> bool:
        """Delete address/prefixlen; True if deleted now, False if it was absent (EADDRNOTAVAIL)."""
        index = await self.index(ifname)
        try:
            await self._call(
                "addr del",
                lambda ipr: ipr.addr("del", index=index, address=address, prefixlen=prefixlen),
            )
        except (NetlinkError, OSError) as e:
            code = _code(e)
            if code == errno.EADDRNOTAVAIL:
                return False
            if code == errno.ENODEV:
                raise InterfaceNotFound(ifname) from e
            raise NetlinkFailure(f"addr del {address}/{prefixlen} dev {ifname}", str(e), code) from e
        return True

    async def has_address(self, ifname: str, address: str, prefixlen: int) -> bool:
        """Is exactly address/prefixlen on ifname? (The kernel treats other prefixes as other addresses.)"""
        index = await self.index(ifname)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET

        async def dump(ipr: Any) -> bool:
            found = False
            # Drain the whole dump: leaving it half-read would leave replies on the socket.
            async for m in await ipr.get_addr(family=family, index=index, address=address):
                if int(m["prefixlen"]) == prefixlen and m.get("address") == address:
                    found = True
            return found

        try:
            return await self._call("addr dump", dump)
        except (NetlinkError, OSError) as e:
            raise NetlinkFailure(f"addr dump dev {ifname}", str(e), _code(e)) from e

    async def close(self) -> None:
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            try:
                ipr.close()
            except Exception as e:  # closing must never mask the caller's own error
                log.warning("netlink_close_failed", error=str(e))


def _broadcast(address: str, prefixlen: int) -> str | None:
    """The subnet broadcast for an IPv4 address, as `ip addr add ... brd +` and IPaddr2 set it."""
    if ":" in address or prefixlen > 30:
        return None
    return str(ipaddress.IPv4Network(f"{address}/{prefixlen}", strict=False).broadcast_address)
