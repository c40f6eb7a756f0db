"""The wire format: round trips, every reject reason, fuzzing, and the replay guard."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hafd.core import codec
from hafd.core.codec import (
    Command,
    DecodeError,
    HandoverDone,
    Heartbeat,
    Leaving,
    Message,
    RejectReason,
    ReplayGuard,
    Role,
    decode,
    encode,
)

KEY = b"k" * 32
BOOT_A = bytes(range(16))
BOOT_B = bytes(range(16, 32))
BOOT_C = bytes(range(32, 48))
CHASH = hashlib.sha256(b"cluster config").digest()


def hb(**kw: object) -> Heartbeat:
    base: dict[str, object] = dict(role=Role.ACTIVE, epoch=7, config_hash=CHASH, priority=100, active_view="nodeone")
    base.update(kw)
    return Heartbeat(**base)  # type: ignore[arg-type]


def msg(body: codec.Body, sender: str = "nodetwo", boot: bytes = BOOT_A, seq: int = 1) -> Message:
    return Message(sender=sender, boot_id=boot, seq=seq, sent_at=1234.5, body=body)


BODIES = [
    hb(),
    hb(role=Role.STANDBY, active_view="", standby=True, has_failed_resource=True, tiebreaker_ok=False, restarting=True),
    hb(role=Role.STOPPING, tiebreaker_ok=True, priority=-5, epoch=2**64 - 1),
    hb(role=Role.FAILED),
    hb(role=Role.STARTING),
    Leaving(),
    Leaving(restarting=True),
    HandoverDone(epoch=8, to="nodeone"),
    Command(command="failover", arg={"to": "nodeone"}),
    Command(command="standby", arg=None),
    Command(command="ünïcode", arg=[1, "zwei", {"drei": 3.5}]),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_round_trip_every_message_type(body: codec.Body) -> None:
    m = msg(body, seq=2**64 - 1)
    assert decode(encode(m, KEY), KEY) == m


def test_message_type_follows_the_body() -> None:
    assert [msg(b).type for b in (hb(), Leaving(), HandoverDone(1, "x"), Command("c"))] == [
        codec.MsgType.HEARTBEAT,
        codec.MsgType.LEAVING,
        codec.MsgType.HANDOVER_DONE,
        codec.MsgType.COMMAND,
    ]


def test_heartbeat_is_compact() -> None:
    assert len(encode(msg(hb()), KEY)) <= 160


def test_layout_matches_the_documented_table() -> None:
    data = encode(msg(hb()), KEY)
    assert data[:4] == b"HAFD" and data[4] == 1 and data[5] == 1
    assert data[6] == 7 and data[7:14] == b"nodetwo"
    assert data[14:30] == BOOT_A
    assert struct.unpack(">Q", data[30:38])[0] == 1
    assert struct.unpack(">d", data[38:46])[0] == 1234.5
    assert data[46] == Role.ACTIVE and struct.unpack(">Q", data[47:55])[0] == 7
    assert data[55:87] == CHASH
    assert hmac.compare_digest(data[-32:], hmac.new(KEY, data[:-32], hashlib.sha256).digest())


def resign(body_bytes: bytes) -> bytes:
    return body_bytes + hmac.new(KEY, body_bytes, hashlib.sha256).digest()


def reject(data: bytes, key: bytes = KEY) -> DecodeError:
    with pytest.raises(DecodeError) as ei:
        decode(data, key)
    return ei.value


def test_too_short() -> None:
    assert reject(b"HAFD\x01").reason is RejectReason.TOO_SHORT
    assert reject(b"").reason is RejectReason.TOO_SHORT
    # authentic and version 1, but shorter than any version-1 message
    assert reject(resign(b"HAFD\x01\x01")).reason is RejectReason.TOO_SHORT


def test_bad_magic() -> None:
    data = encode(msg(hb()), KEY)
    assert reject(b"XAFD" + data[4:]).reason is RejectReason.BAD_MAGIC


def test_bad_mac_wrong_key_and_flipped_bit() -> None:
    data = encode(msg(hb()), KEY)
    assert reject(data, key=b"other key").reason is RejectReason.BAD_MAC
    flipped = bytearray(data)
    flipped[20] ^= 0x01
    assert reject(bytes(flipped)).reason is RejectReason.BAD_MAC
    assert reject(data[:-1]).reason is RejectReason.BAD_MAC


def test_authentic_newer_version_has_its_own_reason() -> None:
    data = encode(msg(hb()), KEY)
    newer = resign(data[:4] + b"\x02" + data[5:-32] + b"new fields")
    err = reject(newer)
    assert err.reason is RejectReason.UNSUPPORTED_VERSION
    assert "unsupported version 2" in str(err)


def test_forged_newer_version_is_bad_mac() -> None:
    data = encode(msg(hb()), KEY)
    assert reject(data[:4] + b"\x02" + data[5:]).reason is RejectReason.BAD_MAC


@pytest.mark.parametrize(
    "mutate, detail",
    [
        (lambda d: d[:5] + b"\x09" + d[6:], "unknown message type"),
        (lambda d: d[:46] + b"\x09" + d[47:], "unknown role"),
        (lambda d: d[:87] + b"\x80" + d[88:], "unknown heartbeat flags"),
        (lambda d: d[:87] + b"\x08" + d[88:], "tiebreaker ok without a tiebreaker"),
        (lambda d: d + b"\x00", "trailing bytes"),
        (lambda d: d[:-3], "truncated"),
        (lambda d: d[:6] + b"\x00" + d[7:], "empty sender"),
        (lambda d: d[:7] + b"\xff" + d[8:], "sender is not UTF-8"),
    ],
)
def test_authentic_but_malformed(mutate: object, detail: str) -> None:
    signed = encode(msg(hb()), KEY)[:-32]
    err = reject(resign(mutate(signed)))  # type: ignore[operator]
    assert err.reason is RejectReason.MALFORMED
    assert detail in err.detail


def test_command_arg_must_be_json() -> None:
    signed = encode(msg(Command("failover", {"to": "x"})), KEY)[:-32]
    bad = signed.replace(b'{"to":"x"}', b'{"to":"x"!')
    err = reject(resign(bad))
    assert err.reason is RejectReason.MALFORMED and "not JSON" in err.detail
    deep = signed[: signed.index(b"failover") + 8] + struct.pack(">H", 60000) + b"[" * 60000
    assert reject(resign(deep)).reason is RejectReason.MALFORMED


def test_encode_refuses_what_the_format_cannot_carry() -> None:
    with pytest.raises(ValueError, match="boot_id"):
        encode(Message("n", b"short", 1, 0.0, hb()), KEY)
    with pytest.raises(ValueError, match="seq"):
        encode(msg(hb(), seq=-1), KEY)
    with pytest.raises(ValueError, match="sender"):
        encode(msg(hb(), sender="x" * 256), KEY)
    with pytest.raises(ValueError, match="config_hash"):
        encode(msg(hb(config_hash=b"x")), KEY)
    with pytest.raises(ValueError, match="priority"):
        encode(msg(hb(priority=2**31)), KEY)


# ------------------------------------------------------------------ fuzz

FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = encode(msg(hb()), KEY)


def decode_or_reject(data: bytes) -> None:
    try:
        decode(data, KEY)
    except DecodeError as e:
        assert isinstance(e.reason, RejectReason)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    decode_or_reject(data)
    decode_or_reject(b"HAFD" + data)


@FUZZ
@given(st.integers(min_value=0, max_value=len(VALID)))
def test_fuzz_truncations(n: int) -> None:
    decode_or_reject(VALID[:n])


@FUZZ
@given(st.integers(min_value=0, max_value=len(VALID) * 8 - 1))
def test_fuzz_bit_flips_are_rejected(bit: int) -> None:
    flipped = bytearray(VALID)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecodeError) as ei:
        decode(bytes(flipped), KEY)
    assert ei.value.reason in (RejectReason.BAD_MAGIC, RejectReason.BAD_MAC)


@FUZZ
@given(st.integers(min_value=0, max_value=255), st.integers(min_value=1, max_value=4), st.binary(max_size=200))
def test_fuzz_authentic_random_bodies(version: int, mtype: int, rest: bytes) -> None:
    """Authenticated garbage must be a clean reject, never an exception."""
    data = resign(b"HAFD" + bytes([version, mtype]) + rest)
    decode_or_reject(data)


@FUZZ
@given(st.binary(min_size=1, max_size=200))
def test_fuzz_authentic_header_random_body(rest: bytes) -> None:
    header = VALID[:46]
    decode_or_reject(resign(header[:5] + bytes([rest[0] % 5]) + header[6:] + rest[1:]))


names = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
bodies = st.one_of(
    st.builds(
        Heartbeat,
        role=st.sampled_from(Role),
        epoch=st.integers(0, 2**64 - 1),
        config_hash=st.binary(min_size=32, max_size=32),
        priority=st.integers(-(2**31), 2**31 - 1),
        active_view=st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255),
        standby=st.booleans(),
        has_failed_resource=st.booleans(),
        tiebreaker_ok=st.none() | st.booleans(),
        restarting=st.booleans(),
    ),
    st.builds(Leaving, restarting=st.booleans()),
    st.builds(HandoverDone, epoch=st.integers(0, 2**64 - 1), to=names),
    st.builds(Command, command=names, arg=json_values),
)


@FUZZ
@given(
    names,
    st.binary(min_size=16, max_size=16),
    st.integers(0, 2**64 - 1),
    st.floats(allow_nan=False),
    bodies,
)
def test_fuzz_round_trip(sender: str, boot: bytes, seq: int, sent_at: float, body: codec.Body) -> None:
    m = Message(sender=sender, boot_id=boot, seq=seq, sent_at=sent_at, body=body)
    assert decode(encode(m, KEY), KEY) == m


# ------------------------------------------------------------------ replay guard

NODES = ["nodeone", "nodetwo"]
L1, L2 = "10.10.100.2", "10.10.200.2"


def guard() -> ReplayGuard:
    return ReplayGuard(NODES, local="nodeone", hold=0.36)


def admit(g: ReplayGuard, m: Message, link: str = L1, now: float = 0.0) -> RejectReason | None:
    try:
        g.admit(m, link, now)
    except DecodeError as e:
        return e.reason
    return None


@pytest.mark.parametrize(
    "steps",
    [
        # (sender, boot, seq, link, now, expected)
        [("nodetwo", BOOT_A, 1, L1, 0.0, None), ("nodetwo", BOOT_A, 2, L1, 0.1, None)],
        [("nodetwo", BOOT_A, 5, L1, 0.0, None), ("nodetwo", BOOT_A, 5, L1, 0.1, RejectReason.REPLAYED)],
        [("nodetwo", BOOT_A, 5, L1, 0.0, None), ("nodetwo", BOOT_A, 4, L1, 0.1, RejectReason.REPLAYED)],
        # the same message on a second link is news about that link
        [("nodetwo", BOOT_A, 5, L1, 0.0, None), ("nodetwo", BOOT_A, 5, L2, 0.0, None)],
        [("nodethree", BOOT_A, 1, L1, 0.0, RejectReason.UNKNOWN_NODE)],
        [("nodeone", BOOT_A, 1, L1, 0.0, RejectReason.UNKNOWN_NODE)],
        # a new boot while the current one is alive: refused
        [("nodetwo", BOOT_A, 9, L1, 0.0, None), ("nodetwo", BOOT_B, 1, L1, 0.1, RejectReason.BOOT_CONFLICT)],
        # ... accepted once the current one has been silent for the hold time
        [
            ("nodetwo", BOOT_A, 9, L1, 0.0, None),
            ("nodetwo", BOOT_B, 1, L1, 0.4, None),
            ("nodetwo", BOOT_A, 10, L1, 0.5, RejectReason.STALE_BOOT),
            ("nodetwo", BOOT_A, 11, L2, 5.0, RejectReason.STALE_BOOT),
            ("nodetwo", BOOT_B, 2, L1, 0.5, None),
        ],
        # an attacker replaying an unseen old run cannot displace a live peer
        [
            ("nodetwo", BOOT_B, 1, L1, 0.0, None),
            ("nodetwo", BOOT_C, 100, L1, 0.1, RejectReason.BOOT_CONFLICT),
            ("nodetwo", BOOT_B, 2, L1, 0.2, None),
        ],
    ],
)
def test_replay_guard_table(steps: list[tuple[str, bytes, int, str, float, RejectReason | None]]) -> None:
    g = guard()
    for sender, boot, seq, link, now, expected in steps:
        assert admit(g, msg(hb(), sender=sender, boot=boot, seq=seq), link, now) is expected, (sender, seq, now)


def test_replay_guard_accepts_a_restart_right_after_a_goodbye() -> None:
    g = guard()
    assert admit(g, msg(hb(), boot=BOOT_A, seq=1), now=0.0) is None
    assert admit(g, msg(Leaving(restarting=True), boot=BOOT_A, seq=2), now=0.01) is None
    assert admit(g, msg(hb(), boot=BOOT_B, seq=1), now=0.05) is None
    assert g.current_boot("nodetwo") == BOOT_B
    # a replayed goodbye of the new run cannot open the door for the old one
    assert admit(g, msg(Leaving(), boot=BOOT_A, seq=3), now=0.06) is RejectReason.STALE_BOOT


def test_replay_guard_error_details_name_the_sender() -> None:
    g = guard()
    g.admit(msg(hb(), seq=3), L1, 0.0)
    with pytest.raises(DecodeError, match="nodetwo via 10.10.100.2: seq 3 <= 3"):
        g.admit(msg(hb(), seq=3), L1, 0.0)


def test_decoder_checks_the_mac_once_for_the_copy_on_the_second_link(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_mac = codec._mac
    monkeypatch.setattr(codec, "_mac", lambda k, d: calls.append(1) or real_mac(k, d))
    dec = codec.Decoder()
    data = codec.encode(msg(hb()), KEY)
    calls.clear()
    first = dec.decode(data, KEY)
    assert dec.decode(bytes(data), KEY) is first and len(calls) == 1  # an equal copy: no second HMAC
    with pytest.raises(codec.DecodeError) as ei:
        dec.decode(data, b"o" * 32)  # same bytes, another key: checked again, and refused
    assert ei.value.reason is codec.RejectReason.BAD_MAC
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(codec.DecodeError):
        dec.decode(tampered, KEY)
    assert dec.decode(data, KEY) == first  # a refused packet is never remembered


@FUZZ
@given(names, st.integers(0, 2**64 - 1), st.floats(allow_nan=False), bodies)
def test_template_signs_exactly_what_encode_gives(sender: str, seq: int, sent_at: float, body: codec.Body) -> None:
    t = codec.Template(sender, BOOT_B, body)
    assert t.sign(seq, sent_at, KEY) == encode(Message(sender, BOOT_B, seq, sent_at, body), KEY)


def test_template_refuses_what_encode_refuses() -> None:
    with pytest.raises(ValueError):
        codec.Template("nodeone", b"short", hb())
    with pytest.raises(ValueError):
        codec.Template("nodeone", BOOT_A, hb()).sign(-1, 0.0, KEY)


def test_repeat_key_ignores_only_seq_time_and_mac() -> None:
    one = encode(msg(hb(), seq=1), KEY)
    later = encode(Message("nodetwo", BOOT_A, 99, 123.5, hb()), b"another key")
    assert codec.repeat_key(one) == codec.repeat_key(later)
    for other in (encode(msg(hb(epoch=8)), KEY), encode(msg(hb(), boot=BOOT_B), KEY),
                  encode(msg(hb(), sender="nodeone"), KEY), encode(msg(Leaving(restarting=False)), KEY)):
        assert codec.repeat_key(other) != codec.repeat_key(one)
    assert codec.repeat_key(b"junk") == b"junk"  # too short to cut: itself, so it is "new"


def test_the_mac_is_hmac_sha256_for_every_key_and_a_changed_key() -> None:
    for key in (KEY, b"another key", b"", b"x" * 200, KEY):
        for data in (b"", b"abc", bytes(range(256)) * 3):
            assert codec._mac(key, data) == hmac.new(key, data, hashlib.sha256).digest()
    for i in range(10):  # more keys than it keeps: still right
        assert codec._mac(bytes([i]) * 32, b"d") == hmac.digest(bytes([i]) * 32, b"d", "sha256")
