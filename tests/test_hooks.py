"""Events hooks: config, environment + JSON contract, timeouts, bounded concurrency, the daemon."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from hafd.core.config import EVENT_NAMES, Events, Hook
from hafd.core.configload import ConfigError, parse_config
from hafd.io import hooks as hooks_mod
from hafd.io.hooks import HookRunner, hook_env

from test_daemon import Hafd, alive  # noqa: F401 - alive used by the fixture's cleanup
from test_history import solo  # noqa: F401 - the one-node daemon fixture

# Writes its environment (HAFD_*) and stdin to OUT/<pid>.json, after an optional sleep.
RECORDER = """\
import json, os, sys, time
out, delay = sys.argv[1], float(sys.argv[2])
data = sys.stdin.read()
start = time.monotonic()
time.sleep(delay)
env = {k: v for k, v in os.environ.items() if k.startswith("HAFD_")}
tmp = os.path.join(out, f".{os.getpid()}")
with open(tmp, "w") as f:
    json.dump({"env": env, "stdin": data, "start": start, "end": time.monotonic()}, f)
os.rename(tmp, os.path.join(out, f"{os.getpid()}.json"))
"""

BASE = "cluster: {name: c}\nnodes:\n  solo: {links: [127.0.0.1]}\n"


def _recorder(tmp: Path, delay: float = 0.0, **kw: object) -> Hook:
    script = tmp / "recorder.py"
    script.write_text(RECORDER)
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    return Hook(command=(sys.executable, str(script), str(out), str(delay)), **kw)  # type: ignore[arg-type]


def _records(tmp: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in (tmp / "out").glob("*.json")), key=lambda r: r["start"])


# -- configuration -------------------------------------------------------------------


def test_config_shape_and_defaults() -> None:
    cfg = parse_config(BASE + "events:\n  max_concurrent: 2\n  hooks:\n    - command: [/usr/local/bin/alert, --to, ops]\n"
                       "      on: [role_changed, split_brain]\n      timeout: 5\n    - command: [/bin/logger]\n")
    assert cfg.events.max_concurrent == 2
    first, second = cfg.events.hooks
    assert first == Hook(("/usr/local/bin/alert", "--to", "ops"), ("role_changed", "split_brain"), 5.0, line=7)
    assert second.on == tuple(EVENT_NAMES) and second.timeout == Hook.timeout
    assert parse_config(BASE).events == Events() and parse_config(BASE).metrics is None


@pytest.mark.parametrize("text, message", [
    ("events:\n  hooks:\n    - command: /bin/alert\n",
     "hafd.yaml:6: events.hooks[0].command: must be an argv list, not a shell string"),
    ("events:\n  hooks:\n    - command: [/bin/a]\n      on: [role_change]\n",
     "hafd.yaml:7: events.hooks[0].on[0]: unknown event 'role_change' (did you mean 'role_changed'?); known events: "),
    ("events:\n  hooks:\n    - command: [/bin/a]\n      timeout: 0\n",
     "hafd.yaml:7: events.hooks[0].timeout: must be greater than 0, got 0"),
    ("events:\n  hooks:\n    - command: [/bin/a]\n      on: []\n",
     "hafd.yaml:7: events.hooks[0].on: must name at least one event"),
    ("events:\n  hooks:\n    - {timeout: 3}\n", "hafd.yaml:6: events.hooks[0]: missing required key 'command'"),
    ("events:\n  hook: []\n", "hafd.yaml:5: events.hook: unknown key 'hook' (did you mean 'hooks'?); "
     "known keys: hooks, max_concurrent"),
    ("events:\n  hooks: {command: [/bin/a]}\n", "hafd.yaml:5: events.hooks: expected a list of hooks"),
    ("events:\n  max_concurrent: 0\n", "hafd.yaml:5: events.max_concurrent: must be at least 1, got 0"),
])
def test_config_errors_have_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + text)
    assert message in str(exc.value)


# -- running -----------------------------------------------------------------------


def test_env_carries_plain_fields_only() -> None:
    env = hook_env({"event": "role_changed", "node": "a", "from": "standby", "ok": True, "phases": [1], "n": 2})
    assert env == {"HAFD_EVENT": "role_changed", "HAFD_NODE": "a", "HAFD_FROM": "standby", "HAFD_OK": "1", "HAFD_N": "2"}


async def test_a_matching_hook_gets_the_event_in_env_and_as_json_on_stdin(tmp_path: Path) -> None:
    runner = HookRunner(Events(hooks=(_recorder(tmp_path, on=("resource_failed",)),)), cluster="dhcp")
    ev = {"event": "resource_failed", "at": 1.5, "node": "nodeone", "reason": "dhcpd failed", "resource": "dhcpd",
          "phases": [{"name": "x"}]}
    runner.emit({"event": "role_changed", "node": "nodeone", "reason": "not subscribed"})
    runner.emit(ev)
    await runner.close(timeout=10)
    (rec,) = _records(tmp_path)
    assert rec["env"] == {"HAFD_EVENT": "resource_failed", "HAFD_AT": "1.5", "HAFD_NODE": "nodeone",
                          "HAFD_REASON": "dhcpd failed", "HAFD_RESOURCE": "dhcpd", "HAFD_CLUSTER": "dhcp"}
    assert json.loads(rec["stdin"]) == {**ev, "cluster": "dhcp"}
    assert runner.status() == {"run": 1, "failed": 0, "timed_out": 0, "dropped": 0, "last_error": None,
                               "running": 0, "configured": 1}


async def test_a_hanging_hook_is_killed_at_its_timeout_and_emit_never_waits(tmp_path: Path) -> None:
    hang = Hook(command=(sys.executable, "-c", "import time; time.sleep(60)"), timeout=0.3)
    fail = Hook(command=(sys.executable, "-c", "import sys; sys.exit('no pager today')"))
    runner = HookRunner(Events(hooks=(hang, fail)))
    t0 = time.monotonic()
    runner.emit({"event": "peer_lost", "reason": "x"})
    assert time.monotonic() - t0 < 0.05  # spawning happens in the background
    pids = [t for t in runner._tasks]
    assert len(pids) == 2
    await runner.close(timeout=10)
    assert time.monotonic() - t0 < 5  # killed after 0.3 s (+ the runner's grace), not 60 s
    st = runner.status()
    assert st["run"] == 2 and st["failed"] == 2 and st["timed_out"] == 1 and st["running"] == 0
    assert "timed out" in st["last_error"]["error"] or "no pager today" in st["last_error"]["error"]


async def test_concurrency_is_bounded_and_overflow_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = HookRunner(Events(hooks=(_recorder(tmp_path, delay=0.3),), max_concurrent=2))
    monkeypatch.setattr(hooks_mod, "MAX_QUEUED", 4)
    for i in range(6):
        runner.emit({"event": "link_down", "reason": f"r{i}"})
    assert runner.status()["dropped"] == 2
    await runner.close(timeout=20)
    recs = _records(tmp_path)
    assert len(recs) == 4
    # At no moment did more than two run at once.
    for r in recs:
        overlapping = [o for o in recs if o["start"] < r["end"] and o["end"] > r["start"]]
        assert len(overlapping) <= 2


async def test_a_missing_program_is_a_counted_failure(tmp_path: Path) -> None:
    runner = HookRunner(Events(hooks=(Hook(command=(str(tmp_path / "nope"),)),)))
    runner.emit({"event": "fenced", "reason": "x"})
    await runner.close(timeout=5)
    assert runner.status()["failed"] == 1 and "nope" in runner.status()["last_error"]["error"]


# -- the daemon --------------------------------------------------------------------------


def test_the_daemon_runs_hooks_on_role_changes_and_operator_requests(solo: Hafd) -> None:  # noqa: F811
    hook = _recorder(solo.tmp)
    argv = ", ".join(json.dumps(a) for a in hook.command)
    with open(solo.config, "a") as f:
        f.write(f"events:\n  hooks:\n    - command: [{argv}]\n      on: [role_changed, operator]\n      timeout: 5\n")
    solo.start()
    solo.wait_for(lambda s: s["role"] == "active", "active")
    assert solo.ctl("cleanup").returncode == 0
    s = solo.wait_for(lambda s: s["hooks"]["run"] >= 3 and s["hooks"]["running"] == 0, "hooks done")
    assert s["hooks"]["failed"] == 0 and s["hooks"]["configured"] == 1
    envs = [r["env"] for r in _records(solo.tmp)]
    seen = {(e["HAFD_EVENT"], e.get("HAFD_TO") or e.get("HAFD_COMMAND")) for e in envs}
    assert {("role_changed", "starting"), ("role_changed", "active"), ("operator", "cleanup")} <= seen
    active = next(r for r in _records(solo.tmp) if r["env"].get("HAFD_TO") == "active")
    body = json.loads(active["stdin"])
    assert body["node"] == "solo" and body["because"] == "it is the only visible node" and body["phases"]
    assert active["env"]["HAFD_NODE"] == "solo" and active["env"]["HAFD_CLUSTER"] == "solo"
