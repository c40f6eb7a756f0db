"""corosync.conf -> the facts hafd.yaml needs: cluster name, nodes, their ring addresses, token.

hafd replaces Corosync's membership with its own heartbeats, so most of corosync.conf
(transport, crypto, logging, totem tunables) has no counterpart; what matters is who the
nodes are and on which addresses they talk.  Corosync 2/3 list them in `nodelist`;
Corosync 1 (the seed guide's era) had none and found members by multicast on
`totem.interface.bindnetaddr` — that form is read, and reported as not enough.

Pure: text in, `Corosync` out; syntax problems and unusable parts are `Report`s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hafd.migrate.report import Report

__all__ = ["Corosync", "CorosyncNode", "Section", "parse_corosync", "parse_sections"]

_RING = re.compile(r"ring(\d+)_addr")


@dataclass
class Section:
    """A `name { ... }` block: its `key: value` items (with lines) and nested blocks."""

    name: str
    line: int
    items: list[tuple[str, str, int]] = field(default_factory=list)
    children: list["Section"] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        values = [v for k, v, _ in self.items if k == key]
        return values[-1] if values else None

    def line_of(self, key: str) -> int:
        lines = [n for k, _, n in self.items if k == key]
        return lines[-1] if lines else self.line

    def sections(self, name: str) -> list["Section"]:
        return [c for c in self.children if c.name == name]


@dataclass(frozen=True)
class CorosyncNode:
    name: str | None
    nodeid: int | None
    addrs: tuple[str, ...]  # ring0_addr, ring1_addr, ... in ring order
    line: int


@dataclass
class Corosync:
    path: str
    cluster_name: str | None = None
    cluster_name_line: int = 0
    token_ms: int | None = None
    token_line: int = 0
    transport: str | None = None
    two_node: bool = False
    wait_for_all: bool | None = None
    nodes: list[CorosyncNode] = field(default_factory=list)
    problems: list[Report] = field(default_factory=list)

    def problem(self, line: int, message: str, *, lost: bool = True) -> None:
        self.problems.append(Report(self.path, line, message, lost))


def parse_sections(text: str, path: str, problems: list[Report]) -> Section:
    """corosync.conf's brace syntax -> a tree under a nameless root section."""
    root = Section("", 0)
    stack = [root]
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "}":
            if len(stack) == 1:
                problems.append(Report(path, no, "'}' without an open section"))
            else:
                stack.pop()
            continue
        if line.endswith("{"):
            name = line[:-1].strip().rstrip(":").strip()
            child = Section(name, no)
            stack[-1].children.append(child)
            stack.append(child)
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            problems.append(Report(path, no, f"not `key: value` nor a section: {line!r}"))
            continue
        stack[-1].items.append((key.strip(), value.strip(), no))
    if len(stack) > 1:
        problems.append(Report(path, stack[-1].line, f"section {stack[-1].name!r} is not closed"))
    return root


def _int(cs: Corosync, value: str | None, line: int, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        cs.problem(line, f"{what}: {value!r} is not an integer")
        return None


def parse_corosync(text: str, path: str = "corosync.conf") -> Corosync:
    cs = Corosync(path)
    root = parse_sections(text, path, cs.problems)
    totems = root.sections("totem")
    totem = totems[-1] if totems else None
    if totem is not None:
        cs.cluster_name = totem.get("cluster_name")
        cs.cluster_name_line = totem.line_of("cluster_name")
        cs.token_ms = _int(cs, totem.get("token"), totem.line_of("token"), "totem.token")
        cs.token_line = totem.line_of("token")
        cs.transport = totem.get("transport")
    for nodelist in root.sections("nodelist"):
        for node in nodelist.sections("node"):
            rings = sorted((int(m.group(1)), v, n) for k, v, n in node.items if (m := _RING.fullmatch(k)))
            numbers = [r for r, _, _ in rings]
            if numbers != list(range(len(numbers))):
                cs.problem(node.line, f"node rings {numbers} are not numbered 0, 1, ...: links are taken in ring "
                           "order", lost=False)
            addrs = tuple(v for _, v, _ in rings)
            if not addrs:
                cs.problem(node.line, "node has no ring0_addr: it cannot be given links")
            nodeid = _int(cs, node.get("nodeid"), node.line_of("nodeid"), "nodeid")
            cs.nodes.append(CorosyncNode(node.get("name"), nodeid, addrs, node.line))
    for quorum in root.sections("quorum"):
        cs.two_node = quorum.get("two_node") == "1"
        if quorum.get("wait_for_all") is not None:
            cs.wait_for_all = quorum.get("wait_for_all") == "1"
    if not cs.nodes and totem is not None:
        for iface in totem.sections("interface"):
            where = ", ".join(f"{k} {v}" for k, v, _ in iface.items
                              if k in ("ringnumber", "linknumber", "bindnetaddr", "mcastaddr", "mcastport"))
            if iface.get("bindnetaddr") or iface.get("mcastaddr"):
                cs.problem(iface.line, f"totem.interface ({where}) is the Corosync 1 form without a nodelist: members "
                           "were found by multicast on that network, so no node names or addresses can be taken "
                           "from it; hafd needs each node's own address in nodes.NAME.links")
    if not cs.nodes:
        cs.problem(0, "no nodelist with nodes: the nodes section of hafd.yaml cannot be filled in from it")
    return cs
