"""History family: one interaction per conversation, with legs, agents and a timeline.

Revision ID: 0002_history
Revises: 0001_config
Create Date: 2025-11-22
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_history"
down_revision: str | None = "0001_config"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _auto_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["interaction_id"],
        ["interactions.id"],
        name=f"fk_{table}_interaction_id_interactions",
        ondelete="CASCADE",
    )


def _ts(name: str, *, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("dialled", sa.String(128), nullable=False),
        _ts("started_at", nullable=False),
        _ts("queued_at"),
        _ts("answered_at"),
        _ts("ended_at"),
        sa.Column("queue", sa.String(200), nullable=True),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disposition", sa.String(32), nullable=True),
        sa.Column("flow_path", _json(), nullable=False),
        sa.Column("transfers", _json(), nullable=False),
        sa.Column("recordings", _json(), nullable=False),
        sa.Column("attributes", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_interactions"),
    )
    for columns in (
        ["started_at", "id"],
        ["caller", "started_at"],
        ["dialled", "started_at"],
        ["queue", "started_at"],
        ["disposition", "started_at"],
        ["status", "node"],
    ):
        op.create_index(f"ix_interactions_{'_'.join(columns)}", "interactions", columns)
    if op.get_bind().dialect.name == "postgresql":
        # Attribute filters use ``attributes @> '{"k": "v"}'``, which this index serves.
        op.create_index(
            "ix_interactions_attributes_gin",
            "interactions",
            ["attributes"],
            postgresql_using="gin",
            postgresql_ops={"attributes": "jsonb_path_ops"},
        )

    op.create_table(
        "interaction_legs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("interaction_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("call_id", sa.String(255), nullable=True),
        sa.Column("peer", sa.String(255), nullable=True),
        _ts("started_at", nullable=False),
        _ts("answered_at"),
        _ts("ended_at"),
        sa.Column("end_reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_interaction_legs"),
        _fk("interaction_legs"),
    )
    op.create_index("ix_interaction_legs_interaction_id", "interaction_legs", ["interaction_id"])
    op.create_index("ix_interaction_legs_call_id", "interaction_legs", ["call_id"])

    op.create_table(
        "interaction_agents",
        sa.Column("id", _auto_id(), autoincrement=True, nullable=False),
        sa.Column("interaction_id", sa.String(36), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        _ts("at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_interaction_agents"),
        _fk("interaction_agents"),
    )
    op.create_index(
        "ix_interaction_agents_interaction_id", "interaction_agents", ["interaction_id"]
    )
    op.create_index(
        "ix_interaction_agents_agent_stage_interaction_id",
        "interaction_agents",
        ["agent", "stage", "interaction_id"],
    )

    op.create_table(
        "interaction_events",
        sa.Column("id", _auto_id(), autoincrement=True, nullable=False),
        sa.Column("interaction_id", sa.String(36), nullable=False),
        _ts("at", nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_interaction_events"),
        _fk("interaction_events"),
    )
    op.create_index(
        "ix_interaction_events_interaction_id_at", "interaction_events", ["interaction_id", "at"]
    )


def downgrade() -> None:
    op.drop_table("interaction_events")
    op.drop_table("interaction_agents")
    op.drop_table("interaction_legs")
    op.drop_table("interactions")
