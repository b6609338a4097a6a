"""The Qt-free kiosk runner: real flow, real store, real face pipeline, a camera
showing folders of real face photos."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from kiosk_world import World, make_world, start_kiosk

from payment.flow import (
    CardTapped,
    DigitsEntered,
    Done,
    Failed,
    FailReason,
    FlowTimeouts,
    Idle,
    StaffApprove,
    Touch,
)
from terminal.app.kiosk_compose import KIOSK_TIMEOUTS
from terminal.core.money import Money
from terminal.kiosk.face_port import Observation
from terminal.kiosk.runner import (
    KioskRunner,
    RestartBudget,
    RunnerConfig,
    idle_info_from_context,
    wait_for,
)
from ui.model import EnrolProgress, Fault, FlowView, IdleInfo, PreviewFrame


def ledger(world: World, rid: str) -> list[Any]:
    return [t for t in world.services.payment.transactions(resident_id=rid) if t.kind == "charge"]


def flow_states(world: World) -> list[Any]:
    return [u.state for u in list(world.updates) if isinstance(u, FlowView)]


# --------------------------------------------------------------------------- journeys


def test_face_pay_journey_commits_then_acknowledges(world: World) -> None:
    app = start_kiosk(world)
    before = world.balance("R-OB")
    world.source.show("obama")
    assert world.wait_state("Confirm"), world.states()
    confirm = app.runner.current().state
    assert confirm.payment.resident_id == "R-OB"  # type: ignore[union-attr]
    assert confirm.payment.name_masked == "欧**华"  # type: ignore[union-attr]
    due = confirm.payment.quote.due  # type: ignore[union-attr]
    assert not ledger(world, "R-OB"), "nothing is charged before the senior confirms"
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    assert wait_for(lambda: world.printed, 5)
    done = app.runner.current().state
    assert isinstance(done, Done)
    [tx] = ledger(world, "R-OB")
    assert tx.method == "face" and tx.record_id == done.record_id
    assert world.balance("R-OB") == Money(before.fen - due.fen) == done.balance_after
    # voice: look at camera, confirm, success - the success prompt only after the commit
    assert world.spoken[:1] == ["pay.look_at_camera"]
    assert "pay.confirm" in world.spoken and world.spoken[-1] == "pay.success"
    assert world.printed[0].record_id == tx.record_id
    assert world.services.payment.verify().ok
    # preview frames reached the subscriber with a face box
    previews = [u for u in list(world.updates) if isinstance(u, PreviewFrame)]
    assert previews and any(p.box is not None for p in previews)
    assert all(p.image.shape[2] == 3 and p.image.flags["C_CONTIGUOUS"] for p in previews[:5])


def test_far_face_gets_come_closer_guidance_and_no_charge(world: World) -> None:
    app = start_kiosk(world)
    world.source.show("far")
    assert wait_for(
        lambda: any(
            isinstance(u, PreviewFrame) and u.guidance == "face.quality.too_small"
            for u in list(world.updates)
        ),
        10,
    )
    assert wait_for(lambda: "pay.quality.too_small" in world.spoken, 10), world.spoken
    assert not ledger(world, "R-OB")
    assert isinstance(app.runner.current().state, type(app.runner.current().state))


def test_uncertain_match_fails_liveness_on_a_still_photo_then_card_pays(world: World) -> None:
    app = start_kiosk(world)
    world.source.show("alex")
    # uncertain match -> active challenge; a photo cannot blink or turn -> two attempts fail
    assert world.wait_state("Challenge"), world.states()
    assert world.wait_state("Failed", 15), world.states()
    failed = app.runner.current().state
    assert isinstance(failed, Failed) and failed.reason is FailReason.LIVENESS_FAILED
    assert not ledger(world, "R-AL")
    world.source.show(None)
    app.runner.post(CardTapped("0000000102"))
    assert world.wait_state("Confirm")
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    [tx] = ledger(world, "R-AL")
    assert tx.method == "card"


def wait_until_away(world: World, timeout: float = 10.0) -> bool:
    """Wait until the face loop has seen an empty room for longer than the
    runner's re-arm time, measured in camera time (not a guessed sleep).

    Preview frames carry the face loop's latest observation: the frames without a
    face box since the last one with a box show how long the loop has seen nobody.
    """
    cfg = world.runner.config
    need = cfg.rearm_absent_s + 3.0 / cfg.analysis_fps  # and a few of the loop's ticks
    start = len(world.updates)

    def away_long_enough() -> bool:
        previews = [u for u in world.updates[start:] if isinstance(u, PreviewFrame)]
        seen = [i for i, p in enumerate(previews) if p.box is not None]
        empty = previews[seen[-1] + 1 :] if seen else previews
        return len(empty) >= 2 and empty[-1].captured - empty[0].captured >= need

    return wait_for(away_long_enough, timeout)


def test_duplicate_meal_is_refused_until_staff_approve(world: World) -> None:
    app = start_kiosk(world)
    world.source.show("obama")
    assert world.wait_state("Confirm")
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    app.runner.post(Touch("confirm"))  # finish
    assert world.wait_state("Idle")
    # the same senior leaves the frame and comes back (re-armed only by absence)
    world.source.show(None)
    assert wait_until_away(world), world.states()
    world.source.show("obama")
    assert world.wait_state("AlreadyPaid", 15), world.states()
    assert len(ledger(world, "R-OB")) == 1
    app.runner.post(StaffApprove("S-TEST"))
    assert world.wait_state("Confirm")
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    assert len(ledger(world, "R-OB")) == 2


def test_cancel_on_confirm_returns_to_idle_without_charge(world: World) -> None:
    app = start_kiosk(world)
    app.runner.post(CardTapped("0000000101"))
    assert world.wait_state("Confirm")
    app.runner.post(Touch("cancel"))
    assert world.wait_state("Idle")
    assert "pay.cancelled" in world.spoken
    seq = app.runner.current().seq
    app.runner.post(DigitsEntered("1111"))  # digits outside the keypad screen change nothing
    # events are handled in order: once the card behind the digits is on screen,
    # the digits were handled too, and the card's Confirm is the only change since
    app.runner.post(CardTapped("0000000101"))
    assert world.wait_state("Confirm")
    assert app.runner.current().seq == seq + 1, world.states()
    assert not ledger(world, "R-OB")


def test_large_face_payment_asks_phone_last4(tmp_path: Path, open_pack: Path) -> None:
    w = make_world(tmp_path, open_pack, payment={"large_amount_fen": 500})
    try:
        app = start_kiosk(w)
        w.source.show("obama")
        assert w.wait_state("Confirm")
        assert app.runner.current().state.payment.needs_second_factor  # type: ignore[union-attr]
        app.runner.post(Touch("confirm"))
        assert w.wait_state("SecondFactorEntry")
        app.runner.post(DigitsEntered("9999"))
        assert wait_for(lambda: "pay.second_factor.wrong" in w.spoken, 5)
        assert not ledger(w, "R-OB")
        app.runner.post(DigitsEntered("1111"))
        assert w.wait_state("Done")
        [tx] = ledger(w, "R-OB")
        assert tx.verification is not None and "phone_last4" in tx.verification
    finally:
        w.close()


def test_print_failure_never_blocks_payment_and_is_recorded(world: World) -> None:
    app = start_kiosk(world, printer=lambda _r: (False, "paper_out"))
    app.runner.post(CardTapped("0000000104"))
    assert world.wait_state("Confirm")
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    assert wait_for(lambda: getattr(app.runner.current().state, "print_ok", None) is False, 5)
    [tx] = ledger(world, "R-RL")
    assert list(app.runner.print_failures) == [(tx.record_id, "paper_out")]
    from sqlalchemy import select

    from terminal.db.tables import AuditRow

    with world.services.db.sessions() as s:
        actions = [(a.action, a.target) for a in s.scalars(select(AuditRow))]
    assert ("receipt_print_failed", tx.record_id) in actions


def test_a_crashing_charge_shows_failed_and_charges_nothing(world: World) -> None:
    app = start_kiosk(world)
    calls = []

    def broken(req: Any) -> Any:
        calls.append(req)
        raise OSError("disk gone")

    app.runner._charge = broken  # the store's disk fails mid-transaction
    app.runner.post(CardTapped("0000000103"))
    assert world.wait_state("Confirm")
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Failed")
    st = app.runner.current().state
    assert isinstance(st, Failed) and st.reason is FailReason.CHARGE_FAILED
    assert calls and not ledger(world, "R-KT")
    assert app.runner.healthy()


def test_timeouts_return_to_idle(world: World) -> None:
    timeouts = replace(KIOSK_TIMEOUTS, confirm=0.6)
    app = start_kiosk(world, flow_timeouts=timeouts)
    app.runner.post(CardTapped("0000000103"))
    assert world.wait_state("Confirm")
    assert world.wait_state("Idle", 5)
    assert not ledger(world, "R-KT")


def test_enrolment_capture_collects_good_frames(world: World) -> None:
    app = start_kiosk(world)
    app.runner.set_mode("staff")
    world.source.show("kit")
    frames = app.runner.capture_faces(target=3, timeout_s=10, min_gap_s=0.1)
    assert len(frames) == 3
    progress = [u for u in list(world.updates) if isinstance(u, EnrolProgress)]
    assert progress[-1].finished and progress[-1].good == 3
    assert world.state() == "Idle", "staff mode: faces never start a payment"


def test_backend_enrol_from_camera_then_face_pay(world: World) -> None:
    app = start_kiosk(world)
    app.runner.set_mode("staff")
    world.source.show("kit")
    n = app.backend.enrol("R-KT", "S-TEST", consent_face_pay=True, consent_attendance=True)
    assert n >= 1
    app.runner.set_mode("pay")
    world.source.show(None)
    assert wait_until_away(world), world.states()
    world.source.show("kit")
    assert world.wait_state("Confirm", 15), world.states()
    assert app.runner.current().state.payment.resident_id == "R-KT"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- supervision


class _Exploding:
    """A face port whose detector crashes (a driver bug, a corrupt frame ...)."""

    def __init__(self) -> None:
        self.calls = 0

    def observe(self, image: np.ndarray, *, identify: bool = False) -> Observation | None:
        self.calls += 1
        raise RuntimeError("detector crashed")

    def identify(self, image: np.ndarray) -> Any:
        return None

    def challenge(self, kind: str, now: float, resident_id: str) -> Any:  # pragma: no cover
        raise AssertionError


class _Wedged(_Exploding):
    """A face port whose model call never returns (until released)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def observe(self, image: np.ndarray, *, identify: bool = False) -> Observation | None:
        self.calls += 1
        self.release.wait()
        return None


