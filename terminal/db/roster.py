"""The resident roster (shared reference data: pulled from the platform, used by
face enrolment and payment). Names and ID numbers are encrypted at rest; only
the masked name (张*华) is stored in clear for display."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from terminal.core.clock import rfc3339
from terminal.core.errors import NotFound, TerminalError
from terminal.core.names import is_code, mask_name
from terminal.db.crypto import FieldCipher
from terminal.db.tables import AuditRow, ResidentRow


def validate_resident_id(resident_id: str) -> str:
    rid = resident_id.strip()
    if not is_code(rid):
        raise TerminalError(
            "resident id must be 1-64 letters, digits, '-', '_' or '.'", code="bad_resident_id"
        )
    return rid


@dataclass(frozen=True)
class ResidentInfo:
    resident_id: str
    name_masked: str
    categories: list[str] = field(default_factory=list)
    card_ids: list[str] = field(default_factory=list)
    phone_last4: str | None = None
    consent_face_pay: bool = False
    consent_attendance: bool = False
    active: bool = True


def _info(row: ResidentRow) -> ResidentInfo:
    return ResidentInfo(
        resident_id=row.resident_id,
        name_masked=row.name_masked,
        categories=list(json.loads(row.categories)),
        card_ids=list(json.loads(row.card_ids)),
        phone_last4=row.phone_last4,
        consent_face_pay=row.consent_face_pay,
        consent_attendance=row.consent_attendance,
        active=row.active,
    )


class RosterStore:
    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher

    def upsert(
        self,
        session: Session,
        resident_id: str,
        name: str,
        now: datetime,
        *,
        categories: list[str] | None = None,
        card_ids: list[str] | None = None,
        phone_last4: str | None = None,
        id_number: str | None = None,
        consent_face_pay: bool | None = None,
        consent_attendance: bool | None = None,
    ) -> ResidentInfo:
        rid = validate_resident_id(resident_id)
        if not name.strip():
            raise TerminalError("a resident needs a name", code="bad_name")
        if phone_last4 is not None and (len(phone_last4) != 4 or not phone_last4.isdigit()):
            raise TerminalError("phone last-4 must be four digits", code="bad_phone_last4")
        row = session.get(ResidentRow, rid)
        enc_name = self._cipher.encrypt_text(
            name.strip(), table="residents", record_id=rid, field="name"
        )
        stamp = rfc3339(now)
        if row is None:
            row = ResidentRow(
                resident_id=rid,
                name_enc=enc_name,
                name_masked=mask_name(name),
                categories="[]",
                card_ids="[]",
                consent_face_pay=False,
                consent_attendance=False,
                active=True,
                updated_at=stamp,
            )
            session.add(row)
        else:
            row.name_enc = enc_name
            row.name_masked = mask_name(name)
            row.active = True
            row.updated_at = stamp
        if categories is not None:
            row.categories = json.dumps(sorted(set(categories)))
        if card_ids is not None:
            row.card_ids = json.dumps(sorted(set(card_ids)))
        if phone_last4 is not None:
            row.phone_last4 = phone_last4
        if id_number is not None:
            row.id_number_enc = self._cipher.encrypt_text(
                id_number.strip().upper(), table="residents", record_id=rid, field="id_number"
            )
            row.id_number_index = self._cipher.blind_index(id_number, field="id_number")
        if consent_face_pay is not None or consent_attendance is not None:
            if consent_face_pay is not None:
                row.consent_face_pay = consent_face_pay
            if consent_attendance is not None:
                row.consent_attendance = consent_attendance
            row.consent_updated_at = stamp
        session.flush()
        return _info(row)

    def get(self, session: Session, resident_id: str) -> ResidentInfo:
        row = session.get(ResidentRow, resident_id)
        if row is None:
            raise NotFound(f"no resident with id {resident_id}")
        return _info(row)

    def find(self, session: Session, resident_id: str) -> ResidentInfo | None:
        row = session.get(ResidentRow, resident_id)
        return _info(row) if row else None

    def name(self, session: Session, resident_id: str) -> str:
        """Clear name, for the staff screen and receipts only. Never log it."""
        row = session.get(ResidentRow, resident_id)
        if row is None:
            raise NotFound(f"no resident with id {resident_id}")
        return self._cipher.decrypt_text(
            row.name_enc, table="residents", record_id=row.resident_id, field="name"
        )

    def id_number(self, session: Session, resident_id: str) -> str | None:
        """Clear ID-card number (to pseudonymise for the platform). Never log it."""
        row = session.get(ResidentRow, resident_id)
        if row is None or row.id_number_enc is None:
            return None
        return self._cipher.decrypt_text(
            row.id_number_enc, table="residents", record_id=row.resident_id, field="id_number"
        )

    def list(self, session: Session, include_inactive: bool = False) -> list[ResidentInfo]:
        stmt = select(ResidentRow).order_by(ResidentRow.resident_id)
        if not include_inactive:
            stmt = stmt.where(ResidentRow.active.is_(True))
        return [_info(r) for r in session.scalars(stmt)]

    def by_card(self, session: Session, card_id: str) -> ResidentInfo | None:
        needle = json.dumps(card_id)
        for row in session.scalars(
            select(ResidentRow).where(ResidentRow.card_ids.contains(needle))
        ):
            if card_id in json.loads(row.card_ids):
                return _info(row)
        return None

    def by_id_number(self, session: Session, id_number: str) -> ResidentInfo | None:
        index = self._cipher.blind_index(id_number, field="id_number")
        row = session.scalar(select(ResidentRow).where(ResidentRow.id_number_index == index))
        return _info(row) if row else None

    def deactivate(self, session: Session, resident_id: str, now: datetime) -> None:
        row = session.get(ResidentRow, resident_id)
        if row is None:
            raise NotFound(f"no resident with id {resident_id}")
        row.active = False
        row.consent_face_pay = False
        row.consent_attendance = False
        row.consent_updated_at = rfc3339(now)
        row.updated_at = rfc3339(now)


def audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, object] | None = None,
) -> None:
    """Append a staff/system action to the audit trail (no personal data in details)."""
    session.add(
        AuditRow(
            at=rfc3339(now),
            actor=actor,
            action=action,
            target=target,
            details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True),
        )
    )
