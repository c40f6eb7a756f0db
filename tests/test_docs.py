"""The docs cannot drift from the code.

1. docs/config-reference.md and docs/hafctl-reference.md are exactly what docs/gen.py
   writes from the code today (a new key or command without regenerating fails here).
2. Every config key and every hafctl command has a description (and examples).
3. The log events docs/troubleshooting.md lists exist in the code, and every event the
   code logs (found by a regex over hafd/**/*.py) is listed, apart from a short,
   checked list of debug-only ones.
4. The YAML examples validate: every full document in docs/*.md, every key's example
   laid over config/hafd.yaml; the migration page shows the real import-crm output.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hafd.core.configload import ConfigError, parse_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REGEN = "run `python docs/gen.py` and commit docs/"


def _load(name: str) -> Any:
    sys.path.insert(0, str(DOCS))
    try:
        spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(DOCS))


gen = _load("gen")
descriptions = sys.modules["descriptions"]


# -- 1. generated files are current ---------------------------------------------------------


@pytest.mark.parametrize("path", [gen.CONFIG_DOC, gen.HAFCTL_DOC], ids=lambda p: p.name)
def test_generated_reference_is_current(path: Path) -> None:
    try:
        expected = gen.outputs()[path]
    except gen.Undescribed as exc:
        pytest.fail(str(exc))
    assert path.exists(), f"{path.name} is missing: {REGEN}"
    assert path.read_text() == expected, f"{path.name} is out of date with the code: {REGEN}"


def test_gen_check_mode_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["--check"]) == 0, capsys.readouterr().err


def test_reference_lists_every_key_with_type_and_default() -> None:
    text = (DOCS / "config-reference.md").read_text()
    keys = gen.all_keys()
    assert len(keys) > 50
    for k in keys:
        assert f"### `{k.path}`" in text
        assert k.type and k.default, k.path
        assert f"| `{k.path}` | {gen._cell(k.type)} | {gen._cell(k.default)} |" in text


def test_defaults_come_from_the_dataclasses() -> None:
    from hafd.core.config import Cluster, Fencing, IpaddrParams, Resource

    by_path = {k.path: k for k in gen.all_keys()}
    assert by_path["cluster.deadtime"].default == f"{Cluster.deadtime:g}"
    assert by_path["cluster.fencing.on_failure"].default == Fencing.on_failure.value
    assert by_path["resources.<name>.migration_threshold"].default == str(Resource.migration_threshold)
    assert by_path["resources.<name>.arp_interval"].default == f"{IpaddrParams.arp_interval:g}"
    assert by_path["cluster.name"].required and by_path["nodes.<name>.links"].required
    assert not by_path["nodes.<name>.priority"].required


def test_every_section_of_the_loader_is_documented() -> None:
    """Probe the loader itself: an unknown key makes it list the known ones for that mapping."""
    from hafd.core import configload

    assert {s.doc_id for s in gen.schema() if not s.doc_id.startswith("type.")} == set(configload._TOP)
    documented = {k.path for k in gen.all_keys()}
    issues = gen._probe_issues("cluster: {name: x, zz_probe: 1}\nnodes: {a: {links: [10.0.0.1]}}\n")
    known = re.search(r"known keys: (.*)$", issues[0].message)
    assert known is not None
    assert {f"cluster.{k.strip()}" for k in known.group(1).split(",")} <= documented
    assert {"nodes.<name>.priority", "nodes.<name>.links"} <= documented


# -- 2. descriptions --------------------------------------------------------------------------


def test_every_key_and_section_has_a_description() -> None:
    ids = {k.doc_id for k in gen.all_keys()} | {s.doc_id for s in gen.schema()}
    missing = sorted(i for i in ids if i not in descriptions.CONFIG)
    assert not missing, f"add these to docs/descriptions.py CONFIG, then {REGEN}: {missing}"
    empty = sorted(i for i in ids if not descriptions.CONFIG[i].text.strip())
    assert not empty, f"empty descriptions: {empty}"
    no_example = sorted(k.doc_id for k in gen.all_keys() if descriptions.CONFIG[k.doc_id].example is None)
    assert not no_example, f"keys without an example: {no_example}"
    stale = sorted(set(descriptions.CONFIG) - ids)
    assert not stale, f"descriptions of keys the code no longer has: {stale}"


def test_every_hafctl_command_has_a_description_and_examples_that_parse() -> None:
    from hafd.cli import build_parser

    names = set(gen.commands())
    assert {"status", "standby", "failover", "import-crm", "simulate"} <= names
    missing = sorted(names - set(descriptions.HAFCTL))
    assert not missing, f"add these to docs/descriptions.py HAFCTL, then {REGEN}: {missing}"
    assert not sorted(set(descriptions.HAFCTL) - names), "descriptions of commands hafctl no longer has"
    for name in names:
        entry = descriptions.HAFCTL[name]
        assert entry.text.strip() and entry.examples, name
        for line in entry.examples:
            words = shlex.split(line)
            for stop in ("|", ">", ">>"):
                words = words[: words.index(stop)] if stop in words else words
            if words[0] != "hafctl":
                continue
            ns = build_parser().parse_args(words[1:])  # SystemExit (usage error) fails the test
            assert ns.command == name, line


def test_exit_codes_documented_are_hafctls() -> None:
    from hafd import cli

    codes = dict(gen.exit_codes())
    assert {int(c) for c in codes} == {cli.EXIT_OK, cli.EXIT_ERROR, cli.EXIT_USAGE, cli.EXIT_NOT_RUNNING,
                                       cli.EXIT_PERMISSION, cli.EXIT_PROTOCOL}


# -- 3. log events ------------------------------------------------------------------------------

_LOG_CALL = re.compile(r"\blog\.(debug|info|warning|error|exception|critical)\(\s*\"([a-z0-9_]+)\"")
_LOG_FSTRING = re.compile(r"\blog\.(?:debug|info|warning|error|exception|critical)\(\s*f\"([^\"]+)\"")
_NOTE = re.compile(r"\bNote\(\s*\"([a-z0-9_]+)\"")
# Log calls whose event name is built at run time, and every name each can produce.
DYNAMIC = {"ocf_{action}d": {"ocf_promoted", "ocf_demoted"}}
# Debug-level only (invisible at the default --log-level info): not in the troubleshooting index.
DEBUG_ONLY = {"program_ran", "garp_sent", "ocf_action", "localaddr_not_an_address", "localaddr_unresolvable",
              "localaddr_bind_failed", "control_connection_error"}


def code_events() -> dict[str, set[str]]:
    """event name -> the levels it is logged at, over every module of the hafd package."""
    from hafd.core.membership import EventKind

    found: dict[str, set[str]] = {}
    dynamic: set[str] = set()
    for path in sorted((ROOT / "hafd").rglob("*.py")):
        text = path.read_text()
        for level, name in _LOG_CALL.findall(text):
            found.setdefault(name, set()).add(level)
        for name in _NOTE.findall(text):
            found.setdefault(name, set()).add("note")
        dynamic.update(_LOG_FSTRING.findall(text))
        if re.search(r"\bNote\(\s*e\.kind\.value", text):  # the cluster core logs membership events as Notes
            for kind in EventKind:
                found.setdefault(kind.value, set()).add("note")
    assert dynamic == set(DYNAMIC), f"log events named at run time changed: {dynamic}; update DYNAMIC here"
    for names in DYNAMIC.values():
        for name in names:
            found.setdefault(name, set()).add("info")
    return found


def documented_events() -> list[str]:
    text = (DOCS / "troubleshooting.md").read_text()
    index = text.split("## Log event index", 1)
    assert len(index) == 2, "troubleshooting.md lost its '## Log event index' section"
    names: list[str] = []
    for first_cell in re.findall(r"^\| ([^|]*`[a-z0-9_]+`[^|]*) \|", index[1], re.M):
        names += re.findall(r"`([a-z0-9_]+)`", first_cell)
    return names


def test_collector_finds_the_known_events() -> None:
    events = code_events()
    for name in ("hafd_started", "role_changed", "peer_lost", "fencing_failed", "fencing_halted", "split_brain",
                 "claim", "reload_rejected", "garp_send_failed", "ocf_promoted"):
        assert name in events, name
    assert len(events) > 80


def test_every_documented_event_exists_in_the_code() -> None:
    events = code_events()
    documented = documented_events()
    assert len(documented) == len(set(documented)), "an event is listed twice in the index"
    unknown = sorted(set(documented) - set(events))
    assert not unknown, f"troubleshooting.md documents events the code never logs: {unknown}"


def test_every_logged_event_is_documented() -> None:
    events = code_events()
    debug = {n for n, levels in events.items() if levels == {"debug"}}
    assert DEBUG_ONLY <= debug, f"not (only) debug events any more, document them: {sorted(DEBUG_ONLY - debug)}"
    missing = sorted(set(events) - set(documented_events()) - DEBUG_ONLY)
    assert not missing, f"log events missing from docs/troubleshooting.md's '## Log event index': {missing}"


STATUS_LABELS = ("service runs on:", "why:", "election now:", "rejected packets:", "Nodes:", "Resources (start order):",
                 "Last takeover:", "took ", "WARNINGS")


def test_troubleshooting_explains_every_status_line() -> None:
    """Render a status with every part present and find each line's label on the page."""
    from hafd.render import render_status

    status = {
        "cluster": "dhcp", "node": "nodetwo", "role": "active", "since": 1000.0, "because": "nodeone was lost",
        "active_node": "nodetwo", "reason": "r", "decision": "d", "rejected_packets": {"bad_mac": 3},
        "nodes": {"nodetwo": {"state": "online", "local": True, "priority": 90, "role": "active",
                              "links": {"10.10.100.2": {"state": "up"}}}},
        "resources": {"vip": {"type": "ipaddr", "state": "started", "failures": 0,
                              "last_op": {"op": "start", "ok": True, "duration": 0.01}}},
        "last_failover": {"started_at": 990.0, "trigger": "t", "phases": [{"name": "fenced", "at": 0.4}]},
        "warnings": ["w"],
    }
    rendered = render_status(status, 1100.0)
    text = (DOCS / "troubleshooting.md").read_text()
    for label in STATUS_LABELS:
        assert label in rendered, f"hafctl status no longer prints {label!r}: update STATUS_LABELS and the page"
        assert f"`{label}" in text, f"troubleshooting.md does not explain the status line {label!r}"
    known = ("cluster ", "nodetwo active since", "NODE ", "nodetwo (local)", "RESOURCE ", "vip ", "! ")
    for line in rendered.splitlines():
        line = line.strip()
        assert not line or line.startswith(STATUS_LABELS + known), f"a status line the page does not cover: {line!r}"
    for column in ("NODE", "STATE", "ROLE", "PRIO", "LINKS", "RESOURCE", "TYPE", "FAILS", "LAST OP", "DETAIL"):
        assert f"`{column}`" in text, column


