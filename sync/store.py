"""Storage for the sync agent: its own ``sync.db`` and a read-only view of ``terminal.db``.

One writer per database file (ARCHITECTURE.md, SQLite note):

* ``terminal.db`` is written only by the kiosk process. The agent opens it
  read-only (``mode=ro``, ``query_only``) to read pending outbox rows; it never
  updates their status column.
* ``sync.db`` is written only by the agent (or by ``sync now`` while holding the
  agent lock, see :mod:`sync.agent`). It holds the acknowledgement state per
  stream (acked high-water mark, attempts, next attempt time, blocked reason),
  results that are not a plain acceptance (duplicates, quarantines, rejections),
  dead letters with their reason, the agent's own record stream (heartbeats, OTA
  status; same outbox/chain tables as the kiosk's) and the pulled datasets, each
  one row holding a whole versioned document, replaced in one transaction.

The kiosk reads ``sync.db`` read-only through :func:`sync_status` and
:func:`latest_dataset`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from terminal.core.clock import rfc3339
from terminal.core.errors import StorageError
from terminal.db.base import NAMING
from terminal.db.crypto import FieldCipher
from terminal.db.engine import make_engine, make_sessionmaker, write_session
from terminal.db.outbox import GENESIS, Appended, Outbox
from terminal.db.tables import ChainHead, OutboxRow

SCHEMA_VERSION = 1


class SyncBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class MetaRow(SyncBase):
    __tablename__ = "sync_meta"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class StreamStateRow(SyncBase):
    __tablename__ = "sync_stream"
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    # Every record with seq <= acked_seq is settled at the platform (accepted,
    # duplicate or accepted as quarantined); acked_hash is that record's hash.
    acked_seq: Mapped[int] = mapped_column(Integer, default=0)
    acked_hash: Mapped[str] = mapped_column(String(64), default=GENESIS)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_success_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    blocked_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    blocked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)


class ResultRow(SyncBase):
    """Per-record results other than a plain first-time acceptance."""

    __tablename__ = "sync_result"
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[str] = mapped_column(String(26))
    result: Mapped[str] = mapped_column(String(12))
    stored_as: Mapped[str | None] = mapped_column(String(12), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[str] = mapped_column(String(40))


class DeadLetterRow(SyncBase):
    __tablename__ = "sync_dead_letter"
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[str] = mapped_column(String(26))
    kind: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    dead_at: Mapped[str] = mapped_column(String(40))
    # pending: the quarantined copy is not yet at the platform; accepted; refused.
    quarantine: Mapped[str] = mapped_column(String(12), default="pending")


class DatasetRow(SyncBase):
    __tablename__ = "sync_dataset"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    centre_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    etag: Mapped[str] = mapped_column(String(200))
    cursor: Mapped[str | None] = mapped_column(String(128), nullable=True)
    issued_at: Mapped[str] = mapped_column(String(40))
    fetched_at: Mapped[str] = mapped_column(String(40))
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    doc: Mapped[bytes] = mapped_column(LargeBinary)


class PullStateRow(SyncBase):
    __tablename__ = "sync_pull"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    last_checked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


# -- records to upload -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingRecord:
    seq: int
    record_id: str
    kind: str
    payload: str  # canonical JSON as stored
    created_at: str
    prev_hash: str
    hash: str


def sqlite_file(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def _on_ro_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA query_only=1")
    finally:
        cur.close()


def readonly_engine(url: str) -> Engine:
    """An engine that can only read ``url`` (SQLite ``mode=ro`` plus ``query_only``).
    Readers never block the kiosk's writer in WAL mode."""
    path = sqlite_file(url)
    if path is None:
        raise StorageError(f"read-only access needs a SQLite file URL, got {url!r}")
    engine = create_engine(
        f"sqlite:///file:{path}?mode=ro&uri=true",
        connect_args={"check_same_thread": False, "uri": True},
    )
    event.listen(engine, "connect", _on_ro_connect)
    return engine


