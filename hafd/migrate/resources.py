"""crm primitives -> hafd resources: agents, operations and meta attributes.

Known agents become native resources (their parameters renamed and converted); when a
known agent uses a parameter the native type cannot express, it stays an `ocf`
resource, run unchanged, rather than silently losing what that parameter did.
Everything else hafd has no counterpart for is a `Report` on the primitive's line.

Pure.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from hafd.migrate.crm import CrmConfig, Primitive
from hafd.migrate.emit import Block
from hafd.migrate.report import Report

__all__ = ["Context", "INFINITY", "parse_score", "seconds", "translate_primitive"]

INFINITY = float("inf")
_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "msec": 0.001, "us": 1e-6, "usec": 1e-6,
          "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
_AGENT_PART = re.compile(r"[A-Za-z0-9_.@-]+")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What the clone/ms wrapper of a DRBD resource may say without changing hafd's model.
_PROMOTABLE_META = {"master-max": "1", "promoted-max": "1", "master-node-max": "1", "promoted-node-max": "1",
                    "clone-node-max": "1", "clone-max": "2", "notify": None, "interleave": None,
                    "promotable": "true", "globally-unique": "false", "target-role": None}
# Pacemaker's "run it" roles: Stopped is reported, anything else is what hafd does anyway.
_RUNNING_ROLES = {"started", "master", "promoted", "slave", "unpromoted"}
# Custom agents seen in guides, and what hafd does natively in their place.
_HINTS = {
    "dieploegers:dhcp": "it wraps `service isc-dhcp-server start|stop|status` with a fixed 4 s sleep: "
                        "`type: service` with `unit: isc-dhcp-server` does the same without the sleep, or "
                        "`type: process` runs dhcpd in the foreground under hafd's supervision",
}


def seconds(text: str) -> float | None:
    """A Pacemaker time ("29s", "5min", "500ms", "60") in seconds; None if not one."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_score(text: str) -> float | None:
    t = text.strip().lower().lstrip("+")
    if t in ("inf", "infinity"):
        return INFINITY
    if t in ("-inf", "-infinity"):
        return -INFINITY
    try:
        return float(int(t))
    except ValueError:
        return None


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass
class Context:
    """What a primitive's translation reads besides the primitive, and where it reports."""

    crm: CrmConfig
    reports: list[Report]
    rsc_defaults: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # name -> (value, line)
    op_timeout: tuple[float, int] | None = None  # op_defaults timeout, line
    promotable: Mapping[str, str] = field(default_factory=dict)  # primitive -> its ms/promotable clone
    wrapper_meta: Mapping[str, Mapping[str, tuple[str, int]]] = field(default_factory=dict)
    stickiness: dict[str, float] = field(default_factory=dict)  # output: resource -> resource-stickiness

    def lost(self, line: int, message: str) -> None:
        self.reports.append(Report(self.crm.path, line, message))

    def note(self, line: int, message: str) -> None:
        self.reports.append(Report(self.crm.path, line, message, lost=False))


def _split_agent(agent: str) -> tuple[str, str, str] | None:
    """(class, provider, type); crm's short form `IPaddr2` means ocf:heartbeat:IPaddr2; None: not an agent."""
    parts = agent.split(":")
    if not 1 <= len(parts) <= 3 or not all(_AGENT_PART.fullmatch(p) for p in parts):
        return None
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], "", parts[1]
    return "ocf", "heartbeat", agent


