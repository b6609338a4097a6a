"""The staff and manager back end of the kiosk (``ui.ports.StaffPort``).

Every method here may block (database, printer, scrypt, network) and is called
by the views on a worker thread only. Every staff action is written to the
audit trail (``terminal.db.roster.audit``) with the staff id and no personal
data. Errors are ``TerminalError`` subclasses with messages fit to show.

Staff PINs are in :mod:`terminal.kiosk.pins`; the report files' formats in
:mod:`terminal.kiosk.reports`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from payment.domain import ItemKind, MealSlot, Menu, MenuItem, SeniorCategory, best_category
from terminal.core.atomic import atomic_write_text
from terminal.core.clock import Clock
from terminal.core.errors import TerminalError
from terminal.core.log import get_logger
from terminal.core.money import Money
from terminal.db.engine import write_session
from terminal.db.roster import audit
from terminal.kiosk.pins import StaffPins
from terminal.kiosk.reports import report_csv, report_html
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

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from face.recognise import Recogniser
    from face.store import TemplateStore
    from payment.store import PaymentStore
    from payment.store.queries import TxView
    from terminal.db.outbox import Outbox
    from terminal.db.roster import RosterStore
    from terminal.kiosk.runner import KioskRunner, PrinterPort

log = get_logger(__name__)

TOPUP_MAX = Money(100_000)  # 1000 yuan per cash top-up


@dataclass
class BackendDeps:
    sessions: sessionmaker[Session]
    roster: RosterStore
    payment: PaymentStore
    outbox: Outbox
    clock: Clock
    pins: StaffPins
    export_dir: Path
    templates: TemplateStore | None = None
    recogniser: Recogniser | None = None
    runner: KioskRunner | None = None
    printer: PrinterPort | None = None
    printer_status: Callable[[], str] | None = None  # ok | offline | paper_out | absent
    card_reader_status: Callable[[], str] | None = None
    sync_status: Callable[[], Any] | None = None  # -> sync.store.status.SyncStatus
    sync_now: Callable[[], dict[str, Any]] | None = None
    # whether the district's policy pays visits from a district wallet (None: no pepper)
    district_wallet: Callable[[], bool] | None = None
    model_pack: str = ""
    version: str = ""
    centre_name: str = ""
    enrol_frames: int = 5
    enrol_timeout_s: float = 30.0


MENU_PRESETS: tuple[MenuLine, ...] = (
    MenuLine("B1", "营养早餐", Money(500), (MealSlot.BREAKFAST,)),
    MenuLine("L1", "午餐套餐（两荤一素）", Money(1500), (MealSlot.LUNCH,)),
    MenuLine("L2", "软烂午餐（老年餐）", Money(1200), (MealSlot.LUNCH,)),
    MenuLine("D1", "晚餐套餐", Money(1200), (MealSlot.DINNER,)),
    MenuLine("X1", "小米粥", Money(200), (MealSlot.BREAKFAST, MealSlot.DINNER), "item", False),
    MenuLine("X2", "豆浆", Money(300), (MealSlot.BREAKFAST, MealSlot.LUNCH), "item", False),
    MenuLine("X3", "水果", Money(300), (MealSlot.LUNCH, MealSlot.DINNER), "item", False),
)


def _tx_row(t: TxView) -> TxRow:
    amount = t.due if t.kind == "charge" else (t.list_amount if t.list_amount else t.due)
    slot = None
    if t.slot:
        try:
            slot = MealSlot(t.slot)
        except ValueError:
            slot = None
    return TxRow(
        record_id=t.record_id,
        kind=t.kind,
        at=t.at,
        name_masked=t.name_masked,
        amount=amount,
        method=t.method or "",
        voided=t.voided,
        slot=slot,
        subsidy=t.subsidy,
        balance_after=t.balance_after,
    )


class KioskBackend:
    """Implements ``ui.ports.StaffPort`` over the real stores."""

    def __init__(self, deps: BackendDeps) -> None:
        self.d = deps
        self._enrol_lock = threading.Lock()

    # -- helpers ----------------------------------------------------------------
    def _audit(self, staff_id: str, action: str, target: str | None = None, **details: Any) -> None:
        with write_session(self.d.sessions) as s:
            audit(s, self.d.clock.now(), staff_id or "unknown", action, target, details)

    def _today(self) -> date:
        from payment.domain import service_date

        return service_date(self.d.clock.now(), self.d.payment.config.slot_windows)

    # -- PIN ---------------------------------------------------------------------
    def check_pin(self, pin: str) -> PinResult:
        res = self.d.pins.check(pin)
        if res.ok:
            self._audit(res.staff_id, "staff_login", None, role=res.role)
        elif res.locked_for_s:
            self._audit("unknown", "staff_login_locked", None, seconds=res.locked_for_s)
        else:
            self._audit("unknown", "staff_login_failed", None, tries_left=res.tries_left)
        return res

    def end_session(self, staff_id: str) -> None:
        self._audit(staff_id, "staff_logout")

    # -- residents ---------------------------------------------------------------
    def search_residents(self, query: str) -> list[ResidentSummary]:
        q = query.strip()
        with self.d.sessions() as s:
            infos = self.d.roster.list(s, include_inactive=False)
            counts: dict[str, int] = {}
            if self.d.templates is not None:
                for info in infos:
                    counts[info.resident_id] = self.d.templates.count(s, info.resident_id)
        out: list[ResidentSummary] = []
        for info in infos:
            if q and not (
                q.lower() in info.resident_id.lower()
                or (info.phone_last4 is not None and info.phone_last4 == q)
                or q in info.name_masked
            ):
                continue
            cats = []
            for c in info.categories:
                try:
                    cats.append(SeniorCategory.parse(c))
                except TerminalError:
                    continue
            out.append(
                ResidentSummary(
                    resident_id=info.resident_id,
                    name_masked=info.name_masked,
                    category_key=best_category(cats).i18n_key,
                    has_face=counts.get(info.resident_id, 0) > 0,
                    consent_face_pay=info.consent_face_pay,
                    consent_attendance=info.consent_attendance,
                    balance=self.d.payment.balance(info.resident_id),
                    active=info.active,
                )
            )
            if len(out) >= 50:
                break
        return out

    # -- transactions ------------------------------------------------------------
    def transactions(self) -> list[TxRow]:
        return [_tx_row(t) for t in self.d.payment.transactions(day=self._today(), limit=500)]

    def void(self, record_id: str, reason: str, staff_id: str) -> TxRow:
        if not reason.strip():
            raise TerminalError("a void needs a reason", code="reason_required")
        view = self.d.payment.void(record_id, reason, staff_id)
        return _tx_row(view)

    def reprint(self, record_id: str, staff_id: str) -> str:
        receipt = self.d.payment.receipt(record_id, reprint=True)
        if self.d.printer is None:
            self._audit(staff_id, "receipt_reprint_failed", record_id, reason="no_printer")
            raise TerminalError("no receipt printer is configured", code="no_printer")
        ok, reason = self.d.printer(receipt)
        self._audit(
            staff_id,
            "receipt_reprint" if ok else "receipt_reprint_failed",
            record_id,
            reason=reason,
        )
        if not ok:
            raise TerminalError(f"the printer reports: {reason}", code="print_failed")
        return reason or "printed"

    def record_print_failure(self, record_id: str, reason: str) -> None:
        """``on_print_failure`` of the runner: the payment stands, staff can reprint."""
        self._audit("kiosk", "receipt_print_failed", record_id, reason=reason)

    def topup(self, resident_id: str, amount: Money, staff_id: str) -> Money:
        if amount.fen <= 0 or amount.fen > TOPUP_MAX.fen:
            raise TerminalError("a cash top-up is 0.01 to 1000 yuan", code="bad_amount")
        view = self.d.payment.topup(resident_id, amount, staff_id, reason="cash at the kiosk")
        return view.balance_after

    def district_topup_available(self) -> bool:
        """True when the district pays visits from the district wallet (the
        ``home_wallet`` policy of the pulled roster): staff may top it up here."""
        if self.d.district_wallet is None:
            return False
        try:
            return self.d.district_wallet()
        except Exception:  # an unreadable sync.db: offer only this centre's wallet
            log.warning("district_wallet_policy_unreadable", exc_info=True)
            return False

    def district_topup(self, resident_id: str, amount: Money, staff_id: str) -> None:
        """Cash taken here for the senior's district wallet, held by the platform:
        queued as a ``district_wallet_topup`` record and credited once when it is
        uploaded (offline-first). This centre's own wallet does not move."""
        if not self.district_topup_available():
            raise TerminalError(
                "the district does not pay visits from a district wallet",
                code="district_wallet_off",
            )
        if amount.fen <= 0 or amount.fen > TOPUP_MAX.fen:
            raise TerminalError("a cash top-up is 0.01 to 1000 yuan", code="bad_amount")
        self.d.payment.district_wallet.topup(resident_id, amount, staff_id)

    # -- menu -------------------------------------------------------------------
    def menu_today(self) -> list[MenuLine]:
        menu = self.d.payment.menu(self._today())
        if menu is None:
            return []
        return [
            MenuLine(
                i.item_id, i.name, i.price, tuple(sorted(i.slots)), i.kind.value, i.subsidisable
            )
            for i in menu.items
        ]

    def menu_presets(self) -> list[MenuLine]:
        return list(MENU_PRESETS)

    def set_menu(self, lines: Sequence[MenuLine], staff_id: str) -> None:
        items = tuple(
            MenuItem(
                item_id=ln.item_id,
                name=ln.name,
                price=ln.price,
                slots=frozenset(ln.slots),
                kind=ItemKind(ln.kind),
                subsidisable=ln.subsidisable,
            )
            for ln in lines
        )
        self.d.payment.set_menu(Menu(self._today(), items), staff_id)
        if self.d.runner is not None:
            self.d.runner.refresh_idle()

    # -- enrolment --------------------------------------------------------------
    def enrol(
        self,
        resident_id: str,
        staff_id: str,
        *,
        consent_face_pay: bool,
        consent_attendance: bool,
    ) -> int:
        from face.enrol import apply_to_gallery, enrol

        d = self.d
        if d.runner is None or d.recogniser is None or d.templates is None:
            raise TerminalError(
                "face enrolment needs the camera and the model pack", code="no_camera"
            )
        if not consent_face_pay and not consent_attendance:
            raise TerminalError(
                "record the senior's consent before enrolling a face", code="consent_required"
            )
        if not self._enrol_lock.acquire(blocking=False):
            raise TerminalError("an enrolment is already running", code="busy")
        try:
            with d.sessions() as s:
                d.roster.get(s, resident_id)  # NotFound with a clear message
                name = d.roster.name(s, resident_id)
            frames = d.runner.capture_faces(d.enrol_frames, d.enrol_timeout_s)
            if not frames:
                raise TerminalError(
                    "no clear face was captured; please try again", code="enrol_timeout"
                )
            plan = d.recogniser.plan_enrolment(
                [(f"frame{i + 1}", f, None) for i, f in enumerate(frames)]
            )
            now = d.clock.now()
            with write_session(d.sessions) as s:
                ids = enrol(
                    s,
                    d.roster,
                    d.templates,
                    d.outbox,
                    d.recogniser,
                    plan,
                    resident_id,
                    name,
                    now,
                    consent_face_pay=consent_face_pay,
                    consent_attendance=consent_attendance,
                )
                audit(
                    s,
                    now,
                    staff_id,
                    "enrol",
                    resident_id,
                    {
                        "templates": len(ids),
                        "frames": len(frames),
                        "source": "kiosk_camera",
                        "consent_face_pay": consent_face_pay,
                        "consent_attendance": consent_attendance,
                    },
                )
            apply_to_gallery(d.recogniser, resident_id, plan)
            return len(ids)
        finally:
            self._enrol_lock.release()

    def cancel_enrol(self) -> None:
        if self.d.runner is not None:
            self.d.runner.cancel_capture()

    def unenrol(self, resident_id: str, staff_id: str) -> int:
        from face.enrol import unenrol

        d = self.d
        if d.templates is None:
            raise TerminalError("face data is not available on this terminal", code="no_faces")
        now = d.clock.now()
        with write_session(d.sessions) as s:
            removed = unenrol(s, d.roster, d.templates, d.outbox, resident_id, now, d.recogniser)
            audit(s, now, staff_id, "unenrol", resident_id, {"templates_deleted": removed})
        return removed

    # -- device status ----------------------------------------------------------
    def device_status(self) -> DeviceStatus:
        d = self.d
        now = d.clock.now()
        rows: list[StatusRow] = []
        cam = d.runner.health.camera if d.runner is not None else "absent"
        rows.append(StatusRow("status.camera", _health_key(cam), _level(cam), True))
        prn = (
            d.printer_status()
            if d.printer_status
            else ("absent" if d.printer is None else "unknown")
        )
        rows.append(StatusRow("status.printer", _health_key(prn), _level(prn), True))
        rdr = d.card_reader_status() if d.card_reader_status else "absent"
        rows.append(StatusRow("status.card_reader", _health_key(rdr), _level(rdr), True))
        net, unsynced = "unknown", None
        if d.sync_status is not None:
            try:
                st = d.sync_status()
                unsynced = (st.queue_depth, st.oldest_unsynced_age_s)
                errors = [s.last_error for s in st.streams.values() if s.last_error]
                ok_any = any(s.last_success_at for s in st.streams.values())
                net = (
                    "offline"
                    if errors and not ok_any
                    else ("ok" if ok_any or not st.queue_depth else "unknown")
                )
            except Exception as exc:
                log.warning("status_sync_failed", error=type(exc).__name__)
                net = "unknown"
        rows.append(StatusRow("status.network", _health_key(net), _level(net), True))
        if unsynced is None or not unsynced[0]:
            rows.append(StatusRow("status.unsynced", "status.unsynced_none", "ok", True))
        else:
            count, age = unsynced
            age_s = int(age or 0)
            level: Any = "ok" if age_s < 3600 else ("degraded" if age_s < 86400 else "offline")
            rows.append(
                StatusRow(
                    "status.unsynced",
                    "status.unsynced_value",
                    level,
                    True,
                    {"count": count, "age_s": age_s},
                )
            )
        rows.append(
            StatusRow("status.model", d.model_pack or "-", "ok" if d.model_pack else "degraded")
        )
        rows.append(StatusRow("status.version", d.version or "-", "ok"))
        return DeviceStatus(tuple(rows), now)

    def sync_now(self, staff_id: str) -> str:
        if self.d.sync_now is None:
            raise TerminalError("sync is not configured on this terminal", code="no_sync")
        self._audit(staff_id, "sync_now")
        doc = self.d.sync_now()
        sent = 0
        for up in doc.get("uploads", []):
            sent += int(up.get("acked", up.get("sent", 0)) or 0)
        if doc.get("delegated_to_pid"):
            return "delegated"
        return str(sent)

    # -- manager ------------------------------------------------------------------
    def manager_report(self, day: date | None = None) -> ManagerReport:
        d = self.d
        day = day or self._today()
        visits = [0] * 24
        unique = 0
        attendance = 0
        source: Literal["footfall", "payments"] = "payments"
        try:
            from face.footfall.store import footfall_summary

            with d.sessions() as s:
                ff = footfall_summary(s, day.isoformat())
            if ff["totals"]["observed_seconds"] or ff["totals"]["visits_in"]:
                source = "footfall"
                visits = [int(h["visits_in"]) for h in ff["hours"]]
                unique = int(ff["totals"]["unique_visitors"] or 0)
                attendance = int(ff["totals"]["attendees"])
        except ImportError:
            pass
        txs = [
            t
            for t in d.payment.transactions(day=day, limit=100000)
            if t.kind == "charge" and not t.voided
        ]
        if source == "payments":
            for t in txs:
                visits[t.at.astimezone(d.payment.config.slot_windows.tz).hour] += 1
            unique = len({t.resident_id for t in txs})
            attendance = unique
        with d.sessions() as s:
            residents = d.roster.list(s)
        enrolled = sum(1 for r in residents if r.consent_attendance or r.consent_face_pay)
        summary = d.payment.day_summary(day)
        meals = {k: int(v["meals"]) for k, v in summary["by_slot"].items()}
        week: list[DayFigures] = []
        for back in range(6, -1, -1):
            dd = day - timedelta(days=back)
            ds = d.payment.day_summary(dd)
            week.append(
                DayFigures(
                    dd, int(ds.get("residents", 0)), int(ds["meals"]), Money(int(ds["subsidy_fen"]))
                )
            )
        return ManagerReport(
            day=day,
            centre_name=d.centre_name or d.payment.config.centre_name,
            visits_per_hour=tuple(visits),
            unique_visitors=unique,
            attendance=attendance,
            enrolled=enrolled,
            meals_per_slot=meals,
            subsidy_total=Money(int(summary["subsidy_fen"])),
            paid_total=Money(int(summary["paid_fen"])),
            list_total=Money(sum(int(v["list_fen"]) for v in summary["by_slot"].values())),
            week=tuple(week),
            source=source,
            visitors=d.payment.visitors.day(day),
        )

    def export_report(self, fmt: Literal["csv", "html"], staff_id: str) -> Path:
        report = self.manager_report()
        self.d.export_dir.mkdir(parents=True, exist_ok=True)
        path = self.d.export_dir / f"report-{report.day.isoformat()}.{fmt}"
        text = report_csv(report) if fmt == "csv" else report_html(report)
        atomic_write_text(path, text, encoding="utf-8-sig" if fmt == "csv" else "utf-8")
        self._audit(staff_id, "export_report", None, format=fmt, day=report.day.isoformat())
        return path


def _health_key(value: str) -> str:
    return {
        "ok": "status.ok",
        "offline": "status.offline",
        "degraded": "status.degraded",
        "paper_out": "status.paper_out",
        "absent": "status.absent",
    }.get(value, "status.unknown")


def _level(value: str) -> Any:
    return value if value in ("ok", "degraded", "offline", "paper_out", "absent") else "unknown"
