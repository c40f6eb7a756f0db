"""Table tests of the mountinfo parser, with lines shaped like the kernel prints them."""

from __future__ import annotations

import pytest

from hafd.core.mountinfo import (
    MountEntry,
    MountinfoError,
    mounts_under,
    parse_line,
    parse_mountinfo,
    unescape,
    visible_mount,
)

REAL = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
40 27 7:3 / /srv/my\\040data rw,noatime shared:12 master:3 - ext4 /dev/loop3 rw
41 27 0:44 /sub\\011dir /mnt/bind ro,nosuid - tmpfs tmp\\134fs rw,size=1024k
"""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain", "plain"),
        ("/srv/my\\040data", "/srv/my data"),
        ("a\\011b", "a\tb"),
        ("a\\012b", "a\nb"),
        ("back\\134slash", "back\\slash"),
        ("\\040\\040", "  "),
        ("not\\08escape", "not\\08escape"),  # not three octal digits: left alone
    ],
)
def test_unescape(raw: str, expected: str) -> None:
    assert unescape(raw) == expected


def test_parse_real_table() -> None:
    entries = parse_mountinfo(REAL)
    assert [e.mount_point for e in entries] == ["/proc", "/", "/srv/my data", "/mnt/bind"]
    proc, root, data, bind = entries
    assert proc == MountEntry(22, 27, 0, 21, "/", "/proc", ("rw", "relatime"), (), "proc", "proc", ("rw",))
    assert root.optional == ("shared:1",)
    assert root.super_options == ("rw", "errors=remount-ro")
    assert data.optional == ("shared:12", "master:3")
    assert (data.major, data.minor, data.dev) == (7, 3, "7:3")
    assert data.source == "/dev/loop3" and data.fstype == "ext4"
    assert bind.root == "/sub\tdir"
    assert bind.source == "tmp\\fs"
    assert bind.read_only and not data.read_only


def test_superblock_read_only_counts_as_read_only() -> None:
    e = parse_line("50 27 7:0 / /data rw,relatime - ext4 /dev/loop0 ro,errors=remount-ro")
    assert e.read_only


def test_blank_lines_are_skipped() -> None:
    assert len(parse_mountinfo("\n" + REAL + "\n\n")) == 4


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("22 27 0:21 / /proc rw,relatime proc proc rw", "no '-' separator"),
        ("22 27 0:21 / /proc rw - proc", "at least 10 fields"),
        ("x 27 0:21 / /proc rw - proc proc rw", "mount id is not a number"),
        ("22 27 021 / /proc rw - proc proc rw", "not MAJOR:MINOR"),
        ("22 27 0:z / /proc rw - proc proc rw", "minor is not a number"),
        ("", "no '-' separator"),
    ],
)
def test_malformed_lines_raise_clear_errors(line: str, fragment: str) -> None:
    with pytest.raises(MountinfoError) as info:
        parse_line(line, 7)
    assert fragment in str(info.value)
    assert info.value.line_no == 7


def test_error_names_the_line_number_in_a_table() -> None:
    with pytest.raises(MountinfoError, match="line 2"):
        parse_mountinfo("22 27 0:21 / /proc rw - proc proc rw\ngarbage\n")


def test_visible_mount_is_top_of_stack() -> None:
    text = (
        "27 1 253:1 / / rw - ext4 /dev/vda1 rw\n"
        "60 27 7:0 / /data rw - ext4 /dev/loop0 rw\n"
        "61 60 0:50 / /data rw - tmpfs tmpfs rw\n"
        "62 60 7:0 /x /data/x rw - ext4 /dev/loop0 rw\n"
    )
    entries = parse_mountinfo(text)
    top = visible_mount(entries, "/data")
    assert top is not None and top.mount_id == 61 and top.fstype == "tmpfs"
    assert visible_mount(entries, "/nothing") is None
    assert visible_mount(entries, "/dat") is None


def test_visible_mount_top_listed_first() -> None:
    # The order of lines is not what decides; the parent link is.
    text = (
        "61 60 0:50 / /data rw - tmpfs tmpfs rw\n"
        "60 27 7:0 / /data rw - ext4 /dev/loop0 rw\n"
    )
    top = visible_mount(parse_mountinfo(text), "/data")
    assert top is not None and top.mount_id == 61


def test_mounts_under() -> None:
    text = (
        "60 27 7:0 / /data rw - ext4 /dev/loop0 rw\n"
        "61 60 0:50 / /data/sub rw - tmpfs tmpfs rw\n"
        "62 27 0:51 / /database rw - tmpfs tmpfs rw\n"
    )
    assert [e.mount_id for e in mounts_under(parse_mountinfo(text), "/data")] == [60, 61]


def test_parses_this_hosts_mountinfo() -> None:
    with open("/proc/self/mountinfo") as f:
        entries = parse_mountinfo(f.read())
    assert any(e.mount_point == "/" for e in entries)
    assert any(e.mount_point == "/proc" and e.fstype == "proc" for e in entries)
