"""pytest-qt fixtures: offscreen Qt, leak guards and the GUI-thread stall detector.

Leak guards (autouse) fail a test that leaves behind a Python thread, an
active ``QTimer`` or a visible top-level window. The stall detector is a
``QTimer`` heartbeat every 10 ms on the GUI thread; a journey fails when any
gap between two beats exceeds the interval by more than 50 ms (the event loop
was blocked).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false;qt.qpa.*=false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kiosk"))

import pytest  # noqa: E402
from kiosk_world import World, build_pack, make_world, shared_engine  # noqa: E402
from PyQt6 import sip  # noqa: E402
from PyQt6.QtCore import QTimer  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402
from ui_support import StallDetector  # noqa: E402


@pytest.fixture(scope="session")
def qapp_args() -> list[str]:
    return ["care-terminal-tests"]


@pytest.fixture(scope="session", autouse=True)
def _style(qapp: QApplication) -> None:
    from ui.views.app import make_app

    make_app()


@pytest.fixture(scope="session")
def open_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pack = build_pack(tmp_path_factory.mktemp("packs") / "open")
    shared_engine(pack)  # its liveness worker lives for the session, before any leak check
    return pack


@pytest.fixture
def world(tmp_path: Path, open_pack: Path) -> Iterator[World]:
    w = make_world(tmp_path, open_pack)
    from terminal.kiosk.pins import StaffPins

    pins = StaffPins(w.services.settings.data_dir / "staff" / "pins.json")
    pins.set_pin("S-TEST", "王护理", "2468", "manager")
    yield w
    w.close()


def _active_timers() -> list[str]:
    out = []
    for obj in gc.get_objects():
        try:
            if isinstance(obj, QTimer) and not sip.isdeleted(obj) and obj.isActive():
                out.append(obj.objectName() or repr(obj))
        except RuntimeError:
            continue
    return out


@pytest.fixture(autouse=True)
def leak_guard(qapp: QApplication) -> Iterator[None]:
    threads_before = {t.ident for t in threading.enumerate()}
    yield
    # let deleteLater() and queued signals run
    for _ in range(5):
        qapp.processEvents()
        time.sleep(0.01)
    gc.collect()
    qapp.processEvents()
    windows = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    timers = _active_timers()
    deadline = time.monotonic() + 5
    leaked: list[str] = []
    while time.monotonic() < deadline:
        leaked = [
            t.name for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()
        ]
        if not leaked:
            break
        time.sleep(0.05)
    for w in windows:  # close them so one leak does not cascade into every later test
        w.close()
    assert not windows, f"top-level windows left open: {windows}"
    assert not timers, f"active QTimers left behind: {timers}"
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def stall_detector() -> Iterator[StallDetector]:
    det = StallDetector()
    yield det
    det.timer.stop()
    det.deleteLater()
