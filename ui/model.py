"""Plain data the kiosk runner publishes and the views render. Qt-free.

The runner (``terminal.kiosk.runner``) works on its own threads and hands these
immutable values to subscribers; the Qt bridge moves them onto the GUI
thread. Nothing here holds a name in clear (only masked names), a face
embedding, or an ID number. Preview images are downscaled RGB frames meant
for the screen only; they are never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from payment.domain import MealSlot
from payment.flow import State
from payment.visiting import VisitorsDay
from terminal.core.money import Money

Health = Literal["ok", "degraded", "offline", "unknown", "paper_out", "absent"]


@dataclass(frozen=True, slots=True)
class MenuLine:
    item_id: str
    name: str
    price: Money
    slots: tuple[MealSlot, ...] = ()
    kind: str = "set"  # "set" (套餐) or "item"
    subsidisable: bool = True


@dataclass(frozen=True, slots=True)
class IdleInfo:
    """What the idle screen shows besides the clock (refreshed by the runner)."""

    centre_name: str
    day: date
    slot: MealSlot | None  # being served now
    next_slot: MealSlot | None = None
    next_window: str = ""  # "16:30-19:00"
    menu: tuple[MenuLine, ...] = ()  # for ``slot`` (or ``next_slot`` between services)
    menu_set: bool = False  # a menu exists for the day
    # after a restart: the last transaction from the database (masked name,
    # amount, HH:MM), so nobody pays twice because the screen went dark
    last_payment: tuple[str, str, str] | None = None


@dataclass(frozen=True, slots=True)
class FlowView:
    """The current flow state (``payment.flow`` state object) and when it was entered."""

    state: State
    at: datetime
    seq: int  # increases with every published change


@dataclass(frozen=True, slots=True)
class PreviewFrame:
    """One camera frame for the screen with the latest face overlay.

    ``image`` is an HxWx3 uint8 RGB array (C-contiguous), already downscaled.
    ``box`` is in the coordinates of ``image``. ``guidance`` is a translation
    key (``face.quality.too_small``, ``face.liveness.turn_left`` ...) or None.
    ``captured`` is the camera's ``time.monotonic()`` capture time, for latency.
    """

    seq: int
    captured: float
    image: Any
    box: tuple[float, float, float, float] | None = None
    box_ok: bool = False
    guidance: str | None = None
    faces: int = 0


@dataclass(frozen=True, slots=True)
class ChallengeView:
    """The active liveness challenge: what to ask and until when."""

    kind: str  # "blink" | "turn"
    prompt: str  # translation key, e.g. "face.liveness.turn_left"
    deadline_s: float  # monotonic


@dataclass(frozen=True, slots=True)
class EnrolProgress:
    good: int
    target: int
    guidance: str | None = None  # translation key
    finished: bool = False
    error: str | None = None  # message fit to show


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    camera: Health = "unknown"
    printer: Health = "unknown"
    card_reader: Health = "unknown"


@dataclass(frozen=True, slots=True)
class Fault:
    """The runner cannot serve (worker restart budget spent, storage broken ...).
    ``message`` is safe to show to staff; seniors see the out-of-service screen."""

    code: str
    message: str
    fatal: bool = True


@dataclass(frozen=True, slots=True)
class SpeakRequest:
    """Play the voice prompt of this translation key (``pay.*``)."""

    key: str


KioskUpdate = (
    FlowView
    | PreviewFrame
    | IdleInfo
    | ChallengeView
    | EnrolProgress
    | DeviceHealth
    | Fault
    | SpeakRequest
)


# --------------------------------------------------------------------------- staff side


@dataclass(frozen=True, slots=True)
class PinResult:
    ok: bool
    staff_id: str = ""
    staff_name: str = ""
    role: Literal["staff", "manager"] = "staff"
    tries_left: int = 0
    locked_for_s: int = 0  # > 0: locked out for this many seconds


@dataclass(frozen=True, slots=True)
class ResidentSummary:
    resident_id: str
    name_masked: str
    category_key: str  # translation key, e.g. "category.dibao"
    has_face: bool
    consent_face_pay: bool
    consent_attendance: bool
    balance: Money
    active: bool = True


@dataclass(frozen=True, slots=True)
class TxRow:
    record_id: str
    kind: str  # charge | topup | void | refund
    at: datetime
    name_masked: str
    amount: Money  # due for a charge, the amount otherwise
    method: str
    voided: bool
    slot: MealSlot | None = None
    subsidy: Money = field(default_factory=Money.zero)
    balance_after: Money = field(default_factory=Money.zero)


@dataclass(frozen=True, slots=True)
class StatusRow:
    key: str  # translation key of the label, e.g. "status.camera"
    value: str  # already formatted (may itself be a translation key, see ``value_is_key``)
    level: Health = "ok"
    value_is_key: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    rows: tuple[StatusRow, ...]
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class DayFigures:
    day: date
    visits: int
    meals: int
    subsidy: Money


@dataclass(frozen=True, slots=True)
class ManagerReport:
    """Today's flow and the last 7 days, for the manager screen and exports."""

    day: date
    centre_name: str
    visits_per_hour: tuple[int, ...]  # 24 values
    unique_visitors: int
    attendance: int  # enrolled, consenting seniors seen today
    enrolled: int  # enrolled, consenting seniors in total
    meals_per_slot: Mapping[str, int]  # slot value -> meals
    subsidy_total: Money
    paid_total: Money
    list_total: Money
    week: tuple[DayFigures, ...]  # oldest first, ending with ``day``
    source: Literal["footfall", "payments"] = "payments"
    visitors: VisitorsDay | None = None  # seniors of other centres today (city-wide meals)
