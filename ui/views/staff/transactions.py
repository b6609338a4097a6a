"""Today's transactions: void a charge (with a reason) or reprint its receipt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QGridLayout, QListWidgetItem, QWidget

from ui.model import TxRow
from ui.views.staff.common import Page, StaffContext, touch_list
from ui.views.widgets import button, hbox, label, vbox

VOID_REASONS = (
    "wrong_resident",
    "duplicate_charge",
    "meal_not_served",
    "wrong_item",
    "customer_request",
)


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
