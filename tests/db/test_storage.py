from __future__ import annotations

import os
import sqlite3
import stat
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from terminal.core.clock import CHINA_TZ
from terminal.core.errors import StorageError
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import open_database
from terminal.db.engine import pragma, write_session
from terminal.db.migrate import current_revision, head_revision
from terminal.db.outbox import GENESIS, Outbox, verify_outbox
from terminal.db.roster import RosterStore, mask_name
from terminal.db.tables import OutboxRow

NOW = datetime(2026, 3, 2, 11, 45, tzinfo=CHINA_TZ)


def test_every_connection_has_the_pragmas(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/t.db")
    assert pragma(db.engine, "journal_mode") == "wal"
    assert pragma(db.engine, "synchronous") == 2  # FULL
    assert pragma(db.engine, "foreign_keys") == 1
    assert pragma(db.engine, "busy_timeout") == 5000
    assert pragma(db.engine, "secure_delete") == 1
    assert current_revision(db.engine) == head_revision()
    db.close()


def test_write_session_uses_begin_immediate(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/t.db")
    with write_session(db.sessions) as s:
        s.execute(text("SELECT 1"))  # the session connects lazily; BEGIN IMMEDIATE runs now
        # A second connection cannot take the write lock while we hold it.
        other = sqlite3.connect(tmp_path / "t.db", timeout=0.1)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
    db.close()


def test_corrupt_file_is_quarantined_and_terminal_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db = open_database(f"sqlite:///{path}")
    with write_session(db.sessions) as s:
        Outbox("dev", "c").append(s, "test", "01JAAAAAAAAAAAAAAAAAAAAAAA", {"a": 1}, NOW)
    db.close()
    data = bytearray(path.read_bytes())
    data[100:4000] = os.urandom(3900)  # smash the header page and schema
    path.write_bytes(bytes(data))

    db2 = open_database(f"sqlite:///{path}")
    assert db2.degraded
    assert db2.boot.quarantined_to is not None and db2.boot.quarantined_to.exists()
    assert db2.boot.quarantined_to.parent.name == "quarantine"
    with db2.sessions() as s:  # fresh, migrated, usable
        assert s.scalars(select(OutboxRow)).all() == []
    db2.close()


def test_migration_of_an_older_file_backs_it_up_first(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db = open_database(f"sqlite:///{path}")
    db.close()
    # Pretend the file is at an older revision.
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num='0000'")
    conn.commit()
    conn.close()
    # 0000 is unknown to alembic: migrating must fail loudly, not silently reset.
    with pytest.raises(Exception, match="0000"):
        open_database(f"sqlite:///{path}")
    backups = list((tmp_path / "backups").glob("t.pre-migration.*.db"))
    assert len(backups) == 1


def test_outbox_chain_detects_edits_and_gaps(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/t.db")
    ob = Outbox("dev-1", "c-1")
    with write_session(db.sessions) as s:
        first = ob.append(s, "meal", "01JAAAAAAAAAAAAAAAAAAAAAA1", {"amount_fen": 1200}, NOW)
        for i in range(2, 6):
            ob.append(s, "meal", f"01JAAAAAAAAAAAAAAAAAAAAAA{i}", {"amount_fen": 1000 + i}, NOW)
    assert first.seq == 1 and first.prev_hash == GENESIS
    with db.sessions() as s:
        assert verify_outbox(s, "dev-1") is None
    with write_session(db.sessions) as s:
        s.execute(text("UPDATE outbox SET payload=:p WHERE seq=3"), {"p": '{"amount_fen":1}'})
    with db.sessions() as s:
        problem = verify_outbox(s, "dev-1")
    assert problem is not None and problem.seq == 3 and "hash" in problem.problem
    db.close()


def test_outbox_refuses_another_devices_database(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/t.db")
    with write_session(db.sessions) as s:
        Outbox("dev-1", "c-1").append(s, "x", "01JAAAAAAAAAAAAAAAAAAAAAA1", {}, NOW)
    with pytest.raises(StorageError, match="belongs to device"), write_session(db.sessions) as s:
        Outbox("dev-2", "c-1").append(s, "x", "01JAAAAAAAAAAAAAAAAAAAAAA2", {}, NOW)
    db.close()


def test_field_cipher_binds_ciphertext_to_record_and_field(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "keys" / "data.key")
    assert stat.S_IMODE((tmp_path / "keys" / "data.key").stat().st_mode) == 0o600
    c = FieldCipher(key)
    blob = c.encrypt_text("张三华", table="residents", record_id="r1", field="name")
    assert "张三华".encode() not in blob
    assert c.decrypt_text(blob, table="residents", record_id="r1", field="name") == "张三华"
    with pytest.raises(StorageError):
        c.decrypt_text(blob, table="residents", record_id="r2", field="name")
    with pytest.raises(StorageError):
        c.decrypt_text(blob, table="residents", record_id="r1", field="id_number")
    with pytest.raises(StorageError):
        FieldCipher(os.urandom(32)).decrypt_text(
            blob, table="residents", record_id="r1", field="name"
        )


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "k"
    load_or_create_key(p)
    p.chmod(0o644)
    with pytest.raises(StorageError, match="chmod 600"):
        load_or_create_key(p)


def test_names_are_encrypted_in_the_file(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/t.db")
    roster = RosterStore(FieldCipher(load_or_create_key(tmp_path / "k")))
    with write_session(db.sessions) as s:
        info = roster.upsert(
            s, "R001", "张三华", NOW, id_number="110101195001011234", categories=["age_70_79"]
        )
    assert info.name_masked == "张*华"
    db.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    assert "张三华".encode() not in raw
    assert b"110101195001011234" not in raw


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三华", "张*华"),
        ("张三", "张*"),
        ("张", "张"),
        ("欧阳小明", "欧**明"),
        ("Ann Lee", "A*n L*e"),
        ("", ""),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize("rid", ["张三", "R 1", "", "x" * 65, "R1/2"])
def test_roster_refuses_ids_the_data_spec_would_refuse(tmp_path: Path, rid: str) -> None:
    from terminal.core.errors import TerminalError

    db = open_database(f"sqlite:///{tmp_path}/t.db")
    roster = RosterStore(FieldCipher(load_or_create_key(tmp_path / "k")))
    with pytest.raises(TerminalError, match="resident id"), write_session(db.sessions) as s:
        roster.upsert(s, rid, "张三", NOW)
    db.close()
