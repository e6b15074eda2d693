"""``/api/v1/config`` for contact-center kinds: the same validation as the YAML (the
store's validator hook) plus the whole-picture checks, and passwords never shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    ADMIN,
    CLIENT,
    SUPERVISOR,
    Api,
    FakeCallLayer,
    make_services,
    standard_users,
)
from tests.conftest import FakeClock
from tsunagu.api import create_app
from tsunagu.api.users import validate_auth_document
from tsunagu.config_documents import make_validator, settings_to_documents, whole_picture_problems
from tsunagu.settings import load_settings
from tsunagu.store import Store, open_store

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


@pytest.fixture
async def center_api(
    store_url: str, call_layer: FakeCallLayer, clock: FakeClock
) -> AsyncIterator[Api]:
    """The API as the server wires it: validator in the store, whole-picture check on,
    the demo contact center in the store."""
    store: Store = await open_store(
        store_url, clock=clock, validator=make_validator(validate_auth_document)
    )
    try:
        await standard_users(store)
        await store.config.apply(settings_to_documents(load_settings(DEMO)), "test")
        services = make_services(
            store,
            call_layer,
            clock,
            check_center=whole_picture_problems,
        )
        app = create_app(services)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=CLIENT),
            base_url="http://tsunagu.test",
        ) as client:
            yield Api(app, services, store, call_layer, clock, client)
    finally:
        await store.close()


async def test_a_document_the_yaml_would_refuse_is_refused_naming_the_field(
    center_api: Api,
) -> None:
    r = await center_api.client.put(
        "/api/v1/config/queues/vip", headers=ADMIN, json={"strategy": "fastest"}
    )
    assert r.status_code == 422
    assert r.json()["error_id"] == "config.invalid"
    (problem,) = r.json()["details"]["problems"]
    assert problem.startswith("queues/vip.strategy: Input should be")


async def test_references_are_checked_on_put_delete_and_apply(center_api: Api) -> None:
    client = center_api.client
    r = await client.put(
        "/api/v1/config/numbers/+81312345698", headers=ADMIN, json={"flow": "missing"}
    )
    assert r.status_code == 422
    assert r.json()["details"]["problems"] == [
        "numbers/+81312345698.flow: unknown flow 'missing'; add the flow first"
    ]

    r = await client.delete("/api/v1/config/flows/demo-menu", headers=ADMIN)
    assert r.status_code == 409
    body = r.json()
    assert body["error_id"] == "config.in_use"
    assert body["message"] == (
        "flows/demo-menu is still in use; change or delete what refers to it first"
    )
    assert (
        "numbers/+81312345601.flow: unknown flow 'demo-menu'; add the flow first"
        in (body["details"]["problems"])
    )
    r = await client.delete("/api/v1/config/queues/sales", headers=ADMIN)
    assert r.status_code == 409  # the menu flow sends callers there

    r = await client.post(
        "/api/v1/config/apply", headers=ADMIN, json={"config": {"queues": {}}, "dry_run": True}
    )
    assert r.status_code == 422
    assert any("flows/demo-menu" in p for p in r.json()["details"]["problems"])

    # What is fine goes through, and then the reference can be removed in order.
    r = await client.put(
        "/api/v1/config/numbers/+81312345601",
        headers=ADMIN,
        json={"number": "0312345601", "flow": "demo-support"},
    )
    assert r.status_code == 200
    r = await client.delete("/api/v1/config/flows/demo-menu", headers=ADMIN)
    assert r.status_code == 200
    r = await client.delete("/api/v1/config/queues/sales", headers=ADMIN)
    assert r.status_code == 200


async def test_passwords_are_redacted_and_kept_when_written_back(center_api: Api) -> None:
    client = center_api.client
    r = await client.get("/api/v1/config/agents/1001", headers=ADMIN)
    shown = r.json()["document"]
    assert shown["sip_password"] == "<redacted>"
    r = await client.get("/api/v1/config", headers=SUPERVISOR)
    assert "demo-1001" not in r.text

    # The document as read, renamed: the password is kept, not set to "<redacted>".
    r = await client.put(
        "/api/v1/config/agents/1001", headers=ADMIN, json={**shown, "name": "Aoki T."}
    )
    assert r.status_code == 200
    stored = await center_api.store.config.get("agents", "1001")
    assert stored is not None and stored.document["sip_password"] == "demo-1001"

    r = await client.post(
        "/api/v1/config/apply",
        headers=ADMIN,
        json={
            "config": {
                "agents": {
                    "1001": {**shown, "sip_password": "changed-secret"},
                    "1002": {"name": "Baba", "sip_password": "<redacted>", "team": "support-team"},
                    "1003": {"name": "Chiba", "sip_password": "<redacted>", "team": "support-team"},
                }
            },
            "dry_run": True,
        },
    )
    assert r.status_code == 200, r.text
    assert "changed-secret" not in r.text and "demo-100" not in r.text
    (item,) = r.json()["items"]
    assert item["name"] == "1001"
    assert {
        "path": "$.sip_password",
        "before": "<redacted>",
        "after": "<redacted, changed>",
    }.items() <= (next(c for c in item["changes"] if c["path"] == "$.sip_password").items())

    r = await client.put(
        "/api/v1/config/agents/1009", headers=ADMIN, json={"sip_password": "<redacted>"}
    )
    assert r.status_code == 422
    assert r.json()["details"]["problems"][0].startswith("agents/1009.sip_password:")
