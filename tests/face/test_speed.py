"""The speed work keeps every result: the PReLU rewrite gives the same
embeddings and liveness scores as the file on disk, ``primary`` equals the
largest face of ``analyze`` (with or without the liveness model running
beside it), and a score computed beside the embedding is not computed twice."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pack_helpers import build_open_pack, default_settings, faces_dir, labels

from face import onnx_models as om
from face.pipeline import FaceEngine, load_image
from face.quality import PoorQualityError
from terminal.core.errors import NoFaceError

SETTINGS = default_settings()


@pytest.fixture(scope="module")
def open_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_open_pack(tmp_path_factory.mktemp("packs") / "open")


@pytest.fixture(scope="module")
def engines(open_pack: Path) -> tuple[FaceEngine, FaceEngine]:
    """(engine on the graphs as shipped, engine as the terminal loads it)."""
    plain = FaceEngine.from_pack(open_pack, SETTINGS)
    opts = om.session_options(SETTINGS.intra_op_threads, SETTINGS.graph_optimization)
    m = plain.manifest
    plain.embedder.session = om.open_session(  # type: ignore[attr-defined]
        m.root / m.require("embedding").name, opts, "plain embedding"
    )
    assert plain.liveness_model is not None
    plain.liveness_model.session = om.open_session(
        m.root / m.require("liveness").name, opts, "plain liveness"
    )
    return plain, FaceEngine.from_pack(open_pack, SETTINGS)


def _prelu_graph(slope: np.ndarray) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 5])
    node = helper.make_node("PRelu", ["x", "a"], ["y"])
    graph = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(slope, "a")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 7
    return bytes(model.SerializeToString())


def test_prelu_rewrite_is_the_same_function() -> None:
    # per-channel slopes, including negative and above one
    slope = np.array([0.25, -0.5, 1.5], np.float32).reshape(3, 1, 1)
    src = _prelu_graph(slope)
    fast = om.prelu_as_relu(src)
    assert fast is not None
    ops = [n.op_type for n in onnx.load_from_string(fast).graph.node]
    assert "PRelu" not in ops and ops.count("Relu") == 1
    opts = om.session_options(1)
    x = np.random.default_rng(3).standard_normal((1, 3, 4, 5)).astype(np.float32)
    want = om.open_session(src, opts, "plain").run(None, {"x": x})[0]
    got = om.open_session(fast, opts, "fast").run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(want, np.where(x > 0, x, slope * x), atol=1e-6)


def test_prelu_rewrite_leaves_other_graphs_alone(open_pack: Path) -> None:
    assert om.prelu_as_relu(open_pack / "fr_detect.onnx") is None  # Relu only
    assert om.prelu_as_relu(open_pack / "fr_feature.onnx") is not None


def test_scores_equal_with_and_without_the_rewrite(engines) -> None:
    plain, fast = engines
    for name, _ in labels():
        image = load_image(faces_dir() / name)
        a = plain.primary(image, liveness=False)
        b = fast.primary(image, liveness=False)
        assert np.array_equal(a.observation.face.box, b.observation.face.box)
        assert float(np.abs(a.embedding - b.embedding).max()) < 1e-5, name
        la = plain.passive_liveness(image, a.observation.face)
        lb = fast.passive_liveness(image, b.observation.face)
        assert la is not None and lb is not None and abs(la - lb) < 1e-4, name


def _two_faces() -> np.ndarray:
    names = [n for n, _ in labels()]
    a = cv2.resize(load_image(faces_dir() / names[0]), (320, 400))
    b = cv2.resize(load_image(faces_dir() / names[-1]), (240, 300))
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[40:440, 0:320] = a
    frame[90:390, 380:620] = b
    return frame


@pytest.mark.parametrize("liveness", [False, True])
def test_primary_equals_the_largest_face_of_analyze(engines, liveness: bool) -> None:
    _, engine = engines
    for image in (_two_faces(), load_image(faces_dir() / labels()[0][0])):
        obs = engine.analyze(image, embed_all=True)
        p = engine.primary(image, liveness=liveness)
        assert p.faces_found == len(obs)
        first = obs[0]
        assert np.array_equal(p.observation.face.box, first.face.box)
        assert np.array_equal(p.observation.face.kps, first.face.kps)
        assert p.observation.quality == first.quality
        assert first.embedding is not None
        assert np.array_equal(p.embedding, first.embedding)
    assert engine.primary(_two_faces()).faces_found == 2


def test_liveness_beside_the_embedding_is_the_same_score_and_runs_once(engines) -> None:
    _, engine = engines
    model = engine.liveness_model
    assert model is not None
    calls = []
    original = model.score

    def counting(image: np.ndarray, box: np.ndarray) -> float:
        calls.append(1)
        return original(image, box)

    model.score = counting  # type: ignore[method-assign]
    try:
        image = load_image(faces_dir() / labels()[1][0])
        p = engine.primary(image, liveness=True)
        assert p.passive_liveness is not None and len(calls) == 1
        assert engine.last_timings.liveness_ms > 0
        # what the recogniser does next: no second run of the model
        assert engine.passive_liveness(image, p.observation.face) == p.passive_liveness
        assert len(calls) == 1
        # another frame (even an equal copy) is scored again, to the same value
        again = engine.passive_liveness(image.copy(), p.observation.face)
        assert len(calls) == 2 and again == pytest.approx(p.passive_liveness, abs=1e-6)
        q = engine.primary(image, liveness=False)
        assert q.passive_liveness is None
        assert engine.passive_liveness(image, p.observation.face) == pytest.approx(again)
        assert len(calls) == 3  # the cache does not outlive the next primary()
        # default: follows face.liveness_passive
        assert engine.primary(image).passive_liveness is not None
    finally:
        del model.score


def test_primary_errors_unchanged(engines) -> None:
    _, engine = engines
    with pytest.raises(NoFaceError):
        engine.primary(np.full((480, 640, 3), 90, np.uint8), liveness=True)
    dark = (load_image(faces_dir() / labels()[0][0]) * 0.1).astype(np.uint8)
    with pytest.raises(PoorQualityError):
        engine.primary(dark, require_quality=True, liveness=True)
