"""Cash top-up of a resident's wallet: this centre's wallet, or, when the
district pays visiting meals from it, the senior's district wallet held by the
platform (queued here, credited when it is uploaded)."""

from __future__ import annotations

from PyQt6.QtWidgets import QButtonGroup, QStackedWidget, QWidget

from terminal.core.money import Money
from ui import theme
from ui.model import ResidentSummary
from ui.views.staff.common import Page, ResidentPicker, StaffContext
from ui.views.widgets import Keypad, button, hbox, label, vbox


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
        # which wallet: shown only when the district has district wallets
        self.local_btn = button("", "choice")
        self.district_btn = button("", "choice")
        self.wallet_group = QButtonGroup(self)
        for b in (self.local_btn, self.district_btn):
            b.setCheckable(True)
            self.wallet_group.addButton(b)
        self.local_btn.setChecked(True)
        self.wallet_row = QWidget()
        self.wallet_row.setLayout(hbox(self.local_btn, self.district_btn, 1, spacing=12))
        self.wallet_row.hide()
        left = QWidget()
        left.setLayout(
            vbox(
                self.who,
                self.wallet_row,
                self.amount_label,
                self.amount,
                1,
                self.ok_btn,
                spacing=16,
            )
        )
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
        self.local_btn.setText(self.i18n("topup.wallet_local"))
        self.district_btn.setText(self.i18n("topup.wallet_district"))
        self.keypad.set_labels(self.i18n("keypad.clear"), self.i18n("keypad.delete"))

    def on_show(self) -> None:
        super().on_show()
        self.stack.setCurrentWidget(self.picker)
        self.picker.search()
        self.local_btn.setChecked(True)
        self.wallet_row.hide()
        self.run(self.ctx.backend.district_topup_available, done=self.wallet_row.setVisible)

    @property
    def to_district(self) -> bool:
        return self.wallet_row.isVisible() and self.district_btn.isChecked()

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

        if self.to_district:

            def queued(_: None) -> None:
                self.keypad.reset()
                self.say(self.i18n("topup.district_done", amount=amount.yuan_str()), "ok")

            self.run(
                self.ctx.backend.district_topup,
                r.resident_id,
                amount,
                self.ctx.staff.staff_id,
                done=queued,
            )
            return

        def done(balance: Money) -> None:
            self.keypad.reset()
            self.say(
                self.i18n("topup.done", amount=amount.yuan_str(), balance=balance.yuan_str()), "ok"
            )

        self.run(self.ctx.backend.topup, r.resident_id, amount, self.ctx.staff.staff_id, done=done)
