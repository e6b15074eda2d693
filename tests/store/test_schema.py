"""Migrations: an older database is upgraded with its data, the schema matches the models,
a database newer than the code is refused, and the connection set-up is what we rely on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from tsunagu.store import (
    InteractionFilter,
    SchemaError,
    Store,
    StoreRequestError,
    default_url,
    head_revision,
    make_engine,
    migrate,
    open_store,
)
from tsunagu.store.db import normalize_url
from tsunagu.store.models import (
    PG_ATTRIBUTES_INDEX,
    SQLITE_ATTRIBUTE_INDEX,
    interaction_legs,
    metadata,
)
from tsunagu.store.schema import current_revision

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


async def test_upgrade_older_database_keeps_its_data(empty_url: str) -> None:
    # A database from the release that only had the configuration tables.
    assert await migrate(empty_url, "0001_config") == "0001_config"
    old = await open_store(empty_url, migrate_schema=False)
    try:
        await old.config.put("flows", "main", {"entry": "welcome", "名前": "受付"}, "admin")
        await old.config.put("numbers", "0501234567", {"flow": "main"}, "admin")
        await old.config.put("flows", "main", {"entry": "menu", "名前": "受付"}, "admin")
        await old.config.delete("numbers", "0501234567", "admin")
        before = await old.config.changes_since(0)
        with pytest.raises(DBAPIError):
            await old.history.start_interaction(direction="inbound", caller="1", dialled="2")
    finally:
        await old.close()

    assert await migrate(empty_url) == head_revision()

    new = await open_store(empty_url)
    try:
        assert await current_revision(new.engine) == head_revision()
        assert await new.config.current_revision() == 4
        main = await new.config.get("flows", "main")
        assert main is not None
        assert main.document == {"entry": "menu", "名前": "受付"}
        assert main.version == 2
        assert await new.config.get("numbers", "0501234567") is None
        assert await new.config.changes_since(0) == before
        # The new tables work, and the next revision continues the old log.
        started = await new.history.start_interaction(
            direction="inbound", caller="0312345678", dialled="0501234567", started_at=T0
        )
        page = await new.history.search(InteractionFilter())
        assert [i.id for i in page.items] == [started.id]
        change = await new.config.put("queues", "support", {"strategy": "longest_idle"}, "a")
        assert change.revision == 5
    finally:
        await new.close()


async def test_upgrade_indexes_the_attributes_already_stored(empty_url: str) -> None:
    # Interactions written before the attribute index existed are found after the upgrade.
    assert await migrate(empty_url, "0004_webhook_deliveries") == "0004_webhook_deliveries"
    old = await open_store(empty_url, migrate_schema=False)
    try:
        kept = await old.history.start_interaction(
            direction="inbound",
            caller="0311112222",
            dialled="0312345678",
            started_at=T0,
            attributes={"account": "A-7"},
        )
    finally:
        await old.close()
    new = await open_store(empty_url)
    try:
        page = await new.history.search(InteractionFilter(attributes={"account": "A-7"}))
        assert [i.id for i in page.items] == [kept.id]
    finally:
        await new.close()


async def test_migrate_is_idempotent(empty_url: str) -> None:
    assert await migrate(empty_url) == head_revision()
    assert await migrate(empty_url) == head_revision()
    engine = make_engine(empty_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert [r[0] for r in rows] == [head_revision()]
    finally:
        await engine.dispose()


async def test_schema_created_by_migrations_matches_models(store: Store) -> None:
    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with store.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    # The GIN index exists on PostgreSQL only, and the attribute side table on SQLite only,
    # on purpose (models.PG_ATTRIBUTES_INDEX, models.SQLITE_ATTRIBUTE_INDEX).
    differences = [
        d
        for d in differences
        if not (
            isinstance(d, tuple)
            and (
                (d[0] == "remove_index" and d[1].name == PG_ATTRIBUTES_INDEX)
                or (d[0] == "remove_table" and d[1].name == SQLITE_ATTRIBUTE_INDEX)
                or (d[0] == "remove_index" and d[1].table.name == SQLITE_ATTRIBUTE_INDEX)
            )
        )
    ]
    assert differences == []


async def test_database_newer_than_the_code_is_refused(empty_url: str) -> None:
    await migrate(empty_url)
    engine = make_engine(empty_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    finally:
        await engine.dispose()
    with pytest.raises(SchemaError, match="newer version") as caught:
        await open_store(empty_url)
    assert caught.value.details["database_revision"] == "0099_future"


async def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError):
        async with store.db.write() as conn:
            await conn.execute(
                insert(interaction_legs).values(
                    id="leg-1",
                    interaction_id="no-such-interaction",
                    role="caller",
                    started_at=T0,
                )
            )


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    store = await open_store(default_url(tmp_path / "data"))
    try:
        assert (tmp_path / "data" / "tsunagu.sqlite3").exists()
        async with store.db.read() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
    finally:
        await store.close()


async def test_times_are_returned_as_utc_whatever_zone_went_in(store: Store) -> None:
    jst = timezone(timedelta(hours=9))
    local = datetime(2025, 4, 1, 18, 30, 15, 123456, tzinfo=jst)
    started = await store.history.start_interaction(
        direction="inbound", caller="1", dialled="2", started_at=local
    )
    record = await store.history.get(started.id)
    assert record is not None
    got = record.interaction.started_at
    assert got == local
    assert got.utcoffset() == timedelta(0)
    assert got.hour == 9 and got.microsecond == 123456
    with pytest.raises(StoreRequestError, match="timezone-aware"):
        await store.history.start_interaction(
            direction="inbound", caller="1", dialled="2", started_at=datetime(2025, 4, 1, 9, 0)
        )


def test_operator_urls_get_the_async_drivers() -> None:
    assert normalize_url("postgres://u:p@db/tsunagu").drivername == "postgresql+asyncpg"
    assert normalize_url("postgresql://u:p@db/tsunagu").drivername == "postgresql+asyncpg"
    assert normalize_url("sqlite:///var/tsunagu.sqlite3").drivername == "sqlite+aiosqlite"
    assert normalize_url("sqlite+aiosqlite:///x.db").database == "x.db"
    with pytest.raises(StoreRequestError, match="unsupported"):
        normalize_url("mysql://u@db/tsunagu")
    with pytest.raises(StoreRequestError, match="not a database URL"):
        normalize_url("not a url")
