"""Staff lookup payment: find a resident and pay for them without a face."""

from __future__ import annotations

from ui.model import ResidentSummary
from ui.views.staff.common import Page, ResidentPicker, StaffContext
from ui.views.widgets import button, label


class LookupPage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "lookup.title")
        self.hint = label("", "muted")
        self.picker = ResidentPicker(self)
        self.picker.picked.connect(self.select)
        self.pay_btn = button("", "primary", self.pay)
        self.pay_btn.hide()
        # The page is as tall as the screen allows (the picker's keypad is big):
        # the pay button sits in the header row and the hint gives way to the
        # message line, so neither a selection nor a message grows the window.
        self.header.insertWidget(self.header.count() - 1, self.pay_btn)
        self.content.addWidget(self.hint)
        self.content.addWidget(self.picker, 1)
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

    def say(self, text: str, tone: str = "notice") -> None:
        super().say(text, tone)
        self.hint.setVisible(not text)

    def select(self, r: ResidentSummary) -> None:
        self.selected = r
        self.pay_btn.setText(self.i18n("lookup.pay", name=r.name_masked))
        self.pay_btn.show()

    def pay(self) -> None:
        if self.selected is not None and self.ctx.on_pay_for is not None:
            self.ctx.on_pay_for(self.selected.resident_id)
