"""The senior screens. Each renders one view model and emits intents."""

from __future__ import annotations

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from ui import theme
from ui.presenters.kiosk import ConfirmVM, IdleVM, KeypadVM, OutOfServiceVM, ResultVM, ScanVM
from ui.views.widgets import (
    Keypad,
    PreviewView,
    ResultIcon,
    button,
    card,
    hbox,
    label,
    screen_widget,
    set_role,
    vbox,
)


class IdleScreen(QWidget):
    staff_help = pyqtSignal()
    language = pyqtSignal()

    def __init__(self, preview: PreviewView) -> None:
        super().__init__()
        self.preview = preview
        body = screen_widget()
        self.look = label("", "huge", align="center")
        self.look.setStyleSheet(f"font-size: {theme.KEY_PX + 8}px; font-weight: bold;")
        self.look_hint = label("", None, align="center")
        self.preview_box = QVBoxLayout()
        self.preview_box.setContentsMargins(0, 0, 0, 0)
        left = QWidget()
        left_lay = vbox(spacing=12)
        left_lay.addLayout(self.preview_box, 1)
        left_lay.addWidget(self.look)
        left_lay.addWidget(self.look_hint)
        left.setLayout(left_lay)

        menu = card()
        self.menu_title = label("", "title")
        self.menu_grid = QGridLayout()
        self.menu_grid.setVerticalSpacing(14)
        self.menu_grid.setHorizontalSpacing(24)
        self.menu_note = label("", "notice")
        mlay = vbox(self.menu_title, spacing=18, margins=24)
        mlay.addLayout(self.menu_grid)
        mlay.addWidget(self.menu_note)
        mlay.addStretch(1)
        menu.setLayout(mlay)
        menu.setFixedWidth(520)

        self.alt = label("", None)
        self.alt.setStyleSheet(f"font-size: {theme.BODY_PX + 4}px; font-weight: bold;")
        self.staff_btn = button("", "big", self.staff_help.emit)
        self.staff_btn.setMinimumWidth(300)
        self.lang_btn = button("", None, self.language.emit)
        self.lang_btn.setMinimumWidth(180)

        top = hbox(spacing=24)
        top.addWidget(left, 1)
        top.addWidget(menu, 0)
        bottom = hbox(self.alt, 1, self.staff_btn, self.lang_btn, spacing=20)
        lay = vbox(spacing=16, margins=theme.PADDING)
        lay.addLayout(top, 1)
        lay.addLayout(bottom)
        body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)
        self._menu: tuple[tuple[str, str], ...] | None = None

    def attach_preview(self) -> None:
        self.preview_box.addWidget(self.preview)

    def show_vm(self, vm: IdleVM) -> None:
        self.look.setText(vm.look)
        self.look_hint.setText(vm.look_hint)
        set_role(self.look_hint, "notice" if vm.camera_off else None)
        self.menu_title.setText(vm.menu_title)
        if vm.menu != self._menu:
            self._fill_menu(vm.menu)
        note = "\n".join(t for t in (vm.menu_note, vm.last_payment) if t)
        self.menu_note.setText(note)
        self.menu_note.setVisible(bool(note))
        self.alt.setText(vm.alt_card)
        self.staff_btn.setText(vm.staff_help)
        self.lang_btn.setText(vm.language)

    def _fill_menu(self, menu: tuple[tuple[str, str], ...]) -> None:
        self._menu = menu
        while self.menu_grid.count():
            item = self.menu_grid.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.hide()
                w.deleteLater()
        for row, (name, price) in enumerate(menu[:6]):
            n = label(name, None)
            p = label(price, "key", wrap=False, align="right")
            p.setStyleSheet(f"font-size: {theme.TITLE_PX}px; font-weight: bold;")
            self.menu_grid.addWidget(n, row, 0)
            self.menu_grid.addWidget(p, row, 1)
        self.menu_grid.setColumnStretch(0, 1)


class ScanScreen(QWidget):
    cancel = pyqtSignal()

    def __init__(self, preview: PreviewView) -> None:
        super().__init__()
        self.preview = preview
        body = screen_widget()
        self.preview_box = QVBoxLayout()
        self.title = label("", "title")
        self.guidance = label("", "guidance", align="center")
        self.challenge = label("", "huge", align="center")
        self.challenge.setStyleSheet(
            f"font-size: {theme.KEY_PX + 8}px; font-weight: bold; color: {theme.PALETTE.banner};"
        )
        self.countdown = label("", "muted")
        self.alt = label("", None)
        self.cancel_btn = button("", "danger", self.cancel.emit)
        self.cancel_btn.setMinimumWidth(260)
        right = QWidget()
        right.setFixedWidth(460)
        right.setLayout(
            vbox(self.title, self.guidance, self.challenge, 1, self.countdown, spacing=24)
        )
        top = hbox(spacing=24)
        top.addLayout(self.preview_box, 1)
        top.addWidget(right)
        lay = vbox(spacing=16, margins=theme.PADDING)
        lay.addLayout(top, 1)
        lay.addLayout(hbox(self.alt, 1, self.cancel_btn))
        body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)

    def attach_preview(self) -> None:
        self.preview_box.addWidget(self.preview)

    def show_vm(self, vm: ScanVM) -> None:
        self.title.setText(vm.title)
        self.guidance.setText(vm.guidance)
        self.guidance.setVisible(bool(vm.guidance))
        set_role(self.guidance, "ok" if vm.guidance_ok else "guidance")
        self.challenge.setText(vm.challenge or "")
        self.challenge.setVisible(bool(vm.challenge))
        self.countdown.setText(vm.countdown)
        self.alt.setText(vm.alt)
        self.cancel_btn.setText(vm.cancel)


