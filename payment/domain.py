"""Payment domain values: senior categories, residents, meal slots and menus.

Pure data and functions (no IO). Money is :class:`terminal.core.money.Money`
(integer fen); time is always passed in as an aware ``datetime``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from enum import StrEnum
from typing import Any

from payment.errors import DomainError, MenuError
from terminal.core.clock import CHINA_TZ
from terminal.core.money import Money
from terminal.core.names import is_code, mask_name

# --------------------------------------------------------------------------- categories


class SeniorCategory(StrEnum):
    """Senior categories that subsidy rules are written for.

    A resident may belong to several (e.g. 80-89 and 低保); the quote picks the
    category whose rule gives the largest subsidy (see ``payment.subsidy``).
    """

    AGE_60_69 = "age_60_69"
    AGE_70_79 = "age_70_79"
    AGE_80_89 = "age_80_89"
    AGE_90_PLUS = "age_90_plus"
    DIBAO = "dibao"  # 低保: minimum-living-allowance household
    DIBIAN = "dibian"  # 低边: marginal low-income household
    TEKUN = "tekun"  # 特困: extremely poor, supported person
    DISABLED = "disabled"
    NONE = "none"

    @property
    def i18n_key(self) -> str:
        return f"category.{self.value}"

    def label(self, lang: str = "zh_CN") -> str:
        """Display label (zh_CN by default, ``en`` available)."""
        table = CATEGORY_LABELS.get(lang, CATEGORY_LABELS["zh_CN"])
        return table[self]

    @property
    def label_zh(self) -> str:
        return CATEGORY_LABELS["zh_CN"][self]

    @classmethod
    def parse(cls, text: str) -> SeniorCategory:
        """Accept a code (``dibao``) or its Chinese label (``低保``)."""
        key = text.strip()
        for cat in cls:
            if key == cat.value or key == CATEGORY_LABELS["zh_CN"][cat]:
                return cat
        raise DomainError(f"unknown senior category {key!r}", code="bad_category")


CATEGORY_LABELS: Mapping[str, Mapping[SeniorCategory, str]] = {
    "zh_CN": {
        SeniorCategory.AGE_60_69: "60-69岁",
        SeniorCategory.AGE_70_79: "70-79岁",
        SeniorCategory.AGE_80_89: "80-89岁",
        SeniorCategory.AGE_90_PLUS: "90岁以上",
        SeniorCategory.DIBAO: "低保",
        SeniorCategory.DIBIAN: "低边",
        SeniorCategory.TEKUN: "特困",
        SeniorCategory.DISABLED: "残疾",
        SeniorCategory.NONE: "普通",
    },
    "en": {
        SeniorCategory.AGE_60_69: "aged 60-69",
        SeniorCategory.AGE_70_79: "aged 70-79",
        SeniorCategory.AGE_80_89: "aged 80-89",
        SeniorCategory.AGE_90_PLUS: "aged 90+",
        SeniorCategory.DIBAO: "minimum living allowance",
        SeniorCategory.DIBIAN: "marginal low income",
        SeniorCategory.TEKUN: "extreme poverty support",
        SeniorCategory.DISABLED: "disabled",
        SeniorCategory.NONE: "general",
    },
}

# When two categories give the same subsidy, the earlier one here is recorded
# (needs-based budget lines before age bands, older bands before younger).
CATEGORY_PRIORITY: tuple[SeniorCategory, ...] = (
    SeniorCategory.TEKUN,
    SeniorCategory.DIBAO,
    SeniorCategory.DIBIAN,
    SeniorCategory.DISABLED,
    SeniorCategory.AGE_90_PLUS,
    SeniorCategory.AGE_80_89,
    SeniorCategory.AGE_70_79,
    SeniorCategory.AGE_60_69,
    SeniorCategory.NONE,
)


def age_on(birth: date, day: date) -> int:
    """Completed years of age on ``day``."""
    years = day.year - birth.year
    if (day.month, day.day) < (birth.month, birth.day):
        years -= 1
    return years


def age_band(age: int) -> SeniorCategory | None:
    """The age-band category for an age, or None below 60."""
    if age >= 90:
        return SeniorCategory.AGE_90_PLUS
    if age >= 80:
        return SeniorCategory.AGE_80_89
    if age >= 70:
        return SeniorCategory.AGE_70_79
    if age >= 60:
        return SeniorCategory.AGE_60_69
    return None


def parse_categories(values: Iterable[str | SeniorCategory]) -> frozenset[SeniorCategory]:
    """Parse category codes or labels; an empty input means ``{NONE}``."""
    out = {v if isinstance(v, SeniorCategory) else SeniorCategory.parse(v) for v in values}
    return frozenset(out) if out else frozenset({SeniorCategory.NONE})


def best_category(categories: Iterable[SeniorCategory]) -> SeniorCategory:
    """The highest-priority category (for display when no subsidy decides it)."""
    cats = set(categories)
    for cat in CATEGORY_PRIORITY:
        if cat in cats:
            return cat
    return SeniorCategory.NONE


# --------------------------------------------------------------------------- residents


_LAST4_RE = re.compile(r"^\d{4}$")


def validate_resident_id(resident_id: str) -> str:
    rid = resident_id.strip()
    if not is_code(rid):
        raise DomainError(
            "resident id must be 1-64 letters, digits, '-', '_' or '.'", code="bad_resident_id"
        )
    return rid


class VerificationMethod(StrEnum):
    """How the payer was identified. Every transaction records one."""

    FACE = "face"
    CARD = "card"
    ID_CARD = "id_card"
    STAFF = "staff"


class SecondFactor(StrEnum):
    """What confirmed a face payment beyond the touch confirmation."""

    PHONE_LAST4 = "phone_last4"
    CARD = "card"
    STAFF = "staff"


@dataclass(frozen=True, slots=True)
class Resident:
    """A senior as the payment domain sees them.

    Only the masked name is held (the roster keeps the full name encrypted).
    ``phone_last4`` and ``card_ids`` are used as second factors and card
    lookups; they are never put into flow states or effects.
    """

    resident_id: str
    name_masked: str
    categories: frozenset[SeniorCategory] = frozenset({SeniorCategory.NONE})
    consent_face_pay: bool = False
    consent_attendance: bool = False
    phone_last4: str | None = None
    card_ids: frozenset[str] = frozenset()
    active: bool = True

    def __post_init__(self) -> None:
        validate_resident_id(self.resident_id)
        if self.phone_last4 is not None and not _LAST4_RE.match(self.phone_last4):
            raise DomainError("phone_last4 must be exactly 4 digits", code="bad_phone_last4")
        if not self.categories:
            object.__setattr__(self, "categories", frozenset({SeniorCategory.NONE}))
        if any(not c.strip() for c in self.card_ids):
            raise DomainError("card ids must not be empty", code="bad_card_id")

    @classmethod
    def create(
        cls,
        resident_id: str,
        name: str,
        categories: Iterable[str | SeniorCategory] = (),
        *,
        consent_face_pay: bool = False,
        consent_attendance: bool = False,
        phone_last4: str | None = None,
        card_ids: Iterable[str] = (),
        active: bool = True,
    ) -> Resident:
        """Build from a full name (masked here) and category codes or labels."""
        return cls(
            resident_id=resident_id,
            name_masked=mask_name(name),
            categories=parse_categories(categories),
            consent_face_pay=consent_face_pay,
            consent_attendance=consent_attendance,
            phone_last4=phone_last4,
            card_ids=frozenset(c.strip() for c in card_ids),
            active=active,
        )

    @property
    def display_category(self) -> SeniorCategory:
        return best_category(self.categories)

    def has_card(self, card_id: str) -> bool:
        return card_id.strip() in self.card_ids


# --------------------------------------------------------------------------- meal slots


class MealSlot(StrEnum):
    BREAKFAST = "breakfast"
    LUNCH = "lunch"
    DINNER = "dinner"

    @property
    def i18n_key(self) -> str:
        return f"slot.{self.value}"

    def label(self, lang: str = "zh_CN") -> str:
        table = SLOT_LABELS.get(lang, SLOT_LABELS["zh_CN"])
        return table[self]

    @classmethod
    def parse(cls, text: str) -> MealSlot:
        key = text.strip().lower()
        for slot in cls:
            if key == slot.value or text.strip() == SLOT_LABELS["zh_CN"][slot]:
                return slot
        raise DomainError(f"unknown meal slot {text.strip()!r}", code="bad_slot")


SLOT_LABELS: Mapping[str, Mapping[MealSlot, str]] = {
    "zh_CN": {MealSlot.BREAKFAST: "早餐", MealSlot.LUNCH: "午餐", MealSlot.DINNER: "晚餐"},
    "en": {MealSlot.BREAKFAST: "breakfast", MealSlot.LUNCH: "lunch", MealSlot.DINNER: "dinner"},
}

_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str) -> time:
    m = _HHMM_RE.match(text.strip())
    if not m:
        raise DomainError(f"not a time of day HH:MM: {text.strip()!r}", code="bad_time")
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True, slots=True)
class SlotWindow:
    """Service window of one slot, local time, start inclusive, end exclusive."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise DomainError("a slot window must start before it ends", code="bad_slot_window")

    def contains(self, t: time) -> bool:
        return self.start <= t < self.end

    def text(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class SlotWindows:
    """Service windows per slot in the centre's local time zone. Windows may
    not overlap; slots without a window are not served."""

    windows: Mapping[MealSlot, SlotWindow]
    tz: tzinfo = CHINA_TZ

    def __post_init__(self) -> None:
        ordered = sorted(self.windows.values(), key=lambda w: w.start)
        for a, b in itertools.pairwise(ordered):
            if b.start < a.end:
                raise DomainError("meal slot windows overlap", code="bad_slot_window")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], tz: tzinfo = CHINA_TZ) -> SlotWindows:
        """Parse ``{"lunch": "10:30-13:30", ...}`` (or ``["10:30", "13:30"]``)."""
        if not isinstance(data, Mapping):
            raise DomainError("slot windows must be an object", code="bad_slot_window")
        out: dict[MealSlot, SlotWindow] = {}
        for key, value in data.items():
            slot = MealSlot.parse(str(key))
            if isinstance(value, str):
                parts = value.split("-")
            elif isinstance(value, list | tuple):
                parts = [str(v) for v in value]
            else:
                parts = []
            if len(parts) != 2:
                raise DomainError(
                    f"window for {slot.value} must be 'HH:MM-HH:MM'", code="bad_slot_window"
                )
            out[slot] = SlotWindow(parse_hhmm(parts[0]), parse_hhmm(parts[1]))
        return cls(out, tz)

    def to_dict(self) -> dict[str, str]:
        return {slot.value: w.text() for slot, w in self.windows.items()}

    def local(self, now: datetime) -> datetime:
        if now.tzinfo is None:
            raise DomainError("time must be timezone-aware", code="naive_time")
        return now.astimezone(self.tz)


