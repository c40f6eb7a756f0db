"""systemd's readiness/watchdog protocol, in the stdlib (one datagram; no dependency).

hafd runs as `Type=notify` so that `systemctl start hafd` returns only once the daemon
is really up, and with `WatchdogSec=` so that a wedged event loop gets restarted: the
WATCHDOG=1 pings must come from the event loop itself, which is why this module only
sends and never schedules.  Outside systemd ($NOTIFY_SOCKET unset) everything is a no-op.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        return "\0" + addr[1:]  # abstract namespace
    if addr.startswith("/"):
        return addr
    if addr:
        log.warning("sd_notify_unsupported_socket", notify_socket=addr)
    return None


def notify(message: str) -> bool:
    """Send e.g. "READY=1\\nSTATUS=active" to systemd; True if the datagram went out.

    Non-blocking on purpose: it is called from the event loop, and a full queue must
    cost one missed message (the next watchdog ping comes half an interval later),
    never a stalled daemon.
    """
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(addr)
            sock.send(message.encode("utf-8"))
    except OSError as exc:
        log.warning("sd_notify_failed", message=message.split("\n", 1)[0], error=str(exc))
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None if no watchdog for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    try:
        if pid and int(pid) != os.getpid():
            return None  # meant for another process (we were started by a wrapper)
        value = int(usec)
    except ValueError:
        log.warning("sd_watchdog_env_invalid", watchdog_usec=usec, watchdog_pid=pid)
        return None
    if value <= 0:
        return None
    return value / 1_000_000 / 2
