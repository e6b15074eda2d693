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
import glob
import os
import shutil
import socket
import subprocess
import tempfile
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


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version_key(path: str) -> int:
    part = path.split("/")[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    # The server refuses to run as root; run it as the OS user made for it.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the caller checks returncode
        _as_postgres(cmd), cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if os.environ.get("TSUNAGU_TEST_SKIP_PG") == "1":
        pytest.skip("PostgreSQL tests skipped (TSUNAGU_TEST_SKIP_PG=1)")
    if url := os.environ.get("TSUNAGU_TEST_PG_URL"):
        yield PgServer(url)
        return
    bindir = _bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: run "
            "scripts/install-test-packages.sh, or set TSUNAGU_TEST_PG_URL or "
            "TSUNAGU_TEST_SKIP_PG=1"
        )
    base = Path(tempfile.mkdtemp(prefix="tsunagu-pg-", dir="/tmp"))
    base.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    log = base / "server.log"
    init = _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        base,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    port = 0
    started = None
    for _ in range(3):
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        started = _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "start",
            ],
            base,
        )
        if started.returncode == 0:
            break
    if started is None or started.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start:\n{tail}")
    try:
        yield PgServer(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    finally:
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], base)
        shutil.rmtree(base, ignore_errors=True)


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
