"""``/api/v1/agents``, ``/api/v1/calls`` and health, over a fake call layer."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.api.conftest import ADMIN, AGENT, CLIENT, SUPERVISOR, Api, make_services
from tsunagu.api import create_app


def audit_entries(caplog: pytest.LogCaptureFixture, action: str) -> list[dict[str, Any]]:
    entries = [getattr(rec, "audit", None) for rec in caplog.records]
    return [e for e in entries if e is not None and e["action"] == action]


async def test_agents_list(api: Api) -> None:
    api.calls.agents["1002"]["since"] = datetime(2025, 4, 1, 8, 0, tzinfo=UTC)
    r = await api.client.get("/api/v1/agents", headers=SUPERVISOR)
    assert r.status_code == 200
    assert [(a["id"], a["state"]) for a in r.json()] == [("1001", "away"), ("1002", "available")]
    assert r.json()[1]["since"] == "2025-04-01T08:00:00Z"
    assert r.json()[1]["team"] == "sales"
    r = await api.client.get("/api/v1/agents", headers=AGENT)
    assert [a["id"] for a in r.json()] == ["1001"]


async def test_set_agent_state(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tsunagu.audit")
    r = await api.client.put(
        "/api/v1/agents/1001/state", headers=AGENT, json={"state": "available"}
    )
    assert r.status_code == 200
    assert r.json()["state"] == "available"
    assert api.calls.agents["1001"]["state"] == "available"
    r = await api.client.put("/api/v1/agents/1002/state", headers=AGENT, json={"state": "offline"})
    assert r.status_code == 403
    assert api.calls.agents["1002"]["state"] == "available"
    r = await api.client.put(
        "/api/v1/agents/1002/state",
        headers=SUPERVISOR,
        json={"state": "away", "reason": "meeting"},
    )
    assert r.status_code == 200
    assert api.calls.agents["1002"] == {
        "id": "1002",
        "name": "Hanako",
        "team": "sales",
        "state": "away",
        "reason": "meeting",
    }
    entries = audit_entries(caplog, "agent.state")
    assert [(e["actor"], e["target"], e["details"]["state"]) for e in entries] == [
        ("key:taro/k1", "agents/1001", "available"),
        ("key:boss/k1", "agents/1002", "away"),
    ]


async def test_set_agent_state_errors(api: Api) -> None:
    r = await api.client.put("/api/v1/agents/9999/state", headers=ADMIN, json={"state": "away"})
    assert r.status_code == 404
    assert r.json()["error_id"] == "agent.not_found"
    api.calls.refuse_states["1002"] = "agent 1002 is on a call"
    r = await api.client.put("/api/v1/agents/1002/state", headers=ADMIN, json={"state": "offline"})
    assert r.status_code == 409
    assert r.json() == {
        "error_id": "agent.state_refused",
        "message": "agent 1002 is on a call",
        "details": {"agent_id": "1002"},
    }
    r = await api.client.put("/api/v1/agents/1002/state", headers=ADMIN, json={"state": "on_call"})
    assert r.status_code == 422
    assert r.json()["details"]["fields"][0]["field"] == "body.state"


async def test_calls_hangup_and_transfer(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tsunagu.audit")
    started = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
    for iid, agent in (("I1", "1001"), ("I2", "1002"), ("I3", None)):
        api.calls.calls[iid] = {
            "interaction_id": iid,
            "caller": "0312345678",
            "dialled": "0501234567",
            "queue": "sales",
            "agent": agent,
            "state": "talking" if agent else "queued",
            "started_at": started,
        }
    r = await api.client.get("/api/v1/calls", headers=SUPERVISOR)
    assert [c["interaction_id"] for c in r.json()] == ["I1", "I2", "I3"]
    assert r.json()[0]["started_at"] == "2025-04-01T09:00:00Z"
    r = await api.client.get("/api/v1/calls", headers=AGENT)
    assert [c["interaction_id"] for c in r.json()] == ["I1"]

    assert (await api.client.post("/api/v1/calls/I1/hangup", headers=AGENT)).status_code == 403
    r = await api.client.post("/api/v1/calls/I1/hangup", headers=SUPERVISOR)
    assert r.status_code == 200
    assert r.json() == {"interaction_id": "I1", "action": "hangup", "target": None}
    assert api.calls.hung_up == ["I1"]
    r = await api.client.post("/api/v1/calls/I1/hangup", headers=SUPERVISOR)
    assert r.status_code == 404
    assert r.json()["error_id"] == "call.not_found"

    r = await api.client.post(
        "/api/v1/calls/I2/transfer", headers=SUPERVISOR, json={"target": "1001"}
    )
    assert r.status_code == 200
    assert api.calls.transfers == [("I2", "1001")]
    r = await api.client.post(
        "/api/v1/calls/I2/transfer", headers=SUPERVISOR, json={"target": "nowhere"}
    )
    assert r.status_code == 409
    assert r.json()["error_id"] == "call.transfer_refused"
    r = await api.client.post("/api/v1/calls/I9/transfer", headers=ADMIN, json={"target": "1"})
    assert r.json()["error_id"] == "call.not_found"
    r = await api.client.post(
        "/api/v1/calls/I2/transfer", headers=ADMIN, json={"target": "1; DROP"}
    )
    assert r.status_code == 422
    actions = [(e["action"], e["interaction_id"]) for e in audit_entries(caplog, "call.hangup")]
    actions += [(e["action"], e["interaction_id"]) for e in audit_entries(caplog, "call.transfer")]
    assert actions == [("call.hangup", "I1"), ("call.transfer", "I2")]


async def test_health(api: Api) -> None:
    r = await api.client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}  # nothing else without authentication
    r = await api.client.get("/api/v1/health", headers=SUPERVISOR)
    assert r.json() == {"status": "ok", "registrations": [], "sip": {"requests": 3}}
    assert (await api.client.get("/api/v1/health")).status_code == 401


async def test_unhealthy_probe_is_503(api: Api, store: Any, call_layer: Any, clock: Any) -> None:
    app = create_app(make_services(store, call_layer, clock, health=lambda: {"status": "degraded"}))
    transport = httpx.ASGITransport(app=app, client=CLIENT)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/health")
    assert r.status_code == 503
    assert r.json() == {"status": "degraded"}


async def test_idle_defaults(api: Api, store: Any, clock: Any) -> None:
    """Callables the server has not wired answer as an idle server."""
    from tsunagu.api import ApiServices, RateLimit

    app = create_app(ApiServices(store=store, clock=clock, rate_limit=RateLimit(100, 100)))
    transport = httpx.ASGITransport(app=app, client=CLIENT)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/api/v1/agents", headers=ADMIN)).json() == []
        assert (await client.get("/api/v1/calls", headers=ADMIN)).json() == []
        r = await client.post("/api/v1/calls/x/hangup", headers=ADMIN)
        assert r.json()["error_id"] == "call.not_found"
        r = await client.put("/api/v1/agents/1/state", headers=ADMIN, json={"state": "away"})
        assert r.json()["error_id"] == "agent.not_found"
