"""Liveness: several signals combined into one recorded decision.

Be clear about what each is worth. The passive model of the open pack
(``fr_liveness``) looks at one crop and says how "live" it looks; it scores raw
photos of faces at 0.97 and above, so **on its own it is not an anti-spoofing
control** and nothing ever skips the active challenge on its strength. It stays
one signal: its median over the challenge frames must still pass.

What a picture cannot do is the **active challenge**
(:class:`face.challenge.TurnChallenge`): after a random delay the senior is
asked to turn to a randomly drawn side and back; the landmark motion must show
3-D parallax that no homography of a flat picture explains, follow the depth
of a real face, move continuously the asked way, and come from the same,
re-identified face on every frame. Optionally (``turn_and_blink``) a blink is
also required; a blink alone is never enough, because an edited still can
"blink".

* **blink**: the eye aspect ratio (EAR, Soukupova & Cech 2016) from the 68
  landmarks drops clearly below the eye's *own* open level and spread (median
  and MAD of its history) and comes back.
* an optional **IR camera** signal: :class:`IrPresenceSignal` is a simple
  brightness/texture check on the IR frame inside the face box and is a
  placeholder for a vendor module, not a tuned detector.

A video of the enrolled person turning the asked way, or a mask, can still
pass; the kiosk keeps the non-face alternative and the payment limits. Every
decision records the inputs that produced it (:class:`LivenessDecision.signals`).

Everything here is pure: landmarks, scores and times go in, results come out.
The kiosk owns the clock and feeds frames (``now`` in seconds).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from face.challenge import ChallengeFrame, ChallengeParams, Direction, TurnChallenge
from face.surround import OpticalFlowSurround
from terminal.core.identification import LivenessDecision

if TYPE_CHECKING:
    from terminal.config.settings import FaceSettings

# Prompts the kiosk shows / speaks for a challenge: key, English, Chinese.
PROMPTS: dict[str, tuple[str, str, str]] = {
    "hold": ("face.liveness.hold", "Please look at the screen", "请看着屏幕"),
    "turn_left": (
        "face.liveness.turn_left",
        "Please turn your head to the left, then back",
        "请向左转头，再转回来",
    ),
    "turn_right": (
        "face.liveness.turn_right",
        "Please turn your head to the right, then back",
        "请向右转头，再转回来",
    ),
    "blink": ("face.liveness.blink", "Please blink", "请眨眨眼"),
}


@dataclass(frozen=True, slots=True)
class SignalResult:
    """One signal's verdict. ``passed`` is None while it cannot decide yet."""

    name: str
    passed: bool | None
    score: float  # 0..1, for the record
    reason: str = ""
    detail: Mapping[str, float] = field(default_factory=dict)


class LivenessSignal(Protocol):
    """A stateful signal fed frame by frame."""

    name: str

    def result(self) -> SignalResult: ...


# ---------------------------------------------------------------------------
# Passive model


class PassiveSignal:
    """Median of the passive model's live probability over the frames seen."""

    name = "passive"

    def __init__(self, threshold: float = 0.5, min_frames: int = 1) -> None:
        self.threshold = threshold
        self.min_frames = min_frames
        self.scores: list[float] = []

    def add(self, score: float | None) -> None:
        if score is not None and math.isfinite(score):
            self.scores.append(float(score))

    def result(self) -> SignalResult:
        if len(self.scores) < self.min_frames:
            return SignalResult(self.name, None, 0.0, "no_frames")
        med = float(np.median(self.scores))
        ok = med >= self.threshold
        return SignalResult(
            self.name,
            ok,
            med,
            "" if ok else "passive_low",
            {"passive_median": round(med, 4), "passive_frames": float(len(self.scores))},
        )


# ---------------------------------------------------------------------------
# Active challenges


def eye_aspect_ratio(landmarks68: np.ndarray) -> float:
    """Mean EAR of both eyes from iBUG 68 landmarks (points 36-47)."""
    lm = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)

    def one(p: np.ndarray) -> float:
        width = float(np.linalg.norm(p[0] - p[3]))
        if width < 1e-6:
            return 0.0
        return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * width))

    return (one(lm[36:42]) + one(lm[42:48])) / 2.0


