"""City-wide meals (全城通吃): the pure rules for a senior eating at a centre
other than their own, and the settlement between centres.

No I/O here. The kiosk learns who a visitor is from the platform (online) or
from the district roster dataset (offline); :func:`decide_visit` turns that
into what the price quote needs and what the record must carry:

* **once per meal city-wide**: online, the platform says whether the senior
  already had a subsidised meal in this slot anywhere in the district, and a
  subsidised meal is only committed after the platform granted the slot's claim
  (atomic at the platform); offline the terminal only knows its own meals, so
  the meal is subsidised within the offline limits and marked for review, and
  the platform flags it at upload if the slot was already claimed elsewhere;
* **where the money comes from** is a district policy (:class:`PaymentSource`):
  the visitor's home-centre wallet held by the platform (online only), cash at
  the counter, or a wallet at the visited centre;
* **settlement**: every visiting meal carries its home centre; the subsidy the
  visited centre paid out is its claim against the home centre's subsidy
  budget (:func:`settle`).

The subsidy amount itself is the ordinary quote (``payment.subsidy.quote``)
with ``subsidised_before`` from :func:`decide_visit`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum

from payment.domain import MealSlot, SeniorCategory
from payment.errors import DomainError


class Source(StrEnum):
    """Where the terminal learnt who the visitor is."""

    ONLINE = "online"  # the platform answered the eligibility request
    ROSTER = "roster"  # the district roster dataset (offline)


class PaymentSource(StrEnum):
    """Where a visitor pays the due amount from (district policy)."""

    HOME_WALLET = "home_wallet"  # the home-centre wallet, held by the platform
    CASH = "cash"  # at the counter; the terminal records it
    VISITED_WALLET = "visited_wallet"  # a wallet the senior holds at the visited centre


class VisitRefusal(StrEnum):
    """Why a visitor's meal is not subsidised (or cannot be paid as asked)."""

    ALREADY_SUBSIDISED = "already_subsidised_in_district"
    OFFLINE_LIMIT = "offline_visit_limit"
    HOME_WALLET_OFFLINE = "home_wallet_needs_platform"  # no platform: cash instead
    HOME_WALLET_SHORT = "home_wallet_insufficient"  # the district wallet holds too little
    NOT_ACTIVE = "visitor_not_active"
    SAME_CENTRE = "not_a_visitor"


@dataclass(frozen=True, slots=True)
class VisitorStatus:
    """What the platform (or the roster) says about a visiting senior. No name
    and no face: a pseudonymous id, the home centre and the categories."""

    person_id: str
    home_centre_id: str
    categories: tuple[SeniorCategory, ...]
    source: Source
    active: bool = True
    # Online only: a subsidised meal in this slot today anywhere in the district.
    subsidised_in_district: bool | None = None
    # The home centre's name for the screen ('' when the district did not say).
    home_centre_name: str = ""
    # Online, policy home_wallet: the senior's district wallet balance (fen).
    wallet_balance_fen: int | None = None

    def __post_init__(self) -> None:
        if self.source is Source.ONLINE and self.subsidised_in_district is None:
            raise DomainError("an online answer must say whether the slot was subsidised")
        if self.source is Source.ROSTER and self.subsidised_in_district is not None:
            raise DomainError("the roster cannot know the district's meals of the day")


@dataclass(frozen=True, slots=True)
class OfflineVisitLimits:
    """How much a terminal may subsidise visitors while it cannot ask the platform."""

    max_subsidised_visits_per_slot: int = 20  # all visitors, this terminal, one slot
    max_subsidy_fen_per_day: int = 20_000  # all visitors, this terminal, one day

    def __post_init__(self) -> None:
        if self.max_subsidised_visits_per_slot < 0 or self.max_subsidy_fen_per_day < 0:
            raise DomainError("offline visit limits must not be negative")


