"""Encrypted face templates (never images). Each template is a 512-d float32
L2-normalised vector, AES-GCM encrypted with associated data bound to the
template id; deleting a resident's templates uses SQLite's secure_delete so the
bytes are overwritten, not just unlinked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Float, ForeignKey, LargeBinary, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from terminal.core.clock import rfc3339
from terminal.core.errors import StorageError
from terminal.core.ids import new_ulid
from terminal.db.base import Base
from terminal.db.crypto import FieldCipher

EMBEDDING_DIM = 512
_TABLE = "face_templates"


class FaceTemplateRow(Base):
    __tablename__ = _TABLE
    template_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    resident_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("residents.resident_id", ondelete="CASCADE")
    )
    template_enc: Mapped[bytes] = mapped_column(LargeBinary)
    quality: Mapped[float] = mapped_column(Float)
    pack_id: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[str] = mapped_column(String(40))


@dataclass(frozen=True)
class StoredTemplate:
    template_id: str
    resident_id: str
    vector: np.ndarray
    quality: float


class TemplateStore:
    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher

    def replace(
        self,
        session: Session,
        resident_id: str,
        vectors: list[np.ndarray],
        qualities: list[float],
        pack_id: str,
        now: datetime,
    ) -> list[str]:
        """Replace all templates of a resident (enrol and re-enrol)."""
        if len(vectors) != len(qualities) or not vectors:
            raise StorageError("enrolment needs at least one template with a quality score")
        self.delete(session, resident_id)
        ids = []
        for vec, q in zip(vectors, qualities, strict=True):
            v = np.asarray(vec, dtype=np.float32).reshape(-1)
            if v.shape[0] != EMBEDDING_DIM or not np.all(np.isfinite(v)):
                raise StorageError("template has the wrong shape or non-finite values")
            tid = new_ulid()
            blob = self._cipher.encrypt(v.tobytes(), table=_TABLE, record_id=tid, field="template")
            session.add(
                FaceTemplateRow(
                    template_id=tid,
                    resident_id=resident_id,
                    template_enc=blob,
                    quality=float(q),
                    pack_id=pack_id,
                    created_at=rfc3339(now),
                )
            )
            ids.append(tid)
        session.flush()
        return ids

    def delete(self, session: Session, resident_id: str) -> int:
        result = session.execute(
            delete(FaceTemplateRow).where(FaceTemplateRow.resident_id == resident_id)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def count(self, session: Session, resident_id: str | None = None) -> int:
        stmt = select(func.count()).select_from(FaceTemplateRow)
        if resident_id is not None:
            stmt = stmt.where(FaceTemplateRow.resident_id == resident_id)
        return int(session.scalar(stmt) or 0)

    def load_all(self, session: Session, pack_id: str | None = None) -> list[StoredTemplate]:
        """Decrypt every template (for the in-memory gallery). Templates made with
        another model pack are skipped: embeddings of different models do not compare."""
        stmt = select(FaceTemplateRow).order_by(
            FaceTemplateRow.resident_id, FaceTemplateRow.template_id
        )
        if pack_id is not None:
            stmt = stmt.where(FaceTemplateRow.pack_id == pack_id)
        out = []
        for row in session.scalars(stmt):
            raw = self._cipher.decrypt(
                row.template_enc, table=_TABLE, record_id=row.template_id, field="template"
            )
            vec = np.frombuffer(raw, dtype=np.float32).copy()
            out.append(StoredTemplate(row.template_id, row.resident_id, vec, row.quality))
        return out

    def stale_pack_residents(self, session: Session, pack_id: str) -> list[str]:
        """Residents whose templates were made with another pack (need re-enrolment)."""
        stmt = (
            select(FaceTemplateRow.resident_id).where(FaceTemplateRow.pack_id != pack_id).distinct()
        )
        return list(session.scalars(stmt))
