"""The reference platform's database (SQLAlchemy; SQLite by default, PostgreSQL by URL).

It stores what it accepts and nothing else: devices and their public keys, one
row per (device, stream) with the chain head, every accepted record (as sent,
with ``stored_as`` = ``record`` or ``quarantined``), Idempotency-Key answers,
seen nonces, and the datasets served to terminals.

:meth:`PlatformStore.process_batch` is the heart of the spec: per-device
sequence continuity, recomputed hashes, the chain link, per-record idempotency
by ``record_id`` and payload validation, all in one transaction together with
the stored answer for the request's Idempotency-Key.

PostgreSQL URLs take the psycopg 3 driver (``postgresql+psycopg://user@host/db``);
tests/sync/test_platform_postgres.py runs the real server against a real
PostgreSQL. Where the two databases differ (32-bit INTEGER, no NUL in text,
row locks instead of a database-wide write lock, a server that can restart) the
store keeps the answers the same; each place says why.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
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
from terminal.core.clock import rfc3339
from terminal.core.errors import TerminalError
from terminal.db.base import NAMING
from terminal.db.engine import make_engine
from terminal.db.outbox import GENESIS, canonical_json, record_hash

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
    }
)


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
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
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


def _money_problem(kind: str, p: dict[str, Any]) -> str | None:
    """Arithmetic invariants the schema cannot express (value-free messages)."""
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


def _result(
    rec: dict[str, Any],
    result: str,
    *,
    reason: str | None = None,
    detail: str | None = None,
    stored_as: str | None = None,
    expected: int | None = None,
) -> dict[str, Any]:
    seq = rec.get("seq")
    rid = rec.get("record_id")
    return {
        "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0,
        "record_id": rid[:64] if isinstance(rid, str) else "",
        "result": result,
        "stored_as": stored_as,
        "reason": reason,
        "retryable": reason is not None and reason not in FINAL_REASONS,
        "detail": detail[:500] if detail else None,
        "expected_seq": expected,
    }


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
        self.by_seq: dict[int, tuple[str, str, str]] = {}
        old = [q for q in seqs if 1 <= q < head.next_seq]
        if old:
            for seq, rid, digest, stored_as in s.execute(
                select(
                    RecordRow.seq, RecordRow.record_id, RecordRow.hash, RecordRow.stored_as
                ).where(
                    RecordRow.device_id == device.device_id,
                    RecordRow.stream == stream,
                    RecordRow.seq.in_(old),
                )
            ):
                self.by_seq[seq] = (rid, digest, stored_as)
        self.rid_seq: dict[str, int] = {}
        if rids:
            for rid, seq in s.execute(
                select(RecordRow.record_id, RecordRow.seq).where(
                    RecordRow.device_id == device.device_id, RecordRow.record_id.in_(rids)
                )
            ):
                self.rid_seq[rid] = seq

    def one(self, rec: Any) -> dict[str, Any]:
        device, head = self.device, self.head
        if not isinstance(rec, dict) or not schemas.is_valid("RecordEnvelope", rec):
            rec_d = rec if isinstance(rec, dict) else {}
            detail = "; ".join(schemas.problems("RecordEnvelope", rec)[:3])
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
                return _result(rec, "duplicate", stored_as=have[2])
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
                reason="idempotency_key_reused",
                detail=f"record_id already stored at seq {other}",
            )
        if seq > head.next_seq:
            return _result(
                rec,
                "rejected",
                reason="seq_gap",
                expected=head.next_seq,
                detail=f"expected seq {head.next_seq}",
            )
        digest = record_hash(
            device.device_id, seq, rec["prev_hash"], rec["kind"], rec["record_id"], rec["payload"]
        )
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
        quarantine = rec.get("quarantine")
        if quarantine is None:
            problem = _money_problem(rec["kind"], rec["payload"])
            if problem:
                return _result(rec, "rejected", reason="amount_mismatch", detail=problem)
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
                "quarantine_reason": quarantine["reason"] if quarantine else None,
                "quarantine_detail": _no_nul(quarantine.get("detail")) if quarantine else None,
                "received_at": self.stamp,
            }
        )
        self.rid_seq[rec["record_id"]] = seq
        head.next_seq = seq + 1
        head.head_hash = rec["hash"]
        if quarantine is not None:
            head.quarantined += 1
        return _result(rec, "accepted", stored_as=stored_as)


class PlatformStore:
    def __init__(self, db_url: str) -> None:
        self.url = db_url
        self.engine = _make_engine(db_url)
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        PlatformBase.metadata.create_all(self.engine)

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
            if (
                record_hash(
                    device_id,
                    row.seq,
                    row.prev_hash,
                    row.kind,
                    row.record_id,
                    json.loads(row.payload),
                )
                != row.hash
            ):
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
        everything again); the ETag ends with a hash of the canonical data."""
        with self.sessions.begin() as s:
            row = s.get(DatasetRow, (centre_id, kind))
            digest = hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()[:16]
            if row is not None and row.etag.endswith(f"-{digest}"):
                held = _dataset_doc(row)
                if canonical_json(held["data"]) == canonical_json(data):
                    return held
            version = (row.version + 1) if row else 1
            doc = {
                "kind": kind,
                "centre_id": centre_id,
                "version": version,
                "etag": f"{kind}-v{version}-{digest}",
                "issued_at": rfc3339(now),
                "data": data,
            }
            schemas.validate("DatasetDocument", doc, f"dataset {kind}")
            if row is None:
                row = DatasetRow(centre_id=centre_id, kind=kind)
                s.add(row)
            row.version, row.etag, row.issued_at = version, str(doc["etag"]), str(doc["issued_at"])
            row.data = json.dumps(data, ensure_ascii=False)
            return doc

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