def _as_ocf(block: Block, ctx: Context, p: Primitive, provider: str, kind: str, why: str | None) -> None:
    params: dict[str, str] = {}
    for name, value in p.params.items():
        if _PARAM_NAME.fullmatch(name):
            params[name] = value
        else:
            ctx.lost(p.line, f"primitive {p.id}: parameter name {name!r} cannot become an OCF_RESKEY_ variable")
    block.set("type", "ocf")
    block.set("agent", f"{provider}:{kind}")
    block.set("params", params)
    agent = f"{provider}:{kind}"
    if why:
        block.above.append(f"ocf:{agent} stays an OCF agent, run unchanged: {why}")
    elif agent in _HINTS:
        block.above.append(f"ocf:{agent}: a custom OCF agent, run unchanged. Consider replacing it: {_HINTS[agent]}.")
    else:
        block.above.append(f"ocf:{agent}: run unchanged through the OCF API; if it only wraps a service or a "
                           "program, `type: service` or `type: process` is simpler to run and to debug")


def _ipaddr(block: Block, ctx: Context, p: Primitive) -> str | None:
    """IPaddr2 -> ipaddr, or why not (then it stays OCF)."""
    known = {"ip", "cidr_netmask", "nic", "arp_count", "arp_interval"}
    extra = sorted(set(p.params) - known)
    if extra:
        return f"hafd's ipaddr has no equivalent for {', '.join(extra)}"
    ip, mask, nic = p.params.get("ip"), p.params.get("cidr_netmask"), p.params.get("nic")
    if not ip or not mask:
        return ("IPaddr2 finds the netmask from the routing table when cidr_netmask is not given; "
                "hafd's ipaddr needs address IP/PREFIX")
    if not nic:
        return ("IPaddr2 finds the interface from the routing table when nic is not given; hafd's ipaddr needs "
                "`interface` (set type: ipaddr, address and interface to use it)")
    if len(nic.split(":")[0]) > 15 or "/" in nic:
        return f"{nic!r} is not a network interface name hafd's ipaddr accepts"
    try:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
        address = str(ipaddress.IPv4Interface(f"{ip}/{prefix}"))
    except ValueError:
        return f"{ip}/{mask} is not an IPv4 address and netmask hafd's ipaddr can manage"
    label = ""
    if ":" in nic:
        nic, label = nic.split(":", 1)
        ctx.note(p.line, f"primitive {p.id}: nic label {label!r} dropped; hafd adds the address to {nic} unlabelled")
    block.set("type", "ipaddr")
    block.set("address", address)
    block.set("interface", nic)
    if "arp_count" in p.params and p.params["arp_count"].isdigit():
        block.set("arp_count", int(p.params["arp_count"]))
    if "arp_interval" in p.params and p.params["arp_interval"].isdigit():
        block.set("arp_interval", _num(int(p.params["arp_interval"]) / 1000), "IPaddr2's arp_interval is in ms")
    return None


def _filesystem(block: Block, ctx: Context, p: Primitive) -> str | None:
    known = {"device", "directory", "fstype", "options", "force_unmount"}
    extra = sorted(set(p.params) - known)
    if extra:
        return f"hafd's filesystem has no equivalent for {', '.join(extra)}"
    if not p.params.get("device") or not p.params.get("directory", "").startswith("/"):
        return "hafd's filesystem needs a device and an absolute directory"
    block.set("type", "filesystem")
    for key in ("device", "directory", "fstype", "options"):
        if p.params.get(key):
            block.set(key, p.params[key])
    force = p.params.get("force_unmount", "true").lower()
    if force in ("false", "no", "0", "off"):
        block.set("kill_holders", False, "force_unmount=false")
    return None


def _drbd(block: Block, ctx: Context, p: Primitive) -> None:
    block.set("type", "drbd")
    given = bool(p.params.get("drbd_resource"))
    block.set("resource", p.params.get("drbd_resource") or p.id, "" if given else
              "FIXME: no drbd_resource given; the primitive id is used")
    if not given:
        ctx.lost(p.line, f"primitive {p.id}: no drbd_resource parameter; the DRBD resource name is a guess")
    for name, value in p.params.items():
        if name == "drbdconf" and value == "/etc/drbd.conf" or name == "drbd_resource":
            continue
        ctx.lost(p.line, f"primitive {p.id}: drbd parameter {name}={value} has no hafd equivalent")
    if p.id not in ctx.promotable:
        ctx.note(p.line, f"primitive {p.id}: ocf:linbit:drbd outside an ms/promotable clone; hafd promotes it "
                 "on the active node and keeps it secondary on the other, as an ms would")


