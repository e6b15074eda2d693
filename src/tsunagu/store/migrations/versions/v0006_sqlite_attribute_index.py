"""SQLite: an index of interaction attributes, kept by triggers.

Revision ID: 0006_sqlite_attribute_index
Revises: 0005_callback_tasks
Create Date: 2026-12-06

Why: searching interactions by a flow attribute (a CRM account id, say) is what an
integration does most, and on SQLite ``json_extract(attributes, '$.k') = v`` can only
scan: about 6 s over 1,000,000 interactions (docs/BENCHMARKS.md). PostgreSQL answers the
same query from the GIN index of migration 0002, so this revision does nothing there.

The side table holds one row per string-valued attribute (the only values the search
matches, see ``History._conditions``); three triggers on ``interactions`` keep it equal to
the JSON column whatever writes it (the store, a bulk import, a manual fix), so no code
path can forget it. Existing rows are indexed by the upgrade. ``WITHOUT ROWID`` with the
primary key (key, value, interaction_id) makes a lookup one b-tree descent.

Self-contained (one new table, triggers on ``interactions`` only), so it can be
re-chained after another revision.
"""

from __future__ import annotations

from alembic import op

revision = "0006_sqlite_attribute_index"
down_revision: str | None = "0005_callback_tasks"
branch_labels: str | None = None
depends_on: str | None = None

# The table is models.SQLITE_ATTRIBUTE_INDEX (the models leave it out: it exists on SQLite
# only, as the GIN index exists on PostgreSQL only).
UPGRADE = (
    "CREATE TABLE interaction_attributes ("
    " key VARCHAR(64) NOT NULL,"
    " value TEXT NOT NULL,"
    " interaction_id VARCHAR(36) NOT NULL,"
    " PRIMARY KEY (key, value, interaction_id)"
    ") WITHOUT ROWID",
    "CREATE INDEX ix_interaction_attributes_interaction ON interaction_attributes (interaction_id)",
    """CREATE TRIGGER interactions_attributes_insert AFTER INSERT ON interactions BEGIN
        INSERT INTO interaction_attributes (key, value, interaction_id)
        SELECT j.key, j.value, NEW.id FROM json_each(NEW.attributes) AS j
        WHERE j.type = 'text' AND length(j.key) <= 64;
    END""",
    """CREATE TRIGGER interactions_attributes_update AFTER UPDATE OF attributes ON interactions
    BEGIN
        DELETE FROM interaction_attributes WHERE interaction_id = OLD.id;
        INSERT INTO interaction_attributes (key, value, interaction_id)
        SELECT j.key, j.value, NEW.id FROM json_each(NEW.attributes) AS j
        WHERE j.type = 'text' AND length(j.key) <= 64;
    END""",
    """CREATE TRIGGER interactions_attributes_delete AFTER DELETE ON interactions BEGIN
        DELETE FROM interaction_attributes WHERE interaction_id = OLD.id;
    END""",
    """INSERT INTO interaction_attributes (key, value, interaction_id)
    SELECT j.key, j.value, i.id FROM interactions AS i, json_each(i.attributes) AS j
    WHERE j.type = 'text' AND length(j.key) <= 64""",
)

DOWNGRADE = (
    "DROP TRIGGER interactions_attributes_delete",
    "DROP TRIGGER interactions_attributes_update",
    "DROP TRIGGER interactions_attributes_insert",
    "DROP TABLE interaction_attributes",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in DOWNGRADE:
        op.execute(statement)
