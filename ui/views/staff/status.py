"""Device status (camera, printer, card reader, network, unsynced records ...) and "sync now"."""

from __future__ import annotations

from typing import Any

from PyQt6.QtWidgets import QGridLayout

from ui import theme
from ui.views.staff.common import Page, StaffContext
from ui.views.widgets import button, card, label, vbox


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
