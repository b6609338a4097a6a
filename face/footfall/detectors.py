"""Detectors behind one interface: boxes and scores for every frame.

* :class:`FaceBoxDetector` (default): the face engine's one pass over a frame
  (:meth:`face.pipeline.FaceEngine.observe` with ``analyse=False``: every box,
  no landmark model), so a frame costs one detector run; landmarks and the
  embedding of a box from that pass are computed only for the few frames
  where footfall needs an identity (:meth:`FaceBoxDetector.face_for`).
* :class:`face.footfall.person_model.PersonSsdDetector`: a body detector for
  overhead mounting (SSDLite-MobileNetV2 through OpenCV's DNN module). It
  gives no faces, so unique visitors and attendance are not available with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from face.pipeline import DetectedFace, FaceEngine


@dataclass(frozen=True, slots=True)
class Detections:
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 pixels
    scores: np.ndarray  # (N,) float32
    kps: np.ndarray | None = None  # (N, 5, 2) when the detector gives landmarks
    # Fused detections (face/footfall/fused.py): per box, the index of its face
    # detection or -1 when a body alone saw the person; None = every box is a face.
    face_index: np.ndarray | None = None
    body_ran: bool = True  # False on frames where the fused body detector did not run
    # Body boxes of moving blobs (face/footfall/fused.py): per box, the head
    # measured on the blob's top (x1, y1, x2, y2), or NaN where none was measured.
    heads: np.ndarray | None = None

    def is_face(self, i: int) -> bool:
        return self.face_index is None or int(self.face_index[i]) >= 0

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
        obs = self.engine.observe(
            frame_bgr, analyse=False, max_faces=None, score_threshold=self.score_threshold
        )
        found = [f for f in obs.faces if f.width >= self.min_face_px]
        if not found:
            return Detections.empty()
        kps = [f.kps for f in found if f.kps is not None]
        return Detections(
            np.stack([f.box for f in found]).astype(np.float32),
            np.array([f.score for f in found], np.float32),
            np.stack(kps).astype(np.float32) if len(kps) == len(found) else None,
        )

    def face_for(
        self,
        frame_bgr: np.ndarray,
        box: np.ndarray,
        score: float,
        kps: np.ndarray | None = None,
        gray: np.ndarray | None = None,
    ) -> DetectedFace:
        """A :class:`DetectedFace` with 5 landmarks for one box of
        :meth:`detect` (the engine runs the 68-point model when the detector
        gives no landmarks; ``gray`` is the frame in grey, converted once)."""
        from face.pipeline import FaceBox

        found = FaceBox(
            box=np.asarray(box, np.float32),
            score=float(score),
            kps=None if kps is None else np.asarray(kps, np.float32),
        )
        return self.engine.describe(frame_bgr, found, gray=gray)

    def embed(self, frame_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        return self.engine.embed(frame_bgr, face)
