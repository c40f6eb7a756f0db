"""The ocf agent: meta-data parsing, the OCF environment and exit codes, timeouts.

Layers:
- hafd.core.ocfmeta, pure: durations, meta-data documents, code names (tables);
- OcfAgent against tests/ocf_agents/resource.d/hafdtest/scripted, a test agent whose
  every exit code, message and hang is set through files, and which records the OCF_*
  environment of each call;
- the DHCP agent of tests/ocf_agents (the guide's agent, written correctly) driven by
  a fake `service` whose state the test holds;
- Debian's resource-agents: ocf:heartbeat:Dummy, and ocf:heartbeat:IPaddr2 run inside a
  network namespace this test creates (skipped where the package is not installed).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from ns_helpers import NetNs, netns_factory, requires_root, veth_pair  # noqa: F401 (fixture)

from hafd.agents.base import AgentContext, AgentError, Health
from hafd.agents.ocf import META_DATA_TIMEOUT, OcfAgent
from hafd.core.config import OcfParams, Programs, Resource
from hafd.core.ocfmeta import MetadataError, code_name, parse_duration, parse_metadata
from hafd.io.runner import KILL_GRACE

AGENTS_DIR = Path(__file__).parent / "ocf_agents"
SYSTEM_OCF_ROOT = "/usr/lib/ocf"
HEARTBEAT = Path(SYSTEM_OCF_ROOT, "resource.d", "heartbeat")
needs_resource_agents = pytest.mark.skipif(
    not (HEARTBEAT / "Dummy").exists() or not (HEARTBEAT / "IPaddr2").exists(),
    reason="Debian's resource-agents package is not installed",
)


def make_agent(ocf_root: str, agent: str, params: dict[str, str], **res_kw: Any) -> OcfAgent:
    res = Resource(name=res_kw.pop("name", "res1"), type="ocf", params=OcfParams(agent, params), **res_kw)
    return OcfAgent(res, AgentContext(Programs(ocf_root=ocf_root), "/tmp"))


@pytest.fixture
def ocf_root(tmp_path: Path) -> str:
    """An OCF_ROOT holding the test agents (provider hafdtest) and, when installed, the
    system's shell function library, so the test agents run as they would in /usr/lib/ocf."""
    root = tmp_path / "ocf"
    (root / "resource.d").mkdir(parents=True)
    (root / "resource.d" / "hafdtest").symlink_to(AGENTS_DIR / "resource.d" / "hafdtest")
    if Path(SYSTEM_OCF_ROOT, "lib").is_dir():
        (root / "lib").symlink_to(Path(SYSTEM_OCF_ROOT, "lib"))
    return str(root)


