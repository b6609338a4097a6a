"""Payment domain values: names, categories, residents, slots, menus."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from payment.domain import (
    DEFAULT_SLOT_WINDOWS,
    ItemKind,
    MealSlot,
    Menu,
    MenuItem,
    OrderLine,
    PriorMeal,
    Resident,
    SeniorCategory,
    SlotWindow,
    SlotWindows,
    age_band,
    age_on,
    best_category,
    mask_name,
    parse_categories,
    service_date,
    slot_at,
    subsidised_meals,
)
from payment.errors import DomainError, MenuError
from terminal.core.clock import CHINA_TZ
from terminal.core.errors import TerminalError
from terminal.core.money import Money


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三华", "张*华"),
        ("张三", "张*"),
        ("张", "张"),
        ("欧阳娜娜", "欧**娜"),
        ("  李四 ", "李*"),
        ("", ""),
        ("Li Wei", "L* W*i"),
        ("买买提·艾力", "买****力"),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("text", "cat"),
    [
        ("dibao", SeniorCategory.DIBAO),
        ("低保", SeniorCategory.DIBAO),
        ("低边", SeniorCategory.DIBIAN),
        ("特困", SeniorCategory.TEKUN),
        (" age_90_plus ", SeniorCategory.AGE_90_PLUS),
        ("80-89岁", SeniorCategory.AGE_80_89),
        ("disabled", SeniorCategory.DISABLED),
    ],
)
def test_category_parse(text: str, cat: SeniorCategory) -> None:
    assert SeniorCategory.parse(text) is cat


def test_category_labels_and_unknown() -> None:
    assert SeniorCategory.DIBAO.label() == "低保"
    assert SeniorCategory.TEKUN.label_zh == "特困"
    assert SeniorCategory.DIBAO.label("en") == "minimum living allowance"
    assert SeniorCategory.DIBAO.i18n_key == "category.dibao"
    with pytest.raises(DomainError, match="unknown senior category") as err:
        SeniorCategory.parse("vip")
    assert err.value.code == "bad_category"
    assert isinstance(err.value, TerminalError)


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (59, None),
        (60, SeniorCategory.AGE_60_69),
        (69, SeniorCategory.AGE_60_69),
        (70, SeniorCategory.AGE_70_79),
        (85, SeniorCategory.AGE_80_89),
        (90, SeniorCategory.AGE_90_PLUS),
        (104, SeniorCategory.AGE_90_PLUS),
    ],
)
def test_age_band(age: int, band: SeniorCategory | None) -> None:
    assert age_band(age) is band


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (date(1946, 3, 1), date(2026, 2, 28), 79),
        (date(1946, 3, 1), date(2026, 3, 1), 80),
        (date(1944, 2, 29), date(2026, 2, 28), 81),
    ],
)
def test_age_on(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


def test_parse_categories_and_best() -> None:
    assert parse_categories([]) == frozenset({SeniorCategory.NONE})
    cats = parse_categories(["age_80_89", "低保"])
    assert cats == {SeniorCategory.AGE_80_89, SeniorCategory.DIBAO}
    assert best_category(cats) is SeniorCategory.DIBAO
    assert best_category([]) is SeniorCategory.NONE


def test_resident_create_masks_and_validates() -> None:
    r = Resident.create(
        "R-001", "张三华", ["低保", "age_80_89"], phone_last4="1234", card_ids=[" C1 "]
    )
    assert r.name_masked == "张*华"
    assert r.categories == {SeniorCategory.DIBAO, SeniorCategory.AGE_80_89}
    assert r.has_card("C1") and not r.has_card("C2")
    assert r.display_category is SeniorCategory.DIBAO
    assert "张三华" not in repr(r)
    assert Resident("R2", "王*").categories == {SeniorCategory.NONE}
    assert Resident("R3", "王*", frozenset()).categories == {SeniorCategory.NONE}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"resident_id": ""}, "bad_resident_id"),
        ({"resident_id": "a b"}, "bad_resident_id"),
        ({"resident_id": "x" * 65}, "bad_resident_id"),
        ({"phone_last4": "123"}, "bad_phone_last4"),
        ({"phone_last4": "12a4"}, "bad_phone_last4"),
        ({"card_ids": frozenset({" "})}, "bad_card_id"),
    ],
)
def test_resident_rejects(kwargs: dict[str, object], code: str) -> None:
    base: dict[str, object] = {"resident_id": "R1", "name_masked": "张*"}
    base.update(kwargs)
    with pytest.raises(DomainError) as err:
        Resident(**base)  # type: ignore[arg-type]
    assert err.value.code == code


def _at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 1, 5, hh, mm, ss, tzinfo=CHINA_TZ)


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        (_at(6, 29, 59), None),
        (_at(6, 30), MealSlot.BREAKFAST),
        (_at(8, 59, 59), MealSlot.BREAKFAST),
        (_at(9, 0), None),
        (_at(10, 30), MealSlot.LUNCH),
        (_at(13, 29), MealSlot.LUNCH),
        (_at(13, 30), None),
        (_at(16, 30), MealSlot.DINNER),
        (_at(18, 59), MealSlot.DINNER),
        (_at(19, 0), None),
        (_at(23, 0), None),
        # the same instants in UTC are converted to the centre's local time
        (datetime(2026, 1, 5, 3, 0, tzinfo=UTC), MealSlot.LUNCH),
        (datetime(2026, 1, 4, 23, 0, tzinfo=UTC), MealSlot.BREAKFAST),
    ],
)
def test_slot_at_default_windows(now: datetime, slot: MealSlot | None) -> None:
    assert slot_at(now) is slot


def test_slot_windows_configurable_and_service_date() -> None:
    windows = SlotWindows.from_dict({"lunch": "11:00-12:00", "dinner": ["17:00", "18:00"]})
    assert slot_at(_at(10, 45), windows) is None
    assert slot_at(_at(11, 0), windows) is MealSlot.LUNCH
    assert slot_at(_at(17, 30), windows) is MealSlot.DINNER
    assert slot_at(_at(7, 0), windows) is None  # no breakfast service
    assert windows.to_dict() == {"lunch": "11:00-12:00", "dinner": "17:00-18:00"}
    assert DEFAULT_SLOT_WINDOWS.to_dict()["breakfast"] == "06:30-09:00"
    # 23:30 UTC on the 4th is the morning of the 5th in China
    assert service_date(datetime(2026, 1, 4, 23, 30, tzinfo=UTC)) == date(2026, 1, 5)
    assert MealSlot.LUNCH.label() == "午餐" and MealSlot.parse("晚餐") is MealSlot.DINNER


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"lunch": "11:00"}, "bad_slot_window"),
        ({"lunch": "12:00-11:00"}, "bad_slot_window"),
        ({"lunch": "11:00-25:00"}, "bad_time"),
        ({"supper": "11:00-12:00"}, "bad_slot"),
        ({"lunch": "10:00-12:00", "breakfast": "07:00-10:30"}, "bad_slot_window"),
        ({"lunch": 5}, "bad_slot_window"),
    ],
)
def test_slot_windows_reject(data: dict[str, object], code: str) -> None:
    with pytest.raises(DomainError) as err:
        SlotWindows.from_dict(data)
    assert err.value.code == code


def test_slot_at_needs_aware_time() -> None:
    with pytest.raises(DomainError, match="timezone-aware"):
        slot_at(datetime(2026, 1, 5, 12, 0))


MENU_DOC = {
    "date": "2026-01-05",
    "items": [
        {"item_id": "B1", "name": "早餐套餐", "price_fen": 500, "slots": ["breakfast"]},
        {"item_id": "L1", "name": "午餐套餐A", "price_fen": 1500, "slots": ["lunch"]},
        {"item_id": "L2", "name": "午餐套餐B", "price_fen": 1800, "slots": ["lunch", "dinner"]},
        {
            "item_id": "D1",
            "name": "豆浆",
            "price_fen": 200,
            "slots": ["breakfast", "lunch"],
            "kind": "item",
            "subsidisable": False,
        },
    ],
}


def test_menu_parse_and_order_lines() -> None:
    menu = Menu.from_dict(MENU_DOC)
    assert menu.day == date(2026, 1, 5)
    assert Menu.from_dict(menu.to_dict()) == menu
    assert [i.item_id for i in menu.items_for(MealSlot.LUNCH)] == ["L1", "L2", "D1"]
    assert menu.default_lines(MealSlot.LUNCH) == (OrderLine("L1", "午餐套餐A", Money(1500)),)
    assert menu.default_lines(MealSlot.DINNER)[0].item_id == "L2"
    lines = menu.order_lines(MealSlot.LUNCH, [("L2", 1), ("D1", 1), ("D1", 1)])
    assert [(ln.item_id, ln.quantity, ln.amount.fen, ln.subsidisable) for ln in lines] == [
        ("L2", 1, 1800, True),
        ("D1", 2, 400, False),
    ]
    drinks_only = Menu(date(2026, 1, 5), (menu.items[3],))
    assert drinks_only.default_lines(MealSlot.LUNCH) == ()


@pytest.mark.parametrize(
    ("selection", "code"),
    [
        ([("X9", 1)], "unknown_item"),
        ([("B1", 1)], "item_not_in_slot"),
        ([("L1", 0)], "bad_quantity"),
        ([("L1", 10)], "bad_quantity"),
    ],
)
def test_menu_order_rejects(selection: list[tuple[str, int]], code: str) -> None:
    menu = Menu.from_dict(MENU_DOC)
    with pytest.raises(MenuError) as err:
        menu.order_lines(MealSlot.LUNCH, selection)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"items": []}, "'date' is required"),
        ({"date": "2026-13-01", "items": []}, "YYYY-MM-DD"),
        ({"date": "2026-01-05", "items": {}}, "items must be a list"),
        (
            {"date": "2026-01-05", "items": [{"item_id": "A", "name": "x", "slots": ["lunch"]}]},
            "'price_fen' is required",
        ),
        (
            {
                "date": "2026-01-05",
                "items": [{"item_id": "A", "name": "x", "price_fen": 1.5, "slots": ["lunch"]}],
            },
            "non-negative integer",
        ),
        (
            {
                "date": "2026-01-05",
                "items": [{"item_id": "A", "name": "x", "price_fen": -1, "slots": ["lunch"]}],
            },
            "non-negative integer",
        ),
        (
            {
                "date": "2026-01-05",
                "items": [{"item_id": "A", "name": "x", "price_fen": 1, "slots": ["tea"]}],
            },
            "unknown meal slot",
        ),
        (
            {
                "date": "2026-01-05",
                "items": [{"item_id": "A", "name": "x", "price_fen": 1, "slots": []}],
            },
            "at least one slot",
        ),
        (
            {
                "date": "2026-01-05",
                "items": [
                    {"item_id": "A", "name": "x", "price_fen": 1, "slots": ["lunch"], "x": 1}
                ],
            },
            "unknown field",
        ),
        (
            {
                "date": "2026-01-05",
                "items": [
                    {"item_id": "A", "name": "x", "price_fen": 1, "slots": ["lunch"]},
                    {"item_id": "A", "name": "y", "price_fen": 1, "slots": ["lunch"]},
                ],
            },
            "unique",
        ),
        (
            {
                "date": "2026-01-05",
                "items": [{"item_id": "A", "name": " ", "price_fen": 1, "slots": ["lunch"]}],
            },
            "name is required",
        ),
    ],
)
def test_menu_rejects(doc: dict[str, object], message: str) -> None:
    with pytest.raises(MenuError, match=message):
        Menu.from_dict(doc)


def test_menu_item_kind_and_prices_are_money() -> None:
    item = MenuItem("L1", "套餐", Money(1500), frozenset({MealSlot.LUNCH}))
    assert item.kind is ItemKind.SET_MEAL
    with pytest.raises(TypeError):
        Money(15.0)  # type: ignore[arg-type]


def test_subsidised_meals_counts_only_live_subsidised_in_slot() -> None:
    d = date(2026, 1, 5)
    at = _at(11, 0)
    meals = [
        PriorMeal("a", at, MealSlot.LUNCH, d, True),
        PriorMeal("b", at, MealSlot.LUNCH, d, True, voided=True),
        PriorMeal("c", at, MealSlot.LUNCH, d, False),
        PriorMeal("d", at, MealSlot.DINNER, d, True),
        PriorMeal("e", at, MealSlot.LUNCH, date(2026, 1, 4), True),
    ]
    assert subsidised_meals(meals, MealSlot.LUNCH, d) == 1


def test_slot_window_contains() -> None:
    w = SlotWindow(time(10, 30), time(13, 30))
    assert w.contains(time(10, 30)) and not w.contains(time(13, 30))
