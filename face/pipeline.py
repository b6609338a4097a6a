"""The face engine: detect -> 5 landmarks -> ArcFace alignment -> 512-d embedding,
with the quality gate and the passive liveness signal.

One class, :class:`FaceEngine`, built from a verified model pack::

    engine = FaceEngine.from_pack(settings.face_pack_dir, settings.face)
    image = load_image(path)
    obs = engine.observe(image, embed=True)  # one detector pass
    obs.faces                               # every face found, largest first
    obs.face, obs.quality                   # the largest: landmarks, quality verdict
    obs.embedding                           # (512,) float32, unit length

:meth:`FaceEngine.observe` is the one way through the pipeline for a frame:
the kiosk (through :meth:`face.recognise.Recogniser.observe`, which adds who
it is and the active challenge's frame), the CLI and footfall all use it, and
``primary`` / ``analyze`` / ``detect`` are built from the same stages.

The pack's manifest picks the implementation: an ``open`` pack uses fr_detect
+ the 68-point landmark model (or CenterFace when ``face.detector`` is
``centerface``) and fr_feature; an ``insightface`` pack loads its SCRFD
detector and ArcFace recogniser through insightface's ``model_zoo`` router. A
pack whose detector is not SCRFD (model_zoo only routes detectors with >= 5
outputs, so neither fr_detect nor CenterFace) takes the detector from the
manifest's role entry and loads it with our own decoder.

An engine is not safe for concurrent calls; give each thread its own or lock.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

from face import onnx_models as om
from face.align import landmarks68_to_5, norm_crop
from face.challenge import ChallengeFrame
from face.gallery import Match
from face.packs.manifest import PackFile, PackManifest
from face.packs.verify import verify_pack
from face.quality import PoorQualityError, QualityVerdict, assess, crop_stats, estimate_pose
from terminal.config.settings import FaceSettings
from terminal.core.errors import ImageError, ModelPackError, NoFaceError
from terminal.core.identification import Identification
from terminal.core.log import get_logger

log = get_logger(__name__)

MAX_FILE_BYTES = 60 * 1024 * 1024
MAX_PIXELS = 50_000_000  # refuse larger images before decoding them (RAM on a Pi)
MIN_SIDE = 32
MAX_WORK_SIDE = 4096  # decoded images larger than this are downscaled
MAX_FACES = 10  # faces analysed per frame, largest first

Image: TypeAlias = NDArray[np.uint8]  # HxWx3 BGR frame
Vector: TypeAlias = NDArray[np.float32]  # boxes, landmarks, embeddings


# ---------------------------------------------------------------------------
# Images


def _header_size(path: Path, name: str) -> tuple[int, int] | None:
    """Width and height from the file header without decoding the pixels
    (None when Pillow does not know the format; OpenCV then tries)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with insightface
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError:
        raise ImageError(
            f"image {name} is too large (more than {MAX_PIXELS // 1_000_000} megapixels)"
        ) from None
    except Exception:  # unknown to Pillow: let OpenCV try
        return None


