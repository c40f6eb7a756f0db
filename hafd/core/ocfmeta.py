"""What an OCF resource agent says about itself: its meta-data and its exit codes.

Pure: the agent runner (hafd/agents/ocf.py) runs `AGENT meta-data` and hands the text
here.  The meta-data is parsed with the standard library's xml.etree, not defusedxml:
the input is the output of a local, root-owned program that already runs as root with
whatever parameters we give it, so an XML entity bomb in it would gain an attacker
nothing they did not have (and expat refuses external entities anyway).

Why it matters: agents advise the timeouts their actions need (`<action name="start"
timeout="20s"/>`); hafd uses them when the operator gave none, as Pacemaker does, so
that a slow agent (a database that replays its journal on start) is not killed by a
default meant for a service that starts in a second.

A meta-data document that is readable but odd (an action without a name, a timeout
of "soon") is not an error: the entry is skipped and a warning names it, since the
agent's actions still work and only the advice is lost.  Only text that is not XML, or
whose root is not <resource-agent>, raises MetadataError.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

# OCF resource agent API exit codes (OCF 1.1, with Pacemaker's names).
OCF_SUCCESS = 0
OCF_ERR_GENERIC = 1
OCF_ERR_ARGS = 2
OCF_ERR_UNIMPLEMENTED = 3
OCF_ERR_PERM = 4
OCF_ERR_INSTALLED = 5
OCF_ERR_CONFIGURED = 6
OCF_NOT_RUNNING = 7
OCF_RUNNING_PROMOTED = 8  # "OCF_RUNNING_MASTER" before OCF 1.1
OCF_FAILED_PROMOTED = 9  # "OCF_FAILED_MASTER"
OCF_DEGRADED = 190  # OCF 1.1: running, but not fully healthy
OCF_DEGRADED_PROMOTED = 191

OCF_CODE_NAMES: dict[int, str] = {
    OCF_SUCCESS: "OCF_SUCCESS",
    OCF_ERR_GENERIC: "OCF_ERR_GENERIC",
    OCF_ERR_ARGS: "OCF_ERR_ARGS",
    OCF_ERR_UNIMPLEMENTED: "OCF_ERR_UNIMPLEMENTED",
    OCF_ERR_PERM: "OCF_ERR_PERM",
    OCF_ERR_INSTALLED: "OCF_ERR_INSTALLED",
    OCF_ERR_CONFIGURED: "OCF_ERR_CONFIGURED",
    OCF_NOT_RUNNING: "OCF_NOT_RUNNING",
    OCF_RUNNING_PROMOTED: "OCF_RUNNING_PROMOTED",
    OCF_FAILED_PROMOTED: "OCF_FAILED_PROMOTED",
    OCF_DEGRADED: "OCF_DEGRADED",
    OCF_DEGRADED_PROMOTED: "OCF_DEGRADED_PROMOTED",
}


def code_name(code: int | None) -> str:
    """"OCF_ERR_CONFIGURED (6)"; codes outside the API say so, since 126/127 mean the
    shell could not run something, which is a different fix from a config error."""
    if code is None:
        return "no exit code"
    name = OCF_CODE_NAMES.get(code)
    return f"{name} ({code})" if name else f"exit {code} (not an OCF code)"


class MetadataError(ValueError):
    """The meta-data text is not an OCF resource-agent description at all."""


# Pacemaker's crm_get_msec units; a bare number is seconds.
_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "ms": 0.001,
    "msec": 0.001,
    "us": 0.000001,
    "usec": 0.000001,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_duration(text: str) -> float:
    """Seconds from an OCF/Pacemaker duration: "20s", "2m", "20000ms", "20", "1h".

    Raises ValueError naming the text, so a caller can turn it into a warning.
    """
    m = _DURATION.match(text.lower()) if isinstance(text, str) else None
    if m is None or m.group(2) not in _UNITS:
        raise ValueError(f"not a duration: {text!r} (expected a number with s, ms, m or h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class OcfParameter:
    name: str
    required: bool = False
    default: str | None = None
    unique: bool = False
    shortdesc: str = ""


@dataclass(frozen=True)
class OcfAction:
    name: str
    timeout: float | None = None  # seconds
    interval: float | None = None
    role: str | None = None  # "Promoted"/"Master", "Unpromoted"/"Slave" on per-role monitors
    depth: int | None = None


@dataclass(frozen=True)
class OcfMetadata:
    name: str
    version: str = ""
    shortdesc: str = ""
    parameters: tuple[OcfParameter, ...] = ()
    actions: tuple[OcfAction, ...] = ()
    warnings: tuple[str, ...] = ()

    def action(self, name: str) -> OcfAction | None:
        """The action entry for `name`; a role-less entry wins over per-role ones
        (agents list one plain monitor plus one per role for promotable resources)."""
        found = [a for a in self.actions if a.name == name]
        plain = [a for a in found if a.role is None]
        return (plain or found or [None])[0]

    def timeout(self, name: str) -> float | None:
        a = self.action(name)
        return a.timeout if a is not None else None

    def advertises(self, name: str) -> bool:
        return any(a.name == name for a in self.actions)

    @property
    def promotable(self) -> bool:
        return self.advertises("promote") and self.advertises("demote")

    def parameter(self, name: str) -> OcfParameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def missing_required(self, given: set[str] | frozenset[str]) -> list[str]:
        """Required parameters not given (and without a default to fall back on)."""
        return [p.name for p in self.parameters if p.required and p.default is None and p.name not in given]

    def unknown(self, given: set[str] | frozenset[str]) -> list[str]:
        """Given names the agent does not describe: most often a typo."""
        known = {p.name for p in self.parameters}
        return sorted(n for n in given if n not in known)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "y")


def _text(el: ET.Element | None) -> str:
    return " ".join((el.text or "").split()) if el is not None else ""


def parse_metadata(text: str) -> OcfMetadata:
    """Parse `AGENT meta-data` output; raise MetadataError only if it is not meta-data."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as e:
        raise MetadataError(f"meta-data is not XML: {e}") from None
    if root.tag != "resource-agent":
        raise MetadataError(f"meta-data root element is <{root.tag}>, not <resource-agent>")
    warnings: list[str] = []
    params: list[OcfParameter] = []
    for el in root.findall("./parameters/parameter"):
        name = (el.get("name") or "").strip()
        if not name:
            warnings.append("a <parameter> without a name was skipped")
            continue
        content = el.find("content")
        default = content.get("default") if content is not None else None
        params.append(
            OcfParameter(
                name=name,
                required=_flag(el.get("required")),
                default=default,
                unique=_flag(el.get("unique")),
                shortdesc=_text(el.find("shortdesc")),
            )
        )
    actions: list[OcfAction] = []
    for el in root.findall("./actions/action"):
        name = (el.get("name") or "").strip()
        if not name:
            warnings.append("an <action> without a name was skipped")
            continue
        timeout = _duration_attr(el, "timeout", name, warnings)
        interval = _duration_attr(el, "interval", name, warnings)
        depth_text = el.get("depth")
        depth = int(depth_text) if depth_text is not None and depth_text.strip().isdigit() else None
        role = (el.get("role") or "").strip() or None
        actions.append(OcfAction(name=name, timeout=timeout, interval=interval, role=role, depth=depth))
    return OcfMetadata(
        name=(root.get("name") or "").strip(),
        version=_text(root.find("version")) or (root.get("version") or ""),
        shortdesc=_text(root.find("shortdesc")),
        parameters=tuple(params),
        actions=tuple(actions),
        warnings=tuple(warnings),
    )


def _duration_attr(el: ET.Element, attr: str, action: str, warnings: list[str]) -> float | None:
    value = el.get(attr)
    if value is None or not value.strip():
        return None
    try:
        return parse_duration(value)
    except ValueError as e:
        warnings.append(f"action {action}: {attr}: {e}; ignored")
        return None
