"""The control-socket protocol between `hafctl` and `hafd`: bytes <-> typed messages.

Pure (no I/O) so that both ends, and the tests, agree on one definition of what a
valid message is.  Every rejection is a `ProtocolError` carrying a stable error
*code* (for scripts and exit codes) and a human *message* (for operators).

Wire format: one request per connection, one JSON object terminated by a newline,
at most `MAX_REQUEST` bytes; the daemon answers with one JSON object and a newline.

    request:  {"version": 1, "command": "standby", "args": {"node": "nodeone"}}
    response: {"version": 1, "ok": true, "result": {...}}
              {"version": 1, "ok": false, "error": {"code": "unknown_node", "message": "...", "details": ...}}

Requests are strict (an unknown field or argument is an error, because a typo such as
`{"nodes": "x"}` silently ignored would put the *local* node in standby); responses
are read tolerantly so an older `hafctl` can talk to a newer daemon.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})
MAX_REQUEST = 64 * 1024  # bytes, newline included
# A status of many resources with their last errors can outgrow a request by far.
MAX_RESPONSE = 4 * 1024 * 1024
MAX_NAME = 255  # node and resource names are identifiers, not essays


class ErrorCode(enum.StrEnum):
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_ARGUMENT = "invalid_argument"
    UNKNOWN_RESOURCE = "unknown_resource"
    UNKNOWN_NODE = "unknown_node"
    INVALID_CONFIG = "invalid_config"
    PERMISSION_DENIED = "permission_denied"
    BUSY = "busy"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A message that cannot be accepted; `code` is one of `ErrorCode` (or a newer one)."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class RequestError(ProtocolError):
    """Raised by the daemon's command handler for an expected failure (unknown node...).

    The control server turns it into an error response as is; any other exception
    from a handler becomes `internal`.
    """


# Command name -> its optional arguments (all names, i.e. strings).  One table, so the
# server, the CLI and the docs cannot disagree on what a command accepts.
COMMANDS: Mapping[str, Mapping[str, str]] = {
    "status": {},
    "standby": {"node": "the node to put in standby (default: this node)"},
    "unstandby": {"node": "the node to bring back (default: this node)"},
    "cleanup": {"resource": "the resource whose failures to forget (default: all)"},
    "reload": {},
    "failover": {"to": "the node to move the service to (default: the peer)"},
    "fence-peer": {"resource": "the DRBD resource (DRBD_RESOURCE)", "peer": "the peer's host name (from DRBD_NODE_ID_*)"},
    "unfence-peer": {"resource": "the DRBD resource (DRBD_RESOURCE)"},
    "history": {"limit": "how many of the newest events to return (a whole number; default 50)"},
}


@dataclass(frozen=True)
class Request:
    command: str
    args: Mapping[str, Any] = field(default_factory=dict)
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str
    details: Any = None


@dataclass(frozen=True)
class Response:
    result: Mapping[str, Any] | None = None
    error: ErrorInfo | None = None
    version: int = PROTOCOL_VERSION

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def success(cls, result: Mapping[str, Any]) -> Response:
        return cls(result=result)

    @classmethod
    def failure(cls, code: str, message: str, details: Any = None) -> Response:
        return cls(error=ErrorInfo(str(code), message, details))

    @classmethod
    def from_error(cls, exc: ProtocolError) -> Response:
        return cls.failure(exc.code, exc.message, exc.details)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(data: bytes, limit: int, what: str) -> Any:
    if len(data) > limit:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{what} is too long ({len(data)} bytes, at most {limit})")
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    if "\n" in text:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{what} must be a single line of JSON")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{what} is not valid JSON: {exc}") from None


def _dumps(obj: Mapping[str, Any]) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON and other tools (jq) reject them.
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_args(command: str, args: Any) -> dict[str, str]:
    """Check `args` against the command's table entry; returns a plain dict copy."""
    if command not in COMMANDS:
        known = ", ".join(sorted(COMMANDS))
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {command!r} (known: {known})")
    if not isinstance(args, Mapping):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'args' must be an object, not {type(args).__name__}")
    allowed = COMMANDS[command]
    out: dict[str, str] = {}
    for key, value in args.items():
        if key not in allowed:
            accepts = ", ".join(sorted(allowed)) or "no arguments"
            raise ProtocolError(
                ErrorCode.INVALID_ARGUMENT,
                f"{command}: unknown argument {key!r} (accepts {accepts})",
                {"argument": key},
            )
        if not isinstance(value, str):
            raise ProtocolError(
                ErrorCode.INVALID_ARGUMENT,
                f"{command}: {key} must be a string, not {type(value).__name__}",
                {"argument": key},
            )
        if not value or len(value) > MAX_NAME or not value.isprintable() or value != value.strip():
            raise ProtocolError(
                ErrorCode.INVALID_ARGUMENT,
                f"{command}: {key} {value[:MAX_NAME]!r} is not a valid name",
                {"argument": key},
            )
        out[key] = value
    return out


