"""One meal is one charge, through the real runner: real store, real face
pipeline, a camera showing real face photos."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from kiosk_world import World, start_kiosk
from sqlalchemy import event

from payment.flow import (
    AlreadyPaid,
    AnotherPortion,
    CardTapped,
    ChargePending,
    Checking,
    Done,
    Failed,
    Idle,
    Touch,
)
from terminal.app.kiosk_compose import KIOSK_TIMEOUTS
from terminal.core.money import Money
from terminal.kiosk.runner import wait_for
from ui.model import FlowView, IdleInfo


def ledger(world: World, rid: str) -> list[Any]:
    return [
        t
        for t in world.services.payment.transactions(resident_id=rid)
        if t.kind == "charge" and not t.voided
    ]


def flow_states(world: World) -> list[Any]:
    return [u.state for u in list(world.updates) if isinstance(u, FlowView)]


def test_a_senior_who_stays_in_view_is_not_asked_to_pay_again(world: World) -> None:
    """The field report: the face stayed in the frame after Done and the kiosk
    re-armed ~8 s later; a senior who taps whenever asked paid three times.
    Now a face still in the frame never starts a new session; leaving does."""
    app = start_kiosk(world)
    app.runner.post(CardTapped("0000000101"))
    assert world.wait_state("Confirm")
    world.source.show("obama")  # the senior stands in front of the camera throughout
    time.sleep(0.5)
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    app.runner.post(Touch("confirm"))  # finish
    assert world.wait_state("Idle")
    world.updates.clear()
    time.sleep(3.0)  # twice the old time-based re-arm of the test config; the face stays
    for _ in range(3):
        app.runner.post(Touch("confirm"))  # taps whatever is on screen
    time.sleep(0.5)
    assert world.state() == "Idle"
    assert not [s for s in flow_states(world) if not isinstance(s, Idle)], world.states()
    assert len(ledger(world, "R-OB")) == 1
    # leaving the frame re-arms: the next face starts a session (an unenrolled
    # face here, so no liveness challenge runs), and the senior's card finds the
    # meal already paid
    world.source.show(None)
    time.sleep(1.0)
    world.source.show("kit")
    assert wait_for(lambda: any(isinstance(s, Checking) for s in flow_states(world)), 10)
    world.source.show(None)
    app.runner.post(CardTapped("0000000101"))
    assert world.wait_state("AlreadyPaid", 10), world.states()
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Idle")
    assert len(ledger(world, "R-OB")) == 1


def test_another_portion_is_a_second_explicit_charge_without_subsidy(world: World) -> None:
    app = start_kiosk(world)
    app.runner.post(CardTapped("0000000101"))
    assert world.wait_state("Confirm")
    first_due = app.runner.current().state.payment.quote.due  # type: ignore[union-attr]
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Idle")
    app.runner.post(CardTapped("0000000101"))
    assert world.wait_state("AlreadyPaid")
    app.runner.post(AnotherPortion())
    assert world.wait_state("Confirm")
    p = app.runner.current().state.payment  # type: ignore[union-attr]
    assert p.another_portion and p.quote.subsidy == Money(0) and p.quote.due == Money(1500)
    assert first_due.fen < 1500  # the first lunch was subsidised, the second is not
    assert len(ledger(world, "R-OB")) == 1  # choosing is not paying
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    second = ledger(world, "R-OB")[0]
    assert len(ledger(world, "R-OB")) == 2 and second.due == Money(1500)
    assert second.subsidy == Money(0)


def test_a_commit_slower_than_the_timeout_is_shown_as_checking_then_paid(world: World) -> None:
    timeouts = replace(KIOSK_TIMEOUTS, charging=0.4, charge_check=0.3)
    app = start_kiosk(world, flow_timeouts=timeouts)
    engine = world.services.db.engine

    def slow_commit(_conn: object) -> None:
        time.sleep(1.2)  # an SD card taking its time: every COMMIT outlives the timeout

    app.runner.post(CardTapped("0000000104"))
    assert world.wait_state("Confirm")
    event.listen(engine, "commit", slow_commit)
    try:
        app.runner.post(Touch("confirm"))
        assert world.wait_state("ChargePending", 5), world.states()
        assert world.wait_state("Done", 15), world.states()
    finally:
        event.remove(engine, "commit", slow_commit)
    states = flow_states(world)
    assert not any(isinstance(s, Failed) for s in states), world.states()
    pending = next(s for s in states if isinstance(s, ChargePending))
    [tx] = ledger(world, "R-RL")
    done = app.runner.current().state
    assert isinstance(done, Done) and done.record_id == tx.record_id
    assert "pay.success" in world.spoken
    intent = world.services.payment.intent(pending.request.request_id)
    assert intent is not None and intent.status == "committed"
    assert wait_for(
        lambda: (
            (world.services.payment.intent(pending.request.request_id) or intent).shown_by
            == "screen"
        ),
        5,
    )
    # the senior retries anyway: told it is paid, never charged again
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Idle")
    app.runner.post(CardTapped("0000000104"))
    assert world.wait_state("AlreadyPaid")
    assert len(ledger(world, "R-RL")) == 1


def test_a_charge_that_crashes_after_its_commit_is_shown_as_paid(world: World) -> None:
    app = start_kiosk(world)
    store = world.services.payment

    def commit_then_crash(req: Any) -> Any:
        store.charge(req)
        raise OSError("I/O error after COMMIT")

    app.runner._charge = commit_then_crash
    app.runner.post(CardTapped("0000000103"))
    assert world.wait_state("Confirm")
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done"), world.states()
    [tx] = ledger(world, "R-KT")
    assert app.runner.current().state.record_id == tx.record_id  # type: ignore[union-attr]
    assert not any(isinstance(s, Failed) for s in flow_states(world))


def test_a_charge_committed_but_never_shown_is_reported_at_start_up(world: World) -> None:
    """The previous run was killed after COMMIT and before "paid" was shown."""
    from payment.flow import Charge, step

    store = world.services.payment
    ctx = store.context()
    s, _ = step(Idle(), CardTapped("0000000104"), world.clock.now(), ctx)
    _s, effects = step(s, Touch("confirm"), world.clock.now(), ctx)
    req = next(e.request for e in effects if isinstance(e, Charge))
    landed = store.charge(req)  # ... and the process died here
    [tx] = ledger(world, "R-RL")
    assert tx.record_id == landed.record_id  # type: ignore[union-attr]

    app = start_kiosk(world)
    assert wait_for(
        lambda: any(isinstance(u, IdleInfo) and u.last_payment for u in list(world.updates)), 5
    )
    info = next(u for u in world.updates if isinstance(u, IdleInfo) and u.last_payment)
    assert info.last_payment == ("罗*", tx.due.yuan_str(), tx.at.strftime("%H:%M"))
    intent = store.intent(req.request_id)
    assert intent is not None and intent.shown_by == "restart"
    # the senior, never told, tries again: already paid, no second charge
    assert store.charge(req) == landed  # and a runner retry of the same request
    app.runner.post(CardTapped("0000000104"))
    assert world.wait_state("AlreadyPaid")
    assert isinstance(app.runner.current().state, AlreadyPaid)
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Idle")
    assert len(ledger(world, "R-RL")) == 1
