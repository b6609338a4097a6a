"""City-wide meals: the pure helpers behind the kiosk's visitor path (the
record's ``visit`` object, the offline budget, today's visitors), as tables."""

from __future__ import annotations

import pytest

from payment.domain import MealSlot, SeniorCategory
from payment.visiting import (
    OfflineUsage,
    OwedLine,
    PaymentSource,
    Source,
    Visit,
    VisitDecision,
    VisitorMealRow,
    VisitorsDay,
    capped_subsidy,
    offline_usage,
    visitors_day,
)

L, D = MealSlot.LUNCH, MealSlot.DINNER


def row(
    rid: str, person: str, home: str, slot: MealSlot, fen: int, src: Source, voided: bool = False
) -> VisitorMealRow:
    return VisitorMealRow(rid, person, home, slot, fen, src, src is Source.ROSTER, voided)


ON, OFF = Source.ONLINE, Source.ROSTER

# rows -> today's visitors (distinct, meals, review, owed per home centre)
DAY_CASES = [
    ("nobody", [], VisitorsDay(0, 0, 0, ())),
    (
        "two centres, one senior twice",
        [
            row("1", "P-1", "centre-a", L, 300, ON),
            row("2", "P-1", "centre-a", D, 200, OFF),
            row("3", "P-2", "centre-c", L, 500, ON),
        ],
        VisitorsDay(2, 3, 1, (OwedLine("centre-a", 1, 2, 500), OwedLine("centre-c", 1, 1, 500))),
    ),
    (
        "a voided meal owes nothing and is no visit",
        [row("1", "P-1", "centre-a", L, 300, ON, voided=True)],
        VisitorsDay(0, 0, 0, ()),
    ),
    (
        "a meal without subsidy is a visit that owes nothing",
        [row("1", "P-1", "centre-a", L, 0, ON)],
        VisitorsDay(1, 1, 0, ()),
    ),
    (
        "district wallet meals: the home centre owes what was paid from it too",
        [
            VisitorMealRow("1", "P-1", "centre-a", L, 300, ON, False, wallet_fen=1200),
            VisitorMealRow("2", "P-1", "centre-a", D, 0, ON, False, wallet_fen=1500),
            VisitorMealRow("3", "P-2", "centre-a", D, 0, ON, False, True, wallet_fen=1500),
        ],
        VisitorsDay(1, 2, 0, (OwedLine("centre-a", 1, 1, 300, 2700),)),
    ),
]


@pytest.mark.parametrize(
    ("rows", "want"), [c[1:] for c in DAY_CASES], ids=[c[0] for c in DAY_CASES]
)
def test_visitors_day(rows: list[VisitorMealRow], want: VisitorsDay) -> None:
    assert visitors_day(rows) == want
    assert visitors_day(rows).owed_fen == sum(o.subsidy_fen for o in want.owed)


# rows, slot -> offline usage (roster meals with a subsidy only, not voided)
USAGE_CASES = [
    ("none", [], L, OfflineUsage(0, 0)),
    (
        "online meals do not spend the offline budget",
        [row("1", "P-1", "a", L, 300, ON), row("2", "P-2", "a", L, 300, OFF)],
        L,
        OfflineUsage(1, 300),
    ),
    (
        "other slots count for the day's amount only",
        [row("1", "P-1", "a", D, 300, OFF), row("2", "P-2", "a", L, 200, OFF)],
        L,
        OfflineUsage(1, 500),
    ),
    (
        "voided and unsubsidised meals count for nothing",
        [row("1", "P-1", "a", L, 300, OFF, voided=True), row("2", "P-2", "a", L, 0, OFF)],
        L,
        OfflineUsage(0, 0),
    ),
]


@pytest.mark.parametrize(
    ("rows", "slot", "want"), [c[1:] for c in USAGE_CASES], ids=[c[0] for c in USAGE_CASES]
)
def test_offline_usage(rows: list[VisitorMealRow], slot: MealSlot, want: OfflineUsage) -> None:
    assert offline_usage(rows, slot) == want


def decision(allowed: bool, cap: int | None) -> VisitDecision:
    return VisitDecision(0, allowed, cap is not None, PaymentSource.CASH, None, subsidy_cap_fen=cap)


@pytest.mark.parametrize(
    ("subsidy", "allowed", "cap", "want"),
    [
        (300, True, None, 300),
        (300, False, None, 0),
        (300, True, 300, 300),
        (300, True, 299, 0),  # never a part of the policy's amount
        (0, True, 100, 0),
    ],
)
def test_capped_subsidy(subsidy: int, allowed: bool, cap: int | None, want: int) -> None:
    assert capped_subsidy(subsidy, decision(allowed, cap)) == want


def test_visit_payload_round_trip_has_exactly_the_spec_fields() -> None:
    v = Visit(
        "P-1",
        "centre-a",
        Source.ROSTER,
        None,
        True,
        PaymentSource.VISITED_WALLET,
        categories=(SeniorCategory.AGE_80_89,),
    )
    payload = v.to_payload()
    assert sorted(payload) == [
        "claim_id",
        "home_centre_id",
        "payment_source",
        "person_id",
        "review",
        "source",
    ]
    back = Visit.from_payload(payload)
    assert back.to_payload() == payload
