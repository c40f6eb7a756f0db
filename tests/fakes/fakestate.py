"""State shared by the fake programs (drbdadm, systemctl, service) and the tests.

A fake finds its state file in $HAFD_FAKE_STATE, else as `fake-state.json` in the
directory it was invoked from (tests symlink the fakes into tmp_path, so each test has
its own state without touching the environment).  Every invocation is appended to
`<state>.calls` (one JSON argv per line) so tests can assert what ran and what did not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

STATE_NAME = "fake-state.json"


def state_path() -> str:
    return os.environ.get("HAFD_FAKE_STATE") or os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), STATE_NAME)


def load() -> dict[str, Any]:
    try:
        with open(state_path()) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(state: dict[str, Any]) -> None:
    path = state_path()
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)


def log_call(prog: str, args: list[str]) -> None:
    with open(state_path() + ".calls", "a") as f:
        f.write(json.dumps([prog, *args]) + "\n")


def maybe_hang(state: dict[str, Any], prog: str, verb: str) -> None:
    """Hang (as a wedged drbdadm or systemctl would) if the test asked for `prog verb`.

    The pids of the hanging fake and, with `hang_grandchild`, of a forked grandchild
    are written to `<state>.hang.pids` so the test can check that both were killed.
    """
    if f"{prog} {verb}" not in state.get("hang", []):
        return
    pids = [os.getpid()]
    if state.get("hang_grandchild"):
        child = subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids.append(child.pid)
    with open(state_path() + ".hang.pids", "w") as f:
        f.write(" ".join(map(str, pids)) + "\n")
    for _ in range(3600):
        time.sleep(1)
    sys.exit(99)


def fail(*lines: str, code: int) -> None:
    for line in lines:
        print(line, file=sys.stderr)
    sys.exit(code)
