"""Money writes: meal charges, cash top-ups and voids.

Every money movement is one ``BEGIN IMMEDIATE`` transaction that writes the
ledger entry, updates the derived wallet balance and appends the outbox record
(sequence number + hash chain), then COMMITs with ``synchronous=FULL``. The
kiosk acknowledges a payment (screen, voice, receipt) only after
:meth:`MoneyWriter.charge` returned ``ChargeCommitted``. A charge is made
idempotent by its intent (:mod:`payment.store.intents`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from payment.domain import Resident, VerificationMethod
from payment.errors import PaymentError
from payment.flow import (
    ChargeCommitted,
    ChargeFailed,
    ChargeRequest,
    FailReason,
    OverrideKind,
    visitor_label,
)
from payment.guard import check_duplicate
from payment.ledger import (
    CASH,
    HOME_WALLET,
    LedgerEntry,
    make_charge,
    make_topup,
    make_void,
    validate_new_entry,
)
from payment.limits import check_limits
from payment.store.deps import StoreDeps
from payment.store.intents import ChargeIntents, committed, request_key
from payment.store.queries import Queries, TxView
from payment.store.schema import (
    INTENT_COMMITTED,
    INTENT_FAILED,
    INTENT_OPEN,
    IntentRow,
    LedgerRow,
    WalletRow,
    ledger_entry,
)
from payment.store.visitors import visitor_resident
from payment.visiting import PaymentSource, Visit
from terminal.core.clock import rfc3339
from terminal.core.ids import new_ulid
from terminal.core.log import get_logger
from terminal.core.money import Money
from terminal.db.engine import DiskFull, write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import audit

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


_PAID_FROM = {PaymentSource.CASH: CASH, PaymentSource.HOME_WALLET: HOME_WALLET}


def _visit_fields(visit: Visit) -> dict[str, Any]:
    """What a visiting meal's record says beyond a resident's: the ``visit``
    object, the categories the platform gave, and where the due was paid from:
    ``wallet`` only for a wallet at this centre (whose figures the record
    carries); cash and the home-centre wallet move no wallet of this terminal
    (``visit.payment_source`` says which)."""
    wallet = visit.payment_source is PaymentSource.VISITED_WALLET
    return {
        "categories": sorted(c.value for c in visit.categories) or ["none"],
        "payment_source": "wallet" if wallet else "cash",
        "visit": visit.to_payload(),
    }


class MoneyWriter:
    """Writes ledger entries, wallets and their outbox records (one transaction
    each), re-checking balance, duplicates and limits inside it."""

    def __init__(
        self,
        deps: StoreDeps,
        queries: Queries,
        intents: ChargeIntents,
        outbox: Outbox,
        *,
        match_threshold: float | None = None,
        id_number_hmac: Callable[[str], str] | None = None,
    ) -> None:
        self._d = deps
        self._queries = queries
        self._intents = intents
        self._outbox = outbox
        self._match_threshold = match_threshold
        self._id_number_hmac = id_number_hmac

    def charge(self, request: ChargeRequest) -> ChargeCommitted | ChargeFailed:
        """Commit a meal charge, re-checking balance, duplicates and limits inside
        the write transaction. Returns the event to feed back into the flow.

        The request's intent is written (and committed) first; the charge
        transaction lands only while that intent is still open."""
        try:
            key = request_key(request, self._d.device_id)
            status, reason = self._intents.open(request)
            if status != INTENT_OPEN:  # this request was settled before: same answer again
                done = self._settled(request, key)
                if done is not None:
                    return done
                return ChargeFailed(request.session, reason or FailReason.CHARGE_FAILED.value)
            with write_session(self._d.sessions) as s:
                existing = s.scalar(select(LedgerRow).where(LedgerRow.request_key == key))
                intent = s.get(IntentRow, request.request_id)
                if existing is not None:  # the same request again: never charge twice
                    if intent is not None and intent.status == INTENT_OPEN:
                        self._intents.close(intent, INTENT_COMMITTED, record_id=existing.entry_id)
                    return committed(request.session, existing)
                if intent is None or intent.status != INTENT_OPEN:
                    # closed meanwhile (resolved as abandoned after a timeout, or at start-up)
                    why = intent.reason if intent is not None else None
                    return ChargeFailed(request.session, why or FailReason.CHARGE_FAILED.value)
                outcome = self._charge_in(s, request, key)
                if isinstance(outcome, ChargeCommitted):
                    self._intents.close(intent, INTENT_COMMITTED, record_id=outcome.record_id)
                else:
                    self._intents.close(intent, INTENT_FAILED, reason=outcome.reason)
                return outcome
        except PaymentError as exc:
            reason = (
                "insufficient_balance"
                if exc.code == "insufficient_balance"
                else FailReason.CHARGE_FAILED.value
            )
            if request.request_id:
                self._intents.fail_open(request.request_id, reason)
            return ChargeFailed(request.session, reason)
        except DiskFull:
            # SQLITE_FULL: the transaction was rolled back, nothing of this charge
            # exists and it is not retried; an open intent is closed here if there
            # is room, else at the next resolve or start-up.
            log.error("charge_disk_full", session=request.session)
            if request.request_id:
                self._intents.fail_open(request.request_id, "disk_full")
            return ChargeFailed(request.session, "disk_full")

    def _charge_in(
        self, s: Session, request: ChargeRequest, key: str
    ) -> ChargeCommitted | ChargeFailed:
        visit = request.visit
        if visit is None:
            resident = self._queries.resident(s, request.resident_id)
        else:  # a senior of another centre: an inactive roster row holds their ledger
            resident = visitor_resident(
                s,
                self._d.roster,
                visit,
                visitor_label(visit.home_centre_id, visit.home_centre_name),
                self._d.clock.now(),
            )
        if resident is None or (visit is None and not resident.active):
            return ChargeFailed(request.session, FailReason.RESIDENT_NOT_FOUND.value)
        overrides = {o.kind for o in request.overrides}
        staff_for = {o.kind: o.staff_id for o in request.overrides}
        meals = self._queries.prior_meals(s, request.resident_id, request.day)
        guard = check_duplicate(
            [m for m in meals if not m.voided],
            slot=request.slot,
            day=request.day,
            staff_override=staff_for.get(OverrideKind.DUPLICATE),
            another_portion=request.another_portion,
            any_meal=self._d.config.duplicate_guard_any_meal,
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
                request.due, self._queries.exposure(s, request.resident_id), self._d.config.limits
            )
            if limit.result != "ok":
                return ChargeFailed(request.session, "staff_required")
        before = self._queries.balance(request.resident_id, s)
        # the record id a visitor's slot was claimed for, unless a record holds it
        # already (a meal voided and bought again: the platform judges at upload)
        claimed = request.record_id
        if claimed is not None and s.get(LedgerRow, claimed) is not None:
            claimed = None
        entry = make_charge(
            claimed or new_ulid(),
            request.resident_id,
            request.requested_at if request.requested_at.tzinfo else self._d.clock.now(),
            slot=request.slot,
            day=request.day,
            list_amount=request.list_amount,
            subsidy=request.subsidy,
            method=request.method,
            staff_id=request.staff_id,
            paid_from=_PAID_FROM.get(visit.payment_source) if visit is not None else None,
        )
        after = validate_new_entry(
            entry, wallet_balance=before, overdraft_limit=self._d.config.overdraft_limit
        )
        payload = self._meal_payload(s, request, resident, before, after)
        if visit is not None:
            payload.update(_visit_fields(visit))
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
                **({"visit": visit.to_payload()} if visit is not None else {}),
                # who let this meal past a rule (duplicate, limits, visitor subsidy ...)
                **(
                    {"overrides": [[o.kind.value, o.staff_id] for o in request.overrides]}
                    if request.overrides
                    else {}
                ),
            },
        )
        return ChargeCommitted(request.session, row.entry_id, after, row.hash)

    def _settled(self, request: ChargeRequest, key: str) -> ChargeCommitted | None:
        with self._d.sessions() as s:
            row = s.scalar(select(LedgerRow).where(LedgerRow.request_key == key))
            return committed(request.session, row) if row is not None else None

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
            number = self._d.roster.id_number(s, req.resident_id)
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
        now = self._d.clock.now()
        with write_session(self._d.sessions) as s:
            if self._d.roster.find(s, resident_id) is None:
                raise PaymentError(f"no resident with id {resident_id}", code="resident_not_found")
            before = self._queries.balance(resident_id, s)
            entry = make_topup(
                new_ulid(), resident_id, now, amount=amount, staff_id=staff_id, reason=reason
            )
            after = validate_new_entry(
                entry, wallet_balance=before, overdraft_limit=self._d.config.overdraft_limit
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
        return self._queries.get(entry.entry_id)

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
        now = self._d.clock.now()
        with write_session(self._d.sessions) as s:
            row = s.get(LedgerRow, record_id)
            if row is None:
                raise PaymentError(f"no transaction {record_id}", code="unknown_charge")
            charge = ledger_entry(row)
            comps = [
                ledger_entry(r)
                for r in s.scalars(select(LedgerRow).where(LedgerRow.ref_id == record_id))
            ]
            before = self._queries.balance(charge.resident_id, s)
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
        return self._queries.get(entry.entry_id)

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
        """Write ``entry`` inside ``s``: its outbox record (next sequence number and
        hash), its ledger row and the wallet's new balance."""
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
