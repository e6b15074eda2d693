"""``/api/v1/callbacks``: supervisors list voicemail callback tasks (filters, keyset
pages) and cancel a pending one (audited on the voicemail's timeline; a task being dialled
or over is a 409, an unknown one a 404). Agents get 403. The store is real (SQLite and
PostgreSQL); without a call layer the route cancels in the store alone, and with one it
goes through it (the real one is exercised with phones in
tests/integration/test_voicemail_callback.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api.conftest import ADMIN, AGENT, SUPERVISOR, Api
from tsunagu.store import CallbackTask, Store

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


async def voicemail(store: Store, seconds: float = 0, queue: str | None = "sales") -> CallbackTask:
    at = T0 + timedelta(seconds=seconds)
    i = await store.history.start_interaction(
        direction="inbound", caller="0908880000", dialled="0312345678", started_at=at
    )
    return await store.callback_tasks.create(
        voicemail_interaction_id=i.id,
        caller="0908880000",
        queue=queue,
        recording=f"/var/recordings/{i.id}-voicemail.wav",
        created_at=at,
    )


async def test_supervisors_list_tasks_newest_first_with_filters(api: Api) -> None:
    tasks = [await voicemail(api.store, n, "sales" if n != 1 else None) for n in range(3)]
    r = await api.client.get("/api/v1/callbacks?limit=2", headers=SUPERVISOR)
    assert r.status_code == 200
    page = r.json()
    assert [x["id"] for x in page["items"]] == [tasks[2].id, tasks[1].id]
    first = page["items"][0]
    assert first["state"] == "pending" and first["attempts"] == 0
    assert first["caller"] == "0908880000" and first["queue"] == "sales"
    assert first["voicemail_interaction_id"] == tasks[2].voicemail_interaction_id
    r = await api.client.get(
        "/api/v1/callbacks", params={"limit": 2, "cursor": page["next_cursor"]}, headers=ADMIN
    )
    assert [x["id"] for x in r.json()["items"]] == [tasks[0].id]
    assert r.json()["next_cursor"] is None
    r = await api.client.get("/api/v1/callbacks?unassigned=true", headers=SUPERVISOR)
    assert [x["id"] for x in r.json()["items"]] == [tasks[1].id]
    r = await api.client.get("/api/v1/callbacks?queue=sales&state=done", headers=SUPERVISOR)
    assert r.json()["items"] == []
    r = await api.client.get("/api/v1/callbacks?state=lost", headers=SUPERVISOR)
    assert r.status_code == 422
    r = await api.client.get("/api/v1/callbacks?cursor=broken", headers=SUPERVISOR)
    assert r.status_code == 400
    got = await api.client.get(f"/api/v1/callbacks/{tasks[0].id}", headers=SUPERVISOR)
    assert got.status_code == 200 and got.json()["id"] == tasks[0].id
    missing = await api.client.get("/api/v1/callbacks/nope", headers=SUPERVISOR)
    assert missing.status_code == 404 and missing.json()["error_id"] == "callback.not_found"


async def test_agents_may_not_see_or_cancel_tasks(api: Api) -> None:
    task = await voicemail(api.store)
    assert (await api.client.get("/api/v1/callbacks", headers=AGENT)).status_code == 403
    r = await api.client.delete(f"/api/v1/callbacks/{task.id}", headers=AGENT)
    assert r.status_code == 403
    stored = await api.store.callback_tasks.get(task.id)
    assert stored is not None and stored.state == "pending"


async def test_cancel_a_pending_task_once_audited(api: Api) -> None:
    task = await voicemail(api.store)
    r = await api.client.delete(f"/api/v1/callbacks/{task.id}", headers=SUPERVISOR)
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled" and r.json()["last_error"] == "cancelled by boss"
    again = await api.client.delete(f"/api/v1/callbacks/{task.id}", headers=SUPERVISOR)
    assert again.status_code == 409 and "cancelled" in again.json()["message"]
    record = await api.store.history.get(task.voicemail_interaction_id)
    assert record is not None
    (audit,) = [e for e in record.events if e.type == "audit"]
    assert audit.data["action"] == "callback.cancel" and audit.data["actor"] == "key:boss/k1"
    r = await api.client.delete("/api/v1/callbacks/nope", headers=SUPERVISOR)
    assert r.status_code == 404


async def test_a_task_being_dialled_cannot_be_cancelled(api: Api) -> None:
    task = await voicemail(api.store)
    await api.store.callback_tasks.move(task.id, expected=["pending"], state="dialling")
    r = await api.client.delete(f"/api/v1/callbacks/{task.id}", headers=SUPERVISOR)
    assert r.status_code == 409


async def test_cancel_goes_through_the_call_layer_when_there_is_one(api: Api) -> None:
    task = await voicemail(api.store)
    seen: list[tuple[str, str]] = []

    async def cancel(task_id: str, by: str) -> CallbackTask:
        seen.append((task_id, by))
        return await api.store.callback_tasks.move(task_id, expected=["pending"], state="cancelled")

    api.services.cancel_callback = cancel
    r = await api.client.delete(f"/api/v1/callbacks/{task.id}", headers=ADMIN)
    assert r.status_code == 200 and seen == [(task.id, "root")]
