"""The kiosk payment flow as a pure state machine.

    new_state, effects = step(state, event, now, ctx)

``step`` does no IO and reads the clock only from ``now``; everything it needs
to look up (residents, balances, today's meals, menu, policy, exposure) comes
from ``ctx`` (a :class:`FlowContext`), which must answer from a consistent
snapshot while ``step`` runs. A runner executes the effects and feeds the
results back as events:

* :class:`Charge` -> commit a ledger record, then :class:`ChargeCommitted`
  or :class:`ChargeFailed` (with the same ``session``);
* :class:`Print` -> print the receipt, then optionally :class:`PrintResult`;
* :class:`Speak` -> play the prompt for a translation key;
* :class:`StartTimer` -> (re)start a one-shot timer of that name, replacing a
  running one of the same name, and send :class:`Timeout` when it fires;
  :class:`CancelTimer` -> stop it. A runner may instead send :class:`Tick`
  periodically: every timed state has a ``deadline`` that ``Tick`` checks.

Journey: Idle -> Checking (face quality, passive liveness, match) ->
[Challenge (blink / head turn)] -> Confirm (masked name, category, meal lines;
touch required) -> [SecondFactor (phone last 4 or card tap)] -> Charging ->
Done (voice + receipt only after ChargeCommitted) -> Idle. Card, ID card and
staff lookup start the same journey without a face. Every timed state returns
to Idle on timeout and on cancel, except Charging: a charge in flight cannot be
cancelled, and when its result does not arrive in time the flow never claims
it failed (it may still land). It moves to ChargePending ("still checking")
and asks the runner to resolve the outcome by the request's id
(:class:`ResolveCharge`, answered with ChargeCommitted or ChargeFailed, or not
at all while the store cannot tell yet); it checks again every
``timeouts.charge_check`` seconds until the outcome is known.

One meal is one charge: any earlier meal of the resident in the slot (see
:mod:`payment.guard`) leads to AlreadyPaid. From there staff may approve a
second meal (StaffApprove), or the senior may choose "another portion"
(:class:`AnotherPortion`, 再来一份): Confirm then shows that second charge's
price, with no subsidy, and needs its own confirmation.

Every charge request carries a random ``request_id`` from
``FlowContext.new_request_id`` (never derived from the clock): the store
persists it as an intent before charging, and a retry with the same id returns
the existing record instead of charging again.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import ClassVar, Literal, Protocol

from payment.domain import (
    DEFAULT_SLOT_WINDOWS,
    MealSlot,
    Menu,
    OrderLine,
    PriorMeal,
    Resident,
    SecondFactor,
    SeniorCategory,
    SlotWindows,
    VerificationMethod,
    service_date,
    slot_at,
    subsidised_meals,
)
from payment.errors import DomainError, MenuError
from payment.guard import GuardResult, check_duplicate
from payment.limits import Exposure, ExposureLimits, check_limits
from payment.receipt import Receipt, receipt_for_charge
from payment.subsidy import Outcome, Quote, SubsidyPolicy, quote, select_policy
from payment.visiting import (
    ClaimOutcome,
    KeyType,
    OfflineUsage,
    PaymentSource,
    Source,
    Visit,
    VisitorCandidate,
    VisitorPolicy,
    VisitorStatus,
    VisitRefusal,
    capped_subsidy,
    decide_visit,
    needs_claim,
    needs_debit,
    visit_of,
    wallet_fallback,
)
from terminal.core.identification import LivenessDecision, MatchDecision
from terminal.core.money import Money

_LARGE_AMOUNT = Money(2_000)
_ZERO = Money(0)

# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class LivenessPolicy:
    """Every face payment needs an active challenge (``face`` asks the senior to
    turn their head to a random side and checks that the same, re-identified
    face made a real 3-D turn). The passive model never waives it: it scores
    photos as live. Below ``reject_below`` an identification fails outright
    (the card path remains)."""

    reject_below: float = 0.10
    challenges: tuple[str, ...] = ("turn",)
    max_challenge_attempts: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.reject_below <= 1.0:
            raise DomainError("liveness reject_below must be within 0..1", code="bad_liveness")
        if not self.challenges or any(not c.strip() for c in self.challenges):
            raise DomainError("liveness needs at least one challenge", code="bad_liveness")
        if self.max_challenge_attempts < 1:
            raise DomainError("max_challenge_attempts must be >= 1", code="bad_liveness")


@dataclass(frozen=True, slots=True)
class FlowTimeouts:
    """Seconds each screen waits before giving up (elderly users: generous)."""

    checking: float = 15.0
    challenge: float = 12.0
    confirm: float = 30.0
    second_factor: float = 30.0
    charging: float = 15.0
    charge_check: float = 5.0  # while ChargePending: ask the store again this often
    done: float = 6.0
    failed: float = 10.0
    already_paid: float = 10.0
    staff_required: float = 90.0
    visitor: float = 10.0  # asking the platform about a visitor (it answers within 2 s)

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if getattr(self, name) <= 0:
                raise DomainError(f"timeout {name} must be positive", code="bad_timeout")


@dataclass(frozen=True, slots=True)
class FlowConfig:
    centre_name: str = "居家养老服务照料中心"
    slot_windows: SlotWindows = DEFAULT_SLOT_WINDOWS
    liveness: LivenessPolicy = field(default_factory=LivenessPolicy)
    limits: ExposureLimits = field(default_factory=ExposureLimits)
    timeouts: FlowTimeouts = field(default_factory=FlowTimeouts)
    large_amount: Money = _LARGE_AMOUNT  # due >= this needs a second factor on face pay
    overdraft_limit: Money = _ZERO
    max_quality_retries: int = 5
    max_second_factor_attempts: int = 3
    duplicate_guard_any_meal: bool = True  # False: only a subsidised meal blocks a second
    # city-wide meals: seniors of other centres are asked about (None: strangers only)
    visitors: VisitorPolicy | None = None


class FlowContext(Protocol):
    """Read-only lookups ``step`` needs. Implementations must not change what
    they answer while one ``step`` call runs."""

    @property
    def config(self) -> FlowConfig: ...

    def resident(self, resident_id: str) -> Resident | None: ...

    def resident_by_card(self, card_id: str) -> Resident | None: ...

    def resident_by_id_card(self, id_number: str) -> Resident | None: ...

    def balance(self, resident_id: str) -> Money: ...

    def meals(self, resident_id: str, day: date) -> Sequence[PriorMeal]: ...

    def exposure(self, resident_id: str) -> Exposure: ...

    def menu(self, day: date) -> Menu | None: ...

    def policy(self, day: date) -> SubsidyPolicy | None: ...

    def new_request_id(self) -> str:
        """A fresh random id for a charge request (uuid4 hex; never from the clock)."""
        ...

    def visit_usage(self, day: date, slot: MealSlot) -> OfflineUsage:
        """Visitor subsidies this terminal granted from the offline roster today."""
        ...


def random_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class StaticContext:
    """A :class:`FlowContext` over plain data (tests, simulations, replays)."""

    config: FlowConfig = field(default_factory=FlowConfig)
    residents: Mapping[str, Resident] = field(default_factory=dict)
    balances: Mapping[str, Money] = field(default_factory=dict)
    meal_history: Mapping[str, Sequence[PriorMeal]] = field(default_factory=dict)
    unsynced: Mapping[str, Money] = field(default_factory=dict)
    terminal_unsynced: Money = _ZERO
    menus: Mapping[date, Menu] = field(default_factory=dict)
    policies: Sequence[SubsidyPolicy] = ()
    id_cards: Mapping[str, str] = field(default_factory=dict)  # ID number -> resident id
    request_ids: Callable[[], str] = random_request_id
    offline_usage: OfflineUsage = field(default_factory=OfflineUsage)

    def resident(self, resident_id: str) -> Resident | None:
        return self.residents.get(resident_id)

    def resident_by_card(self, card_id: str) -> Resident | None:
        for r in self.residents.values():
            if r.has_card(card_id):
                return r
        return None

    def resident_by_id_card(self, id_number: str) -> Resident | None:
        rid = self.id_cards.get(id_number.strip().upper())
        return self.residents.get(rid) if rid else None

    def balance(self, resident_id: str) -> Money:
        return self.balances.get(resident_id, Money(0))

    def meals(self, resident_id: str, day: date) -> Sequence[PriorMeal]:
        return tuple(m for m in self.meal_history.get(resident_id, ()) if m.day == day)

    def exposure(self, resident_id: str) -> Exposure:
        return Exposure(self.unsynced.get(resident_id, Money(0)), self.terminal_unsynced)

    def menu(self, day: date) -> Menu | None:
        return self.menus.get(day)

    def policy(self, day: date) -> SubsidyPolicy | None:
        return select_policy(self.policies, day)

    def new_request_id(self) -> str:
        return self.request_ids()

    def visit_usage(self, day: date, slot: MealSlot) -> OfflineUsage:
        return self.offline_usage


# --------------------------------------------------------------------------- vocabulary


class FailReason(StrEnum):
    FACE_UNKNOWN = "face_unknown"
    QUALITY = "quality"
    LIVENESS_FAILED = "liveness_failed"
    NO_FACE_CONSENT = "no_face_consent"
    RESIDENT_NOT_FOUND = "resident_not_found"
    RESIDENT_INACTIVE = "resident_inactive"
    CARD_UNKNOWN = "card_unknown"
    ID_CARD_UNKNOWN = "id_card_unknown"
    NO_MEAL_SERVICE = "no_meal_service"
    NO_MENU = "no_menu"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    SECOND_FACTOR_FAILED = "second_factor_failed"
    CHARGE_FAILED = "charge_failed"
    CHARGE_TIMEOUT = "charge_timeout"


class NextAction(StrEnum):
    """What the Failed screen tells the senior to do."""

    USE_CARD = "use_card"  # tap the card, insert the ID card or ask staff
    TOP_UP = "top_up"
    ASK_STAFF = "ask_staff"
    COME_BACK = "come_back"  # outside meal service


class OverrideKind(StrEnum):
    DUPLICATE = "duplicate"
    LIMITS = "limits"
    SECOND_FACTOR = "second_factor"
    VISIT_LIMIT = "visit_limit"  # a visitor's subsidy beyond the offline limits


NON_FACE_METHODS = (VerificationMethod.CARD, VerificationMethod.ID_CARD, VerificationMethod.STAFF)


@dataclass(frozen=True, slots=True)
class StaffOverride:
    kind: OverrideKind
    staff_id: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """Who is about to pay and how they were identified."""

    resident_id: str
    method: VerificationMethod
    match_decision: MatchDecision | None = None
    match_score: float | None = None
    liveness: LivenessDecision | None = None
    staff_id: str | None = None  # the staff member who looked the resident up
    slot: MealSlot | None = None  # set by staff lookups; otherwise from the clock
    items: tuple[tuple[str, int], ...] | None = None  # None = the slot's default order
    overrides: tuple[StaffOverride, ...] = ()
    another_portion: bool = False  # the senior chose 再来一份 on the already-paid screen
    visitor: VisitorCandidate | None = None  # a senior of another centre (city-wide meals)

    def override(self, kind: OverrideKind) -> StaffOverride | None:
        for o in self.overrides:
            if o.kind is kind:
                return o
        return None


@dataclass(frozen=True, slots=True)
class Payment:
    """Everything the Confirm screen shows and the charge needs."""

    candidate: Candidate
    name_masked: str
    category: SeniorCategory  # the category that decided the subsidy, else the main one
    slot: MealSlot
    day: date
    quote: Quote
    needs_second_factor: bool
    second_factor_options: tuple[SecondFactor, ...] = ()
    meals_before: int = 0  # non-voided meals in this slot today when quoted
    another_portion: bool = False  # a second portion: priced without subsidy
    paid_before_hhmm: str | None = None  # when the earlier meal was paid (second portions)
    visit: Visit | None = None  # a senior of another centre: home centre, source, claim

    @property
    def resident_id(self) -> str:
        return self.candidate.resident_id

    @property
    def method(self) -> VerificationMethod:
        return self.candidate.method

    @property
    def lines(self) -> tuple[OrderLine, ...]:
        return self.quote.lines


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """What the runner commits. The store re-checks balance, duplicates and
    limits inside its write transaction (state may have moved since Confirm)."""

    session: int
    resident_id: str
    slot: MealSlot
    day: date
    quote: Quote
    method: VerificationMethod
    second_factor: SecondFactor | None
    liveness: LivenessDecision | None
    match_decision: MatchDecision | None
    match_score: float | None
    staff_id: str | None
    overrides: tuple[StaffOverride, ...]
    requested_at: datetime  # informational only: idempotency uses request_id
    request_id: str = ""  # random, from FlowContext.new_request_id
    another_portion: bool = False
    meals_before: int = 0  # the store refuses when more meals exist in the slot by now
    visit: Visit | None = None  # a visiting senior's meal (resident_id is their person_id)
    record_id: str | None = None  # the record id a visitor's slot claim was made for

    @property
    def lines(self) -> tuple[OrderLine, ...]:
        return self.quote.lines

    @property
    def list_amount(self) -> Money:
        return self.quote.list_total

    @property
    def subsidy(self) -> Money:
        return self.quote.subsidy

    @property
    def due(self) -> Money:
        return self.quote.due

    @property
    def verification(self) -> str:
        """The full verification record, e.g. ``face:passive+blink+phone_last4``."""
        parts = [self.liveness.method] if self.liveness else []
        if self.second_factor:
            parts.append(self.second_factor.value)
        return self.method.value + (":" + "+".join(parts) if parts else "")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class FaceSeen:
    """A face entered the frame (starts Checking)."""


@dataclass(frozen=True, slots=True)
class FaceResult:
    decision: MatchDecision
    resident_id: str | None
    score: float
    passive_liveness: float
    quality_reason: str | None = None  # None = quality ok; else e.g. "too_dark", "blurry"

    @property
    def quality_ok(self) -> bool:
        return self.quality_reason is None


@dataclass(frozen=True, slots=True)
class ChallengeResult:
    kind: str
    passed: bool
    signals: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CardTapped:
    card_id: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class IdCardRead:
    id_number: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StaffLookup:
    """Staff (after their PIN) picked a resident by name or phone last 4."""

    resident_id: str
    staff_id: str
    slot: MealSlot | None = None


@dataclass(frozen=True, slots=True)
class VisitorLookup:
    """Staff (after their PIN) look up a senior of another centre by name and
    the last 4 digits of the phone (the kiosk asks by ``lookup_hmac``)."""

    name: str = field(repr=False)
    phone_last4: str = field(repr=False)
    staff_id: str
    slot: MealSlot | None = None


@dataclass(frozen=True, slots=True)
class VisitorAnswered:
    """What the platform (or, offline, the district roster) said about a key
    that is not this centre's: ``status`` None = nobody in the district."""

    session: int
    status: VisitorStatus | None
    payment_source: PaymentSource | None = None  # the district's policy; None = this config's


