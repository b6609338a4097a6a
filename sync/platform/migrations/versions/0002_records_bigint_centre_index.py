"""Records for a city: a 64-bit record id on PostgreSQL (2,000 terminals at a
few hundred records a day pass 2^31 within years; SQLite's INTEGER is 64-bit
already), and an index by centre and kind for the district's per-centre
queries (subsidy reports; the key a partitioned table would be split by).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("records", "id", type_=sa.BigInteger(), existing_nullable=False)
        op.execute("ALTER SEQUENCE records_id_seq AS BIGINT")
    op.create_index("ix_records_centre_kind", "records", ["centre_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_records_centre_kind", table_name="records")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE records_id_seq AS INTEGER")
        op.alter_column("records", "id", type_=sa.Integer(), existing_nullable=False)
