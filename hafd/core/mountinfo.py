"""Parse /proc/self/mountinfo text (pure: the caller reads the file).

The filesystem agent decides "is DEVICE mounted on DIRECTORY" from this table and
never from `mount`'s exit code alone, so the parser must be exact: mountinfo
escapes space, tab, newline and backslash in paths as octal (`\\040`), has a
variable number of optional fields ended by a lone "-", and lists stacked mounts
on one directory, of which only the top one is visible.

Line format (proc(5)):
    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)       (7)   (8) (9)    (10)        (11)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OCTAL = re.compile(r"\\([0-7]{3})")


class MountinfoError(ValueError):
    """A mountinfo line that does not have the kernel's shape."""

    def __init__(self, message: str, *, line_no: int = 0, line: str = "") -> None:
        super().__init__(f"mountinfo line {line_no}: {message}: {line!r}" if line_no else message)
        self.message = message
        self.line_no = line_no
        self.line = line


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str  # the path inside the filesystem that forms this mount's root ("/" unless a bind mount)
    mount_point: str
    options: tuple[str, ...]  # per-mount options ("rw", "relatime", ...)
    optional: tuple[str, ...]  # propagation tags ("shared:1", "master:2")
    fstype: str
    source: str
    super_options: tuple[str, ...]  # per-superblock options ("rw", "errors=remount-ro")

    @property
    def dev(self) -> str:
        return f"{self.major}:{self.minor}"

    @property
    def read_only(self) -> bool:
        """True if writes fail here: the mount or the superblock itself is read-only
        (ext4 with errors=remount-ro turns the superblock ro on an I/O error)."""
        return "ro" in self.options or "ro" in self.super_options


def unescape(field: str) -> str:
    """Undo the kernel's octal escaping (`\\040` -> space, `\\134` -> backslash)."""
    if "\\" not in field:
        return field
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _int(value: str, what: str, line_no: int, line: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise MountinfoError(f"{what} is not a number ({value!r})", line_no=line_no, line=line) from None


def parse_line(line: str, line_no: int = 0) -> MountEntry:
    fields = line.split(" ")
    try:
        sep = fields.index("-", 6)
    except ValueError:
        raise MountinfoError("no '-' separator after the optional fields", line_no=line_no, line=line) from None
    if sep < 6 or len(fields) < sep + 4:
        raise MountinfoError(f"expected at least 10 fields, got {len(fields)}", line_no=line_no, line=line)
    major_s, colon, minor_s = fields[2].partition(":")
    if not colon:
        raise MountinfoError(f"device {fields[2]!r} is not MAJOR:MINOR", line_no=line_no, line=line)
    return MountEntry(
        mount_id=_int(fields[0], "mount id", line_no, line),
        parent_id=_int(fields[1], "parent id", line_no, line),
        major=_int(major_s, "major", line_no, line),
        minor=_int(minor_s, "minor", line_no, line),
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=tuple(fields[5].split(",")),
        optional=tuple(fields[6:sep]),
        fstype=unescape(fields[sep + 1]),
        source=unescape(fields[sep + 2]),
        # Super options never contain a space, but join defensively if a kernel ever adds fields.
        super_options=tuple(" ".join(fields[sep + 3 :]).split(",")),
    )


def parse_mountinfo(text: str) -> list[MountEntry]:
    """All entries, in the kernel's order; blank lines are skipped, a malformed one raises."""
    return [parse_line(line, n) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def visible_mount(entries: list[MountEntry], mount_point: str) -> MountEntry | None:
    """The mount a path lookup of `mount_point` reaches, or None if nothing is mounted there.

    Several mounts can be stacked on one directory; the visible one is the top of the
    stack, i.e. the one that is not the parent of another mount on the same directory.
    `mount_point` must be canonical (realpath), as the kernel prints it.
    """
    stack = [e for e in entries if e.mount_point == mount_point]
    if not stack:
        return None
    parents = {e.parent_id for e in stack}
    tops = [e for e in stack if e.mount_id not in parents]
    return (tops or stack)[-1]


def mounts_under(entries: list[MountEntry], directory: str) -> list[MountEntry]:
    """Mounts on `directory` or below it (what keeps it busy besides open files)."""
    prefix = directory.rstrip("/") + "/"
    return [e for e in entries if e.mount_point == directory or e.mount_point.startswith(prefix)]
