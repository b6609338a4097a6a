"""Verification accuracy on a folder of photos and a pairs list (``face eval``).

District IT calibrates the accept threshold on a centre's own consented
photos: a CSV with columns ``a,b,same`` names two image files (relative to the
images folder) and whether they show the same person (``1/0``, ``true/false``,
``yes/no``). Every distinct image is embedded once, every pair is scored by
cosine similarity, and the report gives ROC AUC, the true-accept rate at
false-accept rates 1e-2 / 1e-3 / 1e-4 with the threshold that gives each, and
the images without a usable face (with the reason).

Scoring after embedding is vectorised (a Gram matrix for up to a few thousand
images, chunked row-wise dot products beyond), and AUC is the Mann-Whitney
statistic from one sort, so a million pairs take about a second.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terminal.core.errors import TerminalError
from terminal.core.log import get_logger

log = get_logger(__name__)

FAR_LEVELS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
GRAM_MAX_IMAGES = 4096  # up to here scores come from one (M x M) float32 matrix (64 MB)
_CHUNK = 8192
_TRUE = frozenset({"1", "true", "yes", "y", "same", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "different", "f"})


class EvalError(TerminalError):
    code = "eval_input_invalid"


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    same: bool


# --------------------------------------------------------------------------- input


def parse_same(value: str) -> bool | None:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def read_pairs(pairs_csv: str | Path, max_errors: int = 5) -> list[Pair]:
    """Parse the pairs CSV. Raises :class:`EvalError` naming the first bad lines."""
    path = Path(pairs_csv)
    if not path.is_file():
        raise EvalError(f"pairs file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from spreadsheet exports
    except UnicodeDecodeError as exc:
        raise EvalError(f"pairs file {path.name} is not UTF-8 text") from exc
    except OSError as exc:
        raise EvalError(f"cannot read pairs file {path.name}: {exc.strerror}") from exc
    return parse_pairs(text, source=path.name, max_errors=max_errors)


def parse_pairs(text: str, source: str = "pairs", max_errors: int = 5) -> list[Pair]:
    if not text.strip():
        raise EvalError(f"{source} is empty; expected a header a,b,same and one pair per line")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise EvalError(f"{source}: cannot read the header line") from exc
    cols = {h.strip().lower(): i for i, h in enumerate(header)}
    missing = [c for c in ("a", "b", "same") if c not in cols]
    if missing:
        raise EvalError(
            f"{source}: missing column(s) {', '.join(missing)}; "
            f"the header must name a,b,same (found: {', '.join(h.strip() for h in header)})"
        )
    ia, ib, isame = cols["a"], cols["b"], cols["same"]
    need = max(ia, ib, isame) + 1
    pairs: list[Pair] = []
    errors: list[str] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < need:
                errors.append(f"line {line}: expected {need} columns, got {len(row)}")
            else:
                a, b, same = row[ia].strip(), row[ib].strip(), parse_same(row[isame])
                if not a or not b:
                    errors.append(f"line {line}: empty image name")
                elif same is None:
                    errors.append(
                        f"line {line}: 'same' must be 1/0/true/false, got {row[isame].strip()!r}"
                    )
                else:
                    pairs.append(Pair(a, b, same))
            if len(errors) >= max_errors:
                break
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: {exc}")
    if errors:
        raise EvalError(f"{source}: " + "; ".join(errors))
    if not pairs:
        raise EvalError(f"{source} has a header but no pairs")
    return pairs


def resolve_images(images_dir: Path, names: Iterable[str], max_listed: int = 5) -> dict[str, Path]:
    """Map each image name to a file inside ``images_dir``; unknown names are an error."""
    root = images_dir.resolve()
    found: dict[str, Path] = {}
    unknown: list[str] = []
    for name in names:
        p = (root / name).resolve()
        if not p.is_relative_to(root) or not p.is_file():
            unknown.append(name)
        else:
            found[name] = p
    if unknown:
        shown = ", ".join(unknown[:max_listed])
        more = f" and {len(unknown) - max_listed} more" if len(unknown) > max_listed else ""
        raise EvalError(
            f"{len(unknown)} image(s) named in the pairs file are not in "
            f"{images_dir}: {shown}{more}"
        )
    return found


# --------------------------------------------------------------------------- metrics


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float | None:
    """Area under the ROC curve: P(genuine score > impostor score), ties count half.

    Mann-Whitney U from average ranks of one sort. ``None`` when either class is empty.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # average rank (1-based) of each tie group
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    group_rank = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks_sorted = np.repeat(group_rank, ends - starts)
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True, slots=True)
class FarPoint:
    far_target: float
    threshold: float | None  # accept when score >= threshold (None without impostor pairs)
    tar: float | None  # fraction of genuine pairs accepted (None without genuine pairs)
    far: float | None  # fraction of impostor pairs accepted at that threshold (<= far_target)
    false_accepts: int
    negatives: int
    meaningful: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "far_target": self.far_target,
            "threshold": self.threshold,
            "tar": self.tar,
            "far": self.far,
            "false_accepts": self.false_accepts,
            "negatives": self.negatives,
            "meaningful": self.meaningful,
            "note": self.note,
        }


