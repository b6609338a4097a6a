"""Moving runner updates onto the GUI thread, and running blocking calls off it.

``KioskBridge.on_update`` is called on runner threads. It never touches a
widget: it emits Qt signals, which Qt delivers to the GUI thread through its
event queue (queued connections). Camera previews are coalesced
(latest-frame-wins): while one preview waits to be painted, newer frames
replace it instead of queueing up behind it.

``TaskRunner`` runs ``StaffPort`` calls (database, printer, scrypt, network) on
a small thread pool and hands the result back on the GUI thread.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot

from terminal.core.log import get_logger
from ui.model import (
    ChallengeView,
    DeviceHealth,
    EnrolProgress,
    Fault,
    FlowView,
    IdleInfo,
    KioskUpdate,
    PreviewFrame,
    SpeakRequest,
)

log = get_logger(__name__)


class KioskBridge(QObject):
    flow = pyqtSignal(object)
    idle = pyqtSignal(object)
    challenge = pyqtSignal(object)
    enrol = pyqtSignal(object)
    health = pyqtSignal(object)
    fault = pyqtSignal(object)
    speak = pyqtSignal(str)
    preview = pyqtSignal(object)
    _preview_ready = pyqtSignal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: PreviewFrame | None = None
        self._pending = False
        self.previews_dropped = 0
        self._preview_ready.connect(self._drain_preview)

    # called on runner threads --------------------------------------------------------
    def on_update(self, update: KioskUpdate) -> None:
        if isinstance(update, PreviewFrame):
            with self._lock:
                if self._latest is not None:
                    self.previews_dropped += 1
                self._latest = update
                if self._pending:
                    return
                self._pending = True
            self._preview_ready.emit()
        elif isinstance(update, FlowView):
            self.flow.emit(update)
        elif isinstance(update, IdleInfo):
            self.idle.emit(update)
        elif isinstance(update, ChallengeView):
            self.challenge.emit(update)
        elif isinstance(update, EnrolProgress):
            self.enrol.emit(update)
        elif isinstance(update, DeviceHealth):
            self.health.emit(update)
        elif isinstance(update, Fault):
            self.fault.emit(update)
        elif isinstance(update, SpeakRequest):
            self.speak.emit(update.key)

    # GUI thread ----------------------------------------------------------------------
    @pyqtSlot()
    def _drain_preview(self) -> None:
        with self._lock:
            frame, self._latest, self._pending = self._latest, None, False
        if frame is not None:
            self.preview.emit(frame)


class TaskRunner(QObject):
    """Blocking calls on worker threads; callbacks on the GUI thread."""

    _finished = pyqtSignal(int, object, object)

    def __init__(self, parent: QObject | None = None, workers: int = 2) -> None:
        super().__init__(parent)
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="kiosk-task"
        )
        self._ids = itertools.count(1)
        self._callbacks: dict[
            int, tuple[Callable[[Any], None] | None, Callable[[BaseException], None] | None]
        ] = {}
        self._finished.connect(self._deliver)
        self.busy = 0

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        **kwargs: Any,
    ) -> int:
        if self._pool is None:
            raise RuntimeError("task runner is shut down")
        token = next(self._ids)
        self._callbacks[token] = (on_done, on_error)
        self.busy += 1
        fut = self._pool.submit(fn, *args, **kwargs)

        def done(f: Future[Any]) -> None:
            err = f.exception()
            with contextlib.suppress(RuntimeError):  # deleted during shutdown
                self._finished.emit(token, None if err else f.result(), err)

        fut.add_done_callback(done)
        return token

    @pyqtSlot(int, object, object)
    def _deliver(self, token: int, result: Any, error: Any) -> None:
        self.busy = max(0, self.busy - 1)
        on_done, on_error = self._callbacks.pop(token, (None, None))
        if error is not None:
            if not isinstance(error, Exception):
                log.error("task_failed", exc_type=type(error).__name__)
            if on_error is not None:
                on_error(error)
            else:
                log.error("task_failed_unhandled", exc_type=type(error).__name__)
            return
        if on_done is not None:
            on_done(result)

    def shutdown(self, wait: bool = True) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)
