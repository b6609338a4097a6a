"""The throw-away PostgreSQL server of the platform tests (it lives in
sync.platform.pgtemp, where `bench platform` uses it too)."""

from sync.platform.pgtemp import (
    PG_USER,
    PgServer,
    PgUnavailable,
    find_pg_bin,
    missing_reason,
    pg_server,
)

__all__ = ["PG_USER", "PgServer", "PgUnavailable", "find_pg_bin", "missing_reason", "pg_server"]
