"""Pictures for a technician: the annotated ``footfall eval`` clip and the
``footfall snapshot`` still with the counting line on it.

* :func:`write_annotated` re-reads an evaluated clip and writes it again with
  the detection boxes, track ids, the counting line with its band and inside
  side, the running entry/exit counts, and a marker on every frame where a
  true crossing was missed or an extra one was counted (held for a second so
  it can be seen when playing).
* :func:`snapshot` takes one frame from a camera source and draws the
  configured line and its inside side and the frame size on it.

Privacy: these pictures show people. They are written only to the path the
technician gives, nowhere else; nothing here logs or keeps a frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face.footfall.counting import CountingConfigError, CountingLine, LineSpec, validate_line
from face.footfall.detectors import Detections
from face.footfall.tracking import TrackedBox, Tracker
from terminal.core.errors import SourceError, TerminalError

LINE_COLOUR = (0, 220, 255)  # yellow (BGR)
BAND_COLOUR = (0, 150, 190)
DET_COLOUR = (160, 160, 160)
TRACK_COLOUR = (60, 220, 60)
MISSED_COLOUR = (0, 0, 255)
EXTRA_COLOUR = (0, 140, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX

VIDEO_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


class AnnotateError(TerminalError):
    code = "footfall_annotate_failed"


@dataclass
class FrameBoxes:
    """What the detector and the tracker saw on one analysed frame."""

    detections: np.ndarray  # (N, 4) float32
    tracks: list[tuple[int, np.ndarray]] = field(default_factory=list)


class RecordingTracker:
    """A tracker that remembers the detections it was given and the tracks it
    returned on its last update. It only delegates, so counting is unchanged."""

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self.last: FrameBoxes | None = None

    def update(self, detections: Detections, ts: float) -> list[TrackedBox]:
        out = self.inner.update(detections, ts)
        self.last = FrameBoxes(
            np.array(detections.boxes, np.float32).reshape(-1, 4),
            [(t.track_id, np.array(t.box, np.float32)) for t in out],
        )
        return out

    def reset(self) -> None:
        self.inner.reset()
        self.last = None

    def take(self) -> FrameBoxes | None:
        last, self.last = self.last, None
        return last


@dataclass(frozen=True)
class Marker:
    """A text banner shown from ``frame`` for ``hold`` frames."""

    frame: int
    text: str
    colour: tuple[int, int, int]


# --------------------------------------------------------------------------- drawing


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)


def _label(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    colour: tuple[int, int, int],
    scale: float = 0.5,
) -> None:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = org
    h, w = img.shape[:2]
    x = min(max(0, x), max(0, w - tw - 4))
    y = min(max(th + 4, y), h - base - 2)
    cv2.rectangle(img, (x, y - th - 4), (x + tw + 4, y + base + 2), (0, 0, 0), -1)
    cv2.putText(img, text, (x + 2, y), FONT, scale, colour, 1, cv2.LINE_AA)


def draw_line(img: np.ndarray, line: CountingLine) -> None:
    """The counting line, its dead band and an arrow to the inside side."""
    nx, ny = line.normal()
    hy = line.hysteresis
    for sign in (1.0, -1.0):
        a = _pt(line.ax + sign * nx * hy, line.ay + sign * ny * hy)
        b = _pt(line.bx + sign * nx * hy, line.by + sign * ny * hy)
        cv2.line(img, a, b, BAND_COLOUR, 1, cv2.LINE_AA)
    cv2.line(img, _pt(line.ax, line.ay), _pt(line.bx, line.by), LINE_COLOUR, 2, cv2.LINE_AA)
    mx, my = (line.ax + line.bx) / 2, (line.ay + line.by) / 2
    reach = max(hy * 1.6, 24.0)
    tip = _pt(mx + nx * reach, my + ny * reach)
    cv2.arrowedLine(img, _pt(mx, my), tip, LINE_COLOUR, 2, cv2.LINE_AA, tipLength=0.3)
    _label(img, f"inside ({line.inside})", (tip[0] + 6, tip[1] + 6), LINE_COLOUR)


def draw_boxes(img: np.ndarray, boxes: FrameBoxes) -> None:
    for b in boxes.detections:
        cv2.rectangle(img, _pt(b[0], b[1]), _pt(b[2], b[3]), DET_COLOUR, 1)
    for tid, b in boxes.tracks:
        cv2.rectangle(img, _pt(b[0], b[1]), _pt(b[2], b[3]), TRACK_COLOUR, 2)
        _label(img, f"#{tid}", (round(b[0]), round(b[1]) - 4), TRACK_COLOUR)


def draw_counts(img: np.ndarray, frame_no: int, entries: int, exits: int) -> None:
    _label(img, f"frame {frame_no}  in {entries}  out {exits}", (4, 20), (255, 255, 255), 0.6)


def draw_markers(img: np.ndarray, markers: Sequence[Marker]) -> None:
    if not markers:
        return
    h, w = img.shape[:2]
    colour = markers[0].colour
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), colour, 6)
    for k, m in enumerate(markers):
        _label(img, m.text, (8, h - 12 - 22 * k), m.colour, 0.6)


# --------------------------------------------------------------------------- eval clip


def check_video_out(path: Path) -> str:
    """The FourCC for an annotated clip at ``path``; refuses a name or folder
    that cannot work before any frame is processed."""
    fourcc = VIDEO_FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise AnnotateError(
            f"annotated video {path.name}: use a .avi (MJPEG) or .mp4 (mp4v) file name"
        )
    if not path.parent.is_dir():
        raise AnnotateError(f"annotated video: folder {path.parent} does not exist")
    return fourcc


def _writer(path: Path, fps: float, size: tuple[int, int]) -> Any:
    fourcc = check_video_out(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        writer.release()
        raise AnnotateError(f"OpenCV cannot write {path.name} ({fourcc}) here")
    return writer


def eval_markers(
    crossings: Sequence[dict[str, Any]] | None, extras: Sequence[dict[str, Any]] | None
) -> list[Marker]:
    """A missed true crossing at its true frame, an extra count at its frame."""
    out: list[Marker] = []
    for c in crossings or ():
        if c["status"] == "missed":
            out.append(
                Marker(c["frame"], f"MISSED {c['direction']} (true, f{c['frame']})", MISSED_COLOUR)
            )
    for x in extras or ():
        out.append(
            Marker(
                x["frame"],
                f"EXTRA {x['direction']} #{x['track_id']} (f{x['frame']})",
                EXTRA_COLOUR,
            )
        )
    return sorted(out, key=lambda m: m.frame)


def write_annotated(
    video: Path,
    out: Path,
    *,
    fps: float,
    line: CountingLine,
    boxes: dict[int, FrameBoxes],
    counted: Sequence[tuple[int, str]],
    markers: Sequence[Marker],
    hold: int | None = None,
) -> int:
    """Write ``video`` again to ``out`` with the annotations; returns the frame count.

    ``boxes`` maps a frame number to what was seen there (frames the detector
    skipped show the last analysed frame's boxes); ``counted`` is (frame,
    direction) of every counted crossing."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        cap.release()
        raise AnnotateError(f"cannot open video file {video.name}")
    hold_n = max(1, round(fps)) if hold is None else max(1, hold)
    entries = exits = 0
    by_frame: dict[int, list[str]] = {}
    for f, d in counted:
        by_frame.setdefault(f, []).append(d)
    writer = None
    n = 0
    shown: FrameBoxes | None = None
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if writer is None:
                h, w = frame.shape[:2]
                writer = _writer(out, fps, (w, h))
            for d in by_frame.get(n, ()):
                if d == "in":
                    entries += 1
                else:
                    exits += 1
            shown = boxes.get(n, shown)
            img = frame.copy()
            draw_line(img, line)
            if shown is not None:
                draw_boxes(img, shown)
            draw_counts(img, n, entries, exits)
            draw_markers(img, [m for m in markers if m.frame <= n < m.frame + hold_n])
            writer.write(img)
            n += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if n == 0:
        raise AnnotateError(f"no decodable frames in {video.name}")
    return n


