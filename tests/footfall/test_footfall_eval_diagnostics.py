"""``care-terminal footfall eval --json --video-out``: what a technician sees
of a run, through the real command on a generated clip with a truth file that
has one crossing nobody made (reported missed) and lacks one that happened
(its count reported extra)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from diagnostics_helpers import (
    FAKE_OUT_FRAME,
    assert_clean_error,
    cli_env,
    make_clip,
    read_frames,
    ring_and_inside,
    run_cli,
)

from face.footfall import synth


@pytest.fixture(scope="module")
def clip(
    tmp_path_factory: pytest.TempPathFactory, sprites: dict[str, synth.Sprite]
) -> tuple[Path, Path, Path]:
    return make_clip(tmp_path_factory.mktemp("diag-clip"), sprites)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, open_pack: Path) -> dict[str, str]:
    return cli_env(tmp_path_factory.mktemp("diag-home"), open_pack)


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
    clip: tuple[Path, Path, Path],
    env: dict[str, str],
) -> tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]:
    video, _, doctored = clip
    out = tmp_path_factory.mktemp("diag-out") / "annotated.avi"
    r = run_cli(
        env,
        "footfall",
        "eval",
        str(video),
        "--truth",
        str(doctored),
        "--json",
        "--video-out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), out, r


def test_clip_is_what_the_test_says(clip: tuple[Path, Path, Path]) -> None:
    truth = json.loads(clip[1].read_text())
    assert [e["direction"] for e in truth["events"]] == ["in", "out", "in"]
    assert truth["frames"] == 135


def test_existing_fields_are_kept(run: tuple[dict[str, Any], Path, Any]) -> None:
    doc = run[0]
    for key in ("video", "frames", "fps_video", "size", "detector", "line"):
        assert key in doc
    assert doc["truth"] == {
        "entries": 1,
        "exits": 2,
        "unique_visitors": doc["truth"]["unique_visitors"],
    }
    assert set(doc["counted"]) >= {"entries", "exits", "unique_visitors", "staff_crossings"}
    assert set(doc["error"]) == {"entries", "exits", "absolute", "rate"}
    assert {"matched", "missed", "extra"} <= set(doc["events"])
    assert set(doc["processing"]) >= {"fps", "cpu_share", "decode_ms_per_frame"}


def test_every_true_crossing_is_listed_matched_or_missed(
    run: tuple[dict[str, Any], Path, Any],
) -> None:
    doc = run[0]
    tol = doc["events"]["tolerance_frames"]
    crossings = doc["crossings"]
    assert [c["direction"] for c in crossings] == ["in", "out", "out"]
    real, fake = crossings[:2], crossings[2]
    for c in real:
        assert c["status"] == "matched", crossings
        assert abs(c["matched_frame"] - c["frame"]) <= tol
        assert isinstance(c["track_id"], int)
    assert fake == {
        "frame": FAKE_OUT_FRAME,
        "direction": "out",
        "identity": "nobody",
        "status": "missed",
        "matched_frame": None,
        "track_id": None,
    }
    assert doc["events"]["matched"] == 2 and doc["events"]["missed"] == 1


def test_every_extra_count_is_listed(
    run: tuple[dict[str, Any], Path, Any], clip: tuple[Path, Path, Path]
) -> None:
    doc = run[0]
    dropped = json.loads(clip[1].read_text())["events"][2]  # the third person's entry
    extras = doc["extra_counts"]
    assert len(extras) == 1 and doc["events"]["extra"] == 1, extras
    x = extras[0]
    assert x["direction"] == "in" and abs(x["frame"] - dropped["frame"]) <= 22
    matched_tracks = {c["track_id"] for c in doc["crossings"] if c["track_id"] is not None}
    assert isinstance(x["track_id"], int) and x["track_id"] not in matched_tracks
    # every count is either a matched crossing or an extra one
    counts = {(c["frame"], c["track_id"]) for c in doc["counts"]}
    assert counts == {
        (c["matched_frame"], c["track_id"]) for c in doc["crossings"] if c["status"] == "matched"
    } | {(x["frame"], x["track_id"])}


def test_entries_and_exits_apart(run: tuple[dict[str, Any], Path, Any]) -> None:
    doc = run[0]
    d = doc["directions"]
    assert d["entries"] == {
        "true": 1,
        "counted": 2,
        "error": 1,
        "matched": 1,
        "missed": 0,
        "extra": 1,
    }
    assert d["exits"] == {
        "true": 2,
        "counted": 1,
        "error": -1,
        "matched": 1,
        "missed": 1,
        "extra": 0,
    }
    # the same error the old fields give (a plain total would say 0)
    assert doc["error"]["entries"] == 1 and doc["error"]["exits"] == -1
    assert doc["counted"]["entries"] == 2 and doc["counted"]["exits"] == 1


def test_the_true_truth_file_gives_a_clean_report(
    clip: tuple[Path, Path, Path], env: dict[str, str]
) -> None:
    r = run_cli(env, "footfall", "eval", str(clip[0]), "--truth", str(clip[1]), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [c["status"] for c in doc["crossings"]] == ["matched"] * 3
    assert doc["extra_counts"] == [] and "video_out" not in doc
    assert doc["directions"]["entries"]["error"] == 0 == doc["directions"]["exits"]["error"]


# --------------------------------------------------------------------------- --video-out


def test_annotated_clip_has_every_frame(
    run: tuple[dict[str, Any], Path, Any], clip: tuple[Path, Path, Path]
) -> None:
    doc, out, _ = run
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened()
    cap.release()
    frames_in, frames_out = read_frames(clip[0]), read_frames(out)
    assert len(frames_out) == len(frames_in) == doc["frames"] == 135
    assert frames_out[0].shape == frames_in[0].shape
    assert doc["video_out"] == {"path": str(out), "frames": 135}


def test_boxes_are_drawn_where_the_faces_are(
    run: tuple[dict[str, Any], Path, Any], clip: tuple[Path, Path, Path], engine: Any
) -> None:
    doc, out, _ = run
    frames_in, frames_out = read_frames(clip[0]), read_frames(out)
    # what is drawn on every frame (line, band, inside arrow, counts): frame 0 has no one
    static = cv2.dilate(
        (cv2.absdiff(frames_out[0], frames_in[0]).max(axis=2) > 40).astype(np.uint8),
        np.ones((9, 9), np.uint8),
    )
    checked = 0
    for c in doc["counts"]:
        n = c["frame"]
        boxes, _, _ = engine.detector.detect(frames_in[n])
        assert len(boxes), n
        diff = cv2.absdiff(frames_out[n], frames_in[n]).max(axis=2)
        diff[static > 0] = 0
        for box in boxes:
            if box[1] < 20 or box[3] > frames_in[n].shape[0] - 20:
                continue  # cut by the frame edge: its id label may sit inside it
            ring, core = ring_and_inside(diff, box)
            # the outline is drawn (strongly changed pixels all round the box) ...
            assert (ring > 80).sum() > 1.0 * (box[2] - box[0] + box[3] - box[1]), (n, box)
            # ... and the face inside is the input picture
            assert float((core > 40).mean()) < 0.05, (n, box)
            checked += 1
    assert checked >= 3


def _border_colour(img: np.ndarray) -> np.ndarray:
    return np.concatenate([img[:3].reshape(-1, 3), img[-3:].reshape(-1, 3)]).mean(axis=0)


def test_missed_and_extra_frames_are_marked(
    run: tuple[dict[str, Any], Path, Any], clip: tuple[Path, Path, Path]
) -> None:
    doc, out, _ = run
    frames_in, frames_out = read_frames(clip[0]), read_frames(out)
    b, g, r = _border_colour(frames_out[FAKE_OUT_FRAME])
    assert r > 180 and g < 80 and b < 80, (b, g, r)  # red: a true crossing was missed
    extra = doc["extra_counts"][0]["frame"]
    b, g, r = _border_colour(frames_out[extra])
    assert r > 180 and 90 < g < 190 and b < 80, (b, g, r)  # orange: an extra count
    for n in (0, FAKE_OUT_FRAME - 1):  # nothing wrong there: no marker
        if abs(n - extra) > 20:
            assert (
                cv2.absdiff(_border_colour(frames_out[n]), _border_colour(frames_in[n])).max() < 25
            )


def test_the_counting_line_and_counts_are_drawn(
    run: tuple[dict[str, Any], Path, Any], clip: tuple[Path, Path, Path]
) -> None:
    frames_in, frames_out = read_frames(clip[0]), read_frames(run[1])
    diff = cv2.absdiff(frames_out[0], frames_in[0]).max(axis=2)
    # the line is horizontal at y = 240 across 3 %..97 % of the width
    assert (diff[239:242, 40:600] > 80).mean() > 0.8
    assert (diff[0:30, 0:200] > 80).mean() > 0.1  # the counts banner


@pytest.mark.parametrize(
    ("name", "needles"), [("x.mkv", (".avi", ".mp4")), ("no/x.avi", ("does not exist",))]
)
def test_bad_video_out_is_one_clear_error(
    clip: tuple[Path, Path, Path],
    env: dict[str, str],
    tmp_path: Path,
    name: str,
    needles: tuple[str, ...],
) -> None:
    video, truth, _ = clip
    args = ("footfall", "eval", str(video), "--truth", str(truth))
    r = run_cli(env, *args, "--video-out", str(tmp_path / name))
    assert_clean_error(r, *needles)
    assert list(tmp_path.iterdir()) == []


def test_annotated_mp4(clip: tuple[Path, Path, Path], env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "annotated.mp4"
    args = ("footfall", "eval", str(clip[0]), "--truth", str(clip[1]), "--video-out", str(out))
    r = run_cli(env, *args)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["video_out"] == {"path": str(out), "frames": 135}
    assert len(read_frames(out)) == 135
