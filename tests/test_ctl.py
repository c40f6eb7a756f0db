"""hafctl's DRBD-handler fast path (hafd/ctl.py): same request, same exit codes, less start-up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hafd import cli, ctl, protocol

DRBD_ENV = {"DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "1", "DRBD_NODE_ID_0": "nodeone", "DRBD_NODE_ID_1": "nodetwo"}


@pytest.mark.parametrize(
    ("argv", "command", "args"),
    [
        (["fence-peer"], "fence-peer", {"resource": "r0", "peer": "nodetwo"}),
        (["unfence-peer"], "unfence-peer", {"resource": "r0"}),
        (["failover"], "failover", {}),
        (["failover", "--to", "nodetwo"], "failover", {"to": "nodetwo"}),
        (["failover", "--to=nodetwo"], "failover", {"to": "nodetwo"}),
        (["standby"], "standby", {}),
        (["unstandby", "nodeone"], "unstandby", {"node": "nodeone"}),
        (["cleanup", "dhcpd"], "cleanup", {"resource": "dhcpd"}),
        (["reload"], "reload", {}),
    ],
)
def test_fast_requests_are_ones_the_daemon_accepts(argv: list[str], command: str, args: dict[str, str]) -> None:
    assert ctl.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    parsed = ctl.fast_args(argv, DRBD_ENV)
    assert parsed == (command, args)
    req = protocol.decode_request(ctl.encode(*parsed))
    assert (req.command, dict(req.args)) == (command, args)


@pytest.mark.parametrize("argv", [
    [], ["status"], ["status", "--json"], ["history"], ["-h"], ["--socket", "/s", "failover"], ["failover", "nodetwo"],
    ["failover", "--to"], ["failover", "--to", "-x"], ["failover", "--to="], ["standby", "-h"], ["standby", "a", "b"],
    ["reload", "x"], ["fence-peer", "--peer", "x"], ["unfence-peer", "--resource", "r1"], ["keygen"],
])
def test_other_invocations_go_to_the_full_cli(argv: list[str]) -> None:
    assert ctl.fast_args(argv, DRBD_ENV) is None
    assert ctl.fast(argv, DRBD_ENV) is None


def test_handler_args_without_drbd_environment_are_empty() -> None:
    assert ctl.drbd_handler_args({}) == {}
    assert ctl.drbd_handler_args({"DRBD_PEER_NODE_ID": "3"}) == {}  # no name for node 3


def test_a_config_naming_another_socket_sends_everything_to_the_full_cli(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "hafd.yaml"
    monkeypatch.setattr(ctl, "DEFAULT_CONFIG_PATH", str(cfg))
    assert ctl.default_socket_applies()  # no config file: the full CLI would use the default too
    cfg.write_text("cluster:\n  name: dhcp\n  control_socket: /run/hafd/hafd.sock  # the default\n")
    assert ctl.default_socket_applies()
    cfg.write_text("cluster:\n  name: dhcp\n  control_socket: /run/other/hafd.sock\n")
    assert not ctl.default_socket_applies()
    assert ctl.fast(["failover"], DRBD_ENV) is None


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"version": 1, "ok": True, "result": {"exit_code": 7, "message": "nodetwo fenced"}}, 7),
        ({"version": 1, "ok": True, "result": {"exit_code": 4}}, 4),
        ({"version": 1, "ok": True, "result": {}}, 0),
        ({"version": 1, "ok": False, "error": {"code": "busy", "message": "reloading"}}, 1),
        ({"version": 1, "ok": True, "result": {"exit_code": 300}}, 1),
        ({"version": 1, "ok": True, "result": {"exit_code": True}}, 1),
        ({"version": 1, "ok": True, "result": {"exit_code": "7"}}, 1),
        ({"version": 1, "ok": True, "result": []}, 1),
        ([1, 2], 1),
    ],
)
def test_exit_code_comes_from_the_answer_and_anything_odd_means_helper_broken(answer: object, code: int) -> None:
    assert ctl.handler_exit(json.dumps(answer).encode() + b"\n")[0] == code


def test_garbage_answer_means_helper_broken() -> None:
    assert ctl.handler_exit(b"\xff{not json")[0] == 1


def test_no_daemon_falls_back_to_the_full_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctl, "DEFAULT_SOCKET", str(tmp_path / "none.sock"))
    monkeypatch.setattr(ctl, "DEFAULT_CONFIG_PATH", str(tmp_path / "none.yaml"))
    assert ctl.fast(["fence-peer"], DRBD_ENV) is None
    assert ctl.fast(["failover"], DRBD_ENV) is None


@pytest.fixture
def fake_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """A one-connection-at-a-time server: answers queued replies, records requests."""
    path = str(tmp_path / "hafd.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(10)
    monkeypatch.setattr(ctl, "DEFAULT_SOCKET", path)
    monkeypatch.setattr(ctl, "DEFAULT_CONFIG_PATH", str(tmp_path / "none.yaml"))
    requests: list[bytes] = []
    replies: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                requests.append(data)
                if replies:
                    conn.sendall(replies.pop(0))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield requests, replies
    srv.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
    srv.close()
    t.join(timeout=10)


def test_fast_path_sends_the_request_and_exits_with_the_daemons_code(
        fake_daemon: tuple[list[bytes], list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    requests, replies = fake_daemon
    replies.append(b'{"version": 1, "ok": true, "result": {"exit_code": 7, "message": "nodetwo fenced"}}\n')
    assert ctl.fast(["fence-peer"], DRBD_ENV) == 7
    assert json.loads(requests[0])["args"] == {"resource": "r0", "peer": "nodetwo"}
    assert capsys.readouterr().out == "nodetwo fenced\n"


def test_daemon_hanging_up_without_answer_is_helper_broken(
        fake_daemon: tuple[list[bytes], list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.fast(["unfence-peer"], DRBD_ENV) == 1
    assert "without answering" in capsys.readouterr().err


def test_failover_prints_the_daemons_message(
        fake_daemon: tuple[list[bytes], list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    requests, replies = fake_daemon
    replies.append(b'{"version": 1, "ok": true, "result": {"message": "nodetwo is active (switchover took 0.1 s)"}}\n')
    assert ctl.fast(["failover", "--to", "nodetwo"], {}) == 0
    assert json.loads(requests[0]) == {"version": 1, "command": "failover", "args": {"to": "nodetwo"}}
    assert capsys.readouterr().out == "nodetwo is active (switchover took 0.1 s)\n"


def test_errors_are_worded_and_mapped_by_the_full_cli(
        fake_daemon: tuple[list[bytes], list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    _, replies = fake_daemon
    replies.append(b'{"version": 1, "ok": false, "error": {"code": "unknown_node", "message": "unknown node \'x\'", '
                   b'"details": {"known": ["nodeone", "nodetwo"]}}}\n')
    assert ctl.fast(["standby", "x"], {}) == 1
    assert capsys.readouterr().err == "hafctl: standby: unknown_node: unknown node 'x'\n  known: nodeone, nodetwo\n"
    replies.append(b'{"version": 1, "ok": false, "error": {"code": "permission_denied", "message": "root only"}}\n')
    assert ctl.fast(["reload"], {}) == cli.EXIT_PERMISSION
    replies.append(b'{"version": 1, "ok": true, "result": {"changed": []}}\n')
    assert ctl.fast(["reload"], {}) == 0
    assert "reload: ok" in capsys.readouterr().out


def test_a_hang_up_is_a_protocol_error(fake_daemon: tuple[list[bytes], list[bytes]]) -> None:
    assert ctl.fast(["failover"], {}) == cli.EXIT_PROTOCOL


def test_hafctl_entry_point_uses_the_full_cli_for_everything_else() -> None:
    hafctl = str(Path(sys.executable).parent / "hafctl")
    r = subprocess.run([hafctl, "--socket", "/nonexistent/hafd.sock", "status"], capture_output=True, text=True,
                       timeout=30, env={**os.environ, "LC_ALL": "C"})
    assert r.returncode != 0 and "not running" in r.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_the_c_json_halves_agree_with_json(value: object) -> None:
    text = ctl.json_dumps(value)
    assert text == json.dumps(value)
    assert ctl.json_loads(text.encode()) == json.loads(text)
    assert ctl.json_loads(f" \n{text}\r\t".encode()) == json.loads(text)


@pytest.mark.parametrize("bad", [b"", b"{", b"{} x", b"\xff{}", b"\xc2\xa0{}", b"[1,]", b"nul"])
def test_malformed_answers_raise_what_json_raises(bad: bytes) -> None:
    with pytest.raises(ValueError) as ours:
        ctl.json_loads(bad)
    with pytest.raises(ValueError) as theirs:
        json.loads(bad)
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


def test_the_fast_path_imports_neither_json_nor_socket() -> None:
    """They cost ~15 ms of every `hafctl fence-peer` / `hafctl failover` start (re, enum, selectors)."""
    code = "import sys; base = set(sys.modules); import hafd.ctl; print(' '.join(sorted(set(sys.modules) - base)))"
    added = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not added & {"json", "socket", "re", "enum", "selectors", "typing", "collections"}, added
