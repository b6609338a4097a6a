"""``care-terminal bench face``: how fast recognition runs on this machine.

Everything is measured in one process and returned as a JSON-ready dict:

* per-stage median / p90 ms (detect, landmarks, align, quality, embed, liveness)
  and the whole identify with passive liveness (largest face -> embedding and
  passive liveness -> 1:N search -> decision), the path the kiosk takes for
  every frame, on 640x480 frames made from real face photos; the same with the
  liveness model run after the embedding instead of beside it, interleaved;
* the compute cost of one frame of the active challenge (detect, 68
  landmarks, align, quality, re-identification embedding, cosine to the
  paying senior's template), i.e. what every challenge frame costs before the
  senior's own movement; the end-to-end face -> confirm screen time is
  ``bench kiosk``'s ``face_to_confirm_ms``;
* 1:N search time over galleries of random unit templates (1k / 10k / 100k);
* model load time, resident memory (peak and current) with the pack loaded,
  threads (onnxruntime intra-op setting and the process' thread count);
* onnxruntime session variants (graph optimisation level, threads, spinning),
  each on a fresh engine with its sessions reopened;
* int8 quantisation of the embedding model (dynamic, as onnxruntime's
  ``quantize_dynamic`` makes it, plus static QDQ calibrated on the bench's own
  aligned crops): speed *and* agreement with the float model (cosine between
  the embeddings of the same crops, and how many same/different decisions of
  all image pairs change at the accept threshold);
* optionally (``peer=True``) the same frames through the ``face_recognition``
  library (dlib HOG detector + ResNet encoder) for a side-by-side ratio; our
  identify is timed again between the peer's passes so both see the same load.
  The peer is installed by ``scripts/install-peer.sh`` (prebuilt ``dlib-bin``).

The order matters for the memory figure: RSS is read right after the engine
has loaded and identified every frame, before the 100k gallery, the variants
and the peer allocate anything.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.resources
import math
import os
import platform
import resource
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face.gallery import Gallery, decide_with
from terminal.core.errors import NoFaceError, TerminalError
from terminal.core.log import get_logger

log = get_logger(__name__)

FRAME_SIZE = (640, 480)
GALLERY_SIZES: tuple[int, ...] = (1_000, 10_000, 100_000)
TEMPLATES_PER_IDENTITY = 5
TARGETS = {
    "identify_median_ms": 13.0,  # identify with passive liveness, per frame
    "peer_ratio": 10.0,
    "search_100k_ms": 20.0,
    "rss_mb": 300.0,
}
STAGES = ("detect", "landmarks", "align", "quality", "embed", "liveness")

EngineFactory = Callable[[], Any]
Progress = Callable[[str], None]


# --------------------------------------------------------------------------- helpers


def summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """Median, p90, mean, min of a list of milliseconds (rounded to µs)."""
    if not values_ms:
        return {"median": None, "p90": None, "mean": None, "min": None, "n": 0}
    a = np.asarray(values_ms, dtype=np.float64)
    return {
        "median": round(float(np.median(a)), 3),
        "p90": round(float(np.percentile(a, 90)), 3),
        "mean": round(float(a.mean()), 3),
        "min": round(float(a.min()), 3),
        "n": int(a.size),
    }


def letterbox(image: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """Fit an image into a ``size`` (w, h) frame keeping proportions, grey borders."""
    w, h = size
    ih, iw = image.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    frame = np.full((h, w, 3), 114, dtype=np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    frame[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return frame


def make_frames(images: Sequence[Path | str | np.ndarray]) -> list[np.ndarray]:
    """640x480 BGR frames from image files (or arrays); unreadable files are skipped."""
    frames = []
    for item in images:
        img = item if isinstance(item, np.ndarray) else cv2.imread(str(item), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            continue
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        frames.append(letterbox(img[:, :, :3]))
    return frames


def image_files(folder: Path | str) -> list[Path]:
    """The face photos of a folder (sorted), e.g. ``../shared/testdata/faces``."""
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in exts)


def rss_mb() -> dict[str, float | None]:
    """Current and peak resident set size of this process in MB."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    current = math.nan
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return {
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
        "rss_mb": round(current, 1) if math.isfinite(current) else None,
    }


