"""bench/pacemaker_bench.py's pure parts: corosync.conf, the crm configuration, crm_mon and log parsing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pacemaker_bench import (DRBD_AGENT, PRIMITIVES, PROFILES, corosync_conf, count_events,  # noqa: E402
                                   crm_config, driver, parse_crm_mon, timeline_from_logs)

LINKS = {"nodeone": ["10.10.100.1", "10.10.103.1"], "nodetwo": ["10.10.100.2", "10.10.103.2"]}


def test_corosync_conf_has_both_knet_links_two_node_and_the_token() -> None:
    text = corosync_conf(1000, LINKS)
    assert "transport: knet" in text and "token: 1000" in text and "two_node: 1" in text
    assert text.count("ring0_addr") == 2 and "ring1_addr: 10.10.103.2" in text
    assert "nodeid: 1" in text and "nodeid: 2" in text
    assert text.count("{") == text.count("}")
    one_link = corosync_conf(3000, {k: v[:1] for k, v in LINKS.items()})
    assert "ring1_addr" not in one_link


def test_profiles_and_detection() -> None:
    assert PROFILES["pacemaker_default"].token_ms == 3000
    assert PROFILES["pacemaker_token1000"].consensus_ms == 1200
    d = driver("pacemaker_token1000")
    try:
        assert d.key == "pacemaker_token1000" and d.detection == pytest.approx(2.2)
        assert "notes" in d.timings
    finally:
        d.bed.closed = True  # never built: nothing to tear down


def test_crm_config_is_the_seed_with_a_group_in_order() -> None:
    text = crm_config()
    assert "stonith-enabled=false" in text and "no-quorum-policy=ignore" in text
    assert "resource-stickiness=" in text
    assert "group svc drbd fs_data testnet dhcp" in text
    assert "ip=10.10.101.1 cidr_netmask=24 nic=eth2" in text
    assert "config=/etc/hafd/dhcpd.conf" in text and "interface=eth2" in text
    assert DRBD_AGENT.startswith("#!/bin/sh") and "<resource-agent" in DRBD_AGENT


CRM_MON = """<?xml version="1.0"?>
<pacemaker-result api-version="2.25" request="crm_mon -1 --output-as=xml">
  <summary><current_dc present="true" version="2.1.5" name="nodetwo" id="2" with_quorum="true"/></summary>
  <nodes>
    <node name="nodeone" id="1" online="true" standby="false" pending="false" unclean="false"/>
    <node name="nodetwo" id="2" online="true" standby="false" pending="false" unclean="false"/>
  </nodes>
  <resources>
    <group id="svc" number_resources="4" managed="true" disabled="false">
      {rows}
    </group>
  </resources>
