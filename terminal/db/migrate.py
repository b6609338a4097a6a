"""Apply Alembic migrations at start, after a backup of the existing file."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from terminal.core.log import get_logger
from terminal.db.engine import backup

log = get_logger(__name__)
_SCRIPTS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads; merge them")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, db_path: Path | None, backup_dir: Path | None = None) -> str | None:
    """Upgrade to head. When the file already holds data at an older revision,
    back it up first (``backup_dir`` defaults to ``<db dir>/backups``).
    Returns the backup path (as text) or None when none was needed."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return None
    made: Path | None = None
    if current is not None and db_path is not None and db_path.exists():
        made = backup(db_path, backup_dir or db_path.parent / "backups")
    cfg = _config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
    log.info(
        "db_migrated", from_rev=current or "empty", to_rev=head, backup=str(made) if made else None
    )
    return str(made) if made else None
