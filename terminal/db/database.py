"""Open the terminal database: boot check, engine, migrations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from terminal.db.engine import BootCheck, ensure_not_corrupt, make_engine, make_sessionmaker
from terminal.db.migrate import migrate


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    path: Path | None
    boot: BootCheck
    backup_made: str | None

    @property
    def degraded(self) -> bool:
        """True when a corrupt file was quarantined at boot (the terminal runs on
        a fresh file and staff must be told)."""
        return not self.boot.ok

    def close(self) -> None:
        self.engine.dispose()


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///"))
    return None


def open_database(url: str) -> Database:
    """quick_check (quarantine a corrupt file), connect with the pragmas, migrate
    to head after backing up an older file."""
    path = sqlite_path(url)
    boot = ensure_not_corrupt(path) if path else BootCheck(ok=True, detail="not a file")
    engine = make_engine(url)
    made = migrate(engine, path)
    return Database(
        engine=engine, sessions=make_sessionmaker(engine), path=path, boot=boot, backup_made=made
    )