def check_image(image: Any, *, what: str = "image") -> np.ndarray:
    """Validate an in-memory frame and return it as HxWx3 uint8 BGR.

    Grey and BGRA frames are converted; frames larger than ``MAX_WORK_SIDE``
    are downscaled; empty, tiny or non-image arrays raise :class:`ImageError`.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{what} is not an image array")
    if image.size == 0 or image.ndim not in (2, 3):
        raise ImageError(f"{what} is empty")
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        else:
            raise ImageError(f"{what} has unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] != 3:
        raise ImageError(f"{what} has {image.shape[2]} channels")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{what} is too small ({w}x{h} px; at least {MIN_SIDE} px per side)")
    if h * w > MAX_PIXELS:
        raise ImageError(
            f"{what} is too large ({w}x{h} px; at most {MAX_PIXELS // 1_000_000} megapixels)"
        )
    if max(h, w) > MAX_WORK_SIDE:
        s = MAX_WORK_SIDE / max(h, w)
        image = cv2.resize(
            image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
        )
        log.info(
            "image_downscaled", width=w, height=h, to_width=image.shape[1], to_height=image.shape[0]
        )
    return np.ascontiguousarray(image)


def load_image(path: Path | str) -> np.ndarray:
    """Read an image file as HxWx3 uint8 BGR (EXIF orientation applied).

    Raises :class:`ImageError` for a missing, empty, unreadable or corrupt file
    and for absurd sizes (smaller than 32 px or above 50 megapixels, refused
    before decoding); images over 4096 px are downscaled.
    """
    p = Path(path)
    name = p.name or str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError(f"image file {name} not found") from None
    except OSError as exc:
        raise ImageError(f"cannot read image file {name}: {exc.strerror}") from exc
    if not p.is_file():
        raise ImageError(f"{name} is not a file")
    if st.st_size == 0:
        raise ImageError(f"image file {name} is empty")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(f"image file {name} is too large ({st.st_size // (1024 * 1024)} MB)")
    size = _header_size(p, name)
    if size is not None:
        w, h = size
        if w * h > MAX_PIXELS:
            raise ImageError(
                f"image {name} is too large ({w}x{h} px; at most "
                f"{MAX_PIXELS // 1_000_000} megapixels)"
            )
        if min(w, h) < MIN_SIDE:
            raise ImageError(
                f"image {name} is too small ({w}x{h} px; at least {MIN_SIDE} px per side)"
            )
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read image file {name}: {exc.strerror}") from exc
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise ImageError(f"{name} is not a readable image (corrupt or unsupported format)")
    return check_image(image, what=f"image {name}")


def display_frame(image: np.ndarray, max_width: int) -> tuple[Image, int]:
    """A camera frame for the screen: RGB, C-contiguous, shrunk by the
    smallest whole factor ``k`` that fits ``max_width`` (every k-th pixel: it
    is only a preview). Returns the image and ``k``."""
    w = image.shape[1]
    k = max(1, -(-w // max_width))
    small = image[::k, ::k] if k > 1 else image
    rgb: Image = np.ascontiguousarray(small[:, :, ::-1])
    return rgb, k


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class DetectedFace:
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in image pixels
    score: float
    kps: np.ndarray  # (5, 2) float32: left eye, right eye, nose, left mouth, right mouth
    landmarks68: np.ndarray | None = None  # (68, 2) float32 when the pack has the 68-point model

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)


@dataclass(frozen=True, slots=True)
class FaceBox:
    """One face the detector found: its box, its score, and its 5 landmarks
    when the detector gives them (CenterFace, SCRFD; not fr_detect)."""

    box: Vector  # (4,) float32 x1, y1, x2, y2 in image pixels
    score: float
    kps: Vector | None = None  # (5, 2) float32

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


Box: TypeAlias = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Observation:
    """What one frame shows, from one detector pass (:meth:`FaceEngine.observe`).

    ``faces`` are every face found, largest first; ``face`` is the largest one
    with its landmarks (5 points, and 68 when the pack has the landmark model)
    and ``quality`` its quality verdict, whose ``key`` / ``text_*`` are what the
    kiosk shows and says. When asked: ``embedding`` and ``passive_liveness``
    of that face (:meth:`FaceEngine.observe`), ``identification`` with the
    gallery's best ``matches`` and the active ``challenge`` frame
    (:meth:`face.recognise.Recogniser.observe`). Holds no image.
    """

    faces: tuple[FaceBox, ...] = ()
    face: DetectedFace | None = None
    quality: QualityVerdict | None = None
    embedding: Vector | None = field(default=None, repr=False)
    passive_liveness: float | None = None
    identification: Identification | None = None
    matches: tuple[Match, ...] = ()
    challenge: ChallengeFrame | None = None

    @property
    def faces_found(self) -> int:
        return len(self.faces)

    @property
    def several_faces(self) -> bool:
        return len(self.faces) > 1

    @property
    def ok(self) -> bool:
        """The largest face passed the quality gate."""
        return self.quality is not None and bool(self.quality.ok)

    @property
    def reason(self) -> str:
        """The quality reason (``ok``, ``too_small``, ``pose`` ...), ``no_face``
        without a face, ``not_assessed`` when the gate was not run."""
        if self.quality is not None:
            return str(self.quality.reason)
        return "no_face" if not self.faces else "not_assessed"

    @property
    def guidance(self) -> str | None:
        """The translation key of what to tell the senior (``face.quality.*``)."""
        return None if self.quality is None else self.quality.key

    @property
    def box(self) -> Box | None:
        """The largest face's box in image pixels."""
        if not self.faces:
            return None
        b = self.faces[0].box
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


