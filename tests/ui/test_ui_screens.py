"""Every screen and staff page against the elder-friendly rules, both languages;
out-of-service on errors; watchdog feeding; voice prompts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from PyQt6.QtCharts import QChartView
from PyQt6.QtGui import QFontMetricsF
from PyQt6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)
from pytestqt.qtbot import QtBot
from ui_support import CannedBackend, ScriptedKiosk

from payment.domain import MealSlot, Menu, PriorMeal, Resident, VerificationMethod
from payment.flow import (
    AlreadyPaid,
    AnotherPortion,
    Candidate,
    CardTapped,
    Challenge,
    ChallengeResult,
    ChargeCommitted,
    ChargePending,
    Confirm,
    DigitsEntered,
    FaceResult,
    FaceSeen,
    FlowConfig,
    Idle,
    OverrideKind,
    PrintResult,
    StaffRequired,
    State,
    StaticContext,
    Timeout,
    Touch,
    step,
)
from payment.subsidy import parse_policy
from terminal.app.demo import DEMO_POLICY
from terminal.core.clock import CHINA_TZ
from terminal.core.money import Money
from terminal.kiosk.runner import idle_info_from_context
from ui import theme
from ui.i18n import Translator
from ui.model import ChallengeView, Fault, FlowView
from ui.views.app import install_exception_hook
from ui.views.sound import PromptPlayer
from ui.views.window import KioskWindow

NOW = datetime(2026, 3, 2, 11, 30, 0, 250_000, tzinfo=CHINA_TZ)
CTX = StaticContext(
    config=FlowConfig(centre_name="测试中心"),
    residents={
        "R1": Resident.create(
            "R1",
            "张三华",
            ["age_80_89", "dibao"],
            consent_face_pay=True,
            phone_last4="1234",
            card_ids=["0000000101"],
        ),
        "R2": Resident.create("R2", "李四", ["age_70_79"], card_ids=["0000000102"]),
        "R5": Resident.create(
            "R5", "钱七", ["age_80_89"], consent_face_pay=True, card_ids=["0000000105"]
        ),
    },
    balances={"R1": Money(5000), "R2": Money(5000), "R5": Money(100)},
    menus={
        date(2026, 3, 2): Menu.from_dict(
            {
                "date": "2026-03-02",
                "items": [
                    {
                        "item_id": "L1",
                        "name": "午餐套餐（两荤一素）",
                        "price_fen": 1500,
                        "slots": ["lunch"],
                    },
                    {"item_id": "L2", "name": "软烂老年餐", "price_fen": 1200, "slots": ["lunch"]},
                ],
            }
        )
    },
    policies=(parse_policy(DEMO_POLICY),),
)


def run(*events: Any, state: State | None = None) -> State:
    st: State = state or Idle()
    for ev in events:
        st, _ = step(st, ev, NOW, CTX)
    return st


def another_portion_confirm() -> State:
    """R1 had lunch at 11:02 and chose 再来一份 on the already-paid screen."""
    paid = PriorMeal("01X", NOW.replace(hour=11, minute=2), MealSlot.LUNCH, NOW.date(), True)
    ctx = replace(CTX, meal_history={"R1": [paid]})
    st, _ = step(Idle(), CardTapped("0000000101"), NOW, ctx)
    assert isinstance(st, AlreadyPaid)
    st, _ = step(st, AnotherPortion(), NOW, ctx)
    assert isinstance(st, Confirm) and st.payment.another_portion
    return st


def every_state() -> list[tuple[str, State]]:
    # every face answers the head-turn challenge before it can confirm
    confirm = run(
        FaceSeen(), FaceResult("identified", "R1", 0.9, 0.99), ChallengeResult("turn", True)
    )
    uncertain = run(FaceSeen(), FaceResult("uncertain", "R1", 0.45, 0.99))
    keypad = run(ChallengeResult(uncertain.kind, True), Touch("confirm"), state=uncertain)  # type: ignore[attr-defined]
    charging = run(Touch("confirm"), state=confirm)
    done = run(ChargeCommitted(charging.session, "01REC", Money(4250)), state=charging)
    cand = Candidate("R1", VerificationMethod.CARD)
    return [
        ("idle", Idle()),
        ("checking", run(FaceSeen())),
        (
            "challenge",
            Challenge(
                1, NOW + timedelta(seconds=12), FaceResult("identified", "R1", 0.9, 0.5), "turn"
            ),
        ),
        ("confirm", confirm),
        ("keypad", keypad),
        ("keypad-wrong", run(DigitsEntered("0000"), state=keypad)),
        ("charging", charging),
        ("charge-pending", run(CardTapped("0000000101"), Touch("confirm"), Timeout("charging"))),
        ("confirm-another", another_portion_confirm()),
        ("done", done),
        ("done-print-failed", run(PrintResult(False, "paper_out"), state=done)),
        ("failed-unknown", run(FaceSeen(), FaceResult("unknown", None, 0.1, 0.99))),
        ("failed-balance", run(CardTapped("0000000105"))),
        ("failed-card", run(CardTapped("9999999999"))),
        (
            "already-paid",
            AlreadyPaid(
                2, NOW + timedelta(seconds=45), cand, "张*华", MealSlot.LUNCH, "11:02", "01X"
            ),
        ),
        (
            "staff-required",
            StaffRequired(
                3,
                NOW + timedelta(seconds=90),
                cand,
                "张*华",
                "over_resident_unsynced_limit",
                OverrideKind.LIMITS,
            ),
        ),
    ]


@pytest.fixture
def screens(qtbot: QtBot) -> Iterator[tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]]:
    kiosk = ScriptedKiosk()
    backend = CannedBackend()
    tr = Translator("zh_CN")
    w = KioskWindow(kiosk, backend, tr, clock=lambda: NOW, long_press_ms=300)  # type: ignore[arg-type]
    w.resize(theme.SCREEN_W, theme.SCREEN_H)
    w.show()
    qtbot.waitExposed(w)
    kiosk.publish(idle_info_from_context(CTX, NOW))
    yield w, kiosk, tr, backend
    w.shutdown()
    w.close()
    w.deleteLater()


def px(widget: QWidget) -> float:
    f = widget.font()
    return f.pixelSize() if f.pixelSize() > 0 else f.pointSizeF() * widget.logicalDpiY() / 72.0


def check_elder_rules(w: KioskWindow, where: str) -> None:
    assert (w.width(), w.height()) == (theme.SCREEN_W, theme.SCREEN_H), (
        f"{where}: window grew to {w.size()}"
    )
    page = w.stack.currentWidget()
    for widget in [w.banner, *page.findChildren(QWidget)]:
        if not widget.isVisibleTo(w):
            continue
        if isinstance(widget, QLabel | QAbstractButton | QLineEdit) and (
            widget.text() if not isinstance(widget, QLineEdit) else widget.placeholderText()
        ):
            size = px(widget)
            assert size >= theme.MIN_BODY_PX, (
                f"{where}: {type(widget).__name__} {widget.text()!r} is {size} px"
            )
            spacing = QFontMetricsF(widget.font()).lineSpacing() / size
            assert spacing >= theme.MIN_LINE_SPACING, f"{where}: line spacing {spacing:.2f}"
        if isinstance(widget, QPushButton | QCheckBox):
            assert widget.width() >= theme.MIN_TOUCH_PX and widget.height() >= theme.MIN_TOUCH_PX, (
                f"{where}: touch target {widget.text()!r} is {widget.width()}x{widget.height()}"
            )
        if isinstance(widget, QChartView) and widget.chart() is not None:
            chart = widget.chart()
            assert chart.titleFont().pixelSize() >= theme.MIN_BODY_PX
            for axis in chart.axes():
                assert axis.labelsFont().pixelSize() >= theme.MIN_BODY_PX, (
                    f"{where}: chart axis labels"
                )


def test_contrast_of_every_text_colour_pair() -> None:
    for fg, bg in theme.TEXT_PAIRS:
        assert theme.contrast_ratio(fg, bg) >= theme.MIN_CONTRAST, (fg, bg)
    assert theme.contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert theme.MIN_BODY_PX >= 28 and theme.MIN_TOUCH_PX >= 90


@pytest.mark.parametrize("language", ["zh_CN", "en"])
def test_every_senior_screen_follows_the_elder_rules(
    qtbot: QtBot,
    screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend],
    language: str,
) -> None:
    w, kiosk, tr, _ = screens
    tr.set_language(language)
    for name, state in every_state():
        kiosk.publish(FlowView(state, NOW, kiosk.view.seq + 1))
        if name == "challenge":
            kiosk.publish(ChallengeView("turn", "face.liveness.turn_left", 0.0))
        qtbot.wait(10)
        check_elder_rules(w, f"{language}/{name}")
    w.show_out_of_service("E-test")
    qtbot.wait(10)
    assert w.stack.currentWidget() is w.oos
    check_elder_rules(w, f"{language}/out-of-service")


def test_every_staff_page_follows_the_elder_rules(
    qtbot: QtBot, screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]
) -> None:
    w, _kiosk, tr, backend = screens
    w.open_pin("menu")
    check_elder_rules(w, "pin")
    w.pin.keypad.press("1")
    w.pin.keypad.press("1")
    w.pin.keypad.press("1")
    w.pin.keypad.press("1")
    w.pin.ok_btn.click()
    qtbot.waitUntil(lambda: "密码不对" in w.pin.msg.text(), timeout=3000)
    for d in "2468":
        w.pin.keypad.press(d)
    w.pin.ok_btn.click()
    qtbot.waitUntil(lambda: w.staff_mode, timeout=3000)
    check_elder_rules(w, "staff-home")
    for name in w.pages:
        w.show_page(name)
        qtbot.waitUntil(lambda: w.tasks.busy == 0, timeout=3000)
        qtbot.wait(30)
        check_elder_rules(w, name)
        # what a slow device shows while a page's task runs: the wait message
        page = w.pages[name]
        page.say(tr("common.wait"))  # type: ignore[attr-defined]
        qtbot.wait(10)
        check_elder_rules(w, f"{name}-waiting")
        page.say("")  # type: ignore[attr-defined]
    lookup = w.pages["lookup"]
    w.show_page("lookup")
    qtbot.waitUntil(lambda: w.tasks.busy == 0, timeout=3000)
    lookup.select(backend.residents[0])  # type: ignore[attr-defined]
    assert lookup.pay_btn.isVisibleTo(w)  # type: ignore[attr-defined]
    check_elder_rules(w, "lookup-selected")
    lookup.say(tr("common.wait"))  # type: ignore[attr-defined]
    qtbot.wait(10)
    check_elder_rules(w, "lookup-selected-waiting")
    enrol = w.pages["enrol"]
    enrol.select(backend.residents[0])  # type: ignore[attr-defined]
    enrol.ask_unenrol()  # type: ignore[attr-defined]
    check_elder_rules(w, "enrol-detail")
    tx = w.pages["transactions"]
    w.show_page("transactions")
    qtbot.waitUntil(lambda: w.tasks.busy == 0, timeout=3000)
    tx._clicked(tx.list.item(0))  # type: ignore[attr-defined]
    tx.ask_void()  # type: ignore[attr-defined]
    check_elder_rules(w, "void-reasons")
    w.exit_staff()
    assert not w.staff_mode
    # the session is closed on a worker thread (it writes the audit trail)
    qtbot.waitUntil(lambda: "end_session" in backend.calls, timeout=3000)


def test_language_switch_changes_every_visible_text(
    qtbot: QtBot, screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]
) -> None:
    w, kiosk, tr, _ = screens
    confirm = every_state()[3][1]
    kiosk.publish(FlowView(confirm, NOW, 1))
    qtbot.wait(10)
    zh = [
        w.confirm.title.text(),
        w.confirm.pay_btn.text(),
        w.confirm.cancel_btn.text(),
        w.confirm.due_label.text(),
    ]
    w.idle.language.emit()
    qtbot.waitUntil(lambda: tr.language == "en", timeout=1000)
    qtbot.wait(20)
    en = [
        w.confirm.title.text(),
        w.confirm.pay_btn.text(),
        w.confirm.cancel_btn.text(),
        w.confirm.due_label.text(),
    ]
    assert en == ["Please confirm", "Pay", "Not me / Cancel", "To pay"]
    assert all(a != b for a, b in zip(zh, en, strict=True))
    assert w.confirm.due.text() == "¥7.50"


def test_intents_become_flow_events(
    qtbot: QtBot, screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]
) -> None:
    w, kiosk, _tr, _ = screens
    states = dict(every_state())
    kiosk.publish(FlowView(states["confirm"], NOW, 1))
    w.confirm.pay_btn.click()
    w.confirm.cancel_btn.click()
    kiosk.publish(FlowView(states["keypad"], NOW, 2))
    for d in "1234":
        w.keypad.keypad.keys[d].click()
    assert [type(e).__name__ for e in kiosk.posted] == ["Touch", "Touch", "DigitsEntered"]
    assert kiosk.posted[0].action == "confirm" and kiosk.posted[1].action == "cancel"
    assert kiosk.posted[2].digits == "1234"


def test_hidden_long_press_opens_the_pin_pad(
    qtbot: QtBot, screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]
) -> None:
    from PyQt6.QtCore import QPoint, Qt

    w, *_ = screens
    qtbot.mousePress(w, Qt.MouseButton.LeftButton, pos=QPoint(600, 400))
    qtbot.wait(400)
    qtbot.mouseRelease(w, Qt.MouseButton.LeftButton, pos=QPoint(600, 400))
    assert w.stack.currentWidget() is not w.pin, "only the corner opens staff mode"
    qtbot.mousePress(w, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    qtbot.wait(100)
    qtbot.mouseRelease(w, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    qtbot.wait(300)
    assert w.stack.currentWidget() is not w.pin, "a short tap is not the gesture"
    qtbot.mousePress(w, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    qtbot.waitUntil(lambda: w.stack.currentWidget() is w.pin, timeout=2000)
    qtbot.mouseRelease(w, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    w.pin.cancel_btn.click()
    assert w.stack.currentWidget() is w.idle


def test_exception_hook_shows_out_of_service_never_a_traceback(
    qtbot: QtBot, screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]
) -> None:
    w, *_ = screens
    restore = install_exception_hook(w)
    try:
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        restore()
    qtbot.wait(10)
    assert w.stack.currentWidget() is w.oos
    texts = " ".join(lbl.text() for lbl in w.oos.findChildren(QLabel))
    assert "暂停服务" in texts and "E-ZeroDivisionError" in texts
    assert "Traceback" not in texts and "boom" not in texts


def test_runner_fault_shows_out_of_service(
    qtbot: QtBot, screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]
) -> None:
    w, kiosk, *_ = screens
    kiosk.publish(Fault("worker_failed", "kiosk-face kept failing"))
    qtbot.waitUntil(lambda: w.stack.currentWidget() is w.oos, timeout=1000)
    assert "worker_failed" in w.oos.code.text()


_WATCHDOG_CHILD = """
import sys
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication
from ui_support import CannedBackend, ScriptedKiosk
from ui.views.app import run_kiosk