class BlinkChallenge:
    """Passes when the eye closes and reopens within ``max_closed_s``, judged
    against the eye's own history rather than one fixed ratio.

    "Open" is the median EAR of the frames seen so far and its spread the
    median absolute deviation (MAD); closed means at least ``min_drop`` of the
    open level *and* ``k_mad`` spreads below it, reopened means back within
    ``reopen`` of the open level. EAR does not change when a photo is moved,
    scaled or rotated in the image; an edited still can still "blink", which
    is why a blink is only ever asked in addition to the turn.
    """

    name = "blink"

    def __init__(
        self,
        *,
        min_drop: float = 0.25,
        k_mad: float = 4.0,
        reopen: float = 0.12,
        max_closed_s: float = 0.8,
        min_frames: int = 4,
    ) -> None:
        self.min_drop = min_drop
        self.k_mad = k_mad
        self.reopen = reopen
        self.max_closed_s = max_closed_s
        self.min_frames = min_frames
        self.samples: list[tuple[float, float]] = []  # (time, ear)
        self._passed = False
        self._min_ratio = 1.0

    def add(self, now: float, landmarks68: np.ndarray | None) -> None:
        if landmarks68 is None or self._passed:
            return
        self.samples.append((float(now), eye_aspect_ratio(landmarks68)))
        self._evaluate()

    def _evaluate(self) -> None:
        if len(self.samples) < self.min_frames:
            return
        ears = np.array([e for _, e in self.samples])
        base = float(np.median(ears))
        if base <= 1e-6:
            return
        spread = 1.4826 * float(np.median(np.abs(ears - base)))
        closed_below = base - max(self.min_drop * base, self.k_mad * spread)
        open_above = base * (1.0 - self.reopen)
        state = "wait_open"
        closed_at = 0.0
        for t, e in self.samples:
            self._min_ratio = min(self._min_ratio, e / base)
            if state == "wait_open" and e >= open_above:
                state = "open"
            elif state == "open" and e <= closed_below:
                state, closed_at = "closed", t
            elif state == "closed":
                if t - closed_at > self.max_closed_s:
                    state = "wait_open"  # eyes shut too long: not a blink
                elif e >= open_above:
                    self._passed = True
                    return

    def result(self) -> SignalResult:
        detail = {
            "blink_frames": float(len(self.samples)),
            "blink_min_ratio": round(self._min_ratio, 3),
        }
        if self._passed:
            return SignalResult(self.name, True, 1.0, "", detail)
        if len(self.samples) < self.min_frames:
            return SignalResult(self.name, None, 0.0, "no_frames", detail)
        return SignalResult(self.name, None, 0.0, "no_blink_yet", detail)


# ---------------------------------------------------------------------------
# IR camera


class IrPresenceSignal:
    """Placeholder IR check: a live face under IR illumination is bright enough
    and textured; screens are dark and prints are flat. Not tuned on real IR
    hardware; thresholds are per-device settings once one is fitted."""

    name = "ir"

    def __init__(self, min_mean: float = 40.0, min_std: float = 12.0) -> None:
        self.min_mean = min_mean
        self.min_std = min_std
        self._last: SignalResult = SignalResult(self.name, None, 0.0, "no_ir_frame")

    def add(self, ir_gray: np.ndarray | None, box: np.ndarray) -> None:
        if ir_gray is None or ir_gray.size == 0:
            return
        h, w = ir_gray.shape[:2]
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(w, x2), min(h, y2)
        if x2 - x1 < 8 or y2 - y1 < 8:
            self._last = SignalResult(self.name, False, 0.0, "ir_no_face")
            return
        patch = ir_gray[y1:y2, x1:x2].astype(np.float32)
        mean, std = float(patch.mean()), float(patch.std())
        ok = mean >= self.min_mean and std >= self.min_std
        score = min(1.0, min(mean / self.min_mean, std / self.min_std) / 2.0)
        self._last = SignalResult(
            self.name,
            ok,
            score,
            "" if ok else "ir_flat_or_dark",
            {"ir_mean": round(mean, 1), "ir_std": round(std, 1)},
        )

    def result(self) -> SignalResult:
        return self._last


# ---------------------------------------------------------------------------
# Combination


