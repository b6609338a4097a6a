"""``care-terminal footfall eval VIDEO --truth FILE --json``: counted vs true.

The truth file is JSON (written by :mod:`face.footfall.synth`, or by hand for
a real recorded clip)::

    {"fps": 15, "line": {"x1": 0.03, "y1": 0.5, "x2": 0.97, "y2": 0.5, "inside": "below"},
     "entries": 7, "exits": 2, "unique_visitors": 6,
     "events": [{"frame": 34, "direction": "in", "identity": "p1"}, ...]}

Only ``entries`` and ``exits`` are required. With ``events`` the report also
matches counted crossings to true ones (same direction, within
``tolerance_s``), which separates misses from double counts that a plain total
would let cancel out. ``line`` (when present) overrides the configured line,
because the truth belongs to that line.

For a technician the report lists every true crossing (``crossings``:
matched or missed, with the frame and track it was counted at; a count is
dated to the frame its track went over the line, though it is made once the
person is clearly across or has left the picture), every count
that matches no true crossing (``extra_counts``: frame, direction, track id),
every count (``counts``) and the entries and exits apart (``directions``:
true, counted, error, and matched, missed, extra when there are events).
``video_out`` writes the same run as an annotated clip
(:mod:`face.footfall.annotate`) so a person can see why.

Every frame of the file is processed in order (no frames are dropped, unlike
the live source), with the capture time taken from the frame number and the
file's frame rate, so a run is deterministic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2

from face.footfall.annotate import (
    AnnotateError,
    FrameBoxes,
    RecordingTracker,
    check_video_out,
    eval_markers,
    write_annotated,
)
from face.footfall.config import FootfallConfig
from face.footfall.counting import CountingConfigError, LineSpec
from face.footfall.pipeline import FootfallEvent, FootfallPipeline
from terminal.core.clock import CHINA_TZ
from terminal.core.errors import TerminalError


class FootfallEvalError(TerminalError):
    code = "footfall_eval_invalid"


@dataclass(frozen=True)
class Truth:
    entries: int
    exits: int
    unique_visitors: int | None
    events: list[dict[str, Any]] | None
    fps: float | None
    line: LineSpec | None


def read_truth(path: str | Path) -> Truth:
    p = Path(path)
    if not p.is_file():
        raise FootfallEvalError(f"truth file not found: {p}")
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FootfallEvalError(f"truth file {p.name} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise FootfallEvalError(f"truth file {p.name} must hold a JSON object")
    try:
        entries, exits = int(doc["entries"]), int(doc["exits"])
    except (KeyError, TypeError, ValueError):
        raise FootfallEvalError(
            f"truth file {p.name} needs integer 'entries' and 'exits'"
        ) from None
    if entries < 0 or exits < 0:
        raise FootfallEvalError("truth entries and exits must not be negative")
    events = doc.get("events")
    if events is not None and (
        not isinstance(events, list)
        or not all(
            isinstance(e, dict)
            and e.get("direction") in ("in", "out")
            and isinstance(e.get("frame"), int)
            for e in events
        )
    ):
        raise FootfallEvalError("truth 'events' must be a list of {frame: int, direction: in|out}")
    line = None
    if isinstance(doc.get("line"), dict):
        try:
            line = LineSpec(**doc["line"])
        except TypeError as exc:
            raise FootfallEvalError(f"truth 'line' is not a valid line: {exc}") from exc
    uv = doc.get("unique_visitors")
    return Truth(
        entries,
        exits,
        int(uv) if isinstance(uv, int) else None,
        events,
        float(doc["fps"]) if isinstance(doc.get("fps"), int | float) else None,
        line,
    )


def match_pairs(
    counted: list[tuple[int, str]], truth: list[dict[str, Any]], tolerance_frames: int
) -> dict[int, int]:
    """Greedy one-to-one matching of (frame, direction) pairs, nearest first:
    truth index -> counted index for every matched pair."""
    pairs = []
    for i, (f, d) in enumerate(counted):
        for j, e in enumerate(truth):
            if e["direction"] == d and abs(int(e["frame"]) - f) <= tolerance_frames:
                pairs.append((abs(int(e["frame"]) - f), i, j))
    pairs.sort()
    used_c: set[int] = set()
    matched: dict[int, int] = {}
    for _, i, j in pairs:
        if i not in used_c and j not in matched:
            used_c.add(i)
            matched[j] = i
    return matched


def match_events(
    counted: list[tuple[int, str]], truth: list[dict[str, Any]], tolerance_frames: int
) -> dict[str, int]:
    """How many counted crossings match a true one, how many true ones were
    missed and how many counts match none (see :func:`match_pairs`)."""
    matched = match_pairs(counted, truth, tolerance_frames)
    return {
        "matched": len(matched),
        "missed": len(truth) - len(matched),
        "extra": len(counted) - len(matched),
    }


@dataclass(frozen=True)
class Counted:
    """One counted crossing of the run."""

    frame: int
    direction: str
    track_id: int


def crossing_diagnostics(
    counted: list[Counted], truth: list[dict[str, Any]], tolerance_frames: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every true crossing with matched/missed (and where it was counted), and
    every extra count (a counted crossing that matches no true one)."""
    pairs = [(c.frame, c.direction) for c in counted]
    matched = match_pairs(pairs, truth, tolerance_frames)
    crossings = []
    for j, e in enumerate(truth):
        c = counted[matched[j]] if j in matched else None
        crossings.append(
            {
                "frame": int(e["frame"]),
                "direction": e["direction"],
                "identity": e.get("identity"),
                "status": "matched" if c is not None else "missed",
                "matched_frame": c.frame if c is not None else None,
                "track_id": c.track_id if c is not None else None,
            }
        )
    used = set(matched.values())
    extras = [
        {"frame": c.frame, "direction": c.direction, "track_id": c.track_id}
        for i, c in enumerate(counted)
        if i not in used
    ]
    return crossings, extras


