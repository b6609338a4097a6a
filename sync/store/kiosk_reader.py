"""Read-only access to a SQLite file this process does not own, and the kiosk's
outbox read through it.

``terminal.db`` is written only by the kiosk process; the agent opens it with
``mode=ro`` and ``query_only`` to read pending outbox rows and never updates
them. The outbox queries here are also those of the agent's own stream in
``sync.db`` (same tables, :mod:`sync.store.outbox`) and of the status read model
(:mod:`sync.store.status`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, inspect, select
from sqlalchemy.orm import Session

from terminal.core.errors import StorageError
from terminal.db.tables import OutboxRow


@dataclass(frozen=True, slots=True)
class PendingRecord:
    seq: int
    record_id: str
    kind: str
    payload: str  # canonical JSON as stored
    created_at: str
    prev_hash: str
    hash: str
    hash_version: int = 1
    centre_id: str | None = None


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


# -- outbox queries (kiosk stream in terminal.db, agent stream in sync.db) ---------------

_PENDING_COLS = (
    OutboxRow.seq,
    OutboxRow.record_id,
    OutboxRow.kind,
    OutboxRow.payload,
    OutboxRow.created_at,
    OutboxRow.prev_hash,
    OutboxRow.hash,
)
# Hash version 2 columns (terminal.db revision 0004). A terminal.db the kiosk has
# not migrated yet (the agent restarted first after an update) has none: its rows
# are all version 1.
_V2_COLS = (OutboxRow.hash_version, OutboxRow.centre_id)


# Databases known to have the columns (they never go away once migrated), so the
# schema is inspected only until the kiosk has migrated, not on every read.
_V2_DATABASES: set[str] = set()


def _has_v2_columns(session: Session) -> bool:
    url = str(session.connection().engine.url)
    if url in _V2_DATABASES:
        return True
    names = {c["name"] for c in inspect(session.connection()).get_columns("outbox")}
    if "hash_version" in names:
        _V2_DATABASES.add(url)
        return True
    return False


def _columns(session: Session) -> tuple[Any, ...]:
    return _PENDING_COLS + _V2_COLS if _has_v2_columns(session) else _PENDING_COLS


def read_after(session: Session, after_seq: int, limit: int) -> list[PendingRecord]:
    rows = session.execute(
        select(*_columns(session))
        .where(OutboxRow.seq > after_seq)
        .order_by(OutboxRow.seq)
        .limit(limit)
    ).all()
    return [PendingRecord(*r) for r in rows]


def read_one(session: Session, seq: int) -> PendingRecord | None:
    row = session.execute(select(*_columns(session)).where(OutboxRow.seq == seq)).first()
    return PendingRecord(*row) if row else None


def head_seq(session: Session) -> int:
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
        result: list[PendingRecord] = self._run(lambda s: read_after(s, after_seq, limit), [])
        return result

    def read_one(self, seq: int) -> PendingRecord | None:
        result: PendingRecord | None = self._run(lambda s: read_one(s, seq), None)
        return result

    def head_seq(self) -> int:
        result: int = self._run(head_seq, 0)
        return result

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