def tar_at_far(scores: np.ndarray, same: np.ndarray, far_target: float) -> FarPoint:
    """The lowest threshold whose false-accept rate is at most ``far_target``, and its TAR.

    With N impostor pairs at most ``floor(far_target * N)`` may be accepted, so the
    threshold sits just above the impostor score ranked one past that. When
    ``far_target * N < 1`` no impostor may pass: the point is reported (threshold
    just above the highest impostor) but marked not meaningful, because so few
    impostor pairs cannot show a rate that small.
    """
    if not 0.0 < far_target < 1.0:
        raise EvalError("FAR level must be between 0 and 1")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    neg = np.sort(s[~y])[::-1]
    pos = s[y]
    n_neg = int(neg.size)
    needed = math.ceil(1.0 / far_target - 1e-9)
    if n_neg == 0:
        return FarPoint(far_target, None, None, None, 0, 0, False, "no different-person pairs")
    allowed = math.floor(far_target * n_neg + 1e-9)
    # Every impostor scoring >= threshold is a false accept; ties at neg[allowed]
    # must all be rejected, so the threshold is the next float above it.
    threshold = -math.inf if allowed >= n_neg else float(np.nextafter(neg[allowed], np.inf))
    false_accepts = int(np.count_nonzero(neg >= threshold))
    tar = float(np.count_nonzero(pos >= threshold) / pos.size) if pos.size else None
    meaningful = n_neg >= needed
    note = (
        ""
        if meaningful
        else (f"only {n_neg} different-person pairs; FAR {far_target:g} needs at least {needed}")
    )
    return FarPoint(
        far_target=far_target,
        threshold=threshold,
        tar=tar,
        far=false_accepts / n_neg,
        false_accepts=false_accepts,
        negatives=n_neg,
        meaningful=meaningful,
        note=note,
    )


def rates_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, Any]:
    """TAR and FAR when accepting ``score >= threshold`` (e.g. the configured accept threshold)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    pos, neg = s[y], s[~y]
    return {
        "threshold": threshold,
        "tar": float(np.mean(pos >= threshold)) if pos.size else None,
        "far": float(np.mean(neg >= threshold)) if neg.size else None,
        "genuine_rejected": int(np.count_nonzero(pos < threshold)),
        "impostors_accepted": int(np.count_nonzero(neg >= threshold)),
    }


def score_summary(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    v = values.astype(np.float64)
    return {
        "min": float(v.min()),
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "max": float(v.max()),
    }


def score_pairs(embeddings: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Cosine scores of index pairs over L2-normalised rows (float32)."""
    e = np.ascontiguousarray(embeddings, dtype=np.float32)
    if e.shape[0] <= GRAM_MAX_IMAGES:
        gram = e @ e.T
        return np.asarray(gram[ia, ib], dtype=np.float32)
    out = np.empty(ia.shape[0], dtype=np.float32)
    for i in range(0, ia.shape[0], _CHUNK):
        a = e[ia[i : i + _CHUNK]]
        b = e[ib[i : i + _CHUNK]]
        out[i : i + _CHUNK] = np.einsum("ij,ij->i", a, b)
    return out


