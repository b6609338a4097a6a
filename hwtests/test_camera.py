"""The payer camera delivers at least 15 frames/s at 640x480."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hwsupport import device_path, require_device


def _clip(path: Path, fps: float = 20.0, seconds: float = 3.0) -> Path:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for i in range(int(fps * seconds)):
        frame = np.full((480, 640, 3), (i * 7) % 255, np.uint8)
        cv2.putText(frame, f"{i}", (40, 240), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 5)
        writer.write(frame)
    writer.release()
    return path


def test_camera_delivers_15_fps_at_640x480(hw_mode, tmp_path, record_property) -> None:
    from face.sources import CameraSource, VideoFileSource

    if hw_mode == "real":
        dev = device_path("CARE_HW_CAMERA", "/dev/care-camera-pay")
        require_device(dev, "payer camera")
        source = CameraSource(str(dev), width=640, height=480, fps=30)
    else:
        source = VideoFileSource(_clip(tmp_path / "camera.avi"), realtime=True, loop=True)
    source.start()
    try:
        first = source.wait_frame(0, timeout=10)
        assert first is not None, f"no frame: {source.status()}"
        assert first.size == (640, 480), first.size
        t0, seq0 = time.monotonic(), first.seq
        time.sleep(2.0)
        last = source.latest()
        assert last is not None
        fps = (last.seq - seq0) / (time.monotonic() - t0)
        record_property("camera_fps", round(fps, 1))
        print(f"\ncamera: {fps:.1f} frames/s at 640x480 ({hw_mode})")
        assert fps >= 15.0
    finally:
        source.stop()


@pytest.mark.parametrize("spec", ["v4l2:/dev/care-camera-door"])
def test_entrance_camera_is_optional(hw_mode, spec) -> None:
    """The footfall camera is optional: absent is fine, present must open."""
    from face.sources import open_source

    path = Path(spec.split(":", 1)[1])
    if hw_mode == "sim" or not path.exists():
        src = open_source(spec)  # a missing device is not an error: it waits to be plugged in
        assert src.kind == "camera"
        return
    src = open_source(spec)
    src.start()
    try:
        assert src.wait_frame(0, timeout=10) is not None
    finally:
        src.stop()
