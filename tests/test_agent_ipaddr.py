"""The ipaddr agent and its netlink adapter.

Two layers:
- without root: the agent against a fake `Netlink` and a recording frame sender (GARP
  scheduling, cancel on stop, send failures, refusal to start on a down link), and
  `Netlink` against a fake AsyncIPRoute (errno mapping, ENOBUFS reopen);
- with root: the real agent run by a child process inside a namespace the test creates
  (netlink and packet sockets act on the caller's namespace), with GARPs captured by a
  packet socket on the peer veth end in a second namespace.
"""

from __future__ import annotations

import asyncio
import errno
import json
import select
import sys
import time
from typing import Any, AsyncIterator

import pytest
from ns_helpers import NetNs, netns_factory, requires_root, veth_pair  # noqa: F401 (fixture)
from pyroute2 import NetlinkError
from structlog.testing import capture_logs

from hafd.agents.base import AgentContext, AgentError, Health
from hafd.agents.ipaddr import IpaddrAgent
from hafd.core.config import IpaddrParams, Programs, Resource
from hafd.io.garp import garp_frame
from hafd.io.netlink import InterfaceNotFound, LinkState, Netlink, NetlinkFailure

VIP = "10.10.101.1"
MAC = bytes.fromhex("525400123456")


def make_agent(params: IpaddrParams, **kw: Any) -> IpaddrAgent:
    res = Resource(name="vip", type="ipaddr", params=params)
    return IpaddrAgent(res, AgentContext(Programs(), "/tmp"), **kw)


# --- fakes ---------------------------------------------------------------------------


class FakeNetlink(Netlink):
    """The kernel's address table for one interface, in a set."""

    def __init__(self, ifname: str = "eth2", admin_up: bool = True, carrier: bool = True) -> None:
        super().__init__(factory=lambda: None)
        self.ifname = ifname
        self.admin_up = admin_up
        self.carrier = carrier
        self.addrs: set[tuple[str, int]] = set()
        self.calls: list[str] = []
        self.closed = False

    def _check(self, ifname: str) -> None:
        if ifname != self.ifname:
            raise InterfaceNotFound(ifname)

    async def link(self, ifname: str) -> LinkState:
        self._check(ifname)
        return LinkState(ifname, 7, self.admin_up, self.carrier, "UP" if self.carrier else "DOWN", MAC)

    async def add_address(self, ifname: str, address: str, prefixlen: int) -> bool:
        self._check(ifname)
        self.calls.append("add")
        new = (address, prefixlen) not in self.addrs
        self.addrs.add((address, prefixlen))
        return new

    async def delete_address(self, ifname: str, address: str, prefixlen: int) -> bool:
        self._check(ifname)
        self.calls.append("del")
        old = (address, prefixlen) in self.addrs
        self.addrs.discard((address, prefixlen))
        return old

    async def has_address(self, ifname: str, address: str, prefixlen: int) -> bool:
        self._check(ifname)
        return (address, prefixlen) in self.addrs

    async def close(self) -> None:
        self.closed = True


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.fail = fail
        self.sent = asyncio.Event()

    def __call__(self, ifname: str, frame: bytes) -> None:
        self.frames.append((ifname, frame))
        self.sent.set()
        if self.fail:
            raise PermissionError(1, "Operation not permitted")


# --- agent, no root ------------------------------------------------------------------


async def test_start_sends_first_garp_before_returning_and_stop_cancels_the_rest() -> None:
    nl, rec = FakeNetlink(), Recorder()
    agent = make_agent(IpaddrParams(f"{VIP}/24", "eth2", arp_count=5, arp_interval=60.0), netlink=nl, send_frame=rec)
    await agent.start()
    assert nl.addrs == {(VIP, 24)}
    assert rec.frames == [("eth2", garp_frame(MAC, VIP))]
    task = agent.garp_task
    assert task is not None and not task.done()
    await agent.stop()
    assert task.cancelled()
    assert agent.garp_task is None
    assert len(rec.frames) == 1
    assert nl.addrs == set()
    await agent.close()
    assert nl.closed


async def test_garp_burst_sends_arp_count_frames() -> None:
    nl, rec = FakeNetlink(), Recorder()
    agent = make_agent(IpaddrParams(f"{VIP}/24", "eth2", arp_count=3, arp_interval=0.0), netlink=nl, send_frame=rec)
    await agent.start()
    assert agent.garp_task is not None
    await asyncio.wait_for(agent.garp_task, 5)
    assert [f for _, f in rec.frames] == [garp_frame(MAC, VIP)] * 3
    await agent.close()


