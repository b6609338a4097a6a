"""The one observe(frame) API: one detector pass per frame gives the faces, the
largest one's landmarks and quality verdict, and - when asked - its embedding,
passive liveness score, identity and the active challenge's frame; the same
numbers the older step-by-step calls give."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from model_calls import counting
from pack_helpers import build_open_pack, default_settings, faces_dir

from face.challenge import ChallengeFrame
from face.pipeline import Observation, load_image
from face.recognise import ChallengeAsk, IdentifyResult, Recogniser
from terminal.core.errors import NoFaceError

SETTINGS = default_settings()
OBAMA = "fr_obama_obama.jpg"


@pytest.fixture(scope="module")
def recogniser(tmp_path_factory: pytest.TempPathFactory) -> Recogniser:
    pack = build_open_pack(tmp_path_factory.mktemp("packs") / "open")
    rec = Recogniser.from_settings(pack, SETTINGS)
    for name in (OBAMA, "fr_obama_obama1.jpg"):
        rec.gallery.add("R-OB", rec.embed_primary(load_image(faces_dir() / name)).embedding)
    rec.gallery.add(
        "R-AL",
        rec.embed_primary(
            load_image(faces_dir() / "fr_alex_lacamoire_alex_lacamoire.png")
        ).embedding,
    )
    return rec


def two_faces() -> np.ndarray:
    a = load_image(faces_dir() / OBAMA)
    b = load_image(faces_dir() / "fr_alex_lacamoire_img1.jpg")
    frame = np.full((480, 640, 3), 100, np.uint8)
    frame[40:440, 0:320] = cv2.resize(a, (320, 400))
    frame[90:390, 380:620] = cv2.resize(b, (240, 300))
    return frame


def test_one_detector_pass_gives_what_primary_gives(recogniser: Recogniser) -> None:
    engine = recogniser.engine
    for image in (load_image(faces_dir() / OBAMA), two_faces()):
        with counting(engine) as calls:
            obs = engine.observe(image, embed=True, liveness=True)
        assert calls == {"detect": 1, "liveness": 1}
        p = engine.primary(image, liveness=True)
        assert obs.face is not None and obs.embedding is not None
        assert obs.faces_found == p.faces_found
        assert np.array_equal(obs.face.box, p.observation.face.box)
        assert np.array_equal(obs.faces[0].box, obs.face.box)
        assert obs.quality == p.observation.quality
        assert np.array_equal(obs.embedding, p.embedding)
        assert obs.passive_liveness == pytest.approx(p.passive_liveness, abs=1e-6)
        widths = [f.width for f in obs.faces]
        assert widths == sorted(widths, reverse=True)  # largest first
    # the several faces are there, with the largest one's kiosk words
    obs = engine.observe(two_faces())
    assert obs.several_faces and obs.reason == "multiple_faces" and not obs.ok
    assert obs.guidance == "face.quality.multiple_faces"


def test_the_gate_spares_the_embedding_and_the_liveness_model(recogniser: Recogniser) -> None:
    engine = recogniser.engine
    dark = (load_image(faces_dir() / OBAMA) * 0.1).astype(np.uint8)
    with counting(engine) as calls:
        obs = engine.observe(dark, embed=True, liveness=True, require_quality=True)
    assert calls == {"detect": 1, "liveness": 0}
    assert obs.face is not None and not obs.ok and obs.reason == "too_dark"
    assert obs.embedding is None and obs.passive_liveness is None
    # without the gate the same frame is embedded and scored
    obs = engine.observe(dark, embed=True, liveness=True)
    assert obs.embedding is not None and obs.passive_liveness is not None


def test_boxes_only_and_no_face(recogniser: Recogniser) -> None:
    engine = recogniser.engine
    obs = engine.observe(two_faces(), analyse=False, max_faces=None)
    assert obs.faces_found == 2 and obs.face is None and obs.quality is None
    assert obs.reason == "not_assessed"
    # footfall adds the landmarks of the box it needs from the same pass
    face = engine.describe(two_faces(), obs.faces[1])
    assert face.landmarks68 is not None and np.array_equal(face.box, obs.faces[1].box)
    empty = engine.observe(np.full((480, 640, 3), 90, np.uint8), embed=True)
    assert empty == Observation() and empty.reason == "no_face" and empty.box is None


def test_identify_in_the_same_pass(recogniser: Recogniser) -> None:
    image = load_image(faces_dir() / "fr_obama_obama2.jpg")
    with counting(recogniser.engine) as calls:
        obs = recogniser.observe(image, identify=True)
    assert calls == {"detect": 1, "liveness": 1}
    assert obs.identification is not None and obs.identification.decision == "identified"
    assert obs.identification.resident_id == "R-OB"
    assert obs.matches[0].resident_id == "R-OB"
    liveness = obs.identification.liveness
    assert liveness is not None and liveness.method == "passive"
    assert liveness.signals["passive"] == obs.passive_liveness
    # the CLI's result is made from the observation and says the same
    res = recogniser.identify(image)
    assert res == IdentifyResult.of(obs)
    with pytest.raises(NoFaceError):
        IdentifyResult.of(recogniser.observe(np.full((480, 640, 3), 90, np.uint8), identify=True))


def test_a_poor_frame_never_identifies(recogniser: Recogniser) -> None:
    dark = (load_image(faces_dir() / "fr_obama_obama2.jpg") * 0.1).astype(np.uint8)
    gated = recogniser.observe(dark, identify=True, require_quality=True)
    assert gated.identification is None and gated.embedding is None
    ungated = recogniser.observe(dark, identify=True)
    assert ungated.identification is not None
    assert ungated.identification.decision != "identified"


def test_challenge_frame_in_the_same_pass(recogniser: Recogniser) -> None:
    image = load_image(faces_dir() / "fr_obama_obama3.jpg")
    with counting(recogniser.engine) as calls:
        obs = recogniser.observe(image, liveness=True, challenge=ChallengeAsk("R-OB", 1.25))
    assert calls == {"detect": 1, "liveness": 1}
    cf = obs.challenge
    assert cf is not None and obs.face is not None and obs.embedding is not None
    assert cf.t == 1.25 and cf.faces == 1 and cf.box == obs.box
    assert cf.landmarks68 is not None and np.array_equal(cf.landmarks68, obs.face.landmarks68)
    own = recogniser.gallery.templates_of("R-OB")
    assert cf.reid == pytest.approx(float(np.max(own @ obs.embedding)))
    assert cf.passive == obs.passive_liveness
    assert obs.quality is not None  # the guidance comes with it
    # no face: a frame that says so
    none = recogniser.observe(
        np.full((480, 640, 3), 90, np.uint8), challenge=ChallengeAsk("R-OB", 2.0)
    )
    assert none.challenge == ChallengeFrame(2.0)
    # the evaluation's helper is the same call
    again = recogniser.challenge_frame(image, 1.25, "R-OB", passive=False)
    assert again.passive is None and again.reid == cf.reid and again.box == cf.box


def test_plan_enrolment_uses_one_pass_per_image(recogniser: Recogniser, tmp_path: Path) -> None:
    images = [
        (OBAMA, load_image(faces_dir() / OBAMA), None),
        ("dark", (load_image(faces_dir() / OBAMA) * 0.1).astype(np.uint8), None),
        ("wall", np.full((480, 640, 3), 90, np.uint8), None),
        ("missing", None, "unreadable image"),
    ]
    with counting(recogniser.engine) as calls:
        plan = recogniser.plan_enrolment(images)
    assert calls["detect"] == 3 and calls["liveness"] == 0
    assert [c.source for c in plan.chosen] == [OBAMA]
    reasons = {c.source: c.problem for c in plan.rejected}
    assert reasons == {
        "dark": "quality: Too dark",
        "wall": "no face found",
        "missing": "unreadable image",
    }
