"""Queries: what the flow reads before a charge (resident, balance, meals of the
day, unsynced exposure) and what staff and reports read after it (transaction
views, receipts, the day's figures). Reads only."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from payment.domain import (
    MealSlot,
    OrderLine,
    PriorMeal,
    Resident,
    SeniorCategory,
    VerificationMethod,
)
from payment.errors import PaymentError
from payment.limits import Exposure
from payment.receipt import Receipt, receipt_for_charge
from payment.store.deps import StoreDeps
from payment.store.schema import LedgerRow, WalletRow, ledger_entry
from terminal.core.clock import rfc3339
from terminal.core.money import Money
from terminal.db.tables import OutboxRow


@dataclass(frozen=True)
class TxView:
    record_id: str
    kind: str
    resident_id: str
    name_masked: str
    at: datetime
    slot: str | None
    list_amount: Money
    subsidy: Money
    due: Money
    balance_after: Money
    method: str | None
    verification: str | None
    voided: bool
    ref_id: str | None
    reason: str | None
    staff_id: str | None
    seq: int
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "kind": self.kind,
            "resident_id": self.resident_id,
            "name": self.name_masked,
            "at": rfc3339(self.at),
            "slot": self.slot,
            "list_fen": self.list_amount.fen,
            "subsidy_fen": self.subsidy.fen,
            "due_fen": self.due.fen,
            "balance_after_fen": self.balance_after.fen,
            "method": self.method,
            "verification": self.verification,
            "voided": self.voided,
            "ref_id": self.ref_id,
            "reason": self.reason,
            "staff_id": self.staff_id,
            "seq": self.seq,
        }


def voided_ids(session: Session, charges: Select[LedgerRow]) -> set[str]:
    """The ids among ``charges`` (a select of ledger rows) that a void names.

    The charges go in as a subquery, not as an IN list of their ids: a list
    makes a new SQL text for every count of meals, and each connection's
    statement cache keeps up to 128 compiled statements, each as big as its
    list (the kiosk's RSS grew with every payment of the soak; held by
    tests/soak/test_sql_texts.py)."""
    return set(
        session.scalars(
            select(LedgerRow.ref_id).where(
                LedgerRow.kind == "void",
                LedgerRow.ref_id.in_(charges.with_only_columns(LedgerRow.entry_id)),
            )
        )
    )


def to_resident(info: Any) -> Resident:
    """A roster entry as the flow's :class:`Resident` (unknown categories are skipped)."""
    cats = []
    for c in info.categories:
        try:
            cats.append(SeniorCategory.parse(c))
        except PaymentError:
            continue
    return Resident(
        resident_id=info.resident_id,
        name_masked=info.name_masked,
        categories=frozenset(cats) or frozenset({SeniorCategory.NONE}),
        consent_face_pay=info.consent_face_pay,
        consent_attendance=info.consent_attendance,
        phone_last4=info.phone_last4,
        card_ids=frozenset(info.card_ids),
        active=info.active,
    )


