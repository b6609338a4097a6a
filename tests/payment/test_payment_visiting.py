"""City-wide meals: the visitor decision and the settlement between centres,
as tables (payment.visiting is pure)."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from payment.domain import MealSlot, OrderLine, SeniorCategory
from payment.errors import DomainError
from payment.subsidy import parse_policy, quote
from payment.visiting import (
    OfflineUsage,
    OfflineVisitLimits,
    PaymentSource,
    SettlementLine,
    Source,
    VisitMeal,
    VisitorStatus,
    VisitRefusal,
    decide_visit,
    settle,
    settlement_csv,
)
from terminal.core.money import Money

HERE, HOME = "centre-B", "centre-A"
CATS = (SeniorCategory.AGE_80_89,)
LIMITS = OfflineVisitLimits(max_subsidised_visits_per_slot=2, max_subsidy_fen_per_day=500)


def online(subsidised: bool) -> VisitorStatus:
    return VisitorStatus("P-1", HOME, CATS, Source.ONLINE, subsidised_in_district=subsidised)


ROSTER = VisitorStatus("P-1", HOME, CATS, Source.ROSTER)

# status, local meals, payment source, offline usage ->
#   subsidised_before, subsidy allowed, review, refusal, cap
CASES = [
    (
        "online, first meal of the slot",
        online(False),
        0,
        PaymentSource.CASH,
        OfflineUsage(),
        0,
        True,
        False,
        None,
        None,
    ),
    (
        "online, eaten at another centre",
        online(True),
        0,
        PaymentSource.CASH,
        OfflineUsage(),
        1,
        False,
        False,
        VisitRefusal.ALREADY_SUBSIDISED,
        None,
    ),
    (
        "online, eaten here a moment ago (not uploaded yet)",
        online(False),
        1,
        PaymentSource.VISITED_WALLET,
        OfflineUsage(),
        1,
        False,
        False,
        VisitRefusal.ALREADY_SUBSIDISED,
        None,
    ),
    (
        "online, home wallet",
        online(False),
        0,
        PaymentSource.HOME_WALLET,
        OfflineUsage(),
        0,
        True,
        False,
        None,
        None,
    ),
    (
        "offline, within limits: allowed, for review",
        ROSTER,
        0,
        PaymentSource.CASH,
        OfflineUsage(1, 200),
        0,
        True,
        True,
        None,
        300,
    ),
    (
        "offline, eaten here already",
        ROSTER,
        1,
        PaymentSource.CASH,
        OfflineUsage(),
        1,
        False,
        True,
        VisitRefusal.ALREADY_SUBSIDISED,
        None,
    ),
    (
        "offline, slot limit reached",
        ROSTER,
        0,
        PaymentSource.CASH,
        OfflineUsage(2, 0),
        0,
        False,
        True,
        VisitRefusal.OFFLINE_LIMIT,
        None,
    ),
    (
        "offline, day budget spent",
        ROSTER,
        0,
        PaymentSource.CASH,
        OfflineUsage(0, 500),
        0,
        False,
        True,
        VisitRefusal.OFFLINE_LIMIT,
        None,
    ),
    (
        "offline, home wallet needs the platform: the roster's rules, paid in cash",
        ROSTER,
        0,
        PaymentSource.HOME_WALLET,
        OfflineUsage(),
        0,
        True,
        True,
        None,
        500,
    ),
]


@pytest.mark.parametrize(
    ("status", "local", "source", "usage", "before", "allowed", "review", "refusal", "cap"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide_visit(
    status: VisitorStatus,
    local: int,
    source: PaymentSource,
    usage: OfflineUsage,
    before: int,
    allowed: bool,
    review: bool,
    refusal: VisitRefusal | None,
    cap: int | None,
) -> None:
    d = decide_visit(
        status,
        this_centre_id=HERE,
        local_subsidised=local,
        payment_source=source,
        limits=LIMITS,
        usage=usage,
    )
    assert (d.subsidised_before, d.subsidy_allowed, d.review, d.refusal, d.subsidy_cap_fen) == (
        before,
        allowed,
        review,
        refusal,
        cap,
    )
    offline_wallet = status.source is Source.ROSTER and source is PaymentSource.HOME_WALLET
    assert d.payment_source is (PaymentSource.CASH if offline_wallet else source)
    assert d.wallet_note is (VisitRefusal.HOME_WALLET_OFFLINE if offline_wallet else None)


def test_the_decision_feeds_the_ordinary_quote() -> None:
    """subsidised_before from the district answer makes the second meal of the slot
    unsubsidised through the same rules a centre's own seniors get."""
    policy = parse_policy(
        {
            "policy_id": "district",
            "version": 1,
            "effective_from": "2026-01-01",
            "rules": [
                {"category": "age_80_89", "slot": "lunch", "type": "fixed", "amount_fen": 300}
            ],
        }
    )
    lines = [OrderLine("lunch-set", "午餐", Money(1200))]
    for status, expected in ((online(False), 300), (online(True), 0)):
        d = decide_visit(
            status,
            this_centre_id=HERE,
            local_subsidised=0,
            payment_source=PaymentSource.CASH,
            limits=LIMITS,
            usage=OfflineUsage(),
        )
        q = quote(
            policy=policy,
            categories=status.categories,
            slot=MealSlot.LUNCH,
            lines=lines,
            balance_before=Money(0),
            subsidised_before=d.subsidised_before,
        )
        assert q.subsidy.fen == expected


