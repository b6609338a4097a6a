"""Pure parts: daily visitors, attendance sessions, the staff/attendee decision,
hourly aggregation and the footfall settings."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from face.footfall.aggregate import HourlyAggregator, hour_start
from face.footfall.config import FootfallConfig
from face.footfall.counting import LineSpec
from face.footfall.identity import AttendanceBook, DailyVisitors, classify
from face.gallery import Match
from terminal.config.footfall import FootfallSettings
from terminal.config.settings import Settings
from terminal.core.clock import CHINA_TZ

DAY = datetime(2026, 1, 5, 8, 0, tzinfo=CHINA_TZ)


def _vec(seed: int, noise: float = 0.0, base: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed if base is None else base)
    v = rng.normal(size=512).astype(np.float32)
    if noise:
        v = v + noise * np.random.default_rng(seed + 1000).normal(size=512).astype(
            np.float32
        ) * np.linalg.norm(v) / np.sqrt(512)
    return v / np.linalg.norm(v)


def test_daily_visitors_one_person_many_visits() -> None:
    dv = DailyVisitors(same_person=0.5)
    a1, a2, a3 = _vec(1, base=1), _vec(2, 0.5, base=1), _vec(3, 0.6, base=1)
    b = _vec(9)
    assert dv.visit(a1) == (1, True)
    assert dv.visit(b) == (2, True)
    assert dv.visit(a2) == (1, False)  # same person, other look
    assert dv.visit(a3) == (1, False)
    assert dv.count == 2
    assert "visitors=2" in repr(dv) and "0." not in repr(dv)  # repr never shows numbers of vectors


def test_daily_visitors_clear_wipes_vectors() -> None:
    dv = DailyVisitors()
    dv.visit(_vec(1))
    held = dv._mat  # the buffer that held the embedding
    dv.clear()
    assert dv.count == 0 and dv.vectors_held == 0
    assert not held.any(), "vectors must be overwritten on clear"
    assert dv.visit(_vec(1)) == (1, True)  # a new day knows nobody


def test_daily_visitors_grow_beyond_initial_capacity() -> None:
    dv = DailyVisitors(same_person=0.9)
    for i in range(200):
        dv.visit(_vec(100 + i))
    assert dv.count == 200 and dv.vectors_held == 200


@pytest.mark.parametrize(
    ("events", "expected_sessions"),
    [
        # (minutes after 08:00, resident) -> which observations start a session
        ([(0, "r1"), (5, "r1"), (50, "r1")], [1, None, None]),  # same visit
        (
            [(0, "r1"), (30, "r1"), (100, "r1")],
            [1, None, 2],
        ),  # 70 min since last seen -> new session
        ([(0, "r1"), (70, "r1"), (75, "r1"), (200, "r1")], [1, 2, None, 3]),
        ([(0, "r1"), (1, "r2"), (2, "r1")], [1, 1, None]),
        ([(0, "r1"), (24 * 60 + 1, "r1")], [1, 1]),  # next day starts over
    ],
)
def test_attendance_sessions(
    events: list[tuple[int, str]], expected_sessions: list[int | None]
) -> None:
    book = AttendanceBook(session_gap=3600)
    got = []
    for minutes, rid in events:
        rec = book.observe(rid, DAY + timedelta(minutes=minutes), 0.71234)
        got.append(None if rec is None else rec.session)
        if rec is not None:
            assert rec.resident_id == rid and rec.score == 0.7123
            assert rec.date == (DAY + timedelta(minutes=minutes)).date().isoformat()
    assert got == expected_sessions


def test_attendance_restore_after_restart() -> None:
    book = AttendanceBook(session_gap=3600)
    book.restore("2026-01-05", {"r1": (1, DAY)})
    assert book.observe("r1", DAY + timedelta(minutes=10), 0.8) is None
    rec = book.observe("r1", DAY + timedelta(minutes=90), 0.8)
    assert rec is not None and rec.session == 2


M = Match
CLASSIFY = [
    # name, search results, expected (kind, resident)
    ("empty gallery", [], ("anonymous", None)),
    ("consented, clearly good", [M("s1", 0.70, 3), M("x", 0.30, 3)], ("attendee", "s1")),
    (
        "consented, just above accept (no extra margin)",
        [M("s1", 0.52, 3), M("x", 0.30, 3)],
        ("anonymous", None),
    ),
    (
        "consented but too close to another",
        [M("s1", 0.70, 3), M("x", 0.66, 3)],
        ("anonymous", None),
    ),
    ("enrolled, not consented", [M("n1", 0.80, 3), M("x", 0.30, 3)], ("anonymous", None)),
    ("staff", [M("staff1", 0.60, 3), M("x", 0.30, 3)], ("staff", "staff1")),
    ("below accept", [M("s1", 0.45, 3)], ("anonymous", None)),
]


@pytest.mark.parametrize(("name", "results", "expected"), CLASSIFY, ids=[c[0] for c in CLASSIFY])
def test_classify(name: str, results: list[Match], expected: tuple[str, str | None]) -> None:
    d = classify(
        results,
        accept_threshold=0.5,
        min_margin=0.08,
        attendance_margin=0.05,
        staff_ids={"staff1"},
        consented_ids={"s1"},
    )
    assert (d.kind, d.resident_id) == expected


# --------------------------------------------------------------------------- hourly


def test_hourly_buckets_close_on_the_hour_and_add_up() -> None:
    agg = HourlyAggregator()
    t = datetime(2026, 1, 5, 8, 59, 50, tzinfo=CHINA_TZ)
    closed = agg.tick(t)
    assert closed == []
    agg.add(t, "in")
    agg.add(t, "new_visitor")
    t2 = t + timedelta(seconds=4)
    agg.tick(t2)
    agg.add(t2, "out")
    t3 = t + timedelta(seconds=14)  # 09:00:04
    closed = agg.tick(t3)
    # the 10 s tick gap is longer than the observed-gap limit, so only 4 s were observed
    assert len(closed) == 1
    b = closed[0]
    assert b.start == datetime(2026, 1, 5, 8, tzinfo=CHINA_TZ)
    assert (b.visits_in, b.visits_out, b.unique_visitors) == (1, 1, 1)
    assert b.observed_seconds == pytest.approx(4.0)
    p = b.payload()
    assert p == {
        "hour_start": "2026-01-05T08:00:00.000+08:00",
        "date": "2026-01-05",
        "visits_in": 1,
        "visits_out": 1,
        "unique_visitors": 1,
        "identified_attendance": 0,
        "observed_seconds": 4,
        "partial": False,
        "detector": "face",
    }
    assert b.payload(identities=False, detector="person")["unique_visitors"] is None


def test_hourly_tick_splits_observed_time_at_the_boundary_and_flush_is_partial() -> None:
    agg = HourlyAggregator()
    t = datetime(2026, 1, 5, 9, 59, 58, tzinfo=CHINA_TZ)
    agg.tick(t)
    closed = agg.tick(t + timedelta(seconds=4))
    assert len(closed) == 1 and closed[0].observed_seconds == pytest.approx(2.0)
    agg.add(t + timedelta(seconds=5), "attendance")
    out = agg.flush(t + timedelta(seconds=6))
    assert len(out) == 1 and out[0].partial and out[0].identified_attendance == 1
    assert out[0].observed_seconds == pytest.approx(4.0)
    assert agg.flush(t + timedelta(seconds=7)) == []  # nothing left


def test_hour_start_refuses_naive() -> None:
    with pytest.raises(ValueError):
        hour_start(datetime(2026, 1, 5, 9))


# --------------------------------------------------------------------------- settings


def test_config_from_the_validated_section() -> None:
    """[footfall] of config.toml -> the counter's runtime config (the rules are
    the section's: tests/config/test_config_sections.py)."""
    s = Settings(
        footfall={
            "line": {"x1": 0.1, "y1": 0.4, "x2": 0.9, "y2": 0.45, "inside": "above"},
            "staff_ids": ["s1", 2],
            "detect_every": 2,
            "person_pack_dir": "/opt/packs/person",
        }
    )
    cfg = FootfallConfig.from_settings(s.footfall)
    assert cfg.line == LineSpec(0.1, 0.4, 0.9, 0.45, inside="above")
    assert cfg.staff_ids == ("s1", "2") and cfg.detect_every == 2 and cfg.detect_stride == 2
    assert cfg.person_pack_dir == "/opt/packs/person" and cfg.source is None
    assert cfg.identities


def test_config_defaults_are_the_sections() -> None:
    assert FootfallConfig() == FootfallConfig.from_settings(FootfallSettings())