async def test_arp_count_zero_sends_nothing() -> None:
    rec = Recorder()
    agent = make_agent(IpaddrParams(f"{VIP}/24", "eth2", arp_count=0), netlink=FakeNetlink(), send_frame=rec)
    await agent.start()
    assert rec.frames == [] and agent.garp_task is None


async def test_garp_failure_is_a_warning_not_a_failed_start() -> None:
    rec = Recorder(fail=True)
    agent = make_agent(IpaddrParams(f"{VIP}/24", "eth2", arp_count=2, arp_interval=0.0), netlink=FakeNetlink(), send_frame=rec)
    with capture_logs() as logs:
        await agent.start()
        assert agent.garp_task is not None
        await asyncio.wait_for(agent.garp_task, 5)
    failures = [e for e in logs if e["event"] == "garp_send_failed"]
    assert [e["seq"] for e in failures] == [1, 2]
    assert all(e["log_level"] == "warning" and "not permitted" in e["error"] for e in failures)
    assert (await agent.monitor()).health is Health.RUNNING


async def test_idempotent_start_and_stop_and_monitor_states() -> None:
    nl = FakeNetlink()
    agent = make_agent(IpaddrParams(f"{VIP}/24", "eth2", arp_count=0), netlink=nl)
    assert (await agent.monitor()).health is Health.STOPPED
    await agent.start()
    await agent.start()
    st = await agent.monitor()
    assert (st.health, st.detail) == (Health.RUNNING, f"{VIP}/24 on eth2")
    nl.carrier = False
    st = await agent.monitor()
    assert (st.health, st.detail, st.extra["carrier"]) == (Health.FAILED, "link eth2 has no carrier", False)
    nl.admin_up = False
    assert (await agent.monitor()).detail == "link eth2 is down"
    await agent.stop()
    await agent.stop()
    assert (await agent.monitor()).health is Health.STOPPED
    assert nl.calls == ["add", "add", "del", "del"]


@pytest.mark.parametrize("admin_up, carrier, why", [(False, True, "is down"), (True, False, "has no carrier")])
async def test_start_refuses_a_link_that_cannot_carry_the_vip(admin_up: bool, carrier: bool, why: str) -> None:
    nl = FakeNetlink(admin_up=admin_up, carrier=carrier)
    agent = make_agent(IpaddrParams(f"{VIP}/24", "eth2"), netlink=nl, send_frame=Recorder())
    with pytest.raises(AgentError, match=f"link eth2 {why}"):
        await agent.start()
    assert nl.calls == [] and nl.addrs == set()


async def test_unknown_interface() -> None:
    agent = make_agent(IpaddrParams(f"{VIP}/24", "eth9"), netlink=FakeNetlink(), send_frame=Recorder())
    for op in (agent.start, agent.monitor):
        with pytest.raises(AgentError, match="interface eth9 not found"):
            await op()
    await agent.stop()  # an address cannot be on a missing interface: stopped


@pytest.mark.parametrize(
    "params, message",
    [
        (IpaddrParams("fe80::1/64", "eth2"), "only IPv4"),
        (IpaddrParams("10.10.101.1", "eth2"), "needs a prefix length"),
        (IpaddrParams("10.10.101.300/24", "eth2"), "invalid address"),
        (IpaddrParams("10.10.101.1/24", "eth2", arp_count=-1), "must not be negative"),
    ],
)
def test_bad_params_are_agent_errors(params: IpaddrParams, message: str) -> None:
    with pytest.raises(AgentError, match=message):
        make_agent(params, netlink=FakeNetlink())


# --- Netlink adapter against a fake AsyncIPRoute -------------------------------------


class FakeIPR:
    def __init__(self, errors: dict[str, int]) -> None:
        self.errors = errors
        self.closed = False

    async def link(self, cmd: str, **kw: Any) -> list[dict[str, Any]]:
        if "link" in self.errors:
            raise NetlinkError(self.errors["link"], "boom")
        return [{"index": 3, "flags": 0x10001, "operstate": "UP", "address": "52:54:00:12:34:56"}]

    async def addr(self, cmd: str, **kw: Any) -> list[Any]:
        if cmd in self.errors:
            raise NetlinkError(self.errors[cmd], "boom")
        return []

    async def get_addr(self, **kw: Any) -> AsyncIterator[dict[str, Any]]:
        async def gen() -> AsyncIterator[dict[str, Any]]:
            yield {"prefixlen": 16, "address": VIP}  # same address, other prefix: not ours
            yield {"prefixlen": 24, "address": VIP}

        return gen()

    def close(self) -> None:
        self.closed = True


