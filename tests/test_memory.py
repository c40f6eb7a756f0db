"""hafd/io/memory.py: the one-off heap trim after start-up."""

from __future__ import annotations

import re

from hafd.io import memory


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


def test_freed_heap_goes_back_to_the_kernel() -> None:
    memory.release_free_heap()  # start from a trimmed heap
    # Many small C-heap blocks (bytes objects over pymalloc's 512-byte limit), then free them.
    blocks = [bytes(2000) + bytes([i % 256]) for i in range(20000)]
    del blocks[:-1]  # the last one keeps the heap top in use, so glibc cannot shrink it by itself
    before = _rss_kb()
    assert memory.release_free_heap() is True
    assert _rss_kb() < before - 10_000  # ~40 MB were freed; at least 10 MB must leave RSS
