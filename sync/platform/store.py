"""The reference platform's database (SQLAlchemy; SQLite by default, PostgreSQL by URL).

It stores what it accepts and nothing else: devices and their public keys, one
row per (device, stream) with the chain head, every accepted record (as sent,
with ``stored_as`` = ``record`` or ``quarantined``), Idempotency-Key answers,
seen nonces, and the datasets served to terminals.

:meth:`PlatformStore.process_batch` is the heart of the spec: per-device
sequence continuity, recomputed hashes, the chain link, per-record idempotency
by ``record_id`` and payload validation, all in one transaction together with
the stored answer for the request's Idempotency-Key. It also keeps its own money
ledger view per centre (``wallets``: each resident's last known balance;
``meal_ledger``: each meal stored as a record, what was refunded, whether voided)
and stores a money record that does not add up against it quarantined, with a
reason from the spec's ``QuarantineReason`` list (the spec's "Money rules").

PostgreSQL URLs take the psycopg 3 driver (``postgresql+psycopg://user@host/db``);
tests/sync/test_platform_postgres.py runs the real server against a real
PostgreSQL. Where the two databases differ (32-bit INTEGER, no NUL in text,
row locks instead of a database-wide write lock, a server that can restart) the
store keeps the answers the same; each place says why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sync import schemas
from sync.auth import card_hmac, lookup_hmac, pepper_id
from sync.platform.migrate import migrate
from terminal.core.clock import rfc3339
from terminal.core.errors import TerminalError
from terminal.core.ids import new_ulid
from terminal.db.base import NAMING
from terminal.db.engine import make_engine
from terminal.db.outbox import GENESIS, canonical_json, hash_of, row_envelope

FINAL_REASONS = frozenset(
    {
        "schema_invalid",
        "unknown_kind",
        "amount_mismatch",
        "hash_mismatch",
        "chain_broken",
        "seq_conflict",
        "idempotency_key_reused",
        "envelope_mismatch",
        "not_integer",
        "payload_too_complex",
    }
)

# A record payload may nest objects/arrays at most this deep (the payload itself is
# level 1) and hold at most this many object members in all; beyond either the
# record is refused (``payload_too_complex``) before schema validation.
MAX_PAYLOAD_DEPTH = 16
MAX_PAYLOAD_KEYS = 1024


def _spec_enum(name: str) -> frozenset[str]:
    return frozenset(str(v) for v in schemas.spec()["components"]["schemas"][name]["enum"])


# The reasons a stored record may be quarantined for: the spec's QuarantineReason
# enumeration, and the store never writes another (see :meth:`_BatchContext._store`).
QUARANTINE_REASONS = _spec_enum("QuarantineReason")


# City-wide meals (spec 1.2). The district roster is kept as a dataset of this
# "centre" (not a Code, so never a real centre's) and served to every centre.
DISTRICT_CENTRE = "*"
VISIT_PAYMENT_SOURCES = ("home_wallet", "cash", "visited_wallet")
DEFAULT_VISIT_PAYMENT_SOURCE = "cash"
CITYWIDE_DUPLICATE = "citywide_duplicate_subsidy"


def resident_key(centre_id: str, resident_id: str) -> str:
    """The ``resident`` key of a centre's own senior (their meals claim slots too)."""
    return hashlib.sha256(f"{centre_id}|{resident_id}".encode()).hexdigest()


# PostgreSQL's INTEGER is 32-bit and its driver binds Python ints as ::INTEGER, so a
# client-supplied number outside this range must never reach a query (SQLite's
# INTEGER is 64-bit and was forgiving).
INT32_MAX = 2**31 - 1
_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the spec's Code (device and centre ids)

# 64-bit on PostgreSQL; unchanged (INTEGER) on SQLite.
_BigInt = BigInteger().with_variant(Integer(), "sqlite")


class PlatformBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class DeviceRow(PlatformBase):
    __tablename__ = "devices"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    centre_id: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(12), default="active")
    registered_at: Mapped[str] = mapped_column(String(40))


class StreamRow(PlatformBase):
    __tablename__ = "streams"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_seq: Mapped[int] = mapped_column(Integer, default=1)
    head_hash: Mapped[str] = mapped_column(String(64), default=GENESIS)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)


class RecordRow(PlatformBase):
    __tablename__ = "records"
    # Explicit names: the shared convention names a unique constraint after its first
    # column only, so both would be "uq_records_device_id". SQLite accepts the clash;
    # PostgreSQL refuses the second (constraint names are relations there).
    __table_args__ = (
        UniqueConstraint("device_id", "stream", "seq", name="uq_records_device_stream_seq"),
        UniqueConstraint("device_id", "record_id", name="uq_records_device_record_id"),
        Index("ix_records_centre_kind", "centre_id", "kind"),
    )
    id: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    centre_id: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer)
    record_id: Mapped[str] = mapped_column(String(26))
    kind: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[str] = mapped_column(String(40))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    stored_as: Mapped[str] = mapped_column(String(12))
    quarantine_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    quarantine_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[str] = mapped_column(String(40))


class WalletRow(PlatformBase):
    """The platform's own view of a resident's wallet at a centre: the balance the
    latest money record of that wallet left it at."""

    __tablename__ = "wallets"
    centre_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    balance_fen: Mapped[int] = mapped_column(_BigInt)
    record_id: Mapped[str] = mapped_column(String(26))


class MealLedgerRow(PlatformBase):
    """A meal transaction stored as a record (not quarantined), with what was paid
    for it, refunded from it and whether it was voided: what refunds and voids
    are checked against."""

    __tablename__ = "meal_ledger"
    centre_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    resident_id: Mapped[str] = mapped_column(String(64))
    paid_fen: Mapped[int] = mapped_column(_BigInt)
    refunded_fen: Mapped[int] = mapped_column(_BigInt, default=0)
    voided: Mapped[int] = mapped_column(Integer, default=0)


class IdempotencyRow(PlatformBase):
    __tablename__ = "idempotency_keys"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))


class NonceRow(PlatformBase):
    __tablename__ = "nonces"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[int] = mapped_column(_BigInt, index=True)  # unix time: past 2038


class DatasetRow(PlatformBase):
    __tablename__ = "datasets"
    centre_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    etag: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[str] = mapped_column(String(40))
    data: Mapped[str] = mapped_column(Text)


class ConsentChangeRow(PlatformBase):
    __tablename__ = "consent_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    centre_id: Mapped[str] = mapped_column(String(64), index=True)
    change: Mapped[str] = mapped_column(Text)


class DistrictSettingRow(PlatformBase):
    """The district's settings: ``pepper`` (hex) and ``visit_payment_source``."""

    __tablename__ = "district_settings"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class VisitPersonRow(PlatformBase):
    """A senior of the district (made from the centres' rosters)."""

    __tablename__ = "visit_persons"
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    home_centre_id: Mapped[str] = mapped_column(String(64))
    resident_id: Mapped[str] = mapped_column(String(64))
    categories: Mapped[str] = mapped_column(String(400))  # JSON list
    active: Mapped[int] = mapped_column(Integer)


class VisitKeyRow(PlatformBase):
    """A key that names a person: card, id_number and lookup HMACs, and
    ``resident`` (SHA-256 of ``centre_id|resident_id``: a centre's own meals)."""

    __tablename__ = "visit_keys"
    key_type: Mapped[str] = mapped_column(String(12), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64))


class VisitClaimRow(PlatformBase):
    """The one subsidised meal of a senior, day and slot in the district: the
    primary key is the uniqueness that makes a claim atomic on both databases."""

    __tablename__ = "visit_claims"
    __table_args__ = (Index("ix_visit_claims_record_id", "record_id"),)
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    slot: Mapped[str] = mapped_column(String(12), primary_key=True)
    claim_id: Mapped[str] = mapped_column(String(26), unique=True)
    record_id: Mapped[str] = mapped_column(String(26))
    centre_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(8))  # online | upload | home
    claimed_at: Mapped[str] = mapped_column(String(40))


class VisitMealRow(PlatformBase):
    """A visiting meal as received (settlement, reviews); also a centre's own
    subsidised meal whose slot another meal held (reviews only)."""

    __tablename__ = "visit_meals"
    __table_args__ = (Index("ix_visit_meals_day", "day"),)
    centre_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    home_centre_id: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    slot: Mapped[str] = mapped_column(String(12))
    subsidy_fen: Mapped[int] = mapped_column(_BigInt)
    stored_as: Mapped[str] = mapped_column(String(12))
    held_by_record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    held_by_centre_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    received_at: Mapped[str] = mapped_column(String(40))


class DistrictWalletRow(PlatformBase):
    """A senior's district wallet (visit policy ``home_wallet``, spec 1.3): money
    the senior's home centre took at top-up, held by the platform, spent at any
    centre of the district online. Never below zero."""

    __tablename__ = "district_wallets"
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    balance_fen: Mapped[int] = mapped_column(_BigInt)
    updated_at: Mapped[str] = mapped_column(String(40))


class DistrictWalletEntryRow(PlatformBase):
    """One movement of a district wallet: ``topup`` (ref = the top-up record),
    ``debit`` (ref = the meal record, with its claim), ``refund`` (ref = the void
    or refund record), ``release`` (ref = the meal record, when the meal arrived
    paid otherwise, or district staff released a debit whose meal never came),
    ``redebit`` (ref = the meal record: a released meal arrived paid from the
    wallet after all) and ``reversal`` (ref = the top-up record, a mistaken
    top-up taken back by district staff). Unique per (kind, ref): a record
    moves money once. ``note``: who made a hand correction, and why."""

    __tablename__ = "district_wallet_entries"
    __table_args__ = (
        UniqueConstraint("kind", "ref_id", name="uq_district_wallet_entries_kind_ref_id"),
        Index("ix_district_wallet_entries_meal_record_id", "meal_record_id"),
    )
    id: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    ref_id: Mapped[str] = mapped_column(String(26))
    meal_record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    claim_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    amount_fen: Mapped[int] = mapped_column(_BigInt)  # positive: credit or debit by kind
    balance_before_fen: Mapped[int] = mapped_column(_BigInt)
    balance_after_fen: Mapped[int] = mapped_column(_BigInt)
    centre_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(String(200), nullable=True)


