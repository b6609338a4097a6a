"""A second, independently designed clip generator: a doorway seen by a camera
about 3 m in front of it, with people made from photographs.

It shares nothing with :mod:`face.footfall.synth` but the truth file format
that ``footfall eval --truth`` reads. Where ``synth`` moves flat face
cut-outs along scripted image paths, this one places people in a 3-D room
and projects them through a pinhole camera:

* **Camera.** 1.95 m above the floor, tilted 20 degrees down, focal length
  450 px at 640x480, facing a door in the back wall 3.2 m away. A face is
  about 20 px wide in the doorway and about 90 px at the counting line (a
  floor line 0.72 m in front of the camera); heads of different heights
  project to different rows, as they do through a real lens.
* **People from photographs.** Faces (with their hair) are cut from the
  labelled test photographs (``tests/data/faces``) and from the sample photos
  that installed packages ship (scikit-image's ``astronaut``). The back of a
  head is an ellipse textured with the hair region cut from above a face in
  those photographs, with a strip of the same person's skin as the neck.
  Torsos, arms and legs are polygons textured with clothing cut from below
  the chin in the same photographs. Nothing is downloaded.
* **Room.** Wall and floor textured from scikit-image's sample photographs
  (``brick``, ``gravel``), a door opening onto daylight (``grass``); people
  outside are seen only through the door.
* **Image degradation.** Motion blur along each person's image motion
  (exposure 1/30 s), lighting that drifts and steps (a door light, a cloud),
  a colour cast, sensor noise, and H.264 compression (``libx264`` through
  PyAV, the FFmpeg build the ``av`` wheel ships; constant rate factor 24-30).

Ground truth is physical: a person crosses when their feet go from clearly
outside (more than ``CLEAR_M`` beyond the floor line, towards the door) to
clearly inside (more than ``CLEAR_M`` in front of it), or back. The counter
never sees the floor: it counts heads against an image line, so lingering
and pausing people of different heights are a real test, not a scripted
convenience.

Clips are split by seed: seeds below 100 are the **tuning** set, seeds of
100 and above are **held out** (:func:`split_of`). Thresholds are chosen on
tuning clips only.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from face.footfall.counting import LineSpec
from terminal.core.errors import TerminalError

TRUTH_SCHEMA = 1
GENERATOR = "doorway"
WIDTH, HEIGHT, FPS = 640, 480, 15.0
HELD_OUT_FROM = 100  # seeds >= this are held out
TUNING_SEEDS: tuple[int, ...] = (1, 2, 3)
HELD_OUT_SEEDS: tuple[int, ...] = (101, 102, 103)

# The room, in metres: x to the right, z away from the camera along the floor.
Z_WALL = 3.2  # the back wall with the door
DOOR_X = (-0.55, 0.55)
DOOR_TOP = 2.1
Z_LINE = 0.72  # the floor line that is the threshold of the counted area
CLEAR_M = 0.3  # truth: a crossing goes from beyond +CLEAR_M to beyond -CLEAR_M
Z_OUTSIDE = 4.2  # where people start outside the door
Z_UNDER = 0.12  # under the camera (out of the picture)
FACE_M = 0.15  # face width
MEDIAN_HEAD = 1.50  # centre of the head above the floor, median person

Facing = Literal["camera", "away", "left", "right"]


class DoorwayError(TerminalError):
    code = "footfall_doorway_failed"


def split_of(seed: int) -> str:
    """``tuning`` or ``held_out``: the split is fixed by the seed alone."""
    return "held_out" if seed >= HELD_OUT_FROM else "tuning"


# --------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class Camera:
    height_m: float = 1.95
    tilt_deg: float = 20.0
    focal_px: float = 450.0
    width: int = WIDTH
    height: int = HEIGHT

    def project(self, x: float, y: float, z: float) -> tuple[float, float, float]:
        """(u, v, depth) of the world point (x right, y up from the floor, z ahead)."""
        th = math.radians(self.tilt_deg)
        dy = self.height_m - y
        zc = dy * math.sin(th) + z * math.cos(th)
        yc = dy * math.cos(th) - z * math.sin(th)
        zc = max(zc, 1e-3)
        return (
            self.width / 2 + self.focal_px * x / zc,
            self.height / 2 + self.focal_px * yc / zc,
            zc,
        )

    def px(self, metres: float, depth: float) -> float:
        return self.focal_px * metres / depth

    def line_row(self) -> float:
        """Image row of a median head standing on the floor line."""
        return self.project(0.0, MEDIAN_HEAD, Z_LINE)[1]

    def line_face_px(self) -> float:
        """Face width of a median head standing on the floor line."""
        return self.px(FACE_M, self.project(0.0, MEDIAN_HEAD, Z_LINE)[2])

    def line_spec(self) -> LineSpec:
        """The image line through a median head on the floor line, with the
        face width there (a depth line, as a technician would set it)."""
        y = self.line_row() / self.height
        return LineSpec(
            0.03,
            round(y, 4),
            0.97,
            round(y, 4),
            inside="below",
            hysteresis=0.03,  # 14 px at 480: +-5 % of head width on a depth line
            face_px=round(self.line_face_px(), 1),
        )


# --------------------------------------------------------------------------- assets


@dataclass(frozen=True)
class Head:
    key: str
    identity: str
    image: np.ndarray  # (S, S, 3) BGR, face centred
    alpha: np.ndarray  # (S, S) float32
    face_frac: float  # face width / side
    hair: np.ndarray  # hair texture cut from above the face
    skin: tuple[int, int, int]  # BGR, from the cheeks
    cloth: np.ndarray | None  # clothing cut from below the chin (None when the photo ends there)


@dataclass(frozen=True)
class Assets:
    heads: tuple[Head, ...]
    cloths: tuple[np.ndarray, ...]
    wall: np.ndarray
    floor: np.ndarray
    outside: np.ndarray


FaceFinder = Callable[[np.ndarray], list[tuple[np.ndarray, float]]]


def _ellipse_alpha(side: int, rx: float, ry: float, soft: float = 0.12) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    c = (side - 1) / 2.0
    r = np.sqrt(((xx - c) / (rx * side)) ** 2 + ((yy - c) / (ry * side)) ** 2)
    out: np.ndarray = np.clip((1.0 - r) / soft, 0.0, 1.0).astype(np.float32)
    return out


def cut_head(
    image: np.ndarray, box: Sequence[float] | np.ndarray, key: str, identity: str
) -> Head | None:
    """The head (face with hair), hair and clothing textures of one photographed face."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    fw, fh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = 1.7 * max(fw, fh)
    hcy = cy - 0.12 * fh  # the head's centre is above the face's (hair)
    s = 160
    a = s / side
    m = np.array([[a, 0.0, -(cx - side / 2) * a], [0.0, a, -(hcy - side / 2) * a]])
    crop = cv2.warpAffine(image, m, (s, s), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    hy0, hy1 = int(max(0, y1 - 0.5 * fh)), int(max(0, y1 - 0.08 * fh))
    hx0, hx1 = int(max(0, x1 + 0.05 * fw)), int(min(w, x2 - 0.05 * fw))
    if hy1 - hy0 < 6 or hx1 - hx0 < 10:
        return None
    hair = image[hy0:hy1, hx0:hx1].copy()
    ky0, ky1 = int(cy + 0.05 * fh), int(cy + 0.25 * fh)
    kx0, kx1 = int(x1 + 0.15 * fw), int(x1 + 0.3 * fw)
    cheek = image[max(0, ky0) : max(1, ky1), max(0, kx0) : max(1, kx1)].reshape(-1, 3)
    skin = tuple(int(v) for v in np.median(cheek, axis=0)) if len(cheek) else (120, 140, 180)
    cy0, cy1 = int(y2 + 0.35 * fh), int(min(h, y2 + 1.8 * fh))
    cx0, cx1 = int(max(0, cx - 1.0 * fw)), int(min(w, cx + 1.0 * fw))
    cloth = image[cy0:cy1, cx0:cx1].copy() if cy1 - cy0 >= 0.4 * fh and cx1 - cx0 > fw else None
    return Head(
        key,
        identity,
        crop,
        _ellipse_alpha(s, 0.40, 0.48),
        fw / side,
        hair,
        (skin[0], skin[1], skin[2]),
        cloth,
    )


def _sample(name: str) -> np.ndarray | None:
    """A scikit-image sample photograph shipped in the wheel (never fetched)."""
    try:
        import skimage.data

        p = Path(skimage.data.data_dir) / name
        if not p.is_file():
            return None
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        return img if img is not None and img.size else None
    except Exception:
        return None


def build_assets(images: Sequence[tuple[Path, str]], find_faces: FaceFinder) -> Assets:
    """Heads, hair and clothing from the photographs, and the room's textures."""
    from face.pipeline import load_image

    sources: list[tuple[np.ndarray, str, str]] = [
        (load_image(p), p.name, ident) for p, ident in images
    ]
    astro = _sample("astronaut.png")
    if astro is not None:
        sources.append((astro, "skimage_astronaut", "skimage_astronaut"))
    heads: list[Head] = []
    for img, key, ident in sources:
        found = [(b, s) for b, s in find_faces(img) if float(b[2] - b[0]) >= 60]
        if not found:
            continue
        box = max(found, key=lambda f: float(f[0][2] - f[0][0]))[0]
        head = cut_head(img, box, key, ident)
        if head is not None:
            heads.append(head)
    if len(heads) < 6:
        raise DoorwayError(f"need at least 6 photographed heads, found {len(heads)}")
    cloths = tuple(h.cloth for h in heads if h.cloth is not None)
    if len(cloths) < 3:
        raise DoorwayError("need clothing from at least 3 photographs")
    wall = _sample("brick.png")
    floor = _sample("gravel.png")
    outside = _sample("grass.png")
    if wall is None or floor is None or outside is None:
        raise DoorwayError("scikit-image's sample photographs (brick, gravel, grass) are missing")
    return Assets(tuple(heads), cloths, wall, floor, outside)


# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class Key:
    t: float
    x: float
    z: float
    facing: Facing | None = None  # None: from the direction of travel


@dataclass(frozen=True)
class Walker:
    keys: tuple[Key, ...]
    head: int  # index into Assets.heads
    cloth: int
    trousers: int
    head_y: float = MEDIAN_HEAD  # head centre above the floor (m)
    sway_m: float = 0.0  # sway while standing still

    def state(self, t: float) -> tuple[float, float, Facing, float] | None:
        """(x, z, facing, walking speed m/s) at ``t`` or None when not in the scene."""
        k = self.keys
        if t < k[0].t or t > k[-1].t:
            return None
        for a, b in itertools.pairwise(k):
            if a.t <= t <= b.t:
                f = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
                x, z = a.x + (b.x - a.x) * f, a.z + (b.z - a.z) * f
                dx, dz = b.x - a.x, b.z - a.z
                dist = math.hypot(dx, dz)
                speed = dist / (b.t - a.t) if b.t > a.t else 0.0
                if b.facing is not None:
                    facing: Facing = b.facing
                elif dist < 1e-6:
                    facing = a.facing or "camera"
                elif abs(dx) > abs(dz):
                    facing = "right" if dx > 0 else "left"
                else:
                    facing = "camera" if dz < 0 else "away"
                if speed < 0.05 and self.sway_m > 0:
                    x += self.sway_m * 0.5 * math.sin(2 * math.pi * 0.4 * t)
                    z += self.sway_m * math.sin(2 * math.pi * 0.6 * t + 1.0)
                return x, z, facing, speed
        return None


def _walk(
    t0: float, pts: Sequence[tuple[float, float]], speed: float, facing: Facing | None = None
) -> tuple[list[Key], float]:
    """Keys along ``pts`` at ``speed`` m/s from ``t0``; returns them and the end time."""
    keys = [Key(t0, pts[0][0], pts[0][1], facing)]
    t = t0
    for (x0, z0), (x1, z1) in itertools.pairwise(pts):
        t += max(0.05, math.hypot(x1 - x0, z1 - z0) / speed)
        keys.append(Key(t, x1, z1, facing))
    return keys, t


@dataclass
class _Cast:
    """Draws distinct people for one clip."""

    rng: np.random.Generator
    assets: Assets
    used: list[int] = field(default_factory=list)

    def person(self, keys: Sequence[Key], *, sway: float = 0.0) -> Walker:
        heads = self.assets.heads
        free = [i for i in range(len(heads)) if heads[i].identity not in self._ids()]
        pool = free or list(range(len(heads)))
        head = int(self.rng.choice(pool))
        self.used.append(head)
        n = len(self.assets.cloths)
        cloth = int(self.rng.integers(0, n))
        return Walker(
            tuple(keys),
            head,
            cloth,
            int((cloth + 1 + self.rng.integers(0, n - 1)) % n),
            head_y=float(self.rng.uniform(1.40, 1.60)),
            sway_m=sway,
        )

    def _ids(self) -> set[str]:
        return {self.assets.heads[i].identity for i in self.used}

    def speed(self) -> float:
        return float(self.rng.uniform(0.55, 1.05))  # elderly walking speeds, m/s

    def x(self, lo: float = -0.35, hi: float = 0.35) -> float:
        return float(self.rng.uniform(lo, hi))


def _enter(c: _Cast, t0: float, x: float, speed: float | None = None) -> tuple[list[Key], float]:
    s = speed or c.speed()
    xi = x + float(c.rng.uniform(-0.25, 0.25))
    return _walk(t0, [(x * 0.5, Z_OUTSIDE), (x, Z_WALL - 0.3), (xi, Z_UNDER)], s)


def _exit(c: _Cast, t0: float, x: float, speed: float | None = None) -> tuple[list[Key], float]:
    s = speed or c.speed()
    xi = x + float(c.rng.uniform(-0.25, 0.25))
    return _walk(t0, [(xi, Z_UNDER), (x, Z_WALL - 0.3), (x * 0.5, Z_OUTSIDE)], s)


@dataclass(frozen=True)
class Scenario:
    name: str
    walkers: tuple[Walker, ...]
    duration: float
    notes: str


def _sc_single_entry(c: _Cast) -> Scenario:
    keys, end = _enter(c, 0.3, c.x())
    return Scenario("single_entry", (c.person(keys),), end + 0.5, "one person walks in")


def _sc_single_exit(c: _Cast) -> Scenario:
    keys, end = _exit(c, 0.3, c.x())
    return Scenario("single_exit", (c.person(keys),), end + 0.5, "one person walks out (back)")


def _sc_pair(c: _Cast) -> Scenario:
    s = c.speed()
    gap = float(c.rng.uniform(0.45, 0.6))
    x = c.x(-0.1, 0.1)
    a, end_a = _walk(0.3, [(x - gap / 2, Z_OUTSIDE), (x - gap / 2, Z_UNDER)], s)
    b, _ = _walk(0.3, [(x + gap / 2, Z_OUTSIDE - 0.1), (x + gap / 2, Z_UNDER - 0.1)], s)
    s2 = c.speed()
    t1 = end_a + 0.8
    d, end_d = _walk(t1, [(x - gap / 2, Z_UNDER), (x - gap / 2, Z_OUTSIDE)], s2)
    e, _ = _walk(t1, [(x + gap / 2, Z_UNDER - 0.1), (x + gap / 2, Z_OUTSIDE - 0.1)], s2)
    people = (c.person(a), c.person(b), c.person(d), c.person(e))
    return Scenario("pair_side_by_side", people, end_d + 0.5, "two in side by side, two out")


def _sc_tailgate(c: _Cast) -> Scenario:
    s = c.speed()
    x = c.x(-0.2, 0.2)
    lag = float(c.rng.uniform(0.55, 0.9))  # seconds behind
    a, _ = _walk(0.3, [(x, Z_OUTSIDE), (x, Z_UNDER)], s)
    b, end_b = _walk(0.3 + lag, [(x + 0.08, Z_OUTSIDE), (x + 0.1, Z_UNDER)], s)
    d, _ = _walk(end_b + 0.5, [(x, Z_UNDER), (x, Z_OUTSIDE)], s)
    e, end_e = _walk(end_b + 0.5 + lag, [(x - 0.08, Z_UNDER), (x - 0.1, Z_OUTSIDE)], s)
    people = (c.person(a), c.person(b), c.person(d), c.person(e))
    return Scenario("tailgating", people, end_e + 0.5, "one close behind another, in then out")


def _sc_pause(c: _Cast) -> Scenario:
    x, s = c.x(), c.speed()
    zp = Z_LINE + float(c.rng.uniform(-0.08, 0.08))
    k1, t1 = _walk(0.3, [(x, Z_OUTSIDE), (x, zp)], s)
    pause = float(c.rng.uniform(2.0, 3.5))
    k2, end = _walk(t1 + pause, [(x, zp), (x, Z_UNDER)], s)
    walker = c.person([*k1, *k2], sway=0.04)
    return Scenario("pause_on_line", (walker,), end + 0.5, "stops on the line, then walks in")


def _sc_linger(c: _Cast) -> Scenario:
    x, s = c.x(), c.speed()
    zp = Z_LINE + float(c.rng.uniform(-0.1, 0.1))
    k1, t1 = _walk(0.3, [(x, Z_OUTSIDE), (x, zp)], s)
    stay = float(c.rng.uniform(5.0, 7.0))
    k2, end = _walk(t1 + stay, [(x, zp), (x * 0.5, Z_OUTSIDE)], s)
    walker = c.person([*k1, *k2], sway=0.08)
    return Scenario("lingering", (walker,), end + 0.5, "lingers on the line, goes back out")


def _sc_uturn(c: _Cast) -> Scenario:
    x, s = c.x(), c.speed()
    zt = Z_LINE - float(c.rng.uniform(0.05, 0.15))
    k1, t1 = _walk(0.3, [(x, Z_OUTSIDE), (x, zt)], s)
    k2, end = _walk(t1 + 0.4, [(x, zt), (x + 0.2, Z_OUTSIDE)], s)
    return Scenario("u_turn", (c.person([*k1, *k2]),), end + 0.5, "steps past the line, turns back")


def _sc_recross(c: _Cast) -> Scenario:
    x, s = c.x(), c.speed()
    zi = float(c.rng.uniform(0.2, 0.3))
    zo = Z_WALL - float(c.rng.uniform(0.4, 0.8))
    k1, t1 = _walk(0.3, [(x, Z_OUTSIDE), (x, zi)], s)
    k2, t2 = _walk(t1 + 0.6, [(x, zi), (x + 0.15, zo)], s)
    k3, end = _walk(t2 + 0.6, [(x + 0.15, zo), (x, Z_UNDER)], s)
    walker = c.person([*k1, *k2, *k3])
    return Scenario("re_crossing", (walker,), end + 0.5, "in, back out, in again")


def _sc_cross_traffic(c: _Cast) -> Scenario:
    keys, end = _enter(c, 0.3, c.x(-0.2, 0.2))
    zc = float(c.rng.uniform(1.2, 2.2))
    tc = float(c.rng.uniform(0.5, 2.0))
    side, _ = _walk(tc, [(-2.2, zc), (2.2, zc + 0.1)], float(c.rng.uniform(0.8, 1.2)))
    people = (c.person(keys), c.person(side))
    return Scenario("cross_traffic", people, end + 0.5, "one walks in, one crosses the room")


def _sc_far(c: _Cast) -> Scenario:
    # two people talk in the doorway (faces about 20-25 px) and never come close
    za, zb = float(c.rng.uniform(2.6, 3.0)), float(c.rng.uniform(2.6, 3.0))
    a, _ = _walk(0.0, [(-0.3, Z_OUTSIDE), (-0.3, za)], 0.8)
    b, _ = _walk(0.2, [(0.3, Z_OUTSIDE), (0.3, zb)], 0.8)
    keys, end = _enter(c, 2.0, c.x(), c.speed())
    a2, end_a = _walk(end + 0.2, [(-0.3, za), (-0.1, Z_OUTSIDE)], 0.8)
    b2, _ = _walk(end + 0.4, [(0.3, zb), (0.1, Z_OUTSIDE)], 0.8)
    people = (
        c.person([*a, Key(end, -0.3, za, "camera"), *a2], sway=0.06),
        c.person([*b, Key(end + 0.2, 0.3, zb, "camera"), *b2], sway=0.06),
        c.person(keys),
    )
    return Scenario("small_far_faces", people, end_a + 0.5, "two stay far at the door, one enters")


SCENARIOS: dict[str, Callable[[_Cast], Scenario]] = {
    "single_entry": _sc_single_entry,
    "single_exit": _sc_single_exit,
    "pair_side_by_side": _sc_pair,
    "tailgating": _sc_tailgate,
    "pause_on_line": _sc_pause,
    "lingering": _sc_linger,
    "u_turn": _sc_uturn,
    "re_crossing": _sc_recross,
    "cross_traffic": _sc_cross_traffic,
    "small_far_faces": _sc_far,
}


def scenario(name: str, seed: int, assets: Assets) -> Scenario:
    if name not in SCENARIOS:
        raise DoorwayError(f"unknown doorway scenario {name!r}")
    index = list(SCENARIOS).index(name)
    rng = np.random.default_rng([seed, index, 7919])
    return SCENARIOS[name](_Cast(rng, assets))


# --------------------------------------------------------------------------- truth


def truth_events(sc: Scenario, fps: float = FPS) -> list[dict[str, Any]]:
    """Physical crossings of the floor line, from clearly one side to clearly the other."""
    n = round(sc.duration * fps)
    out: list[dict[str, Any]] = []
    for idx, w in enumerate(sc.walkers):
        side = 0
        for i in range(n):
            st = w.state(i / fps)
            if st is None:
                continue
            d = Z_LINE - st[1]  # > 0 inside (nearer the camera)
            now = 1 if d > CLEAR_M else -1 if d < -CLEAR_M else 0
            if now == 0:
                continue
            if side and now != side:
                out.append(
                    {
                        "frame": i,
                        "t": round(i / fps, 3),
                        "actor": idx,
                        "direction": "in" if now > 0 else "out",
                    }
                )
            side = now
    out.sort(key=lambda e: (e["frame"], e["actor"]))
    return out


# --------------------------------------------------------------------------- rendering


def _tint(gray_or_bgr: np.ndarray, bgr: tuple[float, float, float]) -> np.ndarray:
    g = gray_or_bgr
    if g.ndim == 3:
        g = cv2.cvtColor(g, cv2.COLOR_BGR2GRAY)
    f = g.astype(np.float32) / 255.0
    out = np.stack([f * bgr[0], f * bgr[1], f * bgr[2]], -1)
    return np.clip(out, 0, 255).astype(np.uint8)


def _warp_quad(
    canvas: np.ndarray, tex: np.ndarray, quad: np.ndarray, mask_only: np.ndarray | None = None
) -> None:
    h, w = tex.shape[:2]
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(src, quad.astype(np.float32))
    H, W = canvas.shape[:2]
    warped = cv2.warpPerspective(tex, m, (W, H), flags=cv2.INTER_LINEAR)
    mask = np.zeros((H, W), np.uint8)
    cv2.fillConvexPoly(mask, quad.astype(np.int32), 255)
    if mask_only is not None:
        mask &= mask_only
    canvas[mask > 0] = warped[mask > 0]


def background(
    cam: Camera, assets: Assets, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The room (wall, floor, door with daylight) and the door opening's mask."""
    W, H = cam.width, cam.height
    img = np.zeros((H, W, 3), np.uint8)
    wall_col = tuple(float(v) for v in rng.uniform(150, 235, 3))
    floor_col = tuple(float(v) for v in rng.uniform(120, 210, 3))
    wall = _tint(assets.wall, (wall_col[0] * 1.3, wall_col[1] * 1.3, wall_col[2] * 1.3))
    floor = _tint(assets.floor, (floor_col[0] * 1.2, floor_col[1] * 1.2, floor_col[2] * 1.2))
    img[:] = np.array(wall_col, np.uint8)

    def p(x: float, y: float, z: float) -> tuple[float, float]:
        u, v, _ = cam.project(x, y, z)
        return u, v

    back = np.array([p(-4, 3.2, Z_WALL), p(4, 3.2, Z_WALL), p(4, 0, Z_WALL), p(-4, 0, Z_WALL)])
    _warp_quad(img, wall, back)
    fl = np.array([p(-4, 0, Z_WALL), p(4, 0, Z_WALL), p(4, 0, 0.25), p(-4, 0, 0.25)])
    _warp_quad(img, floor, fl)
    for sx in (-1, 1):  # side walls
        side = np.array(
            [
                p(sx * 2.6, 3.2, Z_WALL),
                p(sx * 2.6, 3.2, 0.3),
                p(sx * 2.6, 0, 0.3),
                p(sx * 2.6, 0, Z_WALL),
            ]
        )
        _warp_quad(img, wall, side)
    door = np.array(
        [
            p(DOOR_X[0], DOOR_TOP, Z_WALL),
            p(DOOR_X[1], DOOR_TOP, Z_WALL),
            p(DOOR_X[1], 0, Z_WALL),
            p(DOOR_X[0], 0, Z_WALL),
        ]
    )
    outside = _tint(assets.outside, (230, 250, 240))
    _warp_quad(img, outside, door)
    mask = np.zeros((H, W), np.uint8)
    cv2.fillConvexPoly(mask, door.astype(np.int32), 255)
    cv2.polylines(img, [door.astype(np.int32)], True, (60, 60, 70), 3)
    return img, mask


def _tex_fill(canvas: np.ndarray, alpha: np.ndarray, poly: np.ndarray, tex: np.ndarray) -> None:
    x0, y0 = np.floor(poly.min(0)).astype(int)
    x1, y1 = np.ceil(poly.max(0)).astype(int)
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1 + 1), min(H, y1 + 1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    t = cv2.resize(tex, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(m, [np.round(poly - [x0, y0]).astype(np.int32)], 255)
    sel = m > 0
    canvas[y0:y1, x0:x1][sel] = t[sel]
    alpha[y0:y1, x0:x1][sel] = 1.0


def _paste_sprite(
    canvas: np.ndarray,
    alpha: np.ndarray,
    img: np.ndarray,
    al: np.ndarray,
    cx: float,
    cy: float,
    side: int,
) -> None:
    if side < 3:
        return
    s_img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    s_al = cv2.resize(al, (side, side), interpolation=cv2.INTER_LINEAR)
    H, W = canvas.shape[:2]
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(W, x0 + side), min(H, y0 + side)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    a = s_al[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    s = s_img[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    sub = canvas[fy0:fy1, fx0:fx1].astype(np.float32)
    canvas[fy0:fy1, fx0:fx1] = (sub * (1 - a[..., None]) + s * a[..., None]).astype(np.uint8)
    alpha[fy0:fy1, fx0:fx1] = np.maximum(alpha[fy0:fy1, fx0:fx1], a)


def _back_of_head(head: Head, facing: Facing) -> tuple[np.ndarray, np.ndarray]:
    """A head seen from behind (or the side): hair over a skin-coloured neck."""
    s = 96
    img = np.empty((s, s, 3), np.uint8)
    img[:] = np.array(head.skin, np.uint8)
    hair = cv2.resize(head.hair, (s, int(s * 0.85)), interpolation=cv2.INTER_LINEAR)
    hair = cv2.flip(hair, 0)  # the hair's dark edge upwards
    img[: hair.shape[0]] = hair
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    shade = 0.75 + 0.35 * np.clip(1.0 - np.hypot(xx - 0.45, yy - 0.35) * 1.6, 0, 1)
    img = np.clip(img.astype(np.float32) * shade[..., None], 0, 255).astype(np.uint8)
    if facing in ("left", "right"):  # a side view: an ear and cheek of skin
        x0 = int(s * (0.55 if facing == "right" else 0.15))
        cv2.ellipse(img, (x0 + 14, int(s * 0.62)), (18, 22), 0, 0, 360, head.skin, -1)
    al = _ellipse_alpha(s, 0.40, 0.47)
    return img, al


@dataclass(frozen=True)
class Layer:
    image: np.ndarray
    alpha: np.ndarray
    x0: int
    y0: int
    depth: float


def render_person(
    cam: Camera,
    assets: Assets,
    w: Walker,
    t: float,
    fps: float,
) -> Layer | None:
    """The person as a layer (BGR, alpha, its place in the frame, depth), motion-blurred."""
    st = w.state(t)
    if st is None:
        return None
    x, z, facing, speed = st
    head = assets.heads[w.head]
    H, W = cam.height, cam.width
    canvas = np.zeros((H, W, 3), np.uint8)
    alpha = np.zeros((H, W), np.float32)
    hy = w.head_y
    phase = 2 * math.pi * 0.9 * t
    swing = 0.18 * math.sin(phase) * min(1.0, speed / 0.6)
    cloth = assets.cloths[w.cloth]
    trousers = cv2.convertScaleAbs(assets.cloths[w.trousers], alpha=0.55)
    sideways = facing in ("left", "right")
    half = 0.12 if sideways else 0.21

    def p(dx: float, y: float, dz: float = 0.0) -> tuple[float, float]:
        u, v, _ = cam.project(x + dx, y, z + dz)
        return u, v

    sh, hip = hy - 0.22, hy - 0.72
    for leg, sgn in ((-1, 1), (1, -1)):  # legs swing in opposite phases
        dz = sgn * swing * (0.3 if sideways else 1.0)
        dxf = sgn * swing if sideways else 0.0
        hx = leg * 0.08
        poly = np.array(
            [
                p(hx - 0.07, hip),
                p(hx + 0.07, hip),
                p(hx + 0.06 + dxf, 0.0, dz),
                p(hx - 0.06 + dxf, 0.0, dz),
            ]
        )
        _tex_fill(canvas, alpha, poly, trousers)
    torso = np.array(
        [p(-half, sh + 0.04), p(half, sh + 0.04), p(half * 0.85, hip), p(-half * 0.85, hip)]
    )
    _tex_fill(canvas, alpha, torso, cloth)
    for sgn in (-1, 1):  # arms
        arm = sgn * (half + 0.035) if not sideways else 0.0
        dz = -sgn * swing * 0.6
        poly = np.array(
            [
                p(arm - 0.04, sh),
                p(arm + 0.04, sh),
                p(arm + 0.035, hip + 0.05, dz),
                p(arm - 0.035, hip + 0.05, dz),
            ]
        )
        _tex_fill(canvas, alpha, poly, cloth)
    neck = np.array(
        [p(-0.05, hy - 0.05), p(0.05, hy - 0.05), p(0.06, sh + 0.03), p(-0.06, sh + 0.03)]
    )
    cv2.fillConvexPoly(canvas, np.round(neck).astype(np.int32), head.skin)
    cv2.fillConvexPoly(alpha, np.round(neck).astype(np.int32), 1.0)
    u, v, depth = cam.project(x, hy, z)
    if facing == "camera":
        side = round(cam.px(FACE_M, depth) / head.face_frac)
        _paste_sprite(canvas, alpha, head.image, head.alpha, u, v, side)
    else:
        img, al = _back_of_head(head, facing)
        side = round(cam.px(0.2, depth))
        _paste_sprite(canvas, alpha, img, al, u, v, side)
    ys, xs = np.nonzero(alpha > 0)
    if len(ys) == 0:
        return None
    pad = 14
    y0, y1 = max(0, int(ys.min()) - pad), min(H, int(ys.max()) + pad + 1)
    x0, x1 = max(0, int(xs.min()) - pad), min(W, int(xs.max()) + pad + 1)
    canvas, alpha = canvas[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    # motion blur along the image motion during a 1/30 s exposure
    nxt = w.state(min(t + 1.0 / fps, w.keys[-1].t))
    if nxt is not None:
        u2, v2, _ = cam.project(nxt[0], hy, nxt[1])
        du, dv = (u2 - u) * fps / 30.0, (v2 - v) * fps / 30.0
        length = math.hypot(du, dv)
        if length >= 2.0:
            k = int(min(25, round(length)))
            kern = np.zeros((k, k), np.float32)
            c = (k - 1) / 2
            ang = math.atan2(dv, du)
            cv2.line(
                kern,
                (round(c - math.cos(ang) * c), round(c - math.sin(ang) * c)),
                (round(c + math.cos(ang) * c), round(c + math.sin(ang) * c)),
                1.0,
                1,
            )
            kern /= max(kern.sum(), 1e-6)
            return Layer(
                cv2.filter2D(canvas, -1, kern), cv2.filter2D(alpha, -1, kern), x0, y0, depth
            )
    return Layer(canvas, alpha, x0, y0, depth)


def render_frames(
    sc: Scenario, assets: Assets, seed: int, cam: Camera | None = None, fps: float = FPS
) -> Iterator[np.ndarray]:
    cam = cam or Camera()
    rng = np.random.default_rng([seed, 31337])
    bg, door = background(cam, assets, rng)
    doorf = (door > 0).astype(np.float32)
    cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)  # colour cast of the light
    base = float(rng.uniform(0.75, 1.1))
    t_step = float(rng.uniform(0.2, 0.8)) * sc.duration
    step = float(rng.choice([-1, 1])) * float(rng.uniform(0.12, 0.22))
    noise_sd = float(rng.uniform(2.0, 5.0))
    yy = np.linspace(-1, 1, cam.height, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, cam.width, dtype=np.float32)[None, :]
    vignette = (1.0 - 0.25 * (xx**2 + yy**2))[..., None]
    bank = [rng.normal(0.0, noise_sd, bg.shape).astype(np.float32) for _ in range(9)]
    n = round(sc.duration * fps)
    for i in range(n):
        t = i / fps
        frame = bg.astype(np.float32)
        layers = []
        for w in sc.walkers:
            layer = render_person(cam, assets, w, t, fps)
            if layer is None:
                continue
            st = w.state(t)
            layers.append((layer, st is not None and st[1] > Z_WALL))
        for layer, outside in sorted(layers, key=lambda k: -k[0].depth):
            h, w_ = layer.alpha.shape
            ys, xs = slice(layer.y0, layer.y0 + h), slice(layer.x0, layer.x0 + w_)
            a = layer.alpha * doorf[ys, xs] if outside else layer.alpha
            sub = frame[ys, xs]
            frame[ys, xs] = sub * (1 - a[..., None]) + layer.image.astype(np.float32) * a[..., None]
        gain = base * (1.0 + 0.06 * math.sin(2 * math.pi * t / 5.5))
        gain *= 1.0 + step / (1.0 + math.exp(-(t - t_step) * 4.0))
        frame = frame * vignette * (gain * cast)
        frame += bank[i % len(bank)]
        yield np.clip(frame, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- files


def _write_h264(path: Path, frames: Iterator[np.ndarray], fps: float, crf: int) -> int:
    import av

    n = 0
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "g": "30"}
        for img in frames:
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            for packet in stream.encode(vf):
                out.mux(packet)
            n += 1
        for packet in stream.encode():
            out.mux(packet)
    return n


def clip_name(name: str, seed: int) -> str:
    return f"doorway_{name}_s{seed}"


def write_clip(
    name: str, seed: int, assets: Assets, out_dir: Path, cam: Camera | None = None
) -> tuple[Path, Path]:
    """Render one scenario with one seed to ``<out_dir>/<clip>.mp4`` (H.264) and
    its truth to ``<clip>.truth.json``."""
    cam = cam or Camera()
    sc = scenario(name, seed, assets)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = clip_name(name, seed)
    video = out_dir / f"{stem}.mp4"
    crf = int(np.random.default_rng([seed, 5]).integers(24, 31))
    tmp = video.with_suffix(".part.mp4")
    frames = _write_h264(tmp, render_frames(sc, assets, seed, cam), FPS, crf)
    tmp.replace(video)
    events = truth_events(sc)
    for e in events:
        e["identity"] = assets.heads[sc.walkers[e["actor"]].head].identity
    truth = {
        "schema": TRUTH_SCHEMA,
        "generator": GENERATOR,
        "scenario": name,
        "seed": seed,
        "split": split_of(seed),
        "clip": video.name,
        "fps": FPS,
        "frames": frames,
        "width": cam.width,
        "height": cam.height,
        "codec": f"h264 (libx264, crf {crf})",
        "line": cam.line_spec().as_dict(),
        "entries": sum(1 for e in events if e["direction"] == "in"),
        "exits": sum(1 for e in events if e["direction"] == "out"),
        "unique_visitors": len({e["identity"] for e in events if e["direction"] == "in"}),
        "events": events,
        "scenarios": [name],
        "notes": sc.notes,
    }
    path = out_dir / f"{stem}.truth.json"
    path.write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return video, path


def make_clips(
    out_dir: Path,
    find_faces: FaceFinder,
    images: Sequence[tuple[Path, str]],
    *,
    seeds: Sequence[int] = TUNING_SEEDS + HELD_OUT_SEEDS,
    names: Sequence[str] | None = None,
) -> list[tuple[Path, Path]]:
    """Every (scenario, seed) clip into ``out_dir``; clips already there are kept."""
    assets: Assets | None = None
    out = []
    for seed in seeds:
        for name in names or list(SCENARIOS):
            stem = clip_name(name, seed)
            v, t = out_dir / f"{stem}.mp4", out_dir / f"{stem}.truth.json"
            if v.is_file() and t.is_file():
                out.append((v, t))
                continue
            if assets is None:
                assets = build_assets(images, find_faces)
            out.append(write_clip(name, seed, assets, out_dir))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m face.footfall.doorway OUT_DIR [--seeds 1,2,101] [--scenarios a,b]``."""
    import argparse
    import sys

    from face.footfall.synth import default_face_images, pack_face_finder

    ap = argparse.ArgumentParser(prog="python -m face.footfall.doorway")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--pack", type=Path, default=None)
    ap.add_argument("--seeds", default=",".join(str(s) for s in TUNING_SEEDS + HELD_OUT_SEEDS))
    ap.add_argument("--scenarios", default="")
    args = ap.parse_args(argv)
    try:
        find = pack_face_finder(args.pack)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        names = [s for s in args.scenarios.split(",") if s.strip()] or None
        clips = make_clips(args.out_dir, find, default_face_images(), seeds=seeds, names=names)
    except TerminalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps([{"video": str(v), "truth": str(t)} for v, t in clips]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