DEFAULT_SLOT_WINDOWS = SlotWindows(
    {
        MealSlot.BREAKFAST: SlotWindow(time(6, 30), time(9, 0)),
        MealSlot.LUNCH: SlotWindow(time(10, 30), time(13, 30)),
        MealSlot.DINNER: SlotWindow(time(16, 30), time(19, 0)),
    }
)


def slot_at(now: datetime, windows: SlotWindows = DEFAULT_SLOT_WINDOWS) -> MealSlot | None:
    """The slot being served at ``now`` (aware), or None between services."""
    t = windows.local(now).time()
    for slot in MealSlot:
        w = windows.windows.get(slot)
        if w is not None and w.contains(t):
            return slot
    return None


def service_date(now: datetime, windows: SlotWindows = DEFAULT_SLOT_WINDOWS) -> date:
    """The local calendar day a meal at ``now`` belongs to."""
    return windows.local(now).date()


def local_hhmm(at: datetime, tz: tzinfo = CHINA_TZ) -> str:
    if at.tzinfo is None:
        raise DomainError("time must be timezone-aware", code="naive_time")
    return at.astimezone(tz).strftime("%H:%M")


# --------------------------------------------------------------------------- menu


class ItemKind(StrEnum):
    SET_MEAL = "set"  # 套餐
    ITEM = "item"  # a single dish or extra


