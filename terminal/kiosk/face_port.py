"""What the kiosk runner needs from ``face``, and the adapter over the recogniser.

The runner analyses each camera frame once (``FacePort.observe``, or
``ChallengeSession.feed`` while a liveness challenge runs): one call, one
detector pass in :meth:`face.recognise.Recogniser.observe`, which does all
the vision (detection, landmarks, alignment, quality gate, embedding, passive
liveness, 1:N search, the challenge frame). This module only translates its
answer into the kiosk's words (:class:`Observation`) and the payment flow's
events (``FaceResult``, ``ChallengeResult``): no image maths here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from payment.flow import ChallengeResult, FaceResult
from terminal.core.log import get_logger

if TYPE_CHECKING:
    from face import pipeline
    from face.liveness import LivenessCheck
    from face.recognise import Recogniser

log = get_logger(__name__)

Image = NDArray[np.uint8]  # an HxWx3 BGR camera frame
Points = NDArray[np.float32]  # (n, 2) landmarks in image pixels
Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels


@dataclass(frozen=True, slots=True)
class Observation:
    """The largest face in a frame and what the quality gate says about it;
    ``identified`` is the flow's ``FaceResult`` when identification was asked
    and the face passed the gate."""

    box: Box
    ok: bool
    reason: str  # quality reason: ok, too_small, pose ...
    kps: Points  # (5, 2) landmarks
    landmarks68: Points | None
    faces: int
    identified: FaceResult | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def guidance(self) -> str:
        return f"face.quality.{self.reason}"


@dataclass(frozen=True, slots=True)
class ChallengeStep:
    """What one frame of a challenge showed (None: no face, or no frame) and,
    once decided, the challenge's result."""

    observation: Observation | None
    result: ChallengeResult | None = None


class ChallengeSession(Protocol):
    kind: str
    deadline: float  # monotonic

    def prompt(self, now: float) -> str: ...  # translation key of what to ask now

    def feed(self, now: float, image: Image | None) -> ChallengeStep: ...


class FacePort(Protocol):
    """What the runner needs from ``face`` (see :class:`RecogniserFace`)."""

    def observe(self, image: Image, *, identify: bool = False) -> Observation | None: ...

    def challenge(self, kind: str, now: float, resident_id: str) -> ChallengeSession: ...


def kiosk_view(
    seen: pipeline.Observation, identified: FaceResult | None = None
) -> Observation | None:
    """The kiosk's view of ``face``'s observation (None without a face)."""
    face, box = seen.face, seen.box
    if face is None or box is None or seen.quality is None:
        return None
    return Observation(
        box=box,
        ok=seen.ok,
        reason=seen.reason,
        kps=face.kps,
        landmarks68=face.landmarks68,
        faces=seen.faces_found,
        identified=identified,
    )


def face_result(seen: pipeline.Observation) -> FaceResult | None:
    """The flow's ``FaceResult`` of an observation made with ``identify=True``."""
    ident = seen.identification
    if ident is None:
        return None
    passive: float | None = None
    if ident.liveness is not None:
        passive = ident.liveness.signals.get("passive")
    # Without a passive model the score is unknown, not "fake": 0.5 sends
    # the senior to the active challenge instead of rejecting outright.
    return FaceResult(
        decision=ident.decision,
        resident_id=ident.resident_id,
        score=float(ident.score),
        passive_liveness=0.5 if passive is None else float(passive),
        quality_reason=None if seen.ok else seen.reason,
    )


class _LivenessChallenge:
    """One active challenge attempt: ``face.liveness.LivenessCheck`` fed with
    what every frame shows of the candidate (the observation's challenge
    frame: faces, box, 68 landmarks, re-identification against the
    candidate's own templates, and the passive model on every other frame)."""

    def __init__(self, rec: Recogniser, check: LivenessCheck, kind: str, resident_id: str) -> None:
        self._rec = rec
        self._check = check
        self._resident_id = resident_id
        self._frames = 0
        self.kind = kind
        self.deadline = float(check.deadline)

    def prompt(self, now: float) -> str:
        return self._check.prompt(now)[0]

    def feed(self, now: float, image: Image | None) -> ChallengeStep:
        from face.recognise import ChallengeAsk

        view = None
        if image is not None:
            seen = self._rec.observe(
                image,
                liveness=self._frames % 2 == 0,
                challenge=ChallengeAsk(self._resident_id, now),
            )
            self._frames += 1
            assert seen.challenge is not None
            self._check.observe(seen.challenge)
            view = kiosk_view(seen)
        decision = self._check.decide(now)
        if decision is None:
            return ChallengeStep(view)
        # the inputs of every decision are recorded; no id, name, image or embedding
        log.info(
            "liveness_challenge",
            live=bool(decision.live),
            reason=decision.reason,
            frames=self._frames,
            signals={k: round(float(v), 4) for k, v in decision.signals.items()},
        )
        return ChallengeStep(
            view,
            ChallengeResult(self.kind, bool(decision.live), record_signals(decision.signals)),
        )


# What a payment record keeps of a challenge decision: each check's outcome and
# the figures that decided the turn. The data spec allows 16 signals per
# decision and the payment flow adds the match score, so at most 15 come from
# here; the log line above keeps every signal.
RECORD_SIGNALS = (
    "turn",
    "passive",
    "blink",
    "ir",
    "turn_frames",
    "turn_turned_frames",
    "turn_peak_parallax",
    "turn_peak_yaw",
    "turn_peak_depth_corr",
    "turn_peak_nose",
    "turn_need",
    "turn_noise",
    "reid_min",
    "reid_frames",
)


def record_signals(signals: Mapping[str, float]) -> dict[str, float]:
    """The signals of :data:`RECORD_SIGNALS` that a decision has."""
    return {k: float(signals[k]) for k in RECORD_SIGNALS if k in signals}


class RecogniserFace:
    """:class:`FacePort` over ``face.recognise.Recogniser``.

    ``observe`` runs the detector and the quality gate (no embedding), cheap
    enough for every analysed frame; with ``identify`` the same pass also
    embeds a face that passed the gate, runs the passive liveness model and
    the 1:N search. All model calls share the recogniser's lock (an engine is
    not re-entrant), so staff enrolment on another thread is safe.
    """

    def __init__(self, recogniser: Recogniser, *, challenge_seconds: float | None = None) -> None:
        self.rec = recogniser
        self.challenge_seconds = challenge_seconds

    def observe(self, image: Image, *, identify: bool = False) -> Observation | None:
        seen = self.rec.observe(image, identify=identify, require_quality=True)
        return kiosk_view(seen, face_result(seen))

    def challenge(self, kind: str, now: float, resident_id: str) -> ChallengeSession:
        from face.liveness import LivenessCheck

        settings = self.rec.settings
        if self.challenge_seconds is not None:
            settings = settings.model_copy(
                update={"liveness_challenge_seconds": self.challenge_seconds}
            )
        check = LivenessCheck(
            settings, started_at=now, has_landmarks68=self.rec.engine.has_landmarks68
        )
        return _LivenessChallenge(self.rec, check, kind, resident_id)


__all__ = [
    "Box",
    "ChallengeSession",
    "ChallengeStep",
    "FacePort",
    "Image",
    "Observation",
    "RecogniserFace",
    "face_result",
    "kiosk_view",
]