class ConfirmScreen(QWidget):
    pay = pyqtSignal()
    cancel = pyqtSignal()
    staff = pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        body = screen_widget()
        self.title = label("", "title")
        self.name = label("", "huge", wrap=False)
        self.category = label("", None)
        self.meal = label("", None)
        self.note = label("", "notice")
        self.countdown = label("", "muted")
        left = QWidget()
        left.setLayout(
            vbox(
                self.title,
                self.name,
                self.category,
                self.meal,
                self.note,
                1,
                self.countdown,
                spacing=14,
            )
        )

        box = card()
        self.lines_grid = QGridLayout()
        self.lines_grid.setVerticalSpacing(8)
        self.line_labels: list[tuple[QLabel, QLabel]] = []
        for r in range(4):
            a, b = label("", None), label("", None, wrap=False, align="right")
            self.lines_grid.addWidget(a, r, 0)
            self.lines_grid.addWidget(b, r, 1)
            self.line_labels.append((a, b))
        self.due_label = label("", "title")
        self.due = label("", "huge", wrap=False, align="right")
        self.due.setStyleSheet(
            f"font-size: {theme.HUGE_PX}px; font-weight: bold; color: {theme.PALETTE.primary};"
        )
        blay = vbox(spacing=10, margins=22)
        blay.addLayout(self.lines_grid)
        blay.addLayout(hbox(self.due_label, 1, self.due))
        box.setLayout(blay)
        box.setFixedWidth(600)

        self.cancel_btn = button("", "danger", self.cancel.emit)
        self.cancel_btn.setFixedHeight(120)
        self.cancel_btn.setMinimumWidth(420)
        self.pay_btn = button("", "primary", self.pay.emit)
        self.pay_btn.setFixedHeight(120)
        self.pay_btn.setMinimumWidth(560)
        # staff may grant what a rule refused here (a visitor's subsidy beyond the
        # offline limits); shown only when the view model names it
        self.staff_btn = button("", None, self.staff.emit)
        self.staff_btn.setFixedHeight(120)
        self.staff_btn.hide()
        top = hbox(spacing=24)
        top.addWidget(left, 1)
        top.addWidget(box)
        lay = vbox(spacing=16, margins=theme.PADDING)
        lay.addLayout(top, 1)
        lay.addLayout(hbox(self.cancel_btn, 1, self.staff_btn, 1, self.pay_btn, spacing=24))
        body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)

    def show_vm(self, vm: ConfirmVM) -> None:
        self.title.setText(vm.title)
        self.name.setText(vm.name)
        self.category.setText(vm.category)
        self.meal.setText(vm.meal)
        self.note.setText(vm.note)
        self.note.setVisible(bool(vm.note))
        rows = list(vm.lines) + [("", "", False)] * (len(self.line_labels) - len(vm.lines))
        for (a, b), (text, value, emph) in zip(self.line_labels, rows, strict=False):
            a.setText(text)
            b.setText(value)
            style = f"font-size: {theme.TITLE_PX - 4 if emph else theme.BODY_PX + 4}px;"
            if emph:
                style += " font-weight: bold;"
            b.setStyleSheet(style)
        self.due_label.setText(vm.due_label)
        self.due.setText(vm.due)
        self.pay_btn.setText(vm.pay)
        self.cancel_btn.setText(vm.cancel)
        self.staff_btn.setText(vm.staff_button)
        self.staff_btn.setVisible(bool(vm.staff_button))
        self.countdown.setText(vm.countdown)


