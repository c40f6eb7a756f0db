"""What both demos (demo.py, demo_single.py) do around their steps: stop on the first step that
fails or on a signal, always clean up (a second Ctrl-C cannot cut that short), and turn what
happened into the exit status the README promises (0: every step behaved as described)."""

from __future__ import annotations

import signal
import sys
from typing import Callable, Protocol, Sequence

from integration.testbed import TestbedError


class DemoFailed(Exception):
    """A step did not behave as expected and the next ones depend on it."""


class Interrupted(Exception):
    """SIGTERM or SIGHUP: clean up as for Ctrl-C."""


class Demo(Protocol):
    failures: list[str]

    def cleanup(self) -> list[str]: ...


def on_signals_interrupt() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the clean-up runs."""

    def interrupted(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)


def run_steps(demo: Demo, steps: Sequence[Callable[[], object]], by_hand: Callable[[], str]) -> int:
    """Run the steps in order, then clean up whatever happened; the exit status."""
    rc = 0
    try:
        for step in steps:
            step()
    except (DemoFailed, TestbedError) as e:
        print(f"\ndemo: stopped early: {e}", file=sys.stderr)
        rc = 1
    except (KeyboardInterrupt, Interrupted, EOFError) as e:
        print(f"\ndemo: interrupted ({e or 'Ctrl-C'})", file=sys.stderr)
        rc = 130
    finally:
        # A second Ctrl-C must not cut the clean-up short (every wait in it is bounded).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        problems = demo.cleanup()
    if rc == 0 and (problems or demo.failures):
        rc = 1
    if rc == 0:
        print(by_hand())
        print("Demo finished: every step behaved as expected.")
    elif demo.failures:
        print("\nSteps that did not behave as expected:\n  " + "\n  ".join(demo.failures), file=sys.stderr)
    return rc
