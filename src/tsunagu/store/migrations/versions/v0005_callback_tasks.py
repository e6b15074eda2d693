"""Callback tasks: a voicemail's "please call me back", kept until it is done, failed or
cancelled, so a restart does not lose it.

Revision ID: 0005_callback_tasks
Revises: 0004_webhook_deliveries
Create Date: 2026-12-06

Self-contained (touches no other table), so it can be re-chained after another revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_callback_tasks"
down_revision: str | None = "0004_webhook_deliveries"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "callback_tasks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("voicemail_interaction_id", sa.String(36), nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("recording", sa.String(500), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_interaction_id", sa.String(36), nullable=True),
        sa.Column("last_agent", sa.String(64), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'dialling', 'done', 'failed', 'cancelled')",
            name="ck_callback_tasks_state",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_callback_tasks"),
    )
    op.create_index("ix_callback_tasks_created_at_id", "callback_tasks", ["created_at", "id"])
    op.create_index("ix_callback_tasks_state_queue", "callback_tasks", ["state", "queue"])
    op.create_index(
        "ix_callback_tasks_voicemail_interaction_id",
        "callback_tasks",
        ["voicemail_interaction_id"],
    )


def downgrade() -> None:
    op.drop_table("callback_tasks")
