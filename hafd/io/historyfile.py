"""The history file: `<state_dir>/history.jsonl`, one JSON event per line.

Appends are fsynced so a transition survives a crash or power loss right after it;
a crash mid-append leaves at most a torn last line, which `hafd.core.history.decode`
skips and the next append starts past (a newline is written first).  The file is
compacted (last KEEP events, written to a temporary file, fsynced, renamed over)
once it holds twice that many, so it stays bounded and earlier events are never at
risk from a half-written rewrite.

Writing never blocks the event loop: `append` queues, and one writer task does the
file work in a thread.  fsync on a busy disk can take tens of milliseconds, and
events such as "peer lost" happen in the middle of a failover.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Mapping

import structlog

from hafd.core.history import KEEP, decode, encode

log = structlog.get_logger(__name__)


class HistoryFile:
    def __init__(self, path: str, keep: int = KEEP) -> None:
        self.path = path
        self.keep = keep
        self._pending: list[dict[str, Any]] = []
        self._inflight: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None
        self._lines: int | None = None  # complete lines in the file, once known
        self._seq: int | None = None
        self.errors = 0

    # -- writing -----------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> None:
        """Queue an event; numbered in order (`seq`), written soon in the background."""
        if self._seq is None:
            self._seq = self._last_seq()
        self._seq += 1
        self._pending.append({"seq": self._seq, **record})
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a tool, a test): write at once
            self._write(self._take())
            return
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._drain(), name="history-writer")

    def _take(self) -> list[dict[str, Any]]:
        batch, self._pending = self._pending, []
        self._inflight = batch
        return batch

    async def _drain(self) -> None:
        while self._pending:
            batch = self._take()
            try:
                await asyncio.to_thread(self._write, batch)
            finally:
                self._inflight = []

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for queued events to reach the disk, e.g. before exiting."""
        if self._writer is not None and not self._writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                log.warning("history_flush_timed_out", path=self.path, pending=len(self._pending))

    def _write(self, batch: list[dict[str, Any]]) -> None:
        """Blocking: append + fsync, then compact if the file grew past twice `keep`."""
        if not batch:
            return
        data = b"".join(encode(r) for r in batch)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and self._lines is None:
                    self._lines = len(self._read_all())
                if size and not self._ends_with_newline(size):
                    data = b"\n" + data  # a torn last line stays alone (and skipped) on its line
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._lines = (self._lines or 0) + len(batch)
            if self._lines > 2 * self.keep:
                self._compact()
        except OSError as e:
            self.errors += 1
            log.error("history_write_failed", path=self.path, error=str(e), lost=len(batch))

    def _ends_with_newline(self, size: int) -> bool:
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            return f.read(1) == b"\n"

    def _compact(self) -> None:
        records = self._read_all()[-self.keep:]
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"".join(encode(r) for r in records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._lines = len(records)

    # -- reading -----------------------------------------------------------------

    def _read_all(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                return decode(f.read())
        except FileNotFoundError:
            return []
        except OSError as e:
            log.warning("history_read_failed", path=self.path, error=str(e))
            return []

    def _last_seq(self) -> int:
        seqs = [r["seq"] for r in self._read_all() if isinstance(r.get("seq"), int)]
        return max(seqs, default=0)

    def read(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest `limit` events, oldest first, including those not yet on disk."""
        merged = {r["seq"]: r for r in self._read_all() if isinstance(r.get("seq"), int)}
        for r in (*self._inflight, *self._pending):
            merged.setdefault(r["seq"], r)
        records = [merged[k] for k in sorted(merged)]
        return records if limit is None else records[-limit:] if limit > 0 else []