_PENDING_COLS = (
    OutboxRow.seq,
    OutboxRow.record_id,
    OutboxRow.kind,
    OutboxRow.payload,
    OutboxRow.created_at,
    OutboxRow.prev_hash,
    OutboxRow.hash,
)


def _read_after(session: Session, after_seq: int, limit: int) -> list[PendingRecord]:
    rows = session.execute(
        select(*_PENDING_COLS).where(OutboxRow.seq > after_seq).order_by(OutboxRow.seq).limit(limit)
    ).all()
    return [PendingRecord(*r) for r in rows]


def _read_one(session: Session, seq: int) -> PendingRecord | None:
    row = session.execute(select(*_PENDING_COLS).where(OutboxRow.seq == seq)).first()
    return PendingRecord(*row) if row else None


def _head(session: Session) -> int:
    return int(session.scalar(select(func.max(OutboxRow.seq))) or 0)


class KioskOutboxReader:
    """Reads the kiosk's outbox from ``terminal.db`` without ever writing it."""

    stream = "kiosk"

    def __init__(self, terminal_db_url: str) -> None:
        self.url = terminal_db_url
        self._engine: Engine | None = None

    def _session(self) -> Session | None:
        path = sqlite_file(self.url)
        if path is not None and not path.exists():
            return None
        if self._engine is None:
            self._engine = readonly_engine(self.url)
        return Session(self._engine)

    def _run(self, fn: Any, default: Any) -> Any:
        session = self._session()
        if session is None:
            return default
        try:
            with session:
                return fn(session)
        except Exception as exc:  # sqlalchemy errors: table missing before first migration, ...
            if "no such table" in str(exc):
                return default
            raise StorageError(f"cannot read the terminal outbox: {type(exc).__name__}") from exc

    def read_after(self, after_seq: int, limit: int) -> list[PendingRecord]:
        result: list[PendingRecord] = self._run(lambda s: _read_after(s, after_seq, limit), [])
        return result

    def read_one(self, seq: int) -> PendingRecord | None:
        result: PendingRecord | None = self._run(lambda s: _read_one(s, seq), None)
        return result

    def head_seq(self) -> int:
        result: int = self._run(_head, 0)
        return result

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class AgentOutbox:
    """The agent's own record stream inside ``sync.db`` (same tables and hash chain
    as the kiosk outbox). Written only by the agent."""

    stream = "agent"

    def __init__(self, store: SyncStore, device_id: str) -> None:
        self._store = store
        self._outbox = Outbox(device_id)

    def append(
        self, kind: str, record_id: str, payload: dict[str, Any], created_at: datetime
    ) -> Appended:
        with write_session(self._store.sessions) as s:
            return self._outbox.append(s, kind, record_id, payload, created_at)

    def read_after(self, after_seq: int, limit: int) -> list[PendingRecord]:
        with self._store.sessions() as s:
            return _read_after(s, after_seq, limit)

    def read_one(self, seq: int) -> PendingRecord | None:
        with self._store.sessions() as s:
            return _read_one(s, seq)

    def head_seq(self) -> int:
        with self._store.sessions() as s:
            return _head(s)

    def close(self) -> None:
        return None


# -- the agent's store -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamState:
    stream: str
    acked_seq: int
    acked_hash: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    last_success_at: str | None
    blocked_reason: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stream: str
    seq: int
    record_id: str
    kind: str
    reason: str
    detail: str | None
    dead_at: str
    quarantine: str


@dataclass(frozen=True, slots=True)
class ResultEntry:
    seq: int
    record_id: str
    result: str
    stored_as: str | None
    reason: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class Dataset:
    kind: str
    centre_id: str
    version: int
    etag: str
    cursor: str | None
    issued_at: str
    fetched_at: str
    data: dict[str, Any]


def _state(row: StreamStateRow) -> StreamState:
    return StreamState(
        stream=row.stream,
        acked_seq=row.acked_seq,
        acked_hash=row.acked_hash,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        last_success_at=row.last_success_at,
        blocked_reason=row.blocked_reason,
    )