# -- 4. examples validate -----------------------------------------------------------------------


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", path.read_text(), re.M | re.S)


def test_full_yaml_documents_in_the_docs_validate() -> None:
    full = 0
    for page in sorted(DOCS.glob("*.md")):
        for block in yaml_blocks(page):
            doc = yaml.safe_load(block)
            if isinstance(doc, dict) and {"cluster", "nodes"} <= set(doc):
                full += 1
                try:
                    parse_config(block, page.name)
                except ConfigError as exc:
                    pytest.fail(f"{page.name}: an example hafd.yaml does not validate:\n{exc}\n---\n{block}")
    assert full >= 3  # the minimal file, the shipped-config walk-through, the import-crm output


@pytest.mark.parametrize("key", gen.all_keys(), ids=lambda k: k.doc_id)
def test_each_key_example_validates_in_the_shipped_config(key: Any) -> None:
    doc = gen.example_document(key)
    text = yaml.safe_dump(doc, sort_keys=False)
    try:
        parse_config(text, f"example of {key.path}")
    except ConfigError as exc:
        pytest.fail(f"the example of {key.path} in docs/descriptions.py does not validate:\n{exc}")


def test_each_section_example_validates_in_the_shipped_config() -> None:
    base = yaml.safe_load((ROOT / "config" / "hafd.yaml").read_text())
    for section in gen.schema():
        fragment = descriptions.CONFIG[section.doc_id].example
        if fragment is None:
            continue
        parse_config(yaml.safe_dump(gen.merge(base, fragment), sort_keys=False), f"example of {section.doc_id}")


