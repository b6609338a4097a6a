"""Synthetic presentations for measuring the liveness challenge.

Two families of clips, both made from real face photos:

* **genuine**: the photo's face is lifted onto a 3-D head (a textured
  triangle mesh whose depth comes from the 68-point 3-D mean face shape that
  the insightface wheel ships, ``data/objects/meanshape_68.pkl``) and rendered
  turning its head, swaying, blinking now and then, under camera noise,
  brightness drift and JPEG compression. This is the stand-in for a senior
  answering the challenge; the ``hwtests`` protocol measures real people.
* **attacks**: what someone holding a picture of an enrolled senior can do:
  a steady photo, a handheld one, a printed sheet (paper texture, tilt,
  bending), a phone screen (bezel, moire, glare), zooming, a still whose eyes
  are edited shut in alternate frames, a still whose nose is shifted in 2-D
  to fake a turn, two photos alternated, and another person's real face
  answering the challenge after the victim's photo was identified.

Nothing here is trained on; the clips are split into a tuning half and a
held-out half by seed (see :mod:`face.liveness_eval`).

The renderer is deliberately simple: piecewise-affine warping of mesh
triangles painted back to front. A turned head shows the texture of its
visible side stretched, which is close enough for a 64x64 landmark model.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from face.meanshape import mean_shape_68
from face.sources import SourceState, ThreadedSource

FPS = 8.0  # the kiosk analyses about 8 frames per second
WINDOW_S = 6.0  # the kiosk's challenge window (face.liveness_challenge_seconds)


# --------------------------------------------------------------------------- mesh


@dataclass(frozen=True)
class HeadMesh:
    src: np.ndarray  # (N, 2) texture coordinates in the photo
    xyz: np.ndarray  # (N, 3) head coordinates in pixels, origin at the rotation centre
    tris: np.ndarray  # (T, 3) vertex indices
    centre: np.ndarray  # (2,) image position of the rotation centre's projection


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale, rotation and translation mapping ``src`` onto ``dst`` (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / (s0**2).sum(1).mean())
    t = mu_d - scale * rot @ mu_s
    return scale, rot, t


def build_head(
    photo_lm68: np.ndarray,
    image_shape: tuple[int, ...],
    *,
    depth: float = 1.0,
    nose: float = 1.0,
) -> HeadMesh:
    """A head mesh over the face in a photo whose 68 landmarks are known.

    Real heads are not the mean shape: ``depth`` scales the face's depth and
    ``nose`` how far the nose (28-35) stands out from the top of its bridge (27).
    """
    from scipy.spatial import Delaunay

    from face.challenge import pose_yaw

    lm = np.asarray(photo_lm68, np.float64).reshape(68, 2)
    shape = mean_shape_68().copy()
    shape[:, 2] *= depth
    shape[28:36, 2] = shape[27, 2] + (shape[28:36, 2] - shape[27, 2]) * nose
    # The face in the photo may already be turned: take depth from the mean
    # shape turned the same way, so a further turn moves the right points.
    ms = shape @ _rotation(math.radians(pose_yaw(lm)), 0.0, 0.0).T
    scale, _rot, _t = _similarity(ms[:, :2], lm)
    z_face = ms[:, 2] * scale
    # The mean shape's x/y fitted to the photo, depth from the mean shape.
    pts2 = [lm]
    zs = [z_face]
    # Forehead: the brows lifted by a third of the brow-to-chin distance,
    # leaning back; then the crown.
    brow = lm[17:27]
    chin = lm[8]
    up = brow.mean(0) - chin
    up /= np.linalg.norm(up) + 1e-9
    face_h = float(np.linalg.norm(brow.mean(0) - chin))
    for k, back in ((0.22, 0.10), (0.42, 0.35)):
        pts2.append(brow + up * face_h * k)
        zs.append(z_face[17:27] - scale * back)
    # A ring around the outline for the sides of the head and the hair.
    outline = np.vstack([lm[0:17], (brow + up * face_h * 0.42)[::-1]])
    centre2 = outline.mean(0)
    ring = centre2 + (outline - centre2) * 1.22
    pts2.append(ring)
    zs.append(np.full(len(ring), -0.62 * scale))
    src = np.vstack(pts2)
    z = np.concatenate(zs)
    h, w = image_shape[:2]
    src[:, 0] = np.clip(src[:, 0], 0, w - 1)
    src[:, 1] = np.clip(src[:, 1], 0, h - 1)
    tri = Delaunay(src).simplices.astype(np.int32)
    # Rotation centre: behind the face, about at the neck's axis.
    pivot_z = -0.55 * scale
    xyz = np.column_stack([src[:, 0] - centre2[0], src[:, 1] - centre2[1], z - pivot_z])
    return HeadMesh(src=src, xyz=xyz, tris=tri, centre=centre2)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    r: np.ndarray = rz @ rx @ ry
    return r


def _warp_triangle(src_img: np.ndarray, dst_img: np.ndarray, s: np.ndarray, d: np.ndarray) -> None:
    x, y, w, h = cv2.boundingRect(d.astype(np.float32))
    if w <= 0 or h <= 0:
        return
    H, W = dst_img.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return
    m = cv2.getAffineTransform(s.astype(np.float32), (d - [x, y]).astype(np.float32))
    patch = cv2.warpAffine(
        src_img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(d - [x, y]).astype(np.int32), 255, lineType=cv2.LINE_8)
    sub = dst_img[y0:y1, x0:x1]
    mp = mask[y0 - y : y1 - y, x0 - x : x1 - x] > 0
    sub[mp] = patch[y0 - y : y1 - y, x0 - x : x1 - x][mp]


def project(
    xyz: np.ndarray,
    rot: np.ndarray,
    *,
    origin: np.ndarray,
    shift: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    distance: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Perspective projection of rotated points; returns (N, 2) image points and depths."""
    p = xyz @ rot.T
    persp = distance / (distance - p[:, 2])
    proj = np.column_stack([p[:, 0] * persp, p[:, 1] * persp]) * scale
    return proj + origin + np.asarray(shift), p[:, 2]


