"""Staff mode: PIN pad, menu of tasks and the task pages.

Every page uses the same elder-friendly sizes as the senior screens (staff in a
day-care canteen are often older themselves). Every back-end call goes through
the ``TaskRunner`` (worker thread); pages show "please wait" meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QScroller,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from terminal.core.errors import TerminalError
from terminal.core.money import Money
from ui import theme
from ui.i18n import Translator
from ui.model import EnrolProgress, MenuLine, PinResult, ResidentSummary, TxRow
from ui.ports import StaffPort
from ui.views.bridge import TaskRunner
from ui.views.widgets import (
    Keypad,
    PreviewView,
    button,
    card,
    hbox,
    label,
    screen_widget,
    set_role,
    vbox,
)

VOID_REASONS = (
    "wrong_resident",
    "duplicate_charge",
    "meal_not_served",
    "wrong_item",
    "customer_request",
)


def error_text(tr: Translator, exc: BaseException) -> str:
    """A message fit to show: TerminalError messages are; anything else is not."""
    if isinstance(exc, TerminalError):
        return tr("common.not_done", message=str(exc))
    return tr("common.not_done", message=type(exc).__name__)


def touch_list() -> QListWidget:
    """A list for fingers: rows wrap, no sideways scrolling, drag to scroll."""
    w = QListWidget()
    w.setWordWrap(True)
    w.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    w.setVerticalScrollMode(QListWidget.ScrollMode.ScrollPerPixel)
    QScroller.grabGesture(w.viewport(), QScroller.ScrollerGestureType.LeftMouseButtonGesture)
    return w


@dataclass
class StaffContext:
    i18n: Translator
    tasks: TaskRunner
    backend: StaffPort
    staff: PinResult = field(default_factory=lambda: PinResult(False))
    on_pay_for: Callable[[str], None] | None = None  # staff lookup payment
    preview: PreviewView | None = None


class Page(QWidget):
    """A staff page with a title, a message line and a back button."""

    back = pyqtSignal()

    def __init__(self, ctx: StaffContext, title_key: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.title_key = title_key
        self.body = screen_widget()
        self.title = label("", "title")
        self.msg = label("", "notice")
        self.msg.hide()
        self.back_btn = button("", None, self.back.emit)
        self.back_btn.setMinimumWidth(200)
        self.content = QVBoxLayout()
        self.content.setSpacing(16)
        lay = vbox(spacing=14, margins=theme.PADDING)
        self.header = hbox(self.title, 1, self.back_btn)
        lay.addLayout(self.header)
        lay.addWidget(self.msg)
        lay.addLayout(self.content, 1)
        self.body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.body)

    @property
    def i18n(self) -> Translator:
        return self.ctx.i18n

    def retranslate(self) -> None:
        self.title.setText(self.i18n(self.title_key))
        self.back_btn.setText(self.i18n("common.back"))

    def on_show(self) -> None:
        self.retranslate()
        self.say("")

    def say(self, text: str, tone: str = "notice") -> None:
        self.msg.setText(text)
        set_role(self.msg, tone)
        self.msg.setVisible(bool(text))

    def run(
        self, fn: Callable[..., Any], *args: Any, done: Callable[[Any], None], **kw: Any
    ) -> None:
        self.say(self.i18n("common.wait"))

        def on_error(exc: BaseException) -> None:
            self.say(error_text(self.i18n, exc), "error")

        def on_done(result: Any) -> None:
            self.say("")
            done(result)

        self.ctx.tasks.run(fn, *args, on_done=on_done, on_error=on_error, **kw)


# --------------------------------------------------------------------------- PIN


class PinPage(QWidget):
    submitted = pyqtSignal(str)
    cancel = pyqtSignal()

    def __init__(self, tr: Translator) -> None:
        super().__init__()
        self.i18n = tr
        body = screen_widget()
        self.title = label("", "title", align="center")
        self.entry = label("", "huge", wrap=False, align="center")
        self.entry.setStyleSheet(f"font-size: {theme.KEY_PX}px; font-weight: bold;")
        self.msg = label("", "error", align="center")
        self.msg.hide()
        self.keypad = Keypad(8, masked=True)
        self.keypad.changed.connect(lambda _d: self.entry.setText(self.keypad.display()))
        self.ok_btn = button("", "primary", self._ok)
        self.ok_btn.setMinimumWidth(260)
        self.cancel_btn = button("", "danger", self.cancel.emit)
        self.cancel_btn.setMinimumWidth(240)
        left = QWidget()
        left.setLayout(vbox(self.title, self.entry, self.msg, 1, spacing=24))
        right = QWidget()
        rl = vbox(spacing=18)
        rl.addWidget(self.keypad)
        rl.addLayout(hbox(self.cancel_btn, 1, self.ok_btn))
        right.setLayout(rl)
        lay = hbox(spacing=32, margins=theme.PADDING)
        lay.addWidget(left, 1)
        lay.addWidget(right)
        body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)
        self.busy = False

    def open(self) -> None:
        self.keypad.reset()
        self.busy = False
        self.title.setText(self.i18n("staff.pin.title"))
        self.keypad.set_labels(self.i18n("keypad.clear"), self.i18n("keypad.delete"))
        self.ok_btn.setText(self.i18n("keypad.ok"))
        self.cancel_btn.setText(self.i18n("common.cancel"))
        self.entry.setText(self.keypad.display())
        self.show_message("")

    def show_message(self, text: str, tone: str = "error") -> None:
        self.msg.setText(text)
        set_role(self.msg, tone)
        self.msg.setVisible(bool(text))

    def _ok(self) -> None:
        if self.busy or len(self.keypad.digits) < 4:
            return
        self.busy = True
        self.show_message(self.i18n("staff.pin.checking"), "notice")
        pin = self.keypad.digits
        self.keypad.reset()
        self.submitted.emit(pin)

    def result(self, res: PinResult) -> None:
        self.busy = False
        if res.locked_for_s:
            self.show_message(
                self.i18n("staff.pin.locked", minutes=max(1, (res.locked_for_s + 59) // 60))
            )
        elif not res.ok:
            self.show_message(self.i18n("staff.pin.wrong"))


# --------------------------------------------------------------------------- home


HOME_ITEMS = (
    ("enrol", "staff.menu.enrol"),
    ("transactions", "staff.menu.transactions"),
    ("topup", "staff.menu.topup"),
    ("lookup", "staff.menu.lookup"),
    ("menu", "staff.menu.set_menu"),
    ("status", "staff.menu.status"),
    ("manager", "staff.menu.manager"),
)


class StaffHome(QWidget):
    open_page = pyqtSignal(str)
    exit = pyqtSignal()

    def __init__(self, ctx: StaffContext) -> None:
        super().__init__()
        self.ctx = ctx
        body = screen_widget()
        self.title = label("", "title")
        self.exit_btn = button("", "danger", self.exit.emit)
        self.exit_btn.setMinimumWidth(200)
        grid = QGridLayout()
        grid.setSpacing(20)
        self.buttons: dict[str, Any] = {}
        for i, (name, _key) in enumerate(HOME_ITEMS):
            b = button("", "big", lambda n=name: self.open_page.emit(n))  # type: ignore[misc]
            b.setFixedHeight(140)
            grid.addWidget(b, i // 3, i % 3)
            self.buttons[name] = b
        lay = vbox(spacing=20, margins=theme.PADDING)
        lay.addLayout(hbox(self.title, 1, self.exit_btn))
        lay.addLayout(grid)
        lay.addStretch(1)
        body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)

    def on_show(self) -> None:
        tr = self.ctx.i18n
        self.title.setText(tr("staff.home.title", staff=self.ctx.staff.staff_name))
        self.exit_btn.setText(tr("staff.menu.exit"))
        for name, key in HOME_ITEMS:
            self.buttons[name].setText(tr(key))
        self.buttons["manager"].setVisible(self.ctx.staff.role == "manager")


# --------------------------------------------------------------------------- resident picker


class ResidentPicker(QWidget):
    """Search by id or phone last 4 (on-screen digits or a keyboard), pick from a list."""

    picked = pyqtSignal(object)

    def __init__(self, page: Page) -> None:
        super().__init__()
        self.page = page
        self.query = QLineEdit()
        self.query.returnPressed.connect(self.search)
        self.search_btn = button("", "big", self.search)
        self.search_btn.setMinimumWidth(200)
        self.list = touch_list()
        self.list.itemClicked.connect(self._clicked)
        self.list.setMinimumHeight(240)
        self.keypad = Keypad(8, key_px=92)
        self.keypad.changed.connect(self.query.setText)
        left = QWidget()
        ll = vbox(spacing=14)
        ll.addLayout(hbox(self.query, self.search_btn))
        ll.addWidget(self.list, 1)
        left.setLayout(ll)
        lay = hbox(spacing=24)
        lay.addWidget(left, 1)
        lay.addWidget(self.keypad, 0, Qt.AlignmentFlag.AlignTop)
        self.setLayout(lay)
        self.results: list[ResidentSummary] = []

    def retranslate(self) -> None:
        tr = self.page.i18n
        self.query.setPlaceholderText(tr("staff.search.hint"))
        self.search_btn.setText(tr("staff.search.button"))
        self.keypad.set_labels(tr("keypad.clear"), tr("keypad.delete"))

    def search(self) -> None:
        self.page.run(self.page.ctx.backend.search_residents, self.query.text(), done=self._show)

    def _show(self, rows: list[ResidentSummary]) -> None:
        tr = self.page.i18n
        self.results = rows
        self.list.clear()
        for r in rows:
            face = tr("staff.resident.face") if r.has_face else tr("staff.resident.no_face")
            text = (
                tr(
                    "staff.resident.line",
                    name=r.name_masked,
                    rid=r.resident_id,
                    category=tr(r.category_key),
                )
                + f"  {face}  "
                + tr("staff.balance", amount=r.balance.yuan_str())
            )
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, r.resident_id)
            self.list.addItem(item)
        if not rows:
            self.page.say(tr("staff.search.none"))

    def _clicked(self, item: QListWidgetItem) -> None:
        rid = item.data(Qt.ItemDataRole.UserRole)
        for r in self.results:
            if r.resident_id == rid:
                self.picked.emit(r)
                return


# --------------------------------------------------------------------------- enrolment


class EnrolPage(Page):
    """Guided capture from the live camera; consent first; re-enrol; un-enrol."""

    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "enrol.title")
        self.stack = QStackedWidget()
        self.picker = ResidentPicker(self)
        self.picker.picked.connect(self.select)
        # the selected resident
        self.detail = QWidget()
        self.who = label("", "key")
        self.who.setStyleSheet(f"font-size: {theme.TITLE_PX}px; font-weight: bold;")
        self.consent_face = QCheckBox()
        self.consent_att = QCheckBox()
        self.start_btn = button("", "primary", self.start)
        self.start_btn.setMinimumWidth(360)
        self.unenrol_btn = button("", "danger", self.ask_unenrol)
        self.unenrol_btn.setMinimumWidth(280)
        self.confirm_unenrol = label("", "notice")
        self.yes_btn = button("", "danger", self.unenrol)
        self.no_btn = button("", None, self._cancel_unenrol)
        dl = vbox(self.who, self.consent_face, self.consent_att, spacing=16)
        dl.addLayout(hbox(self.start_btn, self.unenrol_btn, 1))
        dl.addWidget(self.confirm_unenrol)
        dl.addLayout(hbox(self.yes_btn, self.no_btn, 1))
        dl.addStretch(1)
        self.detail.setLayout(dl)
        self._cancel_unenrol()
        # capture
        self.capture = QWidget()
        self.preview_box = QVBoxLayout()
        self.progress = label("", "title")
        self.guide = label("", "guidance")
        self.cancel_btn = button("", "danger", self.cancel_capture)
        right = QWidget()
        right.setFixedWidth(440)
        right.setLayout(vbox(self.progress, self.guide, 1, self.cancel_btn, spacing=18))
        cl = hbox(spacing=20)
        cl.addLayout(self.preview_box, 1)
        cl.addWidget(right)
        self.capture.setLayout(cl)
        for w in (self.picker, self.detail, self.capture):
            self.stack.addWidget(w)
        self.content.addWidget(self.stack)
        self.selected: ResidentSummary | None = None
        self.capturing = False

    def retranslate(self) -> None:
        super().retranslate()
        tr = self.i18n
        self.picker.retranslate()
        self.consent_face.setText(tr("enrol.consent_face"))
        self.consent_att.setText(tr("enrol.consent_attendance"))
        self.unenrol_btn.setText(tr("enrol.unenrol"))
        self.yes_btn.setText(tr("common.yes"))
        self.no_btn.setText(tr("common.no"))
        self.cancel_btn.setText(tr("common.cancel"))
        self.guide.setText(tr("enrol.look"))

    def on_show(self) -> None:
        super().on_show()
        self.stack.setCurrentWidget(self.picker)
        self.picker.search()

    def select(self, r: ResidentSummary) -> None:
        self.selected = r
        tr = self.i18n
        self.who.setText(tr("enrol.for", name=r.name_masked, rid=r.resident_id))
        self.consent_face.setChecked(r.consent_face_pay)
        self.consent_att.setChecked(r.consent_attendance)
        self.start_btn.setText(tr("enrol.reenrol") if r.has_face else tr("enrol.start"))
        self.unenrol_btn.setVisible(r.has_face)
        self._cancel_unenrol()
        self.stack.setCurrentWidget(self.detail)
        self.say("")

    def start(self) -> None:
        r = self.selected
        if r is None or self.capturing:
            return
        if not self.consent_face.isChecked() and not self.consent_att.isChecked():
            self.say(self.i18n("enrol.need_consent"), "error")
            return
        self.capturing = True
        if self.ctx.preview is not None:
            self.preview_box.addWidget(self.ctx.preview)
            self.ctx.preview.show()
        self.progress.setText(self.i18n("enrol.progress", n=0, total=5))
        self.stack.setCurrentWidget(self.capture)

        def done(n: int) -> None:
            self.capturing = False
            self.stack.setCurrentWidget(self.detail)
            self.say(self.i18n("enrol.done", n=n), "ok")
            self.start_btn.setText(self.i18n("enrol.reenrol"))
            self.unenrol_btn.setVisible(True)

        def failed(exc: BaseException) -> None:
            self.capturing = False
            self.stack.setCurrentWidget(self.detail)
            self.say(
                self.i18n(
                    "enrol.failed",
                    message=str(exc) if isinstance(exc, TerminalError) else type(exc).__name__,
                ),
                "error",
            )

        self.ctx.tasks.run(
            self.ctx.backend.enrol,
            r.resident_id,
            self.ctx.staff.staff_id,
            consent_face_pay=self.consent_face.isChecked(),
            consent_attendance=self.consent_att.isChecked(),
            on_done=done,
            on_error=failed,
        )

    def on_progress(self, p: EnrolProgress) -> None:
        if not self.capturing:
            return
        self.progress.setText(self.i18n("enrol.progress", n=p.good, total=p.target))
        self.guide.setText(self.i18n(p.guidance) if p.guidance else self.i18n("enrol.look"))
        set_role(self.guide, "ok" if p.guidance == "face.quality.ok" else "guidance")

    def cancel_capture(self) -> None:
        self.ctx.tasks.run(self.ctx.backend.cancel_enrol)

    def ask_unenrol(self) -> None:
        if self.selected is None:
            return
        self.confirm_unenrol.setText(
            self.i18n("enrol.unenrol_confirm", name=self.selected.name_masked)
        )
        for w in (self.confirm_unenrol, self.yes_btn, self.no_btn):
            w.show()

    def _cancel_unenrol(self) -> None:
        for w in (self.confirm_unenrol, self.yes_btn, self.no_btn):
            w.hide()

    def unenrol(self) -> None:
        r = self.selected
        if r is None:
            return
        self._cancel_unenrol()

        def done(_n: int) -> None:
            self.say(self.i18n("enrol.unenrolled"), "ok")
            self.unenrol_btn.hide()
            self.start_btn.setText(self.i18n("enrol.start"))

        self.run(self.ctx.backend.unenrol, r.resident_id, self.ctx.staff.staff_id, done=done)


# --------------------------------------------------------------------------- transactions


class TransactionsPage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "tx.title")
        self.list = touch_list()
        self.list.setMinimumHeight(100)
        self.list.itemClicked.connect(self._clicked)
        self.void_btn = button("", "danger", self.ask_void)
        self.reprint_btn = button("", None, self.reprint)
        self.void_btn.setMinimumWidth(220)
        self.reprint_btn.setMinimumWidth(260)
        self.reason_label = label("", "notice")
        self.reason_btns: dict[str, Any] = {}
        reasons = QGridLayout()
        reasons.setSpacing(14)
        for i, code in enumerate(VOID_REASONS):
            b = button("", None, lambda c=code: self.void(c))  # type: ignore[misc]
            reasons.addWidget(b, 0, i)
            self.reason_btns[code] = b
        self.reasons = QWidget()
        self.reasons.setLayout(vbox(self.reason_label, spacing=10))
        self.reasons.layout().addLayout(reasons)  # type: ignore[union-attr]
        self.content.addWidget(self.list, 1)
        self.content.addLayout(hbox(self.void_btn, self.reprint_btn, 1))
        self.content.addWidget(self.reasons)
        self.reasons.hide()
        self.rows: list[TxRow] = []
        self.selected: TxRow | None = None

    def retranslate(self) -> None:
        super().retranslate()
        tr = self.i18n
        self.void_btn.setText(tr("tx.void"))
        self.reprint_btn.setText(tr("tx.reprint"))
        self.reason_label.setText(tr("tx.reason"))
        for code, b in self.reason_btns.items():
            b.setText(tr(f"tx.reason.{code}"))

    def on_show(self) -> None:
        super().on_show()
        self.selected = None
        self._update_buttons()
        self.refresh()

    def refresh(self, then: Callable[[], None] | None = None) -> None:
        def done(rows: list[TxRow]) -> None:
            self._show(rows)
            if then is not None:
                then()

        self.run(self.ctx.backend.transactions, done=done)

    def _show(self, rows: list[TxRow]) -> None:
        tr = self.i18n
        self.rows = rows
        self.list.clear()
        for t in rows:
            text = tr(
                "tx.row",
                time=t.at.strftime("%H:%M"),
                name=t.name_masked,
                kind=tr(f"tx.kind.{t.kind}"),
                amount=t.amount.yuan_str(),
                method=tr(f"method.{t.method}") if t.method else "",
            )
            if t.voided:
                text += "  [" + tr("tx.voided") + "]"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, t.record_id)
            self.list.addItem(item)
        if not rows:
            self.say(tr("tx.none"))

    def _clicked(self, item: QListWidgetItem) -> None:
        rid = item.data(Qt.ItemDataRole.UserRole)
        self.selected = next((t for t in self.rows if t.record_id == rid), None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        t = self.selected
        can = t is not None and t.kind == "charge" and not t.voided
        self.void_btn.setEnabled(can)
        self.reprint_btn.setEnabled(can)
        self.reasons.hide()

    def ask_void(self) -> None:
        if self.selected is not None:
            self.reasons.show()

    def void(self, reason: str) -> None:
        t = self.selected
        if t is None:
            return
        self.reasons.hide()

        def done(_row: TxRow) -> None:
            self.selected = None
            self._update_buttons()
            self.refresh(
                lambda: self.say(self.i18n("tx.void_done", amount=t.amount.yuan_str()), "ok")
            )

        self.run(self.ctx.backend.void, t.record_id, reason, self.ctx.staff.staff_id, done=done)

    def reprint(self) -> None:
        t = self.selected
        if t is None:
            return
        self.run(
            self.ctx.backend.reprint,
            t.record_id,
            self.ctx.staff.staff_id,
            done=lambda _r: self.say(self.i18n("tx.reprinted"), "ok"),
        )


# --------------------------------------------------------------------------- top-up


class TopupPage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "topup.title")
        self.stack = QStackedWidget()
        self.picker = ResidentPicker(self)
        self.picker.picked.connect(self.select)
        self.amount_page = QWidget()
        self.who = label("", "title")
        self.amount_label = label("", None)
        self.amount = label("", "huge", wrap=False)
        self.amount.setStyleSheet(f"font-size: {theme.HUGE_PX}px; font-weight: bold;")
        self.keypad = Keypad(4)
        self.keypad.changed.connect(lambda d: self.amount.setText(d or "0"))
        self.ok_btn = button("", "primary", self.confirm)
        self.ok_btn.setMinimumWidth(300)
        left = QWidget()
        left.setLayout(vbox(self.who, self.amount_label, self.amount, 1, self.ok_btn, spacing=16))
        al = hbox(spacing=24)
        al.addWidget(left, 1)
        al.addWidget(self.keypad)
        self.amount_page.setLayout(al)
        self.stack.addWidget(self.picker)
        self.stack.addWidget(self.amount_page)
        self.content.addWidget(self.stack)
        self.selected: ResidentSummary | None = None

    def retranslate(self) -> None:
        super().retranslate()
        self.picker.retranslate()
        self.amount_label.setText(self.i18n("topup.amount"))
        self.ok_btn.setText(self.i18n("common.confirm"))
        self.keypad.set_labels(self.i18n("keypad.clear"), self.i18n("keypad.delete"))

    def on_show(self) -> None:
        super().on_show()
        self.stack.setCurrentWidget(self.picker)
        self.picker.search()

    def select(self, r: ResidentSummary) -> None:
        self.selected = r
        self.who.setText(self.i18n("topup.for", name=r.name_masked))
        self.keypad.reset()
        self.stack.setCurrentWidget(self.amount_page)

    def confirm(self) -> None:
        r = self.selected
        digits = self.keypad.digits
        if r is None:
            return
        if not digits or not 1 <= int(digits) <= 1000:
            self.say(self.i18n("topup.bad_amount"), "error")
            return
        amount = Money(int(digits) * 100)

        def done(balance: Money) -> None:
            self.keypad.reset()
            self.say(
                self.i18n("topup.done", amount=amount.yuan_str(), balance=balance.yuan_str()), "ok"
            )

        self.run(self.ctx.backend.topup, r.resident_id, amount, self.ctx.staff.staff_id, done=done)


# --------------------------------------------------------------------------- staff lookup payment


class LookupPage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "lookup.title")
        self.hint = label("", "muted")
        self.picker = ResidentPicker(self)
        self.picker.picked.connect(self.select)
        self.pay_btn = button("", "primary", self.pay)
        self.pay_btn.hide()
        self.content.addWidget(self.hint)
        self.content.addWidget(self.picker, 1)
        self.content.addWidget(self.pay_btn)
        self.selected: ResidentSummary | None = None

    def retranslate(self) -> None:
        super().retranslate()
        self.hint.setText(self.i18n("lookup.hint"))
        self.picker.retranslate()

    def on_show(self) -> None:
        super().on_show()
        self.selected = None
        self.pay_btn.hide()
        self.picker.search()

    def select(self, r: ResidentSummary) -> None:
        self.selected = r
        self.pay_btn.setText(self.i18n("lookup.pay", name=r.name_masked))
        self.pay_btn.show()

    def pay(self) -> None:
        if self.selected is not None and self.ctx.on_pay_for is not None:
            self.ctx.on_pay_for(self.selected.resident_id)


# --------------------------------------------------------------------------- menu


class MenuPage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "menu.title")
        self.list_box = QVBoxLayout()
        self.list_box.setSpacing(10)
        inner = QWidget()
        inner.setLayout(self.list_box)
        holder = QScrollArea()
        holder.setWidget(inner)
        holder.setWidgetResizable(True)
        holder.setFrameShape(QFrame.Shape.NoFrame)
        holder.setMinimumHeight(200)
        holder.setStyleSheet(
            "QScrollArea, QScrollArea > QWidget > QWidget { background: transparent; }"
        )
        QScroller.grabGesture(
            holder.viewport(), QScroller.ScrollerGestureType.LeftMouseButtonGesture
        )
        self.presets = QGridLayout()
        self.presets.setSpacing(12)
        self.add_label = label("", "muted")
        self.save_btn = button("", "primary", self.save)
        self.save_btn.setMinimumWidth(300)
        self.header.insertWidget(2, self.save_btn)
        self.content.addWidget(holder, 1)
        self.content.addWidget(self.add_label)
        self.content.addLayout(self.presets)
        self.lines: list[MenuLine] = []
        self.preset_lines: list[MenuLine] = []

    def retranslate(self) -> None:
        super().retranslate()
        self.add_label.setText(self.i18n("menu.add"))
        self.save_btn.setText(self.i18n("menu.save"))

    def on_show(self) -> None:
        super().on_show()

        def loaded(pair: tuple[list[MenuLine], list[MenuLine]]) -> None:
            self.lines, self.preset_lines = list(pair[0]), list(pair[1])
            self.rebuild()

        backend = self.ctx.backend
        self.run(lambda: (backend.menu_today(), backend.menu_presets()), done=loaded)

    def rebuild(self) -> None:
        tr = self.i18n
        for lay in (self.list_box, self.presets):
            while lay.count():
                item = lay.takeAt(0)
                w = item.widget() if item is not None else None
                if w is not None:
                    w.deleteLater()
                elif item is not None and item.layout() is not None:
                    sub = item.layout()
                    while sub.count():  # type: ignore[union-attr]
                        it = sub.takeAt(0)  # type: ignore[union-attr]
                        ww = it.widget() if it is not None else None
                        if ww is not None:
                            ww.deleteLater()
        if not self.lines:
            self.list_box.addWidget(label(tr("menu.empty"), "notice"))
        for i, ln in enumerate(self.lines):
            row = QWidget()
            slots = "、".join(tr(f"slot.{sl.value}") for sl in ln.slots)
            name = label(f"{ln.name}（{slots}）" if slots else ln.name, None)
            price = label(tr("menu.price", amount=ln.price.yuan_str()), None, wrap=False)
            price.setStyleSheet(f"font-size: {theme.TITLE_PX - 8}px; font-weight: bold;")
            minus = button("−", "key", lambda i=i: self.adjust(i, -50))  # type: ignore[misc]
            plus = button("+", "key", lambda i=i: self.adjust(i, 50))  # type: ignore[misc]
            remove = button(tr("menu.remove"), "danger", lambda i=i: self.remove(i))  # type: ignore[misc]
            row.setLayout(hbox(name, 1, minus, price, plus, remove, spacing=12))
            self.list_box.addWidget(row)
        have = {ln.name for ln in self.lines}  # ids are made unique when a preset is added
        todo = [x for x in self.preset_lines if x.name not in have]
        for j, p in enumerate(todo):
            b = button(p.name, None, lambda p=p: self.add(p))  # type: ignore[misc]
            self.presets.addWidget(b, j // 4, j % 4)

    def adjust(self, i: int, fen: int) -> None:
        ln = self.lines[i]
        new = max(0, min(100_00, ln.price.fen + fen))
        self.lines[i] = MenuLine(
            ln.item_id, ln.name, Money(new), ln.slots, ln.kind, ln.subsidisable
        )
        self.rebuild()

    def remove(self, i: int) -> None:
        del self.lines[i]
        self.rebuild()

    def add(self, p: MenuLine) -> None:
        ids = {ln.item_id for ln in self.lines}
        item_id, n = p.item_id, 2
        while item_id in ids:  # a preset id may already be used by another dish
            item_id, n = f"{p.item_id}-{n}", n + 1
        self.lines.append(MenuLine(item_id, p.name, p.price, p.slots, p.kind, p.subsidisable))
        self.rebuild()

    def save(self) -> None:
        self.run(
            self.ctx.backend.set_menu,
            list(self.lines),
            self.ctx.staff.staff_id,
            done=lambda _r: self.say(self.i18n("menu.saved"), "ok"),
        )


# --------------------------------------------------------------------------- status


class StatusPage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "status.title")
        self.grid = QGridLayout()
        self.grid.setVerticalSpacing(4)
        self.grid.setHorizontalSpacing(30)
        box = card()
        bl = vbox(spacing=4, margins=16)
        bl.addLayout(self.grid)
        box.setLayout(bl)
        self.sync_btn = button("", "primary", self.sync_now)
        self.sync_btn.setMinimumWidth(300)
        self.header.insertWidget(2, self.sync_btn)
        self.content.addWidget(box)
        self.content.addStretch(1)

    def retranslate(self) -> None:
        super().retranslate()
        self.sync_btn.setText(self.i18n("status.sync_now"))

    def on_show(self) -> None:
        super().on_show()
        self.refresh()

    def refresh(self) -> None:
        self.run(self.ctx.backend.device_status, done=self._show)

    def _age(self, seconds: int) -> str:
        if seconds >= 3600:
            return self.i18n("status.hours", n=seconds // 3600)
        return self.i18n("status.minutes", n=max(0, seconds // 60))

    def _show(self, status: Any) -> None:
        tr = self.i18n
        while self.grid.count():
            item = self.grid.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        for r, row in enumerate(status.rows):
            if row.value_is_key:
                params = dict(row.params)
                if "age_s" in params:
                    params["age"] = self._age(int(params["age_s"]))
                value = tr(row.value, **params)
            else:
                value = row.value
            name = label(tr(row.key), None, wrap=False)
            val = label(value, None)
            colour = {
                "ok": theme.PALETTE.ok_text,
                "offline": theme.PALETTE.error_text,
                "paper_out": theme.PALETTE.error_text,
                "degraded": theme.PALETTE.warning_text,
            }.get(row.level, theme.PALETTE.muted)  # absent / unknown: not an alarm
            val.setStyleSheet(f"color: {colour}; font-weight: bold;")
            self.grid.addWidget(name, r, 0)
            self.grid.addWidget(val, r, 1)

    def sync_now(self) -> None:
        def done(summary: str) -> None:
            msg = self.i18n("status.sync_done", summary=summary)

            def shown(status: Any) -> None:
                self._show(status)
                self.say(msg, "ok")

            self.run(self.ctx.backend.device_status, done=shown)

        self.run(self.ctx.backend.sync_now, self.ctx.staff.staff_id, done=done)
