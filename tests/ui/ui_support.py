"""Helpers shared by the UI tests (importable from test modules)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PyQt6.QtCore import QObject, Qt, QTimer

STALL_LIMIT_S = 0.050
BEAT_MS = 10
# A heartbeat gap with the GUI thread idle is the scheduler's doing on a loaded
# machine (seen: 400 ms at load 11, two test workers and other jobs on two
# cores). Only the part of an idle gap beyond this allowance counts, so a wait
# on the network or a lock on the GUI thread (seconds) is still caught.
IDLE_GAP_ALLOWANCE_S = 1.0


class StallDetector(QObject):
    """Measures how long the GUI thread is kept from its event loop.

    A 10 ms heartbeat records, for every gap between two beats, the CPU time
    the GUI thread itself used (``time.thread_time``, which the scheduler's
    pauses do not inflate) and the wall time. Work done on the GUI thread (a
    model run, a slow query, drawing too much) shows as CPU time; blocking
    (a socket, a sleep, a lock) shows as a long idle gap. ``worst`` is the
    larger of the longest CPU burst and the longest idle gap beyond
    ``IDLE_GAP_ALLOWANCE_S``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.timer = QTimer(self)
        self.timer.setObjectName("stall-detector")
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(BEAT_MS)
        self.timer.timeout.connect(self._beat)
        self.last = 0.0
        self.last_cpu = 0.0
        self.gaps: list[float] = []
        self.cpu_gaps: list[float] = []

    def start(self) -> None:
        self._mark()
        self.gaps.clear()
        self.cpu_gaps.clear()
        self.timer.start()

    def _mark(self) -> None:
        self.last = time.perf_counter()
        self.last_cpu = time.thread_time()

    def _beat(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.gaps.append(now - self.last)
        self.cpu_gaps.append(cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu

    def stop(self) -> float:
        self.timer.stop()
        return self.worst

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Blocking checks made by the test itself (database reads on the
        test's thread) are not the application's stalls."""
        self.timer.stop()
        try:
            yield
        finally:
            self._mark()
            self.timer.start()

    @property
    def worst(self) -> float:
        """Longest stall in seconds (see the class docstring)."""
        busy = max(self.cpu_gaps, default=0.0)
        idle = max((g - BEAT_MS / 1000 - IDLE_GAP_ALLOWANCE_S for g in self.gaps), default=0.0)
        return max(busy, idle, 0.0)


# --------------------------------------------------------------------------- fakes for rendering


class ScriptedKiosk:
    """A ``KioskPort`` whose flow state the test sets directly (no threads)."""

    def __init__(self) -> None:
        from datetime import datetime

        from payment.flow import Idle
        from terminal.core.clock import CHINA_TZ
        from ui.model import FlowView

        self.subs: list[Any] = []
        self.view = FlowView(Idle(), datetime(2026, 3, 2, 11, 30, tzinfo=CHINA_TZ), 0)
        self.posted: list[Any] = []
        self.modes: list[str] = []

    def subscribe(self, fn: Any) -> Any:
        self.subs.append(fn)
        fn(self.view)

        def unsubscribe() -> None:
            if fn in self.subs:
                self.subs.remove(fn)

        return unsubscribe

    def publish(self, update: Any) -> None:
        from ui.model import FlowView

        if isinstance(update, FlowView):
            self.view = update
        for fn in list(self.subs):
            fn(update)

    def post(self, event: Any) -> None:
        self.posted.append(event)

    def set_mode(self, mode: str) -> None:
        self.modes.append(mode)

    def current(self) -> Any:
        return self.view


class CannedBackend:
    """A ``StaffPort`` with fixed answers, for rendering staff pages."""

    def __init__(self) -> None:
        from datetime import date, datetime

        from payment.domain import MealSlot
        from terminal.core.clock import CHINA_TZ
        from terminal.core.money import Money
        from ui.model import (
            DayFigures,
            DeviceStatus,
            ManagerReport,
            MenuLine,
            PinResult,
            ResidentSummary,
            StatusRow,
            TxRow,
        )

        at = datetime(2026, 3, 2, 11, 31, tzinfo=CHINA_TZ)
        self.pin = PinResult(True, "S01", "王护理", "manager", 5)
        self.residents = [
            ResidentSummary("D001", "张*华", "category.dibao", True, True, True, Money(39650)),
            ResidentSummary(
                "D003", "李*国", "category.age_70_79", False, False, True, Money(34500)
            ),
        ]
        self.txs = [
            TxRow("01TX1", "charge", at, "张*华", Money(750), "face", False, MealSlot.LUNCH),
            TxRow("01TX2", "topup", at, "李*国", Money(5000), "", False),
        ]
        self.menu = [
            MenuLine("L1", "午餐套餐", Money(1500), (MealSlot.LUNCH,)),
            MenuLine("B1", "营养早餐", Money(500), (MealSlot.BREAKFAST,)),
        ]
        self.status = DeviceStatus(
            (
                StatusRow("status.camera", "status.ok", "ok", True),
                StatusRow("status.printer", "status.paper_out", "paper_out", True),
                StatusRow(
                    "status.unsynced",
                    "status.unsynced_value",
                    "degraded",
                    True,
                    {"count": 3, "age_s": 5400},
                ),
                StatusRow("status.version", "0.1.0", "ok"),
            ),
            at,
        )
        hours = [0] * 24
        hours[7], hours[11], hours[12] = 5, 12, 4
        self.report = ManagerReport(
            date(2026, 3, 2),
            "测试中心",
            tuple(hours),
            18,
            15,
            20,
            {"breakfast": 5, "lunch": 16},
            Money(9000),
            Money(21000),
            Money(30000),
            tuple(
                DayFigures(
                    date(2026, 2, 24 + i) if i < 5 else date(2026, 3, i - 4),
                    10 + i,
                    15 + i,
                    Money(8000),
                )
                for i in range(7)
            ),
            "footfall",
        )
        self.calls: list[str] = []
        self.district_wallet = True  # the district pays visits from district wallets
        self.district_topups: list[tuple[str, Any, str]] = []

    def check_pin(self, pin: str) -> Any:
        from ui.model import PinResult

        self.calls.append("check_pin")
        return self.pin if pin == "2468" else PinResult(False, tries_left=4)

    def end_session(self, staff_id: str) -> None:
        self.calls.append("end_session")

    def search_residents(self, query: str) -> list[Any]:
        return list(self.residents)

    def transactions(self) -> list[Any]:
        return list(self.txs)

    def void(self, record_id: str, reason: str, staff_id: str) -> Any:
        return self.txs[0]

    def reprint(self, record_id: str, staff_id: str) -> str:
        return "printed"

    def topup(self, resident_id: str, amount: Any, staff_id: str) -> Any:
        self.calls.append("topup")
        return amount

    def district_topup_available(self) -> bool:
        return self.district_wallet

    def district_topup(self, resident_id: str, amount: Any, staff_id: str) -> None:
        self.district_topups.append((resident_id, amount, staff_id))

    def menu_today(self) -> list[Any]:
        return list(self.menu)

    def menu_presets(self) -> list[Any]:
        return list(self.menu)

    def set_menu(self, lines: Any, staff_id: str) -> None:
        self.calls.append("set_menu")

    def device_status(self) -> Any:
        return self.status

    def sync_now(self, staff_id: str) -> str:
        return "3"

    def manager_report(self, day: Any = None) -> Any:
        return self.report

    def export_report(self, fmt: str, staff_id: str) -> Any:
        from pathlib import Path

        return Path(f"/tmp/report.{fmt}")

    def enrol(
        self, resident_id: str, staff_id: str, *, consent_face_pay: bool, consent_attendance: bool
    ) -> int:
        return 3

    def cancel_enrol(self) -> None:
        pass

    def unenrol(self, resident_id: str, staff_id: str) -> int:
        return 3
