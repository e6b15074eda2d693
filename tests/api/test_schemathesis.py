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
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.conftest import ADMIN, FakeCallLayer, make_services, standard_users
from tests.conftest import FakeClock
from tsunagu.api import ApiServer, RateLimit, create_app
from tsunagu.store import Store, open_store

EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}


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
    return bool(
        response.status_code == 400
        and response.headers.get("content-type", "").startswith("text/plain")
        and response.content == b"Invalid HTTP request received."
    )


def test_no_server_errors_and_answers_match_the_document(base_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
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
                case.validate_response(response, excluded_checks=[positive_data_acceptance])

            try:
                check()
            except Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters)
            except (Exception, BaseExceptionGroup) as exc:  # collect them all, then report
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
