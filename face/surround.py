"""The still-surround check's pixel work: a grey thumbnail of each challenge
frame, corners in the band beside the face at the prompt, and their motion
since (pyramidal Lucas-Kanade). An adapter around OpenCV; the judge that uses
the number (``face.challenge.TurnChallenge``) stays pure and takes this as its
``SurroundMeter``. Why and how the band and thresholds were chosen:
``docs/liveness.md`` ("Late night", "After midnight")."""

from __future__ import annotations

import cv2
import numpy as np

from face.challenge import Box

# The grey thumbnail a challenge frame carries for the surround check: this
# wide (120 high at 4:3), about 0.3 ms to make from a 640x480 frame.
THUMB_WIDTH = 160


def surround_thumbnail(image: np.ndarray) -> tuple[np.ndarray, float]:
    """A grey ``THUMB_WIDTH``-wide copy of a frame (BGR or grey) and its scale
    (thumbnail pixels per frame pixel)."""
    img = np.asarray(image)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    h, w = gray.shape[:2]
    scale = THUMB_WIDTH / float(w)
    size = (THUMB_WIDTH, max(1, round(h * scale)))
    small: np.ndarray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return small, scale


def _outside(points: np.ndarray, box: Box, scale: float, factor: float) -> np.ndarray:
    """Which ``points`` (thumbnail pixels) lie outside ``box`` (frame pixels)
    grown ``factor`` times about its centre."""
    cx, cy = (box[0] + box[2]) / 2 * scale, (box[1] + box[3]) / 2 * scale
    hw, hh = (box[2] - box[0]) / 2 * scale * factor, (box[3] - box[1]) / 2 * scale * factor
    inside = (np.abs(points[:, 0] - cx) < hw) & (np.abs(points[:, 1] - cy) < hh)
    out: np.ndarray = ~inside
    return out


# The band the surround check tracks: beside the face, from SURROUND_INNER / 2
# to SURROUND_OUTER / 2 face-box widths from its centre, at the face's own
# height (the box grown SURROUND_ROWS of its height up and down). Beside a
# senior's face is the room; above it is their hair and below it their neck
# and clothes, which move with them, so those are left out.
SURROUND_INNER = 1.6
SURROUND_OUTER = 3.0
SURROUND_ROWS = 0.1
SURROUND_MIN_POINTS = 6
# A corner must be this strong (cv2.cornerMinEigenVal, 3x3 block) to be
# tracked: camera noise on a plain backdrop makes corners of about 3e-5 that
# track as still whatever the sheet does; a room's texture starts near 1e-4
SURROUND_MIN_CORNER = 1e-4


def surround_points(thumb: np.ndarray, box: Box, scale: float) -> np.ndarray:
    """(N, 1, 2) float32 corners to track in the band beside the face of a
    thumbnail (at most 60, at least 4 pixels apart)."""
    h, w = thumb.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    cx = (box[0] + box[2]) / 2 * scale
    bw = (box[2] - box[0]) * scale
    top, bottom = box[1] * scale, box[3] * scale
    rows = SURROUND_ROWS * (bottom - top)
    dx = np.abs(xs - cx) / max(bw, 1e-9)
    band = (
        (dx > SURROUND_INNER / 2)
        & (dx < SURROUND_OUTER / 2)
        & (ys > top - rows)
        & (ys < bottom + rows)
    )
    pts = cv2.goodFeaturesToTrack(thumb, 60, 0.01, 4, mask=band.astype(np.uint8) * 255)
    if pts is None:
        return np.zeros((0, 1, 2), np.float32)
    xy = pts.reshape(-1, 2)
    strength = cv2.cornerMinEigenVal(thumb, 3)
    ix = np.clip(np.rint(xy[:, 0]).astype(int), 0, w - 1)
    iy = np.clip(np.rint(xy[:, 1]).astype(int), 0, h - 1)
    out: np.ndarray = xy[strength[iy, ix] >= SURROUND_MIN_CORNER].astype(np.float32)
    return out.reshape(-1, 1, 2)


def surround_motion(
    ref: np.ndarray,
    points: np.ndarray,
    cur: np.ndarray,
    ref_box: Box,
    cur_box: Box,
    scale: float,
    quantile: float = 0.5,
) -> float | None:
    """The ``quantile`` (0.5: the median) of the displacements, in face
    widths, of the band ``points`` of the reference thumbnail ``ref`` tracked
    (pyramidal Lucas-Kanade) into ``cur``; points now inside the face's
    current box grown ``SURROUND_INNER`` times (the head moved over them) are
    left out. ``None`` when fewer than ``SURROUND_MIN_POINTS`` points can be
    followed (a plain wall: no evidence either way). A room stays at 0; a held
    sheet or screen moves its surround with the face; someone walking behind
    a senior moves only the part of the band they cover, so a low quantile
    asks only that some of the room stays still."""
    if len(points) < SURROUND_MIN_POINTS or ref.shape != cur.shape:
        return None
    nxt, status, _err = cv2.calcOpticalFlowPyrLK(
        ref, cur, points, points.copy(), winSize=(9, 9), maxLevel=2
    )
    p0 = points.reshape(-1, 2).astype(np.float64)
    p1 = nxt.reshape(-1, 2).astype(np.float64)
    keep = (status.ravel() == 1) & _outside(p0, cur_box, scale, SURROUND_INNER)
    if int(keep.sum()) < SURROUND_MIN_POINTS:
        return None
    width = (ref_box[2] - ref_box[0]) * scale
    if width <= 0:
        return None
    moved = np.linalg.norm(p1[keep] - p0[keep], axis=1)
    return float(np.quantile(moved, quantile) / width)


class OpticalFlowSurround:
    """``face.challenge.SurroundMeter`` on OpenCV: the band's corners
    (``surround_points``) and their motion (``surround_motion``)."""

    points = staticmethod(surround_points)
    motion = staticmethod(surround_motion)
