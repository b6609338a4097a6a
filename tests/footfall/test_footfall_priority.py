"""The counting thread runs below the kiosk: its own nice level goes up, the
rest of the process keeps its priority (Linux schedules threads apart)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from face.footfall.service import FOOTFALL_NICE, lower_thread_priority


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_only_the_calling_thread_is_lowered() -> None:
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: dict[str, int | None] = {}

    def worker() -> None:
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["returned"] = lower_thread_priority()
        seen["expected"] = min(19, before + FOOTFALL_NICE)
        seen["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert seen["returned"] == seen["after"] == seen["expected"]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before