def direction_totals(
    counted: list[Counted],
    truth: Truth,
    crossings: list[dict[str, Any]] | None,
    extras: list[dict[str, Any]] | None,
) -> dict[str, dict[str, int | None]]:
    """Entries and exits apart: true, counted and the count error of each, and
    (with true events) matched, missed and extra counts."""
    out: dict[str, dict[str, int | None]] = {}
    for d, true_n in (("in", truth.entries), ("out", truth.exits)):
        n = sum(1 for c in counted if c.direction == d)
        row: dict[str, int | None] = {"true": true_n, "counted": n, "error": n - true_n}
        if crossings is not None and extras is not None:
            mine = [c for c in crossings if c["direction"] == d]
            row["matched"] = sum(1 for c in mine if c["status"] == "matched")
            row["missed"] = sum(1 for c in mine if c["status"] == "missed")
            row["extra"] = sum(1 for x in extras if x["direction"] == d)
        else:
            row["matched"] = row["missed"] = row["extra"] = None
        out["entries" if d == "in" else "exits"] = row
    return out


def _counted(events: list[FootfallEvent], t_start: datetime, fps: float) -> list[Counted]:
    """The counted crossings of a frame, at the frame they were dated to
    (a crossing counts once the track is clearly across or gone, and is dated
    when it went over the line)."""
    return [
        Counted(round((ev.at - t_start).total_seconds() * fps), ev.direction, ev.track_id)
        for ev in events
        if ev.counted
    ]


PipelineFactory = Callable[[FootfallConfig, tuple[int, int]], FootfallPipeline]


