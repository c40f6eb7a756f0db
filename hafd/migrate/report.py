"""What an import could not carry over, located in the file it came from.

Migration must never drop a piece of the old configuration silently: every command,
key or value the translator does not turn into hafd.yaml becomes a `Report`, shown on
stderr and repeated as a comment in the output, so the operator reviews it twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    """One thing the import did not translate (`lost`), or translated differently (a note)."""

    file: str
    line: int
    message: str
    lost: bool = True

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: {'cannot translate' if self.lost else 'note'}: {self.message}"