app = QApplication(sys.argv)
healthy = {"ok": True}

def notify(msg):
    print(msg, flush=True)
    return True

def flip():
    healthy["ok"] = False
    print("--unhealthy--", flush=True)

QTimer.singleShot(600, flip)
QTimer.singleShot(1000, QApplication.quit)
code = run_kiosk(ScriptedKiosk(), CannedBackend(), fullscreen=False, healthy=lambda: healthy["ok"],
                 notify=notify, watchdog_s=0.05, voice=False)
print(f"exit={code}", flush=True)
"""


def test_run_kiosk_feeds_the_watchdog_only_while_healthy(tmp_path: Any) -> None:
    # run_kiosk owns the event loop and quits the application when it ends, so it
    # runs in its own process: the shared test QApplication must never quit.
    import os
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        PYTHONPATH=os.pathsep.join(
            [str(here), str(here.parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    )
    out = subprocess.run(
        [sys.executable, "-c", _WATCHDOG_CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    messages = [ln for ln in out.stdout.splitlines() if ln and not ln.startswith("{")]
    assert "exit=0" in messages, out.stderr[-2000:]
    messages.remove("exit=0")
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"
    cut = messages.index("--unhealthy--")
    assert messages[1:cut].count("WATCHDOG=1") >= 2
    assert "WATCHDOG=1" not in messages[cut:], "an unhealthy kiosk must let the watchdog bite"


def test_voice_prompts_exist_and_play_without_an_audio_device(qtbot: QtBot) -> None:
    from ui.i18n import voice_keys

    tr = Translator("zh_CN")
    player = PromptPlayer(lambda: tr.language)
    try:
        for lang in ("zh_CN", "en"):
            tr.set_language(lang)
            for key in voice_keys():
                path = player.path_for(key)
                assert (
                    path is not None and path.parent.name == lang and path.stat().st_size > 1000
                ), key
        player.play("pay.success")  # no audio device in CI: nothing raises, nothing blocks
        player.play("pay.no_such_prompt")
        assert "pay.no_such_prompt" in player.missing
        assert list(player.played) == ["pay.success", "pay.no_such_prompt"]
    finally:
        player.stop()
        player.deleteLater()


def test_the_record_of_played_prompts_stays_bounded(qtbot: QtBot) -> None:
    """The kiosk runs for weeks and says a few prompts per payment: the record
    of what was played keeps only the recent part."""
    player = PromptPlayer(lambda: "zh_CN", enabled=False)
    try:
        for i in range(5000):
            player.play(f"pay.prompt_{i}")
        assert len(player.played) <= 1000
        assert list(player.played)[-2:] == ["pay.prompt_4998", "pay.prompt_4999"]
    finally:
        player.stop()
        player.deleteLater()


def test_staff_approve_and_staff_lookup_payment_post_flow_events(
    qtbot: QtBot, screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]
) -> None:
    from payment.flow import StaffApprove, StaffLookup

    w, kiosk, _tr, backend = screens
    already = dict(every_state())["already-paid"]
    kiosk.publish(FlowView(already, NOW, 1))
    w.result.staff_btn.click()
    assert w.stack.currentWidget() is w.pin and not w.staff_mode
    for d in "2468":
        w.pin.keypad.press(d)
    w.pin.ok_btn.click()
    qtbot.waitUntil(lambda: any(isinstance(e, StaffApprove) for e in kiosk.posted), timeout=3000)
    assert not w.staff_mode, "approving does not open staff mode"
    assert next(e for e in kiosk.posted if isinstance(e, StaffApprove)).staff_id == "S01"
    # staff pay for a senior without face consent: lookup, then the senior confirms
    w.open_pin("menu")
    for d in "2468":
        w.pin.keypad.press(d)
    w.pin.ok_btn.click()
    qtbot.waitUntil(lambda: w.staff_mode, timeout=3000)
    assert kiosk.modes[-1] == "staff"
    w.show_page("lookup")
    page = w.pages["lookup"]
    qtbot.waitUntil(lambda: page.picker.list.count() == 2, timeout=3000)  # type: ignore[attr-defined]
    page.select(backend.residents[1])  # type: ignore[attr-defined]
    assert page.pay_btn.text() == "为 李*国 支付"  # type: ignore[attr-defined]
    page.pay_btn.click()  # type: ignore[attr-defined]
    lookup = next(e for e in kiosk.posted if isinstance(e, StaffLookup))
    assert (lookup.resident_id, lookup.staff_id) == ("D003", "S01")
    assert not w.staff_mode and kiosk.modes[-1] == "pay"


def test_still_checking_and_another_portion_screens(
    qtbot: QtBot, screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend]
) -> None:
    w, kiosk, tr, _ = screens
    states = dict(every_state())
    # a charge that outlived its timeout: "checking", never "failed", nothing to tap away
    pending = states["charge-pending"]
    assert isinstance(pending, ChargePending)
    kiosk.publish(FlowView(pending, NOW, 1))
    qtbot.wait(10)
    assert w.stack.currentWidget() is w.result
    assert w.result.title.text() == "正在确认支付结果，请稍候"
    assert w.result.action.text() == "请不要重复支付。如需帮助，请找工作人员。"
    assert w.result.big.text() == "7.50 元"
    assert "失败" not in w.result.title.text() and not w.result._finish_enabled
    assert not w.result.portion_btn.isVisibleTo(w)
    # the already-paid screen offers 再来一份 beside the staff button; it posts the event
    kiosk.publish(FlowView(states["already-paid"], NOW, 2))
    qtbot.wait(10)
    assert w.result.portion_btn.isVisibleTo(w) and w.result.portion_btn.text() == "再来一份"
    w.result.portion_btn.click()
    assert isinstance(kiosk.posted[-1], AnotherPortion)
    # the second portion's confirm screen shows its full price and says why
    kiosk.publish(FlowView(states["confirm-another"], NOW, 3))
    qtbot.wait(10)
    assert w.stack.currentWidget() is w.confirm
    assert w.confirm.title.text() == "再来一份：请确认"
    assert w.confirm.note.text() == "今天 11:02 已付过一份午餐。这一份没有补贴，按原价支付。"
    assert w.confirm.due.text() == "15.00 元" and w.confirm.pay_btn.text() == "确认再买一份"
    tr.set_language("en")
    qtbot.wait(10)
    assert w.confirm.title.text() == "Another portion: please confirm"
    assert w.confirm.pay_btn.text() == "Pay for another portion"
    w.confirm.pay_btn.click()
    assert isinstance(kiosk.posted[-1], Touch) and kiosk.posted[-1].action == "confirm"


def _staff_page(qtbot: QtBot, w: KioskWindow, name: str) -> Any:
    """Log in with the staff PIN and open page ``name``."""
    w.open_pin("menu")
    for d in "2468":
        w.pin.keypad.press(d)
    w.pin.ok_btn.click()
    qtbot.waitUntil(lambda: w.staff_mode, timeout=3000)
    w.show_page(name)
    return w.pages[name]


@pytest.mark.parametrize("district", [True, False])
def test_top_up_page_offers_the_district_wallet_only_when_the_district_has_them(
    qtbot: QtBot,
    screens: tuple[KioskWindow, ScriptedKiosk, Translator, CannedBackend],
    district: bool,
) -> None:
    from terminal.core.money import Money

    w, _kiosk, _tr, backend = screens
    backend.district_wallet = district
    page = _staff_page(qtbot, w, "topup")
    qtbot.waitUntil(lambda: w.tasks.busy == 0, timeout=3000)
    page.select(backend.residents[1])  # type: ignore[attr-defined]
    row = page.wallet_row  # type: ignore[attr-defined]
    assert row.isVisibleTo(w) is district
    assert page.local_btn.isChecked()  # type: ignore[attr-defined]
    if district:
        assert page.district_btn.text() == "全城账户（外出用餐）"  # type: ignore[attr-defined]
        page.district_btn.click()  # type: ignore[attr-defined]
        check_elder_rules(w, "topup-district")
    for d in "20":
        page.keypad.press(d)  # type: ignore[attr-defined]
    page.ok_btn.click()  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: w.tasks.busy == 0 and page.msg.isVisible(), timeout=3000)  # type: ignore[attr-defined]
    if district:
        assert backend.district_topups == [("D003", Money(2000), "S01")]
        assert "topup" not in backend.calls
        assert page.msg.text() == "已为全城账户充值 20.00 元，联网同步后到账"  # type: ignore[attr-defined]
    else:
        assert backend.district_topups == [] and "topup" in backend.calls
        assert page.msg.text() == "已充值 20.00 元，余额 20.00 元"  # type: ignore[attr-defined]
    # next time the page opens, this centre's wallet is chosen again
    w.show_page("menu")
    w.show_page("topup")
    qtbot.waitUntil(lambda: w.tasks.busy == 0, timeout=3000)
    assert page.local_btn.isChecked()  # type: ignore[attr-defined]