@dataclass(frozen=True, slots=True)
class FaceObservation:
    face: DetectedFace
    quality: QualityVerdict
    embedding: np.ndarray | None = None  # (512,) float32 unit vector when quality ok


@dataclass(frozen=True, slots=True)
class PrimaryFace:
    """The largest face of an image, always embedded (even if quality failed)."""

    observation: FaceObservation
    embedding: np.ndarray
    faces_found: int
    # fr_liveness score of this face when ``primary(..., liveness=True)`` asked
    # for it (None when not asked or the pack has no liveness model).
    passive_liveness: float | None = None

    @property
    def several_faces(self) -> bool:
        return self.faces_found > 1


@dataclass(slots=True)
class StageTimings:
    detect_ms: float = 0.0
    landmarks_ms: float = 0.0
    align_ms: float = 0.0
    embed_ms: float = 0.0
    liveness_ms: float = 0.0
    quality_ms: float = 0.0
    total_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "detect": self.detect_ms,
            "landmarks": self.landmarks_ms,
            "align": self.align_ms,
            "embed": self.embed_ms,
            "liveness": self.liveness_ms,
            "quality": self.quality_ms,
            "total": self.total_ms,
        }


class _Timer:
    def __init__(self) -> None:
        self.t = StageTimings()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            attr = f"{name}_ms"
            setattr(self.t, attr, getattr(self.t, attr) + (time.perf_counter() - t0) * 1000.0)