@dataclass(frozen=True, slots=True)
class SlotClaimAnswered:
    """The platform's answer to a visitor's slot claim."""

    session: int
    outcome: ClaimOutcome
    record_id: str  # the record id the claim was made for
    claim_id: str | None = None
    wallet_after_fen: int | None = None  # the district wallet after the debit (granted)


@dataclass(frozen=True, slots=True)
class StaffApprove:
    """Staff (after their PIN) approve what AlreadyPaid / StaffRequired asked for."""

    staff_id: str


@dataclass(frozen=True, slots=True)
class Touch:
    action: Literal["confirm", "cancel"]


@dataclass(frozen=True, slots=True)
class AnotherPortion:
    """The senior chose 再来一份 (another portion) on the already-paid screen."""


@dataclass(frozen=True, slots=True)
class DigitsEntered:
    digits: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SelectItems:
    items: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ChargeCommitted:
    session: int
    record_id: str
    balance_after: Money
    record_hash: str = ""


@dataclass(frozen=True, slots=True)
class ChargeFailed:
    session: int
    reason: str


@dataclass(frozen=True, slots=True)
class PrintResult:
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    """Periodic heartbeat; fires the current state's deadline when passed."""


@dataclass(frozen=True, slots=True)
class Timeout:
    name: str


Event = (
    FaceSeen
    | FaceResult
    | ChallengeResult
    | CardTapped
    | IdCardRead
    | StaffLookup
    | VisitorLookup
    | VisitorAnswered
    | SlotClaimAnswered
    | StaffApprove
    | Touch
    | AnotherPortion
    | DigitsEntered
    | SelectItems
    | ChargeCommitted
    | ChargeFailed
    | PrintResult
    | Tick
    | Timeout
)

# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Charge:
    request: ChargeRequest


@dataclass(frozen=True, slots=True)
class ResolveCharge:
    """Find out from the store what became of ``request`` (by its request id)
    and send ChargeCommitted or ChargeFailed; send nothing while it cannot tell."""

    request: ChargeRequest


@dataclass(frozen=True, slots=True)
class Print:
    receipt: Receipt


@dataclass(frozen=True, slots=True)
class Speak:
    key: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AskVisitor:
    """Ask the platform (2 s), else the district roster, who holds this key;
    answer with :class:`VisitorAnswered`. ``key`` is the clear card or ID
    number, or the name (with ``phone_last4``): the port hashes it with the
    district pepper, and nothing clear leaves the terminal."""

    session: int
    key_type: KeyType
    key: str = field(repr=False)
    day: date
    slot: MealSlot
    phone_last4: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class ClaimSlot:
    """Claim the visitor's one subsidised meal of the slot at the platform;
    answer with :class:`SlotClaimAnswered` (the port makes the record id).
    With ``debit_fen`` (policy ``home_wallet``) the platform debits the senior's
    district wallet in the same transaction; ``subsidised=False`` debits without
    claiming the slot."""

    session: int
    person_id: str
    day: date
    slot: MealSlot
    debit_fen: int | None = None
    subsidised: bool = True


@dataclass(frozen=True, slots=True)
class StartTimer:
    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


Effect = Charge | ResolveCharge | Print | Speak | StartTimer | CancelTimer | AskVisitor | ClaimSlot

# --------------------------------------------------------------------------- states


@dataclass(frozen=True, slots=True)
class Idle:
    session: int = 0  # counts sessions; echoed by ChargeCommitted/ChargeFailed
    TIMER: ClassVar[str | None] = None


@dataclass(frozen=True, slots=True)
class Checking:
    session: int
    deadline: datetime
    retries: int = 0
    quality_reason: str | None = None
    TIMER: ClassVar[str | None] = "checking"


@dataclass(frozen=True, slots=True)
class Challenge:
    session: int
    deadline: datetime
    face: FaceResult
    kind: str
    attempt: int = 1
    TIMER: ClassVar[str | None] = "challenge"


@dataclass(frozen=True, slots=True)
class VisitorChecking:
    """A card, ID card or staff lookup that is not this centre's: asking the
    platform (or the roster) who the senior is."""

    session: int
    deadline: datetime
    method: VerificationMethod
    staff_id: str | None = None
    slot: MealSlot | None = None
    TIMER: ClassVar[str | None] = "visitor"


@dataclass(frozen=True, slots=True)
class VisitorClaiming:
    """A visiting senior's subsidised meal: claiming the slot at the platform
    before the confirm screen; or, with ``payment`` (policy ``home_wallet``),
    claiming it and debiting the district wallet after the senior pressed pay."""

    session: int
    deadline: datetime
    candidate: Candidate
    payment: Payment | None = None
    TIMER: ClassVar[str | None] = "visitor"


@dataclass(frozen=True, slots=True)
class Confirm:
    session: int
    deadline: datetime
    payment: Payment
    TIMER: ClassVar[str | None] = "confirm"


@dataclass(frozen=True, slots=True)
class SecondFactorEntry:
    """Waiting for the phone's last 4 digits or a card tap."""

    session: int
    deadline: datetime
    payment: Payment
    attempts: int = 0
    TIMER: ClassVar[str | None] = "second_factor"


@dataclass(frozen=True, slots=True)
class Charging:
    session: int
    deadline: datetime
    payment: Payment
    request: ChargeRequest
    TIMER: ClassVar[str | None] = "charging"


@dataclass(frozen=True, slots=True)
class ChargePending:
    """The charge outlived its timeout: it may still land. The screen says
    "still checking"; the runner resolves it by request id. Never "failed"
    until the store says nothing was (or can any more be) written."""

    session: int
    deadline: datetime  # next check
    payment: Payment
    request: ChargeRequest
    checks: int = 1
    TIMER: ClassVar[str | None] = "charge_check"


