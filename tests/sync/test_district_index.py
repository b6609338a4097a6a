"""The district roster's index in sync.db: keys, the policy and the centres'
names, swapped in as a whole; a sync.db written before centre names were
published still answers, with ids only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import create_engine

from sync.store.district import DistrictRosterIndex

ENTRY = {
    "person_id": "P-1",
    "home_centre_id": "centre-a",
    "categories": ["age_80_89"],
    "card_hmacs": ["a" * 64],
    "id_number_hmac": None,
    "lookup_hmac": "b" * 64,
    "active": True,
}
DOC = {
    "pepper_id": "0123456789abcdef",
    "payment_source": "cash",
    "entries": [ENTRY],
    "centres": [{"centre_id": "centre-a", "name": "东风社区照料中心"}],
}


def _write(path: Path, doc: dict) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert DistrictRosterIndex.for_writer(engine).replace(3, doc) == 2
    finally:
        engine.dispose()


def _lookup(path: Path, key_type: str, key: str):
    index = DistrictRosterIndex.open_readonly(path)
    assert index is not None
    try:
        return index.lookup(key_type, key)
    finally:
        index.close()


def test_keys_and_centre_names_are_indexed(tmp_path: Path) -> None:
    db = tmp_path / "sync.db"
    _write(db, DOC)
    hit = _lookup(db, "card", "a" * 64)
    assert hit is not None
    assert (hit.person_id, hit.home_centre_id, hit.home_centre_name) == (
        "P-1",
        "centre-a",
        "东风社区照料中心",
    )
    assert _lookup(db, "lookup", "b" * 64) == hit
    assert _lookup(db, "card", "c" * 64) is None


def test_a_roster_without_names_and_a_version_replaced_whole(tmp_path: Path) -> None:
    db = tmp_path / "sync.db"
    _write(db, DOC)
    _write(db, {k: v for k, v in DOC.items() if k != "centres"})
    hit = _lookup(db, "card", "a" * 64)
    assert hit is not None and hit.home_centre_name == ""  # the old names went with it


def test_a_sync_db_from_before_centre_names_answers_with_ids(tmp_path: Path) -> None:
    db = tmp_path / "sync.db"
    _write(db, DOC)
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE visit_roster_centre")
    hit = _lookup(db, "card", "a" * 64)
    assert hit is not None and hit.home_centre_id == "centre-a" and hit.home_centre_name == ""
