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
from dataclasses import dataclass
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
    HOME_WALLET_OFFLINE = "home_wallet_needs_platform"
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
    here and not yet uploaded)."""
    if status.home_centre_id == this_centre_id:
        raise DomainError(f"a senior of this centre is not a visitor ({VisitRefusal.SAME_CENTRE})")
    if not status.active:
        return VisitDecision(
            local_subsidised, False, False, payment_source, VisitRefusal.NOT_ACTIVE
        )
    online = status.source is Source.ONLINE
    if payment_source is PaymentSource.HOME_WALLET and not online:
        return VisitDecision(
            local_subsidised, False, True, payment_source, VisitRefusal.HOME_WALLET_OFFLINE
        )
    if online:
        before = max(local_subsidised, 1 if status.subsidised_in_district else 0)
        refusal = VisitRefusal.ALREADY_SUBSIDISED if before > 0 else None
        return VisitDecision(before, before == 0, False, payment_source, refusal)
    if local_subsidised > 0:
        return VisitDecision(
            local_subsidised, False, True, payment_source, VisitRefusal.ALREADY_SUBSIDISED
        )
    budget = limits.max_subsidy_fen_per_day - usage.subsidy_fen_today
    if usage.visits_this_slot >= limits.max_subsidised_visits_per_slot or budget <= 0:
        return VisitDecision(0, False, True, payment_source, VisitRefusal.OFFLINE_LIMIT)
    return VisitDecision(0, True, True, payment_source, None, subsidy_cap_fen=budget)


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


@dataclass(frozen=True, slots=True)
class SettlementLine:
    """What ``claimant`` (the visited centre) paid out on behalf of ``debtor``
    (the visitors' home centre) in the period."""

    claimant_centre_id: str
    debtor_centre_id: str
    period_from: date
    period_to: date
    meals: int
    subsidy_fen: int
    record_ids: tuple[str, ...]


def settle(meals: Iterable[VisitMeal], period_from: date, period_to: date) -> list[SettlementLine]:
    """One line per (visited centre, home centre) pair with subsidised, not voided
    visiting meals in ``[period_from, period_to]`` (inclusive), sorted by pair."""
    if period_to < period_from:
        raise DomainError("the settlement period ends before it starts")
    pairs: dict[tuple[str, str], list[VisitMeal]] = {}
    for m in meals:
        if m.subsidy_fen < 0:
            raise DomainError(f"meal {m.record_id} has a negative subsidy")
        if m.voided or m.subsidy_fen == 0 or not period_from <= m.day <= period_to:
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
            len(rows),
            sum(r.subsidy_fen for r in rows),
            tuple(sorted(r.record_id for r in rows)),
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


def settlement_csv(lines: Iterable[SettlementLine]) -> str:
    """The settlement report as CSV (UTF-8, one header row, amounts in fen and yuan)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SETTLEMENT_CSV_HEADER)
    for line in lines:
        writer.writerow(
            (
                line.claimant_centre_id,
                line.debtor_centre_id,
                line.period_from.isoformat(),
                line.period_to.isoformat(),
                line.meals,
                line.subsidy_fen,
                f"{line.subsidy_fen // 100}.{line.subsidy_fen % 100:02d}",
            )
        )
    return out.getvalue()
