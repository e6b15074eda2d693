"""Callback tasks on SQLite and PostgreSQL: created pending with what a callback needs,
moved only from the state the caller expects (a cancel and an offer that cross cannot both
win), the open ones found for start-up, listed newest first by keyset pages with filters,
and a database from before the table (0004) upgraded to it with its data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tsunagu.store import (
    InvalidStateError,
    NotFoundError,
    Store,
    StoreRequestError,
    migrate,
    open_store,
)

from .conftest import FakeClock

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


async def task(
    store: Store, *, queue: str | None = "support", at: float = 0, caller: str = "0908880000"
) -> str:
    created = await store.callback_tasks.create(
        voicemail_interaction_id="vm-" + caller,
        caller=caller,
        queue=queue,
        recording="/var/tsunagu/recordings/vm-voicemail.wav",
        created_at=T0 + timedelta(seconds=at),
    )
    return created.id


async def test_a_new_task_is_pending_with_what_the_callback_needs(store: Store) -> None:
    task_id = await task(store)
    got = await store.callback_tasks.get(task_id)
    assert got is not None
    assert (got.state, got.attempts, got.queue, got.caller) == (
        "pending",
        0,
        "support",
        "0908880000",
    )
    assert got.voicemail_interaction_id == "vm-0908880000"
    assert got.recording.endswith("vm-voicemail.wav")
    assert got.created_at == T0 and got.updated_at == T0 and got.not_before is None
    assert (got.last_interaction_id, got.last_agent, got.last_error) == (None, None, None)
    assert await store.callback_tasks.get("no-such-task") is None


async def test_moves_are_compare_and_set(store: Store, clock: FakeClock) -> None:
    task_id = await task(store)
    clock.advance(60)
    dialling = await store.callback_tasks.move(
        task_id,
        expected=["pending"],
        state="dialling",
        last_agent="1001",
        last_interaction_id="cb-1",
    )
    assert (dialling.state, dialling.last_agent, dialling.last_interaction_id) == (
        "dialling",
        "1001",
        "cb-1",
    )
    assert dialling.updated_at == clock.now
    # A supervisor's cancel that crossed the offer loses, and is told the real state.
    with pytest.raises(InvalidStateError, match="is dialling") as caught:
        await store.callback_tasks.move(task_id, expected=["pending"], state="cancelled")
    assert caught.value.details["state"] == "dialling"
    retry = clock.now + timedelta(minutes=5)
    back = await store.callback_tasks.move(
        task_id,
        expected=["dialling"],
        state="pending",
        attempts=1,
        not_before=retry,
        last_error="not answered (486)",
    )
    assert (back.state, back.attempts, back.not_before, back.last_error) == (
        "pending",
        1,
        retry,
        "not answered (486)",
    )
    assert back.last_agent == "1001"  # kept unless given
    with pytest.raises(NotFoundError):
        await store.callback_tasks.move("nope", expected=["pending"], state="cancelled")
    with pytest.raises(StoreRequestError, match="state must be"):
        await store.callback_tasks.move(task_id, expected=["pending"], state="lost")


async def test_open_tasks_are_pending_and_dialling_oldest_first(store: Store) -> None:
    first = await task(store, at=0)
    second = await task(store, at=10, queue=None)
    done = await task(store, at=20)
    dialling = await task(store, at=30)
    await store.callback_tasks.move(done, expected=["pending"], state="cancelled")
    await store.callback_tasks.move(dialling, expected=["pending"], state="dialling")
    assert [t.id for t in await store.callback_tasks.open_tasks()] == [first, second, dialling]


async def test_listing_pages_and_filters(store: Store) -> None:
    ids = [await task(store, at=i, queue="support" if i % 2 else None) for i in range(5)]
    await store.callback_tasks.move(ids[3], expected=["pending"], state="cancelled")
    page = await store.callback_tasks.list(limit=2)
    assert [t.id for t in page.items] == [ids[4], ids[3]]
    assert page.next_cursor is not None
    rest = await store.callback_tasks.list(limit=2, cursor=page.next_cursor)
    assert [t.id for t in rest.items] == [ids[2], ids[1]]
    last = await store.callback_tasks.list(limit=2, cursor=rest.next_cursor)
    assert [t.id for t in last.items] == [ids[0]] and last.next_cursor is None
    queued = await store.callback_tasks.list(queue="support", state="pending")
    assert [t.id for t in queued.items] == [ids[1]]
    unassigned = await store.callback_tasks.list(unassigned=True)
    assert [t.id for t in unassigned.items] == [ids[4], ids[2], ids[0]]
    with pytest.raises(StoreRequestError, match="limit"):
        await store.callback_tasks.list(limit=0)
    with pytest.raises(StoreRequestError, match="state must be"):
        await store.callback_tasks.list(state="lost")


async def test_create_refuses_what_does_not_fit(store: Store) -> None:
    with pytest.raises(StoreRequestError, match="caller"):
        await store.callback_tasks.create(
            voicemail_interaction_id="vm", caller="", queue=None, recording="r.wav"
        )
    with pytest.raises(StoreRequestError, match="queue"):
        await store.callback_tasks.create(
            voicemail_interaction_id="vm", caller="1", queue="q" * 65, recording="r.wav"
        )


async def test_upgrade_from_0004_adds_the_table_and_keeps_dead_letters(empty_url: str) -> None:
    assert await migrate(empty_url, "0004_webhook_deliveries") == "0004_webhook_deliveries"
    old = await open_store(empty_url, migrate_schema=False)
    try:
        await old.dead_letters.record(
            delivery_id="d-1",
            webhook="crm",
            event_type="call.ended",
            event_id="e-1",
            payload={"名前": "田中"},
            attempts=3,
            last_status=500,
            last_error="x",
            created_at=T0,
            dead_at=T0,
        )
        with pytest.raises(Exception):  # noqa: B017 - no such table yet
            await old.callback_tasks.open_tasks()
    finally:
        await old.close()
    assert await migrate(empty_url, "0005_callback_tasks") == "0005_callback_tasks"
    new = await open_store(empty_url)
    try:
        letter = await new.dead_letters.get("d-1")
        assert letter is not None and letter.payload == {"名前": "田中"}
        task_id = await task(new)
        assert [t.id for t in await new.callback_tasks.open_tasks()] == [task_id]
    finally:
        await new.close()
