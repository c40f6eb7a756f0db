"""The heartbeat wire format: bytes <-> typed messages, authenticated with HMAC-SHA256.

Pure: no sockets, no clock.  Everything a peer sends is a `Message`; everything the
network delivers goes through `decode`, which either returns a `Message` or raises
`DecodeError` with a `RejectReason` -- never any other exception, for any bytes, so the
receive loop needs exactly one `except` and can count rejects per reason.

Layout of version 1 (all integers big-endian)::

    offset  size  field
    0       4     magic b"HAFD"
    4       1     version (1)
    5       1     message type: 1 heartbeat, 2 leaving, 3 handover-done, 4 command
    6       1     n = length of the sender's node name (1..255)
    7       n     sender node name, UTF-8
    7+n     16    boot id (random, new on every daemon start)
    23+n    8     sequence number, u64, strictly increasing per boot id
    31+n    8     send time, f64, the sender's monotonic clock (latency only, never trusted)
    39+n    ...   body, by message type (below)
    end-32  32    HMAC-SHA256(key, every byte before it)

    heartbeat body            leaving body          handover-done body      command body
    1  role                   1  flags (bit 0:      8  epoch                1  c = len(command)
    8  epoch, u64                restarting)        1  m = len(to)          c  command, UTF-8
    32 config hash (SHA-256)                        m  to (node), UTF-8     2  j = len(arg), u16
    1  flags                                                                j  arg, JSON, UTF-8
    4  priority, i32
    1  a = len(active view)
    a  active view (node name, may be empty)

Heartbeat flags: bit 0 standby, bit 1 has_failed_resource, bit 2 a tiebreaker is
configured, bit 3 the tiebreaker answers, bit 4 restarting.  Unknown bits, unknown roles
and trailing bytes are MALFORMED: a newer layout must bump the version.

Invariant for every future version: magic and version come first and the MAC is the
trailing 32 bytes over everything before it.  That lets a node authenticate a packet it
cannot parse, so "unsupported version N" is only reported for a genuine newer peer (a
rolling upgrade), while noise and forgeries stay BAD_MAC.  With two 7-letter node names
a heartbeat is 132 bytes.

Replay and staleness are a separate, stateful concern: see `ReplayGuard`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

MAGIC = b"HAFD"
VERSION = 1
MAC_SIZE = 32
BOOT_ID_SIZE = 16
HASH_SIZE = 32
MAX_NAME = 255
# magic + version + type + name length + 1-byte name + boot id + seq + send time + MAC
MIN_SIZE = 4 + 1 + 1 + 1 + 1 + BOOT_ID_SIZE + 8 + 8 + MAC_SIZE
_U64_MAX = 2**64 - 1


class MsgType(enum.IntEnum):
    HEARTBEAT = 1
    LEAVING = 2
    HANDOVER_DONE = 3
    COMMAND = 4


class Role(enum.IntEnum):
    """What a node is doing with the resource graph (STANDBY = passive, not the operator flag)."""

    ACTIVE = 1
    STANDBY = 2
    STARTING = 3
    STOPPING = 4
    FAILED = 5


class RejectReason(enum.Enum):
    TOO_SHORT = "too_short"
    BAD_MAGIC = "bad_magic"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_MAC = "bad_mac"
    MALFORMED = "malformed"
    # ReplayGuard's reasons: one enum, so the daemon counts every rejected packet alike.
    UNKNOWN_NODE = "unknown_node"
    REPLAYED = "replayed"
    STALE_BOOT = "stale_boot"
    BOOT_CONFLICT = "boot_conflict"


class DecodeError(Exception):
    """A packet was rejected; `reason` is for counting, `detail` for the log."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


_F_STANDBY = 1
_F_FAILED = 2
_F_TB_CONFIGURED = 4
_F_TB_OK = 8
_F_RESTARTING = 16
_F_ALL = 31


