"""Foundation: hash chain head, outbox, resident roster, face templates, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.String(26), nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("acked_at", sa.String(40), nullable=True),
        sa.CheckConstraint("status IN ('pending','acked','dead')", name="status_known"),
    )
    op.create_index("ix_outbox_status_seq", "outbox", ["status", "seq"])
    op.create_table(
        "residents",
        sa.Column("resident_id", sa.String(64), primary_key=True),
        sa.Column("name_enc", sa.LargeBinary, nullable=False),
        sa.Column("name_masked", sa.String(64), nullable=False),
        sa.Column("id_number_enc", sa.LargeBinary, nullable=True),
        sa.Column("phone_last4", sa.String(4), nullable=True),
        sa.Column("categories", sa.Text, nullable=False, server_default="[]"),
        sa.Column("card_ids", sa.Text, nullable=False, server_default="[]"),
        sa.Column("consent_face_pay", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("consent_attendance", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("consent_updated_at", sa.String(40), nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "face_templates",
        sa.Column("template_id", sa.String(26), primary_key=True),
        sa.Column(
            "resident_id",
            sa.String(64),
            sa.ForeignKey("residents.resident_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("template_enc", sa.LargeBinary, nullable=False),
        sa.Column("quality", sa.Float, nullable=False),
        sa.Column("pack_id", sa.String(80), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_face_templates_resident", "face_templates", ["resident_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=True),
        sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index("ix_face_templates_resident", table_name="face_templates")
    op.drop_table("face_templates")
    op.drop_table("residents")
    op.drop_index("ix_outbox_status_seq", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("chain_head")
