"""hafd.yaml -> the validated `Config` (hafd.core.config), or every problem at once.

The one place YAML becomes typed values: an operator's typo must stop hafd at
start-up with the file, line, key path and a suggestion, never surface later as a
failed failover.  Pure except `load_config`, which only reads the file.

Resource types are a table (`RESOURCE_TYPES`): a type is its params dataclass plus a
check per key, so adding one is one entry.
"""

from __future__ import annotations

import ipaddress
import math
import re
import signal
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

import yaml

from hafd.core.config import (
    Cluster,
    CommandParams,
    OcfParams,
    Config,
    DrbdParams,
    EVENT_NAMES,
    Events,
    Fencing,
    FilesystemParams,
    Hook,
    IpaddrParams,
    Metrics,
    Node,
    OnFailure,
    ProcessParams,
    Programs,
    ReadyCheck,
    Resource,
    ServiceParams,
    Tiebreaker,
)
from hafd.core.yamlpos import INVALID, ConfigError, ConfigIssue, Reader, compose, is_null, line_of, suggest

__all__ = ["ConfigError", "ConfigIssue", "RESOURCE_TYPES", "load_config", "parse_config"]

Check = Callable[[Reader, yaml.Node, str], Any]
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Key:
    """One key of a section: how to read its value, and whether it must be there."""

    check: Check
    required: bool = False


@dataclass(frozen=True)
class ResourceType:
    """A resource type: the params dataclass its keys (same names as its fields) build."""

    params: type
    keys: Mapping[str, Key]


# -- value checks (Reader methods with their arguments bound) -------------------


def _str(r: Reader, n: yaml.Node, p: str) -> Any:
    return r.string(n, p)


def _abs(r: Reader, n: yaml.Node, p: str) -> Any:
    return r.absolute_path(n, p)


def _bool(r: Reader, n: yaml.Node, p: str) -> Any:
    return r.boolean(n, p)


def _seconds(r: Reader, n: yaml.Node, p: str) -> Any:
    return r.number(n, p, positive=True)


def _argv(r: Reader, n: yaml.Node, p: str) -> Any:
    return r.argv(n, p)


def _port(r: Reader, n: yaml.Node, p: str) -> Any:
    return r.integer(n, p, lo=1, hi=65535)


def _int_at_least(lo: int | None) -> Check:
    return lambda r, n, p: r.integer(n, p, lo=lo)


def _choice(*choices: str) -> Check:
    return lambda r, n, p: r.choice(n, p, choices)


def _optional(check: Check) -> Check:
    """`fstype: ~` means "not set" (the field's default None)."""
    return lambda r, n, p: None if is_null(n) else check(r, n, p)


def _name(r: Reader, n: yaml.Node, p: str, what: str) -> Any:
    value = r.string(n, p)
    if isinstance(value, str) and not _NAME.fullmatch(value):
        return r.error(n, p, f"{what} {value!r} may only contain letters, digits, '_', '.' and '-'")
    return value


def _ipv4_interface(r: Reader, n: yaml.Node, p: str) -> Any:
    value = r.string(n, p)
    if not isinstance(value, str):
        return value
    bad = f"must be an IPv4 address with /prefix (prefix 0-32), e.g. 10.10.101.1/24, got {value!r}"
    if "/" not in value:
        return r.error(n, p, bad)
    try:
        return str(ipaddress.IPv4Interface(value))
    except ValueError:
        return r.error(n, p, bad)


def _interface(r: Reader, n: yaml.Node, p: str) -> Any:
    value = r.string(n, p)
    if isinstance(value, str) and (len(value) > 15 or any(c in value for c in "/ \t")):
        return r.error(n, p, f"{value!r} is not a network interface name (at most 15 characters, no '/' or spaces)")
    return value


_SIGNALS = sorted(s.name[3:] for s in signal.Signals)


def _signal(r: Reader, n: yaml.Node, p: str) -> Any:
    value = r.string(n, p)
    if not isinstance(value, str):
        return value
    name = value.upper().removeprefix("SIG")
    if name not in _SIGNALS:
        return r.error(n, p, f"unknown signal {value!r}{suggest(name, _SIGNALS)}; e.g. TERM, INT, HUP, QUIT, USR1")
    return name


