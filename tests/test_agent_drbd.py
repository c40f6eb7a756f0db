"""The drbd agent against the fake drbdadm (DRBD 9's output, exit codes and promote rules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.harness import FakeBed, drbd_peer, drbd_res, kill_if_alive, process_gone, wait_gone
from hafd.agents.base import AgentContext, AgentError, Health
from hafd.agents.drbd import DrbdAgent
from hafd.core.config import DrbdParams, Resource
from hafd.core.drbdstatus import Role


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[FakeBed]:
    b = FakeBed(tmp_path)
    try:
        yield b
    finally:
        kill_if_alive(b.hang_pids())


def agent(bed: FakeBed, *, force: bool = False, timeout: float = 10.0) -> DrbdAgent:
    res = Resource(name="drbd", type="drbd", timeout=timeout, params=DrbdParams(resource="r0", force=force))
    return DrbdAgent(res, AgentContext(programs=bed.programs, state_dir=str(bed.dir)))


def set_r0(bed: FakeBed, r0: dict | None, **drbd: object) -> None:
    bed.write({"drbd": {"configured": ["r0"], "resources": {"r0": r0} if r0 else {}, **drbd}})


def r0_state(bed: FakeBed) -> dict:
    return bed.read()["drbd"]["resources"]["r0"]


async def test_promote_then_idempotent(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Secondary"))
    a = agent(bed)
    assert (await a.monitor()).health is Health.STOPPED
    n = len(bed.calls())
    await a.start()
    assert r0_state(bed)["role"] == "Primary"
    assert bed.calls()[n:] == [["status", "r0"], ["primary", "r0"]]  # one read, one change: no verify-after
    status = await a.monitor()
    assert status.health is Health.RUNNING
    assert status.detail == "role:Primary disk:UpToDate peer nodetwo:Connected/UpToDate"
    assert status.extra["role"] == "Primary" and status.extra["disk"] == "UpToDate"
    assert status.extra["split_brain"] is False
    assert status.extra["peers"] == [
        {"name": "nodetwo", "connection": "Connected", "role": "Secondary", "peer_disk": "UpToDate",
         "replication": "Established", "done": None}
    ]
    n = len(bed.calls())
    await a.start()  # already Primary: only a status read, no second primary
    assert bed.calls()[n:] == [["status", "r0"]]


async def test_demote_then_idempotent(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Primary"))
    a = agent(bed)
    n = len(bed.calls())
    await a.stop()
    assert r0_state(bed)["role"] == "Secondary"
    assert bed.calls()[n:] == [["secondary", "r0"]]  # one call: no status read around it
    assert (await a.monitor()).health is Health.STOPPED
    await a.stop()  # secondary on a Secondary is DRBD's no-op success
    assert r0_state(bed)["role"] == "Secondary"


@pytest.mark.parametrize("disk", ["Outdated", "Inconsistent", "Diskless", "Consistent"])
async def test_refuses_to_promote_a_disk_that_is_not_uptodate(bed: FakeBed, disk: str) -> None:
    set_r0(bed, drbd_res("Secondary", disk, peers=[drbd_peer(connection="Connecting")]))
    with pytest.raises(AgentError) as ei:
        await agent(bed).start()
    assert ei.value.message == f"refusing to promote r0: local disk is {disk} (not UpToDate); set force: true to override"
    assert not any(c[0] == "primary" for c in bed.calls("drbdadm"))
    assert r0_state(bed)["role"] == "Secondary"


async def test_refuses_when_one_volume_of_several_is_outdated(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Secondary", ["UpToDate", "Outdated"]))
    with pytest.raises(AgentError, match="local disk is 0=UpToDate,1=Outdated"):
        await agent(bed).start()


async def test_force_promotes_outdated_with_primary_force(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Secondary", "Outdated", peers=[drbd_peer(connection="Connecting")]))
    await agent(bed, force=True).start()
    assert ["primary", "--force", "r0"] in bed.calls("drbdadm")
    assert r0_state(bed)["role"] == "Primary"


async def test_force_does_not_force_an_uptodate_disk(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Secondary", "UpToDate"))
    await agent(bed, force=True).start()
    assert ["primary", "r0"] in bed.calls("drbdadm")
    assert not any("--force" in c for c in bed.calls("drbdadm"))


async def test_need_uptodate_data_exit_17_propagated(bed: FakeBed) -> None:
    # The agent's own check passes (forced) but DRBD refuses: a Diskless disk cannot be forced.
    set_r0(bed, drbd_res("Secondary", "Diskless", peers=[drbd_peer(connection="Connecting")]))
    with pytest.raises(AgentError) as ei:
        await agent(bed, force=True).start()
    e = ei.value
    assert e.message == "drbdadm primary --force r0 failed (exit 17): r0: State change failed: (-2) Need access to UpToDate data"
    assert e.exit_code == 17
    assert "Command 'drbdsetup primary r0 --force' terminated with exit code 17" in e.stderr
    assert e.argv is not None and e.argv[1:] == ("primary", "--force", "r0")


@pytest.mark.parametrize(
    "r0, extra, code, text",
    [
        (drbd_res("Secondary", peers=[drbd_peer(role="Primary")]), {}, -1, "Multiple primaries not allowed by config"),
        (drbd_res("Secondary", peers=[drbd_peer(connection="Connecting")], fencing=True), {}, -7,
         "Refusing to be Primary while peer is not outdated"),
        (drbd_res("Secondary", quorum=False), {}, -25, "No quorum"),
        (drbd_res("Secondary"), {"fail": {"primary": -2}}, -2, "Need access to UpToDate data"),
    ],
)
async def test_promote_refusals_propagated(bed: FakeBed, r0: dict, extra: dict, code: int, text: str) -> None:
    set_r0(bed, r0, **extra)
    with pytest.raises(AgentError) as ei:
        await agent(bed).start()
    exit_code = 17 if code == -2 else 11
    assert ei.value.message == f"drbdadm primary r0 failed (exit {exit_code}): r0: State change failed: ({code}) {text}"
    assert ei.value.exit_code == exit_code
    assert f"Command 'drbdsetup primary r0' terminated with exit code {exit_code}" in ei.value.stderr
    assert r0_state(bed)["role"] == "Secondary"


async def test_demote_refused_while_held_open(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Primary", openers=[{"pid": 4242, "cmd": "mount"}]))
    with pytest.raises(AgentError) as ei:
        await agent(bed).stop()
    e = ei.value
    assert e.message == "drbdadm secondary r0 failed (exit 11): r0: State change failed: (-12) Device is held open by someone"
    assert e.exit_code == 11
    assert "drbd1 opened by mount (pid 4242)" in e.stderr and "additional info from kernel:" in e.stderr
    assert r0_state(bed)["role"] == "Primary"


async def test_resource_not_up_no_such_resource_exit_10(bed: FakeBed) -> None:
    set_r0(bed, None)  # configured but not up
    a = agent(bed)
    for op in (a.monitor, a.start):
        with pytest.raises(AgentError) as ei:
            await op()
        assert ei.value.exit_code == 10
        assert ei.value.stderr == "r0: No such resource"
        assert ei.value.message == "drbdadm status r0 failed (exit 10): r0: No such resource"
    await a.stop()  # not up cannot be Primary: stop's promise holds


async def test_generic_failure_exit_10_on_primary(bed: FakeBed) -> None:
    # The resource went down between status and primary: drbdsetup's non-state `Failure:`.
    set_r0(bed, drbd_res("Secondary"), fail={"primary": 158})
    with pytest.raises(AgentError) as ei:
        await agent(bed).start()
    assert ei.value.message == "drbdadm primary r0 failed (exit 10): r0: Failure: (158) Unknown resource"
    assert ei.value.exit_code == 10


async def test_fake_primary_on_a_down_resource_prints_failure(bed: FakeBed) -> None:
    set_r0(bed, None)
    from hafd.io.runner import run

    result = await run([bed.programs.drbdadm, "primary", "r0"], timeout=5)
    assert result.returncode == 10
    assert result.stderr.splitlines() == [
        "r0: Failure: (158) Unknown resource",
        "Command 'drbdsetup primary r0' terminated with exit code 10",
    ]


async def test_not_in_config_exit_1(bed: FakeBed) -> None:
    bed.write({"drbd": {"configured": ["r9"], "resources": {}}})
    with pytest.raises(AgentError) as ei:
        await agent(bed).stop()
    assert ei.value.exit_code == 1
    assert ei.value.message == "drbdadm secondary r0 failed (exit 1): 'r0' not defined in your config (for this host)."


@pytest.mark.parametrize(
    "role, disk, health",
    [
        ("Primary", "UpToDate", Health.RUNNING),
        ("Secondary", "UpToDate", Health.STOPPED),
        ("Secondary", "Outdated", Health.STOPPED),
        ("Primary", "Diskless", Health.FAILED),
        ("Primary", "Failed", Health.FAILED),
        ("Primary", "Inconsistent", Health.FAILED),
        ("Primary", ["UpToDate", "Failed"], Health.FAILED),
    ],
)
async def test_monitor_health(bed: FakeBed, role: str, disk: str | list[str], health: Health) -> None:
    set_r0(bed, drbd_res(role, disk))
    status = await agent(bed).monitor()
    assert status.health is health
    assert status.detail.startswith(f"role:{role} disk:")


async def test_monitor_reports_split_brain_on_standalone(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Primary", peers=[drbd_peer(connection="StandAlone")]))
    status = await agent(bed).monitor()
    assert status.health is Health.RUNNING  # still serving; the policy decides about the split brain
    assert status.extra["split_brain"] is True
    assert status.extra["peers"][0]["connection"] == "StandAlone"
    assert status.extra["peers"][0]["peer_disk"] == "DUnknown"
    assert "peer nodetwo:StandAlone/DUnknown" in status.detail and "split brain" in status.detail


async def test_monitor_shows_resync_progress(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Secondary", "Inconsistent", peers=[drbd_peer(role="Primary", replication="SyncTarget", done=42.17)]))
    status = await agent(bed).monitor()
    assert status.detail == "role:Secondary disk:Inconsistent peer nodetwo:Connected/UpToDate SyncTarget 42.17%"
    assert status.extra["peers"][0]["replication"] == "SyncTarget" and status.extra["peers"][0]["done"] == 42.17


async def test_status_helper_multi_volume_and_old_disk_key(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Primary", ["UpToDate", "UpToDate"], peers=[drbd_peer(peer_disk=["UpToDate", "Outdated"])],
                         old_peer_disk_key=True))
    st = await agent(bed).status()
    assert st.role is Role.PRIMARY and len(st.volumes) == 2 and st.up_to_date
    assert [v.peer_disk.value for v in st.peers[0].volumes] == ["UpToDate", "Outdated"]


async def test_hanging_drbdadm_times_out_and_is_killed(bed: FakeBed) -> None:
    set_r0(bed, drbd_res("Secondary"))
    bed.update(hang=["drbdadm status"], hang_grandchild=True)
    with pytest.raises(AgentError) as ei:
        await agent(bed, timeout=0.5).monitor()
    assert ei.value.message.startswith("drbdadm status r0 timed out after 0.")
    assert ei.value.exit_code is None
    pids = bed.hang_pids()
    assert len(pids) == 2
    assert wait_gone(pids), f"still running: {[p for p in pids if not process_gone(p)]}"


async def test_unreadable_status_output(bed: FakeBed, tmp_path: Path) -> None:
    weird = tmp_path / "weird-drbdadm"
    weird.write_text("#!/bin/sh\necho 'this is not drbd'\n")
    weird.chmod(0o755)
    res = Resource(name="drbd", type="drbd", params=DrbdParams(resource="r0"))
    from hafd.core.config import Programs

    a = DrbdAgent(res, AgentContext(programs=Programs(drbdadm=str(weird)), state_dir=str(tmp_path)))
    with pytest.raises(AgentError, match="cannot read drbdadm status r0: line 1: expected key:value"):
        await a.monitor()


async def test_fake_role_cstate_dstate_match_drbd9(bed: FakeBed) -> None:
    """The stand-in's other verbs, for the integration test bed that reuses it."""
    from hafd.io.runner import run

    set_r0(bed, drbd_res("Primary", peers=[drbd_peer(connection="Connecting")]))
    drbdadm = bed.programs.drbdadm
    assert (await run([drbdadm, "role", "r0"], timeout=5)).stdout == "Primary\n"
    assert (await run([drbdadm, "cstate", "r0"], timeout=5)).stdout == "Connecting\n"
    assert (await run([drbdadm, "dstate", "r0"], timeout=5)).stdout == "UpToDate/DUnknown\n"
    set_r0(bed, None)
    for verb, msg in (("role", "r0: Unknown resource"), ("cstate", "r0: No such connection")):
        r = await run([drbdadm, verb, "r0"], timeout=5)
        assert (r.returncode, r.stderr) == (10, msg + "\n")