@dataclass(frozen=True, slots=True)
class Done:
    session: int
    deadline: datetime
    payment: Payment
    record_id: str
    balance_after: Money
    receipt: Receipt
    print_ok: bool | None = None  # None until PrintResult arrives
    print_problem: str = ""
    TIMER: ClassVar[str | None] = "done"


@dataclass(frozen=True, slots=True)
class Failed:
    session: int
    deadline: datetime
    reason: FailReason
    action: NextAction
    alternatives: tuple[VerificationMethod, ...] = ()
    detail: str = ""
    amount: Money | None = None  # e.g. the shortfall for insufficient_balance
    TIMER: ClassVar[str | None] = "failed"


@dataclass(frozen=True, slots=True)
class AlreadyPaid:
    session: int
    deadline: datetime
    candidate: Candidate
    name_masked: str
    slot: MealSlot
    paid_at_hhmm: str
    record_id: str
    TIMER: ClassVar[str | None] = "already_paid"


@dataclass(frozen=True, slots=True)
class StaffRequired:
    session: int
    deadline: datetime
    candidate: Candidate
    name_masked: str
    reason: str  # a LimitReason value or "second_factor_unavailable"
    override: OverrideKind
    limit: Money | None = None
    TIMER: ClassVar[str | None] = "staff_required"


State = (
    Idle
    | Checking
    | Challenge
    | VisitorChecking
    | VisitorClaiming
    | Confirm
    | SecondFactorEntry
    | Charging
    | ChargePending
    | Done
    | Failed
    | AlreadyPaid
    | StaffRequired
)

SECOND_FACTOR_UNAVAILABLE = "second_factor_unavailable"

# --------------------------------------------------------------------------- step


def step(state: State, event: Event, now: datetime, ctx: FlowContext) -> tuple[State, list[Effect]]:
    """Advance the kiosk flow by one event. Pure and deterministic."""
    if now.tzinfo is None:
        raise DomainError("step needs a timezone-aware time", code="naive_time")
    new, effects = _dispatch(state, event, now, ctx)
    return new, _timer_effects(state, new, now) + effects


def timer_of(state: State) -> tuple[str, datetime] | None:
    if isinstance(state, Idle) or state.TIMER is None:
        return None
    return state.TIMER, state.deadline


def _timer_effects(old: State, new: State, now: datetime) -> list[Effect]:
    before, after = timer_of(old), timer_of(new)
    if before == after:
        return []
    out: list[Effect] = []
    if before is not None:
        out.append(CancelTimer(before[0]))
    if after is not None:
        out.append(StartTimer(after[0], max(0.0, (after[1] - now).total_seconds())))
    return out


def _timed_out(state: State, event: Event, now: datetime) -> bool:
    t = timer_of(state)
    if t is None:
        return False
    if isinstance(event, Timeout):
        return event.name == t[0]
    return isinstance(event, Tick) and now >= t[1]


def _after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