@dataclass(frozen=True, slots=True)
class OfflineUsage:
    """Visitor subsidies this terminal granted offline and not yet acknowledged."""

    visits_this_slot: int = 0
    subsidy_fen_today: int = 0


@dataclass(frozen=True, slots=True)
class VisitDecision:
    """What the quote and the record need for a visiting senior's meal."""

    subsidised_before: int  # for payment.subsidy.quote
    subsidy_allowed: bool
    review: bool  # decided without the platform: the platform re-checks at upload
    payment_source: PaymentSource
    refusal: VisitRefusal | None = None
    # The subsidy the terminal may grant at most (offline budget left), None = no cap.
    subsidy_cap_fen: int | None = None
    # Why the district wallet is not paid from (the meal is paid in cash instead).
    wallet_note: VisitRefusal | None = None


def decide_visit(
    status: VisitorStatus,
    *,
    this_centre_id: str,
    local_subsidised: int,
    payment_source: PaymentSource,
    limits: OfflineVisitLimits,
    usage: OfflineUsage,
) -> VisitDecision:
    """Decide a visiting senior's meal.

    ``local_subsidised`` is the senior's subsidised meals in this slot today on
    this terminal (the district answer may not include a meal made a moment ago
    here and not yet uploaded). The district wallet (``home_wallet``) can only
    be paid from online: without the platform the meal is decided as any
    offline visit and paid in cash, with a note saying why."""
    note = None
    if payment_source is PaymentSource.HOME_WALLET and status.source is Source.ROSTER:
        payment_source, note = PaymentSource.CASH, VisitRefusal.HOME_WALLET_OFFLINE
    if status.home_centre_id == this_centre_id:
        raise DomainError(f"a senior of this centre is not a visitor ({VisitRefusal.SAME_CENTRE})")
    if not status.active:
        refused = VisitRefusal.NOT_ACTIVE
        return VisitDecision(local_subsidised, False, False, payment_source, refused, None, note)
    online = status.source is Source.ONLINE
    if online:
        before = max(local_subsidised, 1 if status.subsidised_in_district else 0)
        refusal = VisitRefusal.ALREADY_SUBSIDISED if before > 0 else None
        return VisitDecision(before, before == 0, False, payment_source, refusal, None, note)
    if local_subsidised > 0:
        refused = VisitRefusal.ALREADY_SUBSIDISED
        return VisitDecision(local_subsidised, False, True, payment_source, refused, None, note)
    budget = limits.max_subsidy_fen_per_day - usage.subsidy_fen_today
    if usage.visits_this_slot >= limits.max_subsidised_visits_per_slot or budget <= 0:
        refused = VisitRefusal.OFFLINE_LIMIT
        return VisitDecision(0, False, True, payment_source, refused, None, note)
    return VisitDecision(0, True, True, payment_source, None, budget, note)


# -- settlement between centres ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VisitMeal:
    """One visiting meal as the platform holds it."""

    record_id: str
    day: date
    slot: MealSlot
    visited_centre_id: str
    home_centre_id: str
    subsidy_fen: int
    voided: bool = False  # voided or refunded in full: nothing to settle
    wallet_fen: int = 0  # paid from the district wallet the platform holds (net of refunds)


@dataclass(frozen=True, slots=True)
class SettlementLine:
    """What ``claimant`` (the visited centre) paid out on behalf of ``debtor``
    (the visitors' home centre) in the period: the subsidy of ``meals``, and
    ``wallet_fen`` of ``wallet_meals`` paid from the district wallet (policy
    ``home_wallet``): the claimant took nothing in hand for those, the debtor
    took the cash at top-up, so the debtor owes it to the claimant."""

    claimant_centre_id: str
    debtor_centre_id: str
    period_from: date
    period_to: date
    meals: int
    subsidy_fen: int
    record_ids: tuple[str, ...]
    wallet_meals: int = 0
    wallet_fen: int = 0


