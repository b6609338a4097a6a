"""The in-memory gallery of enrolled face templates and the 1:N decision rule.

Pure: numpy only, no IO. The store (``face/store.py``) decrypts templates and
loads them here at start; enrolment adds, replaces or removes one resident's
templates as it happens.

Layout: one C-contiguous float32 matrix ``(capacity, dim)`` whose first ``n``
rows are L2-normalised templates, and a parallel int32 array naming the owner
of each row (an index into the resident-id table). A resident has several rows.
Capacity doubles when full, so adding is amortised O(dim); removing moves the
last rows into the holes, so it costs O(removed * dim), never a rebuild.

A search is one float32 matrix-vector product (cosine, since rows and query
are unit length; single-threaded for small galleries, see SINGLE_THREAD_MAX_ROWS), ``np.argpartition`` for the top rows and a short walk to keep
the best row per identity. A resident with T templates can occupy at most T of
the top rows, so the top ``(k - 1) * T_max + 1`` rows always contain the top k
identities.

The decision (:func:`decide`) accepts a face only when the best identity is
above the accept threshold *and* beats the second-best identity by the margin:
a stranger who looks a bit like two residents is "uncertain", not the wrong
person (the most common complaint about face-pay in the field).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from terminal.core.errors import TerminalError
from terminal.core.identification import Identification, LivenessDecision, MatchDecision

if TYPE_CHECKING:
    from terminal.config.settings import FaceSettings

EMBEDDING_DIM = 512
NO_SCORE = -1.0  # reported as the second score when fewer than two identities exist
_EPS = 1e-9  # scores are float32; do not let 0.60 - 0.52 = 0.07999... fail a 0.08 margin
# Below this many rows the scores come from numpy's own single-threaded loop, not
# BLAS: a multi-threaded BLAS gemv waits a whole scheduler tick (~8 ms measured
# here) for its second thread whenever the other cores are busy (camera, footfall,
# UI), while one thread needs ~0.1 ms for 1k rows and ~1.5 ms for 10k. Above it the
# product is memory-bound and BLAS's threads pay off.
SINGLE_THREAD_MAX_ROWS = 32_768


class GalleryError(TerminalError):
    code = "bad_template"


@dataclass(frozen=True, slots=True)
class Match:
    """One identity in a search result: its best template's cosine similarity."""

    resident_id: str
    score: float
    templates: int  # how many templates this resident has in the gallery