def _section(r: Reader, node: yaml.Node, path: str, keys: Mapping[str, Key], owner_line: int,
             *, report_unknown: bool = True) -> tuple[dict[str, Any], dict[str, yaml.Node], bool]:
    """Read a fixed-key mapping: (valid values, value nodes, every key valid)."""
    before = len(r.issues)
    required = [k for k, spec in keys.items() if spec.required]
    found = r.fields(node, path, keys, required, owner_line, report_unknown=report_unknown)
    if found is INVALID:
        return {}, {}, False
    values: dict[str, Any] = {}
    nodes: dict[str, yaml.Node] = {}
    for key, (_knode, vnode) in found.items():
        nodes[key] = vnode
        value = keys[key].check(r, vnode, f"{path}.{key}")
        if value is not INVALID:
            values[key] = value
    return values, nodes, len(r.issues) == before


def _nested(cls: type, keys: Mapping[str, Key]) -> Check:
    """A check that reads a sub-mapping into `cls` (its keys are `cls`'s field names)."""

    def check(r: Reader, n: yaml.Node, p: str) -> Any:
        values, _, ok = _section(r, n, p, keys, r.key_lines.get(p, line_of(n)))
        return cls(**values) if ok else INVALID

    return check


_FENCING = {
    "command": Key(_argv, required=True),  # {peer} is substituted by the daemon
    "timeout": Key(_seconds),
    "on_failure": Key(lambda r, n, p: _to_on_failure(r.choice(n, p, [m.value for m in OnFailure]))),
}


def _to_on_failure(value: Any) -> Any:
    return OnFailure(value) if isinstance(value, str) else value


_TIEBREAKER = {
    "ping": Key(lambda r, n, p: r.ip_address(n, p), required=True),
    "interval": Key(_seconds),
    "timeout": Key(_seconds),
}

_CLUSTER = {
    "name": Key(lambda r, n, p: _name(r, n, p, "cluster name"), required=True),
    "key_file": Key(_abs),
    "port": Key(_port),
    "interval": Key(_seconds),
    "deadtime": Key(_seconds),
    "failback": Key(_bool),
    "state_dir": Key(_abs),
    "control_socket": Key(_abs),
    "stop_resources_on_exit": Key(_bool),
    "startup_wait": Key(_seconds),
    "restart_grace": Key(_seconds),
    "fencing": Key(_nested(Fencing, _FENCING)),
    "tiebreaker": Key(_nested(Tiebreaker, _TIEBREAKER)),
}

_PROGRAMS = {name: Key(_abs) for name in ("drbdadm", "mount", "umount", "systemctl", "service", "ping", "ocf_root")}

_READY_KEYS = {"tcp_port": Key(_port), "udp_port": Key(_port), "file": Key(_abs), "timeout": Key(_seconds)}


def _ready(r: Reader, n: yaml.Node, p: str) -> Any:
    where = r.key_lines.get(p, line_of(n))
    values, _, ok = _section(r, n, p, _READY_KEYS, where)
    probes = [k for k in ("tcp_port", "udp_port", "file") if k in values]
    if ok and len(probes) != 1:
        got = "none" if not probes else " and ".join(probes)
        return r.error(where, p, f"needs exactly one of tcp_port, udp_port or file, got {got}")
    return ReadyCheck(**values) if ok else INVALID


_OCF_AGENT = re.compile(r"(ocf:)?[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+")


def _ocf_agent(r: Reader, n: yaml.Node, p: str) -> Any:
    value = r.string(n, p)
    if isinstance(value, str) and not _OCF_AGENT.fullmatch(value):
        return r.error(n, p, f"{value!r} is not an OCF agent name: use PROVIDER:TYPE, e.g. heartbeat:IPaddr2")
    return value.removeprefix("ocf:") if isinstance(value, str) else value


def _str_map(r: Reader, n: yaml.Node, p: str) -> Any:
    """OCF parameters: names to scalar values, passed as strings (the agents read env vars)."""
    if is_null(n):
        return {}
    items = r.items(n, p)
    if items is INVALID:
        return INVALID
    out: dict[str, str] = {}
    for key, knode, vnode in items:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            r.error(knode, f"{p}.{key}", "parameter names may only contain letters, digits and '_'")
            continue
        if not isinstance(vnode, yaml.ScalarNode) or vnode.tag == "tag:yaml.org,2002:null":
            r.error(vnode, f"{p}.{key}", "expected a scalar value (string, number or boolean)")
            continue
        out[key] = str(vnode.value)
    return out


