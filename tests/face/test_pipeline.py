"""The face pipeline on real models and real images: detection, alignment,
embedding, calibrated thresholds, bad inputs, and insightface-layout packs."""

from __future__ import annotations

import itertools
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from pack_helpers import (
    build_open_pack,
    default_settings,
    faces_dir,
    insightface_images,
    labels,
)

from face.align import estimate_norm, landmarks68_to_5, norm_crop
from face.packs.seal import seal_pack
from face.pipeline import FaceEngine, check_image, cosine, load_image
from face.quality import PoorQualityError
from terminal.core.errors import ImageError, ModelPackError, NoFaceError, TerminalError

SETTINGS = default_settings()


@pytest.fixture(scope="module")
def open_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_open_pack(tmp_path_factory.mktemp("packs") / "open")


@pytest.fixture(scope="module")
def engine(open_pack: Path) -> FaceEngine:
    return FaceEngine.from_pack(open_pack, SETTINGS)


@pytest.fixture(scope="module")
def embedded(engine: FaceEngine) -> dict[str, tuple[str, np.ndarray]]:
    """file -> (identity, embedding of its largest face)."""
    out = {}
    for name, identity in labels():
        out[name] = (identity, engine.primary(load_image(faces_dir() / name)).embedding)
    return out


# ---------------------------------------------------------------------------
# detection, landmarks, alignment, embedding


def test_every_test_face_is_found_with_landmarks_inside_its_box(engine: FaceEngine) -> None:
    for name, _ in labels():
        image = load_image(faces_dir() / name)
        faces = engine.detect(image)
        assert len(faces) == 1, name
        f = faces[0]
        assert f.score > 0.9
        assert f.kps.shape == (5, 2) and f.kps.dtype == np.float32
        assert f.landmarks68 is not None and f.landmarks68.shape == (68, 2)
        x1, y1, x2, y2 = f.box
        assert (
            (f.kps[:, 0] > x1) & (f.kps[:, 0] < x2) & (f.kps[:, 1] > y1) & (f.kps[:, 1] < y2)
        ).all()
        le, re, nose, lm, rm = f.kps
        assert le[0] < nose[0] < re[0] and lm[0] < rm[0]  # image left/right order
        assert max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])  # eyes, nose, mouth top to bottom
        np.testing.assert_allclose(f.kps, landmarks68_to_5(f.landmarks68))


def test_alignment_matches_insightface_norm_crop(engine: FaceEngine) -> None:
    from insightface.utils import face_align

    image = load_image(faces_dir() / "fr_biden_biden.jpg")
    kps = engine.detect(image)[0].kps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-image's deprecated estimate()
        theirs_m = face_align.estimate_norm(kps, 112)
        theirs = face_align.norm_crop(image, kps, 112)
    np.testing.assert_allclose(estimate_norm(kps, 112), theirs_m, atol=1e-4)
    ours = norm_crop(image, kps, 112)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_embeddings_are_unit_float32_and_deterministic(engine: FaceEngine, embedded: dict) -> None:
    for _, vec in embedded.values():
        assert vec.shape == (512,) and vec.dtype == np.float32
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
    name = labels()[0][0]
    image = load_image(faces_dir() / name)
    again = engine.embed(image, engine.detect(image)[0])
    assert cosine(again, embedded[name][1]) > 0.9999


def test_analyze_and_timings(engine: FaceEngine) -> None:
    image = load_image(faces_dir() / "fr_rose_leslie_img1.jpg")
    obs = engine.analyze(image)
    assert len(obs) == 1 and obs[0].quality.ok and obs[0].embedding is not None
    t = engine.last_timings
    assert t.detect_ms > 0 and t.landmarks_ms > 0 and t.align_ms > 0 and t.embed_ms > 0
    assert t.total_ms >= t.detect_ms + t.embed_ms
    assert set(t.as_dict()) == {
        "detect",
        "landmarks",
        "align",
        "embed",
        "liveness",
        "quality",
        "total",
    }
    live = engine.passive_liveness(image, obs[0].face)
    assert live is not None and 0.0 <= live <= 1.0
    assert engine.last_timings.liveness_ms > 0


