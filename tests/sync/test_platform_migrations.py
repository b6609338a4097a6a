"""The platform database's Alembic migrations, on SQLite and on PostgreSQL: a
fresh database is created at head with exactly the store's schema; a database
at an older revision, and one made by the server before it had migrations, is
upgraded with its rows kept; the store works on the result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pg_server import PgServer, missing_reason, pg_server
from sqlalchemy import Engine, create_engine, text

from sync.platform.migrate import VERSION_TABLE, current_revision, head_revision, migrate
from sync.platform.store import PlatformBase, PlatformStore
from terminal.core.clock import SystemClock
from terminal.db.engine import make_engine

NOW = SystemClock().now()
PUB = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer | None]:
    if missing_reason() is not None:
        yield None
        return
    with pg_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, pg: PgServer | None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/platform.db"
    if pg is None:
        pytest.skip(str(missing_reason()))
    return pg.url(pg.create_database("mig"))


def _engine(url: str) -> Engine:
    return make_engine(url) if url.startswith("sqlite") else create_engine(url)


def _schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), PlatformBase.metadata)
    return [d for d in diff if VERSION_TABLE not in str(d)]


def _rows_at_0001(engine: Engine) -> None:
    """A device, its stream head and a record, written as the 0001 schema holds them."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO devices (device_id, centre_id, public_key, status, registered_at) "
                "VALUES ('dev-01', 'centre-01', :pub, 'active', '2026-12-01T08:00:00.000+08:00')"
            ),
            {"pub": PUB},
        )
        conn.execute(
            text(
                "INSERT INTO streams (device_id, stream, next_seq, head_hash, quarantined) "
                "VALUES ('dev-01', 'kiosk', 2, :h, 0)"
            ),
            {"h": "a" * 64},
        )
        conn.execute(
            text(
                "INSERT INTO records (device_id, centre_id, stream, seq, record_id, kind, "
                "created_at, prev_hash, hash, payload, stored_as, received_at) VALUES "
                "('dev-01', 'centre-01', 'kiosk', 1, '01JBBBBBBBBBBBBBBBBBBBB001', 'attendance', "
                "'2026-12-01T08:00:00.000+08:00', :g, :h, '{}', 'record', "
                "'2026-12-01T08:00:01.000+08:00')"
            ),
            {"g": "0" * 64, "h": "a" * 64},
        )


def _check_upgraded(url: str) -> None:
    store = PlatformStore(url)  # migrates on open
    try:
        assert current_revision(store.engine) == head_revision()
        assert _schema_diff(store.engine) == []
        device = store.device("dev-01")
        assert device is not None and device.centre_id == "centre-01"
        assert store.stream_head("dev-01", "kiosk")["next_seq"] == 2
        assert [r.record_id for r in store.records("dev-01")] == ["01JBBBBBBBBBBBBBBBBBBBB001"]
        store.register_device("dev-02", "centre-01", PUB, NOW)  # and it writes
        assert store.device("dev-02") is not None
    finally:
        store.close()
    again = PlatformStore(url)  # at head: nothing to do
    again.close()


def test_a_fresh_database_is_created_at_head_with_the_stores_schema(url: str) -> None:
    store = PlatformStore(url)
    try:
        assert current_revision(store.engine) == head_revision()
        assert _schema_diff(store.engine) == []
    finally:
        store.close()


def test_an_older_revision_is_upgraded_and_keeps_its_rows(url: str) -> None:
    engine = _engine(url)
    try:
        migrate(engine, "0001")
        assert current_revision(engine) == "0001"
        _rows_at_0001(engine)
    finally:
        engine.dispose()
    _check_upgraded(url)


def test_a_database_from_before_migrations_is_stamped_and_upgraded(url: str) -> None:
    engine = _engine(url)
    try:
        migrate(engine, "0001")  # the schema the server's create_all made ...
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))  # ... with no version table
        assert current_revision(engine) is None
        _rows_at_0001(engine)
    finally:
        engine.dispose()
    _check_upgraded(url)