async def test_netlink_maps_errno_to_wanted_state() -> None:
    nl = Netlink(factory=lambda: FakeIPR({"add": errno.EEXIST, "del": errno.EADDRNOTAVAIL}))
    assert await nl.add_address("eth2", VIP, 24) is False
    assert await nl.delete_address("eth2", VIP, 24) is False
    assert await nl.has_address("eth2", VIP, 24) is True
    assert await nl.has_address("eth2", VIP, 32) is False
    link = await nl.link("eth2")
    assert (link.index, link.admin_up, link.carrier, link.mac) == (3, True, True, MAC)


async def test_netlink_other_errors_and_unknown_interface() -> None:
    nl = Netlink(factory=lambda: FakeIPR({"add": errno.EPERM}))
    with pytest.raises(NetlinkFailure, match="addr add 10.10.101.1/24 dev eth2") as ei:
        await nl.add_address("eth2", VIP, 24)
    assert ei.value.code == errno.EPERM
    nl = Netlink(factory=lambda: FakeIPR({"link": errno.ENODEV}))
    with pytest.raises(InterfaceNotFound):
        await nl.link("eth9")
    with pytest.raises(InterfaceNotFound, match="invalid interface name"):
        await nl.link("much-too-long-name0")


async def test_netlink_reopens_after_enobufs() -> None:
    made: list[FakeIPR] = []

    def factory() -> FakeIPR:
        ipr = FakeIPR({"add": errno.ENOBUFS} if not made else {})
        made.append(ipr)
        return ipr

    nl = Netlink(factory=factory)
    with capture_logs() as logs:
        assert await nl.add_address("eth2", VIP, 24) is True
    assert len(made) == 2 and made[0].closed and not made[1].closed
    assert [e["event"] for e in logs] == ["netlink_reopen"]
    await nl.close()
    assert made[1].closed


# --- real kernel, in namespaces (root) -----------------------------------------------

# Runs inside the namespace: performs ops on a real IpaddrAgent, prints one JSON line.
AGENT_SCRIPT = r"""
import asyncio, json, sys
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from hafd.agents.base import AgentContext, AgentError
from hafd.agents.ipaddr import IpaddrAgent
from hafd.core.config import IpaddrParams, Programs, Resource

async def main(spec):
    agent = IpaddrAgent(Resource(name="vip", type="ipaddr", params=IpaddrParams(**spec["params"])),
                        AgentContext(Programs(), "/tmp"))
    out = []
    try:
        for op in spec["ops"]:
            rec = {"op": op}
            try:
                if op == "start":
                    await agent.start()
                elif op == "stop":
                    await agent.stop()
                elif op == "monitor":
                    st = await agent.monitor()
                    rec.update(health=st.health.value, detail=st.detail, extra=st.extra)
                elif op == "wait_garps":
                    if agent.garp_task is not None:
                        await asyncio.wait_for(agent.garp_task, 10)
                elif op.startswith("hold:"):  # a window in which cancelled GARPs would have gone out
                    await asyncio.sleep(float(op[5:]))
                t = agent.garp_task
                rec["garp_pending"] = t is not None and not t.done()
            except AgentError as e:
                rec["error"] = e.message
            out.append(rec)
    finally:
        await agent.close()
    print(json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
"""

# Runs in the peer namespace: prints "ready", then collects ARP frames received on the
# interface whose sender IP is the VIP, until `count` frames or `deadline` seconds.
CAPTURE_SCRIPT = r"""
import json, select, socket, sys, time
ifname, vip, count, deadline = sys.argv[1], socket.inet_aton(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifname, 0x0806))
print("ready", flush=True)
frames, end = [], time.monotonic() + deadline
while len(frames) < count:
    left = end - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        break
    data, addr = s.recvfrom(2048)
    if addr[2] != socket.PACKET_OUTGOING and data[28:32] == vip:
        frames.append(data.hex())
print(json.dumps(frames), flush=True)
"""


def run_agent(ns: NetNs, params: dict[str, Any], ops: list[str]) -> list[dict[str, Any]]:
    spec = json.dumps({"params": params, "ops": ops})
    out = ns.python(AGENT_SCRIPT, spec)
    assert [r["op"] for r in out] == ops
    return out


class Capture:
    """A GARP capture process in `ns` on `ifname`; stopped by PID in close()."""

    def __init__(self, ns: NetNs, ifname: str, count: int, deadline: float) -> None:
        self.proc = ns.popen([sys.executable, "-c", CAPTURE_SCRIPT, ifname, VIP, str(count), str(deadline)])
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        assert ready and self.proc.stdout.readline().strip() == "ready", "capture did not start"

    def frames(self, timeout: float = 20) -> list[bytes]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return [bytes.fromhex(h) for h in json.loads(out.strip().splitlines()[-1])]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def pair(netns_factory: Any) -> tuple[NetNs, NetNs]:
    """Node namespace with 'va', peer namespace with 'vb' (where GARPs are captured)."""
    node, peer = netns_factory(), netns_factory()
    veth_pair(node, "va", peer, "vb")
    return node, peer