def test_inconsistent_inputs_are_refused() -> None:
    with pytest.raises(DomainError):
        VisitorStatus("P-1", HOME, CATS, Source.ONLINE)  # online must say
    with pytest.raises(DomainError):
        VisitorStatus("P-1", HOME, CATS, Source.ROSTER, subsidised_in_district=False)
    with pytest.raises(DomainError):
        decide_visit(
            VisitorStatus("P-1", HERE, CATS, Source.ROSTER),
            this_centre_id=HERE,
            local_subsidised=0,
            payment_source=PaymentSource.CASH,
            limits=LIMITS,
            usage=OfflineUsage(),
        )
    with pytest.raises(DomainError):
        OfflineVisitLimits(max_subsidised_visits_per_slot=-1)


def test_an_inactive_visitor_gets_no_subsidy() -> None:
    status = VisitorStatus("P-1", HOME, CATS, Source.ROSTER, active=False)
    d = decide_visit(
        status,
        this_centre_id=HERE,
        local_subsidised=0,
        payment_source=PaymentSource.CASH,
        limits=LIMITS,
        usage=OfflineUsage(),
    )
    assert (d.subsidy_allowed, d.refusal) == (False, VisitRefusal.NOT_ACTIVE)


D1, D2, D3 = date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 31)


def meal(rid: str, day: date, visited: str, home: str, fen: int, voided: bool = False) -> VisitMeal:
    return VisitMeal(rid, day, MealSlot.LUNCH, visited, home, fen, voided)


def test_settlement_per_pair_of_centres() -> None:
    meals = [
        meal("r1", D1, "B", "A", 300),
        meal("r2", D2, "B", "A", 300),
        meal("r3", D2, "B", "A", 300, voided=True),  # voided: nothing to settle
        meal("r4", D2, "A", "B", 250),  # the other way round: its own line
        meal("r5", D2, "C", "A", 0),  # no subsidy paid out
        meal("r6", D3, "B", "A", 300),  # outside the period
        meal("r7", D1, "A", "A", 300),  # a centre's own senior
    ]
    lines = settle(meals, D1, D2)
    assert lines == [
        SettlementLine("A", "B", D1, D2, 1, 250, ("r4",)),
        SettlementLine("B", "A", D1, D2, 2, 600, ("r1", "r2")),
    ]
    rows = list(csv.reader(io.StringIO(settlement_csv(lines))))
    assert rows[0][:2] == ["claimant_centre_id", "debtor_centre_id"]
    assert rows[2] == ["B", "A", "2026-12-01", "2026-12-02", "2", "600", "6.00"]
    assert settle([], D1, D1) == []
    with pytest.raises(DomainError):
        settle(meals, D2, D1)
    with pytest.raises(DomainError):
        settle([meal("r9", D1, "B", "A", -1)], D1, D2)