class PlatformStoreError(TerminalError):
    code = "platform_store_error"


class PlatformUnavailable(TerminalError):
    """The database server cannot be reached (PostgreSQL restarted, network lost).
    The HTTP layer answers 503 ``unavailable`` so devices retry; nothing is lost
    because the transaction was not committed, or, if it was, the retry with the
    same Idempotency-Key gets the stored answer."""

    code = "unavailable"


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    centre_id: str
    public_key: str
    status: str


@dataclass(frozen=True, slots=True)
class VisitMealFacts:
    """A visiting meal stored as a record, for the settlement rules."""

    record_id: str
    day: date
    slot: str
    visited_centre_id: str
    home_centre_id: str
    subsidy_fen: int
    voided: bool
    wallet_fen: int = 0  # paid from the district wallet (net of refunds), spec 1.3


class SlotTaken(PlatformStoreError):
    code = "slot_claimed"


class InsufficientBalance(PlatformStoreError):
    """The district wallet holds less than the debit asked (nothing was claimed)."""

    code = "insufficient_balance"


WALLET_CREDITS = ("topup", "refund", "release")  # the rest (debit, redebit, reversal) take out
UNKNOWN_SENIOR = "district_wallet_unknown_senior"


def _wallet_move(
    s: Session,
    person_id: str,
    kind: str,
    ref_id: str,
    amount_fen: int,
    *,
    centre_id: str,
    device_id: str,
    at: str,
    meal_record_id: str | None = None,
    claim_id: str | None = None,
    note: str | None = None,
    allow_negative: bool = False,
) -> DistrictWalletEntryRow:
    """Move ``amount_fen`` in or out of a district wallet in ``s`` (the caller's
    transaction), with its entry. The wallet row is locked (PostgreSQL) or the
    whole database is (SQLite's BEGIN IMMEDIATE), so two debits of one wallet
    never both read the same balance. Raises :class:`InsufficientBalance`
    unless ``allow_negative`` (a meal already eaten: the senior owes it)."""
    wallet = s.get(DistrictWalletRow, person_id, with_for_update=True)
    if wallet is None:
        wallet = DistrictWalletRow(person_id=person_id, balance_fen=0, updated_at=at)
        s.add(wallet)
    before = int(wallet.balance_fen)
    after = before + amount_fen if kind in WALLET_CREDITS else before - amount_fen
    if after < 0 and not allow_negative:
        raise InsufficientBalance(
            "the senior's district wallet holds less than this meal's amount due",
            code="insufficient_balance",
        )
    wallet.balance_fen, wallet.updated_at = after, at
    entry = DistrictWalletEntryRow(
        person_id=person_id,
        kind=kind,
        ref_id=ref_id,
        meal_record_id=meal_record_id,
        claim_id=claim_id,
        amount_fen=amount_fen,
        balance_before_fen=before,
        balance_after_fen=after,
        centre_id=centre_id,
        device_id=device_id,
        at=at,
        note=note,
    )
    s.add(entry)
    s.flush()
    return entry


def _debit_of(s: Session, record_id: str) -> DistrictWalletEntryRow | None:
    """The district wallet's debit for meal ``record_id``, if one was made."""
    return s.scalars(
        select(DistrictWalletEntryRow).where(
            DistrictWalletEntryRow.kind == "debit", DistrictWalletEntryRow.ref_id == record_id
        )
    ).first()


def _meal_wallet_left(s: Session, meal_record_id: str) -> tuple[str, int] | None:
    """(person, what is still debited) for a meal paid from a district wallet."""
    rows = s.scalars(
        select(DistrictWalletEntryRow).where(
            DistrictWalletEntryRow.meal_record_id == meal_record_id
        )
    ).all()
    debit = next((r for r in rows if r.kind == "debit"), None)
    if debit is None:
        return None
    return debit.person_id, _still_paid(rows)


def _still_paid(entries: Iterable[DistrictWalletEntryRow]) -> int:
    """What one meal's entries leave paid from the wallet: the debit and any
    re-debit, less refunds and releases."""
    paid = 0
    for e in entries:
        paid += int(e.amount_fen) * (-1 if e.kind in ("refund", "release") else 1)
    return paid


DEBIT_RELEASE_MIN_AGE = timedelta(days=3)  # a terminal offline longer is a review case
_HAND = "district-staff"  # device_id of an entry district staff made by hand


def _hand_note(staff_id: str, reason: str) -> str:
    staff, why = staff_id.strip(), " ".join(reason.split())
    if not staff or not why:
        raise PlatformStoreError(
            "a hand correction needs the staff id and a reason", code="staff_required"
        )
    return f"{staff}: {why}"[:200]


def _entry_doc(e: DistrictWalletEntryRow) -> dict[str, Any]:
    return {
        "person_id": e.person_id,
        "kind": e.kind,
        "ref_id": e.ref_id,
        "amount_fen": int(e.amount_fen),
        "balance_before_fen": int(e.balance_before_fen),
        "balance_after_fen": int(e.balance_after_fen),
        "at": e.at,
        "note": e.note,
    }


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    body: dict[str, Any]
    replayed: bool


def _on_db_error(context: ExceptionContext) -> None:
    if context.is_pre_ping:  # let the pool replace a stale connection by itself
        return
    if context.is_disconnect or isinstance(context.sqlalchemy_exception, OperationalError):
        raise PlatformUnavailable(
            "the platform database is unavailable; retry later"
        ) from context.original_exception


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return make_engine(url)
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (ImportError, ArgumentError) as exc:  # the URL is not echoed: it may hold a password
        scheme = url.split("://", 1)[0] if "://" in url else "malformed"
        raise PlatformStoreError(
            f"cannot open a {scheme!r} database URL ({exc}); PostgreSQL needs "
            "the psycopg package and a URL of the form postgresql+psycopg://user@host/db",
            code="bad_database_url",
        ) from exc
    event.listen(engine, "handle_error", _on_db_error)
    return engine


def _calendar_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def new_claim_id() -> str:
    return new_ulid()


def _no_nul(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; free text is stored with U+FFFD instead."""
    return text.replace("\x00", "\ufffd") if text else text


def _dataset_doc(row: DatasetRow) -> dict[str, Any]:
    """A stored dataset version as the spec's DatasetDocument."""
    return {
        "kind": row.kind,
        "centre_id": row.centre_id,
        "version": row.version,
        "etag": row.etag,
        "issued_at": row.issued_at,
        "data": json.loads(row.data),
    }


def _centre_names(s: Session, centre_id: str | None = None) -> dict[str, str]:
    """Centre id -> name, from the published ``centre_info`` datasets (one
    centre's when ``centre_id`` is given)."""
    q = select(DatasetRow).where(DatasetRow.kind == "centre_info")
    if centre_id is not None:
        q = q.where(DatasetRow.centre_id == centre_id)
    return {row.centre_id: str(json.loads(row.data)["name"]) for row in s.scalars(q)}


def _put_dataset(
    s: Session, centre_id: str, kind: str, data: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], bool]:
    """Publish a dataset version in ``s`` (see :meth:`PlatformStore.put_dataset`);
    the document and whether it is a new version."""
    row = s.get(DatasetRow, (centre_id, kind))
    digest = hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()[:16]
    if row is not None and row.etag.endswith(f"-{digest}"):
        held = _dataset_doc(row)
        if canonical_json(held["data"]) == canonical_json(data):
            return held, False
    version = (row.version + 1) if row else 1
    doc = {
        "kind": kind,
        "centre_id": centre_id if _CODE.fullmatch(centre_id) else "district",
        "version": version,
        "etag": f"{kind}-v{version}-{digest}",
        "issued_at": rfc3339(now),
        "data": data,
    }
    schemas.validate("DatasetDocument", doc, f"dataset {kind}")
    doc["centre_id"] = centre_id
    if row is None:
        row = DatasetRow(centre_id=centre_id, kind=kind)
        s.add(row)
    row.version, row.etag, row.issued_at = version, str(doc["etag"]), str(doc["issued_at"])
    row.data = json.dumps(data, ensure_ascii=False)
    return doc, True


def _claim_doc(row: VisitClaimRow, record_id: str) -> dict[str, Any]:
    if row.record_id != record_id:
        raise SlotTaken(
            "this senior's subsidised meal of the slot is claimed by another meal",
            code="slot_claimed",
        )
    return {
        "claim_id": row.claim_id,
        "person_id": row.person_id,
        "day": row.day,
        "slot": row.slot,
        "record_id": row.record_id,
        "centre_id": row.centre_id,
        "claimed_at": row.claimed_at,
    }


@dataclass(slots=True)
class _Person:
    """A senior of the district while the district roster is made."""

    person_id: str
    home_centre_id: str
    resident_id: str
    categories: list[str]
    active: bool
    id_number_hmac: str | None
    cards: list[str]
    lookup: str | None
    residents: list[str]  # resident keys of every roster entry

    def entry(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "home_centre_id": self.home_centre_id,
            "categories": self.categories,
            "card_hmacs": self.cards[:10],
            "id_number_hmac": self.id_number_hmac,
            "lookup_hmac": self.lookup,
            "active": self.active,
        }

    def row(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "home_centre_id": self.home_centre_id,
            "resident_id": self.resident_id,
            "categories": json.dumps(self.categories, separators=(",", ":")),
            "active": 1 if self.active else 0,
        }

    def lookup_keys(self) -> list[tuple[str, str]]:
        out = [("card", c) for c in self.cards[:10]] + [("resident", r) for r in self.residents]
        if self.id_number_hmac:
            out.append(("id_number", self.id_number_hmac))
        if self.lookup:
            out.append(("lookup", self.lookup))
        return out