_COMMON = {
    "type": Key(lambda r, n, p: None, required=True),  # read first, by _resource
    "requires": Key(lambda r, n, p: n),  # names checked once every resource is known
    "monitor_interval": Key(_seconds),
    "timeout": Key(_seconds),
    "migration_threshold": Key(_int_at_least(0)),
    "failure_timeout": Key(_seconds),
}

RESOURCE_TYPES: dict[str, ResourceType] = {
    "drbd": ResourceType(DrbdParams, {"resource": Key(_str, required=True), "force": Key(_bool)}),
    "filesystem": ResourceType(FilesystemParams, {
        "device": Key(_str, required=True),
        "directory": Key(_abs, required=True),
        "fstype": Key(_optional(_str)),
        "options": Key(lambda r, n, p: r.string(n, p, nonempty=False)),
        "kill_holders": Key(_bool),
    }),
    "ipaddr": ResourceType(IpaddrParams, {
        "address": Key(_ipv4_interface, required=True),
        "interface": Key(_interface, required=True),
        "arp_count": Key(_int_at_least(0)),
        "arp_interval": Key(_seconds),
    }),
    "service": ResourceType(ServiceParams, {"unit": Key(_str, required=True), "init": Key(_choice("systemd", "sysv"))}),
    "process": ResourceType(ProcessParams, {
        "command": Key(_argv, required=True),
        "ready": Key(_ready),
        "stop_signal": Key(_signal),
    }),
    "ocf": ResourceType(OcfParams, {"agent": Key(_ocf_agent, required=True), "params": Key(_str_map)}),
    "command": ResourceType(CommandParams, {
        "start": Key(_argv, required=True),
        "stop": Key(_argv, required=True),
        "monitor": Key(_argv, required=True),
    }),
}


# -- sections -------------------------------------------------------------------


def _cluster(r: Reader, node: yaml.Node, owner_line: int, n_nodes: int) -> Cluster | None:
    values, nodes, ok = _section(r, node, "cluster", _CLUSTER, owner_line)
    interval = values.get("interval", Cluster.interval)
    deadtime = values.get("deadtime", Cluster.deadtime)
    both_valid = all((k in values) == (k in nodes) for k in ("interval", "deadtime"))
    if both_valid and ("interval" in values or "deadtime" in values):
        where = nodes.get("deadtime") or nodes["interval"]
        if deadtime <= 2 * interval:
            ok = False
            r.error(where, "cluster.deadtime", f"deadtime {deadtime:g} <= 2 x interval {interval:g} makes no sense: "
                    "one late heartbeat would declare the peer lost; use at least 10 x interval")
        else:
            beats = deadtime / interval
            if math.isclose(beats, round(beats), rel_tol=1e-9, abs_tol=1e-9):
                r.warn(where, "cluster.deadtime", f"deadtime {deadtime:g} is an exact multiple of interval "
                       f"{interval:g} ({round(beats)} heartbeats); a heartbeat arriving on the boundary races the "
                       f"timeout, use e.g. {deadtime + interval / 2:g}")
    if ok and n_nodes >= 2 and "fencing" not in values and "tiebreaker" not in values:
        r.warn(owner_line, "cluster", "no fencing and no tiebreaker: a node that only loses the HA link may serve "
               "while its peer also serves; configure cluster.fencing or cluster.tiebreaker")
    return Cluster(**values) if ok else None


def _nodes(r: Reader, node: yaml.Node, owner_line: int) -> dict[str, Node] | None:
    items = [] if is_null(node) else r.items(node, "nodes")
    if items is INVALID:
        return None
    if not items:
        r.error(owner_line, "nodes", "at least one node is needed")
        return None
    before = len(r.issues)
    out: dict[str, Node] = {}
    owners: dict[str, tuple[str, int]] = {}  # link address -> (node, line)
    keys = {"priority": Key(_int_at_least(None)), "links": Key(lambda r, n, p: n, required=True)}
    for name, knode, vnode in items:
        path = f"nodes.{name}"
        if not _NAME.fullmatch(name):
            r.error(knode, path, f"node name {name!r} may only contain letters, digits, '_', '.' and '-'")
        values, vnodes, ok = _section(r, vnode, path, keys, line_of(knode))
        links = _links(r, vnodes["links"], f"{path}.links", name, owners) if "links" in vnodes else None
        if ok and links is not None:
            out[name] = Node(name=name, priority=values.get("priority", 0), links=links)
    return out if len(r.issues) == before else None


