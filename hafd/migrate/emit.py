"""The translated configuration -> hafd.yaml text, with the comments that explain it.

yaml.dump cannot write comments, and a migrated file without them would hide every
decision the import made (why failback is false, what replaced stonith-enabled=false,
which Pacemaker line could not be carried over).  So the text is written here, from a
small document model; scalars are quoted whenever plain YAML would read them back as
anything but the same string (`yes`, `1:20`, `0755`, `a: b`), checked by reading back.

Pure.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union

import yaml

__all__ = ["Block", "Document", "Item", "Value", "render", "scalar"]

Value = Union[str, int, float, bool, Sequence[str], Mapping[str, str]]
WIDTH = 118  # comment lines are wrapped to this
_PLAIN = re.compile(r"[A-Za-z0-9_./@%+-][A-Za-z0-9_./@%+:=,-]*")


@dataclass
class Item:
    """`key: value  # comment`, with full comment lines above it (an empty key: the comments only)."""

    key: str
    value: Value
    comment: str = ""
    above: list[str] = field(default_factory=list)


@dataclass
class Block:
    """A named mapping under `nodes:` or `resources:`."""

    name: str
    items: list[Item] = field(default_factory=list)
    above: list[str] = field(default_factory=list)

    def set(self, key: str, value: Value, comment: str = "", above: Sequence[str] = ()) -> None:
        self.items = [i for i in self.items if i.key != key]
        self.items.append(Item(key, value, comment, list(above)))

    def get(self, key: str) -> Value | None:
        return next((i.value for i in self.items if i.key == key), None)


@dataclass
class Document:
    header: list[str] = field(default_factory=list)
    cluster: list[Item] = field(default_factory=list)
    nodes_above: list[str] = field(default_factory=list)
    nodes: list[Block] = field(default_factory=list)
    resources_above: list[str] = field(default_factory=list)
    resources: list[Block] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)


def scalar(value: str | int | float | bool, *, flow: bool = False) -> str:
    """One YAML scalar that reads back as exactly `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if _PLAIN.fullmatch(value) and not (flow and ("," in value or ":" in value)):
        probe = f"k: [{value}]" if flow else f"k: {value}"
        try:
            back = yaml.safe_load(probe)
        except yaml.YAMLError:
            back = None
        if back == {"k": [value] if flow else value}:
            return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _comment_lines(lines: Sequence[str], indent: int) -> list[str]:
    """Comment lines, long ones wrapped (keeping their own leading spaces, plus two)."""
    pad = " " * indent
    out: list[str] = []
    for text in lines:
        for part in str(text).splitlines() or [""]:
            lead = part[: len(part) - len(part.lstrip())]
            wrapped = textwrap.wrap(part.lstrip(), WIDTH - indent - 2, initial_indent=lead, subsequent_indent=lead + "  ",
                                    break_long_words=False, break_on_hyphens=False) or [""]
            out.extend(f"{pad}# {w}".rstrip() for w in wrapped)
    return out


def _item(item: Item, indent: int) -> list[str]:
    pad = " " * indent
    out = _comment_lines(item.above, indent)
    if not item.key:  # comments only
        return out
    tail = f"  # {item.comment}" if item.comment else ""
    value = item.value
    if isinstance(value, Mapping):
        if not value:
            out.append(f"{pad}{item.key}: {{}}{tail}")
        else:
            out.append(f"{pad}{item.key}:{tail}")
            out.extend(f"{pad}  {scalar(k)}: {scalar(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        out.append(f"{pad}{item.key}: [{', '.join(scalar(v, flow=True) for v in value)}]{tail}")
    else:
        out.append(f"{pad}{item.key}: {scalar(value)}{tail}")  # type: ignore[arg-type]
    return out


def _blocks(title: str, above: Sequence[str], blocks: Sequence[Block]) -> list[str]:
    out = [""] + _comment_lines(above, 0) + [f"{title}:"]
    for block in blocks:
        out.extend(_comment_lines(block.above, 2))
        out.append(f"  {scalar(block.name)}:")
        for item in block.items:
            out.extend(_item(item, 4))
    return out


def render(doc: Document) -> str:
    out = _comment_lines(doc.header, 0)
    out += ["", "cluster:"]
    for item in doc.cluster:
        out.extend(_item(item, 2))
    out += _blocks("nodes", doc.nodes_above, doc.nodes)
    out += _blocks("resources", doc.resources_above, doc.resources)
    if doc.footer:
        out += [""] + _comment_lines(doc.footer, 0)
    return "\n".join(out) + "\n"