def _district_persons(
    pepper: bytes, person_key: bytes, rosters: list[tuple[str, dict[str, Any]]]
) -> list[_Person]:
    """The persons of the district roster (see :meth:`PlatformStore._remake_district_roster`)."""
    persons: dict[str, _Person] = {}
    for centre, data in rosters:  # sorted by centre id
        for r in data["residents"]:
            ident = r.get("id_number_hmac") or f"{centre}|{r['resident_id']}"
            pid = "P-" + hmac.new(person_key, ident.encode(), hashlib.sha256).hexdigest()[:24]
            cards = [card_hmac(pepper, c) for c in r["card_ids"]]
            look = (
                lookup_hmac(pepper, r["name"], r["phone_last4"]) if r.get("phone_last4") else None
            )
            have = persons.get(pid)
            if have is None or (r["active"] and not have.active):
                earlier = have
                have = persons[pid] = _Person(
                    pid,
                    centre,
                    r["resident_id"],
                    list(r["categories"]),
                    bool(r["active"]),
                    r.get("id_number_hmac"),
                    [],
                    None,
                    [],
                )
                if earlier is not None:
                    have.cards, have.residents, have.lookup = (
                        earlier.cards,
                        earlier.residents,
                        earlier.lookup,
                    )
            have.cards.extend(c for c in cards if c not in have.cards)
            have.lookup = have.lookup or look
            rkey = resident_key(centre, r["resident_id"])
            if rkey not in have.residents:  # a roster may list a resident twice
                have.residents.append(rkey)
    # a key two persons share names neither of them
    owners: dict[tuple[str, str], set[str]] = {}
    for person in persons.values():
        for key in person.lookup_keys():
            owners.setdefault(key, set()).add(person.person_id)
    shared = {k for k, who in owners.items() if len(who) > 1}
    for person in persons.values():
        person.cards = [c for c in person.cards if ("card", c) not in shared]
        if person.lookup and ("lookup", person.lookup) in shared:
            person.lookup = None
        person.residents = [x for x in person.residents if ("resident", x) not in shared]
    return [persons[k] for k in sorted(persons)]


def _money_problem(kind: str, p: dict[str, Any]) -> str | None:
    """Arithmetic invariants of one record the schema cannot express (value-free
    messages); a record failing them is rejected ``amount_mismatch``."""
    if kind == "wallet_topup":
        if p["wallet_after_fen"] != p["wallet_before_fen"] + p["amount_fen"]:
            return "$.payload.wallet_after_fen is not wallet_before_fen + amount_fen"
        return None
    if kind != "meal_transaction":
        return None
    for i, item in enumerate(p["items"]):
        if item["line_total_fen"] != item["quantity"] * item["unit_price_fen"]:
            return f"$.payload.items[{i}]: line_total_fen is not quantity * unit_price_fen"
    if p["list_total_fen"] != sum(i["line_total_fen"] for i in p["items"]):
        return "$.payload.list_total_fen is not the sum of the line totals"
    if p["subsidy_total_fen"] != sum(s["amount_fen"] for s in p["subsidy_lines"]):
        return "$.payload.subsidy_total_fen is not the sum of the subsidy lines"
    if p["amount_due_fen"] != p["list_total_fen"] - p["subsidy_total_fen"]:
        return "$.payload.amount_due_fen is not list_total_fen - subsidy_total_fen"
    if (
        p["payment_source"] == "wallet"
        and p["wallet_after_fen"] != p["wallet_before_fen"] - p["amount_due_fen"]
    ):
        return "$.payload.wallet_after_fen is not wallet_before_fen - amount_due_fen"
    return None


def _too_complex(payload: Any) -> str | None:
    """Why a payload is beyond the record limits (depth, members), or None; an
    explicit stack, no recursion."""
    members = 0
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_PAYLOAD_DEPTH:
                return f"$.payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
            values = item.values() if isinstance(item, dict) else item
            if isinstance(item, dict):
                members += len(item)
                if members > MAX_PAYLOAD_KEYS:
                    return f"$.payload has more than {MAX_PAYLOAD_KEYS} object members"
            stack.extend((v, depth + 1) for v in values)
    return None


def _stored_hashes(row: RecordRow) -> set[str]:
    """The hashes a stored record may carry: version 2 over its envelope, or
    version 1 (spec 1.0 terminals). The row does not say which version the device
    declared; the two are different functions of the same fields, so a row matches
    at most one of them."""
    found: set[str] = set()
    for version in (2, 1):
        env = row_envelope(row, row.device_id, row.stream)
        env["hash_version"] = version
        try:
            found.add(hash_of(env))
        except ValueError:
            continue
    return found


def _policy_amount(rule: dict[str, Any], eligible: int) -> int:
    """What a SubsidyRule grants on an eligible amount (the spec's arithmetic:
    raw = amount_fen or floor(eligible * basis_points / 10000); min(raw, cap,
    eligible - floor), never below 0)."""
    if eligible <= 0:
        return 0
    if rule["type"] == "fixed":
        raw = int(rule.get("amount_fen", 0))
    else:
        raw = eligible * int(rule.get("basis_points", 0)) // 10000
    value = min(raw, eligible)
    if rule.get("cap_fen") is not None:
        value = min(value, int(rule["cap_fen"]))
    return max(0, min(value, eligible - int(rule.get("floor_fen", 0))))


def _rule_slots(rule: dict[str, Any]) -> set[str]:
    if "slots" in rule:
        return {str(x) for x in rule["slots"]}
    slot = rule.get("slot", "*")
    return {"breakfast", "lunch", "dinner"} if slot == "*" else {str(slot)}


def _result(
    rec: dict[str, Any],
    result: str,
    *,
    reason: str | None = None,
    detail: str | None = None,
    stored_as: str | None = None,
    expected: int | None = None,
    quarantine_reason: str | None = None,
) -> dict[str, Any]:
    seq = rec.get("seq")
    rid = rec.get("record_id")
    out: dict[str, Any] = {
        "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0,
        "record_id": rid[:64] if isinstance(rid, str) else "",
        "result": result,
        "stored_as": stored_as,
        "reason": reason,
        "retryable": reason is not None and reason not in FINAL_REASONS,
        "detail": detail[:500] if detail else None,
        "expected_seq": expected,
    }
    if quarantine_reason is not None:
        # Only when the platform quarantined the record: terminals of earlier
        # releases validate replies strictly and refuse a field they do not know,
        # so a reply carries it only when it has something to say.
        out["quarantine_reason"] = quarantine_reason
    return out


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