class _Detector(Protocol):
    gives_kps: bool

    def detect(
        self, image_bgr: np.ndarray, score_threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...


class _Embedder(Protocol):
    size: int

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray: ...


# ---------------------------------------------------------------------------
# The engine


class FaceEngine:
    def __init__(
        self,
        *,
        manifest: PackManifest,
        settings: FaceSettings,
        detector: _Detector,
        embedder: _Embedder,
        landmarker: om.Landmark68Model | None,
        liveness: om.PassiveLivenessModel | None,
        load_seconds: float = 0.0,
    ) -> None:
        if not detector.gives_kps and landmarker is None:
            raise ModelPackError(
                "the pack's detector gives no landmarks and it has no landmark model"
            )
        self.manifest = manifest
        self.settings = settings
        self.detector = detector
        self.embedder = embedder
        self.landmarker = landmarker
        self.liveness_model = liveness
        self.load_seconds = load_seconds
        self.last_timings = StageTimings()
        # One worker thread for the passive liveness model, so it runs beside
        # landmarks + alignment + embedding (onnxruntime releases the GIL).
        self._live_pool: ThreadPoolExecutor | None = None
        self._live_pool_lock = threading.Lock()
        # The score primary(..., liveness=True) computed last, so a following
        # passive_liveness() call for the same image and face does not run the
        # model again: (image object, face object, score).
        self._live_last: tuple[np.ndarray, DetectedFace, float] | None = None

    # -- construction -----------------------------------------------------

    @classmethod
    def from_pack(cls, pack_dir: Path | str, settings: FaceSettings | None = None) -> FaceEngine:
        """Verify the pack (every sha256) and load its models."""
        settings = settings or FaceSettings.model_validate({})
        t0 = time.perf_counter()
        manifest = verify_pack(pack_dir)
        opts = om.session_options(settings.intra_op_threads, settings.graph_optimization)

        def session(f: PackFile) -> Any:
            return om.open_model(manifest.root / f.name, opts, f.name)

        # Landmarks (optional unless the detector needs them) and liveness: our loaders.
        lm_file = manifest.by_role("landmarks68")
        landmarker = (
            om.Landmark68Model(session(lm_file), lm_file.preprocessing, lm_file.name)
            if lm_file
            else None
        )
        live_file = manifest.by_role("liveness")
        liveness = (
            om.PassiveLivenessModel(session(live_file), live_file.preprocessing, live_file.name)
            if live_file
            else None
        )

        det_file = manifest.require("detector")
        if settings.detector == "centerface":
            alt = manifest.by_role("detector_alt")
            if alt is None or alt.format != "centerface":
                raise ModelPackError(
                    f"face.detector is centerface but pack {manifest.root} has none"
                )
            det_file = alt
        detector = cls._load_detector(manifest, det_file, opts, session)

        emb_file = manifest.require("embedding")
        embedder: _Embedder
        if manifest.kind == "insightface":
            model = om.load_with_model_zoo(manifest.root / emb_file.name, opts)
            if getattr(model, "taskname", "") != "recognition":
                raise ModelPackError(f"{emb_file.name} is not routed as a recogniser by model_zoo")
            embedder = om.InsightArcFace(model)
        else:
            if emb_file.format != "arcface":
                raise ModelPackError(f"unknown embedding format {emb_file.format!r}")
            embedder = om.ArcFaceEmbedder(session(emb_file), emb_file.preprocessing, emb_file.name)
        if embedder.size != 112:
            raise ModelPackError(
                f"{emb_file.name} expects {embedder.size} px input; only 112 is supported"
            )

        engine = cls(
            manifest=manifest,
            settings=settings,
            detector=detector,
            embedder=embedder,
            landmarker=landmarker,
            liveness=liveness,
        )
        engine.load_seconds = time.perf_counter() - t0
        log.info(
            "face_engine_loaded",
            pack=manifest.name,
            kind=manifest.kind,
            detector=det_file.format,
            threads=settings.intra_op_threads,
            seconds=round(engine.load_seconds, 3),
        )
        return engine

    @staticmethod
    def _load_detector(manifest: PackManifest, f: PackFile, opts: Any, session: Any) -> _Detector:
        if f.format == "ultraface":
            return om.UltraFaceDetector(session(f), f.preprocessing, f.name)
        if f.format == "centerface":
            path = manifest.root / f.name
            sess = om.open_model(path, opts, f.name, source=om._dynamic_centerface(path))
            return om.CenterFaceDetector(sess, f.preprocessing, f.name)
        if f.format == "scrfd":
            model = om.load_with_model_zoo(manifest.root / f.name, opts)
            if getattr(model, "taskname", "") != "detection":
                raise ModelPackError(f"{f.name} is not routed as a detector by model_zoo")
            return om.ScrfdDetector(model, f.preprocessing)
        raise ModelPackError(f"unknown detector format {f.format!r} for {f.name}")

    # -- properties -------------------------------------------------------

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def threads(self) -> int:
        return self.settings.intra_op_threads

    @property
    def has_landmarks68(self) -> bool:
        return self.landmarker is not None

    # -- stages -----------------------------------------------------------

    def _found(
        self,
        image: np.ndarray,
        timer: _Timer,
        score_threshold: float | None = None,
        max_faces: int | None = MAX_FACES,
    ) -> tuple[FaceBox, ...]:
        """The detector's faces, largest first (at most ``max_faces``; None: all)."""
        with timer.stage("detect"):
            boxes, scores, kps = self.detector.detect(image, score_threshold)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = np.argsort(-areas, kind="stable")
        if max_faces is not None:
            order = order[:max_faces]
        return tuple(
            FaceBox(
                box=boxes[i].astype(np.float32),
                score=float(scores[i]),
                kps=None if kps is None else kps[i].astype(np.float32),
            )
            for i in (int(j) for j in order)
        )

    def _face(
        self, image: np.ndarray, gray: list[np.ndarray], found: FaceBox, timer: _Timer
    ) -> DetectedFace:
        """``found`` with its landmarks (``gray`` caches the grey frame)."""
        lm68 = None
        if self.landmarker is not None and found.kps is None:
            with timer.stage("landmarks"):
                if not gray:
                    gray.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
                lm68 = self.landmarker.predict(gray[0], found.box)
        if found.kps is not None:
            k5 = found.kps
        else:
            assert lm68 is not None
            k5 = landmarks68_to_5(lm68)
        return DetectedFace(box=found.box, score=found.score, kps=k5, landmarks68=lm68)

    def _detect(self, image: np.ndarray, timer: _Timer) -> list[DetectedFace]:
        gray: list[np.ndarray] = []
        return [self._face(image, gray, f, timer) for f in self._found(image, timer)]

    def _score_liveness(self, image: np.ndarray, box: np.ndarray) -> tuple[float, float]:
        assert self.liveness_model is not None
        t0 = time.perf_counter()
        score = self.liveness_model.score(image, box)
        return score, (time.perf_counter() - t0) * 1000.0

    def _liveness_async(self, image: np.ndarray, box: np.ndarray) -> Future[tuple[float, float]]:
        with self._live_pool_lock:
            if self._live_pool is None:
                self._live_pool = ThreadPoolExecutor(1, thread_name_prefix="face-liveness")
            pool = self._live_pool
        return pool.submit(self._score_liveness, image, box)

    def _align_embed(
        self, image: np.ndarray, face: DetectedFace, timer: _Timer
    ) -> tuple[np.ndarray, np.ndarray]:
        with timer.stage("align"):
            aligned = norm_crop(image, face.kps, 112)
        with timer.stage("embed"):
            vec = self.embedder.embed(aligned)
        return aligned, vec

    def _quality(
        self, image: np.ndarray, face: DetectedFace, aligned: np.ndarray, others_px: float
    ) -> QualityVerdict:
        h, w = image.shape[:2]
        k = face.kps
        cut = bool(
            (k[:, 0] < 0).any()
            or (k[:, 1] < 0).any()
            or (k[:, 0] >= w).any()
            or (k[:, 1] >= h).any()
        )
        return assess(
            face_px=face.width,
            pose=estimate_pose(face.kps),
            stats=crop_stats(aligned),
            settings=self.settings,
            largest_other_px=others_px,
            cut_off=cut,
        )

    # -- public API -------------------------------------------------------

    def observe(
        self,
        image_bgr: np.ndarray,
        *,
        analyse: bool = True,
        embed: bool = False,
        require_quality: bool = False,
        liveness: bool = False,
        max_faces: int | None = MAX_FACES,
        score_threshold: float | None = None,
    ) -> Observation:
        """One detector pass over a frame and what it shows.

        Every face found (largest first, at most ``max_faces``; None: all, at
        the detector's own ``score_threshold`` unless given). With ``analyse``
        (default) the largest face also gets its landmarks and the quality
        verdict; ``embed`` adds its embedding and ``liveness`` its passive
        liveness score (the model runs on a worker thread beside the landmarks
        and the embedding). With ``require_quality`` both are only computed
        when the face passes the gate. ``analyse=False`` gives the boxes only
        (footfall: :meth:`describe` adds landmarks to the boxes it needs).
        """
        timer = _Timer()
        t0 = time.perf_counter()
        self._live_last = None
        image = check_image(image_bgr, what="frame")
        found = self._found(image, timer, score_threshold, max_faces)
        if not found or not analyse:
            timer.t.total_ms = (time.perf_counter() - t0) * 1000.0
            self.last_timings = timer.t
            return Observation(faces=found)
        live = liveness and self.liveness_model is not None
        pending = None
        if live and not require_quality:
            # beside the landmarks, the alignment and the embedding
            pending = self._liveness_async(image, found[0].box)
        vec = None
        try:
            face = self._face(image, [], found[0], timer)
            others = max((f.width for f in found[1:]), default=0.0)
            with timer.stage("align"):
                aligned = norm_crop(image, face.kps, 112)
            with timer.stage("quality"):
                q = self._quality(image, face, aligned, others)
            passed = q.ok or not require_quality
            if live and pending is None and passed:
                pending = self._liveness_async(image, found[0].box)  # beside the embedding
            if embed and passed:
                with timer.stage("embed"):
                    vec = self.embedder.embed(aligned)
        finally:
            score = None
            if pending is not None:
                score, timer.t.liveness_ms = pending.result()
        timer.t.total_ms = (time.perf_counter() - t0) * 1000.0
        self.last_timings = timer.t
        if score is not None:
            self._live_last = (image_bgr, face, score)
        return Observation(faces=found, face=face, quality=q, embedding=vec, passive_liveness=score)

    def describe(
        self, image_bgr: np.ndarray, found: FaceBox, *, gray: np.ndarray | None = None
    ) -> DetectedFace:
        """A face of an observation with its landmarks (runs the 68-point
        model when the detector gives none; ``gray`` is the frame in grey, to
        convert it once for several faces)."""
        timer = _Timer()
        return self._face(image_bgr, [] if gray is None else [gray], found, timer)

    def detect(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        """All faces (at most 10), largest first, each with 5 landmarks."""
        timer = _Timer()
        t0 = time.perf_counter()
        image = check_image(image_bgr, what="frame")
        faces = self._detect(image, timer)
        timer.t.total_ms = (time.perf_counter() - t0) * 1000.0
        self.last_timings = timer.t
        return faces

    def align(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The 112x112 BGR ArcFace crop of ``face``."""
        return norm_crop(image_bgr, face.kps, 112)

    def embed(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The (512,) float32 unit embedding of ``face`` in ``image_bgr``."""
        timer = _Timer()
        t0 = time.perf_counter()
        _, vec = self._align_embed(image_bgr, face, timer)
        timer.t.total_ms = (time.perf_counter() - t0) * 1000.0
        self.last_timings = timer.t
        return vec

    def passive_liveness(self, image_bgr: np.ndarray, face: DetectedFace) -> float | None:
        """fr_liveness probability of a live face, or None without the model.
        The face that ``observe``/``primary`` just scored is not scored again."""
        if self.liveness_model is None:
            return None
        last = self._live_last
        if last is not None and last[0] is image_bgr and last[1] is face:
            return last[2]
        t0 = time.perf_counter()
        score = self.liveness_model.score(image_bgr, face.box)
        ms = (time.perf_counter() - t0) * 1000.0
        self.last_timings.liveness_ms += ms  # added to the timings of the last analyze()
        self.last_timings.total_ms += ms
        return score

    def analyze(self, image_bgr: np.ndarray, *, embed_all: bool = False) -> list[FaceObservation]:
        """Every face, largest first, with its quality verdict; faces whose
        quality is ok (or all of them with ``embed_all``) carry an embedding."""
        timer = _Timer()
        t0 = time.perf_counter()
        image = check_image(image_bgr, what="frame")
        faces = self._detect(image, timer)
        out: list[FaceObservation] = []
        for idx, face in enumerate(faces):
            others = max((f.width for j, f in enumerate(faces) if j != idx), default=0.0)
            with timer.stage("align"):
                aligned = norm_crop(image, face.kps, 112)
            with timer.stage("quality"):
                q = self._quality(image, face, aligned, others if idx == 0 else 0.0)
            vec = None
            if q.ok or embed_all:
                with timer.stage("embed"):
                    vec = self.embedder.embed(aligned)
            out.append(FaceObservation(face=face, quality=q, embedding=vec))
        timer.t.total_ms = (time.perf_counter() - t0) * 1000.0
        self.last_timings = timer.t
        return out

    def primary(
        self,
        image_bgr: np.ndarray,
        *,
        require_quality: bool = False,
        liveness: bool | None = None,
    ) -> PrimaryFace:
        """The largest face, embedded: :meth:`observe` that insists on a face.
        Raises :class:`NoFaceError` when there is none, and
        :class:`PoorQualityError` when ``require_quality`` and the face fails
        the gate. Several faces: the largest is used and ``faces_found`` says
        how many there were.

        The result equals ``analyze(image)[0]`` (embedded even when its quality
        failed), but only the largest face gets landmarks, a quality verdict
        and an embedding: the others only count and size it. ``liveness=True``
        (default: when ``face.liveness_passive`` is on) also scores the face
        with the passive liveness model; the score is in ``passive_liveness``
        and a following ``passive_liveness(image, face)`` call returns it
        without running the model again.
        """
        if liveness is None:
            liveness = bool(self.settings.liveness_passive)
        obs = self.observe(
            image_bgr, embed=True, require_quality=require_quality, liveness=liveness
        )
        if obs.face is None or obs.quality is None:
            raise NoFaceError("no face found in the image")
        if obs.embedding is None:
            raise PoorQualityError(obs.quality)
        if obs.several_faces:
            log.info("several_faces", faces=obs.faces_found)
        return PrimaryFace(
            observation=FaceObservation(
                face=obs.face, quality=obs.quality, embedding=obs.embedding
            ),
            embedding=obs.embedding,
            faces_found=obs.faces_found,
            passive_liveness=obs.passive_liveness,
        )

    def embed_file(self, path: Path | str) -> np.ndarray:
        """Embedding of the largest face in an image file (quality not required)."""
        return self.primary(load_image(path), liveness=False).embedding


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two unit embeddings."""
    return float(np.dot(np.asarray(a, np.float32).ravel(), np.asarray(b, np.float32).ravel()))


__all__ = [
    "MAX_FACES",
    "Box",
    "DetectedFace",
    "FaceBox",
    "FaceEngine",
    "FaceObservation",
    "Image",
    "Observation",
    "PoorQualityError",
    "PrimaryFace",
    "StageTimings",
    "Vector",
    "check_image",
    "cosine",
    "display_frame",
    "load_image",
]