def _service(block: Block, ctx: Context, p: Primitive, cls: str, name: str) -> None:
    block.set("type", "service")
    block.set("unit", name)
    if cls == "lsb":
        block.set("init", "sysv", f"lsb:{name}: service {name} start|stop|status")
    elif cls == "upstart":
        ctx.note(p.line, f"primitive {p.id}: upstart:{name} becomes a systemd service {name}")
    if p.params:
        ctx.lost(p.line, f"primitive {p.id}: {cls}: agents take no parameters; ignored: "
                 + ", ".join(f"{k}={v}" for k, v in p.params.items()))


def _ops(block: Block, ctx: Context, p: Primitive) -> None:
    monitors: list[tuple[float, str | None]] = []
    timeouts: list[tuple[float, str]] = []
    for op in p.ops:
        attrs = dict(op.attrs)
        role = attrs.pop("role", None)
        interval = seconds(attrs.pop("interval", "0")) or 0.0
        timeout_text = attrs.pop("timeout", None)
        if timeout_text is not None:
            t = seconds(timeout_text)
            if t:
                timeouts.append((t, op.name))
            else:
                ctx.lost(p.line, f"primitive {p.id}: op {op.name} timeout={timeout_text} is not a time")
        if op.name == "monitor" and interval > 0:
            monitors.append((interval, role))
        on_fail = attrs.pop("on-fail", "restart")
        if on_fail != "restart":
            ctx.lost(p.line, f"primitive {p.id}: op {op.name} on-fail={on_fail}: hafd restarts a failed resource "
                     "in place and moves after migration_threshold restarts; a failed stop is escalated to fencing")
        for name, value in attrs.items():
            if not (name == "depth" and value == "0") and name not in ("name", "description"):
                ctx.lost(p.line, f"primitive {p.id}: op {op.name} {name}={value} has no hafd equivalent")
    active = [(i, r) for i, r in monitors if (r or "started").lower() in ("started", "master", "promoted")]
    for interval, role in monitors:
        if (interval, role) not in active:
            ctx.lost(p.line, f"primitive {p.id}: op monitor role={role} interval={_num(interval)}s: hafd monitors a "
                     "resource where it runs (the active node), not in the passive node's role")
    chosen = min(active or monitors, default=None)
    if chosen is not None:
        block.set("monitor_interval", _num(chosen[0]), f"op monitor interval={_num(chosen[0])}s"
                  + (f" role={chosen[1]}" if chosen[1] else ""))
    if not timeouts and ctx.op_timeout is not None:
        timeouts.append((ctx.op_timeout[0], "op_defaults"))
    if timeouts:
        longest = max(timeouts)
        others = sorted({f"{n} {_num(t)}s" for t, n in timeouts})
        block.set("timeout", _num(longest[0]), "largest of " + ", ".join(others) if len(others) > 1
                  else f"op {longest[1]} timeout")