MAX_QUANTITY = 9


@dataclass(frozen=True, slots=True)
class MenuItem:
    item_id: str
    name: str
    price: Money
    slots: frozenset[MealSlot]
    kind: ItemKind = ItemKind.SET_MEAL
    subsidisable: bool = True  # extras (a drink, a second portion) may be excluded

    def __post_init__(self) -> None:
        if not self.item_id.strip():
            raise MenuError("a menu item needs an id", code="bad_menu_item")
        if not self.name.strip():
            raise MenuError(f"menu item {self.item_id}: a name is required", code="bad_menu_item")
        if self.price.fen < 0:
            raise MenuError(
                f"menu item {self.item_id}: price must not be negative", code="bad_menu_item"
            )
        if not self.slots:
            raise MenuError(
                f"menu item {self.item_id}: at least one slot is required", code="bad_menu_item"
            )


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of what is being bought."""

    item_id: str
    name: str
    unit_price: Money
    quantity: int = 1
    subsidisable: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.quantity, bool) or not 1 <= self.quantity <= MAX_QUANTITY:
            raise MenuError(f"quantity must be 1..{MAX_QUANTITY}", code="bad_quantity")
        if self.unit_price.fen < 0:
            raise MenuError("price must not be negative", code="bad_menu_item")

    @property
    def amount(self) -> Money:
        return Money(self.unit_price.fen * self.quantity)


def _req(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise MenuError(f"{where}: '{key}' is required", code="menu_invalid")
    return data[key]


def _fen(value: Any, where: str) -> Money:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MenuError(f"{where}: price_fen must be a non-negative integer", code="menu_invalid")
    return Money(value)


@dataclass(frozen=True, slots=True)
class Menu:
    """A day's menu. Item order is display order; the first set meal of a slot
    is the default order for that slot."""

    day: date
    items: tuple[MenuItem, ...]

    def __post_init__(self) -> None:
        ids = [i.item_id for i in self.items]
        if len(ids) != len(set(ids)):
            raise MenuError("menu item ids must be unique", code="duplicate_menu_item")

    def get(self, item_id: str) -> MenuItem | None:
        for item in self.items:
            if item.item_id == item_id:
                return item
        return None

    def items_for(self, slot: MealSlot) -> tuple[MenuItem, ...]:
        return tuple(i for i in self.items if slot in i.slots)

    def default_lines(self, slot: MealSlot) -> tuple[OrderLine, ...]:
        """The default order: the slot's first set meal, or nothing."""
        for item in self.items_for(slot):
            if item.kind is ItemKind.SET_MEAL:
                return (_line(item, 1),)
        return ()

    def order_lines(
        self, slot: MealSlot, selection: Sequence[tuple[str, int]] | None = None
    ) -> tuple[OrderLine, ...]:
        """Lines for ``selection`` (item id, quantity) or the default order.

        Raises :class:`MenuError` for unknown items or items not served in the slot.
        Repeated ids are merged.
        """
        if selection is None:
            return self.default_lines(slot)
        qty: dict[str, int] = {}
        for item_id, n in selection:
            qty[item_id] = qty.get(item_id, 0) + n
        lines = []
        for item_id, n in qty.items():
            item = self.get(item_id)
            if item is None:
                raise MenuError(f"item {item_id!r} is not on the menu", code="unknown_item")
            if slot not in item.slots:
                raise MenuError(
                    f"item {item_id!r} is not served at {slot.value}", code="item_not_in_slot"
                )
            lines.append(_line(item, n))
        return tuple(lines)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Menu:
        """Parse ``{"date": "2026-01-05", "items": [{"item_id", "name",
        "price_fen", "slots": ["lunch"], "kind": "set"|"item",
        "subsidisable": true}]}``."""
        if not isinstance(data, Mapping):
            raise MenuError("a menu must be an object", code="menu_invalid")
        try:
            day = date.fromisoformat(str(_req(data, "date", "menu")))
        except ValueError:
            raise MenuError("menu: date must be YYYY-MM-DD", code="menu_invalid") from None
        raw_items = _req(data, "items", "menu")
        if not isinstance(raw_items, list):
            raise MenuError("menu: items must be a list", code="menu_invalid")
        items = []
        for n, raw in enumerate(raw_items, 1):
            where = f"menu item {n}"
            if not isinstance(raw, Mapping):
                raise MenuError(f"{where}: must be an object", code="menu_invalid")
            unknown = set(raw) - {"item_id", "name", "price_fen", "slots", "kind", "subsidisable"}
            if unknown:
                raise MenuError(f"{where}: unknown field(s) {sorted(unknown)}", code="menu_invalid")
            slots_raw = _req(raw, "slots", where)
            if not isinstance(slots_raw, list):
                raise MenuError(f"{where}: slots must be a list", code="menu_invalid")
            try:
                slots = frozenset(MealSlot.parse(str(s)) for s in slots_raw)
                kind = ItemKind(str(raw.get("kind", "set")))
            except (DomainError, ValueError) as exc:
                raise MenuError(f"{where}: {exc}", code="menu_invalid") from None
            sub = raw.get("subsidisable", True)
            if not isinstance(sub, bool):
                raise MenuError(f"{where}: subsidisable must be true/false", code="menu_invalid")
            items.append(
                MenuItem(
                    item_id=str(_req(raw, "item_id", where)).strip(),
                    name=str(_req(raw, "name", where)).strip(),
                    price=_fen(_req(raw, "price_fen", where), where),
                    slots=slots,
                    kind=kind,
                    subsidisable=sub,
                )
            )
        return cls(day, tuple(items))

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "items": [
                {
                    "item_id": i.item_id,
                    "name": i.name,
                    "price_fen": i.price.fen,
                    "slots": [s.value for s in MealSlot if s in i.slots],
                    "kind": i.kind.value,
                    "subsidisable": i.subsidisable,
                }
                for i in self.items
            ],
        }


def _line(item: MenuItem, quantity: int) -> OrderLine:
    return OrderLine(item.item_id, item.name, item.price, quantity, item.subsidisable)


# --------------------------------------------------------------------------- history


@dataclass(frozen=True, slots=True)
class PriorMeal:
    """A meal already charged to a resident (from the ledger), as the duplicate
    guard and the subsidy limit need it. Voided meals are not passed in (or are
    marked ``voided`` and ignored)."""

    record_id: str
    at: datetime
    slot: MealSlot
    day: date
    subsidised: bool
    voided: bool = False


def subsidised_meals(meals: Iterable[PriorMeal], slot: MealSlot, day: date) -> int:
    """How many non-voided subsidised meals the resident had in ``slot`` on ``day``."""
    return sum(
        1 for m in meals if m.slot is slot and m.day == day and m.subsidised and not m.voided
    )
