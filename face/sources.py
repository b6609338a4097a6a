"""Frame sources: a camera, a video file or an image folder behind one interface.

Every source runs one reader thread that overwrites a single slot
(latest-frame-wins): a slow consumer sees the newest frame and never makes the
reader wait, and nothing queues up without bound. Consumers call
:meth:`FrameSource.latest` (never blocks) or :meth:`ThreadedSource.wait_frame`
(blocks the *consumer* only, until a frame newer than the one it has).

``open_source(spec)`` turns the ``camera.source`` setting into a source:

* ``"v4l2:0"`` or ``"0"``: camera index 0 through OpenCV's V4L2 backend;
* ``"/dev/video0"`` (anything under ``/dev/``): that camera device node;
* ``"rtsp://..."``, ``"http://..."`` or ``"https://..."``: a network (IP)
  camera's stream through OpenCV's FFmpeg backend (RTSP H.264, MJPEG over
  HTTP), reconnecting like a USB camera; credentials in the URL never reach
  the logs. Keep such a camera on the centre's own network segment: whoever
  can send frames to the stream is the camera;
* a video file path: :class:`VideoFileSource`;
* a folder: :class:`ImageFolderSource` (images in sorted name order).

A camera that is unplugged (open or read fails) is reopened with a capped
exponential backoff; :meth:`FrameSource.status` says what is going on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from terminal.core.backoff import Backoff
from terminal.core.errors import SourceError
from terminal.core.log import get_logger

log = get_logger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mjpg", ".mjpeg"})


class SourceState(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    ENDED = "ended"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured image (BGR, uint8, HxWx3) with its capture time.

    ``ts`` is ``time.monotonic()`` seconds at capture; ``seq`` counts frames
    from 1 per source and never repeats, so a consumer can tell a new frame
    from one it has already seen.
    """

    image: np.ndarray
    ts: float
    seq: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class SourceStatus:
    state: SourceState
    message: str = ""
    frames: int = 0  # frames captured since start
    dropped: int = 0  # frames overwritten before any consumer saw them
    reconnects: int = 0  # successful reopenings after a disconnect

    @property
    def ok(self) -> bool:
        return self.state is SourceState.CONNECTED


@runtime_checkable
class FrameSource(Protocol):
    """What the kiosk and the footfall counter consume."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def latest(self) -> Frame | None: ...

    def status(self) -> SourceStatus: ...


class LatestSlot:
    """A one-frame mailbox: ``put`` overwrites, ``latest`` never blocks.

    Counts frames that were overwritten before anyone read them (``dropped``).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._frame: Frame | None = None
        self._read_seq = 0
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            old = self._frame
            if old is not None and old.seq > self._read_seq:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def latest(self) -> Frame | None:
        with self._cond:
            frame = self._frame
            if frame is not None and frame.seq > self._read_seq:
                self._read_seq = frame.seq
            return frame

    def wait_newer(self, after_seq: int, timeout: float | None) -> Frame | None:
        """Block the caller until a frame with ``seq > after_seq`` exists."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._frame is not None and self._frame.seq > after_seq, timeout
            )
            frame = self._frame
            if frame is None or frame.seq <= after_seq:
                return None
            self._read_seq = max(self._read_seq, frame.seq)
            return frame

    def clear(self) -> None:
        with self._cond:
            self._frame = None


class ThreadedSource:
    """Shared machinery: one reader thread, one slot, a status record."""

    kind = "source"

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._slot = LatestSlot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_lock = threading.Lock()
        self._state = SourceState.DISCONNECTED
        self._message = "not started"
        self._seq = 0
        self._reconnects = 0

    # -- consumer side -------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run_guarded, name=f"care-{self.kind}-reader", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the reader to stop and wait for it (bounded by ``timeout``)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("source_stop_timeout", source=self.kind, seconds=timeout)
            else:
                self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def latest(self) -> Frame | None:
        return self._slot.latest()

    def wait_frame(self, after_seq: int = 0, timeout: float | None = 1.0) -> Frame | None:
        """The newest frame with ``seq > after_seq``, waiting up to ``timeout`` s."""
        return self._slot.wait_newer(after_seq, timeout)

    def status(self) -> SourceStatus:
        with self._status_lock:
            return SourceStatus(
                state=self._state,
                message=self._message,
                frames=self._seq,
                dropped=self._slot.dropped,
                reconnects=self._reconnects,
            )

    def __enter__(self) -> ThreadedSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reader side -----------------------------------------------------------
    def _set_status(self, state: SourceState, message: str = "") -> None:
        with self._status_lock:
            changed = state is not self._state
            self._state = state
            self._message = message
        if changed:
            log.info("source_status", source=self.kind, state=state.value, detail=message)

    def _publish(self, image: np.ndarray) -> Frame:
        ts = self._clock()
        with self._status_lock:
            self._seq += 1
            seq = self._seq
        frame = Frame(image=image, ts=ts, seq=seq)
        self._slot.put(frame)
        return frame

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:  # the reader must never die silently
            log.exception("source_failed", source=self.kind)
            self._set_status(SourceState.ERROR, f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------- camera


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the camera source uses."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


CaptureOpener = Callable[[], Capture | None]


def v4l2_opener(
    device: int | str, width: int, height: int, fps: float, fourcc: str | None = None
) -> Capture:
    """Open a camera through OpenCV's V4L2 backend with the wanted format."""
    cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
    if cap.isOpened():
        if fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        # A short driver queue: we want the newest frame, not an old one.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