# ---------------------------------------------------------------------------
# calibrated thresholds (notes/calibration.md)


def test_every_same_identity_pair_is_above_the_accept_threshold(embedded: dict) -> None:
    failing = []
    for (a, (ia, va)), (b, (ib, vb)) in itertools.combinations(embedded.items(), 2):
        if ia == ib and cosine(va, vb) < SETTINGS.accept_threshold:
            failing.append((a, b, round(cosine(va, vb), 3)))
    assert not failing, f"same-identity pairs below {SETTINGS.accept_threshold}: {failing}"


def test_every_different_identity_pair_is_below_the_accept_threshold(embedded: dict) -> None:
    failing = []
    for (a, (ia, va)), (b, (ib, vb)) in itertools.combinations(embedded.items(), 2):
        if ia != ib and cosine(va, vb) >= SETTINGS.accept_threshold:
            failing.append((a, b, round(cosine(va, vb), 3)))
    assert not failing, (
        f"different-identity pairs at or above {SETTINGS.accept_threshold}: {failing}"
    )
    # with the safety margin: no impostor even reaches the "uncertain" band
    worst = max(
        cosine(va, vb)
        for (_, (ia, va)), (_, (ib, vb)) in itertools.combinations(embedded.items(), 2)
        if ia != ib
    )
    assert worst < SETTINGS.uncertain_threshold


def test_sample_strangers_are_never_accepted(engine: FaceEngine, embedded: dict) -> None:
    """insightface's sample faces (a group photo and a portrait) as extra
    negatives, embedded whatever their quality."""
    strangers = []
    for name in ("t1.jpg", "Tom_Hanks_54745.png"):
        for o in engine.analyze(load_image(insightface_images() / name), embed_all=True):
            strangers.append(o.embedding)
    assert len(strangers) == 7
    known = [v for _, v in embedded.values()]
    for s, k in itertools.product(strangers, known):
        assert cosine(s, k) < SETTINGS.accept_threshold
    for s, t in itertools.combinations(strangers, 2):
        assert cosine(s, t) < SETTINGS.uncertain_threshold


def test_threshold_defaults_are_ordered() -> None:
    assert SETTINGS.uncertain_threshold < SETTINGS.accept_threshold
    assert SETTINGS.accept_threshold == 0.50 and SETTINGS.min_margin == 0.10


def test_centerface_detector_option(open_pack: Path, embedded: dict) -> None:
    cf = FaceEngine.from_pack(open_pack, default_settings(detector="centerface"))
    image = load_image(faces_dir() / "fr_obama_obama1.jpg")
    faces = cf.detect(image)
    assert len(faces) == 1 and faces[0].landmarks68 is None and faces[0].kps.shape == (5, 2)
    vec = cf.embed(image, faces[0])
    assert cosine(vec, embedded["fr_obama_obama.jpg"][1]) > SETTINGS.accept_threshold
    assert cosine(vec, embedded["fr_biden_biden.jpg"][1]) < SETTINGS.uncertain_threshold


# ---------------------------------------------------------------------------
# bad inputs


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (with an empty pixel stream)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jpg", "not found"),
        (lambda d: _write(d, "empty.jpg", b""), "is empty"),
        (lambda d: _write(d, "noise.jpg", bytes(range(256)) * 40), "not a readable image"),
        (
            lambda d: _write(d, "text.png", b"hello, this is not a picture\n"),
            "not a readable image",
        ),
        (lambda d: _write(d, "huge.png", _png_header(20000, 20000)), "too large"),
        (lambda d: _write(d, "wide.png", _png_header(100000, 1000)), "too large"),
        (
            lambda d: _write(
                d, "tiny.png", cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes()
            ),
            "too small",
        ),
        (lambda d: (d / "adir").mkdir() or d / "adir", "not a file"),
    ],
)
def test_load_image_refuses_bad_files_clearly(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ImageError, match=message) as err:
        load_image(path)
    assert isinstance(err.value, TerminalError) and err.value.code == "bad_image"
    assert str(tmp_path) not in str(err.value)  # the file name, not the full path


