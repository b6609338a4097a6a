"""Privacy by construction: no image, crop or embedding from footfall reaches
the disk or the outbox.

The service runs on a clip of enrolled and unknown people with its data
directory, temp directory and working directory all inside ``tmp_path``.
During the run every Python-level open for writing is recorded. Afterwards:

* the only files anywhere under ``tmp_path`` are the database (and its WAL/SHM);
* no file contains JPEG/PNG data, the bytes of any embedding footfall computed,
  or *any* window of 512 float32 numbers shaped like an embedding (unit norm);
* every outbox payload is a flat record of the documented fields with short
  scalar values;
* every text cell of every table holds no list of numbers;
* after stop, nothing of the day's anonymous embeddings is left in memory.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from footfall_helpers import STAFF, LockstepSource, clip, make_centre

from face.footfall.config import FootfallConfig
from face.footfall.detectors import FaceBoxDetector
from face.footfall.pipeline import FootfallPipeline
from face.footfall.service import FootfallService
from face.footfall.store import ATTENDANCE_FIELDS, HOURLY_FIELDS, FootfallStore
from face.footfall.tracking import ByteTrackAdapter

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class RecordingDetector(FaceBoxDetector):
    """The real detector; keeps a copy of every embedding it returns so the
    test can look for those exact bytes on disk."""

    seen: list[np.ndarray]

    def embed(self, frame_bgr: np.ndarray, face: Any) -> np.ndarray:
        vec = super().embed(frame_bgr, face)
        self.seen.append(np.array(vec, dtype=np.float32, copy=True))
        return vec


def unit_windows(data: bytes, dim: int = 512, tol: float = 0.02) -> int:
    """How many windows of ``dim`` consecutive float32 values (any alignment)
    have unit L2 norm with small components, i.e. look like an embedding."""
    found = 0
    for shift in range(4):
        n = (len(data) - shift) // 4
        if n < dim:
            continue
        with np.errstate(all="ignore"):
            f = np.frombuffer(data, dtype="<f4", count=n, offset=shift).astype(np.float64)
            bad = ~np.isfinite(f) | (np.abs(f) > 0.6)
            f = np.where(bad, 0.0, f)
            c = np.concatenate([[0.0], np.cumsum(f * f)])
            norms = c[dim:] - c[:-dim]
            cb = np.concatenate([[0], np.cumsum(bad)])
            clean = (cb[dim:] - cb[:-dim]) == 0
        found += int(np.count_nonzero(clean & (np.abs(norms - 1.0) < tol)))
    return found


def test_unit_window_detector_finds_a_planted_embedding() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=512).astype(np.float32)
    v /= np.linalg.norm(v)
    blob = rng.integers(0, 255, 3001, dtype=np.uint8).tobytes() + v.tobytes() + b"tail"
    assert unit_windows(blob) >= 1
    assert unit_windows(rng.integers(0, 255, 9000, dtype=np.uint8).tobytes()) == 0


def test_no_image_crop_or_embedding_reaches_disk_or_outbox(
    tmp_path: Path,
    clip_dir: Path,
    sprites: dict[str, Any],
    open_pack: Path,
    engine: Any,
    faces_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    video = clip(clip_dir, sprites)  # the clip lives in the test cache, outside tmp_path
    work = tmp_path / "cwd"
    tmpdir = tmp_path / "tmp"
    work.mkdir()
    tmpdir.mkdir()
    centre = make_centre(tmp_path / "data", engine, faces_dir)
    before = {p for p in tmp_path.rglob("*") if p.is_file()}

    cfg = FootfallConfig(staff_ids=STAFF, max_fps=1000.0)
    detector = RecordingDetector(engine, cfg.det_score, min_face_px=cfg.min_face_px)
    detector.seen = []
    pipelines: list[FootfallPipeline] = []

    def factory(c: FootfallConfig, size: tuple[int, int]) -> FootfallPipeline:
        p = FootfallPipeline(
            detector,
            ByteTrackAdapter(fps=c.fps),
            c,
            size,
            gallery=centre.gallery,
            accept_threshold=0.5,
            min_margin=0.08,
        )
        pipelines.append(p)
        return p

    writes: list[str] = []
    real_open, real_os_open, real_io_open = builtins.open, os.open, io.open

    def rec_open(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        if any(ch in mode for ch in "wax+"):
            writes.append(str(file))
        return real_open(file, mode, *a, **k)

    def rec_io_open(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        if any(ch in mode for ch in "wax+"):
            writes.append(str(file))
        return real_io_open(file, mode, *a, **k)

    def rec_os_open(path: Any, flags: int, *a: Any, **k: Any) -> Any:
        if flags & _WRITE_FLAGS:
            writes.append(str(path))
        return real_os_open(path, flags, *a, **k)

    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    monkeypatch.setattr(builtins, "open", rec_open)
    monkeypatch.setattr(io, "open", rec_io_open)
    monkeypatch.setattr(os, "open", rec_os_open)
    svc = FootfallService(
        LockstepSource(video, clock=centre.clock),
        factory,
        cfg,
        centre.db.sessions,
        FootfallStore(centre.outbox),
        centre.clock,
    )
    svc.run_for(120)
    monkeypatch.undo()

    assert svc.status().error is None
    summary = svc.status()
    assert summary.frames > 300 and summary.visits_in > 0 and summary.unique_visitors
    assert len(detector.seen) >= 5, "the run must have computed embeddings to be a meaningful test"

    # 1. nothing was opened for writing from Python during the run (SQLite writes from C)
    assert writes == [], writes
    # 2. the only new files are the database and its WAL/SHM
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    new = sorted(p.relative_to(tmp_path).as_posix() for p in after - before)
    allowed = {"data/terminal.db", "data/terminal.db-wal", "data/terminal.db-shm"}
    assert set(new) <= allowed, new
    assert not any(work.iterdir()) and not any(tmpdir.iterdir())
    # 3. no image bytes, no footfall embedding bytes, no embedding-like arrays in any file
    needles = [v[:16].tobytes() for v in detector.seen] + [
        v[:16].astype(np.float64).tobytes() for v in detector.seen
    ]
    contents = [(p, p.read_bytes()) for p in sorted(after)]  # the WAL as the run left it
    centre.db.engine.dispose()  # checkpoint: the WAL's pages move into the database file
    contents += [(p, p.read_bytes()) for p in sorted(after) if p.is_file()]
    for path, data in contents:
        assert b"\xff\xd8\xff" not in data, f"JPEG data in {path}"
        assert b"\x89PNG" not in data, f"PNG data in {path}"
        for n in needles:
            assert n not in data, f"a footfall embedding is in {path}"
        assert unit_windows(data) == 0, f"embedding-like float array in {path}"
    # 4. outbox payloads: flat records of the documented fields, short scalars only
    con = sqlite3.connect(tmp_path / "data" / "terminal.db")
    try:
        payloads = con.execute("SELECT kind, payload FROM outbox").fetchall()
        assert payloads, "the run wrote nothing to the outbox"
        for kind, text in payloads:
            doc = json.loads(text)
            assert set(doc) == set(
                HOURLY_FIELDS if kind == "footfall_hourly" else ATTENDANCE_FIELDS
            )
            for value in doc.values():
                assert value is None or isinstance(value, bool | int | float | str)
                assert not isinstance(value, str) or len(value) <= 64
        # 5. no table holds a list of numbers in a text cell
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    if isinstance(cell, str) and cell[:1] in "[{":
                        doc = json.loads(cell)
                        flat = doc if isinstance(doc, list) else list(doc.values())
                        assert sum(isinstance(x, float) for x in flat) < 16, (table, cell[:80])
    finally:
        con.close()
    # 6. memory: the day's anonymous embeddings and per-track vectors are gone after stop
    for p in pipelines:
        assert p.visitors.vectors_held == 0 and p.visitors.count == 0
        assert p._tracks == {}
    centre.close()
