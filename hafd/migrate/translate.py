"""A parsed crm configuration + corosync.conf -> the hafd.yaml document and its reports.

The mapping decisions, in one place (the module docstring of `hafd.migrate` lists them
for operators):

- colocation and order both become `requires` (B requires A, in the written order
  `A B`): in hafd every resource runs on the active node, so a colocation's only
  remaining meaning is "B cannot run without A", and hafd adds start order to it.
  crm's own two-resource colocation reads `rsc with-rsc`; guides write the pairs in
  start order, and crm's resource sets read that way too.  When an order constraint
  links the same resources, its direction wins.
- ms/clone ids stand for their primitive; a group's members each require the one
  before; a group named as the prerequisite stands for its last member, as the
  dependent for its first.
- A constraint that names an undefined resource is reported and dropped whole: `crm
  configure` refuses it, so the running cluster never had it.
- Node priorities: the location scores per node if any, else nodeid order (100, 90...).

Pure.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass

from hafd.migrate.corosync import Corosync
from hafd.migrate.crm import Constraint, CrmConfig, Ref
from hafd.migrate.emit import Block, Document, Item
from hafd.migrate.report import Report
from hafd.migrate.resources import INFINITY, Context, parse_score, seconds, translate_primitive

__all__ = ["Translation", "translate"]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PACEMAKER_RECORDS = {"dc-version", "cluster-infrastructure", "have-watchdog", "last-lrm-refresh", "cluster-name"}
_MANDATORY = {"inf", "+inf", "infinity", "+infinity", "mandatory"}


@dataclass(frozen=True)
class Translation:
    document: Document
    reports: tuple[Report, ...]


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=2, cutoff=0.5)
    starts = [c for c in choices if c.startswith(word) and c not in close]
    close = (close + starts)[:2]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


class _Graph:
    """requires edges, kept acyclic: an edge that would close a cycle is refused."""

    def __init__(self, names: list[str]) -> None:
        self.requires: dict[str, list[str]] = {n: [] for n in names}

    def reaches(self, start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            n = stack.pop()
            if n == goal:
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(self.requires.get(n, ()))
        return False

    def add(self, dependent: str, prerequisite: str) -> bool:
        if dependent == prerequisite or prerequisite in self.requires[dependent]:
            return True
        if self.reaches(prerequisite, dependent):
            return False
        self.requires[dependent].append(prerequisite)
        return True


class _Translator:
    def __init__(self, crm: CrmConfig, cs: Corosync | None) -> None:
        self.crm = crm
        self.cs = cs
        self.reports: list[Report] = list(crm.problems) + (list(cs.problems) if cs else [])
        self.doc = Document()
        self.props: dict[str, tuple[str, int]] = {}
        self.ctx = Context(crm, self.reports)
        self.skipped: set[str] = set()  # primitives that did not become resources
        self.names: dict[str, str] = {}  # primitive id -> resource name (ids hafd cannot take are renamed)

    def lost(self, line: int, message: str) -> None:
        self.reports.append(Report(self.crm.path, line, message))

    def note(self, line: int, message: str) -> None:
        self.reports.append(Report(self.crm.path, line, message, lost=False))

    # -- settings and wrappers ---------------------------------------------------------

    def settings(self) -> None:
        defaults: dict[str, tuple[str, int]] = {}
        for s in self.crm.settings:
            if s.section == "property":
                self.props[s.name] = (s.value, s.line)
            elif s.section == "rsc_defaults":
                defaults[s.name] = (s.value, s.line)
            elif s.name == "timeout" and seconds(s.value):
                self.ctx.op_timeout = (seconds(s.value) or 0.0, s.line)
            else:
                self.lost(s.line, f"op_defaults {s.name}={s.value} has no hafd equivalent")
        if "default-resource-stickiness" in self.props and "resource-stickiness" not in defaults:
            defaults["resource-stickiness"] = self.props["default-resource-stickiness"]
        self.ctx.rsc_defaults = defaults

    def wrappers(self) -> None:
        promotable: dict[str, str] = {}
        meta: dict[str, dict[str, tuple[str, int]]] = {}
        for w in self.crm.wrappers.values():
            for m in w.members:
                if m not in self.crm.primitives and m not in self.crm.wrappers:
                    self.lost(w.line, f"{w.kind} {w.id}: resource {m!r} is not defined"
                              f"{_suggest(m, list(self.crm.primitives))}")
            members = [p for m in w.members for p in self.primitives_of(m)]
            is_promotable = w.kind == "ms" or w.meta.get("promotable", "").lower() == "true"
            if w.kind == "clone" and not is_promotable:
                self.lost(w.line, f"clone {w.id}: hafd runs every resource on the active node only; "
                          f"{', '.join(members) or w.members[0]} runs there once, not on every node")
            if w.params:
                self.lost(w.line, f"{w.kind} {w.id}: params on a {w.kind} have no hafd equivalent")
            for p in members:
                if is_promotable:
                    promotable[p] = w.id
                for k, v in w.meta.items():
                    meta.setdefault(p, {}).setdefault(k, (v, w.line))
        self.ctx.promotable = promotable
        self.ctx.wrapper_meta = meta

    def primitives_of(self, rid: str, depth: int = 0) -> list[str]:
        """The primitives an id stands for, in order (a group: its members)."""
        if rid in self.crm.primitives:
            return [] if rid in self.skipped else [self.names.get(rid, rid)]
        w = self.crm.wrappers.get(rid)
        if w is None or depth > 8:
            return []
        return [p for m in w.members for p in self.primitives_of(m, depth + 1)]

    # -- resources and constraints -------------------------------------------------------

    def resources(self) -> _Graph:
        blocks: list[Block] = []
        for p in self.crm.primitives.values():
            block = translate_primitive(self.ctx, p)
            if block is None:
                self.skipped.add(p.id)
                continue
            if not _NAME.fullmatch(p.id):
                block.name = re.sub(r"[^A-Za-z0-9_.-]", "_", p.id)
                while block.name in self.crm.primitives or block.name in self.names.values():
                    block.name += "_"
                self.lost(p.line, f"primitive {p.id}: renamed {block.name} (hafd names: letters, digits, _ . -)")
            self.names[p.id] = block.name
            blocks.append(block)
        self.doc.resources = blocks
        graph = _Graph([b.name for b in blocks])
        for w in self.crm.wrappers.values():
            if w.kind == "group":
                members = [p for m in w.members for p in self.primitives_of(m)]
                for before, after in zip(members, members[1:]):
                    graph.add(after, before)
        ordered = sorted(self.crm.constraints, key=lambda c: c.kind != "order")
        for c in ordered:
            self.constraint(graph, c)
        for block in blocks:
            if graph.requires.get(block.name):
                block.set("requires", graph.requires[block.name])
        return graph

    def _refs_ok(self, c: Constraint) -> bool:
        refs = [r for element in c.chain for r in element]
        unknown = [r.id for r in refs if not self.crm.defined(r.id)]
        for rid in unknown:
            self.lost(c.line, f"{c.kind} {c.id}: resource {rid!r} is not defined"
                      f"{_suggest(rid, list(self.crm.primitives) + list(self.crm.wrappers))}; crm refuses "
                      "such a constraint, so the running cluster never had it"
                      + (" (hafd runs every resource on the active node anyway)" if c.kind == "colocation" else ""))
        fencing = [r.id for r in refs if self.crm.defined(r.id) and not self.primitives_of(r.id)]
        if fencing and not unknown:
            self.lost(c.line, f"{c.kind} {c.id}: {', '.join(fencing)} did not become hafd resources; "
                      "the constraint is not translated")
        return not unknown and not fencing

    def _check_kind(self, c: Constraint) -> bool:
        score = c.score.lower()
        if c.kind == "colocation":
            value = parse_score(c.score)
            if value is None or value < 0:
                self.lost(c.line, f"colocation {c.id} {c.score}: hafd runs all resources on one node, it cannot "
                          "keep resources apart")
                return False
            if value != INFINITY:
                self.note(c.line, f"colocation {c.id}: advisory score {c.score} made mandatory (hafd keeps all "
                          "resources on the active node)")
        elif score not in _MANDATORY:
            if score == "serialize":
                self.lost(c.line, f"order {c.id} Serialize: hafd has no serialize-only ordering")
                return False
            self.note(c.line, f"order {c.id}: advisory order ({c.score}) made mandatory as `requires`")
        for name, value in c.options.items():
            if not (name == "symmetrical" and value.lower() in ("true", "yes", "1")):
                self.lost(c.line, f"{c.kind} {c.id}: {name}={value} has no hafd equivalent (hafd stops in the "
                          "reverse of the start order, and sets are sequential)")
        for element in c.chain:
            for r in element:
                self._check_qualifier(c, r)
        return True

    def _check_qualifier(self, c: Constraint, r: Ref) -> None:
        q = (r.qualifier or "").lower()
        if c.kind == "colocation" and q in ("slave", "unpromoted", "stopped"):
            self.lost(c.line, f"colocation {c.id}: {r}: hafd places nothing with the passive node's roles")
        elif c.kind == "order" and q in ("stop", "demote"):
            self.lost(c.line, f"order {c.id}: {r}: hafd orders starts (and stops in reverse); a {q} order is "
                      "taken as start order")

    def constraint(self, graph: _Graph, c: Constraint) -> None:
        if not self._refs_ok(c) or not self._check_kind(c):
            return
        for before, after in zip(c.chain, c.chain[1:]):
            for a in before:
                for b in after:
                    prereq = self.primitives_of(a.id)[-1]
                    dependent = self.primitives_of(b.id)[0]
                    if not graph.add(dependent, prereq):
                        if c.kind == "colocation":
                            self.note(c.line, f"colocation {c.id}: {dependent} already starts before {prereq} "
                                      "(from an order or group); that direction is kept")
                        else:
                            self.lost(c.line, f"order {c.id}: {a} before {b} contradicts other orders (a cycle); "
                                      "not translated")

    # -- nodes and cluster -------------------------------------------------------------

    def nodes(self) -> None:
        cs_nodes = self.cs.nodes if self.cs else []
        by_id = {n.id: n.name for n in self.crm.nodes if n.id}
        names: list[tuple[str, list[str], int]] = []  # name, links, line
        path = self.cs.path if self.cs else "corosync.conf"
        used: set[str] = set()
        for i, n in enumerate(sorted(cs_nodes, key=lambda n: (n.nodeid is None, n.nodeid or 0))):
            name = n.name or by_id.get(str(n.nodeid)) or f"node{n.nodeid or i + 1}"
            if not n.name:
                self.reports.append(Report(path, n.line, f"node without `name:`; named {name}"
                                           + (" (from crm's node list)" if str(n.nodeid) in by_id else ""),
                                           lost=name not in by_id.values()))
            links: list[str] = []
            for a in n.addrs:
                try:
                    addr = str(ipaddress.ip_address(a))
                except ValueError:
                    self.reports.append(Report(path, n.line, f"node {name}: ring address {a!r} is a host name; "
                                               "hafd links are IP addresses (resolve it and fill it in)"))
                    continue
                if addr in used:
                    self.reports.append(Report(path, n.line, f"node {name}: {addr} is already another link"))
                    continue
                used.add(addr)
                links.append(addr)
            names.append((name, links, n.line))
        invented = False
        if not names:
            crm_names = [n.name for n in self.crm.nodes]
            if not crm_names:
                invented, crm_names = True, ["node1", "node2"]
                self.reports.append(Report(path, 0, "no node names in corosync.conf nor in crm `node` lines: "
                                           "node1 and node2 are placeholders (use each node's `uname -n`)"))
            names = [(name, [], 0) for name in dict.fromkeys(crm_names)]
        fixed: list[tuple[str, list[str], int]] = []
        for name, links, line in names:
            if not _NAME.fullmatch(name):
                new = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
                self.reports.append(Report(path if line else self.crm.path, line,
                                           f"node name {name!r} renamed {new} (letters, digits, _ . -)"))
                name = new
            if name in {x for x, _, _ in fixed}:
                self.reports.append(Report(path, line, f"node {name} is listed twice; the first one is used"))
                continue
            fixed.append((name, links, line))
        names = fixed
        for n in self.crm.nodes:
            if n.name not in {x for x, _, _ in names}:
                self.lost(n.line, f"node {n.name} is not in corosync.conf's nodelist")
            for k, v in n.attributes.items():
                if k == "standby" and v.lower() in ("on", "true", "yes", "1"):
                    self.lost(n.line, f"node {n.name} is in standby: run `hafctl standby {n.name}` once hafd runs")
                elif k != "standby":
                    self.lost(n.line, f"node {n.name}: attribute {k}={v} has no hafd equivalent")
        scores = self.location_scores([x for x, _, _ in names])
        blocks: list[Block] = []
        for i, (name, links, _line) in enumerate(names):
            block = Block(name, above=["FIXME: placeholder node name"] if invented else [])
            if scores:
                block.set("priority", int(scores.get(name, 0)))
            else:
                block.set("priority", max(100 - 10 * i, 1))
            if links:
                comment = "ring0_addr" + "".join(f", ring{k}_addr" for k in range(1, len(links)))
                block.set("links", links, comment)
            else:
                placeholder = [next(a for k in range(1, 255) if (a := f"192.0.2.{k}") not in used)]
                used.add(placeholder[0])
                block.set("links", placeholder, "FIXME: placeholder (TEST-NET); put this node's HA link addresses")
                self.reports.append(Report(path, 0, f"node {name}: no link addresses known; a placeholder "
                                           "192.0.2.x address is in the output"))
            blocks.append(block)
        self.doc.nodes = blocks
        if scores:
            self.doc.nodes_above.append("priority: the sum of the crm location scores per node (higher is preferred)")
        else:
            order = "Corosync's nodeid order" if cs_nodes else "the order the nodes are listed in"
            self.doc.nodes_above.append(f"No crm location preference: priorities follow {order} (the first node is "
                                        "preferred). Change them to prefer another node.")

    def location_scores(self, nodes: list[str]) -> dict[str, float]:
        scores: dict[str, float] = {}
        for loc in self.crm.locations:
            what = f"location {loc.id}"
            if not self.crm.defined(loc.rsc):
                self.lost(loc.line, f"{what}: resource {loc.rsc!r} is not defined")
                continue
            if loc.rule is not None:
                self.lost(loc.line, f"{what}: rules ({loc.rule}) have no hafd equivalent; set node priorities")
                continue
            for k, v in loc.options.items():
                self.lost(loc.line, f"{what}: {k}={v} has no hafd equivalent; the score is used for all roles")
            score = parse_score(loc.score or "")
            if score is None:
                self.lost(loc.line, f"{what}: {loc.score!r} is not a score")
                continue
            if loc.node not in nodes:
                self.lost(loc.line, f"{what}: {loc.node!r} is not one of the nodes ({', '.join(nodes)})")
                continue
            if score == -INFINITY:
                self.lost(loc.line, f"{what}: -inf bans {loc.rsc} from {loc.node}; hafd runs all resources on the "
                          "active node, whichever it is (give that node a low priority or remove it)")
                continue
            if score == INFINITY:
                self.lost(loc.line, f"{what}: inf pins {loc.rsc} to {loc.node}; hafd prefers {loc.node} "
                          "(priority 1000000) but still fails over to another node")
                score = 1000000.0
            scores[loc.node] = scores.get(loc.node, 0.0) + score
        return scores

    def cluster(self) -> None:
        cs = self.cs
        name = cs.cluster_name if cs and cs.cluster_name else self.props.get("cluster-name", ("", 0))[0]
        items: list[Item] = []
        if not name or not _NAME.fullmatch(name):
            path = cs.path if cs else self.crm.path
            why = f"cluster name {name!r} is not usable" if name else \
                "no cluster name (totem.cluster_name, or property cluster-name)"
            self.reports.append(Report(path, cs.cluster_name_line if cs and name else 0, f"{why}; `hafd` is used"))
            name = "hafd"
        items.append(Item("name", name, "totem.cluster_name" if cs and cs.cluster_name else ""))
        items.append(Item("key_file", "/etc/hafd/authkey", "`hafctl keygen` writes it; Corosync's authkey is not used"))
        token = cs.token_ms if cs else None
        token_text = (f"Corosync's token was {token} ms: a silent peer was declared lost after about "
                      f"{token / 1000:g} s (plus consensus)." if token else
                      "Corosync's token timeout was not set (its default: 1 s in Corosync 2, 3 s in Corosync 3).")
        items.append(Item("deadtime", 0.36, "hafd's default: 14.4 heartbeats of 0.025 s", above=[
            token_text, "hafd declares its peer lost after `deadtime` without a valid heartbeat on any link; "
            "raise it only if the HA link is lossy or the nodes stall"]))
        items.append(self.failback())
        stonith = self.props.get("stonith-enabled")
        off = stonith is not None and stonith[0].lower() in ("false", "no", "0", "off")
        if off:
            self.note(stonith[1], "stonith-enabled=false: hafd does not switch fencing off; see the comment on "
                      "cluster.fencing")
        fencing = ["Pacemaker had stonith-enabled=false: nobody was fenced." if off else
                   "Pacemaker's STONITH devices are not imported (they are reported above)."]
        fencing += ["hafd instead: cluster.fencing runs a command before taking over from a LOST peer, so two "
                    "nodes never serve at once; without it, a split brain is detected when the HA link returns and "
                    "the lower-priority node stops its resources. Configure it, e.g.:",
                    "fencing:",
                    '  command: ["/usr/local/sbin/fence-node", "{peer}"]',
                    "  timeout: 30"]
        items.append(Item("", "", above=fencing))
        quorum = self.props.get("no-quorum-policy")
        ignore = quorum is not None and quorum[0].lower() == "ignore"
        wait = ("Corosync's two_node/wait_for_all: " if cs and cs.two_node else "") + \
            "a starting node waits startup_wait seconds to hear its peer before it takes the role alone."
        items.append(Item("startup_wait", 2, above=[
            (f"Pacemaker had no-quorum-policy={quorum[0]}." if quorum else "Quorum:") +
            " hafd is built for two nodes and needs no quorum. " + wait]))
        items.append(Item("", "", above=[
            "A tiebreaker keeps a node that is cut off from the clients from taking over, e.g.:",
            "tiebreaker:", "  ping: GATEWAY-IP"]))
        if ignore:
            self.note(quorum[1], "no-quorum-policy=ignore: hafd needs no quorum for two nodes; see the comments on "
                      "startup_wait and tiebreaker")
        elif quorum:
            self.note(quorum[1], f"no-quorum-policy={quorum[0]}: hafd has no quorum; see the comments on "
                      "startup_wait and tiebreaker")
        for pname, (value, line) in self.props.items():
            if pname in ("stonith-enabled", "no-quorum-policy", "default-resource-stickiness"):
                continue
            if pname in _PACEMAKER_RECORDS:
                continue
            self.lost(line, f"property {pname}={value} has no hafd equivalent")
        self.doc.cluster = items

    def failback(self) -> Item:
        prios = sorted((int(b.get("priority") or 0) for b in self.doc.nodes), reverse=True)
        preference = prios[0] - prios[1] if len(prios) > 1 else 0
        has_locations = any(loc.score for loc in self.crm.locations)
        sticky = sum(self.ctx.stickiness.values())
        if has_locations and preference > sticky:
            return Item("failback", True, f"location preference {preference:g} > resource-stickiness {sticky:g}: "
                        "Pacemaker moved the resources back to the preferred node")
        if sticky:
            why = f"resource-stickiness {sticky:g}: Pacemaker left the resources where they ran"
        elif has_locations:
            why = "the location preference did not outweigh the stickiness"
        else:
            why = "no location preference: Pacemaker left the resources where they ran"
        return Item("failback", False, why)


def translate(crm: CrmConfig, cs: Corosync | None) -> Translation:
    t = _Translator(crm, cs)
    t.settings()
    t.wrappers()
    t.resources()
    t.nodes()
    t.cluster()
    if not any(b.get("migration_threshold") is not None for b in t.doc.resources) and t.doc.resources:
        t.doc.resources_above.append("Pacemaker's default migration-threshold is INFINITY (restart in place, never "
                                     "move on failures); hafd's default is kept: 3 local restarts, then the "
                                     "resources move. Set migration_threshold to change it.")
    t.doc.resources_above.append("A DAG: `requires` = must run on the same node, and start before "
                                 "(from crm colocation, order and group)")
    return Translation(t.doc, tuple(t.reports))
