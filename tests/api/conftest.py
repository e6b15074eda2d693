"""API tests: the real store on SQLite and PostgreSQL, a fake call layer.

The store fixtures (a migrated database per test, PostgreSQL started once per session) are
the shared ones in :mod:`tests.conftest`. The call layer (agents,
calls, recordings) is a fake: this layer's tests check what the API does with its answers;
the call layer itself is tested with real phones elsewhere.

Users every test can use (created directly in the store, passwords hashed with a cheap
scrypt cost so the suite stays fast):

=============  ============  ===========================  ==========
user           role          API key                      password
=============  ============  ===========================  ==========
``root``       admin         ``admin-key``                ``root-password``
``boss``       supervisor    ``supervisor-key``           ``boss-password``
``taro``       agent (1001)  ``agent-key``                ``taro-password``
=============  ============  ===========================  ==========
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FakeClock
from tsunagu.api import ApiServices, RateLimit, create_app
from tsunagu.api.credentials import hash_password, key_digest
from tsunagu.store import Store

CLIENT = ("127.0.0.1", 50000)
CHEAP = 1 << 10  # scrypt N for fixtures (the production default is 2**15)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer("admin-key")
SUPERVISOR = bearer("supervisor-key")
AGENT = bearer("agent-key")


def basic(user: str, password: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(user, password)


async def add_user(
    store: Store,
    name: str,
    role: str,
    *,
    key: str | None = None,
    password: str | None = None,
    agent: str | None = None,
    key_id: str = "k1",
) -> None:
    doc: dict[str, Any] = {"role": role}
    if key is not None:
        doc["api_keys"] = [{"id": key_id, "sha256": key_digest(key), "label": "test"}]
    if password is not None:
        doc["password_hash"] = hash_password(password, n=CHEAP)
    if agent is not None:
        doc["agent"] = agent
    await store.config.put("users", name, doc, "test")


@dataclass
class FakeCallLayer:
    """Stands in for the call layer: agents with states, calls in progress, recordings."""

    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    recordings: dict[str, Path] = field(default_factory=dict)
    hung_up: list[str] = field(default_factory=list)
    transfers: list[tuple[str, str]] = field(default_factory=list)
    refuse_states: dict[str, str] = field(default_factory=dict)

    def list_agents(self) -> list[dict[str, Any]]:
        return [dict(a) for a in self.agents.values()]

    async def set_agent_state(self, agent_id: str, state: str, reason: str | None) -> None:
        agent = self.agents[agent_id]  # KeyError: unknown agent
        if agent_id in self.refuse_states:
            raise ValueError(self.refuse_states[agent_id])
        agent.update(state=state, reason=reason)

    async def list_calls(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.calls.values()]

    def hangup(self, interaction_id: str) -> bool:
        if self.calls.pop(interaction_id, None) is None:
            return False
        self.hung_up.append(interaction_id)
        return True

    async def transfer(self, interaction_id: str, target: str) -> bool:
        if interaction_id not in self.calls:
            return False
        if target == "nowhere":
            raise ValueError("no route to nowhere")
        self.transfers.append((interaction_id, target))
        return True

    def recording_path(self, interaction_id: str) -> Path | None:
        return self.recordings.get(interaction_id)


@dataclass
class Api:
    """The app under test with its store, fake call layer and an HTTP client."""

    app: Any
    services: ApiServices
    store: Store
    calls: FakeCallLayer
    clock: FakeClock
    client: httpx.AsyncClient

    def client_from(self, host: str) -> httpx.AsyncClient:
        """A client whose requests come from ``host`` (close it after use)."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(host, 50000)),
            base_url="http://tsunagu.test",
        )


def make_services(
    store: Store, calls: FakeCallLayer, clock: FakeClock, **overrides: Any
) -> ApiServices:
    values: dict[str, Any] = {
        "store": store,
        "health": lambda: {"status": "ok", "registrations": [], "sip": {"requests": 3}},
        "agents": calls.list_agents,
        "set_agent_state": calls.set_agent_state,
        "calls": calls.list_calls,
        "hangup": calls.hangup,
        "transfer": calls.transfer,
        "recording_path": calls.recording_path,
        "clock": clock,
        "rate_limit": RateLimit(per_second=1000.0, burst=1000),
    }
    values.update(overrides)
    return ApiServices(**values)


async def standard_users(store: Store) -> None:
    await add_user(store, "root", "admin", key="admin-key", password="root-password")
    await add_user(store, "boss", "supervisor", key="supervisor-key", password="boss-password")
    await add_user(store, "taro", "agent", key="agent-key", password="taro-password", agent="1001")


@pytest.fixture
def call_layer() -> FakeCallLayer:
    layer = FakeCallLayer()
    layer.agents["1001"] = {"id": "1001", "name": "Taro", "team": "sales", "state": "away"}
    layer.agents["1002"] = {"id": "1002", "name": "Hanako", "team": "sales", "state": "available"}
    return layer


@pytest.fixture
async def api(store: Store, call_layer: FakeCallLayer, clock: FakeClock) -> AsyncIterator[Api]:
    await standard_users(store)
    services = make_services(store, call_layer, clock)
    app = create_app(services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=CLIENT), base_url="http://tsunagu.test"
    ) as client:
        yield Api(app, services, store, call_layer, clock, client)
