"""Typed reads from a YAML tree that remembers where every value was written.

PyYAML's `safe_load` throws positions away, and an operator told "deadtime must be
greater than ..." without a line number has to hunt for it.  So the config is only
*composed* (a node tree whose nodes carry `start_mark`), and every value is read from
its node by a `Reader` that records problems as `ConfigIssue`s instead of raising:
one run of `hafctl check` then reports every mistake in the file, not just the first.

Pure: text in, values and issues out.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
from dataclasses import dataclass
from typing import Collection, Final, Iterable

import yaml
from yaml.constructor import SafeConstructor

TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (TAG + t for t in ("str", "int", "float", "bool", "null"))

_KINDS: Final = {
    STR: "a string",
    INT: "an integer",
    FLOAT: "a number",
    BOOL: "a boolean",
    NULL: "null (an empty value)",
    TAG + "timestamp": "a date",
    TAG + "binary": "binary data",
}


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, located by line and by key path."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line > 0 else "")
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config cannot be used; `issues` lists every problem found in one pass."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class _Invalid:
    """Marker for a value that failed its check (its issue is already recorded)."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def is_null(node: yaml.Node) -> bool:
    """`key:` with nothing after it: an empty section, or an unset optional value."""
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL


def compose(text: str, file: str) -> yaml.Node | None:
    """Parse `text` into a positioned node tree; a syntax error becomes a ConfigError."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "malformed YAML"
        if exc.context and exc.problem:
            if exc.problem.startswith("but "):
                problem = f"{exc.context}, {exc.problem}"
            elif exc.context_mark is not None and exc.context_mark.line + 1 != line:
                problem = f"{exc.problem} ({exc.context} started at line {exc.context_mark.line + 1})"
        hint = ""
        if "found ':'" in problem or "found unexpected ':'" in problem:
            hint = " (quote IPv6 addresses and values that contain ': ')"
        raise ConfigError([ConfigIssue(file, line, "", f"invalid YAML: {problem}{hint}")]) from None
    except yaml.YAMLError as exc:  # ReaderError: characters YAML does not allow
        line = text.count("\n", 0, getattr(exc, "position", 0)) + 1
        reason = getattr(exc, "reason", None) or str(exc)
        raise ConfigError([ConfigIssue(file, line, "", f"invalid YAML: {reason}")]) from None
    except RecursionError:
        raise ConfigError([ConfigIssue(file, 0, "", "invalid YAML: nested too deeply")]) from None


def describe(node: yaml.Node) -> str:
    """How an operator would name what they wrote: "a boolean true", "a list"."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    kind = _KINDS.get(node.tag, f"a value tagged {node.tag}")
    if node.tag == NULL:
        return kind
    return f"{kind} {node.value!r}" if node.tag == STR else f"{kind} {node.value}"


