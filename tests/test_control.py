"""A real ControlServer on a temporary socket, with a fake daemon handler behind it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
from structlog.testing import capture_logs

from hafd import cli
from hafd.io.control import ControlServer, ControlSocketError, peer_credentials
from hafd.protocol import MAX_REQUEST, RequestError, decode_response, encode_request

STATUS = {"node": "nodeone", "cluster": "dhcp", "role": "active", "active_node": "nodeone", "reason": "highest priority"}


async def fake_handler(command: str, args: dict[str, Any]) -> Any:
    if command == "status":
        return STATUS
    if command == "standby":
        if args.get("node") == "ghost":
            raise RequestError("unknown_node", "no node named 'ghost'", {"known": ["nodeone", "nodetwo"]})
        return {"message": f"{args.get('node', 'nodeone')} is now in standby"}
    if command == "reload":
        raise RuntimeError("kaboom")
    if command == "cleanup":
        return {"when": object()}  # not JSON
    if command == "failover":
        return ["not", "a", "dict"]
    raise AssertionError(command)


async def until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait (bounded) for a condition the server exposes no event for."""
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ControlServer]:
    srv = ControlServer(str(tmp_path / "run" / "hafd.sock"), fake_handler, allowed_uids=frozenset({os.getuid()}))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def raw(path: str, data: bytes, *, eof: bool = True) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data)
        if eof:
            writer.write_eof()
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed the connection
    finally:
        writer.close()
    return json.loads(line)


async def call(path: str, command: str, args: dict[str, str] | None = None) -> dict[str, Any]:
    return await asyncio.to_thread(cli.call, path, command, args, timeout=5)


async def test_status_round_trip_through_the_hafctl_client(server: ControlServer) -> None:
    assert await call(server.path, "status") == STATUS
    assert await call(server.path, "standby", {"node": "nodetwo"}) == {"message": "nodetwo is now in standby"}


async def test_socket_file_and_directory_modes(tmp_path: Path, server: ControlServer) -> None:
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) & 0o7 == 0  # created without access for others


@pytest.mark.parametrize(
    "data,code,fragment",
    [
        (b"\x00\x01garbage\n", "bad_request", "not valid JSON"),
        (b"[1]\n", "bad_request", "must be a JSON object"),
        (b'{"version": 3, "command": "status"}\n', "unsupported_version", "version 3"),
        (b'{"version": 1, "command": "selfdestruct"}\n', "unknown_command", "selfdestruct"),
        (b'{"version": 1, "command": "standby", "args": {"node": 1}}\n', "invalid_argument", "must be a string"),
        (b"x" * (MAX_REQUEST + 10) + b"\n", "bad_request", "too long"),
        (b"y" * (3 * MAX_REQUEST), "bad_request", "too long"),
    ],
)
async def test_bad_requests_get_structured_errors_and_the_server_keeps_serving(
    server: ControlServer, data: bytes, code: str, fragment: str
) -> None:
    answer = await raw(server.path, data)
    assert answer["version"] == 1 and answer["ok"] is False
    assert answer["error"]["code"] == code
    assert fragment in answer["error"]["message"]
    assert await call(server.path, "status") == STATUS
    await until(lambda: server.connections == 0)


async def test_handler_request_error_is_passed_through(server: ControlServer) -> None:
    answer = await raw(server.path, encode_request("standby", {"node": "ghost"}))
    assert answer["error"] == {"code": "unknown_node", "message": "no node named 'ghost'",
                               "details": {"known": ["nodeone", "nodetwo"]}}
    with pytest.raises(cli.ClientError) as info:
        await call(server.path, "standby", {"node": "ghost"})
    assert info.value.exit_code == cli.EXIT_ERROR and info.value.code == "unknown_node"


async def test_handler_crash_is_internal_logged_and_survived(server: ControlServer) -> None:
    with capture_logs() as logs:
        answer = await raw(server.path, encode_request("reload"))
    assert answer["error"]["code"] == "internal"
    assert "kaboom" in answer["error"]["message"] and "RuntimeError" in answer["error"]["message"]
    crash = [e for e in logs if e["event"] == "control_handler_crashed"]
    assert crash and crash[0]["log_level"] == "error" and crash[0].get("exc_info")
    assert await call(server.path, "status") == STATUS


@pytest.mark.parametrize("command", ["cleanup", "failover"])
async def test_bad_handler_results_are_internal_errors(server: ControlServer, command: str) -> None:
    answer = await raw(server.path, encode_request(command))
    assert answer["error"]["code"] == "internal"
    assert await call(server.path, "status") == STATUS


