"""The `ipaddr` agent: a virtual IPv4 address on one interface, managed over netlink.

Why netlink rather than `ip addr`: no process start per operation (about 2.5 ms each,
the largest part of adding a VIP) and structured errors instead of parsing stderr.

Health, decided deliberately simply (the engine holds the policy):
- STOPPED: the address (exactly address/prefixlen) is not on the interface.
- RUNNING: it is there, the link is administratively up (IFF_UP) and has carrier
  (IFF_LOWER_UP).
- FAILED: it is there but the link is down ("link eth2 is down") or admin-up without
  carrier ("link eth2 has no carrier").  A VIP on a link without carrier reaches no
  client, so it is reported as broken, exactly like a pulled cable; whether to move it
  is the engine's call.  `extra` carries admin_up/carrier/operstate so policy can tell
  the two apart (e.g. a switch reboot takes carrier away on both nodes).
- An interface that does not exist: AgentError (the check could not run; most likely a
  configuration error).

Start refuses (AgentError, nothing added) when the link is down or without carrier,
so that a successful start always means a RUNNING monitor.  Stop on an interface that
no longer exists succeeds: an address cannot live on a missing interface.

Gratuitous ARP after start: the first frame before start returns (so the takeover is
announced as soon as the engine hears "started"), the rest `arp_interval` apart in a
background task that stop() and close() cancel.  A GARP that cannot be sent is a
warning, not a failed start: the address is up and serves clients whose caches are
already right.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Callable

import structlog

from hafd.agents.base import Agent, AgentContext, AgentError, Health, Status
from hafd.core.config import IpaddrParams, Resource
from hafd.io import garp
from hafd.io.netlink import InterfaceNotFound, LinkState, Netlink, NetlinkFailure

log = structlog.get_logger(__name__)

SendFrame = Callable[[str, bytes], None]


class IpaddrAgent(Agent):
    """One VIP. `netlink` and `send_frame` are injectable so unit tests need no root."""

    def __init__(
        self,
        resource: Resource,
        ctx: AgentContext,
        *,
        netlink: Netlink | None = None,
        send_frame: SendFrame | None = None,
    ) -> None:
        super().__init__(resource, ctx)
        params = resource.params
        if not isinstance(params, IpaddrParams):
            raise AgentError(f"resource {resource.name}: ipaddr agent needs IpaddrParams, got {type(params).__name__}")
        try:
            iface = ipaddress.ip_interface(params.address)
        except ValueError as e:
            raise AgentError(f"resource {resource.name}: invalid address {params.address!r}: {e}") from e
        if not isinstance(iface, ipaddress.IPv4Interface):
            raise AgentError(f"resource {resource.name}: only IPv4 addresses are supported, got {params.address!r}")
        if "/" not in params.address:
            raise AgentError(f"resource {resource.name}: address {params.address!r} needs a prefix length, e.g. /24")
        if params.arp_count < 0 or params.arp_interval < 0:
            raise AgentError(f"resource {resource.name}: arp_count and arp_interval must not be negative")
        self.params = params
        self.ip = str(iface.ip)
        self.prefixlen = iface.network.prefixlen
        self.ifname = params.interface
        self._nl = netlink if netlink is not None else Netlink()
        # Our own sender (one packet socket, opened at the first GARP) unless one is injected.
        self._own_sender: garp.GarpSender | None = None
        if send_frame is None:
            send_frame = self._own_sender = garp.GarpSender()
        self._send_frame: SendFrame = send_frame
        self._garp_task: asyncio.Task[None] | None = None

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    @property
    def garp_task(self) -> asyncio.Task[None] | None:
        """The pending background GARP burst, if any (for tests and status)."""
        return self._garp_task

    # --- operations -------------------------------------------------------------------

    async def start(self) -> None:
        link = await self._link("start")
        broken = _link_problem(link)
        if broken:
            raise AgentError(f"cannot start {self.cidr} on {self.ifname}: {broken}")
        try:
            added = await self._nl.add_address(self.ifname, self.ip, self.prefixlen)
            present = await self._nl.has_address(self.ifname, self.ip, self.prefixlen)
        except InterfaceNotFound as e:
            raise AgentError(f"interface {self.ifname} not found") from e
        except NetlinkFailure as e:
            raise AgentError(f"cannot add {self.cidr} to {self.ifname}: {e}") from e
        if not present:
            raise AgentError(f"{self.cidr} is not on {self.ifname} after adding it")
        log.info("vip_started", resource=self.name, address=self.cidr, interface=self.ifname, added=added)
        await self._cancel_garps()
        self._announce(link.mac)

    async def announce(self) -> None:
        """Send a fresh GARP burst (after winning a split brain the loser's ARPs must not win)."""
        link = await self._link("announce")
        await self._cancel_garps()
        self._announce(link.mac)

    async def stop(self) -> None:
        await self._cancel_garps()
        try:
            deleted = await self._nl.delete_address(self.ifname, self.ip, self.prefixlen)
            present = await self._nl.has_address(self.ifname, self.ip, self.prefixlen)
        except InterfaceNotFound:
            log.warning("vip_interface_missing", resource=self.name, interface=self.ifname, op="stop")
            return
        except NetlinkFailure as e:
            raise AgentError(f"cannot delete {self.cidr} from {self.ifname}: {e}") from e
        if present:
            raise AgentError(f"{self.cidr} is still on {self.ifname} after deleting it")
        log.info("vip_stopped", resource=self.name, address=self.cidr, interface=self.ifname, deleted=deleted)

    async def monitor(self) -> Status:
        link = await self._link("monitor")
        try:
            present = await self._nl.has_address(self.ifname, self.ip, self.prefixlen)
        except InterfaceNotFound as e:
            raise AgentError(f"interface {self.ifname} not found") from e
        except NetlinkFailure as e:
            raise AgentError(f"cannot read addresses of {self.ifname}: {e}") from e
        extra: dict[str, object] = {
            "address": self.cidr,
            "interface": self.ifname,
            "present": present,
            "admin_up": link.admin_up,
            "carrier": link.carrier,
            "operstate": link.operstate,
        }
        if not present:
            return Status(Health.STOPPED, f"{self.cidr} not on {self.ifname}", extra)
        broken = _link_problem(link)
        if broken:
            return Status(Health.FAILED, broken, extra)
        return Status(Health.RUNNING, f"{self.cidr} on {self.ifname}", extra)

    async def close(self) -> None:
        await self._cancel_garps()
        if self._own_sender is not None:
            self._own_sender.close()
        await self._nl.close()

    # --- helpers ----------------------------------------------------------------------

    async def _link(self, op: str) -> LinkState:
        try:
            return await self._nl.link(self.ifname)
        except InterfaceNotFound as e:
            raise AgentError(f"interface {self.ifname} not found") from e
        except NetlinkFailure as e:
            raise AgentError(f"{op}: cannot read link {self.ifname}: {e}") from e

    def _announce(self, mac: bytes) -> None:
        """Send the first GARP now and schedule the rest; never raises."""
        count = self.params.arp_count
        if count <= 0:
            return
        try:
            frame = garp.garp_frame(mac, self.ip)
        except ValueError as e:  # e.g. a link without an Ethernet address
            log.warning("garp_skipped", resource=self.name, interface=self.ifname, error=str(e))
            return
        self._send_one(frame, 1)
        if count > 1:
            self._garp_task = asyncio.get_running_loop().create_task(
                self._send_rest(frame, count), name=f"garp-{self.name}"
            )

    async def _send_rest(self, frame: bytes, count: int) -> None:
        for seq in range(2, count + 1):
            await asyncio.sleep(self.params.arp_interval)
            self._send_one(frame, seq)

    def _send_one(self, frame: bytes, seq: int) -> None:
        try:
            self._send_frame(self.ifname, frame)
        except OSError as e:
            log.warning(
                "garp_send_failed",
                resource=self.name,
                interface=self.ifname,
                address=self.ip,
                seq=seq,
                error=str(e),
            )
            return
        log.debug("garp_sent", resource=self.name, interface=self.ifname, address=self.ip, seq=seq)

    async def _cancel_garps(self) -> None:
        task, self._garp_task = self._garp_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])


def _link_problem(link: LinkState) -> str:
    """Why this link cannot carry a VIP, or '' if it can."""
    if not link.admin_up:
        return f"link {link.ifname} is down"
    if not link.carrier:
        return f"link {link.ifname} has no carrier"
    return ""
