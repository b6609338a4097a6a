"""Charge intents: one row per kiosk charge request, written before the charge.

A request's random id is persisted (and committed) before its charge
transaction runs; the charge transaction marks it committed (with the record
id) or failed. At start-up, intents still open are closed as abandoned and
committed charges nobody was told about are reported (see payment.store).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charge_intents",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("session", sa.Integer, nullable=False),
        sa.Column("resident_id", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("slot", sa.String(12), nullable=False),
        sa.Column("due_fen", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("closed_at", sa.String(40), nullable=True),
        sa.Column("record_id", sa.String(26), nullable=True),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("shown_at", sa.String(40), nullable=True),
        sa.Column("shown_by", sa.String(12), nullable=True),
        sa.CheckConstraint(
            "status IN ('open','committed','failed','abandoned')", name="intent_status_known"
        ),
    )
    op.create_index("ix_charge_intents_status", "charge_intents", ["status"])


def downgrade() -> None:
    op.drop_index("ix_charge_intents_status", table_name="charge_intents")
    op.drop_table("charge_intents")