# --------------------------------------------------------------------------- snapshot


def grab_frame(
    spec: str, *, width: int = 640, height: int = 480, fps: float = 15.0, timeout: float = 5.0
) -> tuple[np.ndarray, str]:
    """One frame from the source named by ``spec`` (camera, stream or file) and
    the source's (credential-free) name. :class:`SourceError` when the spec is
    bad or no frame comes within ``timeout`` seconds."""
    from face.sources import open_source

    source = open_source(spec, width=width, height=height, fps=fps)
    # OpenCV's own warnings ("can't open camera by index") would bury the one error line
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    source.start()
    try:
        frame = source.wait_frame(0, timeout)
        status = source.status()
    finally:
        source.stop()
        cv2.utils.logging.setLogLevel(level)
    if frame is None:
        detail = f" ({status.message})" if status.message else ""
        raise SourceError(
            f"no picture from {source.name} within {timeout:g} s{detail}: "
            "check that the camera is plugged in and the source is right"
        )
    return frame.image, source.name


def snapshot(image: np.ndarray, line: LineSpec) -> tuple[np.ndarray, str | None]:
    """``image`` with the counting line, its inside side and the frame size
    drawn on it, and the reason the line cannot count in this frame (or None)."""
    h, w = image.shape[:2]
    img = image.copy()
    px = line.to_pixels(w, h)
    problem: str | None = None
    try:
        validate_line(px, w, h)
    except CountingConfigError as exc:
        problem = str(exc)
    try:
        draw_line(img, px)
    except CountingConfigError:  # no normal: draw the bare segment
        cv2.line(img, _pt(px.ax, px.ay), _pt(px.bx, px.by), LINE_COLOUR, 2, cv2.LINE_AA)
    _label(img, f"{w} x {h}", (4, 20), (255, 255, 255), 0.6)
    if problem:
        _label(img, "line problem: " + problem[:90], (4, h - 12), MISSED_COLOUR, 0.45)
    return img, problem


def write_png(path: Path, image: np.ndarray) -> None:
    if path.suffix.lower() != ".png":
        raise AnnotateError(f"snapshot {path.name}: the file name must end in .png")
    if not path.parent.is_dir():
        raise AnnotateError(f"snapshot: folder {path.parent} does not exist")
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise AnnotateError("OpenCV could not encode the snapshot as PNG")
    try:
        path.write_bytes(buf.tobytes())
    except OSError as exc:
        raise AnnotateError(f"cannot write {path}: {exc.strerror or exc}") from exc
