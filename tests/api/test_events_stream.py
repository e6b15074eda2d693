"""``GET /api/v1/events`` over a real WebSocket (uvicorn in this loop, the ``websockets``
client library): both ways to authenticate, the refusal of a key in the URL, role
filtering, narrowing, and the per-role IP allow-list. The store is real (SQLite and
PostgreSQL); events are published on a real bus by the test, standing in for the call
layer (tests/integration/test_events.py drives them with real phones)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.api.conftest import FakeCallLayer, make_services, standard_users
from tests.store.conftest import FakeClock
from tsunagu.api import ApiServer, create_app
from tsunagu.api.routes import events as stream_module
from tsunagu.events import AgentStateChanged, CallOffered, EventBus, QueueStats
from tsunagu.store import Store

AT = 1_765_000_000.0


class Served:
    def __init__(self, bus: EventBus, port: int) -> None:
        self.bus = bus
        self.url = f"ws://127.0.0.1:{port}/api/v1/events"


@pytest.fixture
async def served(
    store: Store, call_layer: FakeCallLayer, clock: FakeClock
) -> AsyncIterator[Served]:
    await standard_users(store)
    bus = EventBus()
    app = create_app(make_services(store, call_layer, clock, events=bus))
    server = ApiServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        yield Served(bus, server.port)
    finally:
        await server.stop()


async def frame(ws: ClientConnection) -> dict[str, Any]:
    data = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert isinstance(data, dict)
    return data


async def closed(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed):
        for _ in range(10):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


def offered(agent: str) -> CallOffered:
    return CallOffered(
        at=AT,
        interaction_id=f"i-{agent}",
        agent_id=agent,
        caller="0901234567",
        dialled="0312345678",
        queue="support",
        customer=None,
    )


async def subscribed(served: Served, count: int = 1) -> None:
    """Wait until ``count`` streams subscribed (the hello frame is sent right after)."""
    for _ in range(100):
        if served.bus.subscribers >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the stream did not subscribe")


async def test_admin_with_a_header_sees_every_event(served: Served) -> None:
    async with connect(served.url, additional_headers={"Authorization": "Bearer admin-key"}) as ws:
        hello = await frame(ws)
        assert hello == {"type": "hello", "role": "admin", "agent": None, "subscribed": ["*"]}
        served.bus.publish(offered("1002"))
        served.bus.publish(AgentStateChanged(at=AT, agent_id="1001", old="away", new="available"))
        served.bus.publish(QueueStats(at=AT, queues=()))
        got = [await frame(ws) for _ in range(3)]
        assert [g["type"] for g in got] == ["call.offered", "agent.state", "queue.stats"]
        assert [g["seq"] for g in got] == [1, 2, 3]
        assert got[0]["data"]["agent_id"] == "1002"


async def test_a_browser_authenticates_with_a_first_message_and_an_agent_sees_only_its_own(
    served: Served,
) -> None:
    async with connect(served.url) as ws:
        await ws.send(json.dumps({"token": "agent-key"}))
        hello = await frame(ws)
        assert hello["role"] == "agent" and hello["agent"] == "1001"
        served.bus.publish(offered("1002"))
        served.bus.publish(AgentStateChanged(at=AT, agent_id="1002", old="away", new="available"))
        served.bus.publish(QueueStats(at=AT, queues=()))
        served.bus.publish(offered("1001"))
        served.bus.publish(AgentStateChanged(at=AT, agent_id="1001", old="away", new="available"))
        first, second = await frame(ws), await frame(ws)
        assert (first["type"], first["data"]["agent_id"]) == ("call.offered", "1001")
        assert (second["type"], second["data"]["agent_id"]) == ("agent.state", "1001")
        assert first["seq"] == 4  # the gap is what it was not allowed to see


async def test_a_key_in_the_query_string_is_refused_with_a_reason(served: Served) -> None:
    async with connect(served.url + "?token=admin-key") as ws:
        error = await frame(ws)
        assert error["type"] == "error" and error["error_id"] == "auth.token_in_query"
        assert "Authorization" in error["message"]
        code, reason = await closed(ws)
    assert code == 1008 and reason.startswith("auth.token_in_query: credentials in the URL")
    assert served.bus.subscribers == 0


async def test_other_query_parameters_are_refused_too(served: Served) -> None:
    async with connect(
        served.url + "?types=call.offered", additional_headers={"Authorization": "Bearer admin-key"}
    ) as ws:
        assert (await frame(ws))["error_id"] == "request.invalid"
        code, _ = await closed(ws)
    assert code == 4400


async def test_wrong_or_missing_credentials(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connect(served.url, additional_headers={"Authorization": "Bearer nope"}) as ws:
        assert (await frame(ws))["error_id"] == "auth.invalid_credentials"
        assert (await closed(ws))[0] == 4401
    async with connect(served.url) as ws:
        await ws.send(json.dumps({"key": "admin-key"}))
        error = await frame(ws)
        assert error["error_id"] == "auth.required" and error["details"] == {"field": "token"}
        assert (await closed(ws))[0] == 4401
    monkeypatch.setattr(stream_module, "AUTH_TIMEOUT_S", 0.2)
    async with connect(served.url) as ws:
        error = await frame(ws)
        assert error["error_id"] == "auth.required" and "within 0.2 s" in error["message"]
        assert (await closed(ws))[0] == 4401


async def test_the_role_ip_allow_list_applies(served: Served, store: Store) -> None:
    await store.config.put("acls", "agent", {"allow": ["192.0.2.0/24"]}, "test")
    async with connect(served.url, additional_headers={"Authorization": "Bearer agent-key"}) as ws:
        error = await frame(ws)
        assert error["error_id"] == "auth.ip_not_allowed"
        assert (await closed(ws))[0] == 4403
    async with connect(served.url, additional_headers={"Authorization": "Bearer admin-key"}) as ws:
        assert (await frame(ws))["type"] == "hello"


async def test_subscribe_narrows_and_unknown_types_are_named(served: Served) -> None:
    async with connect(
        served.url, additional_headers={"Authorization": "Bearer supervisor-key"}
    ) as ws:
        await frame(ws)
        await ws.send(json.dumps({"subscribe": ["agent.state"]}))
        assert await frame(ws) == {"type": "subscribed", "types": ["agent.state"]}
        await ws.send(json.dumps({"subscribe": ["call.ofered"]}))
        error = await frame(ws)
        assert error["error_id"] == "events.unknown_type" and "call.ofered" in error["message"]
        served.bus.publish(offered("1001"))
        served.bus.publish(AgentStateChanged(at=AT, agent_id="1001", old="away", new="available"))
        assert (await frame(ws))["type"] == "agent.state"
        await ws.send("not json")
        assert (await frame(ws))["error_id"] == "request.invalid"
        assert (await closed(ws))[0] == 4400
    await asyncio.sleep(0.1)
    assert served.bus.subscribers == 0


async def test_a_slow_stream_is_told_how_many_events_it_lost(served: Served) -> None:
    async with connect(served.url, additional_headers={"Authorization": "Bearer admin-key"}) as ws:
        await frame(ws)
        await subscribed(served)
        (subscription,) = served.bus._subscriptions
        subscription.maxsize = 2
        for n in range(5):
            served.bus.publish(
                AgentStateChanged(at=AT, agent_id=str(n), old="away", new="available")
            )
        got = [await frame(ws) for _ in range(3)]
        assert got[0] == {"type": "dropped", "count": 3}
        assert [g["data"]["agent_id"] for g in got[1:]] == ["3", "4"]
