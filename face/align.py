"""Face alignment: 68 -> 5 landmarks and the ArcFace similarity crop.

``norm_crop`` gives the same 112x112 crop as insightface's
``insightface.utils.face_align.norm_crop`` (standard ArcFace template, a
least-squares similarity transform), but estimates the transform itself with
the closed-form Umeyama solution in numpy instead of scikit-image's
``SimilarityTransform.estimate``. Why:

* scikit-image deprecated ``estimate`` for removal in 2.2 and warns on every
  call; the pin below 2.2 keeps insightface working, but the hot path should
  not depend on a pinned deprecated call;
* importing insightface costs ~1.5 s and ~100 MB RSS (it pulls in matplotlib),
  which the open pack never needs;
* ``cv2.estimateAffinePartial2D`` only offers robust estimators (RANSAC/LMEDS),
  which are not the plain least-squares fit the recognisers were trained with.

``tests/face/test_pipeline.py`` checks that the matrix equals insightface's.
"""

from __future__ import annotations

import cv2
import numpy as np

# The standard ArcFace 5-point template for a 112x112 crop: left eye, right eye,
# nose tip, left mouth corner, right mouth corner (image left/right).
ARCFACE_DST = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation)
    mapping ``src`` points onto ``dst`` points; returns the 2x3 matrix.

    Umeyama (1991), as in scikit-image's ``SimilarityTransform``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    cov = dst_c.T @ src_c / n
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ValueError("degenerate landmarks: all points coincide")
    if rank == 1:
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            rot = u @ vt
        else:
            d1 = d[1]
            d[1] = -1.0
            rot = u @ np.diag(d) @ vt
            d[1] = d1
    else:
        rot = u @ np.diag(d) @ vt
    src_var = src_c.var(axis=0).sum()
    scale = (s @ d) / src_var if src_var > 0 else 1.0
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = dst_mean - scale * (rot @ src_mean)
    return m


def estimate_norm(kps: np.ndarray, image_size: int = 112) -> np.ndarray:
    """The 2x3 matrix taking the 5 landmarks to the ArcFace template scaled to
    ``image_size`` (a multiple of 112), as insightface's ``estimate_norm``."""
    kps = np.asarray(kps, dtype=np.float32)
    if kps.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks of shape (5, 2), got {kps.shape}")
    if image_size % 112 != 0:
        raise ValueError("image_size must be a multiple of 112")
    dst = ARCFACE_DST * (image_size / 112.0)
    return umeyama_similarity(kps, dst)


def norm_crop(image_bgr: np.ndarray, kps: np.ndarray, image_size: int = 112) -> np.ndarray:
    """The aligned ``image_size`` square crop (same colour order as the input)."""
    m = estimate_norm(kps, image_size)
    return cv2.warpAffine(image_bgr, m, (image_size, image_size), borderValue=0.0)


# Indices into the iBUG 68-point layout.
LEFT_EYE_68 = slice(36, 42)  # image-left eye (the subject's right eye)
RIGHT_EYE_68 = slice(42, 48)
NOSE_TIP_68 = 30
MOUTH_LEFT_68 = (48, 60)  # outer and inner left mouth corner
MOUTH_RIGHT_68 = (54, 64)


def landmarks68_to_5(lm68: np.ndarray) -> np.ndarray:
    """5 ArcFace points from 68 iBUG points: eye centres (mean of each eye
    contour), nose tip (point 30), mouth corners (mean of outer and inner corner)."""
    lm = np.asarray(lm68, dtype=np.float32)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks of shape (68, 2), got {lm.shape}")
    return np.stack(
        [
            lm[LEFT_EYE_68].mean(axis=0),
            lm[RIGHT_EYE_68].mean(axis=0),
            lm[NOSE_TIP_68],
            lm[list(MOUTH_LEFT_68)].mean(axis=0),
            lm[list(MOUTH_RIGHT_68)].mean(axis=0),
        ]
    ).astype(np.float32)