def file_opener(path: str | Path) -> Capture | None:
    """Open a video file (any backend OpenCV has). ``None`` if it is missing."""
    p = Path(path)
    if not p.is_file():
        return None
    return cv2.VideoCapture(str(p))


NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
NETWORK_TIMEOUT_MS = 5000


def redact_url(url: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://***@host/x`` (for names and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}{sep}{netloc}{slash}{path}"


def network_opener(url: str, timeout_ms: int = NETWORK_TIMEOUT_MS) -> Capture:
    """Open a network camera stream through FFmpeg, with open and read timeouts
    (a camera that goes away must not hang the reader thread)."""
    return cv2.VideoCapture(
        url,
        cv2.CAP_FFMPEG,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms],
    )


class CameraSource(ThreadedSource):
    """A live camera. Reopens with capped exponential backoff when the device
    cannot be opened or stops delivering frames (unplugged, driver error).

    ``opener`` makes the capture; the default opens ``device`` through V4L2 with
    the given size and rate. Any callable returning an object with
    ``isOpened/read/release`` (``None`` for "not there") works, which is how a
    video file stands in for a camera in tests and demos.
    """

    kind = "camera"

    def __init__(
        self,
        device: int | str = 0,
        *,
        width: int = 640,
        height: int = 480,
        fps: float = 15.0,
        fourcc: str | None = None,
        opener: CaptureOpener | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        max_read_failures: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(f"camera:{device}", clock=clock)
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise SourceError("camera backoff must be positive and max >= initial")
        self.device = device
        self._opener: CaptureOpener = opener or partial(
            v4l2_opener, device, width, height, fps, fourcc
        )
        # attempt n (0-based) waits backoff_initial * 2**n seconds, at most backoff_max
        self.backoff = Backoff(initial=backoff_initial, maximum=backoff_max)
        self._max_read_failures = max(1, max_read_failures)

    def _open(self) -> Capture | None:
        try:
            cap = self._opener()
        except Exception as exc:
            log.warning("camera_open_failed", error=type(exc).__name__)
            return None
        if cap is None:
            return None
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _run(self) -> None:
        attempt = 0
        ever_connected = False
        self._set_status(SourceState.DISCONNECTED, "opening camera")
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                wait = self.backoff.delay(attempt)
                attempt += 1
                self._set_status(
                    SourceState.DISCONNECTED,
                    f"camera {self.device} not available; retry {attempt} in {wait:.1f} s",
                )
                self._stop.wait(wait)
                continue
            try:
                got_frame = self._read_until_failure(cap, ever_connected)
            finally:
                cap.release()
            if got_frame:
                ever_connected = True
                attempt = 0  # it worked for a while: start the backoff again from the bottom
            if self._stop.is_set():
                break
            wait = self.backoff.delay(attempt)
            attempt += 1
            self._set_status(
                SourceState.DISCONNECTED,
                f"camera {self.device} stopped delivering frames; reopening in {wait:.1f} s",
            )
            self._stop.wait(wait)
        self._set_status(SourceState.DISCONNECTED, "stopped")

    def _read_until_failure(self, cap: Capture, reconnect: bool) -> bool:
        failures = 0
        got_frame = False
        while not self._stop.is_set():
            ok, image = cap.read()
            if not ok or image is None or getattr(image, "size", 0) == 0:
                failures += 1
                if failures >= self._max_read_failures:
                    return got_frame
                self._stop.wait(0.01)
                continue
            failures = 0
            if not got_frame:
                got_frame = True
                if reconnect:
                    with self._status_lock:
                        self._reconnects += 1
                self._set_status(SourceState.CONNECTED, f"camera {self.device} delivering frames")
            self._publish(_as_bgr(image))
        return got_frame


# --------------------------------------------------------------------------- video file


class VideoFileSource(ThreadedSource):
    """Plays a video file at its own frame rate (``realtime=True``) or as fast
    as it decodes, once or in a loop. Ends with state ``ended``."""

    kind = "video"

    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = True,
        loop: bool = False,
        fallback_fps: float = 25.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        super().__init__(f"video:{self.path.name}", clock=clock)
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        self.realtime = realtime
        self.loop = loop
        self._fallback_fps = fallback_fps
        self.fps: float | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                cap.release()
                self._set_status(SourceState.ERROR, f"cannot open video file {self.path.name}")
                return
            try:
                fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
                if not np.isfinite(fps) or fps <= 0 or fps > 1000:
                    fps = self._fallback_fps
                self.fps = fps
                self._set_status(SourceState.CONNECTED, f"playing {self.path.name} at {fps:g} fps")
                shown = self._play(cap, fps)
            finally:
                cap.release()
            if self._stop.is_set():
                break
            if shown == 0:
                self._set_status(SourceState.ERROR, f"no decodable frames in {self.path.name}")
                return
            if not self.loop:
                self._set_status(SourceState.ENDED, f"end of {self.path.name}")
                return

    def _play(self, cap: Any, fps: float) -> int:
        period = 1.0 / fps
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set():
            ok, image = cap.read()
            if not ok or image is None:
                return n
            if self.realtime:
                due = t0 + n * period
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return n
            self._publish(_as_bgr(image))
            n += 1
        return n


# --------------------------------------------------------------------------- image folder


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFolderSource(ThreadedSource):
    """Images of a folder in sorted name order at ``fps`` (``None``: as fast as
    they decode), once or in a loop. Unreadable files are skipped and counted."""

    kind = "images"

    def __init__(
        self,
        folder: str | Path,
        *,
        fps: float | None = 5.0,
        loop: bool = False,
        files: Sequence[Path] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        super().__init__(f"images:{self.folder.name}", clock=clock)
        if files is None:
            if not self.folder.is_dir():
                raise SourceError(f"image folder not found: {self.folder}")
            files = list_images(self.folder)
        if not files:
            raise SourceError(f"no images (jpg, png, bmp, webp, tif) in {self.folder}")
        if fps is not None and fps <= 0:
            raise SourceError("image folder fps must be positive")
        self.files = list(files)
        self.fps = fps
        self.loop = loop
        self.skipped: list[str] = []

    def _run(self) -> None:
        self._set_status(SourceState.CONNECTED, f"{len(self.files)} images")
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set():
            shown_this_pass = 0
            for path in self.files:
                if self._stop.is_set():
                    return
                image = read_image(path)
                if image is None:
                    if path.name not in self.skipped:
                        self.skipped.append(path.name)
                    continue
                if self.fps is not None:
                    delay = t0 + n / self.fps - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                self._publish(image)
                n += 1
                shown_this_pass += 1
            if shown_this_pass == 0:
                self._set_status(SourceState.ERROR, f"none of the images in {self.folder} decode")
                return
            if not self.loop:
                msg = f"end of {self.folder.name}"
                if self.skipped:
                    msg += f" ({len(self.skipped)} unreadable skipped)"
                self._set_status(SourceState.ENDED, msg)
                return


def read_image(path: Path) -> np.ndarray | None:
    """Decode an image file to BGR uint8, or ``None`` if it is not an image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    return image


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


# --------------------------------------------------------------------------- spec


def open_source(
    spec: str,
    *,
    width: int = 640,
    height: int = 480,
    fps: float = 15.0,
    loop: bool = False,
    realtime: bool = True,
) -> ThreadedSource:
    """Make the source named by a ``camera.source`` setting (not started).

    Raises :class:`SourceError` for a spec it cannot understand or a file or
    folder that does not exist. A camera device that is missing is *not* an
    error: the camera source waits for it to be plugged in.
    """
    text = spec.strip()
    if not text:
        raise SourceError(
            "camera source is empty; use e.g. v4l2:0, /dev/video0, a file or a folder"
        )
    if text.lower().startswith("v4l2:"):
        target = text[5:].strip()
        if target.isdigit():
            return CameraSource(int(target), width=width, height=height, fps=fps)
        if target.startswith("/dev/"):
            return CameraSource(target, width=width, height=height, fps=fps)
        raise SourceError(f"camera source {spec!r}: expected v4l2:<index> or v4l2:/dev/videoN")
    if text.lower().startswith(NETWORK_SCHEMES):
        return CameraSource(
            redact_url(text),
            width=width,
            height=height,
            fps=fps,
            opener=partial(network_opener, text),
        )
    if text.isdigit():
        return CameraSource(int(text), width=width, height=height, fps=fps)
    if text.startswith("/dev/"):
        return CameraSource(text, width=width, height=height, fps=fps)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, fps=fps if realtime else None, loop=loop)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise SourceError(
                f"camera source {path.name} is a single image; give the folder that holds it"
            )
        return VideoFileSource(path, realtime=realtime, loop=loop)
    raise SourceError(f"camera source {spec!r} does not exist (not a camera, file or folder)")
