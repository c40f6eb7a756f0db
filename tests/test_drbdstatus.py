"""The `drbdadm status` parser, against every example in the DRBD reference and the variants drbd-utils prints."""

from __future__ import annotations

import pytest

from hafd.core.drbdstatus import (
    ConnectionState,
    DiskState,
    DrbdStatusError,
    ReplicationState,
    Role,
    parse_resource,
    parse_status,
    worst_disk,
)

PRIMARY_CONNECTED = """\
r0 role:Primary
  disk:UpToDate open:yes
  nodetwo role:Secondary
    peer-disk:UpToDate

"""
PEER_GONE = """\
r0 role:Primary
  disk:UpToDate open:yes
  nodetwo connection:Connecting

"""
SPLIT_BRAIN = """\
r0 role:Primary
  disk:UpToDate open:yes
  nodetwo connection:StandAlone

"""
RESYNC_TARGET = """\
r0 role:Secondary
  disk:Inconsistent open:no
  nodeone role:Primary
    replication:SyncTarget peer-disk:UpToDate done:42.17

"""
OUTDATED_ALONE = """\
r0 role:Secondary
  disk:Outdated open:no
  nodeone connection:Connecting

"""
MULTI_VOLUME = """\
r0 role:Primary
  volume:0 disk:UpToDate open:yes
  volume:1 disk:Inconsistent open:no
  nodetwo role:Secondary
    volume:0 peer-disk:UpToDate
    volume:1 replication:SyncTarget peer-disk:UpToDate done:7.50

"""


def test_primary_with_connected_peer() -> None:
    st = parse_resource(PRIMARY_CONNECTED, "r0")
    assert st.name == "r0" and st.role is Role.PRIMARY
    assert st.disk is DiskState.UPTODATE and st.up_to_date
    assert len(st.volumes) == 1 and st.volumes[0].open is True and st.volumes[0].number == 0
    [peer] = st.peers
    assert peer.name == "nodetwo"
    assert peer.connection is ConnectionState.CONNECTED  # implied by role: being printed
    assert peer.role is Role.SECONDARY
    assert peer.peer_disk is DiskState.UPTODATE
    assert peer.replication is ReplicationState.ESTABLISHED
    assert not st.split_brain and st.quorum


def test_peer_gone_has_unknown_peer_disk() -> None:
    st = parse_resource(PEER_GONE, "r0")
    [peer] = st.peers
    assert peer.connection is ConnectionState.CONNECTING
    assert peer.role is None and peer.volumes == ()
    assert peer.peer_disk is DiskState.DUNKNOWN
    assert peer.replication is ReplicationState.OFF
    assert not st.split_brain


def test_standalone_is_split_brain() -> None:
    st = parse_resource(SPLIT_BRAIN, "r0")
    assert st.peers[0].connection is ConnectionState.STANDALONE
    assert st.split_brain


def test_resync_target() -> None:
    st = parse_resource(RESYNC_TARGET, "r0")
    assert st.role is Role.SECONDARY and st.disk is DiskState.INCONSISTENT and not st.up_to_date
    assert st.volumes[0].open is False
    [peer] = st.peers
    assert peer.role is Role.PRIMARY and peer.connection is ConnectionState.CONNECTED
    assert peer.replication is ReplicationState.SYNC_TARGET
    assert peer.peer_disk is DiskState.UPTODATE
    assert peer.done == pytest.approx(42.17)


def test_outdated_secondary_alone() -> None:
    st = parse_resource(OUTDATED_ALONE, "r0")
    assert st.role is Role.SECONDARY and st.disk is DiskState.OUTDATED
    assert st.peers[0].name == "nodeone" and st.peers[0].connection is ConnectionState.CONNECTING


def test_multi_volume_worst_disk_and_per_volume_peer() -> None:
    st = parse_resource(MULTI_VOLUME, "r0")
    assert [(v.number, v.disk) for v in st.volumes] == [(0, DiskState.UPTODATE), (1, DiskState.INCONSISTENT)]
    assert st.disk is DiskState.INCONSISTENT and not st.up_to_date
    [peer] = st.peers
    assert [(v.number, v.replication, v.done) for v in peer.volumes] == [
        (0, ReplicationState.ESTABLISHED, None),
        (1, ReplicationState.SYNC_TARGET, 7.5),
    ]
    assert peer.replication is ReplicationState.SYNC_TARGET and peer.done == 7.5


def test_older_disk_key_on_peer_device_line() -> None:
    st = parse_resource(PRIMARY_CONNECTED.replace("peer-disk:", "disk:"), "r0")
    assert st.disk is DiskState.UPTODATE
    assert st.peers[0].peer_disk is DiskState.UPTODATE
    old = parse_resource(RESYNC_TARGET.replace("peer-disk:UpToDate", "disk:Outdated"), "r0")
    assert old.disk is DiskState.INCONSISTENT  # the local disk is not overwritten by the peer's
    assert old.peers[0].peer_disk is DiskState.OUTDATED


