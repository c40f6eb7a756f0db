"""Shared fixtures for the two-node DHCP cluster scenarios (integration/testbed.py).

A test bed costs about a second to build and two to bring both daemons up, so every
test gets a fresh one (`make_bed`): no state leaks between scenarios, and a failing
scenario cannot poison the next.  Teardown closes it whatever happened and fails the
test if anything could not be removed; on failure both nodes' status, kernel facts and
log tails are printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration.prober import Prober  # noqa: E402
from integration.testbed import Options, Testbed, drbd_programs  # noqa: E402


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, loop devices, mounts)"
    if not os.access("/usr/sbin/dhcpd", os.X_OK):
        return "isc-dhcp-server is not installed"
    adm, sim = drbd_programs()
    if not (os.access(adm, os.X_OK) and os.access(sim, os.X_OK)):
        return f"the drbdadm stand-in is missing ({adm})"
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture
def make_bed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Testbed]]:
    """make_bed(**Options fields) -> a built Testbed (hafd not started yet)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    beds: list[Testbed] = []

    def make(**opts: Any) -> Testbed:
        bed = Testbed(tmp_path, options=Options(**opts))
        beds.append(bed)
        bed.build()
        return bed

    try:
        yield make
    finally:
        problems: list[str] = []
        failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
        for bed in beds:
            if failed:
                try:
                    print(f"\n--- test bed {bed.prefix} at failure ---\n{bed.describe()}")
                except Exception as e:  # noqa: BLE001 - diagnostics must not mask the failure
                    print(f"(could not describe the test bed: {e!r})")
            problems += bed.close()
        assert not problems, f"test bed teardown left things behind: {problems}"


@pytest.fixture
def bed(make_bed: Callable[..., Testbed]) -> Testbed:
    """A built test bed with the product's defaults (no fencing, no tiebreaker, two links)."""
    return make_bed()


def start_pair(bed: Testbed, timeout: float = 20.0) -> None:
    """Both daemons started; nodeone (the preferred node) active, nodetwo standby."""
    bed.start()
    bed.wait_roles(bed.one, timeout)


@pytest.fixture
def prober_for() -> Iterator[Callable[[Testbed], Prober]]:
    made: list[Prober] = []

    def make(bed: Testbed, **kw: Any) -> Prober:
        p = Prober.start(bed.spawn, bed.cli, **kw)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.stop()