def suggest(word: str, choices: Iterable[str]) -> str:
    """The " (did you mean 'x'?)" tail of a message, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Reader:
    """Reads typed values out of nodes, collecting issues instead of stopping at one."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []
        # The line of every key read so far, by key path: a missing key inside a
        # section is reported where the section's key was written.
        self.key_lines: dict[str, int] = {}
        self._construct = SafeConstructor()

    def error(self, where: yaml.Node | int, path: str, message: str) -> _Invalid:
        line = where if isinstance(where, int) else line_of(where)
        self.issues.append(ConfigIssue(self.file, line, path, message))
        return INVALID

    def warn(self, where: yaml.Node | int, path: str, message: str) -> None:
        line = where if isinstance(where, int) else line_of(where)
        self.warnings.append(ConfigIssue(self.file, line, path, message))

    def expected(self, node: yaml.Node, path: str, what: str) -> _Invalid:
        hint = ""
        if what.startswith("a string") and isinstance(node, yaml.ScalarNode) and node.tag != NULL:
            hint = f" (put it in quotes to make it a string: '{node.value}')"
        return self.error(node, path, f"expected {what}, got {describe(node)}{hint}")

    # -- mappings ---------------------------------------------------------------

    def items(self, node: yaml.Node, path: str) -> list[tuple[str, yaml.Node, yaml.Node]] | _Invalid:
        """The (key, key node, value node) of a mapping, without duplicate or non-text keys."""
        if not isinstance(node, yaml.MappingNode):
            return self.expected(node, path, "a mapping")
        seen: dict[str, int] = {}
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        for knode, vnode in node.value:
            kpath = f"{path}.<key>" if path else "<key>"
            if not isinstance(knode, yaml.ScalarNode):
                self.error(knode, kpath, f"keys must be plain names, got {describe(knode)}")
                continue
            key = knode.value
            kpath = f"{path}.{key}" if path else key
            if key == "<<" and knode.tag == TAG + "merge":
                self.error(knode, kpath, "YAML merge keys ('<<') are not supported; write the keys out")
                continue
            if key in seen:
                self.error(knode, kpath, f"duplicate key {key!r} (first defined at line {seen[key]})")
                continue
            seen[key] = line_of(knode)
            self.key_lines[kpath] = seen[key]
            out.append((key, knode, vnode))
        return out

    def fields(
        self,
        node: yaml.Node,
        path: str,
        known: Collection[str],
        required: Collection[str],
        owner_line: int,
        *,
        report_unknown: bool = True,
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | _Invalid:
        """A mapping with a fixed set of keys: unknown and missing keys are issues."""
        if is_null(node) and not required:
            return {}
        items = self.items(node, path)
        if isinstance(items, _Invalid):
            return items
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, knode, vnode in items:
            kpath = f"{path}.{key}" if path else key
            if key in known:
                out[key] = (knode, vnode)
            elif report_unknown:
                choices = ", ".join(sorted(known))
                self.error(knode, kpath, f"unknown key {key!r}{suggest(key, known)}; known keys: {choices}")
        for key in required:
            if key not in out:
                self.error(owner_line, path, f"missing required key {key!r}")
        return out

    # -- scalars ----------------------------------------------------------------

    def string(self, node: yaml.Node, path: str, *, nonempty: bool = True) -> str | _Invalid:
        if not isinstance(node, yaml.ScalarNode) or node.tag != STR:
            return self.expected(node, path, "a string")
        if nonempty and not node.value.strip():
            return self.error(node, path, "must not be empty")
        return str(node.value)

    def absolute_path(self, node: yaml.Node, path: str) -> str | _Invalid:
        value = self.string(node, path)
        if isinstance(value, str) and not value.startswith("/"):
            return self.error(node, path, f"must be an absolute path (starting with /), got {value!r}")
        return value

    def choice(self, node: yaml.Node, path: str, choices: Collection[str]) -> str | _Invalid:
        value = self.string(node, path)
        if isinstance(value, str) and value not in choices:
            allowed = " | ".join(choices)
            return self.error(node, path, f"must be one of {allowed}, got {value!r}{suggest(value, choices)}")
        return value

    def boolean(self, node: yaml.Node, path: str) -> bool | _Invalid:
        if not isinstance(node, yaml.ScalarNode) or node.tag != BOOL:
            return self.expected(node, path, "a boolean (true or false)")
        value = SafeConstructor.bool_values.get(str(node.value).lower())  # `!!bool maybe` is tagged, not valid
        if value is None:
            return self.error(node, path, f"cannot read {node.value!r} as a boolean (true or false)")
        return bool(value)

    def integer(
        self, node: yaml.Node, path: str, *, lo: int | None = None, hi: int | None = None
    ) -> int | _Invalid:
        """An integer; YAML's `true` is a boolean here, not 1."""
        if not isinstance(node, yaml.ScalarNode) or node.tag != INT:
            return self.expected(node, path, "an integer")
        value = self._scalar(node, path)
        if isinstance(value, _Invalid):
            return value
        if lo is not None and hi is not None and not lo <= value <= hi:
            return self.error(node, path, f"must be between {lo} and {hi}, got {node.value}")
        if lo is not None and value < lo:
            return self.error(node, path, f"must be at least {lo}, got {node.value}")
        return int(value)

    def number(self, node: yaml.Node, path: str, *, positive: bool = True) -> float | _Invalid:
        """A finite number in seconds (an integer is fine); `positive` rejects 0 and below."""
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (INT, FLOAT):
            return self.expected(node, path, "a number")
        raw = self._scalar(node, path)
        if isinstance(raw, _Invalid):
            return raw
        try:
            value = float(raw)
        except OverflowError:
            return self.error(node, path, f"is too large: {node.value}")
        if not math.isfinite(value):
            return self.error(node, path, f"must be a finite number, got {node.value}")
        if positive and value <= 0:
            return self.error(node, path, f"must be greater than 0, got {node.value}")
        if not positive and value < 0:
            return self.error(node, path, f"must not be negative, got {node.value}")
        return value

    def ip_address(self, node: yaml.Node, path: str) -> str | _Invalid:
        """An IPv4 or IPv6 address in canonical form, so it compares equal to what the kernel reports.

        Read from the scalar's text: an unquoted IPv6 address can resolve as a YAML
        sexagesimal integer, and the operator meant the text.
        """
        if not isinstance(node, yaml.ScalarNode) or node.tag == NULL:
            return self.expected(node, path, "an IP address")
        try:
            return str(ipaddress.ip_address(node.value))
        except ValueError:
            return self.error(node, path, f"expected an IPv4 or IPv6 address, got {node.value!r}")

    def argv(self, node: yaml.Node, path: str) -> tuple[str, ...] | _Invalid:
        """A program and its arguments, run without a shell.

        Arguments are taken as written (`-4` stays "-4", not the integer), because the
        operator wrote command-line text.
        """
        example = ' (e.g. ["/usr/local/sbin/fence-node", "{peer}"])'
        if isinstance(node, yaml.ScalarNode) and node.tag == STR:
            return self.error(node, path, f"must be an argv list, not a shell string{example}")
        if not isinstance(node, yaml.SequenceNode):
            return self.expected(node, path, "an argv list of strings")
        if not node.value:
            return self.error(node, path, "must not be empty: give the program and its arguments")
        out: list[str] = []
        ok = True
        for i, item in enumerate(node.value):
            ipath = f"{path}[{i}]"
            if not isinstance(item, yaml.ScalarNode) or item.tag == NULL:
                self.expected(item, ipath, "a string")
                ok = False
            elif i == 0 and not item.value.strip():
                self.error(item, ipath, "the program must not be empty")
                ok = False
            else:
                out.append(str(item.value))
        return tuple(out) if ok else INVALID

    def sequence(self, node: yaml.Node, path: str, what: str) -> list[yaml.Node] | _Invalid:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        hint = f" (write [{node.value}])" if isinstance(node, yaml.ScalarNode) and node.tag == STR else ""
        return self.error(node, path, f"expected a list of {what}, got {describe(node)}{hint}")

    def _scalar(self, node: yaml.ScalarNode, path: str) -> int | float | _Invalid:
        try:
            if node.tag == INT:
                return int(self._construct.construct_yaml_int(node))
            return float(self._construct.construct_yaml_float(node))
        except (ValueError, OverflowError, LookupError):  # an explicit `!!int ''` reaches here
            what = "an integer" if node.tag == INT else "a number"
            return self.error(node, path, f"cannot read {node.value!r} as {what}")
