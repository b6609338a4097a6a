"""Liveness: several weak signals combined into one recorded decision.

Be clear about what this is. The passive model of the open pack
(``fr_liveness``) looks at one crop and says how "live" it looks. It passes
most crude print and screen fakes (measured for the architecture; on our own
simulated phone-screen composites it drops for some faces and not for
others), so **on its own it is not an anti-spoofing control**. What makes a
replay harder is combining it with signals a photo cannot give:

* an *active challenge* over a few frames, judged from landmarks:

  - **blink**: the eye aspect ratio (EAR, Soukupova & Cech 2016) from the 68
    landmarks falls clearly below the person's own open-eye level and comes
    back. Relative, because the open pack's 68-point model is coarse on small
    faces (measured EAR: open eyes 0.21-0.41, closed 0.15-0.18).
    Needs a pack with the 68-point model (the open pack's default detector).
  - **head turn**: the yaw from the 5 landmarks moves by ``turn_deg`` in the
    asked direction. The direction can be drawn at random per attempt, which a
    pre-recorded video cannot follow. Works with every pack.

* an optional **IR camera** signal (a phone or monitor shows nothing under
  near-infrared light; a printed photo looks flat). :class:`IrPresenceSignal`
  is a simple brightness/texture check on the IR frame inside the face box and
  is a placeholder for a vendor module, not a tuned detector.

A blink or a turn can still be replayed from a video of the enrolled person,
and a mask defeats all of these; the kiosk must keep the non-face alternative
and the daily limits of the payment rules. Every identification records the
decision and the inputs that produced it (:class:`LivenessDecision.signals`).

Everything here is pure: landmarks, scores and times go in, results come out.
The kiosk flow owns the clock and feeds frames (``now`` in seconds).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from face.quality import estimate_pose
from terminal.core.protocols import LivenessDecision

if TYPE_CHECKING:
    from terminal.config.settings import FaceSettings

Direction = Literal["left", "right"]

# Prompts the kiosk shows / speaks for a challenge: key, English, Chinese.
PROMPTS: dict[str, tuple[str, str, str]] = {
    "blink": ("face.liveness.blink", "Please blink", "请眨眨眼"),
    "turn_left": ("face.liveness.turn_left", "Please turn your head to the left", "请向左转头"),
    "turn_right": ("face.liveness.turn_right", "Please turn your head to the right", "请向右转头"),
    "turn": ("face.liveness.turn", "Please turn your head a little", "请转一下头"),
    "blink_or_turn": (
        "face.liveness.blink_or_turn",
        "Please blink or turn your head",
        "请眨眨眼或转转头",
    ),
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
    """Passes when the EAR goes open -> closed -> open within ``max_closed_s``.

    "Open" is the 75th percentile of the EAR over the frames seen so far (most
    frames have open eyes, and a long closure does not drag it down); closed
    means below ``close_ratio`` of it, reopened means back above
    ``reopen_ratio`` of it. EAR is invariant to moving, scaling and rotating
    the face in the image, so waving a photo does not blink.
    """

    name = "blink"

    def __init__(
        self,
        *,
        close_ratio: float = 0.72,
        reopen_ratio: float = 0.88,
        max_closed_s: float = 0.8,
        min_frames: int = 4,
        open_percentile: float = 75.0,
    ) -> None:
        self.open_percentile = open_percentile
        self.close_ratio = close_ratio
        self.reopen_ratio = reopen_ratio
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
        base = float(np.percentile([e for _, e in self.samples], self.open_percentile))
        if base <= 1e-6:
            return
        state = "wait_open"
        closed_at = 0.0
        for t, e in self.samples:
            r = e / base
            self._min_ratio = min(self._min_ratio, r)
            if state == "wait_open" and r >= self.reopen_ratio:
                state = "open"
            elif state == "open" and r <= self.close_ratio:
                state, closed_at = "closed", t
            elif state == "closed":
                if t - closed_at > self.max_closed_s:
                    state = "wait_open"  # eyes shut too long: not a blink
                elif r >= self.reopen_ratio:
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


class HeadTurnChallenge:
    """Passes when the yaw moves ``turn_deg`` from its starting value in the
    asked direction (or either, when ``direction`` is None).

    ``direction`` is the senior's own left/right. With a camera that is not
    mirrored, turning to one's left moves the nose to the image right (yaw
    grows); ``mirrored=True`` flips that.
    """

    name = "turn"

    def __init__(
        self,
        direction: Direction | None = None,
        *,
        turn_deg: float = 20.0,
        mirrored: bool = False,
        baseline_frames: int = 2,
    ) -> None:
        self.direction = direction
        self.turn_deg = turn_deg
        self.mirrored = mirrored
        self.baseline_frames = baseline_frames
        self.yaws: list[float] = []
        self._passed = False
        self._max_delta = 0.0

    def add_yaw(self, yaw_deg: float) -> None:
        if self._passed or not math.isfinite(yaw_deg):
            return
        self.yaws.append(float(yaw_deg))
        if len(self.yaws) <= self.baseline_frames:
            return
        base = float(np.median(self.yaws[: self.baseline_frames]))
        delta = self.yaws[-1] - base
        if self.mirrored:
            delta = -delta
        # Positive delta = the senior turned to their left.
        if self.direction == "left":
            signed = delta
        elif self.direction == "right":
            signed = -delta
        else:
            signed = abs(delta)
        self._max_delta = max(self._max_delta, signed)
        if signed >= self.turn_deg:
            self._passed = True

    def add(self, now: float, kps: np.ndarray | None) -> None:
        if kps is not None:
            self.add_yaw(estimate_pose(kps).yaw)

    def result(self) -> SignalResult:
        detail = {"turn_frames": float(len(self.yaws)), "turn_max_deg": round(self._max_delta, 1)}
        if self._passed:
            return SignalResult(self.name, True, 1.0, "", detail)
        return SignalResult(self.name, None, 0.0, "no_turn_yet", detail)


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
        reason = "challenge_timeout" if r.name in ("blink", "turn", "blink_or_turn") else r.reason
        return LivenessDecision(False, method, signals, reason or f"{r.name}_undecided")
    return LivenessDecision(True, method, signals, "")


class EitherChallenge:
    """Blink or head turn, whichever the senior does first (blink is skipped
    when the pack has no 68-point landmarks)."""

    name = "blink_or_turn"

    def __init__(self, blink: BlinkChallenge, turn: HeadTurnChallenge) -> None:
        self.blink = blink
        self.turn = turn

    def result(self) -> SignalResult:
        b, t = self.blink.result(), self.turn.result()
        detail = {**b.detail, **t.detail}
        if b.passed:
            return SignalResult(self.name, True, 1.0, "", {**detail, "blink": 1.0})
        if t.passed:
            return SignalResult(self.name, True, 1.0, "", {**detail, "turn": 1.0})
        return SignalResult(self.name, None, 0.0, "no_challenge_yet", detail)


class LivenessCheck:
    """One liveness attempt over a few frames, configured from FaceSettings.

    Feed every frame with :meth:`observe`; ask :meth:`decide` each frame.
    It returns None while undecided and a :class:`LivenessDecision` once every
    required signal has passed, one has failed, or the challenge window is
    over. ``prompt`` is what the kiosk should ask for (None: nothing to ask).
    """

    def __init__(
        self,
        settings: FaceSettings,
        *,
        started_at: float,
        has_landmarks68: bool = True,
        rng: random.Random | None = None,
        mirrored: bool = False,
    ) -> None:
        self.settings = settings
        self.started_at = started_at
        self.deadline = started_at + settings.liveness_challenge_seconds
        self.passive = (
            PassiveSignal(settings.liveness_threshold) if settings.liveness_passive else None
        )
        self.ir = IrPresenceSignal() if settings.liveness_ir else None
        mode = settings.liveness_challenge
        if mode == "blink" and not has_landmarks68:
            mode = "turn"  # the pack cannot see eyes: fall back to a head turn
        self.mode = mode
        self.blink = (
            BlinkChallenge() if mode in ("blink", "blink_or_turn") and has_landmarks68 else None
        )
        direction: Direction | None = None
        if mode == "turn":
            direction = (rng or random.SystemRandom()).choice(("left", "right"))
        self.turn = (
            HeadTurnChallenge(direction, mirrored=mirrored)
            if mode in ("turn", "blink_or_turn")
            else None
        )
        self.direction = direction

    @property
    def prompt(self) -> tuple[str, str, str] | None:
        """(translation key, English, Chinese) of what to ask the senior."""
        if self.blink is not None and self.turn is not None:
            return PROMPTS["blink_or_turn"]
        if self.blink is not None:
            return PROMPTS["blink"]
        if self.turn is not None:
            return PROMPTS[f"turn_{self.direction}"] if self.direction else PROMPTS["turn"]
        return None

    def observe(
        self,
        now: float,
        *,
        kps: np.ndarray | None,
        landmarks68: np.ndarray | None = None,
        passive_score: float | None = None,
        box: np.ndarray | None = None,
        ir_gray: np.ndarray | None = None,
    ) -> None:
        if self.passive is not None:
            self.passive.add(passive_score)
        if self.blink is not None:
            self.blink.add(now, landmarks68)
        if self.turn is not None:
            self.turn.add(now, kps)
        if self.ir is not None and box is not None:
            self.ir.add(ir_gray, box)

    def _results(self) -> list[SignalResult]:
        out: list[SignalResult] = []
        if self.passive is not None:
            out.append(self.passive.result())
        if self.blink is not None and self.turn is not None:
            out.append(EitherChallenge(self.blink, self.turn).result())
        elif self.blink is not None:
            out.append(self.blink.result())
        elif self.turn is not None:
            out.append(self.turn.result())
        if self.ir is not None:
            out.append(self.ir.result())
        return out

    def decide(self, now: float) -> LivenessDecision | None:
        """None while undecided. Decides as soon as every signal other than the
        passive model has passed (the passive median is judged on the frames
        seen so far); otherwise at the end of the challenge window, when any
        signal still failing or undecided makes the attempt fail."""
        results = self._results()
        if not results:
            return LivenessDecision(True, "none", {}, "liveness disabled by configuration")
        timed_out = now >= self.deadline
        # The passive median is only final at the end of the window, unless the
        # challenge already passed (then use the frames seen so far).
        challenge_done = all(r.passed is True for r in results if r.name != "passive")
        if not timed_out and not challenge_done:
            return None
        return combine(results, final=True)
