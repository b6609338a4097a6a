"""One meal is one charge: request ids, charge intents, resolution and recovery,
on a real SQLite file through the real flow."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from payment.domain import Menu
from payment.flow import (
    AlreadyPaid,
    AnotherPortion,
    CardTapped,
    Charge,
    ChargeCommitted,
    ChargeFailed,
    ChargeRequest,
    Confirm,
    Done,
    FlowConfig,
    Idle,
    Touch,
    step,
)
from payment.headless import drive
from payment.store import PaymentStore
from payment.store.schema import IntentRow, LedgerRow
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.core.money import Money
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import Database, open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore
from terminal.db.tables import AuditRow

DAY = date(2026, 1, 5)
DINNER = datetime(2026, 1, 5, 17, 40, tzinfo=CHINA_TZ)
MENU = {
    "date": DAY.isoformat(),
    "items": [
        {"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]},
        {"item_id": "D1", "name": "晚餐套餐", "price_fen": 1200, "slots": ["dinner"]},
    ],
}
POLICY = {
    "policy_id": "district-2026",
    "version": 1,
    "effective_from": "2026-01-01",
    # lunch only: dinner has no subsidy (the 12-yuan dinner of the field report)
    "rules": [{"category": "age_80_89", "slot": "lunch", "type": "fixed", "amount_fen": 500}],
}

Env = tuple[PaymentStore, FakeClock, Database, Path]


def make_store(path: Path, clock: FakeClock) -> tuple[PaymentStore, Database]:
    db = open_database(f"sqlite:///{path}/t.db")
    roster = RosterStore(FieldCipher(load_or_create_key(path / "k")))
    store = PaymentStore(
        db.sessions,
        Outbox("dev-1", "c-1"),
        roster,
        device_id="dev-1",
        centre_id="c-1",
        clock=clock,
        config=FlowConfig(centre_name="阳光照料中心"),
    )
    return store, db


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    clock = FakeClock(DINNER)
    store, db = make_store(tmp_path, clock)
    with write_session(db.sessions) as s:
        store.deps.roster.upsert(
            s, "R1", "张三华", clock.now(), categories=["age_80_89"], card_ids=["C-1"]
        )
    store.set_menu(Menu.from_dict(MENU), "staff-1")
    store.set_policy(POLICY)
    store.topup("R1", Money(10_000), "staff-1")
    yield store, clock, db, tmp_path
    db.close()


def charges(store: PaymentStore) -> list[str]:
    return [t.record_id for t in store.transactions(DAY) if t.kind == "charge" and not t.voided]


def confirmed_request(store: PaymentStore, clock: FakeClock) -> ChargeRequest:
    """Card tap + touch through the real flow; the Charge effect's request."""
    ctx = store.context()
    s, _ = step(Idle(), CardTapped("C-1"), clock.now(), ctx)
    _s, effects = step(s, Touch("confirm"), clock.now(), ctx)
    return next(e.request for e in effects if isinstance(e, Charge))


def intent(store: PaymentStore, request_id: str) -> IntentRow:
    row = store.intent(request_id)
    assert row is not None
    return row


# --------------------------------------------------------------------------- request ids


def test_dinner_without_subsidy_is_charged_once_however_often_the_senior_confirms(
    env: Env,
) -> None:
    store, clock, _db, _ = env
    first = drive(store.context(), store.charge, [CardTapped("C-1"), Touch("confirm")], clock.now)
    assert isinstance(first.state, Done) and first.committed
    assert store.get(first.committed[0].record_id).subsidy == Money(0)
    for _ in range(2):  # comes back and taps whatever the screen offers
        clock.advance(8)
        again = drive(
            store.context(),
            store.charge,
            [CardTapped("C-1"), Touch("confirm"), Touch("confirm")],
            clock.now,
        )
        assert not again.committed
    assert len(charges(store)) == 1 and store.balance("R1") == Money(10_000 - 1200)