def settle(meals: Iterable[VisitMeal], period_from: date, period_to: date) -> list[SettlementLine]:
    """One line per (visited centre, home centre) pair with subsidised or
    district-wallet-paid, not voided visiting meals in ``[period_from,
    period_to]`` (inclusive), sorted by pair. ``meals`` and ``record_ids`` are
    the subsidised ones (as in spec 1.2); ``wallet_meals`` those paid from the
    district wallet."""
    if period_to < period_from:
        raise DomainError("the settlement period ends before it starts")
    pairs: dict[tuple[str, str], list[VisitMeal]] = {}
    for m in meals:
        if m.subsidy_fen < 0 or m.wallet_fen < 0:
            raise DomainError(f"meal {m.record_id} has a negative subsidy or wallet amount")
        if m.voided or not (m.subsidy_fen or m.wallet_fen):
            continue
        if not period_from <= m.day <= period_to:
            continue
        if m.visited_centre_id == m.home_centre_id:
            continue  # a centre's own senior: nothing to settle
        pairs.setdefault((m.visited_centre_id, m.home_centre_id), []).append(m)
    return [
        SettlementLine(
            claimant,
            debtor,
            period_from,
            period_to,
            sum(1 for r in rows if r.subsidy_fen),
            sum(r.subsidy_fen for r in rows),
            tuple(sorted(r.record_id for r in rows if r.subsidy_fen)),
            wallet_meals=sum(1 for r in rows if r.wallet_fen),
            wallet_fen=sum(r.wallet_fen for r in rows),
        )
        for (claimant, debtor), rows in sorted(pairs.items())
    ]


SETTLEMENT_CSV_HEADER = (
    "claimant_centre_id",
    "debtor_centre_id",
    "period_from",
    "period_to",
    "meals",
    "subsidy_fen",
    "subsidy_yuan",
)
SETTLEMENT_CSV_WALLET = ("wallet_meals", "wallet_fen", "wallet_yuan")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def settlement_csv(lines: Iterable[SettlementLine], *, wallet: bool = False) -> str:
    """The settlement report as CSV (UTF-8, one header row, amounts in fen and
    yuan); with ``wallet`` the district wallet's columns after the subsidy's."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SETTLEMENT_CSV_HEADER + (SETTLEMENT_CSV_WALLET if wallet else ()))
    for line in lines:
        row: tuple[object, ...] = (
            line.claimant_centre_id,
            line.debtor_centre_id,
            line.period_from.isoformat(),
            line.period_to.isoformat(),
            line.meals,
            line.subsidy_fen,
            _yuan(line.subsidy_fen),
        )
        if wallet:
            row += (line.wallet_meals, line.wallet_fen, _yuan(line.wallet_fen))
        writer.writerow(row)
    return out.getvalue()


# -- the kiosk's visitor path ------------------------------------------------------------


class KeyType(StrEnum):
    """How a visitor identified (the key the platform and the roster are asked with)."""

    CARD = "card"  # card_hmac of the citizen or meal card
    ID_NUMBER = "id_number"  # id_number_hmac of the ID card
    LOOKUP = "lookup"  # lookup_hmac of name + phone last 4 (staff lookup)


class ClaimOutcome(StrEnum):
    """The platform's answer to a slot claim (``POST /v1/visits/claims``)."""

    GRANTED = "granted"  # 200: this meal holds the slot
    CLAIMED = "claimed"  # 409: another meal in the district holds it
    INSUFFICIENT = "insufficient"  # 409: the district wallet holds less than the due
    UNAVAILABLE = "unavailable"  # no answer: decide as offline


@dataclass(frozen=True, slots=True)
class VisitorPolicy:
    """This terminal's part of the district's city-wide meal settings."""

    centre_id: str
    payment_source: PaymentSource = PaymentSource.CASH
    limits: OfflineVisitLimits = field(default_factory=OfflineVisitLimits)

    def __post_init__(self) -> None:
        if not self.centre_id.strip():
            raise DomainError("the visitor policy needs this centre's id")


