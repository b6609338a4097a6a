"""``footfall run`` end to end: a clip of known people through the service into
the outbox, the manager view, restarts and staff exclusion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from footfall_helpers import EXPECT, STAFF, LockstepSource, clip, make_centre
from sqlalchemy import select

from face.footfall.config import FootfallConfig
from face.footfall.service import build_service
from face.footfall.store import (
    ATTENDANCE_FIELDS,
    HOURLY_FIELDS,
    KIND_ATTENDANCE,
    KIND_HOURLY,
    footfall_summary,
)
from terminal.core.errors import TerminalError
from terminal.db.outbox import verify_outbox
from terminal.db.tables import OutboxRow


@pytest.fixture(scope="module")
def centre_clip(clip_dir: Path, sprites: dict[str, Any]) -> Path:
    return clip(clip_dir, sprites)


def run_service(centre: Any, video: Path, open_pack: Path, engine: Any) -> Any:
    cfg = FootfallConfig(staff_ids=STAFF, max_fps=1000.0)  # lock-step source: no pacing
    source = LockstepSource(video, clock=centre.clock)
    svc = build_service(
        source=source,
        config=cfg,
        pack_dir=open_pack,
        face_settings=None,
        sessions=centre.db.sessions,
        outbox=centre.outbox,
        clock=centre.clock,
        gallery=centre.gallery,
        engine=engine,
    )
    svc.run_for(120)
    return svc


def rows(centre: Any) -> list[OutboxRow]:
    with centre.db.sessions() as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.seq)))


def test_service_counts_identifies_and_writes_the_outbox(
    tmp_path: Path, centre_clip: Path, open_pack: Path, engine: Any, faces_dir: Path
) -> None:
    centre = make_centre(tmp_path / "data", engine, faces_dir)
    svc = run_service(centre, centre_clip, open_pack, engine)
    status = svc.status()
    assert status.error is None and not status.running
    assert status.frames == 330

    out = rows(centre)
    kinds = [r.kind for r in out]
    att = [json.loads(r.payload) for r in out if r.kind == KIND_ATTENDANCE]
    hourly = [json.loads(r.payload) for r in out if r.kind == KIND_HOURLY]
    assert set(kinds) == {KIND_ATTENDANCE, KIND_HOURLY}
    # attendance: the consenting senior once (re-entry within the session gap is the same session);
    # the non-consenting resident and the staff member are never recorded
    assert [a["resident_id"] for a in att] == EXPECT["attendance"]
    assert tuple(att[0]) == ATTENDANCE_FIELDS or set(att[0]) == set(ATTENDANCE_FIELDS)
    assert att[0]["session"] == 1 and att[0]["date"] == "2026-01-05" and att[0]["score"] >= 0.55
    assert att[0]["first_seen"].startswith("2026-01-05T") and att[0]["first_seen"].endswith(
        "+08:00"
    )
    # the clip runs from 09:59:50 across 10:00, so the 09:00 hour closed during the run and the
    # 10:00 hour was flushed on stop (partial)
    assert [h["hour_start"][11:16] for h in hourly] == ["09:00", "10:00"]
    assert hourly[0]["partial"] is False and hourly[1]["partial"] is True
    for h in hourly:
        assert set(h) == set(HOURLY_FIELDS)
    total = {
        k: sum(h[k] for h in hourly)
        for k in ("visits_in", "visits_out", "unique_visitors", "identified_attendance")
    }
    assert total == {
        "visits_in": EXPECT["visits_in"],
        "visits_out": EXPECT["visits_out"],
        "unique_visitors": EXPECT["unique_visitors"],
        "identified_attendance": 1,
    }
    assert sum(h["observed_seconds"] for h in hourly) == pytest.approx(22, abs=2)
    with centre.db.sessions() as s:
        assert verify_outbox(s, "test-device") is None  # chained like every other record

    # the manager view
    with centre.db.sessions() as s:
        day = footfall_summary(s, "2026-01-05")
    assert day["totals"]["visits_in"] == EXPECT["visits_in"]
    assert day["totals"]["visits_out"] == EXPECT["visits_out"]
    assert day["totals"]["unique_visitors"] == EXPECT["unique_visitors"]
    assert day["totals"]["attendees"] == 1 and day["totals"]["attendance_sessions"] == 1
    assert len(day["hours"]) == 24
    assert day["hours"][9]["visits_in"] + day["hours"][10]["visits_in"] == EXPECT["visits_in"]
    assert day["attendance"][0]["resident_id"] == "S-OBAMA"
    centre.close()


def test_restart_same_day_resumes_attendance_and_adds_hours(
    tmp_path: Path, centre_clip: Path, open_pack: Path, engine: Any, faces_dir: Path
) -> None:
    centre = make_centre(tmp_path / "data", engine, faces_dir)
    run_service(centre, centre_clip, open_pack, engine)
    # restart 30 minutes later (within the session gap): no second attendance record
    centre.clock.advance(30 * 60)
    run_service(centre, centre_clip, open_pack, engine)
    att = [json.loads(r.payload) for r in rows(centre) if r.kind == KIND_ATTENDANCE]
    assert [(a["resident_id"], a["session"]) for a in att] == [("S-OBAMA", 1)]
    # two hours later the senior comes back: a second session
    centre.clock.advance(2 * 3600)
    run_service(centre, centre_clip, open_pack, engine)
    att = [json.loads(r.payload) for r in rows(centre) if r.kind == KIND_ATTENDANCE]
    assert [(a["resident_id"], a["session"]) for a in att] == [("S-OBAMA", 1), ("S-OBAMA", 2)]
    with centre.db.sessions() as s:
        day = footfall_summary(s, "2026-01-05")
    assert day["totals"]["visits_in"] == 3 * EXPECT["visits_in"]  # hourly records add up
    assert day["totals"]["attendance_sessions"] == 2 and day["totals"]["attendees"] == 1
    centre.close()


def test_summary_of_an_empty_day_and_bad_dates(
    tmp_path: Path, engine: Any, faces_dir: Path
) -> None:
    centre = make_centre(tmp_path / "data", engine, faces_dir)
    with centre.db.sessions() as s:
        day = footfall_summary(s, "2026-02-01")
        assert day["totals"]["visits_in"] == 0 and day["attendance"] == []
        assert day["totals"]["unique_visitors"] is None  # nothing observed: unknown, not zero
        with pytest.raises(TerminalError, match="YYYY-MM-DD"):
            footfall_summary(s, "1.2.2026")
    centre.close()
