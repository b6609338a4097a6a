"""The footfall line page: the footfall camera's picture with the configured
counting line, refreshed on demand, and the line's numbers."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QImage, QPixmap
from PyQt6.QtWidgets import QGridLayout, QLabel, QSizePolicy

from ui.presenters.footfall import LineSnapshot, present_line_snapshot
from ui.views.staff.common import Page, StaffContext
from ui.views.widgets import button, card, hbox, label, vbox

PICTURE_W, PICTURE_H = 512, 384  # the camera picture, scaled (the page must fit 800 px)


class FootfallLinePage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "footfall_line.title")
        self.snapshot: LineSnapshot | None = None
        self.picture = QLabel()
        self.picture.setFixedSize(PICTURE_W, PICTURE_H)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setStyleSheet("background: #202020;")
        self.refresh_btn = button("", "primary", self.refresh)
        self.refresh_btn.setMinimumWidth(300)
        self.header.insertWidget(2, self.refresh_btn)
        self.grid = QGridLayout()
        self.grid.setVerticalSpacing(8)
        self.grid.setHorizontalSpacing(16)
        self.hint = label("", None)
        box = card()
        bl = vbox(spacing=8, margins=16)
        bl.addLayout(self.grid)
        bl.addWidget(self.hint)
        bl.addStretch(1)
        box.setLayout(bl)
        box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.content.addLayout(hbox(self.picture, box, spacing=20))
        self.content.addStretch(1)

    def retranslate(self) -> None:
        super().retranslate()
        self.refresh_btn.setText(self.i18n("footfall_line.refresh"))
        self.hint.setText(self.i18n("footfall_line.hint"))
        if self.snapshot is not None:
            self._rows(self.snapshot)

    def on_show(self) -> None:
        super().on_show()
        self.refresh()

    def refresh(self) -> None:
        port = self.ctx.footfall
        if port is None or port.shared_camera:
            self.refresh_btn.setEnabled(False)
            key = "footfall_line.unavailable" if port is None else "footfall_line.shared"
            self.say(self.i18n(key), "error")
            return
        self.run(port.line_snapshot, done=self._show)

    def _show(self, snap: LineSnapshot) -> None:
        self.snapshot = snap
        img = QImage(snap.rgb, snap.width, snap.height, 3 * snap.width, QImage.Format.Format_RGB888)
        self.picture.setPixmap(
            QPixmap.fromImage(img.copy()).scaled(
                PICTURE_W,
                PICTURE_H,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )
        self._rows(snap)

    def _rows(self, snap: LineSnapshot) -> None:
        vm = present_line_snapshot(snap, self.i18n)
        while self.grid.count():
            item = self.grid.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        for r, (name, value) in enumerate(vm.rows):
            self.grid.addWidget(label(name, None, wrap=False), r, 0, Qt.AlignmentFlag.AlignTop)
            val = label(value, None)
            val.setStyleSheet("font-weight: bold;")
            self.grid.addWidget(val, r, 1)
        if vm.problem:
            self.say(vm.problem, "error")