@dataclass(frozen=True, slots=True)
class VisitorCandidate:
    """A visiting senior on their way through the kiosk flow: who they are, how
    they pay, and what the platform said about the slot's claim."""

    status: VisitorStatus
    payment_source: PaymentSource
    claim_id: str | None = None  # the slot's claim granted to this meal
    record_id: str | None = None  # the record id the claim was made for
    claimed_elsewhere: bool = False  # the platform refused the claim (409)
    wallet_note: VisitRefusal | None = None  # the district wallet refused: pay in cash


@dataclass(frozen=True, slots=True)
class Visit:
    """The ``visit`` object a visiting meal's record carries (spec 1.2)."""

    person_id: str
    home_centre_id: str
    source: Source
    claim_id: str | None
    review: bool
    payment_source: PaymentSource
    refusal: VisitRefusal | None = None  # why there is no subsidy (screen only)
    categories: tuple[SeniorCategory, ...] = ()  # the record's ``categories``
    home_centre_name: str = ""  # screen only; the record names the centre by id
    wallet_note: VisitRefusal | None = None  # screen only: why not the district wallet
    wallet_balance_fen: int | None = None  # screen only: the district wallet before
    wallet_after_fen: int | None = None  # screen only: the district wallet after the debit

    @property
    def home_centre_label(self) -> str:
        """What the senior sees: the centre's name, else its id."""
        return self.home_centre_name or self.home_centre_id

    def to_payload(self) -> dict[str, object]:
        return {
            "person_id": self.person_id,
            "home_centre_id": self.home_centre_id,
            "source": self.source.value,
            "claim_id": self.claim_id,
            "review": self.review,
            "payment_source": self.payment_source.value,
        }

    @classmethod
    def from_payload(cls, data: dict[str, object]) -> Visit:
        claim = data.get("claim_id")
        return cls(
            person_id=str(data["person_id"]),
            home_centre_id=str(data["home_centre_id"]),
            source=Source(str(data["source"])),
            claim_id=None if claim is None else str(claim),
            review=bool(data["review"]),
            payment_source=PaymentSource(str(data["payment_source"])),
        )


def visit_of(cand: VisitorCandidate, decision: VisitDecision) -> Visit:
    """The record's ``visit`` object for a decided visitor meal."""
    refusal = decision.refusal
    if cand.claimed_elsewhere:
        refusal = VisitRefusal.ALREADY_SUBSIDISED
    return Visit(
        person_id=cand.status.person_id,
        home_centre_id=cand.status.home_centre_id,
        source=cand.status.source,
        claim_id=cand.claim_id,
        review=decision.review,
        payment_source=decision.payment_source,
        refusal=refusal,
        categories=cand.status.categories,
        home_centre_name=cand.status.home_centre_name,
        wallet_note=cand.wallet_note or decision.wallet_note,
        wallet_balance_fen=cand.status.wallet_balance_fen,
    )


def wallet_fallback(decision: VisitDecision, status: VisitorStatus, due_fen: int) -> VisitDecision:
    """Online on the ``home_wallet`` policy: a district wallet the platform said
    holds less than the amount due is not asked; the meal is paid in cash."""
    if (
        decision.payment_source is PaymentSource.HOME_WALLET
        and status.wallet_balance_fen is not None
        and status.wallet_balance_fen < due_fen
    ):
        return replace(
            decision, payment_source=PaymentSource.CASH, wallet_note=VisitRefusal.HOME_WALLET_SHORT
        )
    return decision


def needs_debit(visit: Visit, subsidy_fen: int, due_fen: int) -> bool:
    """A meal paid from the district wallet is claimed (and the wallet debited)
    when the senior presses pay, not before: a senior who cancels on the
    confirm screen has paid nothing."""
    return (
        visit.payment_source is PaymentSource.HOME_WALLET
        and visit.source is Source.ONLINE
        and visit.claim_id is None
        and (subsidy_fen > 0 or due_fen > 0)
    )


