"""Write docs/config-reference.md and docs/hafctl-reference.md from the code.

    python docs/gen.py            # rewrite both files
    python docs/gen.py --check    # exit 1 if a committed file differs (what tests/test_docs.py asserts)

Everything a reference states that the code knows (which keys exist, their nesting,
types, defaults, which are required; which hafctl commands and options exist, their
help, the exit codes) is read from the code: the key tables of hafd.core.configload,
the dataclass defaults of hafd.core.config, hafctl's build_parser().  Only the prose
and the examples come from docs/descriptions.py.  So a key or command added to the
code without a description fails the docs test instead of going undocumented, and a
changed default changes the reference at the next run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import inspect
import os
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = "/opt/hafd-venv/bin/python"

try:  # `python docs/gen.py` with a python that lacks hafd's dependencies: rerun under hafd's venv
    import structlog  # noqa: F401
    import yaml  # noqa: F401
except ImportError:
    _VENV = os.path.dirname(os.path.dirname(VENV_PYTHON))
    if __name__ == "__main__" and os.path.exists(VENV_PYTHON) and sys.prefix != _VENV:
        os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])
    raise
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402

import descriptions  # noqa: E402
from hafd import cli  # noqa: E402
from hafd.core import config as cfgmod  # noqa: E402
from hafd.core import configload as cl  # noqa: E402
from hafd.core.yamlpos import ConfigError  # noqa: E402

CONFIG_DOC = ROOT / "docs" / "config-reference.md"
HAFCTL_DOC = ROOT / "docs" / "hafctl-reference.md"
REQUIRED = "(required)"


# -- the schema, as the code defines it ----------------------------------------------------


@dataclass(frozen=True)
class KeyDoc:
    """One key of hafd.yaml as the reference shows it."""

    path: str  # how an operator finds it: "cluster.fencing.timeout", "resources.<name>.device"
    doc_id: str  # its entry in descriptions.CONFIG: the path, or "<type>.<key>" for a resource type's key
    yaml_path: tuple[str, ...]  # where it sits in a document ("[]" = an item of a list)
    type: str
    default: str
    required: bool
    children: tuple["KeyDoc", ...] = ()


@dataclass(frozen=True)
class Section:
    title: str
    doc_id: str
    keys: tuple[KeyDoc, ...]


def _closure(fn: Callable[..., Any]) -> dict[str, Any]:
    names = fn.__code__.co_freevars
    cells = fn.__closure__ or ()
    return {n: c.cell_contents for n, c in zip(names, cells)}


# Reader methods a lambda check may call, and the type they accept.
_READER_TYPES = {
    "ip_address": "IP address",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "absolute_path": "absolute path",
    "argv": "list of strings (argv)",
}
# Named check functions of configload and the type they accept.
_CHECK_TYPES = {
    "_str": "string",
    "_abs": "absolute path",
    "_bool": "boolean",
    "_seconds": "seconds (number > 0)",
    "_argv": "list of strings (argv, no shell)",
    "_port": "integer 1-65535",
    "_ipv4_interface": "IPv4 address/prefix",
    "_interface": "interface name",
    "_signal": "signal name",
    "_ocf_agent": "PROVIDER:TYPE",
    "_str_map": "mapping of name to scalar",
    "_listen": "HOST:PORT",
    "_hooks": "list of hooks",
    "_ready": "mapping",
}
# Checks that read a sub-mapping that is not built with configload._nested: its key table,
# its dataclass, and whether the value is a list of such mappings.
_SUBTABLES: dict[str, tuple[str, type, bool]] = {
    "_ready": ("_READY_KEYS", cfgmod.ReadyCheck, False),
    "_hooks": ("_HOOK_KEYS", cfgmod.Hook, True),
}
_ANNOTATION_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "tuple[str, ...]": "list of strings",
    "Mapping[str, str]": "mapping of name to string",
}


def _annotation(cls: type | None, name: str) -> str | None:
    if cls is None:
        return None
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return None


def _enum_choices(annotation: str | None) -> str | None:
    if not annotation:
        return None
    kind = getattr(cfgmod, annotation.split(" | ")[0].strip(), None)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return " | ".join(str(m.value) for m in kind)
    return None


def type_of(check: Callable[..., Any], cls: type | None, name: str) -> str:
    """The accepted type, from the check function first, else from the dataclass field."""
    qual = getattr(check, "__qualname__", "")
    if qual in _CHECK_TYPES:
        return _CHECK_TYPES[qual]
    if qual == "_nested.<locals>.check":
        return "mapping"
    if qual == "_int_at_least.<locals>.<lambda>":
        lo = _closure(check).get("lo")
        return "integer" if lo is None else f"integer >= {lo}"
    if qual == "_choice.<locals>.<lambda>":
        return " | ".join(_closure(check)["choices"])
    if qual == "_optional.<locals>.<lambda>":
        return type_of(_closure(check)["check"], cls, name) + " or null"
    annotation = _annotation(cls, name)
    choices = _enum_choices(annotation)
    if choices:
        return choices
    if qual == "<lambda>":
        try:
            source = inspect.getsource(check)
        except (OSError, TypeError):
            source = ""
        if "_name(" in source:
            return "name (letters, digits, _ . -)"
        called = re.findall(r"\br\.(\w+)\(", source)
        if called and called[0] in _READER_TYPES:
            return _READER_TYPES[called[0]]
    if annotation in _ANNOTATION_TYPES:
        return _ANNOTATION_TYPES[annotation]
    return annotation or "see description"


def render_default(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and value == tuple(cfgmod.EVENT_NAMES):
        return "every event"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{}" if not value else str(dict(value))
    if value == "":
        return '"" (empty)'
    return str(value)


def default_of(cls: type | None, name: str) -> str:
    if cls is None:
        return "not set"
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return render_default(f.default)
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                return render_default(f.default_factory())  # type: ignore[misc]
            return "none"
    return "not set"


def _keys(table: Mapping[str, Any], cls: type | None, path: str, doc_prefix: str,
          yaml_path: tuple[str, ...]) -> tuple[KeyDoc, ...]:
    out: list[KeyDoc] = []
    for name, spec in table.items():
        out.append(_key(name, spec.check, spec.required, cls, path, doc_prefix, yaml_path))
    return tuple(out)


def _key(name: str, check: Callable[..., Any], required: bool, cls: type | None, path: str, doc_prefix: str,
         yaml_path: tuple[str, ...]) -> KeyDoc:
    kpath, kid, ypath = f"{path}.{name}", f"{doc_prefix}.{name}", (*yaml_path, name)
    children: tuple[KeyDoc, ...] = ()
    qual = getattr(check, "__qualname__", "")
    if qual == "_nested.<locals>.check":
        inner = _closure(check)
        children = _keys(inner["keys"], inner["cls"], kpath, kid, ypath)
    elif qual in _SUBTABLES:
        table_name, sub_cls, is_list = _SUBTABLES[qual]
        table = getattr(cl, table_name)
        sub = (kpath + "[]", kid + "[]", (*ypath, "[]")) if is_list else (kpath, kid, ypath)
        children = _keys(table, sub_cls, *sub)
    default = REQUIRED if required else default_of(cls, name)
    if name == "type" and path == "resources.<name>":
        kind = " | ".join(cl.RESOURCE_TYPES)
    else:
        kind = type_of(check, cls, name)
    return KeyDoc(kpath, kid, ypath, kind, default, required, children)


def _probe_issues(text: str) -> list[Any]:
    try:
        cl.parse_config(text, "probe.yaml")
    except ConfigError as exc:
        return exc.issues
    return []


def node_keys() -> list[tuple[str, bool]]:
    """The keys of one node and whether each is required, as the loader answers them.

    configload keeps this table inside `_nodes`, so it is asked: an unknown key lists
    the known ones, an empty node names the required ones."""
    known: list[str] = []
    for issue in _probe_issues("cluster: {name: x}\nnodes:\n  a: {links: [10.0.0.1], zz_probe: 1}\n"):
        m = re.search(r"known keys: (.*)$", issue.message)
        if m:
            known = [k.strip() for k in m.group(1).split(",")]
    required = set()
    for issue in _probe_issues("cluster: {name: x}\nnodes:\n  a: {}\n"):
        m = re.search(r"missing required key '(\w+)'", issue.message)
        if m:
            required.add(m.group(1))
    if not known:
        raise SystemExit("gen.py: could not learn the node keys from hafd.core.configload")
    order = [f.name for f in dataclasses.fields(cfgmod.Node)]
    known.sort(key=lambda k: order.index(k) if k in order else len(order))
    return [(k, k in required) for k in known]


def top_required() -> set[str]:
    out = set()
    for issue in _probe_issues("{}\n"):
        m = re.search(r"missing required key '(\w+)'", issue.message)
        if m and issue.path == "":
            out.add(m.group(1))
    return out


def _raw(r: Any, n: Any, p: str) -> Any:  # stands for checks configload keeps inline
    return n


def schema() -> list[Section]:
    """Every documented section of hafd.yaml, in the order of configload._TOP."""
    sections: list[Section] = []
    required = top_required()
    for top in cl._TOP:
        note = " (required)" if top in required else ""
        if top == "cluster":
            keys = _keys(cl._CLUSTER, cfgmod.Cluster, "cluster", "cluster", ("cluster",))
            sections.append(Section(f"cluster{note}", "cluster", keys))
        elif top == "nodes":
            keys = tuple(_key(k, _raw, req, cfgmod.Node, "nodes.<name>", "nodes.<name>", ("nodes", "<name>"))
                         for k, req in node_keys())
            sections.append(Section(f"nodes{note}", "nodes", keys))
        elif top == "resources":
            common = _keys(cl._COMMON, cfgmod.Resource, "resources.<name>", "resources.<name>", ("resources", "<name>"))
            sections.append(Section(f"resources{note}: keys of every type", "resources", common))
            for tname, rtype in cl.RESOURCE_TYPES.items():
                keys = _keys(rtype.keys, rtype.params, "resources.<name>", tname, ("resources", "<name>"))
                sections.append(Section(f"resources: type {tname}", f"type.{tname}", keys))
        elif top == "programs":
            sections.append(Section(f"programs{note}", "programs", _keys(cl._PROGRAMS, cfgmod.Programs, "programs",
                                                                       "programs", ("programs",))))
        else:
            table = getattr(cl, f"_{top.upper()}", None)
            cls = getattr(cfgmod, top.capitalize(), None)
            if table is None:
                raise SystemExit(f"gen.py: no key table configload._{top.upper()} for the section {top!r}")
            sections.append(Section(f"{top}{note}", top, _keys(table, cls if dataclasses.is_dataclass(cls) else None,
                                                               top, top, (top,))))
    return sections


def walk(keys: tuple[KeyDoc, ...]) -> Iterator[KeyDoc]:
    for k in keys:
        yield k
        yield from walk(k.children)


def all_keys() -> list[KeyDoc]:
    return [k for s in schema() for k in walk(s.keys)]


# -- examples --------------------------------------------------------------------------------


def nest(yaml_path: tuple[str, ...], value: Any, siblings: Mapping[str, Any] | None = None) -> Any:
    """A document fragment holding `value` at `yaml_path` (with sibling keys next to it)."""
    leaf: dict[str, Any] = dict(siblings or {})
    leaf[yaml_path[-1]] = value
    node: Any = leaf
    for part in reversed(yaml_path[:-1]):
        node = [node] if part == "[]" else {("NAME" if part == "<name>" else part): node}
    return node


class Undescribed(LookupError):
    """A key or command the code has and docs/descriptions.py does not describe yet."""


def describe(table: str, name: str) -> Any:
    try:
        return getattr(descriptions, table)[name]
    except KeyError:
        raise Undescribed(f"{name!r} has no entry in docs/descriptions.py {table}: describe it there, "
                          "then run `python docs/gen.py`") from None


def example_fragment(key: KeyDoc) -> Any:
    entry = describe("CONFIG", key.doc_id)
    ypath = tuple("NAME" if p == "<name>" else p for p in key.yaml_path)
    fragment = nest(ypath, entry.example, entry.also)
    rtype = key.doc_id.split(".")[0]
    if ypath[0] == "resources" and rtype in cl.RESOURCE_TYPES:
        fragment["resources"]["NAME"] = {"type": rtype, **fragment["resources"]["NAME"]}
    return fragment


class _Dumper(yaml.SafeDumper):
    """Block mappings (as operators write hafd.yaml), lists of plain values on one line."""


def _seq(d: yaml.SafeDumper, v: list[Any]) -> yaml.Node:
    flat = all(not isinstance(x, (dict, list)) for x in v)
    return d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=flat)


def _map(d: yaml.SafeDumper, v: dict[str, Any]) -> yaml.Node:
    return d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=False if v else True)


_Dumper.add_representer(list, _seq)
_Dumper.add_representer(dict, _map)


def dump(fragment: Any) -> str:
    return yaml.dump(fragment, Dumper=_Dumper, sort_keys=False, width=100).rstrip("\n")


def merge(base: Any, fragment: Any) -> Any:
    """`fragment` laid over `base` (mappings merge, anything else replaces)."""
    if isinstance(base, dict) and isinstance(fragment, dict):
        out = dict(base)
        for k, v in fragment.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return copy.deepcopy(fragment)


def example_document(key: KeyDoc) -> dict[str, Any]:
    """The shipped config/hafd.yaml with this key's example laid over it (a complete resource of
    the key's type under `resources.NAME`): what tests/test_docs.py validates."""
    base = yaml.safe_load((ROOT / "config" / "hafd.yaml").read_text())
    fragment = example_fragment(key)
    if key.yaml_path[0] == "resources":
        own = fragment["resources"]["NAME"]
        resource = descriptions.RESOURCE_EXAMPLES[own.get("type", "service")]
        fragment["resources"]["NAME"] = {**resource, **own}  # the example's keys replace the base's whole
    if key.yaml_path[0] == "nodes":
        fragment = {"nodes": {"nodeone": fragment["nodes"]["NAME"]}}
    return merge(base, fragment)


