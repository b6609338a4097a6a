"""The staff home page: the menu of tasks (the manager's only for managers)."""

from __future__ import annotations

from typing import Any

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QGridLayout, QVBoxLayout, QWidget

from ui import theme
from ui.views.staff.common import StaffContext
from ui.views.widgets import button, hbox, label, screen_widget, vbox

HOME_ITEMS = (
    ("enrol", "staff.menu.enrol"),
    ("transactions", "staff.menu.transactions"),
    ("topup", "staff.menu.topup"),
    ("lookup", "staff.menu.lookup"),
    ("menu", "staff.menu.set_menu"),
    ("status", "staff.menu.status"),
    ("footfall", "staff.menu.footfall"),
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