async def test_uid_not_allowed_is_refused(tmp_path: Path) -> None:
    srv = ControlServer(str(tmp_path / "s.sock"), fake_handler, allowed_uids=frozenset({4242}))
    await srv.start()
    try:
        with capture_logs() as logs:
            answer = await raw(srv.path, encode_request("status"))
        assert answer["error"]["code"] == "permission_denied"
        assert f"uid {os.getuid()}" in answer["error"]["message"]
        assert any(e["event"] == "control_permission_denied" and e["uid"] == os.getuid() for e in logs)
        with pytest.raises(cli.ClientError) as info:
            await call(srv.path, "status")
        assert info.value.exit_code == cli.EXIT_PERMISSION
    finally:
        await srv.close()


async def test_peer_credentials_are_the_kernels() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert peer_credentials(a) == (os.getpid(), os.getuid(), os.getgid())


async def test_silent_client_times_out_with_an_error(tmp_path: Path) -> None:
    srv = ControlServer(str(tmp_path / "s.sock"), fake_handler, allowed_uids=frozenset({os.getuid()}), read_timeout=0.2)
    await srv.start()
    try:
        answer = await raw(srv.path, b'{"version": 1,', eof=False)  # never finishes its line
        assert answer["error"]["code"] == "bad_request"
        assert "no complete request within 0.2s" in answer["error"]["message"]
        await until(lambda: srv.connections == 0)
    finally:
        await srv.close()


async def test_probe_without_request_is_closed_quietly(server: ControlServer) -> None:
    reader, writer = await asyncio.open_unix_connection(server.path)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await until(lambda: server.connections == 0)
    assert await call(server.path, "status") == STATUS


async def test_close_cancels_connections_in_flight_and_removes_the_socket(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def slow(command: str, args: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()  # never answers
        return {}

    srv = ControlServer(str(tmp_path / "s.sock"), slow, allowed_uids=frozenset({os.getuid()}))
    await srv.start()
    reader, writer = await asyncio.open_unix_connection(srv.path)
    try:
        writer.write(encode_request("status"))
        await asyncio.wait_for(started.wait(), 5)
        assert srv.connections == 1
        await asyncio.wait_for(srv.close(), 5)
        assert srv.connections == 0
        assert not os.path.exists(srv.path)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # a file is left behind, nothing listens: a crashed daemon's socket
    dead.close()
    srv = ControlServer(path, fake_handler, allowed_uids=frozenset({os.getuid()}))
    await srv.start()
    try:
        assert await call(path, "status") == STATUS
    finally:
        await srv.close()


async def test_live_daemon_is_not_replaced(server: ControlServer) -> None:
    second = ControlServer(server.path, fake_handler)
    with pytest.raises(ControlSocketError, match="another hafd is running"):
        await second.start()
    await second.close()  # must not remove the first daemon's socket
    assert await call(server.path, "status") == STATUS


async def test_a_regular_file_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    path.write_text("precious")
    with pytest.raises(ControlSocketError, match="not a socket"):
        await ControlServer(str(path), fake_handler).start()
    assert path.read_text() == "precious"


async def test_close_leaves_a_newer_daemons_socket_alone(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    first = ControlServer(path, fake_handler, allowed_uids=frozenset({os.getuid()}))
    await first.start()
    os.unlink(path)  # e.g. an operator removed it and another daemon bound anew
    second = ControlServer(path, fake_handler, allowed_uids=frozenset({os.getuid()}))
    await second.start()
    try:
        await first.close()
        assert await call(path, "status") == STATUS
    finally:
        await second.close()
    assert not os.path.exists(path)


async def test_concurrent_clients(server: ControlServer) -> None:
    results = await asyncio.gather(*(call(server.path, "status") for _ in range(20)))
    assert results == [STATUS] * 20
    answers = await asyncio.gather(*(raw(server.path, b"junk\n") for _ in range(20)))
    assert {a["error"]["code"] for a in answers} == {"bad_request"}
    await until(lambda: server.connections == 0)


def test_response_wire_format_is_one_line(tmp_path: Path) -> None:
    # What the handler gets back from a real exchange decodes with the shared codec.
    async def main() -> bytes:
        srv = ControlServer(str(tmp_path / "s.sock"), fake_handler, allowed_uids=frozenset({os.getuid()}))
        async with srv:
            reader, writer = await asyncio.open_unix_connection(srv.path)
            writer.write(encode_request("status"))
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data

    data = asyncio.run(main())
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    assert decode_response(data).result == STATUS
