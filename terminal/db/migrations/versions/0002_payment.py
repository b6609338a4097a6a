"""Payment: ledger entries, derived wallet balances, menus, subsidy policies,
ID-card blind index on residents.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("residents") as batch:
        batch.add_column(sa.Column("id_number_index", sa.String(64), nullable=True))
        batch.create_index("ix_residents_id_number_index", ["id_number_index"])
    op.create_table(
        "ledger_entries",
        sa.Column("entry_id", sa.String(26), primary_key=True),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column(
            "resident_id", sa.String(64), sa.ForeignKey("residents.resident_id"), nullable=False
        ),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("day", sa.String(10), nullable=True),
        sa.Column("slot", sa.String(12), nullable=True),
        sa.Column("amount_fen", sa.Integer, nullable=False),
        sa.Column("list_fen", sa.Integer, nullable=False),
        sa.Column("subsidy_fen", sa.Integer, nullable=False),
        sa.Column("wallet_delta_fen", sa.Integer, nullable=False),
        sa.Column("balance_after_fen", sa.Integer, nullable=False),
        sa.Column("method", sa.String(12), nullable=True),
        sa.Column("verification", sa.String(80), nullable=True),
        sa.Column("ref_id", sa.String(26), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("staff_id", sa.String(64), nullable=True),
        sa.Column("request_key", sa.String(64), nullable=True, unique=True),
        sa.Column("seq", sa.Integer, sa.ForeignKey("outbox.seq"), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
        sa.CheckConstraint("kind IN ('charge','topup','void','refund')", name="kind_known"),
    )
    op.create_index("ix_ledger_resident_day", "ledger_entries", ["resident_id", "day"])
    op.create_index("ix_ledger_day", "ledger_entries", ["day"])
    op.create_index("ix_ledger_ref", "ledger_entries", ["ref_id"])
    op.create_table(
        "wallets",
        sa.Column(
            "resident_id", sa.String(64), sa.ForeignKey("residents.resident_id"), primary_key=True
        ),
        sa.Column("balance_fen", sa.Integer, nullable=False),
        sa.Column("last_entry_id", sa.String(26), nullable=False),
    )
    op.create_table(
        "menus",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "subsidy_policies",
        sa.Column("policy_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("effective_from", sa.String(10), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("subsidy_policies")
    op.drop_table("menus")
    op.drop_table("wallets")
    op.drop_index("ix_ledger_ref", table_name="ledger_entries")
    op.drop_index("ix_ledger_day", table_name="ledger_entries")
    op.drop_index("ix_ledger_resident_day", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    with op.batch_alter_table("residents") as batch:
        batch.drop_index("ix_residents_id_number_index")
        batch.drop_column("id_number_index")
