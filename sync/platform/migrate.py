"""The platform database's schema: created and upgraded by Alembic migrations
(``sync/platform/migrations``, a separate environment from the terminal's).

:func:`migrate` runs at every start of the platform (``PlatformStore``): a fresh
database is created at head, an older one upgraded, one at head left alone. A
database made by the reference server before it had migrations (tables, no
version table) is stamped at ``0001``, which is exactly that schema, and
upgraded from there. On PostgreSQL an advisory lock makes concurrent starts
(several API nodes or workers) take turns; SQLite serialises writers anyway.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from terminal.core.log import get_logger

log = get_logger(__name__)
_SCRIPTS = Path(__file__).parent / "migrations"
VERSION_TABLE = "platform_schema_version"
BASELINE = "0001"  # the schema of the server before migrations
_LOCK_ID = 0x43415245  # pg_advisory_lock key ("CARE")


def _config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    cfg.attributes["connection"] = conn
    cfg.attributes["version_table"] = VERSION_TABLE
    return cfg


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"platform migrations have {len(heads)} heads; merge them")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def migrate(engine: Engine, target: str = "head") -> str | None:
    """Upgrade the platform database to ``target``; returns the revision it had
    (None: it was empty or predates migrations)."""
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_ID})
            conn.commit()
        try:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            before = ctx.get_current_revision()
            if before == head_revision() and target == "head":
                conn.rollback()
                return before
            cfg = _config(conn)
            if before is None and inspect(conn).has_table("devices"):
                command.stamp(cfg, BASELINE)  # made by create_all before migrations
                log.info("platform_db_stamped", revision=BASELINE)
            command.upgrade(cfg, target)
            conn.commit()
            log.info("platform_db_migrated", from_rev=before or "empty", to_rev=target)
            return before
        finally:
            if postgres:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_ID})
                conn.commit()
