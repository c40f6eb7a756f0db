"""The control protocol: what goes over the socket, and every way a request is refused."""

from __future__ import annotations

import json

import pytest

from hafd import protocol
from hafd.protocol import (
    MAX_REQUEST,
    ErrorCode,
    ProtocolError,
    Request,
    RequestError,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)


def _raw(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize(
    "command,args",
    [
        ("status", {}),
        ("standby", {}),
        ("standby", {"node": "nodeone"}),
        ("unstandby", {"node": "nodetwo"}),
        ("cleanup", {"resource": "dhcpd"}),
        ("cleanup", {}),
        ("reload", {}),
        ("failover", {"to": "nodetwo"}),
    ],
)
def test_request_round_trip(command: str, args: dict) -> None:
    data = encode_request(command, args)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert decode_request(data) == Request(command=command, args=args, version=1)


def test_request_without_args_or_newline_is_accepted() -> None:
    assert decode_request(b'{"version": 1, "command": "status"}') == Request("status", {})


def test_response_round_trips() -> None:
    ok = Response.success({"node": "nodeone", "nested": {"x": [1, 2.5, None]}})
    assert decode_response(encode_response(ok)) == ok
    err = Response.failure(ErrorCode.UNKNOWN_NODE, "no node 'x'", {"known": ["a", "b"]})
    back = decode_response(encode_response(err))
    assert not back.ok and back.error is not None
    assert (back.error.code, back.error.message, back.error.details) == ("unknown_node", "no node 'x'", {"known": ["a", "b"]})
    wire = json.loads(encode_response(Response.failure("internal", "boom")))
    assert wire == {"version": 1, "ok": False, "error": {"code": "internal", "message": "boom"}}


REJECTED = [
    (b"not json\n", ErrorCode.BAD_REQUEST, "not valid JSON"),
    (b"\xff\xfe\n", ErrorCode.BAD_REQUEST, "not UTF-8"),
    (b"", ErrorCode.BAD_REQUEST, "not valid JSON"),
    (_raw([1, 2]), ErrorCode.BAD_REQUEST, "must be a JSON object"),
    (_raw("status"), ErrorCode.BAD_REQUEST, "must be a JSON object"),
    (_raw({"command": "status"}), ErrorCode.BAD_REQUEST, "no 'version'"),
    (_raw({"version": "1", "command": "status"}), ErrorCode.BAD_REQUEST, "'version' must be an integer"),
    (_raw({"version": True, "command": "status"}), ErrorCode.BAD_REQUEST, "'version' must be an integer"),
    (_raw({"version": 2, "command": "status"}), ErrorCode.UNSUPPORTED_VERSION, "version 2"),
    (_raw({"version": 1}), ErrorCode.BAD_REQUEST, "no 'command'"),
    (_raw({"version": 1, "command": 5}), ErrorCode.BAD_REQUEST, "no 'command'"),
    (_raw({"version": 1, "command": "status", "arg": {}}), ErrorCode.BAD_REQUEST, "unknown field(s) in request: arg"),
    (_raw({"version": 1, "command": "explode"}), ErrorCode.UNKNOWN_COMMAND, "'explode'"),
    (_raw({"version": 1, "command": "status", "args": []}), ErrorCode.BAD_REQUEST, "'args' must be an object"),
    (_raw({"version": 1, "command": "standby", "args": {"nodes": "a"}}), ErrorCode.INVALID_ARGUMENT, "unknown argument 'nodes'"),
    (_raw({"version": 1, "command": "status", "args": {"node": "a"}}), ErrorCode.INVALID_ARGUMENT, "accepts no arguments"),
    (_raw({"version": 1, "command": "standby", "args": {"node": 3}}), ErrorCode.INVALID_ARGUMENT, "must be a string"),
    (_raw({"version": 1, "command": "standby", "args": {"node": None}}), ErrorCode.INVALID_ARGUMENT, "must be a string"),
    (_raw({"version": 1, "command": "standby", "args": {"node": ""}}), ErrorCode.INVALID_ARGUMENT, "not a valid name"),
    (_raw({"version": 1, "command": "cleanup", "args": {"resource": "a\x1bb"}}), ErrorCode.INVALID_ARGUMENT, "not a valid name"),
    (_raw({"version": 1, "command": "failover", "args": {"to": "x" * 300}}), ErrorCode.INVALID_ARGUMENT, "not a valid name"),
    (b'{"version": 1, "command": "status", "args": {"x": NaN}}\n', ErrorCode.BAD_REQUEST, "not valid JSON"),
    (b'{"version": 1,\n"command": "status"}\n', ErrorCode.BAD_REQUEST, "single line"),
    (b'{"version": 1, "command": "status", "pad": "' + b"x" * MAX_REQUEST + b'"}\n', ErrorCode.BAD_REQUEST, "too long"),
]


@pytest.mark.parametrize("data,code,fragment", REJECTED)
def test_every_bad_request_is_a_structured_error(data: bytes, code: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(data)
    assert info.value.code == code
    assert fragment in info.value.message


def test_unsupported_version_lists_what_is_supported() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(_raw({"version": 7, "command": "status"}))
    assert info.value.details == {"supported": [1]}


def test_encode_request_validates_before_sending() -> None:
    with pytest.raises(ProtocolError) as info:
        encode_request("standby", {"node": 1})  # type: ignore[dict-item]
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(ProtocolError) as info:
        encode_request("nope")
    assert info.value.code == ErrorCode.UNKNOWN_COMMAND


def test_unserialisable_result_is_an_internal_error() -> None:
    with pytest.raises(ProtocolError) as info:
        encode_response(Response.success({"when": object()}))
    assert info.value.code == ErrorCode.INTERNAL
    with pytest.raises(ProtocolError) as info:
        encode_response(Response.success({"loss": float("nan")}))
    assert info.value.code == ErrorCode.INTERNAL


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"garbage\n", "not valid JSON"),
        (_raw([]), "must be a JSON object"),
        (_raw({"ok": True, "result": {}}), "integer 'version'"),
        (_raw({"version": 9, "ok": True, "result": {}}), "protocol version 9"),
        (_raw({"version": 1, "result": {}}), "boolean 'ok'"),
        (_raw({"version": 1, "ok": True, "result": []}), "'result' must be an object"),
        (_raw({"version": 1, "ok": False}), "no 'error.code'"),
    ],
)
def test_bad_responses_are_rejected(data: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_response(data)
    assert fragment in info.value.message


def test_responses_from_a_newer_daemon_tolerate_extra_fields() -> None:
    resp = decode_response(_raw({"version": 1, "ok": True, "result": {"a": 1}, "server": "hafd 9"}))
    assert resp.ok and resp.result == {"a": 1}


def test_request_error_is_a_protocol_error_with_details() -> None:
    exc = RequestError(ErrorCode.UNKNOWN_RESOURCE, "no resource 'x'", {"known": ["drbd"]})
    assert isinstance(exc, ProtocolError)
    assert Response.from_error(exc).error == protocol.ErrorInfo("unknown_resource", "no resource 'x'", {"known": ["drbd"]})
