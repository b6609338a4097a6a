"""``detector = "fusion"``: the face detector and the SSDLite body detector
behind the pipeline's detector and tracker interfaces (thin adapters; the
rules are in the pure :mod:`face.footfall.fusion`).

* :class:`FusionDetector` runs the face detector on every frame and the body
  detector on every ``body_every``-th frame, and returns one head box per
  person (:func:`face.footfall.fusion.fuse`) with the index of its face
  detection, or -1 when the body alone saw the person (the back of a head).
  It is a :class:`FaceBoxDetector`, so faces that show are embedded for
  unique visitors exactly as with the face detector alone.
* :class:`MotionDetector` finds moving people as foreground blobs (OpenCV's
  MOG2 background model on a 320x240 colour copy, about 3 ms a frame): a
  fixed entrance camera sees the back of a head move even where neither
  detector fires. Colour, not grey: grey hair on a mauve wall, or a grey suit
  on grey bricks, has the wall's brightness and breaks a grey mask into
  pieces (a head missing above its shoulders); in colour the silhouette stays
  whole. The head and shoulders of every face that shows are taken out of the
  mask (``EXCLUDE_*``), so a person facing the camera is not also a face-less
  blob beside or under their face. Blobs count as body boxes in the fusion;
  a body box of the SSDLite detector that overlaps a blob replaces it. A
  blob whose top has two peaks (two heads side by side) is split between
  them (:func:`face.footfall.fusion.split_columns`).
* :class:`FusedTrackerAdapter` tracks those head boxes with
  :class:`face.footfall.fusion.FusedTracker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from face.footfall.detectors import Detections, FaceBoxDetector
from face.footfall.fusion import (
    Box,
    Candidate,
    FusedTracker,
    FusionParams,
    TrackerParams,
    fuse,
    head_of_blob,
    split_columns,
)
from face.footfall.tracking import TrackedBox

if TYPE_CHECKING:
    from face.footfall.person_model import PersonSsdDetector
    from face.pipeline import FaceEngine


# the head and shoulders of a face that shows, in its widths: taken out of the
# motion mask (MotionDetector.detect's ``exclude``) so that its blob is not a
# second, face-less person
EXCLUDE_SIDE = 1.3
EXCLUDE_ABOVE = 0.6
EXCLUDE_BELOW = 2.0


def _boxes(d: Detections) -> list[Box]:
    return [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in d.boxes]


class MotionDetector:
    """Moving foreground blobs as person boxes (see the module doc)."""

    name = "motion"
    gives_faces = False

    def __init__(
        self,
        *,
        min_area: float = 0.004,
        history: int = 300,
        width: int = 320,
        colour: bool = True,
    ) -> None:
        self.bg = cv2.createBackgroundSubtractorMOG2(
            history=history, varThreshold=25.0, detectShadows=False
        )
        self.min_area = min_area  # fraction of the frame
        self.width = width
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.colour = colour

    def detect(self, frame_bgr: np.ndarray, exclude: Sequence[Box] = ()) -> Detections:
        h, w = frame_bgr.shape[:2]
        s = self.width / w
        small = cv2.resize(frame_bgr, (self.width, round(h * s)), interpolation=cv2.INTER_AREA)
        if self.colour:
            img = cv2.GaussianBlur(small, (5, 5), 0)
        else:
            img = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        # the picture brightened or darkened as a whole (a light, a cloud) is no motion
        mean = float(img.mean())
        if mean > 1.0:
            img = cv2.convertScaleAbs(img, alpha=110.0 / mean)
        fg = self.bg.apply(img)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.kernel)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self.kernel, iterations=2)
        for fx1, fy1, fx2, fy2 in exclude:
            fw = fx2 - fx1
            cx = (fx1 + fx2) / 2
            x1, x2 = round((cx - EXCLUDE_SIDE * fw) * s), round((cx + EXCLUDE_SIDE * fw) * s)
            y1, y2 = round((fy1 - EXCLUDE_ABOVE * fw) * s), round((fy2 + EXCLUDE_BELOW * fw) * s)
            fg[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = 0
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        area_min = self.min_area * fg.shape[0] * fg.shape[1]
        boxes, scores, heads = [], [], []
        for k in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[k])
            if area < area_min or area > 0.6 * fg.size:
                continue  # specks, or the whole picture changing (the light)
            mine = labels[y : y + bh, x : x + bw] == k
            has = mine.any(axis=0)
            top = np.where(has, mine.argmax(axis=0), bh).astype(float).tolist()
            for a, b in split_columns(top):  # people side by side: one box each
                part = mine[:, a:b]
                rows = np.nonzero(part.any(axis=1))[0]
                if len(rows) == 0:
                    continue
                y0, y1 = y + int(rows[0]), y + int(rows[-1]) + 1
                boxes.append([(x + a) / s, y0 / s, (x + b) / s, y1 / s])
                scores.append(min(0.9, 0.4 + float(part.sum()) / ((b - a) * (y1 - y0))))
                if y1 < fg.shape[0] - 1:  # the whole body is in the picture: predict its head
                    heads.append([np.nan] * 4)
                    continue
                body = part[int(rows[0]) :]
                filled = body.any(axis=1)
                first = np.where(filled, body.argmax(axis=1), 0)
                last = np.where(filled, body.shape[1] - body[:, ::-1].argmax(axis=1), 0)
                hx1, hy1, hx2, hy2 = head_of_blob(
                    list(zip(first.tolist(), last.tolist(), strict=True))
                )
                ox = x + a
                heads.append([(ox + hx1) / s, (y0 + hy1) / s, (ox + hx2) / s, (y0 + hy2) / s])
        if not boxes:
            return Detections.empty()
        return Detections(
            np.array(boxes, np.float32),
            np.array(scores, np.float32),
            heads=np.array(heads, np.float32),
        )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def merge_bodies(ssd: Detections, blobs: Detections, iou: float = 0.3) -> Detections:
    """SSDLite boxes plus the blobs that overlap none of them (with the heads
    measured on those blobs; NaN for the SSDLite boxes, whose heads are
    predicted)."""
    keep = [i for i, b in enumerate(blobs.boxes) if all(_iou(b, o) < iou for o in ssd.boxes)]
    if not keep:
        return ssd
    n = int(ssd.boxes.reshape(-1, 4).shape[0])
    blob_heads = blobs.heads[keep] if blobs.heads is not None else np.full((len(keep), 4), np.nan)
    return Detections(
        np.concatenate([ssd.boxes.reshape(-1, 4), blobs.boxes[keep]]).astype(np.float32),
        np.concatenate([ssd.scores.reshape(-1), blobs.scores[keep]]).astype(np.float32),
        heads=np.concatenate([np.full((n, 4), np.nan), blob_heads]).astype(np.float32),
    )


def _heads(d: Detections) -> list[Box | None] | None:
    if d.heads is None:
        return None
    return [
        None
        if np.isnan(h).any() or h[2] <= h[0]
        else (float(h[0]), float(h[1]), float(h[2]), float(h[3]))
        for h in d.heads
    ]


class FusionDetector(FaceBoxDetector):
    name = "fusion"
    gives_faces = True

    def __init__(
        self,
        engine: FaceEngine,
        person: PersonSsdDetector,
        params: FusionParams,
        *,
        body_every: int = 3,
        score_threshold: float | None = None,
        min_face_px: float = 12.0,
        motion: MotionDetector | None = None,
    ) -> None:
        super().__init__(engine, score_threshold, min_face_px)
        self.person = person
        self.motion = motion
        self.params = params
        self.body_every = max(1, int(body_every))
        self._n = 0

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        faces = super().detect(frame_bgr)
        body_ran = self._n % self.body_every == 0
        self._n += 1
        bodies = self.person.detect(frame_bgr) if body_ran else Detections.empty()
        if self.motion is not None:
            bodies = merge_bodies(bodies, self.motion.detect(frame_bgr, _boxes(faces)))
            body_ran = True
        cands = fuse(
            _boxes(faces),
            faces.scores.tolist(),
            _boxes(bodies),
            bodies.scores.tolist(),
            self.params,
            _heads(bodies),
        )
        if not cands:
            return Detections(
                np.zeros((0, 4), np.float32),
                np.zeros((0,), np.float32),
                None,
                np.zeros((0,), np.int64),
                body_ran,
            )
        kps = None
        if faces.kps is not None:
            kps = np.zeros((len(cands), 5, 2), np.float32)
            for k, c in enumerate(cands):
                if c.face >= 0:
                    kps[k] = faces.kps[c.face]
        return Detections(
            np.array([c.box for c in cands], np.float32),
            np.array([c.score for c in cands], np.float32),
            kps,
            np.array([c.face for c in cands], np.int64),
            body_ran,
        )


class FusedTrackerAdapter:
    """:class:`FusedTracker` behind the pipeline's ``Tracker`` protocol."""

    def __init__(self, params: TrackerParams) -> None:
        self.core = FusedTracker(params)

    def reset(self) -> None:
        self.core.reset()

    def update(self, detections: Detections, ts: float) -> list[TrackedBox]:
        fi = detections.face_index
        cands = [
            Candidate(
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                float(detections.scores[i]),
                int(fi[i]) if fi is not None else i,
                i if fi is not None and int(fi[i]) < 0 else -1,
            )
            for i, b in enumerate(detections.boxes)
        ]
        return [
            TrackedBox(
                m.track_id,
                np.array(m.box, np.float32),
                float(cands[m.candidate].score),
                m.candidate,
                m.first,
            )
            for m in self.core.update(cands, ts, detections.body_ran)
        ]
