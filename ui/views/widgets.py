"""Shared building blocks: labels by role, big buttons, the keypad, the camera
preview, the banner, and the CJK font set-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QFontDatabase, QImage, QPainter, QPen, QPixmap, QPolygonF
from PyQt6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from terminal.core.log import get_logger
from ui import theme
from ui.model import PreviewFrame

log = get_logger(__name__)

# Where Debian and friends put CJK fonts, in case fontconfig does not list them.
_FONT_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)
BANNER_PX = 100
_BUNDLED_FONTS = Path(__file__).resolve().parent.parent / "fonts"


def setup_fonts(app: QApplication) -> str | None:
    """Pick a font that has Chinese glyphs; register known files if fontconfig
    has none. Returns the family used, or None (Chinese would draw as boxes:
    the caller logs it loudly; the set-up installs ``fonts-noto-cjk``)."""
    families = set(QFontDatabase.families())
    chosen = next((f for f in theme.FONT_FAMILIES if f in families), None)
    if chosen is None:
        candidates = [Path(p) for p in _FONT_FILES]
        if _BUNDLED_FONTS.is_dir():
            candidates += sorted(_BUNDLED_FONTS.glob("*.[ot]t[fc]"))
        for path in candidates:
            if path.is_file():
                fid = QFontDatabase.addApplicationFont(str(path))
                if fid >= 0:
                    fams = QFontDatabase.applicationFontFamilies(fid)
                    if fams:
                        chosen = fams[0]
                        break
    if chosen is None:
        for fam in sorted(families):
            if QFontDatabase.writingSystems(fam).count(
                QFontDatabase.WritingSystem.SimplifiedChinese
            ):
                chosen = fam
                break
    if chosen is None:
        log.error("no_cjk_font", hint="install fonts-noto-cjk")
        return None
    font = QFont(chosen)
    font.setPixelSize(theme.BODY_PX)
    font.setStyleStrategy(QFont.StyleStrategy.PreferAntialias)
    app.setFont(font)
    return chosen


def label(
    text: str = "", role: str | None = None, *, wrap: bool = True, align: str = "left"
) -> QLabel:
    w = QLabel(text)
    if role:
        w.setProperty("role", role)
    w.setWordWrap(wrap)
    flags = {
        "left": Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
        "center": Qt.AlignmentFlag.AlignCenter,
        "right": Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
    }[align]
    w.setAlignment(flags)
    w.setTextFormat(Qt.TextFormat.PlainText)
    return w


def set_role(w: QWidget, role: str | None) -> None:
    w.setProperty("role", role)
    style = w.style()
    if style is not None:
        style.unpolish(w)
        style.polish(w)


def button(
    text: str, kind: str | None = None, on_click: Callable[[], None] | None = None
) -> QPushButton:
    b = QPushButton(text)
    if kind:
        b.setProperty("kind", kind)
    b.setMinimumSize(theme.TOUCH_PX, theme.TOUCH_PX)
    b.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
    b.setFixedHeight(max(theme.TOUCH_PX, 110 if kind in ("primary", "big") else theme.TOUCH_PX))
    b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    if on_click is not None:
        b.clicked.connect(lambda _=False: on_click())
    return b


def card() -> QFrame:
    f = QFrame()
    f.setProperty("card", True)
    return f


def screen_widget() -> QWidget:
    w = QWidget()
    w.setProperty("screen", True)
    w.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
    return w


class Banner(QWidget):
    """Top bar: centre name (left), clock and date (right)."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("banner")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setFixedHeight(BANNER_PX)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(theme.PADDING, 2, theme.PADDING, 2)
        self.centre = label("", None, wrap=False)
        f = self.centre.font()
        f.setBold(True)
        self.centre.setStyleSheet(f"font-size: {theme.BODY_PX + 4}px; font-weight: bold;")
        self.extra = label("", None, wrap=False)
        self.date = label("", None, wrap=False, align="right")
        self.clock = label("", None, wrap=False, align="right")
        self.clock.setStyleSheet(f"font-size: {theme.KEY_PX - 4}px; font-weight: bold;")
        lay.addWidget(self.centre, 1)
        lay.addWidget(self.extra, 0)
        lay.addWidget(self.date, 0)
        lay.addSpacing(24)
        lay.addWidget(self.clock, 0)

    def set(self, centre: str, date: str, clock: str, extra: str = "") -> None:
        self.centre.setText(centre)
        self.date.setText(date)
        self.clock.setText(clock)
        self.extra.setText(extra)
        self.extra.setVisible(bool(extra))


