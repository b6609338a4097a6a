"""Footfall records in the outbox, and the manager view's reader.

Two record kinds (plain JSON, no image, no embedding, no name):

``footfall_hourly``
    ``hour_start`` (centre-local RFC 3339), ``date`` (YYYY-MM-DD),
    ``visits_in``, ``visits_out``, ``unique_visitors`` (visitors whose first
    visit of the day fell in this hour; null with the body detector),
    ``identified_attendance`` (attendance sessions started in this hour; null
    with the body detector), ``observed_seconds`` (how long the counter ran in
    the hour), ``partial`` (flushed before the hour ended: another record for
    the same hour may follow, the numbers add up), ``detector`` (face|person).

``attendance``
    ``resident_id``, ``date`` (YYYY-MM-DD), ``session`` (1-based number of the
    day), ``first_seen`` (centre-local RFC 3339), ``score`` (cosine, 4 decimals).

The manager view reads back from the outbox (rows are never deleted there), so
no footfall table and no migration is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from face.footfall.aggregate import HourBucket
from face.footfall.identity import AttendanceRecord
from terminal.core.clock import rfc3339
from terminal.core.ids import new_ulid
from terminal.core.log import get_logger
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.tables import OutboxRow, ResidentRow

log = get_logger(__name__)

KIND_HOURLY = "footfall_hourly"
KIND_ATTENDANCE = "attendance"
HOURLY_FIELDS = (
    "hour_start",
    "date",
    "visits_in",
    "visits_out",
    "unique_visitors",
    "identified_attendance",
    "observed_seconds",
    "partial",
    "detector",
)
ATTENDANCE_FIELDS = ("resident_id", "date", "session", "first_seen", "score")


def attendance_payload(rec: AttendanceRecord) -> dict[str, Any]:
    return {
        "resident_id": rec.resident_id,
        "date": rec.date,
        "session": rec.session,
        "first_seen": rfc3339(rec.first_seen),
        "score": round(float(rec.score), 4),
    }


class FootfallStore:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def write(
        self,
        sessions: sessionmaker[Session],
        now: datetime,
        *,
        attendance: Sequence[AttendanceRecord] = (),
        hours: Sequence[HourBucket] = (),
        identities: bool = True,
        detector: str = "face",
    ) -> int:
        """Append the records in one write transaction; returns how many."""
        if not attendance and not hours:
            return 0
        with write_session(sessions) as session:
            for rec in attendance:
                self.outbox.append(
                    session, KIND_ATTENDANCE, new_ulid(), attendance_payload(rec), now
                )
            for b in hours:
                self.outbox.append(
                    session,
                    KIND_HOURLY,
                    new_ulid(),
                    b.payload(identities=identities, detector=detector),
                    now,
                )
        log.info("footfall_records_written", attendance=len(attendance), hours=len(hours))
        return len(attendance) + len(hours)

    @staticmethod
    def consented_residents(session: Session) -> set[str]:
        """Active residents who consented to attendance recording."""
        stmt = select(ResidentRow.resident_id).where(
            ResidentRow.active.is_(True), ResidentRow.consent_attendance.is_(True)
        )
        return set(session.scalars(stmt))

    @staticmethod
    def attendance_sessions(session: Session, day: str) -> dict[str, tuple[int, datetime]]:
        """Today's sessions per resident (highest number, its first_seen), to
        resume after a restart."""
        out: dict[str, tuple[int, datetime]] = {}
        for p in _payloads(session, KIND_ATTENDANCE, day):
            rid, n = str(p["resident_id"]), int(p["session"])
            seen = datetime.fromisoformat(str(p["first_seen"]))
            if rid not in out or n > out[rid][0]:
                out[rid] = (n, seen)
        return out


def _payloads(session: Session, kind: str, day: str) -> Iterable[dict[str, Any]]:
    stmt = (
        select(OutboxRow.payload)
        .where(OutboxRow.kind == kind, func.json_extract(OutboxRow.payload, "$.date") == day)
        .order_by(OutboxRow.seq)
    )
    for text in session.scalars(stmt):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:  # pragma: no cover - the outbox only holds canonical JSON
            continue
        if isinstance(doc, dict):
            yield doc


def footfall_summary(session: Session, day: str) -> dict[str, Any]:
    """The manager view of one centre-local day (``YYYY-MM-DD``).

    Returns ``{"date", "hours": [{"hour_start", "hour", "visits_in", "visits_out",
    "unique_visitors", "identified_attendance", "observed_seconds"}...] (24 rows, 0-23),
    "totals": {"visits_in", "visits_out", "unique_visitors", "attendance_sessions",
    "attendees", "observed_seconds"}, "attendance": [{"resident_id", "session",
    "first_seen", "score"}...]}``.
    Records of the same hour are added up (a restart splits an hour into two).
    """
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        from terminal.core.errors import TerminalError

        raise TerminalError(f"day must be YYYY-MM-DD, got {day!r}", code="bad_date") from None
    hours: dict[int, dict[str, Any]] = {
        h: {
            "hour": h,
            "hour_start": None,
            "visits_in": 0,
            "visits_out": 0,
            "unique_visitors": 0,
            "identified_attendance": 0,
            "observed_seconds": 0,
        }
        for h in range(24)
    }
    identities_known = False
    for p in _payloads(session, KIND_HOURLY, day):
        start = datetime.fromisoformat(str(p["hour_start"]))
        row = hours[start.hour]
        row["hour_start"] = row["hour_start"] or p["hour_start"]
        for k in ("visits_in", "visits_out", "observed_seconds"):
            row[k] += int(p.get(k) or 0)
        for k in ("unique_visitors", "identified_attendance"):
            if p.get(k) is not None:
                identities_known = True
                row[k] += int(p[k])
    attendance = [
        {
            "resident_id": p["resident_id"],
            "session": p["session"],
            "first_seen": p["first_seen"],
            "score": p["score"],
        }
        for p in _payloads(session, KIND_ATTENDANCE, day)
    ]
    rows = [hours[h] for h in range(24)]
    totals = {
        "visits_in": sum(r["visits_in"] for r in rows),
        "visits_out": sum(r["visits_out"] for r in rows),
        "unique_visitors": sum(r["unique_visitors"] for r in rows) if identities_known else None,
        "attendance_sessions": len(attendance),
        "attendees": len({a["resident_id"] for a in attendance}),
        "observed_seconds": sum(r["observed_seconds"] for r in rows),
    }
    return {"date": day, "hours": rows, "totals": totals, "attendance": attendance}