def test_diskless_client_quorum_lost_and_suspended() -> None:
    text = "r0 role:Secondary suspended:quorum\n  disk:Diskless client:no quorum:no open:no\n  nodetwo connection:Connecting\n\n"
    st = parse_resource(text, "r0")
    assert st.disk is DiskState.DISKLESS and st.volumes[0].client is False
    assert st.volumes[0].quorum is False and not st.quorum
    assert st.suspended == "quorum"


def test_several_resources_and_no_trailing_blank_line() -> None:
    text = PRIMARY_CONNECTED + OUTDATED_ALONE.replace("r0", "r1").rstrip("\n")
    both = parse_status(text)
    assert [r.name for r in both] == ["r0", "r1"]
    assert parse_resource(text, "r1").disk is DiskState.OUTDATED
    with pytest.raises(DrbdStatusError, match="'r2' not in drbdadm status output"):
        parse_resource(text, "r2")


def test_two_peers() -> None:
    text = (
        "r0 role:Primary\n  disk:UpToDate open:yes\n"
        "  nodetwo role:Secondary\n    replication:SyncSource peer-disk:Inconsistent done:3.00\n"
        "  nodethree connection:StandAlone\n\n"
    )
    st = parse_resource(text, "r0")
    assert [p.name for p in st.peers] == ["nodetwo", "nodethree"]
    assert st.peers[0].replication is ReplicationState.SYNC_SOURCE
    assert st.peers[0].peer_disk is DiskState.INCONSISTENT
    assert st.split_brain


def test_verbose_keys_are_ignored_and_verbose_connection_read() -> None:
    text = (
        "r0 node-id:0 role:Primary suspended:no\n"
        "    write-ordering:flush\n"
        "  volume:0 minor:1 disk:UpToDate backing_dev:/dev/vg/r0 quorum:yes open:yes\n"
        "  nodetwo node-id:1 connection:Connected role:Secondary congested:no\n"
        "    volume:0 replication:Established peer-disk:UpToDate resync-suspended:no\n\n"
    )
    st = parse_resource(text, "r0")
    assert st.role is Role.PRIMARY and st.up_to_date and st.quorum
    assert st.peers[0].connection is ConnectionState.CONNECTED and st.peers[0].peer_disk is DiskState.UPTODATE


def test_wrapped_lines_are_merged_back() -> None:
    # drbdsetup wraps at 80 columns when stdout is not a tty: the continuation keeps the indent.
    text = (
        "r0 role:Secondary\n  disk:Inconsistent\n  open:no\n"
        "  nodeone role:Primary\n    replication:SyncTarget\n    peer-disk:UpToDate done:42.17\n\n"
    )
    st = parse_resource(text, "r0")
    assert len(st.volumes) == 1 and st.volumes[0].open is False
    [peer] = st.peers
    assert len(peer.volumes) == 1
    assert peer.replication is ReplicationState.SYNC_TARGET and peer.peer_disk is DiskState.UPTODATE
    assert peer.done == pytest.approx(42.17)


def test_unknown_state_words_degrade_to_unknown() -> None:
    text = "r0 role:Primary\n  disk:Frobnicated open:yes\n  nodetwo connection:Wobbly\n\n"
    st = parse_resource(text, "r0")
    assert st.disk is DiskState.UNKNOWN and st.volumes[0].disk_raw == "Frobnicated"
    assert not st.up_to_date
    assert st.peers[0].connection is ConnectionState.UNKNOWN


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "'r0' not in drbdadm status output \\(found nothing\\)"),
        ("  disk:UpToDate\n", "line 1: indented line before any resource line"),
        ("r0 Primary\n", "line 1: expected key:value, got 'Primary'"),
        ("r0 disk:UpToDate\n", "resource 'r0' has no role"),
        ("role:Primary\n", "line 1: expected a resource line"),
        ("r0 role:Primary\n  volume:x disk:UpToDate\n", "volume is not a number: 'x'"),
        ("r0 role:Primary\n  open:yes\n", "device line without disk:"),
        ("r0 role:Primary\n  disk:UpToDate\n  p role:Primary\n    peer-disk:UpToDate done:abc\n", "done is not a number"),
    ],
)
def test_garbage_raises_a_clear_error(text: str, match: str) -> None:
    with pytest.raises(DrbdStatusError, match=match):
        parse_resource(text, "r0")


def test_worst_disk_orders_by_health() -> None:
    assert worst_disk([DiskState.UPTODATE, DiskState.OUTDATED, DiskState.CONSISTENT]) is DiskState.OUTDATED
    assert worst_disk([DiskState.INCONSISTENT, DiskState.FAILED]) is DiskState.FAILED
    assert worst_disk([]) is DiskState.DUNKNOWN
