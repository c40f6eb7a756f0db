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

from hafd import ctl, protocol

DRBD_ENV = {"DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "1", "DRBD_NODE_ID_0": "nodeone", "DRBD_NODE_ID_1": "nodetwo"}


def test_the_request_is_one_the_daemon_accepts() -> None:
    assert ctl.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    req = protocol.decode_request(ctl.handler_request("fence-peer", DRBD_ENV))
    assert (req.command, dict(req.args)) == ("fence-peer", {"resource": "r0", "peer": "nodetwo"})
    req = protocol.decode_request(ctl.handler_request("unfence-peer", DRBD_ENV))
    assert (req.command, dict(req.args)) == ("unfence-peer", {"resource": "r0"})


def test_handler_args_without_drbd_environment_are_empty() -> None:
    assert ctl.drbd_handler_args({}) == {}
    assert ctl.drbd_handler_args({"DRBD_PEER_NODE_ID": "3"}) == {}  # no name for node 3


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


@pytest.mark.parametrize("argv", [[], ["status"], ["fence-peer", "--peer", "x"], ["--socket", "/s", "fence-peer"]])
def test_other_invocations_go_to_the_full_cli(argv: list[str]) -> None:
    assert ctl.fast_handler(argv, DRBD_ENV) is None


def test_no_daemon_falls_back_to_the_full_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctl, "DEFAULT_SOCKET", str(tmp_path / "none.sock"))
    assert ctl.fast_handler(["fence-peer"], DRBD_ENV) is None


@pytest.fixture
def fake_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """A one-connection-at-a-time server: answers queued replies, records requests."""
    path = str(tmp_path / "hafd.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(10)
    monkeypatch.setattr(ctl, "DEFAULT_SOCKET", path)
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
    assert ctl.fast_handler(["fence-peer"], DRBD_ENV) == 7
    assert json.loads(requests[0])["args"] == {"resource": "r0", "peer": "nodetwo"}
    assert capsys.readouterr().out == "nodetwo fenced\n"


def test_daemon_hanging_up_without_answer_is_helper_broken(
        fake_daemon: tuple[list[bytes], list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.fast_handler(["unfence-peer"], DRBD_ENV) == 1
    assert "without answering" in capsys.readouterr().err


def test_hafctl_entry_point_uses_the_full_cli_for_everything_else() -> None:
    hafctl = str(Path(sys.executable).parent / "hafctl")
    r = subprocess.run([hafctl, "--socket", "/nonexistent/hafd.sock", "status"], capture_output=True, text=True,
                       timeout=30, env={**os.environ, "LC_ALL": "C"})
    assert r.returncode != 0 and "not running" in r.stderr
