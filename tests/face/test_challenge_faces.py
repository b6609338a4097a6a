"""Which faces beside the paying one a challenge frame counts, through the
real detector on real photos (the rule itself: ``test_challenge.py``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pack_helpers import build_open_pack, default_settings, faces_dir

from face.pipeline import load_image
from face.recognise import ChallengeAsk, Recogniser


@pytest.fixture(scope="module")
def recogniser(tmp_path_factory: pytest.TempPathFactory) -> Recogniser:
    pack = build_open_pack(tmp_path_factory.mktemp("packs") / "open")
    rec = Recogniser.from_settings(pack, default_settings())
    rec.gallery.add(
        "R-OB", rec.embed_primary(load_image(faces_dir() / "fr_obama_obama.jpg")).embedding
    )
    return rec


def scene(other_width: int) -> np.ndarray:
    """The paying face on the left; another person's photo ``other_width``
    pixels wide to the right (0: nobody)."""
    frame = np.full((480, 640, 3), 100, np.uint8)
    frame[40:440, 0:320] = cv2.resize(load_image(faces_dir() / "fr_obama_obama.jpg"), (320, 400))
    if other_width:
        other = load_image(faces_dir() / "fr_alex_lacamoire_img1.jpg")
        h = other_width * other.shape[0] // other.shape[1]
        frame[60 : 60 + h, 620 - other_width : 620] = cv2.resize(other, (other_width, h))
    return frame


# the other person's photo width -> faces the challenge frame counts
CASES = {
    "nobody else": (0, 1),
    "a person beside as large": (280, 2),
    "a small face far off": (70, 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_challenge_frame_counts_the_faces_that_matter(recogniser: Recogniser, case: str) -> None:
    width, faces = CASES[case]
    obs = recogniser.observe(scene(width), challenge=ChallengeAsk("R-OB", 1.0))
    assert obs.challenge is not None and obs.face is not None
    if width == 70:
        assert obs.faces_found == 2, "the detector sees the small face too"
    assert obs.challenge.faces == faces, (case, [f.box for f in obs.faces])


def test_a_challenge_frame_carries_the_surround_thumbnail(recogniser: Recogniser) -> None:
    """The surround check's grey thumbnail comes with every challenge frame
    that found the face, and with no other observation."""
    frame = scene(0)
    obs = recogniser.observe(frame, challenge=ChallengeAsk("R-OB", 1.0))
    assert obs.challenge is not None and obs.challenge.thumb is not None
    assert obs.challenge.thumb.shape == (120, 160)
    assert obs.challenge.thumb_scale == pytest.approx(0.25)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    expected = cv2.resize(grey, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.array_equal(obs.challenge.thumb, expected)
    assert recogniser.observe(frame).challenge is None
