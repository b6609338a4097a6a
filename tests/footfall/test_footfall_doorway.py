"""The second clip generator (face/footfall/doorway.py) and ``footfall eval``
with ``detector = "fusion"`` on a few of its held-out clips (H.264 files,
rendered once into pytest's cache directory, never committed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import cv2
import pytest

from face.footfall import doorway
from face.footfall.config import FootfallConfig
from face.footfall.evaluate import run_cli_eval
from terminal.config.settings import FaceSettings

# (scenario, seed): held-out clips only (seed >= 100); what they test.
# Two short clips keep the test bounded (rendered once, then cached).
HELD_OUT = [
    ("cross_traffic", 101),  # one walks in while another crosses the room: one entry
    ("single_exit", 101),  # walks out showing the back of the head: one exit
]


def test_camera_gives_the_specified_face_sizes() -> None:
    cam = doorway.Camera()
    at_door = cam.px(doorway.FACE_M, cam.project(0.0, doorway.MEDIAN_HEAD, doorway.Z_WALL)[2])
    at_line = cam.line_face_px()
    assert 18 <= at_door <= 24
    assert 75 <= at_line <= 95
    spec = cam.line_spec()
    assert spec.face_px == pytest.approx(at_line, abs=0.1)
    assert 0.5 < spec.y1 == spec.y2 < 0.8


@pytest.mark.parametrize(
    ("seed", "split"), [(1, "tuning"), (99, "tuning"), (100, "held_out"), (103, "held_out")]
)
def test_split_by_seed(seed: int, split: str) -> None:
    assert doorway.split_of(seed) == split


def test_truth_is_the_floor_line_crossing() -> None:
    # a scripted walker, no rendering: in through the door, out again, and a
    # U-turn that stops short of clearing the threshold
    k = doorway.Key
    walkers = (
        doorway.Walker((k(0.0, 0.0, 4.0), k(5.0, 0.0, 0.1), k(10.0, 0.0, 4.0)), 0, 0, 1),
        doorway.Walker((k(0.0, 0.5, 4.0), k(4.0, 0.5, 0.6), k(8.0, 0.5, 4.0)), 1, 0, 1),
    )
    sc = doorway.Scenario("t", walkers, 10.0, "")
    events = doorway.truth_events(sc)
    assert [(e["actor"], e["direction"]) for e in events] == [(0, "in"), (0, "out")]


def _key() -> str:
    return hashlib.sha256(Path(doorway.__file__).read_bytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def held_out_clips(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    find_faces: Callable[..., Any],
    face_images: list[tuple[Path, str]],
) -> list[tuple[Path, Path]]:
    try:
        out = Path(request.config.cache.mkdir(f"footfall-doorway-{_key()}"))
    except Exception:
        out = tmp_path_factory.mktemp("doorway")
    clips = []
    for name, seed in HELD_OUT:
        clips += doorway.make_clips(out, find_faces, face_images, seeds=[seed], names=[name])
    return clips


def test_clips_are_h264_with_truth(held_out_clips: list[tuple[Path, Path]]) -> None:
    for video, truth in held_out_clips:
        doc = json.loads(truth.read_text())
        assert doc["generator"] == "doorway" and doc["split"] == "held_out"
        assert doc["codec"].startswith("h264")
        cap = cv2.VideoCapture(str(video))
        assert cap.isOpened()
        assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
        ok, _ = cap.read()
        assert ok
        cap.release()
        with av.open(str(video)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
        assert doc["line"]["face_px"] > 0


def test_fusion_counts_held_out_doorway_clips(
    held_out_clips: list[tuple[Path, Path]], open_pack: Path, person_pack: Path
) -> None:
    cfg = replace(FootfallConfig(), detector="fusion", person_pack_dir=str(person_pack))
    got = {}
    for video, truth in held_out_clips:
        doc = run_cli_eval(
            video, truth, pack_dir=open_pack, face_settings=FaceSettings(), config=cfg
        )
        got[json.loads(truth.read_text())["scenario"]] = doc["directions"]
    cross, leaving = got["cross_traffic"], got["single_exit"]
    # the person crossing the room is not counted (the walker's entry counts
    # only once they leave the picture at the bottom; on this held-out clip
    # their track is lost before that: docs/footfall.md counts such misses)
    assert cross["entries"]["extra"] == 0 and cross["exits"]["counted"] == 0, got
    # the back of a head is counted leaving, at the true crossing (an extra
    # exit of the same walk is still possible: docs/footfall.md counts them)
    assert leaving["exits"]["matched"] == 1 and leaving["entries"]["counted"] == 0, got