# -- config-reference.md ---------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def config_reference() -> str:
    sections = schema()
    out = [
        "# hafd.yaml reference",
        "",
        "<!-- Generated by `python docs/gen.py` from hafd/core/configload.py and hafd/core/config.py;",
        "     do not edit by hand: descriptions and examples live in docs/descriptions.py. -->",
        "",
        descriptions.CONFIG_INTRO.strip(),
        "",
        "Check a file before you use it: `hafctl check-config /etc/hafd/hafd.yaml` (or `hafd --check-config`).",
        "Times are in seconds. Every external program is given as an argv list and run without a shell.",
        "",
        "## A minimal file",
        "",
        "```yaml",
        descriptions.MINIMAL.strip(),
        "```",
        "",
        "The full example is `config/hafd.yaml` (the two-node DHCP cluster: DRBD, /data, a VIP, isc-dhcp-server).",
        "",
        "## Contents",
        "",
    ]
    for s in sections:
        out.append(f"- [{s.title}](#{_anchor(s.title)})")
    out.append("")
    for s in sections:
        out += [f"## {s.title}", "", describe("CONFIG", s.doc_id).text.strip(), ""]
        sample = describe("CONFIG", s.doc_id).example
        if sample is not None:
            out += ["```yaml", sample.strip() if isinstance(sample, str) else dump(sample), "```", ""]
        out += ["| key | type | default |", "|---|---|---|"]
        for k in walk(s.keys):
            out.append(f"| `{k.path}` | {_cell(k.type)} | {_cell(k.default)} |")
        out.append("")
        for k in walk(s.keys):
            entry = describe("CONFIG", k.doc_id)
            out += [f"### `{k.path}`" + (f" (type {k.doc_id.split('.')[0]})" if s.doc_id.startswith("type.") else ""),
                    "",
                    f"Type: {k.type}. " + ("**Required.**" if k.required else f"Default: {k.default}."),
                    "",
                    entry.text.strip(),
                    "",
                    "```yaml",
                    dump(example_fragment(k)),
                    "```",
                    ""]
    out += ["## Event names (`events.hooks[].on`)", "", "| event | when |", "|---|---|"]
    for name, text in cfgmod.EVENT_NAMES.items():
        out.append(f"| `{name}` | {_cell(text)} |")
    out.append("")
    return "\n".join(out)


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