@dataclass(frozen=True)
class Heartbeat:
    role: Role
    epoch: int
    config_hash: bytes
    priority: int
    active_view: str = ""  # who this node believes is active ("" = nobody)
    standby: bool = False
    has_failed_resource: bool = False
    tiebreaker_ok: bool | None = None  # None: no tiebreaker configured
    restarting: bool = False


@dataclass(frozen=True)
class Leaving:
    """Sent once before a daemon exits; restarting=True means "hold off, I am coming back"."""

    restarting: bool = False


@dataclass(frozen=True)
class HandoverDone:
    """The sender stopped its graph at `epoch`; `to` may start now."""

    epoch: int
    to: str


@dataclass(frozen=True)
class Command:
    """An operator command forwarded to a peer (e.g. "failover" with {"to": "nodetwo"})."""

    command: str
    arg: Any = None  # any JSON value


Body = Heartbeat | Leaving | HandoverDone | Command

_TYPE_OF: dict[type, MsgType] = {
    Heartbeat: MsgType.HEARTBEAT,
    Leaving: MsgType.LEAVING,
    HandoverDone: MsgType.HANDOVER_DONE,
    Command: MsgType.COMMAND,
}


@dataclass(frozen=True)
class Message:
    sender: str
    boot_id: bytes
    seq: int
    sent_at: float
    body: Body

    @property
    def type(self) -> MsgType:
        return _TYPE_OF[type(self.body)]


def new_boot_id() -> bytes:
    """16 random bytes identifying one daemon run (the only randomness in the protocol)."""
    return secrets.token_bytes(BOOT_ID_SIZE)


def config_hash(canonical: bytes) -> bytes:
    return hashlib.sha256(canonical).digest()


try:  # OpenSSL's keyed HMAC context, the C object under hmac.new (CPython's _hashlib)
    from _hashlib import hmac_new as _hmac_new
except ImportError:  # pragma: no cover - a Python built without OpenSSL's HMAC
    _hmac_new = None

_KEYED: dict[bytes, Any] = {}  # key -> a keyed HMAC-SHA256 context to copy (a few keys at most)


