"""Counting accuracy on the synthetic clips with exact ground truth
(``footfall eval``), and the evaluator's input errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from face.footfall import synth
from face.footfall.config import FootfallConfig
from face.footfall.evaluate import FootfallEvalError, evaluate_video, match_events, read_truth
from face.footfall.service import make_pipeline_factory


@pytest.fixture(scope="module")
def factory(open_pack: Path, engine: Any) -> Any:
    return make_pipeline_factory(FootfallConfig(), pack_dir=open_pack, engine=engine)


@pytest.fixture(scope="module")
def reports(standard_clips: list[tuple[Path, Path]], factory: Any) -> list[dict[str, Any]]:
    return [evaluate_video(v, t, factory) for v, t in standard_clips]


def test_clips_cover_the_failure_modes(standard_clips: list[tuple[Path, Path]]) -> None:
    notes = set()
    total = 0
    for video, truth in standard_clips:
        doc = json.loads(truth.read_text())
        notes |= set(doc["scenarios"])
        total += doc["entries"] + doc["exits"]
        assert doc["fps"] == 15 and doc["width"] == 640 and doc["height"] == 480
        assert video.stat().st_size < 40 * 1024 * 1024  # small enough to regenerate in CI
    assert {
        "occlusion",
        "pause",
        "u-turn",
        "linger-then-in",
        "linger-then-back",
        "two-together",
        "two-leaving",
        "repeat-visits",
        "edge-only",
    } <= notes
    assert total >= 20


def test_count_error_within_target(reports: list[dict[str, Any]]) -> None:
    true_total = sum(r["truth"]["entries"] + r["truth"]["exits"] for r in reports)
    abs_err = sum(r["error"]["absolute"] for r in reports)
    assert abs_err / true_total <= 0.05, [r["error"] for r in reports]
    for r in reports:
        assert r["error"]["rate"] <= 0.05, r


def test_no_double_counts_and_no_phantom_events(reports: list[dict[str, Any]]) -> None:
    # lingering on the line, U-turns and people born at the frame edge are in the
    # clips: none of them may produce an event that matches no true crossing
    for r in reports:
        assert r["events"]["extra"] == 0, r["events"]
        assert r["events"]["missed"] <= max(
            1, round(0.05 * (r["truth"]["entries"] + r["truth"]["exits"]))
        )


def test_unique_visitors(reports: list[dict[str, Any]]) -> None:
    for r in reports:
        assert r["counted"]["unique_visitors"] == r["truth"]["unique_visitors"], r["counted"]


def test_report_shape(reports: list[dict[str, Any]]) -> None:
    r = reports[0]
    assert r["frames"] > 500 and r["size"] == [640, 480] and r["detector"] == "face"
    stages = r["processing"]["stage_ms_per_frame"]
    assert set(stages) >= {"detect", "track", "count", "landmarks_embed", "identify"}
    assert r["processing"]["fps"] > 0 and r["processing"]["decode_ms_per_frame"] > 0
    json.dumps(r)  # plain JSON


def test_truth_is_independent_of_the_counter() -> None:
    # a scripted linger that sways across the line but never leaves +-clear distance
    scene = synth.Scene(
        name="t",
        duration=10,
        actors=(
            synth.Actor(
                "x",
                synth._wp((0, 320, -40), (3, 320, 240), (7, 320, 240), (10, 320, -40)),
                sway=((3, 7),),
                sway_px=15,
            ),
            synth.Actor("y", synth._wp((0, 100, -40), (5, 100, 520))),
        ),
    )
    ev = synth.truth_events(scene)
    assert [(e["actor"], e["direction"]) for e in ev] == [(1, "in")]


@pytest.mark.parametrize(
    ("counted", "truth", "expected"),
    [
        ([(10, "in")], [{"frame": 12, "direction": "in"}], {"matched": 1, "missed": 0, "extra": 0}),
        (
            [(10, "in"), (14, "in")],
            [{"frame": 12, "direction": "in"}],
            {"matched": 1, "missed": 0, "extra": 1},
        ),
        (
            [(10, "out")],
            [{"frame": 12, "direction": "in"}],
            {"matched": 0, "missed": 1, "extra": 1},
        ),
        (
            [(100, "in")],
            [{"frame": 12, "direction": "in"}],
            {"matched": 0, "missed": 1, "extra": 1},
        ),
    ],
)
def test_match_events(
    counted: list[tuple[int, str]], truth: list[dict[str, Any]], expected: dict[str, int]
) -> None:
    assert match_events(counted, truth, tolerance_frames=22) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"entries": 3}', "needs integer"),
        ('{"entries": -1, "exits": 0}', "negative"),
        ('{"entries": 1, "exits": 0, "events": [{"frame": "x"}]}', "events"),
        ('{"entries": 1, "exits": 0, "line": {"x9": 1}}', "line"),
    ],
)
def test_bad_truth_files(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "t.json"
    p.write_text(content)
    with pytest.raises(FootfallEvalError, match=message):
        read_truth(p)


def test_missing_inputs(tmp_path: Path, factory: Any) -> None:
    with pytest.raises(FootfallEvalError, match="truth file not found"):
        read_truth(tmp_path / "nope.json")
    (tmp_path / "t.json").write_text('{"entries": 0, "exits": 0}')
    with pytest.raises(FootfallEvalError, match="video file not found"):
        evaluate_video(tmp_path / "nope.avi", tmp_path / "t.json", factory)
    (tmp_path / "bad.avi").write_bytes(b"garbage" * 100)
    with pytest.raises(FootfallEvalError):
        evaluate_video(tmp_path / "bad.avi", tmp_path / "t.json", factory)


def test_line_at_the_frame_edge_is_refused(
    tmp_path: Path, standard_clips: list[tuple[Path, Path]], factory: Any
) -> None:
    video, _ = standard_clips[0]
    truth = tmp_path / "edge.json"
    truth.write_text(
        json.dumps(
            {"entries": 0, "exits": 0, "line": {"x1": 0.0, "y1": 0.99, "x2": 1.0, "y2": 0.99}}
        )
    )
    with pytest.raises(FootfallEvalError, match="frame edge"):
        evaluate_video(video, truth, factory)
