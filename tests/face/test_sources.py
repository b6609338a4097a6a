"""Frame sources on real files: image folders, video clips, and a camera
(a real ``cv2.VideoCapture`` on a real file) that disappears and comes back."""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg_peer import MjpegCamera
from pack_helpers import faces_dir

from face.sources import (
    CameraSource,
    Frame,
    FrameSource,
    ImageFolderSource,
    LatestSlot,
    SourceState,
    VideoFileSource,
    file_opener,
    open_source,
    redact_url,
)
from terminal.core.backoff import Backoff
from terminal.core.errors import SourceError


def face_images(limit: int = 6) -> list[Path]:
    files = sorted(
        p for p in faces_dir().iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    assert files, f"no test faces in {faces_dir()}"
    return files[:limit]


def make_clip(path: Path, n_frames: int = 12, fps: float = 20.0, size=(160, 120)) -> Path:
    """An MJPG/AVI clip of the shared test faces, each frame stamped with its index
    in the top-left pixel block so a test can tell frames apart."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    faces = face_images()
    for i in range(n_frames):
        img = cv2.imread(str(faces[i % len(faces)]))
        img = cv2.resize(img, size)
        img[:16, :16] = (i * 20) % 256
        writer.write(img)
    writer.release()
    assert path.stat().st_size > 0
    return path


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


@pytest.fixture
def no_thread_leak():
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t.ident not in before and t.name.startswith("care-") and t.is_alive()
    ]
    assert not leaked, f"reader threads left running: {leaked}"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i, src in enumerate(face_images(4)):
        shutil.copy(src, d / f"{i:02d}{src.suffix}")
    (d / "notes.txt").write_text("not an image")
    return d


def test_image_folder_delivers_all_images_in_sorted_order(folder: Path, no_thread_leak) -> None:
    # The source hands out the newest frame (a slow reader misses frames, by
    # design), so the test checks what any reader sees whatever the machine's
    # load: every frame it gets is the image of that position in sorted order,
    # in increasing order, the last image is always seen, and all four were
    # published.
    expected = [cv2.imread(str(p)) for p in sorted(folder.glob("0*"))]
    src = ImageFolderSource(folder, fps=50.0)
    assert isinstance(src, FrameSource)
    seen: list[Frame] = []
    with src:
        last = 0
        while last < len(expected):
            f = src.wait_frame(last, timeout=10.0)
            assert f is not None, "image folder stopped delivering"
            seen.append(f)
            last = f.seq
        assert wait_until(lambda: src.status().state is SourceState.ENDED)
    assert not src.running
    assert [f.seq for f in seen] == sorted({f.seq for f in seen})
    assert seen[-1].seq == 4
    for f in seen:
        assert np.array_equal(f.image, expected[f.seq - 1])
    assert all(b.ts >= a.ts for a, b in itertools.pairwise(seen))
    assert src.status().frames == 4


def test_image_folder_loops_and_skips_unreadable(folder: Path, no_thread_leak) -> None:
    (folder / "99_broken.jpg").write_bytes(b"this is not a jpeg")
    src = ImageFolderSource(folder, fps=None, loop=True)
    with src:
        assert wait_until(lambda: src.status().frames >= 12)
        assert src.status().state is SourceState.CONNECTED
    assert not src.running
    assert src.skipped == ["99_broken.jpg"]


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        ImageFolderSource(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path / "empty")


def test_video_file_plays_at_native_rate_then_ends(tmp_path: Path, no_thread_leak) -> None:
    clip = make_clip(tmp_path / "clip.avi", n_frames=10, fps=25.0)
    src = VideoFileSource(clip, realtime=True)
    seqs: list[int] = []
    with src:
        last = 0
        t0 = time.monotonic()
        while True:
            f = src.wait_frame(last, timeout=0.2)
            if f is None:
                if src.status().state is SourceState.ENDED:
                    f = src.latest()
                    if f is not None and f.seq > last:
                        seqs.append(f.seq)
                    break
                continue
            assert f.size == (160, 120)
            seqs.append(f.seq)
            last = f.seq
        elapsed = time.monotonic() - t0
        assert src.status().state is SourceState.ENDED
    assert src.fps == pytest.approx(25.0)
    assert seqs[-1] == 10 and seqs == sorted(seqs)
    # Paced playback of 10 frames at 25 fps spans at least 9 frame periods.
    assert elapsed >= 9 / 25.0 - 0.05


def test_video_file_fast_loop_keeps_going(tmp_path: Path, no_thread_leak) -> None:
    clip = make_clip(tmp_path / "clip.avi", n_frames=5)
    src = VideoFileSource(clip, realtime=False, loop=True)
    with src:
        assert wait_until(lambda: src.status().frames > 15)
        assert src.status().state is SourceState.CONNECTED
    assert not src.running


def test_latest_frame_wins_drops_stale_frames(tmp_path: Path, no_thread_leak) -> None:
    clip = make_clip(tmp_path / "clip.avi", n_frames=30)
    src = VideoFileSource(clip, realtime=False)
    with src:
        assert wait_until(lambda: src.status().state is SourceState.ENDED)
        # A consumer that looked only now gets the newest frame, not the oldest queued one.
        f = src.latest()
        assert f is not None and f.seq == 30
        status = src.status()
        assert status.frames == 30
        assert status.dropped == 29  # everything before the last was overwritten unseen
        # Asking again returns the same frame; waiting for a newer one times out.
        assert src.latest() is f
        assert src.wait_frame(f.seq, timeout=0.1) is None


def test_slow_consumer_never_blocks_reader() -> None:
    slot = LatestSlot()
    img = np.zeros((2, 2, 3), np.uint8)
    for i in range(1, 1001):
        slot.put(Frame(img, float(i), i))  # no consumer at all: put never waits
    f = slot.latest()
    assert f is not None and f.seq == 1000
    assert slot.dropped == 999
    slot.put(Frame(img, 1001.0, 1001))  # the previous one was read: not a drop
    assert slot.dropped == 999


def test_camera_disappears_and_comes_back(tmp_path: Path, no_thread_leak) -> None:
    """A real VideoCapture on a real file stands in for a USB camera: deleting
    the file is unplugging it, writing it again is plugging it back in."""
    original = make_clip(tmp_path / "keep.avi", n_frames=8)
    device = tmp_path / "camera.avi"
    shutil.copy(original, device)
    opened: list[bool] = []  # each time the reader tries the device: was it there?

    def plug() -> object:
        cap = file_opener(device)
        opened.append(cap is not None)
        return cap

    src = CameraSource(
        str(device),
        opener=plug,
        backoff_initial=0.02,
        backoff_max=0.1,
        max_read_failures=2,
    )
    states: list[SourceState] = []

    def watch(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        def check() -> bool:
            st = src.status().state
            if not states or states[-1] is not st:
                states.append(st)
            return pred()

        return wait_until(check, timeout, step=0.002)

    with src:
        assert watch(lambda: src.status().state is SourceState.CONNECTED)
        assert watch(lambda: src.status().frames >= 5)

        device.unlink()  # unplug
        assert watch(
            lambda: (
                src.status().state is SourceState.DISCONNECTED
                and "not available" in src.status().message
            )
        )
        frozen = src.status().frames
        tries = len(opened)
        # several backoff periods with the device gone: the reader tried it each time
        assert watch(lambda: len(opened) >= tries + 3)
        assert not any(opened[tries:]), "the unplugged device opened"
        gone = src.status()
        assert gone.state is SourceState.DISCONNECTED
        assert gone.frames == frozen, "no frames while the camera is away"
        reconnects_before = gone.reconnects

        shutil.copy(original, device)  # plug back in
        assert watch(lambda: src.status().state is SourceState.CONNECTED)
        assert watch(lambda: src.status().frames >= frozen + 5)
        f = src.latest()
        assert f is not None and f.seq > frozen and f.image.shape == (120, 160, 3)
        assert src.status().reconnects > reconnects_before
    assert not src.running
    assert SourceState.DISCONNECTED in states and states[-1] is not SourceState.ERROR
    i = states.index(SourceState.DISCONNECTED)
    assert SourceState.CONNECTED in states[i:]


@pytest.mark.parametrize(
    ("initial", "maximum", "expected"),
    [
        (0.5, 10.0, [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),
        (1.0, 1.0, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        (0.1, 0.3, [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]),
    ],
)
def test_backoff_schedule_is_exponential_and_capped(initial, maximum, expected) -> None:
    src = CameraSource(
        "/dev/video-missing", opener=lambda: None, backoff_initial=initial, backoff_max=maximum
    )
    assert [src.backoff.delay(n) for n in range(7)] == pytest.approx(expected)
    assert src.backoff.delay(10_000) == maximum  # no overflow after days of retrying


def test_camera_keeps_retrying_a_missing_device_and_stops_cleanly(no_thread_leak) -> None:
    attempts: list[float] = []

    def never() -> None:
        attempts.append(time.monotonic())
        return None

    src = CameraSource("/dev/video-missing", opener=never, backoff_initial=0.01, backoff_max=0.02)
    before = set(threading.enumerate())
    src.start()
    [reader] = [t for t in set(threading.enumerate()) - before if t.name.startswith("care-")]
    assert wait_until(lambda: len(attempts) >= 8)
    status = src.status()
    assert status.state is SourceState.DISCONNECTED
    assert "not available" in status.message and "retry" in status.message
    src.stop()
    # no retries after stop: the retry loop left by itself and its thread is gone,
    # so nothing is left that could call the opener again
    assert not src.running and not reader.is_alive()
    assert src.status().message == "stopped"


def test_camera_rejects_bad_backoff() -> None:
    with pytest.raises(SourceError, match="backoff"):
        CameraSource(0, backoff_initial=5.0, backoff_max=1.0)


def test_opener_that_raises_is_a_disconnect_not_a_crash(no_thread_leak) -> None:
    calls = 0

    def broken():
        nonlocal calls
        calls += 1
        raise OSError("device busy")

    src = CameraSource(0, opener=broken, backoff_initial=0.01, backoff_max=0.02)
    with src:
        assert wait_until(lambda: calls >= 3)
        assert src.status().state is SourceState.DISCONNECTED
    assert not src.running


@pytest.mark.parametrize(
    ("spec", "kind", "device"),
    [
        ("v4l2:0", CameraSource, 0),
        ("v4l2:2", CameraSource, 2),
        ("1", CameraSource, 1),
        ("/dev/video0", CameraSource, "/dev/video0"),
        ("v4l2:/dev/video3", CameraSource, "/dev/video3"),
    ],
)
def test_open_source_cameras(spec: str, kind: type, device: object) -> None:
    src = open_source(spec, width=320, height=240, fps=10)
    assert isinstance(src, kind)
    assert src.device == device
    assert not src.running  # not started by open_source


def test_open_source_files_and_folders(tmp_path: Path, folder: Path) -> None:
    clip = make_clip(tmp_path / "c.avi", n_frames=3)
    assert isinstance(open_source(str(clip)), VideoFileSource)
    assert isinstance(open_source(str(folder)), ImageFolderSource)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("v4l2:front", "expected v4l2"),
        ("/nonexistent/clip.avi", "does not exist"),
    ],
)
def test_open_source_rejects_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_open_source_single_image_explains(folder: Path) -> None:
    one = next(folder.glob("00*"))
    with pytest.raises(SourceError, match="folder"):
        open_source(str(one))


# --------------------------------------------------------------------------- network cameras


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:s3cret@192.168.1.20:554/stream1", "rtsp://***@192.168.1.20:554/stream1"),
        ("http://cam.local/video.mjpg", "http://cam.local/video.mjpg"),
        ("https://u:p@cam/x?token=1", "https://***@cam/x?token=1"),
    ],
)
def test_network_camera_spec_hides_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    src = open_source(url, width=320, height=240, fps=10)
    assert isinstance(src, CameraSource) and src.device == shown
    assert "s3cret" not in src.name and not src.running


def test_network_camera_streams_goes_away_and_comes_back(no_thread_leak) -> None:
    """An MJPEG-over-HTTP camera on loopback: frames arrive; when it goes away the
    source says so and reconnects to the camera that comes back on the same port."""
    shade = itertools.count()

    def frame(_now: float) -> np.ndarray:
        return np.full((240, 320, 3), next(shade) % 200 + 20, np.uint8)

    cam = MjpegCamera(frame, fps=20).start()
    src = open_source(cam.url, width=320, height=240, fps=20)
    assert isinstance(src, CameraSource)
    src.backoff = Backoff(initial=0.05, maximum=0.2)
    src.start()
    try:
        got = src.wait_frame(0, timeout=10)
        assert got is not None and got.image.shape == (240, 320, 3)
        assert src.status().state is SourceState.CONNECTED
        port = cam.port
        cam.stop()
        deadline = time.monotonic() + 20
        while src.status().state is SourceState.CONNECTED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert src.status().state is SourceState.DISCONNECTED, src.status()
        back = _mjpeg_on_port(frame, port)  # the same address the source keeps asking for
        try:
            seen = got.seq
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                nxt = src.wait_frame(seen, timeout=1)
                if nxt is not None and src.status().state is SourceState.CONNECTED:
                    break
            assert src.status().state is SourceState.CONNECTED
            assert src.status().reconnects >= 1
        finally:
            back.stop()
    finally:
        src.stop()


def _mjpeg_on_port(frame: Callable[[float], np.ndarray], port: int) -> MjpegCamera:
    deadline = time.monotonic() + 10
    while True:
        try:
            cam = MjpegCamera(frame, fps=20, port=port)
            return cam.start()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
