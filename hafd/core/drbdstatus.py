"""DRBD 9's `drbdadm status` text, parsed into typed values.

The drbd agent decides promote/demote and health from these values, and the split-brain
rule reads `Peer.connection`; so every state DRBD prints becomes an enum member here,
once, instead of string comparisons scattered through the code.  Pure: text in, values
out.

What the text looks like (drbd-utils' drbdsetup status, see docs/reference drbd.md):

    r0 role:Primary                      resource line, column 0
      volume:0 disk:UpToDate open:yes    local device line(s), `volume:N` only if multi-volume
      nodetwo role:Secondary             peer line: `role:` when Connected, else `connection:`
        volume:0 replication:SyncSource peer-disk:Inconsistent done:42.17

Tolerances, because the format drifts between drbd-utils releases and `--verbose`:
unknown keys are ignored; older releases print `disk:` instead of `peer-disk:` on peer
device lines; a state word this module does not know becomes the enum's UNKNOWN member
(kept raw in `raw`) rather than an exception, so a newer DRBD degrades the monitor's
verdict instead of breaking it.  A line wrapped at 80 columns (stdout not a tty) is
merged back into the record it continues: a key:value line whose first key the current
record does not hold yet continues it.  Structural garbage raises DrbdStatusError with
the line number.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar


class DrbdStatusError(ValueError):
    """The text is not `drbdadm status` output."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


class _Parsed(enum.Enum):
    """Enum whose members are DRBD's own spelling; unknown spellings map to UNKNOWN."""

    @classmethod
    def parse(cls: type[_E], word: str) -> _E:
        for member in cls:
            if member.value.lower() == word.lower():
                return member
        return cls["UNKNOWN"]


_E = TypeVar("_E", bound=_Parsed)


class Role(_Parsed):
    PRIMARY = "Primary"
    SECONDARY = "Secondary"
    UNKNOWN = "Unknown"


class DiskState(_Parsed):
    DISKLESS = "Diskless"
    ATTACHING = "Attaching"
    DETACHING = "Detaching"
    FAILED = "Failed"
    NEGOTIATING = "Negotiating"
    INCONSISTENT = "Inconsistent"
    OUTDATED = "Outdated"
    DUNKNOWN = "DUnknown"
    CONSISTENT = "Consistent"
    UPTODATE = "UpToDate"
    UNKNOWN = "Unknown"


class ConnectionState(_Parsed):
    STANDALONE = "StandAlone"
    DISCONNECTING = "Disconnecting"
    UNCONNECTED = "Unconnected"
    TIMEOUT = "Timeout"
    BROKEN_PIPE = "BrokenPipe"
    NETWORK_FAILURE = "NetworkFailure"
    PROTOCOL_ERROR = "ProtocolError"
    TEARDOWN = "TearDown"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    UNKNOWN = "Unknown"


class ReplicationState(_Parsed):
    OFF = "Off"
    ESTABLISHED = "Established"
    STARTING_SYNC_S = "StartingSyncS"
    STARTING_SYNC_T = "StartingSyncT"
    WF_BITMAP_S = "WFBitMapS"
    WF_BITMAP_T = "WFBitMapT"
    WF_SYNC_UUID = "WFSyncUUID"
    SYNC_SOURCE = "SyncSource"
    SYNC_TARGET = "SyncTarget"
    VERIFY_S = "VerifyS"
    VERIFY_T = "VerifyT"
    PAUSED_SYNC_S = "PausedSyncS"
    PAUSED_SYNC_T = "PausedSyncT"
    AHEAD = "Ahead"
    BEHIND = "Behind"
    UNKNOWN = "Unknown"


# Worst first: the resource's "disk" is its worst volume's, so one bad volume shows.
_DISK_BADNESS = [
    DiskState.FAILED,
    DiskState.UNKNOWN,
    DiskState.DISKLESS,
    DiskState.DETACHING,
    DiskState.ATTACHING,
    DiskState.NEGOTIATING,
    DiskState.INCONSISTENT,
    DiskState.OUTDATED,
    DiskState.DUNKNOWN,
    DiskState.CONSISTENT,
    DiskState.UPTODATE,
]


