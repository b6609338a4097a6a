"""SQLite through SQLAlchemy 2.0: engine with pragmas, writer sessions,
migrations, boot checks, the outbox with its hash chain, and field encryption."""
