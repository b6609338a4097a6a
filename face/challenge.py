"""The active liveness challenge: a head turn that a flat picture cannot answer,
made by the face that is paying.

Pure: landmarks, boxes, scores and times go in, a verdict comes out. The kiosk
(``terminal.kiosk.runner``) feeds one :class:`ChallengeFrame` per analysed frame;
:mod:`face.liveness_eval` feeds frames of synthetic genuine heads and attacks.

What the challenge asks and checks
----------------------------------

The senior is asked, after a random delay, to turn their head to a randomly
drawn side and back. Every frame of the attempt must show

* **one face** (a second face of comparable size, seen on two of three
  consecutive frames, fails the attempt; a box inside the paying face's own
  box is part of that face),
* **the same face**: its box moves continuously from frame to frame (no jumps,
  no gap longer than ``max_missing`` frames) and the face is **re-identified**
  against the candidate's own templates on every frame that can be embedded
  (``reid_front`` near frontal, ``reid_turned`` when turned), so a photo that
  was identified cannot hand the challenge to another person's real head.

And the motion must be a real 3-D turn:

* **parallax**: the 68 landmarks of a flat photo or screen, however it is moved,
  tilted or zoomed, are mapped from the frontal frame by one homography (up to
  landmark noise); a real head turning is not, because the nose, eyes and face
  outline lie at different depths. The root-mean-square residual of the best
  homography, in units of the inter-ocular distance, must reach
  ``min_parallax`` and stand well above the noise of the frames before the
  prompt.
* **structure**: that residual must follow depth: its horizontal component
  correlates with the depth of the points in the 3-D mean face shape (the
  insightface wheel's ``meanshape_68``), with the sign of the asked direction.
  A 2-D edit that slides the nose sideways leaves a residual on the nose only.
* **direction and continuity**: the yaw of an affine fit of the 3-D mean shape
  moves towards the asked side (never the other), passes through intermediate
  values on the way (two photos swapped do not), and comes back.
* **a still surround**: a head turns in front of a room that stays where it
  is; a held sheet or screen carries its own picture beside the face (the
  photo's background, hair and edge) with it. Points tracked in a band beside
  the face (``surround_motion``, on a small grey thumbnail the frame carries)
  must not have moved, at the fifth of them that moved least
  (``surround_quantile``), by more than ``max_surround_motion`` face widths
  since the prompt.

How the thresholds were chosen is written in ``docs/liveness.md``: on the
tuning half of :mod:`face.liveness_eval`'s clips only, with the held-out half
reported beside it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Protocol

import numpy as np

from face.meanshape import mean_shape_68

Direction = Literal["left", "right"]


# --------------------------------------------------------------------------- geometry


def inter_ocular(lm68: np.ndarray) -> float:
    lm = np.asarray(lm68, np.float64).reshape(68, 2)
    return float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))


def pose_yaw(lm68: np.ndarray) -> float:
    """Yaw in degrees from an affine fit of the 3-D mean shape to 68 landmarks.
    Positive when the nose moves towards the image's right."""
    ms = mean_shape_68()
    x = np.column_stack([ms, np.ones(68)])
    a, *_ = np.linalg.lstsq(x, np.asarray(lm68, np.float64).reshape(68, 2), rcond=None)
    r1 = a[:3, 0]
    n = float(np.linalg.norm(r1))
    if n < 1e-9:
        return 0.0
    r1 = r1 / n
    return math.degrees(math.atan2(r1[2], r1[0]))


def _normaliser(p: np.ndarray) -> np.ndarray:
    c = p.mean(0)
    d = float(np.sqrt(((p - c) ** 2).sum(1)).mean()) or 1.0
    s = math.sqrt(2.0) / d
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])