def metrics(
    scores: np.ndarray,
    same: np.ndarray,
    far_levels: Sequence[float] = FAR_LEVELS,
    accept_threshold: float | None = None,
) -> dict[str, Any]:
    """All verification metrics of scored pairs (pure)."""
    y = np.asarray(same, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    out: dict[str, Any] = {
        "auc": roc_auc(s, y),
        "tar_at_far": [tar_at_far(s, y, f).as_dict() for f in far_levels],
        "genuine_scores": score_summary(s[y]),
        "impostor_scores": score_summary(s[~y]),
    }
    if accept_threshold is not None:
        out["at_accept_threshold"] = rates_at(s, y, accept_threshold)
    return out


# --------------------------------------------------------------------------- evaluate

EmbedFn = Callable[[Path], np.ndarray]


def evaluate(
    images_dir: str | Path,
    pairs_csv: str | Path,
    engine: Any,
    *,
    accept_threshold: float | None = None,
    far_levels: Sequence[float] = FAR_LEVELS,
    embed: EmbedFn | None = None,
) -> dict[str, Any]:
    """Embed every distinct image once, score every pair, report the metrics.

    ``engine`` is a loaded FaceEngine; ``embed`` may replace the way one image
    file becomes a 512-d vector (it must raise ImageError / NoFaceError or another
    TerminalError for an image without a usable face). Pairs that involve such an
    image are left out and counted.
    """
    images = Path(images_dir)
    if not images.is_dir():
        raise EvalError(f"images folder not found: {images}")
    pairs = read_pairs(pairs_csv)
    names = sorted({p.a for p in pairs} | {p.b for p in pairs})
    files = resolve_images(images, names)
    embed_fn = embed or engine_embedder(engine)

    t0 = time.perf_counter()
    index: dict[str, int] = {}
    vectors: list[np.ndarray] = []
    failures: list[dict[str, str]] = []
    for name in names:
        try:
            vec = np.asarray(embed_fn(files[name]), dtype=np.float32).reshape(-1)
        except TerminalError as exc:
            failures.append({"image": name, "reason": str(exc), "code": exc.code})
            continue
        norm = float(np.linalg.norm(vec))
        if not math.isfinite(norm) or norm < 1e-12:
            failures.append(
                {"image": name, "reason": "embedding is empty", "code": "bad_embedding"}
            )
            continue
        index[name] = len(vectors)
        vectors.append(vec / norm)
    embed_seconds = time.perf_counter() - t0

    usable = [p for p in pairs if p.a in index and p.b in index]
    report: dict[str, Any] = {
        "images": len(names),
        "images_embedded": len(vectors),
        "images_without_face": failures,
        "pairs": len(pairs),
        "pairs_scored": len(usable),
        "pairs_skipped": len(pairs) - len(usable),
        "genuine_pairs": sum(1 for p in usable if p.same),
        "impostor_pairs": sum(1 for p in usable if not p.same),
        "embed_seconds": round(embed_seconds, 3),
    }
    if not usable:
        report.update(metrics(np.zeros(0), np.zeros(0, bool), far_levels, accept_threshold))
        report.update({"score_seconds": 0.0, "pairs_per_second": None})
        return report

    _warm_up()
    t1 = time.perf_counter()
    emb = np.stack(vectors).astype(np.float32)
    ia = np.fromiter((index[p.a] for p in usable), dtype=np.int64, count=len(usable))
    ib = np.fromiter((index[p.b] for p in usable), dtype=np.int64, count=len(usable))
    same = np.fromiter((p.same for p in usable), dtype=bool, count=len(usable))
    scores = score_pairs(emb, ia, ib)
    result = metrics(scores, same, far_levels, accept_threshold)
    score_seconds = time.perf_counter() - t1
    report.update(result)
    report["score_seconds"] = round(score_seconds, 6)
    report["pairs_per_second"] = round(len(usable) / max(score_seconds, 1e-9))
    log.info(
        "face_eval",
        images=len(names),
        failed=len(failures),
        pairs=len(usable),
        auc=report["auc"],
        pairs_per_second=report["pairs_per_second"],
    )
    return report


def _warm_up() -> None:
    """Run the scoring path once on two vectors so numpy's one-time set-up cost
    does not count as scoring time in ``pairs_per_second``."""
    e = np.eye(2, 4, dtype=np.float32)
    idx = np.array([0, 1])
    metrics(score_pairs(e, idx, idx[::-1]), np.array([True, False]))


def engine_embedder(engine: Any) -> EmbedFn:
    """Adapt a FaceEngine to "image file -> normalised embedding" (largest face,
    quality gate not applied: calibration photos are judged by the scores)."""
    embed_file = getattr(engine, "embed_file", None)
    if not callable(embed_file):
        raise EvalError("the face engine cannot embed image files")
    return embed_file  # type: ignore[no-any-return]


def pairs_from_labels(labels_csv: str | Path) -> list[Pair]:
    """Every pair of files in a ``file,identity`` labels CSV (same = same identity)."""
    path = Path(labels_csv)
    if not path.is_file():
        raise EvalError(f"labels file not found: {path}")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "file" not in rows[0] or "identity" not in rows[0]:
        raise EvalError(f"{path.name}: expected columns file,identity")
    items = sorted((r["file"].strip(), r["identity"].strip()) for r in rows if r.get("file"))
    out: list[Pair] = []
    for i, (fa, ida) in enumerate(items):
        for fb, idb in items[i + 1 :]:
            out.append(Pair(fa, fb, ida == idb))
    return out


def write_pairs(pairs: Iterable[Pair], out_csv: str | Path) -> int:
    n = 0
    with Path(out_csv).open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "same"])
        for p in pairs:
            w.writerow([p.a, p.b, 1 if p.same else 0])
            n += 1
    return n
