"""The 68-point 3-D mean face shape shipped by the insightface wheel
(``insightface/data/objects/meanshape_68.pkl``, loaded from the installed,
pinned package; never downloaded)."""

from __future__ import annotations

import importlib.util
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np


def _insightface_dir() -> Path:
    """The installed insightface package's folder, found without importing it:
    importing insightface takes seconds and pulls in matplotlib, whose first
    import in a fresh home builds a font cache; in the kiosk that stalled the
    face loop on the first challenge frame long enough to time the attempt out."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the insightface package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def mean_shape_68() -> np.ndarray:
    """(68, 3) float64, centred: x right, y down, z towards the camera; the face
    is about 1.25 units wide."""
    path = _insightface_dir() / "data" / "objects" / "meanshape_68.pkl"
    with path.open("rb") as fh:
        shape = pickle.load(fh)  # noqa: S301 - a data file of an installed, pinned dependency
    arr = np.asarray(shape, dtype=np.float64).reshape(68, 3)
    if not np.isfinite(arr).all():
        raise ValueError(f"{path} does not hold a finite 68x3 shape")
    centred: np.ndarray = arr - arr.mean(axis=0)
    return centred
