"""Alembic environment of the platform database: run programmatically by
sync.platform.migrate (never the terminal's migrations: another database)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the programmatic path is supported
    raise RuntimeError("run platform migrations through sync.platform.migrate")

context.configure(
    connection=connection,
    target_metadata=None,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table=context.config.attributes["version_table"],
)
with context.begin_transaction():
    context.run_migrations()
