"""terminal.core.heap: glibc's malloc_trim through ctypes, and the trimming thread."""

from __future__ import annotations

import platform
import threading

import pytest

from terminal.core import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_returns_freed_pages_on_glibc() -> None:
    assert heap.available()
    blocks = [bytearray(64 * 1024) for _ in range(2000)]  # ~128 MB in small mallocs
    del blocks[::2]
    blocks.clear()
    assert isinstance(heap.trim(), bool)


def test_trimming_thread_runs_and_stops() -> None:
    errors: list[BaseException] = []
    before = {t.name for t in threading.enumerate()}
    stop = heap.start_trimming(0.01, on_error=errors.append)
    assert "heap-trim" in {t.name for t in threading.enumerate()} - before
    stop.set()
    for t in threading.enumerate():
        if t.name == "heap-trim":
            t.join(timeout=5)
            assert not t.is_alive()
    assert errors == []
