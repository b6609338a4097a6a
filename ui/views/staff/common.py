"""What the staff pages share: the context, the page frame, the resident picker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QScroller,
    QVBoxLayout,
    QWidget,
)

from terminal.core.errors import TerminalError
from ui import theme
from ui.i18n import Translator
from ui.model import PinResult, ResidentSummary
from ui.ports import StaffPort
from ui.presenters.footfall import LineSnapshotPort
from ui.views.bridge import TaskRunner
from ui.views.widgets import (
    Keypad,
    PreviewView,
    button,
    hbox,
    label,
    screen_widget,
    set_role,
    vbox,
)


def error_text(tr: Translator, exc: BaseException) -> str:
    """A message fit to show: TerminalError messages are; anything else is not."""
    if isinstance(exc, TerminalError):
        return tr("common.not_done", message=str(exc))
    return tr("common.not_done", message=type(exc).__name__)


def touch_list() -> QListWidget:
    """A list for fingers: rows wrap, no sideways scrolling, drag to scroll."""
    w = QListWidget()
    w.setWordWrap(True)
    w.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    w.setVerticalScrollMode(QListWidget.ScrollMode.ScrollPerPixel)
    QScroller.grabGesture(w.viewport(), QScroller.ScrollerGestureType.LeftMouseButtonGesture)
    return w


@dataclass
class StaffContext:
    i18n: Translator
    tasks: TaskRunner
    backend: StaffPort
    staff: PinResult = field(default_factory=lambda: PinResult(False))
    on_pay_for: Callable[[str], None] | None = None  # staff lookup payment
    # a senior of another centre, looked up by name and phone last 4 (city-wide meals)
    on_pay_visitor: Callable[[str, str], None] | None = None
    preview: PreviewView | None = None
    footfall: LineSnapshotPort | None = None  # the footfall camera's line snapshot


class Page(QWidget):
    """A staff page with a title, a message line and a back button."""

    back = pyqtSignal()

    def __init__(self, ctx: StaffContext, title_key: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.title_key = title_key
        self.body = screen_widget()
        self.title = label("", "title")
        self.msg = label("", "notice")
        self.msg.hide()
        self.back_btn = button("", None, self.back.emit)
        self.back_btn.setMinimumWidth(200)
        self.content = QVBoxLayout()
        self.content.setSpacing(16)
        lay = vbox(spacing=14, margins=theme.PADDING)
        self.header = hbox(self.title, 1, self.back_btn)
        lay.addLayout(self.header)
        lay.addWidget(self.msg)
        lay.addLayout(self.content, 1)
        self.body.setLayout(lay)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.body)

    @property
    def i18n(self) -> Translator:
        return self.ctx.i18n

    def retranslate(self) -> None:
        self.title.setText(self.i18n(self.title_key))
        self.back_btn.setText(self.i18n("common.back"))

    def on_show(self) -> None:
        self.retranslate()
        self.say("")

    def say(self, text: str, tone: str = "notice") -> None:
        self.msg.setText(text)
        set_role(self.msg, tone)
        self.msg.setVisible(bool(text))

    def run(
        self, fn: Callable[..., Any], *args: Any, done: Callable[[Any], None], **kw: Any
    ) -> None:
        self.say(self.i18n("common.wait"))

        def on_error(exc: BaseException) -> None:
            self.say(error_text(self.i18n, exc), "error")

        def on_done(result: Any) -> None:
            self.say("")
            done(result)

        self.ctx.tasks.run(fn, *args, on_done=on_done, on_error=on_error, **kw)


# --------------------------------------------------------------------------- resident picker


class ResidentPicker(QWidget):
    """Search by id or phone last 4 (on-screen digits or a keyboard), pick from a list."""

    picked = pyqtSignal(object)

    def __init__(self, page: Page) -> None:
        super().__init__()
        self.page = page
        self.query = QLineEdit()
        self.query.returnPressed.connect(self.search)
        self.search_btn = button("", "big", self.search)
        self.search_btn.setMinimumWidth(200)
        self.list = touch_list()
        self.list.itemClicked.connect(self._clicked)
        self.list.setMinimumHeight(240)
        # 90 px keys (the touch rule) with 8 px gaps: the picker's height is the
        # keypad's, and the staff pages that hold it must fit 800 px with a message.
        self.keypad = Keypad(8, key_px=theme.MIN_TOUCH_PX, gap=8)
        self.keypad.changed.connect(self.query.setText)
        left = QWidget()
        ll = vbox(spacing=14)
        ll.addLayout(hbox(self.query, self.search_btn))
        ll.addWidget(self.list, 1)
        left.setLayout(ll)
        lay = hbox(spacing=24)
        lay.addWidget(left, 1)
        lay.addWidget(self.keypad, 0, Qt.AlignmentFlag.AlignTop)
        self.setLayout(lay)
        self.results: list[ResidentSummary] = []

    def retranslate(self) -> None:
        tr = self.page.i18n
        self.query.setPlaceholderText(tr("staff.search.hint"))
        self.search_btn.setText(tr("staff.search.button"))
        self.keypad.set_labels(tr("keypad.clear"), tr("keypad.delete"))

    def search(self) -> None:
        self.page.run(self.page.ctx.backend.search_residents, self.query.text(), done=self._show)

    def _show(self, rows: list[ResidentSummary]) -> None:
        tr = self.page.i18n
        self.results = rows
        self.list.clear()
        for r in rows:
            face = tr("staff.resident.face") if r.has_face else tr("staff.resident.no_face")
            text = (
                tr(
                    "staff.resident.line",
                    name=r.name_masked,
                    rid=r.resident_id,
                    category=tr(r.category_key),
                )
                + f"  {face}  "
                + tr("staff.balance", amount=r.balance.yuan_str())
            )
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, r.resident_id)
            self.list.addItem(item)
        if not rows:
            self.page.say(tr("staff.search.none"))

    def _clicked(self, item: QListWidgetItem) -> None:
        rid = item.data(Qt.ItemDataRole.UserRole)
        for r in self.results:
            if r.resident_id == rid:
                self.picked.emit(r)
                return
