"""``/api/v1/config``: CRUD, optimistic concurrency, the change feed, apply, validation."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import ADMIN, CLIENT, SUPERVISOR, Api, make_services
from tsunagu.api import create_app
from tsunagu.api.schemas import ConfigKind
from tsunagu.store import KINDS

QUEUE = {"strategy": "longest_idle", "timeout_s": 60}


def test_the_openapi_kinds_are_the_store_kinds() -> None:
    assert ConfigKind.__args__ == KINDS  # type: ignore[attr-defined]


async def test_create_read_update_delete(api: Api) -> None:
    r = await api.client.put("/api/v1/config/queues/sales", headers=ADMIN, json=QUEUE)
    assert r.status_code == 201
    created = r.json()
    assert created["document"] == QUEUE
    assert created["version"] == 1
    assert r.headers["ETag"] == f'"{created["revision"]}"'

    r = await api.client.get("/api/v1/config/queues/sales", headers=SUPERVISOR)
    assert r.status_code == 200
    assert r.json() == created
    assert r.headers["ETag"] == f'"{created["revision"]}"'

    r = await api.client.put(
        "/api/v1/config/queues/sales", headers=ADMIN, json={**QUEUE, "timeout_s": 90}
    )
    assert r.status_code == 200
    assert r.json()["version"] == 2
    assert r.json()["revision"] == created["revision"] + 1

    r = await api.client.get("/api/v1/config/queues", headers=SUPERVISOR)
    assert [e["name"] for e in r.json()["items"]] == ["sales"]
    assert r.json()["revision"] == created["revision"] + 1

    r = await api.client.delete("/api/v1/config/queues/sales", headers=ADMIN)
    assert r.status_code == 200
    assert r.json() == {"kind": "queues", "name": "sales", "revision": created["revision"] + 2}
    r = await api.client.get("/api/v1/config/queues/sales", headers=SUPERVISOR)
    assert r.status_code == 404
    assert r.json()["error_id"] == "store.not_found"
    r = await api.client.delete("/api/v1/config/queues/sales", headers=ADMIN)
    assert r.status_code == 404
    assert r.json()["error_id"] == "store.not_found"
    # Every change is in the log with the API user as actor.
    changes = await api.store.config.entity_changes("queues", "sales")
    assert [(c.operation, c.actor) for c in changes] == [
        ("delete", "key:root/k1"),
        ("update", "key:root/k1"),
        ("create", "key:root/k1"),
    ]


async def test_writing_the_same_document_is_no_change(api: Api) -> None:
    first = (await api.client.put("/api/v1/config/flows/main", headers=ADMIN, json=QUEUE)).json()
    r = await api.client.put("/api/v1/config/flows/main", headers=ADMIN, json=QUEUE)
    assert r.status_code == 200
    assert r.json()["revision"] == first["revision"]


async def test_if_match_gives_optimistic_concurrency(api: Api) -> None:
    r = await api.client.put("/api/v1/config/queues/sales", headers=ADMIN, json=QUEUE)
    etag = r.headers["ETag"]
    # Someone else changes it meanwhile.
    await api.client.put("/api/v1/config/queues/sales", headers=ADMIN, json={"strategy": "x"})
    r = await api.client.put(
        "/api/v1/config/queues/sales",
        headers={**ADMIN, "If-Match": etag},
        json={"strategy": "mine"},
    )
    assert r.status_code == 412
    assert r.json()["error_id"] == "config.revision_conflict"
    assert r.json()["details"]["current_revision"] == int(etag.strip('"')) + 1
    fresh = (await api.client.get("/api/v1/config/queues/sales", headers=ADMIN)).headers["ETag"]
    r = await api.client.put(
        "/api/v1/config/queues/sales", headers={**ADMIN, "If-Match": fresh}, json={"strategy": "y"}
    )
    assert r.status_code == 200
    r = await api.client.delete("/api/v1/config/queues/sales", headers={**ADMIN, "If-Match": fresh})
    assert r.status_code == 412
    current = (await api.client.get("/api/v1/config/queues/sales", headers=ADMIN)).headers["ETag"]
    r = await api.client.delete(
        "/api/v1/config/queues/sales", headers={**ADMIN, "If-Match": current}
    )
    assert r.status_code == 200


async def test_if_none_match_creates_only(api: Api) -> None:
    headers = {**ADMIN, "If-None-Match": "*"}
    r = await api.client.put("/api/v1/config/teams/a", headers=headers, json={"members": []})
    assert r.status_code == 201
    r = await api.client.put("/api/v1/config/teams/a", headers=headers, json={"members": [1]})
    assert r.status_code == 412
    r = await api.client.put(
        "/api/v1/config/teams/b", headers={**ADMIN, "If-Match": "*"}, json={"members": []}
    )
    assert r.status_code == 412
    r = await api.client.put(
        "/api/v1/config/teams/a", headers={**ADMIN, "If-Match": "yesterday"}, json={}
    )
    assert r.status_code == 422
    assert r.json()["details"]["fields"][0]["field"] == "header.if-match"


async def test_unconditional_conflicts_are_409_and_bad_kinds_422(api: Api) -> None:
    r = await api.client.put("/api/v1/config/gadgets/a", headers=ADMIN, json={})
    assert r.status_code == 422
    assert r.json()["error_id"] == "request.invalid"
    assert r.json()["details"]["fields"][0]["field"] == "path.kind"
    r = await api.client.put("/api/v1/config/queues/a", headers=ADMIN, json=[1, 2])
    assert r.status_code == 422
    r = await api.client.put("/api/v1/config/queues/%20padded%20", headers=ADMIN, json={})
    assert r.status_code == 422
    assert r.json()["error_id"] == "config.invalid_document"


async def test_change_feed_for_replication(api: Api) -> None:
    base = await api.store.config.current_revision()
    await api.client.put("/api/v1/config/queues/a", headers=ADMIN, json={"n": 1})
    await api.client.put("/api/v1/config/queues/b", headers=ADMIN, json={"n": 2})
    await api.client.delete("/api/v1/config/queues/a", headers=ADMIN)
    r = await api.client.get(f"/api/v1/config/changes?since={base}", headers=ADMIN)
    body = r.json()
    assert [(c["revision"], c["operation"], c["name"]) for c in body["items"]] == [
        (base + 1, "create", "a"),
        (base + 2, "create", "b"),
        (base + 3, "delete", "a"),
    ]
    assert body["revision"] == base + 3
    assert body["items"][2]["before"] == {"n": 1}
    r = await api.client.get(f"/api/v1/config/changes?since={base + 1}&limit=1", headers=ADMIN)
    assert [c["revision"] for c in r.json()["items"]] == [base + 2]
    # The admin's feed carries user hashes (the DR site needs them); a supervisor's not.
    feed = (await api.client.get("/api/v1/config/changes", headers=ADMIN)).json()["items"]
    hashes = [c["after"]["password_hash"] for c in feed if c["kind"] == "users"]
    assert all(h.startswith("scrypt$") for h in hashes)
    feed = (await api.client.get("/api/v1/config/changes", headers=SUPERVISOR)).json()["items"]
    hashes = [c["after"]["password_hash"] for c in feed if c["kind"] == "users"]
    assert hashes
    assert all(h.startswith("redacted:") for h in hashes)


async def test_apply_dry_run_then_confirm(api: Api) -> None:
    await api.client.put("/api/v1/config/queues/old", headers=ADMIN, json={"n": 1})
    await api.client.put("/api/v1/config/queues/kept", headers=ADMIN, json={"n": 1})
    desired: dict[str, Any] = {"queues": {"kept": {"n": 2}, "new": {"n": 3}}}
    r = await api.client.post(
        "/api/v1/config/apply", headers=ADMIN, json={"config": desired, "dry_run": True}
    )
    assert r.status_code == 200
    dry = r.json()
    assert dry["dry_run"] is True
    assert dry["applied_revision"] is None
    assert [(i["operation"], i["name"]) for i in dry["items"]] == [
        ("update", "kept"),
        ("create", "new"),
        ("delete", "old"),
    ]
    update = next(i for i in dry["items"] if i["operation"] == "update")
    assert update["changes"] == [
        {"path": "$.n", "before": 1, "after": 2, "before_present": True, "after_present": True}
    ]
    assert "would apply: 1 to create, 1 to update, 1 to delete" in dry["text"]
    assert await api.store.config.get("queues", "new") is None
    # Someone changes something: the confirmed apply is refused.
    await api.client.put("/api/v1/config/flows/x", headers=ADMIN, json={})
    r = await api.client.post(
        "/api/v1/config/apply",
        headers=ADMIN,
        json={"config": desired, "base_revision": dry["base_revision"]},
    )
    assert r.status_code == 409
    assert r.json()["error_id"] == "config.revision_conflict"
    r = await api.client.post("/api/v1/config/apply", headers=ADMIN, json={"config": desired})
    assert r.status_code == 200
    assert r.json()["applied_revision"] == dry["base_revision"] + 4
    assert await api.store.config.get("queues", "old") is None
    # Idempotent.
    r = await api.client.post("/api/v1/config/apply", headers=ADMIN, json={"config": desired})
    assert r.json()["items"] == []
    assert r.json()["applied_revision"] is None


async def test_apply_hashes_passwords_and_keeps_secrets(api: Api) -> None:
    desired = {"users": {"root": {"role": "admin"}, "new": {"role": "admin", "password": "p" * 9}}}
    # "users" is authoritative: boss and taro are deleted, root keeps key and password.
    r = await api.client.post("/api/v1/config/apply", headers=ADMIN, json={"config": desired})
    assert r.status_code == 200, r.text
    assert "scrypt$" not in r.text
    assert (await api.client.get("/api/v1/me", headers=ADMIN)).status_code == 200
    new = await api.store.config.get("users", "new")
    assert new is not None
    assert new.document["password_hash"].startswith("scrypt$")
    assert await api.store.config.get("users", "boss") is None
    revision = await api.store.config.current_revision()
    r = await api.client.post("/api/v1/config/apply", headers=ADMIN, json={"config": desired})
    assert r.json()["items"] == []
    assert await api.store.config.current_revision() == revision


async def test_export(api: Api) -> None:
    await api.client.put("/api/v1/config/queues/a", headers=ADMIN, json={"n": 1})
    r = await api.client.get("/api/v1/config", headers=SUPERVISOR)
    body = r.json()
    assert body["config"]["queues"] == {"a": {"n": 1}}
    assert set(body["config"]["users"]) == {"root", "boss", "taro"}
    assert "scrypt$" not in r.text
    assert body["revision"] == await api.store.config.current_revision()


async def test_services_validator_refuses_before_anything_is_written(
    api: Api, store: Any, call_layer: Any, clock: Any
) -> None:
    def validate(kind: str, name: str, document: dict[str, Any]) -> list[str]:
        if kind == "queues" and "strategy" not in document:
            return ["strategy: field required"]
        return []

    app = create_app(make_services(store, call_layer, clock, validator=validate))
    transport = httpx.ASGITransport(app=app, client=CLIENT)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        revision = await store.config.current_revision()
        r = await client.put("/api/v1/config/queues/a", headers=ADMIN, json={"n": 1})
        assert r.status_code == 422
        assert r.json() == {
            "error_id": "config.invalid",
            "message": "configuration refused:\n  queues/a: strategy: field required",
            "details": {"problems": ["queues/a: strategy: field required"]},
        }
        r = await client.post(
            "/api/v1/config/apply",
            headers=ADMIN,
            json={"config": {"queues": {"a": {"n": 1}, "b": {"m": 2}}}},
        )
        assert r.status_code == 422
        assert len(r.json()["details"]["problems"]) == 2
        assert await store.config.current_revision() == revision
        r = await client.put("/api/v1/config/queues/a", headers=ADMIN, json={"strategy": "s"})
        assert r.status_code == 201