def test_truncated_jpeg_is_refused_or_decoded_never_a_traceback(tmp_path: Path) -> None:
    data = (faces_dir() / "fr_obama_obama.jpg").read_bytes()
    with pytest.raises(ImageError):
        load_image(_write(tmp_path, "cut.jpg", data[:200]))
    try:  # half a JPEG: libjpeg fills the rest with grey, which is still an image
        image = load_image(_write(tmp_path, "half.jpg", data[: len(data) // 2]))
    except ImageError:
        return
    assert image.ndim == 3 and image.dtype == np.uint8


def test_check_image_arrays() -> None:
    with pytest.raises(ImageError, match="too small"):
        check_image(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageError, match="too large"):
        check_image(np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 20000, 3)))
    with pytest.raises(ImageError, match="empty"):
        check_image(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ImageError, match="not an image"):
        check_image("frame.jpg")
    with pytest.raises(ImageError, match="pixel type"):
        check_image(np.zeros((64, 64, 3), np.float64))
    big = check_image(np.zeros((2000, 5000, 3), np.uint8))
    assert max(big.shape[:2]) == 4096
    assert check_image(np.zeros((64, 64), np.uint8)).shape == (64, 64, 3)
    assert check_image(np.zeros((64, 64, 4), np.uint8)).shape == (64, 64, 3)


def test_no_face(engine: FaceEngine) -> None:
    rng = np.random.default_rng(3)
    wall = cv2.GaussianBlur((rng.random((480, 640, 3)) * 255).astype(np.uint8), (0, 0), 8)
    assert engine.detect(wall) == []
    assert engine.analyze(wall) == []
    with pytest.raises(NoFaceError) as err:
        engine.primary(wall)
    assert err.value.code == "no_face"


def test_several_faces_pick_the_largest_and_say_so(engine: FaceEngine) -> None:
    image = load_image(insightface_images() / "t1.jpg")
    faces = engine.detect(image)
    assert len(faces) == 6
    p = engine.primary(image)
    assert p.faces_found == 6 and p.several_faces
    assert p.observation.face.area == max(f.area for f in faces)
    assert p.embedding.shape == (512,)
    with pytest.raises(PoorQualityError) as err:
        engine.primary(image, require_quality=True)
    assert err.value.verdict.reason == "multiple_faces"
    assert isinstance(err.value, TerminalError)


def test_embed_file(engine: FaceEngine, embedded: dict) -> None:
    vec = engine.embed_file(faces_dir() / "fr_biden_biden2.jpg")
    assert cosine(vec, embedded["fr_biden_biden2.jpg"][1]) > 0.9999


# ---------------------------------------------------------------------------
# insightface-layout packs


def _insightface_pack(open_pack: Path, dest: Path, licence: bool) -> Path:
    dest.mkdir()
    shutil.copy2(open_pack / "fr_feature.onnx", dest / "w600k_r50.onnx")
    shutil.copy2(open_pack / "fr_detect.onnx", dest / "fr_detect.onnx")
    shutil.copy2(open_pack / "fr_landmark.onnx", dest / "fr_landmark.onnx")
    if licence:
        (dest / "MODEL.LICENSE").write_text("Test licence: for the test suite only.\n", "utf-8")
    seal_pack(dest, kind="insightface")
    return dest


@pytest.mark.parametrize("licence", [True, False])
def test_insightface_pack_loads_through_model_zoo_and_agrees_on_identities(
    open_pack: Path, embedded: dict, tmp_path: Path, licence: bool
) -> None:
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    pack = _insightface_pack(open_pack, tmp_path / "licensed", licence)
    eng = FaceEngine.from_pack(pack, SETTINGS)
    assert eng.kind == "insightface"
    assert isinstance(eng.embedder.model, ArcFaceONNX)  # routed by insightface's model_zoo
    ours = {name: (ident, eng.embed_file(faces_dir() / name)) for name, ident in labels()}

    # Same image through both paths: the same face (the model_zoo recogniser
    # feeds RGB with mean/std 127.5; the open loader BGR with 127/128).
    for name, (_, vec) in ours.items():
        assert cosine(vec, embedded[name][1]) > 0.8, name

    def nearest_identity(db: dict, name: str) -> str:
        v = db[name][1]
        return max(((cosine(v, w), i) for n, (i, w) in db.items() if n != name))[1]

    for name, (ident, _) in ours.items():
        if sum(1 for i, _ in ours.values() if i == ident) > 1:
            assert nearest_identity(ours, name) == nearest_identity(embedded, name) == ident
    same = [cosine(a[1], b[1]) for a, b in itertools.combinations(ours.values(), 2) if a[0] == b[0]]
    diff = [cosine(a[1], b[1]) for a, b in itertools.combinations(ours.values(), 2) if a[0] != b[0]]
    assert min(same) > max(diff)


def _synthetic_scrfd(path: Path) -> None:
    """A graph with SCRFD's interface (input 1x3x640x640; scores, boxes and
    keypoints for strides 8/16/32, two anchors) reporting one fixed face, to
    prove the SCRFD route without downloading weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, outputs = [], []
    planted = {}
    for stride in (8, 16, 32):
        k = (640 // stride) ** 2 * 2
        score = np.zeros((k, 1), np.float32)
        bbox = np.zeros((k, 4), np.float32)
        kps = np.zeros((k, 10), np.float32)
        if stride == 16:
            i = (20 * 40 + 20) * 2  # cell (20, 20) -> centre (320, 320)
            score[i] = 0.95
            bbox[i] = [5, 6, 5, 6]  # distances in strides: box 240,224 - 400,416
            kps[i] = [-1.5, -1.5, 1.5, -1.5, 0, 0.3, -1.2, 1.8, 1.2, 1.8]
            planted = {
                "box": [240, 224, 400, 416],
                "kps": np.array(kps[i]).reshape(5, 2) * 16 + 320,
            }
        for kind, arr in (("score", score), ("bbox", bbox), ("kps", kps)):
            name = f"{kind}_{stride}"
            nodes.append(
                helper.make_node(
                    "Constant", [], [name], value=numpy_helper.from_array(arr, name + "_v")
                )
            )
            outputs.append(
                (
                    kind,
                    stride,
                    helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)),
                )
            )
    order = {"score": 0, "bbox": 1, "kps": 2}
    outputs.sort(key=lambda t: (order[t[0]], t[1]))
    graph = helper.make_graph(
        nodes,
        "scrfd_synthetic",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 640, 640])],
        [o[2] for o in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return planted


def test_scrfd_detector_is_loaded_through_model_zoo(open_pack: Path, tmp_path: Path) -> None:
    pack = tmp_path / "scrfd"
    pack.mkdir()
    planted = _synthetic_scrfd(pack / "det_synthetic.onnx")
    shutil.copy2(open_pack / "fr_feature.onnx", pack / "w600k_r50.onnx")
    m = seal_pack(pack)
    det = m.require("detector")
    assert det.name == "det_synthetic.onnx" and det.format == "scrfd"
    eng = FaceEngine.from_pack(pack, SETTINGS)
    assert type(eng.detector.model).__name__ == "RetinaFace"  # model_zoo's SCRFD class
    faces = eng.detect(np.full((640, 640, 3), 128, np.uint8))
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, planted["box"], atol=0.5)
    np.testing.assert_allclose(faces[0].kps, planted["kps"], atol=0.5)
    assert faces[0].landmarks68 is None
    assert eng.embed(np.full((640, 640, 3), 128, np.uint8), faces[0]).shape == (512,)


def test_unroutable_recogniser_is_refused(open_pack: Path, tmp_path: Path) -> None:
    pack = tmp_path / "bad"
    pack.mkdir()
    # a 64x64-input model named like a recogniser: neither model_zoo nor the manifest make it one
    shutil.copy2(open_pack / "fr_landmark.onnx", pack / "w600k_r50.onnx")
    shutil.copy2(open_pack / "fr_detect.onnx", pack / "fr_detect.onnx")
    with pytest.raises(ModelPackError):
        seal_pack(pack)
        FaceEngine.from_pack(pack, SETTINGS)