def _meta(block: Block, ctx: Context, p: Primitive) -> None:
    """Resource meta attributes: the primitive's, over its wrappers', over rsc_defaults."""
    meta: dict[str, tuple[str, int]] = dict(ctx.rsc_defaults)
    meta.update(ctx.wrapper_meta.get(p.id, {}))
    meta.update({k: (v, p.line) for k, v in p.meta.items()})
    for name, (value, line) in meta.items():
        low = value.lower()
        if name == "migration-threshold":
            n = parse_score(value)
            if n is None or n < 0:
                ctx.lost(line, f"{p.id}: migration-threshold={value} is not a count")
            elif n in (0, INFINITY):
                block.set("migration_threshold", 1000000, f"migration-threshold={value}: Pacemaker never moved it "
                          "on failures, it restarted in place")
            else:
                block.set("migration_threshold", max(int(n) - 1, 0),
                          f"migration-threshold={value}: Pacemaker moved it on failure {int(n)}, hafd moves it "
                          "after this many local restarts")
        elif name == "failure-timeout":
            t = seconds(value)
            if t:
                block.set("failure_timeout", _num(t), f"failure-timeout={value}")
            else:
                ctx.lost(line, f"{p.id}: failure-timeout={value}: hafd's failure counts always expire "
                         "(failure_timeout > 0); its default 300 s is used")
        elif name == "resource-stickiness":
            score = parse_score(value)
            if score is None:
                ctx.lost(line, f"{p.id}: resource-stickiness={value} is not a score")
            else:
                ctx.stickiness[p.id] = score
        elif name == "target-role":
            if low not in _RUNNING_ROLES:
                ctx.lost(line, f"{p.id}: target-role={value}: hafd has no per-resource stop; the resource "
                         "runs on the active node (remove it from hafd.yaml to keep it stopped)")
        elif name == "is-managed" and low in ("true", "yes", "1"):
            continue
        elif name in _PROMOTABLE_META and ctx.wrapper_meta.get(p.id, {}).get(name):
            expected = _PROMOTABLE_META[name]  # a plain clone is reported once, as a whole
            if p.id in ctx.promotable and expected is not None and low != expected:
                ctx.lost(line, f"{ctx.promotable[p.id]}: {name}={value}: hafd promotes on one node (the active "
                         "one) and keeps the other secondary")
        else:
            ctx.lost(line, f"{p.id}: meta {name}={value} has no hafd equivalent")


def translate_primitive(ctx: Context, p: Primitive) -> Block | None:
    """The resource block for `p`, or None when it cannot be a resource (stonith and unknown classes)."""
    agent = _split_agent(p.agent)
    if agent is None or (agent[0] == "ocf" and not agent[1]):
        ctx.lost(p.line, f"primitive {p.id}: {p.agent!r} is not a resource agent name (CLASS:PROVIDER:TYPE, "
                 "CLASS:TYPE or TYPE)")
        return None
    cls, provider, kind = agent
    block = Block(p.id)
    if cls == "stonith":
        ctx.lost(p.line, f"primitive {p.id} ({p.agent}) is a fencing device: hafd fences with cluster.fencing.command "
                 "(run before taking over from a lost peer, {peer} substituted); write one that runs "
                 f"{kind} with this device's parameters")
        return None
    if cls in ("lsb", "systemd", "service", "upstart"):
        _service(block, ctx, p, cls, kind)
    elif cls == "ocf" and f"{provider}:{kind}" == "linbit:drbd":
        _drbd(block, ctx, p)
    elif cls == "ocf":
        natives: dict[str, Callable[[Block, Context, Primitive], str | None]] = {
            "heartbeat:IPaddr2": _ipaddr, "heartbeat:Filesystem": _filesystem}
        native = natives.get(f"{provider}:{kind}")
        why = native(block, ctx, p) if native else None
        if native is None or why is not None:
            block = Block(p.id)
            _as_ocf(block, ctx, p, provider, kind, why)
            if why:
                ctx.note(p.line, f"primitive {p.id}: kept as ocf:{provider}:{kind}: {why}")
    else:
        ctx.lost(p.line, f"primitive {p.id}: agent class {cls!r} ({p.agent}) is not supported by hafd")
        return None
    if p.id in ctx.promotable and block.get("type") != "drbd":
        ctx.lost(p.line, f"{ctx.promotable[p.id]}: promotion of {p.id} is supported for DRBD only; "
                 f"{p.id} runs as a plain resource on the active node")
    _ops(block, ctx, p)
    _meta(block, ctx, p)
    if p.utilization:
        ctx.lost(p.line, f"primitive {p.id}: utilization has no hafd equivalent (everything runs on one node)")
    return block
