"""The platform schema as the reference server created it before migrations:
devices, streams, records, the money ledger view, Idempotency-Key answers,
nonces, datasets and consent changes.

A database made by that server (``create_all``, no version table) is stamped at
this revision by sync.platform.migrate and upgraded from here.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit on PostgreSQL; INTEGER (already 64-bit) on SQLite.
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.String(100), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("registered_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_devices"),
    )
    op.create_table(
        "streams",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("next_seq", sa.Integer, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("quarantined", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "stream", name="pk_streams"),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("record_id", sa.String(26), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("stored_as", sa.String(12), nullable=False),
        sa.Column("quarantine_reason", sa.String(40), nullable=True),
        sa.Column("quarantine_detail", sa.Text, nullable=True),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("device_id", "stream", "seq", name="uq_records_device_stream_seq"),
        sa.UniqueConstraint("device_id", "record_id", name="uq_records_device_record_id"),
    )
    op.create_table(
        "wallets",
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("resident_id", sa.String(64), nullable=False),
        sa.Column("balance_fen", BigInt, nullable=False),
        sa.Column("record_id", sa.String(26), nullable=False),
        sa.PrimaryKeyConstraint("centre_id", "resident_id", name="pk_wallets"),
    )
    op.create_table(
        "meal_ledger",
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(26), nullable=False),
        sa.Column("resident_id", sa.String(64), nullable=False),
        sa.Column("paid_fen", BigInt, nullable=False),
        sa.Column("refunded_fen", BigInt, nullable=False),
        sa.Column("voided", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("centre_id", "record_id", name="pk_meal_ledger"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "key", name="pk_idempotency_keys"),
    )
    op.create_table(
        "nonces",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("created", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "nonce", name="pk_nonces"),
    )
    op.create_index("ix_nonces_created", "nonces", ["created"])
    op.create_table(
        "datasets",
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("etag", sa.String(200), nullable=False),
        sa.Column("issued_at", sa.String(40), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("centre_id", "kind", name="pk_datasets"),
    )
    op.create_table(
        "consent_changes",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("centre_id", sa.String(64), nullable=False),
        sa.Column("change", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_changes"),
    )
    op.create_index("ix_consent_changes_centre_id", "consent_changes", ["centre_id"])


def downgrade() -> None:
    for table in (
        "consent_changes",
        "datasets",
        "nonces",
        "idempotency_keys",
        "meal_ledger",
        "wallets",
        "records",
        "streams",
        "devices",
    ):
        op.drop_table(table)
