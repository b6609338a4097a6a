"""The kiosk's port to the district for visiting seniors (city-wide meals).

The payment flow stays pure: it emits :class:`~payment.flow.AskVisitor` and
:class:`~payment.flow.ClaimSlot`, and a :class:`VisitorPort` answers them with
:class:`~payment.flow.VisitorAnswered` and :class:`~payment.flow.SlotClaimAnswered`.
The runner calls the port on its own thread (the platform may take its 2 s).

:class:`PlatformVisitors` is the port over :mod:`sync.visits`: it makes the
district keys (HMAC with the district pepper: no card number, ID number or
name leaves the terminal), asks the platform, and when the platform does not
answer, the pulled district roster. A claim that gets no answer is
``unavailable``: the flow then decides the meal as offline and marks it for
review.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from payment.domain import SeniorCategory
from payment.errors import PaymentError
from payment.flow import (
    AskVisitor,
    ClaimSlot,
    Effect,
    Event,
    FlowConfig,
    FlowContext,
    SlotClaimAnswered,
    State,
    VisitorAnswered,
)
from payment.headless import ChargePort, Drive, drive
from payment.visiting import (
    ClaimOutcome,
    KeyType,
    OfflineVisitLimits,
    PaymentSource,
    Source,
    VisitorPolicy,
    VisitorStatus,
)
from terminal.core.errors import TerminalError
from terminal.core.ids import new_ulid
from terminal.core.log import get_logger

if TYPE_CHECKING:
    from sync.visits import VisitorAnswer, VisitsClient
    from terminal.config.settings import Settings

log = get_logger(__name__)


class VisitorPort(Protocol):
    """Answers the flow's visitor effects (blocking; never on the GUI thread)."""

    def ask(self, ask: AskVisitor) -> VisitorAnswered: ...

    def claim(self, claim: ClaimSlot) -> SlotClaimAnswered: ...


def answer(port: VisitorPort, effect: Effect) -> Event | None:
    """The event answering ``effect`` when it is a visitor effect, else None."""
    if isinstance(effect, AskVisitor):
        return port.ask(effect)
    if isinstance(effect, ClaimSlot):
        return port.claim(effect)
    return None


def visitor_status(ans: VisitorAnswer) -> VisitorStatus:
    """The platform's (or the roster's) answer as the payment rules take it;
    categories this terminal does not know are left out."""
    cats: list[SeniorCategory] = []
    for c in ans.categories:
        try:
            cats.append(SeniorCategory.parse(c))
        except PaymentError:
            continue
    online = ans.source == Source.ONLINE.value
    return VisitorStatus(
        person_id=ans.person_id,
        home_centre_id=ans.home_centre_id,
        categories=tuple(cats) or (SeniorCategory.NONE,),
        source=Source.ONLINE if online else Source.ROSTER,
        active=ans.active,
        subsidised_in_district=bool(ans.subsidised_in_district) if online else None,
        home_centre_name=ans.home_centre_name,
        wallet_balance_fen=ans.wallet_balance_fen if online else None,
    )


def _payment_source(text: str) -> PaymentSource | None:
    try:
        return PaymentSource(text)
    except ValueError:
        return None