def _dead(row: DeadLetterRow) -> DeadLetter:
    return DeadLetter(
        stream=row.stream,
        seq=row.seq,
        record_id=row.record_id,
        kind=row.kind,
        reason=row.reason,
        detail=row.detail,
        dead_at=row.dead_at,
        quarantine=row.quarantine,
    )


class SyncStore:
    """``sync.db``: WAL + synchronous=FULL via :func:`terminal.db.engine.make_engine`,
    every write a ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, sync_db_url: str, cipher: FieldCipher | None = None) -> None:
        self.url = sync_db_url
        self.engine = make_engine(sync_db_url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.cipher = cipher
        SyncBase.metadata.create_all(self.engine)
        for table in (ChainHead.__table__, OutboxRow.__table__):
            table.create(self.engine, checkfirst=True)  # type: ignore[attr-defined]
        with write_session(self.sessions) as s:
            meta = s.get(MetaRow, "schema_version")
            if meta is None:
                s.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
            elif meta.value != str(SCHEMA_VERSION):
                raise StorageError(
                    f"sync.db has schema version {meta.value}, this software expects {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Session]:
        with write_session(self.sessions) as s:
            yield s

    # stream state ----------------------------------------------------------------------
    def _state_row(self, s: Session, stream: str) -> StreamStateRow:
        row = s.get(StreamStateRow, stream)
        if row is None:
            row = StreamStateRow(
                stream=stream, acked_seq=0, acked_hash=GENESIS, attempts=0, next_attempt_at=0.0
            )
            s.add(row)
            s.flush()
        return row

    def stream_state(self, stream: str) -> StreamState:
        with self.sessions() as s:
            row = s.get(StreamStateRow, stream)
            if row is None:
                return StreamState(stream, 0, GENESIS, 0, 0.0, None, None, None)
            return _state(row)

    def dead_letter_map(self, stream: str, after_seq: int) -> dict[int, DeadLetter]:
        with self.sessions() as s:
            rows = s.scalars(
                select(DeadLetterRow).where(
                    DeadLetterRow.stream == stream, DeadLetterRow.seq > after_seq
                )
            )
            return {r.seq: _dead(r) for r in rows}

    def dead_letters(self, stream: str | None = None) -> list[DeadLetter]:
        with self.sessions() as s:
            stmt = select(DeadLetterRow).order_by(DeadLetterRow.stream, DeadLetterRow.seq)
            if stream:
                stmt = stmt.where(DeadLetterRow.stream == stream)
            return [_dead(r) for r in s.scalars(stmt)]

    def results(self, stream: str) -> list[ResultEntry]:
        with self.sessions() as s:
            rows = s.scalars(
                select(ResultRow).where(ResultRow.stream == stream).order_by(ResultRow.seq)
            )
            return [
                ResultEntry(r.seq, r.record_id, r.result, r.stored_as, r.reason, r.detail)
                for r in rows
            ]

    def apply_batch_outcome(
        self,
        stream: str,
        acked_seq: int,
        acked_hash: str,
        results: Sequence[ResultEntry],
        new_dead: Sequence[DeadLetter],
        quarantine_updates: Sequence[tuple[int, str]],
        now: datetime,
        blocked_reason: str | None = None,
    ) -> None:
        """Record what one batch reply settled, in one transaction: the new high-water
        mark, notable per-record results, new dead letters and quarantine outcomes."""
        stamp = rfc3339(now)
        with write_session(self.sessions) as s:
            row = self._state_row(s, stream)
            if acked_seq < row.acked_seq:
                raise StorageError("the acknowledged high-water mark never moves backwards here")
            row.acked_seq = acked_seq
            row.acked_hash = acked_hash
            row.attempts = 0
            row.next_attempt_at = 0.0
            row.last_success_at = stamp
            row.last_error = None
            row.blocked_reason = blocked_reason
            row.blocked_at = stamp if blocked_reason else None
            if results:
                s.execute(
                    insert(ResultRow).prefix_with("OR REPLACE"),
                    [
                        {
                            "stream": stream,
                            "seq": r.seq,
                            "record_id": r.record_id,
                            "result": r.result,
                            "stored_as": r.stored_as,
                            "reason": r.reason,
                            "detail": r.detail,
                            "at": stamp,
                        }
                        for r in results
                    ],
                )
            for d in new_dead:
                if s.get(DeadLetterRow, (stream, d.seq)) is None:
                    s.add(
                        DeadLetterRow(
                            stream=stream,
                            seq=d.seq,
                            record_id=d.record_id,
                            kind=d.kind,
                            reason=d.reason,
                            detail=d.detail,
                            dead_at=d.dead_at,
                            quarantine="pending",
                        )
                    )
            s.flush()
            for seq, outcome in quarantine_updates:
                dl = s.get(DeadLetterRow, (stream, seq))
                if dl is not None:
                    dl.quarantine = outcome

    def add_dead_letter(self, d: DeadLetter) -> None:
        with write_session(self.sessions) as s:
            if s.get(DeadLetterRow, (d.stream, d.seq)) is None:
                s.add(
                    DeadLetterRow(
                        stream=d.stream,
                        seq=d.seq,
                        record_id=d.record_id,
                        kind=d.kind,
                        reason=d.reason,
                        detail=d.detail,
                        dead_at=d.dead_at,
                        quarantine="pending",
                    )
                )

    def rewind(
        self, stream: str, acked_seq: int, acked_hash: str, reason: str, now: datetime
    ) -> None:
        """Move the high-water mark (back when the platform lost records, forward when
        the platform proved it holds them); logged by the caller."""
        with write_session(self.sessions) as s:
            row = self._state_row(s, stream)
            row.acked_seq = acked_seq
            row.acked_hash = acked_hash
            row.last_error = reason
            row.last_error_at = rfc3339(now)

    def record_failure(
        self, stream: str, error: str, next_attempt_at: float, now: datetime, blocked: bool = False
    ) -> int:
        """Note a failed try; returns the consecutive failure count."""
        with write_session(self.sessions) as s:
            row = self._state_row(s, stream)
            row.attempts += 1
            row.next_attempt_at = next_attempt_at
            row.last_error = error[:500]
            row.last_error_at = rfc3339(now)
            if blocked:
                row.blocked_reason = error[:500]
                row.blocked_at = rfc3339(now)
            return row.attempts

    def clear_block(self, stream: str) -> None:
        with write_session(self.sessions) as s:
            row = self._state_row(s, stream)
            row.blocked_reason = None
            row.blocked_at = None
            row.next_attempt_at = 0.0

    # datasets --------------------------------------------------------------------------
    def _encode(self, kind: str, version: int, data: dict[str, Any]) -> tuple[bytes, bool]:
        raw = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
        if self.cipher is None:
            return raw, False
        return self.cipher.encrypt(raw, table="sync_dataset", record_id=kind, field="doc"), True

    def swap_dataset(self, ds: Dataset) -> None:
        """Replace the whole document of ``ds.kind`` in one transaction."""
        blob, enc = self._encode(ds.kind, ds.version, ds.data)
        with write_session(self.sessions) as s:
            row = s.get(DatasetRow, ds.kind)
            if row is None:
                row = DatasetRow(kind=ds.kind)
                s.add(row)
            row.centre_id = ds.centre_id
            row.version = ds.version
            row.etag = ds.etag
            row.cursor = ds.cursor
            row.issued_at = ds.issued_at
            row.fetched_at = ds.fetched_at
            row.encrypted = enc
            row.doc = blob
            pull = s.get(PullStateRow, ds.kind) or PullStateRow(kind=ds.kind)
            s.add(pull)
            pull.attempts = 0
            pull.next_attempt_at = 0.0
            pull.last_checked_at = ds.fetched_at
            pull.last_error = None

    def dataset(self, kind: str) -> Dataset | None:
        with self.sessions() as s:
            row = s.get(DatasetRow, kind)
            return _dataset(row, self.cipher) if row else None

    def dataset_etag(self, kind: str) -> str | None:
        with self.sessions() as s:
            row = s.get(DatasetRow, kind)
            return row.etag if row else None

    def pull_state(self, kind: str) -> tuple[int, float]:
        with self.sessions() as s:
            row = s.get(PullStateRow, kind)
            return (row.attempts, row.next_attempt_at) if row else (0, 0.0)

    def pull_checked(self, kind: str, now: datetime) -> None:
        with write_session(self.sessions) as s:
            row = s.get(PullStateRow, kind) or PullStateRow(kind=kind)
            s.add(row)
            row.attempts = 0
            row.next_attempt_at = 0.0
            row.last_checked_at = rfc3339(now)
            row.last_error = None

    def pull_failed(self, kind: str, error: str, next_attempt_at: float) -> int:
        with write_session(self.sessions) as s:
            row = s.get(PullStateRow, kind) or PullStateRow(kind=kind, attempts=0)
            s.add(row)
            row.attempts = (row.attempts or 0) + 1
            row.next_attempt_at = next_attempt_at
            row.last_error = error[:500]
            return row.attempts


def _dataset(row: DatasetRow, cipher: FieldCipher | None) -> Dataset:
    if row.encrypted:
        if cipher is None:
            raise StorageError(
                f"dataset {row.kind} is encrypted; the data key is needed to read it"
            )
        raw = cipher.decrypt(row.doc, table="sync_dataset", record_id=row.kind, field="doc")
    else:
        raw = row.doc
    return Dataset(
        kind=row.kind,
        centre_id=row.centre_id,
        version=row.version,
        etag=row.etag,
        cursor=row.cursor,
        issued_at=row.issued_at,
        fetched_at=row.fetched_at,
        data=json.loads(raw.decode("utf-8")),
    )


# -- read-only helpers for the kiosk ----------------------------------------------------


@dataclass
class StreamStatus:
    stream: str
    head_seq: int
    acked_seq: int
    queue_depth: int
    oldest_unsynced_at: str | None
    oldest_unsynced_age_s: int | None
    dead_letters: list[DeadLetter] = field(default_factory=list)
    blocked_reason: str | None = None
    last_success_at: str | None = None
    last_error: str | None = None


@dataclass
class DatasetInfo:
    kind: str
    version: int
    etag: str
    fetched_at: str


@dataclass
class SyncStatus:
    streams: dict[str, StreamStatus]
    datasets: dict[str, DatasetInfo]

    @property
    def queue_depth(self) -> int:
        return sum(s.queue_depth for s in self.streams.values())

    @property
    def oldest_unsynced_age_s(self) -> int | None:
        ages = [
            s.oldest_unsynced_age_s
            for s in self.streams.values()
            if s.oldest_unsynced_age_s is not None
        ]
        return max(ages) if ages else None

    @property
    def dead_letter_count(self) -> int:
        return sum(len(s.dead_letters) for s in self.streams.values())

    @property
    def blocked_streams(self) -> list[str]:
        return [name for name, s in self.streams.items() if s.blocked_reason]

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue_depth": self.queue_depth,
            "oldest_unsynced_age_s": self.oldest_unsynced_age_s,
            "dead_letters": self.dead_letter_count,
            "blocked_streams": self.blocked_streams,
            "streams": {k: asdict(v) for k, v in self.streams.items()},
            "datasets": {k: asdict(v) for k, v in self.datasets.items()},
        }


def _age_s(created_at: str | None, now: datetime) -> int | None:
    if created_at is None:
        return None
    try:
        return max(0, int((now - datetime.fromisoformat(created_at)).total_seconds()))
    except ValueError:
        return None


def _stream_status(
    stream: str,
    reader: KioskOutboxReader | AgentOutbox | None,
    sync_session: Session | None,
    now: datetime,
) -> StreamStatus:
    state: StreamStateRow | None = (
        sync_session.get(StreamStateRow, stream) if sync_session else None
    )
    acked = state.acked_seq if state else 0
    head = reader.head_seq() if reader else 0
    oldest = reader.read_one(acked + 1) if reader and head > acked else None
    dead: list[DeadLetter] = []
    if sync_session is not None:
        dead = [
            _dead(r)
            for r in sync_session.scalars(
                select(DeadLetterRow)
                .where(DeadLetterRow.stream == stream)
                .order_by(DeadLetterRow.seq)
            )
        ]
    return StreamStatus(
        stream=stream,
        head_seq=head,
        acked_seq=acked,
        queue_depth=max(0, head - acked),
        oldest_unsynced_at=oldest.created_at if oldest else None,
        oldest_unsynced_age_s=_age_s(oldest.created_at if oldest else None, now),
        dead_letters=dead,
        blocked_reason=state.blocked_reason if state else None,
        last_success_at=state.last_success_at if state else None,
        last_error=state.last_error if state else None,
    )


def sync_status(terminal_db_url: str, sync_db_url: str, now: datetime) -> SyncStatus:
    """Queue depth, oldest unsynced age, dead letters and dataset versions, read
    without writing either file (safe from the kiosk process and the staff screen)."""
    kiosk = KioskOutboxReader(terminal_db_url)
    sync_path = sqlite_file(sync_db_url)
    have_sync = sync_path is None or sync_path.exists()
    engine = readonly_engine(sync_db_url) if have_sync else None
    try:
        session = Session(engine) if engine is not None else None
        try:
            agent = _AgentReadOnly(session) if session is not None else None
            try:
                streams = {
                    "kiosk": _stream_status("kiosk", kiosk, session, now),
                    "agent": _stream_status("agent", agent, session, now),  # type: ignore[arg-type]
                }
                datasets: dict[str, DatasetInfo] = {}
                if session is not None:
                    for row in session.scalars(select(DatasetRow).order_by(DatasetRow.kind)):
                        datasets[row.kind] = DatasetInfo(
                            row.kind, row.version, row.etag, row.fetched_at
                        )
            except Exception as exc:
                if "no such table" in str(exc):  # sync.db created but never initialised
                    streams = {
                        "kiosk": _stream_status("kiosk", kiosk, None, now),
                        "agent": _stream_status("agent", None, None, now),
                    }
                    datasets = {}
                else:
                    raise
        finally:
            if session is not None:
                session.close()
    finally:
        kiosk.close()
        if engine is not None:
            engine.dispose()
    return SyncStatus(streams=streams, datasets=datasets)


class _AgentReadOnly:
    """The agent stream read through an existing read-only session."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def head_seq(self) -> int:
        return _head(self._s)

    def read_one(self, seq: int) -> PendingRecord | None:
        return _read_one(self._s, seq)