def fit_homography(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 3x3 homography mapping points ``a`` onto ``b`` (normalised DLT, least squares)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    ta, tb = _normaliser(a), _normaliser(b)
    ah = np.column_stack([a, np.ones(len(a))]) @ ta.T
    bh = np.column_stack([b, np.ones(len(b))]) @ tb.T
    n = len(a)
    m = np.zeros((2 * n, 9))
    x, y = ah[:, 0], ah[:, 1]
    u, v = bh[:, 0], bh[:, 1]
    m[0::2, 0], m[0::2, 1], m[0::2, 2] = -x, -y, -1
    m[0::2, 6], m[0::2, 7], m[0::2, 8] = u * x, u * y, u
    m[1::2, 3], m[1::2, 4], m[1::2, 5] = -x, -y, -1
    m[1::2, 6], m[1::2, 7], m[1::2, 8] = v * x, v * y, v
    # the thin SVD: the same right singular vectors without the (2n, 2n) U,
    # which under a loaded multi-threaded BLAS took 75-160 ms a call against 0.1 ms
    _, _, vt = np.linalg.svd(m, full_matrices=len(m) < 9)
    h = np.linalg.inv(tb) @ vt[-1].reshape(3, 3) @ ta
    out: np.ndarray = h / (h[2, 2] if abs(h[2, 2]) > 1e-12 else 1.0)
    return out


def homography_residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 2) residual of ``b`` after the best homography from ``a``."""
    h = fit_homography(a, b)
    p = np.column_stack([np.asarray(a, np.float64), np.ones(len(a))]) @ h.T
    w = np.where(np.abs(p[:, 2:3]) < 1e-12, 1e-12, p[:, 2:3])
    res: np.ndarray = p[:, :2] / w - np.asarray(b, np.float64)
    return res


# The points a rigid fit uses: brows, nose, eyes and mouth. The outline (0-16)
# is where the face's silhouette is, which slides over the cheek as the head
# turns: on a real head those points are not fixed on the face.
INNER = slice(17, 68)


def rigid_residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(51, 2) residual of the inner points (``INNER``) of ``b`` after the best
    affine camera of a rigid 3-D face whose image in the first frame is ``a``:
    the points of ``a`` given the depth of the 3-D mean shape,
    ``b ~ [a_x, a_y, z, 1] @ M`` (a 4x2 ``M``, 8 degrees of freedom like a
    homography). A head turning moves each point by an amount that follows its
    depth, which this explains; a picture warped or bent in 2-D moves them by
    what the edit or the bend did, which it does not."""
    a = np.asarray(a, np.float64).reshape(68, 2)[INNER]
    b = np.asarray(b, np.float64).reshape(68, 2)[INNER]
    x = np.column_stack([a, mean_shape_68()[INNER, 2], np.ones(len(a))])
    m, *_ = np.linalg.lstsq(x, b, rcond=None)
    res: np.ndarray = x @ m - b
    return res


@dataclass(frozen=True, slots=True)
class Parallax:
    """How far the motion from a frontal frame is from any flat picture's."""

    residual: float  # RMS homography residual / inter-ocular distance
    depth_corr: float  # corr(horizontal residual, mean-shape depth); sign = turn side
    # Horizontal residual of the nose tip (30) against the top of the nose
    # bridge (27), two points at about the same x and different depths: a real
    # turn moves the tip further; a sheet bent about a vertical axis (depth a
    # function of x only) moves them alike.
    nose: float = 0.0
    # The inner points' RMS residual after the rigid 3-D fit
    # (``rigid_residual``) over their RMS residual after the best homography:
    # the share of the parallax that a head turning does not explain. Small
    # for a head; near 1 for a picture warped or bent in 2-D.
    rigid_ratio: float = 1.0

    @classmethod
    def between(cls, frontal: np.ndarray, turned: np.ndarray) -> Parallax:
        frontal = np.asarray(frontal, np.float64).reshape(68, 2)
        turned = np.asarray(turned, np.float64).reshape(68, 2)
        r = homography_residual(frontal, turned)
        iod = inter_ocular(turned) or 1.0
        rms = float(np.sqrt((r**2).sum(1).mean()) / iod)
        z = mean_shape_68()[:, 2]
        rx = r[:, 0]
        corr = 0.0 if float(rx.std()) < 1e-09 else float(np.corrcoef(rx, z)[0, 1])
        nose = float((rx[30] - rx[27]) / iod)
        flat = float(
            np.sqrt((homography_residual(frontal[INNER], turned[INNER]) ** 2).sum(1).mean())
        )
        rigid = float(np.sqrt((rigid_residual(frontal, turned) ** 2).sum(1).mean()))
        ratio = rigid / flat if flat > 1e-9 else 1.0
        return cls(rms, corr if math.isfinite(corr) else 0.0, nose, ratio)


