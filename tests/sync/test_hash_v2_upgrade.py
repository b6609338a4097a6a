"""A terminal updated with records still queued: rows written by the previous
release (hash version 1, before terminal.db revision 0004 and sync.db schema 2)
are migrated, verified and sent as version 1, and the chain continues in
version 2, on real SQLite files and a real platform on loopback."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine
from sync_helpers import CENTRE, DEVICE, Env, append_records, make_env

from sync.samples import sample_payload
from sync.store.outbox import SyncStore
from terminal.core.clock import SystemClock, rfc3339
from terminal.core.ids import new_ulid
from terminal.db.database import open_database
from terminal.db.migrate import _config
from terminal.db.outbox import GENESIS, canonical_json, record_hash, verify_outbox


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path)
    try:
        yield e
    finally:
        e.platform.stop()


def _terminal_db_of_previous_release(path: Path, records: int) -> list[str]:
    """A terminal.db at revision 0003 holding ``records`` outbox rows written as the
    previous release wrote them (version 1 hash, no hash_version or centre)."""
    engine = create_engine(f"sqlite:///{path}")
    cfg = _config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.commit()
    engine.dispose()
    now = SystemClock().now()
    prev, ids = GENESIS, []
    with sqlite3.connect(path) as db:
        cols = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        assert "hash_version" not in cols  # really the old schema
        for seq in range(1, records + 1):
            rid, payload = new_ulid(), sample_payload("meal_transaction", seq, now)
            digest = record_hash(DEVICE, seq, prev, "meal_transaction", rid, payload)
            db.execute(
                "INSERT INTO outbox (seq, record_id, kind, payload, created_at, prev_hash, hash,"
                " status, attempts, next_attempt_at) VALUES (?,?,?,?,?,?,?,'pending',0,0.0)",
                (seq, rid, "meal_transaction", canonical_json(payload), rfc3339(now), prev, digest),
            )
            prev = digest
            ids.append(rid)
        db.execute(
            "INSERT INTO chain_head (id, device_id, seq, hash) VALUES (1, ?, ?, ?)",
            (DEVICE, records, prev),
        )
    return ids


def test_queued_version_1_rows_upload_then_the_chain_continues_in_version_2(env: Env) -> None:
    path = env.tmp / "terminal.db"
    ids = _terminal_db_of_previous_release(path, 5)

    # the agent of the new release reads the not-yet-migrated file (kiosk not restarted)
    store = SyncStore(env.sync_url)
    with env.client() as client:
        rep = env.uploader(client, store, batch_size=3).run_once()
        assert rep.drained and not rep.failures and rep.acked_seq == 5, rep.failures

    # the kiosk restarts: revision 0004; old rows stay version 1, new ones are 2
    db = open_database(f"sqlite:///{path}")
    try:
        with db.sessions() as s:
            assert verify_outbox(s, DEVICE) is None
    finally:
        db.close()
    ids += append_records(env.terminal_url, 4, start=5)
    with sqlite3.connect(path) as conn:
        versions = conn.execute(
            "SELECT hash_version, centre_id FROM outbox ORDER BY seq"
        ).fetchall()
    assert versions == [(1, None)] * 5 + [(2, CENTRE)] * 4

    with env.client() as client:
        rep = env.uploader(client, store, batch_size=3).run_once()
        assert rep.drained and not rep.failures and rep.acked_seq == 9, rep.failures
    stored = env.platform.store.records(DEVICE)
    assert [r.record_id for r in stored] == ids
    assert env.platform.store.verify_chain(DEVICE) is None
    store.close()


def test_sync_db_of_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """sync.db schema 1 (no hash columns on the agent stream's outbox) with a
    queued heartbeat: opened by the new release it becomes schema 2, the row is
    kept as version 1 and still verifies."""
    url = f"sqlite:///{tmp_path}/sync.db"
    store = SyncStore(url)
    store.close()
    now = SystemClock().now()
    rid, payload = new_ulid(), sample_payload("heartbeat", 1, now)
    digest = record_hash(DEVICE, 1, GENESIS, "heartbeat", rid, payload)
    with sqlite3.connect(tmp_path / "sync.db") as db:
        db.execute("DROP TABLE outbox")
        db.execute(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, record_id VARCHAR(26) UNIQUE,"
            " kind VARCHAR(40), payload TEXT, created_at VARCHAR(40), prev_hash VARCHAR(64),"
            " hash VARCHAR(64), status VARCHAR(12), attempts INTEGER, next_attempt_at FLOAT,"
            " last_error TEXT, acked_at VARCHAR(40))"
        )
        db.execute(
            "INSERT INTO outbox VALUES (1, ?, 'heartbeat', ?, ?, ?, ?, 'pending', 0, 0.0,"
            " NULL, NULL)",
            (rid, canonical_json(payload), rfc3339(now), GENESIS, digest),
        )
        db.execute(
            "INSERT OR REPLACE INTO chain_head (id, device_id, seq, hash) VALUES (1,?,1,?)",
            (DEVICE, digest),
        )
        db.execute("UPDATE sync_meta SET value = '1' WHERE key = 'schema_version'")

    store = SyncStore(url)
    try:
        with store.sessions() as s:
            assert verify_outbox(s, DEVICE, "agent") is None
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "sync.db") as db:
        assert db.execute("SELECT value FROM sync_meta WHERE key='schema_version'").fetchone() == (
            "2",
        )
        assert db.execute("SELECT hash_version, centre_id FROM outbox").fetchall() == [(1, None)]
