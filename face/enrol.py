"""Enrol and un-enrol residents: roster row, encrypted templates, consent, the
outbox event and the in-memory gallery change, in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from face.recognise import EnrolmentError, EnrolPlan, Recogniser
from face.store import TemplateStore
from terminal.core.clock import rfc3339
from terminal.core.ids import new_ulid
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore, validate_resident_id

if TYPE_CHECKING:
    from sqlalchemy.orm import Session  # the caller's write session; the SQL is in the stores


def enrol(
    session: Session,
    roster: RosterStore,
    templates: TemplateStore,
    outbox: Outbox,
    recogniser: Recogniser,
    plan: EnrolPlan,
    resident_id: str,
    name: str,
    now: datetime,
    *,
    consent_face_pay: bool = True,
    consent_attendance: bool = False,
    allow_duplicate_face: bool = False,
    staff_id: str = "system",
    consent_evidence: str = "paper_form",
) -> list[str]:
    """Store the plan's chosen templates for the resident (replacing earlier
    ones) and append an ``enrolment`` record. Call inside a write session; update
    the gallery with :func:`apply_to_gallery` after the COMMIT."""
    rid = validate_resident_id(resident_id)
    if len(plan.chosen) < recogniser.settings.enrol_min_images:
        reasons = "; ".join(f"{c.source}: {c.problem}" for c in plan.rejected) or "no usable image"
        raise EnrolmentError(
            f"enrolment needs at least {recogniser.settings.enrol_min_images} good face image(s); {reasons}"
        )
    vectors = [c.embedding for c in plan.chosen if c.embedding is not None]
    if not allow_duplicate_face:
        other = recogniser.check_not_someone_else(rid, vectors)
        if other is not None:
            raise EnrolmentError(
                f"this face already matches resident {other}; un-enrol them first or check the person",
                code="face_already_enrolled",
            )
    roster.upsert(
        session,
        rid,
        name,
        now,
        consent_face_pay=consent_face_pay,
        consent_attendance=consent_attendance,
    )
    qualities = [round(float(c.quality), 4) for c in plan.chosen]
    ids = templates.replace(session, rid, vectors, qualities, recogniser.pack_id, now)
    outbox.append(
        session,
        "enrolment",
        new_ulid(),
        {
            "resident_id": rid,
            "pack_id": recogniser.pack_id,
            "template_count": len(ids),
            "quality_min": min(qualities),
            "quality_mean": round(sum(qualities) / len(qualities), 4),
            "consent": {
                "face_pay": consent_face_pay,
                "attendance": consent_attendance,
                "consented_at": rfc3339(now),
                "evidence": consent_evidence,
            },
            "staff_id": staff_id,
        },
        now,
    )
    return ids


def apply_to_gallery(recogniser: Recogniser, resident_id: str, plan: EnrolPlan) -> None:
    vectors = [c.embedding for c in plan.chosen if c.embedding is not None]
    recogniser.gallery.replace(resident_id, vectors)  # type: ignore[arg-type]


def unenrol(
    session: Session,
    roster: RosterStore,
    templates: TemplateStore,
    outbox: Outbox,
    resident_id: str,
    now: datetime,
    recogniser: Recogniser | None = None,
    *,
    reason: str = "resident_request",
    staff_id: str | None = None,
) -> int:
    """Delete every template of the resident (secure_delete overwrites the bytes),
    withdraw face and attendance consent, and append an ``unenrolment`` record.
    Returns how many templates were deleted."""
    roster.get(session, resident_id)  # NotFound with a clear message
    removed = templates.delete(session, resident_id)
    roster.deactivate(session, resident_id, now)
    outbox.append(
        session,
        "unenrolment",
        new_ulid(),
        {
            "resident_id": resident_id,
            "pack_id": recogniser.pack_id if recogniser is not None else None,
            "templates_deleted": removed,
            "reason": reason,
            "staff_id": staff_id,
        },
        now,
    )
    if recogniser is not None:
        recogniser.gallery.remove(resident_id)
    return removed
