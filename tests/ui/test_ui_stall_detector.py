"""The stall detector the journeys rely on catches both kinds of stall: work
done on the GUI thread and the GUI thread blocked on a wait."""

from __future__ import annotations

import time

from PyQt6.QtCore import QTimer
from ui_support import IDLE_GAP_ALLOWANCE_S, STALL_LIMIT_S, StallDetector


def _run(qtbot, det: StallDetector, job) -> float:
    done: list[bool] = []

    def fire() -> None:
        job()
        done.append(True)

    det.start()
    QTimer.singleShot(30, fire)
    qtbot.waitUntil(lambda: bool(done), timeout=10_000)
    qtbot.wait(50)
    return det.stop()


def test_busy_gui_thread_is_a_stall(qtbot, stall_detector: StallDetector) -> None:
    def spin() -> None:
        end = time.thread_time() + 0.15
        while time.thread_time() < end:
            pass

    assert _run(qtbot, stall_detector, spin) >= 0.12


def test_blocked_gui_thread_is_a_stall(qtbot, stall_detector: StallDetector) -> None:
    worst = _run(qtbot, stall_detector, lambda: time.sleep(IDLE_GAP_ALLOWANCE_S + 0.3))
    assert worst >= 0.2


def test_an_idle_event_loop_is_no_stall(qtbot, stall_detector: StallDetector) -> None:
    assert _run(qtbot, stall_detector, lambda: None) < STALL_LIMIT_S