class Queries:
    """Read transactions over the shared session factory. The session-taking
    reads also run inside a money write's transaction (:mod:`payment.store.money`)."""

    def __init__(self, deps: StoreDeps, acked_through: Callable[[], int] = lambda: 0) -> None:
        self._d = deps
        self._acked_through = acked_through

    # ------------------------------------------------------------------ the flow's reads
    def resident(self, session: Session, resident_id: str) -> Resident | None:
        info = self._d.roster.find(session, resident_id)
        return to_resident(info) if info else None

    def balance(self, resident_id: str, session: Session | None = None) -> Money:
        if session is None:
            with self._d.sessions() as s:
                return self.balance(resident_id, s)
        row = session.get(WalletRow, resident_id)
        return Money(row.balance_fen if row else 0)

    def prior_meals(self, session: Session, resident_id: str, day: date) -> list[PriorMeal]:
        charges = select(LedgerRow).where(
            LedgerRow.resident_id == resident_id,
            LedgerRow.day == day.isoformat(),
            LedgerRow.kind == "charge",
        )
        rows = session.scalars(charges).all()
        voided = voided_ids(session, charges)
        return [
            PriorMeal(
                record_id=r.entry_id,
                at=datetime.fromisoformat(r.at),
                slot=MealSlot(r.slot or "lunch"),
                day=day,
                subsidised=r.subsidy_fen > 0,
                voided=r.entry_id in voided,
            )
            for r in rows
        ]

    def exposure(self, session: Session, resident_id: str) -> Exposure:
        """Unsynced money: charges whose outbox records the platform has not acked."""
        hwm = self._acked_through()
        base = select(func.coalesce(func.sum(LedgerRow.amount_fen), 0)).where(
            LedgerRow.kind == "charge", LedgerRow.seq > hwm
        )
        terminal = int(session.scalar(base) or 0)
        mine = int(session.scalar(base.where(LedgerRow.resident_id == resident_id)) or 0)
        return Exposure(Money(mine), Money(terminal))

    # ------------------------------------------------------------------ views
    def _view(self, s: Session, row: LedgerRow, voided: set[str]) -> TxView:
        info = self._d.roster.find(s, row.resident_id)
        return TxView(
            record_id=row.entry_id,
            kind=row.kind,
            resident_id=row.resident_id,
            name_masked=info.name_masked if info else "?",
            at=datetime.fromisoformat(row.at),
            slot=row.slot,
            list_amount=Money(row.list_fen),
            subsidy=Money(row.subsidy_fen),
            due=Money(row.amount_fen if row.kind == "charge" else 0),
            balance_after=Money(row.balance_after_fen),
            method=row.method,
            verification=row.verification,
            voided=row.entry_id in voided,
            ref_id=row.ref_id,
            reason=row.reason,
            staff_id=row.staff_id,
            seq=row.seq,
            hash=row.hash,
        )

    def _voided(self, s: Session) -> set[str]:
        return {r for r in s.scalars(select(LedgerRow.ref_id).where(LedgerRow.kind == "void")) if r}

    def get(self, record_id: str) -> TxView:
        with self._d.sessions() as s:
            row = s.get(LedgerRow, record_id)
            if row is None:
                raise PaymentError(f"no transaction {record_id}", code="unknown_charge")
            return self._view(s, row, self._voided(s))

    def transactions(
        self, day: date | None = None, resident_id: str | None = None, limit: int = 500
    ) -> list[TxView]:
        with self._d.sessions() as s:
            stmt = select(LedgerRow).order_by(LedgerRow.seq.desc()).limit(limit)
            if day is not None:
                prefix = day.isoformat()
                stmt = stmt.where(func.substr(LedgerRow.at, 1, 10) == prefix)
            if resident_id is not None:
                stmt = stmt.where(LedgerRow.resident_id == resident_id)
            voided = self._voided(s)
            return [self._view(s, r, voided) for r in s.scalars(stmt)]

    def last_transaction(self) -> TxView | None:
        rows = self.transactions(limit=1)
        return rows[0] if rows else None

    def receipt(self, record_id: str, reprint: bool = True) -> Receipt:
        with self._d.sessions() as s:
            row = s.get(LedgerRow, record_id)
            if row is None or row.kind != "charge":
                raise PaymentError(f"no meal transaction {record_id}", code="unknown_charge")
            entry = ledger_entry(row)
            info = self._d.roster.find(s, row.resident_id)
            return receipt_for_charge(
                centre_name=self._d.config.centre_name,
                record_id=row.entry_id,
                at=entry.at,
                resident_masked=info.name_masked if info else "?",
                lines=self._lines_of(s, row.seq),
                list_total=entry.list_amount,
                subsidy=entry.subsidy,
                paid=entry.due,
                balance_after=Money(row.balance_after_fen),
                method=entry.method or VerificationMethod.FACE,
                slot=entry.slot or MealSlot.LUNCH,
                record_hash=row.hash,
                reprint=reprint,
            )

    def _lines_of(self, s: Session, seq: int) -> tuple[OrderLine, ...]:
        out = s.get(OutboxRow, seq)
        if out is None:
            return ()
        payload = json.loads(out.payload)
        return tuple(
            OrderLine(
                item_id=i["item_id"],
                name=i["name"],
                unit_price=Money(i["unit_price_fen"]),
                quantity=i["quantity"],
                subsidisable=i["subsidisable"],
            )
            for i in payload.get("items", [])
        )

    def day_summary(self, day: date) -> dict[str, Any]:
        txs = [
            t
            for t in self.transactions(day=day, limit=100000)
            if t.kind == "charge" and not t.voided
        ]
        slots: dict[str, dict[str, int]] = {}
        for t in txs:
            d = slots.setdefault(
                t.slot or "?", {"meals": 0, "list_fen": 0, "subsidy_fen": 0, "paid_fen": 0}
            )
            d["meals"] += 1
            d["list_fen"] += t.list_amount.fen
            d["subsidy_fen"] += t.subsidy.fen
            d["paid_fen"] += t.due.fen
        return {
            "day": day.isoformat(),
            "meals": len(txs),
            "by_slot": slots,
            "subsidy_fen": sum(t.subsidy.fen for t in txs),
            "paid_fen": sum(t.due.fen for t in txs),
            "residents": len({t.resident_id for t in txs}),
        }
