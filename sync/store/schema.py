"""The ``sync.db`` schema: its tables and the one-time set-up of a new file.

``sync.db`` also holds the agent's own record stream in the same outbox and
chain tables as the kiosk's ``terminal.db`` (:mod:`terminal.db.tables`), so
:func:`create_schema` creates those too.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from terminal.core.errors import StorageError
from terminal.db.base import NAMING
from terminal.db.engine import write_session
from terminal.db.outbox import GENESIS
from terminal.db.tables import ChainHead, OutboxRow

SCHEMA_VERSION = 2
# Upgrades of an existing file, by the version it has. 1 -> 2: the outbox rows of
# the agent stream remember their hash version and centre (hash version 2; the
# kiosk's terminal.db gets the same columns from its Alembic revision 0004).
_UPGRADES: dict[str, tuple[str, ...]] = {
    "1": (
        "ALTER TABLE outbox ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE outbox ADD COLUMN centre_id VARCHAR(64)",
    ),
}


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


def create_schema(engine: Engine, sessions: sessionmaker[Session]) -> None:
    """Create the missing tables (the sync tables plus the agent stream's outbox
    and chain tables) and stamp, or check, the schema version."""
    SyncBase.metadata.create_all(engine)
    for table in (ChainHead.__table__, OutboxRow.__table__):
        table.create(engine, checkfirst=True)  # type: ignore[attr-defined]
    with write_session(sessions) as s:
        meta = s.get(MetaRow, "schema_version")
        if meta is None:
            s.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
        elif meta.value in _UPGRADES:
            have = {c["name"] for c in inspect(s.connection()).get_columns("outbox")}
            for statement in _UPGRADES[meta.value]:
                column = statement.split("ADD COLUMN ", 1)[1].split()[0]
                if column not in have:
                    s.execute(text(statement))
            meta.value = str(SCHEMA_VERSION)
        elif meta.value != str(SCHEMA_VERSION):
            raise StorageError(
                f"sync.db has schema version {meta.value}, this software expects {SCHEMA_VERSION}"
            )
