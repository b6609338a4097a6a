"""Visiting seniors (city-wide meals) in this terminal's database.

A visitor's meals are ledger entries like a resident's, under the platform's
pseudonymous ``person_id``. The ledger's rows need a roster row, so a visitor
gets an *inactive* one (a label, never a name; no card, no phone, no face):
inactive rows are never found by a card, a face or a staff search, and never
count as the centre's seniors.

:class:`DistrictTopups` records money this centre takes for one of its own
seniors' *district wallet* (visit policy ``home_wallet``): the platform holds
that wallet, so no wallet of this terminal moves; the record
(``district_wallet_topup``) is queued in the outbox like every record and the
platform credits the wallet once when it stores it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from payment.domain import MealSlot, Resident
from payment.errors import PaymentError
from payment.ledger import MAX_TOPUP
from payment.store.deps import StoreDeps
from payment.store.queries import voided_ids
from payment.store.schema import LedgerRow
from payment.visiting import (
    OfflineUsage,
    Source,
    Visit,
    VisitorMealRow,
    VisitorsDay,
    offline_usage,
    visitors_day,
)
from terminal.core.ids import new_ulid
from terminal.core.money import Money
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore, audit
from terminal.db.tables import ResidentRow


def visitor_resident(
    s: Session, roster: RosterStore, visit: Visit, label: str, now: datetime
) -> Resident | None:
    """The visitor's ledger holder (made inactive on first use); None when the id
    is one of this centre's active residents (never mix the two)."""
    row = s.get(ResidentRow, visit.person_id)
    if row is not None and row.active:
        return None
    if row is None:
        roster.upsert(
            s, visit.person_id, label, now, categories=[c.value for c in visit.categories]
        )
        row = s.get(ResidentRow, visit.person_id)
        assert row is not None
    row.active = False
    row.name_masked = label[:64]
    return Resident(
        resident_id=visit.person_id,
        name_masked=row.name_masked,
        categories=frozenset(visit.categories),
        active=False,
    )


class VisitorMeals:
    """Reads of the visiting meals this terminal recorded."""

    def __init__(self, deps: StoreDeps) -> None:
        self._d = deps

    def _read(self, fn: Callable[[Session], list[VisitorMealRow]]) -> list[VisitorMealRow]:
        with self._d.sessions() as s:
            return fn(s)

    def rows(self, day: date, session: Session | None = None) -> list[VisitorMealRow]:
        """The day's visiting meals (charges carrying a ``visit``), voids marked."""
        if session is None:
            return self._read(lambda s: self.rows(day, s))
        day_charges = select(LedgerRow).where(
            LedgerRow.day == day.isoformat(), LedgerRow.kind == "charge"
        )
        charges = session.scalars(day_charges).all()
        visiting = [(r, json.loads(r.doc).get("visit")) for r in charges]
        visiting = [(r, v) for r, v in visiting if v]
        voided = voided_ids(session, day_charges)
        return [
            VisitorMealRow(
                record_id=r.entry_id,
                person_id=r.resident_id,
                home_centre_id=str(v["home_centre_id"]),
                slot=MealSlot(r.slot or "lunch"),
                subsidy_fen=r.subsidy_fen,
                source=Source(str(v["source"])),
                review=bool(v["review"]),
                voided=r.entry_id in voided,
                wallet_fen=r.amount_fen if v.get("payment_source") == "home_wallet" else 0,
            )
            for r, v in visiting
        ]

    def usage(self, day: date, slot: MealSlot) -> OfflineUsage:
        """Subsidies granted to visitors from the offline roster today (all of
        them, acknowledged or not: the budget is per terminal and day)."""
        return offline_usage(self.rows(day), slot)

    def day(self, day: date) -> VisitorsDay:
        return visitors_day(self.rows(day))


DISTRICT_TOPUP_METHODS = ("cash", "bank_transfer", "other")


class DistrictTopups:
    """Top-ups of this centre's seniors' district wallets (held by the platform)."""

    def __init__(self, deps: StoreDeps, outbox: Outbox) -> None:
        self._d = deps
        self._outbox = outbox

    def topup(
        self, resident_id: str, amount: Money, staff_id: str, method: str = "cash"
    ) -> dict[str, object]:
        """Queue a ``district_wallet_topup`` record (one transaction with its audit
        row); returns the record's id and payload. Offline-first: the platform
        credits the wallet when the record is uploaded, once."""
        if not 0 < amount.fen <= MAX_TOPUP.fen:
            raise PaymentError(
                f"a district wallet top-up is 0.01 to {MAX_TOPUP.yuan_str()} yuan",
                code="bad_amount",
            )
        if method not in DISTRICT_TOPUP_METHODS:
            raise PaymentError(f"unknown top-up method {method}", code="bad_method")
        if not staff_id.strip():
            raise PaymentError("a district wallet top-up needs the staff id", code="staff_required")
        now = self._d.clock.now()
        record_id = new_ulid()
        payload = {
            "resident_id": resident_id,
            "amount_fen": amount.fen,
            "method": method,
            "staff_id": staff_id,
        }
        with write_session(self._d.sessions) as s:
            row = s.get(ResidentRow, resident_id)
            if row is None or not row.active:
                raise PaymentError(
                    f"no active resident with id {resident_id}", code="resident_not_found"
                )
            self._outbox.append(s, "district_wallet_topup", record_id, payload, now)
            audit(
                s,
                now,
                staff_id,
                "district_wallet_topup",
                resident_id,
                {"amount_fen": amount.fen, "record_id": record_id},
            )
        return {"record_id": record_id, **payload}