def test_a_wedged_face_loop_makes_the_kiosk_unhealthy_for_the_watchdog(world: World) -> None:
    """The systemd watchdog is fed only while the face loop ticks too: a model
    call that never returns stops the pings and systemd restarts the kiosk."""
    face = _Wedged()
    runner = KioskRunner(
        context=world.services.payment.context,
        charge=world.services.payment.charge,
        clock=world.clock,
        source=world.source,
        face=face,
        config=RunnerConfig(stall_s=1.0),
    )
    world.source.show("obama")
    runner.start()
    try:
        assert wait_for(lambda: face.calls >= 1, 10)
        assert wait_for(lambda: not runner.healthy(), 5)
        face.release.set()  # unstuck: healthy again
        assert wait_for(runner.healthy, 5)
    finally:
        face.release.set()
        runner.stop()


def test_crashing_worker_is_restarted_then_faults_when_the_budget_is_spent(world: World) -> None:
    ctx = world.services.payment.context
    faults: list[Fault] = []
    face = _Exploding()
    runner = KioskRunner(
        context=ctx,
        charge=world.services.payment.charge,
        clock=world.clock,
        source=world.source,
        face=face,
        config=RunnerConfig(restart_limit=3, restart_window_s=60),
    )
    runner.subscribe(lambda u: faults.append(u) if isinstance(u, Fault) else None)
    world.source.show("obama")
    runner.start()
    try:
        assert wait_for(lambda: bool(faults), 15)
        assert faults[0].code == "worker_failed" and faults[0].fatal
        assert face.calls == 4  # first run + 3 restarts
        assert runner.worker_restarts()["kiosk-face"] == 3
        assert not runner.healthy()
        # the rest of the kiosk still answers: the card path works
        runner.post(CardTapped("0000000104"))
        assert wait_for(lambda: type(runner.current().state).__name__ == "Confirm", 5)
    finally:
        runner.stop()


