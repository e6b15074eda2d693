"""Shared database fixtures: every store and API test runs on SQLite and on a real PostgreSQL.

They live at the root so the store and API tests share one PostgreSQL per session.

PostgreSQL is started once per session from the Debian server binaries into a temporary
directory, listening on a free port on 127.0.0.1 (and a socket in that directory), with
durability switched off (``fsync=off``: these databases are thrown away). PostgreSQL
refuses to run as root, so when the tests run as root the server runs as the ``postgres``
OS user through ``runuser``. A template database is migrated once; each test gets its own
copy (``CREATE DATABASE … TEMPLATE``), dropped afterwards.

Environment:
  ``TSUNAGU_TEST_PG_URL``  use this running server instead (a superuser URL, e.g.
                           ``postgresql://postgres@127.0.0.1:5432/postgres``)
  ``TSUNAGU_TEST_SKIP_PG`` set to 1 to skip the PostgreSQL half (it fails otherwise when
                           no server can be started, so CI cannot silently lose it)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.pgcluster import PgCluster, PgClusterError
from tsunagu.store import Store, migrate, open_store

T = TypeVar("T")
TEMPLATE_DB = "tsunagu_template"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a private loop in a thread (for session fixtures, which must not
    disturb the per-test loops of pytest-asyncio)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True)
class PgServer:
    admin_url: str

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(False)

    async def execute(self, *statements: str) -> None:
        engine = create_async_engine(
            make_url(self.admin_url).set(drivername="postgresql+asyncpg"),
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
        )
        try:
            async with engine.connect() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if os.environ.get("TSUNAGU_TEST_SKIP_PG") == "1":
        pytest.skip("PostgreSQL tests skipped (TSUNAGU_TEST_SKIP_PG=1)")
    if url := os.environ.get("TSUNAGU_TEST_PG_URL"):
        yield PgServer(url)
        return
    cluster = PgCluster()
    try:
        cluster.start()
    except PgClusterError as exc:
        pytest.fail(f"{exc} (or set TSUNAGU_TEST_PG_URL or TSUNAGU_TEST_SKIP_PG=1)")
    try:
        yield PgServer(cluster.admin_url)
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    """A database migrated to head, copied for each test (much faster than migrating)."""

    async def build() -> None:
        await pg_server.execute(
            f"DROP DATABASE IF EXISTS {TEMPLATE_DB}", f"CREATE DATABASE {TEMPLATE_DB}"
        )
        await migrate(pg_server.url(TEMPLATE_DB))

    run_async(build())
    return TEMPLATE_DB


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def _pg_database(pg_server: PgServer, template: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    await pg_server.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield pg_server.url(name)
    finally:
        await pg_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def empty_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A URL to an empty database (no schema)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    async with _pg_database(server, "template0") as url:
        yield url


@pytest.fixture
async def store_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A URL to a database migrated to the newest schema."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
        await migrate(url)
        yield url
        return
    server: PgServer = request.getfixturevalue("pg_server")
    template: str = request.getfixturevalue("pg_template")
    async with _pg_database(server, template) as url:
        yield url


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 4, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await open_store(store_url, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()
