"""Engines and transactions for SQLite (default) and PostgreSQL (by URL).

Why the SQLite set-up looks the way it does:

* ``journal_mode=WAL`` lets the API read while a call writes; ``foreign_keys=ON`` because
  SQLite ignores foreign keys unless told, per connection; ``busy_timeout`` so a second
  process (``tsunagu config apply`` beside ``serve``) waits instead of failing.
* pysqlite's own transaction handling begins a transaction lazily at the first write, so a
  read-then-write transaction can fail to upgrade its lock (``SQLITE_BUSY``, not retried).
  We switch that off and emit ``BEGIN`` ourselves: ``BEGIN IMMEDIATE`` for writes (the
  write lock is taken up front, then every read inside sees the latest data), a deferred
  ``BEGIN`` for reads. Writes from one process are also queued on an ``asyncio.Lock`` so
  they do not spin in SQLite's busy handler.

PostgreSQL runs at its default READ COMMITTED; the writers that need ordering take row
locks (see :mod:`tsunagu.store.config_store`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tsunagu.store.errors import StoreRequestError
from tsunagu.store.types import require_utc

log = logging.getLogger("tsunagu.store")

#: The database file inside the data directory when no URL is configured.
DEFAULT_FILE_NAME = "tsunagu.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Execution option that makes SQLite open the transaction with ``BEGIN IMMEDIATE``.
WRITE_OPTION = "tsunagu_write"

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Wall-clock UTC now; the default :data:`Clock` (tests pass their own)."""
    return datetime.now(UTC)


def default_url(data_dir: Path) -> str:
    """The SQLite database in ``data_dir`` (the default store)."""
    return f"sqlite+aiosqlite:///{(data_dir / DEFAULT_FILE_NAME).resolve()}"


def normalize_url(url: str) -> URL:
    """Accept the URLs operators write and pick the async driver.

    ``postgresql://`` and ``postgres://`` become ``postgresql+asyncpg://``; ``sqlite:///``
    becomes ``sqlite+aiosqlite:///``. Anything else is refused with the supported forms.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreRequestError(f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    driver = parsed.get_driver_name()
    if backend == "postgresql" and driver in ("asyncpg", "psycopg2", "psycopg"):
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite" and driver in ("pysqlite", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    raise StoreRequestError(
        f"unsupported database URL scheme {parsed.drivername!r}; use "
        "postgresql://user:password@host/dbname or sqlite:///path/to/file.sqlite3",
        scheme=parsed.drivername,
    )


def safe_url(url: str | URL) -> str:
    """The URL for log lines: the password is masked."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


_json_dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


def make_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url`` with Tsunagu's connection set-up applied."""
    parsed = normalize_url(url if isinstance(url, str) else url.render_as_string(False))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, json_serializer=_json_dumps, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(parsed, json_serializer=_json_dumps, **kwargs)


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """An engine plus the two kinds of transaction every store operation uses, and the
    clock that stamps records when the caller gives no time."""

    def __init__(self, engine: AsyncEngine, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._clock = clock
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def now(self) -> datetime:
        return require_utc(self._clock(), "clock")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (a consistent snapshot on PostgreSQL per statement,
        on SQLite for the whole block)."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One short write transaction: committed when the block ends, rolled back if it
        raises."""
        if self._write_lock is None:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                yield conn
