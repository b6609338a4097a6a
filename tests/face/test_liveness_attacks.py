"""The attack suite through the real models: presentation attacks built by the
project (face.liveness_synth) never pass the challenge; genuine 3-D heads do.

The quick test runs one identity on one tuning and one held-out seed; the slow
one runs every identity on four seeds and checks the figures the README
reports (``care-terminal face liveness-eval`` prints them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pack_helpers import build_open_pack, default_settings, faces_dir

from face.challenge import ChallengeParams, pose_yaw
from face.liveness_eval import _prepared, evaluate, judge_clip, subjects_from
from face.liveness_synth import ATTACKS, genuine_clip
from face.pipeline import load_image
from face.recognise import Recogniser


@pytest.fixture(scope="module")
def recogniser(tmp_path_factory: pytest.TempPathFactory) -> Recogniser:
    pack = build_open_pack(tmp_path_factory.mktemp("packs") / "open")
    return Recogniser.from_settings(pack, default_settings())


def _check(report: dict, *, max_second_try: float, max_card: float) -> None:
    for half, h in report["halves"].items():
        assert h["attacks"] > 0, half
        passed = {k: e["passed"] for k, e in h["scenarios"].items() if k != "genuine"}
        assert h["attacks_passed"] == 0, (half, passed, report["failures"])
        g = h["scenarios"]["genuine"]
        assert g["second_try_rate"] <= max_second_try, (half, g, report["failures"])
        assert g["card_rate"] <= max_card, (half, g, report["failures"])


# The kinds whose landmarks reach a turn's parallax at all (the others are
# refused long before it): the held-out seed of the bounded test runs these.
DEEP_ATTACKS = ("photo_warp", "curved_print", "bent_print", "identity_swap")


def test_no_attack_passes_and_a_genuine_head_does(recogniser: Recogniser) -> None:
    """Bounded: one identity, every attack family on a tuning seed and the
    deepest ones on a held-out seed, a genuine head on each. On one attempt
    per half a second-try rate means nothing; the rates are measured by the
    slow test and ``liveness-eval``. What holds here: no attack passes and no
    genuine head ends at the card."""
    tuning = evaluate(recogniser, faces_dir(), seeds=[0], identities=["fr_obama"])
    held = evaluate(
        recogniser, faces_dir(), seeds=[1], identities=["fr_obama"], attacks=DEEP_ATTACKS
    )
    assert set(tuning["halves"]["tuning"]["scenarios"]) == {"genuine", *ATTACKS}
    assert set(held["halves"]["held_out"]["scenarios"]) == {"genuine", *DEEP_ATTACKS}
    report = {
        "halves": {"tuning": tuning["halves"]["tuning"], "held_out": held["halves"]["held_out"]},
        "failures": tuning["failures"] + held["failures"],
    }
    _check(report, max_second_try=1.0, max_card=0.0)


def test_a_rendered_head_at_rest_looks_like_its_photo(recogniser: Recogniser) -> None:
    """The renderer's realism, pinned: a photo already turned 17 degrees whose
    renders the passive model used to score 0.07-0.45 at rest (a hard-edged
    head on a blurred background) now stands in its own scene, looking at the
    screen, and scores like the photo itself."""
    subject = next(s for s in subjects_from(faces_dir())[0] if s.identity == "fr_kit_harington")
    photo = next(p for p in subject.photos if p.name.endswith("johnsnow_test1.jpg"))
    prepared = _prepared(recogniser, photo)
    assert prepared is not None
    assert abs(pose_yaw(prepared[1])) > 12  # the photo itself is turned
    clip = genuine_clip(*prepared, seed=2001, direction="right")
    rest = [
        recogniser.challenge_frame(img, i / 8.0, subject.identity, passive=True)
        for i, img in enumerate(clip.frames[: clip.prompt_index])
    ]
    scores = [f.passive for f in rest if f.passive is not None]
    assert scores and min(scores) >= 0.9, scores
    yaws = [pose_yaw(f.landmarks68) for f in rest if f.landmarks68 is not None]
    assert yaws and max(abs(y) for y in yaws) < 10, yaws  # looking at the screen


def test_someone_walking_past_behind_does_not_refuse_a_senior(recogniser: Recogniser) -> None:
    """A canteen queue: someone walks past behind the senior, through the
    picture beside the face, while they turn. The still-surround check asks
    only that a fifth of that picture stays still, so the senior passes; read
    at the median (half of it still), the same frames are refused, which
    shows the passer does cover the band."""
    subjects, photos = subjects_from(faces_dir())
    si, subject = next((i, s) for i, s in enumerate(subjects) if s.identity == "fr_obama")
    prepared = _prepared(recogniser, subject.photos[4 % len(subject.photos)])
    assert prepared is not None
    gallery_photo = load_image(subject.enrol)
    recogniser.gallery.clear()
    recogniser.gallery.add(
        subject.identity, recogniser.embed_primary(gallery_photo).embedding[None, :]
    )
    passer = load_image(photos[(4 * 5 + si * 3) % len(photos)])
    clip = genuine_clip(*prepared, seed=1000 * si + 4, direction="right", passer=passer)
    ok, reason, detail, frames = judge_clip(recogniser, clip, subject.identity)
    assert ok, (reason, detail)
    median, _why, _d, _f = judge_clip(
        recogniser,
        clip,
        subject.identity,
        params=ChallengeParams(surround_quantile=0.5),
        frames_cache=frames,
    )
    assert not median, "the passer never reached the band: the test shows nothing"


@pytest.mark.slow
def test_attack_suite_on_every_identity(recogniser: Recogniser, tmp_path: Path) -> None:
    report = evaluate(recogniser, faces_dir(), seeds=range(4))
    # the targets: 0 attacks pass; <= 5 % of genuine attempts need a
    # second try and <= 1 % end at the card (on this small set: none)
    _check(report, max_second_try=0.05, max_card=0.0)
