"""bench/keepalived_bench.py's pure parts: keepalived.conf, the notify script, its log and the figures (no keepalived needed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import keepalived_bench as kb  # noqa: E402
from bench.main import SYSTEMS  # noqa: E402


def test_fast_config_is_vrrp3_at_20ms_with_15_adverts_unicast_on_the_ha_link() -> None:
    text = kb.config_text("nodeone", "nodetwo", kb.PROFILES["keepalived_fast"])
    assert "vrrp_version 3" in text and "advert_int 0.02\n" in text and "vrrp_down_timer_adverts 15" in text
    assert "interface eth1" in text and "unicast_src_ip 10.10.100.1" in text and "10.10.100.2" in text
    assert "10.10.101.1/24 dev eth2" in text and "priority 150" in text
    assert "state BACKUP" in text and "nopreempt" in text
    for state in ("master", "backup", "fault", "stop"):
        assert f'notify_{state} "/etc/hafd/ka-notify {state}"' in text
    assert text.count("{") == text.count("}")


def test_default_config_keeps_the_rfc_timer_and_the_peer_is_mirrored() -> None:
    text = kb.config_text("nodetwo", "nodeone", kb.PROFILES["keepalived_default"])
    assert "vrrp_version 2" in text and "advert_int 1\n" in text and "down_timer_adverts" not in text
    assert "unicast_src_ip 10.10.100.2" in text and "    10.10.100.1\n" in text and "priority 100" in text


def test_master_down_interval_is_k_adverts_plus_the_priority_skew() -> None:
    fast, default = kb.PROFILES["keepalived_fast"], kb.PROFILES["keepalived_default"]
    assert kb.master_down(default, 100) == pytest.approx(3 + 156 / 256)
    assert kb.master_down(fast, 150) == pytest.approx(0.3 + 0.02 * 106 / 256)
    assert kb.driver("keepalived_fast").detection == pytest.approx((kb.master_down(fast, 150) + kb.master_down(fast, 100)) / 2)


def test_the_fast_profile_is_loss_proof_by_the_issues_formula_and_the_default_is_not() -> None:
    fast = kb.false_failovers_per_year(0.02, 15, 0.2)
    assert fast == pytest.approx(50 * 0.8 * 0.2**15 * 365.25 * 86400)
    assert 0.03 < fast < 0.05  # the issue's ~0.04 a year
    assert kb.false_failovers_per_year(1.0, 3, 0.2) > 365  # more than one a day
    t = kb.timings_of(kb.PROFILES["keepalived_fast"])
    assert t["expected_false_failovers_per_year_at_20pct_loss"] == pytest.approx(fast, rel=1e-2)
    assert "loss-proof" in t["false_failover_reasoning"] and t["notes"]


def test_notify_script_is_valid_sh_runs_the_beds_dhcpd_and_frees_its_lock() -> None:
    text = kb.notify_script("nodeone")
    assert " ".join(kb.dhcpd_argv()) in text
    assert "-cf /etc/hafd/dhcpd.conf -lf /data/dhcpd.leases" in text
    assert "9>&-" in text  # dhcpd must not inherit the flock, or every later transition blocks
    assert "trap '' TERM" in text and "setsid -f" in text  # survives keepalived's SIGTERM of its scripts
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    r = subprocess.run([sh, "-n"], input=text, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


LOG = """\
100.000 11 backup begin
100.010 11 backup done
garbage line
105.000 12 master begin
105.020 12 master drbd
105.030 12 master mounted
105.04
105.050 12 master done
200.000 13 stop begin
200.040 13 stop done
"""


def test_parse_skips_torn_and_foreign_lines() -> None:
    recs = kb.parse_notify_log(LOG)
    assert len(recs) == 8
    assert recs[2] == kb.Record(105.0, 12, "master", "begin")
    assert kb.parse_notify_log("1.0 x master begin\n1.0 2 leader begin\n") == []


def test_role_changes_count_moves_into_and_out_of_master() -> None:
    recs = kb.parse_notify_log(LOG)
    assert kb.role_changes(recs) == 2  # backup -> master -> stop
    assert kb.role_changes(recs[2:], before="backup") == 2
    assert kb.role_changes(recs[2:], before="master") == 1  # master again is no change
    assert kb.role_changes([]) == 0


def test_settled_state_needs_a_finished_run() -> None:
    recs = kb.parse_notify_log(LOG)
    assert kb.settled_state(recs) == "stop"
    assert kb.settled_state(recs[:4]) is None  # master still running
    assert kb.settled_state(recs[:6]) == "master"
    assert kb.settled_state([]) is None
    late = kb.parse_notify_log("1.0 5 master begin\n1.1 6 backup begin\n1.2 6 backup done\n1.3 5 master superseded\n")
    assert kb.settled_state(late) == "backup"  # the older run gave way after the newer one finished


def test_notify_script_gives_way_to_a_newer_transition() -> None:
    text = kb.notify_script("nodetwo")
    assert text.index("note begin") < text.index("flock 9") < text.index("newest || {")
    assert text.count("note superseded") == 2  # before acting, and while waiting for DRBD


def test_takeover_timeline_is_the_master_run_after_the_crash() -> None:
    recs = kb.parse_notify_log(LOG)
    tl = kb.takeover_timeline(recs, 104.7)
    assert tl["MASTER (notify_master began)"] == pytest.approx(0.3)
    assert tl["drbdadm primary done"] == pytest.approx(0.32)
    assert tl["/data mounted"] == pytest.approx(0.33)
    assert tl["active"] == pytest.approx(0.35)
    assert kb.takeover_timeline(recs, 150.0) == {}  # no takeover after that crash yet
    assert "active" not in kb.takeover_timeline(recs[:4], 104.7)  # still running


def test_peer_lost_counts_keepalived_advert_timeouts() -> None:
    text = ("Wed: (dhcp) Entering BACKUP STATE (init)\nWed: (dhcp) Receive advertisement timeout\n"
            "Wed: (dhcp) Entering MASTER STATE\nWed: (dhcp) Receive advertisement timeout\n")
    assert kb.count_peer_lost(text) == 2 and kb.count_peer_lost("") == 0


def test_both_profiles_are_registered_in_the_bench() -> None:
    for key in ("keepalived_default", "keepalived_fast"):
        factory = SYSTEMS[key]
        assert factory is not None
        drv = factory()
        try:
            assert drv.key == key and drv.nodes == ("nodeone", "nodetwo")
        finally:
            assert drv.close() == []
    with pytest.raises(KeyError):
        kb.driver("keepalived_slow")