# --- meta-data, pure -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("20s", 20.0),
        ("2m", 120.0),
        ("20000ms", 20.0),
        ("20", 20.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 30 s ", 30.0),
        ("90sec", 90.0),
        ("2min", 120.0),
        ("500msec", 0.5),
        ("1500ms", 1.5),
        ("20S", 20.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "-1s", "10x", "1d", "s", "20 s s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


SAMPLE = """<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="Sample" version="1.0">
<version>1.0</version>
<shortdesc lang="en">A   sample
 agent</shortdesc>
<parameters>
<parameter name="ip" unique="1" required="1"><shortdesc>IP</shortdesc><content type="string"/></parameter>
<parameter name="nic"><content type="string" default=""/></parameter>
<parameter name="cidr_netmask" required="0"><content type="string" default="24"/></parameter>
<parameter><content type="string"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="stop" timeout="2m"/>
<action name="monitor" role="Promoted" timeout="30s" interval="9s"/>
<action name="monitor" timeout="20000ms" interval="10s" depth="0"/>
<action name="promote" timeout="soon"/>
<action name="demote" timeout="90"/>
<action timeout="5s"/>
<action name="meta-data" timeout="5s"/>
</actions>
</resource-agent>
"""


def test_parse_metadata_parameters_and_actions() -> None:
    meta = parse_metadata(SAMPLE)
    assert (meta.name, meta.version, meta.shortdesc) == ("Sample", "1.0", "A sample agent")
    assert [(p.name, p.required, p.default, p.unique) for p in meta.parameters] == [
        ("ip", True, None, True),
        ("nic", False, "", False),
        ("cidr_netmask", False, "24", False),
    ]
    assert meta.timeout("start") == 20.0
    assert meta.timeout("stop") == 120.0
    assert meta.timeout("monitor") == 20.0  # the role-less entry, though listed second
    assert meta.action("monitor").interval == 10.0  # type: ignore[union-attr]
    assert meta.timeout("promote") is None  # "soon" is not a duration: advice lost, warned
    assert meta.timeout("demote") == 90.0
    assert meta.timeout("reload") is None and not meta.advertises("reload")
    assert meta.promotable
    assert any("promote" in w and "soon" in w for w in meta.warnings)
    assert any("<parameter> without a name" in w for w in meta.warnings)
    assert any("<action> without a name" in w for w in meta.warnings)
    assert meta.missing_required({"nic"}) == ["ip"]
    assert meta.missing_required({"ip"}) == []
    assert meta.unknown({"ip", "nick", "cidr"}) == ["cidr", "nick"]


def test_parse_metadata_without_actions_or_parameters() -> None:
    meta = parse_metadata('<resource-agent name="x"/>')
    assert meta.actions == () and meta.parameters == () and meta.timeout("start") is None
    assert not meta.promotable


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "not XML"),
        ("usage: Foo {start|stop}", "not XML"),
        ("<resource-agent name='x'>", "not XML"),
        ("<html><body>hi</body></html>", "root element is <html>"),
    ],
)
def test_parse_metadata_rejects_what_is_not_metadata(text: str, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        parse_metadata(text)


@pytest.mark.parametrize(
    "code, name",
    [
        (0, "OCF_SUCCESS (0)"),
        (1, "OCF_ERR_GENERIC (1)"),
        (2, "OCF_ERR_ARGS (2)"),
        (3, "OCF_ERR_UNIMPLEMENTED (3)"),
        (4, "OCF_ERR_PERM (4)"),
        (5, "OCF_ERR_INSTALLED (5)"),
        (6, "OCF_ERR_CONFIGURED (6)"),
        (7, "OCF_NOT_RUNNING (7)"),
        (8, "OCF_RUNNING_PROMOTED (8)"),
        (9, "OCF_FAILED_PROMOTED (9)"),
        (127, "exit 127 (not an OCF code)"),
        (None, "no exit code"),
    ],
)
def test_code_names(code: int | None, name: str) -> None:
    assert code_name(code) == name


# --- the agent against the scripted test agent --------------------------------------------


@pytest.fixture
def scripted(ocf_root: str, tmp_path: Path) -> tuple[Callable[..., OcfAgent], Path]:
    state = tmp_path / "state"
    state.mkdir()

    def make(**res_kw: Any) -> OcfAgent:
        params = {"state_dir": str(state), **res_kw.pop("params", {})}
        return make_agent(ocf_root, "hafdtest:scripted", params, **res_kw)

    return make, state


def read_env(state: Path, action: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (state / f"{action}.env").read_text().splitlines())


def calls(state: Path) -> list[str]:
    f = state / "calls"
    return f.read_text().split() if f.exists() else []


async def test_environment_contract(scripted: tuple[Callable[..., OcfAgent], Path], ocf_root: str) -> None:
    make, state = scripted
    agent = make(name="dhcpd", params={"colour": "green"}, monitor_interval=5.0)
    await agent.start()
    await agent.monitor()
    base = {
        "OCF_ROOT": ocf_root,
        "OCF_RESOURCE_INSTANCE": "dhcpd",
        "OCF_RESOURCE_TYPE": "scripted",
        "OCF_RESOURCE_PROVIDER": "hafdtest",
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "1",
        "OCF_RESKEY_state_dir": str(state),
        "OCF_RESKEY_colour": "green",
    }
    # The advised timeouts (start 3s, monitor 2, validate-all 5s), in ms as Pacemaker passes them.
    assert read_env(state, "start") == {**base, "OCF_RESKEY_CRM_meta_timeout": "3000", "OCF_RESKEY_CRM_meta_interval": "0"}
    assert read_env(state, "validate-all") == {**base, "OCF_RESKEY_CRM_meta_timeout": "5000", "OCF_RESKEY_CRM_meta_interval": "0"}
    assert read_env(state, "monitor") == {**base, "OCF_RESKEY_CRM_meta_timeout": "2000", "OCF_RESKEY_CRM_meta_interval": "5000"}


async def test_metadata_once_and_validate_once_before_the_first_start(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    agent = make()
    st = await agent.monitor()
    assert st.health is Health.STOPPED
    await agent.start()
    await agent.start()  # idempotence is the agent's: no second validate-all
    await agent.stop()
    await agent.stop()
    assert calls(state) == ["meta-data", "monitor", "validate-all", "start", "start", "stop", "stop"]


async def test_timeout_for_uses_metadata_unless_the_config_sets_one(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, _ = scripted
    agent = make()  # timeout 20.0, not written in the file
    # Before meta-data is read, the budget covers reading it (and, for start, validate-all).
    assert agent.timeout_for("monitor") == 20.0 + META_DATA_TIMEOUT
    assert agent.timeout_for("start") == 20.0 + META_DATA_TIMEOUT + 20.0
    await agent.load_metadata()
    assert agent.timeout_for("start") == 3.0 + 5.0  # start + validate-all still due
    await agent.start()
    assert [agent.timeout_for(op) for op in ("start", "stop", "monitor", "promote")] == [3.0, 4.0, 2.0, 6.0]
    assert agent.timeout_for("reload") == 20.0  # not advised: the default

    fixed = make(timeout=12.0, timeout_set=True)
    await fixed.start()
    assert [fixed.timeout_for(op) for op in ("start", "stop", "monitor")] == [12.0, 12.0, 12.0]


@pytest.mark.parametrize(
    "rc, health, detail",
    [
        (0, Health.RUNNING, "hafdtest:scripted: OCF_SUCCESS (0)"),
        (7, Health.STOPPED, "hafdtest:scripted: OCF_NOT_RUNNING (7)"),
        (8, Health.RUNNING, "hafdtest:scripted: OCF_RUNNING_PROMOTED (8)"),
        (190, Health.RUNNING, "hafdtest:scripted: OCF_DEGRADED (190): disk 91% full"),
        (9, Health.FAILED, "OCF_FAILED_PROMOTED (9): disk 91% full"),
        (1, Health.FAILED, "OCF_ERR_GENERIC (1): disk 91% full"),
        (2, Health.FAILED, "OCF_ERR_ARGS (2): disk 91% full"),
        (3, Health.FAILED, "OCF_ERR_UNIMPLEMENTED (3): disk 91% full"),
        (4, Health.FAILED, "OCF_ERR_PERM (4): disk 91% full"),
        (5, Health.FAILED, "OCF_ERR_INSTALLED (5): disk 91% full"),
        (6, Health.FAILED, "OCF_ERR_CONFIGURED (6): disk 91% full"),
        (127, Health.FAILED, "exit 127 (not an OCF code): disk 91% full"),
    ],
)
async def test_monitor_exit_codes(scripted: tuple[Callable[..., OcfAgent], Path], rc: int, health: Health, detail: str) -> None:
    make, state = scripted
    (state / "monitor.rc").write_text(str(rc))
    (state / "monitor.msg").write_text("some log line\nocf-exit-reason:disk 91% full\nanother log line\n")
    st = await make().monitor()
    assert (st.health, st.detail) == (health, detail)
    assert st.extra["exit_code"] == rc
    assert (st.extra.get("role") == "promoted") == (rc in (8, 9))
    if health is Health.FAILED:
        assert "another log line" in str(st.extra["stderr"])


async def test_failure_detail_is_the_stderr_tail_without_an_exit_reason(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    (state / "monitor.rc").write_text("6")
    (state / "monitor.msg").write_text("INFO: checking\nERROR: config /etc/x.conf missing\n")
    st = await make().monitor()
    assert st.detail == "OCF_ERR_CONFIGURED (6): ERROR: config /etc/x.conf missing"


async def test_start_failure_names_the_code(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    (state / "start.rc").write_text("5")
    (state / "start.msg").write_text("ocf-exit-reason:dhcpd is not installed\n")
    with pytest.raises(AgentError) as e:
        await make().start()
    assert e.value.message == "hafdtest:scripted start failed: OCF_ERR_INSTALLED (5): dhcpd is not installed"
    assert e.value.exit_code == 5 and "dhcpd is not installed" in e.value.stderr


async def test_stop_not_running_is_success_other_codes_fail(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    agent = make()
    (state / "stop.rc").write_text("7")
    await agent.stop()
    (state / "stop.rc").write_text("1")
    with pytest.raises(AgentError, match=r"stop failed: OCF_ERR_GENERIC \(1\)"):
        await agent.stop()


async def test_validate_failure_blocks_start_and_is_retried(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    agent = make()
    (state / "validate-all.rc").write_text("6")
    (state / "validate-all.msg").write_text("ocf-exit-reason:state_dir is on the local disk\n")
    with pytest.raises(AgentError) as e:
        await agent.start()
    assert e.value.message == "hafdtest:scripted validate-all failed: OCF_ERR_CONFIGURED (6): state_dir is on the local disk"
    assert "state_dir is on the local disk" in e.value.stderr
    assert "start" not in calls(state)
    (state / "validate-all.rc").unlink()
    await agent.start()
    assert calls(state) == ["meta-data", "validate-all", "validate-all", "start"]


async def test_validate_unimplemented_counts_as_passed(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    agent = make()
    (state / "validate-all.rc").write_text("3")
    await agent.start()
    await agent.start()
    assert calls(state).count("validate-all") == 1 and (state / "running").exists()


async def test_hanging_agent_is_killed_at_the_advised_timeout(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    agent = make()
    await agent.load_metadata()
    (state / "monitor.hang").touch()
    t0 = time.monotonic()
    with pytest.raises(AgentError, match=r"monitor timed out after 2\.0s and was killed"):
        await agent.monitor()
    elapsed = time.monotonic() - t0
    assert 2.0 <= elapsed < 2.0 + KILL_GRACE + 2.0
    assert elapsed < agent.timeout_for("monitor") + KILL_GRACE + 2.0


async def test_one_time_steps_share_the_first_call_budget(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    """A hanging validate-all on the first start is cut within the budget the daemon was told."""
    make, state = scripted
    agent = make(timeout=1.0, timeout_set=True)
    budget = agent.timeout_for("start")
    (state / "validate-all.hang").touch()
    t0 = time.monotonic()
    with pytest.raises(AgentError, match="validate-all timed out"):
        await agent.start()
    assert time.monotonic() - t0 < budget + KILL_GRACE + 1.0
    assert "start" not in calls(state)


async def test_promote_and_demote(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    agent = make()
    await agent.start()
    st = await agent.monitor()
    assert st.extra["promotable"] is True and "promote" in st.extra["actions"]  # type: ignore[operator]
    await agent.promote()
    st = await agent.monitor()
    assert (st.health, st.extra.get("role")) == (Health.RUNNING, "promoted")
    await agent.demote()
    st = await agent.monitor()
    assert (st.health, st.extra.get("role")) == (Health.RUNNING, None)
    (state / "promote.rc").write_text("1")
    with pytest.raises(AgentError, match=r"promote failed: OCF_ERR_GENERIC \(1\)"):
        await agent.promote()


async def test_unusable_metadata_keeps_the_agent_working(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    (state / "meta-data.xml").write_text("usage: scripted {start|stop}\n")
    agent = make()
    await agent.start()
    st = await agent.monitor()
    assert st.health is Health.RUNNING
    assert "not XML" in str(st.extra["metadata_error"])
    assert agent.timeout_for("start") == 20.0  # no advice: the default
    await agent.monitor()
    assert calls(state).count("meta-data") == 1  # a failure is cached too


async def test_metadata_failure_exit_code(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    (state / "meta-data.rc").write_text("1")
    agent = make()
    st = await agent.monitor()
    assert st.health is Health.STOPPED
    assert "meta-data failed: OCF_ERR_GENERIC (1)" in str(st.extra["metadata_error"])


async def test_parameter_warnings_from_metadata(scripted: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, state = scripted
    (state / "meta-data.xml").write_text(
        '<resource-agent name="scripted"><parameters>'
        '<parameter name="state_dir"/><parameter name="ip" required="1"><content/></parameter>'
        "</parameters></resource-agent>"
    )
    st = await make(params={"colur": "red"}).monitor()
    assert st.extra["warnings"] == [
        "parameter colur is not described by hafdtest:scripted's meta-data",
        "required parameter ip is not set",
    ]


async def test_missing_and_unexecutable_agents(ocf_root: str, tmp_path: Path) -> None:
    agent = make_agent(ocf_root, "heartbeat:Foo", {})
    path = os.path.join(ocf_root, "resource.d", "heartbeat", "Foo")
    for op in (agent.start, agent.stop, agent.monitor):
        with pytest.raises(AgentError) as e:
            await op()
        assert e.value.message == f"OCF agent heartbeat:Foo not found at {path}; install resource-agents?"
    plain = tmp_path / "root2" / "resource.d" / "p"
    plain.mkdir(parents=True)
    (plain / "T").write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(AgentError, match="is not executable"):
        await make_agent(str(tmp_path / "root2"), "p:T", {}).monitor()


@pytest.mark.parametrize(
    "agent, params, message",
    [
        ("IPaddr2", {}, "must be PROVIDER:TYPE"),
        ("heartbeat:../../bin/sh", {}, "must be PROVIDER:TYPE"),
        ("..:sh", {}, "must be PROVIDER:TYPE"),
        ("a:b:c", {}, "must be PROVIDER:TYPE"),
        ("heartbeat:Dummy", {"bad-name": "x"}, "may only hold letters"),
        ("heartbeat:Dummy", {"ok": "a\0b"}, "without NUL"),
    ],
)
def test_bad_config_is_an_agent_error(agent: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(AgentError, match=message):
        make_agent(SYSTEM_OCF_ROOT, agent, params)


def test_ocf_prefix_is_accepted() -> None:
    agent = make_agent(SYSTEM_OCF_ROOT, "ocf:heartbeat:Dummy", {})
    assert agent.path == f"{SYSTEM_OCF_ROOT}/resource.d/heartbeat/Dummy"


# --- the DHCP agent, with a fake `service` ------------------------------------------------


@pytest.fixture
def dhcp(ocf_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Callable[..., OcfAgent], Path]:
    svc = tmp_path / "svc"
    svc.mkdir()
    (tmp_path / "dhcp").mkdir()
    monkeypatch.setenv("FAKE_SERVICE_DIR", str(svc))

    def make(**kw: Any) -> OcfAgent:
        params = {
            "init": "sysv",
            "service_bin": str(AGENTS_DIR / "fake-service"),
            "leases": str(tmp_path / "dhcp" / "dhcpd.leases"),
            **kw.pop("params", {}),
        }
        return make_agent(ocf_root, "hafdtest:dhcp", params, name="dhcpd", **kw)

    return make, svc


def service_calls(svc: Path) -> list[str]:
    f = svc / "isc-dhcp-server.calls"
    return f.read_text().split() if f.exists() else []


async def test_dhcp_lifecycle_waits_for_serving_without_a_fixed_sleep(dhcp: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, svc = dhcp
    agent = make()
    assert (await agent.monitor()).health is Health.STOPPED
    (svc / "isc-dhcp-server.start_polls").write_text("4")  # serving only from the 4th status after start
    t0 = time.monotonic()
    await agent.start()
    assert time.monotonic() - t0 < 3.0  # polled, not slept (the guide slept 4 s)
    assert service_calls(svc).count("status") >= 1 + 4
    assert (svc / "isc-dhcp-server.state").read_text().strip() == "running"
    st = await agent.monitor()
    assert (st.health, st.detail) == (Health.RUNNING, "hafdtest:dhcp: OCF_SUCCESS (0)")
    before = service_calls(svc).count("start")
    await agent.start()  # already serving: no second `service start`
    assert service_calls(svc).count("start") == before
    await agent.stop()
    assert (await agent.monitor()).health is Health.STOPPED
    await agent.stop()
    assert service_calls(svc).count("stop") == 1


async def test_dhcp_uses_metadata_timeouts_when_the_config_gives_none(dhcp: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, _ = dhcp
    agent = make()
    await agent.start()
    assert [agent.timeout_for(op) for op in ("start", "stop", "monitor")] == [30.0, 30.0, 15.0]
    fixed = make(timeout=8.0, timeout_set=True)
    await fixed.monitor()
    assert fixed.timeout_for("start") == 8.0 + 8.0  # start, plus validate-all still due


@pytest.mark.parametrize(
    "state, params, detail",
    [
        ("dead", {}, "OCF_ERR_GENERIC (1): isc-dhcp-server is dead but its pid or lock file remains (status exit 1)"),
        ("unknown", {}, "OCF_ERR_INSTALLED (5): isc-dhcp-server is not registered (status exit 4)"),
        ("running", {"init": "upstart"}, "OCF_ERR_CONFIGURED (6): init must be auto, systemd or sysv, not 'upstart'"),
        ("running", {"service_bin": "/nonexistent/service"}, "OCF_ERR_INSTALLED (5): /nonexistent/service is not installed"),
    ],
)
async def test_dhcp_monitor_failures(dhcp: tuple[Callable[..., OcfAgent], Path], state: str, params: dict[str, str], detail: str) -> None:
    make, svc = dhcp
    (svc / "isc-dhcp-server.state").write_text(state)
    st = await make(params=params).monitor()
    assert (st.health, st.detail) == (Health.FAILED, detail)


SYSTEMD = {"init": "systemd", "systemctl_bin": str(AGENTS_DIR / "fake-systemctl")}


async def test_dhcp_on_systemd_reads_is_active(dhcp: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, svc = dhcp
    agent = make(params=SYSTEMD)
    assert (await agent.monitor()).health is Health.STOPPED
    (svc / "isc-dhcp-server.start_polls").write_text("3")  # "activating" for 3 checks
    await agent.start()
    assert service_calls(svc).count("is-active") >= 1 + 3
    assert (await agent.monitor()).health is Health.RUNNING
    await agent.stop()
    assert (await agent.monitor()).health is Health.STOPPED
    assert "status" not in service_calls(svc)  # never the SysV wording


@pytest.mark.parametrize(
    "state, detail",
    [
        ("dead", "OCF_ERR_GENERIC (1): unit isc-dhcp-server has failed"),
        ("unknown", "OCF_ERR_INSTALLED (5): unit isc-dhcp-server is not installed"),
    ],
)
async def test_dhcp_on_systemd_failures(dhcp: tuple[Callable[..., OcfAgent], Path], state: str, detail: str) -> None:
    make, svc = dhcp
    (svc / "isc-dhcp-server.state").write_text(state)
    st = await make(params=SYSTEMD).monitor()
    assert (st.health, st.detail) == (Health.FAILED, detail)


async def test_dhcp_validate_refuses_leases_off_the_shared_filesystem(dhcp: tuple[Callable[..., OcfAgent], Path], tmp_path: Path) -> None:
    make, svc = dhcp
    shared = tmp_path / "dhcp"  # a directory, not a mounted filesystem
    agent = make(params={"shared_dir": str(shared)})
    with pytest.raises(AgentError) as e:
        await agent.start()
    assert e.value.message == f"hafdtest:dhcp validate-all failed: OCF_ERR_CONFIGURED (6): shared_dir {shared} is not a mounted filesystem"
    assert "is not a mounted filesystem" in e.value.stderr
    assert "start" not in service_calls(svc)
    agent = make(params={"leases": str(tmp_path / "nowhere" / "dhcpd.leases")})
    with pytest.raises(AgentError, match=r"OCF_ERR_CONFIGURED \(6\): the leases directory .*/nowhere does not exist"):
        await agent.start()
    assert "start" not in service_calls(svc)


async def test_dhcp_start_failure_and_never_serving(dhcp: tuple[Callable[..., OcfAgent], Path]) -> None:
    make, svc = dhcp
    (svc / "isc-dhcp-server.fail_start").write_text("No subnet declaration for eth2 (10.10.101.1).\n")
    with pytest.raises(AgentError, match=r"start failed: OCF_ERR_GENERIC \(1\): isc-dhcp-server start failed: No subnet declaration"):
        await make().start()
    (svc / "isc-dhcp-server.fail_start").unlink()
    (svc / "isc-dhcp-server.start_polls").write_text("100000")
    agent = make(timeout=2.0, timeout_set=True)  # the agent polls for 80% of it, then says so
    t0 = time.monotonic()
    with pytest.raises(AgentError, match=r"OCF_ERR_GENERIC \(1\): isc-dhcp-server started but is not serving"):
        await agent.start()
    assert 1.6 <= time.monotonic() - t0 < 2.0 + 1.0


# --- Debian's resource-agents --------------------------------------------------------------


@needs_resource_agents
async def test_heartbeat_dummy(tmp_path: Path) -> None:
    state = tmp_path / "dummy.state"
    agent = make_agent(SYSTEM_OCF_ROOT, "heartbeat:Dummy", {"state": str(state)}, name="dummy1")
    assert (await agent.monitor()).health is Health.STOPPED
    assert agent.timeout_for("start") == 20.0 + 20.0  # from Dummy's meta-data: start 20s, validate-all 20s
    await agent.start()
    assert state.exists()
    st = await agent.monitor()
    assert st.health is Health.RUNNING and "reload" in st.extra["actions"]  # type: ignore[operator]
    assert st.extra["promotable"] is False and "warnings" not in st.extra
    await agent.start()
    await agent.stop()
    assert not state.exists()
    assert (await agent.monitor()).health is Health.STOPPED
    await agent.stop()


@needs_resource_agents
async def test_heartbeat_dummy_validate_failure(tmp_path: Path) -> None:
    agent = make_agent(SYSTEM_OCF_ROOT, "heartbeat:Dummy", {"state": str(tmp_path / "missing" / "dummy.state")})
    with pytest.raises(AgentError) as e:
        await agent.start()
    assert "validate-all failed: OCF_ERR_ARGS (2)" in e.value.message and "is not writable" in e.value.message


# Runs inside the namespace: the OcfAgent on IPaddr2, one JSON record per operation.
IPADDR2_SCRIPT = r"""
import asyncio, json, sys
from hafd.agents.base import AgentContext, AgentError
from hafd.agents.ocf import OcfAgent
from hafd.core.config import OcfParams, Programs, Resource

async def main(spec):
    res = Resource(name="vip", type="ocf", params=OcfParams("heartbeat:IPaddr2", spec["params"]))
    agent = OcfAgent(res, AgentContext(Programs(ocf_root=spec["ocf_root"]), "/tmp"))
    out = []
    for op in spec["ops"]:
        rec = {"op": op}
        try:
            if op == "monitor":
                st = await agent.monitor()
                rec.update(health=st.health.value, detail=st.detail)
            else:
                await getattr(agent, op)()
        except AgentError as e:
            rec["error"] = e.message
        out.append(rec)
    print(json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
"""


def run_ipaddr2(ns: NetNs, params: dict[str, str], ops: list[str]) -> list[dict[str, Any]]:
    spec = json.dumps({"params": params, "ops": ops, "ocf_root": SYSTEM_OCF_ROOT})
    out: list[dict[str, Any]] = ns.python(IPADDR2_SCRIPT, spec, timeout=90)
    assert [r["op"] for r in out] == ops
    return out


@requires_root
@needs_resource_agents
def test_heartbeat_ipaddr2_in_a_namespace(netns_factory: Any) -> None:
    node, peer = netns_factory(), netns_factory()
    veth_pair(node, "hafd0", peer, "hafd1")
    node.ip("addr", "add", "10.10.77.2/24", "dev", "hafd0")
    params = {"ip": "10.10.77.10", "cidr_netmask": "24", "nic": "hafd0", "arp_count": "2", "arp_interval": "50"}
    out = run_ipaddr2(node, params, ["monitor", "start", "monitor", "start"])
    assert out[0] == {"op": "monitor", "health": "stopped", "detail": "heartbeat:IPaddr2: OCF_NOT_RUNNING (7)"}
    assert [r.get("error") for r in out] == [None] * 4, out
    assert out[2]["health"] == "running"
    assert "10.10.77.10/24" in node.addresses("hafd0")
    assert "10.10.77.10/24" not in peer.addresses("hafd1")
    # A fresh agent (as after a daemon restart) sees it running and stops it.
    out = run_ipaddr2(node, params, ["monitor", "stop", "monitor", "stop"])
    assert [r.get("error") for r in out] == [None] * 4, out
    assert [r.get("health") for r in out] == ["running", None, "stopped", None]
    assert node.addresses("hafd0") == ["10.10.77.2/24"]


@requires_root
@needs_resource_agents
def test_heartbeat_ipaddr2_unknown_nic_fails_to_start(netns_factory: Any) -> None:
    node = netns_factory()
    out = run_ipaddr2(node, {"ip": "10.10.77.10", "cidr_netmask": "24", "nic": "nosuch0"}, ["start", "monitor"])
    assert "OCF_ERR_CONFIGURED (6)" in out[0]["error"], out
    assert out[1]["health"] in ("stopped", "failed")
    assert node.ip("-o", "addr").count("10.10.77.10") == 0


def test_agent_scripts_are_executable() -> None:
    for p in [AGENTS_DIR / "fake-service", AGENTS_DIR / "fake-systemctl", *(AGENTS_DIR / "resource.d" / "hafdtest").iterdir()]:
        assert os.access(p, os.X_OK), p
    assert sys.executable  # the namespace helper runs this interpreter