def _links(r: Reader, node: yaml.Node, path: str, owner: str,
           owners: dict[str, tuple[str, int]]) -> tuple[str, ...] | None:
    """A node's link addresses; an address may belong to one node, once."""
    items = r.sequence(node, path, "IP addresses")
    if items is INVALID:
        return None
    if not items:
        r.error(node, path, "needs at least one link address")
        return None
    out: list[str] = []
    for i, item in enumerate(items):
        addr = r.ip_address(item, f"{path}[{i}]")
        if addr is INVALID:
            continue
        if addr in owners:
            other, line = owners[addr]
            what = "is listed twice" if other == owner else f"is already a link address of node {other}"
            r.error(item, f"{path}[{i}]", f"{addr} {what} (line {line})")
            continue
        owners[addr] = (owner, line_of(item))
        out.append(addr)
    return tuple(out) if len(out) == len(items) else None


def _resource(r: Reader, name: str, knode: yaml.Node, vnode: yaml.Node) -> tuple[Resource | None, yaml.Node | None]:
    """The resource without its `requires` (checked once all names are known), and that node."""
    path = f"resources.{name}"
    if not _NAME.fullmatch(name):
        r.error(knode, path, f"resource name {name!r} may only contain letters, digits, '_', '.' and '-'")
    kind: ResourceType | None = None
    tname: Any = None
    if isinstance(vnode, yaml.MappingNode):
        tnodes = [v for k, v in vnode.value if isinstance(k, yaml.ScalarNode) and k.value == "type"]
        if tnodes:
            tname = r.string(tnodes[0], f"{path}.type")
            if isinstance(tname, str):
                kind = RESOURCE_TYPES.get(tname)
                if kind is None:
                    known = ", ".join(sorted(RESOURCE_TYPES))
                    r.error(tnodes[0], f"{path}.type", f"unknown type {tname!r}{suggest(tname, RESOURCE_TYPES)}; "
                            f"known types: {known}")
    keys = dict(_COMMON) | (dict(kind.keys) if kind else {})
    values, _, ok = _section(r, vnode, path, keys, line_of(knode), report_unknown=kind is not None)
    requires = values.get("requires")
    if not ok or kind is None or not isinstance(tname, str):
        return None, requires
    common = {k: v for k, v in values.items() if k in _COMMON and k not in ("type", "requires")}
    params = kind.params(**{k: v for k, v in values.items() if k in kind.keys})
    return Resource(name=name, type=tname, params=params, line=line_of(knode), timeout_set="timeout" in values,
                    **common), requires


def _requires(r: Reader, name: str, node: yaml.Node, defined: list[str]) -> tuple[str, ...]:
    """The valid names `name` requires (bad ones are issues, left out so cycles are still found)."""
    path = f"resources.{name}.requires"
    if is_null(node):
        return ()
    items = r.sequence(node, path, "resource names")
    if items is INVALID:
        return ()
    out: list[str] = []
    for i, item in enumerate(items):
        target = r.string(item, f"{path}[{i}]")
        if not isinstance(target, str):
            continue
        if target == name:
            r.error(item, path, f"{name} cannot require itself")
        elif target not in defined:
            r.error(item, path, f"unknown resource {target!r}{suggest(target, [n for n in defined if n != name])}")
        elif target in out:
            r.error(item, path, f"{target!r} is listed twice")
        else:
            out.append(target)
    return tuple(out)


