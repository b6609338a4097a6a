"""City-wide meals (spec 1.2): the district's settings (pepper, payment policy),
the district roster the platform makes from the centres' rosters (persons and
their keys), the slot claims (one subsidised meal per senior, day and slot,
held by a unique key) and the visiting meals (for settlement and review).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "district_settings",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_district_settings"),
    )
    op.create_table(
        "visit_persons",
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("home_centre_id", sa.String(64), nullable=False),
        sa.Column("resident_id", sa.String(64), nullable=False),
        sa.Column("categories", sa.String(400), nullable=False),
        sa.Column("active", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("person_id", name="pk_visit_persons"),
    )
    op.create_table(
        "visit_keys",
        sa.Column("key_type", sa.String(12), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("key_type", "key", name="pk_visit_keys"),
    )
    op.create_table(
        "visit_claims",
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("slot", sa.String(12), nullable=False),
        sa.Column("claim_id", sa.String(26), nullable=False),
        sa.Column("record_id", sa.String(26), nullable=False),
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("claimed_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("person_id", "day", "slot", name="pk_visit_claims"),
        sa.UniqueConstraint("claim_id", name="uq_visit_claims_claim_id"),
    )
    op.create_index("ix_visit_claims_record_id", "visit_claims", ["record_id"])
    op.create_table(
        "visit_meals",
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(26), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("home_centre_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("slot", sa.String(12), nullable=False),
        sa.Column("subsidy_fen", BigInt, nullable=False),
        sa.Column("stored_as", sa.String(12), nullable=False),
        sa.Column("held_by_record_id", sa.String(26), nullable=True),
        sa.Column("held_by_centre_id", sa.String(64), nullable=True),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("centre_id", "record_id", name="pk_visit_meals"),
    )
    op.create_index("ix_visit_meals_day", "visit_meals", ["day"])


def downgrade() -> None:
    op.drop_index("ix_visit_meals_day", table_name="visit_meals")
    op.drop_table("visit_meals")
    op.drop_index("ix_visit_claims_record_id", table_name="visit_claims")
    op.drop_table("visit_claims")
    op.drop_table("visit_keys")
    op.drop_table("visit_persons")
    op.drop_table("district_settings")
