"""Outbox rows remember their hash version and the centre they were hashed for.

Hash version 2 binds the whole record envelope (centre, stream, time) into the
chain hash. Rows written before this revision keep version 1 and no centre;
they are still verified and sent as version 1 records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("hash_version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("centre_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("centre_id")
        batch.drop_column("hash_version")