class KeypadScreen(QWidget):
    digits = pyqtSignal(str)
    cancel = pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        body = screen_widget()
        self.title = label("", "title", align="center")
        self.hint = label("", None, align="center")
        self.error = label("", "error", align="center")
        self.entry = label("_ _ _ _", "huge", wrap=False, align="center")
        self.entry.setStyleSheet(
            f"font-size: {theme.HUGE_PX}px; font-weight: bold; letter-spacing: 8px;"
        )
        self.keypad = Keypad(4)
        self.keypad.changed.connect(self._changed)
        self.keypad.submitted.connect(self._submit)
        self.cancel_btn = button("", "danger", self.cancel.emit)
        self.cancel_btn.setMinimumWidth(240)
        self.countdown = label("", "muted", align="center")
        left = QWidget()
        left.setLayout(
            vbox(self.title, self.hint, self.entry, self.error, 1, self.countdown, spacing=18)
        )
        right = QWidget()
        rl = vbox(spacing=18)
        rl.addWidget(self.keypad)
        rl.addLayout(hbox(1, self.cancel_btn))
        right.setLayout(rl)
        lay = hbox(spacing=32, margins=theme.PADDING)
        lay.addWidget(left, 1)
        lay.addWidget(right)
        body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)

    def _changed(self, _d: str) -> None:
        self.entry.setText(self.keypad.display())

    def _submit(self, d: str) -> None:
        self.digits.emit(d)
        self.keypad.reset()

    def show_vm(self, vm: KeypadVM, fresh: bool) -> None:
        if fresh:
            self.keypad.reset()
        self.title.setText(vm.title)
        self.hint.setText(vm.hint)
        self.hint.setVisible(bool(vm.hint))
        self.error.setText(vm.error)
        self.error.setVisible(bool(vm.error))
        self.keypad.set_labels(vm.clear, vm.delete)
        self.cancel_btn.setText(vm.cancel)
        self.countdown.setText(vm.countdown)
        self.entry.setText(self.keypad.display())


class ResultScreen(QWidget):
    """Charging, done, failed, already paid, staff required."""

    finish = pyqtSignal()
    staff = pyqtSignal()
    portion = pyqtSignal()  # "another portion" (再来一份) on the already-paid screen

    def __init__(self) -> None:
        super().__init__()
        body = screen_widget()
        self.icon = ResultIcon()
        self.title = label("", "title")
        self.title.setStyleSheet(f"font-size: {theme.KEY_PX}px; font-weight: bold;")
        self.big = label("", "huge", wrap=False, align="center")
        self.lines = label("", None, align="center")
        self.lines.setStyleSheet(f"font-size: {theme.BODY_PX + 4}px;")
        self.action = label("", "notice", align="center")
        self.action.setStyleSheet(f"font-size: {theme.TITLE_PX - 4}px; font-weight: bold;")
        self.staff_btn = button("", "big", self.staff.emit)
        self.staff_btn.setMinimumWidth(380)
        self.portion_btn = button("", "big", self.portion.emit)
        self.portion_btn.setMinimumWidth(380)
        self.footer = label("", "muted", align="center")
        lay = vbox(spacing=12, margins=theme.PADDING)
        lay.addStretch(1)
        lay.addLayout(hbox(1, self.icon, self.title, 1, spacing=28))
        for w in (self.big, self.lines, self.action):
            lay.addWidget(w)
        lay.addLayout(hbox(1, self.staff_btn, self.portion_btn, 1, spacing=24))
        lay.addStretch(1)
        lay.addWidget(self.footer)
        body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)
        self._finish_enabled = False

    def show_vm(self, vm: ResultVM) -> None:
        self.icon.set_tone(vm.tone)
        self.title.setText(vm.title)
        self.big.setText(vm.big)
        self.big.setVisible(bool(vm.big))
        self.lines.setText("\n".join(vm.lines))
        self.lines.setVisible(bool(vm.lines))
        self.action.setText(vm.action)
        self.action.setVisible(bool(vm.action))
        set_role(self.action, "ok" if vm.tone == "ok" else "notice")
        self.staff_btn.setText(vm.staff_button)
        self.staff_btn.setVisible(bool(vm.staff_button))
        self.portion_btn.setText(vm.portion_button)
        self.portion_btn.setVisible(bool(vm.portion_button))
        self.footer.setText("   ·   ".join(t for t in (vm.finish, vm.countdown) if t))
        self._finish_enabled = bool(vm.finish)

    def mouseReleaseEvent(self, ev: QMouseEvent | None) -> None:
        if self._finish_enabled:
            self.finish.emit()
        super().mouseReleaseEvent(ev)


class OutOfServiceScreen(QWidget):
    def __init__(self) -> None:
        super().__init__()
        body = screen_widget()
        self.icon = ResultIcon()
        self.icon.set_tone("notice")
        self.title = label("", "title", align="center")
        self.title.setStyleSheet(f"font-size: {theme.HUGE_PX}px; font-weight: bold;")
        self.detail = label("", None, align="center")
        self.detail.setStyleSheet(f"font-size: {theme.TITLE_PX}px;")
        self.code = label("", "muted", align="center")
        lay = vbox(1, spacing=24, margins=theme.PADDING)
        lay.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignHCenter)
        for w in (self.title, self.detail, self.code):
            lay.addWidget(w)
        lay.addStretch(1)
        body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(body)

    def show_vm(self, vm: OutOfServiceVM) -> None:
        self.title.setText(vm.title)
        self.detail.setText(vm.detail)
        self.code.setText(vm.code)