class _BatchContext:
    """Per-batch lookups done once (existing seqs and record ids), then each record
    checked in memory; accepted rows are inserted together at the end."""

    def __init__(
        self,
        s: Session,
        device: Device,
        stream: str,
        head: StreamRow,
        records: Sequence[Any],
        stamp: str,
    ) -> None:
        self.device, self.stream, self.head, self.stamp = device, stream, head, stamp
        self.rows: list[dict[str, Any]] = []
        # Only values that could match a stored row are looked up: stored seqs are
        # >= 1 and stored record ids are ULIDs (26 ASCII letters and digits). Anything
        # else in a malformed record must not reach the query (on PostgreSQL an
        # out-of-range integer or a NUL character fails the whole statement).
        seqs = [
            r["seq"]
            for r in records
            if isinstance(r, dict)
            and isinstance(r.get("seq"), int)
            and not isinstance(r.get("seq"), bool)
        ]
        rids = [
            r["record_id"]
            for r in records
            if isinstance(r, dict)
            and isinstance(r.get("record_id"), str)
            and len(r["record_id"]) == 26
            and r["record_id"].isascii()
            and r["record_id"].isalnum()
        ]
        self.s = s
        self.by_seq: dict[int, tuple[str, str, str, str | None]] = {}
        old = [q for q in seqs if 1 <= q < head.next_seq]
        if old:
            for seq, rid, digest, stored_as, why in s.execute(
                select(
                    RecordRow.seq,
                    RecordRow.record_id,
                    RecordRow.hash,
                    RecordRow.stored_as,
                    RecordRow.quarantine_reason,
                ).where(
                    RecordRow.device_id == device.device_id,
                    RecordRow.stream == stream,
                    RecordRow.seq.in_(old),
                )
            ):
                self.by_seq[seq] = (rid, digest, stored_as, why)
        self.rid_seq: dict[str, int] = {}
        if rids:
            for rid, seq in s.execute(
                select(RecordRow.record_id, RecordRow.seq).where(
                    RecordRow.device_id == device.device_id, RecordRow.record_id.in_(rids)
                )
            ):
                self.rid_seq[rid] = seq
        policy = s.get(DatasetRow, (device.centre_id, "subsidy_policy"))
        self.policy: dict[str, Any] | None = json.loads(policy.data) if policy else None
        # Ledger rows read or made in this batch (new ones are flushed at commit),
        # fetched for the whole batch in two queries rather than one per record.
        self.wallets: dict[str, WalletRow | None] = {}
        self.claims: dict[tuple[str, str, str], VisitClaimRow | None] = {}
        self.resident_people: dict[str, str | None] = {}
        self.meals: dict[str, MealLedgerRow | None] = {}
        self._prefetch_ledger(records, rids)
        self._prefetch_claims(records)

    def _prefetch_ledger(self, records: Sequence[Any], rids: list[str]) -> None:
        centre = self.device.centre_id
        residents: set[str] = set()
        meal_ids = set(rids)
        for r in records:
            p = r.get("payload") if isinstance(r, dict) else None
            if not isinstance(p, dict):
                continue
            who, orig = p.get("resident_id"), p.get("original_record_id")
            if isinstance(who, str) and 0 < len(who) <= 64 and "\x00" not in who:
                residents.add(who)
            if isinstance(orig, str) and len(orig) == 26 and orig.isascii() and orig.isalnum():
                meal_ids.add(orig)
        for chunk in _chunks(sorted(residents)):
            self.wallets.update(dict.fromkeys(chunk))
            for w in self.s.scalars(
                select(WalletRow).where(
                    WalletRow.centre_id == centre, WalletRow.resident_id.in_(chunk)
                )
            ):
                self.wallets[w.resident_id] = w
        for chunk in _chunks(sorted(meal_ids)):
            self.meals.update(dict.fromkeys(chunk))
            for m in self.s.scalars(
                select(MealLedgerRow).where(
                    MealLedgerRow.centre_id == centre, MealLedgerRow.record_id.in_(chunk)
                )
            ):
                self.meals[m.record_id] = m

    def _prefetch_claims(self, records: Sequence[Any]) -> None:
        """The district claims the batch's subsidised meals may meet, and the
        persons of its own seniors, in a few queries rather than two per meal."""
        wanted: dict[str, set[tuple[str, str]]] = {}  # person -> (day, slot)
        own: dict[str, list[tuple[str, str]]] = {}  # resident key -> (day, slot)
        for r in records:
            p = r.get("payload") if isinstance(r, dict) else None
            if not isinstance(p, dict) or r.get("kind") != "meal_transaction":
                continue
            day, slot, visit = p.get("meal_date"), p.get("slot"), p.get("visit")
            if not (
                isinstance(day, str) and len(day) == 10 and isinstance(slot, str) and day.isascii()
            ):
                continue
            if isinstance(visit, dict):
                who = visit.get("person_id")
                if isinstance(who, str) and _CODE.fullmatch(who):
                    wanted.setdefault(who, set()).add((day, slot[:12]))
            elif isinstance(p.get("resident_id"), str) and "\x00" not in p["resident_id"]:
                key = resident_key(self.device.centre_id, p["resident_id"])
                own.setdefault(key, []).append((day, slot[:12]))
        for chunk in _chunks(sorted(own)):
            self.resident_people.update(dict.fromkeys(chunk))
            for k in self.s.scalars(
                select(VisitKeyRow).where(
                    VisitKeyRow.key_type == "resident", VisitKeyRow.key.in_(chunk)
                )
            ):
                self.resident_people[k.key] = k.person_id
                wanted.setdefault(k.person_id, set()).update(own[k.key])
        days = sorted({d for pairs in wanted.values() for d, _ in pairs})
        for chunk in _chunks(sorted(wanted)):
            for person in chunk:
                for day, slot in wanted[person]:
                    self.claims[(person, day, slot)] = None
            for c in self.s.scalars(
                select(VisitClaimRow).where(
                    VisitClaimRow.person_id.in_(chunk), VisitClaimRow.day.in_(days)
                )
            ):
                self.claims[(c.person_id, c.day, c.slot)] = c

    def one(self, rec: Any) -> dict[str, Any]:
        device, head = self.device, self.head
        if isinstance(rec, dict):
            too_complex = _too_complex(rec.get("payload"))
            if too_complex:
                return _result(rec, "rejected", reason="payload_too_complex", detail=too_complex)
        if not isinstance(rec, dict) or not schemas.is_valid("RecordEnvelope", rec):
            rec_d = rec if isinstance(rec, dict) else {}
            found = schemas.problems("RecordEnvelope", rec)
            detail = "; ".join(found[:3])
            floats = [p for p in found if "must be a JSON integer" in p]
            if floats:
                return _result(
                    rec_d, "rejected", reason="not_integer", detail="; ".join(floats[:3])
                )
            return _result(rec_d, "rejected", reason="schema_invalid", detail=detail)
        if (
            rec["device_id"] != device.device_id
            or rec["centre_id"] != device.centre_id
            or rec["stream"] != self.stream
        ):
            return _result(
                rec,
                "rejected",
                reason="envelope_mismatch",
                detail="device_id, centre_id or stream differ from the batch",
            )
        seq: int = rec["seq"]
        if seq < head.next_seq:
            have = self.by_seq.get(seq)
            if have is not None and have[0] == rec["record_id"] and have[1] == rec["hash"]:
                return _result(rec, "duplicate", stored_as=have[2], quarantine_reason=have[3])
            return _result(
                rec,
                "rejected",
                reason="seq_conflict",
                detail=f"seq {seq} already holds another record",
            )
        other = self.rid_seq.get(rec["record_id"])
        if other is not None:
            return _result(
                rec,
                "rejected",
                reason="seq_conflict",
                detail=f"record_id already stored at seq {other} with other content",
            )
        if seq > head.next_seq:
            return _result(
                rec,
                "rejected",
                reason="seq_gap",
                expected=head.next_seq,
                detail=f"expected seq {head.next_seq}",
            )
        try:
            digest: str | None = hash_of(rec)
        except ValueError:
            digest = None
        if digest != rec["hash"]:
            return _result(
                rec,
                "rejected",
                reason="hash_mismatch",
                detail="the recomputed hash differs from the record's hash",
            )
        if rec["prev_hash"] != head.head_hash:
            return _result(
                rec,
                "rejected",
                reason="chain_broken",
                detail="prev_hash is not the hash of the previous record",
            )
        sent = rec.get("quarantine")
        quarantine: tuple[str, str | None] | None = None
        if sent is not None:
            quarantine = (str(sent["reason"]), sent.get("detail"))
        else:
            problem = _money_problem(rec["kind"], rec["payload"])
            if problem:
                return _result(rec, "rejected", reason="amount_mismatch", detail=problem)
            held = self._visit_conflict(rec)
            if held is None:
                quarantine = self._ledger(rec["kind"], rec["record_id"], rec["payload"])
            else:
                quarantine = (
                    CITYWIDE_DUPLICATE,
                    "$.payload.visit: the senior's subsidised meal of this slot is "
                    f"already claimed in the district by record {held.record_id}",
                )
                if rec["payload"]["payment_source"] == "wallet":
                    self._set_wallet(rec["payload"], rec["record_id"])
            if rec["kind"] == "meal_transaction":
                self._visit_after(rec, quarantine, held)
        return self._store(rec, quarantine)

    # -- city-wide meals: one subsidised meal per senior and slot in the district ----
    def _claim(self, person_id: str, day: str, slot: str) -> VisitClaimRow | None:
        key = (person_id, day, slot)
        if key not in self.claims:
            self.claims[key] = self.s.get(VisitClaimRow, key)
        return self.claims[key]

    def _visit_conflict(self, rec: dict[str, Any]) -> VisitClaimRow | None:
        """The claim of another meal that holds a subsidised visiting meal's slot."""
        p = rec["payload"]
        visit = p.get("visit") if rec["kind"] == "meal_transaction" else None
        if not isinstance(visit, dict) or p["subsidy_total_fen"] == 0:
            return None
        claim = self._claim(visit["person_id"], p["meal_date"], p["slot"])
        if claim is None or claim.record_id == rec["record_id"]:
            return None
        return claim

    def _add_claim(self, person_id: str, rec: dict[str, Any], source: str) -> None:
        p = rec["payload"]
        row = VisitClaimRow(
            person_id=person_id,
            day=p["meal_date"],
            slot=p["slot"],
            claim_id=new_claim_id(),
            record_id=rec["record_id"],
            centre_id=self.device.centre_id,
            device_id=self.device.device_id,
            source=source,
            claimed_at=self.stamp,
        )
        self.s.add(row)
        self.claims[(person_id, p["meal_date"], p["slot"])] = row

    def _visit_after(
        self,
        rec: dict[str, Any],
        quarantine: tuple[str, str | None] | None,
        held: VisitClaimRow | None,
    ) -> None:
        """Claim the slot for a subsidised meal stored as a record (a visiting meal
        made offline, or a centre's own senior's meal), and keep the visiting meal
        for settlement and review. A centre's own meal whose slot another meal
        holds is stored as before (devices of 1.0 and 1.1 cannot receive the new
        reason) and listed for review."""
        p, rid = rec["payload"], rec["record_id"]
        visit = p.get("visit")
        subsidised = p["subsidy_total_fen"] > 0
        if isinstance(visit, dict):
            person = str(visit["person_id"])
            free = quarantine is None and subsidised
            if free and self._claim(person, p["meal_date"], p["slot"]) is None:
                self._add_claim(person, rec, "upload")
            self._district_release(rec, visit)
            self._visit_meal(rec, person, str(visit["home_centre_id"]), quarantine, held)
            return
        if quarantine is not None or not subsidised:
            return
        rkey = resident_key(self.device.centre_id, p["resident_id"])
        if rkey not in self.resident_people:
            k = self.s.get(VisitKeyRow, ("resident", rkey))
            self.resident_people[rkey] = k.person_id if k is not None else None
        person_id = self.resident_people[rkey]
        if person_id is None:
            return
        claim = self._claim(person_id, p["meal_date"], p["slot"])
        if claim is None:
            self._add_claim(person_id, rec, "home")
        elif claim.record_id != rid:
            self._visit_meal(rec, person_id, self.device.centre_id, None, claim)

    def _visit_meal(
        self,
        rec: dict[str, Any],
        person: str,
        home_centre: str,
        quarantine: tuple[str, str | None] | None,
        held: VisitClaimRow | None,
    ) -> None:
        p = rec["payload"]
        self.s.add(
            VisitMealRow(
                centre_id=self.device.centre_id,
                record_id=rec["record_id"],
                device_id=self.device.device_id,
                home_centre_id=home_centre,
                person_id=person,
                day=p["meal_date"],
                slot=p["slot"],
                subsidy_fen=p["subsidy_total_fen"],
                stored_as="quarantined" if quarantine is not None else "record",
                held_by_record_id=held.record_id if held is not None else None,
                held_by_centre_id=held.centre_id if held is not None else None,
                received_at=self.stamp,
            )
        )

    def _store(
        self, rec: dict[str, Any], quarantine: tuple[str, str | None] | None
    ) -> dict[str, Any]:
        device, head, seq = self.device, self.head, rec["seq"]
        if quarantine is not None and quarantine[0] not in QUARANTINE_REASONS:
            raise AssertionError(f"quarantine reason {quarantine[0]!r} is not in the spec")
        stored_as = "quarantined" if quarantine is not None else "record"
        self.rows.append(
            {
                "device_id": device.device_id,
                "centre_id": device.centre_id,
                "stream": self.stream,
                "seq": seq,
                "record_id": rec["record_id"],
                "kind": rec["kind"],
                "created_at": rec["created_at"],
                "prev_hash": rec["prev_hash"],
                "hash": rec["hash"],
                "payload": canonical_json(rec["payload"]),
                "stored_as": stored_as,
                "quarantine_reason": quarantine[0] if quarantine else None,
                "quarantine_detail": _no_nul(quarantine[1]) if quarantine else None,
                "received_at": self.stamp,
            }
        )
        self.rid_seq[rec["record_id"]] = seq
        head.next_seq = seq + 1
        head.head_hash = rec["hash"]
        if quarantine is not None:
            head.quarantined += 1
        return _result(
            rec,
            "accepted",
            stored_as=stored_as,
            quarantine_reason=quarantine[0] if quarantine else None,
        )

    # -- the platform's own money ledger (per centre) ---------------------------------
    def _ledger(self, kind: str, rid: str, p: dict[str, Any]) -> tuple[str, str] | None:
        """Check a money record against what the platform already holds and update
        its ledger view; the quarantine (reason, detail) when it does not add up."""
        if kind == "meal_transaction":
            return self._meal(rid, p)
        if kind == "wallet_topup":
            why = self._wallet_continuity(p)
            self._set_wallet(p, rid)
            return why
        if kind in ("meal_void", "meal_refund"):
            why = self._against_meal(kind, p)
            self._set_wallet(p, rid)
            if why is None:
                self._district_refund(kind, rid, p)
            return why
        if kind == "district_wallet_topup":
            return self._district_topup(rid, p)
        return None

    # -- the district wallet (spec 1.3) ------------------------------------------------
    def _move(
        self,
        person: str,
        kind: str,
        ref: str,
        amount: int,
        meal: str | None,
        *,
        note: str | None = None,
        allow_negative: bool = False,
    ) -> None:
        _wallet_move(
            self.s,
            person,
            kind,
            ref,
            amount,
            centre_id=self.device.centre_id,
            device_id=self.device.device_id,
            at=self.stamp,
            meal_record_id=meal,
            note=note,
            allow_negative=allow_negative,
        )

    def _district_topup(self, rid: str, p: dict[str, Any]) -> tuple[str, str] | None:
        """Credit the senior's district wallet once (the record is stored once: a
        replay is answered ``duplicate`` before it gets here)."""
        key = resident_key(self.device.centre_id, p["resident_id"])
        k = self.s.get(VisitKeyRow, ("resident", key))
        if k is None or self.s.get(VisitPersonRow, k.person_id) is None:
            return (
                UNKNOWN_SENIOR,
                "$.payload.resident_id: the district roster knows no such senior at this "
                "centre; nothing was credited",
            )
        self._move(k.person_id, "topup", rid, int(p["amount_fen"]), None)
        return None

    def _district_refund(self, kind: str, rid: str, p: dict[str, Any]) -> None:
        """A void or refund of a meal paid from a district wallet credits it back,
        never more than is still debited for that meal."""
        meal = str(p["original_record_id"])
        held = _meal_wallet_left(self.s, meal)
        if held is None:
            return
        person, left = held
        asked = int(p["amount_returned_fen"] if kind == "meal_void" else p["amount_fen"])
        if min(asked, left) > 0:
            self._move(person, "refund", rid, min(asked, left), meal)

    def _district_release(self, rec: dict[str, Any], visit: dict[str, Any]) -> None:
        """A meal that arrived paid otherwise than from the district wallet (the
        terminal lost the claim's answer and took cash under the same record id)
        gives back what was debited for it."""
        held = _meal_wallet_left(self.s, rec["record_id"])
        if held is None:
            return
        person, left = held
        if visit.get("payment_source") != "home_wallet":
            if left > 0:
                self._move(person, "release", rec["record_id"], left, rec["record_id"])
            return
        debit = _debit_of(self.s, rec["record_id"])
        owed = 0 if debit is None else int(debit.amount_fen) - left
        if owed > 0:  # district staff released it, and the meal came paid from the wallet
            self._move(
                person,
                "redebit",
                rec["record_id"],
                owed,
                rec["record_id"],
                note="the released meal arrived paid from the district wallet",
                allow_negative=True,
            )

    def _wallet(self, resident: str) -> WalletRow | None:
        if resident not in self.wallets:
            self.wallets[resident] = self.s.get(WalletRow, (self.device.centre_id, resident))
        return self.wallets[resident]

    def _set_wallet(self, p: dict[str, Any], rid: str) -> None:
        # The next record continues from what this one left (quarantined or not), so
        # one discrepancy quarantines one record, not every later one.
        row = self._wallet(p["resident_id"])
        if row is None:
            row = WalletRow(centre_id=self.device.centre_id, resident_id=p["resident_id"])
            self.s.add(row)
            self.wallets[p["resident_id"]] = row
        row.balance_fen, row.record_id = p["wallet_after_fen"], rid

    def _wallet_continuity(self, p: dict[str, Any]) -> tuple[str, str] | None:
        row = self._wallet(p["resident_id"])
        if row is not None and row.balance_fen != p["wallet_before_fen"]:
            return (
                "wallet_discontinuity",
                "$.payload.wallet_before_fen is not the balance the platform last knew "
                f"for this wallet (record {row.record_id})",
            )
        return None

    def _meal(self, rid: str, p: dict[str, Any]) -> tuple[str, str] | None:
        why = self._subsidy_problem(p)
        if p["payment_source"] == "wallet":
            self._set_wallet(p, rid)
        if why is None and self._held_meal(rid) is None:
            meal = MealLedgerRow(
                centre_id=self.device.centre_id,
                record_id=rid,
                resident_id=p["resident_id"],
                paid_fen=p["amount_due_fen"],
                refunded_fen=0,
                voided=0,
            )
            self.s.add(meal)
            self.meals[rid] = meal
        return why

    def _subsidy_problem(self, p: dict[str, Any]) -> tuple[str, str] | None:
        policy = self.policy
        eligible = sum(i["line_total_fen"] for i in p["items"] if i["subsidisable"])
        for n, line in enumerate(p["subsidy_lines"]):
            where = f"$.payload.subsidy_lines[{n}]"
            if (
                policy is None
                or line["policy_id"] != policy.get("policy_id")
                or line["policy_version"] != policy.get("version")
            ):
                continue  # a policy version the platform does not hold: not checked
            rules = [r for r in policy.get("rules", []) if r.get("category") == line["category"]]
            if not rules:
                return ("subsidy_not_in_policy", f"{where}: the category has no rule in the policy")
            for_slot = [r for r in rules if p["slot"] in _rule_slots(r)] or rules
            if all(_policy_amount(r, eligible) != line["amount_fen"] for r in for_slot):
                return (
                    "subsidy_amount_mismatch",
                    f"{where}: amount_fen is not what the policy grants for this meal",
                )
        return None

    def _held_meal(self, rid: str) -> MealLedgerRow | None:
        if rid not in self.meals:
            self.meals[rid] = self.s.get(MealLedgerRow, (self.device.centre_id, rid))
        return self.meals[rid]

    def _against_meal(self, kind: str, p: dict[str, Any]) -> tuple[str, str] | None:
        meal = self._held_meal(p["original_record_id"])
        if meal is None or meal.resident_id != p["resident_id"]:
            return (
                "original_not_held",
                "$.payload.original_record_id is not a meal of this resident the platform holds",
            )
        if meal.voided:
            return ("already_voided", "$.payload.original_record_id was voided before")
        left = meal.paid_fen - meal.refunded_fen
        if kind == "meal_void":
            if p["amount_returned_fen"] > left:
                return (
                    "refund_exceeds_paid",
                    "$.payload.amount_returned_fen is more than was paid and not yet refunded",
                )
            meal.voided = 1
            return None
        if p["amount_fen"] > left:
            return (
                "refund_exceeds_paid",
                "$.payload.amount_fen is more than was paid and not yet refunded",
            )
        meal.refunded_fen += p["amount_fen"]
        return None


