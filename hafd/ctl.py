"""hafctl's entry point, with a stdlib-only fast path for the commands that move the service.

`hafctl failover` and DRBD's `hafctl fence-peer` are on the clock: a switchover is timed
from the command, and DRBD runs its fence-peer handler inside a promotion with I/O
frozen.  Building the full CLI (argparse, the protocol module's dataclasses, and PyYAML
with the whole config model just to find the control socket) costs several times the
~20 ms a Python process needs to start.  So the plain forms of the operator commands
(`failover [--to NODE]`, `standby|unstandby [NODE]`, `cleanup [RESOURCE]`, `reload`,
`fence-peer`, `unfence-peer`, with no global options) talk to the default socket with
nothing but os and the C halves of socket and json (`_socket`, `_json`): `import json`
pulls in re and enum, `import socket` enum and selectors, together ~15 ms of the start
(`python -X importtime`), more than the exchange itself.  Everything else, and every case where the fast path
cannot connect or the daemon answers with an error, goes to `hafd.cli`, so there is
still one place that defines hafctl's options, output and error messages.

The default socket is used only when the default config does not name another one
(a plain text check, no YAML: a line `control_socket: ...` with any other path sends the
invocation to the full CLI).  The request is the control-socket protocol's
(hafd/protocol.py; a test checks that the daemon's decoder accepts it).
"""

from __future__ import annotations

import _json
import _socket
import os
import sys

TYPE_CHECKING = False  # typing's own constant costs an import; annotations are never evaluated here
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence  # collections.abc alone costs ~2.5 ms

from hafd.paths import DEFAULT_CONFIG_PATH, DEFAULT_SOCKET

PROTOCOL_VERSION = 1  # hafd.protocol.PROTOCOL_VERSION, not imported for speed (a test keeps them equal)
# standby/failover answer only once resources have moved: allow a real failover.
COMMAND_TIMEOUT = 120.0
MAX_ANSWER = 4 * 1024 * 1024
HANDLER_COMMANDS = ("fence-peer", "unfence-peer")
# command -> the name of its one optional positional argument ("" if it takes none)
POSITIONAL = {"standby": "node", "unstandby": "node", "cleanup": "resource", "reload": "", "failover": "",
              "fence-peer": "", "unfence-peer": ""}


def drbd_handler_args(env: Mapping[str, str]) -> dict[str, str]:
    """What DRBD tells its fence-peer handler through the environment (see drbd.md)."""
    args: dict[str, str] = {}
    if env.get("DRBD_RESOURCE"):
        args["resource"] = env["DRBD_RESOURCE"]
    peer_id = env.get("DRBD_PEER_NODE_ID")
    if peer_id and env.get(f"DRBD_NODE_ID_{peer_id}"):
        args["peer"] = env[f"DRBD_NODE_ID_{peer_id}"]
    return args


def fast_args(argv: Sequence[str], env: Mapping[str, str]) -> tuple[str, dict[str, str]] | None:
    """(command, args) for an invocation the fast path may send; None: the full CLI's job."""
    if not argv or argv[0] not in POSITIONAL:
        return None
    command, rest = argv[0], list(argv[1:])
    if command in HANDLER_COMMANDS:
        if rest:
            return None
        args = drbd_handler_args(env)
        if command == "unfence-peer":
            args.pop("peer", None)
        return command, args
    if command == "failover":
        if not rest:
            return command, {}
        if len(rest) == 2 and rest[0] == "--to" and _plain(rest[1]):
            return command, {"to": rest[1]}
        if len(rest) == 1 and rest[0].startswith("--to=") and _plain(rest[0][5:]):
            return command, {"to": rest[0][5:]}
        return None
    key = POSITIONAL[command]
    if not rest:
        return command, {}
    if key and len(rest) == 1 and _plain(rest[0]):
        return command, {key: rest[0]}
    return None


def _plain(word: str) -> bool:
    """A name, not an option or something argparse would treat specially."""
    return bool(word) and not word.startswith("-")


def default_socket_applies() -> bool:
    """False when the default config sets another control socket (so only the full CLI knows where)."""
    try:
        with open(DEFAULT_CONFIG_PATH, "rb") as f:
            text = f.read(1024 * 1024)
    except OSError:
        return True  # no readable config: the full CLI would fall back to the default socket too
    for line in text.splitlines():
        if line.strip().startswith(b"control_socket") and DEFAULT_SOCKET.encode() not in line:
            return False
    return True


