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
