"""``bench footfall``: the document's shape and sanity (timings are not asserted
against targets here; ``notes/bench_footfall.md`` records measured figures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from face.footfall.bench import bench_footfall


def test_bench_document(open_pack: Path, standard_clips: list[tuple[Path, Path]]) -> None:
    video = standard_clips[0][0]
    doc: dict[str, Any] = bench_footfall(
        open_pack, video=video, max_frames=60, paced_seconds=1.5, kiosk_repeats=3
    )
    json.dumps(doc)
    m = doc["max"]
    assert m["frames"] == 60 and m["size"] == [640, 480] and m["fps"] > 0
    assert set(m["stage_ms_per_frame"]) == {
        "decode",
        "detect",
        "track",
        "count",
        "landmarks_embed",
        "identify",
    }
    assert m["stage_ms_per_frame"]["detect"] > 0 and 0 < m["cpu_share"] <= 2.5
    p = doc["paced"]
    assert p["frames"] > 0 and 0 < p["fps"] <= 16 and 0 <= p["cpu_share_thread"] <= 1.5
    k = doc["kiosk"]
    for key in (
        "identify_ms_alone",
        "identify_ms_with_footfall",
        "identify_ms_at_kiosk_rate_alone",
        "identify_ms_at_kiosk_rate_with_footfall",
    ):
        assert k[key]["median"] > 0 and k[key]["p95"] >= k[key]["median"] * 0.5
    assert k["kiosk_rate_per_s"] == 8.0 and 0 < k["footfall_fps_meanwhile_at_kiosk_rate"] <= 16
    assert doc["rss_mb"]["peak"] >= doc["rss_mb"]["start"] > 0
    assert doc["footfall_threads"] == 1 and doc["detector"] == "face"