def latest_dataset(
    sync_db_url: str, kind: str, cipher: FieldCipher | None = None
) -> Dataset | None:
    """The dataset of ``kind`` currently in force (None before the first pull); read-only."""
    path = sqlite_file(sync_db_url)
    if path is not None and not path.exists():
        return None
    engine = readonly_engine(sync_db_url)
    try:
        with Session(engine) as s:
            try:
                row = s.get(DatasetRow, kind)
            except Exception as exc:
                if "no such table" in str(exc):
                    return None
                raise
            return _dataset(row, cipher) if row else None
    finally:
        engine.dispose()


class AckedThrough:
    """The kiosk's view of what the platform has settled: the highest kiosk-stream
    sequence number acknowledged in ``sync.db`` (read-only, cached for
    ``ttl_s`` seconds so a payment never waits on it). 0 while nothing is acked
    or sync.db does not exist yet; unsynced exposure limits count from there."""

    def __init__(
        self, sync_db_url: str, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._url = sync_db_url
        self._ttl = ttl_s
        self._clock = clock
        self._value = 0
        self._read_at: float | None = None
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._ttl:
                return self._value
            self._read_at = now
            path = sqlite_file(self._url)
            if path is None or not path.exists():
                return self._value
            try:
                if self._engine is None:
                    self._engine = readonly_engine(self._url)
                with Session(self._engine) as s:
                    value = s.scalar(
                        select(StreamStateRow.acked_seq).where(StreamStateRow.stream == "kiosk")
                    )
                self._value = max(self._value, int(value or 0))
            except SQLAlchemyError:
                pass  # sync.db busy or not yet created: keep the last known value
            return self._value

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
