"""Engine factory, pragmas, write transactions and boot-time checks.

Every connection sets ``journal_mode=WAL``, ``synchronous=FULL`` (SD cards lie
about flushes; ``NORMAL`` lost acknowledged payments in simulated power cuts),
``foreign_keys=ON``, ``busy_timeout`` and ``secure_delete=ON`` (un-enrolment
overwrites deleted template bytes instead of leaving them in free pages).

Write transactions start with ``BEGIN IMMEDIATE`` so a writer takes the write
lock up front instead of failing half-way. One process owns writes: the kiosk
process; other processes (the sync agent) hand their writes to it or run when
the kiosk is not writing, see ARCHITECTURE.md.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from terminal.core.errors import DatabaseCorrupt, StorageError
from terminal.core.log import get_logger

log = get_logger(__name__)

BUSY_TIMEOUT_MS = 5000


def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE itself.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode and str(mode[0]).lower() not in ("wal", "memory"):
            raise StorageError(f"could not switch the database to WAL (got {mode[0]})")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA secure_delete=ON")
    finally:
        cur.close()


def _on_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine whose every connection has the pragmas and whose transactions
    begin IMMEDIATE. ``url`` is a SQLAlchemy SQLite URL."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def write_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT). Returns only after the
    COMMIT reached the disk (synchronous=FULL); raise inside to roll back."""
    with factory() as session, session.begin():
        yield session


def pragma(engine: Engine, name: str) -> Any:
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


# -- boot checks ------------------------------------------------------------------------


@dataclass(frozen=True)
class BootCheck:
    ok: bool
    quarantined_to: Path | None = None
    detail: str = ""


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def quick_check(path: Path) -> BootCheck:
    """Run ``PRAGMA quick_check`` on a database file. A file that is not a
    database, or fails the check, is moved aside (with its -wal/-shm) into
    ``<dir>/quarantine/`` so the terminal can start degraded on a fresh file
    instead of crashing. Returns what happened."""
    if not path.exists():
        return BootCheck(ok=True, detail="new database")
    detail = ""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
        if rows == [("ok",)]:
            return BootCheck(ok=True, detail="ok")
        detail = "; ".join(str(r[0]) for r in rows[:5])
    except sqlite3.DatabaseError as exc:
        detail = str(exc)
    qdir = path.parent / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    target = qdir / f"{path.name}.{_stamp()}.corrupt"
    shutil.move(str(path), target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            shutil.move(str(side), target.with_name(target.name + suffix))
    log.error("db_quarantined", target=str(target), detail=detail)
    return BootCheck(ok=False, quarantined_to=target, detail=detail)


def backup(path: Path, dest_dir: Path, label: str = "pre-migration", keep: int = 5) -> Path | None:
    """Consistent online copy with SQLite's backup API (WAL content included).
    Keeps the newest ``keep`` backups with the same label."""
    if not path.exists():
        return None
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{path.stem}.{label}.{_stamp()}.db"
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StorageError(f"database backup to {target} failed: {exc}") from exc
    finally:
        src.close()
    old = sorted(dest_dir.glob(f"{path.stem}.{label}.*.db"))
    for stale in old[:-keep]:
        stale.unlink(missing_ok=True)
    return target


def ensure_not_corrupt(path: Path) -> BootCheck:
    """quick_check wrapper raising nothing; callers read ``ok``."""
    try:
        return quick_check(path)
    except OSError as exc:  # disk errors while moving aside
        raise DatabaseCorrupt(
            f"database {path} is damaged and could not be moved aside: {exc}"
        ) from exc
