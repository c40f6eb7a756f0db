"""Scenario 11: DRBD. No promotion of a disk that is not UpToDate, DRBD's split brain in
status, and the fence-peer / after-resync-target handlers answered by hafctl."""

from __future__ import annotations

import json
from typing import Callable

import pytest

from integration.conftest import start_pair
from integration.test_failover import ALL, NONE
from integration.testbed import Testbed


def drbd_state(bed: Testbed, node: str) -> dict:
    show = json.loads(bed.drbd_sim("show", "r0").stdout)
    return show["nodes"][node] if "nodes" in show else show


@pytest.mark.parametrize("disk", ["Outdated", "Inconsistent"])
def test_a_disk_that_is_not_uptodate_is_never_promoted(make_bed: Callable[..., Testbed], disk: str) -> None:
    bed = make_bed(migration_threshold=1)
    start_pair(bed)
    bed.drbd_sim("set-disk", "r0", "nodetwo", disk)
    bed.crash(bed.one)
    # nodetwo is elected, tries drbd, is refused by the agent (not by DRBD), gives up.
    bed.wait(lambda: (bed.two.status() or {}).get("resources", {}).get("drbd", {}).get("state") == "failed",
             "nodetwo gives up on drbd", 15.0)
    s = bed.two.status()
    assert s is not None
    err = s["resources"]["drbd"]["last_error"]
    assert f"refusing to promote r0: local disk is {disk} (not UpToDate)" in err
    assert bed.two.drbd_role() == "Secondary"
    bed.wait(lambda: bed.two.serving() == NONE, "nothing half-started on nodetwo", 10.0)
    log = [c for c in json.loads(bed.drbd_sim("log").stdout) if c.get("node") == "nodetwo"]
    assert not [c for c in log if "primary" in " ".join(c.get("argv", []))], "drbdadm primary must not even be tried"


def test_drbd_split_brain_shows_in_status(make_bed: Callable[..., Testbed]) -> None:
    bed = make_bed(monitor_interval=0.3)
    start_pair(bed)
    bed.drbd_sim("split-brain", "r0")
    bed.wait(lambda: any("DRBD reports a split brain" in w for w in (bed.one.status() or {}).get("warnings", [])),
             "split brain in nodeone's status", 10.0)
    s = bed.one.status()
    assert s is not None
    assert s["resources"]["drbd"]["extra"]["split_brain"] is True
    assert "StandAlone" in s["resources"]["drbd"]["detail"]
    human = bed.one.hafctl("status").stdout
    assert "DRBD reports a split brain" in human
    assert bed.one.serving() == ALL  # hafd reports it; resolving DRBD's split brain is the operator's call


def test_replication_loss_calls_fence_peer_and_resync_unfences(make_bed: Callable[..., Testbed]) -> None:
    bed = make_bed()
    start_pair(bed)
    bed.drbd_sim("calls", "--clear")
    bed.drbd_sim("disconnect", "r0")
    calls = json.loads(bed.drbd_sim("calls").stdout)
    fence = [c for c in calls if c.get("handler") == "fence-peer"]
    assert fence and fence[0]["node"] == "nodeone" and fence[0]["exit_code"] == 4  # peer reachable: outdated
    assert fence[0]["env"]["DRBD_RESOURCE"] == "r0"
    bed.wait(lambda: any("outdated" in w for w in (bed.two.status() or {}).get("warnings", [])),
             "nodetwo knows it is outdated", 5.0)
    # An outdated node does not take over: not on standby of the active, not on its crash.
    bed.crash(bed.one)
    bed.wait(lambda: "no node is eligible" in (bed.two.status() or {}).get("decision", ""), "nodetwo stays out", 10.0)
    assert bed.two.serving() == NONE


def test_resync_runs_after_resync_target_which_clears_the_mark(make_bed: Callable[..., Testbed]) -> None:
    bed = make_bed()
    start_pair(bed)
    bed.drbd_sim("disconnect", "r0")
    bed.wait(lambda: any("outdated" in w for w in (bed.two.status() or {}).get("warnings", [])), "outdated", 5.0)
    bed.drbd_sim("calls", "--clear")
    bed.drbd_sim("connect", "r0")
    calls = json.loads(bed.drbd_sim("calls").stdout)
    unfence = [c for c in calls if c.get("handler") == "after-resync-target"]
    assert unfence and unfence[0]["node"] == "nodetwo" and unfence[0]["exit_code"] == 0
    bed.wait(lambda: not any("outdated" in w for w in (bed.two.status() or {}).get("warnings", [])),
             "the mark is cleared", 5.0)
    assert bed.two.hafctl("failover").returncode == 0
    bed.wait(lambda: bed.two.serving() == ALL and bed.one.serving() == NONE, "nodetwo serves after resync", 15.0)