def _area2(t: np.ndarray) -> float:
    """Twice the signed area of a triangle (positive counter-clockwise in y-down)."""
    (ax, ay), (bx, by), (cx, cy) = t[0], t[1], t[2]
    return float((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))


def paint(
    texture: np.ndarray,
    src: np.ndarray,
    proj: np.ndarray,
    depth: np.ndarray,
    tris: np.ndarray,
    out: np.ndarray,
    *,
    feather: float = 0.0,
) -> None:
    """Paint a textured mesh into ``out``.

    Visibility is decided per pixel, back to front (triangles facing away are
    skipped): each pixel takes its source position through the affine map of
    the nearest visible triangle, and the texture is sampled once, bilinearly,
    for the whole mesh, so neighbouring triangles share their edges exactly
    (no cracks, no seams). ``feather`` (pixels) softens the mesh's outline
    against ``out``, as hair and the edge of a head are soft against what is
    behind them; 0 keeps the hard edge of a sheet of paper or a phone.
    """
    h, w = out.shape[:2]
    pad = 2 + math.ceil(3 * feather)
    x0, y0 = (max(0, math.floor(v) - pad) for v in proj.min(axis=0))
    x1, y1 = (
        min(w, math.ceil(proj[:, 0].max()) + pad),
        min(h, math.ceil(proj[:, 1].max()) + pad),
    )
    if x1 <= x0 or y1 <= y0:
        return
    origin = np.array([x0, y0], np.float64)
    index = np.full((y1 - y0, x1 - x0), -1, np.int32)
    maps = np.zeros((len(tris), 2, 3), np.float64)
    for ti in np.argsort(depth[tris].mean(axis=1)):
        s, d = src[tris[ti]], proj[tris[ti]] - origin
        d_area = _area2(d)
        if _area2(s) * d_area <= 0 or abs(d_area) < 0.5:
            continue
        maps[ti] = cv2.getAffineTransform(d.astype(np.float32), s.astype(np.float32))
        cv2.fillConvexPoly(index, np.round(d).astype(np.int32), int(ti), lineType=cv2.LINE_8)
    # a pixel between two triangles that rounding left out takes a neighbour's map
    grown = cv2.dilate(index.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
    gap = (index < 0) & (grown >= 0)
    gap &= cv2.erode((grown >= 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    index[gap] = grown[gap]
    ys, xs = np.nonzero(index >= 0)
    if len(ys) == 0:
        return
    m = maps[index[ys, xs]]
    mapx = np.full(index.shape, -1.0, np.float32)
    mapy = np.full(index.shape, -1.0, np.float32)
    mapx[ys, xs] = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]
    mapy[ys, xs] = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    sampled = cv2.remap(texture, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    alpha = (index >= 0).astype(np.float32)
    if feather > 0:
        # 0 at the outline, 1 about 1.5 ``feather`` inside it
        alpha = np.clip(2.0 * cv2.GaussianBlur(alpha, (0, 0), feather) - 1.0, 0.0, 1.0)
    a = alpha[..., None]
    region = out[y0:y1, x0:x1]
    region[:] = np.clip(sampled * a + region * (1.0 - a) + 0.5, 0, 255).astype(out.dtype)


def scene_behind(photo: np.ndarray, mesh: HeadMesh) -> np.ndarray:
    """The photo's own scene with the head taken out (inpainted), to stand the
    rendered head in: at rest the frame is the photo itself, and a turned head
    uncovers a plausible background rather than a second copy of the face."""
    h, w = photo.shape[:2]
    hull = cv2.convexHull(np.round(mesh.src).astype(np.int32))
    hole = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hole, hull, 255)
    mask = np.asarray(cv2.dilate(hole, np.ones((9, 9), np.uint8)))
    small = cv2.resize(photo, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, (w // 4, h // 4), interpolation=cv2.INTER_NEAREST)
    filled = cv2.inpaint(small, small_mask, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2)
    a = (cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 3))[..., None]
    out = photo.astype(np.float32) * (1 - a) + filled.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def close_eyes(image: np.ndarray, lm68: np.ndarray) -> np.ndarray:
    """Paint both eye openings with the skin above them (an edited or real shut eye)."""
    out = image.copy()
    for lo in (36, 42):
        pts = np.round(lm68[lo : lo + 6]).astype(np.int32)
        x, y, w, h = cv2.boundingRect(pts)
        above = out[max(0, y - h - 2) : max(1, y - 1), x : x + w]
        if above.size == 0:
            continue
        colour = above.reshape(-1, 3).mean(0)
        cv2.fillConvexPoly(out, cv2.convexHull(pts), colour.tolist(), lineType=cv2.LINE_AA)
        p0, p3 = (int(v) for v in pts[0]), (int(v) for v in pts[3])
        cv2.line(out, tuple(p0), tuple(p3), (colour * 0.55).tolist(), 1, cv2.LINE_AA)
    return out


def render_head(
    photo: np.ndarray,
    mesh: HeadMesh,
    background: np.ndarray,
    *,
    yaw_deg: float,
    pitch_deg: float = 0.0,
    roll_deg: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    blink: float = 0.0,
    focal_widths: float = 7.0,
    feather: float = 0.0,
) -> np.ndarray:
    """One frame of the head over ``background`` (same size as ``photo``);
    ``feather`` softens the head's outline (pixels)."""
    out = background.copy()
    r = _rotation(math.radians(yaw_deg), math.radians(pitch_deg), math.radians(roll_deg))
    face_w = float(np.ptp(mesh.xyz[:17, 0])) or 100.0
    proj, depth = project(
        mesh.xyz,
        r,
        origin=mesh.centre,
        shift=shift,
        scale=scale,
        distance=focal_widths * face_w,
    )
    texture = close_eyes(photo, mesh.src[:68]) if blink > 0.5 else photo
    paint(texture, mesh.src, proj, depth, mesh.tris, out, feather=feather)
    return out


# --------------------------------------------------------------------------- sheets


@dataclass(frozen=True)
class Sheet:
    """A flat (or bent) picture held in front of the camera: a grid mesh."""

    src: np.ndarray
    xyz: np.ndarray
    tris: np.ndarray
    size: tuple[int, int]


def make_sheet(picture: np.ndarray, *, bend: float = 0.0, cols: int = 10, rows: int = 8) -> Sheet:
    """A grid over ``picture``; ``bend`` curves it like a sheet held by its edges
    (depth of the centre relative to the edges, as a fraction of the width)."""
    h, w = picture.shape[:2]
    xs = np.linspace(0, w - 1, cols + 1)
    ys = np.linspace(0, h - 1, rows + 1)
    gx, gy = np.meshgrid(xs, ys)
    src = np.column_stack([gx.ravel(), gy.ravel()])
    u = (src[:, 0] / (w - 1)) * 2 - 1
    z = bend * w * (1 - u**2)
    xyz = np.column_stack([src[:, 0] - w / 2, src[:, 1] - h / 2, z])
    tris = []
    for r in range(rows):
        for c in range(cols):
            i = r * (cols + 1) + c
            tris += [(i, i + 1, i + cols + 1), (i + 1, i + cols + 2, i + cols + 1)]
    return Sheet(src, xyz, np.asarray(tris, np.int32), (w, h))


def render_sheet(
    sheet: Sheet,
    picture: np.ndarray,
    background: np.ndarray,
    *,
    centre: tuple[float, float],
    scale: float,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    roll_deg: float = 0.0,
) -> np.ndarray:
    out = background.copy()
    r = _rotation(math.radians(yaw_deg), math.radians(pitch_deg), math.radians(roll_deg))
    proj, depth = project(
        sheet.xyz,
        r,
        origin=np.asarray(centre, np.float64),
        scale=scale,
        distance=4.0 * sheet.size[0],
    )
    paint(picture, sheet.src, proj, depth, sheet.tris, out)
    return out


# --------------------------------------------------------------------------- camera


@dataclass
class Camera:
    """Sensor noise, brightness drift, blur and JPEG of a cheap USB camera."""

    rng: np.random.Generator
    noise: float = 4.0
    jpeg: int = 80
    blur: float = 0.0
    gain: float = 1.0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        img: np.ndarray = frame.astype(np.float32) * self.gain
        if self.blur > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), self.blur)
        img += self.rng.normal(0.0, self.noise, img.shape).astype(np.float32)
        ok, buf = cv2.imencode(
            ".jpg",
            np.clip(img, 0, 255).astype(np.uint8),
            [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg)],
        )
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if out is None:
            raise ValueError("JPEG round trip failed")
        return np.asarray(out)


