"""Agent state history: one row per interval an agent spent in a presence state.

Revision ID: 0003_agent_states
Revises: 0002_history
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_agent_states"
down_revision: str | None = "0002_history"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "agent_state_intervals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_state_intervals"),
    )
    # The report reads one window (optionally one agent); the writer finds the open row.
    op.create_index(
        "ix_agent_state_intervals_agent_started_at",
        "agent_state_intervals",
        ["agent", "started_at"],
    )
    op.create_index("ix_agent_state_intervals_started_at", "agent_state_intervals", ["started_at"])
    op.create_index(
        "ix_agent_state_intervals_node_ended_at", "agent_state_intervals", ["node", "ended_at"]
    )


def downgrade() -> None:
    op.drop_table("agent_state_intervals")
