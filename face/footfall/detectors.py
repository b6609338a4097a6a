"""Detectors behind one interface: boxes and scores for every frame.

* :class:`FaceBoxDetector` (default): the face pack's fast detector, called
  directly (``engine.detector``) so a frame costs one detector run and no
  landmark model; landmarks and the embedding are computed only for the few
  frames where footfall needs an identity (:meth:`FaceBoxDetector.face_for`).
* :class:`face.footfall.person_model.PersonSsdDetector`: a body detector for
  overhead mounting (SSDLite-MobileNetV2 through OpenCV's DNN module). It
  gives no faces, so unique visitors and attendance are not available with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import cv2
import numpy as np

if TYPE_CHECKING:
    from face.pipeline import DetectedFace, FaceEngine


@dataclass(frozen=True, slots=True)
class Detections:
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 pixels
    scores: np.ndarray  # (N,) float32
    kps: np.ndarray | None = None  # (N, 5, 2) when the detector gives landmarks

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), None)


@runtime_checkable
class Detector(Protocol):
    name: str
    gives_faces: bool

    def detect(self, frame_bgr: np.ndarray) -> Detections: ...


class FaceBoxDetector:
    """The face engine's detector on every frame; landmarks only on demand."""

    name = "face"
    gives_faces = True

    def __init__(
        self, engine: FaceEngine, score_threshold: float | None = None, min_face_px: float = 20.0
    ) -> None:
        self.engine = engine
        self.score_threshold = score_threshold
        self.min_face_px = float(min_face_px)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        boxes, scores, kps = self.engine.detector.detect(frame_bgr, self.score_threshold)
        if len(boxes) == 0:
            return Detections.empty()
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        keep = (boxes[:, 2] - boxes[:, 0]) >= self.min_face_px
        return Detections(
            boxes[keep],
            np.asarray(scores, np.float32).reshape(-1)[keep],
            None if kps is None else np.asarray(kps, np.float32)[keep],
        )

    def face_for(
        self,
        frame_bgr: np.ndarray,
        box: np.ndarray,
        score: float,
        kps: np.ndarray | None = None,
        gray: np.ndarray | None = None,
    ) -> DetectedFace:
        """A :class:`DetectedFace` with 5 landmarks for one box (runs the
        68-point model when the detector gives no landmarks)."""
        from face.align import landmarks68_to_5
        from face.pipeline import DetectedFace

        box = np.asarray(box, np.float32)
        if kps is not None:
            return DetectedFace(box=box, score=float(score), kps=np.asarray(kps, np.float32))
        lm = self.engine.landmarker
        if lm is None:  # pragma: no cover - FaceEngine refuses such a pack
            raise RuntimeError("the face pack has no landmark model")
        if gray is None:
            gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        lm68 = lm.predict(gray, box)
        return DetectedFace(
            box=box, score=float(score), kps=landmarks68_to_5(lm68), landmarks68=lm68
        )

    def embed(self, frame_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        return self.engine.embed(frame_bgr, face)
