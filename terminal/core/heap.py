"""Give freed heap memory back to the kernel (glibc ``malloc_trim``).

A long-running process that allocates and frees many short-lived buffers from
several threads (camera frames, model tensors, Qt images) leaves free memory
scattered in glibc's arenas; the resident size then creeps up over hours
although nothing is leaked (the Python heap stays flat). ``malloc_trim(0)``
releases the free pages of every arena. On a C library without it (musl,
macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable
from functools import cache
from typing import Any


@cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        fn = lib.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lib


def trim() -> bool:
    """Release free heap pages now; True when glibc's ``malloc_trim`` ran and
    returned memory, False when there was none to return or it is unavailable."""
    lib = _libc()
    return bool(lib.malloc_trim(0)) if lib is not None else False


def available() -> bool:
    return _libc() is not None


def start_trimming(every_s: float, *, on_error: Callable[[BaseException], None]) -> threading.Event:
    """Call :func:`trim` every ``every_s`` seconds in a daemon thread until the
    returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                trim()
            except Exception as exc:  # never take the process down for this
                on_error(exc)
                return

    threading.Thread(target=loop, name="heap-trim", daemon=True).start()
    return stop
