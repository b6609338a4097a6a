"""Duplicate guard: one subsidised meal per resident, slot and day.

A senior who already had a subsidised lunch today and shows up again in the
lunch window gets a clear "already paid at HH:MM" screen. Only a staff
override lets the payment through; the quote then counts the earlier meal, so
a one-per-day rule gives no second subsidy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Literal

from payment.domain import MealSlot, PriorMeal, local_hhmm
from terminal.core.clock import CHINA_TZ


@dataclass(frozen=True, slots=True)
class GuardResult:
    result: Literal["ok", "already_paid"]
    paid_at: datetime | None = None
    paid_at_hhmm: str | None = None  # local HH:MM of the earlier meal
    record_id: str | None = None
    overridden_by: str | None = None  # staff id when an override let it through

    @property
    def ok(self) -> bool:
        return self.result == "ok"


def check_duplicate(
    meals: Iterable[PriorMeal],
    *,
    slot: MealSlot,
    day: date,
    staff_override: str | None = None,
    any_meal: bool = False,
    tz: tzinfo = CHINA_TZ,
) -> GuardResult:
    """Decide whether a new meal in ``slot`` on ``day`` may go ahead.

    ``meals`` are the resident's charges (voided ones are ignored). By default
    only a *subsidised* earlier meal blocks; ``any_meal=True`` blocks after any
    meal in the slot. ``staff_override`` (a staff id) lets it through and is
    echoed in the result. The latest matching meal is reported.
    """
    hits = [
        m
        for m in meals
        if m.slot is slot and m.day == day and not m.voided and (m.subsidised or any_meal)
    ]
    if not hits:
        return GuardResult("ok")
    last = max(hits, key=lambda m: m.at)
    if staff_override:
        return GuardResult(
            "ok", last.at, local_hhmm(last.at, tz), last.record_id, overridden_by=staff_override
        )
    return GuardResult("already_paid", last.at, local_hhmm(last.at, tz), last.record_id)
