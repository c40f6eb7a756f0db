"""hafctl end to end: real processes, a real ControlServer, and the documented exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from hafd import cli
from hafd.io.control import ControlServer
from hafd.protocol import RequestError

STATUS: dict[str, Any] = {
    "node": "nodeone", "cluster": "dhcp", "role": "active", "active_node": "nodeone", "since": 1_800_000_000.0,
    "reason": "nodeone has the highest priority of the online nodes.",
    "nodes": {"nodeone": {"state": "online", "local": True, "priority": 100, "role": "active", "links": {}}},
    "resources": {"dhcpd": {"type": "service", "state": "failed", "failures": 3, "last_error": "unit isc-dhcp-server failed"}},
    "warnings": ["no fencing configured"],
}

VALID_CONFIG = """\
cluster:
  name: test
  control_socket: {socket}
  key_file: {key}
nodes:
  nodeone:
    priority: 100
    links: [127.0.0.1]
resources:
  web:
    type: service
    unit: nginx
"""

INVALID_CONFIG = """\
cluster:
  name: test
  colour: blue
nodes:
  nodeone:
    links: [127.0.0.1]
resources:
  web:
    type: service
    unit: nginx
    requires: [nothing]
"""

SETPRIV = shutil.which("setpriv")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to drop to uid 65534")


async def handler(command: str, args: dict[str, Any]) -> dict[str, Any]:
    if command == "status":
        return STATUS
    if command == "standby" and args.get("node") == "ghost":
        raise RequestError("unknown_node", "unknown node 'ghost'", {"known": ["nodeone"]})
    if command == "reload":
        raise RequestError("invalid_config", "hafd.yaml:3: cluster.colour: unknown key", ["hafd.yaml:3: cluster.colour: unknown key"])
    if command == "failover":
        return {"message": f"moving the service to {args.get('to', 'the peer')}"}
    return {"node": args.get("node", "nodeone"), "standby": True}


async def hafctl(*args: str, uid: int | None = None, timeout: float = 30.0) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "hafd.cli", *args]
    if uid is not None:
        assert SETPRIV is not None
        argv = [SETPRIV, "--reuid", str(uid), "--regid", str(uid), "--clear-groups", *argv]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd="/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory uid 65534 can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="hafd-cli-", dir="/tmp"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[ControlServer]:
    srv = ControlServer(str(tmp_path / "hafd.sock"), handler, allowed_uids=frozenset({os.getuid()}))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


# --- talking to a daemon ------------------------------------------------------------


async def test_status_human_and_json(daemon: ControlServer) -> None:
    rc, out, err = await hafctl("--socket", daemon.path, "status")
    assert (rc, err) == (0, "")
    assert "nodeone is ACTIVE" in out and "why: nodeone has the highest priority of the online nodes." in out
    assert "FAILED" in out and "unit isc-dhcp-server failed" in out and "! no fencing configured" in out
    rc, out, err = await hafctl("--socket", daemon.path, "status", "--json")
    assert rc == 0 and json.loads(out) == STATUS


async def test_commands_and_their_output(daemon: ControlServer) -> None:
    rc, out, _ = await hafctl("--socket", daemon.path, "failover", "--to", "nodetwo")
    assert (rc, out) == (0, "moving the service to nodetwo\n")
    rc, out, _ = await hafctl("--socket", daemon.path, "standby")
    assert rc == 0 and out.splitlines() == ["standby: ok", "  node: nodeone", "  standby: true"]


async def test_daemon_errors_exit_1_with_code_and_details(daemon: ControlServer) -> None:
    rc, out, err = await hafctl("--socket", daemon.path, "standby", "ghost")
    assert (rc, out) == (1, "")
    assert err.splitlines() == ["hafctl: standby: unknown_node: unknown node 'ghost'", "  known: nodeone"]
    rc, _, err = await hafctl("--socket", daemon.path, "reload")
    assert rc == 1
    assert err.splitlines() == ["hafctl: reload: invalid_config: hafd.yaml:3: cluster.colour: unknown key"]


async def test_socket_path_comes_from_the_config(daemon: ControlServer, tmp_path: Path) -> None:
    config = tmp_path / "hafd.yaml"
    config.write_text(VALID_CONFIG.format(socket=daemon.path, key=tmp_path / "authkey"))
    rc, out, _ = await hafctl("--config", str(config), "status", "--json")
    assert rc == 0 and json.loads(out)["node"] == "nodeone"


async def test_no_daemon_exits_3(tmp_path: Path) -> None:
    missing = tmp_path / "none.sock"
    rc, out, err = await hafctl("--socket", str(missing), "status")
    assert (rc, out) == (3, "")
    assert err == f"hafctl: hafd is not running (no socket at {missing})\n"
    # A stale socket file with nobody listening: connection refused.
    stale = str(tmp_path / "stale.sock")
    srv = ControlServer(stale, handler)
    await srv.start()
    srv._inode = None  # leave the file behind as a crashed daemon would
    await srv.close()
    assert stat.S_ISSOCK(os.lstat(stale).st_mode)
    rc, _, err = await hafctl("--socket", stale, "status")
    assert rc == 3 and "nothing listens on" in err


def test_unreadable_or_invalid_config_falls_back_to_the_default_socket(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    path, note = cli._from_config(missing, "control_socket", cli.DEFAULT_SOCKET)
    assert path == cli.DEFAULT_SOCKET and note is not None and missing in note and cli.DEFAULT_SOCKET in note
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID_CONFIG)
    path, note = cli._from_config(str(bad), "control_socket", cli.DEFAULT_SOCKET)
    assert path == cli.DEFAULT_SOCKET and note is not None and "cluster.colour" in note


async def test_silent_daemon_times_out_with_5(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # reads nothing, answers nothing
        writer.close()

    path = str(tmp_path / "s.sock")
    server = await asyncio.start_unix_server(silent, path)
    try:
        rc, _, err = await hafctl("--socket", path, "--timeout", "0.5", "status")
    finally:
        release.set()
        server.close()
        await server.wait_closed()
    assert rc == 5 and "timed out waiting for hafd" in err


async def test_garbage_answer_exits_5(tmp_path: Path) -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"<html>hello</html>\n")
        await writer.drain()
        writer.close()

    path = str(tmp_path / "s.sock")
    server = await asyncio.start_unix_server(rude, path)
    try:
        rc, _, err = await hafctl("--socket", path, "status")
        with pytest.raises(cli.ClientError) as info:
            await asyncio.to_thread(cli.call, path, "status")
    finally:
        server.close()
        await server.wait_closed()
    assert rc == 5 and "unexpected answer from hafd" in err
    assert info.value.exit_code == 5


@needs_root
async def test_non_root_is_refused_by_the_socket_mode(open_dir: Path) -> None:
    srv = ControlServer(str(open_dir / "hafd.sock"), handler)  # default: root only
    await srv.start()
    try:
        rc, out, err = await hafctl("--socket", srv.path, "status", uid=65534)
    finally:
        await srv.close()
    assert (rc, out) == (4, "")
    assert err == f"hafctl: permission denied on {srv.path} (run as root)\n"


@needs_root
async def test_non_root_is_refused_by_peer_credentials(open_dir: Path) -> None:
    srv = ControlServer(str(open_dir / "hafd.sock"), handler)
    await srv.start()
    try:
        os.chmod(srv.path, 0o666)  # only SO_PEERCRED stands in the way now
        rc, out, err = await hafctl("--socket", srv.path, "status", uid=65534)
        rc_root, _, _ = await hafctl("--socket", srv.path, "status")
    finally:
        await srv.close()
    assert (rc, out) == (4, "")
    assert err == "hafctl: uid 65534 may not use the hafd control socket (root only)\n"
    assert rc_root == 0


# --- usage --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["bogus"], ["standby", "a", "b"], ["standby", " spaced "], ["failover", "nodetwo"], ["--timeout", "x", "status"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: hafctl" in capsys.readouterr().err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for line in ("3  hafd is not running", "4  permission denied", "5  protocol error or timeout"):
        assert line in out
    assert "Exit codes" in (cli.__doc__ or "") and "5  protocol error" in (cli.__doc__ or "")


# --- offline commands ---------------------------------------------------------------


def test_check_config_ok_prints_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hafd.yaml"
    config.write_text(VALID_CONFIG.format(socket=tmp_path / "s.sock", key=tmp_path / "authkey"))
    assert cli.main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{config}: OK"
    assert all(line.startswith("warning: ") for line in out[1:])


def test_check_config_uses_the_config_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "other.yaml"
    config.write_text(VALID_CONFIG.format(socket=tmp_path / "s.sock", key=tmp_path / "authkey"))
    assert cli.main(["--config", str(config), "check-config"]) == 0
    assert capsys.readouterr().out.startswith(f"{config}: OK")


def test_check_config_invalid_exits_1_with_located_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hafd.yaml"
    config.write_text(INVALID_CONFIG)
    assert cli.main(["check-config", str(config)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{config}:3: cluster.colour" in captured.err
    assert "nothing" in captured.err
    assert captured.err.rstrip().splitlines()[-1].startswith(f"hafctl: {config}: invalid (")


def test_check_config_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(tmp_path / "absent.yaml")]) == 1
    assert "absent.yaml" in capsys.readouterr().err


def test_keygen_writes_a_private_key_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "authkey"
    assert cli.main(["keygen", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_text()
    assert len(first) == 65 and first.endswith("\n") and int(first[:64], 16) >= 0
    assert cli.main(["keygen", str(key)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert key.read_text() == first
    assert cli.main(["keygen", "--force", str(key)]) == 0
    second = key.read_text()
    assert second != first and len(second) == 65
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authkey"]  # no temp files left


def test_keygen_default_path_from_config(tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    config = tmp_path / "hafd.yaml"
    config.write_text(VALID_CONFIG.format(socket=tmp_path / "s.sock", key=key))
    assert cli.main(["--config", str(config), "keygen"]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_keygen_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keygen", str(tmp_path / "no" / "authkey")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_keygen_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / "authkey").symlink_to(target)
    assert cli.main(["keygen", str(tmp_path / "authkey")]) == 1
    assert target.read_text() == "keep"
