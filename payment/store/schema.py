"""The payment tables of ``terminal.db`` (created by the Alembic migrations in
:mod:`terminal.db.migrations`) and the ledger entry each ledger row carries."""

from __future__ import annotations

import json

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payment.ledger import LedgerEntry
from terminal.db.base import Base


class LedgerRow(Base):
    __tablename__ = "ledger_entries"
    entry_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    resident_id: Mapped[str] = mapped_column(String(64), ForeignKey("residents.resident_id"))
    at: Mapped[str] = mapped_column(String(40))
    day: Mapped[str | None] = mapped_column(String(10), nullable=True)
    slot: Mapped[str | None] = mapped_column(String(12), nullable=True)
    amount_fen: Mapped[int] = mapped_column(Integer)
    list_fen: Mapped[int] = mapped_column(Integer)
    subsidy_fen: Mapped[int] = mapped_column(Integer)
    wallet_delta_fen: Mapped[int] = mapped_column(Integer)
    balance_after_fen: Mapped[int] = mapped_column(Integer)
    method: Mapped[str | None] = mapped_column(String(12), nullable=True)
    verification: Mapped[str | None] = mapped_column(String(80), nullable=True)
    ref_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    staff_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    seq: Mapped[int] = mapped_column(Integer, ForeignKey("outbox.seq"), unique=True)
    hash: Mapped[str] = mapped_column(String(64))
    doc: Mapped[str] = mapped_column(Text)


class IntentRow(Base):
    """One charge request, written before its charge (see :mod:`payment.store.intents`)."""

    __tablename__ = "charge_intents"
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session: Mapped[int] = mapped_column(Integer)
    resident_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    slot: Mapped[str] = mapped_column(String(12))
    due_fen: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))  # open, committed, failed, abandoned
    created_at: Mapped[str] = mapped_column(String(40))
    closed_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    shown_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    shown_by: Mapped[str | None] = mapped_column(String(12), nullable=True)


INTENT_OPEN = "open"
INTENT_COMMITTED = "committed"
INTENT_FAILED = "failed"
INTENT_ABANDONED = "abandoned"


class WalletRow(Base):
    __tablename__ = "wallets"
    resident_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("residents.resident_id"), primary_key=True
    )
    balance_fen: Mapped[int] = mapped_column(Integer)
    last_entry_id: Mapped[str] = mapped_column(String(26))


class MenuRow(Base):
    __tablename__ = "menus"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    doc: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[str] = mapped_column(String(40))


class PolicyRow(Base):
    __tablename__ = "subsidy_policies"
    policy_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_from: Mapped[str] = mapped_column(String(10))
    doc: Mapped[str] = mapped_column(Text)


def ledger_entry(row: LedgerRow) -> LedgerEntry:
    """The :class:`payment.ledger.LedgerEntry` stored in ``row``."""
    return LedgerEntry.from_dict(json.loads(row.doc)["entry"])