@dataclass
class PlatformVisitors:
    """A :class:`VisitorPort` over the platform (``client``; None = offline
    only) and the district roster pulled into ``sync_db_path``.

    The slots this terminal claimed are remembered (person, day, slot -> the
    record id): a senior who cancelled on the confirm screen and taps again is
    not refused the subsidy by their own unused claim; the claim is asked again
    for the same record id, which the platform answers with the same claim.
    A meal already made for it is caught before, by the local once-per-meal guard."""

    centre_id: str
    pepper: bytes
    sync_db_path: Path
    client: VisitsClient | None = None
    new_record_id: Callable[[], str] = new_ulid
    held: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def key(self, ask: AskVisitor) -> str:
        from sync.visits import card_hmac, id_number_hmac, lookup_hmac

        if ask.key_type is KeyType.CARD:
            return card_hmac(self.pepper, ask.key)
        if ask.key_type is KeyType.ID_NUMBER:
            return id_number_hmac(self.pepper, ask.key)
        return lookup_hmac(self.pepper, ask.key, ask.phone_last4)

    def ask(self, ask: AskVisitor) -> VisitorAnswered:
        from sync.client import PlatformError
        from sync.visits import PlatformUnavailable, roster_lookup

        try:
            key = self.key(ask)
        except TerminalError as exc:  # not a card number, no phone digits ...
            log.info("visitor_key_refused", code=exc.code)
            return VisitorAnswered(ask.session, None)
        got: VisitorAnswer | None = None
        online = False
        if self.client is not None:
            try:
                got = self.client.eligibility(
                    centre_id=self.centre_id,
                    key_type=ask.key_type.value,
                    key=key,
                    day=ask.day,
                    slot=ask.slot.value,
                    wallet=True,
                )
                online = True
            except PlatformUnavailable as exc:
                log.info("visitor_platform_unavailable", error=str(exc)[:120])
            except PlatformError as exc:  # a final refusal (403 ...): the roster decides
                log.warning("visitor_platform_refused", status=exc.status)
        if not online:
            got = roster_lookup(self.sync_db_path, key_type=ask.key_type.value, key=key)
        log.info(
            "visitor_answer",
            key_type=ask.key_type.value,
            found=got is not None,
            source=got.source if got is not None else ("online" if online else "roster"),
        )
        if got is None:
            return VisitorAnswered(ask.session, None)
        status = visitor_status(got)
        if status.subsidised_in_district and self._held(status.person_id, ask) is not None:
            status = replace(status, subsidised_in_district=False)  # our own unused claim
        return VisitorAnswered(ask.session, status, _payment_source(got.payment_source))

    def district_wallet(self) -> bool:
        """Whether this centre's seniors have a district wallet to top up: the
        district's policy (from the pulled roster) pays visits from it."""
        from sync.visits import roster_payment_source

        return roster_payment_source(self.sync_db_path) == PaymentSource.HOME_WALLET.value

    def _held(self, person_id: str, at: AskVisitor | ClaimSlot) -> str | None:
        return self.held.get((person_id, at.day.isoformat(), at.slot.value))

    def claim(self, claim: ClaimSlot) -> SlotClaimAnswered:
        from sync.client import PlatformError
        from sync.visits import InsufficientBalance, PlatformUnavailable, SlotClaimed

        # a debit without a slot claim is a meal of its own: never an earlier claim's id
        held = self._held(claim.person_id, claim) if claim.subsidised else None
        record_id = held or self.new_record_id()
        if self.client is None:
            return SlotClaimAnswered(claim.session, ClaimOutcome.UNAVAILABLE, record_id)
        after: int | None = None
        try:
            meal: dict[str, Any] = {
                "person_id": claim.person_id,
                "day": claim.day,
                "slot": claim.slot.value,
                "record_id": record_id,
                "centre_id": self.centre_id,
            }
            if claim.debit_fen is None:
                claim_id = self.client.claim(**meal)
            else:
                debit, sub = claim.debit_fen, claim.subsidised
                got = self.client.claim_and_debit(**meal, debit_fen=debit, subsidised=sub)
                claim_id, after = got.claim_id, got.balance_after_fen
        except SlotClaimed:
            log.info("visitor_slot_claimed")
            return SlotClaimAnswered(claim.session, ClaimOutcome.CLAIMED, record_id)
        except InsufficientBalance:
            log.info("visitor_wallet_insufficient")
            return SlotClaimAnswered(claim.session, ClaimOutcome.INSUFFICIENT, record_id)
        except (PlatformUnavailable, PlatformError) as exc:
            log.info("visitor_claim_unavailable", error=type(exc).__name__)
            return SlotClaimAnswered(claim.session, ClaimOutcome.UNAVAILABLE, record_id)
        if claim.subsidised:
            self.held[(claim.person_id, claim.day.isoformat(), claim.slot.value)] = record_id
        return SlotClaimAnswered(claim.session, ClaimOutcome.GRANTED, record_id, claim_id, after)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


@dataclass(frozen=True, slots=True)
class DistrictSenior:
    """A senior of another centre as the in-memory district knows them."""

    person_id: str
    home_centre_id: str
    categories: tuple[SeniorCategory, ...]
    cards: tuple[str, ...] = ()
    id_number: str | None = None
    lookup: tuple[str, str] | None = None  # (name, phone last 4)
    active: bool = True
    home_centre_name: str = ""