def test_intent_is_written_before_the_charge_and_closed_by_it(env: Env) -> None:
    store, clock, _db, _ = env
    req = confirmed_request(store, clock)
    assert len(req.request_id) == 32
    out = store.charge(req)
    assert isinstance(out, ChargeCommitted)
    it = intent(store, req.request_id)
    assert (it.status, it.record_id, it.shown_at) == ("committed", out.record_id, None)
    assert store.mark_shown(req.request_id)
    assert not store.mark_shown(req.request_id)  # once
    assert intent(store, req.request_id).shown_by == "screen"
    # a refused request closes its intent as failed, and stays refused on retry
    refused = store.charge(replace(req, request_id="f" * 32))
    assert isinstance(refused, ChargeFailed) and refused.reason == "already_paid"
    assert intent(store, "f" * 32).status == "failed"
    assert store.charge(replace(req, request_id="f" * 32)) == refused


def test_retry_with_the_same_request_id_returns_the_existing_record(env: Env) -> None:
    store, clock, _db, _ = env
    req = confirmed_request(store, clock)
    first = store.charge(req)
    assert isinstance(first, ChargeCommitted)
    for _ in range(3):
        assert store.charge(req) == first
    assert len(charges(store)) == 1


def test_a_clock_stepped_back_never_maps_a_new_charge_onto_an_old_voided_one(env: Env) -> None:
    """Same device, same session counter, same wall-clock reading (a Pi without
    RTC after a reboot): the new request has a new random id, so it is charged
    as a new record instead of answering with the old, voided one."""
    store, clock, _db, _ = env
    old = confirmed_request(store, clock)
    first = store.charge(old)
    assert isinstance(first, ChargeCommitted)
    store.void(first.record_id, "wrong_item", "staff-1")
    new = confirmed_request(store, clock)  # after the void the guard lets a meal through
    assert (new.session, new.requested_at) == (old.session, old.requested_at)
    assert new.request_id != old.request_id
    second = store.charge(new)
    assert isinstance(second, ChargeCommitted) and second.record_id != first.record_id
    assert charges(store) == [second.record_id]
    assert store.balance("R1") == Money(10_000 - 1200)
    assert store.verify().ok


def test_a_request_without_id_is_refused(env: Env) -> None:
    store, clock, _db, _ = env
    out = store.charge(replace(confirmed_request(store, clock), request_id=""))
    assert isinstance(out, ChargeFailed) and not charges(store)


# --------------------------------------------------------------------------- another portion


def test_another_portion_is_charged_in_full_once_and_only_when_chosen(env: Env) -> None:
    store, clock, _db, _ = env
    drive(store.context(), store.charge, [CardTapped("C-1"), Touch("confirm")], clock.now)
    clock.advance(300)
    d = drive(store.context(), store.charge, [CardTapped("C-1")], clock.now)
    assert isinstance(d.state, AlreadyPaid)
    d = drive(store.context(), store.charge, [AnotherPortion()], clock.now, state=d.state)
    assert isinstance(d.state, Confirm) and d.state.payment.another_portion
    assert d.state.payment.quote.due == Money(1200)
    confirm = d.state
    d = drive(store.context(), store.charge, [Touch("confirm")], clock.now, state=confirm)
    assert isinstance(d.state, Done)
    assert len(charges(store)) == 2
    # the same "another portion" choice confirmed twice (a stale screen): refused
    d2 = drive(store.context(), store.charge, [Touch("confirm")], clock.now, state=confirm)
    assert not d2.committed and d2.failed[0].reason == "already_paid"
    assert len(charges(store)) == 2 and store.balance("R1") == Money(10_000 - 2400)


def test_store_refuses_a_second_portion_with_a_subsidy(env: Env, tmp_path: Path) -> None:
    store, clock, _db, _ = env
    clock.set(datetime(2026, 1, 5, 11, 40, tzinfo=CHINA_TZ))  # lunch: subsidised
    lunch = confirmed_request(store, clock)
    assert lunch.quote.subsidised
    assert isinstance(store.charge(lunch), ChargeCommitted)
    forged = replace(lunch, request_id="a" * 32, another_portion=True, meals_before=1)
    out = store.charge(forged)
    assert isinstance(out, ChargeFailed) and out.reason == "quote_stale"


# --------------------------------------------------------------------------- resolution


def test_resolve_reports_a_charge_that_landed(env: Env) -> None:
    store, clock, _db, _ = env
    req = confirmed_request(store, clock)
    landed = store.charge(req)
    assert store.resolve_charge(req) == landed