def process_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        import onnxruntime as ort

        out["onnxruntime"] = ort.__version__
    except ImportError:  # pragma: no cover - a runtime dependency
        pass
    return out


# --------------------------------------------------------------------------- identify


@dataclass
class FrameRun:
    stages: dict[str, list[float]]
    identify: list[float]
    no_face: int
    decisions: dict[str, int]
    # CPU time of the whole process per identify (all threads), ms: the work
    # done, which other processes on the machine do not inflate as they do
    # the wall time.
    cpu: list[float] = field(default_factory=list)


def _enrol_gallery(engine: Any, frames: Sequence[np.ndarray], filler: int, seed: int) -> Gallery:
    """A gallery with one template per bench frame plus random filler templates,
    so the search inside identify has a centre-sized gallery to look through."""
    g = Gallery(dim=512)
    for i, frame in enumerate(frames):
        try:
            g.add(f"bench-{i:03d}", engine.primary(frame, liveness=False).embedding)
        except TerminalError:
            continue
    rng = np.random.default_rng(seed)
    for j, row in enumerate(rng.standard_normal((max(0, filler), 512), dtype=np.float32)):
        g.add(f"filler-{j:05d}", row)
    return g


def run_frames(
    engine: Any,
    gallery: Gallery,
    frames: Sequence[np.ndarray],
    repeats: int,
    warmup: int = 1,
    *,
    concurrent_liveness: bool = True,
) -> FrameRun:
    """Identify every frame with passive liveness ``repeats`` times, as the
    recogniser does (``primary`` then ``passive_liveness`` of that face); per-stage
    and whole timings in ms. ``concurrent_liveness`` lets the engine run the
    liveness model beside the embedding (the stage times then overlap);
    otherwise it runs after it."""
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    identify: list[float] = []
    cpu: list[float] = []
    decisions: dict[str, int] = {}
    no_face = 0
    settings = engine.settings
    for rep in range(warmup + repeats):
        for frame in frames:
            c0 = time.process_time()
            t0 = time.perf_counter()
            try:
                primary = engine.primary(frame, require_quality=False, liveness=concurrent_liveness)
            except NoFaceError:
                if rep >= warmup:
                    no_face += 1
                continue
            timings = engine.last_timings
            t_live = time.perf_counter()
            engine.passive_liveness(frame, primary.observation.face)
            live_ms = (time.perf_counter() - t_live) * 1000.0
            if concurrent_liveness:
                live_ms = float(timings.liveness_ms)  # the model's own time on the worker
            top = gallery.search(primary.embedding, k=3)
            ident = decide_with(top, settings)
            total = (time.perf_counter() - t0) * 1000.0
            cpu_ms = (time.process_time() - c0) * 1000.0
            if rep < warmup:
                continue
            identify.append(total)
            cpu.append(cpu_ms)
            for s in STAGES:
                stages[s].append(live_ms if s == "liveness" else float(getattr(timings, f"{s}_ms")))
            decisions[ident.decision] = decisions.get(ident.decision, 0) + 1
    return FrameRun(stages, identify, no_face, decisions, cpu)


def _identify_pass(engine: Any, gallery: Gallery, frames: Sequence[np.ndarray]) -> list[float]:
    """One timed pass of identify with passive liveness over the frames (ms each)."""
    return run_frames(engine, gallery, frames, 1, warmup=0).identify


def bench_liveness_concurrency(
    engine: Any, gallery: Gallery, frames: Sequence[np.ndarray], repeats: int
) -> dict[str, Any]:
    """Identify with passive liveness, liveness model beside the embedding vs
    after it, on the same engine, pass by pass in turn."""
    both = {True: _empty_run(), False: _empty_run()}
    for rep in range(repeats):
        for concurrent in (True, False):
            run = run_frames(
                engine,
                gallery,
                frames,
                1,
                warmup=1 if rep == 0 else 0,
                concurrent_liveness=concurrent,
            )
            _merge(both[concurrent], run)
    return {
        "measured": "interleaved passes on one engine",
        "concurrent_ms": summary(both[True].identify),
        "sequential_ms": summary(both[False].identify),
        "concurrent_cpu_ms": summary(both[True].cpu),
        "sequential_cpu_ms": summary(both[False].cpu),
    }


