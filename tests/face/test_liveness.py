"""Liveness signals: the passive model as one weak signal, the blink judged on
the eye's own history, an IR placeholder, and the combined decision. The turn
challenge is in test_challenge.py, the attack suite in test_liveness_attacks.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pack_helpers import (
    build_open_pack,
    default_settings,
    faces_dir,
    insightface_images,
    labels,
)

from face.liveness import (
    BlinkChallenge,
    IrPresenceSignal,
    PassiveSignal,
    SignalResult,
    combine,
    eye_aspect_ratio,
)
from face.pipeline import FaceEngine, load_image
from terminal.core.identification import LivenessDecision

FPS = 15.0


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> FaceEngine:
    pack = build_open_pack(tmp_path_factory.mktemp("packs") / "open")
    return FaceEngine.from_pack(pack, default_settings())


@pytest.fixture(scope="module")
def open_landmarks(engine: FaceEngine) -> np.ndarray:
    """Real 68 landmarks of an open-eyed face."""
    image = load_image(faces_dir() / "fr_rose_leslie_img1.jpg")
    lm = engine.detect(image)[0].landmarks68
    assert lm is not None
    return lm


# ---------------------------------------------------------------------------
# passive model


def test_passive_model_scores_real_faces_live(engine: FaceEngine) -> None:
    scores = []
    for name, _ in labels():
        image = load_image(faces_dir() / name)
        scores.append(engine.passive_liveness(image, engine.detect(image)[0]))
    assert min(scores) > 0.9


def _phone_replay(image: np.ndarray) -> np.ndarray:
    """The photo shown on a phone held in front of a plain background."""
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur((rng.random((480, 640, 3)) * 60 + 80).astype(np.uint8), (31, 31), 0)
    h, w = image.shape[:2]
    s = 220 / max(h, w)
    screen = cv2.resize(image, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
    screen = cv2.copyMakeBorder(screen, 12, 12, 12, 12, cv2.BORDER_CONSTANT, value=(20, 20, 20))
    y0, x0 = (480 - screen.shape[0]) // 2, (640 - screen.shape[1]) // 2
    bg[y0 : y0 + screen.shape[0], x0 : x0 + screen.shape[1]] = screen
    return bg


def test_passive_model_is_only_a_weak_signal(engine: FaceEngine) -> None:
    """Replays score lower on average, but not all of them low: the passive
    model alone must not decide (documented in face/liveness.py)."""
    real, replay = [], []
    for name, _ in labels():
        image = load_image(faces_dir() / name)
        real.append(engine.passive_liveness(image, engine.detect(image)[0]))
        fake = _phone_replay(image)
        faces = engine.detect(fake)
        if faces:
            replay.append(engine.passive_liveness(fake, faces[0]))
    assert len(replay) >= 10
    assert np.mean(replay) < np.mean(real) - 0.1
    assert max(replay) > 0.5  # some replays pass the passive model on their own


def test_passive_crop_stays_inside_the_image(engine: FaceEngine) -> None:
    model = engine.liveness_model
    assert model is not None
    image = np.zeros((300, 400, 3), np.uint8)
    crop = model.crop(image, np.array([350.0, 0.0, 399.0, 60.0]))
    assert crop.shape == (128, 128, 3)


def test_passive_signal_uses_the_median() -> None:
    sig = PassiveSignal(threshold=0.5)
    assert sig.result().passed is None
    for s in (0.9, 0.1, 0.8, None, float("nan")):
        sig.add(s)
    r = sig.result()
    assert r.passed is True and r.score == pytest.approx(0.8)
    assert r.detail["passive_frames"] == 3


# ---------------------------------------------------------------------------
# blink


def test_eye_aspect_ratio_sees_closed_eyes_in_a_real_photo(engine: FaceEngine) -> None:
    open_ears = []
    for name, _ in labels():
        lm = engine.detect(load_image(faces_dir() / name))[0].landmarks68
        open_ears.append(eye_aspect_ratio(lm))
    group = engine.detect(load_image(insightface_images() / "t1.jpg"))
    # the woman on the right of insightface's t1.jpg has her eyes closed
    closed = max(group, key=lambda f: f.box[0])
    assert eye_aspect_ratio(closed.landmarks68) < 0.75 * float(np.median(open_ears))


def close_eyes(lm68: np.ndarray, openness: float) -> np.ndarray:
    """Move the lids of both eyes towards the corner line (1 = as is, 0 = shut)."""
    lm = lm68.astype(np.float64).copy()
    for start in (36, 42):
        eye = lm[start : start + 6]
        a, b = eye[0], eye[3]
        d = (b - a) / np.linalg.norm(b - a)
        for i in (1, 2, 4, 5):
            v = eye[i] - a
            foot = a + d * float(v @ d)
            eye[i] = foot + openness * (eye[i] - foot)
        lm[start : start + 6] = eye
    return lm.astype(np.float32)


def _jitter(lm: np.ndarray, rng: np.random.Generator, px: float = 0.3) -> np.ndarray:
    return (lm + rng.normal(0, px, lm.shape)).astype(np.float32)


def _moved(lm: np.ndarray, t: float) -> np.ndarray:
    """A photo waved in front of the camera: shifted, scaled and tilted."""
    angle, scale = 0.15 * np.sin(3 * t), 1 + 0.2 * np.sin(2 * t)
    c = lm.mean(axis=0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return ((lm - c) @ rot.T * scale + c + [30 * np.sin(t), 10 * t]).astype(np.float32)


def _run_blink(frames: list[np.ndarray]) -> bool | None:
    ch = BlinkChallenge()
    for i, lm in enumerate(frames):
        ch.add(i / FPS, lm)
    return ch.result().passed


def test_blink_is_detected(open_landmarks: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    seq = [1.0] * 6 + [0.6, 0.25, 0.2, 0.5] + [1.0] * 4
    frames = [_jitter(close_eyes(open_landmarks, o), rng) for o in seq]
    assert _run_blink(frames) is True


def test_blink_is_judged_on_the_eyes_own_history(open_landmarks: np.ndarray) -> None:
    """Narrow eyes (a lower open level) still blink; the threshold follows them."""
    rng = np.random.default_rng(3)
    narrow = close_eyes(open_landmarks, 0.6)
    seq = [1.0] * 8 + [0.5, 0.15, 0.6] + [1.0] * 5
    frames = [_jitter(close_eyes(narrow, o), rng, 0.1) for o in seq]
    assert _run_blink(frames) is True
    # ... while the same small relative flutter in noisy landmarks is no blink
    flutter = [_jitter(close_eyes(open_landmarks, o), rng, 0.6) for o in [1.0, 0.9] * 10]
    assert _run_blink(flutter) is not True


@pytest.mark.parametrize(
    "case",
    ["still_photo", "waved_photo", "eyes_shut_too_long", "never_reopened"],
)
def test_no_blink(open_landmarks: np.ndarray, case: str) -> None:
    rng = np.random.default_rng(2)
    if case == "still_photo":
        frames = [_jitter(open_landmarks, rng) for _ in range(40)]
    elif case == "waved_photo":
        frames = [_jitter(_moved(open_landmarks, i / FPS), rng) for i in range(40)]
    elif case == "eyes_shut_too_long":
        seq = [1.0] * 6 + [0.2] * 20 + [1.0] * 6  # 1.3 s shut: not a blink
        frames = [_jitter(close_eyes(open_landmarks, o), rng) for o in seq]
    else:
        seq = [1.0] * 6 + [0.2] * 4
        frames = [_jitter(close_eyes(open_landmarks, o), rng) for o in seq]
    assert _run_blink(frames) is not True


# ---------------------------------------------------------------------------
# IR placeholder and combination


def test_ir_presence_signal() -> None:
    box = np.array([100.0, 100.0, 200.0, 220.0])
    rng = np.random.default_rng(5)
    sig = IrPresenceSignal()
    assert sig.result().passed is None
    sig.add(np.full((480, 640), 5, np.uint8), box)  # a phone screen is dark in IR
    assert sig.result().passed is False and sig.result().reason == "ir_flat_or_dark"
    textured = (rng.random((480, 640)) * 120 + 60).astype(np.uint8)
    sig.add(textured, box)
    assert sig.result().passed is True


@pytest.mark.parametrize(
    ("results", "final", "expected"),
    [
        ([SignalResult("passive", True, 0.9), SignalResult("blink", True, 1.0)], True, (True, "")),
        ([SignalResult("passive", False, 0.2, "passive_low")], True, (False, "passive_low")),
        ([SignalResult("passive", True, 0.9), SignalResult("blink", None, 0.0)], False, None),
        (
            [SignalResult("passive", True, 0.9), SignalResult("blink", None, 0.0)],
            True,
            (False, "challenge_timeout"),
        ),
        ([], True, (True, "")),
    ],
)
def test_combine(
    results: list[SignalResult], final: bool, expected: tuple[bool, str] | None
) -> None:
    d = combine(results, final=final)
    if expected is None:
        assert d is None
        return
    assert isinstance(d, LivenessDecision)
    assert (d.live, d.reason) == expected
    assert d.method == ("+".join(r.name for r in results) or "none")
    for r in results:
        assert d.signals[r.name] == r.score


# ---------------------------------------------------------------------------
# one attempt, as the kiosk runs it