class Keypad(QWidget):
    """Big digit keys (3x4) with clear and delete; ``changed`` carries the digits."""

    changed = pyqtSignal(str)
    submitted = pyqtSignal(str)

    def __init__(
        self, max_len: int = 4, *, masked: bool = False, key_px: int = 100, gap: int = 12
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.masked = masked
        self.digits = ""
        grid = QGridLayout(self)
        grid.setSpacing(gap)
        grid.setContentsMargins(0, 0, 0, 0)
        self.keys: dict[str, QPushButton] = {}
        for i, d in enumerate("123456789"):
            self._key(grid, d, i // 3, i % 3, key_px)
        self.clear_btn = self._key(grid, "clear", 3, 0, key_px, "danger")
        self._key(grid, "0", 3, 1, key_px)
        self.delete_btn = self._key(grid, "delete", 3, 2, key_px)

    def _key(
        self, grid: QGridLayout, d: str, r: int, c: int, px: int, kind: str = "key"
    ) -> QPushButton:
        b = button(d if d.isdigit() else "", kind, lambda: self.press(d))
        b.setFixedSize(int(px * 1.6), px)
        grid.addWidget(b, r, c)
        self.keys[d] = b
        return b

    def set_labels(self, clear: str, delete: str) -> None:
        self.clear_btn.setText(clear)
        self.delete_btn.setText(delete)

    def press(self, key: str) -> None:
        if key == "clear":
            self.digits = ""
        elif key == "delete":
            self.digits = self.digits[:-1]
        elif key.isdigit() and len(self.digits) < self.max_len:
            self.digits += key
        self.changed.emit(self.digits)
        if len(self.digits) == self.max_len and key.isdigit():
            self.submitted.emit(self.digits)

    def reset(self) -> None:
        self.digits = ""
        self.changed.emit("")

    def display(self) -> str:
        shown = "●" * len(self.digits) if self.masked else self.digits
        return " ".join(shown.ljust(self.max_len, "_"))


class PreviewView(QWidget):
    """The camera picture (mirrored, like a mirror) with the face box.

    Painting only: the frame arrives as an RGB array already downscaled by the
    runner; the conversion to a pixmap happens here once per shown frame.
    ``painted`` reports (frame seq, capture time) for latency measurements.
    """

    painted = pyqtSignal(int, float)

    def __init__(self, mirrored: bool = True) -> None:
        super().__init__()
        self.mirrored = mirrored
        self._pix: QPixmap | None = None
        self._frame: PreviewFrame | None = None
        self._privacy = False
        self.setMinimumSize(320, 240)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)

    def set_privacy_blur(self, on: bool) -> None:
        """Pixelate faces (screenshots for the docs only)."""
        self._privacy = on

    def show_frame(self, frame: PreviewFrame) -> None:
        img = frame.image
        h, w = img.shape[:2]
        qimg = QImage(img.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        # mirrored() and copy() both detach from the numpy buffer
        qimg = qimg.mirrored(True, False) if self.mirrored else qimg.copy()
        if self._privacy and frame.box is not None:
            qimg = self._pixelate(qimg, frame)
        self._pix = QPixmap.fromImage(qimg)
        self._frame = frame
        self.update()

    def _pixelate(self, qimg: QImage, frame: PreviewFrame) -> QImage:
        x1, y1, x2, y2 = frame.box or (0, 0, 0, 0)
        w = qimg.width()
        if self.mirrored:
            x1, x2 = w - x2, w - x1
        r = (
            QRectF(x1, y1, x2 - x1, y2 - y1)
            .adjusted(-20, -30, 20, 20)
            .toRect()
            .intersected(qimg.rect())
        )
        if r.isEmpty():
            return qimg
        small = qimg.copy(r).scaled(max(1, r.width() // 14), max(1, r.height() // 14))
        big = small.scaled(r.width(), r.height())
        out = qimg.copy()
        p = QPainter(out)
        p.drawImage(r.topLeft(), big)
        p.end()
        return out

    def clear(self) -> None:
        self._pix = None
        self._frame = None
        self.update()

    def paintEvent(self, _ev: object) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#263238"))
        if self._pix is None or self._frame is None:
            p.end()
            return
        pw, ph = self._pix.width(), self._pix.height()
        s = min(self.width() / pw, self.height() / ph)
        tw, th = pw * s, ph * s
        ox, oy = (self.width() - tw) / 2, (self.height() - th) / 2
        p.drawPixmap(QRectF(ox, oy, tw, th), self._pix, QRectF(0, 0, pw, ph))
        box = self._frame.box
        if box is not None:
            x1, y1, x2, y2 = box
            if self.mirrored:
                x1, x2 = pw - x2, pw - x1
            colour = QColor(
                theme.PALETTE.face_box_ok if self._frame.box_ok else theme.PALETTE.face_box_bad
            )
            pen = QPen(colour, 6)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(
                QRectF(ox + x1 * s, oy + y1 * s, (x2 - x1) * s, (y2 - y1) * s), 12, 12
            )
        p.end()
        self.painted.emit(self._frame.seq, self._frame.captured)


class ResultIcon(QWidget):
    """A big round icon: tick, cross, exclamation mark or hourglass dots."""

    def __init__(self) -> None:
        super().__init__()
        self.tone = "ok"
        self.setFixedSize(130, 130)

    def set_tone(self, tone: str) -> None:
        self.tone = tone
        self.update()

    def paintEvent(self, _ev: object) -> None:
        pal = theme.PALETTE
        colour = {"ok": pal.primary, "error": pal.danger, "notice": "#E65100", "busy": pal.banner}[
            self.tone
        ]
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.scale(self.width() / 170.0, self.height() / 170.0)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(colour))
        p.drawEllipse(QRectF(5, 5, 160, 160))
        pen = QPen(
            QColor("#FFFFFF"), 16, cap=Qt.PenCapStyle.RoundCap, join=Qt.PenJoinStyle.RoundJoin
        )
        p.setPen(pen)
        if self.tone == "ok":
            p.drawPolyline(QPolygonF([QPointF(48, 88), QPointF(75, 115), QPointF(124, 58)]))
        elif self.tone == "error":
            p.drawLine(QPointF(58, 58), QPointF(112, 112))
            p.drawLine(QPointF(112, 58), QPointF(58, 112))
        elif self.tone == "notice":
            p.drawLine(QPointF(85, 45), QPointF(85, 98))
            p.drawPoint(QPointF(85, 125))
        else:
            for x in (55, 85, 115):
                p.drawPoint(QPointF(x, 85))
        p.end()


def vbox(*widgets: QWidget | int, spacing: int = 16, margins: int = 0) -> QVBoxLayout:
    lay = QVBoxLayout()
    lay.setSpacing(spacing)
    lay.setContentsMargins(margins, margins, margins, margins)
    for w in widgets:
        if isinstance(w, int):
            lay.addStretch(w)
        else:
            lay.addWidget(w)
    return lay


def hbox(*widgets: QWidget | int, spacing: int = 16, margins: int = 0) -> QHBoxLayout:
    lay = QHBoxLayout()
    lay.setSpacing(spacing)
    lay.setContentsMargins(margins, margins, margins, margins)
    for w in widgets:
        if isinstance(w, int):
            lay.addStretch(w)
        else:
            lay.addWidget(w)
    return lay
