"""The service agent against fake systemctl and service programs (systemd 252 / LSB words and exit codes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.harness import FakeBed, kill_if_alive, wait_gone
from hafd.agents.base import AgentContext, AgentError, Health
from hafd.agents.service import ServiceAgent
from hafd.core.config import Resource, ServiceParams


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[FakeBed]:
    b = FakeBed(tmp_path)
    try:
        yield b
    finally:
        kill_if_alive(b.hang_pids())


def agent(bed: FakeBed, unit: str = "isc-dhcp-server", init: str = "systemd", timeout: float = 10.0) -> ServiceAgent:
    res = Resource(name="dhcpd", type="service", timeout=timeout, params=ServiceParams(unit=unit, init=init))
    return ServiceAgent(res, AgentContext(programs=bed.programs, state_dir=str(bed.dir)))


def units(bed: FakeBed, **units: dict) -> None:
    bed.write({"systemd": {"units": {f"{k.replace('_', '-')}.service": v for k, v in units.items()}}})


def unit_state(bed: FakeBed, name: str = "isc-dhcp-server.service") -> str:
    return bed.read()["systemd"]["units"][name]["state"]


# --- systemd -------------------------------------------------------------------------------------


async def test_systemd_start_stop_monitor_and_idempotency(bed: FakeBed) -> None:
    units(bed, isc_dhcp_server={"state": "inactive"})
    a = agent(bed)
    assert (await a.monitor()).health is Health.STOPPED
    await a.start()
    assert unit_state(bed) == "active"
    status = await a.monitor()
    assert status.health is Health.RUNNING
    assert status.detail == "isc-dhcp-server: active" and status.extra["state"] == "active"
    await a.start()  # systemctl start on an active unit is a no-op that exits 0
    assert unit_state(bed) == "active"
    await a.stop()
    assert unit_state(bed) == "inactive"
    await a.stop()
    assert (await a.monitor()).health is Health.STOPPED
    calls = bed.calls("systemctl")
    assert ["start", "isc-dhcp-server"] in calls and ["stop", "isc-dhcp-server"] in calls
    assert ["is-active", "isc-dhcp-server"] in calls


@pytest.mark.parametrize(
    "state, health",
    [
        ("active", Health.RUNNING),
        ("reloading", Health.RUNNING),
        ("inactive", Health.STOPPED),
        ("activating", Health.STOPPED),
        ("deactivating", Health.STOPPED),
        ("failed", Health.FAILED),
    ],
)
async def test_systemd_monitor_states(bed: FakeBed, state: str, health: Health) -> None:
    units(bed, isc_dhcp_server={"state": state})
    status = await agent(bed).monitor()
    assert status.health is health
    assert status.extra["state"] == state


async def test_unknown_unit_is_inactive_for_monitor_and_fails_start(bed: FakeBed) -> None:
    units(bed)
    a = agent(bed, unit="nosuch")
    assert (await a.monitor()).health is Health.STOPPED
    with pytest.raises(AgentError) as ei:
        await a.start()
    assert ei.value.message == "systemctl start nosuch failed (exit 5): Failed to start nosuch.service: Unit nosuch.service not found."
    assert ei.value.exit_code == 5
    await a.stop()  # not loaded (exit 5) but down: stop's promise holds


async def test_systemd_start_failure_propagates_exit_and_stderr(bed: FakeBed) -> None:
    units(bed, isc_dhcp_server={"state": "inactive", "start": "fail"})
    with pytest.raises(AgentError) as ei:
        await agent(bed).start()
    e = ei.value
    assert e.message == (
        "systemctl start isc-dhcp-server failed (exit 1): "
        "Job for isc-dhcp-server.service failed because the control process exited with error code."
    )
    assert e.exit_code == 1 and "journalctl -xeu isc-dhcp-server.service" in e.stderr
    assert (await agent(bed).monitor()).health is Health.FAILED


async def test_start_waits_for_activating_unit(bed: FakeBed) -> None:
    units(bed, isc_dhcp_server={"state": "inactive", "start": "slow", "slow_polls": 2})
    await agent(bed).start()
    assert unit_state(bed) == "active"
    is_active = [c for c in bed.calls("systemctl") if c[0] == "is-active"]
    assert len(is_active) == 3  # activating, activating, active


async def test_start_that_dies_at_once_is_an_error(bed: FakeBed) -> None:
    units(bed, isc_dhcp_server={"state": "inactive", "start": "dies"})
    with pytest.raises(AgentError, match="returned 0 but the service is not running: isc-dhcp-server: failed"):
        await agent(bed).start()


async def test_start_still_activating_at_timeout_is_an_error(bed: FakeBed) -> None:
    units(bed, isc_dhcp_server={"state": "inactive", "start": "slow", "slow_polls": 1000})
    with pytest.raises(AgentError, match="not running: isc-dhcp-server: activating"):
        await agent(bed, timeout=0.5).start()


async def test_stop_that_leaves_unit_active_is_an_error(bed: FakeBed) -> None:
    units(bed, isc_dhcp_server={"state": "active", "stop": "stuck"})
    with pytest.raises(AgentError, match="returned 0 but the service is not down: isc-dhcp-server: active"):
        await agent(bed).stop()


async def test_stop_of_failed_unit_is_down(bed: FakeBed) -> None:
    units(bed, isc_dhcp_server={"state": "failed"})
    await agent(bed).stop()
    assert unit_state(bed) == "inactive"


async def test_no_systemd_makes_monitor_raise(bed: FakeBed) -> None:
    bed.write({"systemd": {"booted": False, "units": {}}})
    a = agent(bed)
    with pytest.raises(AgentError) as ei:
        await a.monitor()
    assert ei.value.message == (
        "systemctl is-active isc-dhcp-server could not tell the unit's state (exit 1): "
        "System has not been booted with systemd as init system (PID 1). Can't operate."
    )
    assert ei.value.exit_code == 1
    with pytest.raises(AgentError, match=r"systemctl stop isc-dhcp-server failed \(exit 1\): System has not been booted"):
        await a.stop()


async def test_hanging_systemctl_times_out(bed: FakeBed) -> None:
    units(bed, isc_dhcp_server={"state": "inactive"})
    bed.update(hang=["systemctl start"], hang_grandchild=True)
    with pytest.raises(AgentError) as ei:
        await agent(bed, timeout=0.5).start()
    assert ei.value.message.startswith("systemctl start isc-dhcp-server timed out after 0.")
    assert wait_gone(bed.hang_pids())


# --- SysV ----------------------------------------------------------------------------------------


def scripts(bed: FakeBed, **scripts: dict) -> None:
    bed.write({"sysv": {k.replace("_", "-"): v for k, v in scripts.items()}})


async def test_sysv_start_stop_monitor(bed: FakeBed) -> None:
    scripts(bed, isc_dhcp_server={"running": False})
    a = agent(bed, init="sysv")
    assert (await a.monitor()).health is Health.STOPPED
    await a.start()
    status = await a.monitor()
    assert status.health is Health.RUNNING and status.detail == "isc-dhcp-server: status exit 0: isc-dhcp-server is running."
    await a.start()
    await a.stop()
    await a.stop()
    assert (await a.monitor()).health is Health.STOPPED
    assert bed.calls("service")[:2] == [["isc-dhcp-server", "status"], ["isc-dhcp-server", "start"]]


@pytest.mark.parametrize("code, health", [(0, Health.RUNNING), (3, Health.STOPPED), (1, Health.FAILED),
                                          (2, Health.FAILED), (4, Health.FAILED), (150, Health.FAILED)])
async def test_sysv_lsb_status_codes(bed: FakeBed, code: int, health: Health) -> None:
    scripts(bed, isc_dhcp_server={"status_code": code})
    status = await agent(bed, init="sysv").monitor()
    assert status.health is health and status.extra["exit_code"] == code


async def test_sysv_start_failure_and_unknown_script(bed: FakeBed) -> None:
    scripts(bed, isc_dhcp_server={"running": False, "start": "fail"})
    with pytest.raises(AgentError) as ei:
        await agent(bed, init="sysv").start()
    assert ei.value.message == (
        "service isc-dhcp-server start failed (exit 1): isc-dhcp-server: cannot bind 0.0.0.0:67: Address already in use"
    )
    a = agent(bed, unit="nosuch", init="sysv")
    with pytest.raises(AgentError, match=r"service nosuch start failed \(exit 1\): nosuch: unrecognized service"):
        await a.start()
    status = await a.monitor()
    assert status.health is Health.FAILED and "unrecognized service" in status.detail


async def test_sysv_stop_that_leaves_it_running(bed: FakeBed) -> None:
    scripts(bed, isc_dhcp_server={"running": True, "stop": "stuck"})
    with pytest.raises(AgentError, match="not down: isc-dhcp-server: status exit 0"):
        await agent(bed, init="sysv").stop()


def test_bad_init_is_a_clear_error(bed: FakeBed) -> None:
    with pytest.raises(ValueError, match="init must be systemd or sysv, not 'upstart'"):
        agent(bed, init="upstart")


async def test_sysv_stop_with_unknown_status_is_not_down(bed: FakeBed) -> None:
    scripts(bed, isc_dhcp_server={"running": True, "status_code": 4})
    with pytest.raises(AgentError, match="not down: isc-dhcp-server: status exit 4"):
        await agent(bed, init="sysv").stop()
    scripts(bed, isc_dhcp_server={"running": True, "status_code": 1})
    await agent(bed, init="sysv").stop()  # dead, pid file left: down


async def test_sysv_stop_of_unknown_script_is_down(bed: FakeBed) -> None:
    scripts(bed)
    await agent(bed, unit="nosuch", init="sysv").stop()
