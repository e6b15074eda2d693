"""Revisioned configuration on SQLite and PostgreSQL: every write one transaction with its
change-log row, gap-free revisions under concurrency, optimistic concurrency, validation
that aborts the write, and the change log DR replicates."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from tsunagu.store import (
    Change,
    ConfigValidationError,
    InvalidDocumentError,
    NotFoundError,
    RevisionConflictError,
    Store,
    StoreRequestError,
    UnknownKindError,
)

from .conftest import FakeClock

QUEUE = {"strategy": "longest_idle", "agents": ["1001", "1002"], "sla": {"seconds": 20}}


async def _changes(store: Store) -> list[Change]:
    out: list[Change] = []
    while batch := await store.config.changes_since(out[-1].revision if out else 0):
        out += batch
    return out


async def test_put_get_list_delete_and_the_change_log(store: Store, clock: FakeClock) -> None:
    config = store.config
    assert await config.current_revision() == 0
    assert await config.get("queues", "support") is None

    created = await config.put("queues", "support", QUEUE, "user:alice")
    assert (created.revision, created.version, created.document) == (1, 1, QUEUE)
    assert created.created_at == clock.now

    t_update = clock.advance(60)
    changed = {**QUEUE, "agents": ["1001"]}
    updated = await config.put("queues", "support", changed, "user:bob")
    assert (updated.revision, updated.version) == (2, 2)
    assert updated.created_at == created.created_at
    assert updated.updated_at == t_update

    # The same document again is not a change: no revision, no log row.
    clock.advance(60)
    again = await config.put("queues", "support", json.loads(json.dumps(changed)), "user:carol")
    assert again == updated
    assert await config.current_revision() == 2

    await config.put("queues", "billing", {"strategy": "ring_all"}, "user:alice")
    listed = await config.list("queues")
    assert [e.name for e in listed] == ["billing", "support"]

    deleted_at = clock.advance(60)
    assert await config.delete("queues", "support", "user:alice") == 4
    assert await config.get("queues", "support") is None
    assert [e.name for e in await config.list("queues")] == ["billing"]
    with pytest.raises(NotFoundError):
        await config.delete("queues", "support", "user:alice")

    # Re-created after a delete: a new life (created_at) but versions never repeat.
    recreated = await config.put("queues", "support", QUEUE, "user:alice")
    assert (recreated.revision, recreated.version) == (5, 4)
    assert recreated.created_at == deleted_at

    log = await _changes(store)
    assert [(c.revision, c.operation, c.actor) for c in log] == [
        (1, "create", "user:alice"),
        (2, "update", "user:bob"),
        (3, "create", "user:alice"),
        (4, "delete", "user:alice"),
        (5, "create", "user:alice"),
    ]
    assert (log[1].before, log[1].after) == (QUEUE, changed)
    assert (log[3].before, log[3].after) == (changed, None)
    assert log[1].at == t_update
    history = await config.entity_changes("queues", "support")
    assert [c.revision for c in history] == [5, 4, 2, 1]


async def test_optimistic_concurrency(store: Store) -> None:
    config = store.config
    first = await config.put("flows", "main", {"entry": "a"}, "u", expected_revision=0)
    with pytest.raises(RevisionConflictError) as caught:
        await config.put("flows", "main", {"entry": "b"}, "u", expected_revision=0)
    assert caught.value.details["current_revision"] == first.revision

    await config.put("flows", "other", {"entry": "x"}, "u")  # moves the global revision only
    second = await config.put("flows", "main", {"entry": "b"}, "u", expected_revision=1)
    assert second.revision == 3
    with pytest.raises(RevisionConflictError, match="revision 3"):
        await config.put("flows", "main", {"entry": "c"}, "u", expected_revision=1)
    with pytest.raises(RevisionConflictError):
        await config.delete("flows", "main", "u", expected_revision=1)
    assert (await config.get("flows", "main")) == second
    assert await config.delete("flows", "main", "u", expected_revision=3) == 4
    with pytest.raises(RevisionConflictError, match="does not exist"):
        await config.put("flows", "main", {"entry": "d"}, "u", expected_revision=3)
    assert await config.current_revision() == 4


async def test_validator_problems_abort_the_write(store: Store) -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []

    def validate(kind: str, name: str, document: dict[str, Any]) -> list[str]:
        seen.append((kind, name, document))
        return [] if "entry" in document else ["entry: required", "blocks: empty"]

    store.config.validator = validate
    with pytest.raises(ConfigValidationError) as caught:
        await store.config.put("flows", "main", {"blocks": []}, "u")
    assert caught.value.problems == ["flows/main: entry: required", "flows/main: blocks: empty"]
    assert caught.value.error_id == "config.invalid"
    assert await store.config.current_revision() == 0
    assert await store.config.get("flows", "main") is None

    ok = await store.config.put("flows", "main", {"entry": "hello"}, "u")
    assert ok.revision == 1
    assert seen[-1] == ("flows", "main", {"entry": "hello"})


@pytest.mark.parametrize(
    ("kind", "name", "document", "error"),
    [
        ("flows", "main", ["not", "an", "object"], InvalidDocumentError),
        ("flows", "main", {"ratio": float("nan")}, InvalidDocumentError),
        ("flows", "main", {1: "integer key"}, InvalidDocumentError),
        ("flows", "main", {"blob": b"bytes"}, InvalidDocumentError),
        ("flows", "main", {"nested": [{"x": object()}]}, InvalidDocumentError),
        ("flows", "", {}, InvalidDocumentError),
        ("flows", " main", {}, InvalidDocumentError),
        ("flows", "x" * 201, {}, InvalidDocumentError),
        ("flows", "tab\there", {}, InvalidDocumentError),
        ("flow", "main", {}, UnknownKindError),
    ],
)
async def test_bad_requests_write_nothing(
    store: Store, kind: str, name: str, document: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.config.put(kind, name, document, "u")
    assert await store.config.current_revision() == 0
    assert await store.config.changes_since(0) == []


async def test_dates_from_yaml_are_stored_as_iso_strings(store: Store) -> None:
    import datetime as dt

    doc = {"holidays": [{"date": dt.date(2025, 1, 1), "name": "元日"}]}
    stored = await store.config.put("calendars", "jp", doc, "u")
    assert stored.document == {"holidays": [{"date": "2025-01-01", "name": "元日"}]}
    assert (await store.config.put("calendars", "jp", doc, "u")).revision == stored.revision


async def test_changes_since_pages_through_the_log(store: Store) -> None:
    for i in range(25):
        await store.config.put("numbers", f"05000000{i:02d}", {"flow": "main"}, "u")
    pages: list[list[int]] = []
    last = 0
    while batch := await store.config.changes_since(last, limit=10):
        pages.append([c.revision for c in batch])
        last = batch[-1].revision
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [r for p in pages for r in p] == list(range(1, 26))
    assert await store.config.changes_since(25) == []
    with pytest.raises(StoreRequestError):
        await store.config.changes_since(-1)
    with pytest.raises(StoreRequestError):
        await store.config.changes_since(0, limit=0)


async def test_concurrent_writers_get_gap_free_revisions(store: Store) -> None:
    writers, writes_each = 20, 3

    async def writer(n: int) -> list[int]:
        revisions = []
        for k in range(writes_each):
            # Half the writers fight over one shared entity, the rest write their own.
            name = "shared" if n % 2 else f"agent-{n}"
            entity = await store.config.put("agents", name, {"writer": n, "k": k}, f"w{n}")
            revisions.append(entity.revision)
        return revisions

    results = await asyncio.gather(*(writer(n) for n in range(writers)))
    total = writers * writes_each
    returned = sorted(r for rs in results for r in rs)
    assert returned == list(range(1, total + 1))
    assert await store.config.current_revision() == total
    log = await _changes(store)
    assert [c.revision for c in log] == list(range(1, total + 1))
    # The entity's stored state is exactly its last change in the log.
    final = await store.config.get("agents", "shared")
    assert final is not None
    last_shared = [c for c in log if c.name == "shared"][-1]
    assert (final.revision, final.document) == (last_shared.revision, last_shared.after)
    assert final.version == writes_each * writers // 2
    # Each update's "before" is the previous change's "after": no lost update.
    shared = [c for c in log if c.name == "shared"]
    assert all(b.before == a.after for a, b in itertools.pairwise(shared))


async def test_concurrent_conditional_puts_let_exactly_one_win(store: Store) -> None:
    base = await store.config.put("flows", "main", {"v": 0}, "u")

    async def attempt(n: int) -> bool:
        try:
            await store.config.put(
                "flows", "main", {"v": n}, f"w{n}", expected_revision=base.revision
            )
        except RevisionConflictError:
            return False
        return True

    wins = await asyncio.gather(*(attempt(n) for n in range(1, 11)))
    assert wins.count(True) == 1
    assert await store.config.current_revision() == base.revision + 1
    final = await store.config.get("flows", "main")
    assert final is not None
    assert final.document == {"v": wins.index(True) + 1}


def test_change_round_trips_through_json() -> None:
    import datetime as dt

    change = Change(
        revision=7,
        kind="flows",
        name="main",
        operation="update",
        actor="user:alice",
        before={"a": 1},
        after={"a": 2, "名": "受付"},
        at=dt.datetime(2025, 4, 1, 9, 0, 0, 123000, tzinfo=dt.UTC),
    )
    assert Change.from_dict(json.loads(json.dumps(change.to_dict()))) == change
    with pytest.raises(StoreRequestError):
        Change.from_dict({**change.to_dict(), "operation": "truncate"})
    with pytest.raises(StoreRequestError):
        Change.from_dict({"revision": 1})


async def test_listeners_hear_committed_changes_only(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[list[int]] = []
    store.config.on_change = lambda changes: heard.append([c.revision for c in changes])
    await store.config.put("flows", "main", {"entry": "a"}, "u")
    await store.config.put("flows", "main", {"entry": "a"}, "u")  # no change, no news
    with pytest.raises(RevisionConflictError):
        await store.config.put("flows", "main", {"entry": "b"}, "u", expected_revision=0)
    await store.config.apply({"queues": {"a": {}, "b": {}}}, "u")
    await store.config.delete("queues", "a", "u")
    assert heard == [[1], [2, 3], [4]]
    assert [c.revision for c in await store.config.changes_since(0)] == [1, 2, 3, 4]

    def broken(changes: list[Change]) -> None:
        raise RuntimeError("listener bug")

    store.config.on_change = broken
    entity = await store.config.put("flows", "main", {"entry": "c"}, "u")
    assert entity.revision == 5  # the write stands; the failure is logged
    assert "listener failed" in caplog.text