def evaluate_video(
    video: str | Path,
    truth_file: str | Path,
    make_pipeline: PipelineFactory,
    config: FootfallConfig | None = None,
    *,
    start: datetime | None = None,
    tolerance_s: float = 1.5,
    video_out: str | Path | None = None,
) -> dict[str, Any]:
    """Run a fresh pipeline over every frame of ``video`` and compare with the
    truth; with ``video_out``, also write the annotated clip there."""
    vpath = Path(video)
    if not vpath.is_file():
        raise FootfallEvalError(f"video file not found: {vpath}")
    truth = read_truth(truth_file)
    if video_out is not None:
        try:
            check_video_out(Path(video_out))
        except AnnotateError as exc:
            raise FootfallEvalError(str(exc)) from exc
    cfg = config or FootfallConfig()
    if truth.line is not None:
        cfg = replace(cfg, line=truth.line)
    cap = cv2.VideoCapture(str(vpath))
    if not cap.isOpened():
        cap.release()
        raise FootfallEvalError(f"cannot open video file {vpath.name}")
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 0 < fps < 1000:
            fps = truth.fps or cfg.fps
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cfg = replace(cfg, fps=fps)
        try:
            pipe = make_pipeline(cfg, (w, h))
        except CountingConfigError as exc:
            raise FootfallEvalError(f"counting line does not fit this video: {exc}") from exc
        recorder = None
        if video_out is not None:
            recorder = RecordingTracker(pipe.tracker)
            pipe.tracker = recorder
        boxes: dict[int, FrameBoxes] = {}
        t_start = start or datetime(2026, 1, 5, 9, 0, tzinfo=CHINA_TZ)
        counted: list[Counted] = []
        decode_ms = 0.0
        n = 0
        wall0 = time.perf_counter()
        cpu0 = time.process_time()
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            decode_ms += (time.perf_counter() - t0) * 1000
            if not ok or frame is None:
                break
            ts = n / fps
            report = pipe.process(frame, ts, t_start + timedelta(seconds=ts))
            counted += _counted(report.events, t_start, fps)
            if recorder is not None and (seen := recorder.take()) is not None:
                boxes[n] = seen
            n += 1
        if n:
            ts = (n - 1) / fps
            counted += _counted(pipe.drain(t_start + timedelta(seconds=ts)).events, t_start, fps)
            counted.sort(key=lambda c: c.frame)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    finally:
        cap.release()
    if n == 0:
        raise FootfallEvalError(f"no decodable frames in {vpath.name}")
    summary = pipe.summary()
    pipe.close()
    c_in = sum(1 for c in counted if c.direction == "in")
    c_out = len(counted) - c_in
    true_total = truth.entries + truth.exits
    abs_err = abs(c_in - truth.entries) + abs(c_out - truth.exits)
    doc: dict[str, Any] = {
        "video": vpath.name,
        "frames": n,
        "fps_video": round(fps, 3),
        "size": [w, h],
        "detector": cfg.detector,
        "line": cfg.line.as_dict(),
        "truth": {
            "entries": truth.entries,
            "exits": truth.exits,
            "unique_visitors": truth.unique_visitors,
        },
        "counted": {
            "entries": c_in,
            "exits": c_out,
            "unique_visitors": summary["unique_visitors"],
            "staff_crossings": summary["staff_crossings"],
        },
        "error": {
            "entries": c_in - truth.entries,
            "exits": c_out - truth.exits,
            "absolute": abs_err,
            "rate": round(abs_err / true_total, 4)
            if true_total
            else (0.0 if abs_err == 0 else None),
        },
        "processing": {
            "fps": round(n / wall, 2) if wall > 0 else None,
            "cpu_share": round(cpu / wall, 3) if wall > 0 else None,
            "decode_ms_per_frame": round(decode_ms / n, 3),
            "stage_ms_per_frame": summary["stage_ms_per_frame"],
            "embeddings_computed": summary["embeddings_computed"],
        },
    }
    crossings: list[dict[str, Any]] | None = None
    extras: list[dict[str, Any]] | None = None
    if truth.events is not None:
        tol = max(1, round(tolerance_s * fps))
        doc["events"] = match_events([(c.frame, c.direction) for c in counted], truth.events, tol)
        crossings, extras = crossing_diagnostics(counted, truth.events, tol)
        doc["events"]["tolerance_frames"] = tol
    doc["directions"] = direction_totals(counted, truth, crossings, extras)
    doc["crossings"] = crossings
    doc["extra_counts"] = extras
    doc["counts"] = [
        {"frame": c.frame, "direction": c.direction, "track_id": c.track_id} for c in counted
    ]
    if video_out is not None:
        out = Path(video_out)
        try:
            written = write_annotated(
                vpath,
                out,
                fps=fps,
                line=cfg.line.to_pixels(w, h),
                boxes=boxes,
                counted=[(c.frame, c.direction) for c in counted],
                markers=eval_markers(crossings, extras),
            )
        except AnnotateError as exc:
            raise FootfallEvalError(str(exc)) from exc
        doc["video_out"] = {"path": str(out), "frames": written}
    return doc


def run_cli_eval(
    video: str | Path,
    truth_file: str | Path,
    *,
    pack_dir: Path,
    face_settings: Any,
    config: FootfallConfig | None = None,
    video_out: str | Path | None = None,
) -> dict[str, Any]:
    """What ``care-terminal footfall eval`` prints: loads the detector named by
    the config (face pack or person pack) and evaluates."""
    from face.footfall.service import make_pipeline_factory

    cfg = config or FootfallConfig()
    factory = make_pipeline_factory(cfg, pack_dir=pack_dir, face_settings=face_settings)
    return evaluate_video(video, truth_file, factory, cfg, video_out=video_out)