def _dispatch(
    state: State, event: Event, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    if _timed_out(state, event, now):
        check = _after(now, ctx.config.timeouts.charge_check)
        if isinstance(state, Charging):
            pending = ChargePending(state.session, check, state.payment, state.request)
            return pending, [ResolveCharge(state.request)]
        if isinstance(state, ChargePending):
            nxt = replace(state, deadline=check, checks=state.checks + 1)
            return nxt, [ResolveCharge(state.request)]
        return Idle(state.session), []

    match state:
        case Idle():
            return _start(state, event, now, ctx)
        case Checking():
            return _in_checking(state, event, now, ctx)
        case Challenge():
            return _in_challenge(state, event, now, ctx)
        case VisitorChecking():
            return _in_visitor_checking(state, event, now, ctx)
        case VisitorClaiming():
            return _in_visitor_claiming(state, event, now, ctx)
        case Confirm():
            return _in_confirm(state, event, now, ctx)
        case SecondFactorEntry():
            return _in_second_factor(state, event, now, ctx)
        case Charging() | ChargePending():
            return _in_charging(state, event, now, ctx)
        case Done():
            if isinstance(event, PrintResult):
                return replace(state, print_ok=event.ok, print_problem=event.reason), []
            if isinstance(event, Touch):
                return Idle(state.session), []
            return _start(state, event, now, ctx, faces=False)
        case Failed():
            if isinstance(event, Touch):
                return Idle(state.session), []
            return _start(state, event, now, ctx, faces=False)
        case AlreadyPaid():
            if isinstance(event, StaffApprove) and event.staff_id.strip():
                cand = _with_override(state.candidate, OverrideKind.DUPLICATE, event.staff_id)
                return _prepare(cand, state.session, now, ctx)
            if isinstance(event, AnotherPortion):
                cand = replace(state.candidate, another_portion=True)
                return _prepare(cand, state.session, now, ctx)
            if isinstance(event, Touch):
                return Idle(state.session), []
            return _start(state, event, now, ctx, faces=False)
        case StaffRequired():
            if isinstance(event, StaffApprove) and event.staff_id.strip():
                cand = _with_override(state.candidate, state.override, event.staff_id)
                return _prepare(cand, state.session, now, ctx)
            if isinstance(event, Touch) and event.action == "cancel":
                return Idle(state.session), []
            if isinstance(event, StaffLookup | VisitorLookup):
                return _start(state, event, now, ctx, faces=False)
            return state, []
    raise AssertionError(f"unhandled state {state!r}")  # pragma: no cover


# --------------------------------------------------------------------------- starting


def _start(
    state: State, event: Event, now: datetime, ctx: FlowContext, *, faces: bool = True
) -> tuple[State, list[Effect]]:
    """Events that begin a new session; anything else leaves ``state`` as is."""
    session = state.session + 1
    cfg = ctx.config
    if faces and isinstance(event, FaceSeen):
        return Checking(session, _after(now, cfg.timeouts.checking)), [Speak("pay.look_at_camera")]
    if faces and isinstance(event, FaceResult):
        return _on_face(Checking(session, _after(now, cfg.timeouts.checking)), event, now, ctx)
    if isinstance(event, CardTapped):
        resident = ctx.resident_by_card(event.card_id)
        if resident is None and cfg.visitors is not None:
            return _ask_visitor(session, VerificationMethod.CARD, event.card_id, now, ctx)
        if resident is None:
            return _failed(
                session,
                FailReason.CARD_UNKNOWN,
                NextAction.ASK_STAFF,
                now,
                ctx,
                alternatives=(VerificationMethod.ID_CARD, VerificationMethod.STAFF),
            )
        return _prepare(Candidate(resident.resident_id, VerificationMethod.CARD), session, now, ctx)
    if isinstance(event, IdCardRead):
        resident = ctx.resident_by_id_card(event.id_number)
        if resident is None and cfg.visitors is not None:
            return _ask_visitor(session, VerificationMethod.ID_CARD, event.id_number, now, ctx)
        if resident is None:
            return _failed(
                session,
                FailReason.ID_CARD_UNKNOWN,
                NextAction.ASK_STAFF,
                now,
                ctx,
                alternatives=(VerificationMethod.CARD, VerificationMethod.STAFF),
            )
        cand = Candidate(resident.resident_id, VerificationMethod.ID_CARD)
        return _prepare(cand, session, now, ctx)
    if isinstance(event, StaffLookup) and event.staff_id.strip():
        cand = Candidate(
            event.resident_id,
            VerificationMethod.STAFF,
            staff_id=event.staff_id.strip(),
            slot=event.slot,
        )
        return _prepare(cand, session, now, ctx)
    if isinstance(event, VisitorLookup) and event.staff_id.strip() and cfg.visitors is not None:
        return _ask_visitor(
            session,
            VerificationMethod.STAFF,
            event.name,
            now,
            ctx,
            phone_last4=event.phone_last4,
            staff_id=event.staff_id.strip(),
            slot=event.slot,
        )
    return state, []


def _failed(
    session: int,
    reason: FailReason,
    action: NextAction,
    now: datetime,
    ctx: FlowContext,
    *,
    alternatives: tuple[VerificationMethod, ...] = (),
    detail: str = "",
    amount: Money | None = None,
) -> tuple[State, list[Effect]]:
    st = Failed(
        session,
        _after(now, ctx.config.timeouts.failed),
        reason,
        action,
        alternatives,
        detail,
        amount,
    )
    return st, [Speak(f"pay.failed.{reason.value}")]


# --------------------------------------------------------------------------- face path


def _in_checking(
    state: Checking, event: Event, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    if isinstance(event, FaceResult):
        return _on_face(state, event, now, ctx)
    if isinstance(event, Touch) and event.action == "cancel":
        return Idle(state.session), [Speak("pay.cancelled")]
    if isinstance(event, FaceSeen):
        return state, []
    return _start(state, event, now, ctx, faces=False)


def _on_face(
    state: Checking, ev: FaceResult, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    cfg = ctx.config
    pol = cfg.liveness
    if not ev.quality_ok:
        if state.retries + 1 > cfg.max_quality_retries:
            return _failed(
                state.session,
                FailReason.QUALITY,
                NextAction.USE_CARD,
                now,
                ctx,
                alternatives=NON_FACE_METHODS,
                detail=ev.quality_reason or "",
            )
        nxt = replace(state, retries=state.retries + 1, quality_reason=ev.quality_reason)
        return nxt, [Speak(f"pay.quality.{ev.quality_reason}")]
    if ev.decision == "unknown" or not ev.resident_id:
        return _failed(
            state.session,
            FailReason.FACE_UNKNOWN,
            NextAction.USE_CARD,
            now,
            ctx,
            alternatives=NON_FACE_METHODS,
            # a senior of another centre: face pay works at their home centre only
            detail=VISITOR_HINT if cfg.visitors is not None else "",
        )
    if ev.passive_liveness < pol.reject_below:
        return _failed(
            state.session,
            FailReason.LIVENESS_FAILED,
            NextAction.USE_CARD,
            now,
            ctx,
            alternatives=NON_FACE_METHODS,
        )
    # Always an active challenge: no score, however high, stands in for it.
    kind = pol.challenges[0]
    st = Challenge(state.session, _after(now, cfg.timeouts.challenge), ev, kind, 1)
    return st, [Speak(f"pay.challenge.{kind}")]


def _face_candidate(ev: FaceResult, liveness: LivenessDecision) -> Candidate:
    assert ev.resident_id is not None
    return Candidate(ev.resident_id, VerificationMethod.FACE, ev.decision, ev.score, liveness)


def _in_challenge(
    state: Challenge, event: Event, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    cfg = ctx.config
    pol = cfg.liveness
    if isinstance(event, ChallengeResult):
        if event.kind != state.kind:
            return state, []
        face = state.face
        signals = {"passive": face.passive_liveness, "match": face.score, **event.signals}
        if event.passed:
            liveness = LivenessDecision(
                True, f"passive+{state.kind}", signals, f"challenge {state.kind} passed"
            )
            return _prepare(_face_candidate(face, liveness), state.session, now, ctx)
        if state.attempt >= pol.max_challenge_attempts:
            return _failed(
                state.session,
                FailReason.LIVENESS_FAILED,
                NextAction.USE_CARD,
                now,
                ctx,
                alternatives=NON_FACE_METHODS,
                detail=f"{state.kind} failed",
            )
        idx = (pol.challenges.index(state.kind) + 1) if state.kind in pol.challenges else 0
        kind = pol.challenges[idx % len(pol.challenges)]
        st = Challenge(
            state.session, _after(now, cfg.timeouts.challenge), face, kind, state.attempt + 1
        )
        return st, [Speak(f"pay.challenge.{kind}")]
    if isinstance(event, Touch) and event.action == "cancel":
        return Idle(state.session), [Speak("pay.cancelled")]
    return _start(state, event, now, ctx, faces=False)


# --------------------------------------------------------------------------- preparing


def _with_override(cand: Candidate, kind: OverrideKind, staff_id: str) -> Candidate:
    others = tuple(o for o in cand.overrides if o.kind is not kind)
    return replace(cand, overrides=(*others, StaffOverride(kind, staff_id.strip())))


@dataclass(frozen=True, slots=True)
class _SlotMeal:
    """The slot a meal is for, the payer's meals of the day and the duplicate guard."""

    slot: MealSlot
    day: date
    meals: Sequence[PriorMeal]
    guard: GuardResult


def _slot_meal(
    cand: Candidate, payer_id: str, label: str, session: int, now: datetime, ctx: FlowContext
) -> _SlotMeal | tuple[State, list[Effect]]:
    """The meal's slot and the once-per-meal guard; a screen instead when there
    is no meal service now or the slot's meal is already paid."""
    cfg = ctx.config
    slot = cand.slot or slot_at(now, cfg.slot_windows)
    if slot is None:
        return _failed(session, FailReason.NO_MEAL_SERVICE, NextAction.COME_BACK, now, ctx)
    day = service_date(now, cfg.slot_windows)
    meals = ctx.meals(payer_id, day)
    dup_override = cand.override(OverrideKind.DUPLICATE)
    guard = check_duplicate(
        meals,
        slot=slot,
        day=day,
        staff_override=dup_override.staff_id if dup_override else None,
        another_portion=cand.another_portion,
        any_meal=cfg.duplicate_guard_any_meal,
        tz=cfg.slot_windows.tz,
    )
    if not guard.ok:
        assert guard.paid_at_hhmm is not None and guard.record_id is not None
        st = AlreadyPaid(
            session,
            _after(now, cfg.timeouts.already_paid),
            cand,
            label,
            slot,
            guard.paid_at_hhmm,
            guard.record_id,
        )
        return st, [Speak("pay.already_paid", (("time", guard.paid_at_hhmm),))]
    return _SlotMeal(slot, day, meals, guard)


def _prepare(
    cand: Candidate, session: int, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    """Resolve the resident, slot, duplicate guard, menu, quote, funds, limits
    and second-factor needs; ends in Confirm or in a screen that explains why not."""
    if cand.visitor is not None:
        return _prepare_visitor(cand, cand.visitor, session, now, ctx)
    cfg = ctx.config
    resident = ctx.resident(cand.resident_id)
    if resident is None:
        return _failed(
            session,
            FailReason.RESIDENT_NOT_FOUND,
            NextAction.ASK_STAFF,
            now,
            ctx,
            alternatives=(VerificationMethod.STAFF,),
        )
    if not resident.active:
        return _failed(session, FailReason.RESIDENT_INACTIVE, NextAction.ASK_STAFF, now, ctx)
    if cand.method is VerificationMethod.FACE and not resident.consent_face_pay:
        return _failed(
            session,
            FailReason.NO_FACE_CONSENT,
            NextAction.USE_CARD,
            now,
            ctx,
            alternatives=NON_FACE_METHODS,
        )
    at = _slot_meal(cand, resident.resident_id, resident.name_masked, session, now, ctx)
    if not isinstance(at, _SlotMeal):
        return at
    slot, day, meals, guard = at.slot, at.day, at.meals, at.guard
    order = _order_lines(cand, slot, day, session, now, ctx)
    if not isinstance(order, _Order):
        return order
    lines = order.lines
    q = quote(
        policy=ctx.policy(day),
        categories=resident.categories,
        slot=slot,
        lines=lines,
        balance_before=ctx.balance(resident.resident_id),
        subsidised_before=subsidised_meals(meals, slot, day),
        overdraft_limit=cfg.overdraft_limit,
    )
    # a portion the senior added on top of an earlier meal: never a second subsidy
    second_portion = guard.another_portion and guard.overridden_by is None
    if second_portion:
        q = _without_subsidy(q)
    if not q.funds_ok:
        return _short_of_funds(q, session, now, ctx)
    if cand.override(OverrideKind.LIMITS) is None:
        lim = check_limits(q.due, ctx.exposure(resident.resident_id), cfg.limits)
        if not lim.ok:
            assert lim.reason is not None
            return _staff_required(
                cand, resident, lim.reason.value, OverrideKind.LIMITS, session, now, ctx, lim.limit
            )
    needs_2fa = cand.method is VerificationMethod.FACE and (
        cand.match_decision != "identified" or q.due.fen >= cfg.large_amount.fen
    )
    options: tuple[SecondFactor, ...] = ()
    if needs_2fa:
        if cand.override(OverrideKind.SECOND_FACTOR) is not None:
            needs_2fa = False
        else:
            options = tuple(
                f
                for f, available in (
                    (SecondFactor.PHONE_LAST4, resident.phone_last4 is not None),
                    (SecondFactor.CARD, bool(resident.card_ids)),
                )
                if available
            )
            if not options:
                return _staff_required(
                    cand,
                    resident,
                    SECOND_FACTOR_UNAVAILABLE,
                    OverrideKind.SECOND_FACTOR,
                    session,
                    now,
                    ctx,
                )
    payment = Payment(
        cand,
        resident.name_masked,
        q.category or resident.display_category,
        slot,
        day,
        q,
        needs_2fa,
        options,
        meals_before=guard.meals_before,
        another_portion=second_portion,
        paid_before_hhmm=guard.paid_at_hhmm,
    )
    confirm = Confirm(session, _after(now, cfg.timeouts.confirm), payment)
    return confirm, [Speak("pay.confirm", (("due", q.due.yuan_str()),))]


def _short_of_funds(
    q: Quote, session: int, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    return _failed(
        session, FailReason.INSUFFICIENT_BALANCE, NextAction.TOP_UP, now, ctx, amount=q.shortfall
    )


@dataclass(frozen=True, slots=True)
class _Order:
    lines: tuple[OrderLine, ...]


def _order_lines(
    cand: Candidate, slot: MealSlot, day: date, session: int, now: datetime, ctx: FlowContext
) -> _Order | tuple[State, list[Effect]]:
    """The order's lines from the day's menu; the no-menu screen when there are none."""
    menu = ctx.menu(day)
    try:
        lines = menu.order_lines(slot, cand.items) if menu else ()
    except MenuError as exc:
        return _failed(session, FailReason.NO_MENU, NextAction.ASK_STAFF, now, ctx, detail=exc.code)
    if not lines:
        return _failed(session, FailReason.NO_MENU, NextAction.ASK_STAFF, now, ctx)
    return _Order(tuple(lines))


def _without_subsidy(q: Quote) -> Quote:
    """The same order priced in full (a second portion gets no subsidy)."""
    if q.subsidy.fen == 0:
        return q
    return replace(
        q,
        subsidy=_ZERO,
        due=q.list_total,
        balance_after=q.balance_before - q.list_total,
        applied=None,
        outcome=Outcome.LIMIT_REACHED,
    )


def _staff_required(
    cand: Candidate,
    resident: Resident,
    reason: str,
    kind: OverrideKind,
    session: int,
    now: datetime,
    ctx: FlowContext,
    limit: Money | None = None,
) -> tuple[State, list[Effect]]:
    st = StaffRequired(
        session,
        _after(now, ctx.config.timeouts.staff_required),
        cand,
        resident.name_masked,
        reason,
        kind,
        limit,
    )
    return st, [Speak("pay.staff_required")]


# --------------------------------------------------------------------------- visitors

VISITOR_HINT = "visitor_hint"  # Failed.detail: face pay works at the home centre


_KEY_TYPES = {
    VerificationMethod.CARD: KeyType.CARD,
    VerificationMethod.ID_CARD: KeyType.ID_NUMBER,
    VerificationMethod.STAFF: KeyType.LOOKUP,
}


def _ask_visitor(
    session: int,
    method: VerificationMethod,
    key: str,
    now: datetime,
    ctx: FlowContext,
    *,
    phone_last4: str = "",
    staff_id: str | None = None,
    slot: MealSlot | None = None,
) -> tuple[State, list[Effect]]:
    """Not this centre's card, ID card or senior: ask the platform (or the roster)."""
    cfg = ctx.config
    at_slot = slot or slot_at(now, cfg.slot_windows)
    if at_slot is None:
        return _failed(session, FailReason.NO_MEAL_SERVICE, NextAction.COME_BACK, now, ctx)
    day = service_date(now, cfg.slot_windows)
    st = VisitorChecking(session, _after(now, cfg.timeouts.visitor), method, staff_id, slot)
    ask = AskVisitor(session, _KEY_TYPES[method], key, day, at_slot, phone_last4)
    return st, [ask]


def _unknown_visitor(
    session: int, method: VerificationMethod, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    reason, alternatives = _UNKNOWN[method]
    return _failed(session, reason, NextAction.ASK_STAFF, now, ctx, alternatives=alternatives)


_UNKNOWN: dict[VerificationMethod, tuple[FailReason, tuple[VerificationMethod, ...]]] = {
    VerificationMethod.CARD: (
        FailReason.CARD_UNKNOWN,
        (VerificationMethod.ID_CARD, VerificationMethod.STAFF),
    ),
    VerificationMethod.ID_CARD: (
        FailReason.ID_CARD_UNKNOWN,
        (VerificationMethod.CARD, VerificationMethod.STAFF),
    ),
    VerificationMethod.STAFF: (FailReason.RESIDENT_NOT_FOUND, (VerificationMethod.STAFF,)),
}


def _in_visitor_checking(
    state: VisitorChecking, event: Event, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    if isinstance(event, VisitorAnswered) and event.session == state.session:
        policy = ctx.config.visitors
        status = event.status
        if status is None or policy is None or status.home_centre_id == policy.centre_id:
            return _unknown_visitor(state.session, state.method, now, ctx)
        visitor = VisitorCandidate(status, event.payment_source or policy.payment_source)
        cand = Candidate(
            status.person_id,
            state.method,
            staff_id=state.staff_id,
            slot=state.slot,
            visitor=visitor,
        )
        return _prepare(cand, state.session, now, ctx)
    if isinstance(event, Touch) and event.action == "cancel":
        return Idle(state.session), [Speak("pay.cancelled")]
    return state, []


def _in_visitor_claiming(
    state: VisitorClaiming, event: Event, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    if isinstance(event, SlotClaimAnswered) and event.session == state.session:
        cand = state.candidate
        visitor = cand.visitor
        assert visitor is not None
        if state.payment is not None:
            return _debit_answered(state.payment, visitor, event, now, ctx)
        if event.outcome is ClaimOutcome.GRANTED and event.claim_id:
            visitor = replace(visitor, claim_id=event.claim_id, record_id=event.record_id)
        elif event.outcome is ClaimOutcome.CLAIMED:
            visitor = replace(visitor, claimed_elsewhere=True)
        else:  # no answer: decide as offline (roster rules, marked for review)
            status = replace(visitor.status, source=Source.ROSTER, subsidised_in_district=None)
            visitor = replace(visitor, status=status)
        return _prepare(replace(cand, visitor=visitor), state.session, now, ctx)
    if isinstance(event, Touch) and event.action == "cancel":
        return Idle(state.session), [Speak("pay.cancelled")]
    return state, []


def _debit_answered(
    payment: Payment,
    visitor: VisitorCandidate,
    event: SlotClaimAnswered,
    now: datetime,
    ctx: FlowContext,
) -> tuple[State, list[Effect]]:
    """The platform's answer to the claim with the district wallet's debit.
    Granted: the meal is recorded under the claimed record id. Refused or no
    answer: the confirm screen again, paid in cash and saying why; the record
    id stays, so that a debit the platform made but could not say is released
    when the cash meal arrives under it."""
    visit = payment.visit
    assert visit is not None
    kept = replace(visitor, record_id=event.record_id)
    if event.outcome is ClaimOutcome.GRANTED and event.claim_id:
        visitor = replace(kept, claim_id=event.claim_id)
        paid = replace(
            payment,
            candidate=replace(payment.candidate, visitor=visitor),
            visit=replace(visit, claim_id=event.claim_id, wallet_after_fen=event.wallet_after_fen),
        )
        return _charge(event.session, paid, None, now, ctx)
    if event.outcome is ClaimOutcome.CLAIMED:
        visitor = replace(kept, claimed_elsewhere=True)
    elif event.outcome is ClaimOutcome.INSUFFICIENT:
        visitor = replace(
            kept, payment_source=PaymentSource.CASH, wallet_note=VisitRefusal.HOME_WALLET_SHORT
        )
    else:  # no answer: decided as offline (the district wallet then pays nothing)
        status = replace(kept.status, source=Source.ROSTER, subsidised_in_district=None)
        visitor = replace(kept, status=status)
    return _prepare(replace(payment.candidate, visitor=visitor), event.session, now, ctx)


def visitor_label(home_centre_id: str, home_centre_name: str = "") -> str:
    """How a visitor appears on the receipt and in lists (no name travels): the
    home centre's name, its id when the district did not give one."""
    return f"来访长者·{home_centre_name.strip() or home_centre_id}"


def _prepare_visitor(
    cand: Candidate,
    visitor: VisitorCandidate,
    session: int,
    now: datetime,
    ctx: FlowContext,
) -> tuple[State, list[Effect]]:
    """A senior of another centre: the same guard, menu, quote and limits as a
    resident's meal, with the subsidy decided by :func:`decide_visit` and, when
    it is granted online, the slot claimed at the platform first."""
    cfg = ctx.config
    policy = cfg.visitors
    status = visitor.status
    if policy is None or status.home_centre_id == policy.centre_id:
        return _unknown_visitor(session, cand.method, now, ctx)
    label = visitor_label(status.home_centre_id, status.home_centre_name)
    at = _slot_meal(cand, status.person_id, label, session, now, ctx)
    if not isinstance(at, _SlotMeal):
        return at
    slot, day, meals, guard = at.slot, at.day, at.meals, at.guard
    if not status.active:
        return _failed(session, FailReason.RESIDENT_INACTIVE, NextAction.ASK_STAFF, now, ctx)
    decision = decide_visit(
        status,
        this_centre_id=policy.centre_id,
        local_subsidised=subsidised_meals(meals, slot, day),
        payment_source=visitor.payment_source,
        limits=policy.limits,
        # the offline budget matters only without the platform (saves a read online)
        usage=ctx.visit_usage(day, slot) if status.source is Source.ROSTER else OfflineUsage(),
    )
    order = _order_lines(cand, slot, day, session, now, ctx)
    if not isinstance(order, _Order):
        return order
    lines = order.lines
    wallet = decision.payment_source is PaymentSource.VISITED_WALLET
    list_total = Money(sum(ln.amount.fen for ln in lines))
    q = quote(
        policy=ctx.policy(day),
        categories=status.categories,
        slot=slot,
        lines=lines,
        # cash and the home wallet are not this terminal's to check
        balance_before=ctx.balance(status.person_id) if wallet else list_total,
        subsidised_before=decision.subsidised_before,
        overdraft_limit=cfg.overdraft_limit if wallet else _ZERO,
    )
    second_portion = guard.another_portion and guard.overridden_by is None
    if decision.subsidy_allowed and not capped_subsidy(q.subsidy.fen, decision):
        # the offline budget left cannot hold this subsidy
        decision = replace(decision, subsidy_allowed=False, refusal=VisitRefusal.OFFLINE_LIMIT)
    if decision.refusal is VisitRefusal.OFFLINE_LIMIT and cand.override(OverrideKind.VISIT_LIMIT):
        # staff approved the subsidy beyond this terminal's offline limits (still for review)
        decision = replace(decision, subsidy_allowed=True, refusal=None, subsidy_cap_fen=None)
    if second_portion or visitor.claimed_elsewhere or not decision.subsidy_allowed:
        q = _without_subsidy(q)
    decision = wallet_fallback(decision, status, q.due.fen)
    if not q.funds_ok:
        return _short_of_funds(q, session, now, ctx)
    if needs_claim(visitor, decision, q.subsidy.fen):
        st2 = VisitorClaiming(session, _after(now, cfg.timeouts.visitor), cand)
        return st2, [ClaimSlot(session, status.person_id, day, slot)]
    if cand.override(OverrideKind.LIMITS) is None:
        lim = check_limits(q.due, ctx.exposure(status.person_id), cfg.limits)
        if not lim.ok:
            assert lim.reason is not None
            st3 = StaffRequired(
                session,
                _after(now, cfg.timeouts.staff_required),
                cand,
                label,
                lim.reason.value,
                OverrideKind.LIMITS,
                lim.limit,
            )
            return st3, [Speak("pay.staff_required")]
    payment = Payment(
        cand,
        label,
        q.category or (status.categories[0] if status.categories else SeniorCategory.NONE),
        slot,
        day,
        q,
        False,
        meals_before=guard.meals_before,
        another_portion=second_portion,
        paid_before_hhmm=guard.paid_at_hhmm,
        visit=visit_of(visitor, decision),
    )
    confirm = Confirm(session, _after(now, cfg.timeouts.confirm), payment)
    return confirm, [Speak("pay.confirm", (("due", q.due.yuan_str()),))]


# --------------------------------------------------------------------------- confirming


def _in_confirm(
    state: Confirm, event: Event, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    if isinstance(event, Touch):
        if event.action == "cancel":
            return Idle(state.session), [Speak("pay.cancelled")]
        p = state.payment
        if p.visit is not None and needs_debit(p.visit, p.quote.subsidy.fen, p.quote.due.fen):
            # the district wallet pays: claim and debit now, in one request
            st0 = VisitorClaiming(
                state.session, _after(now, ctx.config.timeouts.visitor), p.candidate, p
            )
            claim = ClaimSlot(
                state.session,
                p.visit.person_id,
                p.day,
                p.slot,
                debit_fen=p.quote.due.fen or None,
                subsidised=p.quote.subsidy.fen > 0,
            )
            return st0, [claim]
        if state.payment.needs_second_factor:
            st = SecondFactorEntry(
                state.session, _after(now, ctx.config.timeouts.second_factor), state.payment
            )
            return st, [Speak("pay.second_factor")]
        sf = _staff_second_factor(state.payment)
        return _charge(state.session, state.payment, sf, now, ctx)
    visit = state.payment.visit
    if (
        isinstance(event, StaffApprove)
        and event.staff_id.strip()
        and visit is not None
        and visit.refusal is VisitRefusal.OFFLINE_LIMIT
    ):
        cand = _with_override(state.payment.candidate, OverrideKind.VISIT_LIMIT, event.staff_id)
        return _prepare(cand, state.session, now, ctx)
    if isinstance(event, SelectItems):
        menu = ctx.menu(state.payment.day)
        try:
            if menu is None or not menu.order_lines(state.payment.slot, event.items):
                raise MenuError("nothing selected", code="empty_order")
        except MenuError:
            return state, [Speak("pay.item_unavailable")]
        cand = replace(state.payment.candidate, items=event.items)
        return _prepare(cand, state.session, now, ctx)
    return state, []


def _staff_second_factor(payment: Payment) -> SecondFactor | None:
    """A face payment whose second factor staff waived records STAFF."""
    cand = payment.candidate
    if cand.method is VerificationMethod.FACE and cand.override(OverrideKind.SECOND_FACTOR):
        return SecondFactor.STAFF
    return None


def _in_second_factor(
    state: SecondFactorEntry, event: Event, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    if isinstance(event, Touch) and event.action == "cancel":
        return Idle(state.session), [Speak("pay.cancelled")]
    if not isinstance(event, DigitsEntered | CardTapped):
        return state, []
    resident = ctx.resident(state.payment.resident_id)
    factor: SecondFactor | None = None
    if resident is not None:
        if isinstance(event, DigitsEntered) and resident.phone_last4 is not None:
            if hmac.compare_digest(event.digits.strip(), resident.phone_last4):
                factor = SecondFactor.PHONE_LAST4
        elif isinstance(event, CardTapped) and resident.has_card(event.card_id):
            factor = SecondFactor.CARD
    if factor is not None:
        return _charge(state.session, state.payment, factor, now, ctx)
    attempts = state.attempts + 1
    if attempts >= ctx.config.max_second_factor_attempts:
        return _failed(
            state.session,
            FailReason.SECOND_FACTOR_FAILED,
            NextAction.ASK_STAFF,
            now,
            ctx,
            alternatives=(VerificationMethod.STAFF,),
        )
    return replace(state, attempts=attempts), [Speak("pay.second_factor.wrong")]


def _charge(
    session: int,
    payment: Payment,
    second_factor: SecondFactor | None,
    now: datetime,
    ctx: FlowContext,
) -> tuple[State, list[Effect]]:
    cand = payment.candidate
    req = ChargeRequest(
        session=session,
        resident_id=cand.resident_id,
        slot=payment.slot,
        day=payment.day,
        quote=payment.quote,
        method=cand.method,
        second_factor=second_factor,
        liveness=cand.liveness,
        match_decision=cand.match_decision,
        match_score=cand.match_score,
        staff_id=cand.staff_id,
        overrides=cand.overrides,
        requested_at=now,
        request_id=ctx.new_request_id(),
        another_portion=payment.another_portion,
        meals_before=payment.meals_before,
        visit=payment.visit,
        record_id=cand.visitor.record_id if cand.visitor is not None else None,
    )
    st = Charging(session, _after(now, ctx.config.timeouts.charging), payment, req)
    return st, [Charge(req)]


# --------------------------------------------------------------------------- charging


def _in_charging(
    state: Charging | ChargePending, event: Event, now: datetime, ctx: FlowContext
) -> tuple[State, list[Effect]]:
    """Only the charge's own outcome moves on from here: touches, faces and
    cards wait (a charge in flight cannot be cancelled)."""
    if isinstance(event, ChargeCommitted) and event.session == state.session:
        p = state.payment
        receipt = receipt_for_charge(
            centre_name=ctx.config.centre_name,
            record_id=event.record_id,
            at=now,
            resident_masked=p.name_masked,
            lines=p.lines,
            list_total=p.quote.list_total,
            subsidy=p.quote.subsidy,
            paid=p.quote.due,
            balance_after=event.balance_after,
            method=p.method,
            slot=p.slot,
            category=p.category,
            record_hash=event.record_hash,
        )
        st = Done(
            state.session,
            _after(now, ctx.config.timeouts.done),
            p,
            event.record_id,
            event.balance_after,
            receipt,
        )
        params = (("paid", p.quote.due.yuan_str()), ("balance", event.balance_after.yuan_str()))
        return st, [Speak("pay.success", params), Print(receipt)]
    if isinstance(event, ChargeFailed) and event.session == state.session:
        known = {r.value for r in FailReason}
        reason = FailReason(event.reason) if event.reason in known else FailReason.CHARGE_FAILED
        action = (
            NextAction.TOP_UP
            if reason is FailReason.INSUFFICIENT_BALANCE
            else (NextAction.ASK_STAFF)
        )
        return _failed(state.session, reason, action, now, ctx, detail=event.reason)
    return state, []