# --------------------------------------------------------------------------- challenge


def bench_challenge(
    engine: Any, frames: Sequence[np.ndarray], repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """What one frame of the active challenge costs the terminal.

    During a challenge every frame must find the paying senior's face again:
    detect every face with its 68 landmarks (blink and head turn are judged
    from them, and a second face is counted), embed the largest and compare
    it with the senior's own templates (re-identification, a dot product).
    These are the engine calls ``Recogniser.challenge_frame`` makes
    (``detect``, ``embed``, templates @ embedding); no passive liveness and
    no 1:N search, the senior is already known. How long the senior takes to
    turn the head is not compute; the end-to-end face -> confirm screen time
    is ``bench kiosk``'s ``face_to_confirm_ms``.
    """
    templates: list[np.ndarray | None] = []
    for frame in frames:  # the identification's own template, outside the timing
        try:
            templates.append(engine.primary(frame, liveness=False).embedding[None, :])
        except TerminalError:
            templates.append(None)
    per_frame: list[float] = []
    stages: dict[str, list[float]] = {"detect_landmarks": [], "align_embed": []}
    reidentified = 0
    threshold = float(engine.settings.accept_threshold)
    for rep in range(warmup + repeats):
        for frame, template in zip(frames, templates, strict=True):
            if template is None:
                continue
            t0 = time.perf_counter()
            faces = engine.detect(frame)
            if not faces:
                continue
            t1 = time.perf_counter()
            vec = engine.embed(frame, faces[0])
            reid = float(np.max(template @ vec))
            t2 = time.perf_counter()
            if rep < warmup:
                continue
            per_frame.append((t2 - t0) * 1000.0)
            stages["detect_landmarks"].append((t1 - t0) * 1000.0)
            stages["align_embed"].append((t2 - t1) * 1000.0)
            reidentified += int(reid >= threshold)
    med = summary(per_frame)["median"]
    return {
        "what": "per challenge frame: detect all faces + 68 landmarks, align + embed the "
        "largest, cosine to the senior's templates",
        "challenge_compute_ms_per_frame": summary(per_frame),
        "stages_ms": {k: summary(v) for k, v in stages.items()},
        "max_frames_per_second": round(1000.0 / float(med), 1) if med else None,
        "reidentified_frames": reidentified,
        "frames": len(per_frame),
        "face_to_confirm": "end to end in `care-terminal bench kiosk` (face_to_confirm_ms)",
    }


# --------------------------------------------------------------------------- search


def bench_search(
    sizes: Sequence[int] = GALLERY_SIZES,
    queries: int = 50,
    k: int = 3,
    seed: int = 7,
    per_identity: int = TEMPLATES_PER_IDENTITY,
) -> dict[str, Any]:
    """1:N search time over galleries of random unit templates."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for n in sizes:
        g = Gallery(dim=512, capacity=n)
        block = 10_000
        for start in range(0, n, block):
            m = min(block, n - start)
            t = rng.standard_normal((m, 512), dtype=np.float32)
            ids = (start + np.arange(m)) // per_identity
            # add() per identity keeps the real layout (several rows per resident)
            for j in range(0, m, per_identity):
                g.add(f"r{ids[j]}", t[j : j + per_identity])
        q = rng.standard_normal((queries + 3, 512), dtype=np.float32)
        for i in range(3):
            g.search(q[i], k=k)
        times = []
        for i in range(3, queries + 3):
            t0 = time.perf_counter()
            g.search(q[i], k=k)
            times.append((time.perf_counter() - t0) * 1000.0)
        out[str(n)] = {
            **summary(times),
            "templates": len(g),
            "identities": g.identity_count,
            "matrix_mb": round(len(g) * 512 * 4 / 2**20, 1),
        }
        del g
    return out


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Tuning:
    name: str
    graph_optimization: str = "all"
    threads: int = 2
    spinning: bool = False
    prelu_rewrite: bool = True  # onnx_models.prelu_as_relu, as the engine loads the pack


def default_tunings(threads: int, graph: str) -> list[Tuning]:
    base = Tuning("configured", graph, threads, False)
    out = [base]
    for level in ("extended", "basic", "disabled", "all"):
        if level != graph:
            out.append(Tuning(f"graph={level}", level, threads, False))
    if threads != 1:
        out.append(Tuning("threads=1", graph, 1, False))
    if threads < 4:
        out.append(Tuning(f"threads={threads * 2}", graph, threads * 2, False))
    out.append(Tuning("spinning=on", graph, threads, True))
    out.append(Tuning("prelu=native", graph, threads, False, prelu_rewrite=False))
    return out


def _session_slots(engine: Any) -> list[tuple[Any, Any]]:
    """(wrapper object holding ``.session``, pack file) for every model of an open pack."""
    m = engine.manifest
    slots: list[tuple[Any, Any]] = []
    det_file = m.require("detector")
    if getattr(engine.settings, "detector", "default") == "centerface":
        det_file = m.require("detector_alt")
    for holder, f in (
        (engine.detector, det_file),
        (engine.landmarker, m.by_role("landmarks68")),
        (engine.liveness_model, m.by_role("liveness")),
        (engine.embedder, m.require("embedding")),
    ):
        if holder is not None and f is not None and hasattr(holder, "session"):
            slots.append((holder, f))
    return slots


def _reopen(engine: Any, tuning: Tuning, embedding_model: Path | None = None) -> None:
    """Reopen the engine's sessions with other options (and maybe another embedding model)."""
    from face import onnx_models as om

    opts = om.session_options(tuning.threads, tuning.graph_optimization, spinning=tuning.spinning)
    for holder, f in _session_slots(engine):
        path = engine.manifest.root / f.name
        source: Path | bytes = path
        if f.role == "embedding" and embedding_model is not None:
            source = embedding_model
        elif f.format == "centerface":
            source = om._dynamic_centerface(path)
        if tuning.prelu_rewrite:
            holder.session = om.open_model(path, opts, f.name, source=source)
        else:
            holder.session = om.open_session(source, opts, f.name)


def _merge(into: FrameRun, run: FrameRun) -> None:
    for k, v in run.stages.items():
        into.stages.setdefault(k, []).extend(v)
    into.identify.extend(run.identify)
    into.cpu.extend(run.cpu)
    into.no_face += run.no_face
    for k, n in run.decisions.items():
        into.decisions[k] = into.decisions.get(k, 0) + n


def _empty_run() -> FrameRun:
    return FrameRun({s: [] for s in STAGES}, [], 0, {})


def run_interleaved(
    runners: Sequence[tuple[Any, Gallery]], frames: Sequence[np.ndarray], repeats: int
) -> list[FrameRun]:
    """Time several engines pass by pass in turn, so a change in the machine's
    load during the bench hits every engine alike instead of the last ones."""
    out = [_empty_run() for _ in runners]
    for rep in range(repeats):
        for i, (engine, gallery) in enumerate(runners):
            _merge(out[i], run_frames(engine, gallery, frames, 1, warmup=1 if rep == 0 else 0))
    return out


def bench_variants(
    engine_factory: EngineFactory,
    frames: Sequence[np.ndarray],
    tunings: Sequence[Tuning],
    repeats: int,
    filler: int,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Every tuning on its own engine. Non-spinning variants are measured
    interleaved; spinning ones afterwards, alone, since their spinning threads
    would slow whichever engine runs next."""
    built: list[tuple[Tuning, Any, Gallery, float]] = []
    results: dict[str, dict[str, Any]] = {}
    for tuning in tunings:
        progress(f"variant {tuning.name}: loading")
        try:
            engine = engine_factory()
            if engine.kind != "open":
                return [{"skipped": f"session variants apply to the open pack, not {engine.kind}"}]
            t0 = time.perf_counter()
            _reopen(engine, tuning)
            reopen_s = time.perf_counter() - t0
            gallery = _enrol_gallery(engine, frames, filler, seed=1)
        except TerminalError as exc:
            results[tuning.name] = {"name": tuning.name, "error": str(exc)}
            continue
        built.append((tuning, engine, gallery, reopen_s))
    calm = [b for b in built if not b[0].spinning]
    spin = [b for b in built if b[0].spinning]
    progress(f"variants: {len(calm)} interleaved, {len(spin)} alone")
    runs = run_interleaved([(e, g) for _, e, g, _ in calm], frames, repeats)
    for b in spin:
        runs.append(run_frames(b[1], b[2], frames, repeats))
    for (tuning, _engine, _gallery, reopen_s), run in zip(calm + spin, runs, strict=True):
        results[tuning.name] = {
            "name": tuning.name,
            "graph_optimization": tuning.graph_optimization,
            "intra_op_threads": tuning.threads,
            "spinning": tuning.spinning,
            "prelu_rewrite": tuning.prelu_rewrite,
            "measured": "alone" if tuning.spinning else "interleaved",
            "session_open_seconds": round(reopen_s, 3),
            "identify_ms": summary(run.identify),
            "detect_ms": summary(run.stages["detect"]),
            "embed_ms": summary(run.stages["embed"]),
            "liveness_ms": summary(run.stages["liveness"]),
        }
    built.clear()
    return [results[t.name] for t in tunings if t.name in results]


# --------------------------------------------------------------------------- int8


def _aligned_crops(engine: Any, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    crops = []
    for frame in frames:
        try:
            faces = engine.detect(frame)
        except TerminalError:
            continue
        if faces:
            crops.append(engine.align(frame, faces[0]))
    return crops


def _embed_all(embedder: Any, crops: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([embedder.embed(c) for c in crops]).astype(np.float32)


def _time_embed_interleaved(
    embedders: Sequence[Any], crops: Sequence[np.ndarray], repeats: int
) -> list[list[float]]:
    """Embedding time per crop for several embedders, taking turns crop by crop."""
    for emb in embedders:
        for c in crops[:2]:
            emb.embed(c)
    out: list[list[float]] = [[] for _ in embedders]
    for _ in range(repeats):
        for c in crops:
            for i, emb in enumerate(embedders):
                t0 = time.perf_counter()
                emb.embed(c)
                out[i].append((time.perf_counter() - t0) * 1000.0)
    return out


def _agreement(ref: np.ndarray, other: np.ndarray, threshold: float) -> dict[str, Any]:
    cos = np.sum(ref * other, axis=1)
    iu = np.triu_indices(ref.shape[0], k=1)
    s_ref = (ref @ ref.T)[iu]
    s_oth = (other @ other.T)[iu]
    changed = int(np.count_nonzero((s_ref >= threshold) != (s_oth >= threshold)))
    return {
        "cosine_to_float": {
            "min": round(float(cos.min()), 5),
            "mean": round(float(cos.mean()), 5),
        },
        "pair_score_abs_diff": {
            "max": round(float(np.abs(s_ref - s_oth).max()), 5) if s_ref.size else None,
            "mean": round(float(np.abs(s_ref - s_oth).mean()), 5) if s_ref.size else None,
        },
        "pairs": int(s_ref.size),
        "pair_decisions_changed": changed,
        "decision_threshold": threshold,
    }


def _calibration_reader(input_name: str, batches: list[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    return Reader()


def _quantise(
    src: Path, work: Path, crops_input: list[np.ndarray], input_name: str
) -> list[tuple[str, Path | None, str]]:
    """Make the int8 variants of the embedding model. Returns (name, path|None, note)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    made: list[tuple[str, Path | None, str]] = []
    pre = work / "pre.onnx"
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    except Exception as exc:  # pre-processing is optional; quantise the original then
        log.warning("quant_preprocess_failed", error=type(exc).__name__)
        pre = src
    for wt in (QuantType.QInt8, QuantType.QUInt8):
        name = f"int8-dynamic-{wt.name.lower()}"
        out = work / f"{name}.onnx"
        try:
            quantize_dynamic(str(pre), str(out), weight_type=wt)
            made.append((name, out, "onnxruntime quantize_dynamic, all supported ops"))
        except Exception as exc:
            made.append((name, None, f"quantize_dynamic failed: {type(exc).__name__}: {exc}"))
    # Static QDQ int8 needs opset >= 13 for per-channel scales; calibrated on real crops.
    name = "int8-static-qdq"
    try:
        model = onnx.load(str(pre))
        opset = max(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0
        )
        if opset < 13:
            model = version_converter.convert_version(model, 13)
        up = work / "opset13.onnx"
        onnx.save(model, str(up))
        out = work / f"{name}.onnx"
        quantize_static(
            str(up),
            str(out),
            _calibration_reader(input_name, crops_input),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        made.append(
            (name, out, f"quantize_static QDQ per-channel, calibrated on {len(crops_input)} crops")
        )
    except Exception as exc:
        made.append((name, None, f"quantize_static failed: {type(exc).__name__}: {exc}"))
    return made


def bench_int8(
    engine_factory: EngineFactory,
    frames: Sequence[np.ndarray],
    repeats: int,
    filler: int,
    progress: Progress,
) -> dict[str, Any]:
    """Float vs int8 embedding models: speed and agreement on the same aligned crops."""
    try:
        importlib.import_module("onnxruntime.quantization")
    except ImportError as exc:
        return {"available": False, "reason": f"onnxruntime.quantization unusable: {exc}"}
    engine = engine_factory()
    if engine.kind != "open":
        return {"available": False, "reason": "int8 variants are built for the open pack only"}
    emb_file = engine.manifest.require("embedding")
    src = engine.manifest.root / emb_file.name
    threshold = float(engine.settings.accept_threshold)
    crops = _aligned_crops(engine, frames)
    if len(crops) < 2:
        return {"available": False, "reason": "fewer than two faces found in the bench frames"}
    ref = _embed_all(engine.embedder, crops)
    # The embedder's own preprocessing, so calibration sees what inference sees.
    emb = engine.embedder
    inputs = []
    for c in crops:
        x = c[:, :, ::-1] if getattr(emb, "colour", "BGR") == "RGB" else c
        x = ((x.astype(np.float32) - emb.mean) / emb.std).transpose(2, 0, 1)[None]
        inputs.append(np.ascontiguousarray(x))
    out: dict[str, Any] = {
        "available": True,
        "model": emb_file.name,
        "crops": len(crops),
        "measured": "float and int8 engines interleaved",
    }
    configured = Tuning(
        "configured",
        str(getattr(engine.settings, "graph_optimization", "all")),
        int(engine.settings.intra_op_threads),
    )
    entries: list[dict[str, Any]] = []
    engines: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="care-int8-") as tmp:
        t0 = time.perf_counter()
        made = _quantise(src, Path(tmp), inputs, emb.input_name)
        out["quantise_seconds"] = round(time.perf_counter() - t0, 2)
        for name, path, note in made:
            progress(f"int8 {name}: loading")
            entry: dict[str, Any] = {"name": name, "note": note}
            entries.append(entry)
            if path is None:
                entry["error"] = note
                continue
            try:
                q_engine = engine_factory()
                _reopen(q_engine, configured, embedding_model=path)
                q = _embed_all(q_engine.embedder, crops)
            except TerminalError as exc:
                entry["error"] = str(exc)
                continue
            entry["size_bytes"] = path.stat().st_size
            entry.update(_agreement(ref, q, threshold))
            engines.append((entry, q_engine))
    progress("int8: timing")
    all_engines = [engine] + [e for _, e in engines]
    embed_times = _time_embed_interleaved([e.embedder for e in all_engines], crops, repeats)
    runs = run_interleaved(
        [(e, _enrol_gallery(e, frames, filler, 1)) for e in all_engines], frames, repeats
    )
    out["float"] = {
        "size_bytes": src.stat().st_size,
        "embed_ms": summary(embed_times[0]),
        "identify_ms": summary(runs[0].identify),
    }
    fm = out["float"]["embed_ms"]["median"] or 0.0
    for i, (entry, _e) in enumerate(engines, start=1):
        entry["embed_ms"] = summary(embed_times[i])
        entry["identify_ms"] = summary(runs[i].identify)
        qm = entry["embed_ms"]["median"] or 0.0
        entry["embed_speedup"] = round(fm / qm, 2) if qm else None
    out["variants"] = entries
    return out


# --------------------------------------------------------------------------- peer


def _pkg_resources_shim() -> None:
    """``face_recognition_models`` still imports ``pkg_resources`` (gone from
    recent setuptools) for ``resource_filename`` only; provide just that."""
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            return str(importlib.resources.files(package).joinpath(resource))

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def load_peer() -> tuple[Any | None, str]:
    """The ``face_recognition`` module, or None and why not."""
    try:
        importlib.import_module("dlib")
    except ImportError:
        return (
            None,
            "dlib is not installed (run scripts/install-peer.sh: prebuilt dlib-bin "
            "wheel + face_recognition without its dlib source dependency)",
        )
    _pkg_resources_shim()
    try:
        importlib.import_module("face_recognition_models")
        fr = importlib.import_module("face_recognition")
    except ImportError as exc:
        return None, f"face_recognition is not installed or broken ({exc})"
    except SystemExit:  # face_recognition calls quit() when its models package is missing
        return None, "face_recognition_models is not installed"
    return fr, ""


def bench_peer(
    frames: Sequence[np.ndarray],
    repeats: int,
    ours_median: float | None,
    ours_pass: Callable[[], list[float]] | None = None,
) -> dict[str, Any]:
    """The peer's identify per frame. ``ours_pass`` (one pass of our identify
    with passive liveness over the same frames, returning ms per frame) is run
    after each of the peer's passes, so the ratio compares figures taken under
    the same machine load; without it the ratio uses ``ours_median``."""
    fr, reason = load_peer()
    if fr is None:
        return {"available": False, "reason": reason}
    import dlib

    rgb = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
    known: list[np.ndarray] = []
    for img in rgb:  # enrol every frame once (outside the timing)
        locs = fr.face_locations(img)
        if locs:
            known.append(fr.face_encodings(img, locs[:1])[0])
    known_arr = np.asarray(known) if known else np.zeros((0, 128))
    detect: list[float] = []
    encode: list[float] = []
    identify: list[float] = []
    ours: list[float] = []
    no_face = 0
    for rep in range(repeats + 1):
        if rep and ours_pass is not None:
            ours.extend(ours_pass())
        for img in rgb:
            t0 = time.perf_counter()
            locs = fr.face_locations(img)  # HOG, upsample once (the library's default)
            t1 = time.perf_counter()
            if not locs:
                if rep:
                    no_face += 1
                continue
            largest = max(locs, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            enc = fr.face_encodings(img, [largest])[0]
            t2 = time.perf_counter()
            if known_arr.size:
                fr.face_distance(known_arr, enc)
            t3 = time.perf_counter()
            if rep == 0:
                continue  # warm-up pass
            detect.append((t1 - t0) * 1000.0)
            encode.append((t2 - t1) * 1000.0)
            identify.append((t3 - t0) * 1000.0)
    peer_median = summary(identify)["median"]
    if ours:
        ours_median = summary(ours)["median"]
    ratio = None
    if peer_median and ours_median:
        ratio = round(float(peer_median) / float(ours_median), 2)
    return {
        "available": True,
        "library": f"face_recognition {_dist_version('face_recognition')} / dlib {dlib.__version__}",
        "dlib_uses_blas": bool(getattr(dlib, "DLIB_USE_BLAS", False)),
        "detector": "HOG, upsample 1 (library default)",
        "detect_ms": summary(detect),
        "encode_ms": summary(encode),
        "identify_ms": summary(identify),
        "no_face_frames": no_face,
        "ours_identify_ms": summary(ours) if ours else {"median": ours_median},
        "ours_measured": "interleaved with the peer's passes"
        if ours
        else "main identify run (before the peer)",
        "compared": "ours: identify with passive liveness; peer: detect + encode + distances",
        "ratio_peer_over_ours": ratio,
    }


# --------------------------------------------------------------------------- main


def bench_face(
    engine_factory: EngineFactory,
    images: Sequence[Path | str | np.ndarray],
    peer: bool = False,
    *,
    repeats: int = 5,
    gallery_sizes: Sequence[int] = GALLERY_SIZES,
    variants: bool = True,
    int8: bool = True,
    variant_repeats: int = 3,
    identify_gallery: int = 1000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the face benchmark and return JSON-ready results.

    ``engine_factory()`` builds a loaded FaceEngine (it is called again for each
    variant); ``images`` are face photos turned into 640x480 frames. ``repeats``
    passes over the frames are timed after one warm-up pass.
    """
    say = progress or (lambda _msg: None)
    frames = make_frames(images)
    if not frames:
        raise TerminalError("no readable images to benchmark with", code="bench_no_images")
    t_start = time.perf_counter()
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
            "platform": platform.platform(),
            **_versions(),
        },
    }

    say("loading models")
    t0 = time.perf_counter()
    engine = engine_factory()
    load_wall = time.perf_counter() - t0
    report["pack"] = {"kind": engine.kind, "name": getattr(engine.manifest, "name", "")}
    report["model_load_seconds"] = round(float(getattr(engine, "load_seconds", load_wall)), 3)
    report["engine_build_seconds"] = round(load_wall, 3)

    say("identifying frames")
    gallery = _enrol_gallery(engine, frames, max(0, identify_gallery - len(frames)), seed=1)
    run = run_frames(engine, gallery, frames, repeats)
    report["frames"] = {
        "count": len(frames),
        "size": list(FRAME_SIZE),
        "repeats": repeats,
        "timed_runs": len(run.identify),
        "no_face_runs": run.no_face,
        "decisions": run.decisions,
        "gallery_templates": len(gallery),
    }
    report["stages_ms"] = {s: summary(v) for s, v in run.stages.items()}
    report["identify_with_liveness_ms"] = summary(run.identify)
    report["identify_ms"] = report["identify_with_liveness_ms"]  # the name older reports used
    report["identify_with_liveness_cpu_ms"] = summary(run.cpu)
    report["identify_includes"] = (
        "largest face: detect, 68 landmarks, align, quality, embedding; passive liveness "
        "(beside the embedding); 1:N search; decision"
    )
    report["memory_with_pack"] = rss_mb()
    report["threads"] = {
        "intra_op": int(engine.threads),
        "graph_optimization": str(getattr(engine.settings, "graph_optimization", "?")),
        "process_threads": process_threads(),
        "opencv_threads": cv2.getNumThreads(),
    }

    say("liveness beside vs after the embedding")
    report["liveness_concurrency"] = bench_liveness_concurrency(
        engine, gallery, frames, max(1, repeats // 2)
    )
    say("active challenge compute per frame")
    report["challenge"] = bench_challenge(engine, frames, repeats)
    report["challenge_compute_ms_per_frame"] = report["challenge"]["challenge_compute_ms_per_frame"]

    if peer:
        say("peer (face_recognition / dlib), interleaved with ours")

        report["peer"] = bench_peer(
            frames,
            max(1, repeats // 2),
            report["identify_ms"]["median"],
            functools.partial(_identify_pass, engine, gallery, frames),
        )
    else:
        report["peer"] = {"available": False, "reason": "not requested (use --peer)"}
    del gallery

    say("1:N search")
    report["search_ms"] = bench_search(gallery_sizes) if gallery_sizes else {}

    if variants:
        tunings = default_tunings(
            int(engine.threads), str(getattr(engine.settings, "graph_optimization", "all"))
        )
        report["variants"] = bench_variants(
            engine_factory, frames, tunings, variant_repeats, identify_gallery, say
        )
    if int8:
        say("int8 quantisation")
        report["int8"] = bench_int8(engine_factory, frames, variant_repeats, identify_gallery, say)
    del engine

    report["memory_end"] = rss_mb()
    report["machine"]["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    report["targets"] = check_targets(report)
    report["bench_seconds"] = round(time.perf_counter() - t_start, 1)
    return report


def check_targets(report: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured value and whether it is met (None: not measured)."""

    def verdict(value: Any, limit: float, higher_is_better: bool = False) -> dict[str, Any]:
        if value is None:
            return {"value": None, "target": limit, "met": None}
        met = value >= limit if higher_is_better else value <= limit
        return {"value": value, "target": limit, "met": bool(met)}

    search = report.get("search_ms", {}).get("100000", {})
    peer = report.get("peer", {})
    ident = report.get("identify_with_liveness_ms") or report.get("identify_ms", {})
    return {
        "identify_median_ms": verdict(ident.get("median"), TARGETS["identify_median_ms"]),
        "search_100k_median_ms": verdict(search.get("median"), TARGETS["search_100k_ms"]),
        "rss_mb_with_pack": verdict(
            report.get("memory_with_pack", {}).get("peak_rss_mb"), TARGETS["rss_mb"]
        ),
        "peer_ratio": verdict(
            peer.get("ratio_peer_over_ours"), TARGETS["peer_ratio"], higher_is_better=True
        ),
    }
