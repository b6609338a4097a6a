"""The kiosk's face port: every analysed frame is one pass of the recogniser's
observe() (one detector run), identifying or judging the liveness challenge
in that same pass; the port only translates the answer into the kiosk's words
and the flow's events."""

from __future__ import annotations

import numpy as np
import pytest
from kiosk_world import World, faces_dir
from model_calls import counting

from face.pipeline import load_image
from terminal.kiosk.face_port import ChallengeStep, RecogniserFace


def test_guidance_and_identification_come_from_one_pass(world: World) -> None:
    port = RecogniserFace(world.recogniser)
    image = load_image(faces_dir() / "fr_obama_obama2.jpg")
    with counting(world.recogniser.engine) as calls:
        plain = port.observe(image)
    assert calls == {"detect": 1, "liveness": 0}  # guidance only: no embedding, no liveness
    assert plain is not None and plain.ok and plain.faces == 1 and plain.identified is None
    assert plain.guidance == "face.quality.ok" and plain.kps.shape == (5, 2)
    with counting(world.recogniser.engine) as calls:
        obs = port.observe(image, identify=True)
    assert calls == {"detect": 1, "liveness": 1}
    assert obs is not None and obs.box == plain.box and obs.ok
    res = obs.identified
    assert res is not None and res.decision == "identified" and res.resident_id == "R-OB"
    assert res.quality_reason is None
    # the same answer as the recogniser's own identification of the frame
    ident = world.recogniser.identify(image).identification
    assert res.score == pytest.approx(ident.score)
    assert ident.liveness is not None
    assert res.passive_liveness == pytest.approx(ident.liveness.signals["passive"])


def test_a_poor_frame_is_guided_not_identified(world: World) -> None:
    port = RecogniserFace(world.recogniser)
    dark = (load_image(faces_dir() / "fr_obama_obama2.jpg") * 0.1).astype(np.uint8)
    with counting(world.recogniser.engine) as calls:
        obs = port.observe(dark, identify=True)
    assert calls == {"detect": 1, "liveness": 0}
    assert obs is not None and not obs.ok and obs.reason == "too_dark"
    assert obs.identified is None
    assert port.observe(np.full((480, 640, 3), 90, np.uint8), identify=True) is None


def test_each_challenge_frame_is_detected_once(world: World) -> None:
    port = RecogniserFace(world.recogniser, challenge_seconds=4.0)
    session = port.challenge("turn", 100.0, "R-OB")
    assert session.kind == "turn" and session.deadline > 100.0
    assert session.prompt(100.0) == "face.liveness.hold"
    image = load_image(faces_dir() / "fr_obama_obama3.jpg")
    with counting(world.recogniser.engine) as calls:
        steps = [session.feed(100.0 + i / 8, image) for i in range(4)]
    # one detector run per frame; the passive model on every other frame
    assert calls == {"detect": 4, "liveness": 2}
    assert all(isinstance(s, ChallengeStep) and s.observation is not None for s in steps)
    assert all(s.result is None for s in steps)  # a still photo: not decided yet
    with counting(world.recogniser.engine) as calls:
        step = session.feed(100.6, None)  # no new frame: no model call
    assert calls == {"detect": 0, "liveness": 0} and step.observation is None
    # past the deadline, a still photo is refused
    late = session.feed(session.deadline + 0.1, image)
    assert late.result is not None and late.result.kind == "turn" and not late.result.passed


def test_a_challenge_decision_fits_the_records_signal_limit() -> None:
    """Every signal a challenge decision can carry (all checks, every figure of the
    turn) is cut to what the record keeps, and with the flow's match score it
    stays within the data spec's LivenessDecision.signals limit: a face meal whose
    record broke the limit was refused by the terminal's own pre-upload check."""
    from face.challenge import ChallengeParams, TurnChallenge
    from sync import schemas
    from terminal.kiosk.face_port import RECORD_SIGNALS, record_signals

    turn = TurnChallenge("left", prompt_after=0.0, window_s=6.0, params=ChallengeParams())
    every = {name: 1.0 for name in ("turn", "passive", "blink", "ir")} | turn.detail()
    kept = record_signals(every)
    spec = schemas.spec()["components"]["schemas"]["LivenessDecision"]["properties"]["signals"]
    assert len(kept) + 1 <= spec["maxProperties"], sorted(kept)  # + the flow's "match"
    assert set(RECORD_SIGNALS) <= set(every), set(RECORD_SIGNALS) - set(every)
    decision = {"live": True, "method": "passive+turn", "signals": {**kept, "match": 0.8}}
    decision["reason"] = None
    assert schemas.is_valid("LivenessDecision", decision), schemas.problems(
        "LivenessDecision", decision
    )
