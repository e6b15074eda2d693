"""Webhook dead letters on SQLite and PostgreSQL: kept with everything needed to redeliver,
listed newest first by keyset pages, redelivered once, and one row per delivery even when a
redelivery dies again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tsunagu.store import (
    InvalidStateError,
    NotFoundError,
    Store,
    StoreRequestError,
)

from .conftest import FakeClock

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
PAYLOAD = {
    "type": "call.offered",
    "id": "e",
    "seq": 3,
    "at": "2025-04-01T09:00:00.000+00:00",
    "data": {"agent_id": "1001", "caller": "0901234567", "名前": "田中"},
}


async def dead(
    store: Store, webhook: str = "crm", *, at: float = 0, attempts: int = 3, delivery: str = ""
) -> str:
    delivery_id = delivery or str(uuid.uuid4())
    await store.dead_letters.record(
        delivery_id=delivery_id,
        webhook=webhook,
        event_type="call.offered",
        event_id=str(uuid.uuid4()),
        payload=PAYLOAD,
        attempts=attempts,
        last_status=500,
        last_error="HTTP 500 (gave up: max attempts)",
        created_at=T0,
        dead_at=T0 + timedelta(seconds=at),
    )
    return delivery_id


async def test_a_dead_letter_keeps_what_redelivery_needs(store: Store) -> None:
    letter_id = await dead(store)
    letter = await store.dead_letters.get(letter_id)
    assert letter is not None
    assert letter.webhook == "crm" and letter.event_type == "call.offered"
    assert letter.payload == PAYLOAD  # JSON round trip, non-ASCII kept
    assert (letter.attempts, letter.last_status) == (3, 500)
    assert letter.last_error == "HTTP 500 (gave up: max attempts)"
    assert letter.created_at == T0 and letter.dead_at == T0
    assert letter.pending and letter.redelivered_at is None
    assert await store.dead_letters.get("no-such-letter") is None


async def test_list_is_newest_first_in_keyset_pages(store: Store) -> None:
    ids = [await dead(store, at=n) for n in range(5)]
    other = await dead(store, "billing", at=10)
    first = await store.dead_letters.list(limit=2, webhook="crm")
    assert [x.id for x in first.items] == [ids[4], ids[3]]
    assert first.next_cursor is not None
    second = await store.dead_letters.list(limit=2, webhook="crm", cursor=first.next_cursor)
    assert [x.id for x in second.items] == [ids[2], ids[1]]
    assert second.next_cursor is not None
    last = await store.dead_letters.list(limit=2, webhook="crm", cursor=second.next_cursor)
    assert [x.id for x in last.items] == [ids[0]] and last.next_cursor is None
    everything = await store.dead_letters.list()
    assert everything.items[0].id == other and len(everything.items) == 6
    with pytest.raises(StoreRequestError, match="cursor"):
        await store.dead_letters.list(cursor="garbage!")
    with pytest.raises(StoreRequestError, match="limit"):
        await store.dead_letters.list(limit=0)


async def test_same_second_deaths_page_by_id(store: Store) -> None:
    ids = sorted([await dead(store, at=1) for _ in range(4)], reverse=True)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await store.dead_letters.list(limit=1, cursor=cursor)
        seen += [x.id for x in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids


async def test_redelivery_is_marked_once_and_counts_follow(store: Store, clock: FakeClock) -> None:
    a = await dead(store, "crm")
    await dead(store, "crm")
    await dead(store, "billing")
    assert await store.dead_letters.pending_counts() == {"crm": 2, "billing": 1}
    clock.advance(60)
    marked = await store.dead_letters.mark_redelivered(a)
    assert marked.redelivered_at == T0 + timedelta(seconds=60) and not marked.pending
    with pytest.raises(InvalidStateError, match="already redelivered"):
        await store.dead_letters.mark_redelivered(a)
    with pytest.raises(NotFoundError):
        await store.dead_letters.mark_redelivered("missing")
    assert await store.dead_letters.pending_counts() == {"crm": 1, "billing": 1}
    pending = await store.dead_letters.list(pending=True, webhook="crm")
    assert a not in [x.id for x in pending.items]
    done = await store.dead_letters.list(pending=False)
    assert [x.id for x in done.items] == [a]


async def test_a_redelivery_that_dies_again_updates_the_same_row(store: Store) -> None:
    letter_id = await dead(store, attempts=3)
    await store.dead_letters.mark_redelivered(letter_id)
    await dead(store, delivery=letter_id, attempts=2, at=120)
    letter = await store.dead_letters.get(letter_id)
    assert letter is not None
    assert letter.attempts == 5 and letter.pending
    assert letter.dead_at == T0 + timedelta(seconds=120)
    assert letter.created_at == T0
    page = await store.dead_letters.list()
    assert [x.id for x in page.items] == [letter_id]


async def test_bad_values_are_refused_naming_the_field(store: Store) -> None:
    with pytest.raises(StoreRequestError, match="webhook"):
        await dead(store, "w" * 65)
    with pytest.raises(StoreRequestError, match="dead_at"):
        await store.dead_letters.record(
            delivery_id="d",
            webhook="crm",
            event_type="call.ended",
            event_id="e",
            payload={},
            attempts=1,
            last_status=None,
            last_error="timeout",
            created_at=T0,
            dead_at=datetime(2025, 4, 1, 9, 0),  # naive: its zone would be a guess
        )