def normalise(
    vectors: np.ndarray | Sequence[float] | Sequence[Sequence[float]], dim: int
) -> np.ndarray:
    """Rows as unit-length float32 ``(k, dim)``; refuses wrong shapes, NaN and zero vectors."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise GalleryError(f"a face template must have {dim} numbers, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise GalleryError("no templates given")
    if not np.all(np.isfinite(arr)):
        raise GalleryError("a face template contains NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms < 1e-12):
        raise GalleryError("a face template is all zeros")
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


class Gallery:
    """Enrolled templates of many residents, searchable 1:N.

    Thread-safe: enrolment may change it while the kiosk searches.
    """

    def __init__(self, dim: int = EMBEDDING_DIM, capacity: int = 256) -> None:
        if dim <= 0:
            raise GalleryError("template dimension must be positive")
        self.dim = dim
        cap = max(1, int(capacity))
        self._mat = np.zeros((cap, dim), dtype=np.float32)
        self._owner = np.full(cap, -1, dtype=np.int32)
        self._n = 0
        self._code_of: dict[str, int] = {}
        self._id_of_code: list[str | None] = []
        self._free_codes: list[int] = []
        self._count: dict[str, int] = {}
        self._tmax = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ info
    def __len__(self) -> int:
        return self._n

    def __contains__(self, resident_id: object) -> bool:
        return resident_id in self._count

    @property
    def capacity(self) -> int:
        return int(self._mat.shape[0])

    @property
    def identity_count(self) -> int:
        return len(self._count)

    def identities(self) -> list[str]:
        with self._lock:
            return sorted(self._count)

    def template_count(self, resident_id: str) -> int:
        return self._count.get(resident_id, 0)

    def templates_of(self, resident_id: str) -> np.ndarray:
        """A copy of one resident's normalised templates ``(k, dim)`` (k may be 0)."""
        with self._lock:
            code = self._code_of.get(resident_id)
            if code is None:
                return np.zeros((0, self.dim), dtype=np.float32)
            rows = np.flatnonzero(self._owner[: self._n] == code)
            return self._mat[rows].copy()

    def matrix(self) -> np.ndarray:
        """Read-only view of the live rows (for diagnostics and benchmarks)."""
        view = self._mat[: self._n]
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------ mutation
    def add(
        self, resident_id: str, templates: np.ndarray | Sequence[float] | Sequence[Sequence[float]]
    ) -> int:
        """Append templates for a resident (new or existing). Returns how many were added."""
        if not resident_id:
            raise GalleryError("resident id must not be empty")
        rows = normalise(templates, self.dim)
        with self._lock:
            self._append(resident_id, rows)
            return int(rows.shape[0])

    def replace(
        self, resident_id: str, templates: np.ndarray | Sequence[float] | Sequence[Sequence[float]]
    ) -> None:
        """Swap one resident's templates for new ones (re-enrolment)."""
        if not resident_id:
            raise GalleryError("resident id must not be empty")
        rows = normalise(templates, self.dim)  # validate before touching anything
        with self._lock:
            self._remove(resident_id)
            self._append(resident_id, rows)

    def remove(self, resident_id: str) -> int:
        """Drop every template of a resident (un-enrol). Returns how many were removed."""
        with self._lock:
            return self._remove(resident_id)

    def clear(self) -> None:
        with self._lock:
            self._n = 0
            self._owner[:] = -1
            self._code_of.clear()
            self._id_of_code.clear()
            self._free_codes.clear()
            self._count.clear()
            self._tmax = 0

    def load(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Replace the whole gallery (start-up load from the store) in one go."""
        batches = [(rid, normalise(t, self.dim)) for rid, t in items]
        total = sum(int(b.shape[0]) for _, b in batches)
        with self._lock:
            self.clear()
            self._reserve(total, exact=True)  # a bulk load knows its size: no slack
            for rid, rows in batches:
                if not rid:
                    raise GalleryError("resident id must not be empty")
                self._append(rid, rows)

    def _reserve(self, needed: int, exact: bool = False) -> None:
        cap = self.capacity
        if needed <= cap:
            return
        if exact:
            cap = needed
        while cap < needed:
            cap *= 2
        mat = np.zeros((cap, self.dim), dtype=np.float32)
        mat[: self._n] = self._mat[: self._n]
        owner = np.full(cap, -1, dtype=np.int32)
        owner[: self._n] = self._owner[: self._n]
        self._mat, self._owner = mat, owner

    def _code(self, resident_id: str) -> int:
        code = self._code_of.get(resident_id)
        if code is None:
            if self._free_codes:
                code = self._free_codes.pop()
                self._id_of_code[code] = resident_id
            else:
                code = len(self._id_of_code)
                self._id_of_code.append(resident_id)
            self._code_of[resident_id] = code
        return code

    def _append(self, resident_id: str, rows: np.ndarray) -> None:
        k = int(rows.shape[0])
        self._reserve(self._n + k)
        code = self._code(resident_id)
        self._mat[self._n : self._n + k] = rows
        self._owner[self._n : self._n + k] = code
        self._n += k
        count = self._count.get(resident_id, 0) + k
        self._count[resident_id] = count
        self._tmax = max(self._tmax, count)

    def _remove(self, resident_id: str) -> int:
        code = self._code_of.get(resident_id)
        if code is None:
            return 0
        n = self._n
        rows = np.flatnonzero(self._owner[:n] == code)
        k = int(rows.size)
        new_n = n - k
        holes = rows[rows < new_n]
        if holes.size:
            tail = np.arange(new_n, n)
            movers = tail[self._owner[new_n:n] != code]
            self._mat[holes] = self._mat[movers]
            self._owner[holes] = self._owner[movers]
        self._owner[new_n:n] = -1
        self._n = new_n
        removed = self._count.pop(resident_id)
        del self._code_of[resident_id]
        self._id_of_code[code] = None
        self._free_codes.append(code)
        if removed >= self._tmax:
            self._tmax = max(self._count.values(), default=0)
        return k

    # -------------------------------------------------------------- search
    def search(self, query: np.ndarray | Sequence[float], k: int = 2) -> list[Match]:
        """Top ``k`` identities by their best template's cosine similarity, best first."""
        if k < 1:
            raise GalleryError("k must be at least 1")
        q = normalise(query, self.dim)[0]
        with self._lock:
            n = self._n
            if n == 0:
                return []
            mat = self._mat[:n]
            scores = np.einsum("ij,j->i", mat, q) if n <= SINGLE_THREAD_MAX_ROWS else mat @ q
            m = min(n, (k - 1) * self._tmax + 1)
            top = np.argpartition(scores, n - m)[n - m :] if m < n else np.arange(n)
            top = top[np.argsort(-scores[top], kind="stable")]
            owners = self._owner[top]
            out: list[Match] = []
            seen: set[int] = set()
            for row, code in zip(top.tolist(), owners.tolist(), strict=True):
                if code in seen:
                    continue
                seen.add(code)
                rid = self._id_of_code[code]
                assert rid is not None
                out.append(Match(rid, float(scores[row]), self._count[rid]))
                if len(out) == k:
                    break
            return out


def decide(
    results: Sequence[Match],
    accept_threshold: float,
    uncertain_threshold: float,
    min_margin: float,
    liveness: LivenessDecision | None = None,
) -> Identification:
    """Turn search results (best first) into an :class:`Identification`.

    * ``identified``: best >= accept **and** best - second-best identity >= min_margin;
    * ``uncertain``: best >= uncertain but not identified (too low, or too close
      to another resident); ``resident_id`` is the best candidate, to be
      confirmed by a second factor (card, staff) - never charged on its own;
    * ``unknown``: everything else (also an empty gallery); ``resident_id`` is None.

    ``second_score`` is :data:`NO_SCORE` (-1) when there is no second identity;
    ``threshold`` and ``margin`` record the configured accept threshold and minimum
    margin the decision was made with.
    """
    if uncertain_threshold > accept_threshold:
        raise GalleryError("uncertain threshold must not exceed the accept threshold")
    if min_margin < 0:
        raise GalleryError("minimum margin must not be negative")
    ordered = sorted(results, key=lambda m: m.score, reverse=True)
    best = ordered[0] if ordered else None
    best_score = best.score if best is not None else NO_SCORE
    second_score = ordered[1].score if len(ordered) > 1 else NO_SCORE

    def ident(decision: MatchDecision, rid: str | None) -> Identification:
        return Identification(
            decision=decision,
            resident_id=rid,
            score=best_score,
            second_score=second_score,
            threshold=accept_threshold,
            margin=min_margin,
            liveness=liveness,
        )

    if best is None or math.isnan(best_score):
        return ident("unknown", None)
    if best_score >= accept_threshold - _EPS and best_score - second_score >= min_margin - _EPS:
        return ident("identified", best.resident_id)
    if best_score >= uncertain_threshold - _EPS:
        return ident("uncertain", best.resident_id)
    return ident("unknown", None)


def decide_with(
    results: Sequence[Match], settings: FaceSettings, liveness: LivenessDecision | None = None
) -> Identification:
    """:func:`decide` with the thresholds from ``FaceSettings``."""
    return decide(
        results,
        settings.accept_threshold,
        settings.uncertain_threshold,
        settings.min_margin,
        liveness=liveness,
    )
