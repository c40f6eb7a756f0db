"""hafctl's entry point, with a stdlib-only fast path for DRBD's handlers.

DRBD runs `hafctl fence-peer` inside a promotion with I/O frozen, so every millisecond
of it is part of the failover.  Building the full CLI (argparse, the protocol module's
dataclasses) costs about 25 ms of the 45 ms a Python process needs before it can send
anything; this module answers the one form DRBD uses, `hafctl fence-peer` /
`hafctl unfence-peer` with no options and hafd at its default socket, with nothing but
os, socket and json.  Every other form, and every case where the fast path cannot
connect, goes to `hafd.cli`, so there is still one place that defines hafctl's options
and error messages.  The request is the control-socket protocol's (hafd/protocol.py;
a test checks that the daemon's decoder accepts it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence  # not typing: importing it costs 2 ms here

from hafd.paths import DEFAULT_SOCKET

PROTOCOL_VERSION = 1  # hafd.protocol.PROTOCOL_VERSION, not imported for speed (a test keeps them equal)
HANDLER_COMMANDS = ("fence-peer", "unfence-peer")
HANDLER_TIMEOUT = 30.0  # hafctl's COMMAND_TIMEOUT: fencing may take a while, and DRBD waits
MAX_ANSWER = 1024 * 1024


def drbd_handler_args(env: Mapping[str, str]) -> dict[str, str]:
    """What DRBD tells its fence-peer handler through the environment (see drbd.md)."""
    args: dict[str, str] = {}
    if env.get("DRBD_RESOURCE"):
        args["resource"] = env["DRBD_RESOURCE"]
    peer_id = env.get("DRBD_PEER_NODE_ID")
    if peer_id and env.get(f"DRBD_NODE_ID_{peer_id}"):
        args["peer"] = env[f"DRBD_NODE_ID_{peer_id}"]
    return args


def handler_request(command: str, env: Mapping[str, str]) -> bytes:
    """The control-socket request DRBD's handler sends; unfence-peer names no peer."""
    args = drbd_handler_args(env)
    if command == "unfence-peer":
        args.pop("peer", None)
    return json.dumps({"version": PROTOCOL_VERSION, "command": command, "args": args}).encode() + b"\n"


def handler_exit(answer: bytes) -> tuple[int, str]:
    """DRBD's exit code and the line to print, from the daemon's answer; (1, why) if unusable.

    1 is what DRBD reads as "helper broken": it keeps I/O frozen, the safe answer when
    we cannot tell whether the peer still writes.
    """
    try:
        response: object = json.loads(answer)
    except ValueError:
        return 1, "unexpected answer from hafd: not JSON"
    if not isinstance(response, dict):
        return 1, "unexpected answer from hafd: not an object"
    if response.get("ok") is not True:
        error = response.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return 1, str(message or "hafd refused the request")
    result = response.get("result")
    if not isinstance(result, dict):
        return 1, "unexpected answer from hafd: no result"
    code = result.get("exit_code", 0)
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
        return 1, f"unexpected exit code from hafd: {code!r}"
    return code, str(result.get("message", "ok"))


def fast_handler(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """The handler's answer, or None when the full CLI must handle this invocation."""
    if len(argv) != 1 or argv[0] not in HANDLER_COMMANDS:
        return None
    command = argv[0]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(HANDLER_TIMEOUT)
        try:
            sock.connect(DEFAULT_SOCKET)
        except OSError:
            return None  # not running, elsewhere, or no permission: the full CLI explains which
        chunks: list[bytes] = []
        size = 0
        try:
            sock.sendall(handler_request(command, env))
            sock.shutdown(socket.SHUT_WR)
            while size <= MAX_ANSWER:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if chunk.endswith(b"\n"):
                    break
        except OSError as exc:
            print(f"hafctl: {command}: error talking to hafd on {DEFAULT_SOCKET}: {exc}", file=sys.stderr)
            return 1
    finally:
        sock.close()
    answer = b"".join(chunks)
    if not answer:
        print(f"hafctl: {command}: hafd closed the connection on {DEFAULT_SOCKET} without answering", file=sys.stderr)
        return 1
    code, message = handler_exit(answer)
    if code == 1:
        print(f"hafctl: {command}: {message}", file=sys.stderr)
    else:
        print(message)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = fast_handler(args, os.environ)
    if code is not None:
        return code
    from hafd.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
