"""Webhook dead letters: deliveries that gave up, kept until an operator redelivers them.

Revision ID: 0004_webhook_deliveries
Revises: 0003_agent_states
Create Date: 2025-12-06

Self-contained (touches no other table), so it can be re-chained after another revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_webhook_deliveries"
down_revision: str | None = "0003_agent_states"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "webhook_dead_letters",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("webhook", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redelivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_dead_letters"),
    )
    op.create_index("ix_webhook_dead_letters_dead_at_id", "webhook_dead_letters", ["dead_at", "id"])
    op.create_index(
        "ix_webhook_dead_letters_webhook_redelivered_at",
        "webhook_dead_letters",
        ["webhook", "redelivered_at"],
    )


def downgrade() -> None:
    op.drop_table("webhook_dead_letters")
