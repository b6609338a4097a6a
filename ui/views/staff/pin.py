"""The PIN pad that opens staff mode."""

from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QVBoxLayout, QWidget

from ui import theme
from ui.i18n import Translator
from ui.model import PinResult
from ui.views.widgets import Keypad, button, hbox, label, screen_widget, set_role, vbox


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