class DistrictDirectory:
    """An in-memory district with the platform's rules (demos, screenshots and
    kiosk tests without a platform): clear keys in, one claim per senior, day
    and slot, ``online=False`` answers from the "roster" like a terminal whose
    platform is down."""

    def __init__(
        self,
        seniors: Iterable[DistrictSenior],
        *,
        payment_source: PaymentSource = PaymentSource.CASH,
        online: bool = True,
        new_record_id: Callable[[], str] = new_ulid,
        wallets: dict[str, int] | None = None,
    ) -> None:
        self.seniors = list(seniors)
        self.payment_source = payment_source
        self.online = online
        self.wallets = dict(wallets or {})  # person -> district wallet (home_wallet)
        self.claims: dict[tuple[str, str, str], str] = {}  # (person, day, slot) -> record id
        self._new_record_id = new_record_id

    def _find(self, ask: AskVisitor) -> DistrictSenior | None:
        key = ask.key.strip().upper()
        for p in self.seniors:
            if ask.key_type is KeyType.CARD and key in p.cards:
                return p
            if ask.key_type is KeyType.ID_NUMBER and p.id_number == key:
                return p
            if ask.key_type is KeyType.LOOKUP and p.lookup == (ask.key.strip(), ask.phone_last4):
                return p
        return None

    def ask(self, ask: AskVisitor) -> VisitorAnswered:
        p = self._find(ask)
        if p is None:
            return VisitorAnswered(ask.session, None)
        taken = (p.person_id, ask.day.isoformat(), ask.slot.value) in self.claims
        status = VisitorStatus(
            p.person_id,
            p.home_centre_id,
            p.categories,
            Source.ONLINE if self.online else Source.ROSTER,
            active=p.active,
            subsidised_in_district=taken if self.online else None,
            home_centre_name=p.home_centre_name,
            wallet_balance_fen=self.wallets.get(p.person_id, 0) if self._wallet_online else None,
        )
        return VisitorAnswered(ask.session, status, self.payment_source)

    @property
    def _wallet_online(self) -> bool:
        return self.online and self.payment_source is PaymentSource.HOME_WALLET

    def claim(self, claim: ClaimSlot) -> SlotClaimAnswered:
        record_id = self._new_record_id()
        if not self.online:
            return SlotClaimAnswered(claim.session, ClaimOutcome.UNAVAILABLE, record_id)
        key = (claim.person_id, claim.day.isoformat(), claim.slot.value)
        if claim.subsidised and key in self.claims:
            return SlotClaimAnswered(claim.session, ClaimOutcome.CLAIMED, record_id)
        after: int | None = None
        if claim.debit_fen is not None:
            after = self.wallets.get(claim.person_id, 0) - claim.debit_fen
            if after < 0:
                return SlotClaimAnswered(claim.session, ClaimOutcome.INSUFFICIENT, record_id)
            self.wallets[claim.person_id] = after
        if claim.subsidised:
            self.claims[key] = record_id
        return SlotClaimAnswered(
            claim.session, ClaimOutcome.GRANTED, record_id, f"C-{record_id}", after
        )

    def take_slot(self, person_id: str, day: str, slot: str) -> None:
        """Another centre's meal claims the slot (as a second terminal would)."""
        self.claims[(person_id, day, slot)] = "elsewhere"


def sync_db_path(settings: Settings) -> Path:
    url = settings.sync_db_url
    return Path(url.split("sqlite:///", 1)[1]) if url.startswith("sqlite:///") else Path(url)


def platform_visitors(settings: Settings, *, online: bool = True) -> PlatformVisitors | None:
    """The port for this terminal, or None when the district pepper is not
    installed (then a card that is not this centre's is a stranger's, as before)."""
    from sync.visits import VisitsClient, district_pepper

    try:
        pepper = district_pepper(settings)
    except TerminalError as exc:
        log.info("visitors_disabled", reason=exc.code)
        return None
    client = None
    if online and settings.sync.platform_url:
        try:
            client = VisitsClient.from_settings(settings)
        except TerminalError as exc:  # not registered yet: the roster only
            log.warning("visitors_offline_only", reason=exc.code)
    return PlatformVisitors(
        settings.centre.centre_id, pepper, sync_db_path(settings), client=client
    )


def with_visitors(config: FlowConfig, settings: Settings | None) -> FlowConfig:
    """``config`` asking about visitors for this terminal's centre, with the
    offline limits from ``settings`` (None: ``config`` as it is)."""
    if settings is None:
        return config
    p = settings.payment
    limits = OfflineVisitLimits(
        max_subsidised_visits_per_slot=p.visit_offline_max_per_slot,
        max_subsidy_fen_per_day=p.visit_offline_max_subsidy_fen_per_day,
    )
    policy = config.visitors or VisitorPolicy(settings.centre.centre_id)
    return replace(
        config, visitors=replace(policy, centre_id=settings.centre.centre_id, limits=limits)
    )


def drive_visiting(
    ctx: FlowContext,
    charge: ChargePort,
    events: Iterable[Event],
    now: Callable[[], datetime],
    port: VisitorPort | None,
    state: State | None = None,
) -> Drive:
    """:func:`payment.headless.drive` with the visitor effects answered by
    ``port`` (the ``care-terminal pay`` command's visitor path)."""
    d = drive(ctx, charge, events, now, state=state)
    seen = 0
    while port is not None:
        answers = [a for e in d.effects[seen:] if (a := answer(port, e)) is not None]
        seen = len(d.effects)
        if not answers:
            break
        more = drive(ctx, charge, answers, now, state=d.state)
        d.state = more.state
        d.effects += more.effects
        d.committed += more.committed
        d.failed += more.failed
    return d
