"""``care-terminal footfall eval --json``: what a technician sees
of a run, through the real command on a generated clip with a truth file that
has one crossing nobody made (reported missed) and lacks one that happened
(its count reported extra)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from diagnostics_helpers import (
    FAKE_OUT_FRAME,
    cli_env,
    make_clip,
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
    assert doc["extra_counts"] == []
    assert doc["directions"]["entries"]["error"] == 0 == doc["directions"]["exits"]["error"]
