"""Elder-friendly (适老化) sizes and colours, Qt-free.

The national elder-friendly rules for apps ask for large text, large touch
targets, strong contrast and generous line spacing. On a 10-inch 1280x800
kiosk panel seen at arm's length we use:

* body text at least 28 px (we use 32), key figures (name, amount, balance)
  60-96 px;
* touch targets at least 60x60 dp; we make every button at least 96 px in
  both directions;
* text/background contrast at least 4.5:1 (WCAG AA; checked by
  :func:`contrast_ratio` in the tests for every colour pair we use);
* line spacing at least 1.3 (we use 1.4 for multi-line text).

Every screen, dialog and error uses these same sizes (the common complaint
about elder modes is that only the home page was enlarged). Views read the
values from here; tests check rendered widgets against them.
"""

from __future__ import annotations

from dataclasses import dataclass

SCREEN_W = 1280
SCREEN_H = 800

MIN_BODY_PX = 28  # the rule
BODY_PX = 32
SMALL_PX = 28  # the smallest text anywhere (hints, status lines)
TITLE_PX = 48
KEY_PX = 64  # names, balances
HUGE_PX = 96  # the amount to pay, the result icon
MIN_TOUCH_PX = 90  # the rule we test against
TOUCH_PX = 100  # what we build
LINE_SPACING = 1.4
MIN_LINE_SPACING = 1.3
MIN_CONTRAST = 4.5
PADDING = 24
RADIUS = 16

FONT_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Micro Hei", "Source Han Sans SC")


@dataclass(frozen=True, slots=True)
class Palette:
    background: str = "#FFF8EC"  # warm off-white (less glare than pure white)
    surface: str = "#FFFFFF"
    text: str = "#1A1A1A"
    muted: str = "#4A4A4A"  # secondary text; still >= 4.5:1 on background and surface
    primary: str = "#1B5E20"  # confirm / pay (dark green)
    on_primary: str = "#FFFFFF"
    secondary: str = "#37474F"  # neutral buttons (blue grey)
    on_secondary: str = "#FFFFFF"
    danger: str = "#B71C1C"
    on_danger: str = "#FFFFFF"
    warning_bg: str = "#FFE0B2"
    warning_text: str = "#5D2600"
    ok_bg: str = "#E8F5E9"
    ok_text: str = "#1B5E20"
    error_bg: str = "#FFEBEE"
    error_text: str = "#8E0000"
    banner: str = "#0D47A1"  # top bar
    on_banner: str = "#FFFFFF"
    face_box_ok: str = "#00E676"  # drawn on the camera image, not text
    face_box_bad: str = "#FFAB00"
    disabled_bg: str = "#BDBDBD"
    disabled_text: str = "#212121"


PALETTE = Palette()

# (foreground, background) pairs that carry text; all must reach MIN_CONTRAST.
TEXT_PAIRS: tuple[tuple[str, str], ...] = (
    (PALETTE.text, PALETTE.background),
    (PALETTE.text, PALETTE.surface),
    (PALETTE.muted, PALETTE.background),
    (PALETTE.muted, PALETTE.surface),
    (PALETTE.on_primary, PALETTE.primary),
    (PALETTE.on_secondary, PALETTE.secondary),
    (PALETTE.on_danger, PALETTE.danger),
    (PALETTE.warning_text, PALETTE.warning_bg),
    (PALETTE.ok_text, PALETTE.ok_bg),
    (PALETTE.error_text, PALETTE.error_bg),
    (PALETTE.on_banner, PALETTE.banner),
    (PALETTE.disabled_text, PALETTE.disabled_bg),
    (PALETTE.primary, PALETTE.background),
    (PALETTE.danger, PALETTE.background),
)


def _channel(c: int) -> float:
    s = c / 255.0
    return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4


def relative_luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) != 6:
        raise ValueError(f"colour must be #RRGGBB: {hex_colour!r}")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio of two #RRGGBB colours (1..21)."""
    a, b = relative_luminance(fg), relative_luminance(bg)
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