def _mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of data.  Copies a context keyed once instead of hmac.digest's one-shot
    call: with OpenSSL 3 each one-shot call looks the digest up by name and sets up the
    key again (2.5 us against 1.1 us here, more with cold caches, 40 times a second).
    copy() locks the context, so the heartbeat thread and the event loop may share it."""
    base = _KEYED.get(key)
    if base is None:
        if _hmac_new is None:
            return hmac.digest(key, data, "sha256")
        if len(_KEYED) >= 4:  # a reload with a new key: forget the old ones
            _KEYED.clear()
        base = _KEYED[key] = _hmac_new(key, digestmod="sha256")
    h = base.copy()
    h.update(data)
    return h.digest()


# ---------------------------------------------------------------- encoding


def _name(value: str, what: str, *, allow_empty: bool = False) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > MAX_NAME or (not raw and not allow_empty):
        raise ValueError(f"{what} must be 1..{MAX_NAME} bytes of UTF-8, got {len(raw)}")
    return bytes([len(raw)]) + raw


def _u64(value: int, what: str) -> bytes:
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{what} must fit in an unsigned 64-bit integer, got {value}")
    return struct.pack(">Q", value)


def _encode_body(body: Body) -> bytes:
    if isinstance(body, Heartbeat):
        if len(body.config_hash) != HASH_SIZE:
            raise ValueError(f"config_hash must be {HASH_SIZE} bytes, got {len(body.config_hash)}")
        if not -(2**31) <= body.priority < 2**31:
            raise ValueError(f"priority must fit in a signed 32-bit integer, got {body.priority}")
        flags = (
            (_F_STANDBY if body.standby else 0)
            | (_F_FAILED if body.has_failed_resource else 0)
            | (_F_TB_CONFIGURED if body.tiebreaker_ok is not None else 0)
            | (_F_TB_OK if body.tiebreaker_ok else 0)
            | (_F_RESTARTING if body.restarting else 0)
        )
        return (
            bytes([Role(body.role)])
            + _u64(body.epoch, "epoch")
            + body.config_hash
            + bytes([flags])
            + struct.pack(">i", body.priority)
            + _name(body.active_view, "active_view", allow_empty=True)
        )
    if isinstance(body, Leaving):
        return bytes([1 if body.restarting else 0])
    if isinstance(body, HandoverDone):
        return _u64(body.epoch, "epoch") + _name(body.to, "to")
    if isinstance(body, Command):
        arg = json.dumps(body.arg, separators=(",", ":"), sort_keys=True).encode("utf-8")
        if len(arg) > 0xFFFF:
            raise ValueError(f"command arg is {len(arg)} bytes of JSON, at most 65535 fit")
        return _name(body.command, "command") + struct.pack(">H", len(arg)) + arg
    raise TypeError(f"not a message body: {type(body).__name__}")


def encode(msg: Message, key: bytes) -> bytes:
    """Serialise and sign; raises ValueError for values the format cannot carry."""
    if len(msg.boot_id) != BOOT_ID_SIZE:
        raise ValueError(f"boot_id must be {BOOT_ID_SIZE} bytes, got {len(msg.boot_id)}")
    data = (
        MAGIC
        + bytes([VERSION, msg.type])
        + _name(msg.sender, "sender")
        + msg.boot_id
        + _u64(msg.seq, "seq")
        + struct.pack(">d", msg.sent_at)
        + _encode_body(msg.body)
    )
    return data + _mac(key, data)


_SEQ_TIME = struct.Struct(">Qd")


class Template:
    """One message body, encoded once and signed many times.

    The heartbeat thread sends the same body 40 times a second; only the sequence number
    and the send time change.  Encoding the body once per change (not per send) keeps the
    thread's per-tick work small; `sign` gives exactly what `encode` gives for the same
    message.  Immutable, so the daemon can swap in a new one while the thread signs.
    """

    __slots__ = ("body", "_head", "_tail")

    def __init__(self, sender: str, boot_id: bytes, body: Body) -> None:
        if len(boot_id) != BOOT_ID_SIZE:
            raise ValueError(f"boot_id must be {BOOT_ID_SIZE} bytes, got {len(boot_id)}")
        self.body = body
        self._head = MAGIC + bytes([VERSION, _TYPE_OF[type(body)]]) + _name(sender, "sender") + boot_id
        self._tail = _encode_body(body)

    def sign(self, seq: int, sent_at: float, key: bytes) -> bytes:
        if not 0 <= seq <= _U64_MAX:
            raise ValueError(f"seq must fit in an unsigned 64-bit integer, got {seq}")
        data = self._head + _SEQ_TIME.pack(seq, sent_at) + self._tail
        return data + _mac(key, data)


def repeat_key(data: bytes) -> bytes:
    """The bytes two datagrams of one daemon run share when the second has nothing new
    to say: everything but the sequence number, the send time and the MAC.

    Unauthenticated on purpose: it only decides whether a datagram can wait for the next
    batch or must reach the cluster logic at once, which then checks it in full.  A forged
    datagram can cost a wake-up, never acceptance.
    """
    if len(data) < MIN_SIZE:
        return data
    head = 7 + data[6] + BOOT_ID_SIZE
    return data[:head] + data[head + 16 : -MAC_SIZE]


# ---------------------------------------------------------------- decoding


class _Reader:
    """Bounds-checked reads; every shortfall becomes MALFORMED, never IndexError."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(RejectReason.MALFORMED, f"truncated {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def name(self, what: str, *, allow_empty: bool = False) -> str:
        raw = self.take(self.u8(what), what)
        if not raw and not allow_empty:
            raise DecodeError(RejectReason.MALFORMED, f"empty {what}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(RejectReason.MALFORMED, f"{what} is not UTF-8") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(RejectReason.MALFORMED, f"{len(self.data) - self.pos} trailing bytes")


def _decode_body(mtype: int, r: _Reader) -> Body:
    if mtype == MsgType.HEARTBEAT:
        role_raw = r.u8("role")
        if role_raw not in Role._value2member_map_:
            raise DecodeError(RejectReason.MALFORMED, f"unknown role {role_raw}")
        epoch = r.unpack(">Q", "epoch")
        chash = r.take(HASH_SIZE, "config hash")
        flags = r.u8("flags")
        if flags & ~_F_ALL:
            raise DecodeError(RejectReason.MALFORMED, f"unknown heartbeat flags {flags:#x}")
        if flags & _F_TB_OK and not flags & _F_TB_CONFIGURED:
            raise DecodeError(RejectReason.MALFORMED, "tiebreaker ok without a tiebreaker")
        priority = r.unpack(">i", "priority")
        active_view = r.name("active view", allow_empty=True)
        return Heartbeat(
            role=Role(role_raw),
            epoch=epoch,
            config_hash=chash,
            priority=priority,
            active_view=active_view,
            standby=bool(flags & _F_STANDBY),
            has_failed_resource=bool(flags & _F_FAILED),
            tiebreaker_ok=bool(flags & _F_TB_OK) if flags & _F_TB_CONFIGURED else None,
            restarting=bool(flags & _F_RESTARTING),
        )
    if mtype == MsgType.LEAVING:
        flags = r.u8("leaving flags")
        if flags & ~1:
            raise DecodeError(RejectReason.MALFORMED, f"unknown leaving flags {flags:#x}")
        return Leaving(restarting=bool(flags))
    if mtype == MsgType.HANDOVER_DONE:
        return HandoverDone(epoch=r.unpack(">Q", "epoch"), to=r.name("handover target"))
    if mtype == MsgType.COMMAND:
        command = r.name("command")
        raw = r.take(r.unpack(">H", "arg length"), "arg")
        try:
            arg = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise DecodeError(RejectReason.MALFORMED, f"command arg is not JSON: {e}") from None
        return Command(command=command, arg=arg)
    raise DecodeError(RejectReason.MALFORMED, f"unknown message type {mtype}")


def decode(data: bytes, key: bytes) -> Message:
    """Authenticate and parse one datagram; raises only DecodeError."""
    if len(data) < len(MAGIC) + 1 + MAC_SIZE:
        raise DecodeError(RejectReason.TOO_SHORT, f"{len(data)} bytes")
    if data[:4] != MAGIC:
        raise DecodeError(RejectReason.BAD_MAGIC, data[:4].hex())
    signed, tag = data[:-MAC_SIZE], data[-MAC_SIZE:]
    if not hmac.compare_digest(_mac(key, signed), tag):
        raise DecodeError(RejectReason.BAD_MAC, f"{len(data)} bytes")
    version = data[4]
    if version != VERSION:
        raise DecodeError(RejectReason.UNSUPPORTED_VERSION, f"unsupported version {version}")
    if len(data) < MIN_SIZE:
        raise DecodeError(RejectReason.TOO_SHORT, f"{len(data)} bytes, version 1 needs {MIN_SIZE}")
    r = _Reader(signed, 5)
    mtype = r.u8("type")
    sender = r.name("sender")
    boot_id = r.take(BOOT_ID_SIZE, "boot id")
    seq = r.unpack(">Q", "seq")
    sent_at = r.unpack(">d", "send time")
    body = _decode_body(mtype, r)
    r.end()
    return Message(sender=sender, boot_id=boot_id, seq=seq, sent_at=sent_at, body=body)


class Decoder:
    """`decode`, remembering the last datagram it accepted.

    Every message arrives once per link, byte for byte the same: the copy on the second
    link is authentic because it is identical to one whose MAC was just checked, so it
    skips the HMAC and the parse (most of the receive work of an idle two-link cluster,
    40 times a second).  Replay checks are unchanged: they are the ReplayGuard's, per link.
    """

    def __init__(self) -> None:
        self._key: bytes | None = None
        self._data: bytes | None = None
        self._msg: Message | None = None

    def decode(self, data: bytes, key: bytes) -> Message:
        if self._msg is not None and data == self._data and key == self._key:
            return self._msg
        msg = decode(data, key)  # raises DecodeError: nothing is remembered then
        self._key, self._data, self._msg = key, data, msg
        return msg


# ---------------------------------------------------------------- replay


@dataclass
class _PeerBoot:
    boot_id: bytes
    last_seq: dict[str, int]  # per link: a daemon sends each message on every link, same seq
    last_heard: float
    leaving: bool = False


class ReplayGuard:
    """Rejects replayed, stale and unknown-sender packets that passed the MAC check.

    The sender puts the same message (same seq) on every link, so sequence numbers are
    tracked per (node, link): a copy arriving on a second link is news about that link,
    not a replay.  Copying a fresh packet from link A onto link B is a relay, which is
    what a working link B does anyway.

    Boot ids: a restarted peer has a new boot id.  A new boot id is accepted only when the
    current one said goodbye (a fresh LEAVING message) or has been silent for `hold`
    seconds (the deadtime: by then membership has declared it lost).  Otherwise it is
    BOOT_CONFLICT: an attacker replaying recorded packets of some older run cannot displace
    a live peer.  Superseded boot ids are remembered (up to `remember` per node) and are
    STALE_BOOT forever.  Limit, by design: after the peer really dies, packets recorded
    from an older run we never saw can fake its liveness for as long as the recording
    lasts; closing that needs a challenge (echoing the receiver's boot id), a later
    protocol version.
    """

    def __init__(self, nodes: Iterable[str], local: str, hold: float, remember: int = 64) -> None:
        self.local = local
        self.nodes = frozenset(nodes) - {local}
        self.hold = hold
        self._current: dict[str, _PeerBoot] = {}
        self._old: dict[str, deque[bytes]] = {n: deque(maxlen=remember) for n in self.nodes}

    def admit(self, msg: Message, link: str, now: float) -> None:
        """Record `msg` as seen on `link`, or raise DecodeError saying why it is refused."""
        node = msg.sender
        if node == self.local:
            raise DecodeError(RejectReason.UNKNOWN_NODE, f"a packet with our own name {node!r} (reflected?)")
        if node not in self.nodes:
            raise DecodeError(RejectReason.UNKNOWN_NODE, f"{node!r} is not a configured peer")
        cur = self._current.get(node)
        if msg.boot_id in self._old[node]:
            raise DecodeError(RejectReason.STALE_BOOT, f"{node}: boot {msg.boot_id.hex()} was superseded")
        if cur is not None and cur.boot_id != msg.boot_id:
            silent = now - cur.last_heard
            if not cur.leaving and silent < self.hold:
                raise DecodeError(
                    RejectReason.BOOT_CONFLICT,
                    f"{node}: new boot {msg.boot_id.hex()} while boot {cur.boot_id.hex()} "
                    f"was heard {silent:.3f} s ago",
                )
            self._old[node].append(cur.boot_id)
            cur = None
        if cur is None:
            cur = self._current[node] = _PeerBoot(msg.boot_id, {}, now)
        last = cur.last_seq.get(link)
        if last is not None and msg.seq <= last:
            raise DecodeError(RejectReason.REPLAYED, f"{node} via {link}: seq {msg.seq} <= {last}")
        cur.last_seq[link] = msg.seq
        cur.last_heard = max(cur.last_heard, now)
        if isinstance(msg.body, Leaving):
            cur.leaving = True

    def current_boot(self, node: str) -> bytes | None:
        cur = self._current.get(node)
        return cur.boot_id if cur else None
