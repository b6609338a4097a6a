"""Today's canteen menu: adjust prices, remove dishes, add presets, save."""

from __future__ import annotations

from PyQt6.QtWidgets import (
    QFrame,
    QGridLayout,
    QScrollArea,
    QScroller,
    QVBoxLayout,
    QWidget,
)

from terminal.core.money import Money
from ui import theme
from ui.model import MenuLine
from ui.views.staff.common import Page, StaffContext
from ui.views.widgets import button, hbox, label


class MenuPage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "menu.title")
        self.list_box = QVBoxLayout()
        self.list_box.setSpacing(10)
        inner = QWidget()
        inner.setLayout(self.list_box)
        holder = QScrollArea()
        holder.setWidget(inner)
        holder.setWidgetResizable(True)
        holder.setFrameShape(QFrame.Shape.NoFrame)
        holder.setMinimumHeight(200)
        holder.setStyleSheet(
            "QScrollArea, QScrollArea > QWidget > QWidget { background: transparent; }"
        )
        QScroller.grabGesture(
            holder.viewport(), QScroller.ScrollerGestureType.LeftMouseButtonGesture
        )
        self.presets = QGridLayout()
        self.presets.setSpacing(12)
        self.add_label = label("", "muted")
        self.save_btn = button("", "primary", self.save)
        self.save_btn.setMinimumWidth(300)
        self.header.insertWidget(2, self.save_btn)
        self.content.addWidget(holder, 1)
        self.content.addWidget(self.add_label)
        self.content.addLayout(self.presets)
        self.lines: list[MenuLine] = []
        self.preset_lines: list[MenuLine] = []

    def retranslate(self) -> None:
        super().retranslate()
        self.add_label.setText(self.i18n("menu.add"))
        self.save_btn.setText(self.i18n("menu.save"))

    def on_show(self) -> None:
        super().on_show()

        def loaded(pair: tuple[list[MenuLine], list[MenuLine]]) -> None:
            self.lines, self.preset_lines = list(pair[0]), list(pair[1])
            self.rebuild()

        backend = self.ctx.backend
        self.run(lambda: (backend.menu_today(), backend.menu_presets()), done=loaded)

    def rebuild(self) -> None:
        tr = self.i18n
        for lay in (self.list_box, self.presets):
            while lay.count():
                item = lay.takeAt(0)
                w = item.widget() if item is not None else None
                if w is not None:
                    w.deleteLater()
                elif item is not None and item.layout() is not None:
                    sub = item.layout()
                    while sub.count():  # type: ignore[union-attr]
                        it = sub.takeAt(0)  # type: ignore[union-attr]
                        ww = it.widget() if it is not None else None
                        if ww is not None:
                            ww.deleteLater()
        if not self.lines:
            self.list_box.addWidget(label(tr("menu.empty"), "notice"))
        for i, ln in enumerate(self.lines):
            row = QWidget()
            slots = "、".join(tr(f"slot.{sl.value}") for sl in ln.slots)
            name = label(f"{ln.name}（{slots}）" if slots else ln.name, None)
            price = label(tr("menu.price", amount=ln.price.yuan_str()), None, wrap=False)
            price.setStyleSheet(f"font-size: {theme.TITLE_PX - 8}px; font-weight: bold;")
            minus = button("−", "key", lambda i=i: self.adjust(i, -50))  # type: ignore[misc]
            plus = button("+", "key", lambda i=i: self.adjust(i, 50))  # type: ignore[misc]
            remove = button(tr("menu.remove"), "danger", lambda i=i: self.remove(i))  # type: ignore[misc]
            row.setLayout(hbox(name, 1, minus, price, plus, remove, spacing=12))
            self.list_box.addWidget(row)
        have = {ln.name for ln in self.lines}  # ids are made unique when a preset is added
        todo = [x for x in self.preset_lines if x.name not in have]
        for j, p in enumerate(todo):
            b = button(p.name, None, lambda p=p: self.add(p))  # type: ignore[misc]
            self.presets.addWidget(b, j // 4, j % 4)

    def adjust(self, i: int, fen: int) -> None:
        ln = self.lines[i]
        new = max(0, min(100_00, ln.price.fen + fen))
        self.lines[i] = MenuLine(
            ln.item_id, ln.name, Money(new), ln.slots, ln.kind, ln.subsidisable
        )
        self.rebuild()

    def remove(self, i: int) -> None:
        del self.lines[i]
        self.rebuild()

    def add(self, p: MenuLine) -> None:
        ids = {ln.item_id for ln in self.lines}
        item_id, n = p.item_id, 2
        while item_id in ids:  # a preset id may already be used by another dish
            item_id, n = f"{p.item_id}-{n}", n + 1
        self.lines.append(MenuLine(item_id, p.name, p.price, p.slots, p.kind, p.subsidisable))
        self.rebuild()

    def save(self) -> None:
        self.run(
            self.ctx.backend.set_menu,
            list(self.lines),
            self.ctx.staff.staff_id,
            done=lambda _r: self.say(self.i18n("menu.saved"), "ok"),
        )