def needs_claim(cand: VisitorCandidate, decision: VisitDecision, subsidy_fen: int) -> bool:
    """Online and subsidised: the slot must be claimed at the platform before
    the senior confirms (once per meal city-wide). On the ``home_wallet``
    policy the claim is made with the debit, when the senior presses pay
    (:func:`needs_debit`)."""
    return (
        cand.status.source is Source.ONLINE
        and decision.payment_source is not PaymentSource.HOME_WALLET
        and decision.subsidy_allowed
        and subsidy_fen > 0
        and cand.claim_id is None
        and not cand.claimed_elsewhere
    )


def capped_subsidy(subsidy_fen: int, decision: VisitDecision) -> int:
    """The subsidy the terminal grants: none when refused, and none when the
    whole subsidy does not fit in the offline budget left (a part of the
    policy's amount would not match the policy at the platform)."""
    if not decision.subsidy_allowed:
        return 0
    if decision.subsidy_cap_fen is not None and subsidy_fen > decision.subsidy_cap_fen:
        return 0
    return subsidy_fen


@dataclass(frozen=True, slots=True)
class VisitorMealRow:
    """One visiting meal this terminal recorded (for the day's view and the
    offline budget)."""

    record_id: str
    person_id: str
    home_centre_id: str
    slot: MealSlot
    subsidy_fen: int
    source: Source
    review: bool
    voided: bool = False
    wallet_fen: int = 0  # paid from the district wallet (policy home_wallet)


@dataclass(frozen=True, slots=True)
class OwedLine:
    """Subsidy this centre paid out today on behalf of one home centre
    (``meals`` subsidised meals), and what its seniors paid here from their
    district wallet (``wallet_fen``: the home centre holds that cash)."""

    home_centre_id: str
    visitors: int
    meals: int
    subsidy_fen: int
    wallet_fen: int = 0


@dataclass(frozen=True, slots=True)
class VisitorsDay:
    """Today's visitors at this centre, for the manager screen."""

    visitors: int  # distinct seniors
    meals: int  # visiting meals, voided ones left out
    review: int  # meals decided offline (the platform re-checks them)
    owed: tuple[OwedLine, ...]  # per home centre: subsidised or district-wallet meals

    @property
    def owed_fen(self) -> int:
        return sum(o.subsidy_fen for o in self.owed)

    @property
    def wallet_owed_fen(self) -> int:
        return sum(o.wallet_fen for o in self.owed)


def visitors_day(rows: Iterable[VisitorMealRow]) -> VisitorsDay:
    """Sum up the day's visiting meals (voided meals count for nothing)."""
    live = [r for r in rows if not r.voided]
    per: dict[str, list[VisitorMealRow]] = {}
    for r in live:
        if r.subsidy_fen > 0 or r.wallet_fen > 0:
            per.setdefault(r.home_centre_id, []).append(r)
    owed = tuple(
        OwedLine(
            home,
            len({r.person_id for r in meals}),
            sum(1 for r in meals if r.subsidy_fen > 0),
            sum(r.subsidy_fen for r in meals),
            sum(r.wallet_fen for r in meals),
        )
        for home, meals in sorted(per.items())
    )
    return VisitorsDay(
        visitors=len({r.person_id for r in live}),
        meals=len(live),
        review=sum(1 for r in live if r.review),
        owed=owed,
    )


def offline_usage(rows: Iterable[VisitorMealRow], slot: MealSlot) -> OfflineUsage:
    """What this terminal granted visitors offline today (``rows`` are today's):
    subsidised roster meals in ``slot`` and their subsidy over the whole day."""
    offline = [r for r in rows if not r.voided and r.source is Source.ROSTER and r.subsidy_fen > 0]
    return OfflineUsage(
        visits_this_slot=sum(1 for r in offline if r.slot is slot),
        subsidy_fen_today=sum(r.subsidy_fen for r in offline),
    )
