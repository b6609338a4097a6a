"""What the views need from the rest of the terminal. Qt-free Protocols.

The composition root (``terminal.app``) implements them: ``KioskPort`` by the
kiosk runner, ``StaffPort`` by the staff back end. ``StaffPort`` methods block
(database, printer, network, scrypt); the views call them only through
``ui.views.tasks.TaskRunner`` on a worker thread, never on the GUI thread.
Errors they raise are ``TerminalError`` subclasses with messages fit to show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Literal, Protocol

from payment.flow import Event
from terminal.core.money import Money
from ui.model import (
    DeviceStatus,
    FlowView,
    KioskUpdate,
    ManagerReport,
    MenuLine,
    PinResult,
    ResidentSummary,
    TxRow,
)

Subscriber = Callable[[KioskUpdate], None]
Mode = Literal["pay", "staff"]


class KioskPort(Protocol):
    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn`` (from runner threads) with every update; returns an unsubscribe."""
        ...

    def post(self, event: Event) -> None:
        """Feed a flow event (touch, digits, card tap, staff lookup/approve). Never blocks."""
        ...

    def set_mode(self, mode: Mode) -> None:
        """``staff`` pauses face payments (staff screens own the camera)."""
        ...

    def current(self) -> FlowView: ...


class SpeakerPort(Protocol):
    def speak(self, key: str, language: str) -> None: ...


class StaffPort(Protocol):
    def check_pin(self, pin: str) -> PinResult: ...

    def end_session(self, staff_id: str) -> None: ...

    def search_residents(self, query: str) -> list[ResidentSummary]: ...

    def transactions(self) -> list[TxRow]: ...

    def void(self, record_id: str, reason: str, staff_id: str) -> TxRow: ...

    def reprint(self, record_id: str, staff_id: str) -> str:
        """Returns the print outcome (``printed`` ...); raises when it failed."""
        ...

    def topup(self, resident_id: str, amount: Money, staff_id: str) -> Money:
        """Returns the balance after."""
        ...

    def district_topup_available(self) -> bool:
        """Whether the senior's district wallet (held by the platform) can be topped up."""
        ...

    def district_topup(self, resident_id: str, amount: Money, staff_id: str) -> None:
        """Queue a top-up of the district wallet; credited when it is uploaded."""
        ...

    def menu_today(self) -> list[MenuLine]: ...

    def menu_presets(self) -> list[MenuLine]: ...

    def set_menu(self, lines: Sequence[MenuLine], staff_id: str) -> None: ...

    def device_status(self) -> DeviceStatus: ...

    def sync_now(self, staff_id: str) -> str: ...

    def manager_report(self, day: date | None = None) -> ManagerReport: ...

    def export_report(self, fmt: Literal["csv", "html"], staff_id: str) -> Path: ...

    def enrol(
        self,
        resident_id: str,
        staff_id: str,
        *,
        consent_face_pay: bool,
        consent_attendance: bool,
    ) -> int:
        """Capture good frames from the live camera (progress is published as
        ``EnrolProgress``), then store the templates; returns how many."""
        ...

    def cancel_enrol(self) -> None: ...

    def unenrol(self, resident_id: str, staff_id: str) -> int: ...