def mac_of(ns: NetNs, dev: str) -> bytes:
    return bytes.fromhex(ns.ip_json("link", "show", "dev", dev)[0]["address"].replace(":", ""))


P = {"address": f"{VIP}/24", "interface": "va", "arp_count": 0, "arp_interval": 0.05}


@requires_root
def test_ns_start_idempotent_and_running(pair: tuple[NetNs, NetNs]) -> None:
    node, _ = pair
    out = run_agent(node, P, ["monitor", "start", "start", "monitor"])
    assert out[0]["health"] == "stopped"
    assert "error" not in out[1] and "error" not in out[2]
    assert (out[3]["health"], out[3]["detail"]) == ("running", f"{VIP}/24 on va")
    assert f"{VIP}/24" in node.addresses("va")
    info = [a for a in node.ip_json("addr", "show", "dev", "va")[0]["addr_info"] if a["local"] == VIP][0]
    assert info["broadcast"] == "10.10.101.255"


@requires_root
def test_ns_link_down_and_no_carrier_are_failed(pair: tuple[NetNs, NetNs]) -> None:
    node, peer = pair
    run_agent(node, P, ["start"])
    peer.ip("link", "set", "vb", "down")  # va stays admin-up but loses carrier
    out = run_agent(node, P, ["monitor"])
    assert (out[0]["health"], out[0]["detail"]) == ("failed", "link va has no carrier")
    node.ip("link", "set", "va", "down")
    out = run_agent(node, P, ["monitor", "start"])
    assert (out[0]["health"], out[0]["detail"]) == ("failed", "link va is down")
    assert out[1]["error"].endswith("link va is down")


@requires_root
def test_ns_stop_idempotent(pair: tuple[NetNs, NetNs]) -> None:
    node, _ = pair
    node.ip("addr", "add", "10.10.101.1/16", "dev", "va")  # same IP, other prefix: not the VIP
    out = run_agent(node, P, ["start", "stop", "stop", "monitor"])
    assert [r.get("error") for r in out] == [None] * 4
    assert out[3]["health"] == "stopped"
    assert node.addresses("va") == ["10.10.101.1/16"]


@requires_root
def test_ns_unknown_interface(pair: tuple[NetNs, NetNs]) -> None:
    node, _ = pair
    out = run_agent(node, {**P, "interface": "nope0"}, ["start", "monitor", "stop"])
    assert out[0]["error"] == "interface nope0 not found"
    assert out[1]["error"] == "interface nope0 not found"
    assert "error" not in out[2]


@requires_root
def test_ns_garp_burst_is_captured_on_the_peer(pair: tuple[NetNs, NetNs]) -> None:
    node, peer = pair
    cap = Capture(peer, "vb", count=4, deadline=3.0)  # one more than sent: proves no extra frame
    try:
        t0 = time.monotonic()
        out = run_agent(node, {**P, "arp_count": 3, "arp_interval": 0.05}, ["start", "wait_garps"])
        assert out[0]["garp_pending"] is True and out[1]["garp_pending"] is False
        frames = cap.frames()
    finally:
        cap.close()
    assert time.monotonic() - t0 < 20
    mac = mac_of(node, "va")
    assert len(frames) == 3
    for f in frames:
        assert f[:42] == garp_frame(mac, VIP)
        assert f[0:6] == b"\xff" * 6 and f[6:12] == mac and f[12:14] == b"\x08\x06"
        assert f[20:22] == b"\x00\x01"  # ARP request
        assert f[28:32] == f[38:42] == bytes([10, 10, 101, 1])


@requires_root
def test_ns_stop_cancels_pending_garps(pair: tuple[NetNs, NetNs]) -> None:
    node, peer = pair
    cap = Capture(peer, "vb", count=5, deadline=4.0)
    try:
        # Without the cancel, frames 2-5 would leave within 0.8 s of start, inside the hold.
        out = run_agent(node, {**P, "arp_count": 5, "arp_interval": 0.2}, ["start", "stop", "hold:1.2"])
        frames = cap.frames()
    finally:
        cap.close()
    assert out[0]["garp_pending"] is True
    assert out[1]["garp_pending"] is False and "error" not in out[1]
    assert len(frames) == 1
    assert VIP not in " ".join(node.addresses("va"))