def _cycles(graph: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    """The cycles a depth-first search meets (at least one per tangle of resources).

    Each starts at its member defined first in the file, so the message is stable.
    """
    order = {n: i for i, n in enumerate(graph)}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    found: dict[frozenset[str], list[str]] = {}
    for root in graph:
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            deps = graph.get(node, ())
            if i == len(deps):
                state[node] = 2
                stack.pop()
                continue
            stack[-1] = (node, i + 1)
            dep = deps[i]
            if state.get(dep) == 1:
                path = [n for n, _ in stack]
                cycle = path[path.index(dep):]
                start = min(range(len(cycle)), key=lambda j: order[cycle[j]])
                cycle = cycle[start:] + cycle[:start]
                found.setdefault(frozenset(cycle), cycle)
            elif not state.get(dep):
                state[dep] = 1
                stack.append((dep, 0))
    return sorted(found.values(), key=lambda c: order[c[0]])


def _resources(r: Reader, node: yaml.Node | None) -> dict[str, Resource] | None:
    if node is None or is_null(node):
        return {}
    items = r.items(node, "resources")
    if items is INVALID:
        return None
    before = len(r.issues)
    defined = [name for name, _, _ in items]
    built: dict[str, Resource | None] = {}
    graph: dict[str, tuple[str, ...]] = {}
    req_nodes: dict[str, yaml.Node] = {}
    for name, knode, vnode in items:
        built[name], rnode = _resource(r, name, knode, vnode)
        graph[name] = ()
        if rnode is not None:
            req_nodes[name] = rnode
            graph[name] = _requires(r, name, rnode, defined)
    for cycle in _cycles(graph):
        first = cycle[0]
        r.error(req_nodes[first], f"resources.{first}.requires", "dependency cycle " + " -> ".join(cycle + [first]))
    if len(r.issues) != before:
        return None
    return {name: replace(res, requires=graph[name]) for name, res in built.items() if res is not None}


def _local_node(r: Reader, nodes: Mapping[str, Node], nodes_line: int, node: str | None,
                local_addresses: Iterable[str] | None) -> str | None:
    if node is not None:
        if node not in nodes:
            r.error(nodes_line, "nodes", f"--node {node!r} is not a configured node{suggest(node, nodes)}; "
                    f"configured nodes: {', '.join(nodes)}")
            return None
        return node
    if local_addresses is None:
        return None
    local: set[str] = set()
    for a in local_addresses:
        try:
            local.add(str(ipaddress.ip_address(a)))
        except ValueError:
            continue
    mine = [n.name for n in nodes.values() if local.intersection(n.links)]
    if len(mine) == 1:
        return mine[0]
    if not mine:
        every = ", ".join(a for n in nodes.values() for a in n.links)
        r.error(nodes_line, "nodes", f"cannot determine the local node: none of the link addresses ({every}) "
                "is configured on this host (use --node NAME)")
    else:
        r.error(nodes_line, "nodes", f"cannot determine the local node: nodes {', '.join(mine)} all have a link "
                "address configured on this host (use --node NAME)")
    return None


# -- events and metrics -------------------------------------------------------------

_HOOK_KEYS = {"command": Key(_argv, required=True), "on": Key(lambda r, n, p: n), "timeout": Key(_seconds)}


def _event_names(r: Reader, node: yaml.Node, path: str) -> tuple[str, ...] | None:
    items = r.sequence(node, path, "event names")
    if items is INVALID:
        return None
    out: list[str] = []
    ok = True
    for i, item in enumerate(items):
        name = r.string(item, f"{path}[{i}]")
        if not isinstance(name, str):
            ok = False
        elif name not in EVENT_NAMES:
            ok = False
            r.error(item, f"{path}[{i}]", f"unknown event {name!r}{suggest(name, EVENT_NAMES)}; known events: "
                    + ", ".join(EVENT_NAMES))
        elif name not in out:
            out.append(name)
    if ok and not out:
        r.error(node, path, "must name at least one event (leave `on` out for every event)")
        return None
    return tuple(out) if ok else None


def _hooks(r: Reader, n: yaml.Node, p: str) -> Any:
    if is_null(n):
        return ()
    items = r.sequence(n, p, "hooks (each a mapping with command, on, timeout)")
    if items is INVALID:
        return INVALID
    out: list[Hook] = []
    ok = True
    for i, item in enumerate(items):
        path = f"{p}[{i}]"
        values, vnodes, good = _section(r, item, path, _HOOK_KEYS, line_of(item))
        on = _event_names(r, vnodes["on"], f"{path}.on") if "on" in vnodes else tuple(EVENT_NAMES)
        if good and on is not None:
            out.append(Hook(command=values["command"], on=on, timeout=values.get("timeout", Hook.timeout),
                            line=line_of(item)))
        else:
            ok = False
    return tuple(out) if ok else INVALID


_EVENTS = {"hooks": Key(_hooks), "max_concurrent": Key(_int_at_least(1))}


def _listen(r: Reader, n: yaml.Node, p: str) -> Any:
    """HOST:PORT with an IP address (the endpoint binds to it; [::1]:9469 for IPv6)."""
    value = r.string(n, p)
    if not isinstance(value, str):
        return value
    bad = f"expected HOST:PORT with an IP address, e.g. 127.0.0.1:9469 or [::1]:9469, got {value!r}"
    host, sep, port = value.rpartition(":")
    if not sep or value.endswith("]"):
        return r.error(n, p, bad + " (no :PORT)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return r.error(n, p, bad + " (put an IPv6 address in brackets)")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        return r.error(n, p, bad)
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return r.error(n, p, f"{bad} (the port must be 1-65535)")
    return Metrics(host=host, port=int(port))


_METRICS = {"listen": Key(_listen)}


def _events(r: Reader, node: yaml.Node, owner_line: int) -> Events | None:
    values, _, ok = _section(r, node, "events", _EVENTS, owner_line)
    return Events(**values) if ok else None


def _metrics(r: Reader, node: yaml.Node, owner_line: int) -> Metrics | None | Any:
    """None: metrics off (no `listen`); INVALID on errors."""
    values, _, ok = _section(r, node, "metrics", _METRICS, owner_line)
    return values.get("listen") if ok else INVALID


# -- entry points -----------------------------------------------------------------

_TOP = ("cluster", "nodes", "resources", "programs", "events", "metrics")


def parse_config(text: str, path: str = "hafd.yaml", *, node: str | None = None,
                 local_addresses: Iterable[str] | None = None) -> Config:
    """Validate config text; raise ConfigError listing every problem found.

    `node` names the local node (--node); otherwise `local_addresses` (the host's
    addresses among the link addresses) picks it; with neither it stays None.
    """
    root = compose(text, path)
    r = Reader(path)
    if root is None:
        raise ConfigError([ConfigIssue(path, 0, "", "the file is empty; it needs the cluster and nodes sections")])
    top = r.fields(root, "", _TOP, ("cluster", "nodes"), 1)
    if top is INVALID:
        raise ConfigError(r.issues)
    nodes = _nodes(r, top["nodes"][1], line_of(top["nodes"][0])) if "nodes" in top else None
    n_nodes = len(nodes) if nodes else 0
    cluster = _cluster(r, top["cluster"][1], line_of(top["cluster"][0]), n_nodes) if "cluster" in top else None
    resources = _resources(r, top["resources"][1] if "resources" in top else None)
    programs = None
    if "programs" in top:
        values, _, ok = _section(r, top["programs"][1], "programs", _PROGRAMS, line_of(top["programs"][0]))
        programs = Programs(**values) if ok else None
    events = _events(r, top["events"][1], line_of(top["events"][0])) if "events" in top else Events()
    metrics = _metrics(r, top["metrics"][1], line_of(top["metrics"][0])) if "metrics" in top else None
    local = None
    if nodes and not r.issues:
        local = _local_node(r, nodes, line_of(top["nodes"][0]), node, local_addresses)
    if r.issues or cluster is None or nodes is None or resources is None:
        raise ConfigError(sorted(r.issues, key=lambda i: i.line))
    return Config(cluster=cluster, nodes=nodes, resources=resources, programs=programs or Programs(), path=path,
                  local_node=local, warnings=tuple(str(w) for w in r.warnings), events=events or Events(),
                  metrics=metrics if isinstance(metrics, Metrics) else None)


def load_config(path: str, *, node: str | None = None, local_addresses: Iterable[str] | None = None) -> Config:
    """Read and validate the config file at `path` (an unreadable file is a ConfigError too)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError([ConfigIssue(path, 0, "", f"cannot read the config file: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigIssue(path, line, "", f"not valid UTF-8 text (byte {exc.start})")]) from None
    return parse_config(text, path, node=node, local_addresses=local_addresses)
