"""The tables, as SQLAlchemy Core metadata used to build queries.

The schema itself is created by the Alembic migrations in ``migrations/versions`` (never by
``create_all``); ``tests/store/test_schema.py`` checks that the two agree. When a table
changes, write a migration *and* change this file.

Two families, kept apart because they live different lives (docs/STORAGE.md):

* configuration — ``config_entities`` (current state, one row per kind and name, deleted
  rows kept as tombstones), ``config_changes`` (the append-only, gap-free change log that
  DR replicates) and ``config_revision`` (one row: the last revision handed out).
* history — ``interactions`` (one row per conversation), ``interaction_legs``,
  ``interaction_agents`` (who was offered, rung, answered) and ``interaction_events``
  (the timeline). History is never replicated; each site keeps its own.
* agent states — ``agent_state_intervals``: each stretch of time an agent spent in one
  presence state (the "time per agent state" report); history too, never replicated.
* events — ``webhook_dead_letters``: webhook deliveries that gave up (node-local, like
  history).
* callbacks — ``callback_tasks``: a voicemail's callback task until it is done, failed or
  cancelled (node-local: the node whose ACD dials it).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from tsunagu.store.types import JSON_TYPE, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets ``bigserial``.
_AUTO_ID = BigInteger().with_variant(Integer(), "sqlite")

# --- configuration family -------------------------------------------------------------

config_revision = Table(
    "config_revision",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

config_entities = Table(
    "config_entities",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("document", JSON_TYPE, nullable=True),
    Column("revision", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

config_changes = Table(
    "config_changes",
    metadata,
    Column("revision", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("operation", String(8), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("before", JSON_TYPE, nullable=True),
    Column("after", JSON_TYPE, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index(None, "kind", "name", "revision"),
)

# --- history family -------------------------------------------------------------------

interactions = Table(
    "interactions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("node", String(64), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("caller", String(128), nullable=False),
    Column("dialled", String(128), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("queued_at", UtcDateTime, nullable=True),
    Column("answered_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("queue", String(200), nullable=True),
    Column("wait_seconds", Float, nullable=True),
    Column("status", String(16), nullable=False),
    Column("disposition", String(32), nullable=True),
    Column("flow_path", JSON_TYPE, nullable=False),
    Column("transfers", JSON_TYPE, nullable=False),
    Column("recordings", JSON_TYPE, nullable=False),
    Column("attributes", JSON_TYPE, nullable=False),
    Index(None, "started_at", "id"),
    Index(None, "caller", "started_at"),
    Index(None, "dialled", "started_at"),
    Index(None, "queue", "started_at"),
    Index(None, "disposition", "started_at"),
    Index(None, "status", "node"),
)

#: Created by migration 0002 on PostgreSQL only (``jsonb_path_ops`` GIN for ``@>``
#: attribute filters); SQLite has no equivalent, so it is not part of :data:`metadata`.
PG_ATTRIBUTES_INDEX = "ix_interactions_attributes_gin"

#: Created by migration 0006 on SQLite only: one row per string-valued attribute, kept by
#: triggers on ``interactions`` (SQLite cannot index inside JSON for any key). Not part of
#: :data:`metadata` for the same reason as the GIN index; searched with :func:`text`.
SQLITE_ATTRIBUTE_INDEX = "interaction_attributes"

interaction_legs = Table(
    "interaction_legs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "interaction_id",
        String(36),
        ForeignKey("interactions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("role", String(16), nullable=False),
    Column("call_id", String(255), nullable=True, index=True),
    Column("peer", String(255), nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("answered_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("end_reason", String(64), nullable=True),
)

interaction_agents = Table(
    "interaction_agents",
    metadata,
    Column("id", _AUTO_ID, primary_key=True, autoincrement=True),
    Column(
        "interaction_id",
        String(36),
        ForeignKey("interactions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("agent", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index(None, "agent", "stage", "interaction_id"),
)

interaction_events = Table(
    "interaction_events",
    metadata,
    Column("id", _AUTO_ID, primary_key=True, autoincrement=True),
    Column(
        "interaction_id",
        String(36),
        ForeignKey("interactions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", UtcDateTime, nullable=False),
    Column("type", String(64), nullable=False),
    Column("data", JSON_TYPE, nullable=False),
    Index(None, "interaction_id", "at"),
)

# --- agent state history ----------------------------------------------------------------

agent_state_intervals = Table(
    "agent_state_intervals",
    metadata,
    Column("id", _AUTO_ID, primary_key=True, autoincrement=True),
    Column("node", String(64), nullable=False),
    Column("agent", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    #: NULL while the agent is still in this state.
    Column("ended_at", UtcDateTime, nullable=True),
    #: Closed at start-up because the server stopped without closing it (a crash).
    Column("interrupted", Boolean, nullable=False),
    Index(None, "agent", "started_at"),
    Index(None, "started_at"),
    Index(None, "node", "ended_at"),
)

# --- events ---------------------------------------------------------------------------

webhook_dead_letters = Table(
    "webhook_dead_letters",
    metadata,
    Column("id", String(36), primary_key=True),  # the delivery id (X-Tsunagu-Delivery)
    Column("webhook", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("payload", JSON_TYPE, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("dead_at", UtcDateTime, nullable=False),
    Column("redelivered_at", UtcDateTime, nullable=True),
    Index(None, "dead_at", "id"),
    Index(None, "webhook", "redelivered_at"),
)

# --- callback tasks ---------------------------------------------------------------------

callback_tasks = Table(
    "callback_tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    #: The voicemail interaction the task answers (no foreign key: a task outlives a
    #: history purge, and it is written from another queue than the interaction).
    Column("voicemail_interaction_id", String(36), nullable=False, index=True),
    #: The customer's number, dialled through the trunk.
    Column("caller", String(128), nullable=False),
    #: NULL: unassigned (the caller never queued and the block named no queue).
    Column("queue", String(64), nullable=True),
    #: The voicemail recording's file, played to the agent before the customer is dialled.
    Column("recording", String(500), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    #: Not offered again before this (the retry delay after an unanswered attempt).
    Column("not_before", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    #: The interaction of the last attempt (direction outbound, disposition callback).
    Column("last_interaction_id", String(36), nullable=True),
    Column("last_agent", String(64), nullable=True),
    Column("last_error", String(200), nullable=True),
    CheckConstraint(
        "state IN ('pending', 'dialling', 'done', 'failed', 'cancelled')",
        name="state",
    ),
    Index(None, "created_at", "id"),
    Index(None, "state", "queue"),
)