def test_restart_budget_window() -> None:
    t = [0.0]
    b = RestartBudget(limit=2, window_s=10, clock=lambda: t[0])
    assert b.spend() and b.spend() and not b.spend()
    t[0] = 11.0
    assert b.spend() and b.used == 1


def test_stop_leaves_no_threads(world: World) -> None:
    before = set(threading.enumerate())
    app = start_kiosk(world)
    assert len(set(threading.enumerate()) - before) >= 4
    app.close()
    world.app = None
    assert wait_for(lambda: not (set(threading.enumerate()) - before), 5)


# --------------------------------------------------------------------------- pieces


def test_idle_info_shows_the_slot_being_served(world: World) -> None:
    info = idle_info_from_context(world.services.payment.context(), world.clock.now())
    assert isinstance(info, IdleInfo)
    assert info.centre_name == "测试照料中心"
    assert info.slot is not None and info.slot.value == "lunch"
    assert [m.name for m in info.menu] == ["午餐套餐"] and info.menu[0].price == Money(1500)
    evening = world.clock.now().replace(hour=14, minute=0)
    later = idle_info_from_context(world.services.payment.context(), evening)
    assert later.slot is None and later.next_slot is not None and later.next_slot.value == "dinner"
    assert later.next_window == "16:30-19:00"