def encode_request(command: str, args: Mapping[str, Any] | None = None) -> bytes:
    """Validate and serialise; the CLI fails here before it ever connects."""
    clean = validate_args(command, dict(args or {}))
    data = _dumps({"version": PROTOCOL_VERSION, "command": command, "args": clean})
    if len(data) > MAX_REQUEST:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"request is too long ({len(data)} bytes, at most {MAX_REQUEST})")
    return data


def decode_request(data: bytes) -> Request:
    obj = _loads(data, MAX_REQUEST, "request")
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"request must be a JSON object, not {type(obj).__name__}")
    if "version" not in obj:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "request has no 'version'")
    version = obj["version"]
    if not _is_int(version):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'version' must be an integer, not {type(version).__name__}")
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version} is not supported (this hafd speaks {sorted(SUPPORTED_VERSIONS)})",
            {"supported": sorted(SUPPORTED_VERSIONS)},
        )
    unknown = sorted(set(obj) - {"version", "command", "args"})
    if unknown:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown field(s) in request: {', '.join(unknown)}")
    command = obj.get("command")
    if not isinstance(command, str) or not command:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "request has no 'command' string")
    args = validate_args(command, obj.get("args", {}))
    return Request(command=command, args=args, version=version)


def encode_response(response: Response) -> bytes:
    """Serialise; a result that is not plain JSON raises `ProtocolError(internal)`."""
    obj: dict[str, Any] = {"version": response.version, "ok": response.ok}
    if response.error is None:
        obj["result"] = dict(response.result or {})
    else:
        err: dict[str, Any] = {"code": response.error.code, "message": response.error.message}
        if response.error.details is not None:
            err["details"] = response.error.details
        obj["error"] = err
    try:
        data = _dumps(obj)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(ErrorCode.INTERNAL, f"response is not JSON-serialisable: {exc}") from None
    if len(data) > MAX_RESPONSE:
        raise ProtocolError(ErrorCode.INTERNAL, f"response is too long ({len(data)} bytes, at most {MAX_RESPONSE})")
    return data


def decode_response(data: bytes) -> Response:
    """Parse the daemon's answer; a malformed one raises `ProtocolError(bad_request)`."""
    obj = _loads(data, MAX_RESPONSE, "response")
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"response must be a JSON object, not {type(obj).__name__}")
    version = obj.get("version")
    if not _is_int(version):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "response has no integer 'version'")
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION, f"the daemon answered with protocol version {version}, expected 1"
        )
    ok = obj.get("ok")
    if ok is True:
        result = obj.get("result", {})
        if not isinstance(result, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "response 'result' must be an object")
        return Response(result=result, version=version)
    if ok is False:
        err = obj.get("error")
        if not isinstance(err, dict) or not isinstance(err.get("code"), str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "error response has no 'error.code'")
        message = err.get("message")
        return Response(
            error=ErrorInfo(err["code"], message if isinstance(message, str) else err["code"], err.get("details")),
            version=version,
        )
    raise ProtocolError(ErrorCode.BAD_REQUEST, "response has no boolean 'ok'")
