"""The shipped unit, the agent table and the config schema agree with each other."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hafd.agents.registry import AGENTS
from hafd.core.configload import RESOURCE_TYPES, load_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "hafd.service"


def unit() -> configparser.ConfigParser:
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str  # type: ignore[assignment, method-assign]
    p.read(UNIT)
    return p


def test_every_configurable_type_has_an_agent_and_back():
    assert set(AGENTS) == set(RESOURCE_TYPES)


def test_unit_is_notify_with_watchdog_and_leaves_services_running():
    s = unit()["Service"]
    assert s["Type"] == "notify"
    assert float(s["WatchdogSec"]) > 0
    assert s["Restart"] == "on-failure"
    assert s["KillMode"] == "process"  # a daemon restart must not kill dhcpd


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path):
    # verify needs ExecStart's binary to exist: point it at this venv's scripts.
    text = UNIT.read_text().replace("/usr/local/bin/", str(Path(sys.executable).parent) + "/")
    u = tmp_path / "hafd.service"
    u.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(u)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "hafd.service" not in r.stderr, r.stderr  # no warnings about our unit


def test_shipped_config_describes_the_seed_cluster():
    cfg = load_config(str(ROOT / "config" / "hafd.yaml"), node="nodeone")
    assert [n for n in cfg.nodes] == ["nodeone", "nodetwo"]
    assert cfg.nodes["nodeone"].links == ("10.10.100.1",)
    assert cfg.nodes["nodetwo"].links == ("10.10.100.2",)
    assert cfg.resources["data"].requires == ("drbd",)
    assert set(cfg.resources["dhcpd"].requires) == {"data", "vip"}
    assert cfg.resources["vip"].params.address == "10.10.101.1/24"  # type: ignore[union-attr]
    assert cfg.resources["vip"].params.interface == "eth2"  # type: ignore[union-attr]