class PlatformStore:
    def __init__(self, db_url: str) -> None:
        self.url = db_url
        self.engine = _make_engine(db_url)
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        migrate(self.engine)  # the schema is the Alembic migrations' (sync/platform/migrations)

    def close(self) -> None:
        self.engine.dispose()

    # -- devices ---------------------------------------------------------------------
    def register_device(
        self, device_id: str, centre_id: str, public_key: str, now: datetime
    ) -> None:
        # Checked here so both databases refuse the same input (PostgreSQL enforces
        # the column lengths, SQLite would have stored anything).
        for label, value in (("device id", device_id), ("centre id", centre_id)):
            if not _CODE.fullmatch(value):
                raise PlatformStoreError(
                    f"{label} must be 1-64 letters, digits, '.', '_' or '-'",
                    code="invalid_registration",
                )
        if not public_key or len(public_key) > 100 or not public_key.isascii():
            raise PlatformStoreError(
                "the public key must be the spec's base64 text form",
                code="invalid_registration",
            )
        with self.sessions.begin() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                s.add(
                    DeviceRow(
                        device_id=device_id,
                        centre_id=centre_id,
                        public_key=public_key,
                        status="active",
                        registered_at=rfc3339(now),
                    )
                )
            else:
                row.centre_id, row.public_key, row.status = centre_id, public_key, "active"

    def revoke_device(self, device_id: str) -> None:
        with self.sessions.begin() as s:
            row = s.get(DeviceRow, device_id)
            if row is not None:
                row.status = "revoked"

    def device(self, device_id: str) -> Device | None:
        if "\x00" in device_id:  # cannot be registered; PostgreSQL refuses to compare it
            return None
        with self.sessions() as s:
            row = s.get(DeviceRow, device_id)
            return Device(row.device_id, row.centre_id, row.public_key, row.status) if row else None

    # -- nonces ----------------------------------------------------------------------
    def remember_nonce(
        self, device_id: str, nonce: str, created: int, now: int, window_s: int
    ) -> bool:
        """True if the nonce is new for this device (and is now remembered)."""
        nonce = nonce.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
        try:
            with self.sessions.begin() as s:
                s.add(NonceRow(device_id=device_id, nonce=nonce, created=created))
                s.flush()
                if created % 50 == 0:  # purge now and then
                    s.execute(delete(NonceRow).where(NonceRow.created < now - 3 * window_s))
        except IntegrityError:
            return False
        return True

    # -- records ---------------------------------------------------------------------
    def stream_head(self, device_id: str, stream: str) -> dict[str, Any]:
        with self.sessions() as s:
            row = s.get(StreamRow, (device_id, stream))
            return {
                "device_id": device_id,
                "stream": stream,
                "next_seq": row.next_seq if row else 1,
                "head_hash": row.head_hash if row else GENESIS,
                "quarantined": row.quarantined if row else 0,
            }

    def idempotent_answer(self, device_id: str, key: str, body_sha256: str) -> StoredAnswer | None:
        """The stored answer for a replayed key; raises for a reused key with another body."""
        with self.sessions() as s:
            row = s.get(IdempotencyRow, (device_id, key))
            if row is None:
                return None
            if row.body_sha256 != body_sha256:
                raise PlatformStoreError(
                    "this Idempotency-Key was used before with a different body",
                    code="idempotency_key_reused",
                )
            return StoredAnswer(row.status, json.loads(row.response), True)

    def remember_answer(
        self,
        device_id: str,
        key: str,
        body_sha256: str,
        status: int,
        body: dict[str, Any],
        now: datetime,
    ) -> StoredAnswer:
        """Store a final answer that was not a processed batch (a 4xx: the body was not
        JSON, not a ``BatchRequest``, for another device or centre) under the device's
        ``key``, so the same request gets the same answer again. If a request with the
        same key stored its answer first, that answer is returned (replayed); a reused
        key with another body raises ``idempotency_key_reused``."""
        try:
            with self.sessions.begin() as s:
                s.add(
                    IdempotencyRow(
                        device_id=device_id,
                        key=key,
                        body_sha256=body_sha256,
                        status=status,
                        response=json.dumps(body, ensure_ascii=False),
                        created_at=rfc3339(now),
                    )
                )
        except IntegrityError:
            first = self.idempotent_answer(device_id, key, body_sha256)
            if first is None:  # pragma: no cover - the row that collided was deleted
                raise
            return first
        return StoredAnswer(status, body, False)

    def process_batch(
        self,
        device: Device,
        stream: str,
        records: Sequence[Any],
        key: str,
        body_sha256: str,
        now: datetime,
    ) -> StoredAnswer:
        """Apply a batch in one transaction and store the answer under ``key``.

        On PostgreSQL two first batches of a stream can race to create its head
        row (SQLite serialises whole transactions with BEGIN IMMEDIATE, PostgreSQL
        only the rows it locks): the loser's INSERT fails on the primary key once
        the winner commits. If the winner used the same Idempotency-Key its answer
        is replayed; otherwise the batch is simply run again against the new head.
        """
        for attempt in range(3):
            try:
                return self._process_once(device, stream, records, key, body_sha256, now)
            except IntegrityError:
                answer = self.idempotent_answer(device.device_id, key, body_sha256)
                if answer is not None:
                    return answer
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _process_once(
        self,
        device: Device,
        stream: str,
        records: Sequence[Any],
        key: str,
        body_sha256: str,
        now: datetime,
    ) -> StoredAnswer:
        """One attempt in one transaction (see :meth:`process_batch`)."""
        with self.sessions.begin() as s:
            prior = s.get(IdempotencyRow, (device.device_id, key))
            if prior is not None:
                if prior.body_sha256 != body_sha256:
                    raise PlatformStoreError(
                        "this Idempotency-Key was used before with a different body",
                        code="idempotency_key_reused",
                    )
                return StoredAnswer(prior.status, json.loads(prior.response), True)
            head = s.get(StreamRow, (device.device_id, stream), with_for_update=True)
            if head is None:
                head = StreamRow(
                    device_id=device.device_id,
                    stream=stream,
                    next_seq=1,
                    head_hash=GENESIS,
                    quarantined=0,
                )
                s.add(head)
                s.flush()
            results = self._apply(s, device, stream, head, records, now)
            body = {
                "device_id": device.device_id,
                "stream": stream,
                "results": results,
                "next_seq": head.next_seq,
                "head_hash": head.head_hash,
            }
            schemas.validate("BatchResponse", body, "platform reply")
            s.add(
                IdempotencyRow(
                    device_id=device.device_id,
                    key=key,
                    body_sha256=body_sha256,
                    status=200,
                    response=json.dumps(body, ensure_ascii=False),
                    created_at=rfc3339(now),
                )
            )
            return StoredAnswer(200, body, False)

    def _apply(
        self,
        s: Session,
        device: Device,
        stream: str,
        head: StreamRow,
        records: Sequence[Any],
        now: datetime,
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        ctx = _BatchContext(s, device, stream, head, records, rfc3339(now))
        stopped = False
        for rec in records:
            if stopped:
                results.append(
                    _result(
                        rec if isinstance(rec, dict) else {},
                        "rejected",
                        reason="not_processed",
                        detail="an earlier record of this batch was not accepted",
                    )
                )
                continue
            res = ctx.one(rec)
            results.append(res)
            stopped = res["result"] == "rejected"
        if ctx.rows:
            s.execute(insert(RecordRow), ctx.rows)
        return results

    # -- reading back (tests, audits) ------------------------------------------------
    def records(self, device_id: str, stream: str = "kiosk") -> list[RecordRow]:
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(RecordRow)
                    .where(RecordRow.device_id == device_id, RecordRow.stream == stream)
                    .order_by(RecordRow.seq)
                )
            )

    def record_count(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(RecordRow)) or 0)

    def verify_chain(self, device_id: str, stream: str = "kiosk") -> str | None:
        """Recompute the whole stored chain; None when it is intact."""
        prev, expected = GENESIS, 1
        for row in self.records(device_id, stream):
            if row.seq != expected:
                return f"gap before seq {row.seq}"
            if row.prev_hash != prev:
                return f"seq {row.seq} does not link to its predecessor"
            if row.hash not in _stored_hashes(row):
                return f"seq {row.seq} hash mismatch"
            prev, expected = row.hash, expected + 1
        return None

    # -- datasets --------------------------------------------------------------------
    def put_dataset(
        self, centre_id: str, kind: str, data: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        """Publish a new version (validated against the spec first). The same data
        as the version held is no new version: version, ETag and issue time stay
        (a restart with the same seed must not make every terminal download
        everything again); the ETag ends with a hash of the canonical data.
        A new ``roster`` or ``centre_info`` remakes the district roster in the
        same transaction (it carries the centres' names for visitors' screens)."""
        if kind == "district_roster":
            raise PlatformStoreError(
                "the district roster is made from the centres' rosters, not published",
                code="invalid_dataset",
            )
        with self.sessions.begin() as s:
            doc, changed = _put_dataset(s, centre_id, kind, data, now)
            if changed and kind in ("roster", "centre_info"):
                self._remake_district_roster(s, now)
            return doc

    # -- city-wide meals -------------------------------------------------------------
    def _setting(self, s: Session, name: str) -> str | None:
        row = s.get(DistrictSettingRow, name)
        return None if row is None else row.value

    def _secret(self, s: Session, name: str) -> bytes:
        """A 32-byte district secret, made (random) the first time it is needed."""
        held = self._setting(s, name)
        if held is not None:
            return bytes.fromhex(held)
        value = secrets.token_bytes(32)
        s.add(DistrictSettingRow(name=name, value=value.hex()))
        s.flush()
        return value

    def _pepper(self, s: Session) -> bytes:
        """The district pepper; made the first time it is needed when district IT
        gave none (``platform serve --district-pepper``)."""
        return self._secret(s, "pepper")

    def _person_key(self, s: Session) -> bytes:
        """The platform's own secret for person ids (made once, never changed):
        a person keeps their id when the district changes its pepper, so the
        day's claims still name them."""
        return self._secret(s, "person_key")

    def ensure_pepper(self, now: datetime) -> bytes:
        """The district pepper (made now when the platform has none yet)."""
        with self.sessions.begin() as s:
            made = self._setting(s, "pepper") is None
            pepper = self._pepper(s)
            if made:
                self._remake_district_roster(s, now)
            return pepper

    def set_district(
        self,
        now: datetime,
        *,
        pepper: bytes | None = None,
        payment_source: str | None = None,
    ) -> None:
        """Set the district pepper and/or the visitors' payment policy; the district
        roster is remade when either changed."""
        if pepper is not None and len(pepper) < 16:
            raise PlatformStoreError(
                "the district pepper must be at least 16 bytes", code="bad_pepper"
            )
        if payment_source is not None and payment_source not in VISIT_PAYMENT_SOURCES:
            raise PlatformStoreError(
                f"the visit payment source must be one of {', '.join(VISIT_PAYMENT_SOURCES)}",
                code="bad_payment_source",
            )
        with self.sessions.begin() as s:
            changed = False
            for name, value in (
                ("pepper", pepper.hex() if pepper is not None else None),
                ("visit_payment_source", payment_source),
            ):
                if value is None:
                    continue
                row = s.get(DistrictSettingRow, name)
                if row is None:
                    s.add(DistrictSettingRow(name=name, value=value))
                    changed = True
                elif row.value != value:
                    row.value, changed = value, True
            if changed:
                s.flush()
                self._remake_district_roster(s, now)

    def district_pepper_id(self) -> str | None:
        with self.sessions() as s:
            held = self._setting(s, "pepper")
            return None if held is None else pepper_id(bytes.fromhex(held))

    def visit_payment_source(self) -> str:
        with self.sessions() as s:
            return self._setting(s, "visit_payment_source") or DEFAULT_VISIT_PAYMENT_SOURCE

    def _remake_district_roster(self, s: Session, now: datetime) -> None:
        """Make the district roster from every centre's published roster: one
        person per ID-number HMAC (else per centre and resident), home centre the
        first centre (by id) where they are active; keys two persons share are
        published for neither (ambiguous)."""
        rosters = list(
            s.scalars(
                select(DatasetRow).where(DatasetRow.kind == "roster").order_by(DatasetRow.centre_id)
            )
        )
        if not rosters:
            return
        pepper = self._pepper(s)
        persons = _district_persons(
            pepper, self._person_key(s), [(r.centre_id, json.loads(r.data)) for r in rosters]
        )
        s.execute(delete(VisitKeyRow))
        s.execute(delete(VisitPersonRow))
        entries: list[dict[str, Any]] = []
        key_rows: list[dict[str, Any]] = []
        person_rows: list[dict[str, Any]] = []
        for person in persons:
            entries.append(person.entry())
            person_rows.append(person.row())
            key_rows.extend(
                {"key_type": kt, "key": k, "person_id": person.person_id}
                for kt, k in person.lookup_keys()
            )
        for chunk in range(0, len(person_rows), 2000):
            s.execute(insert(VisitPersonRow), person_rows[chunk : chunk + 2000])
        for chunk in range(0, len(key_rows), 2000):
            s.execute(insert(VisitKeyRow), key_rows[chunk : chunk + 2000])
        data = {
            "pepper_id": pepper_id(pepper),
            "payment_source": self._setting(s, "visit_payment_source")
            or DEFAULT_VISIT_PAYMENT_SOURCE,
            "entries": entries,
            "centres": [
                {"centre_id": centre_id, "name": name}
                for centre_id, name in sorted(_centre_names(s).items())
            ],
        }
        _put_dataset(s, DISTRICT_CENTRE, "district_roster", data, now)

    def district_roster(self, centre_id: str) -> dict[str, Any] | None:
        """The district roster as ``centre_id``'s dataset document."""
        doc = self.dataset(DISTRICT_CENTRE, "district_roster")
        return None if doc is None else {**doc, "centre_id": centre_id}

    def visitor(
        self, key_type: str, key: str, day: str, slot: str, *, wallet: bool = False
    ) -> dict[str, Any] | None:
        """The spec's ``VisitorEligibility`` for a key, or None for an unknown key;
        with the district wallet's balance when ``wallet`` (spec 1.3)."""
        with self.sessions() as s:
            k = s.get(VisitKeyRow, (key_type, key))
            person = s.get(VisitPersonRow, k.person_id) if k is not None else None
            if person is None:
                return None
            claim = s.get(VisitClaimRow, (person.person_id, day, slot))
            return {
                "person_id": person.person_id,
                "home_centre_id": person.home_centre_id,
                "categories": json.loads(person.categories),
                "subsidised_in_district": claim is not None,
                **(
                    {"home_centre_name": name}
                    if (name := _centre_names(s, person.home_centre_id).get(person.home_centre_id))
                    else {}
                ),
                "payment_source": self._setting(s, "visit_payment_source")
                or DEFAULT_VISIT_PAYMENT_SOURCE,
                "active": bool(person.active),
                **({"wallet_balance_fen": self._balance(s, person.person_id)} if wallet else {}),
            }

    @staticmethod
    def _balance(s: Session, person_id: str) -> int:
        row = s.get(DistrictWalletRow, person_id)
        return 0 if row is None else int(row.balance_fen)

    def district_wallets_audit(self) -> dict[str, Any]:
        """Every district wallet's balance, and the debits whose meal record has
        not arrived (still debited): the ``platform wallets`` command."""
        with self.sessions() as s:
            wallets = [
                {"person_id": w.person_id, "balance_fen": int(w.balance_fen)}
                for w in s.scalars(select(DistrictWalletRow).order_by(DistrictWalletRow.person_id))
            ]
            debits = s.scalars(
                select(DistrictWalletEntryRow)
                .where(DistrictWalletEntryRow.kind == "debit")
                .order_by(DistrictWalletEntryRow.id)
            ).all()
            arrived = {
                r
                for chunk in _chunks(sorted({str(d.meal_record_id) for d in debits}))
                for r in s.scalars(
                    select(VisitMealRow.record_id).where(VisitMealRow.record_id.in_(chunk))
                )
            }
            paid = self._wallet_paid(s, [str(d.meal_record_id) for d in debits])
            pending = [
                {
                    "meal_record_id": d.meal_record_id,
                    "person_id": d.person_id,
                    "centre_id": d.centre_id,
                    "device_id": d.device_id,
                    "debit_fen": int(d.amount_fen),
                    "still_debited_fen": paid.get((d.centre_id, str(d.meal_record_id)), 0),
                    "at": d.at,
                }
                for d in debits
                if d.meal_record_id not in arrived
            ]
        return {"wallets": wallets, "debits_without_meal": pending}

    def release_district_debit(
        self,
        meal_record_id: str,
        staff_id: str,
        reason: str,
        now: datetime,
        *,
        min_age: timedelta = DEBIT_RELEASE_MIN_AGE,
    ) -> dict[str, Any]:
        """District staff give back a debit whose meal never arrived (the answer
        was lost and the senior walked away): refused while the meal may still be
        on its way (younger than ``min_age``), when it arrived, or when nothing is
        left debited. Should the meal arrive after all, paid from the wallet, it
        is debited again at upload (the senior did eat it)."""
        note = _hand_note(staff_id, reason)
        with self.sessions.begin() as s:
            debit = _debit_of(s, meal_record_id)
            if debit is None:
                raise PlatformStoreError(
                    f"no district wallet debit for meal {meal_record_id}", code="not_found"
                )
            if s.get(VisitMealRow, (debit.centre_id, meal_record_id)) is not None:
                raise PlatformStoreError(
                    f"meal {meal_record_id} has arrived: void it at the terminal instead",
                    code="meal_arrived",
                )
            if now - datetime.fromisoformat(debit.at) < min_age:
                raise PlatformStoreError(
                    f"the debit is younger than {min_age.days} days: its terminal may "
                    "still be offline with the meal",
                    code="too_recent",
                )
            held = _meal_wallet_left(s, meal_record_id)
            left = 0 if held is None else held[1]
            if left <= 0:
                raise PlatformStoreError(
                    f"nothing is left debited for meal {meal_record_id}", code="already_released"
                )
            e = _wallet_move(
                s,
                debit.person_id,
                "release",
                meal_record_id,
                left,
                centre_id=debit.centre_id,
                device_id=_HAND,
                at=rfc3339(now),
                meal_record_id=meal_record_id,
                note=note,
            )
            return _entry_doc(e)

    def reverse_district_topup(
        self, topup_record_id: str, staff_id: str, reason: str, now: datetime
    ) -> dict[str, Any]:
        """District staff take back a mistaken top-up (the home centre hands the
        cash back): the whole amount, once, and only while the wallet holds it."""
        note = _hand_note(staff_id, reason)
        with self.sessions.begin() as s:
            topup = s.scalars(
                select(DistrictWalletEntryRow).where(
                    DistrictWalletEntryRow.kind == "topup",
                    DistrictWalletEntryRow.ref_id == topup_record_id,
                )
            ).first()
            if topup is None:
                raise PlatformStoreError(
                    f"no district wallet top-up {topup_record_id}", code="not_found"
                )
            done = s.scalars(
                select(DistrictWalletEntryRow).where(
                    DistrictWalletEntryRow.kind == "reversal",
                    DistrictWalletEntryRow.ref_id == topup_record_id,
                )
            ).first()
            if done is not None:
                raise PlatformStoreError(
                    f"top-up {topup_record_id} was already reversed", code="already_reversed"
                )
            e = _wallet_move(
                s,
                topup.person_id,
                "reversal",
                topup_record_id,
                int(topup.amount_fen),
                centre_id=topup.centre_id,
                device_id=_HAND,
                at=rfc3339(now),
                note=note,
            )
            return _entry_doc(e)

    def district_wallet(self, person_id: str) -> tuple[int, list[DistrictWalletEntryRow]]:
        """A senior's district wallet: the balance and its entries (audits, tests)."""
        with self.sessions() as s:
            entries = s.scalars(
                select(DistrictWalletEntryRow)
                .where(DistrictWalletEntryRow.person_id == person_id)
                .order_by(DistrictWalletEntryRow.id)
            ).all()
            return self._balance(s, person_id), list(entries)

    def claim_slot(
        self,
        device: Device,
        person_id: str,
        day: str,
        slot: str,
        record_id: str,
        now: datetime,
        *,
        wallet_debit_fen: int | None = None,
        subsidised: bool = True,
    ) -> dict[str, Any]:
        """Claim (person, day, slot) for ``record_id`` in one transaction: the
        spec's ``VisitClaim``. The same record again gets its claim; another
        record raises :class:`SlotTaken`; an unknown person raises
        ``PlatformStoreError`` (``not_found``). Atomic on both databases: the
        primary key refuses the second insert (SQLite serialises the writers,
        PostgreSQL makes the second wait for the first and then fail).

        With ``wallet_debit_fen`` (spec 1.3) the senior's district wallet is
        debited in the same transaction (:class:`InsufficientBalance`, and
        nothing claimed, when it holds less); ``subsidised=False`` debits without
        claiming the slot. The same ``record_id`` again gets the same debit."""
        for _ in range(3):
            try:
                with self.sessions.begin() as s:
                    if s.get(VisitPersonRow, person_id) is None:
                        raise PlatformStoreError("no such person in the district", code="not_found")
                    if not subsidised:
                        meal = (person_id, day, slot, record_id)
                        return self._debit_only(s, device, meal, now, wallet_debit_fen)
                    row = s.get(VisitClaimRow, (person_id, day, slot))
                    if row is None:
                        row = VisitClaimRow(
                            person_id=person_id,
                            day=day,
                            slot=slot,
                            claim_id=new_claim_id(),
                            record_id=record_id,
                            centre_id=device.centre_id,
                            device_id=device.device_id,
                            source="online",
                            claimed_at=rfc3339(now),
                        )
                        s.add(row)
                        s.flush()
                    doc = _claim_doc(row, record_id)
                    if wallet_debit_fen is not None:
                        doc["wallet"] = self._debit(
                            s, device, person_id, record_id, row.claim_id, wallet_debit_fen, now
                        )
                    return doc
            except IntegrityError:
                continue  # another claim (or this record's debit) won the race: read it
        raise PlatformUnavailable("the claim could not be settled; retry")  # pragma: no cover

    def _debit(
        self,
        s: Session,
        device: Device,
        person_id: str,
        record_id: str,
        claim_id: str,
        amount: int,
        now: datetime,
    ) -> dict[str, int]:
        """Debit the district wallet for meal ``record_id`` once (a retry gets the
        debit it already made); the spec's ``VisitClaim.wallet``."""
        entry = _debit_of(s, record_id)
        if entry is None:
            entry = _wallet_move(
                s,
                person_id,
                "debit",
                record_id,
                amount,
                centre_id=device.centre_id,
                device_id=device.device_id,
                at=rfc3339(now),
                meal_record_id=record_id,
                claim_id=claim_id,
            )
        if entry.person_id != person_id or int(entry.amount_fen) != amount:
            raise SlotTaken(
                "this meal's record id was debited before for another senior or amount",
                code="slot_claimed",
            )
        return {
            "debit_fen": int(entry.amount_fen),
            "balance_before_fen": int(entry.balance_before_fen),
            "balance_after_fen": int(entry.balance_after_fen),
        }

    def _debit_only(
        self,
        s: Session,
        device: Device,
        meal: tuple[str, str, str, str],
        now: datetime,
        amount: int | None,
    ) -> dict[str, Any]:
        """A meal without subsidy paid from the district wallet: the debit alone,
        under a claim id of its own (no slot is claimed). ``meal`` is (person,
        day, slot, record id)."""
        person_id, day, slot, record_id = meal
        if amount is None:
            raise PlatformStoreError(
                "subsidised: false needs wallet_debit_fen", code="schema_invalid"
            )
        held = _debit_of(s, record_id)
        claim_id = held.claim_id if held is not None and held.claim_id else new_claim_id()
        wallet = self._debit(s, device, person_id, record_id, claim_id, amount, now)
        return {
            "claim_id": claim_id,
            "person_id": person_id,
            "day": day,
            "slot": slot,
            "record_id": record_id,
            "centre_id": device.centre_id,
            "claimed_at": held.at if held is not None else rfc3339(now),
            "wallet": wallet,
        }

    def visit_meals(self, period_from: date, period_to: date) -> list[VisitMealFacts]:
        """Visiting meals stored as records with a meal day in the period."""
        with self.sessions() as s:
            rows = s.execute(
                select(VisitMealRow, MealLedgerRow.voided)
                .outerjoin(
                    MealLedgerRow,
                    (MealLedgerRow.centre_id == VisitMealRow.centre_id)
                    & (MealLedgerRow.record_id == VisitMealRow.record_id),
                )
                .where(
                    VisitMealRow.day >= period_from.isoformat(),
                    VisitMealRow.day <= period_to.isoformat(),
                    VisitMealRow.stored_as == "record",
                    VisitMealRow.home_centre_id != VisitMealRow.centre_id,
                )
                .order_by(VisitMealRow.day, VisitMealRow.record_id)
            ).all()
            paid = self._wallet_paid(s, [m.record_id for m, _ in rows])
        return [
            VisitMealFacts(
                record_id=m.record_id,
                day=day,
                slot=m.slot,
                visited_centre_id=m.centre_id,
                home_centre_id=m.home_centre_id,
                subsidy_fen=int(m.subsidy_fen),
                voided=bool(voided),
                wallet_fen=paid.get((m.centre_id, m.record_id), 0),
            )
            for m, voided in rows
            # a day the spec's pattern lets through but no calendar has (2026-02-31)
            if (day := _calendar_day(m.day)) is not None
        ]

    @staticmethod
    def _wallet_paid(s: Session, record_ids: list[str]) -> dict[tuple[str, str], int]:
        """(visited centre, meal record) -> what is still paid from a district
        wallet for it (the debit less refunds and releases)."""
        centre: dict[str, str] = {}
        entries: dict[str, list[DistrictWalletEntryRow]] = {}
        for chunk in _chunks(sorted(set(record_ids))):
            for e in s.scalars(
                select(DistrictWalletEntryRow).where(
                    DistrictWalletEntryRow.meal_record_id.in_(chunk)
                )
            ):
                meal = str(e.meal_record_id)
                entries.setdefault(meal, []).append(e)
                if e.kind == "debit":
                    centre[meal] = e.centre_id
        return {(c, m): max(0, _still_paid(entries[m])) for m, c in centre.items()}

    def visit_reviews(
        self, centre_id: str, period_from: date, period_to: date
    ) -> list[dict[str, Any]]:
        """The spec's ``VisitReview`` items that concern ``centre_id``."""
        with self.sessions() as s:
            rows = s.scalars(
                select(VisitMealRow)
                .where(
                    VisitMealRow.day >= period_from.isoformat(),
                    VisitMealRow.day <= period_to.isoformat(),
                    VisitMealRow.held_by_record_id.is_not(None),
                    (VisitMealRow.centre_id == centre_id)
                    | (VisitMealRow.home_centre_id == centre_id)
                    | (VisitMealRow.held_by_centre_id == centre_id),
                )
                .order_by(VisitMealRow.day, VisitMealRow.record_id)
            ).all()
        return [
            {
                "record_id": r.record_id,
                "visited_centre_id": r.centre_id,
                "home_centre_id": r.home_centre_id,
                "person_id": r.person_id,
                "day": r.day,
                "slot": r.slot,
                "subsidy_fen": int(r.subsidy_fen),
                "held_by_record_id": r.held_by_record_id,
                "held_by_centre_id": r.held_by_centre_id,
                "received_at": r.received_at,
            }
            for r in rows
        ]

    def dataset(self, centre_id: str, kind: str) -> dict[str, Any] | None:
        with self.sessions() as s:
            row = s.get(DatasetRow, (centre_id, kind))
            return None if row is None else _dataset_doc(row)

    def add_consent_change(self, centre_id: str, change: dict[str, Any]) -> None:
        schemas.validate("ConsentChange", change, "consent change")
        with self.sessions.begin() as s:
            s.add(
                ConsentChangeRow(centre_id=centre_id, change=json.dumps(change, ensure_ascii=False))
            )

    def consent_page(self, centre_id: str, cursor: str | None, limit: int = 500) -> dict[str, Any]:
        after = int(cursor) if cursor and cursor.isdecimal() else 0
        # Ids are 32-bit on PostgreSQL (and never that high on SQLite): a larger
        # cursor means "nothing after", and must not reach the query as is.
        bound = min(after, INT32_MAX)
        with self.sessions() as s:
            rows = list(
                s.scalars(
                    select(ConsentChangeRow)
                    .where(ConsentChangeRow.centre_id == centre_id, ConsentChangeRow.id > bound)
                    .order_by(ConsentChangeRow.id)
                    .limit(limit + 1)
                )
            )
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1].id if rows else after
        return {
            "kind": "consent_changes",
            "centre_id": centre_id,
            "cursor": cursor,
            "next_cursor": str(last),
            "has_more": more,
            "changes": [json.loads(r.change) for r in rows],
        }

    def seed(self, doc: dict[str, Any], now: datetime) -> None:
        """Load devices, datasets and consent changes from a seed document:
        ``{"devices": [{device_id, centre_id, public_key}], "datasets":
        [{centre_id, kind, data}], "consent_changes": [{centre_id, change}]}``."""
        for d in doc.get("devices", []):
            self.register_device(d["device_id"], d["centre_id"], d["public_key"], now)
        for ds in doc.get("datasets", []):
            self.put_dataset(ds["centre_id"], ds["kind"], ds["data"], now)
        held: dict[str, set[str]] = {}
        for c in doc.get("consent_changes", []):
            # a change already held (by change_id) is not added again on a restart
            ids = held.get(c["centre_id"])
            if ids is None:
                ids = held[c["centre_id"]] = self._consent_change_ids(c["centre_id"])
            if c["change"].get("change_id") in ids:
                continue
            self.add_consent_change(c["centre_id"], c["change"])
            ids.add(c["change"].get("change_id"))

    def _consent_change_ids(self, centre_id: str) -> set[str]:
        with self.sessions() as s:
            rows = s.scalars(
                select(ConsentChangeRow.change).where(ConsentChangeRow.centre_id == centre_id)
            )
            return {str(json.loads(text).get("change_id")) for text in rows}