# -- hafctl-reference.md -----------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> tuple[dict[str, argparse.ArgumentParser], dict[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return dict(action.choices), helps
    raise SystemExit("gen.py: hafctl's parser has no subcommands")


def commands() -> dict[str, argparse.ArgumentParser]:
    return _subcommands(cli.build_parser())[0]


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    rows = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if a.option_strings:
            name = ", ".join(a.option_strings)
            if a.nargs != 0:
                value = a.metavar or ("{" + ",".join(a.choices) + "}" if a.choices else a.dest.upper())
                name += f" [{value}]" if a.nargs == "?" else f" {value}"
        else:
            name = a.metavar or a.dest
            name = {"?": f"[{name}]", "+": f"{name}..."}.get(str(a.nargs), name) if a.nargs else name
        help_text = (a.help or "").replace("%(default)s", str(a.default))
        shown = a.default not in (None, False, argparse.SUPPRESS) and not isinstance(a, argparse._VersionAction)
        if shown and "%(default)s" not in (a.help or "") and "default" not in help_text:
            help_text = (help_text + " " if help_text else "") + f"(default: {a.default})"
        rows.append((name, help_text))
    return rows


def exit_codes() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^\s+(\d+)\s+(.+)$", cli.EPILOG, re.M)]


def _usage(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return " ".join(parser.format_usage().split()).removeprefix("usage: ")
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def daemon_parser() -> argparse.ArgumentParser:
    """hafd's own parser (hafd.daemon.parse_args builds and uses it in one go)."""
    from hafd import daemon

    class Got(Exception):
        pass

    def grab(self: argparse.ArgumentParser, *a: Any, **k: Any) -> Any:
        raise Got(self)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = grab  # type: ignore[method-assign]
    try:
        daemon.parse_args([])
    except Got as g:
        return typing.cast(argparse.ArgumentParser, g.args[0])
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise SystemExit("gen.py: could not read hafd's argument parser")


def hafctl_reference() -> str:
    from hafd import protocol

    parser = cli.build_parser()
    subs, helps = _subcommands(parser)
    out = [
        "# hafctl reference",
        "",
        "<!-- Generated by `python docs/gen.py` from hafctl's build_parser() (hafd/cli.py) and hafd's parser;",
        "     do not edit by hand: descriptions and examples live in docs/descriptions.py. -->",
        "",
        descriptions.HAFCTL_INTRO.strip(),
        "",
        f"Usage: `{_usage(parser)}`",
        "",
        "## Global options (before the command)",
        "",
        "| option | meaning |",
        "|---|---|",
    ]
    out += [f"| `{n}` | {_cell(h)} |" for n, h in _options(parser)]
    out += ["", "## Exit codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| {c} | {_cell(t)} |" for c, t in exit_codes()]
    out += ["", descriptions.EXIT_NOTE.strip(), "", "## Commands", ""]
    out += [f"- [`{name}`](#hafctl-{name}): {helps[name]}" for name in subs]
    out.append("")
    for name, sub in subs.items():
        entry = describe("HAFCTL", name)
        func = sub._defaults.get("func")
        talks = getattr(func, "__name__", "") in ("cmd_daemon", "cmd_drbd_handler")
        usage = _usage(sub).replace(f"hafctl {name}", f"hafctl [global options] {name}", 1)
        out += [f"## hafctl {name}", "", f"*{helps[name]}*", "", entry.text.strip(), "", f"Usage: `{usage}`", ""]
        if talks:
            out += [f"Talks to the running hafd over the control socket (command `{name}`"
                    + (f", arguments: {', '.join(protocol.COMMANDS[name])}" if protocol.COMMANDS.get(name) else "")
                    + ").", ""]
        rows = _options(sub)
        if rows:
            out += ["| argument | meaning |", "|---|---|"] + [f"| `{n}` | {_cell(h)} |" for n, h in rows] + [""]
        if sub.epilog:
            out += ["```", sub.epilog.strip("\n"), "```", ""]
        out += ["```sh", *entry.examples, "```", ""]
    dp = daemon_parser()
    out += ["## hafd (the daemon)", "", descriptions.HAFD_DAEMON.strip(), "", f"Usage: `{_usage(dp)}`", "",
            "| option | meaning |", "|---|---|"]
    out += [f"| `{n}` | {_cell(h)} |" for n, h in _options(dp)]
    out.append("")
    return "\n".join(out)


# -- main --------------------------------------------------------------------------------------


def outputs() -> dict[Path, str]:
    return {CONFIG_DOC: config_reference(), HAFCTL_DOC: hafctl_reference()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Regenerate the hafd.yaml and hafctl references from the code.")
    p.add_argument("--check", action="store_true", help="exit 1 if a committed file is out of date")
    ns = p.parse_args(argv)
    stale = []
    try:
        texts = outputs()
    except Undescribed as exc:
        print(f"gen.py: {exc}", file=sys.stderr)
        return 1
    for path, text in texts.items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if ns.check:
            stale.append(path)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date: " + ", ".join(str(s.relative_to(ROOT)) for s in stale) + "; run `python docs/gen.py`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