@lru_cache(maxsize=256)
def _head_parallax_half_deg(half_deg: int) -> float:
    ms = mean_shape_68()
    a = math.radians(half_deg / 2.0)
    c, s = math.cos(a), math.sin(a)
    turned = ms @ np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]).T
    return Parallax.between(ms[:, :2], turned[:, :2]).residual


def head_parallax(yaw_deg: float) -> float:
    """The parallax (``Parallax.residual``) of the 3-D mean face turned by
    ``yaw_deg`` from frontal: what a head at that yaw shows (0.12 at 20 deg)."""
    return _head_parallax_half_deg(round(min(max(abs(yaw_deg), 1.0), 80.0) * 2))


def fit_pose(lm68: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """A rigid, scaled-orthographic fit of the 3-D mean shape to 68 landmarks:
    the rotation ``R`` (3x3), the scale and the translation with
    ``lm68 ~ scale * mean_shape @ R[:2].T + t``. The affine fit of
    ``pose_yaw``, made the nearest scaled rotation (its two rows orthonormal)."""
    ms = mean_shape_68()
    x = np.column_stack([ms, np.ones(68)])
    a, *_ = np.linalg.lstsq(x, np.asarray(lm68, np.float64).reshape(68, 2), rcond=None)
    u, sv, vt = np.linalg.svd(a[:3].T, full_matrices=False)
    rows = u @ vt
    r = np.vstack([rows, np.cross(rows[0], rows[1])])
    return r, float(sv.mean()), a[3]


def fitted_parallax(ref: np.ndarray, lm68: np.ndarray) -> float:
    """The parallax (``Parallax.residual``) of the 3-D mean face moved from the
    pose ``fit_pose`` finds in ``ref`` to the pose it finds in ``lm68``: what a
    rigid head in those two poses shows, whatever its yaw, pitch and roll."""
    ms = mean_shape_68()
    pts = []
    for lm in (ref, lm68):
        r, scale, t = fit_pose(lm)
        pts.append(scale * ms @ r[:2].T + t)
    res = homography_residual(pts[0], pts[1])
    return float(np.sqrt((res**2).sum(1).mean()) / (inter_ocular(pts[1]) or 1.0))


def side_sign(direction: Direction, *, mirrored: bool = False) -> float:
    """+1 when turning to the senior's ``direction`` moves the nose towards the
    image's right (an unmirrored camera and a turn to the senior's left)."""
    s = 1.0 if direction == "left" else -1.0
    return -s if mirrored else s


# --------------------------------------------------------------------------- the surround


Box = tuple[float, float, float, float]


class SurroundMeter(Protocol):
    """How far the picture beside the face moved since the prompt, measured
    on the small grey thumbnails challenge frames carry. The pixel work is an
    adapter (``face.surround.OpticalFlowSurround``); this module stays pure."""

    def points(self, thumb: np.ndarray, box: Box, scale: float) -> np.ndarray:
        """Points to follow in the band beside the face of the prompt's frame."""
        ...

    def motion(
        self,
        ref: np.ndarray,
        points: np.ndarray,
        cur: np.ndarray,
        ref_box: Box,
        cur_box: Box,
        scale: float,
        quantile: float,
    ) -> float | None:
        """The ``quantile`` of the points' displacements in face widths, or
        None when too few can be followed (no evidence either way)."""
        ...


# --------------------------------------------------------------------------- the judge


def inside_share(box: Box, paying: Box) -> float:
    """The share of ``box``'s area that lies inside ``paying``."""
    ix = max(0.0, min(box[2], paying[2]) - max(box[0], paying[0]))
    iy = max(0.0, min(box[3], paying[3]) - max(box[1], paying[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return ix * iy / area if area > 0 else 0.0


# A box lying at least this much inside the paying face's box is a part of
# that face (the detector's second box on the mouth and chin), not a person:
# another person's face cannot be seen inside the paying face.
PART_OF_FACE_INSIDE = 0.9


def is_second_face(
    paying: Box, other: Box, *, min_ratio: float = 0.5, part_inside: float = PART_OF_FACE_INSIDE
) -> bool:
    """Does a face box ``other`` beside the paying face ``paying`` count as a
    second face? It does when it is at least ``min_ratio`` as wide, unless it
    lies (``part_inside`` of its area or more) inside the paying face's box."""
    w = paying[2] - paying[0]
    if w <= 0 or other[2] - other[0] < min_ratio * w:
        return False
    return inside_share(other, paying) < part_inside


@dataclass(frozen=True, slots=True)
class ChallengeFrame:
    """What one analysed frame says about the face answering the challenge."""

    t: float  # seconds (monotonic)
    faces: int = 0  # the paying face and the faces that count beside it (``is_second_face``)
    box: Box | None = None
    landmarks68: np.ndarray | None = None
    reid: float | None = None  # cosine to the candidate's best template, when embedded
    passive: float | None = None  # passive model score, when run
    # A grey thumbnail of the whole frame (``surround_thumbnail``) and its scale
    # (thumbnail pixels per frame pixel), for the surround check; made only
    # for challenge frames
    thumb: np.ndarray | None = None
    thumb_scale: float = 0.0


@dataclass(frozen=True, slots=True)
class ChallengeParams:
    """Thresholds; see docs/liveness.md for how each was chosen."""

    min_parallax: float = 0.110
    noise_factor: float = 2.5
    min_depth_corr: float = 0.30
    min_nose: float = 0.10  # the nose tip's own parallax (Parallax.nose, signed), in IOD
    # Parallax.rigid_ratio: the share of the parallax a rigid 3-D turn of the
    # face does not explain (a 2-D warp, a bent sheet) must stay below this
    max_rigid_ratio: float = 1.0
    # The parallax over what the 3-D mean face shows moved between the poses
    # fitted to the reference and the frame (``fitted_parallax``): a head's
    # parallax comes with its pose; a 2-D warp or a curved sheet makes the
    # landmark model report more parallax than pose
    max_parallax_excess: float = 1.50
    # ``surround_motion``: the band around the face may have moved at most
    # this many face widths since the prompt (a room stays still; a held
    # sheet carries its surround with the face), read at this quantile of
    # the band's points: at least a fifth of the band must stay still, so
    # that someone walking behind a senior (who covers part of the band) does
    # not refuse them, and never a single point decides
    max_surround_motion: float = 0.04
    surround_quantile: float = 0.2
    # When the surround gives no evidence (a plain backdrop beside the face:
    # too few corners to track), the frame must also pass the night's
    # landmark rules: this parallax floor, and the parallax over the mean
    # face at the measured yaw change (``head_parallax``) at most this
    blank_surround_min_parallax: float = 0.12
    blank_surround_max_yaw_excess: float = 1.42
    min_yaw_deg: float = 12.0
    wrong_way_deg: float = 8.0
    turned_frames: int = 2
    max_missing: int = 1
    # A second face fails the attempt when it is seen on ``second_face_frames``
    # of ``second_face_window`` consecutive analysed frames: a person leaning
    # in stays in view; the detector's one-frame false box on a painting or
    # a wall does not
    second_face_frames: int = 2
    second_face_window: int = 3
    max_jump: float = 0.45  # box centre shift between frames / box width
    max_scale_step: float = 1.35  # box width ratio between frames
    max_rate: float = 1.2  # parallax per second between consecutive frames
    rate_window_s: float = 0.3  # frames further apart than this are not speed-checked
    steady_step: float = 0.04  # parallax between baseline frames that counts as still
    steady_wait_s: float = 4.0  # after this long without a still face, give up
    max_baseline_yaw: float = 22.0  # the prompt waits for a face about frontal
    reid_front: float = 0.30
    reid_turned: float = 0.10
    min_reid_frames: int = 3
    min_baseline_frames: int = 2
    max_round_trips: int = 2
    # Pass on the second turned frame (measured: no attack gained, ~0.8 s saved);
    # True waits until the face is back to the front.
    require_return: bool = False


@dataclass(slots=True)
class ChallengeVerdict:
    passed: bool | None  # None: not decided yet
    reason: str = ""
    detail: dict[str, float] = field(default_factory=dict)


class TurnChallenge:
    """One attempt: once the face is still (and not before ``prompt_after``),
    ask for a turn to ``direction`` and back within ``window_s``. Feed frames
    with :meth:`add`; :attr:`prompted_at` says when the prompt was given; read
    :meth:`verdict`. A failed binding check (second face, lost track, someone
    else) ends the attempt at once; the motion checks decide when the senior
    has come back."""

    name = "turn"

    def __init__(
        self,
        direction: Direction,
        *,
        prompt_after: float,
        window_s: float,
        params: ChallengeParams | None = None,
        mirrored: bool = False,
        surround: SurroundMeter | None = None,
    ) -> None:
        self.direction = direction
        # without a meter the surround gives no evidence and the blank-surround
        # landmark rules decide (ChallengeParams.blank_surround_*)
        self._meter = surround
        self.prompt_after = prompt_after
        self.window_s = window_s
        self.p = params or ChallengeParams()
        self.sign = side_sign(direction, mirrored=mirrored)
        self.prompted_at: float | None = None
        self._baseline: list[np.ndarray] = []
        self._ref: np.ndarray | None = None
        self._noise = 0.0
        self._yaw0 = 0.0
        self._missing = 0
        self._seconds: deque[bool] = deque(maxlen=max(1, self.p.second_face_window))
        self._second_face_frames = 0
        self._last_box: Box | None = None
        self._last: tuple[float, np.ndarray] | None = None
        self._reids: list[float] = []
        self._passive: list[float] = []
        self._state = "front"  # front -> turning -> turned -> back
        self._turned = 0
        self._round_trips = 0
        self._max_rate = 0.0
        self._peak_yaw = 0.0
        self._peak_res = 0.0
        self._peak_corr = 0.0
        self._peak_nose = 0.0
        self._peak_rigid = 0.0
        # the best value each motion signal reached, whether or not the frame
        # counted as turned: which check held a refused attempt back
        self._best = {"parallax": 0.0, "yaw": 0.0, "depth_corr": -1.0, "nose": -1.0}
        self._best_rigid_ratio = 1.0
        self._peak_excess = 0.0
        self._best_excess = 99.0
        # the surround check: the reference thumbnail, its band points, the
        # face box and the scale, taken at the prompt
        self._frame: ChallengeFrame | None = None
        self._ref_thumb: tuple[np.ndarray, np.ndarray, Box, float] | None = None
        self._peak_surround = -1.0
        self._best_surround = -1.0
        self._need = self.p.min_parallax
        self._verdict = ChallengeVerdict(None, "waiting")
        self.frames = 0

    @property
    def deadline(self) -> float:
        """The end of the attempt: the window after the prompt, or the wait for
        a still face when no prompt could be given yet."""
        if self.prompted_at is None:
            return self.prompt_after + self.p.steady_wait_s + self.window_s
        return self.prompted_at + self.window_s

    # -- feeding ------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        self._verdict = ChallengeVerdict(False, reason, self.detail())

    def add(self, f: ChallengeFrame) -> ChallengeVerdict:
        if self._verdict.passed is not None:
            return self._verdict
        self.frames += 1
        if f.t >= self.deadline:
            self._fail("challenge_timeout")
            return self._verdict
        if not self._bound(f):
            return self._verdict
        if f.passive is not None and math.isfinite(f.passive) and self._state == "front":
            # the passive model is trained on faces looking at the camera: it is
            # judged on the frames at rest, not on the turned ones
            self._passive.append(float(f.passive))
        if f.landmarks68 is None:
            return self._verdict
        lm = np.asarray(f.landmarks68, np.float64).reshape(68, 2)
        self._frame = f
        if not self._speed_ok(f.t, lm):
            return self._verdict
        if self.prompted_at is None:
            self._add_baseline(lm, f.t)
            if self.prompted_at is None and f.t >= self.prompt_after + self.p.steady_wait_s:
                self._fail("not_still")
            return self._verdict
        self._motion(lm)
        return self._verdict

    def _bound(self, f: ChallengeFrame) -> bool:
        """The binding checks: one face, the same track, the same person."""
        p = self.p
        self._seconds.append(f.faces > 1)
        if f.faces > 1:
            self._second_face_frames += 1
            if sum(self._seconds) >= p.second_face_frames:
                self._fail("second_face")
                return False
        if f.box is None or f.faces == 0:
            self._missing += 1
            self._last = None
            if self._missing > p.max_missing:
                self._fail("face_lost")
            return False
        self._missing = 0
        if self._last_box is not None:
            a, b = self._last_box, f.box
            wa, wb = a[2] - a[0], b[2] - b[0]
            if wa <= 0 or wb <= 0:
                self._fail("face_lost")
                return False
            ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
            cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
            shift = math.hypot(ca[0] - cb[0], ca[1] - cb[1]) / wa
            ratio = max(wa, wb) / min(wa, wb)
            if shift > p.max_jump or ratio > p.max_scale_step:
                self._fail("track_jump")
                return False
        self._last_box = f.box
        if f.reid is not None:
            self._reids.append(float(f.reid))
            turned = self._state in ("turning", "turned")
            floor = p.reid_turned if turned else p.reid_front
            if f.reid < floor:
                self._fail("different_face")
                return False
        return True

    def _speed_ok(self, t: float, lm: np.ndarray) -> bool:
        """No head turns faster than a person can: a picture swapped for
        another jumps between two frames."""
        last, self._last = self._last, (t, lm)
        if last is None:
            return True
        dt = t - last[0]
        if not 0 < dt <= self.p.rate_window_s:
            return True
        rate = Parallax.between(last[1], lm).residual / dt
        self._max_rate = max(self._max_rate, rate)
        if rate > self.p.max_rate:
            self._fail("no_continuous_turn")
            return False
        return True

    def _add_baseline(self, lm: np.ndarray, t: float) -> None:
        """Frames before the prompt: the prompt is given once the face has been
        still for ``min_baseline_frames`` frames, and not before ``prompt_after``."""
        if self._ref is not None:
            step = Parallax.between(self._ref, lm).residual
            if step > self.p.steady_step or abs(pose_yaw(lm)) > self.p.max_baseline_yaw:
                # still moving, or still turned (from a first attempt): not a baseline
                self._baseline = []
            else:
                self._noise = max(self._noise, step)
        self._baseline.append(lm)
        self._ref = lm
        if len(self._baseline) >= self.p.min_baseline_frames and t >= self.prompt_after:
            self._yaw0 = float(np.median([pose_yaw(b) for b in self._baseline]))
            self.prompted_at = t
            f = self._frame
            meter = self._meter
            if (
                meter is not None
                and f is not None
                and f.thumb is not None
                and f.box is not None
                and f.thumb_scale > 0
            ):
                pts = meter.points(f.thumb, f.box, f.thumb_scale)
                self._ref_thumb = (f.thumb, pts, f.box, f.thumb_scale)

    def _surround(self) -> float | None:
        """How far the band around the face moved since the prompt
        (``surround_motion``), or None without the thumbnails to tell."""
        f, ref, meter = self._frame, self._ref_thumb, self._meter
        if ref is None or meter is None or f is None or f.thumb is None or f.box is None:
            return None
        thumb, pts, box, scale = ref
        if abs(f.thumb_scale - scale) > 1e-9:
            return None
        return meter.motion(thumb, pts, f.thumb, box, f.box, scale, self.p.surround_quantile)

    def _motion(self, lm: np.ndarray) -> None:
        p = self.p
        assert self._ref is not None
        par = Parallax.between(self._ref, lm)
        dyaw = (pose_yaw(lm) - self._yaw0) * self.sign
        corr = -par.depth_corr * self.sign  # a turn to the nose's image-right gives corr < 0
        nose = -par.nose * self.sign
        excess = par.residual / max(fitted_parallax(self._ref, lm), head_parallax(1.0))
        need = max(p.min_parallax, p.noise_factor * self._noise)
        self._need = need
        b = self._best
        b["parallax"] = max(b["parallax"], par.residual)
        b["yaw"], b["depth_corr"] = max(b["yaw"], dyaw), max(b["depth_corr"], corr)
        b["nose"] = max(b["nose"], nose)
        if par.residual >= need:
            self._best_rigid_ratio = min(self._best_rigid_ratio, par.rigid_ratio)
            self._best_excess = min(self._best_excess, excess)
        is_turned = (
            par.residual >= need
            and dyaw >= p.min_yaw_deg
            and corr >= p.min_depth_corr
            and nose >= p.min_nose
            and par.rigid_ratio <= p.max_rigid_ratio
            and excess <= p.max_parallax_excess
        )
        surround = None
        if is_turned:
            # tracked only on the frames every landmark check passes
            surround = self._surround()
            if surround is not None:
                if self._best_surround < 0 or surround < self._best_surround:
                    self._best_surround = surround
                is_turned = surround <= p.max_surround_motion
            else:
                yaw_excess = par.residual / head_parallax(max(dyaw, 1.0))
                is_turned = (
                    par.residual >= p.blank_surround_min_parallax
                    and yaw_excess <= p.blank_surround_max_yaw_excess
                )
        if dyaw <= -p.wrong_way_deg and par.residual >= need and corr <= -p.min_depth_corr:
            self._fail("wrong_direction")
            return
        if is_turned:
            self._state = "turned"
            self._turned += 1
            if par.residual > self._peak_res:
                self._peak_res, self._peak_corr, self._peak_nose = par.residual, corr, nose
                self._peak_rigid = par.rigid_ratio
                self._peak_excess = excess
                self._peak_surround = -1.0 if surround is None else surround
            self._peak_yaw = max(self._peak_yaw, dyaw)
            if not p.require_return and self._turned >= p.turned_frames:
                self._finish()
            return
        moving = par.residual >= need * 0.35 or dyaw >= p.min_yaw_deg * 0.5
        if self._state == "front" and moving:
            self._state = "turning"
        elif self._state == "turned" and par.residual < need * 0.6:
            self._round_trips += 1
            if self._round_trips > p.max_round_trips:
                self._fail("erratic_motion")
                return
            if self._turned >= p.turned_frames:
                self._state = "back"
                self._finish()
            else:
                self._state, self._turned = "front", 0  # a glance is not a turn
        elif self._state == "turning" and not moving:
            self._state = "front"

    def _finish(self) -> None:
        p = self.p
        if len(self._reids) < p.min_reid_frames:
            self._fail("not_reidentified")
            return
        self._verdict = ChallengeVerdict(True, "", self.detail())

    # -- reading ------------------------------------------------------------------
    def detail(self) -> dict[str, float]:
        return {
            "turn_frames": float(self.frames),
            "turn_turned_frames": float(self._turned),
            "turn_peak_parallax": round(self._peak_res, 4),
            "turn_peak_depth_corr": round(self._peak_corr, 3),
            "turn_peak_yaw": round(self._peak_yaw, 1),
            "turn_peak_nose": round(self._peak_nose, 3),
            "turn_peak_rigid_ratio": round(self._peak_rigid, 3),
            "turn_peak_excess": round(self._peak_excess, 3),
            "turn_best_excess": round(self._best_excess, 3),
            # -1: not measured (no thumbnail, or too few points in the band)
            "turn_peak_surround": round(self._peak_surround, 4),
            "turn_best_surround": round(self._best_surround, 4),
            "turn_need": round(self._need, 4),
            "turn_best_parallax": round(self._best["parallax"], 4),
            "turn_best_yaw": round(self._best["yaw"], 1),
            "turn_best_depth_corr": round(self._best["depth_corr"], 3),
            "turn_best_nose": round(self._best["nose"], 3),
            "turn_best_rigid_ratio": round(self._best_rigid_ratio, 3),
            "turn_noise": round(self._noise, 4),
            "turn_max_rate": round(self._max_rate, 3),
            "reid_min": round(min(self._reids), 4) if self._reids else -1.0,
            "reid_frames": float(len(self._reids)),
            "second_face_frames": float(self._second_face_frames),
        }

    def verdict(self, now: float | None = None) -> ChallengeVerdict:
        if self._verdict.passed is None and now is not None and now >= self.deadline:
            self._fail("challenge_timeout")
        if self._verdict.passed is None:
            self._verdict.detail = self.detail()
        return self._verdict

    @property
    def at_rest(self) -> bool:
        """The face is facing the camera (not turning or turned)."""
        return self._state == "front"

    @property
    def passive_scores(self) -> Sequence[float]:
        return tuple(self._passive)
