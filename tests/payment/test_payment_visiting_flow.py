"""City-wide meals in the pure kiosk flow: a senior of another centre by card,
ID card or staff lookup, as tables (platform answer, claim answer, offline
usage -> the confirm screen's subsidy, the record's ``visit``)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from payment.domain import MealSlot, Menu, PriorMeal, SeniorCategory, VerificationMethod
from payment.flow import (
    VISITOR_HINT,
    AlreadyPaid,
    AskVisitor,
    CardTapped,
    Charge,
    Charging,
    ClaimSlot,
    Confirm,
    Effect,
    Event,
    FaceResult,
    Failed,
    FailReason,
    FlowConfig,
    IdCardRead,
    Idle,
    SlotClaimAnswered,
    StaffApprove,
    State,
    StaticContext,
    Touch,
    VisitorAnswered,
    VisitorChecking,
    VisitorClaiming,
    VisitorLookup,
    step,
)
from payment.subsidy import parse_policy
from payment.visiting import (
    ClaimOutcome,
    KeyType,
    OfflineUsage,
    OfflineVisitLimits,
    PaymentSource,
    Source,
    VisitorPolicy,
    VisitorStatus,
    VisitRefusal,
)
from terminal.core.clock import CHINA_TZ
from terminal.core.money import Money

NOW = datetime(2026, 1, 5, 11, 30, tzinfo=CHINA_TZ)  # lunch
DAY = date(2026, 1, 5)
HERE, HOME = "centre-b", "centre-a"
CATS = (SeniorCategory.AGE_80_89,)
MENU = Menu.from_dict(
    {
        "date": DAY.isoformat(),
        "items": [{"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]}],
    }
)
POLICY = parse_policy(
    {
        "policy_id": "district-2026",
        "version": 1,
        "effective_from": "2026-01-01",
        "rules": [
            {"category": "age_80_89", "slot": "lunch", "type": "fixed", "amount_fen": 300},
        ],
    }
)
LIMITS = OfflineVisitLimits(max_subsidised_visits_per_slot=2, max_subsidy_fen_per_day=500)


def ctx(
    *,
    source: PaymentSource = PaymentSource.CASH,
    usage: OfflineUsage = OfflineUsage(),
    meals: tuple[PriorMeal, ...] = (),
    balance: int = 0,
    visitors: bool = True,
) -> StaticContext:
    policy = VisitorPolicy(HERE, source, LIMITS) if visitors else None
    return StaticContext(
        config=FlowConfig(visitors=policy),
        menus={DAY: MENU},
        policies=(POLICY,),
        meal_history={"P-1": meals},
        balances={"P-1": Money(balance)},
        offline_usage=usage,
        request_ids=lambda: "req-1",
    )


def online(subsidised: bool = False, active: bool = True) -> VisitorStatus:
    return VisitorStatus(
        "P-1", HOME, CATS, Source.ONLINE, active=active, subsidised_in_district=subsidised
    )


ROSTER = VisitorStatus("P-1", HOME, CATS, Source.ROSTER)
EARLIER = PriorMeal("01EARLIER", NOW.replace(hour=11, minute=5), MealSlot.LUNCH, DAY, True)


def run(c: StaticContext, events: list[Event]) -> tuple[State, list[Effect]]:
    state: State = Idle()
    effects: list[Effect] = []
    for ev in events:
        state, effects = step(state, ev, NOW, c)
    return state, effects


def card_then(answer: VisitorStatus | None, *more: Event, source: PaymentSource | None = None):  # type: ignore[no-untyped-def]
    return [CardTapped("0000000999"), VisitorAnswered(1, answer, source), *more]


GRANTED = SlotClaimAnswered(1, ClaimOutcome.GRANTED, "01JREC0000000000000000000A", "CLAIM-1")
TAKEN = SlotClaimAnswered(1, ClaimOutcome.CLAIMED, "01JREC0000000000000000000A")
NO_ANSWER = SlotClaimAnswered(1, ClaimOutcome.UNAVAILABLE, "01JREC0000000000000000000A")

# name, context, events -> final state, subsidy (fen), review, claim id, refusal, source
CASES = [
    (
        "online, slot free, claim granted",
        ctx(),
        card_then(online(), GRANTED),
        Confirm,
        300,
        False,
        "CLAIM-1",
        None,
        Source.ONLINE,
    ),
    (
        "online, the claim went to another centre's meal a moment ago",
        ctx(),
        card_then(online(), TAKEN),
        Confirm,
        0,
        False,
        None,
        VisitRefusal.ALREADY_SUBSIDISED,
        Source.ONLINE,
    ),
    (
        "online answer, then no answer to the claim: decided as offline",
        ctx(),
        card_then(online(), NO_ANSWER),
        Confirm,
        300,
        True,
        None,
        None,
        Source.ROSTER,
    ),
    (
        "online, already subsidised elsewhere: no claim asked",
        ctx(),
        card_then(online(subsidised=True)),
        Confirm,
        0,
        False,
        None,
        VisitRefusal.ALREADY_SUBSIDISED,
        Source.ONLINE,
    ),
    (
        "offline roster, within the limits",
        ctx(),
        card_then(ROSTER),
        Confirm,
        300,
        True,
        None,
        None,
        Source.ROSTER,
    ),
    (
        "offline roster, slot limit spent",
        ctx(usage=OfflineUsage(visits_this_slot=2)),
        card_then(ROSTER),
        Confirm,
        0,
        True,
        None,
        VisitRefusal.OFFLINE_LIMIT,
        Source.ROSTER,
    ),
    (
        "offline roster, the day's budget cannot hold the whole subsidy",
        ctx(usage=OfflineUsage(visits_this_slot=1, subsidy_fen_today=300)),
        card_then(ROSTER),
        Confirm,
        0,
        True,
        None,
        VisitRefusal.OFFLINE_LIMIT,
        Source.ROSTER,
    ),
    (
        "home wallet is the policy but the platform is down: roster rules, cash",
        ctx(),
        card_then(ROSTER, source=PaymentSource.HOME_WALLET),
        Confirm,
        300,
        True,
        None,
        None,
        Source.ROSTER,
    ),
]


@pytest.mark.parametrize(
    ("context", "events", "final", "subsidy", "review", "claim", "refusal", "source"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_visitor_decisions(
    context: StaticContext,
    events: list[Event],
    final: type,
    subsidy: int,
    review: bool,
    claim: str | None,
    refusal: VisitRefusal | None,
    source: Source,
) -> None:
    state, _ = run(context, events)
    assert isinstance(state, final), state
    assert isinstance(state, Confirm)
    p = state.payment
    assert p.visit is not None
    assert (p.quote.subsidy.fen, p.quote.due.fen) == (subsidy, 1500 - subsidy)
    assert (p.visit.review, p.visit.claim_id, p.visit.refusal) == (review, claim, refusal)
    assert p.visit.source is source
    assert (p.visit.person_id, p.visit.home_centre_id) == ("P-1", HOME)
    assert not p.needs_second_factor and p.name_masked == "来访长者·centre-a"


# name, context, events -> state, fail reason
REFUSED = [
    (
        "no city-wide policy: a stranger's card",
        ctx(visitors=False),
        [CardTapped("9")],
        FailReason.CARD_UNKNOWN,
    ),
    ("nobody in the district", ctx(), card_then(None), FailReason.CARD_UNKNOWN),
    (
        "a senior of this very centre is not a visitor",
        ctx(),
        card_then(VisitorStatus("P-1", HERE, CATS, Source.ROSTER)),
        FailReason.CARD_UNKNOWN,
    ),
    ("an inactive senior", ctx(), card_then(online(active=False)), FailReason.RESIDENT_INACTIVE),
    (
        "a wallet at this centre without the money",
        ctx(source=PaymentSource.VISITED_WALLET, balance=100),
        card_then(ROSTER),
        FailReason.INSUFFICIENT_BALANCE,
    ),
    (
        "an unknown ID card",
        ctx(),
        [IdCardRead("110101194001011234"), VisitorAnswered(1, None)],
        FailReason.ID_CARD_UNKNOWN,
    ),
]


@pytest.mark.parametrize(
    ("context", "events", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_visitor_refusals(context: StaticContext, events: list[Event], reason: FailReason) -> None:
    state, _ = run(context, events)
    assert isinstance(state, Failed) and state.reason is reason, state


def test_card_asks_the_platform_with_the_slot_and_the_claim_before_confirm() -> None:
    c = ctx()
    state, effects = run(c, [CardTapped("0000000999")])
    assert isinstance(state, VisitorChecking)
    [ask] = [e for e in effects if isinstance(e, AskVisitor)]
    assert (ask.key_type, ask.key, ask.day, ask.slot) == (
        KeyType.CARD,
        "0000000999",
        DAY,
        MealSlot.LUNCH,
    )
    state, effects = step(state, VisitorAnswered(1, online()), NOW, c)
    assert isinstance(state, VisitorClaiming)
    assert [e for e in effects if isinstance(e, ClaimSlot)] == [
        ClaimSlot(1, "P-1", DAY, MealSlot.LUNCH)
    ]
    # an answer for another session changes nothing
    assert step(state, GRANTED.__class__(9, ClaimOutcome.GRANTED, "x", "y"), NOW, c)[0] == state
    state, _ = step(state, GRANTED, NOW, c)
    state, effects = step(state, Touch("confirm"), NOW, c)
    assert isinstance(state, Charging)
    [charge] = [e for e in effects if isinstance(e, Charge)]
    req = charge.request
    assert req.resident_id == "P-1" and req.record_id == GRANTED.record_id
    assert req.visit is not None and req.visit.to_payload() == {
        "person_id": "P-1",
        "home_centre_id": HOME,
        "source": "online",
        "claim_id": "CLAIM-1",
        "review": False,
        "payment_source": "cash",
    }
    assert req.method is VerificationMethod.CARD and req.subsidy == Money(300)


def test_staff_lookup_by_name_and_phone() -> None:
    state, effects = run(ctx(), [VisitorLookup("张 三", "1234", "S-1")])
    assert isinstance(state, VisitorChecking) and state.staff_id == "S-1"
    [ask] = [e for e in effects if isinstance(e, AskVisitor)]
    assert (ask.key_type, ask.key, ask.phone_last4) == (KeyType.LOOKUP, "张 三", "1234")
    assert "张" not in repr(ask) and "1234" not in repr(ask)
    state, _ = step(state, VisitorAnswered(1, ROSTER), NOW, ctx())
    assert isinstance(state, Confirm) and state.payment.candidate.staff_id == "S-1"
    assert state.payment.method is VerificationMethod.STAFF


def test_a_visitor_eats_once_per_slot_here_too() -> None:
    state, _ = run(ctx(meals=(EARLIER,)), card_then(online()))
    assert isinstance(state, AlreadyPaid) and state.paid_at_hhmm == "11:05"


def test_unknown_face_says_face_pay_works_at_the_home_centre() -> None:
    unknown = FaceResult("unknown", None, 0.1, 0.9)
    state, _ = run(ctx(), [unknown])
    assert isinstance(state, Failed) and state.detail == VISITOR_HINT
    state, _ = run(ctx(visitors=False), [unknown])
    assert isinstance(state, Failed) and state.detail == ""


def test_cancel_while_asking() -> None:
    state, _ = run(ctx(), [CardTapped("0000000999"), Touch("cancel")])
    assert isinstance(state, Idle)


def test_staff_approve_a_visitor_subsidy_beyond_the_offline_limits() -> None:
    c = ctx(usage=OfflineUsage(visits_this_slot=2))
    state, _ = run(c, card_then(ROSTER))
    assert isinstance(state, Confirm) and state.payment.quote.subsidy.fen == 0
    state, _ = step(state, StaffApprove(" "), NOW, c)  # no staff id: nothing
    assert isinstance(state, Confirm) and state.payment.quote.subsidy.fen == 0
    state, _ = step(state, StaffApprove("S-9"), NOW, c)
    assert isinstance(state, Confirm)
    p = state.payment
    assert p.quote.subsidy.fen == 300 and p.visit is not None
    assert (p.visit.refusal, p.visit.review) == (None, True)  # still checked by the platform
    state, effects = step(state, Touch("confirm"), NOW, c)
    [charge] = [e for e in effects if isinstance(e, Charge)]
    assert [(o.kind.value, o.staff_id) for o in charge.request.overrides] == [
        ("visit_limit", "S-9")
    ]
    # a visitor whose subsidy was refused for another reason is not staff's to grant here
    state, _ = run(c, card_then(online(subsidised=True)))
    assert step(state, StaffApprove("S-9"), NOW, c)[0] == state
