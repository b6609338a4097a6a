"""Start the Qt application around a kiosk runner and back end.

* fonts: a CJK font is required (Chinese would draw as empty boxes);
* a global exception hook logs and shows the out-of-service screen, never a
  traceback;
* the systemd watchdog is fed from the GUI thread (a frozen event loop stops
  the pings) and only while the runner reports healthy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from terminal.core.log import get_logger
from ui import theme
from ui.i18n import Translator
from ui.ports import KioskPort, StaffPort
from ui.presenters.footfall import LineSnapshotPort
from ui.views.sound import PromptPlayer
from ui.views.widgets import setup_fonts
from ui.views.window import KioskWindow

log = get_logger(__name__)


def make_app(argv: list[str] | None = None) -> QApplication:
    os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false;qt.qpa.*=false")
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(argv or [sys.argv[0]])
    app.setStyleSheet(theme.stylesheet())
    if setup_fonts(app) is None:
        log.error("chinese_text_unreadable", hint="apt-get install fonts-noto-cjk")
    return app


def install_exception_hook(window: KioskWindow) -> Callable[[], None]:
    """Unexpected errors: log (no personal data), show out-of-service. Returns
    a function that restores the previous hooks."""
    old_hook = sys.excepthook
    old_thread_hook = threading.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        log.error("gui_exception", exc_type=exc_type.__name__)
        with contextlib.suppress(Exception):  # the hook itself must never raise
            window.show_out_of_service(f"E-{exc_type.__name__}")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        log.error(
            "thread_exception",
            exc_type=args.exc_type.__name__,
            thread=getattr(args.thread, "name", "?"),
        )

    sys.excepthook = hook
    threading.excepthook = thread_hook

    def restore() -> None:
        sys.excepthook = old_hook
        threading.excepthook = old_thread_hook

    return restore


def run_kiosk(
    kiosk: KioskPort,
    backend: StaffPort,
    *,
    language: str = "zh_CN",
    fullscreen: bool = True,
    healthy: Callable[[], bool] = lambda: True,
    notify: Callable[[str], bool] | None = None,
    watchdog_s: float | None = None,
    clock: Callable[[], datetime] | None = None,
    wedge_key: Callable[[str], bool] | None = None,
    voice: bool = True,
    on_window: Callable[[KioskWindow], Any] | None = None,
    quit_after_s: float | None = None,
    footfall: LineSnapshotPort | None = None,
) -> int:
    """Run the kiosk until the window closes or SIGTERM. ``kiosk`` must
    already be started. Returns the Qt exit code."""
    app = make_app()
    tr = Translator(language)
    player = PromptPlayer(lambda: tr.language, enabled=voice)
    window = KioskWindow(
        kiosk, backend, tr, player=player, clock=clock, wedge_key=wedge_key, footfall=footfall
    )
    restore = install_exception_hook(window)
    if fullscreen:
        from PyQt6.QtCore import Qt

        window.setWindowFlag(Qt.WindowType.FramelessWindowHint, True)
        window.showFullScreen()
    else:
        window.resize(theme.SCREEN_W, theme.SCREEN_H)
        window.show()
    if on_window is not None:
        on_window(window)
    if quit_after_s:
        QTimer.singleShot(int(quit_after_s * 1000), app.quit)

    # SIGTERM/SIGINT: quit the event loop cleanly (Python handlers need the loop to wake up)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_a: app.quit())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)

    feed: QTimer | None = None
    if notify is not None:
        notify("READY=1")
        if watchdog_s:
            feed = QTimer()

            withheld = [False]

            def kick() -> None:
                if healthy():
                    notify("WATCHDOG=1")
                    withheld[0] = False
                elif not withheld[0]:  # log once per bad spell, not every period
                    withheld[0] = True
                    log.error("watchdog_withheld", reason="kiosk unhealthy")

            feed.timeout.connect(kick)
            feed.start(int(watchdog_s * 1000))
    try:
        code = app.exec()
    finally:
        if notify is not None:
            notify("STOPPING=1")
        wake.stop()
        if feed is not None:
            feed.stop()
        window.shutdown()
        window.close()
        window.deleteLater()
        restore()
    return int(code)


def run_out_of_service(
    code: str,
    *,
    language: str = "zh_CN",
    fullscreen: bool = True,
    quit_after_s: float | None = None,
) -> int:
    """Boot failed (invalid configuration, unverifiable model pack, unusable
    database): show the out-of-service screen with the error code instead of a
    traceback or a blank screen, until the service is stopped."""
    from PyQt6.QtCore import Qt

    from ui.presenters.kiosk import present_out_of_service
    from ui.views.senior import OutOfServiceScreen

    app = make_app()
    screen = OutOfServiceScreen()
    screen.show_vm(present_out_of_service(Translator(language), code).vm)  # type: ignore[arg-type]
    if fullscreen:
        screen.setWindowFlag(Qt.WindowType.FramelessWindowHint, True)
        screen.showFullScreen()
    else:
        screen.resize(theme.SCREEN_W, theme.SCREEN_H)
        screen.show()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_a: app.quit())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    if quit_after_s:
        QTimer.singleShot(int(quit_after_s * 1000), app.quit)
    try:
        return int(app.exec())
    finally:
        wake.stop()
        screen.close()