def test_idle_after_flow_error_budget(world: World) -> None:
    """A context that keeps failing (storage broken) ends in a fatal fault, not a hang."""
    faults: list[Fault] = []

    def broken_ctx() -> Any:
        raise OSError("database unavailable")

    runner = KioskRunner(
        context=broken_ctx,
        charge=world.services.payment.charge,
        clock=world.clock,
        config=RunnerConfig(restart_limit=2),
    )
    runner.subscribe(lambda u: faults.append(u) if isinstance(u, Fault) else None)
    runner.start()
    try:
        for _ in range(4):
            runner.post(CardTapped("0000000101"))
        assert wait_for(lambda: bool(faults), 5)
        assert faults[0].code == "flow_failed"
        assert isinstance(runner.current().state, Idle)
    finally:
        runner.stop()


def test_flow_timeouts_are_generous_for_staff_screens() -> None:
    assert KIOSK_TIMEOUTS.already_paid >= 30 and KIOSK_TIMEOUTS.staff_required >= 60
    assert KIOSK_TIMEOUTS.confirm >= FlowTimeouts().confirm


def test_after_a_restart_the_idle_screen_shows_the_last_payment(world: World) -> None:
    app = start_kiosk(world)
    app.runner.post(CardTapped("0000000104"))
    assert world.wait_state("Confirm")
    app.runner.post(Touch("confirm"))
    assert world.wait_state("Done")
    [tx] = ledger(world, "R-RL")
    app.close()  # power cut / crash / restart: the state machine starts again at Idle
    world.updates.clear()
    again = start_kiosk(world)
    assert isinstance(again.runner.current().state, Idle)
    assert wait_for(
        lambda: any(isinstance(u, IdleInfo) and u.last_payment for u in list(world.updates)), 5
    )
    info = next(u for u in world.updates if isinstance(u, IdleInfo) and u.last_payment)
    assert info.last_payment == ("罗*", tx.due.yuan_str(), tx.at.strftime("%H:%M"))
    assert len(ledger(world, "R-RL")) == 1