def worst_disk(states: list[DiskState]) -> DiskState:
    """The least healthy of several disk states (DUnknown if there are none)."""
    if not states:
        return DiskState.DUNKNOWN
    return min(states, key=_DISK_BADNESS.index)


@dataclass(frozen=True)
class Volume:
    """A local device line."""

    number: int
    disk: DiskState
    disk_raw: str = ""
    client: bool | None = None  # only printed for Diskless
    quorum: bool = True  # DRBD prints `quorum:no` only when quorum is lost
    open: bool | None = None


@dataclass(frozen=True)
class PeerVolume:
    """A peer device line (only present while Connected)."""

    number: int
    peer_disk: DiskState
    replication: ReplicationState = ReplicationState.ESTABLISHED  # omitted when Established
    done: float | None = None  # resync percentage


@dataclass(frozen=True)
class Peer:
    name: str
    connection: ConnectionState
    role: Role | None = None  # printed only while Connected
    volumes: tuple[PeerVolume, ...] = ()

    @property
    def peer_disk(self) -> DiskState:
        """The peer's worst disk; DUnknown when not connected (DRBD does not know it)."""
        return worst_disk([v.peer_disk for v in self.volumes])

    @property
    def replication(self) -> ReplicationState:
        """The first volume that is not plainly Established, so a resync shows."""
        for v in self.volumes:
            if v.replication is not ReplicationState.ESTABLISHED:
                return v.replication
        return ReplicationState.ESTABLISHED if self.volumes else ReplicationState.OFF

    @property
    def done(self) -> float | None:
        return next((v.done for v in self.volumes if v.done is not None), None)


@dataclass(frozen=True)
class DrbdStatus:
    """One resource as `drbdadm status RES` shows it."""

    name: str
    role: Role
    volumes: tuple[Volume, ...]
    peers: tuple[Peer, ...] = ()
    suspended: str | None = None
    role_raw: str = ""

    @property
    def disk(self) -> DiskState:
        return worst_disk([v.disk for v in self.volumes])

    @property
    def up_to_date(self) -> bool:
        return bool(self.volumes) and all(v.disk is DiskState.UPTODATE for v in self.volumes)

    @property
    def quorum(self) -> bool:
        return all(v.quorum for v in self.volumes)

    @property
    def split_brain(self) -> bool:
        """StandAlone is how DRBD leaves a connection after split brain (or `disconnect`)."""
        return any(p.connection is ConnectionState.STANDALONE for p in self.peers)


_RESOURCE_KEYS = {"role", "suspended", "node-id", "write-ordering", "may_promote", "promotion_score", "force-io-failures"}
_PEER_KEYS = {"connection", "role", "node-id", "congested", "ap-in-flight", "rs-in-flight", "tls"}


