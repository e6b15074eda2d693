"""``/api/v1/webhooks``: status without secrets, dead letters in keyset pages, and the
admin-only, audited redelivery with its stable errors. The store is real (SQLite and
PostgreSQL); the dispatcher is stood in for by two callables (the real one is tested
against a real HTTP receiver in tests/integration/test_webhook_dispatcher.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    ADMIN,
    AGENT,
    CLIENT,
    SUPERVISOR,
    FakeCallLayer,
    make_services,
    standard_users,
)
from tests.store.conftest import FakeClock
from tsunagu.api import create_app
from tsunagu.store import Store

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


class FakeDispatcher:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redelivered: list[str] = []

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "crm",
                "url": "https://crm.example.com/hook",
                "events": ["*"],
                "delivered": 5,
                "retrying": 1,
                "dead": 2,
                "failed_attempts": 7,
                "dropped": 0,
                "last_status": 500,
                "last_error": "HTTP 500",
                "last_delivered_at": None,
            }
        ]

    async def redeliver(self, letter_id: str) -> None:
        letter = await self.store.dead_letters.get(letter_id)
        assert letter is not None
        if letter.webhook != "crm":
            raise LookupError(letter.webhook)
        await self.store.dead_letters.mark_redelivered(letter_id)
        self.redelivered.append(letter_id)


@pytest.fixture
async def client(
    store: Store, call_layer: FakeCallLayer, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeDispatcher]]:
    await standard_users(store)
    dispatcher = FakeDispatcher(store)
    services = make_services(
        store,
        call_layer,
        clock,
        webhooks=dispatcher.status,
        redeliver=dispatcher.redeliver,
    )
    app = create_app(services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=CLIENT), base_url="http://tsunagu.test"
    ) as http:
        yield http, dispatcher


async def dead(store: Store, webhook: str = "crm", seconds: float = 0) -> str:
    delivery_id = str(uuid.uuid4())
    await store.dead_letters.record(
        delivery_id=delivery_id,
        webhook=webhook,
        event_type="call.ended",
        event_id=str(uuid.uuid4()),
        payload={"type": "call.ended", "data": {"interaction_id": "i-1"}},
        attempts=8,
        last_status=503,
        last_error="HTTP 503 (gave up: max attempts)",
        created_at=T0,
        dead_at=T0 + timedelta(seconds=seconds),
    )
    return delivery_id


async def test_status_counts_stored_dead_letters_and_shows_no_secret(
    client: tuple[httpx.AsyncClient, FakeDispatcher], store: Store
) -> None:
    http, _ = client
    await dead(store)
    await dead(store)
    r = await http.get("/api/v1/webhooks", headers=SUPERVISOR)
    assert r.status_code == 200
    (item,) = r.json()
    assert item["name"] == "crm" and item["dead_letters"] == 2 and item["delivered"] == 5
    assert "secret" not in item
    assert (await http.get("/api/v1/webhooks", headers=AGENT)).status_code == 403


async def test_dead_letters_page_newest_first(
    client: tuple[httpx.AsyncClient, FakeDispatcher], store: Store
) -> None:
    http, _ = client
    ids = [await dead(store, seconds=n) for n in range(3)]
    r = await http.get("/api/v1/webhooks/dead-letters?limit=2", headers=SUPERVISOR)
    page = r.json()
    assert [x["id"] for x in page["items"]] == [ids[2], ids[1]]
    assert page["items"][0]["payload"]["type"] == "call.ended"
    r = await http.get(
        "/api/v1/webhooks/dead-letters",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=SUPERVISOR,
    )
    assert [x["id"] for x in r.json()["items"]] == [ids[0]] and r.json()["next_cursor"] is None
    r = await http.get("/api/v1/webhooks/dead-letters?cursor=broken", headers=SUPERVISOR)
    assert r.status_code == 400 and r.json()["error_id"] == "store.bad_request"


async def test_redeliver_is_admin_only_audited_and_once(
    client: tuple[httpx.AsyncClient, FakeDispatcher], store: Store
) -> None:
    http, dispatcher = client
    letter = await dead(store)
    path = f"/api/v1/webhooks/dead-letters/{letter}/redeliver"
    r = await http.post(path, headers=SUPERVISOR)
    assert r.status_code == 403 and r.json()["error_id"] == "auth.forbidden"
    r = await http.post(path, headers=ADMIN)
    assert r.status_code == 202, r.text
    assert r.json()["redelivered_at"] is not None and dispatcher.redelivered == [letter]
    r = await http.post(path, headers=ADMIN)
    assert r.status_code == 409 and r.json()["error_id"] == "webhook.already_redelivered"
    pending = await http.get("/api/v1/webhooks/dead-letters?pending=true", headers=ADMIN)
    assert pending.json()["items"] == []


async def test_redeliver_errors(
    client: tuple[httpx.AsyncClient, FakeDispatcher], store: Store
) -> None:
    http, _ = client
    r = await http.post("/api/v1/webhooks/dead-letters/nope/redeliver", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error_id"] == "webhook.dead_letter_not_found"
    gone = await dead(store, webhook="removed")
    r = await http.post(f"/api/v1/webhooks/dead-letters/{gone}/redeliver", headers=ADMIN)
    assert r.status_code == 409 and r.json()["error_id"] == "webhook.unknown"
    assert "events.webhooks" in r.json()["message"]
