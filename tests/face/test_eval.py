"""Verification metrics (pure, hand-computed tables), pairs CSV parsing, and
``evaluate`` with the real model pack on the shared test faces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pack_helpers import build_open_pack, faces_dir

from face.eval import (
    EvalError,
    Pair,
    evaluate,
    metrics,
    pairs_from_labels,
    parse_pairs,
    rates_at,
    read_pairs,
    resolve_images,
    roc_auc,
    score_pairs,
    tar_at_far,
    write_pairs,
)
from terminal.core.errors import NoFaceError


def _faces() -> Path:
    return faces_dir()


def auc_brute(scores: np.ndarray, same: np.ndarray) -> float:
    pos = scores[same][:, None]
    neg = scores[~same][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


# ------------------------------------------------------------------ AUC


@pytest.mark.parametrize(
    ("pos", "neg", "auc"),
    [
        ([0.9, 0.8, 0.4], [0.7, 0.3, 0.2, 0.1], 11 / 12),  # 4 + 4 + 3 of 12 pairs ordered
        ([0.9, 0.8], [0.1, 0.2], 1.0),
        ([0.1, 0.2], [0.9, 0.8], 0.0),
        ([0.5], [0.5], 0.5),  # a tie counts half
        ([0.5, 0.6], [0.5, 0.4], 3.5 / 4),  # (0.5,0.5)=0.5, (0.5,0.4)=1, 0.6 beats both
        ([0.3, 0.3, 0.3], [0.3, 0.3], 0.5),
    ],
)
def test_auc_hand_computed(pos, neg, auc) -> None:
    scores = np.array(pos + neg)
    same = np.array([True] * len(pos) + [False] * len(neg))
    assert roc_auc(scores, same) == pytest.approx(auc)
    # order of the pairs does not matter
    perm = np.random.default_rng(0).permutation(scores.size)
    assert roc_auc(scores[perm], same[perm]) == pytest.approx(auc)


def test_auc_matches_pairwise_definition_with_many_ties() -> None:
    rng = np.random.default_rng(7)
    scores = np.round(rng.normal(size=3000), 1)  # rounding forces lots of ties
    same = rng.random(3000) < 0.3
    scores[same] += 0.5
    assert roc_auc(scores, same) == pytest.approx(auc_brute(scores, same), abs=1e-12)


@pytest.mark.parametrize("same", [[True, True], [False, False], []])
def test_auc_undefined_without_both_classes(same) -> None:
    assert roc_auc(np.full(len(same), 0.5), np.array(same, dtype=bool)) is None


# ------------------------------------------------------------------ TAR at FAR

NEG_100 = [i / 100 for i in range(100)]  # 0.00 .. 0.99
POS_4 = [0.995, 0.985, 0.95, 0.5]


@pytest.mark.parametrize(
    ("pos", "neg", "far", "above", "tar", "fa", "meaningful"),
    [
        # 100 impostors, FAR 1e-2: one may pass (0.99); threshold just above 0.98
        (POS_4, NEG_100, 1e-2, 0.98, 0.5, 1, True),
        # FAR 1e-3 with 100 impostors: none may pass -> just above 0.99, flagged
        (POS_4, NEG_100, 1e-3, 0.99, 0.25, 0, False),
        # ties at the cut are all rejected: two impostors at 0.8 and one allowed
        ([0.85, 0.8, 0.7], [0.8, 0.8] + [0.1] * 98, 1e-2, 0.8, 1 / 3, 0, True),
        # 1000 impostors allow 10 at FAR 1e-2
        ([0.999, 0.5], [i / 1000 for i in range(1000)], 1e-2, 0.989, 0.5, 10, True),
    ],
)
def test_tar_at_far_hand_computed(pos, neg, far, above, tar, fa, meaningful) -> None:
    scores = np.array(pos + neg)
    same = np.array([True] * len(pos) + [False] * len(neg))
    p = tar_at_far(scores, same, far)
    assert p.threshold is not None
    assert p.threshold > above and p.threshold == pytest.approx(above, abs=1e-12)
    assert p.tar == pytest.approx(tar)
    assert p.false_accepts == fa
    assert p.far == pytest.approx(fa / len(neg)) and p.far <= far
    assert p.negatives == len(neg)
    assert p.meaningful is meaningful
    assert ("needs at least" in p.note) is (not meaningful)


def test_tar_at_far_without_impostors_or_genuines() -> None:
    only_pos = tar_at_far(np.array([0.9, 0.8]), np.array([True, True]), 1e-2)
    assert only_pos.threshold is None and only_pos.tar is None and not only_pos.meaningful
    assert "no different-person pairs" in only_pos.note
    only_neg = tar_at_far(np.array([0.1, 0.2]), np.array([False, False]), 1e-2)
    assert only_neg.tar is None and only_neg.threshold is not None
    with pytest.raises(EvalError):
        tar_at_far(np.array([0.1]), np.array([False]), 0.0)


def test_rates_at_threshold_and_metrics_bundle() -> None:
    scores = np.array([0.9, 0.6, 0.45, 0.5, 0.2, 0.1])
    same = np.array([True, True, True, False, False, False])
    r = rates_at(scores, same, 0.5)
    assert r == {
        "threshold": 0.5,
        "tar": pytest.approx(2 / 3),
        "far": pytest.approx(1 / 3),
        "genuine_rejected": 1,
        "impostors_accepted": 1,
    }
    m = metrics(scores, same, accept_threshold=0.5)
    assert m["auc"] == pytest.approx(8 / 9)  # 0.45 loses to 0.5 only
    assert [p["far_target"] for p in m["tar_at_far"]] == [1e-2, 1e-3, 1e-4]
    assert all(not p["meaningful"] for p in m["tar_at_far"])  # 3 impostors only
    assert m["genuine_scores"]["min"] == pytest.approx(0.45)
    assert m["impostor_scores"]["max"] == pytest.approx(0.5)
    json.dumps(m, allow_nan=False)  # strict JSON: no NaN anywhere


def test_score_pairs_gram_and_chunked_agree(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    e = rng.standard_normal((50, 512)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ia = rng.integers(0, 50, 20_000)
    ib = rng.integers(0, 50, 20_000)
    want = np.sum(e[ia].astype(np.float64) * e[ib], axis=1)
    np.testing.assert_allclose(score_pairs(e, ia, ib), want, atol=1e-5)
    monkeypatch.setattr("face.eval.GRAM_MAX_IMAGES", 10)  # force the chunked path
    np.testing.assert_allclose(score_pairs(e, ia, ib), want, atol=1e-5)


# ------------------------------------------------------------------ CSV input


def test_parse_pairs_accepts_spellings_order_and_blank_lines() -> None:
    text = (
        "same,b,a,comment\n1,x.jpg,y.jpg,\nFALSE,p.png,q.png,hi\n\ntrue , r.jpg , s.jpg,\nno,t,u,\n"
    )
    assert parse_pairs(text) == [
        Pair("y.jpg", "x.jpg", True),
        Pair("q.png", "p.png", False),
        Pair("s.jpg", "r.jpg", True),
        Pair("u", "t", False),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("   \n\n", "is empty"),
        ("a,b,same\n", "no pairs"),
        ("a,b\nx,y\n", "missing column(s) same"),
        ("left,right,label\nx,y,1\n", "missing column(s) a, b, same"),
        ("a,b,same\nx,y,maybe\n", "line 2: 'same' must be 1/0/true/false"),
        ("a,b,same\nx,y\n", "line 2: expected 3 columns"),
        ("a,b,same\nx,,1\n", "line 2: empty image name"),
    ],
)
def test_parse_pairs_errors(text: str, message: str) -> None:
    with pytest.raises(EvalError) as err:
        parse_pairs(text, source="pairs.csv")
    assert message in str(err.value)
    assert str(err.value).startswith("pairs.csv")


def test_read_pairs_file_errors_and_bom(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="not found"):
        read_pairs(tmp_path / "nope.csv")
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffa,b,same\nx,y,1\n".encode())
    assert read_pairs(bom) == [Pair("x", "y", True)]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,b,same\n\xe9,y,1\n")
    with pytest.raises(EvalError, match="not UTF-8"):
        read_pairs(latin)


def test_unknown_and_escaping_image_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "ok.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    assert resolve_images(tmp_path / "imgs", ["ok.jpg"]) == {
        "ok.jpg": (tmp_path / "imgs" / "ok.jpg").resolve()
    }
    with pytest.raises(EvalError) as err:
        resolve_images(tmp_path / "imgs", ["ok.jpg", "missing.jpg", "../secret.jpg"])
    assert "2 image(s)" in str(err.value) and "missing.jpg" in str(err.value)


def test_pairs_from_labels_round_trip(tmp_path: Path) -> None:
    pairs = pairs_from_labels(_faces() / "labels.csv")
    n = 15
    assert len(pairs) == n * (n - 1) // 2
    assert (
        sum(p.same for p in pairs) == 6 + 1 + 3 + 3 + 1
    )  # obama 4, biden 2, alex 3, kit 3, rose 2
    out = tmp_path / "pairs.csv"
    assert write_pairs(pairs, out) == len(pairs)
    assert read_pairs(out) == pairs


# ------------------------------------------------------------------ with the real models


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from face.pipeline import FaceEngine

    return FaceEngine.from_pack(build_open_pack(tmp_path_factory.mktemp("packs") / "open"))


@pytest.fixture
def eval_set(tmp_path: Path) -> tuple[Path, Path, list[Pair]]:
    """The shared faces plus an image without a face and a corrupt file, and every
    pair of them (same = same identity in labels.csv)."""
    import cv2

    images = tmp_path / "photos"
    shutil.copytree(_faces(), images, ignore=shutil.ignore_patterns("*.csv"))
    blank = np.full((240, 320, 3), 128, np.uint8)
    cv2.putText(blank, "no face here", (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    assert cv2.imwrite(str(images / "wall.png"), blank)
    (images / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    pairs = pairs_from_labels(_faces() / "labels.csv")
    pairs += [Pair("wall.png", pairs[0].a, False), Pair("broken.jpg", pairs[0].b, False)]
    csv_path = tmp_path / "pairs.csv"
    write_pairs(pairs, csv_path)
    return images, csv_path, pairs


def test_evaluate_real_models_on_shared_faces(engine, eval_set) -> None:
    images, csv_path, pairs = eval_set
    calls: list[str] = []

    def counting(path: Path) -> np.ndarray:
        calls.append(path.name)
        return engine.embed_file(path)

    report = evaluate(images, csv_path, engine, accept_threshold=0.5, embed=counting)
    json.dumps(report, allow_nan=False)

    # every distinct image embedded exactly once
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 17
    assert report["images"] == 17 and report["images_embedded"] == 15
    reasons = {f["image"]: f for f in report["images_without_face"]}
    assert set(reasons) == {"wall.png", "broken.jpg"}
    assert reasons["wall.png"]["code"] == "no_face"
    assert reasons["broken.jpg"]["code"] == "bad_image"
    assert all(f["reason"] for f in reasons.values())

    assert report["pairs"] == len(pairs) == 107
    assert report["pairs_scored"] == 105 and report["pairs_skipped"] == 2
    assert report["genuine_pairs"] == 14 and report["impostor_pairs"] == 91
    # the open models separate the shared faces completely at the default threshold
    assert report["auc"] == 1.0
    assert report["at_accept_threshold"]["genuine_rejected"] == 0
    assert report["at_accept_threshold"]["impostors_accepted"] == 0
    assert report["genuine_scores"]["min"] > 0.5 > report["impostor_scores"]["max"]
    far2 = report["tar_at_far"][0]
    assert far2["far_target"] == 1e-2 and far2["tar"] == 1.0
    assert far2["meaningful"] is False and "needs at least 100" in far2["note"]
    assert report["pairs_per_second"] > 0  # reported, not asserted against a target


def test_evaluate_default_embedder_and_bad_inputs(engine, eval_set, tmp_path: Path) -> None:
    images, _, _ = eval_set
    small = tmp_path / "small.csv"
    small.write_text(
        "a,b,same\nfr_obama_obama.jpg,fr_obama_obama2.jpg,1\nfr_obama_obama.jpg,fr_biden_biden.jpg,0\n"
    )
    report = evaluate(images, small, engine)  # engine.embed_file
    assert report["pairs_scored"] == 2 and report["auc"] == 1.0
    assert "at_accept_threshold" not in report

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("a,b,same\nfr_obama_obama.jpg,nobody.jpg,1\n")
    with pytest.raises(EvalError, match=r"nobody\.jpg"):
        evaluate(images, unknown, engine)
    with pytest.raises(EvalError, match="images folder not found"):
        evaluate(tmp_path / "nope", small, engine)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EvalError, match="empty"):
        evaluate(images, empty, engine)


def test_evaluate_with_no_usable_pair(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    (tmp_path / "y.jpg").write_bytes(b"not an image")
    (tmp_path / "p.csv").write_text("a,b,same\nx.jpg,y.jpg,0\n")

    def refuse(path: Path) -> np.ndarray:
        raise NoFaceError("no face found in the image")

    report = evaluate(tmp_path, tmp_path / "p.csv", None, embed=refuse)
    assert report["pairs_scored"] == 0 and report["auc"] is None
    assert len(report["images_without_face"]) == 2
    json.dumps(report, allow_nan=False)