def test_resolve_closes_an_open_intent_so_the_charge_can_no_longer_land(env: Env) -> None:
    store, clock, _db, _ = env
    req = confirmed_request(store, clock)
    store.intents.open(req)  # the intent is on disk; the charge never ran
    out = store.resolve_charge(req)
    assert isinstance(out, ChargeFailed)
    assert intent(store, req.request_id).status == "abandoned"
    late = store.charge(req)  # the charge thread wakes up after all
    assert isinstance(late, ChargeFailed) and not charges(store)
    # a request the store never saw gets a tombstone: it cannot start later either
    other = replace(req, request_id="b" * 32)
    assert isinstance(store.resolve_charge(other), ChargeFailed)
    assert isinstance(store.charge(other), ChargeFailed) and not charges(store)
    # the senior's next attempt (a new request) is charged normally, once
    again = confirmed_request(store, clock)
    assert isinstance(store.charge(again), ChargeCommitted) and len(charges(store)) == 1


def test_resolve_waits_for_a_slow_commit_and_reports_it_paid(env: Env) -> None:
    """A charge transaction still holding the write lock: resolve waits for it
    (busy timeout) and reports what it committed, never "abandoned"."""
    store, clock, db, _ = env
    req = confirmed_request(store, clock)
    results: list[object] = []
    from sqlalchemy import event

    def slow_commit(_conn: object) -> None:
        time.sleep(1.0)

    event.listen(db.engine, "commit", slow_commit)
    try:
        t = threading.Thread(target=lambda: results.append(store.charge(req)))
        t.start()
        deadline = time.monotonic() + 5
        while store.intent(req.request_id) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the charge transaction now holds the lock in its slow COMMIT
        resolved = store.resolve_charge(req)
        t.join(10)
    finally:
        event.remove(db.engine, "commit", slow_commit)
    assert isinstance(resolved, ChargeCommitted)
    assert results == [resolved] and len(charges(store)) == 1


def test_resolve_says_nothing_while_the_store_cannot_tell(env: Env) -> None:
    store, clock, _db, path = env
    req = confirmed_request(store, clock)
    store.intents.open(req)
    blocker = sqlite3.connect(path / "t.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # someone holds the write lock longer than busy_timeout
    try:
        assert store.resolve_charge(req) is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert intent(store, req.request_id).status == "open"
    assert isinstance(store.resolve_charge(req), ChargeFailed)


# --------------------------------------------------------------------------- restart


def test_recovery_reports_unshown_charges_and_abandons_open_intents(env: Env) -> None:
    store, clock, db, path = env
    shown = confirmed_request(store, clock)
    assert isinstance(store.charge(shown), ChargeCommitted)
    store.mark_shown(shown.request_id)
    store.void(store.transactions(DAY)[0].record_id, "wrong_item", "staff-1")
    unshown = confirmed_request(store, clock)
    landed = store.charge(unshown)  # killed right after COMMIT: never shown
    assert isinstance(landed, ChargeCommitted)
    clock.advance(5)
    dangling = replace(unshown, request_id="c" * 32)
    store.intents.open(dangling)  # killed between the intent and the charge
    db.close()

    store2, db2 = make_store(path, clock)  # the restart
    try:
        rec = store2.recover_intents()
        assert [t.record_id for t in rec.paid] == [landed.record_id]
        assert rec.abandoned == ["c" * 32]
        assert intent(store2, unshown.request_id).shown_by == "restart"
        assert intent(store2, "c" * 32).status == "abandoned"
        with db2.sessions() as s:
            audits = [(a.action, a.target) for a in s.scalars(select(AuditRow))]
        assert ("charge_reported_after_restart", landed.record_id) in audits
        again = store2.recover_intents()  # nothing is reported twice
        assert again.paid == [] and again.abandoned == []
        # the dangling request retried: refused, nothing charged twice
        assert isinstance(store2.charge(dangling), ChargeFailed)
        assert isinstance(store2.charge(unshown), ChargeCommitted)
        with db2.sessions() as s:
            n = len(list(s.scalars(select(LedgerRow).where(LedgerRow.kind == "charge"))))
        assert n == 2 and len(charges(store2)) == 1
        assert store2.verify().ok
    finally:
        db2.close()
