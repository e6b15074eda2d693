"""Authentication, roles, IP allow-lists, rate limits and API keys, through HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import (
    ADMIN,
    AGENT,
    CLIENT,
    SUPERVISOR,
    Api,
    FakeCallLayer,
    add_user,
    basic,
    bearer,
    make_services,
    standard_users,
)
from tests.conftest import FakeClock
from tsunagu.api import RateLimit, create_app, seed_api_key
from tsunagu.api.credentials import (
    ScryptParams,
    hash_password,
    key_digest,
    verify_password,
)
from tsunagu.store import Store


async def test_no_credentials_is_401_with_a_challenge(api: Api) -> None:
    r = await api.client.get("/api/v1/me")
    assert r.status_code == 401
    assert r.json()["error_id"] == "auth.required"
    assert "Bearer" in r.headers["WWW-Authenticate"]
    assert "Basic" in r.headers["WWW-Authenticate"]


async def test_api_key_and_password_both_authenticate(api: Api) -> None:
    r = await api.client.get("/api/v1/me", headers=SUPERVISOR)
    assert r.status_code == 200
    assert r.json() == {
        "name": "boss",
        "role": "supervisor",
        "agent": None,
        "via": "key",
        "key_id": "k1",
    }
    r = await api.client.get("/api/v1/me", auth=basic("taro", "taro-password"))
    assert r.status_code == 200
    assert r.json()["role"] == "agent"
    assert r.json()["agent"] == "1001"
    assert r.json()["via"] == "password"
    # Remembered after the first check; still refused with a wrong password afterwards.
    assert (await api.client.get("/api/v1/me", auth=basic("taro", "taro-password"))).is_success
    assert (await api.client.get("/api/v1/me", auth=basic("taro", "nope-nope"))).status_code == 401


async def test_every_wrong_credential_gets_the_same_answer(api: Api) -> None:
    await add_user(api.store, "gone", "supervisor", key="disabled-key", password="gone-password")
    entity = await api.store.config.get("users", "gone")
    assert entity is not None
    await api.store.config.put("users", "gone", {**entity.document, "disabled": True}, "test")
    attempts: list[dict[str, object]] = [
        {"headers": bearer("no-such-key")},
        {"headers": bearer("disabled-key")},
        {"auth": basic("boss", "wrong-password")},
        {"auth": basic("nobody", "boss-password")},
        {"auth": basic("gone", "gone-password")},
        {"headers": {"Authorization": "Basic !!!not-base64"}},
        {"headers": {"Authorization": "Basic " + "bm9jb2xvbg=="}},  # "nocolon"
    ]
    answers = set()
    for attempt in attempts:
        r = await api.client.get("/api/v1/me", **attempt)  # type: ignore[arg-type]
        answers.add((r.status_code, r.text, r.headers.get("WWW-Authenticate")))
    assert len(answers) == 1
    status, body, _ = answers.pop()
    assert status == 401
    assert json.loads(body)["error_id"] == "auth.invalid_credentials"


async def test_unknown_scheme_counts_as_no_credentials(api: Api) -> None:
    r = await api.client.get("/api/v1/me", headers={"Authorization": "Digest username=x"})
    assert r.status_code == 401
    assert r.json()["error_id"] == "auth.required"


@pytest.mark.parametrize(
    ("headers", "method", "path", "body"),
    [
        (AGENT, "GET", "/api/v1/config/queues", None),
        (AGENT, "GET", "/api/v1/reports/summary?from=2025-01-01T00:00Z&to=2025-01-02T00:00Z", None),
        (AGENT, "GET", "/api/v1/health", None),
        (AGENT, "POST", "/api/v1/calls/x/hangup", None),
        (SUPERVISOR, "PUT", "/api/v1/config/queues/q", {"strategy": "ring_all"}),
        (SUPERVISOR, "DELETE", "/api/v1/config/queues/q", None),
        (SUPERVISOR, "POST", "/api/v1/config/apply", {"config": {}}),
        (SUPERVISOR, "POST", "/api/v1/users/root/keys", None),
    ],
)
async def test_wrong_role_is_403(
    api: Api, headers: dict[str, str], method: str, path: str, body: object
) -> None:
    r = await api.client.request(method, path, headers=headers, json=body)
    assert r.status_code == 403
    assert r.json()["error_id"] == "auth.forbidden"
    assert r.json()["details"]["role"] in ("agent", "supervisor")


async def test_ip_allow_list_per_role(api: Api) -> None:
    r = await api.client.put(
        "/api/v1/config/acls/supervisor", headers=ADMIN, json={"allow": ["10.0.0.0/8"]}
    )
    assert r.status_code == 201
    r = await api.client.get("/api/v1/me", headers=SUPERVISOR)
    assert r.status_code == 403
    assert r.json()["error_id"] == "auth.ip_not_allowed"
    assert r.json()["details"] == {"client": CLIENT[0], "role": "supervisor"}
    async with api.client_from("10.20.30.40") as inside:
        assert (await inside.get("/api/v1/me", headers=SUPERVISOR)).status_code == 200
    async with api.client_from("::ffff:10.1.1.1") as mapped:
        assert (await mapped.get("/api/v1/me", headers=SUPERVISOR)).status_code == 200
    async with api.client_from("192.0.2.1") as outside:
        assert (await outside.get("/api/v1/me", headers=SUPERVISOR)).status_code == 403
        # Other roles have no list: they may connect from anywhere.
        assert (await outside.get("/api/v1/me", headers=AGENT)).status_code == 200
        # Wrong credentials from outside are still 401: nothing about the ACL leaks.
        r = await outside.get("/api/v1/me", headers=bearer("guess"))
        assert r.status_code == 401
    # An empty list shuts the role out.
    await api.client.put("/api/v1/config/acls/agent", headers=ADMIN, json={"allow": []})
    assert (await api.client.get("/api/v1/me", headers=AGENT)).status_code == 403
    # Removing the entity opens it again.
    assert (await api.client.delete("/api/v1/config/acls/supervisor", headers=ADMIN)).is_success
    assert (await api.client.get("/api/v1/me", headers=SUPERVISOR)).status_code == 200


async def test_admin_cannot_lock_themselves_out(api: Api) -> None:
    r = await api.client.put(
        "/api/v1/config/acls/admin", headers=ADMIN, json={"allow": ["192.0.2.0/24"]}
    )
    assert r.status_code == 409
    assert r.json()["error_id"] == "config.acl_lockout"
    r = await api.client.post(
        "/api/v1/config/apply",
        headers=ADMIN,
        json={"config": {"acls": {"admin": {"allow": ["192.0.2.0/24"]}}}},
    )
    assert r.status_code == 409
    assert await api.store.config.get("acls", "admin") is None
    r = await api.client.put(
        "/api/v1/config/acls/admin", headers=ADMIN, json={"allow": ["127.0.0.0/8"]}
    )
    assert r.status_code == 201


async def test_acl_documents_are_validated(api: Api) -> None:
    r = await api.client.put(
        "/api/v1/config/acls/admin", headers=ADMIN, json={"allow": ["not-a-network"]}
    )
    assert r.status_code == 422
    assert r.json()["error_id"] == "config.invalid"
    assert "acls/admin: allow[0]" in r.json()["details"]["problems"][0]
    r = await api.client.put("/api/v1/config/acls/operators", headers=ADMIN, json={"allow": []})
    assert r.status_code == 422


async def test_rate_limit_per_user_with_retry_after(
    store: Store, call_layer: FakeCallLayer, clock: FakeClock
) -> None:
    await standard_users(store)
    app = create_app(
        make_services(store, call_layer, clock, rate_limit=RateLimit(per_second=0.5, burst=3))
    )
    transport = httpx.ASGITransport(app=app, client=CLIENT)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(3):
            assert (await client.get("/api/v1/me", headers=ADMIN)).status_code == 200
        r = await client.get("/api/v1/me", headers=ADMIN)
        assert r.status_code == 429
        assert r.json()["error_id"] == "rate_limited"
        assert r.headers["Retry-After"] == "2"
        assert r.json()["details"] == {"retry_after_s": 2}
        # Another user has their own bucket.
        assert (await client.get("/api/v1/me", headers=SUPERVISOR)).status_code == 200
        clock.advance(1.0)
        assert (await client.get("/api/v1/me", headers=ADMIN)).status_code == 429
        clock.advance(1.0)
        assert (await client.get("/api/v1/me", headers=ADMIN)).status_code == 200
        assert (await client.get("/api/v1/me", headers=ADMIN)).status_code == 429


async def test_failed_authentications_are_limited_per_address(
    store: Store, call_layer: FakeCallLayer, clock: FakeClock
) -> None:
    await standard_users(store)
    services = make_services(
        store, call_layer, clock, auth_failure_limit=RateLimit(per_second=0.1, burst=3)
    )
    app = create_app(services)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(3):
            assert (await client.get("/api/v1/me", headers=bearer("guess"))).status_code == 401
        # Blocked before any secret is checked, even the right one.
        r = await client.get("/api/v1/me", headers=ADMIN)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "10"
    other = httpx.ASGITransport(app=app, client=("198.51.100.8", 1))
    async with httpx.AsyncClient(transport=other, base_url="http://t") as client:
        assert (await client.get("/api/v1/me", headers=ADMIN)).status_code == 200
    clock.advance(10)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/api/v1/me", headers=ADMIN)).status_code == 200


async def test_api_key_lifecycle(api: Api) -> None:
    r = await api.client.post("/api/v1/users/boss/keys", headers=SUPERVISOR, json={"label": "CRM"})
    assert r.status_code == 201
    created = r.json()
    token = created["token"]
    assert token.startswith("tsk_")
    assert len(token) >= 40
    assert created["user"] == "boss"
    assert created["label"] == "CRM"
    me = (await api.client.get("/api/v1/me", headers=bearer(token))).json()
    assert me["key_id"] == created["id"]
    # Only the digest is stored; the API shows a fingerprint, never the digest.
    stored = await api.store.config.get("users", "boss")
    assert stored is not None
    assert token not in json.dumps(stored.document)
    assert any(k["sha256"] == key_digest(token) for k in stored.document["api_keys"])
    shown = (await api.client.get("/api/v1/config/users/boss", headers=ADMIN)).json()
    assert key_digest(token) not in json.dumps(shown)
    assert "password_hash" in shown["document"]
    assert shown["document"]["password_hash"].startswith("redacted:")
    # The change log names who did it.
    changes = await api.store.config.entity_changes("users", "boss")
    assert changes[0].actor == "key:boss/k1"
    # Revoking takes effect on the next request.
    r = await api.client.delete(f"/api/v1/users/boss/keys/{created['id']}", headers=ADMIN)
    assert r.status_code == 200
    assert (await api.client.get("/api/v1/me", headers=bearer(token))).status_code == 401
    r = await api.client.delete(f"/api/v1/users/boss/keys/{created['id']}", headers=ADMIN)
    assert r.status_code == 404
    assert r.json()["error_id"] == "api_key.not_found"


async def test_users_manage_only_their_own_keys(api: Api) -> None:
    r = await api.client.post("/api/v1/users/boss/keys", headers=AGENT)
    assert r.status_code == 403
    r = await api.client.post("/api/v1/users/taro/keys", headers=AGENT)
    assert r.status_code == 201
    r = await api.client.post("/api/v1/users/nobody/keys", headers=ADMIN)
    assert r.status_code == 404
    assert r.json()["error_id"] == "store.not_found"


async def test_password_set_through_the_api_is_hashed_and_kept(api: Api) -> None:
    r = await api.client.put(
        "/api/v1/config/users/hanako",
        headers=ADMIN,
        json={"role": "agent", "agent": "1002", "password": "hanako-secret"},
    )
    assert r.status_code == 201
    stored = await api.store.config.get("users", "hanako")
    assert stored is not None
    assert "password" not in stored.document
    assert "hanako-secret" not in json.dumps(stored.document)
    assert verify_password("hanako-secret", stored.document["password_hash"])
    r = await api.client.get("/api/v1/me", auth=basic("hanako", "hanako-secret"))
    assert r.json()["agent"] == "1002"
    # Writing back what GET shows (a redacted hash) changes nothing.
    shown = (await api.client.get("/api/v1/config/users/hanako", headers=ADMIN)).json()
    r = await api.client.put("/api/v1/config/users/hanako", headers=ADMIN, json=shown["document"])
    assert r.status_code == 200
    assert r.json()["revision"] == shown["revision"]
    # Changing the role without a password keeps the password.
    r = await api.client.put(
        "/api/v1/config/users/hanako", headers=ADMIN, json={"role": "supervisor"}
    )
    assert r.status_code == 200
    r = await api.client.get("/api/v1/me", auth=basic("hanako", "hanako-secret"))
    assert r.json()["role"] == "supervisor"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"role": "agent", "password": "long-enough"}, "must name their ACD agent"),
        ({"role": "boss", "password": "long-enough"}, "role must be one of"),
        ({"role": "admin", "password": "short"}, "password must be"),
        ({"role": "admin", "password_hash": "md5$abc"}, "password_hash"),
        ({"role": "admin", "api_keys": [{"id": "k", "sha256": "abc"}]}, "sha256"),
        ({"role": "admin", "api_keys": [{"id": "k", "sha256": "redacted:1"}]}, "redacted"),
        ({"role": "admin", "shoe_size": 42}, "unknown fields"),
    ],
)
async def test_user_documents_are_validated(
    api: Api, document: dict[str, object], problem: str
) -> None:
    r = await api.client.put("/api/v1/config/users/newbie", headers=ADMIN, json=document)
    assert r.status_code == 422
    assert r.json()["error_id"] == "config.invalid"
    assert problem in " ".join(r.json()["details"]["problems"])
    assert await api.store.config.get("users", "newbie") is None


async def test_seed_api_key_is_idempotent_and_respects_the_operator(api: Api) -> None:
    assert await seed_api_key(api.store, "demo-admin", "demo-admin-key", "admin")
    revision = await api.store.config.current_revision()
    assert not await seed_api_key(api.store, "demo-admin", "demo-admin-key", "admin")
    assert await api.store.config.current_revision() == revision
    me = (await api.client.get("/api/v1/me", headers=bearer("demo-admin-key"))).json()
    assert me == {
        "name": "demo-admin",
        "role": "admin",
        "agent": None,
        "via": "key",
        "key_id": "seed",
    }
    # An operator disables it: seeding again does not re-enable it.
    entity = await api.store.config.get("users", "demo-admin")
    assert entity is not None
    await api.store.config.put("users", "demo-admin", {**entity.document, "disabled": True}, "op")
    assert not await seed_api_key(api.store, "demo-admin", "demo-admin-key", "admin")
    assert (await api.client.get("/api/v1/me", headers=bearer("demo-admin-key"))).status_code == 401
    changes = await api.store.config.entity_changes("users", "demo-admin")
    assert changes[-1].actor == "system:seed"


def test_password_hashes_carry_their_parameters() -> None:
    encoded = hash_password("correct horse", n=1 << 10)
    params = ScryptParams.parse(encoded)
    assert (params.n, params.r, params.p) == (1 << 10, 8, 1)
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsf", encoded)
    assert hash_password("correct horse", n=1 << 10) != encoded  # salted
    assert not verify_password("x", "scrypt$1024$8$1$AAAA$AAAA")  # salt too short
    with pytest.raises(ValueError, match="power of two"):
        ScryptParams.parse(encoded.replace("$1024$", "$1000$"))
    with pytest.raises(ValueError, match="power of two"):
        ScryptParams.parse(encoded.replace("$1024$", f"${1 << 24}$"))
    assert not verify_password("correct horse", "plain-text")