def combine(results: Sequence[SignalResult], *, final: bool = True) -> LivenessDecision | None:
    """All signals must pass. Returns None while some signal is undecided and
    ``final`` is False; when ``final`` (e.g. the challenge timed out), an
    undecided signal counts as failed."""
    signals: dict[str, float] = {}
    for r in results:
        signals[r.name] = float(r.score)
        for k, v in r.detail.items():
            signals[k] = float(v)
    method = "+".join(r.name for r in results) or "none"
    failed = [r for r in results if r.passed is False]
    pending = [r for r in results if r.passed is None]
    if failed:
        return LivenessDecision(
            False, method, signals, failed[0].reason or f"{failed[0].name}_failed"
        )
    if pending:
        if not final:
            return None
        r = pending[0]
        reason = "challenge_timeout" if r.name in ("blink", "turn") else r.reason
        return LivenessDecision(False, method, signals, reason or f"{r.name}_undecided")
    return LivenessDecision(True, method, signals, "")


class LivenessCheck:
    """One liveness attempt over a few frames, configured from FaceSettings.

    Draws the side to turn to and the earliest moment of the prompt at
    random (the prompt waits for a still face); feed
    every frame with :meth:`observe` and ask :meth:`decide`. It returns None
    while undecided and a :class:`LivenessDecision` once every required signal
    has passed, one has failed (a binding check fails at once), or the window
    is over. ``prompt(now)`` is what the kiosk should show and say.
    """

    def __init__(
        self,
        settings: FaceSettings,
        *,
        started_at: float,
        has_landmarks68: bool = True,
        rng: random.Random | None = None,
        mirrored: bool = False,
        params: ChallengeParams | None = None,
    ) -> None:
        rnd = rng or random.SystemRandom()
        self.settings = settings
        self.started_at = started_at
        self.direction: Direction = rnd.choice(("left", "right"))
        lo, hi = settings.liveness_prompt_delay_s
        self.prompt_after = started_at + rnd.uniform(lo, hi)
        self.has_landmarks68 = has_landmarks68
        self.turn = TurnChallenge(
            self.direction,
            prompt_after=self.prompt_after,
            window_s=settings.liveness_challenge_seconds,
            params=params,
            mirrored=mirrored,
            surround=OpticalFlowSurround(),
        )
        self.blink = BlinkChallenge() if settings.liveness_challenge == "turn_and_blink" else None
        self.passive = (
            PassiveSignal(settings.liveness_threshold, min_frames=1)
            if settings.liveness_passive
            else None
        )
        self.ir = IrPresenceSignal() if settings.liveness_ir else None

    @property
    def deadline(self) -> float:
        return self.turn.deadline

    def prompt(self, now: float) -> tuple[str, str, str]:
        """(translation key, English, Chinese) of what to ask the senior now:
        to look at the screen until the face is still, then which way to turn
        (and, with ``turn_and_blink``, to blink once the turn is done)."""
        if self.turn.prompted_at is None or now < self.turn.prompted_at:
            return PROMPTS["hold"]
        if self.blink is not None and self.turn.verdict().passed and not self.blink.result().passed:
            return PROMPTS["blink"]  # turn_and_blink: the turn is done, now the blink
        return PROMPTS[f"turn_{self.direction}"]

    def observe(self, frame: ChallengeFrame, *, ir_gray: np.ndarray | None = None) -> None:
        at_rest = self.turn.at_rest
        self.turn.add(frame)
        if self.passive is not None and at_rest:
            self.passive.add(frame.passive)  # judged on frames facing the camera
        if self.blink is not None:
            self.blink.add(frame.t, frame.landmarks68)
        if self.ir is not None and frame.box is not None:
            self.ir.add(ir_gray, np.asarray(frame.box))

    def _turn_result(self, now: float) -> SignalResult:
        if not self.has_landmarks68:
            return SignalResult("turn", False, 0.0, "no_landmarks68")
        v = self.turn.verdict(now)
        return SignalResult("turn", v.passed, 1.0 if v.passed else 0.0, v.reason, v.detail)

    def decide(self, now: float) -> LivenessDecision | None:
        """None while undecided. A failed turn decides at once; a passed turn
        waits for the optional blink and IR signals (until the deadline); the
        passive median must pass too."""
        turn = self._turn_result(now)
        results = [turn]
        if self.passive is not None:
            results.append(self.passive.result())
        if self.blink is not None:
            results.append(self.blink.result())
        if self.ir is not None:
            results.append(self.ir.result())
        timed_out = now >= self.deadline
        if turn.passed is None and not timed_out:
            return None
        # with turn_and_blink (or IR), a passed turn still waits for the others
        others_pending = any(r.passed is None for r in results if r.name in ("blink", "ir"))
        if turn.passed and others_pending and not timed_out:
            return None
        return combine(results, final=True)
