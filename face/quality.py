"""Quality gate: is this face good enough to recognise, and if not, what should
the kiosk tell the senior?

Pure functions of numbers (landmarks, box size, crop statistics) plus one
helper, :func:`crop_stats`, that measures the aligned crop. Thresholds come
from :class:`terminal.config.settings.FaceSettings`.

Checks, in the order a senior can act on them:

1. several faces of similar size -> "only one person please"
2. face cut by the frame edge -> "please move to the middle"
3. face too small (box width < ``min_face_px``) -> "please come closer"
4. pose: |yaw| > ``max_yaw_deg``, |pitch| > ``max_pitch_deg`` or
   |roll| > ``max_roll_deg`` -> "please face the screen"
5. brightness of the aligned face outside [``min_brightness``, ``max_brightness``]
   -> "too dark" / "too bright"
6. sharpness (variance of the Laplacian of the aligned grey face) below
   ``min_sharpness`` -> "hold still"

Pose from 5 points is an approximation, good enough for a gate, not a
measurement: a weak-perspective fit of a generic 3D face (the ArcFace template
with the nose tip 0.55 eye distances in front of the eye plane). Only the nose
carries depth, so yaw and pitch rest on where the nose tip sits; expressions
(an open mouth) move pitch. Signs: yaw > 0 when the nose points to the image
right, pitch > 0 when the head tilts down, roll > 0 clockwise in the image.
Checked on the shared faces and insightface's sample group photo against the
npm package's own head-pose network (not part of the pack): correlation 0.96
for yaw, 0.71 for pitch, 0.82 for roll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from face.align import ARCFACE_DST
from terminal.core.errors import TerminalError

if TYPE_CHECKING:
    from terminal.config.settings import FaceSettings

Reason = Literal[
    "ok",
    "multiple_faces",
    "face_cut",
    "too_small",
    "pose",
    "too_dark",
    "too_bright",
    "blurry",
]

# reason -> (translation key, English, Simplified Chinese) for the kiosk.
MESSAGES: dict[str, tuple[str, str, str]] = {
    "ok": ("face.quality.ok", "Hold on, recognising", "正在识别，请稍候"),
    "multiple_faces": ("face.quality.multiple_faces", "Only one person please", "请一次一人"),
    "face_cut": (
        "face.quality.face_cut",
        "Please move to the middle of the screen",
        "请站到屏幕中间",
    ),
    "too_small": ("face.quality.too_small", "Please come closer", "请靠近一点"),
    "pose": ("face.quality.pose", "Please face the screen", "请正对屏幕"),
    "too_dark": ("face.quality.too_dark", "Too dark", "光线太暗"),
    "too_bright": ("face.quality.too_bright", "Too bright", "光线太强"),
    "blurry": ("face.quality.blurry", "Please hold still", "请保持不动"),
}

NOSE_DEPTH = 0.55  # nose tip depth in front of the eye plane, in eye distances

# Generic 3D face in eye-distance units, from the frontal ArcFace template: eye
# centres and mouth corners in the z = 0 plane, the nose tip NOSE_DEPTH in front
# (x right, y down, z towards the camera).
_T = ARCFACE_DST.astype(np.float64)
_E = float(_T[1, 0] - _T[0, 0])
_MID = (_T[0] + _T[1]) / 2.0
FACE_MODEL_3D = np.array(
    [
        [(_T[0, 0] - _MID[0]) / _E, 0.0, 0.0],
        [(_T[1, 0] - _MID[0]) / _E, 0.0, 0.0],
        [(_T[2, 0] - _MID[0]) / _E, (_T[2, 1] - _MID[1]) / _E, NOSE_DEPTH],
        [(_T[3, 0] - _MID[0]) / _E, (_T[3, 1] - _MID[1]) / _E, 0.0],
        [(_T[4, 0] - _MID[0]) / _E, (_T[4, 1] - _MID[1]) / _E, 0.0],
    ]
)

# Region of the 112x112 aligned crop that is face (brows to chin, cheek to cheek).
_FACE_ROWS = slice(16, 104)
_FACE_COLS = slice(16, 96)


class PoorQualityError(TerminalError):
    """The face is there but not usable; ``verdict`` says why (kiosk text)."""

    code = "face_quality"

    def __init__(self, verdict: QualityVerdict) -> None:
        super().__init__(f"face not usable: {verdict.text_en.lower()} ({verdict.reason})")
        self.verdict = verdict


@dataclass(frozen=True, slots=True)
class Pose:
    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True, slots=True)
class CropStats:
    sharpness: float  # variance of the Laplacian on the aligned grey face
    brightness: float  # mean grey level of the aligned face, 0..255


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    ok: bool
    reason: Reason
    key: str
    text_en: str
    text_zh: str
    metrics: dict[str, float] = field(default_factory=dict)

    def text(self, language: str = "zh_CN") -> str:
        return self.text_zh if language.startswith("zh") else self.text_en


def verdict(reason: Reason, metrics: dict[str, float] | None = None) -> QualityVerdict:
    key, en, zh = MESSAGES[reason]
    return QualityVerdict(reason == "ok", reason, key, en, zh, dict(metrics or {}))


def estimate_pose(kps: np.ndarray) -> Pose:
    """Approximate yaw, pitch and roll in degrees from the 5 ArcFace landmarks.

    Weak-perspective fit of a generic 3D face (:data:`FACE_MODEL_3D`): the
    least-squares 2x3 projection of the model onto the points, made orthonormal,
    completed to a rotation and read as R = Rz(roll) Rx(pitch) Ry(yaw).
    """
    k = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    x = k - k.mean(axis=0)
    model = FACE_MODEL_3D - FACE_MODEL_3D.mean(axis=0)
    m, *_ = np.linalg.lstsq(model, x, rcond=None)  # (3, 2): x = model @ m
    u, s, vt = np.linalg.svd(m.T, full_matrices=False)  # m.T = s * R[:2]
    if s[0] <= 1e-9:
        return Pose(yaw=90.0, pitch=0.0, roll=0.0)
    r12 = u @ vt
    r3 = np.cross(r12[0], r12[1])
    yaw = math.degrees(math.atan2(-r3[0], r3[2]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, -r3[1]))))
    roll = math.degrees(math.atan2(-r12[0, 1], r12[1, 1]))
    if r3[2] < 0:  # facing away from the camera: a profile or swapped points
        yaw = math.copysign(90.0, yaw)
    return Pose(yaw=yaw, pitch=pitch, roll=roll)


def crop_stats(aligned_bgr: np.ndarray) -> CropStats:
    """Sharpness and brightness of the face part of a 112x112 aligned crop."""
    gray = aligned_bgr if aligned_bgr.ndim == 2 else cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    scale = gray.shape[0] / 112.0
    rows = slice(int(_FACE_ROWS.start * scale), int(_FACE_ROWS.stop * scale))
    cols = slice(int(_FACE_COLS.start * scale), int(_FACE_COLS.stop * scale))
    face = gray[rows, cols]
    lap = cv2.Laplacian(face, cv2.CV_64F)
    return CropStats(sharpness=float(lap.var()), brightness=float(face.mean()))


def assess(
    *,
    face_px: float,
    pose: Pose,
    stats: CropStats,
    settings: FaceSettings,
    largest_other_px: float = 0.0,
    cut_off: bool = False,
) -> QualityVerdict:
    """The quality verdict for one face. ``face_px`` is the width of the face
    box; ``largest_other_px`` the width of the next largest face in the frame
    (0 if none); ``cut_off`` whether the face touches the frame edge."""
    metrics = {
        "face_px": round(float(face_px), 1),
        "yaw": round(pose.yaw, 1),
        "pitch": round(pose.pitch, 1),
        "roll": round(pose.roll, 1),
        "sharpness": round(stats.sharpness, 1),
        "brightness": round(stats.brightness, 1),
    }
    if largest_other_px > 0 and largest_other_px >= settings.multi_face_ratio * face_px:
        return verdict("multiple_faces", metrics)
    if cut_off:
        return verdict("face_cut", metrics)
    if face_px < settings.min_face_px:
        return verdict("too_small", metrics)
    if (
        abs(pose.yaw) > settings.max_yaw_deg
        or abs(pose.pitch) > settings.max_pitch_deg
        or abs(pose.roll) > settings.max_roll_deg
    ):
        return verdict("pose", metrics)
    if stats.brightness < settings.min_brightness:
        return verdict("too_dark", metrics)
    if stats.brightness > settings.max_brightness:
        return verdict("too_bright", metrics)
    if stats.sharpness < settings.min_sharpness:
        return verdict("blurry", metrics)
    return verdict("ok", metrics)
