"""ORM mappings for the tables the kernel owns (chain head, outbox, roster,
audit log). Feature tables live in each feature's store (``payment.store.schema``,
``sync.store.schema``, ``face.store``, ``face.footfall.store``)."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from terminal.db.base import Base


class ChainHead(Base):
    __tablename__ = "chain_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class OutboxRow(Base):
    __tablename__ = "outbox"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    record_id: Mapped[str] = mapped_column(String(26), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    acked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # 1 for rows written before hash version 2 (their centre_id is NULL): see
    # terminal.db.outbox.hash_of. Migration 0004.
    hash_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    centre_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ResidentRow(Base):
    __tablename__ = "residents"
    resident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_enc: Mapped[bytes] = mapped_column(LargeBinary)
    name_masked: Mapped[str] = mapped_column(String(64))
    id_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    id_number_index: Mapped[str | None] = mapped_column(String(64), nullable=True)
    phone_last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    categories: Mapped[str] = mapped_column(Text, default="[]")
    card_ids: Mapped[str] = mapped_column(Text, default="[]")
    consent_face_pay: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_attendance: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_updated_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[str] = mapped_column(String(40))


class AuditRow(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[str] = mapped_column(Text, default="{}")