def plain_background(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A wall with a gradient and a little texture (no faces)."""
    h, w = shape[:2]
    base = rng.uniform(90, 200, 3)
    grad = np.linspace(-25, 25, w, dtype=np.float32)[None, :, None]
    img = np.ones((h, w, 3), np.float32) * base + grad
    img += cv2.GaussianBlur(rng.normal(0, 12, (h, w, 3)).astype(np.float32), (0, 0), 3)
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- timelines


@dataclass(frozen=True)
class Clip:
    """A presentation: frames at ``FPS`` and what it is."""

    name: str
    kind: str  # "genuine" or the attack family
    seed: int
    frames: list[np.ndarray]
    prompt_index: int  # frame at which the challenge prompt appears
    direction: str  # the asked direction ("left" / "right" of the senior)
    identity: str = ""
    meta: dict[str, float] = field(default_factory=dict)


def smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


def turn_profile(
    rng: np.random.Generator,
    n: int,
    prompt: int,
    peak_deg: float,
    *,
    again: np.random.Generator | None = None,
    again_cap: float = 40.0,
) -> Iterator[float]:
    """Yaw per frame for someone who turns after the prompt and comes back.

    With ``again``, someone whose turn was not acknowledged (the prompt is
    still on the screen when they are back) turns once more, further
    (1.2-1.5 times, at most ``again_cap`` degrees), after looking at the
    screen for a moment. A turn that was acknowledged ends the attempt there,
    so the frames after it are never judged: rendering the second turn
    always is the same as rendering it only when it is needed."""
    react = prompt + int(rng.uniform(0.3, 0.9) * FPS)
    go = max(2, int(rng.uniform(0.45, 0.9) * FPS))
    hold = int(rng.uniform(0.1, 0.5) * FPS)
    back = max(2, int(rng.uniform(0.45, 0.9) * FPS))
    turns = [(react, go, hold, back, peak_deg)]
    if again is not None:
        start = react + go + hold + back + int(again.uniform(0.4, 0.9) * FPS)
        bigger = float(np.sign(peak_deg)) * min(
            abs(peak_deg) * float(again.uniform(1.2, 1.5)), max(again_cap, abs(peak_deg))
        )
        turns.append(
            (
                start,
                max(2, int(again.uniform(0.45, 0.9) * FPS)),
                int(again.uniform(0.1, 0.5) * FPS),
                max(2, int(again.uniform(0.45, 0.9) * FPS)),
                bigger,
            )
        )
    for i in range(n):
        yaw = 0.0
        for t0, up, stay, down, peak in turns:
            if t0 <= i < t0 + up:
                yaw = peak * smoothstep((i - t0) / up)
            elif t0 + up <= i < t0 + up + stay:
                yaw = peak
            elif t0 + up + stay <= i < t0 + up + stay + down:
                yaw = peak * (1 - smoothstep((i - t0 - up - stay) / down))
        yield yaw


def yaw_sign(direction: str, mirrored: bool = False) -> float:
    """Image-space yaw sign for the senior's own left/right (camera not mirrored):
    turning to one's left moves the nose towards the image's right."""
    s = 1.0 if direction == "left" else -1.0
    return -s if mirrored else s


Landmarker = Callable[[np.ndarray], np.ndarray | None]


def _walking_past(
    passer: np.ndarray, bg: np.ndarray, lm68: np.ndarray, seed: int
) -> Callable[[int], np.ndarray]:
    """Backgrounds with ``passer`` (resized to a body 1.1 x 2.5 face widths)
    walking past at head height, left to right on even seeds."""
    h, w = bg.shape[:2]
    face_w = float(np.ptp(lm68[:17, 0])) or 100.0
    pw, ph = int(face_w * 1.1), int(face_w * 2.5)
    body = cv2.resize(passer, (pw, ph))
    speed = (1 if seed % 2 == 0 else -1) * face_w * 1.5 / FPS
    start = w / 2 - face_w * 2.2 if speed > 0 else w / 2 + face_w * 2.2 - pw
    top = int(float(lm68[:, 1].mean()) - face_w)

    def at(i: int) -> np.ndarray:
        x = int(start + speed * i)
        x0, x1, y0, y1 = max(0, x), min(w, x + pw), max(0, top), min(h, top + ph)
        if x1 <= x0 or y1 <= y0:
            return bg
        out = bg.copy()
        out[y0:y1, x0:x1] = body[y0 - top : y1 - top, x0 - x : x1 - x]
        return out

    return at


def genuine_clip(
    photo: np.ndarray,
    lm68: np.ndarray,
    *,
    seed: int,
    direction: str,
    identity: str = "",
    window_s: float = WINDOW_S,
    blink_rate: float = 0.25,
    passer: np.ndarray | None = None,
) -> Clip:
    """A real-looking head answering a turn challenge.

    With ``passer`` (a picture of someone else), that person walks past
    behind the senior at head height, 1.5 face widths a second, through the
    picture beside the face at about the time of the prompt: a canteen queue.

    Each seed draws a different person and attempt: the head's depth and nose
    (real heads are not the mean shape), the pose at rest (looking at the
    screen, within a few degrees of frontal, whatever the photo's own pose),
    the reaction time, speed and amplitude of the turn, sway, blinks, the
    light falling on one side, and the camera's noise, blur, gain and JPEG.
    The head stands in the photo's own scene (the head inpainted out of it),
    its outline soft against it, as a person's is.
    """
    from face.challenge import pose_yaw

    rng = np.random.default_rng(seed)
    mesh = build_head(
        lm68,
        photo.shape,
        depth=float(rng.uniform(0.85, 1.15)),
        nose=float(rng.uniform(0.8, 1.2)),
    )
    bg = scene_behind(photo, mesh)
    face_w = float(np.ptp(np.asarray(lm68)[:17, 0])) or 100.0
    cam = Camera(
        rng,
        noise=float(rng.uniform(2, 7)),
        jpeg=int(rng.integers(55, 92)),
        blur=float(rng.uniform(0, 1.2)),
        gain=float(rng.uniform(0.8, 1.15)),
    )
    w = photo.shape[1]
    light = 1.0 + float(rng.uniform(-0.18, 0.18)) * np.linspace(-1, 1, w, dtype=np.float32)
    light = light[None, :, None]
    prompt = int(rng.uniform(0.6, 1.2) * FPS)
    n = prompt + int(window_s * FPS)
    peak = float(rng.uniform(18, 38)) * yaw_sign(direction)
    # looking at the screen: the photo's own pose turned back to about frontal
    rest = -pose_yaw(lm68) + float(rng.uniform(-4, 4))
    pitch0 = float(rng.uniform(-6, 6))
    roll0 = float(rng.uniform(-5, 5))
    drift = rng.normal(0, 1.2, size=(n, 2)).cumsum(axis=0)
    blink_at = {int(i) for i in np.nonzero(rng.random(n) < blink_rate / FPS)[0]}
    frames = []
    again = np.random.default_rng([seed, 2])
    behind = _walking_past(passer, bg, np.asarray(lm68), seed) if passer is not None else None
    for i, yaw in enumerate(turn_profile(rng, n, prompt, peak, again=again)):
        wob = math.sin(i / FPS * 2.1 + seed)
        frame = render_head(
            photo,
            mesh,
            bg if behind is None else behind(i),
            yaw_deg=rest + yaw + float(rng.normal(0, 0.8)),
            pitch_deg=pitch0 + 2.0 * wob + float(rng.normal(0, 0.5)),
            roll_deg=roll0 + 1.5 * wob,
            shift=(float(drift[i, 0]), float(drift[i, 1])),
            blink=1.0 if i in blink_at else 0.0,
            feather=face_w / 60.0,
        )
        lit = np.clip(frame.astype(np.float32) * light, 0, 255).astype(np.uint8)
        frames.append(cam(lit))
    return Clip(
        f"genuine-{identity}-{seed}",
        "genuine",
        seed,
        frames,
        prompt,
        direction,
        identity,
        {"peak_deg": peak, "rest_deg": rest},
    )


# --------------------------------------------------------------------------- photos


FRAME_W, FRAME_H = 640, 480


def prepare_photo(
    image: np.ndarray, lm68: np.ndarray, *, face_px: float = 170.0
) -> tuple[np.ndarray, np.ndarray]:
    """Crop and scale a photo to a 640x480 camera frame whose face is ``face_px``
    wide and centred; returns the frame and its landmarks in frame coordinates."""
    lm = np.asarray(lm68, np.float64).reshape(68, 2)
    width = float(np.ptp(lm[:17, 0])) or 1.0
    s = face_px / width
    cx, cy = lm[:, 0].mean(), lm[:, 1].mean()
    m = np.array([[s, 0, FRAME_W / 2 - s * cx], [0, s, FRAME_H / 2 - s * cy]], np.float64)
    frame = cv2.warpAffine(image, m, (FRAME_W, FRAME_H), borderMode=cv2.BORDER_REPLICATE)
    return frame, lm @ m[:, :2].T + m[:, 2]


def picture_of(
    frame: np.ndarray, lm: np.ndarray, margin: float = 1.1
) -> tuple[np.ndarray, np.ndarray]:
    """The part of a prepared photo an attacker would print: head and shoulders."""
    w = float(np.ptp(lm[:17, 0]))
    cx, cy = lm[:, 0].mean(), lm[:, 1].mean()
    x0, x1 = int(max(0, cx - w * margin)), int(min(frame.shape[1], cx + w * margin))
    y0, y1 = int(max(0, cy - w * margin * 1.25)), int(min(frame.shape[0], cy + w * margin * 1.2))
    return frame[y0:y1, x0:x1].copy(), lm - [x0, y0]


def _paper(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Printed on an office printer: a white border, lower contrast and saturation,
    paper grain and a faint halftone."""
    img = picture.astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.55, 0.85)
    img = 40 + img * rng.uniform(0.7, 0.85)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    period = rng.uniform(2.5, 4.0)
    img += 6 * (np.sin(xx / period) * np.sin(yy / period))[..., None]
    img += cv2.GaussianBlur(rng.normal(0, 10, (h, w, 1)).astype(np.float32), (0, 0), 0.8)[..., None]
    b = max(6, w // 14)
    out = np.full((h + 2 * b, w + 2 * b, 3), 235, np.float32)
    out[b : b + h, b : b + w] = img
    return np.clip(out, 0, 255).astype(np.uint8)


def _screen(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shown on a phone: black bezel, moire, a glare spot, a blue cast."""
    img = picture.astype(np.float32) * [1.05, 1.0, 0.92]
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    ang = rng.uniform(0, math.pi)
    period = rng.uniform(3.0, 6.0)
    img += 10 * np.sin((xx * math.cos(ang) + yy * math.sin(ang)) / period)[..., None]
    gx, gy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.5) * h
    glare = np.exp(-(((xx - gx) / (0.25 * w)) ** 2 + ((yy - gy) / (0.15 * h)) ** 2))
    img += (rng.uniform(40, 110) * glare)[..., None]
    b = max(8, w // 10)
    out = np.full((h + 2 * b, w + int(1.2 * b), 3), 12, np.float32)
    out[b : b + h, int(0.6 * b) : int(0.6 * b) + w] = img
    return np.clip(out, 0, 255).astype(np.uint8)


def _nose_shift(picture: np.ndarray, lm: np.ndarray, dx: float) -> np.ndarray:
    """Move the nose (and a little of the mouth) sideways by ``dx`` pixels in 2-D,
    as a photo editor would to fake a head turn."""
    from scipy.spatial import Delaunay

    h, w = picture.shape[:2]
    border = np.array(
        [
            [0, 0],
            [w - 1, 0],
            [0, h - 1],
            [w - 1, h - 1],
            [w / 2, 0],
            [w / 2, h - 1],
            [0, h / 2],
            [w - 1, h / 2],
        ],
        np.float64,
    )
    src = np.vstack([lm, border])
    dst = src.copy()
    dst[27:36, 0] += dx * np.linspace(0.4, 1.0, 9)
    dst[48:68, 0] += dx * 0.35
    tris = Delaunay(src).simplices
    out = picture.copy()
    for tri in tris:
        _warp_triangle(picture, out, src[tri], dst[tri])
    return out


def _liquify(picture: np.ndarray, lm: np.ndarray, dx: float) -> np.ndarray:
    """Push the middle of the face sideways by up to ``dx`` pixels with a smooth
    2-D displacement field (strongest at the nose, fading to the outline)."""
    h, w = picture.shape[:2]
    cx, cy = lm[30]
    sigma = float(np.ptp(lm[:17, 0])) * 0.35
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))).astype(np.float32)
    out = cv2.remap(picture, xx - dx * g, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return np.asarray(out)


def _edited(
    pic: np.ndarray,
    plm: np.ndarray,
    profile: list[float],
    amount: float,
    edit: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
) -> Callable[[int], np.ndarray]:
    """Frame i shows ``pic`` edited by ``amount`` times the turn profile at i
    (20 steps, each edited image made once)."""
    cache: dict[int, np.ndarray] = {}

    def frame(i: int) -> np.ndarray:
        key = round(profile[i] * 20)
        if key not in cache:
            cache[key] = edit(pic, plm, amount * key / 20)
        return cache[key]

    return frame


def _timeline(rng: np.random.Generator, window_s: float = WINDOW_S) -> tuple[int, int]:
    """Frames of a clip and the prompt's frame: the clip covers the whole
    challenge window after the prompt, as the kiosk waits that long."""
    prompt = int(rng.uniform(0.6, 1.2) * FPS)
    return prompt + int(window_s * FPS), prompt


ATTACKS = (
    "steady",
    "handheld",
    "printed",
    "screen",
    "zoom",
    "blink_edit",
    "nose_shift",
    "bent_print",
    "photo_warp",
    "two_photos",
    "identity_swap",
    "second_face",
    "curved_print",
)


def attack_clip(
    kind: str,
    victim: tuple[np.ndarray, np.ndarray],
    *,
    seed: int,
    direction: str,
    other: tuple[np.ndarray, np.ndarray] | None = None,
    stranger: tuple[np.ndarray, np.ndarray] | None = None,
    identity: str = "",
) -> Clip:
    """One presentation attack. ``victim`` is a prepared photo of the enrolled
    senior (frame, landmarks) that is not the enrolment photo; ``other`` a second
    photo of the victim (two_photos); ``stranger`` a prepared photo of someone
    else, whose real head answers the challenge (identity_swap, second_face)."""
    rng = np.random.default_rng(seed)
    frame, lm = victim
    n, prompt = _timeline(rng)
    bg = plain_background((FRAME_H, FRAME_W), rng)
    cam = Camera(
        rng,
        noise=float(rng.uniform(2, 7)),
        jpeg=int(rng.integers(55, 92)),
        blur=float(rng.uniform(0, 1.0)),
        gain=float(rng.uniform(0.8, 1.15)),
    )
    sign = yaw_sign(direction)
    # The attacker "turns" whatever they hold when asked: a rotation of the sheet.
    peak = float(rng.uniform(25, 55)) * sign
    # like a senior, an attacker whose first try was not acknowledged tries again
    yaw = list(
        turn_profile(rng, n, prompt, peak, again=np.random.default_rng([seed, 2]), again_cap=70)
    )
    pic, plm = picture_of(frame, lm)
    face_w = float(np.ptp(plm[:17, 0]))
    target_px = float(rng.uniform(150, 210))
    scale = target_px / face_w
    centre = (FRAME_W / 2 + rng.uniform(-40, 40), FRAME_H / 2 + rng.uniform(-20, 30))
    frames: list[np.ndarray] = []

    def sheet_frames(
        picture: np.ndarray,
        *,
        bend: float = 0.0,
        jitter: float = 0.0,
        zoom: bool = False,
        tilt_pitch: float = 0.0,
        swap: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        sheet = make_sheet(picture, bend=bend)
        drift = rng.normal(0, jitter, size=(n, 3)).cumsum(axis=0) if jitter else np.zeros((n, 3))
        for i in range(n):
            tex = swap(i) if swap is not None else picture
            z = 1.0
            if zoom and i > prompt:
                z = 1.0 + 0.5 * math.sin(min(math.pi, (i - prompt) / FPS * 1.5))
            img = render_sheet(
                sheet,
                tex,
                bg,
                centre=(centre[0] + drift[i, 0], centre[1] + drift[i, 1]),
                scale=scale * z * (1 + 0.01 * drift[i, 2]),
                yaw_deg=yaw[i],
                pitch_deg=tilt_pitch + (0.3 * drift[i, 2] if jitter else 0.0),
                roll_deg=0.5 * drift[i, 2] if jitter else 0.0,
            )
            frames.append(cam(img))

    if kind == "steady":
        yaw = [0.0] * n
        sheet_frames(pic)
    elif kind == "handheld":
        sheet_frames(pic, jitter=2.5)
    elif kind == "printed":
        sheet_frames(_paper(pic, rng), jitter=1.5, tilt_pitch=float(rng.uniform(-20, 20)))
    elif kind == "screen":
        sheet_frames(_screen(pic, rng), jitter=1.5)
    elif kind == "zoom":
        sheet_frames(pic, zoom=True)
    elif kind == "blink_edit":
        shut = close_eyes(pic, plm)
        sheet_frames(pic, jitter=1.0, swap=lambda i: shut if i > prompt and i % 2 else pic)
    elif kind == "nose_shift":
        yaw = [0.0] * n
        prof = list(turn_profile(rng, n, prompt, 1.0, again=np.random.default_rng([seed, 3])))
        amount = float(rng.uniform(0.12, 0.3)) * face_w * sign
        sheet_frames(pic, jitter=0.8, swap=_edited(pic, plm, prof, amount, _nose_shift))
    elif kind == "bent_print":  # a sheet held in one hand sags a little
        sheet_frames(_paper(pic, rng), bend=float(rng.uniform(0.02, 0.07)), jitter=1.5)
    elif kind == "curved_print":  # rolled into a half cylinder on purpose: a 3-D object
        sheet_frames(_paper(pic, rng), bend=float(rng.uniform(0.12, 0.25)), jitter=1.5)
    elif kind == "photo_warp":
        # a flat photo whose face is warped in 2-D towards the asked side, frame
        # by frame (an editing tool's "liquify"), shown on a sheet that also turns
        yaw = [y * 0.5 for y in yaw]
        prof = list(turn_profile(rng, n, prompt, 1.0, again=np.random.default_rng([seed, 3])))
        strength = float(rng.uniform(0.15, 0.35)) * face_w * sign
        sheet_frames(pic, jitter=1.0, swap=_edited(pic, plm, prof, strength, _liquify))
    elif kind == "two_photos":
        assert other is not None, "two_photos needs a second photo of the victim"
        pic2, _ = picture_of(*other)
        pic2 = cv2.resize(pic2, (pic.shape[1], pic.shape[0]))
        sheet_frames(pic, jitter=1.0, swap=lambda i: pic2 if i > prompt and (i // 2) % 2 else pic)
    elif kind in ("identity_swap", "second_face"):
        assert stranger is not None, f"{kind} needs a stranger's photo"
        sframe, slm = stranger
        head = build_head(slm, sframe.shape)
        for i in range(n):
            if kind == "identity_swap":
                if i <= prompt:
                    img = render_sheet(make_sheet(pic), pic, bg, centre=centre, scale=scale)
                else:
                    img = render_head(sframe, head, bg, yaw_deg=yaw[i] * 0.7)
            else:
                # the victim's photo stays; a real stranger leans in and turns beside it
                img = render_sheet(make_sheet(pic), pic, bg, centre=centre, scale=scale)
                if i > prompt:
                    small = render_head(
                        sframe,
                        head,
                        img,
                        yaw_deg=yaw[i] * 0.7,
                        shift=(-FRAME_W * 0.32, 10),
                        scale=0.8,
                    )
                    img = small
            frames.append(cam(img))
    else:
        raise ValueError(f"unknown attack {kind!r}")
    return Clip(f"{kind}-{identity}-{seed}", kind, seed, frames, prompt, direction, identity)


# --------------------------------------------------------------------------- a live camera


class SimulatedSenior:
    """One person at the kiosk camera, rendered as a 3-D head from a photo, who
    turns the way the kiosk asks (:meth:`respond`) after a human reaction time.

    Used by the demo's simulated camera and by the kiosk tests, so that the
    real challenge, not a switch, is what lets them pay.
    """

    def __init__(
        self,
        photo: np.ndarray,
        lm68: np.ndarray,
        *,
        seed: int = 0,
        face_px: float = 170.0,
        peak_deg: float = 26.0,
    ) -> None:
        self.frame0, self.lm = prepare_photo(photo, lm68, face_px=face_px)
        rng = np.random.default_rng(seed)
        self.mesh = build_head(self.lm, self.frame0.shape)
        self.background = plain_background(self.frame0.shape, rng)
        self.peak_deg = peak_deg
        self._turns: list[tuple[float, float]] = []  # (start, signed peak), in order
        self._frontal: np.ndarray | None = None

    TURN_S = (0.7, 0.4, 0.7)  # to the side, hold, back

    def respond(self, direction: str, now: float, *, reaction_s: float = 0.5) -> None:
        """Asked to turn to ``direction`` (the senior's own side) at ``now``; a
        turn already under way is finished first, then the new one follows."""
        start = now + reaction_s
        if self._turns:
            start = max(start, self._turns[-1][0] + sum(self.TURN_S) + 0.3)
        self._turns.append((start, self.peak_deg * yaw_sign(direction)))

    def busy(self, now: float) -> bool:
        """Still turning, or about to (a prompt heard and not yet answered)."""
        self.yaw_at(now)
        return bool(self._turns)

    def yaw_at(self, now: float) -> float:
        go, hold, back = self.TURN_S
        while self._turns and now - self._turns[0][0] >= go + hold + back:
            self._turns.pop(0)  # finished
        if not self._turns:
            return 0.0
        start, peak = self._turns[0]
        dt = now - start
        if dt <= 0:
            return 0.0
        if dt < go:
            return peak * smoothstep(dt / go)
        if dt < go + hold:
            return peak
        return peak * (1 - smoothstep((dt - go - hold) / back))

    def frame(self, now: float) -> np.ndarray:
        yaw = self.yaw_at(now)
        if yaw == 0.0:
            if self._frontal is None:
                self._frontal = render_head(self.frame0, self.mesh, self.background, yaw_deg=0.0)
            return self._frontal.copy()
        return render_head(self.frame0, self.mesh, self.background, yaw_deg=yaw)


class SimulatedKioskCamera(ThreadedSource):
    """The demo's camera: people walk up one after another, stand at the kiosk,
    answer the liveness challenge like a senior would (:meth:`respond`, called
    with the side the kiosk asks for), and leave; an empty gap follows each.

    Every frame is rendered live from the 3-D heads, so the demo goes through
    the same challenge a device does; nothing is switched off for it.
    """

    kind = "simulated"

    def __init__(
        self,
        people: list[tuple[np.ndarray, np.ndarray]],
        *,
        fps: float = 10.0,
        approach_s: float = 2.5,
        stay_s: float = 16.0,
        gap_s: float = 3.0,
    ) -> None:
        super().__init__("simulated-kiosk")
        if not people:
            raise ValueError("the simulated camera needs at least one person")
        self.seniors = [
            SimulatedSenior(img, lm, seed=i, face_px=150.0) for i, (img, lm) in enumerate(people)
        ]
        self.fps = fps
        self.approach_s = approach_s
        self.stay_s = stay_s
        self.gap_s = gap_s
        self._lock = threading.Lock()
        self._current: SimulatedSenior | None = None
        self._empty = plain_background((FRAME_H, FRAME_W), np.random.default_rng(99))

    @property
    def cycle_s(self) -> float:
        return self.approach_s + self.stay_s + 1.0 + self.gap_s

    def respond(self, direction: str) -> None:
        """The person at the kiosk heard the prompt and turns."""
        with self._lock:
            senior = self._current
        if senior is not None:
            senior.respond(direction, time.monotonic())

    def frame_at(self, t: float, now: float) -> np.ndarray:
        """The frame ``t`` seconds into the show (``now`` drives the head turn)."""
        k = int(t // self.cycle_s)
        senior = self.seniors[k % len(self.seniors)]
        u = t - k * self.cycle_s
        if u >= self.approach_s + self.stay_s + 1.0:
            with self._lock:
                self._current = None
            return self._empty.copy()
        with self._lock:
            self._current = senior
        img = senior.frame(now)
        if u < self.approach_s:  # walking up: small and high in the frame, growing
            scale = 0.45 + 0.55 * smoothstep(u / self.approach_s)
            shift = (0.0, -60.0 * (1 - u / self.approach_s))
        elif u > self.approach_s + self.stay_s:  # leaving to the side
            scale, shift = 1.0, (700.0 * (u - self.approach_s - self.stay_s), 0.0)
        else:
            return img
        m = np.array(
            [
                [scale, 0, (1 - scale) * FRAME_W / 2 + shift[0]],
                [0, scale, (1 - scale) * FRAME_H / 2 + shift[1]],
            ]
        )
        out = cv2.warpAffine(img, m, (FRAME_W, FRAME_H), borderMode=cv2.BORDER_REPLICATE)
        return np.asarray(out)

    def _run(self) -> None:
        self._set_status(SourceState.CONNECTED, f"{len(self.seniors)} simulated people")
        t0 = time.monotonic()
        while not self._stop.wait(1.0 / self.fps):
            now = time.monotonic()
            self._publish(self.frame_at(now - t0, now))
