"""Durable payments: ledger entries, wallets, menus and policies in SQLite.

Every money movement is one ``BEGIN IMMEDIATE`` transaction that writes the
ledger entry, updates the derived wallet balance and appends the outbox record
(sequence number + hash chain), then COMMITs with ``synchronous=FULL``. The
kiosk acknowledges a payment (screen, voice, receipt) only after :meth:`charge`
returned ``ChargeCommitted``.

A charge request carries a random ``request_id`` (uuid4 from the device, never
derived from the clock: a Pi without RTC can step back after a reboot). The
store keeps one *intent* per request id:

1. :meth:`PaymentStore.charge` first writes the intent (``open``) in its own
   committed transaction, then charges in a second transaction that re-reads
   the intent under the write lock and marks it ``committed`` (with the record
   id) or ``failed`` (with the reason). A request whose intent is already
   closed is never charged: a retry with the same id returns the existing
   record, or the same refusal.
2. :meth:`PaymentStore.resolve_charge` answers "what became of this request?"
   for a charge that outlived the kiosk's timeout or crashed: committed ->
   ``ChargeCommitted``; still open -> closed as ``abandoned`` under the write
   lock, so the charge transaction (which checks the intent first) can no
   longer land -> ``ChargeFailed``; the write lock still busy -> ``None``
   (ask again later).
3. :meth:`PaymentStore.mark_shown` records that the senior was told "paid";
   :meth:`PaymentStore.recover_intents` (at start-up) closes open intents as
   abandoned and reports committed charges nobody was told about (the process
   died between COMMIT and the screen), with an audit row each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from payment.domain import (
    MealSlot,
    Menu,
    OrderLine,
    PriorMeal,
    Resident,
    SeniorCategory,
    VerificationMethod,
)
from payment.errors import PaymentError
from payment.flow import (
    ChargeCommitted,
    ChargeFailed,
    ChargeRequest,
    FailReason,
    FlowConfig,
    OverrideKind,
    random_request_id,
)
from payment.guard import check_duplicate
from payment.ledger import (
    LedgerEntry,
    make_charge,
    make_topup,
    make_void,
    validate_new_entry,
    verify_entries,
)
from payment.limits import Exposure, check_limits
from payment.receipt import Receipt, receipt_for_charge
from payment.subsidy import SubsidyPolicy, parse_policy, select_policy
from terminal.core.clock import Clock, rfc3339
from terminal.core.ids import new_ulid
from terminal.core.log import get_logger
from terminal.core.money import Money
from terminal.db.base import Base
from terminal.db.engine import DiskFull, write_session
from terminal.db.outbox import Outbox, verify_outbox
from terminal.db.roster import RosterStore, audit
from terminal.db.tables import OutboxRow

log = get_logger(__name__)

VOID_REASON_CODES = (
    "wrong_item",
    "duplicate_charge",
    "wrong_resident",
    "customer_request",
    "meal_not_served",
    "system_error",
    "other",
)


class LedgerRow(Base):
    __tablename__ = "ledger_entries"
    entry_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    resident_id: Mapped[str] = mapped_column(String(64), ForeignKey("residents.resident_id"))
    at: Mapped[str] = mapped_column(String(40))
    day: Mapped[str | None] = mapped_column(String(10), nullable=True)
    slot: Mapped[str | None] = mapped_column(String(12), nullable=True)
    amount_fen: Mapped[int] = mapped_column(Integer)
    list_fen: Mapped[int] = mapped_column(Integer)
    subsidy_fen: Mapped[int] = mapped_column(Integer)
    wallet_delta_fen: Mapped[int] = mapped_column(Integer)
    balance_after_fen: Mapped[int] = mapped_column(Integer)
    method: Mapped[str | None] = mapped_column(String(12), nullable=True)
    verification: Mapped[str | None] = mapped_column(String(80), nullable=True)
    ref_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    staff_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    seq: Mapped[int] = mapped_column(Integer, ForeignKey("outbox.seq"), unique=True)
    hash: Mapped[str] = mapped_column(String(64))
    doc: Mapped[str] = mapped_column(Text)


class IntentRow(Base):
    """One charge request, written before its charge (see the module docs)."""

    __tablename__ = "charge_intents"
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session: Mapped[int] = mapped_column(Integer)
    resident_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    slot: Mapped[str] = mapped_column(String(12))
    due_fen: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))  # open, committed, failed, abandoned
    created_at: Mapped[str] = mapped_column(String(40))
    closed_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    shown_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    shown_by: Mapped[str | None] = mapped_column(String(12), nullable=True)


INTENT_OPEN = "open"
INTENT_COMMITTED = "committed"
INTENT_FAILED = "failed"
INTENT_ABANDONED = "abandoned"


@dataclass(frozen=True)
class IntentRecovery:
    """What :meth:`PaymentStore.recover_intents` found at start-up."""

    paid: list[TxView]  # committed charges nobody had been told about (now reported)
    abandoned: list[str]  # request ids whose charge never committed (now closed)


class WalletRow(Base):
    __tablename__ = "wallets"
    resident_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("residents.resident_id"), primary_key=True
    )
    balance_fen: Mapped[int] = mapped_column(Integer)
    last_entry_id: Mapped[str] = mapped_column(String(26))


class MenuRow(Base):
    __tablename__ = "menus"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    doc: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[str] = mapped_column(String(40))


class PolicyRow(Base):
    __tablename__ = "subsidy_policies"
    policy_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_from: Mapped[str] = mapped_column(String(10))
    doc: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class TxView:
    record_id: str
    kind: str
    resident_id: str
    name_masked: str
    at: datetime
    slot: str | None
    list_amount: Money
    subsidy: Money
    due: Money
    balance_after: Money
    method: str | None
    verification: str | None
    voided: bool
    ref_id: str | None
    reason: str | None
    staff_id: str | None
    seq: int
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "kind": self.kind,
            "resident_id": self.resident_id,
            "name": self.name_masked,
            "at": rfc3339(self.at),
            "slot": self.slot,
            "list_fen": self.list_amount.fen,
            "subsidy_fen": self.subsidy.fen,
            "due_fen": self.due.fen,
            "balance_after_fen": self.balance_after.fen,
            "method": self.method,
            "verification": self.verification,
            "voided": self.voided,
            "ref_id": self.ref_id,
            "reason": self.reason,
            "staff_id": self.staff_id,
            "seq": self.seq,
        }


@dataclass(frozen=True)
class LedgerCheck:
    ok: bool
    entries: int
    problem: str | None = None
    record_id: str | None = None
    seq: int | None = None


def request_key(request: ChargeRequest, device_id: str) -> str:
    """The ledger's idempotency key: the device and the request's random id only
    (no session counter, no clock: both repeat after a reboot)."""
    if not request.request_id:
        raise PaymentError("a charge request needs a request id", code="no_request_id")
    return hashlib.sha256(f"{device_id}|{request.request_id}".encode()).hexdigest()


def _entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry.from_dict(json.loads(row.doc)["entry"])


def _resident(info: Any) -> Resident:
    cats = []
    for c in info.categories:
        try:
            cats.append(SeniorCategory.parse(c))
        except PaymentError:
            continue
    return Resident(
        resident_id=info.resident_id,
        name_masked=info.name_masked,
        categories=frozenset(cats) or frozenset({SeniorCategory.NONE}),
        consent_face_pay=info.consent_face_pay,
        consent_attendance=info.consent_attendance,
        phone_last4=info.phone_last4,
        card_ids=frozenset(info.card_ids),
        active=info.active,
    )


class PaymentStore:
    """The payment side of the terminal database. All writes go through
    :func:`terminal.db.engine.write_session` (BEGIN IMMEDIATE)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbox: Outbox,
        roster: RosterStore,
        *,
        device_id: str,
        centre_id: str,
        clock: Clock,
        config: FlowConfig,
        acked_through: Callable[[], int] = lambda: 0,
        match_threshold: float | None = None,
        id_number_hmac: Callable[[str], str] | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._roster = roster
        self.device_id = device_id
        self.centre_id = centre_id
        self._clock = clock
        self.config = config
        self._acked_through = acked_through
        self._match_threshold = match_threshold
        self._id_number_hmac = id_number_hmac

    # ------------------------------------------------------------------ flow context
    def context(self) -> DbFlowContext:
        return DbFlowContext(self)

    def resident(self, session: Session, resident_id: str) -> Resident | None:
        info = self._roster.find(session, resident_id)
        return _resident(info) if info else None

    def balance(self, resident_id: str, session: Session | None = None) -> Money:
        if session is None:
            with self._sessions() as s:
                return self.balance(resident_id, s)
        row = session.get(WalletRow, resident_id)
        return Money(row.balance_fen if row else 0)

    def prior_meals(self, session: Session, resident_id: str, day: date) -> list[PriorMeal]:
        rows = session.scalars(
            select(LedgerRow).where(
                LedgerRow.resident_id == resident_id,
                LedgerRow.day == day.isoformat(),
                LedgerRow.kind == "charge",
            )
        ).all()
        voided = set(
            session.scalars(
                select(LedgerRow.ref_id).where(
                    LedgerRow.kind == "void", LedgerRow.ref_id.in_([r.entry_id for r in rows])
                )
            )
        )
        return [
            PriorMeal(
                record_id=r.entry_id,
                at=datetime.fromisoformat(r.at),
                slot=MealSlot(r.slot or "lunch"),
                day=day,
                subsidised=r.subsidy_fen > 0,
                voided=r.entry_id in voided,
            )
            for r in rows
        ]

    def exposure(self, session: Session, resident_id: str) -> Exposure:
        """Unsynced money: charges whose outbox records the platform has not acked."""
        hwm = self._acked_through()
        base = select(func.coalesce(func.sum(LedgerRow.amount_fen), 0)).where(
            LedgerRow.kind == "charge", LedgerRow.seq > hwm
        )
        terminal = int(session.scalar(base) or 0)
        mine = int(session.scalar(base.where(LedgerRow.resident_id == resident_id)) or 0)
        return Exposure(Money(mine), Money(terminal))

    # ------------------------------------------------------------------ menus and policy
    def set_menu(self, menu: Menu, staff_id: str) -> None:
        now = self._clock.now()
        with write_session(self._sessions) as s:
            row = s.get(MenuRow, menu.day.isoformat())
            doc = json.dumps(menu.to_dict(), ensure_ascii=False, sort_keys=True)
            if row is None:
                s.add(
                    MenuRow(day=menu.day.isoformat(), doc=doc, set_by=staff_id, set_at=rfc3339(now))
                )
            else:
                row.doc, row.set_by, row.set_at = doc, staff_id, rfc3339(now)
            audit(s, now, staff_id, "menu_set", menu.day.isoformat(), {"items": len(menu.items)})

    def menu(self, day: date, session: Session | None = None) -> Menu | None:
        if session is None:
            with self._sessions() as s:
                return self.menu(day, s)
        row = session.get(MenuRow, day.isoformat())
        return Menu.from_dict(json.loads(row.doc)) if row else None

    def set_policy(self, policy: SubsidyPolicy | Mapping[str, Any]) -> SubsidyPolicy:
        pol = policy if isinstance(policy, SubsidyPolicy) else parse_policy(policy)
        with write_session(self._sessions) as s:
            row = s.get(PolicyRow, (pol.policy_id, pol.version))
            doc = json.dumps(pol.to_dict(), ensure_ascii=False, sort_keys=True)
            if row is None:
                s.add(
                    PolicyRow(
                        policy_id=pol.policy_id,
                        version=pol.version,
                        effective_from=pol.effective_from.isoformat(),
                        doc=doc,
                    )
                )
            elif row.doc != doc:
                raise PaymentError(
                    f"policy {pol.policy_id} version {pol.version} exists with other rules; "
                    "publish a new version",
                    code="policy_version_conflict",
                )
        return pol

    def policies(self, session: Session) -> list[SubsidyPolicy]:
        return [parse_policy(json.loads(r.doc)) for r in session.scalars(select(PolicyRow))]

    def policy(self, day: date, session: Session | None = None) -> SubsidyPolicy | None:
        if session is None:
            with self._sessions() as s:
                return self.policy(day, s)
        return select_policy(self.policies(session), day)

    # ------------------------------------------------------------------ money movements
    def _append(
        self,
        s: Session,
        entry: LedgerEntry,
        balance_before: Money,
        balance_after: Money,
        kind: str,
        payload: Mapping[str, Any],
        *,
        verification: str | None = None,
        key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> LedgerRow:
        appended = self._outbox.append(s, kind, entry.entry_id, payload, entry.at)
        row = LedgerRow(
            entry_id=entry.entry_id,
            kind=entry.kind.value,
            resident_id=entry.resident_id,
            at=rfc3339(entry.at),
            day=entry.day.isoformat() if entry.day else None,
            slot=entry.slot.value if entry.slot else None,
            amount_fen=entry.amount.fen,
            list_fen=entry.list_amount.fen,
            subsidy_fen=entry.subsidy.fen,
            wallet_delta_fen=entry.wallet_delta.fen,
            balance_after_fen=balance_after.fen,
            method=entry.method.value if entry.method else None,
            verification=verification,
            ref_id=entry.ref_id,
            reason=entry.reason or None,
            staff_id=entry.staff_id,
            request_key=key,
            seq=appended.seq,
            hash=appended.hash,
            doc=json.dumps(
                {
                    "entry": entry.to_dict(),
                    "balance_before_fen": balance_before.fen,
                    **(extra or {}),
                },
                ensure_ascii=False,
                sort_keys=True,
            ),
        )
        s.add(row)
        wallet = s.get(WalletRow, entry.resident_id)
        if wallet is None:
            s.add(
                WalletRow(
                    resident_id=entry.resident_id,
                    balance_fen=balance_after.fen,
                    last_entry_id=entry.entry_id,
                )
            )
        else:
            wallet.balance_fen = balance_after.fen
            wallet.last_entry_id = entry.entry_id
        s.flush()
        return row

    def charge(self, request: ChargeRequest) -> ChargeCommitted | ChargeFailed:
        """Commit a meal charge, re-checking balance, duplicates and limits inside
        the write transaction. Returns the event to feed back into the flow.

        The request's intent is written (and committed) first; the charge
        transaction lands only while that intent is still open."""
        try:
            key = request_key(request, self.device_id)
            status, reason = self._open_intent(request)
            if status != INTENT_OPEN:  # this request was settled before: same answer again
                done = self._settled(request, key)
                if done is not None:
                    return done
                return ChargeFailed(request.session, reason or FailReason.CHARGE_FAILED.value)
            with write_session(self._sessions) as s:
                existing = s.scalar(select(LedgerRow).where(LedgerRow.request_key == key))
                intent = s.get(IntentRow, request.request_id)
                if existing is not None:  # the same request again: never charge twice
                    if intent is not None and intent.status == INTENT_OPEN:
                        self._close(intent, INTENT_COMMITTED, record_id=existing.entry_id)
                    return self._committed(request.session, existing)
                if intent is None or intent.status != INTENT_OPEN:
                    # closed meanwhile (resolved as abandoned after a timeout, or at start-up)
                    why = intent.reason if intent is not None else None
                    return ChargeFailed(request.session, why or FailReason.CHARGE_FAILED.value)
                outcome = self._charge_in(s, request, key)
                if isinstance(outcome, ChargeCommitted):
                    self._close(intent, INTENT_COMMITTED, record_id=outcome.record_id)
                else:
                    self._close(intent, INTENT_FAILED, reason=outcome.reason)
                return outcome
        except PaymentError as exc:
            reason = (
                "insufficient_balance"
                if exc.code == "insufficient_balance"
                else FailReason.CHARGE_FAILED.value
            )
            if request.request_id:
                self._fail_open_intent(request.request_id, reason)
            return ChargeFailed(request.session, reason)
        except DiskFull:
            # SQLITE_FULL: the transaction was rolled back, nothing of this charge
            # exists and it is not retried; an open intent is closed here if there
            # is room, else at the next resolve or start-up.
            log.error("charge_disk_full", session=request.session)
            if request.request_id:
                self._fail_open_intent(request.request_id, "disk_full")
            return ChargeFailed(request.session, "disk_full")

    def _charge_in(
        self, s: Session, request: ChargeRequest, key: str
    ) -> ChargeCommitted | ChargeFailed:
        resident = self.resident(s, request.resident_id)
        if resident is None or not resident.active:
            return ChargeFailed(request.session, FailReason.RESIDENT_NOT_FOUND.value)
        overrides = {o.kind for o in request.overrides}
        staff_for = {o.kind: o.staff_id for o in request.overrides}
        meals = self.prior_meals(s, request.resident_id, request.day)
        guard = check_duplicate(
            [m for m in meals if not m.voided],
            slot=request.slot,
            day=request.day,
            staff_override=staff_for.get(OverrideKind.DUPLICATE),
            another_portion=request.another_portion,
            any_meal=self.config.duplicate_guard_any_meal,
        )
        if guard.result == "already_paid":
            return ChargeFailed(request.session, "already_paid")
        if guard.meals_before > request.meals_before:
            # another meal landed since the senior saw the quote: never two for one choice
            return ChargeFailed(request.session, "already_paid")
        subsidised_now = sum(
            1 for m in meals if not m.voided and m.slot is request.slot and m.subsidised
        )
        if request.quote.subsidised and (
            subsidised_now > request.quote.subsidised_before or request.another_portion
        ):
            return ChargeFailed(request.session, "quote_stale")
        if OverrideKind.LIMITS not in overrides:
            limit = check_limits(
                request.due, self.exposure(s, request.resident_id), self.config.limits
            )
            if limit.result != "ok":
                return ChargeFailed(request.session, "staff_required")
        before = self.balance(request.resident_id, s)
        entry = make_charge(
            new_ulid(),
            request.resident_id,
            request.requested_at if request.requested_at.tzinfo else self._clock.now(),
            slot=request.slot,
            day=request.day,
            list_amount=request.list_amount,
            subsidy=request.subsidy,
            method=request.method,
            staff_id=request.staff_id,
        )
        after = validate_new_entry(
            entry, wallet_balance=before, overdraft_limit=self.config.overdraft_limit
        )
        payload = self._meal_payload(s, request, resident, before, after)
        row = self._append(
            s,
            entry,
            before,
            after,
            "meal_transaction",
            payload,
            verification=request.verification,
            key=key,
            extra={
                "quote": list(request.quote.explain()),
                "liveness": payload["verification"].get("liveness"),
                "request_id": request.request_id,
                "another_portion": request.another_portion,
            },
        )
        return ChargeCommitted(request.session, row.entry_id, after, row.hash)

    # ------------------------------------------------------------------ charge intents
    @staticmethod
    def _committed(session: int, row: LedgerRow) -> ChargeCommitted:
        return ChargeCommitted(session, row.entry_id, Money(row.balance_after_fen), row.hash)

    def _close(
        self,
        intent: IntentRow,
        status: str,
        *,
        record_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        intent.status = status
        intent.closed_at = rfc3339(self._clock.now())
        intent.record_id = record_id
        intent.reason = reason

    def _intent_row(self, request: ChargeRequest) -> IntentRow:
        return IntentRow(
            request_id=request.request_id,
            session=request.session,
            resident_id=request.resident_id,
            day=request.day.isoformat(),
            slot=request.slot.value,
            due_fen=request.due.fen,
            status=INTENT_OPEN,
            created_at=rfc3339(self._clock.now()),
        )

    def _open_intent(self, request: ChargeRequest) -> tuple[str, str | None]:
        """Persist the intent (own transaction, committed before the charge).
        Returns the intent's status and reason; an existing intent is left as is."""
        with write_session(self._sessions) as s:
            intent = s.get(IntentRow, request.request_id)
            if intent is not None:
                return intent.status, intent.reason
            s.add(self._intent_row(request))
            return INTENT_OPEN, None

    def _settled(self, request: ChargeRequest, key: str) -> ChargeCommitted | None:
        with self._sessions() as s:
            row = s.scalar(select(LedgerRow).where(LedgerRow.request_key == key))
            return self._committed(request.session, row) if row is not None else None

    def _fail_open_intent(self, request_id: str, reason: str) -> None:
        try:
            with write_session(self._sessions) as s:
                intent = s.get(IntentRow, request_id)
                if intent is not None and intent.status == INTENT_OPEN:
                    self._close(intent, INTENT_FAILED, reason=reason)
        except DBAPIError as exc:  # the next resolve or restart closes it
            log.warning("intent_close_failed", error=type(exc).__name__)

    def resolve_charge(self, request: ChargeRequest) -> ChargeCommitted | ChargeFailed | None:
        """What became of ``request`` (by its request id)? ``ChargeCommitted`` when
        its record exists; ``ChargeFailed`` when it was refused or can no longer
        land (an open intent is closed as abandoned here, under the write lock,
        so its charge transaction refuses to run); ``None`` while the store
        cannot tell (the write lock is held by a charge still committing)."""
        if not request.request_id:
            return ChargeFailed(request.session, FailReason.CHARGE_FAILED.value)
        key = request_key(request, self.device_id)
        try:
            with write_session(self._sessions) as s:
                row = s.scalar(select(LedgerRow).where(LedgerRow.request_key == key))
                intent = s.get(IntentRow, request.request_id)
                if row is not None:
                    if intent is not None and intent.status == INTENT_OPEN:
                        self._close(intent, INTENT_COMMITTED, record_id=row.entry_id)
                    return self._committed(request.session, row)
                if intent is None:  # never started: a tombstone keeps it from starting later
                    intent = self._intent_row(request)
                    s.add(intent)
                if intent.status == INTENT_OPEN:
                    self._close(intent, INTENT_ABANDONED, reason=FailReason.CHARGE_FAILED.value)
                    log.warning("charge_intent_abandoned", session=request.session)
                return ChargeFailed(
                    request.session, intent.reason or FailReason.CHARGE_FAILED.value
                )
        except DBAPIError as exc:
            log.warning("charge_resolve_pending", error=type(exc).__name__)
            return None

    def mark_shown(self, request_id: str, by: str = "screen") -> bool:
        """Record that the senior was told "paid" for this request (after the
        screen showed it). False when there is no committed intent to mark."""
        with write_session(self._sessions) as s:
            intent = s.get(IntentRow, request_id)
            if intent is None or intent.status != INTENT_COMMITTED or intent.shown_at:
                return False
            intent.shown_at = rfc3339(self._clock.now())
            intent.shown_by = by
            return True

    def intent(self, request_id: str) -> IntentRow | None:
        with self._sessions() as s:
            return s.get(IntentRow, request_id)

    def recover_intents(self) -> IntentRecovery:
        """At start-up: close every open intent as abandoned (its charge did not
        commit, and now never will), and report every committed charge nobody
        was told about (killed between COMMIT and the screen) as paid, with an
        audit row for staff. Safe to call again: nothing is reported twice."""
        now = self._clock.now()
        paid_ids: list[str] = []
        abandoned: list[str] = []
        with write_session(self._sessions) as s:
            for intent in s.scalars(
                select(IntentRow)
                .where(IntentRow.status == INTENT_OPEN)
                .order_by(IntentRow.created_at)
            ):
                self._close(intent, INTENT_ABANDONED, reason=FailReason.CHARGE_FAILED.value)
                abandoned.append(intent.request_id)
            for intent in s.scalars(
                select(IntentRow).where(
                    IntentRow.status == INTENT_COMMITTED, IntentRow.shown_at.is_(None)
                )
            ):
                intent.shown_at = rfc3339(now)
                intent.shown_by = "restart"
                assert intent.record_id is not None
                paid_ids.append(intent.record_id)
                audit(
                    s,
                    now,
                    "system",
                    "charge_reported_after_restart",
                    intent.record_id,
                    {"due_fen": intent.due_fen, "slot": intent.slot},
                )
            if abandoned:
                audit(s, now, "system", "charge_intents_abandoned", None, {"count": len(abandoned)})
        if paid_ids or abandoned:
            log.warning("charge_intents_recovered", paid=len(paid_ids), abandoned=len(abandoned))
        paid = sorted((self.get(r) for r in paid_ids), key=lambda t: t.seq)
        return IntentRecovery(paid=paid, abandoned=abandoned)

    def _meal_payload(
        self, s: Session, req: ChargeRequest, resident: Resident, before: Money, after: Money
    ) -> dict[str, Any]:
        q = req.quote
        subsidy_lines = []
        if q.subsidy.fen > 0 and q.applied is not None and q.policy_id is not None:
            subsidy_lines.append(
                {
                    "policy_id": q.policy_id,
                    "policy_version": q.policy_version or 1,
                    "category": q.applied.category.value,
                    "rule": q.applied.outcome.value,
                    "amount_fen": q.subsidy.fen,
                }
            )
        live = req.liveness
        verification: dict[str, Any] = {
            "method": req.method.value,
            "match_score": round(req.match_score, 4) if req.match_score is not None else None,
            "match_threshold": self._match_threshold
            if req.method is VerificationMethod.FACE
            else None,
            "staff_id": req.staff_id,
            "liveness": None
            if live is None
            else {
                "live": live.live,
                "method": live.method,
                "signals": {k: round(float(v), 4) for k, v in live.signals.items()},
                "reason": live.reason or None,
            },
        }
        if req.method is VerificationMethod.ID_CARD:
            number = self._roster.id_number(s, req.resident_id)
            if number is None or self._id_number_hmac is None:
                raise PaymentError(
                    "ID-card payment needs the district pepper and the resident's ID number",
                    code="id_card_unverifiable",
                )
            verification["id_number_hmac"] = self._id_number_hmac(number)
        return {
            "resident_id": req.resident_id,
            "categories": sorted(c.value for c in resident.categories),
            "meal_date": req.day.isoformat(),
            "slot": req.slot.value,
            "items": [
                {
                    "item_id": ln.item_id,
                    "name": ln.name,
                    "quantity": ln.quantity,
                    "unit_price_fen": ln.unit_price.fen,
                    "line_total_fen": ln.amount.fen,
                    "subsidisable": ln.subsidisable,
                }
                for ln in q.lines
            ],
            "list_total_fen": q.list_total.fen,
            "subsidy_lines": subsidy_lines,
            "subsidy_total_fen": q.subsidy.fen,
            "amount_due_fen": q.due.fen,
            "payment_source": "wallet",
            "wallet_before_fen": before.fen,
            "wallet_after_fen": after.fen,
            "verification": verification,
            "staff_id": req.staff_id,
        }

    def topup(
        self, resident_id: str, amount: Money, staff_id: str, reason: str = "", method: str = "cash"
    ) -> TxView:
        now = self._clock.now()
        with write_session(self._sessions) as s:
            if self._roster.find(s, resident_id) is None:
                raise PaymentError(f"no resident with id {resident_id}", code="resident_not_found")
            before = self.balance(resident_id, s)
            entry = make_topup(
                new_ulid(), resident_id, now, amount=amount, staff_id=staff_id, reason=reason
            )
            after = validate_new_entry(
                entry, wallet_balance=before, overdraft_limit=self.config.overdraft_limit
            )
            self._append(
                s,
                entry,
                before,
                after,
                "wallet_topup",
                {
                    "resident_id": resident_id,
                    "amount_fen": amount.fen,
                    "method": method,
                    "staff_id": staff_id,
                    "wallet_before_fen": before.fen,
                    "wallet_after_fen": after.fen,
                },
            )
            audit(
                s,
                now,
                staff_id,
                "topup",
                resident_id,
                {"amount_fen": amount.fen, "record_id": entry.entry_id},
            )
        return self.get(entry.entry_id)

    def void(
        self, record_id: str, reason: str, staff_id: str, reason_code: str | None = None
    ) -> TxView:
        """Compensate a charge in full (a new record; the charge is never edited)."""
        if not reason.strip():
            raise PaymentError("a void needs a reason", code="reason_required")
        code = reason_code or (reason if reason in VOID_REASON_CODES else "other")
        if code not in VOID_REASON_CODES:
            raise PaymentError(
                f"unknown reason code {code}; use one of {', '.join(VOID_REASON_CODES)}",
                code="bad_reason_code",
            )
        now = self._clock.now()
        with write_session(self._sessions) as s:
            row = s.get(LedgerRow, record_id)
            if row is None:
                raise PaymentError(f"no transaction {record_id}", code="unknown_charge")
            charge = _entry(row)
            comps = [
                _entry(r) for r in s.scalars(select(LedgerRow).where(LedgerRow.ref_id == record_id))
            ]
            before = self.balance(charge.resident_id, s)
            entry = make_void(new_ulid(), charge, now, reason=reason, staff_id=staff_id)
            after = validate_new_entry(
                entry,
                wallet_balance=before,
                referenced=charge,
                compensations=comps,
                overdraft_limit=Money(10**9),
            )
            self._append(
                s,
                entry,
                before,
                after,
                "meal_void",
                {
                    "original_record_id": record_id,
                    "resident_id": charge.resident_id,
                    "reason_code": code,
                    "reason_text": reason if reason != code else None,
                    "staff_id": staff_id,
                    "amount_returned_fen": charge.due.fen,
                    "subsidy_reversed_fen": charge.subsidy.fen,
                    "wallet_before_fen": before.fen,
                    "wallet_after_fen": after.fen,
                },
            )
            audit(
                s,
                now,
                staff_id,
                "void",
                record_id,
                {"reason_code": code, "record_id": entry.entry_id},
            )
        return self.get(entry.entry_id)

    # ------------------------------------------------------------------ views
    def _view(self, s: Session, row: LedgerRow, voided: set[str]) -> TxView:
        info = self._roster.find(s, row.resident_id)
        return TxView(
            record_id=row.entry_id,
            kind=row.kind,
            resident_id=row.resident_id,
            name_masked=info.name_masked if info else "?",
            at=datetime.fromisoformat(row.at),
            slot=row.slot,
            list_amount=Money(row.list_fen),
            subsidy=Money(row.subsidy_fen),
            due=Money(row.amount_fen if row.kind == "charge" else 0),
            balance_after=Money(row.balance_after_fen),
            method=row.method,
            verification=row.verification,
            voided=row.entry_id in voided,
            ref_id=row.ref_id,
            reason=row.reason,
            staff_id=row.staff_id,
            seq=row.seq,
            hash=row.hash,
        )

    def _voided(self, s: Session) -> set[str]:
        return {r for r in s.scalars(select(LedgerRow.ref_id).where(LedgerRow.kind == "void")) if r}

    def get(self, record_id: str) -> TxView:
        with self._sessions() as s:
            row = s.get(LedgerRow, record_id)
            if row is None:
                raise PaymentError(f"no transaction {record_id}", code="unknown_charge")
            return self._view(s, row, self._voided(s))

    def transactions(
        self, day: date | None = None, resident_id: str | None = None, limit: int = 500
    ) -> list[TxView]:
        with self._sessions() as s:
            stmt = select(LedgerRow).order_by(LedgerRow.seq.desc()).limit(limit)
            if day is not None:
                prefix = day.isoformat()
                stmt = stmt.where(func.substr(LedgerRow.at, 1, 10) == prefix)
            if resident_id is not None:
                stmt = stmt.where(LedgerRow.resident_id == resident_id)
            voided = self._voided(s)
            return [self._view(s, r, voided) for r in s.scalars(stmt)]

    def last_transaction(self) -> TxView | None:
        rows = self.transactions(limit=1)
        return rows[0] if rows else None

    def receipt(self, record_id: str, reprint: bool = True) -> Receipt:
        with self._sessions() as s:
            row = s.get(LedgerRow, record_id)
            if row is None or row.kind != "charge":
                raise PaymentError(f"no meal transaction {record_id}", code="unknown_charge")
            entry = _entry(row)
            info = self._roster.find(s, row.resident_id)
            return receipt_for_charge(
                centre_name=self.config.centre_name,
                record_id=row.entry_id,
                at=entry.at,
                resident_masked=info.name_masked if info else "?",
                lines=self._lines_of(s, row.seq),
                list_total=entry.list_amount,
                subsidy=entry.subsidy,
                paid=entry.due,
                balance_after=Money(row.balance_after_fen),
                method=entry.method or VerificationMethod.FACE,
                slot=entry.slot or MealSlot.LUNCH,
                record_hash=row.hash,
                reprint=reprint,
            )

    def _lines_of(self, s: Session, seq: int) -> tuple[OrderLine, ...]:
        out = s.get(OutboxRow, seq)
        if out is None:
            return ()
        payload = json.loads(out.payload)
        return tuple(
            OrderLine(
                item_id=i["item_id"],
                name=i["name"],
                unit_price=Money(i["unit_price_fen"]),
                quantity=i["quantity"],
                subsidisable=i["subsidisable"],
            )
            for i in payload.get("items", [])
        )

    def day_summary(self, day: date) -> dict[str, Any]:
        txs = [
            t
            for t in self.transactions(day=day, limit=100000)
            if t.kind == "charge" and not t.voided
        ]
        slots: dict[str, dict[str, int]] = {}
        for t in txs:
            d = slots.setdefault(
                t.slot or "?", {"meals": 0, "list_fen": 0, "subsidy_fen": 0, "paid_fen": 0}
            )
            d["meals"] += 1
            d["list_fen"] += t.list_amount.fen
            d["subsidy_fen"] += t.subsidy.fen
            d["paid_fen"] += t.due.fen
        return {
            "day": day.isoformat(),
            "meals": len(txs),
            "by_slot": slots,
            "subsidy_fen": sum(t.subsidy.fen for t in txs),
            "paid_fen": sum(t.due.fen for t in txs),
            "residents": len({t.resident_id for t in txs}),
        }

    # ------------------------------------------------------------------ verification
    def verify(self) -> LedgerCheck:
        """Balances equal the ledger, sequence gap-free, hash chain intact, one
        outbox row per ledger record. Reports the first bad record."""
        with self._sessions() as s:
            problem = verify_outbox(s, self.device_id)
            if problem is not None:
                return LedgerCheck(False, 0, problem.problem, problem.record_id, problem.seq)
            rows = list(s.scalars(select(LedgerRow).order_by(LedgerRow.seq)))
            for r in rows:
                ob = s.get(OutboxRow, r.seq)
                if ob is None or ob.record_id != r.entry_id or ob.hash != r.hash:
                    return LedgerCheck(
                        False,
                        len(rows),
                        "ledger entry has no matching outbox record",
                        r.entry_id,
                        r.seq,
                    )
            entries = [_entry(r) for r in rows]
            result = verify_entries(entries, overdraft_limit=self.config.overdraft_limit)
            if not result.ok:
                bad = rows[result.first_bad_index] if result.first_bad_index is not None else None
                return LedgerCheck(
                    False,
                    len(rows),
                    result.message,
                    bad.entry_id if bad else None,
                    bad.seq if bad else None,
                )
            derived = (
                {rid.removeprefix("wallet:"): m for rid, m in result.balances.items()}
                if result.balances
                else {}
            )
            for w in s.scalars(select(WalletRow)):
                want = derived.get(w.resident_id, derived.get(f"wallet:{w.resident_id}", Money(0)))
                if Money(w.balance_fen) != want:
                    return LedgerCheck(
                        False,
                        len(rows),
                        f"wallet balance {w.balance_fen} != ledger {want.fen}",
                        w.last_entry_id,
                        None,
                    )
            return LedgerCheck(True, len(rows))


class DbFlowContext:
    """A :class:`payment.flow.FlowContext` reading the database (one short read
    transaction per lookup; never call from the GUI thread)."""

    def __init__(self, store: PaymentStore) -> None:
        self._store = store

    @property
    def config(self) -> FlowConfig:
        return self._store.config

    def _read(self, fn: Callable[[Session], Any]) -> Any:
        with self._store._sessions() as s:
            return fn(s)

    def resident(self, resident_id: str) -> Resident | None:
        return self._read(lambda s: self._store.resident(s, resident_id))  # type: ignore[no-any-return]

    def resident_by_card(self, card_id: str) -> Resident | None:
        info = self._read(lambda s: self._store._roster.by_card(s, card_id))
        return _resident(info) if info else None

    def resident_by_id_card(self, id_number: str) -> Resident | None:
        info = self._read(lambda s: self._store._roster.by_id_number(s, id_number))
        return _resident(info) if info else None

    def balance(self, resident_id: str) -> Money:
        return self._store.balance(resident_id)

    def meals(self, resident_id: str, day: date) -> Sequence[PriorMeal]:
        return self._read(lambda s: self._store.prior_meals(s, resident_id, day))  # type: ignore[no-any-return]

    def exposure(self, resident_id: str) -> Exposure:
        return self._read(lambda s: self._store.exposure(s, resident_id))  # type: ignore[no-any-return]

    def menu(self, day: date) -> Menu | None:
        return self._store.menu(day)

    def policy(self, day: date) -> SubsidyPolicy | None:
        return self._store.policy(day)

    def new_request_id(self) -> str:
        return random_request_id()
