"""Duplicate guard: one meal per resident, slot and day unless someone chose more.

A senior who already had a meal in this slot today (subsidised or not) and
shows up again gets a clear "already paid at HH:MM" screen. A second meal goes
through only when

* staff approve it (``staff_override``, a staff id), or
* the senior explicitly chose "another portion" (再来一份) for it
  (``another_portion``); the flow then prices it without a second subsidy.

``subsidised_only=True`` restores the old, narrower rule (only a subsidised
earlier meal blocks) for a centre that asks for it in its settings; it is off
by default because an unsubsidised meal was then charged again and again.
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
    another_portion: bool = False  # True when the senior's own choice let it through
    meals_before: int = 0  # non-voided meals in this slot today (all of them)

    @property
    def ok(self) -> bool:
        return self.result == "ok"


def meals_in_slot(meals: Iterable[PriorMeal], slot: MealSlot, day: date) -> int:
    """Non-voided meals of any kind the resident had in ``slot`` on ``day``."""
    return sum(1 for m in meals if m.slot is slot and m.day == day and not m.voided)


def check_duplicate(
    meals: Iterable[PriorMeal],
    *,
    slot: MealSlot,
    day: date,
    staff_override: str | None = None,
    another_portion: bool = False,
    any_meal: bool = True,
    tz: tzinfo = CHINA_TZ,
) -> GuardResult:
    """Decide whether a new meal in ``slot`` on ``day`` may go ahead.

    ``meals`` are the resident's charges (voided ones are ignored). Any earlier
    meal in the slot blocks (``any_meal=False`` narrows that to subsidised
    meals). ``staff_override`` (a staff id) or ``another_portion`` lets it
    through; both are echoed in the result. The latest matching meal is
    reported, and ``meals_before`` counts every non-voided meal in the slot so
    the store can refuse a charge when another one landed since the quote.
    """
    meals = list(meals)
    count = meals_in_slot(meals, slot, day)
    hits = [
        m
        for m in meals
        if m.slot is slot and m.day == day and not m.voided and (m.subsidised or any_meal)
    ]
    if not hits:
        return GuardResult("ok", meals_before=count)
    last = max(hits, key=lambda m: m.at)
    hhmm = local_hhmm(last.at, tz)
    if staff_override:
        return GuardResult(
            "ok", last.at, hhmm, last.record_id, overridden_by=staff_override, meals_before=count
        )
    if another_portion:
        return GuardResult(
            "ok", last.at, hhmm, last.record_id, another_portion=True, meals_before=count
        )
    return GuardResult("already_paid", last.at, hhmm, last.record_id, meals_before=count)
