"""Multi-object tracking: Roboflow ``trackers`` ByteTrack behind a small adapter.

ByteTrack (``trackers.ByteTrackTracker``, Apache-2.0 in the 2.x releases) is
configured against the failure modes of entrance counting:

* ``minimum_consecutive_frames`` (default 3): a track gets an id only after
  it was matched on that many consecutive frames, so a one-frame false
  detection never becomes a person;
* ``lost_track_buffer`` scaled from ``lost_seconds`` at the real frame rate,
  so a person hidden behind a pillar for up to that long keeps the same id
  (and is not counted twice when they reappear);
* capture timestamps are passed in, so dropped camera frames widen the Kalman
  step instead of breaking association.

The adapter returns only tracks matched to a detection on this frame: counts
are made from observed positions, never from predicted ones.

``trackers`` declares ``opencv-python`` as a dependency, which must never be
installed next to ``opencv-python-headless`` (two OpenCV wheels break
``cv2``); it is installed with ``--no-deps`` and the import below needs only
``supervision``, ``scipy`` and ``numpy`` at run time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from face.footfall.detectors import Detections
from terminal.core.errors import TerminalError


class TrackerUnavailable(TerminalError):
    code = "footfall_tracker_unavailable"


@dataclass(frozen=True, slots=True)
class TrackedBox:
    track_id: int
    box: np.ndarray  # (4,) float32
    score: float
    det_index: int  # index into the frame's Detections
    # the head box the track was born with (fused tracker only), to tell
    # where the person came from (see LineCounter.observe's born_inside)
    first_box: tuple[float, float, float, float] | None = None


class Tracker(Protocol):
    def update(self, detections: Detections, ts: float) -> list[TrackedBox]: ...

    def reset(self) -> None: ...


class ByteTrackAdapter:
    """``trackers.ByteTrackTracker`` fed with our :class:`Detections`."""

    def __init__(
        self,
        fps: float = 15.0,
        *,
        min_consecutive_frames: int = 3,
        lost_seconds: float = 1.5,
        activation_threshold: float = 0.6,
        high_conf_threshold: float = 0.5,
        min_iou: float = 0.1,
    ) -> None:
        try:
            import supervision as sv
            from trackers import ByteTrackTracker
        except Exception as exc:
            raise TrackerUnavailable(
                "the footfall tracker needs the 'trackers' and 'supervision' packages "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        self._sv = sv
        self._cls = ByteTrackTracker
        self.params: dict[str, Any] = {
            "lost_track_buffer": max(1, round(lost_seconds * 30.0)),  # in 30-fps frames by API
            "frame_rate": float(fps),
            "track_activation_threshold": activation_threshold,
            "minimum_consecutive_frames": min_consecutive_frames,
            "minimum_iou_threshold": min_iou,
            "high_conf_det_threshold": high_conf_threshold,
        }
        self._tracker = self._cls(**self.params)
        self._last_ts: float | None = None

    def reset(self) -> None:
        self._tracker = self._cls(**self.params)
        self._last_ts = None

    def update(self, detections: Detections, ts: float) -> list[TrackedBox]:
        if self._last_ts is not None and ts <= self._last_ts:
            ts = self._last_ts + 1e-3  # never feed a non-increasing time (the tracker skips it)
        self._last_ts = ts
        n = len(detections)
        det = self._sv.Detections(
            xyxy=detections.boxes.astype(np.float32).reshape(-1, 4),
            confidence=detections.scores.astype(np.float32).reshape(-1),
            class_id=np.zeros(n, dtype=int),
            data={"det_index": np.arange(n)},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self._tracker.update(det, timestamp=ts)
        ids = out.tracker_id if out.tracker_id is not None else np.zeros(0, int)
        idx = out.data.get("det_index", np.arange(len(out)))
        res: list[TrackedBox] = []
        for k in range(len(out)):
            tid = int(ids[k])
            if tid < 0:  # not yet confirmed (or an unmatched low-score box)
                continue
            conf = out.confidence[k] if out.confidence is not None else 1.0
            res.append(TrackedBox(tid, out.xyxy[k].astype(np.float32), float(conf), int(idx[k])))
        return res
