"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Iterator

import pytest

from hafd.io.sdnotify import notify, watchdog_interval


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    try:
        yield sock
    finally:
        sock.close()


def test_unset_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_path_socket(receiver: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    receiver.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify("READY=1\nSTATUS=active on nodeone") is True
    assert receiver.recv(4096) == b"READY=1\nSTATUS=active on nodeone"


def test_abstract_socket(receiver: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"hafd-test-{secrets.token_hex(6)}"
    receiver.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    assert notify("WATCHDOG=1") is True
    assert receiver.recv(4096) == b"WATCHDOG=1"


def test_dead_socket_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")  # a form we do not speak
    assert notify("READY=1") is False


@pytest.mark.parametrize(
    "usec,pid,expected",
    [
        (None, None, None),
        ("2000000", None, 1.0),
        ("2000000", "self", 1.0),
        ("2000000", "other", None),
        ("500000", "", 0.25),
        ("0", None, None),
        ("abc", None, None),
        ("2000000", "notapid", None),
    ],
)
def test_watchdog_interval(usec: str | None, pid: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(var, value)
    assert watchdog_interval() == expected
