"""The district wallet (spec 1.3, visit policy ``home_wallet``): one wallet per
senior of the district, held by the platform, and its entries (top-ups,
debits with a meal's claim, refunds of voided meals, releases of debits whose
meal arrived paid otherwise or that district staff released, re-debits of a
released meal that arrived paid from the wallet after all, reversals of a
mistaken top-up), each unique per (kind, record); ``note`` holds the staff id
and reason of a hand-made correction.

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

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "district_wallets",
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("balance_fen", BigInt, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("person_id", name="pk_district_wallets"),
    )
    op.create_table(
        "district_wallet_entries",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("ref_id", sa.String(26), nullable=False),
        sa.Column("meal_record_id", sa.String(26), nullable=True),
        sa.Column("claim_id", sa.String(26), nullable=True),
        sa.Column("amount_fen", BigInt, nullable=False),
        sa.Column("balance_before_fen", BigInt, nullable=False),
        sa.Column("balance_after_fen", BigInt, nullable=False),
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("note", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_district_wallet_entries"),
        sa.UniqueConstraint("kind", "ref_id", name="uq_district_wallet_entries_kind_ref_id"),
    )
    op.create_index(
        "ix_district_wallet_entries_meal_record_id",
        "district_wallet_entries",
        ["meal_record_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_district_wallet_entries_meal_record_id", table_name="district_wallet_entries")
    op.drop_table("district_wallet_entries")
    op.drop_table("district_wallets")
