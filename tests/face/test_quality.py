"""Quality gate: pose from 5 landmarks, crop statistics, verdicts and kiosk text."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pack_helpers import build_open_pack, default_settings, faces_dir, labels, project

from face.align import ARCFACE_DST
from face.pipeline import FaceEngine, load_image
from face.quality import MESSAGES, CropStats, Pose, assess, crop_stats, estimate_pose


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"),
    [
        (0, 0, 0),
        (25, 0, 0),
        (-25, 0, 0),
        (0, 20, 0),
        (0, -20, 0),
        (0, 0, 30),
        (0, 0, -15),
        (15, 10, 5),
        (-35, -10, 0),
    ],
)
def test_pose_recovers_rotations_of_the_template_face(
    yaw: float, pitch: float, roll: float
) -> None:
    est = estimate_pose(project(yaw, pitch, roll))
    assert est.yaw == pytest.approx(yaw, abs=2.5)
    assert est.pitch == pytest.approx(pitch, abs=3.0)
    assert est.roll == pytest.approx(roll, abs=1.0)


def test_pose_of_the_template_is_frontal() -> None:
    est = estimate_pose(ARCFACE_DST)
    assert abs(est.yaw) < 0.5 and abs(est.pitch) < 0.5 and abs(est.roll) < 0.5


def test_pose_of_swapped_eyes_is_a_profile() -> None:
    k = ARCFACE_DST.copy()
    k[[0, 1]] = k[[1, 0]]
    assert abs(estimate_pose(k).yaw) >= 89


SETTINGS = default_settings()
GOOD = {
    "face_px": 200.0,
    "pose": Pose(0.0, 0.0, 0.0),
    "stats": CropStats(sharpness=500.0, brightness=130.0),
}


@pytest.mark.parametrize(
    ("change", "reason", "zh"),
    [
        ({}, "ok", None),
        ({"largest_other_px": 180.0}, "multiple_faces", "请一次一人"),
        ({"cut_off": True}, "face_cut", None),
        ({"face_px": 60.0}, "too_small", "请靠近一点"),
        ({"pose": Pose(40.0, 0.0, 0.0)}, "pose", "请正对屏幕"),
        ({"pose": Pose(0.0, -35.0, 0.0)}, "pose", "请正对屏幕"),
        ({"pose": Pose(0.0, 0.0, 40.0)}, "pose", "请正对屏幕"),
        ({"stats": CropStats(500.0, 30.0)}, "too_dark", "光线太暗"),
        ({"stats": CropStats(500.0, 230.0)}, "too_bright", "光线太强"),
        ({"stats": CropStats(10.0, 130.0)}, "blurry", "请保持不动"),
        # precedence: what the senior can fix first
        (
            {"face_px": 60.0, "pose": Pose(40.0, 0, 0), "stats": CropStats(10.0, 30.0)},
            "too_small",
            None,
        ),
        ({"pose": Pose(40.0, 0, 0), "stats": CropStats(10.0, 30.0)}, "pose", None),
        ({"stats": CropStats(10.0, 30.0)}, "too_dark", None),
        # a small face in the background is not "several people"
        ({"largest_other_px": 60.0}, "ok", None),
    ],
)
def test_assess_reasons_and_kiosk_text(change: dict, reason: str, zh: str | None) -> None:
    v = assess(**{**GOOD, **change}, settings=SETTINGS)
    assert v.reason == reason
    assert v.ok == (reason == "ok")
    assert v.key == f"face.quality.{reason}"
    if zh:
        assert v.text_zh == zh
        assert v.text("zh_CN") == zh
    assert v.text("en") == v.text_en and v.text_en
    assert set(v.metrics) >= {"face_px", "yaw", "pitch", "roll", "sharpness", "brightness"}


def test_english_texts_and_unique_keys() -> None:
    en = {k: v[1] for k, v in MESSAGES.items()}
    assert en["too_small"] == "Please come closer"
    assert en["pose"] == "Please face the screen"
    assert en["too_dark"] == "Too dark"
    assert en["too_bright"] == "Too bright"
    assert en["blurry"] == "Please hold still"
    assert en["multiple_faces"] == "Only one person please"
    keys = [v[0] for v in MESSAGES.values()]
    assert len(keys) == len(set(keys))


def test_thresholds_come_from_settings() -> None:
    strict = default_settings(min_face_px=300)
    assert assess(**GOOD, settings=strict).reason == "too_small"
    lenient = default_settings(max_yaw_deg=45.0)
    assert assess(**{**GOOD, "pose": Pose(40.0, 0, 0)}, settings=lenient).ok


# ---------------------------------------------------------------------------
# on real faces


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> FaceEngine:
    pack = build_open_pack(tmp_path_factory.mktemp("packs") / "open")
    return FaceEngine.from_pack(pack, default_settings())


def _primary(engine: FaceEngine, image: np.ndarray):
    obs = engine.analyze(image)
    assert obs, "no face"
    return obs[0]


def test_every_shared_test_face_passes_the_gate(engine: FaceEngine) -> None:
    for name, _ in labels():
        q = _primary(engine, load_image(faces_dir() / name)).quality
        assert q.ok, (name, q.reason, q.metrics)


@pytest.fixture(scope="module")
def obama(engine: FaceEngine) -> np.ndarray:
    return load_image(faces_dir() / "fr_obama_obama.jpg")


def test_dark_bright_blurred_and_small_images_are_rejected_with_reasons(
    engine: FaceEngine, obama: np.ndarray
) -> None:
    dark = (obama.astype(np.float32) * 0.25).astype(np.uint8)
    bright = np.clip(obama.astype(np.float32) * 1.2 + 120, 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(obama, (0, 0), 6)
    small = cv2.resize(obama, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    small = cv2.copyMakeBorder(
        small, 100, 100, 100, 100, cv2.BORDER_CONSTANT, value=(128, 128, 128)
    )
    for image, reason in (
        (dark, "too_dark"),
        (bright, "too_bright"),
        (blurred, "blurry"),
        (small, "too_small"),
    ):
        obs = engine.analyze(image)
        assert obs, reason
        assert obs[0].quality.reason == reason, (reason, obs[0].quality.metrics)
        assert obs[0].embedding is None  # no embedding for a rejected face


def test_crop_stats_measure_blur_and_light(engine: FaceEngine, obama: np.ndarray) -> None:
    face = engine.detect(obama)[0]
    sharp = crop_stats(engine.align(obama, face))
    blurred = crop_stats(engine.align(cv2.GaussianBlur(obama, (0, 0), 4), face))
    darker = crop_stats(engine.align(obama // 2, face))
    assert blurred.sharpness < sharp.sharpness / 5
    assert darker.brightness == pytest.approx(sharp.brightness / 2, abs=3)


def test_turned_real_faces_have_larger_yaw(engine: FaceEngine) -> None:
    """Photos that the package's own head-pose network scores as turned
    (|yaw| about 20 degrees) versus near-frontal ones (|yaw| < 5)."""

    def yaw(name: str) -> float:
        return abs(estimate_pose(engine.detect(load_image(faces_dir() / name))[0].kps).yaw)

    turned = [yaw(n) for n in ("fr_obama_obama1.jpg", "fr_kit_harington_john2.jpeg")]
    frontal = [yaw(n) for n in ("fr_obama_obama.jpg", "fr_alex_lacamoire_img1.jpg")]
    assert min(turned) > 15 and max(frontal) < 8


def test_several_similar_faces_ask_for_one_person(engine: FaceEngine) -> None:
    from pack_helpers import insightface_images

    obs = engine.analyze(load_image(insightface_images() / "t1.jpg"))
    assert len(obs) == 6
    assert obs[0].quality.reason == "multiple_faces"
    assert obs[0].quality.text_zh == "请一次一人"


def test_settings_reject_inverted_brightness(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        default_settings(min_brightness=200, max_brightness=100)
