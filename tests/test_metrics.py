"""The Prometheus endpoint: config, a real daemon scraped over HTTP, off by default, lazy import."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hafd.core.config import Metrics
from hafd.core.configload import ConfigError, parse_config

from test_daemon import Hafd, alive  # noqa: F401 - alive used by the fixture's cleanup
from test_history import solo  # noqa: F401 - the one-node daemon fixture

BASE = "cluster: {name: c}\nnodes:\n  solo: {links: [127.0.0.1]}\n"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (comments dropped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def scrape(port: int, path: str = "/metrics") -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        return parse(r.read().decode())


def test_config_listen_forms() -> None:
    assert parse_config(BASE + "metrics: {listen: '127.0.0.1:9469'}\n").metrics == Metrics("127.0.0.1", 9469)
    assert parse_config(BASE + "metrics: {listen: '[::1]:9469'}\n").metrics == Metrics("::1", 9469)
    assert parse_config(BASE + "metrics:\n").metrics is None


@pytest.mark.parametrize("listen, hint", [
    ("localhost:9469", "expected HOST:PORT with an IP address"),
    ("127.0.0.1", "(no :PORT)"),
    ("127.0.0.1:70000", "(the port must be 1-65535)"),
    ("::1:9469", "(put an IPv6 address in brackets)"),
])
def test_config_listen_errors(listen: str, hint: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + f"metrics:\n  listen: '{listen}'\n")
    assert f"hafd.yaml:5: metrics.listen: expected HOST:PORT" in str(exc.value) and hint in str(exc.value)


def test_a_daemon_without_metrics_never_imports_prometheus_client() -> None:
    code = "import sys, hafd.daemon; print('prometheus_client' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "False", r.stderr


def test_scrape_a_running_daemon(solo: Hafd) -> None:  # noqa: F811
    port = free_tcp_port()
    with open(solo.config, "a") as f:
        f.write(f"metrics:\n  listen: '127.0.0.1:{port}'\n")
    solo.start()
    solo.wait_for(lambda s: s["role"] == "active", "active")
    m = scrape(port)
    assert m['hafd_role{role="active"}'] == 1 and m['hafd_role{role="standby"}'] == 0
    assert m['hafd_info{cluster="solo",node="solo",version="0.1.0"}'] == 1
    for res in ("marker", "server"):
        assert m[f'hafd_resource_state{{resource="{res}",state="started"}}'] == 1
        assert m[f'hafd_resource_state{{resource="{res}",state="failed"}}'] == 0
        assert m[f'hafd_operations_total{{op="start",outcome="ok",resource="{res}"}}'] == 1
        assert m[f'hafd_operation_duration_seconds_count{{op="start",resource="{res}"}}'] == 1
        assert m[f'hafd_operation_duration_seconds_sum{{op="start",resource="{res}"}}'] > 0
        assert m[f'hafd_resource_failures{{resource="{res}"}}'] == 0
    assert m["hafd_failovers_total"] == 0  # becoming active at start-up is not a failover
    assert m["hafd_split_brain"] == 0
    # The server process is killed: a failed monitor (or its exit) and a restart show up.
    import json
    import os
    import signal

    pid = int(json.loads((solo.tmp / "state" / "server.pid").read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    solo.wait_for(lambda s: s["resources"]["server"]["failures"] == 1
                  and s["resources"]["server"]["state"] == "started", "restarted")
    key = 'hafd_operation_duration_seconds_count{op="monitor",resource="marker"}'
    deadline = time.monotonic() + 5  # marker is monitored every 0.2 s
    while (m := scrape(port, "/")).get(key, 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m['hafd_resource_failures{resource="server"}'] == 1
    assert m['hafd_operations_total{op="start",outcome="ok",resource="server"}'] == 2
    assert m['hafd_operation_duration_seconds_count{op="monitor",resource="marker"}'] >= 1, sorted(k for k in m if 'operation' in k and 'bucket' not in k)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=5)
    assert exc.value.code == 404
    assert solo.status()["role"] == "active"  # scrapes change nothing


def test_a_taken_port_does_not_stop_the_daemon(solo: Hafd) -> None:  # noqa: F811
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with open(solo.config, "a") as f:
            f.write(f"metrics:\n  listen: '127.0.0.1:{port}'\n")
        solo.start()
        solo.wait_for(lambda s: s["role"] == "active", "active")
        assert "metrics_listen_failed" in solo.logs()


def test_two_node_peer_and_link_metrics_from_a_status() -> None:
    """Peer and link liveness and loss come from the status dict (no second node needed)."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from hafd.io.metrics import Metrics as Endpoint

    status = {"version": "0.1.0", "node": "b", "cluster": "c", "role": "standby", "split_brain": None,
              "nodes": {"b": {"local": True, "state": "online"},
                        "a": {"local": False, "state": "lost", "links": {
                            "10.0.0.1": {"state": "down", "loss": 1.0, "last_seen_ago": 0.4},
                            "10.0.1.1": {"state": "up", "loss": 0.25, "last_seen_ago": None}}}},
              "resources": {}, "rejected_packets": {"bad_mac": 3}}
    ep = Endpoint("127.0.0.1", 0, lambda: status, lambda: {"failovers": 2, "last_failover_seconds": 0.52})
    m = parse(generate_latest(ep.registry).decode())
    assert m['hafd_peer_up{peer="a"}'] == 0
    assert m['hafd_link_up{link="10.0.0.1",peer="a"}'] == 0 and m['hafd_link_up{link="10.0.1.1",peer="a"}'] == 1
    assert m['hafd_link_heartbeat_loss_ratio{link="10.0.1.1",peer="a"}'] == 0.25
    assert m['hafd_link_last_heard_seconds{link="10.0.0.1",peer="a"}'] == 0.4
    assert 'hafd_link_last_heard_seconds{link="10.0.1.1",peer="a"}' not in m
    assert m['hafd_rejected_packets_total{reason="bad_mac"}'] == 3
    assert m["hafd_failovers_total"] == 2 and m["hafd_last_failover_duration_seconds"] == 0.52
    assert m['hafd_role{role="standby"}'] == 1
