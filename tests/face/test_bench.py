"""The face benchmark's behaviour (never its timings): it runs end to end on the
real models, its report has every figure, variants and int8 really swap the
sessions, and the pure helpers are right."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pack_helpers import build_open_pack, faces_dir

from face.bench import (
    STAGES,
    Tuning,
    _agreement,
    bench_face,
    bench_int8,
    bench_search,
    bench_variants,
    check_targets,
    default_tunings,
    image_files,
    letterbox,
    make_frames,
    summary,
)

_PACK: list[Path] = []


def _faces() -> Path:
    return faces_dir()


@pytest.fixture(scope="module", autouse=True)
def open_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _PACK[:] = [build_open_pack(tmp_path_factory.mktemp("packs") / "open")]
    return _PACK[0]


def factory():
    from face.pipeline import FaceEngine

    return FaceEngine.from_pack(_PACK[0])


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    files = [p for p in image_files(_faces()) if "obama" in p.name or "biden" in p.name][:3]
    out = make_frames(files)
    assert len(out) == 3
    return out


def test_summary_table() -> None:
    s = summary([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s == {"median": 3.0, "p90": 61.6, "mean": 22.0, "min": 1.0, "n": 5}
    assert summary([])["median"] is None and summary([])["n"] == 0


@pytest.mark.parametrize(("h", "w"), [(1000, 500), (100, 400), (480, 640), (50, 50)])
def test_letterbox_keeps_proportions(h: int, w: int) -> None:
    img = np.full((h, w, 3), 255, np.uint8)
    out = letterbox(img)
    assert out.shape == (480, 640, 3)
    ys, xs = np.nonzero(out[:, :, 0] == 255)
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert abs(bw / bh - w / h) < 0.02 * (w / h) + 0.01
    assert bh == 480 or bw == 640  # fills one side


def test_make_frames_skips_unreadable(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    good = next(iter(image_files(_faces())))
    frames = make_frames([tmp_path / "bad.jpg", good, np.zeros((10, 10), np.uint8)])
    assert len(frames) == 2 and all(f.shape == (480, 640, 3) for f in frames)


def test_check_targets() -> None:
    report = {
        "identify_with_liveness_ms": {"median": 12.5},
        "search_ms": {"100000": {"median": 21.0}},
        "memory_with_pack": {"peak_rss_mb": 180.0},
        "peer": {"available": False},
    }
    t = check_targets(report)
    assert t["identify_median_ms"]["met"] is True
    assert t["search_100k_median_ms"]["met"] is False
    assert t["rss_mb_with_pack"]["met"] is True
    assert t["peer_ratio"] == {"value": None, "target": 10.0, "met": None}
    assert check_targets({"identify_ms": {"median": 13.5}})["identify_median_ms"]["met"] is False


def test_default_tunings_cover_levels_threads_spinning() -> None:
    names = [t.name for t in default_tunings(2, "all")]
    assert names[0] == "configured"
    assert {"graph=extended", "graph=basic", "threads=1", "spinning=on", "prelu=native"} <= set(
        names
    )
    assert "graph=all" not in names  # already the configured one


def test_agreement_counts_changed_decisions() -> None:
    ref = np.eye(6, 8, dtype=np.float32)  # every pair scores 0
    same = _agreement(ref, ref.copy(), 0.5)
    assert same["pairs"] == 15 and same["pair_decisions_changed"] == 0
    assert same["cosine_to_float"] == {"min": 1.0, "mean": 1.0}
    other = ref.copy()
    other[1] = other[0]  # pair (0, 1) now scores 1: one decision flips
    changed = _agreement(ref, other, 0.5)
    assert changed["pair_decisions_changed"] == 1
    assert changed["cosine_to_float"]["min"] == 0.0
    assert changed["pair_score_abs_diff"]["max"] == 1.0


def test_bench_search_builds_requested_sizes() -> None:
    out = bench_search(sizes=(50, 120), queries=5)
    json.dumps(out, allow_nan=False)
    assert list(out) == ["50", "120"]
    for size, identities in ((50, 10), (120, 24)):  # 5 templates per identity
        row = out[str(size)]
        assert set(row) == {
            "median",
            "p90",
            "mean",
            "min",
            "n",
            "templates",
            "identities",
            "matrix_mb",
        }
        assert row["templates"] == size and row["identities"] == identities
        assert row["n"] == 5  # one timing per query, the warm-up searches not counted
        assert row["matrix_mb"] == round(size * 512 * 4 / 2**20, 1)
        times = [row[k] for k in ("min", "median", "mean", "p90")]
        assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in times), row
        assert row["min"] <= row["median"] <= row["p90"] and row["min"] <= row["mean"], row


def test_bench_face_end_to_end_minimal(frames) -> None:
    report = bench_face(
        factory,
        frames,
        peer=False,
        repeats=1,
        gallery_sizes=(100,),
        variants=False,
        int8=False,
        identify_gallery=20,
    )
    json.dumps(report, allow_nan=False)
    assert report["frames"]["count"] == 3 and report["frames"]["timed_runs"] == 3
    # each bench frame is enrolled in the identify gallery, so each identifies
    assert report["frames"]["decisions"] == {"identified": 3}
    assert set(report["stages_ms"]) == set(STAGES)
    for stage in ("detect", "landmarks", "align", "embed", "liveness"):
        assert report["stages_ms"][stage]["n"] == 3 and report["stages_ms"][stage]["median"] > 0
    assert report["identify_ms"]["median"] >= report["stages_ms"]["embed"]["median"]
    # identify with passive liveness is the headline figure, wall and CPU
    ident = report["identify_with_liveness_ms"]
    assert ident == report["identify_ms"] and ident["n"] == 3
    assert report["identify_with_liveness_cpu_ms"]["n"] == 3
    assert "passive liveness" in report["identify_includes"]
    conc = report["liveness_concurrency"]
    assert conc["concurrent_ms"]["n"] == 3 and conc["sequential_ms"]["n"] == 3
    # the active challenge's compute per frame: every frame is found and re-identified
    ch = report["challenge"]
    assert report["challenge_compute_ms_per_frame"] == ch["challenge_compute_ms_per_frame"]
    assert ch["frames"] == 3 and ch["reidentified_frames"] == 3
    assert ch["challenge_compute_ms_per_frame"]["median"] > 0
    assert ch["max_frames_per_second"] > 0
    assert "bench kiosk" in ch["face_to_confirm"]
    assert report["model_load_seconds"] > 0
    assert report["memory_with_pack"]["peak_rss_mb"] > 0
    assert report["threads"]["intra_op"] == 2 and report["threads"]["process_threads"] >= 1
    assert report["search_ms"]["100"]["templates"] == 100
    assert report["peer"] == {"available": False, "reason": "not requested (use --peer)"}
    assert set(report["targets"]) == {
        "identify_median_ms",
        "search_100k_median_ms",
        "rss_mb_with_pack",
        "peer_ratio",
    }


def test_variant_reopens_sessions_with_the_tuning(frames) -> None:
    out = bench_variants(
        factory, frames[:2], [Tuning("one-thread", "extended", 1)], 1, 10, lambda _m: None
    )
    assert len(out) == 1 and "error" not in out[0]
    assert out[0]["intra_op_threads"] == 1 and out[0]["graph_optimization"] == "extended"
    assert out[0]["identify_ms"]["n"] == 2


def test_int8_variants_agree_with_float(frames) -> None:
    out = bench_int8(factory, frames, 1, 10, lambda _m: None)
    assert out["available"] is True and out["crops"] == 3
    names = [v["name"] for v in out["variants"]]
    assert names == ["int8-dynamic-qint8", "int8-dynamic-quint8", "int8-static-qdq"]
    for v in out["variants"]:
        assert "error" not in v, v
        assert v["size_bytes"] < out["float"]["size_bytes"]  # weights really are int8
        assert 0.8 < v["cosine_to_float"]["min"] <= 1.0 + 1e-5
        assert v["cosine_to_float"]["mean"] < 0.99999  # a different model really ran
        assert v["pairs"] == 3


def test_variant_with_the_graphs_as_shipped(frames) -> None:
    import onnx

    from face import onnx_models as om

    opened: list[object] = []
    real = om.open_session

    def spy(model, opts, label):
        opened.append(model)
        return real(model, opts, label)

    om.open_session = spy
    try:
        out = bench_variants(
            factory,
            frames[:1],
            [Tuning("prelu=native", "all", 2, prelu_rewrite=False)],
            1,
            5,
            lambda _m: None,
        )
    finally:
        om.open_session = real
    assert out[0]["prelu_rewrite"] is False and "error" not in out[0]
    # the reopened sessions are the files as shipped: fr_feature still has its PReLUs
    feature = [m for m in opened if isinstance(m, Path) and m.name == "fr_feature.onnx"]
    assert feature and any(n.op_type == "PRelu" for n in onnx.load(str(feature[-1])).graph.node)


def test_peer_unavailable_says_how_to_install(monkeypatch, frames) -> None:
    import face.bench as fb

    monkeypatch.setattr(fb, "load_peer", lambda: (None, "dlib is not installed (run x)"))
    out = fb.bench_peer(frames, 1, 10.0, lambda: [1.0])
    assert out == {"available": False, "reason": "dlib is not installed (run x)"}


def test_dlib_missing_reason_names_the_install_script(monkeypatch) -> None:
    import importlib

    import face.bench as fb

    real_import = importlib.import_module

    def no_dlib(name, *a, **k):
        if name == "dlib":
            raise ImportError("no dlib")
        return real_import(name, *a, **k)

    monkeypatch.setattr(fb.importlib, "import_module", no_dlib)
    fr, reason = fb.load_peer()
    assert fr is None and "scripts/install-peer.sh" in reason


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("dlib") is None, reason="peer not installed"
)
def test_peer_ratio_from_interleaved_passes(frames) -> None:
    passes = []

    def ours() -> list[float]:
        passes.append(1)
        return [2.0, 2.0, 2.0]

    from face.bench import bench_peer

    out = bench_peer(frames, 2, 999.0, ours)
    assert out["available"] is True and len(passes) == 2
    assert out["ours_identify_ms"]["median"] == 2.0
    assert out["ratio_peer_over_ours"] == round(out["identify_ms"]["median"] / 2.0, 2)
