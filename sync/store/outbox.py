"""The agent's store: everything it writes to ``sync.db``, of which it is the only writer.

* per outbox stream (``kiosk``, ``agent``): the acknowledgement state (acked
  high-water mark and hash, attempts, next attempt time, blocked reason), the
  results that are not a plain acceptance (duplicates, quarantines,
  rejections) and the dead letters with their reason;
* the agent's own record stream (:class:`AgentOutbox`: heartbeats, OTA status;
  same outbox and chain tables as the kiosk's);
* the pulled datasets, each one row holding a whole versioned document,
  replaced in one transaction, with its pull state.

``sync.db`` is written only by the agent (or by ``sync now`` while holding the
agent lock, see :mod:`sync.agent`): WAL + ``synchronous=FULL`` via
:func:`terminal.db.engine.make_engine`, every write a ``BEGIN IMMEDIATE``
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from sync.store.kiosk_reader import PendingRecord, head_seq, read_after, read_one
from sync.store.schema import (
    DatasetRow,
    DeadLetterRow,
    PullStateRow,
    ResultRow,
    StreamStateRow,
    create_schema,
)
from terminal.core.clock import rfc3339
from terminal.core.errors import StorageError
from terminal.db.crypto import FieldCipher
from terminal.db.engine import make_engine, make_sessionmaker, write_session
from terminal.db.outbox import GENESIS, Appended, Outbox


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


def dead_letter(row: DeadLetterRow) -> DeadLetter:
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
        create_schema(self.engine, self.sessions)

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
            return {r.seq: dead_letter(r) for r in rows}

    def dead_letters(self, stream: str | None = None) -> list[DeadLetter]:
        with self.sessions() as s:
            stmt = select(DeadLetterRow).order_by(DeadLetterRow.stream, DeadLetterRow.seq)
            if stream:
                stmt = stmt.where(DeadLetterRow.stream == stream)
            return [dead_letter(r) for r in s.scalars(stmt)]

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
            return decode_dataset(row, self.cipher) if row else None

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


def decode_dataset(row: DatasetRow, cipher: FieldCipher | None) -> Dataset:
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


# -- the agent's own record stream -------------------------------------------------------


class AgentOutbox:
    """The agent's own record stream inside ``sync.db`` (same tables and hash chain
    as the kiosk outbox). Written only by the agent."""

    stream = "agent"

    def __init__(self, store: SyncStore, device_id: str, centre_id: str) -> None:
        self._store = store
        self._outbox = Outbox(device_id, centre_id, stream=self.stream)

    def append(
        self, kind: str, record_id: str, payload: dict[str, Any], created_at: datetime
    ) -> Appended:
        with write_session(self._store.sessions) as s:
            return self._outbox.append(s, kind, record_id, payload, created_at)

    def read_after(self, after_seq: int, limit: int) -> list[PendingRecord]:
        with self._store.sessions() as s:
            return read_after(s, after_seq, limit)

    def read_one(self, seq: int) -> PendingRecord | None:
        with self._store.sessions() as s:
            return read_one(s, seq)

    def head_seq(self) -> int:
        with self._store.sessions() as s:
            return head_seq(s)

    def close(self) -> None:
        return None
