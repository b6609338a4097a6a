"""The pulled ``district_roster`` as an index in ``sync.db`` (city-wide meals).

The dataset itself is kept like every dataset (``sync_dataset``, whole
documents, encrypted at rest). A district's roster is large (every senior of
every centre), so the puller also writes it, once per version, into two small
tables the kiosk can query by key without the data key and without parsing the
whole document: ``visit_roster_key`` (one row per key: card, ID-number and
lookup HMACs, no names) and ``visit_roster_meta`` (the version, the pepper id
and the district's payment policy). The kiosk opens the file read-only.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from sqlalchemy import Engine, Integer, MetaData, String, create_engine, delete, insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from terminal.db.base import NAMING
from terminal.db.engine import make_sessionmaker, write_session


class _Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RosterKeyRow(_Base):
    __tablename__ = "visit_roster_key"
    key_type: Mapped[str] = mapped_column(String(12), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64))
    home_centre_id: Mapped[str] = mapped_column(String(64))
    categories: Mapped[str] = mapped_column(String(400))  # JSON list
    active: Mapped[int] = mapped_column(Integer)


class RosterCentreRow(_Base):
    """The district's centres by name (for the visitor's screen); since 1.2."""

    __tablename__ = "visit_roster_centre"
    centre_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class RosterMetaRow(_Base):
    __tablename__ = "visit_roster_meta"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    version: Mapped[int] = mapped_column(Integer)
    pepper_id: Mapped[str] = mapped_column(String(16))
    payment_source: Mapped[str] = mapped_column(String(16))


@dataclass(frozen=True, slots=True)
class RosterMeta:
    version: int
    pepper_id: str
    payment_source: str


@dataclass(frozen=True, slots=True)
class RosterHit:
    person_id: str
    home_centre_id: str
    categories: tuple[str, ...]
    active: bool
    payment_source: str
    home_centre_name: str = ""


def _keys(entry: dict[str, Any]) -> list[tuple[str, str]]:
    keys = [("card", str(k)) for k in entry["card_hmacs"]]
    if entry.get("id_number_hmac"):
        keys.append(("id_number", str(entry["id_number_hmac"])))
    if entry.get("lookup_hmac"):
        keys.append(("lookup", str(entry["lookup_hmac"])))
    return keys


class DistrictRosterIndex:
    def __init__(self, engine: Engine, sessions: sessionmaker[Session], *, owned: bool) -> None:
        self.engine = engine
        self.sessions = sessions
        self._owned = owned

    @classmethod
    def for_writer(cls, engine: Engine) -> DistrictRosterIndex:
        """Over the agent's ``sync.db`` engine (tables created when missing)."""
        _Base.metadata.create_all(engine)
        return cls(engine, make_sessionmaker(engine), owned=False)

    @classmethod
    def open_readonly(cls, path: Path) -> DistrictRosterIndex | None:
        """Read-only over the file at ``path``; None when there is no such file."""
        if not path.is_file():
            return None
        uri = f"file:{pathname2url(str(path.resolve()))}?mode=ro"
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
        return cls(engine, sessionmaker(engine), owned=True)

    def close(self) -> None:
        if self._owned:
            self.engine.dispose()

    def replace(self, version: int, data: dict[str, Any]) -> int:
        """Swap in a roster version (one transaction); returns the keys written."""
        rows: list[dict[str, Any]] = []
        for e in data["entries"]:
            cats = json.dumps(list(e["categories"]), separators=(",", ":"))
            rows.extend(
                {
                    "key_type": kt,
                    "key": k,
                    "person_id": e["person_id"],
                    "home_centre_id": e["home_centre_id"],
                    "categories": cats,
                    "active": 1 if e["active"] else 0,
                }
                for kt, k in _keys(e)
            )
        with write_session(self.sessions) as s:
            s.execute(delete(RosterKeyRow))
            s.execute(delete(RosterMetaRow))
            s.execute(delete(RosterCentreRow))
            for i in range(0, len(rows), 2000):
                s.execute(insert(RosterKeyRow), rows[i : i + 2000])
            centres = [
                {"centre_id": str(c["centre_id"]), "name": str(c["name"])}
                for c in data.get("centres", [])
            ]
            if centres:
                s.execute(insert(RosterCentreRow), centres)
            s.add(
                RosterMetaRow(
                    id=1,
                    version=version,
                    pepper_id=str(data["pepper_id"]),
                    payment_source=str(data["payment_source"]),
                )
            )
        return len(rows)

    def meta(self) -> RosterMeta | None:
        try:
            with self.sessions() as s:
                row = s.get(RosterMetaRow, 1)
                return (
                    None
                    if row is None
                    else RosterMeta(row.version, row.pepper_id, row.payment_source)
                )
        except OperationalError:  # no table yet: nothing pulled
            return None

    def lookup(self, key_type: str, key: str) -> RosterHit | None:
        try:
            with self.sessions() as s:
                row = s.get(RosterKeyRow, (key_type, key))
                meta = s.get(RosterMetaRow, 1)
                if row is None or meta is None:
                    return None
                hit = RosterHit(
                    person_id=row.person_id,
                    home_centre_id=row.home_centre_id,
                    categories=tuple(json.loads(row.categories)),
                    active=bool(row.active),
                    payment_source=meta.payment_source,
                )
        except OperationalError:
            return None
        try:
            with self.sessions() as s:
                centre = s.get(RosterCentreRow, hit.home_centre_id)
        except OperationalError:  # a sync.db written before centre names: ids only
            return hit
        return hit if centre is None else replace(hit, home_centre_name=centre.name)

    def version(self) -> int | None:
        m = self.meta()
        return None if m is None else m.version


__all__ = ["DistrictRosterIndex", "RosterHit", "RosterMeta"]
