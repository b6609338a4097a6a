"""City-wide meals through the window: a senior of another centre whose face
this terminal does not know is told kindly to use the card, taps it, sees the
visitor's confirm screen (home centre, category, subsidy, what is due and how
it is paid) and pays; and the same when the district says this meal's subsidy
was already used at another centre. Real flow, real store, real face pipeline;
the district is the in-memory one with the platform's claim rule."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from kiosk_world import FAST, World, follow_prompts
from PyQt6.QtCore import Qt
from pytestqt.qtbot import QtBot
from test_kiosk_visitors import start
from test_ui_journeys import click, staff_login, swipe_card, wait_state
from ui_support import STALL_LIMIT_S, StallDetector

from payment.domain import SeniorCategory
from payment.visiting import PaymentSource
from terminal.kiosk.visitors import DistrictDirectory, DistrictSenior
from ui.i18n import Translator
from ui.views.window import KioskWindow

WAIT_MS = 20_000
CARD = "0000009001"
DAY, SLOT = "2026-03-02", "lunch"


@pytest.fixture
def district() -> DistrictDirectory:
    senior = DistrictSenior(
        "P-7",
        "centre-a",
        (SeniorCategory.AGE_80_89,),
        cards=(CARD,),
        lookup=("王芳", "5678"),
        home_centre_name="东风社区照料中心",
    )
    return DistrictDirectory([senior])


@pytest.fixture
def win(qtbot: QtBot, world: World, district: DistrictDirectory) -> Iterator[KioskWindow]:
    app = start(
        world, district, camera=True, source=world.source, runner_config=FAST, challenge_seconds=4.0
    )
    app.runner.subscribe(follow_prompts(world.source))
    w = KioskWindow(
        app.runner,
        app.backend,
        Translator("zh_CN"),
        clock=world.clock.now,
        wedge_key=app.wedge_key,
        long_press_ms=300,
    )
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.shutdown()
    w.close()
    w.deleteLater()


def visit_meals(world: World) -> list[Any]:
    from datetime import date

    return world.services.payment.visitors.rows(date.fromisoformat(DAY))


def confirm_texts(w: KioskWindow) -> str:
    c = w.confirm
    return " | ".join(
        [c.title.text(), c.name.text(), c.category.text(), c.due.text(), c.note.text()]
        + [lab.text() for lab in c.findChildren(type(c.name))]
    )


def test_unknown_face_then_card_then_visitor_confirm_then_paid(
    qtbot: QtBot,
    world: World,
    win: KioskWindow,
    district: DistrictDirectory,
    stall_detector: StallDetector,
) -> None:
    stall_detector.start()
    world.source.show("kit")  # a live face this terminal has never enrolled
    wait_state(qtbot, win, "Failed")
    assert win.result.title.text() == "没有认出您"
    assert "登记的中心" in win.result.lines.text() and "刷市民卡" in win.result.lines.text()
    world.source.show(None)
    swipe_card(qtbot, win, CARD)
    wait_state(qtbot, win, "Confirm")
    text = confirm_texts(win)
    assert win.confirm.title.text() == "欢迎来用餐，请确认"
    category = Translator("zh_CN")(SeniorCategory.AGE_80_89.i18n_key)
    assert "登记中心" in text and "东风社区照料中心" in text  # the name, not the id
    assert category in win.confirm.category.text()
    assert "现金" in text and "确认后请在柜台付现金" in win.confirm.note.text()
    assert win.confirm.due.text() == "11.00 元"  # 15.00 less the 4.00 subsidy
    with stall_detector.paused():
        assert not visit_meals(world)
        assert ("P-7", DAY, SLOT) in district.claims  # claimed before the confirm screen
    qtbot.mouseClick(win.confirm.pay_btn, Qt.MouseButton.LeftButton)
    wait_state(qtbot, win, "Done")
    assert win.result.title.text() == "已登记，请付现金"
    assert "请在柜台付现金 11.00 元" in win.result.lines.text()
    worst = stall_detector.stop()
    assert worst < STALL_LIMIT_S, f"GUI thread stalled {worst * 1000:.0f} ms"
    [meal] = visit_meals(world)
    assert (meal.person_id, meal.home_centre_id, meal.subsidy_fen) == ("P-7", "centre-a", 400)
    assert district.claims[("P-7", DAY, SLOT)] == meal.record_id
    assert (
        world.printed[-1].resident_masked == "来访长者·东风社区照料中心"
    )  # the home centre by name


def test_subsidy_already_used_at_another_centre(
    qtbot: QtBot,
    world: World,
    win: KioskWindow,
    district: DistrictDirectory,
    stall_detector: StallDetector,
) -> None:
    district.take_slot("P-7", DAY, SLOT)  # the senior ate at centre C a moment ago
    stall_detector.start()
    swipe_card(qtbot, win, CARD)
    wait_state(qtbot, win, "Confirm")
    assert "这一餐的补贴今天已在其他中心用过" in win.confirm.note.text()
    assert win.confirm.due.text() == "15.00 元"
    qtbot.mouseClick(win.confirm.pay_btn, Qt.MouseButton.LeftButton)
    wait_state(qtbot, win, "Done")
    worst = stall_detector.stop()
    assert worst < STALL_LIMIT_S, f"GUI thread stalled {worst * 1000:.0f} ms"
    [meal] = visit_meals(world)
    assert meal.subsidy_fen == 0
    assert district.claims[("P-7", DAY, SLOT)] == "elsewhere"  # the other centre keeps it


def test_staff_look_up_a_visitor_by_name_and_phone(
    qtbot: QtBot, world: World, win: KioskWindow, district: DistrictDirectory
) -> None:
    staff_login(qtbot, win)
    click(qtbot, win.home.buttons["lookup"])
    page = win.pages["lookup"]
    click(qtbot, page.visitor_btn)  # type: ignore[attr-defined]
    assert page.stack.currentWidget() is page.visitor_form  # type: ignore[attr-defined]
    page.visitor_name.setText("王芳")  # type: ignore[attr-defined]  # typed with the IME
    qtbot.keyClicks(page.visitor_phone, "56")  # type: ignore[attr-defined]
    click(qtbot, page.visitor_pay)  # type: ignore[attr-defined]
    assert "后四位" in page.msg.text() and win.staff_mode  # not four digits: nothing asked
    qtbot.keyClicks(page.visitor_phone, "78")  # type: ignore[attr-defined]
    click(qtbot, page.visitor_pay)  # type: ignore[attr-defined]
    wait_state(qtbot, win, "Confirm")  # the senior confirms on the normal screens
    assert not win.staff_mode
    assert win.confirm.name.text() == "外中心长者"
    click(qtbot, win.confirm.pay_btn)
    wait_state(qtbot, win, "Done")
    [meal] = visit_meals(world)
    assert (meal.person_id, meal.subsidy_fen) == ("P-7", 400)
    [tx] = [t for t in world.services.payment.transactions(resident_id="P-7")]
    assert (tx.method, tx.staff_id) == ("staff", "S-TEST")


def test_offline_limit_spent_then_staff_grant_the_subsidy(
    qtbot: QtBot, world: World, win: KioskWindow, district: DistrictDirectory
) -> None:
    from payment.visiting import OfflineVisitLimits

    store = world.services.payment
    assert store.config.visitors is not None
    spent = replace(store.config.visitors, limits=OfflineVisitLimits(0, 0))
    store.config = replace(store.config, visitors=spent)
    district.online = False  # the platform does not answer: the roster decides
    swipe_card(qtbot, win, CARD)
    wait_state(qtbot, win, "Confirm")
    assert win.confirm.due.text() == "15.00 元"
    assert "工作人员可批准补贴" in win.confirm.note.text() and win.confirm.staff_btn.isVisible()
    click(qtbot, win.confirm.staff_btn)
    qtbot.waitUntil(lambda: win.stack.currentWidget() is win.pin, timeout=2000)
    for d in "2468":
        click(qtbot, win.pin.keypad.keys[d])
    click(qtbot, win.pin.ok_btn)
    qtbot.waitUntil(lambda: win.confirm.due.text() == "11.00 元", timeout=10_000)
    assert not win.confirm.staff_btn.isVisible()
    assert "稍后核对" in win.confirm.note.text()  # still for the platform's review
    click(qtbot, win.confirm.pay_btn)
    wait_state(qtbot, win, "Done")
    [meal] = visit_meals(world)
    assert (meal.subsidy_fen, meal.review) == (400, True)


def test_home_wallet_online_shows_the_district_wallet_and_debits_on_pay(
    qtbot: QtBot,
    world: World,
    win: KioskWindow,
    district: DistrictDirectory,
) -> None:
    """District policy home_wallet, online: the confirm screen shows the district
    wallet before and after; the claim and the debit are made when the senior
    presses pay, and the result says what is left."""
    district.payment_source = PaymentSource.HOME_WALLET
    district.wallets["P-7"] = 2000
    swipe_card(qtbot, win, CARD)
    wait_state(qtbot, win, "Confirm")
    text = confirm_texts(win)
    assert "账户余额" in text and "20.00 元 → 9.00 元" in text, text
    assert district.wallets["P-7"] == 2000  # nothing debited before pay
    assert ("P-7", DAY, SLOT) not in district.claims
    click(qtbot, win.confirm.pay_btn)
    wait_state(qtbot, win, "Done")
    assert "登记中心账户余额 9.00 元" in win.result.lines.text()
    assert district.wallets["P-7"] == 900
    [meal] = visit_meals(world)
    assert district.claims[("P-7", DAY, SLOT)] == meal.record_id


def test_home_wallet_offline_asks_for_cash_kindly(
    qtbot: QtBot,
    world: World,
    win: KioskWindow,
    district: DistrictDirectory,
) -> None:
    """The same policy with the platform down: the roster decides, the meal is
    paid in cash, and the screen says why."""
    district.payment_source = PaymentSource.HOME_WALLET
    district.wallets["P-7"] = 2000
    district.online = False
    swipe_card(qtbot, win, CARD)
    wait_state(qtbot, win, "Confirm")
    assert win.confirm.note.text() == "网络不通，登记中心账户用不了，请付现金。"
    assert "现金" in confirm_texts(win)
    click(qtbot, win.confirm.pay_btn)
    wait_state(qtbot, win, "Done")
    assert win.result.title.text() == "已登记，请付现金"
    assert district.wallets["P-7"] == 2000  # the district wallet did not move
    [meal] = visit_meals(world)
    assert meal.review and meal.subsidy_fen == 400


def test_the_manager_line_says_what_the_home_centre_owes_from_the_district_wallet() -> None:
    from payment.visiting import OwedLine, VisitorsDay
    from ui.presenters.manager import _visitors_text

    day = VisitorsDay(
        2, 3, 0, (OwedLine("centre-a", 2, 2, 600, 1200), OwedLine("centre-c", 1, 1, 300))
    )
    text = _visitors_text(day, Translator("zh_CN"))
    assert "centre-a 2 份 6.00 元（另账户付款 12.00 元）" in text
    assert "centre-c 1 份 3.00 元" in text and text.count("账户付款") == 1
    english = _visitors_text(day, Translator("en"))
    assert "centre-a 2 meals ¥6.00 (+ home account ¥12.00)" in english