</pacemaker-result>
"""


def _row(rid: str, role: str, node: str | None) -> str:
    active = "true" if node else "false"
    inner = f'<node name="{node}" id="1" cached="true"/>' if node else ""
    return (f'<resource id="{rid}" resource_agent="x" role="{role}" active="{active}" orphaned="false" '
            f'blocked="false" managed="true" failed="false" failure_ignored="false" nodes_running_on="{int(bool(node))}">'
            f"{inner}</resource>")


def test_parse_crm_mon_finds_the_group_node() -> None:
    st = parse_crm_mon(CRM_MON.format(rows="".join(_row(p, "Started", "nodeone") for p in PRIMITIVES)))
    assert st.online == {"nodeone", "nodetwo"} and st.dc == "nodetwo"
    assert st.group_on() == "nodeone" and not st.failed and not st.pending


def test_parse_crm_mon_half_started_group_is_nowhere() -> None:
    rows = _row("drbd", "Started", "nodeone") + _row("fs_data", "Starting", "nodeone") + "".join(
        _row(p, "Stopped", None) for p in PRIMITIVES[2:])
    st = parse_crm_mon(CRM_MON.format(rows=rows))
    assert st.group_on() is None and st.pending == ["fs_data"]


def test_parse_crm_mon_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_crm_mon("crm_mon: Error: cluster is not available on this node")


LOG = """\
Nov 25 18:13:09.670 nodeone pacemaker-controld  [25430] (log_executor_event) \tnotice: Result of start operation for dhcp on nodeone: ok | CIB update 46
Nov 25 18:13:09.700 nodeone pacemaker-controld  [25430] (process_graph_event) \tinfo: Result of start operation for dhcp on nodetwo: ok | remote
Nov 25 18:14:00.000 nodeone pacemaker-attrd     [25428] (crm_update_peer_state_iter) \tnotice: Node nodetwo state is now lost | nodeid=2
Nov 25 18:14:00.001 nodeone pacemaker-controld  [25430] (crm_update_peer_state_iter) \tnotice: Node nodetwo state is now lost | nodeid=2
Nov 25 18:14:00.010 nodeone pacemaker-controld  [25430] (execute_rsc_action) \tnotice: Initiating start operation drbd_start_0 locally on nodeone | action 3
Nov 25 18:14:00.100 nodeone pacemaker-controld  [25430] (log_executor_event) \tnotice: Result of start operation for drbd on nodeone: ok | CIB update 50
Nov 25 18:14:00.300 nodeone pacemaker-controld  [25430] (log_executor_event) \tnotice: Result of start operation for dhcp on nodeone: ok | CIB update 52
Nov 25 18:14:05.000 nodeone pacemaker-controld  [25430] (log_executor_event) \tnotice: Result of start operation for dhcp on nodeone: error | CIB update 60
"""


def test_count_events_counts_own_starts_and_controld_peer_losses_only() -> None:
    assert count_events(LOG, "nodeone") == {"role_changes": 2, "peer_lost": 1}
    assert count_events(LOG, "nodetwo") == {"role_changes": 1, "peer_lost": 0}
    assert count_events("", "nodeone") == {"role_changes": 0, "peer_lost": 0}


def test_timeline_from_logs_takes_the_first_step_after_the_crash() -> None:
    crash = time.mktime(time.strptime("2026 Nov 25 18:13:59", "%Y %b %d %H:%M:%S")) + 0.5
    cs = ("Nov 25 18:13:58.000 [1] nodeone corosync info    [KNET  ] link: host: 2 link: 0 is down\n"
          "Nov 25 18:13:59.700 [1] nodeone corosync info    [KNET  ] link: host: 2 link: 0 is down\n"
          "Nov 25 18:13:59.900 [1] nodeone corosync notice  [TOTEM ] Token has not been received in 2250 ms\n"
          "Nov 25 18:13:59.990 [1] nodeone corosync notice  [TOTEM ] A new membership (1.c) was formed. "
          "Members left: 2\n")
    tl = timeline_from_logs(LOG, cs, "nodeone", crash, year=2026)
    rel = {k: round(v - crash, 3) for k, v in tl.items()}
    assert rel["link down"] == pytest.approx(0.2)
    assert rel["token timeout"] == pytest.approx(0.4)
    assert rel["membership formed"] == pytest.approx(0.49)
    assert rel["peer lost (pacemaker)"] == pytest.approx(0.501)
    assert rel["drbd started"] == pytest.approx(0.6) and rel["active"] == pytest.approx(0.8)
    assert timeline_from_logs(LOG, cs, "nodeone", crash + 3600, year=2026) == {}


def test_last_ban_is_the_latest_move_constraint_received() -> None:
    from bench.pacemaker_bench import last_ban
    text = (
        'Nov 25 18:22:21.482 nodeone pacemaker-based     [2182] (cib_perform_op) \tinfo: ++ /cib/configuration/'
        'constraints:  <rsc_location id="cli-ban-svc-on-nodetwo" rsc="svc" role="Started" node="nodetwo"/>\n'
        "Nov 25 18:22:22.442 nodeone pacemaker-based     [2182] (cib_perform_op) \tinfo: -- /cib/configuration/"
        "constraints/rsc_location[@id='cli-ban-svc-on-nodetwo']\n"
        'Nov 25 18:22:22.482 nodeone pacemaker-based     [2182] (cib_perform_op) \tinfo: ++ /cib/configuration/'
        'constraints:  <rsc_location id="cli-ban-svc-on-nodeone" rsc="svc" role="Started" node="nodeone"/>\n')
    want = time.mktime(time.strptime("2026 Nov 25 18:22:22", "%Y %b %d %H:%M:%S")) + 0.482
    assert last_ban(text, 2026) == pytest.approx(want)
    assert last_ban(text.splitlines()[1], 2026) is None