def stylesheet(p: Palette = PALETTE) -> str:
    """The one application style sheet (Qt style sheet syntax, plain text)."""
    return f"""
* {{
    font-size: {BODY_PX}px;
    color: {p.text};
}}
QWidget#kioskRoot, QStackedWidget, QWidget[screen="true"] {{
    background: {p.background};
}}
QLabel {{ background: transparent; }}
QLabel[role="title"] {{ font-size: {TITLE_PX}px; font-weight: bold; }}
QLabel[role="key"] {{ font-size: {KEY_PX}px; font-weight: bold; }}
QLabel[role="huge"] {{ font-size: {HUGE_PX}px; font-weight: bold; }}
QLabel[role="muted"] {{ color: {p.muted}; font-size: {SMALL_PX}px; }}
QLabel[role="guidance"] {{
    font-size: {TITLE_PX}px; font-weight: bold; color: {p.warning_text};
    background: {p.warning_bg}; border-radius: {RADIUS}px; padding: 12px 24px;
}}
QLabel[role="ok"] {{ color: {p.ok_text}; background: {p.ok_bg}; border-radius: {RADIUS}px;
    padding: 16px; font-size: {TITLE_PX}px; font-weight: bold; }}
QLabel[role="error"] {{ color: {p.error_text}; background: {p.error_bg};
    border-radius: {RADIUS}px; padding: 16px; font-size: {TITLE_PX}px; font-weight: bold; }}
QLabel[role="notice"] {{ color: {p.warning_text}; background: {p.warning_bg};
    border-radius: {RADIUS}px; padding: 12px; }}
QWidget#banner {{ background: {p.banner}; }}
QWidget#banner QLabel {{ color: {p.on_banner}; }}
QFrame[card="true"] {{ background: {p.surface}; border-radius: {RADIUS}px;
    border: 2px solid #D7CCC8; }}
QPushButton {{
    font-size: {BODY_PX}px; font-weight: bold;
    border-radius: {RADIUS}px; padding: 8px 24px;
    background: {p.secondary}; color: {p.on_secondary}; border: none;
}}
QPushButton[kind="primary"] {{ background: {p.primary}; color: {p.on_primary};
    font-size: {TITLE_PX}px; }}
QPushButton[kind="danger"] {{ background: {p.danger}; color: {p.on_danger}; }}
QPushButton[kind="big"] {{ font-size: {TITLE_PX}px; }}
QPushButton[kind="key"] {{ background: {p.surface}; color: {p.text};
    border: 2px solid {p.secondary}; font-size: {TITLE_PX}px; }}
QPushButton[kind="choice"] {{ background: {p.surface}; color: {p.text};
    border: 2px solid {p.secondary}; }}
QPushButton[kind="choice"]:checked {{ background: {p.primary}; color: {p.on_primary};
    border: 2px solid {p.primary}; }}
QPushButton:pressed {{ background: {p.text}; color: {p.surface}; }}
QPushButton:disabled {{ background: {p.disabled_bg}; color: {p.disabled_text}; }}
QLineEdit {{ min-height: {TOUCH_PX - 4}px; font-size: {TITLE_PX}px; padding: 0 16px;
    background: {p.surface}; border: 2px solid {p.secondary}; border-radius: {RADIUS}px; }}
QCheckBox {{ min-height: {TOUCH_PX}px; spacing: 24px; }}
QCheckBox::indicator {{ width: 56px; height: 56px; }}
QListWidget {{ background: {p.surface}; border: 2px solid #D7CCC8; border-radius: {RADIUS}px; }}
QListWidget::item {{ min-height: {TOUCH_PX}px; padding: 8px 16px;
    border-bottom: 1px solid #D7CCC8; }}
QListWidget::item:selected {{ background: {p.banner}; color: {p.on_banner}; }}
QScrollBar:vertical {{ width: 40px; background: #ECEFF1; margin: 0; }}
QScrollBar::handle:vertical {{ background: #607D8B; min-height: 90px; border-radius: 8px; }}
QScrollBar::add-line:vertical, QScrollBar::sub-line:vertical {{ height: 0; }}
"""
