"""The status read model: what the kiosk and ``sync status`` show about sync.

Everything here only reads, through read-only engines
(:func:`sync.store.kiosk_reader.readonly_engine`), so it is safe from the kiosk
process and the staff screen while the agent writes ``sync.db``:
:func:`sync_status` (queue depth, oldest unsynced age, dead letters, dataset
versions), :func:`latest_dataset` (the dataset in force) and
:class:`AckedThrough` (the kiosk's cached view of the acked high-water mark).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from sync.store.kiosk_reader import (
    KioskOutboxReader,
    PendingRecord,
    head_seq,
    read_one,
    readonly_engine,
    sqlite_file,
)
from sync.store.outbox import AgentOutbox, Dataset, DeadLetter, dead_letter, decode_dataset
from sync.store.schema import DatasetRow, DeadLetterRow, StreamStateRow
from terminal.db.crypto import FieldCipher


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
            dead_letter(r)
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
        return head_seq(self._s)

    def read_one(self, seq: int) -> PendingRecord | None:
        return read_one(self._s, seq)


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
            return decode_dataset(row, cipher) if row else None
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
