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

import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from terminal.core.errors import DatabaseCorrupt, StorageError
from terminal.core.log import get_logger

log = get_logger(__name__)

BUSY_TIMEOUT_MS = 5000

# SQLite primary result codes that mean "the storage failed", not "the file is
# damaged": a full disk, an I/O error, a file that cannot be opened, a lock.
SQLITE_FULL = 13
_NOT_CORRUPTION = {5, 6, 10, 13, 14}  # BUSY, LOCKED, IOERR, FULL, CANTOPEN
LOW_SPACE_BYTES = 256 * 1024  # below this an I/O error is taken for a full disk


class DiskFull(StorageError, OperationalError):
    """The data partition is full: the write was rolled back, nothing of it was
    recorded, everything recorded before is intact.

    Also an SQLAlchemy ``OperationalError``, so code that already treats a
    failed statement as "the database could not do it" (``except DBAPIError``)
    keeps doing so, while commands and screens that catch ``TerminalError``
    get a message fit to show."""

    code = "disk_full"

    def __init__(self, message: str, orig: BaseException | None = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.statement = None
        self.params = None
        self.orig = orig  # type: ignore[assignment]
        self.ismulti = None
        self.connection_invalidated = False
        self.hide_parameters = False
        self.detail = []

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (type(self), (self.message,))


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what it wraps) is SQLITE_FULL or ENOSPC."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF == SQLITE_FULL:
                return True
            if "database or disk is full" in str(exc):
                return True
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__
        seen += 1
    return False


def storage_full(exc: BaseException | None, where: Path | None) -> bool:
    """SQLITE_FULL/ENOSPC, or an I/O error on a partition with no space left
    (SQLite reports a shared-memory file it cannot grow as SQLITE_IOERR)."""
    if is_disk_full(exc):
        return True
    err = getattr(exc, "orig", None) or exc
    code = getattr(err, "sqlite_errorcode", None)
    if where is None or code is None or code & 0xFF != 10:
        return False
    try:
        st = os.statvfs(where)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < LOW_SPACE_BYTES


def disk_full_error(where: Path | None, orig: BaseException | None = None) -> DiskFull:
    place = f" ({where})" if where is not None else ""
    return DiskFull(
        f"disk full: nothing was written; free space on the data partition{place} and try again",
        orig,
    )


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
    where = _data_dir(url)

    def on_error(ctx: ExceptionContext) -> BaseException | None:
        # A full disk is not an internal error: say so, whichever statement hit it.
        if storage_full(ctx.original_exception, where):
            return disk_full_error(where, ctx.original_exception)
        return None

    event.listen(engine, "handle_error", on_error)
    return engine


def _data_dir(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///")).parent
    return None


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def write_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT). Returns only after the
    COMMIT reached the disk (synchronous=FULL); raise inside to roll back.
    A full disk raises :class:`DiskFull` (the transaction is rolled back)."""
    try:
        with factory() as session, session.begin():
            yield session
    except DiskFull:
        raise
    except Exception as exc:
        bind = factory.kw.get("bind")
        where = _data_dir(str(bind.url)) if bind is not None else None
        if storage_full(exc, where):
            raise disk_full_error(where, exc) from exc
        raise


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
        # A full disk, an I/O error or a lock says nothing about the file: moving
        # a good database aside would start the terminal on an empty one.
        if storage_full(exc, path.parent):
            raise disk_full_error(path.parent, exc) from exc
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.OperationalError) and (
            code is None or code & 0xFF in _NOT_CORRUPTION
        ):
            raise StorageError(f"cannot check the database {path}: {exc}") from exc
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
