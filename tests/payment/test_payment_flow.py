"""Kiosk flow journeys through the pure state machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payment.domain import (
    MealSlot,
    Menu,
    PriorMeal,
    Resident,
    SecondFactor,
    SeniorCategory,
    VerificationMethod,
)
from payment.flow import (
    AlreadyPaid,
    AnotherPortion,
    CancelTimer,
    CardTapped,
    Challenge,
    ChallengeResult,
    Charge,
    ChargeCommitted,
    ChargeFailed,
    ChargePending,
    Charging,
    Checking,
    Confirm,
    DigitsEntered,
    Done,
    Effect,
    Event,
    FaceResult,
    FaceSeen,
    Failed,
    FailReason,
    FlowConfig,
    FlowTimeouts,
    IdCardRead,
    Idle,
    LivenessPolicy,
    NextAction,
    OverrideKind,
    Print,
    PrintResult,
    ResolveCharge,
    SecondFactorEntry,
    SelectItems,
    Speak,
    StaffApprove,
    StaffLookup,
    StaffRequired,
    StartTimer,
    State,
    StaticContext,
    Tick,
    Timeout,
    Touch,
    step,
)
from payment.limits import LimitReason
from payment.receipt import verification_code
from payment.subsidy import Outcome, parse_policy
from terminal.core.clock import CHINA_TZ
from terminal.core.money import Money

NOW = datetime(2026, 1, 5, 11, 30, 0, 250_000, tzinfo=CHINA_TZ)  # lunch
DAY = date(2026, 1, 5)

RESIDENTS = {
    r.resident_id: r
    for r in (
        Resident.create(
            "R1",
            "张三华",
            ["age_80_89", "低保"],
            consent_face_pay=True,
            phone_last4="1234",
            card_ids=["C-001"],
        ),
        Resident.create("R2", "李四", ["age_70_79"], card_ids=["C-002"]),  # no face consent
        Resident.create("R3", "王小五", ["tekun"], consent_face_pay=True),  # no 2nd factor
        Resident.create("R4", "赵六", [], consent_face_pay=True, active=False),
        Resident.create("R5", "钱七", ["age_80_89"], consent_face_pay=True, card_ids=["C-005"]),
    )
}
MENU = Menu.from_dict(
    {
        "date": "2026-01-05",
        "items": [
            {"item_id": "B1", "name": "早餐套餐", "price_fen": 500, "slots": ["breakfast"]},
            {"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]},
            {"item_id": "L9", "name": "寿宴套餐", "price_fen": 4000, "slots": ["lunch"]},
            {
                "item_id": "D1",
                "name": "豆浆",
                "price_fen": 300,
                "slots": ["lunch"],
                "kind": "item",
                "subsidisable": False,
            },
        ],
    }
)
POLICY = parse_policy(
    {
        "policy_id": "district-2026",
        "version": 1,
        "effective_from": "2026-01-01",
        "rules": [
            {
                "category": "dibao",
                "slot": "*",
                "type": "percent",
                "basis_points": 5000,
                "cap_fen": 800,
            },
            {
                "category": "age_80_89",
                "slot": "lunch",
                "type": "fixed",
                "amount_fen": 300,
                "floor_fen": 100,
            },
            {"category": "tekun", "slot": "*", "type": "percent", "basis_points": 8000},
        ],
    }
)
CTX = StaticContext(
    config=FlowConfig(centre_name="阳光照料中心"),
    residents=RESIDENTS,
    balances={
        "R1": Money(5000),
        "R2": Money(5000),
        "R3": Money(5000),
        "R4": Money(5000),
        "R5": Money(100),
    },
    menus={DAY: MENU},
    policies=(POLICY,),
    id_cards={"11010519450101123X": "R1"},
)

GOOD_FACE = FaceResult("identified", "R1", 0.82, 0.97)
SOFT_FACE = FaceResult("identified", "R1", 0.82, 0.70)  # a lower passive score
# the face that identified answered the head-turn challenge (face/challenge.py)
LIVE = ChallengeResult("turn", True, {"turn": 1.0})
UNCERTAIN = FaceResult("uncertain", "R1", 0.45, 0.97)

Step = tuple[State, list[Effect]]


def run(
    events: Sequence[Event | tuple[float, Event]],
    ctx: StaticContext = CTX,
    state: State | None = None,
    now: datetime = NOW,
) -> list[Step]:
    """Feed events (optionally with seconds since start); return every (state, effects)."""
    st_: State = state or Idle()
    out: list[Step] = []
    for item in events:
        offset, ev = item if isinstance(item, tuple) else (0.0, item)
        st_, eff = step(st_, ev, now + timedelta(seconds=offset), ctx)
        out.append((st_, eff))
    return out


def last(events: Sequence[Event | tuple[float, Event]], **kw: object) -> Step:
    return run(events, **kw)[-1]  # type: ignore[arg-type]


def speaks(effects: Sequence[Effect]) -> list[str]:
    return [e.key for e in effects if isinstance(e, Speak)]


def charges(effects: Sequence[Effect]) -> list[Charge]:
    return [e for e in effects if isinstance(e, Charge)]


def kind_at(now: datetime, policy: LivenessPolicy = LivenessPolicy()) -> str:
    return policy.challenges[0]


# --------------------------------------------------------------------------- happy path


def test_face_identified_confirm_charge_commit_ack_idle() -> None:
    steps = run([FaceSeen(), GOOD_FACE, LIVE, Touch("confirm")])
    (s1, e1), (sc, _), (s2, e2), (s3, e3) = steps
    assert isinstance(sc, Challenge)  # however good the face, it must turn
    assert isinstance(s1, Checking) and s1.session == 1
    assert e1 == [StartTimer("checking", 15.0), Speak("pay.look_at_camera")]
    assert isinstance(s2, Confirm)
    p = s2.payment
    assert (p.name_masked, p.category, p.slot, p.method) == (
        "张*华",
        SeniorCategory.DIBAO,
        MealSlot.LUNCH,
        VerificationMethod.FACE,
    )
    assert [ln.item_id for ln in p.lines] == ["L1"]
    assert (p.quote.list_total.fen, p.quote.subsidy.fen, p.quote.due.fen) == (1500, 750, 750)
    assert (p.quote.balance_before.fen, p.quote.balance_after.fen) == (5000, 4250)
    assert not p.needs_second_factor
    assert e2[:2] == [CancelTimer("challenge"), StartTimer("confirm", 30.0)]
    assert speaks(e2) == ["pay.confirm"]
    assert isinstance(s3, Charging)
    [c] = charges(e3)
    req = c.request
    assert (req.resident_id, req.method, req.slot, req.day, req.session) == (
        "R1",
        VerificationMethod.FACE,
        MealSlot.LUNCH,
        DAY,
        1,
    )
    assert req.liveness is not None and req.liveness.method == "passive+turn"
    assert req.liveness.signals["passive"] == pytest.approx(0.97)
    assert req.verification == "face:passive+turn" and req.second_factor is None
    assert (req.list_amount.fen, req.subsidy.fen, req.due.fen) == (1500, 750, 750)
    # nothing is acknowledged before the commit
    for _, eff in steps:
        assert "pay.success" not in speaks(eff)
        assert not any(isinstance(e, Print) for e in eff)

    s4, e4 = step(
        s3,
        ChargeCommitted(1, "01JREC0000000000000000000A", Money(4250), "h1"),
        NOW + timedelta(seconds=3),
        CTX,
    )
    assert isinstance(s4, Done) and s4.record_id.endswith("A")
    assert speaks(e4) == ["pay.success"]
    [pr] = [e for e in e4 if isinstance(e, Print)]
    assert pr.receipt.paid == Money(750) and pr.receipt.balance_after == Money(4250)
    assert pr.receipt.resident_masked == "张*华" and pr.receipt.centre_name == "阳光照料中心"
    assert pr.receipt.verification_code == verification_code(s4.record_id, "h1")
    assert Speak("pay.success", (("paid", "7.50"), ("balance", "42.50"))) in e4
    s5, _ = step(s4, PrintResult(True), NOW, CTX)
    assert isinstance(s5, Done) and s5.print_ok is True
    s6, e6 = step(s5, Timeout("done"), NOW + timedelta(seconds=10), CTX)
    assert s6 == Idle(1) and e6 == [CancelTimer("done")]


def test_face_result_directly_from_idle_and_session_counter() -> None:
    s, _ = last([GOOD_FACE, LIVE])
    assert isinstance(s, Confirm) and s.session == 1
    s2, _ = last([Touch("cancel"), CardTapped("C-001")], state=s)
    assert isinstance(s2, Confirm) and s2.session == 2
    assert s2.payment.method is VerificationMethod.CARD


# --------------------------------------------------------------------------- liveness


def test_soft_passive_score_requires_challenge_then_pays() -> None:
    ((s1, e1),) = run([SOFT_FACE])
    assert isinstance(s1, Challenge) and s1.attempt == 1
    kind = kind_at(NOW)
    assert s1.kind == kind and speaks(e1) == [f"pay.challenge.{kind}"]
    # a result for another challenge is ignored
    assert step(s1, ChallengeResult("nod", True), NOW, CTX) == (s1, [])
    s2, _ = step(s1, ChallengeResult(kind, True, {"frames": 4.0}), NOW, CTX)
    assert isinstance(s2, Confirm)
    lv = s2.payment.candidate.liveness
    assert lv is not None and lv.live and lv.method == f"passive+{kind}"
    assert lv.signals == {"passive": 0.70, "match": 0.82, "frames": 4.0}


@pytest.mark.parametrize(
    "face",
    [
        GOOD_FACE,
        SOFT_FACE,
        FaceResult("identified", "R1", 0.99, 1.0),  # a perfect match and passive score
        FaceResult("identified", "R1", 0.55, 0.99),  # weak match
        UNCERTAIN,
    ],
)
def test_every_face_payment_needs_the_challenge(face: FaceResult) -> None:
    """No score, however high, stands in for the active challenge: the passive
    model scores photos of faces as live."""
    s, e = last([face])
    assert isinstance(s, Challenge) and s.kind == "turn"
    assert speaks(e) == ["pay.challenge.turn"]


def test_challenge_failing_twice_fails_with_card_alternative() -> None:
    s1, _ = last([SOFT_FACE])
    assert isinstance(s1, Challenge)
    s2, e2 = step(s1, ChallengeResult(s1.kind, False), NOW + timedelta(seconds=5), CTX)
    assert isinstance(s2, Challenge) and s2.attempt == 2 and s2.kind == "turn"
    assert speaks(e2) == [f"pay.challenge.{s2.kind}"]
    assert CancelTimer("challenge") in e2 and StartTimer("challenge", 12.0) in e2
    s3, e3 = step(s2, ChallengeResult(s2.kind, False), NOW + timedelta(seconds=9), CTX)
    assert isinstance(s3, Failed) and s3.reason is FailReason.LIVENESS_FAILED
    assert s3.action is NextAction.USE_CARD
    assert VerificationMethod.CARD in s3.alternatives
    assert speaks(e3) == ["pay.failed.liveness_failed"] and not charges(e3)
    # the card alternative works straight from the failure screen
    s4, _ = step(s3, CardTapped("C-001"), NOW, CTX)
    assert isinstance(s4, Confirm) and s4.payment.method is VerificationMethod.CARD


def test_passive_score_far_too_low_fails_outright() -> None:
    s, e = last([FaceResult("identified", "R1", 0.9, 0.05)])
    assert isinstance(s, Failed) and s.reason is FailReason.LIVENESS_FAILED
    assert speaks(e) == ["pay.failed.liveness_failed"]


def test_quality_retries_then_fail() -> None:
    bad = FaceResult("unknown", None, 0.0, 0.0, quality_reason="too_dark")
    steps = run([FaceSeen(), bad, bad])
    s2, e2 = steps[1]
    assert isinstance(s2, Checking) and s2.retries == 1 and s2.quality_reason == "too_dark"
    assert e2 == [Speak("pay.quality.too_dark")]  # same deadline: no timer churn
    s, _ = steps[-1]
    for _ in range(4):
        s, _ = step(s, bad, NOW, CTX)
    assert isinstance(s, Failed) and s.reason is FailReason.QUALITY
    assert s.detail == "too_dark"


# --------------------------------------------------------------------------- second factor


def test_uncertain_match_needs_phone_last4() -> None:
    s1, _ = last([UNCERTAIN])
    assert isinstance(s1, Challenge)
    s2, _ = step(s1, ChallengeResult(s1.kind, True), NOW, CTX)
    assert isinstance(s2, Confirm) and s2.payment.needs_second_factor
    assert s2.payment.second_factor_options == (SecondFactor.PHONE_LAST4, SecondFactor.CARD)
    s3, e3 = step(s2, Touch("confirm"), NOW, CTX)
    assert isinstance(s3, SecondFactorEntry) and speaks(e3) == ["pay.second_factor"]
    assert not charges(e3)
    s4, e4 = step(s3, DigitsEntered("4321"), NOW, CTX)
    assert isinstance(s4, SecondFactorEntry) and s4.attempts == 1
    assert speaks(e4) == ["pay.second_factor.wrong"]
    assert "1234" not in repr(s4) and "4321" not in repr(DigitsEntered("4321"))
    s5, e5 = step(s4, DigitsEntered("1234"), NOW, CTX)
    assert isinstance(s5, Charging)
    [c] = charges(e5)
    assert c.request.second_factor is SecondFactor.PHONE_LAST4
    assert c.request.match_decision == "uncertain"
    assert c.request.verification == f"face:passive+{s1.kind}+phone_last4"


def test_second_factor_by_card_tap_and_lockout() -> None:
    s1, _ = last([UNCERTAIN])
    assert isinstance(s1, Challenge)
    s2, _ = last([ChallengeResult(s1.kind, True), Touch("confirm")], state=s1)
    assert isinstance(s2, SecondFactorEntry)
    s3, e3 = step(s2, CardTapped("C-001"), NOW, CTX)
    assert isinstance(s3, Charging) and charges(e3)[0].request.second_factor is SecondFactor.CARD
    # another resident's card does not count; three misses end the attempt
    s4, _ = last([CardTapped("C-002"), DigitsEntered("0000"), DigitsEntered("9999")], state=s2)
    assert isinstance(s4, Failed) and s4.reason is FailReason.SECOND_FACTOR_FAILED
    assert s4.action is NextAction.ASK_STAFF


def test_large_amount_needs_second_factor_even_when_identified() -> None:
    s1, _ = last([GOOD_FACE, LIVE])
    assert isinstance(s1, Confirm) and not s1.payment.needs_second_factor
    s2, _ = step(s1, SelectItems((("L9", 1),)), NOW, CTX)
    assert isinstance(s2, Confirm)
    assert s2.payment.quote.due.fen == 3200  # 4000 - 800 (capped 50 %)
    assert s2.payment.needs_second_factor
    s3, _ = step(s2, Touch("confirm"), NOW, CTX)
    assert isinstance(s3, SecondFactorEntry)


def test_card_payment_needs_touch_but_no_second_factor() -> None:
    s1, _ = last([CardTapped("C-001"), SelectItems((("L9", 1),))])
    assert isinstance(s1, Confirm) and not s1.payment.needs_second_factor
    s2, e2 = step(s1, Touch("confirm"), NOW, CTX)
    assert isinstance(s2, Charging)
    req = charges(e2)[0].request
    assert req.method is VerificationMethod.CARD and req.liveness is None
    assert req.verification == "card"


def test_no_second_factor_available_goes_to_staff() -> None:
    face = FaceResult("uncertain", "R3", 0.45, 0.97)
    s1, _ = last([face])
    assert isinstance(s1, Challenge)
    s2, e2 = step(s1, ChallengeResult(s1.kind, True), NOW, CTX)
    assert isinstance(s2, StaffRequired) and s2.reason == "second_factor_unavailable"
    assert s2.override is OverrideKind.SECOND_FACTOR and speaks(e2) == ["pay.staff_required"]
    s3, _ = step(s2, StaffApprove("S9"), NOW, CTX)
    assert isinstance(s3, Confirm) and not s3.payment.needs_second_factor
    _s4, e4 = step(s3, Touch("confirm"), NOW, CTX)
    req = charges(e4)[0].request
    assert req.second_factor is SecondFactor.STAFF
    assert [(o.kind, o.staff_id) for o in req.overrides] == [(OverrideKind.SECOND_FACTOR, "S9")]


# --------------------------------------------------------------------------- fallbacks


def test_unknown_face_fails_with_card_alternative() -> None:
    s, e = last([FaceSeen(), FaceResult("unknown", None, 0.2, 0.95)])
    assert isinstance(s, Failed) and s.reason is FailReason.FACE_UNKNOWN
    assert s.action is NextAction.USE_CARD
    assert s.alternatives == (
        VerificationMethod.CARD,
        VerificationMethod.ID_CARD,
        VerificationMethod.STAFF,
    )
    assert speaks(e) == ["pay.failed.face_unknown"]
    # a face appearing again does not restart while the failure is shown
    assert step(s, FaceSeen(), NOW, CTX) == (s, [])


@pytest.mark.parametrize(
    ("event", "method", "staff"),
    [
        (CardTapped("C-001"), VerificationMethod.CARD, None),
        (IdCardRead("11010519450101123x"), VerificationMethod.ID_CARD, None),
        (StaffLookup("R1", "S3"), VerificationMethod.STAFF, "S3"),
    ],
)
def test_non_face_paths(event: Event, method: VerificationMethod, staff: str | None) -> None:
    s1, _ = last([event])
    assert isinstance(s1, Confirm) and s1.payment.method is method
    _s2, e2 = step(s1, Touch("confirm"), NOW, CTX)
    req = charges(e2)[0].request
    assert (req.method, req.staff_id, req.liveness) == (method, staff, None)
    assert "11010519450101123" not in repr(event)


@pytest.mark.parametrize(
    ("event", "reason", "action"),
    [
        (CardTapped("C-999"), FailReason.CARD_UNKNOWN, NextAction.ASK_STAFF),
        (IdCardRead("110105194501011230"), FailReason.ID_CARD_UNKNOWN, NextAction.ASK_STAFF),
        (StaffLookup("R404", "S3"), FailReason.RESIDENT_NOT_FOUND, NextAction.ASK_STAFF),
        (
            FaceResult("identified", "R2", 0.9, 0.99),
            FailReason.NO_FACE_CONSENT,
            NextAction.USE_CARD,
        ),
        (
            FaceResult("identified", "R4", 0.9, 0.99),
            FailReason.RESIDENT_INACTIVE,
            NextAction.ASK_STAFF,
        ),
        (CardTapped("C-005"), FailReason.INSUFFICIENT_BALANCE, NextAction.TOP_UP),
    ],
)
def test_failures(event: Event, reason: FailReason, action: NextAction) -> None:
    # a face is refused after its challenge (the resident is looked up then)
    s, e = last([event, LIVE] if isinstance(event, FaceResult) else [event])
    assert isinstance(s, Failed) and (s.reason, s.action) == (reason, action)
    assert speaks(e) == [f"pay.failed.{reason.value}"] and not charges(e)


def test_insufficient_balance_shows_shortfall() -> None:
    s, _ = last([CardTapped("C-005")])  # R5: 100 fen, lunch 1500 - 300 = 1200 due
    assert isinstance(s, Failed) and s.amount == Money(1100)


def test_outside_service_and_missing_menu() -> None:
    s, _ = last([CardTapped("C-001")], now=NOW.replace(hour=15))
    assert isinstance(s, Failed) and s.reason is FailReason.NO_MEAL_SERVICE
    assert s.action is NextAction.COME_BACK
    # staff may sell a meal for an explicit slot outside the window
    s2, _ = last([StaffLookup("R1", "S1", MealSlot.LUNCH)], now=NOW.replace(hour=15))
    assert isinstance(s2, Confirm) and s2.payment.slot is MealSlot.LUNCH
    s3, _ = last([CardTapped("C-001")], ctx=replace(CTX, menus={}))
    assert isinstance(s3, Failed) and s3.reason is FailReason.NO_MENU
    s4, _ = last([CardTapped("C-001")], now=NOW.replace(hour=17))  # dinner: nothing on menu
    assert isinstance(s4, Failed) and s4.reason is FailReason.NO_MENU


def test_select_items_requotes_and_rejects_unknown() -> None:
    s1, _ = last([CardTapped("C-001")])
    assert isinstance(s1, Confirm)
    s2, _ = step(s1, SelectItems((("L1", 1), ("D1", 2))), NOW, CTX)
    assert isinstance(s2, Confirm)
    assert (s2.payment.quote.list_total.fen, s2.payment.quote.due.fen) == (2100, 1350)
    for bad in ((("X", 1),), (("B1", 1),), ()):
        s3, e3 = step(s2, SelectItems(bad), NOW, CTX)
        assert s3 == s2 and speaks(e3) == ["pay.item_unavailable"]


# --------------------------------------------------------------------------- duplicates, limits

PAID = PriorMeal("01JPAID", datetime(2026, 1, 5, 11, 5, tzinfo=CHINA_TZ), MealSlot.LUNCH, DAY, True)


def test_already_paid_then_staff_override_without_second_subsidy() -> None:
    ctx = replace(CTX, meal_history={"R1": [PAID]})
    s1, e1 = last([GOOD_FACE, LIVE], ctx=ctx)
    assert isinstance(s1, AlreadyPaid)
    assert (s1.paid_at_hhmm, s1.record_id, s1.name_masked) == ("11:05", "01JPAID", "张*华")
    assert e1[-1] == Speak("pay.already_paid", (("time", "11:05"),))
    # the senior cannot push through; only staff can
    assert step(s1, Touch("confirm"), NOW, ctx)[0] == Idle(1)
    assert step(s1, DigitsEntered("1234"), NOW, ctx) == (s1, [])
    s2, _ = step(s1, StaffApprove("S2"), NOW, ctx)
    assert isinstance(s2, Confirm)
    assert s2.payment.quote.subsidy == Money(0)
    assert s2.payment.quote.outcome is Outcome.LIMIT_REACHED
    _s3, e3 = step(s2, Touch("confirm"), NOW, ctx)
    req = charges(e3)[0].request
    assert req.due == Money(1500)
    assert [(o.kind, o.staff_id) for o in req.overrides] == [(OverrideKind.DUPLICATE, "S2")]
    # a voided earlier meal does not block
    ctx2 = replace(CTX, meal_history={"R1": [replace(PAID, voided=True)]})
    assert isinstance(last([GOOD_FACE, LIVE], ctx=ctx2)[0], Confirm)


def test_already_paid_applies_to_card_and_staff_paths_too() -> None:
    ctx = replace(CTX, meal_history={"R1": [PAID]})
    for ev in (CardTapped("C-001"), StaffLookup("R1", "S1"), IdCardRead("11010519450101123X")):
        assert isinstance(last([ev], ctx=ctx)[0], AlreadyPaid)


UNSUBSIDISED = replace(PAID, record_id="01JDINNER", subsidised=False)


@pytest.mark.parametrize(
    "events",
    [
        [GOOD_FACE, LIVE],
        [CardTapped("C-001")],
        [StaffLookup("R1", "S1")],
        [IdCardRead("11010519450101123X")],
    ],
)
@pytest.mark.parametrize("prior", [PAID, UNSUBSIDISED], ids=["subsidised", "unsubsidised"])
def test_any_earlier_meal_in_the_slot_blocks_by_default(
    events: list[Event], prior: PriorMeal
) -> None:
    ctx = replace(CTX, meal_history={"R1": [prior]})
    s, e = last(events, ctx=ctx)
    assert isinstance(s, AlreadyPaid) and s.record_id == prior.record_id
    assert not charges(e)


def test_a_senior_who_taps_whenever_asked_is_charged_once() -> None:
    """Done -> Idle -> the same senior again: every tap the screens ask for is
    given, yet only the first meal is charged."""
    history: list[PriorMeal] = []
    ctx = replace(CTX, meal_history={"R1": history})
    s: State = Idle()
    charged = []
    for attempt in range(3):
        s, _ = step(s, GOOD_FACE, NOW + timedelta(seconds=10 * attempt), ctx)
        s, _ = step(s, LIVE, NOW + timedelta(seconds=10 * attempt), ctx)
        for _tap in range(3):  # "taps whenever asked"
            s, eff = step(s, Touch("confirm"), NOW, ctx)
            for c in charges(eff):
                charged.append(c.request)
                history.append(replace(PAID, record_id=f"REC{len(charged)}"))
                s, _ = step(s, ChargeCommitted(c.request.session, "REC", Money(1)), NOW, ctx)
    assert len(charged) == 1


def test_another_portion_is_an_explicit_choice_priced_without_subsidy() -> None:
    ctx = replace(CTX, meal_history={"R1": [PAID]})
    s1, _ = last([CardTapped("C-001")], ctx=ctx)
    assert isinstance(s1, AlreadyPaid)
    normal, _ = last([CardTapped("C-001")])
    assert isinstance(normal, Confirm) and normal.payment.quote.subsidy.fen > 0
    s2, e2 = step(s1, AnotherPortion(), NOW, ctx)
    assert isinstance(s2, Confirm)
    p = s2.payment
    assert p.another_portion and p.paid_before_hhmm == "11:05" and p.meals_before == 1
    assert p.quote.subsidy == Money(0) and p.quote.due == p.quote.list_total == Money(1500)
    assert p.quote.balance_after == Money(5000 - 1500)
    assert e2[-1] == Speak("pay.confirm", (("due", "15.00"),))
    assert not charges(e2)  # choosing it is not paying for it: Confirm needs its own touch
    # the order can still change; it stays a second portion
    s3, _ = step(s2, SelectItems((("L1", 1), ("D1", 1))), NOW, ctx)
    assert isinstance(s3, Confirm) and s3.payment.another_portion
    assert s3.payment.quote.due == Money(1800)
    _s4, e4 = step(s3, Touch("confirm"), NOW, ctx)
    [c] = charges(e4)
    assert c.request.another_portion and c.request.meals_before == 1
    assert c.request.subsidy == Money(0) and not c.request.overrides
    # without an earlier meal the choice changes nothing (and the subsidy stays)
    s5, _ = step(Idle(), CardTapped("C-001"), NOW, CTX)
    assert isinstance(s5, Confirm) and not s5.payment.another_portion


def test_guard_can_be_narrowed_to_subsidised_meals_by_configuration() -> None:
    cfg = replace(CTX.config, duplicate_guard_any_meal=False)
    ctx = replace(CTX, config=cfg, meal_history={"R1": [UNSUBSIDISED]})
    assert isinstance(last([CardTapped("C-001")], ctx=ctx)[0], Confirm)
    assert FlowConfig().duplicate_guard_any_meal  # the default covers every meal


def test_every_charge_request_gets_a_fresh_random_id() -> None:
    ids = iter(["id-a", "id-b"])
    ctx = replace(CTX, request_ids=lambda: next(ids))
    a = charges(last([CardTapped("C-001"), Touch("confirm")], ctx=ctx)[1])[0].request
    b = charges(last([CardTapped("C-001"), Touch("confirm")], ctx=ctx)[1])[0].request
    # same session counter, same clock reading (a Pi after a reboot): different ids
    assert (a.session, a.requested_at) == (b.session, b.requested_at)
    assert (a.request_id, b.request_id) == ("id-a", "id-b")
    r1 = charges(last([CardTapped("C-001"), Touch("confirm")])[1])[0].request
    r2 = charges(last([CardTapped("C-001"), Touch("confirm")])[1])[0].request
    assert r1.request_id != r2.request_id and len(r1.request_id) == 32


@pytest.mark.parametrize(
    ("unsynced", "terminal", "reason"),
    [
        (19_500, 0, LimitReason.OVER_RESIDENT_UNSYNCED),
        (0, 499_500, LimitReason.OVER_TERMINAL_UNSYNCED),
    ],
)
def test_exposure_limits_need_staff(unsynced: int, terminal: int, reason: LimitReason) -> None:
    ctx = replace(CTX, unsynced={"R1": Money(unsynced)}, terminal_unsynced=Money(terminal))
    s1, e1 = last([GOOD_FACE, LIVE], ctx=ctx)
    assert isinstance(s1, StaffRequired) and s1.reason == reason.value
    assert speaks(e1) == ["pay.staff_required"]
    assert step(s1, Touch("confirm"), NOW, ctx) == (s1, [])
    assert step(s1, StaffApprove(" "), NOW, ctx) == (s1, [])
    s2, _ = step(s1, StaffApprove("S5"), NOW, ctx)
    assert isinstance(s2, Confirm)
    _s3, e3 = step(s2, Touch("confirm"), NOW, ctx)
    assert charges(e3)[0].request.overrides[0].kind is OverrideKind.LIMITS


def test_transaction_limit() -> None:
    cfg = replace(CTX.config, limits=replace(CTX.config.limits, max_per_transaction=Money(500)))
    s, _ = last([CardTapped("C-001")], ctx=replace(CTX, config=cfg))
    assert isinstance(s, StaffRequired)
    assert s.reason == LimitReason.OVER_TRANSACTION.value and s.limit == Money(500)


# --------------------------------------------------------------------------- charging outcomes


def charging_state() -> Charging:
    s, _ = last([CardTapped("C-001"), Touch("confirm")])
    assert isinstance(s, Charging)
    return s


@pytest.mark.parametrize(
    ("reason", "expect", "action"),
    [
        ("disk_full", FailReason.CHARGE_FAILED, NextAction.ASK_STAFF),
        ("insufficient_balance", FailReason.INSUFFICIENT_BALANCE, NextAction.TOP_UP),
    ],
)
def test_charge_failed(reason: str, expect: FailReason, action: NextAction) -> None:
    s, e = step(charging_state(), ChargeFailed(1, reason), NOW, CTX)
    assert isinstance(s, Failed) and (s.reason, s.action, s.detail) == (expect, action, reason)
    assert "pay.success" not in speaks(e) and not any(isinstance(x, Print) for x in e)


def test_stale_results_are_ignored() -> None:
    s = charging_state()
    assert step(s, ChargeCommitted(7, "X", Money(1)), NOW, CTX) == (s, [])
    assert step(s, ChargeFailed(7, "x"), NOW, CTX) == (s, [])
    assert step(Idle(3), ChargeCommitted(3, "X", Money(1)), NOW, CTX) == (Idle(3), [])
    # a charge in flight is not cancelled and other inputs wait
    for ev in (Touch("cancel"), CardTapped("C-001"), GOOD_FACE, StaffLookup("R1", "S1")):
        assert step(s, ev, NOW, CTX) == (s, [])


def pending_state() -> ChargePending:
    s, _ = step(charging_state(), Timeout("charging"), NOW + timedelta(seconds=15), CTX)
    assert isinstance(s, ChargePending)
    return s


def test_charge_timeout_shows_still_checking_never_failed() -> None:
    """A charge slower than the timeout may still land: the flow asks the runner
    to resolve it by request id and keeps checking; it never says "failed"."""
    c = charging_state()
    s, e = step(c, Timeout("charging"), NOW + timedelta(seconds=15), CTX)
    assert isinstance(s, ChargePending) and s.request == c.request and s.checks == 1
    assert e == [
        CancelTimer("charging"),
        StartTimer("charge_check", 5.0),
        ResolveCharge(c.request),
    ]
    assert "pay.success" not in speaks(e) and not any(isinstance(x, Print) for x in e)
    # no answer yet (the store cannot tell): check again, still no "failed"
    s2, e2 = step(s, Timeout("charge_check"), NOW + timedelta(seconds=20), CTX)
    assert isinstance(s2, ChargePending) and s2.checks == 2
    assert ResolveCharge(c.request) in e2
    # nothing the senior does starts another charge meanwhile
    for ev in (Touch("confirm"), Touch("cancel"), CardTapped("C-001"), GOOD_FACE, AnotherPortion()):
        assert step(s2, ev, NOW, CTX) == (s2, [])
    assert step(s2, ChargeCommitted(9, "X", Money(1)), NOW, CTX) == (s2, [])


@pytest.mark.parametrize(
    ("outcome", "want", "spoken"),
    [
        (ChargeCommitted(1, "01JLATE", Money(4250)), Done, "pay.success"),
        (ChargeFailed(1, "charge_failed"), Failed, "pay.failed.charge_failed"),
        (ChargeFailed(1, "insufficient_balance"), Failed, "pay.failed.insufficient_balance"),
    ],
)
def test_a_resolved_pending_charge_shows_its_real_outcome(
    outcome: Event, want: type, spoken: str
) -> None:
    s, e = step(pending_state(), outcome, NOW + timedelta(seconds=16), CTX)
    assert isinstance(s, want) and spoken in speaks(e)
    if isinstance(s, Done):
        assert s.record_id == "01JLATE" and any(isinstance(x, Print) for x in e)
    else:
        assert isinstance(s, Failed) and s.reason is not FailReason.CHARGE_TIMEOUT


def test_print_failure_is_recorded_not_fatal() -> None:
    s, _ = step(charging_state(), ChargeCommitted(1, "01JREC", Money(4250)), NOW, CTX)
    s2, e2 = step(s, PrintResult(False, "paper_out"), NOW, CTX)
    assert isinstance(s2, Done) and (s2.print_ok, s2.print_problem) == (False, "paper_out")
    assert e2 == []


# --------------------------------------------------------------------------- timeouts / cancel

Builder = Callable[[], State]


def _build(events: Sequence[Event], ctx: StaticContext = CTX) -> Builder:
    def make() -> State:
        return last(events, ctx=ctx)[0]

    return make


DUP_CTX = replace(CTX, meal_history={"R1": [PAID]})
LIMIT_CTX = replace(CTX, unsynced={"R1": Money(19_999)})
STATES: dict[str, tuple[Builder, StaticContext]] = {
    "checking": (_build([FaceSeen()]), CTX),
    "challenge": (_build([SOFT_FACE]), CTX),
    "confirm": (_build([GOOD_FACE, LIVE]), CTX),
    "second_factor": (_build([CardTapped("C-001"), SelectItems((("L9", 1),))]), CTX),
    "charging": (charging_state, CTX),
    "charge_check": (pending_state, CTX),
    "done": (
        _build([CardTapped("C-001"), Touch("confirm"), ChargeCommitted(1, "01JREC", Money(4250))]),
        CTX,
    ),
    "failed": (_build([CardTapped("C-999")]), CTX),
    "already_paid": (_build([GOOD_FACE, LIVE], DUP_CTX), DUP_CTX),
    "staff_required": (_build([GOOD_FACE, LIVE], LIMIT_CTX), LIMIT_CTX),
}


def _state(name: str) -> tuple[State, StaticContext]:
    make, ctx = STATES[name]
    s = make()
    if name == "second_factor":  # reach it through the face path
        s, _ = last([FaceResult("uncertain", "R1", 0.5, 0.99)], ctx=ctx)
        assert isinstance(s, Challenge)
        s, _ = last([ChallengeResult(s.kind, True), Touch("confirm")], state=s, ctx=ctx)
    assert name == type(s).TIMER, (name, s)
    return s, ctx


@pytest.mark.parametrize("name", list(STATES))
def test_timeout_from_every_state(name: str) -> None:
    s, ctx = _state(name)
    assert s.session >= 1
    deadline = s.deadline  # type: ignore[union-attr]
    # a stale timer name and an early tick change nothing
    assert step(s, Timeout("nope"), deadline, ctx) == (s, [])
    assert step(s, Tick(), deadline - timedelta(seconds=1), ctx) == (s, [])
    for ev, at in ((Timeout(name), deadline), (Tick(), deadline)):
        new, eff = step(s, ev, at, ctx)
        if name in ("charging", "charge_check"):
            assert isinstance(new, ChargePending) and ResolveCharge(s.request) in eff  # type: ignore[union-attr]
        else:
            assert new == Idle(s.session)
            assert eff == [CancelTimer(name)]


@pytest.mark.parametrize("name", list(STATES))
def test_cancel_from_every_state(name: str) -> None:
    s, ctx = _state(name)
    new, eff = step(s, Touch("cancel"), NOW, ctx)
    if name in ("charging", "charge_check"):
        assert (new, eff) == (s, [])
    else:
        assert new == Idle(s.session)
        assert CancelTimer(name) in eff
        assert not charges(eff)


# --------------------------------------------------------------------------- properties


def test_step_is_deterministic_and_needs_aware_time() -> None:
    a = run([SOFT_FACE, Touch("cancel"), UNCERTAIN])
    b = run([SOFT_FACE, Touch("cancel"), UNCERTAIN])
    assert a == b
    from payment.errors import DomainError

    with pytest.raises(DomainError):
        step(Idle(), FaceSeen(), datetime(2026, 1, 5, 11, 0), CTX)


EVENTS = st.sampled_from(
    [
        FaceSeen(),
        GOOD_FACE,
        SOFT_FACE,
        UNCERTAIN,
        FaceResult("unknown", None, 0.1, 0.9),
        FaceResult("identified", "R1", 0.9, 0.9, "blurry"),
        FaceResult("identified", "R3", 0.5, 0.95),
        ChallengeResult("blink", True),
        ChallengeResult("turn", False),
        ChallengeResult("turn", True),
        CardTapped("C-001"),
        CardTapped("C-999"),
        CardTapped("C-005"),
        IdCardRead("11010519450101123X"),
        StaffLookup("R1", "S1"),
        StaffApprove("S1"),
        Touch("confirm"),
        Touch("cancel"),
        DigitsEntered("1234"),
        DigitsEntered("0000"),
        SelectItems((("L9", 1),)),
        SelectItems((("L1", 1), ("D1", 1))),
        ChargeCommitted(1, "REC1", Money(100)),
        ChargeCommitted(2, "REC2", Money(100)),
        ChargeFailed(1, "disk"),
        PrintResult(False, "paper_out"),
        Tick(),
        Timeout("confirm"),
        Timeout("charging"),
        Timeout("charge_check"),
        AnotherPortion(),
        Timeout("done"),
        Timeout("failed"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 40), EVENTS), max_size=30), dup=st.booleans())
def test_random_event_sequences_keep_the_rules(events: list[tuple[int, Event]], dup: bool) -> None:
    ctx = replace(CTX, meal_history={"R1": [PAID]}) if dup else CTX
    s: State = Idle()
    now = NOW
    for secs, ev in events:
        now += timedelta(seconds=secs)
        before = s
        s, eff = step(s, ev, now, ctx)
        ack = "pay.success" in speaks(eff) or any(isinstance(e, Print) for e in eff)
        # acknowledgement only right after a matching commit
        if ack:
            assert isinstance(before, Charging | ChargePending)
            assert isinstance(ev, ChargeCommitted)
            assert ev.session == before.session and isinstance(s, Done)
        for c in charges(eff):
            req = c.request
            assert isinstance(s, Charging) and req.session == s.session
            assert req.method in VerificationMethod
            if req.method is VerificationMethod.FACE:
                assert req.liveness is not None and req.liveness.live
                assert isinstance(before, Confirm | SecondFactorEntry)
                if req.match_decision != "identified" or req.due >= ctx.config.large_amount:
                    assert req.second_factor is not None
            assert req.quote.funds_ok
            if dup and req.resident_id == "R1" and req.slot is MealSlot.LUNCH:
                staff = any(o.kind is OverrideKind.DUPLICATE for o in req.overrides)
                assert staff or req.another_portion  # never a second meal by default
                assert req.subsidy == Money(0) and req.meals_before == 1
            assert len(req.request_id) == 32
        # at most one start and one cancel per step; they name the current timer
        starts = [e for e in eff if isinstance(e, StartTimer)]
        assert len(starts) <= 1
        if starts:
            assert starts[0].name == type(s).TIMER
        assert s.session >= before.session


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LivenessPolicy(reject_below=1.5), "within 0..1"),
        (lambda: LivenessPolicy(challenges=()), "at least one challenge"),
        (lambda: LivenessPolicy(max_challenge_attempts=0), ">= 1"),
        (lambda: FlowTimeouts(confirm=0), "timeout confirm must be positive"),
    ],
)
def test_config_validation(make: Callable[[], object], message: str) -> None:
    from payment.errors import DomainError

    with pytest.raises(DomainError, match=message):
        make()


def test_configured_timeouts_drive_timers() -> None:
    cfg = replace(CTX.config, timeouts=FlowTimeouts(confirm=45.0))
    _, eff = last([CardTapped("C-001")], ctx=replace(CTX, config=cfg))
    assert StartTimer("confirm", 45.0) in eff
