"""Interaction search over a million stored conversations, on SQLite and on PostgreSQL.

What an analyst or a CRM integration does all day is search the history: the last day's
calls, one customer's calls, one agent's answered calls this week, calls carrying a CRM
attribute, and paging deep into a result. This benchmark fills a fresh database of each
backend with ``BENCH_SEARCH_ROWS`` interactions (default 1,000,000: spread over 90 days,
5 queues, 50 agents, 20 dialled numbers, 1-3 legs each, offered/answered agent rows,
attributes) and times :meth:`tsunagu.store.history.History.search` — the code the REST API
calls — for each query, p50/p95/p99 over a bounded number of runs.

The peer is the same query hand-written in SQL, run through the same engine and driver
(with the same second query for the page's agents), so the ratio is what Tsunagu's query
building and row mapping cost on top of the database's own work. The query plan of each
raw query is summarised (index or scan) so a slow line says why.

Filling uses bulk paths (``executemany`` in large batches on SQLite, ``COPY`` on
PostgreSQL) into the real migrated schema, so indexes are maintained as in production.
PostgreSQL is a throwaway cluster (tests/pgcluster.py), SQLite a file in a temp directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from tests.pgcluster import PgCluster

from tsunagu.store import Store, migrate, open_store
from tsunagu.store.interactions import Disposition, InteractionFilter, Status

ROWS = int(os.environ.get("BENCH_SEARCH_ROWS", "1000000"))
RUNS = int(os.environ.get("BENCH_SEARCH_RUNS", "200"))
BATCH = 20_000
DAYS = 90
QUEUES = ("support", "sales", "billing", "vip", "english")
AGENTS = tuple(f"{1001 + i}" for i in range(50))
NUMBERS = tuple(f"+8131234{5600 + i:04d}" for i in range(20))
#: The window ends here, so "the last 24 hours" is a fixed slice of the generated data.
END = datetime(2026, 12, 1, tzinfo=UTC)
DISPOSITIONS = (
    (Disposition.ANSWERED, 0.78),
    (Disposition.ABANDONED, 0.08),
    (Disposition.SHORT_ABANDONED, 0.04),
    (Disposition.AFTER_HOURS, 0.04),
    (Disposition.VOICEMAIL, 0.03),
    (Disposition.CALLBACK, 0.02),
    (Disposition.FAILED, 0.01),
)


# --- generating realistic rows ------------------------------------------------------------


def _caller(rng: random.Random) -> str:
    # 200,000 distinct customers: a popular caller has a handful of calls, most a few.
    return f"+8190{rng.randrange(200_000):08d}"


def generate(n: int, seed: int = 7) -> tuple[list[tuple[Any, ...]], ...]:
    """Rows for interactions, legs and agents as plain tuples (column order of the
    INSERTs below); timestamps are naive UTC so both bulk paths take them as they are."""
    rng = random.Random(seed)
    dispositions = [d for d, _ in DISPOSITIONS]
    weights = [w for _, w in DISPOSITIONS]
    start = END - timedelta(days=DAYS)
    span = DAYS * 86400
    calls: list[tuple[Any, ...]] = []
    legs: list[tuple[Any, ...]] = []
    agents: list[tuple[Any, ...]] = []
    for i in range(n):
        started = (start + timedelta(seconds=rng.random() * span)).replace(tzinfo=None)
        iid = f"I{i:09d}{rng.randrange(1 << 30):09d}"
        disposition = rng.choices(dispositions, weights)[0]
        queue = rng.choice(QUEUES)
        wait = rng.expovariate(1 / 40)
        queued = started + timedelta(seconds=8)
        answered = queued + timedelta(seconds=wait) if disposition is Disposition.ANSWERED else None
        ended = (answered or queued + timedelta(seconds=wait)) + timedelta(
            seconds=rng.expovariate(1 / 240)
        )
        attributes = {
            "account": f"A{rng.randrange(500_000):06d}",
            "tier": rng.choice(("gold", "silver", "bronze", "bronze")),
            "menu": rng.choice(("1", "2")),
        }
        calls.append(
            (
                iid,
                "local",
                "inbound",
                _caller(rng),
                rng.choice(NUMBERS),
                started,
                queued,
                answered,
                ended,
                queue,
                wait,
                Status.ENDED.value,
                disposition.value,
                json.dumps(
                    [
                        {"flow": "main", "version": 3, "block": b, "at": started.isoformat()}
                        for b in ("greeting", "menu", f"to_{queue}")
                    ]
                ),
                "[]",
                "[]",
                json.dumps(attributes),
            )
        )
        legs.append((f"{iid}-c", iid, "caller", f"c{i}@carrier", "carrier", started, started))
        if answered is not None:
            agent = rng.choice(AGENTS)
            legs.append((f"{iid}-a", iid, "agent", f"a{i}@tsunagu", agent, queued, answered))
            agents.append((iid, agent, "offered", queued))
            agents.append((iid, agent, "answered", answered))
            if rng.random() < 0.1:
                legs.append((f"{iid}-t", iid, "external", f"t{i}@tsunagu", "x", answered, None))
    return calls, legs, agents


CALL_COLUMNS = (
    "id, node, direction, caller, dialled, started_at, queued_at, answered_at, ended_at, "
    "queue, wait_seconds, status, disposition, flow_path, transfers, recordings, attributes"
)
LEG_COLUMNS = "id, interaction_id, role, call_id, peer, started_at, answered_at"
AGENT_COLUMNS = "interaction_id, agent, stage, at"


def _sqlite_value(value: Any) -> Any:
    # SQLAlchemy's SQLite DateTime storage format, so the store reads these rows back.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def fill_sqlite(path: Path, rows: tuple[list[tuple[Any, ...]], ...]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    for table, columns, data in zip(
        ("interactions", "interaction_legs", "interaction_agents"),
        (CALL_COLUMNS, LEG_COLUMNS, AGENT_COLUMNS),
        rows,
        strict=True,
    ):
        marks = ", ".join("?" * len(columns.split(",")))
        for at in range(0, len(data), BATCH):
            batch = [tuple(_sqlite_value(v) for v in row) for row in data[at : at + BATCH]]
            conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)
            conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


async def fill_postgresql(url: str, rows: tuple[list[tuple[Any, ...]], ...]) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        for table, columns, data in zip(
            ("interactions", "interaction_legs", "interaction_agents"),
            (CALL_COLUMNS, LEG_COLUMNS, AGENT_COLUMNS),
            rows,
            strict=True,
        ):
            names = [c.strip() for c in columns.split(",")]
            utc = [
                tuple(v.replace(tzinfo=UTC) if isinstance(v, datetime) else v for v in row)
                for row in data
            ]
            if table == "interactions":
                # COPY is binary: JSONB's binary form is a version byte (1) and the text.
                await conn.set_type_codec(
                    "jsonb",
                    encoder=lambda v: b"\x01" + v.encode(),
                    decoder=lambda v: v[1:].decode(),
                    schema="pg_catalog",
                    format="binary",
                )
            await conn.copy_records_to_table(table, records=utc, columns=names)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# --- the queries ------------------------------------------------------------------------

Query = Callable[[Store], Awaitable[int]]


def _queries(pg: bool, sample_caller: str, sample_account: str) -> list[tuple[str, Query, Query]]:
    """(label, through History.search, the same in hand-written SQL)."""
    day_ago = END - timedelta(days=1)
    week_ago = END - timedelta(days=7)
    agent = AGENTS[3]

    async def rows_of(store: Store, sql: str, params: dict[str, Any]) -> list[Any]:
        async with store.db.read() as conn:
            rows = list((await conn.execute(text(sql), params)).all())
            ids = [r[0] for r in rows[:50]]
            if ids:
                marks = ", ".join(f":i{n}" for n in range(len(ids)))
                await conn.execute(
                    text(
                        "SELECT interaction_id, agent, stage FROM interaction_agents "
                        f"WHERE interaction_id IN ({marks}) ORDER BY interaction_id, at, id"
                    ),
                    {f"i{n}": v for n, v in enumerate(ids)},
                )
        return rows

    async def raw(store: Store, sql: str, params: dict[str, Any]) -> int:
        return min(50, len(await rows_of(store, sql, params)))

    def ts(value: datetime) -> Any:
        return value if pg else value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")

    page = "ORDER BY started_at DESC, id DESC LIMIT 51"
    attr = (
        "attributes @> CAST(:attrs AS JSONB)"
        if pg
        else "id IN (SELECT interaction_id FROM interaction_attributes "
        "WHERE key = 'account' AND value = :account)"
    )

    async def last_day(store: Store) -> int:
        return len((await store.history.search(InteractionFilter(started_from=day_ago))).items)

    async def last_day_raw(store: Store) -> int:
        return await raw(
            store, f"SELECT * FROM interactions WHERE started_at >= :t {page}", {"t": ts(day_ago)}
        )

    async def caller(store: Store) -> int:
        return len((await store.history.search(InteractionFilter(caller=sample_caller))).items)

    async def caller_raw(store: Store) -> int:
        return await raw(
            store, f"SELECT * FROM interactions WHERE caller = :c {page}", {"c": sample_caller}
        )

    async def agent_week(store: Store) -> int:
        f = InteractionFilter(
            started_from=week_ago, agent=agent, dispositions=(Disposition.ANSWERED,)
        )
        return len((await store.history.search(f)).items)

    async def agent_week_raw(store: Store) -> int:
        sql = (
            "SELECT * FROM interactions WHERE started_at >= :t AND disposition = 'answered' "
            "AND EXISTS (SELECT 1 FROM interaction_agents a WHERE a.interaction_id = "
            f"interactions.id AND a.agent = :a) {page}"
        )
        return await raw(store, sql, {"t": ts(week_ago), "a": agent})

    async def attribute(store: Store) -> int:
        f = InteractionFilter(attributes={"account": sample_account})
        return len((await store.history.search(f)).items)

    async def attribute_raw(store: Store) -> int:
        params: dict[str, Any] = (
            {"attrs": json.dumps({"account": sample_account})}
            if pg
            else {"account": sample_account}
        )
        return await raw(store, f"SELECT * FROM interactions WHERE {attr} {page}", params)

    async def deep(store: Store) -> int:
        # The 20th page of one queue's history: 19 cursors followed, the last one timed
        # with them (a CSV export or a CRM sync walks pages exactly like this).
        cursor: str | None = None
        count = 0
        for _ in range(20):
            result = await store.history.search(InteractionFilter(queue="vip"), cursor=cursor)
            count, cursor = len(result.items), result.next_cursor
        return count

    async def deep_raw(store: Store) -> int:
        first = f"SELECT * FROM interactions WHERE queue = 'vip' {page}"
        after = (
            f"SELECT * FROM interactions WHERE queue = 'vip' AND (started_at, id) < (:t, :i) {page}"
        )
        rows = await rows_of(store, first, {})
        for _ in range(19):
            rows = await rows_of(store, after, {"t": rows[49].started_at, "i": rows[49].id})
        return min(50, len(rows))

    return [
        ("last 24 h, newest 50", last_day, last_day_raw),
        ("one caller", caller, caller_raw),
        ("agent + answered, last 7 days", agent_week, agent_week_raw),
        ("attribute account = X", attribute, attribute_raw),
        ("20th page of a queue (20 queries)", deep, deep_raw),
    ]


def _pct(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(n * q))] * 1000, 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


async def _plan(store: Store, pg: bool, label: str) -> str:
    """One word for the first plan line of the raw query of ``label``: index or scan."""
    probes = {
        "attribute account = X": (
            'SELECT * FROM interactions WHERE attributes @> \'{"account": "A000001"}\' '
            "ORDER BY started_at DESC, id DESC LIMIT 51"
            if pg
            else "SELECT * FROM interactions WHERE id IN (SELECT interaction_id FROM "
            "interaction_attributes WHERE key = 'account' AND value = 'A000001') "
            "ORDER BY started_at DESC, id DESC LIMIT 51"
        ),
    }
    sql = probes.get(label)
    if sql is None:
        return ""
    async with store.db.read() as conn:
        rows = (await conn.execute(text(("EXPLAIN " if pg else "EXPLAIN QUERY PLAN ") + sql))).all()
    plan = " ".join(str(r[-1]) for r in rows)
    return "scan" if ("Seq Scan" in plan or "SCAN interactions" in plan) else "index"


async def measure(
    url: str, pg: bool, sample_caller: str, sample_account: str
) -> list[dict[str, object]]:
    store = await open_store(url, migrate_schema=False)
    out: list[dict[str, object]] = []
    try:
        for label, ours, peer in _queries(pg, sample_caller, sample_account):
            matched = await ours(store)
            if matched != await peer(store):
                raise AssertionError(f"{label}: search and raw SQL disagree")
            ours_s: list[float] = []
            peer_s: list[float] = []
            # The multi-query walk and a possible full scan get fewer runs, so the whole
            # benchmark stays within minutes.
            slow = "page" in label or "attribute" in label
            runs = max(20, RUNS // 10) if slow else RUNS
            for _ in range(runs):  # interleaved, so noise hits both alike
                t0 = time.perf_counter()
                await ours(store)
                t1 = time.perf_counter()
                await peer(store)
                peer_s.append(time.perf_counter() - t1)
                ours_s.append(t1 - t0)
            a, b = _pct(ours_s), _pct(peer_s)
            out.append(
                {
                    "query": label,
                    "rows": matched,
                    "p50 ms": a["p50"],
                    "p95 ms": a["p95"],
                    "p99 ms": a["p99"],
                    "raw SQL p95 ms": b["p95"],
                    "ratio p95": round(a["p95"] / b["p95"], 2) if b["p95"] else "",
                    "plan": await _plan(store, pg, label),
                }
            )
    finally:
        await store.close()
    return out


def run() -> dict[str, Any]:
    t0 = time.perf_counter()
    rows = generate(ROWS)
    generated = time.perf_counter() - t0
    sample_caller = rows[0][len(rows[0]) // 2][3]
    sample_account = json.loads(rows[0][len(rows[0]) // 3][16])["account"]
    figures: dict[str, Any] = {"rows": ROWS, "generate_s": round(generated, 1)}
    base = Path(tempfile.mkdtemp(prefix="tsunagu-bench-search-"))
    cluster = PgCluster("-c shared_buffers=512MB -c work_mem=32MB")
    try:
        sqlite_url = f"sqlite:///{base / 'history.sqlite3'}"
        asyncio.run(migrate(sqlite_url))
        t0 = time.perf_counter()
        fill_sqlite(base / "history.sqlite3", rows)
        figures["sqlite_fill_s"] = round(time.perf_counter() - t0, 1)
        print(f"sqlite filled in {figures['sqlite_fill_s']} s", flush=True)
        figures["sqlite"] = asyncio.run(measure(sqlite_url, False, sample_caller, sample_account))

        admin = cluster.start()
        pg_url = make_url(admin).set(database="bench").render_as_string(False)

        async def create() -> None:
            store = await open_store(admin, migrate_schema=False)
            try:
                async with store.engine.connect() as conn:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.execute(text("CREATE DATABASE bench"))
            finally:
                await store.close()
            await migrate(pg_url)

        asyncio.run(create())
        t0 = time.perf_counter()
        asyncio.run(fill_postgresql(pg_url, rows))
        figures["pg_fill_s"] = round(time.perf_counter() - t0, 1)
        print(f"postgresql filled in {figures['pg_fill_s']} s", flush=True)
        figures["postgresql"] = asyncio.run(measure(pg_url, True, sample_caller, sample_account))
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    return figures


def main() -> None:
    """Write the "search" section of docs/BENCHMARKS.md."""
    from bench.report import table, write_section

    figures = run()
    body = (
        f"{figures['rows']:,} interactions (90 days, 1-3 legs, offered/answered agents, "
        f"attributes); filled in {figures['sqlite_fill_s']} s (SQLite, executemany) and "
        f"{figures['pg_fill_s']} s (PostgreSQL, COPY). Each line: {RUNS} runs of "
        "`History.search` (what `GET /api/v1/interactions` calls) interleaved with the same "
        "query hand-written in SQL through the same engine (the peer); times in ms; "
        "ratio = Tsunagu p95 / raw p95. `plan` says whether the attribute query uses an "
        "index.\n\n### SQLite\n\n"
        + table(figures["sqlite"])
        + "\n\n### PostgreSQL\n\n"
        + table(figures["postgresql"])
        + "\n"
    )
    write_section("search", "Interaction search", body, "python -m bench search")


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, default=str))
