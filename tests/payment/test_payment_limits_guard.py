"""Offline exposure limits and the duplicate guard (table-driven)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from payment.domain import MealSlot, PriorMeal
from payment.errors import LimitsError
from payment.guard import check_duplicate
from payment.limits import Exposure, ExposureLimits, LimitReason, check_limits
from terminal.core.clock import CHINA_TZ
from terminal.core.money import Money

LIMITS = ExposureLimits(Money(5000), Money(10_000), Money(50_000))


@pytest.mark.parametrize(
    ("amount", "resident", "terminal", "result", "reason", "would_be"),
    [
        (0, 99_999, 99_999, "ok", None, None),
        (1500, 0, 0, "ok", None, None),
        (5000, 0, 0, "ok", None, None),  # equal to a limit is allowed
        (5001, 0, 0, "staff_required", LimitReason.OVER_TRANSACTION, 5001),
        (2000, 8000, 0, "ok", None, None),
        (2001, 8000, 0, "staff_required", LimitReason.OVER_RESIDENT_UNSYNCED, 10_001),
        (1000, 0, 49_000, "ok", None, None),
        (1001, 0, 49_000, "staff_required", LimitReason.OVER_TERMINAL_UNSYNCED, 50_001),
        # the first crossed limit is reported
        (6000, 9000, 49_000, "staff_required", LimitReason.OVER_TRANSACTION, 6000),
        (3000, 9000, 49_000, "staff_required", LimitReason.OVER_RESIDENT_UNSYNCED, 12_000),
    ],
)
def test_check_limits(
    amount: int,
    resident: int,
    terminal: int,
    result: str,
    reason: LimitReason | None,
    would_be: int | None,
) -> None:
    chk = check_limits(Money(amount), Exposure(Money(resident), Money(terminal)), LIMITS)
    assert chk.result == result and chk.reason is reason
    assert chk.ok is (result == "ok")
    assert (chk.would_be.fen if chk.would_be else None) == would_be
    if reason is LimitReason.OVER_TRANSACTION:
        assert chk.limit == Money(5000)


def test_limits_from_dict() -> None:
    lim = ExposureLimits.from_dict({"max_per_transaction_fen": 3000})
    assert lim.max_per_transaction == Money(3000)
    assert lim.max_unsynced_per_resident == ExposureLimits().max_unsynced_per_resident
    assert ExposureLimits.from_dict(LIMITS.to_dict()) == LIMITS
    for bad, msg in (
        ({"max_per_transaction_fen": -1}, "non-negative"),
        ({"max_per_transaction_fen": "50"}, "non-negative"),
        ({"max_per_txn": 1}, "unknown field"),
    ):
        with pytest.raises(LimitsError, match=msg):
            ExposureLimits.from_dict(bad)
    with pytest.raises(LimitsError):
        ExposureLimits(Money(-1))


DAY = date(2026, 1, 5)


def meal(
    rid: str,
    hh: int,
    mm: int,
    slot: MealSlot = MealSlot.LUNCH,
    sub: bool = True,
    voided: bool = False,
    day: date = DAY,
) -> PriorMeal:
    at = datetime(day.year, day.month, day.day, hh, mm, tzinfo=CHINA_TZ)
    return PriorMeal(rid, at, slot, day, sub, voided)


@pytest.mark.parametrize(
    ("meals", "slot", "override", "any_meal", "result", "hhmm", "record"),
    [
        ([], MealSlot.LUNCH, None, False, "ok", None, None),
        ([meal("A", 11, 5)], MealSlot.LUNCH, None, False, "already_paid", "11:05", "A"),
        ([meal("A", 11, 5)], MealSlot.DINNER, None, False, "ok", None, None),
        ([meal("A", 11, 5, day=date(2026, 1, 4))], MealSlot.LUNCH, None, False, "ok", None, None),
        ([meal("A", 11, 5, voided=True)], MealSlot.LUNCH, None, False, "ok", None, None),
        ([meal("A", 11, 5, sub=False)], MealSlot.LUNCH, None, False, "ok", None, None),
        ([meal("A", 11, 5, sub=False)], MealSlot.LUNCH, None, True, "already_paid", "11:05", "A"),
        (
            [meal("A", 11, 5), meal("B", 12, 40)],
            MealSlot.LUNCH,
            None,
            False,
            "already_paid",
            "12:40",
            "B",
        ),
        ([meal("A", 11, 5)], MealSlot.LUNCH, "S7", False, "ok", "11:05", "A"),
    ],
)
def test_duplicate_guard(
    meals: list[PriorMeal],
    slot: MealSlot,
    override: str | None,
    any_meal: bool,
    result: str,
    hhmm: str | None,
    record: str | None,
) -> None:
    g = check_duplicate(meals, slot=slot, day=DAY, staff_override=override, any_meal=any_meal)
    assert (g.result, g.paid_at_hhmm, g.record_id) == (result, hhmm, record)
    assert g.overridden_by == (override if record else None)


def test_duplicate_guard_reports_local_time() -> None:
    from datetime import UTC

    at = datetime(2026, 1, 5, 3, 5, tzinfo=UTC)  # 11:05 in Beijing
    g = check_duplicate(
        [PriorMeal("A", at, MealSlot.LUNCH, DAY, True)], slot=MealSlot.LUNCH, day=DAY
    )
    assert g.paid_at_hhmm == "11:05"


@pytest.mark.parametrize(
    ("meals", "override", "portion", "result", "record", "count", "portion_echo"),
    [
        # by default every earlier meal blocks, subsidised or not (dinner at full price)
        ([meal("A", 11, 5, sub=False)], None, False, "already_paid", "A", 1, False),
        ([meal("A", 11, 5)], None, False, "already_paid", "A", 1, False),
        # the senior's explicit "another portion" lets a second one through
        ([meal("A", 11, 5, sub=False)], None, True, "ok", "A", 1, True),
        ([meal("A", 11, 5), meal("B", 12, 0, sub=False)], None, True, "ok", "B", 2, True),
        # staff override wins and is what the result reports
        ([meal("A", 11, 5)], "S7", True, "ok", "A", 1, False),
        # no earlier meal: the choice is not needed and not echoed
        ([], None, True, "ok", None, 0, False),
        ([meal("A", 11, 5, voided=True)], None, False, "ok", None, 0, False),
    ],
)
def test_duplicate_guard_covers_every_meal_by_default(
    meals: list[PriorMeal],
    override: str | None,
    portion: bool,
    result: str,
    record: str | None,
    count: int,
    portion_echo: bool,
) -> None:
    g = check_duplicate(
        meals, slot=MealSlot.LUNCH, day=DAY, staff_override=override, another_portion=portion
    )
    assert (g.result, g.record_id, g.meals_before, g.another_portion) == (
        result,
        record,
        count,
        portion_echo,
    )
