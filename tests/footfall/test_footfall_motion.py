"""The moving-blob detector (face/footfall/fused.py MotionDetector) on drawn
frames: a head of the wall's own brightness but another colour is found in
colour and lost in grey, and the head and shoulders of a face that shows are
taken out of the mask, so a person facing the camera is not a second,
face-less blob."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from face.footfall.fused import EXCLUDE_SIDE, MotionDetector

W, H = 640, 480
WALL_BGR = (150, 110, 170)  # a mauve wall


def grey_of(bgr: tuple[int, int, int]) -> float:
    b, g, r = bgr
    return 0.114 * b + 0.587 * g + 0.299 * r


# a neutral grey of the wall's own brightness (grey hair on a mauve wall)
HAIR = round(grey_of(WALL_BGR))
HAIR_BGR = (HAIR, HAIR, HAIR)


def wall() -> np.ndarray:
    frame = np.empty((H, W, 3), np.uint8)
    frame[:] = WALL_BGR
    rng = np.random.default_rng(3)
    noise = rng.integers(-3, 4, size=(H, W, 1))
    return np.clip(frame.astype(int) + noise, 0, 255).astype(np.uint8)


def with_head(cx: int, cy: int, r: int = 40) -> np.ndarray:
    frame = wall()
    cv2.circle(frame, (cx, cy), r, HAIR_BGR, -1)
    return frame


Box = tuple[float, float, float, float]


def run(
    detector: MotionDetector, heads: list[tuple[int, int]], exclude: Sequence[Box] = ()
) -> list[Box]:
    """Show the empty wall, then a head moving along ``heads``; the boxes of
    the last frame."""
    for _ in range(40):  # learn the empty wall
        detector.detect(wall())
    boxes: list[Box] = []
    for cx, cy in heads:
        found = detector.detect(with_head(cx, cy), exclude)
        boxes = [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in found.boxes]
    return boxes


def test_the_wall_and_the_grey_head_have_the_same_brightness() -> None:
    assert abs(grey_of(HAIR_BGR) - grey_of(WALL_BGR)) < 1.0


def test_a_head_of_the_walls_brightness_is_found_in_colour_only() -> None:
    path = [(200 + 10 * k, 240) for k in range(5)]
    colour = run(MotionDetector(colour=True), path)
    grey = run(MotionDetector(colour=False), path)
    assert len(colour) == 1
    x1, y1, x2, y2 = colour[0]
    assert x1 <= 240 - 40 + 8 and x2 >= 240 + 40 - 8  # the whole head
    assert y1 <= 240 - 40 + 8 and y2 >= 240 + 40 - 8
    assert grey == []


def test_the_head_and_shoulders_of_a_face_that_shows_leave_the_mask() -> None:
    path = [(300 + 8 * k, 300) for k in range(5)]
    cx = path[-1][0]
    face = (cx - 30.0, 270.0, cx + 30.0, 330.0)  # the face on that head
    assert run(MotionDetector(), path, exclude=[face]) == []
    assert len(run(MotionDetector(), path)) == 1
    # a head beside it, further than EXCLUDE_SIDE face widths, is still seen
    far = cx + (EXCLUDE_SIDE + 1.0) * 60 + 40
    aside = [(int(far) + 8 * k - 32, 300) for k in range(5)]
    assert len(run(MotionDetector(), aside, exclude=[face])) == 1
