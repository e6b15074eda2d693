"""Schemathesis against ``/openapi.json`` of a real uvicorn server: no request it generates
(valid or deliberately invalid) may get a server error, and every answer must match the
document (status codes, content types, response schemas).

The server runs as the production server runs it — ``uvicorn.Server.serve()`` inside a
running event loop, which owns the store — in a thread, on SQLite with some data in it.
Examples per operation are few and derandomized, so the run is bounded and repeatable.

Every check runs except ``positive_data_acceptance`` ("a schema-valid request must get a
2xx"): many valid-looking requests are refused on purpose by rules a JSON schema cannot
state — a configuration document the YAML models reject, a report period that ends before
it starts, a pagination cursor that was not issued by the server — and each of those
refusals is a documented 4xx with its own ``error_id``.

``negative_data_rejection`` ("a request the schema forbids must get a 4xx") runs too, with
two leniencies of the framework named and allowed, because neither loses or corrupts
anything: a single-valued query parameter given twice takes the last value (how Starlette
reads a query string), and a date-time parameter given as a number is read as Unix seconds
(how pydantic reads datetimes). Any other accepted schema violation fails the test. Bytes
that are not HTTP at all (a header line without a colon) are refused by uvicorn's parser
before the application exists for them; that plain-text 400 is not the document's business.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.api.conftest import ADMIN, FakeCallLayer, make_services, standard_users
from tests.conftest import FakeClock
from tsunagu.api import ApiServer, RateLimit, create_app
from tsunagu.store import Store, open_store

EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}
#: The body of uvicorn's own answer to bytes its HTTP parser (h11) refuses.
_UVICORN_REFUSAL = b"Invalid HTTP request received."


async def _seed(store: Store) -> None:
    await standard_users(store)
    t0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
    for n in range(3):
        begin = t0 + timedelta(minutes=n)
        i = await store.history.start_interaction(
            direction="inbound", caller="0312345678", dialled="0501234567", started_at=begin
        )
        await store.history.add_leg(i.id, role="caller", call_id=f"c{n}@x", started_at=begin)
        await store.history.update(i.id, queue="sales", queued_at=begin)
        await store.history.finish(i.id, "abandoned", ended_at=begin + timedelta(seconds=30))
    await store.config.put("queues", "sales", {"strategy": "longest_idle"}, "seed")
    await store.callback_tasks.create(
        voicemail_interaction_id=i.id,
        caller="0312345678",
        queue="sales",
        recording="/var/recordings/vm.wav",
        created_at=t0,
    )


class ServerThread(threading.Thread):
    """The API served by :class:`ApiServer` in an event loop of its own."""

    def __init__(self, database: Path) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.ready = threading.Event()
        self.port = 0
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the fixture
            self.error = exc
        finally:
            self.ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(10)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        store = await open_store(f"sqlite:///{self.database}")
        try:
            await _seed(store)
            layer = FakeCallLayer()
            layer.agents["1001"] = {"id": "1001", "state": "available"}
            services = make_services(
                store,
                layer,
                FakeClock(datetime.now(UTC)),
                rate_limit=RateLimit(per_second=10_000.0, burst=10_000),
                auth_failure_limit=RateLimit(per_second=10_000.0, burst=10_000),
            )
            server = ApiServer(create_app(services), "127.0.0.1", 0)
            await server.start()
            self.port = server.port
            self.ready.set()
            await self._stopping.wait()
            await server.stop()
        finally:
            await store.close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    thread = ServerThread(tmp_path_factory.mktemp("schemathesis") / "api.sqlite3")
    thread.start()
    assert thread.ready.wait(30), "the API server did not start"
    if thread.error is not None:
        raise thread.error
    try:
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.stop()


def _not_http(response: Any) -> bool:
    """Negative cases may send headers that are not HTTP at all (``Content-Length;`` with
    no colon, say). uvicorn's HTTP parser refuses those with its own plain-text 400 before
    the application sees anything, so the API document has nothing to say about them; any
    other answer is checked in full."""
    return bool(response.status_code == 400 and response.content == _UVICORN_REFUSAL)


def _date_time_queries(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, name) of every query parameter whose schema (or a member of its anyOf) is a
    date-time, read off the OpenAPI document itself."""
    found: set[tuple[str, str]] = set()
    for path, item in document["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                members = [schema, *schema.get("anyOf", [])]
                if parameter["in"] == "query" and any(
                    m.get("format") == "date-time" for m in members
                ):
                    found.add((path, parameter["name"]))
    return found


def _lenient_only(case: schemathesis.Case[Any], date_times: set[tuple[str, str]]) -> bool:
    """Whether every mutation of this negative case is one of the leniencies the module
    docstring allows (or never reached the server: our Authorization header replaces it)."""
    meta = case.meta
    mutations = getattr(meta.phase.data, "mutations", None) if meta is not None else None
    if not mutations:
        return False
    for m in mutations:
        location, name = str(m.parameter_location.value), m.parameter
        if location == "header" and name == "Authorization":
            continue
        if location != "query":
            return False
        if m.keywords == ("type",) and m.new_value == "array":
            continue  # a repeated single-valued parameter: the last one counts
        sent = (case.query or {}).get(name or "")
        if (case.operation.path, name) in date_times and _numeric(sent):
            continue  # Unix seconds for a date-time
        return False
    return True


def _numeric(value: object) -> bool:
    values = value if isinstance(value, list) else [value]
    for v in values:
        try:
            float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
    return bool(values)


def test_no_server_errors_and_answers_match_the_document(base_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    date_times = _date_time_queries(schema.raw_schema)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"invalid operation in the document: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        for mode, examples in EXAMPLES.items():

            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case[Any]) -> None:
                response = case.call(base_url=base_url, headers=dict(ADMIN), timeout=10)
                if _not_http(response):
                    return
                excluded: list[Any] = [positive_data_acceptance]
                if 200 <= response.status_code < 300 and _lenient_only(case, date_times):
                    excluded.append(negative_data_rejection)
                case.validate_response(response, excluded_checks=excluded)

            try:
                check()
            except Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters)
            except (Exception, BaseExceptionGroup) as exc:  # collect them all, then report
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
