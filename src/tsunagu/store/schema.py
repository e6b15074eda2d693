"""Bring a database to the schema this code needs, with Alembic, at start-up.

Why in-process and not an ``alembic upgrade`` step: a self-hosted contact center is
upgraded by installing a new version and restarting it; nobody should have to remember a
second command. All pending revisions run in ONE transaction, so a failed upgrade leaves
the old schema intact (SQLite and PostgreSQL both have transactional DDL). On PostgreSQL
an advisory lock makes several nodes starting at once upgrade one after the other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tsunagu.store.db import WRITE_OPTION, make_engine, safe_url
from tsunagu.store.errors import SchemaError

log = logging.getLogger("tsunagu.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Key of the PostgreSQL advisory lock held while migrating (``"tsunagu"`` as a number).
_PG_MIGRATION_LOCK = 0x7473756E616775


def alembic_config() -> Config:
    """The Alembic configuration (no ini file: everything is set here)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Revision files are named v<rev id>.py: a module name may not start with a digit.
    cfg.set_main_option("file_template", "v%%(rev)s")
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, target: str) -> tuple[str | None, str | None]:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    before = _current(connection)
    scripts = ScriptDirectory.from_config(alembic_config())
    if before is not None:
        try:
            scripts.get_revision(before)
        except CommandError:
            raise SchemaError(
                f"the database is at schema revision {before!r}, which this version of "
                f"Tsunagu does not know (newest known: {scripts.get_current_head()!r}); "
                "it was probably written by a newer version - upgrade Tsunagu",
                database_revision=before,
            ) from None
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, target)
    return before, _current(connection)


async def migrate_engine(engine: AsyncEngine, revision: str = "head") -> str:
    """Upgrade the database behind ``engine`` to ``revision``; return the revision now
    in place. Safe to call on every start: an up-to-date database is left untouched."""
    try:
        async with engine.connect() as conn:
            await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                before, after = await conn.run_sync(_upgrade, revision)
    except CommandError as exc:
        raise SchemaError(f"database migration failed: {exc}") from exc
    if before != after:
        log.info(
            "database schema upgraded",
            extra={"url": safe_url(engine.url), "from": before, "to": after},
        )
    assert after is not None
    return after


async def migrate(url: str, revision: str = "head") -> str:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest)."""
    engine = make_engine(url)
    try:
        return await migrate_engine(engine, revision)
    finally:
        await engine.dispose()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at (``None`` for an empty database)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
