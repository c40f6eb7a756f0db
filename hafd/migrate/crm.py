"""Pacemaker configuration written as crm shell commands -> a typed model (no mapping yet).

Operators have it in two forms: one `crm configure COMMAND ...` per line (as guides and
shell histories give it) and the `crm configure show` form (the same commands without the
prefix, continued over lines with backslashes).  Both are read here, tokenised like the
shell does (quotes, escapes), into plain records that keep their line numbers, so the
translator can point at the line of anything it cannot carry over.

Pure: text in, a `CrmConfig` out; anything it cannot even parse is a `Report`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Mapping

from hafd.migrate.report import Report

__all__ = ["Constraint", "CrmConfig", "CrmNode", "Location", "Op", "Primitive", "Ref", "Setting", "Wrapper",
           "logical_lines", "parse_crm"]

# Commands that hold no configuration (they act on the session), skipped without a report.
_NO_CONFIG = frozenset({"commit", "verify", "end", "show", "cd", "up", "ptest", "simulate", "refresh"})
# Keywords that start a new section of a primitive (or clone/group) definition.
_SECTIONS = frozenset({"params", "meta", "utilization", "op", "op_params", "op_meta", "operations"})


@dataclass(frozen=True)
class Op:
    name: str
    attrs: Mapping[str, str]


@dataclass(frozen=True)
class Primitive:
    id: str
    agent: str  # as written: ocf:heartbeat:IPaddr2, IPaddr2, lsb:foo, systemd:foo, stonith:fence_x
    params: Mapping[str, str]
    meta: Mapping[str, str]
    ops: tuple[Op, ...]
    line: int
    utilization: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Wrapper:
    """ms / clone / group: a container of other resources."""

    id: str
    kind: str  # "ms", "clone" or "group"
    members: tuple[str, ...]
    meta: Mapping[str, str]
    params: Mapping[str, str]
    line: int


@dataclass(frozen=True)
class Ref:
    """A resource named in a constraint, with its role (colocation) or action (order)."""

    id: str
    qualifier: str | None = None

    def __str__(self) -> str:
        return f"{self.id}:{self.qualifier}" if self.qualifier else self.id


@dataclass(frozen=True)
class Constraint:
    """colocation or order: `chain` is the written sequence; an element with several refs
    is a parenthesised set (its members have no order among themselves)."""

    kind: str  # "colocation" or "order"
    id: str
    score: str  # "inf", "-inf", "100", "Mandatory", "Optional", "Serialize"
    chain: tuple[tuple[Ref, ...], ...]
    options: Mapping[str, str]
    line: int


@dataclass(frozen=True)
class Location:
    id: str
    rsc: str
    score: str | None  # None with a rule
    node: str | None
    rule: str | None
    options: Mapping[str, str]
    line: int


@dataclass(frozen=True)
class CrmNode:
    name: str
    id: str | None
    attributes: Mapping[str, str]
    line: int


@dataclass(frozen=True)
class Setting:
    """One name=value of `property`, `rsc_defaults` or `op_defaults` (`section`)."""

    section: str
    name: str
    value: str
    line: int


@dataclass
class CrmConfig:
    path: str
    primitives: dict[str, Primitive] = field(default_factory=dict)
    wrappers: dict[str, Wrapper] = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    nodes: list[CrmNode] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    problems: list[Report] = field(default_factory=list)

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Report(self.path, line, message))

    def defined(self, rid: str) -> bool:
        return rid in self.primitives or rid in self.wrappers


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Commands with the line they start on: backslash continuations joined, comments and blanks dropped."""
    out: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("#") or (not parts and not stripped):
            continue
        if not parts:
            start = no
        if line.endswith("\\") and not line.endswith("\\\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        out.append((start, " ".join(parts)))
        parts = []
    if parts:
        out.append((start, " ".join(parts)))
    return out


def parse_crm(text: str, path: str = "crm") -> CrmConfig:
    """Every configuration command of `text`; what cannot be parsed is in `problems`."""
    cfg = CrmConfig(path)
    for line, command in logical_lines(text):
        try:
            tokens = shlex.split(command, comments=False, posix=True)
        except ValueError as exc:
            cfg.problem(line, f"cannot tokenise this command ({exc}): check its quotes")
            continue
        tokens = _strip_prefix(cfg, line, tokens)
        if not tokens or tokens[0] in _NO_CONFIG:
            continue
        handler = _COMMANDS.get(tokens[0])
        if handler is None:
            cfg.problem(line, f"unknown or unsupported crm command {tokens[0]!r}: {_short(tokens)}")
            continue
        handler(cfg, line, tokens)
    return cfg


def _short(tokens: list[str], limit: int = 80) -> str:
    text = " ".join(tokens)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_prefix(cfg: CrmConfig, line: int, tokens: list[str]) -> list[str]:
    """`[sudo] crm [-opts] configure CMD ...` -> `CMD ...`; the show form passes unchanged."""
    i = 1 if tokens[:1] == ["sudo"] else 0
    if tokens[i : i + 1] != ["crm"]:
        return tokens[i:]
    i += 1
    while i < len(tokens) and tokens[i].startswith("-"):
        i += 1
    if tokens[i : i + 1] != ["configure"]:
        cfg.problem(line, f"not a configuration command: {_short(tokens)} (only `crm configure ...` is imported)")
        return []
    return tokens[i + 1 :]


def _pairs(cfg: CrmConfig, line: int, what: str, tokens: list[str], i: int) -> tuple[dict[str, str], int]:
    """name=value tokens from `i` up to the next section keyword or bare word."""
    out: dict[str, str] = {}
    while i < len(tokens) and tokens[i] not in _SECTIONS:
        tok = tokens[i]
        if "=" not in tok:
            break
        name, value = tok.split("=", 1)
        if not name.startswith("$"):  # $id=..., $role=...: CIB ids, nothing to carry over
            if name in out:
                cfg.problem(line, f"{what}: {name} given twice; the last value {value!r} is used")
            out[name] = value
        i += 1
    return out, i


def _primitive(cfg: CrmConfig, line: int, tokens: list[str]) -> None:
    if len(tokens) < 3:
        cfg.problem(line, f"primitive needs an id and an agent: {_short(tokens)}")
        return
    rid, agent = tokens[1], tokens[2]
    if agent.startswith("@"):
        cfg.problem(line, f"primitive {rid}: resource templates ({agent}) are not supported; expand the template")
        return
    sections: dict[str, dict[str, str]] = {"params": {}, "meta": {}, "utilization": {}}
    ops: list[Op] = []
    i = 3
    while i < len(tokens):
        word = tokens[i]
        if word in sections:
            values, i = _pairs(cfg, line, f"primitive {rid} {word}", tokens, i + 1)
            sections[word].update(values)
        elif word == "op" and i + 1 < len(tokens) and "=" not in tokens[i + 1]:
            name = tokens[i + 1]
            attrs, i = _pairs(cfg, line, f"primitive {rid} op {name}", tokens, i + 2)
            ops.append(Op(name, attrs))
        elif word in ("op_params", "op_meta") and ops:
            attrs, i = _pairs(cfg, line, f"primitive {rid} {word}", tokens, i + 1)
            ops[-1] = Op(ops[-1].name, {**ops[-1].attrs, **attrs})
        elif word == "operations":
            _, i = _pairs(cfg, line, f"primitive {rid} operations", tokens, i + 1)
        else:
            cfg.problem(line, f"primitive {rid}: unexpected {word!r} (ignored)")
            i += 1
    if cfg.defined(rid):
        cfg.problem(line, f"primitive {rid}: the id is already defined; this definition is ignored")
        return
    cfg.primitives[rid] = Primitive(rid, agent, sections["params"], sections["meta"], tuple(ops), line,
                                    sections["utilization"])


def _wrapper(cfg: CrmConfig, line: int, tokens: list[str]) -> None:
    kind = {"master": "ms"}.get(tokens[0], tokens[0])
    if len(tokens) < 3:
        cfg.problem(line, f"{tokens[0]} needs an id and a resource: {_short(tokens)}")
        return
    rid = tokens[1]
    members: list[str] = []
    sections: dict[str, dict[str, str]] = {"meta": {}, "params": {}}
    i = 2
    while i < len(tokens) and tokens[i] not in _SECTIONS and "=" not in tokens[i]:
        members.append(tokens[i])
        i += 1
    while i < len(tokens):
        word = tokens[i]
        if word in sections:
            values, i = _pairs(cfg, line, f"{tokens[0]} {rid} {word}", tokens, i + 1)
            sections[word].update(values)
        else:
            cfg.problem(line, f"{tokens[0]} {rid}: unexpected {word!r} (ignored)")
            i += 1
    if not members or (kind != "group" and len(members) != 1):
        cfg.problem(line, f"{tokens[0]} {rid} needs {'one resource' if kind != 'group' else 'resources'}: "
                    f"{_short(tokens)}")
        return
    if cfg.defined(rid):
        cfg.problem(line, f"{tokens[0]} {rid}: the id is already defined; this definition is ignored")
        return
    cfg.wrappers[rid] = Wrapper(rid, kind, tuple(members), sections["meta"], sections["params"], line)


def _chain(cfg: CrmConfig, line: int, what: str, tokens: list[str]) -> tuple[tuple[tuple[Ref, ...], ...],
                                                                             dict[str, str]]:
    """Constraint members: `A B:Master ( C D ) E` -> ((A,), (B,), (C, D), (E,)); name=value are options."""
    chain: list[tuple[Ref, ...]] = []
    options: dict[str, str] = {}
    current: list[Ref] | None = None
    for tok in tokens:
        if tok in ("(", "["):
            current = []
        elif tok in (")", "]"):
            if current:
                chain.append(tuple(current))
            current = None
        elif "=" in tok:
            name, value = tok.split("=", 1)
            if not name.startswith("$"):
                options[name] = value
        else:
            rid, _, qual = tok.partition(":")
            ref = Ref(rid, qual or None)
            if current is None:
                chain.append((ref,))
            else:
                current.append(ref)
    if current is not None:
        cfg.problem(line, f"{what}: a resource set is not closed")
    return tuple(chain), options


def _constraint(cfg: CrmConfig, line: int, tokens: list[str]) -> None:
    kind = "colocation" if tokens[0] in ("colocation", "collocation") else "order"
    if len(tokens) < 3:
        cfg.problem(line, f"{kind} needs an id and resources: {_short(tokens)}")
        return
    cid = tokens[1]
    rest = tokens[2:]
    score = "inf" if kind == "colocation" else "Mandatory"
    if rest[0].endswith(":"):
        score = rest[0][:-1]
        rest = rest[1:]
    elif kind == "colocation":
        cfg.problem(line, f"colocation {cid}: no score (e.g. `inf:`); taken as inf")
    chain, options = _chain(cfg, line, f"{kind} {cid}", rest)
    if sum(len(e) for e in chain) < 2:
        cfg.problem(line, f"{kind} {cid} needs at least two resources: {_short(tokens)}")
        return
    cfg.constraints.append(Constraint(kind, cid, score, chain, options, line))


def _location(cfg: CrmConfig, line: int, tokens: list[str]) -> None:
    if len(tokens) < 4:
        cfg.problem(line, f"location needs an id, a resource and a score: node or rule: {_short(tokens)}")
        return
    lid, rsc = tokens[1], tokens[2]
    if rsc in ("{", "("):
        cfg.problem(line, f"location {lid}: resource sets in locations are not supported: {_short(tokens)}")
        return
    options, i = _pairs(cfg, line, f"location {lid}", tokens, 3)
    rest = tokens[i:]
    if rest and rest[0] == "rule":
        cfg.locations.append(Location(lid, rsc, None, None, " ".join(rest[1:]), options, line))
    elif len(rest) == 2 and rest[0].endswith(":"):
        cfg.locations.append(Location(lid, rsc, rest[0][:-1], rest[1], None, options, line))
    else:
        cfg.problem(line, f"location {lid}: expected `SCORE: NODE` or `rule ...`: {_short(tokens)}")


def _node(cfg: CrmConfig, line: int, tokens: list[str]) -> None:
    i, nid = 1, None
    if len(tokens) > 1 and tokens[1].startswith("$id="):
        nid, i = tokens[1][4:], 2
    elif len(tokens) > 2 and tokens[1].endswith(":"):
        nid, i = tokens[1][:-1], 2
    if i >= len(tokens):
        cfg.problem(line, f"node without a name: {_short(tokens)}")
        return
    name = tokens[i].split(":", 1)[0]  # uname[:type]
    attrs: dict[str, str] = {}
    i += 1
    while i < len(tokens):
        if tokens[i] in ("attributes", "utilization"):
            values, i = _pairs(cfg, line, f"node {name} {tokens[i]}", tokens, i + 1)
            attrs.update(values)
        elif "=" in tokens[i] and tokens[i].startswith("description="):
            i += 1
        else:
            cfg.problem(line, f"node {name}: unexpected {tokens[i]!r} (ignored)")
            i += 1
    cfg.nodes.append(CrmNode(name, nid, attrs, line))


def _settings(cfg: CrmConfig, line: int, tokens: list[str]) -> None:
    i = 1
    if len(tokens) > 1 and tokens[1].endswith(":") and "=" not in tokens[1]:
        i = 2  # the set's id, e.g. cib-bootstrap-options:
    values, j = _pairs(cfg, line, tokens[0], tokens, i)
    if j < len(tokens):
        cfg.problem(line, f"{tokens[0]}: unexpected {' '.join(tokens[j:])!r} (ignored)")
    if not values:
        cfg.problem(line, f"{tokens[0]} without name=value: {_short(tokens)}")
    for name, value in values.items():
        cfg.settings.append(Setting(tokens[0], name, value, line))


_COMMANDS = {
    "primitive": _primitive,
    "ms": _wrapper,
    "master": _wrapper,
    "clone": _wrapper,
    "group": _wrapper,
    "colocation": _constraint,
    "collocation": _constraint,
    "order": _constraint,
    "location": _location,
    "node": _node,
    "property": _settings,
    "rsc_defaults": _settings,
    "op_defaults": _settings,
}
