"""Visiting seniors' meals in the payment store, on a real SQLite file and
through the real flow: the record carries ``visit``, cash is not a wallet,
nothing is charged twice, the day's visitors and the offline budget add up."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from payment.domain import MealSlot, Menu, SeniorCategory
from payment.flow import (
    CardTapped,
    Charge,
    Confirm,
    Done,
    FlowConfig,
    SlotClaimAnswered,
    Touch,
    VisitorAnswered,
    VisitorClaiming,
)
from payment.headless import drive
from payment.store import PaymentStore
from payment.visiting import (
    ClaimOutcome,
    OfflineUsage,
    OwedLine,
    PaymentSource,
    Source,
    VisitorPolicy,
    VisitorStatus,
    VisitRefusal,
)
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.core.money import Money
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore
from terminal.db.tables import OutboxRow

DAY = date(2026, 1, 5)
MENU = {
    "date": DAY.isoformat(),
    "items": [{"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]}],
}
POLICY = {
    "policy_id": "district-2026",
    "version": 1,
    "effective_from": "2026-01-01",
    "rules": [{"category": "age_80_89", "slot": "lunch", "type": "fixed", "amount_fen": 500}],
}
CATS = (SeniorCategory.AGE_80_89,)
RECORD = "01JAAAAAAAAAAAAAAAAAAAA001"


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = FakeClock(datetime(2026, 1, 5, 11, 40, tzinfo=CHINA_TZ))
    db = open_database(f"sqlite:///{tmp_path}/t.db")
    roster = RosterStore(FieldCipher(load_or_create_key(tmp_path / "k")))
    store = PaymentStore(
        db.sessions,
        Outbox("dev-b", "centre-b"),
        roster,
        device_id="dev-b",
        centre_id="centre-b",
        clock=clock,
        config=FlowConfig(visitors=VisitorPolicy("centre-b")),
    )
    with write_session(db.sessions) as s:
        roster.upsert(s, "R1", "张三华", clock.now(), categories=["age_80_89"], card_ids=["C-1"])
    store.set_menu(Menu.from_dict(MENU), "staff-1")
    store.set_policy(POLICY)
    store.topup("R1", Money(5000), "staff-1")
    yield store, clock, db
    db.close()


def visit_meal(store: PaymentStore, clock: FakeClock, status: VisitorStatus, *, claim: bool) -> Any:
    events: list[Any] = [CardTapped("0000000999"), VisitorAnswered(1, status)]
    if claim:
        events.append(SlotClaimAnswered(1, ClaimOutcome.GRANTED, RECORD, "CLAIM-1"))
    events.append(Touch("confirm"))
    return drive(store.context(), store.charge, events, clock.now)


def payloads(db: Any, kind: str) -> list[dict[str, Any]]:
    with db.sessions() as s:
        rows = s.scalars(select(OutboxRow).where(OutboxRow.kind == kind).order_by(OutboxRow.seq))
        return [json.loads(r.payload) for r in rows]


def test_online_visitor_pays_cash_and_the_record_carries_visit(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, db = env
    status = VisitorStatus("P-7", "centre-a", CATS, Source.ONLINE, subsidised_in_district=False)
    d = visit_meal(store, clock, status, claim=True)
    assert isinstance(d.state, Done), d.state
    [done] = d.committed
    assert done.record_id == RECORD  # the id the slot was claimed for
    [meal] = payloads(db, "meal_transaction")
    assert meal["resident_id"] == "P-7" and meal["categories"] == ["age_80_89"]
    assert meal["visit"] == {
        "person_id": "P-7",
        "home_centre_id": "centre-a",
        "source": "online",
        "claim_id": "CLAIM-1",
        "review": False,
        "payment_source": "cash",
    }
    assert (meal["subsidy_total_fen"], meal["amount_due_fen"], meal["payment_source"]) == (
        500,
        1000,
        "cash",
    )
    assert meal["wallet_before_fen"] == meal["wallet_after_fen"] == 0  # cash: no wallet moved
    assert store.balance("P-7") == Money(0)
    tx = store.get(RECORD)
    assert tx.name_masked == "来访长者·centre-a" and tx.due == Money(1000)
    receipt = store.receipt(RECORD)
    assert receipt.resident_masked == "来访长者·centre-a"
    assert d.printed[0].receipt.resident_masked == "来访长者·centre-a"
    # the visitor is no resident of this centre: no search, card or list finds them
    with db.sessions() as s:
        assert [r.resident_id for r in store.deps.roster.list(s)] == ["R1"]
    assert store.verify().ok
    # the same request again (a retry after a lost answer) charges nothing more
    [charge] = [e for e in d.effects if isinstance(e, Charge)]
    again = store.charge(charge.request)
    assert again.record_id == RECORD  # type: ignore[union-attr]
    assert len(payloads(db, "meal_transaction")) == 1
    # and a second meal in the slot is refused by the local guard
    d2 = visit_meal(store, clock, status, claim=True)
    assert "pay.already_paid" in d2.spoken and not d2.committed
    day = store.visitors.day(DAY)
    assert (day.visitors, day.meals, day.review) == (1, 1, 0)
    assert day.owed == (OwedLine("centre-a", 1, 1, 500),)


def test_offline_visitors_spend_the_budget_then_eat_without_subsidy(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, db = env
    from dataclasses import replace

    from payment.visiting import OfflineVisitLimits

    store.config = replace(
        store.config,
        visitors=VisitorPolicy("centre-b", limits=OfflineVisitLimits(1, 10_000)),
    )
    first = VisitorStatus("P-1", "centre-a", CATS, Source.ROSTER)
    second = VisitorStatus("P-2", "centre-c", CATS, Source.ROSTER)
    d1 = visit_meal(store, clock, first, claim=False)
    assert isinstance(d1.state, Done)
    assert store.context().visit_usage(DAY, MealSlot.LUNCH) == OfflineUsage(1, 500)
    d2 = visit_meal(store, clock, second, claim=False)
    assert isinstance(d2.state, Done)
    m1, m2 = payloads(db, "meal_transaction")
    assert (m1["visit"]["review"], m1["visit"]["source"], m1["subsidy_total_fen"]) == (
        True,
        "roster",
        500,
    )
    assert (m2["subsidy_total_fen"], m2["amount_due_fen"]) == (0, 1500)  # the slot's limit
    day = store.visitors.day(DAY)
    assert (day.visitors, day.meals, day.review, day.owed_fen) == (2, 2, 2, 500)
    # a void of the cash meal takes it out of the day and the budget
    store.void(d1.committed[0].record_id, "meal_not_served", "staff-1")
    assert store.context().visit_usage(DAY, MealSlot.LUNCH) == OfflineUsage(0, 0)
    assert store.visitors.day(DAY).owed == ()
    assert store.verify().ok


def test_home_wallet_meal_is_owed_by_the_platform_not_a_wallet_here(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, db = env
    status = VisitorStatus(
        "P-8",
        "centre-a",
        CATS,
        Source.ONLINE,
        subsidised_in_district=False,
        home_centre_name="东风社区照料中心",
        wallet_balance_fen=2500,
    )
    events: list[Any] = [
        CardTapped("0000009008"),
        VisitorAnswered(1, status, PaymentSource.HOME_WALLET),
        Touch("confirm"),  # the claim and the district wallet's debit only now
        SlotClaimAnswered(1, ClaimOutcome.GRANTED, RECORD, "CLAIM-8", 1500),
    ]
    d = drive(store.context(), store.charge, events, clock.now)
    assert isinstance(d.state, Done), d.state
    assert d.state.payment.visit is not None
    assert d.state.payment.visit.wallet_after_fen == 1500
    assert d.state.receipt.resident_masked == "来访长者·东风社区照料中心"  # the name, not the id
    today = store.visitors.day(DAY)  # the manager screen: owed by the home centre
    assert (today.owed_fen, today.wallet_owed_fen) == (500, 1000)
    [meal] = payloads(db, "meal_transaction")
    assert (meal["payment_source"], meal["visit"]["payment_source"]) == ("cash", "home_wallet")
    entry = json.loads(_doc(db, RECORD))["entry"]
    assert ["receivable:home_wallet", 1000] in entry["legs"]
    assert store.balance("P-8") == Money(0) and store.verify().ok


def _doc(db: Any, record_id: str) -> str:
    from payment.store.schema import LedgerRow

    with db.sessions() as s:
        row = s.get(LedgerRow, record_id)
        assert row is not None
        return str(row.doc)


def test_staff_grant_beyond_the_offline_limits_is_kept_with_the_staff_id(env) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from payment.flow import StaffApprove
    from payment.visiting import OfflineVisitLimits

    store, clock, db = env
    store.config = replace(
        store.config, visitors=VisitorPolicy("centre-b", limits=OfflineVisitLimits(0, 0))
    )
    status = VisitorStatus("P-5", "centre-a", CATS, Source.ROSTER)
    events: list[Any] = [
        CardTapped("0000009005"),
        VisitorAnswered(1, status),
        StaffApprove("S-7"),
        Touch("confirm"),
    ]
    d = drive(store.context(), store.charge, events, clock.now)
    assert isinstance(d.state, Done), d.state
    record = d.committed[0].record_id
    assert json.loads(_doc(db, record))["overrides"] == [["visit_limit", "S-7"]]
    [meal] = payloads(db, "meal_transaction")
    assert (meal["subsidy_total_fen"], meal["visit"]["review"]) == (500, True)


@pytest.mark.parametrize(
    ("outcome", "note"),
    [
        (ClaimOutcome.INSUFFICIENT, VisitRefusal.HOME_WALLET_SHORT),
        (ClaimOutcome.UNAVAILABLE, VisitRefusal.HOME_WALLET_OFFLINE),
    ],
)
def test_a_refused_or_unanswered_district_wallet_falls_to_cash_under_the_same_record(  # type: ignore[no-untyped-def]
    env, outcome: ClaimOutcome, note: VisitRefusal
) -> None:
    store, clock, db = env
    status = VisitorStatus(
        "P-9",
        "centre-a",
        CATS,
        Source.ONLINE,
        subsidised_in_district=False,
        wallet_balance_fen=5000,
    )
    events: list[Any] = [
        CardTapped("0000009009"),
        VisitorAnswered(1, status, PaymentSource.HOME_WALLET),
        Touch("confirm"),
        SlotClaimAnswered(1, outcome, RECORD),
    ]
    d = drive(store.context(), store.charge, events, clock.now)
    if outcome is ClaimOutcome.INSUFFICIENT:  # refused whole: the cash meal claims the slot
        assert isinstance(d.state, VisitorClaiming), d.state
        granted = SlotClaimAnswered(1, ClaimOutcome.GRANTED, RECORD, "CLAIM-9")
        d = drive(store.context(), store.charge, [granted], clock.now, state=d.state)
    assert isinstance(d.state, Confirm), d.state  # asked again, now in cash, saying why
    visit = d.state.payment.visit
    assert visit is not None
    assert (visit.payment_source, visit.wallet_note) == (PaymentSource.CASH, note)
    d2 = drive(store.context(), store.charge, [Touch("confirm")], clock.now, state=d.state)
    assert isinstance(d2.state, Done), d2.state
    [meal] = payloads(db, "meal_transaction")
    assert meal["visit"]["payment_source"] == "cash"
    assert d2.state.record_id == RECORD  # a debit the platform made is released by it
    assert store.verify().ok


def test_a_district_wallet_holding_less_than_the_due_is_not_asked(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, _db = env
    status = VisitorStatus(
        "P-10", "centre-a", CATS, Source.ONLINE, subsidised_in_district=False, wallet_balance_fen=5
    )
    events: list[Any] = [
        CardTapped("0000009010"),
        VisitorAnswered(1, status, PaymentSource.HOME_WALLET),
    ]
    d = drive(store.context(), store.charge, events, clock.now)
    assert isinstance(d.state, VisitorClaiming), d.state  # cash: the subsidy's claim first
    d = drive(
        store.context(),
        store.charge,
        [SlotClaimAnswered(1, ClaimOutcome.GRANTED, RECORD, "CLAIM-10")],
        clock.now,
        state=d.state,
    )
    assert isinstance(d.state, Confirm), d.state
    visit = d.state.payment.visit
    assert visit is not None
    assert (visit.payment_source, visit.wallet_note) == (
        PaymentSource.CASH,
        VisitRefusal.HOME_WALLET_SHORT,
    )


def test_the_visitors_receipt_on_a_pty_names_the_home_centre(env) -> None:  # type: ignore[no-untyped-def]
    """The receipt's bytes as a serial printer gets them: GB18030, the home
    centre's name (from the district), not its id."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contracts"))
    from test_receipt_on_pty import print_on_pty

    store, clock, _db = env
    status = VisitorStatus(
        "P-11",
        "centre-a",
        CATS,
        Source.ONLINE,
        subsidised_in_district=False,
        home_centre_name="东风社区照料中心",
    )
    events: list[Any] = [
        CardTapped("0000009011"),
        VisitorAnswered(1, status, PaymentSource.CASH),
        SlotClaimAnswered(1, ClaimOutcome.GRANTED, RECORD, "CLAIM-11"),
        Touch("confirm"),
    ]
    d = drive(store.context(), store.charge, events, clock.now)
    assert isinstance(d.state, Done), d.state
    ok, outcome, data = print_on_pty(d.printed[0].receipt)
    assert ok, outcome
    assert "来访长者·东风社区照料中心".encode("gb18030") in data
    assert b"centre-a" not in data
    assert RECORD.encode() in data


def test_a_district_wallet_top_up_is_queued_and_moves_no_wallet_here(env) -> None:  # type: ignore[no-untyped-def]
    from payment.errors import PaymentError
    from sync import schemas

    store, _clock, db = env
    rec = store.district_wallet.topup("R1", Money(2000), "staff-1")
    [payload] = payloads(db, "district_wallet_topup")
    assert payload == {
        "resident_id": "R1",
        "amount_fen": 2000,
        "method": "cash",
        "staff_id": "staff-1",
    }
    schemas.validate("DistrictWalletTopup", payload, "district wallet top-up")  # the spec's shape
    assert rec["record_id"] and store.balance("R1") == Money(5000)  # this centre's wallet: as was
    for bad, code in (
        (lambda: store.district_wallet.topup("R9", Money(100), "staff-1"), "resident_not_found"),
        (lambda: store.district_wallet.topup("R1", Money(0), "staff-1"), "bad_amount"),
        (lambda: store.district_wallet.topup("R1", Money(100), " "), "staff_required"),
    ):
        with pytest.raises(PaymentError) as refused:
            bad()
        assert refused.value.code == code
    assert len(payloads(db, "district_wallet_topup")) == 1
    assert store.verify().ok