def _tokens(line: str, lineno: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for tok in line.split():
        key, sep, value = tok.partition(":")
        if not sep or not key:
            raise DrbdStatusError(f"expected key:value, got {tok!r}", lineno)
        out.append((key, value))
    return out


def _yes(value: str) -> bool:
    return value.lower() in ("yes", "true", "1")


class _Builder:
    """Mutable scratch for one resource while its lines are read."""

    def __init__(self, name: str, lineno: int) -> None:
        self.name = name
        self.lineno = lineno
        self.attrs: dict[str, str] = {}
        self.devices: list[dict[str, str]] = []
        self.peers: list[tuple[str, dict[str, str], list[dict[str, str]]]] = []

    def add_kv(self, kvs: list[tuple[str, str]], lineno: int) -> None:
        first = kvs[0][0]
        if not self.peers:
            if not self.devices and first in _RESOURCE_KEYS:
                target = self.attrs  # the resource line, wrapped or verbose
            else:
                target = _record(self.devices, first)
        else:
            _, pattrs, pdevs = self.peers[-1]
            if not pdevs and first in _PEER_KEYS and first not in pattrs:
                target = pattrs  # the peer line, wrapped
            else:
                target = _record(pdevs, first)
        target.update(kvs)

    def build(self) -> DrbdStatus:
        if "role" not in self.attrs:
            raise DrbdStatusError(f"resource {self.name!r} has no role", self.lineno)
        volumes = tuple(_volume(i, d, self.lineno) for i, d in enumerate(self.devices))
        peers = tuple(_peer(n, a, devs, self.lineno) for n, a, devs in self.peers)
        return DrbdStatus(
            name=self.name,
            role=Role.parse(self.attrs["role"]),
            role_raw=self.attrs["role"],
            volumes=volumes,
            peers=peers,
            suspended=self.attrs.get("suspended"),
        )


def _record(records: list[dict[str, str]], first_key: str) -> dict[str, str]:
    """The record a key:value line belongs to: a new one unless it continues the last."""
    if not records or first_key == "volume" or first_key in records[-1]:
        records.append({})
    return records[-1]


def _int(value: str, what: str, lineno: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise DrbdStatusError(f"{what} is not a number: {value!r}", lineno) from None


def _volume(index: int, d: dict[str, str], lineno: int) -> Volume:
    if "disk" not in d:
        raise DrbdStatusError("device line without disk:", lineno)
    return Volume(
        number=_int(d["volume"], "volume", lineno) if "volume" in d else index,
        disk=DiskState.parse(d["disk"]),
        disk_raw=d["disk"],
        client=_yes(d["client"]) if "client" in d else None,
        quorum=_yes(d["quorum"]) if "quorum" in d else True,
        open=_yes(d["open"]) if "open" in d else None,
    )


def _peer(name: str, attrs: dict[str, str], devs: list[dict[str, str]], lineno: int) -> Peer:
    if "connection" in attrs:
        conn = ConnectionState.parse(attrs["connection"])
    elif "role" in attrs:
        conn = ConnectionState.CONNECTED  # DRBD prints the peer's role only while connected
    else:
        conn = ConnectionState.UNKNOWN
    volumes: list[PeerVolume] = []
    for i, d in enumerate(devs):
        disk = d.get("peer-disk", d.get("disk"))  # older drbd-utils printed `disk:` here
        done: float | None = None
        if "done" in d:
            try:
                done = float(d["done"])
            except ValueError:
                raise DrbdStatusError(f"done is not a number: {d['done']!r}", lineno) from None
        volumes.append(
            PeerVolume(
                number=_int(d["volume"], "volume", lineno) if "volume" in d else i,
                peer_disk=DiskState.parse(disk) if disk is not None else DiskState.DUNKNOWN,
                replication=ReplicationState.parse(d["replication"]) if "replication" in d else ReplicationState.ESTABLISHED,
                done=done,
            )
        )
    return Peer(
        name=name,
        connection=conn,
        role=Role.parse(attrs["role"]) if "role" in attrs else None,
        volumes=tuple(volumes),
    )


def parse_status(text: str) -> list[DrbdStatus]:
    """Every resource in `drbdadm status` output, in order."""
    resources: list[DrbdStatus] = []
    cur: _Builder | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip():
            if cur is not None:
                resources.append(cur.build())
                cur = None
            continue
        indent = len(line) - len(line.lstrip(" "))
        words = line.split()
        head_is_name = ":" not in words[0]
        if indent == 0:
            if not head_is_name:
                raise DrbdStatusError(f"expected a resource line, got {line.strip()!r}", lineno)
            if cur is not None:
                resources.append(cur.build())
            cur = _Builder(words[0], lineno)
            cur.attrs.update(_tokens(" ".join(words[1:]), lineno))
            continue
        if cur is None:
            raise DrbdStatusError(f"indented line before any resource line: {line.strip()!r}", lineno)
        if head_is_name:
            cur.peers.append((words[0], dict(_tokens(" ".join(words[1:]), lineno)), []))
        else:
            cur.add_kv(_tokens(line, lineno), lineno)
    if cur is not None:
        resources.append(cur.build())
    return resources


def parse_resource(text: str, name: str) -> DrbdStatus:
    """The one resource `name` from `drbdadm status NAME` output."""
    resources = parse_status(text)
    for r in resources:
        if r.name == name:
            return r
    found = ", ".join(r.name for r in resources) or "nothing"
    raise DrbdStatusError(f"resource {name!r} not in drbdadm status output (found {found})")
