"""Charge intents: the idempotency and recovery of a charge.

A charge request carries a random ``request_id`` (uuid4 from the device, never
derived from the clock: a Pi without RTC can step back after a reboot). The
store keeps one *intent* per request id:

1. :meth:`payment.store.money.MoneyWriter.charge` first writes the intent
   (``open``, :meth:`ChargeIntents.open`) in its own committed transaction,
   then charges in a second transaction that re-reads the intent under the
   write lock and marks it ``committed`` (with the record id) or ``failed``
   (with the reason). A request whose intent is already closed is never
   charged: a retry with the same id returns the existing record, or the same
   refusal.
2. :meth:`ChargeIntents.resolve` answers "what became of this request?" for a
   charge that outlived the kiosk's timeout or crashed: committed ->
   ``ChargeCommitted``; still open -> closed as ``abandoned`` under the write
   lock, so the charge transaction (which checks the intent first) can no
   longer land -> ``ChargeFailed``; the write lock still busy -> ``None`` (ask
   again later).
3. :meth:`ChargeIntents.mark_shown` records that the senior was told "paid";
   :meth:`ChargeIntents.recover` (at start-up) closes open intents as abandoned
   and reports committed charges nobody was told about (the process died
   between COMMIT and the screen), with an audit row each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from payment.errors import PaymentError
from payment.flow import ChargeCommitted, ChargeFailed, ChargeRequest, FailReason
from payment.store.deps import StoreDeps
from payment.store.queries import Queries, TxView
from payment.store.schema import (
    INTENT_ABANDONED,
    INTENT_COMMITTED,
    INTENT_FAILED,
    INTENT_OPEN,
    IntentRow,
    LedgerRow,
)
from terminal.core.clock import rfc3339
from terminal.core.log import get_logger
from terminal.core.money import Money
from terminal.db.engine import write_session
from terminal.db.roster import audit

log = get_logger(__name__)


def request_key(request: ChargeRequest, device_id: str) -> str:
    """The ledger's idempotency key: the device and the request's random id only
    (no session counter, no clock: both repeat after a reboot)."""
    if not request.request_id:
        raise PaymentError("a charge request needs a request id", code="no_request_id")
    return hashlib.sha256(f"{device_id}|{request.request_id}".encode()).hexdigest()


def committed(session: int, row: LedgerRow) -> ChargeCommitted:
    """The flow event for the charge recorded in ``row``."""
    return ChargeCommitted(session, row.entry_id, Money(row.balance_after_fen), row.hash)


@dataclass(frozen=True)
class IntentRecovery:
    """What :meth:`ChargeIntents.recover` found at start-up."""

    paid: list[TxView]  # committed charges nobody had been told about (now reported)
    abandoned: list[str]  # request ids whose charge never committed (now closed)


class ChargeIntents:
    """The ``charge_intents`` table: one row per charge request."""

    def __init__(self, deps: StoreDeps, queries: Queries) -> None:
        self._d = deps
        self._queries = queries

    def close(
        self,
        intent: IntentRow,
        status: str,
        *,
        record_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Close ``intent`` inside the caller's write transaction."""
        intent.status = status
        intent.closed_at = rfc3339(self._d.clock.now())
        intent.record_id = record_id
        intent.reason = reason

    def _row(self, request: ChargeRequest) -> IntentRow:
        return IntentRow(
            request_id=request.request_id,
            session=request.session,
            resident_id=request.resident_id,
            day=request.day.isoformat(),
            slot=request.slot.value,
            due_fen=request.due.fen,
            status=INTENT_OPEN,
            created_at=rfc3339(self._d.clock.now()),
        )

    def open(self, request: ChargeRequest) -> tuple[str, str | None]:
        """Persist the intent (own transaction, committed before the charge).
        Returns the intent's status and reason; an existing intent is left as is."""
        with write_session(self._d.sessions) as s:
            intent = s.get(IntentRow, request.request_id)
            if intent is not None:
                return intent.status, intent.reason
            s.add(self._row(request))
            return INTENT_OPEN, None

    def fail_open(self, request_id: str, reason: str) -> None:
        """Close the intent as failed if it is still open (own transaction; when
        that fails too, the next resolve or restart closes it)."""
        try:
            with write_session(self._d.sessions) as s:
                intent = s.get(IntentRow, request_id)
                if intent is not None and intent.status == INTENT_OPEN:
                    self.close(intent, INTENT_FAILED, reason=reason)
        except DBAPIError as exc:  # the next resolve or restart closes it
            log.warning("intent_close_failed", error=type(exc).__name__)

    def resolve(self, request: ChargeRequest) -> ChargeCommitted | ChargeFailed | None:
        """What became of ``request`` (by its request id)? ``ChargeCommitted`` when
        its record exists; ``ChargeFailed`` when it was refused or can no longer
        land (an open intent is closed as abandoned here, under the write lock,
        so its charge transaction refuses to run); ``None`` while the store
        cannot tell (the write lock is held by a charge still committing)."""
        if not request.request_id:
            return ChargeFailed(request.session, FailReason.CHARGE_FAILED.value)
        key = request_key(request, self._d.device_id)
        try:
            with write_session(self._d.sessions) as s:
                row = s.scalar(select(LedgerRow).where(LedgerRow.request_key == key))
                intent = s.get(IntentRow, request.request_id)
                if row is not None:
                    if intent is not None and intent.status == INTENT_OPEN:
                        self.close(intent, INTENT_COMMITTED, record_id=row.entry_id)
                    return committed(request.session, row)
                if intent is None:  # never started: a tombstone keeps it from starting later
                    intent = self._row(request)
                    s.add(intent)
                if intent.status == INTENT_OPEN:
                    self.close(intent, INTENT_ABANDONED, reason=FailReason.CHARGE_FAILED.value)
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
        with write_session(self._d.sessions) as s:
            intent = s.get(IntentRow, request_id)
            if intent is None or intent.status != INTENT_COMMITTED or intent.shown_at:
                return False
            intent.shown_at = rfc3339(self._d.clock.now())
            intent.shown_by = by
            return True

    def get(self, request_id: str) -> IntentRow | None:
        with self._d.sessions() as s:
            return s.get(IntentRow, request_id)

    def recover(self) -> IntentRecovery:
        """At start-up: close every open intent as abandoned (its charge did not
        commit, and now never will), and report every committed charge nobody
        was told about (killed between COMMIT and the screen) as paid, with an
        audit row for staff. Safe to call again: nothing is reported twice."""
        now = self._d.clock.now()
        paid_ids: list[str] = []
        abandoned: list[str] = []
        with write_session(self._d.sessions) as s:
            for intent in s.scalars(
                select(IntentRow)
                .where(IntentRow.status == INTENT_OPEN)
                .order_by(IntentRow.created_at)
            ):
                self.close(intent, INTENT_ABANDONED, reason=FailReason.CHARGE_FAILED.value)
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
        paid = sorted((self._queries.get(r) for r in paid_ids), key=lambda t: t.seq)
        return IntentRecovery(paid=paid, abandoned=abandoned)