class _ScanContext:
    """What _json.make_scanner reads from a json.JSONDecoder (json.loads' defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(word: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[word]


def _reject(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def json_dumps(obj: object) -> str:
    """json.dumps(obj) with its defaults, without importing json."""
    enc = _json.make_encoder({}, _reject, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return "".join(enc(obj, 0))


def json_loads(data: bytes) -> object:
    """json.loads(data) without importing json for a well-formed UTF-8 document; anything
    else is handed to json itself, so errors are exactly json's."""
    try:
        text = data.decode("utf-8")
        start = len(text) - len(text.lstrip(" \t\n\r"))
        obj, end = _json.make_scanner(_ScanContext())(text, start)
        if text[end:].strip(" \t\n\r"):
            raise ValueError("extra data")
        return obj
    except Exception:  # noqa: BLE001 - json re-reads it and raises its own error
        import json

        return json.loads(data)


def encode(command: str, args: Mapping[str, str]) -> bytes:
    return json_dumps({"version": PROTOCOL_VERSION, "command": command, "args": dict(args)}).encode() + b"\n"


def handler_exit(answer: bytes) -> tuple[int, str]:
    """DRBD's exit code and the line to print, from the daemon's answer; (1, why) if unusable.

    1 is what DRBD reads as "helper broken": it keeps I/O frozen, the safe answer when
    we cannot tell whether the peer still writes.
    """
    result, why = _ok_result(answer)
    if result is None:
        return 1, why
    code = result.get("exit_code", 0)
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
        return 1, f"unexpected exit code from hafd: {code!r}"
    return code, str(result.get("message", "ok"))


def _ok_result(answer: bytes) -> tuple[dict | None, str]:
    try:
        response: object = json_loads(answer)
    except ValueError:
        return None, "unexpected answer from hafd: not JSON"
    if not isinstance(response, dict):
        return None, "unexpected answer from hafd: not an object"
    if response.get("ok") is not True:
        error = response.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return None, str(message or "hafd refused the request")
    result = response.get("result")
    if not isinstance(result, dict):
        return None, "unexpected answer from hafd: no result"
    return result, ""


def exchange(request: bytes, path: str = "") -> bytes | None:
    """Send one request, read one answer; None if nothing was sent (cannot connect)."""
    path = path or DEFAULT_SOCKET
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(COMMAND_TIMEOUT)
        try:
            sock.connect(path)
        except OSError:
            return None  # not running, elsewhere, or no permission: the full CLI explains which
        chunks: list[bytes] = []
        size = 0
        try:
            sock.sendall(request)
            sock.shutdown(_socket.SHUT_WR)
            while size <= MAX_ANSWER:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if chunk.endswith(b"\n"):
                    break
        except OSError:
            pass  # what arrived, if anything, is judged below like any other answer
        return b"".join(chunks)
    finally:
        sock.close()


def fast(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """The exit code of a fast-path invocation, or None when the full CLI must handle it."""
    parsed = fast_args(argv, env)
    if parsed is None or not default_socket_applies():
        return None
    command, args = parsed
    answer = exchange(encode(command, args))
    if answer is None:
        return None
    if not answer:
        print(f"hafctl: {command}: hafd closed the connection on {DEFAULT_SOCKET} without answering", file=sys.stderr)
        return 1 if command in HANDLER_COMMANDS else 5  # hafd.cli.EXIT_PROTOCOL
    if command in HANDLER_COMMANDS:
        code, message = handler_exit(answer)
        if code == 1:
            print(f"hafctl: {command}: {message}", file=sys.stderr)
        else:
            print(message)
        return code
    result, _ = _ok_result(answer)
    if result is not None and isinstance(result.get("message"), str):
        print(result["message"])
        return 0
    from hafd import cli  # an error or an unusual answer: worded and mapped by the full CLI

    try:
        cli.print_result(command, cli.result_of(answer))
    except cli.ClientError as exc:
        return cli.report(command, exc)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = fast(args, os.environ)
    if code is not None:
        return code
    from hafd.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
