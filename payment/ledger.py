"""A pure double-entry ledger for resident wallets.

Accounts (debit-positive signed amounts; every entry's legs sum to zero):

* ``wallet:<resident_id>`` - what the centre owes the resident (a liability:
  its *balance* is credits minus debits, i.e. ``-sum(legs)``);
* ``revenue:canteen`` - meal revenue (credit-normal);
* ``receivable:subsidy`` - what the district owes for subsidised meals;
* ``cash:drawer`` - cash taken at the counter;
* ``receivable:home_wallet`` - what the platform owes for visitors' meals paid
  from their home-centre wallet (city-wide meals).

Postings:

=========  ==========================================================
charge     Dr wallet (due), Dr receivable:subsidy (subsidy), Cr revenue (list);
           a visitor's meal paid in cash or from the home-centre wallet debits
           cash:drawer or receivable:home_wallet instead of a wallet
topup      Dr cash, Cr wallet
void       the exact mirror of a charge (compensates it in full)
refund     Dr revenue, Cr wallet (part or all of the paid amount of a charge)
=========  ==========================================================

Entries are append-only: a void or refund is a new entry that references the
charge. A charge may be voided once, and only if it has no refund; refunds
together never exceed the amount the resident paid, and never follow a void.
The wallet balance never goes below ``-overdraft_limit`` (0 by default).

The store persists entries (with sequence number and hash chain) and uses
:func:`validate_new_entry` with facts it read inside its write transaction;
:class:`Ledger` does the same in memory (tests, ``ledger verify`` replays).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from payment.domain import MealSlot, PriorMeal, VerificationMethod, validate_resident_id
from payment.errors import DomainError, LedgerError
from terminal.core.money import Money

_ZERO = Money(0)

WALLET_PREFIX = "wallet:"
REVENUE = "revenue:canteen"
SUBSIDY_RECEIVABLE = "receivable:subsidy"
CASH = "cash:drawer"
HOME_WALLET = "receivable:home_wallet"
PAID_FROM = (CASH, HOME_WALLET)  # where a charge's due may come from besides the wallet

MAX_TOPUP = Money(1_000_000)  # 10 000 yuan: a cash top-up above this is a typing error


def wallet_account(resident_id: str) -> str:
    return WALLET_PREFIX + resident_id


class EntryKind(StrEnum):
    CHARGE = "charge"
    TOPUP = "topup"
    VOID = "void"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a posting: positive = debit, negative = credit (fen)."""

    account: str
    amount: Money

    @classmethod
    def debit(cls, account: str, amount: Money) -> Leg:
        return cls(account, amount)

    @classmethod
    def credit(cls, account: str, amount: Money) -> Leg:
        return cls(account, -amount)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One append-only record.

    ``list_amount``/``subsidy``/``due`` describe a charge (and are mirrored on
    its void); ``amount`` is what moved in or out of the wallet (positive for
    top-ups, voids and refunds, the due amount for a charge).
    """

    entry_id: str
    kind: EntryKind
    resident_id: str
    at: datetime
    legs: tuple[Leg, ...]
    amount: Money
    # charge (and copied onto its void)
    slot: MealSlot | None = None
    day: date | None = None
    list_amount: Money = _ZERO
    subsidy: Money = _ZERO
    method: VerificationMethod | None = None
    # void / refund / topup
    ref_id: str | None = None
    reason: str = ""
    staff_id: str | None = None

    @property
    def due(self) -> Money:
        return self.amount if self.kind is EntryKind.CHARGE else Money(0)

    @property
    def wallet_delta(self) -> Money:
        """Change of the resident's wallet balance caused by this entry."""
        acct = wallet_account(self.resident_id)
        return Money(-sum(leg.amount.fen for leg in self.legs if leg.account == acct))

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form (stable keys; used for payloads and hashing)."""
        return {
            "entry_id": self.entry_id,
            "kind": self.kind.value,
            "resident_id": self.resident_id,
            "at": self.at.isoformat(timespec="microseconds"),
            "amount_fen": self.amount.fen,
            "legs": [[leg.account, leg.amount.fen] for leg in self.legs],
            "slot": self.slot.value if self.slot else None,
            "day": self.day.isoformat() if self.day else None,
            "list_fen": self.list_amount.fen,
            "subsidy_fen": self.subsidy.fen,
            "method": self.method.value if self.method else None,
            "ref_id": self.ref_id,
            "reason": self.reason,
            "staff_id": self.staff_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEntry:
        try:
            at = datetime.fromisoformat(str(data["at"]))
            return cls(
                entry_id=str(data["entry_id"]),
                kind=EntryKind(data["kind"]),
                resident_id=str(data["resident_id"]),
                at=at,
                legs=tuple(Leg(str(a), Money(int(f))) for a, f in data["legs"]),
                amount=Money(int(data["amount_fen"])),
                slot=MealSlot(data["slot"]) if data.get("slot") else None,
                day=date.fromisoformat(data["day"]) if data.get("day") else None,
                list_amount=Money(int(data.get("list_fen", 0))),
                subsidy=Money(int(data.get("subsidy_fen", 0))),
                method=VerificationMethod(data["method"]) if data.get("method") else None,
                ref_id=data.get("ref_id"),
                reason=str(data.get("reason", "")),
                staff_id=data.get("staff_id"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise LedgerError(f"malformed ledger entry: {exc}", code="entry_malformed") from None


# --------------------------------------------------------------------------- builders


def _check_id(entry_id: str) -> None:
    if not entry_id.strip():
        raise LedgerError("an entry needs an id", code="entry_malformed")


def _aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise LedgerError("entry time must be timezone-aware", code="entry_malformed")


def _legs(*legs: Leg) -> tuple[Leg, ...]:
    return tuple(leg for leg in legs if leg.amount.fen != 0)


def make_charge(
    entry_id: str,
    resident_id: str,
    at: datetime,
    *,
    slot: MealSlot,
    day: date,
    list_amount: Money,
    subsidy: Money,
    method: VerificationMethod,
    staff_id: str | None = None,
    paid_from: str | None = None,
) -> LedgerEntry:
    """A meal charge: the resident pays ``list - subsidy`` from the wallet, or
    from ``paid_from`` (one of :data:`PAID_FROM`: a visitor's cash or home wallet)."""
    _check_id(entry_id)
    _aware(at)
    if list_amount.fen < 0 or subsidy.fen < 0 or subsidy.fen > list_amount.fen:
        raise LedgerError("charge needs 0 <= subsidy <= list amount", code="bad_amount")
    if paid_from is not None and paid_from not in PAID_FROM:
        raise LedgerError(f"a charge cannot be paid from {paid_from}", code="bad_account")
    due = list_amount - subsidy
    legs = _legs(
        Leg.debit(paid_from or wallet_account(resident_id), due),
        Leg.debit(SUBSIDY_RECEIVABLE, subsidy),
        Leg.credit(REVENUE, list_amount),
    )
    return LedgerEntry(
        entry_id,
        EntryKind.CHARGE,
        resident_id,
        at,
        legs,
        due,
        slot=slot,
        day=day,
        list_amount=list_amount,
        subsidy=subsidy,
        method=method,
        staff_id=staff_id,
    )


def make_topup(
    entry_id: str, resident_id: str, at: datetime, *, amount: Money, staff_id: str, reason: str = ""
) -> LedgerEntry:
    """Cash paid in at the counter by staff."""
    _check_id(entry_id)
    _aware(at)
    if amount.fen <= 0:
        raise LedgerError("a top-up must be a positive amount", code="bad_amount")
    if amount.fen > MAX_TOPUP.fen:
        raise LedgerError(f"a top-up above {MAX_TOPUP} is not accepted", code="bad_amount")
    if not staff_id.strip():
        raise LedgerError("a top-up needs the staff member", code="staff_required")
    legs = _legs(Leg.debit(CASH, amount), Leg.credit(wallet_account(resident_id), amount))
    return LedgerEntry(
        entry_id, EntryKind.TOPUP, resident_id, at, legs, amount, reason=reason, staff_id=staff_id
    )


def make_void(
    entry_id: str, charge: LedgerEntry, at: datetime, *, reason: str, staff_id: str
) -> LedgerEntry:
    """The full compensation of ``charge`` (mirror legs). Validity against the
    ledger (not yet voided, not refunded) is checked when it is appended."""
    _check_id(entry_id)
    _aware(at)
    if charge.kind is not EntryKind.CHARGE:
        raise LedgerError("only a charge can be voided", code="void_not_charge")
    _require_reason_staff(reason, staff_id)
    legs = tuple(Leg(leg.account, -leg.amount) for leg in charge.legs)
    return LedgerEntry(
        entry_id,
        EntryKind.VOID,
        charge.resident_id,
        at,
        legs,
        charge.amount,
        slot=charge.slot,
        day=charge.day,
        list_amount=charge.list_amount,
        subsidy=charge.subsidy,
        method=charge.method,
        ref_id=charge.entry_id,
        reason=reason.strip(),
        staff_id=staff_id.strip(),
    )


def make_refund(
    entry_id: str,
    charge: LedgerEntry,
    at: datetime,
    *,
    amount: Money,
    reason: str,
    staff_id: str,
) -> LedgerEntry:
    """Return part (or all) of what the resident paid for ``charge`` to the wallet.
    The subsidy claim is untouched (void the charge to withdraw it)."""
    _check_id(entry_id)
    _aware(at)
    if charge.kind is not EntryKind.CHARGE:
        raise LedgerError("only a charge can be refunded", code="refund_not_charge")
    _require_reason_staff(reason, staff_id)
    if amount.fen <= 0:
        raise LedgerError("a refund must be a positive amount", code="bad_amount")
    legs = _legs(Leg.debit(REVENUE, amount), Leg.credit(wallet_account(charge.resident_id), amount))
    return LedgerEntry(
        entry_id,
        EntryKind.REFUND,
        charge.resident_id,
        at,
        legs,
        amount,
        slot=charge.slot,
        day=charge.day,
        ref_id=charge.entry_id,
        reason=reason.strip(),
        staff_id=staff_id.strip(),
    )


def _require_reason_staff(reason: str, staff_id: str) -> None:
    if not reason.strip():
        raise LedgerError("a reason is required", code="reason_required")
    if not staff_id.strip():
        raise LedgerError("the staff member is required", code="staff_required")


# --------------------------------------------------------------------------- validation


def check_entry_shape(entry: LedgerEntry) -> None:
    """Checks that need only the entry itself: balanced legs, allowed accounts,
    amounts consistent with the kind."""
    _check_id(entry.entry_id)
    _aware(entry.at)
    try:
        validate_resident_id(entry.resident_id)
    except DomainError as exc:
        raise LedgerError(str(exc), code="entry_malformed") from None
    if sum(leg.amount.fen for leg in entry.legs) != 0:
        raise LedgerError(f"entry {entry.entry_id} is not balanced", code="unbalanced")
    if any(leg.amount.fen == 0 for leg in entry.legs):
        raise LedgerError(f"entry {entry.entry_id} has a zero leg", code="entry_malformed")
    wallet = wallet_account(entry.resident_id)
    allowed = {
        EntryKind.CHARGE: {wallet, SUBSIDY_RECEIVABLE, REVENUE, *PAID_FROM},
        EntryKind.VOID: {wallet, SUBSIDY_RECEIVABLE, REVENUE, *PAID_FROM},
        EntryKind.TOPUP: {wallet, CASH},
        EntryKind.REFUND: {wallet, REVENUE},
    }[entry.kind]
    if any(leg.account not in allowed for leg in entry.legs):
        raise LedgerError(f"entry {entry.entry_id} posts to a foreign account", code="bad_account")
    if entry.amount.fen < 0:
        raise LedgerError(f"entry {entry.entry_id} has a negative amount", code="bad_amount")
    delta = entry.wallet_delta.fen
    if entry.kind is EntryKind.CHARGE:
        if entry.slot is None or entry.day is None or entry.method is None:
            raise LedgerError(
                f"charge {entry.entry_id} lacks slot/day/method", code="entry_malformed"
            )
        if not 0 <= entry.subsidy.fen <= entry.list_amount.fen:
            raise LedgerError(f"charge {entry.entry_id}: bad subsidy", code="bad_amount")
        payer = paid_from_account(entry) or wallet
        expected = {
            payer: entry.list_amount.fen - entry.subsidy.fen,
            SUBSIDY_RECEIVABLE: entry.subsidy.fen,
            REVENUE: -entry.list_amount.fen,
        }
        if _by_account(entry.legs) != {k: v for k, v in expected.items() if v}:
            raise LedgerError(
                f"charge {entry.entry_id}: legs do not match amounts", code="unbalanced"
            )
        if delta != (0 if payer != wallet else -entry.amount.fen):
            raise LedgerError(f"charge {entry.entry_id}: amount mismatch", code="bad_amount")
    else:
        moved = 0 if entry.kind is EntryKind.VOID and paid_from_account(entry) else entry.amount.fen
        if delta != moved:
            raise LedgerError(f"entry {entry.entry_id}: amount mismatch", code="bad_amount")
        if entry.kind is EntryKind.TOPUP and entry.amount.fen <= 0:
            raise LedgerError("a top-up must be a positive amount", code="bad_amount")
        if entry.kind in (EntryKind.VOID, EntryKind.REFUND):
            if not entry.ref_id:
                raise LedgerError(
                    f"{entry.kind.value} needs the charge it compensates", code="ref_required"
                )
            if not entry.reason.strip():
                raise LedgerError("a reason is required", code="reason_required")
        if not (entry.staff_id or "").strip():
            raise LedgerError(f"{entry.kind.value} needs the staff member", code="staff_required")


def paid_from_account(entry: LedgerEntry) -> str | None:
    """The account other than a wallet a charge (or its void) was paid from, if any."""
    for leg in entry.legs:
        if leg.account in PAID_FROM:
            return leg.account
    return None


def _by_account(legs: Iterable[Leg]) -> dict[str, int]:
    out: dict[str, int] = {}
    for leg in legs:
        out[leg.account] = out.get(leg.account, 0) + leg.amount.fen
    return out


def validate_new_entry(
    entry: LedgerEntry,
    *,
    wallet_balance: Money,
    referenced: LedgerEntry | None = None,
    compensations: Sequence[LedgerEntry] = (),
    overdraft_limit: Money = _ZERO,
) -> Money:
    """Check ``entry`` against the ledger facts the caller read in the same
    transaction, and return the wallet balance after it.

    * ``wallet_balance``: the resident's balance before the entry;
    * ``referenced``: for a void/refund, the charge named by ``ref_id``
      (None when it does not exist);
    * ``compensations``: voids and refunds already recorded for that charge.

    Raises :class:`LedgerError` whose ``code`` names the broken rule.
    """
    check_entry_shape(entry)
    if entry.kind in (EntryKind.VOID, EntryKind.REFUND):
        if referenced is None or referenced.entry_id != entry.ref_id:
            raise LedgerError(f"charge {entry.ref_id} does not exist", code="unknown_charge")
        if referenced.kind is not EntryKind.CHARGE:
            raise LedgerError(f"{entry.ref_id} is not a charge", code="not_a_charge")
        if referenced.resident_id != entry.resident_id:
            raise LedgerError("the entry names another resident than its charge", code="bad_ref")
        if any(c.kind is EntryKind.VOID for c in compensations):
            raise LedgerError(f"charge {entry.ref_id} is already voided", code="already_voided")
        refunded = sum(c.amount.fen for c in compensations if c.kind is EntryKind.REFUND)
        if entry.kind is EntryKind.VOID:
            if refunded:
                raise LedgerError(
                    f"charge {entry.ref_id} was partly refunded; refund the rest instead",
                    code="already_refunded",
                )
            mirror = tuple(Leg(leg.account, -leg.amount) for leg in referenced.legs)
            if _by_account(entry.legs) != _by_account(mirror):
                raise LedgerError("a void must mirror its charge", code="bad_void")
        elif refunded + entry.amount.fen > referenced.amount.fen:
            left = Money(referenced.amount.fen - refunded)
            raise LedgerError(
                f"refund exceeds what was paid (at most {left} left)", code="refund_too_large"
            )
    after = wallet_balance + entry.wallet_delta
    if entry.wallet_delta.fen < 0 and after.fen < -overdraft_limit.fen:
        raise LedgerError(
            f"insufficient balance ({wallet_balance} available)", code="insufficient_balance"
        )
    return after


# --------------------------------------------------------------------------- derived views


def account_balances(entries: Iterable[LedgerEntry]) -> dict[str, Money]:
    """Debit-positive sum per account."""
    out: dict[str, int] = {}
    for e in entries:
        for leg in e.legs:
            out[leg.account] = out.get(leg.account, 0) + leg.amount.fen
    return {k: Money(v) for k, v in out.items()}


def wallet_balances(entries: Iterable[LedgerEntry]) -> dict[str, Money]:
    """Wallet balance (credit-positive) per resident that has any entry."""
    out: dict[str, int] = {}
    for e in entries:
        out[e.resident_id] = out.get(e.resident_id, 0) + e.wallet_delta.fen
    return {k: Money(v) for k, v in out.items()}


def wallet_balance(entries: Iterable[LedgerEntry], resident_id: str) -> Money:
    return Money(sum(e.wallet_delta.fen for e in entries if e.resident_id == resident_id))


def prior_meals(
    entries: Iterable[LedgerEntry], resident_id: str, day: date | None = None
) -> tuple[PriorMeal, ...]:
    """Charges of a resident (optionally on ``day``) as :class:`PriorMeal`, with
    voided ones marked."""
    entries = list(entries)
    voided = {e.ref_id for e in entries if e.kind is EntryKind.VOID}
    out = []
    for e in entries:
        if e.kind is not EntryKind.CHARGE or e.resident_id != resident_id:
            continue
        if day is not None and e.day != day:
            continue
        assert e.slot is not None and e.day is not None  # guaranteed by check_entry_shape
        out.append(
            PriorMeal(e.entry_id, e.at, e.slot, e.day, e.subsidy.fen > 0, e.entry_id in voided)
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_index: int | None = None
    first_bad_id: str | None = None
    code: str | None = None
    message: str = ""
    balances: Mapping[str, Money] = field(default_factory=dict)


def verify_entries(
    entries: Iterable[LedgerEntry], *, overdraft_limit: Money = _ZERO
) -> VerifyResult:
    """Replay entries in order with every rule and report the first bad one."""
    ledger = Ledger(overdraft_limit=overdraft_limit)
    n = 0
    for n, entry in enumerate(entries):
        try:
            ledger.append(entry)
        except LedgerError as exc:
            return VerifyResult(
                False, n, n, entry.entry_id, exc.code, str(exc), ledger.wallet_balances()
            )
    count = len(ledger.entries)
    return VerifyResult(True, count, balances=ledger.wallet_balances())


class Ledger:
    """An in-memory append-only ledger that enforces every rule on append.

    Not thread-safe; meant for tests, replays and verification. Pure: no IO.
    """

    def __init__(
        self, entries: Iterable[LedgerEntry] = (), *, overdraft_limit: Money = _ZERO
    ) -> None:
        self._overdraft = overdraft_limit
        self._entries: list[LedgerEntry] = []
        self._by_id: dict[str, LedgerEntry] = {}
        self._comp: dict[str, list[LedgerEntry]] = {}
        self._wallets: dict[str, int] = {}
        self._accounts: dict[str, int] = {}
        for e in entries:
            self.append(e)

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._entries)

    @property
    def overdraft_limit(self) -> Money:
        return self._overdraft

    def get(self, entry_id: str) -> LedgerEntry | None:
        return self._by_id.get(entry_id)

    def compensations(self, charge_id: str) -> tuple[LedgerEntry, ...]:
        return tuple(self._comp.get(charge_id, ()))

    def is_voided(self, charge_id: str) -> bool:
        return any(c.kind is EntryKind.VOID for c in self._comp.get(charge_id, ()))

    def refundable(self, charge_id: str) -> Money:
        """What can still be refunded on a charge (0 when voided)."""
        charge = self._by_id.get(charge_id)
        if charge is None or charge.kind is not EntryKind.CHARGE or self.is_voided(charge_id):
            return Money(0)
        refunded = sum(c.amount.fen for c in self._comp.get(charge_id, ()))
        return Money(charge.amount.fen - refunded)

    def wallet_balance(self, resident_id: str) -> Money:
        return Money(self._wallets.get(resident_id, 0))

    def wallet_balances(self) -> dict[str, Money]:
        return {k: Money(v) for k, v in self._wallets.items()}

    def account_balance(self, account: str) -> Money:
        return Money(self._accounts.get(account, 0))

    def check(self, entry: LedgerEntry) -> Money:
        """Validate without appending; returns the wallet balance after."""
        if entry.entry_id in self._by_id:
            raise LedgerError(f"entry {entry.entry_id} already exists", code="duplicate_entry")
        ref = self._by_id.get(entry.ref_id) if entry.ref_id else None
        return validate_new_entry(
            entry,
            wallet_balance=self.wallet_balance(entry.resident_id),
            referenced=ref,
            compensations=self._comp.get(entry.ref_id or "", ()),
            overdraft_limit=self._overdraft,
        )

    def append(self, entry: LedgerEntry) -> Money:
        """Validate and append; returns the resident's wallet balance after."""
        after = self.check(entry)
        self._entries.append(entry)
        self._by_id[entry.entry_id] = entry
        if entry.ref_id and entry.kind in (EntryKind.VOID, EntryKind.REFUND):
            self._comp.setdefault(entry.ref_id, []).append(entry)
        self._wallets[entry.resident_id] = after.fen
        for leg in entry.legs:
            self._accounts[leg.account] = self._accounts.get(leg.account, 0) + leg.amount.fen
        return after

    def prior_meals(self, resident_id: str, day: date | None = None) -> tuple[PriorMeal, ...]:
        return prior_meals(self._entries, resident_id, day)
