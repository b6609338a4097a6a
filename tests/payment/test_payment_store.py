"""The payment store on a real SQLite file, driven through the real flow."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from payment.domain import Menu
from payment.errors import PaymentError
from payment.flow import (
    AlreadyPaid,
    CardTapped,
    Done,
    FlowConfig,
    StaffApprove,
    StaffLookup,
    Touch,
)
from payment.headless import drive
from payment.store import PaymentStore
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.core.money import Money
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore
from terminal.db.tables import AuditRow, OutboxRow

DAY = date(2026, 1, 5)
MENU = {
    "date": DAY.isoformat(),
    "items": [
        {"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]},
        {"item_id": "B1", "name": "早餐", "price_fen": 500, "slots": ["breakfast"]},
    ],
}
POLICY = {
    "policy_id": "district-2026",
    "version": 1,
    "effective_from": "2026-01-01",
    "rules": [
        {
            "category": "age_80_89",
            "slot": "lunch",
            "type": "fixed",
            "amount_fen": 500,
            "floor_fen": 200,
        }
    ],
}


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = FakeClock(datetime(2026, 1, 5, 11, 40, tzinfo=CHINA_TZ))
    db = open_database(f"sqlite:///{tmp_path}/t.db")
    roster = RosterStore(FieldCipher(load_or_create_key(tmp_path / "k")))
    store = PaymentStore(
        db.sessions,
        Outbox("dev-1", "c-1"),
        roster,
        device_id="dev-1",
        centre_id="c-1",
        clock=clock,
        config=FlowConfig(centre_name="阳光照料中心"),
    )
    with write_session(db.sessions) as s:
        roster.upsert(
            s,
            "R1",
            "张三华",
            clock.now(),
            categories=["age_80_89"],
            card_ids=["C-1"],
            consent_face_pay=True,
            phone_last4="1234",
        )
        roster.upsert(s, "R2", "李四", clock.now(), categories=["age_70_79"], card_ids=["C-2"])
    store.set_menu(Menu.from_dict(MENU), "staff-1")
    store.set_policy(POLICY)
    store.topup("R1", Money(5000), "staff-1")
    yield store, clock, db
    db.close()


def pay_by_card(store: PaymentStore, clock: FakeClock, card: str = "C-1"):  # type: ignore[no-untyped-def]
    return drive(store.context(), store.charge, [CardTapped(card), Touch("confirm")], clock.now)


def test_card_payment_commits_record_wallet_and_outbox_together(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, db = env
    d = pay_by_card(store, clock)
    assert isinstance(d.state, Done), d.state
    assert "pay.success" in d.spoken and d.printed
    rid = d.committed[0].record_id
    tx = store.get(rid)
    assert (tx.list_amount, tx.subsidy, tx.due, tx.balance_after) == (
        Money(1500),
        Money(500),
        Money(1000),
        Money(4000),
    )
    assert tx.method == "card" and tx.name_masked == "张*华"
    assert store.balance("R1") == Money(4000)
    with db.sessions() as s:
        kinds = [r.kind for r in s.scalars(select(OutboxRow).order_by(OutboxRow.seq))]
    assert kinds == ["wallet_topup", "meal_transaction"]
    assert store.verify().ok


def test_second_subsidised_lunch_is_blocked_until_staff_override(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, _ = env
    pay_by_card(store, clock)
    clock.advance(600)
    d = drive(store.context(), store.charge, [CardTapped("C-1")], clock.now)
    assert isinstance(d.state, AlreadyPaid) and d.state.paid_at_hhmm == "11:40"
    d = drive(
        store.context(),
        store.charge,
        [StaffApprove("staff-9"), Touch("confirm")],
        clock.now,
        state=d.state,
    )
    assert isinstance(d.state, Done)
    second = store.get(d.committed[0].record_id)
    assert second.subsidy == Money(0) and second.due == Money(1500)  # one subsidised lunch a day
    assert store.balance("R1") == Money(2500)


def test_same_request_twice_charges_once(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, _ = env
    requests = []

    def charge(req):  # type: ignore[no-untyped-def]
        requests.append(req)
        return store.charge(req)

    d = drive(store.context(), charge, [CardTapped("C-1"), Touch("confirm")], clock.now)
    again = store.charge(requests[0])  # e.g. a retry after an ambiguous failure
    assert again == d.committed[0]
    assert len([t for t in store.transactions(DAY) if t.kind == "charge"]) == 1
    assert store.balance("R1") == Money(4000)


def test_void_is_a_compensating_record_and_needs_a_reason(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, db = env
    rid = pay_by_card(store, clock).committed[0].record_id
    with pytest.raises(PaymentError, match="reason"):
        store.void(rid, "  ", "staff-1")
    v = store.void(rid, "wrong_item", "staff-1")
    assert v.kind == "void" and v.ref_id == rid and store.balance("R1") == Money(5000)
    assert store.get(rid).voided
    with pytest.raises(PaymentError):
        store.void(rid, "wrong_item", "staff-1")
    with db.sessions() as s:
        actions = [a.action for a in s.scalars(select(AuditRow))]
    assert "void" in actions and "topup" in actions and "menu_set" in actions
    assert store.verify().ok


def test_insufficient_balance_fails_cleanly(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, _ = env
    d = drive(
        store.context(), store.charge, [StaffLookup("R2", "staff-1"), Touch("confirm")], clock.now
    )
    assert not d.committed
    assert store.balance("R2") == Money(0)
    assert store.verify().ok


def test_ledger_verify_reports_first_tampered_record(env) -> None:  # type: ignore[no-untyped-def]
    store, clock, db = env
    pay_by_card(store, clock)
    with write_session(db.sessions) as s:
        s.execute(text("UPDATE wallets SET balance_fen = balance_fen + 100 WHERE resident_id='R1'"))
    check = store.verify()
    assert not check.ok and "wallet balance" in (check.problem or "")
    with write_session(db.sessions) as s:
        s.execute(text("UPDATE wallets SET balance_fen = balance_fen - 100 WHERE resident_id='R1'"))
        s.execute(
            text("UPDATE outbox SET payload = replace(payload, '1500', '1400') WHERE seq = 2")
        )
    check = store.verify()
    assert not check.ok and check.seq == 2


def test_restart_shows_last_transaction_from_the_db(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, clock, db = env
    rid = pay_by_card(store, clock).committed[0].record_id
    db.engine.dispose()
    db2 = open_database(f"sqlite:///{tmp_path}/t.db")
    store2 = PaymentStore(
        db2.sessions,
        Outbox("dev-1", "c-1"),
        RosterStore(FieldCipher(load_or_create_key(tmp_path / "k"))),
        device_id="dev-1",
        centre_id="c-1",
        clock=clock,
        config=store.config,
    )
    last = store2.last_transaction()
    assert last is not None and last.record_id == rid
    receipt = store2.receipt(rid)
    assert receipt.record_id == rid and receipt.paid == Money(1000)
    db2.close()
