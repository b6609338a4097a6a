"""Subsidy policy parsing and the price quote (table-driven)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payment.domain import MealSlot, OrderLine, SeniorCategory
from payment.errors import PolicyError
from payment.subsidy import (
    Outcome,
    SubsidyKind,
    SubsidyPolicy,
    parse_policy,
    quote,
    select_policy,
)
from terminal.core.money import Money

C = SeniorCategory
POLICY_DOC: dict[str, Any] = {
    "policy_id": "district-2026",
    "version": 3,
    "effective_from": "2026-01-01",
    "rules": [
        {
            "category": "age_80_89",
            "slots": ["lunch"],
            "type": "fixed",
            "amount_fen": 300,
            "limit_per_day": 1,
            "floor_fen": 100,
        },
        {"category": "age_90_plus", "slot": "lunch", "type": "fixed", "amount_fen": 750},
        {
            "category": "低保",
            "slot": "lunch",
            "type": "percent",
            "basis_points": 5000,
            "cap_fen": 800,
        },
        {
            "category": "tekun",
            "slot": "*",
            "type": "percent",
            "basis_points": 10000,
            "limit_per_day": 2,
        },
        {"category": "disabled", "slot": "breakfast", "type": "percent", "basis_points": 3333},
        {"category": "none", "slot": "lunch", "type": "fixed", "amount_fen": 100, "floor_fen": 0},
        {"category": "age_70_79", "slot": "dinner", "type": "fixed", "amount_fen": 0},
        {"category": "dibian", "slot": "lunch", "type": "fixed", "amount_fen": 500, "cap_fen": 0},
    ],
}
POLICY = parse_policy(POLICY_DOC)


def set_meal(fen: int, qty: int = 1) -> OrderLine:
    return OrderLine("L1", "午餐套餐", Money(fen), qty)


DRINK = OrderLine("D1", "豆浆", Money(300), 1, subsidisable=False)


@dataclass(frozen=True)
class Case:
    name: str
    cats: frozenset[SeniorCategory]
    lines: tuple[OrderLine, ...]
    subsidy: int
    due: int
    outcome: Outcome
    category: SeniorCategory | None
    slot: MealSlot = MealSlot.LUNCH
    before: int = 0  # subsidised meals already had in the slot today
    capped: bool = False
    floored: bool = False


CASES = [
    Case(
        "fixed",
        frozenset({C.AGE_80_89}),
        (set_meal(1500),),
        300,
        1200,
        Outcome.APPLIED,
        C.AGE_80_89,
    ),
    Case("percent", frozenset({C.DIBAO}), (set_meal(1500),), 750, 750, Outcome.APPLIED, C.DIBAO),
    Case(
        "percent capped",
        frozenset({C.DIBAO}),
        (set_meal(2000),),
        800,
        1200,
        Outcome.APPLIED,
        C.DIBAO,
        capped=True,
    ),
    Case(
        "floor keeps 1 yuan",
        frozenset({C.AGE_80_89}),
        (set_meal(350),),
        250,
        100,
        Outcome.APPLIED,
        C.AGE_80_89,
        floored=True,
    ),
    Case(
        "price at floor",
        frozenset({C.AGE_80_89}),
        (set_meal(100),),
        0,
        100,
        Outcome.BELOW_FLOOR,
        None,
    ),
    Case(
        "price under floor",
        frozenset({C.AGE_80_89}),
        (set_meal(60),),
        0,
        60,
        Outcome.BELOW_FLOOR,
        None,
    ),
    Case(
        "limit reached",
        frozenset({C.AGE_80_89}),
        (set_meal(1500),),
        0,
        1500,
        Outcome.LIMIT_REACHED,
        None,
        before=1,
    ),
    Case(
        "best of several",
        frozenset({C.AGE_80_89, C.DIBAO}),
        (set_meal(1500),),
        750,
        750,
        Outcome.APPLIED,
        C.DIBAO,
    ),
    Case(
        "several, best is fixed",
        frozenset({C.AGE_90_PLUS, C.DIBAO}),
        (set_meal(1200),),
        750,
        450,
        Outcome.APPLIED,
        C.AGE_90_PLUS,
    ),
    Case(
        "tie goes to priority",
        frozenset({C.AGE_90_PLUS, C.DIBAO}),
        (set_meal(1500),),
        750,
        750,
        Outcome.APPLIED,
        C.DIBAO,
    ),
    Case(
        "other category has a higher limit",
        frozenset({C.TEKUN, C.DIBAO}),
        (set_meal(1500),),
        1500,
        0,
        Outcome.APPLIED,
        C.TEKUN,
        before=1,
    ),
    Case(
        "all limits reached",
        frozenset({C.TEKUN, C.DIBAO}),
        (set_meal(1500),),
        0,
        1500,
        Outcome.LIMIT_REACHED,
        None,
        before=2,
    ),
    Case("zero price", frozenset({C.DIBAO}), (set_meal(0),), 0, 0, Outcome.ZERO_PRICE, None),
    Case("only non-subsidisable", frozenset({C.DIBAO}), (DRINK,), 0, 300, Outcome.ZERO_PRICE, None),
    Case(
        "extras not subsidised",
        frozenset({C.DIBAO}),
        (set_meal(1500), DRINK),
        750,
        1050,
        Outcome.APPLIED,
        C.DIBAO,
    ),
    Case(
        "quantity counts",
        frozenset({C.DIBAO}),
        (set_meal(500, 2),),
        500,
        500,
        Outcome.APPLIED,
        C.DIBAO,
    ),
    Case(
        "no rule for slot",
        frozenset({C.AGE_80_89}),
        (set_meal(1500),),
        0,
        1500,
        Outcome.NO_RULE,
        None,
        slot=MealSlot.DINNER,
    ),
    Case(
        "no rule for category",
        frozenset({C.AGE_60_69}),
        (set_meal(1500),),
        0,
        1500,
        Outcome.NO_RULE,
        None,
    ),
    Case(
        "no category means none", frozenset(), (set_meal(1500),), 100, 1400, Outcome.APPLIED, C.NONE
    ),
    Case(
        "percentage rounds down",
        frozenset({C.DISABLED}),
        (set_meal(100),),
        33,
        67,
        Outcome.APPLIED,
        C.DISABLED,
        slot=MealSlot.BREAKFAST,
    ),
    Case(
        "percentage rounds to zero",
        frozenset({C.DISABLED}),
        (set_meal(2),),
        0,
        2,
        Outcome.ROUNDED_TO_ZERO,
        None,
        slot=MealSlot.BREAKFAST,
    ),
    Case(
        "rule grants 0",
        frozenset({C.AGE_70_79}),
        (set_meal(1500),),
        0,
        1500,
        Outcome.NOTHING_GRANTED,
        None,
        slot=MealSlot.DINNER,
    ),
    Case("cap 0", frozenset({C.DIBIAN}), (set_meal(1500),), 0, 1500, Outcome.NOTHING_GRANTED, None),
    Case(
        "fixed above price",
        frozenset({C.AGE_90_PLUS}),
        (set_meal(500),),
        500,
        0,
        Outcome.APPLIED,
        C.AGE_90_PLUS,
    ),
    Case(
        "fixed above price with floor",
        frozenset({C.AGE_80_89}),
        (set_meal(200),),
        100,
        100,
        Outcome.APPLIED,
        C.AGE_80_89,
        floored=True,
    ),
    Case(
        "100 percent",
        frozenset({C.TEKUN}),
        (set_meal(1234),),
        1234,
        0,
        Outcome.APPLIED,
        C.TEKUN,
        slot=MealSlot.DINNER,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_quote_table(case: Case) -> None:
    q = quote(
        policy=POLICY,
        categories=case.cats,
        slot=case.slot,
        lines=case.lines,
        balance_before=Money(5000),
        subsidised_before=case.before,
    )
    assert (q.subsidy.fen, q.due.fen, q.outcome, q.category) == (
        case.subsidy,
        case.due,
        case.outcome,
        case.category,
    )
    assert q.list_total.fen == sum(ln.amount.fen for ln in case.lines)
    assert q.list_total == q.subsidy + q.due
    assert q.balance_after.fen == 5000 - case.due
    assert q.policy_id == "district-2026" and q.policy_version == 3
    assert q.subsidised is (case.subsidy > 0)
    if q.applied is not None:
        assert q.applied.capped is case.capped
        assert q.applied.floored is case.floored
        assert q.applied.rule is not None and q.applied.rule.category is case.category
    # every category held is evaluated and explained
    assert {e.category for e in q.evaluations} == (case.cats or {C.NONE})
    assert len(q.explain()) == 4 + len(q.evaluations)


def test_quote_explains_why_not() -> None:
    q = quote(
        policy=POLICY,
        categories={C.AGE_80_89, C.AGE_60_69},
        slot=MealSlot.LUNCH,
        lines=(set_meal(1500),),
        balance_before=Money(0),
        subsidised_before=1,
    )
    by_cat = {e.category: e.outcome for e in q.evaluations}
    assert by_cat == {C.AGE_80_89: Outcome.LIMIT_REACHED, C.AGE_60_69: Outcome.NO_RULE}
    text = "\n".join(q.explain())
    assert "age_80_89: limit_reached" in text and "age_60_69: no_rule" in text
    assert "balance 0.00 -> -15.00" in text


def test_quote_without_policy() -> None:
    q = quote(
        policy=None,
        categories={C.DIBAO},
        slot=MealSlot.LUNCH,
        lines=(set_meal(1500),),
        balance_before=Money(2000),
    )
    assert (q.subsidy.fen, q.due.fen, q.outcome, q.policy_id) == (0, 1500, Outcome.NO_POLICY, None)
    assert q.evaluations == ()


@pytest.mark.parametrize(
    ("balance", "overdraft", "ok", "shortfall"),
    [
        (750, 0, True, 0),
        (749, 0, False, 1),
        (0, 0, False, 750),
        (0, 1000, True, 0),
        (-250, 1000, True, 0),
        (-300, 1000, False, 50),
        (-300, 500, False, 550),
    ],
)
def test_quote_funds(balance: int, overdraft: int, ok: bool, shortfall: int) -> None:
    q = quote(
        policy=POLICY,
        categories={C.DIBAO},
        slot=MealSlot.LUNCH,
        lines=(set_meal(1500),),
        balance_before=Money(balance),
        overdraft_limit=Money(overdraft),
    )
    assert q.due.fen == 750
    assert (q.funds_ok, q.shortfall.fen) == (ok, shortfall)


def test_policy_parse_round_trip_and_expansion() -> None:
    assert len(POLICY.rules) == 10  # tekun "*" expands into three slots
    rule = POLICY.rule_for(C.TEKUN, MealSlot.BREAKFAST)
    assert rule is not None and rule.kind is SubsidyKind.PERCENT and rule.limit_per_day == 2
    r80 = POLICY.rule_for(C.AGE_80_89, MealSlot.LUNCH)
    assert r80 is not None and r80.cap is None and r80.floor == Money(100)
    assert r80.limit_per_day == 1
    assert parse_policy(POLICY.to_dict()) == POLICY
    assert SubsidyPolicy.from_dict(POLICY_DOC) == POLICY
    assert "fixed 3.00" in r80.describe()


def _mutate(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(POLICY_DOC)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()

BAD_POLICIES = [
    (("policy_id",), _DELETE, "'policy_id' is required"),
    (("policy_id",), "  ", "'policy_id' is required"),
    (("version",), "3", "'version' must be an integer"),
    (("version",), True, "'version' must be an integer"),
    (("version",), 0, "version must be a positive integer"),
    (("effective_from",), "2026/01/01", "YYYY-MM-DD"),
    (("effective_from",), _DELETE, "'effective_from' is required"),
    (("effective_until",), "2025-12-31", "before effective_from"),
    (("rules",), {}, "'rules' must be a list"),
    (("extra",), 1, "unknown field"),
    (("rules", 0, "category"), "vip", "rule 1: unknown category"),
    (("rules", 0, "category"), _DELETE, "rule 1: 'category' is required"),
    (("rules", 0, "type"), "bonus", "rule 1: 'type' must be 'fixed' or 'percent'"),
    (("rules", 0, "amount_fen"), 2.5, "rule 1: 'amount_fen' must be an integer"),
    (("rules", 0, "amount_fen"), -1, "rule 1: 'amount_fen' must not be negative"),
    (("rules", 0, "amount_fen"), _DELETE, "rule 1: 'amount_fen' is required"),
    (("rules", 0, "basis_points"), 10, "fixed rule takes amount_fen"),
    (("rules", 2, "basis_points"), 10001, "rule 3: 'basis_points' must be 0..10000"),
    (("rules", 2, "amount_fen"), 5, "percent rule takes basis_points"),
    (("rules", 0, "cap_fen"), -5, "'cap_fen' must not be negative"),
    (("rules", 0, "limit_per_day"), "1", "'limit_per_day' must be an integer"),
    (("rules", 0, "floor_fen"), -1, "'floor_fen' must not be negative"),
    (("rules", 0, "slot"), "lunch", "exactly one of 'slot' or 'slots'"),
    (("rules", 0, "slots"), [], "'slots' must be a non-empty list"),
    (("rules", 0, "slots"), ["brunch"], "unknown slot"),
    (("rules", 1, "slot"), 3, "slot must be breakfast, lunch, dinner"),
    (("rules", 0, "colour"), "red", "rule 1: unknown field"),
    (("rules", 0, "slots"), ["dinner"], None),  # valid: sanity of the helper
    (("rules", 0, "category"), "age_90_plus", "two rules for category age_90_plus and slot lunch"),
    (("rules", 3), "x", "rule 4: must be an object"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_POLICIES)
def test_policy_rejects(path: tuple[Any, ...], value: Any, message: str | None) -> None:
    doc = _mutate(path, value)
    if message is None:
        assert parse_policy(doc).policy_id == "district-2026"
        return
    with pytest.raises(PolicyError, match=message) as err:
        parse_policy(doc)
    assert err.value.code == "policy_invalid"


def test_policy_rejects_non_object() -> None:
    with pytest.raises(PolicyError, match="JSON object"):
        parse_policy([])  # type: ignore[arg-type]


def test_select_policy_by_date_and_version() -> None:
    p1 = parse_policy(
        {
            **POLICY_DOC,
            "version": 1,
            "effective_from": "2025-01-01",
            "effective_until": "2025-12-31",
        }
    )
    p2 = parse_policy({**POLICY_DOC, "version": 2, "effective_from": "2026-01-01"})
    p3 = parse_policy({**POLICY_DOC, "version": 3, "effective_from": "2026-01-01"})
    p4 = parse_policy({**POLICY_DOC, "version": 4, "effective_from": "2026-03-01"})
    pols = [p4, p1, p3, p2]
    assert select_policy(pols, date(2024, 6, 1)) is None
    assert select_policy(pols, date(2025, 6, 1)) is p1
    assert select_policy(pols, date(2026, 1, 1)) is p3
    assert select_policy(pols, date(2026, 3, 1)) is p4
    assert not p1.in_force(date(2026, 1, 1))


CATS = st.frozensets(st.sampled_from(list(SeniorCategory)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    cats=CATS,
    slot=st.sampled_from(list(MealSlot)),
    prices=st.lists(
        st.tuples(st.integers(0, 5000), st.integers(1, 3), st.booleans()), min_size=0, max_size=4
    ),
    before=st.integers(0, 3),
    balance=st.integers(-1000, 10_000),
)
def test_quote_invariants(
    cats: frozenset[SeniorCategory],
    slot: MealSlot,
    prices: list[tuple[int, int, bool]],
    before: int,
    balance: int,
) -> None:
    lines = tuple(OrderLine(f"I{i}", "菜", Money(p), q, s) for i, (p, q, s) in enumerate(prices))
    q = quote(
        policy=POLICY,
        categories=cats,
        slot=slot,
        lines=lines,
        balance_before=Money(balance),
        subsidised_before=before,
    )
    assert 0 <= q.subsidy.fen <= q.eligible.fen <= q.list_total.fen
    assert q.due.fen == q.list_total.fen - q.subsidy.fen >= 0
    assert q.balance_after.fen == balance - q.due.fen
    if q.applied is not None:
        rule = q.applied.rule
        assert rule is not None
        assert before < rule.limit_per_day
        if rule.cap is not None:
            assert q.subsidy.fen <= rule.cap.fen
        assert q.eligible.fen - q.subsidy.fen >= min(rule.floor.fen, q.eligible.fen)
        # no category held would have given more
        assert all(e.subsidy.fen <= q.subsidy.fen for e in q.evaluations)
    else:
        assert q.subsidy.fen == 0
