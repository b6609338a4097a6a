"""The staff screen for the footfall line: the footfall camera's picture (a
real video file read through the real frame source) with the configured
counting line drawn on it, refreshed on demand, and the line's numbers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PyQt6.QtCore import Qt
from pytestqt.qtbot import QtBot
from ui_support import CannedBackend, ScriptedKiosk

from face.footfall.annotate import LINE_COLOUR
from face.footfall.counting import LineSpec
from face.footfall.synth import _background
from terminal.app.footfall_snapshot import FootfallLineSnapshots
from ui import theme
from ui.i18n import Translator
from ui.views.window import KioskWindow

CAMERA = SimpleNamespace(width=640, height=480, fps=15.0)
LINE = LineSpec(0.1, 0.6, 0.9, 0.6, inside="below", face_px=81.3)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few frames of an empty drawn entrance as an MJPEG file."""
    path = tmp_path_factory.mktemp("footfall-cam") / "entrance.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 15.0, (640, 480))
    frame = _background(640, 480, 3)
    for _ in range(5):
        out.write(frame)
    out.release()
    return path


def open_window(
    qtbot: QtBot, port: FootfallLineSnapshots | None, language: str = "zh_CN"
) -> KioskWindow:
    w = KioskWindow(ScriptedKiosk(), CannedBackend(), Translator(language), footfall=port)  # type: ignore[arg-type]
    w.resize(theme.SCREEN_W, theme.SCREEN_H)
    w.show()
    qtbot.waitExposed(w)
    w.staff_mode = True
    return w


@pytest.fixture
def window(qtbot: QtBot, clip: Path) -> Iterator[KioskWindow]:
    w = open_window(qtbot, FootfallLineSnapshots(str(clip), LINE, CAMERA))
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def shown(qtbot: QtBot, w: KioskWindow) -> None:
    w.show_page("footfall")
    qtbot.waitUntil(lambda: w.tasks.busy == 0, timeout=10_000)
    qtbot.wait(20)


def texts(w: KioskWindow) -> list[str]:
    grid = w.pages["footfall"].grid  # type: ignore[attr-defined]
    return [grid.itemAt(i).widget().text() for i in range(grid.count())]


def test_home_menu_opens_the_page(qtbot: QtBot, window: KioskWindow) -> None:
    window.show_home()
    window.home.on_show()
    button = window.home.buttons["footfall"]
    assert button.isVisibleTo(window) and button.text() == "客流计数线"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.tasks.busy == 0, timeout=10_000)
    assert window.stack.currentWidget() is window.pages["footfall"]


def test_picture_shows_the_line_and_its_numbers(qtbot: QtBot, window: KioskWindow) -> None:
    shown(qtbot, window)
    page = window.pages["footfall"]
    pix = page.picture.pixmap()  # type: ignore[attr-defined]
    assert pix is not None and not pix.isNull() and (pix.width(), pix.height()) == (512, 384)
    img = pix.toImage()  # the 640 x 480 picture at 0.8
    # the line at y = 0.6 * 480 = 288 is drawn in the line colour; away from it the camera's picture
    b, g, r = LINE_COLOUR
    on_line = img.pixelColor(256, round(288 * 0.8))
    assert abs(on_line.red() - r) < 40 and abs(on_line.green() - g) < 40
    assert abs(on_line.blue() - b) < 60
    background = _background(640, 480, 3)
    far = img.pixelColor(256, 64)
    assert np.abs(np.array([far.blue(), far.green(), far.red()]) - background[80, 320]).max() < 40
    rows = texts(window)
    assert "(0.10, 0.60) → (0.90, 0.60)" in rows
    assert "(64, 288) → (576, 288)" in rows
    assert "线的下方（箭头所指）" in rows
    assert "深度线：门槛处头宽 81.3 像素" in rows
    assert any(t.startswith("640 × 480") for t in rows)
    assert not page.msg.isVisible()  # type: ignore[attr-defined]


def test_refresh_shows_the_line_as_configured_now(
    qtbot: QtBot, window: KioskWindow, clip: Path
) -> None:
    shown(qtbot, window)
    window.ctx.footfall = FootfallLineSnapshots(
        str(clip), LineSpec(0.1, 0.4, 0.9, 0.4, inside="above"), CAMERA
    )
    page = window.pages["footfall"]
    page.refresh_btn.click()  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: "(0.10, 0.40) → (0.90, 0.40)" in texts(window), timeout=10_000)
    assert "画面位置线" in texts(window)
    img = page.picture.pixmap().toImage()  # type: ignore[attr-defined]
    assert abs(img.pixelColor(256, round(192 * 0.8)).green() - LINE_COLOUR[1]) < 40


def test_a_line_that_cannot_count_is_said(qtbot: QtBot, window: KioskWindow, clip: Path) -> None:
    window.ctx.footfall = FootfallLineSnapshots(
        str(clip), LineSpec(0.1, 0.99, 0.9, 0.99, inside="below"), CAMERA
    )
    shown(qtbot, window)
    msg = window.pages["footfall"].msg  # type: ignore[attr-defined]
    assert msg.isVisible() and msg.text().startswith("这条线无法计数：")


def test_english(qtbot: QtBot, clip: Path) -> None:
    w = open_window(qtbot, FootfallLineSnapshots(str(clip), LINE, CAMERA), "en")
    try:
        shown(qtbot, w)
        assert w.pages["footfall"].title.text() == "Footfall camera and counting line"  # type: ignore[attr-defined]
        assert "below the line (the arrow)" in texts(w)
    finally:
        w.shutdown()
        w.close()
        w.deleteLater()


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (None, "本机未接客流摄像头。"),
        # the counter shares the kiosk camera: no second picture to take
        (FootfallLineSnapshots(None, LINE, CAMERA), "客流计数与刷脸共用这台摄像头"),
        # a camera that is not there: the source's clear error, no traceback
        (FootfallLineSnapshots("/nonexistent/cam.avi", LINE, CAMERA), "没有完成：camera source"),
    ],
)
def test_no_picture_is_a_clear_message(
    qtbot: QtBot, port: FootfallLineSnapshots | None, expected: str
) -> None:
    w = open_window(qtbot, port)
    try:
        shown(qtbot, w)
        page = w.pages["footfall"]
        assert page.msg.isVisible() and expected in page.msg.text()  # type: ignore[attr-defined]
        assert page.picture.pixmap() is None or page.picture.pixmap().isNull()  # type: ignore[attr-defined]
    finally:
        w.shutdown()
        w.close()
        w.deleteLater()
