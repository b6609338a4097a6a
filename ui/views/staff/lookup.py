"""Staff lookup payment: find a resident and pay for them without a face."""

from __future__ import annotations

from PyQt6.QtWidgets import QLineEdit, QStackedWidget, QWidget

from ui.model import ResidentSummary
from ui.views.staff.common import Page, ResidentPicker, StaffContext
from ui.views.widgets import button, hbox, label, vbox


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
        # a senior of another centre: name and phone last 4 (city-wide meals), in
        # place of the picker, so the page keeps its height
        self.visitor_btn = button("", None, self.toggle_visitor)
        self.header.insertWidget(self.header.count() - 1, self.visitor_btn)
        self.visitor_name = QLineEdit()
        self.visitor_phone = QLineEdit()
        self.visitor_phone.setMaxLength(4)
        self.visitor_phone.returnPressed.connect(self.pay_visitor)
        self.visitor_pay = button("", "primary", self.pay_visitor)
        self.visitor_hint = label("", "muted")
        fields = QWidget()
        fields.setLayout(hbox(self.visitor_name, self.visitor_phone))
        actions = QWidget()
        actions.setLayout(hbox(1, self.visitor_pay))
        form = QWidget()
        form.setLayout(vbox(self.visitor_hint, fields, actions, 1))
        self.stack = QStackedWidget()
        self.stack.addWidget(self.picker)
        self.stack.addWidget(form)
        self.visitor_form = form
        self.content.addWidget(self.hint)
        self.content.addWidget(self.stack, 1)
        self.selected: ResidentSummary | None = None

    def retranslate(self) -> None:
        super().retranslate()
        self.hint.setText(self.i18n("lookup.hint"))
        self.picker.retranslate()
        self.visitor_btn.setText(self.i18n("lookup.visitor"))
        self.visitor_hint.setText(self.i18n("lookup.visitor_hint"))
        self.visitor_name.setPlaceholderText(self.i18n("lookup.visitor_name"))
        self.visitor_phone.setPlaceholderText(self.i18n("lookup.visitor_phone"))
        self.visitor_pay.setText(self.i18n("lookup.visitor_pay"))

    def on_show(self) -> None:
        super().on_show()
        self.selected = None
        self.pay_btn.hide()
        self.stack.setCurrentWidget(self.picker)
        self.visitor_name.clear()
        self.visitor_phone.clear()
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

    def toggle_visitor(self) -> None:
        """Between this centre's seniors (the picker) and a visitor's name and phone."""
        visitor = self.stack.currentWidget() is not self.visitor_form
        self.stack.setCurrentWidget(self.visitor_form if visitor else self.picker)
        self.pay_btn.setVisible(not visitor and self.selected is not None)

    def pay_visitor(self) -> None:
        name = self.visitor_name.text().strip()
        phone = self.visitor_phone.text().strip()
        if not name or len(phone) != 4 or not phone.isdigit():
            self.say(self.i18n("lookup.visitor_needs"), "error")
            return
        if self.ctx.on_pay_visitor is not None:
            self.ctx.on_pay_visitor(name, phone)
