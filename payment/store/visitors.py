"""Visiting seniors (city-wide meals) in this terminal's database.

A visitor's meals are ledger entries like a resident's, under the platform's
pseudonymous ``person_id``. The ledger's rows need a roster row, so a visitor
gets an *inactive* one (a label, never a name; no card, no phone, no face):
inactive rows are never found by a card, a face or a staff search, and never
count as the centre's seniors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from payment.domain import MealSlot, Resident
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
from terminal.db.roster import RosterStore
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
            )
            for r, v in visiting
        ]

    def usage(self, day: date, slot: MealSlot) -> OfflineUsage:
        """Subsidies granted to visitors from the offline roster today (all of
        them, acknowledged or not: the budget is per terminal and day)."""
        return offline_usage(self.rows(day), slot)

    def day(self, day: date) -> VisitorsDay:
        return visitors_day(self.rows(day))
