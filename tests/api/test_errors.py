"""Every error has the same shape and a stable id; the OpenAPI document is served."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tests.api.conftest import ADMIN, CLIENT, Api, make_services
from tsunagu.api import create_app
from tsunagu.api.errors import store_status
from tsunagu.store import (
    ConfigValidationError,
    InvalidStateError,
    NotFoundError,
    RevisionConflictError,
    StoreRequestError,
    UnknownKindError,
)


def assert_error(r: httpx.Response, status: int, error_id: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"error_id", "message", "details"}
    assert body["error_id"] == error_id
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["details"], dict)
    return body


async def test_framework_errors_have_our_shape(api: Api) -> None:
    assert_error(await api.client.get("/api/v1/nothing", headers=ADMIN), 404, "request.not_found")
    assert_error(await api.client.get("/nothing"), 404, "request.not_found")
    r = await api.client.delete("/api/v1/interactions", headers=ADMIN)
    assert_error(r, 405, "request.method_not_allowed")
    r = await api.client.put(
        "/api/v1/config/queues/a",
        headers={**ADMIN, "Content-Type": "application/json"},
        content=b"{not json",
    )
    body = assert_error(r, 422, "request.invalid")
    assert body["details"]["fields"][0]["field"].startswith("body")


async def test_validation_errors_list_every_field(api: Api) -> None:
    r = await api.client.get("/api/v1/reports/summary?from=yesterday&group_by=team", headers=ADMIN)
    body = assert_error(r, 422, "request.invalid")
    fields = {f["field"] for f in body["details"]["fields"]}
    assert fields == {"query.from", "query.to", "query.group_by"}
    assert all(f["problem"] and f["type"] for f in body["details"]["fields"])


async def test_unexpected_errors_are_500_internal_and_logged(
    api: Api, store: Any, call_layer: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("secret internals")

    app = create_app(make_services(store, call_layer, clock, health=broken))
    transport = httpx.ASGITransport(app=app, client=CLIENT, raise_app_exceptions=False)
    caplog.set_level(logging.ERROR, logger="tsunagu.api")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/api/v1/health", headers=ADMIN)
    body = assert_error(r, 500, "internal")
    assert "secret internals" not in r.text
    assert body["details"] == {}
    assert any("unhandled error" in rec.getMessage() for rec in caplog.records)


def test_store_errors_map_to_statuses() -> None:
    assert store_status(NotFoundError("x")) == 404
    assert store_status(UnknownKindError("x")) == 404
    assert store_status(ConfigValidationError(["a"])) == 422
    assert store_status(RevisionConflictError("x")) == 409
    assert store_status(InvalidStateError("x")) == 409
    assert store_status(StoreRequestError("x")) == 400


async def test_openapi_document(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["info"]["title"] == "Tsunagu"
    assert set(schema["components"]["securitySchemes"]) == {"apiKey", "password"}
    paths = schema["paths"]
    assert "security" not in paths["/health"]["get"]
    for path, operations in paths.items():
        if path.startswith("/api/v1"):
            for operation in operations.values():
                assert operation["security"] == [{"apiKey": []}, {"password": []}]
                assert "401" in operation["responses"]
    summary = paths["/api/v1/reports/summary"]["get"]["responses"]["200"]
    ref = summary["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    assert "from" in schema["components"]["schemas"][ref]["properties"]