SEED = Path("/work/shared/reference")


@pytest.mark.skipif(not (SEED / "seed-crm-commands.txt").exists(), reason="the seed's crm commands are not here")
def test_migration_page_shows_the_real_import_output() -> None:
    from hafd.migrate import import_crm

    crm, cs = SEED / "seed-crm-commands.txt", SEED / "seed-corosync.conf"
    result = import_crm(crm.read_text(), crm.name, cs.read_text(), cs.name)
    page = (DOCS / "migrating-from-pacemaker.md").read_text()
    assert result.yaml_text.strip() in page, (
        "docs/migrating-from-pacemaker.md no longer shows what `hafctl import-crm seed-crm-commands.txt "
        "--corosync seed-corosync.conf` prints: paste the new output")
    for line in crm.read_text().splitlines():
        if line.startswith("crm configure"):
            assert line.strip() in page, f"the walk-through skips {line!r}"
    for report in result.lost:
        assert f"{report.file}:{report.line}" in page, f"the walk-through does not explain {report}"


# -- links between the pages ------------------------------------------------------------------


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_pages_resolve() -> None:
    pages = {p.name: p.read_text() for p in DOCS.glob("*.md")}
    anchors = {name: {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)} for name, text in pages.items()}
    for name, text in pages.items():
        for target, anchor in re.findall(r"\]\(([a-z-]*\.md)?#([^)]+)\)", text):
            page = target or name
            assert page in anchors, f"{name}: link to a missing page {page}"
            assert anchor in anchors[page], f"{name}: link to a missing heading {page}#{anchor}"
