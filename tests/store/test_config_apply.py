"""``apply`` (what ``tsunagu config apply [--dry-run]`` runs), ``export``, and replaying the
change log on a DR standby — on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tsunagu.store import (
    Change,
    ConfigValidationError,
    InvalidDocumentError,
    ReplicationError,
    RevisionConflictError,
    Store,
    open_store,
)

DESIRED: dict[str, dict[str, dict[str, Any]]] = {
    "numbers": {"0501234567": {"flow": "main"}, "0120000000": {"flow": "support"}},
    "flows": {
        "main": {"entry": "hours", "blocks": [{"id": "hours", "next": "menu"}, {"id": "menu"}]},
        "support": {"entry": "queue"},
    },
    "queues": {"support": {"strategy": "longest_idle", "agents": ["1001", "1002"]}},
}


async def test_dry_run_writes_nothing_and_apply_is_idempotent(store: Store) -> None:
    config = store.config
    dry = await config.apply(DESIRED, "cli:root", dry_run=True)
    assert dry.dry_run and dry.applied_revision is None
    assert [(i.kind, i.name) for i in dry.creates] == [
        ("numbers", "0120000000"),
        ("numbers", "0501234567"),
        ("flows", "main"),
        ("flows", "support"),
        ("queues", "support"),
    ]
    assert dry.updates == [] and dry.deletes == []
    assert await config.current_revision() == 0
    assert await config.export() == {}

    applied = await config.apply(DESIRED, "cli:root")
    assert applied.items == dry.items
    assert (applied.base_revision, applied.applied_revision) == (0, 5)
    assert await config.export() == DESIRED
    assert [c.actor for c in await config.changes_since(0)] == ["cli:root"] * 5

    for dry_run in (True, False):
        again = await config.apply(copy.deepcopy(DESIRED), "cli:root", dry_run=dry_run)
        assert again.empty and again.applied_revision is None
    assert await config.current_revision() == 5
    # export() is apply()'s input: round-tripping it changes nothing either.
    assert (await config.apply(await config.export(), "cli:root")).empty


async def test_diff_lists_creates_updates_deletes(store: Store) -> None:
    config = store.config
    await config.apply(DESIRED, "cli:root")
    await config.put("agents", "1001", {"name": "Sato"}, "api:key1")  # a kind the file omits

    desired = copy.deepcopy(DESIRED)
    desired["flows"]["main"]["blocks"][1]["prompt"] = "menu.wav"
    desired["flows"]["main"]["entry"] = "menu"
    del desired["numbers"]["0120000000"]
    desired["queues"]["sales"] = {"strategy": "round_robin"}
    desired["flows"]["support"] = {"entry": "queue"}  # unchanged

    dry = await config.apply(desired, "cli:root", dry_run=True)
    assert [(i.operation, i.kind, i.name) for i in dry.items] == [
        ("delete", "numbers", "0120000000"),
        ("update", "flows", "main"),
        ("create", "queues", "sales"),
    ]
    changes = {c.path: (c.before, c.after) for c in dry.updates[0].field_changes()}
    assert changes == {"$.entry": ("hours", "menu"), "$.blocks[1].prompt": (None, "menu.wav")}
    rendered = dry.render()
    assert "- numbers/0120000000" in rendered
    assert "~ flows/main" in rendered
    assert '$.blocks[1].prompt: (absent) -> "menu.wav"' in rendered
    assert "+ queues/sales" in rendered
    assert rendered.endswith("would apply: 1 to create, 1 to update, 1 to delete")

    applied = await config.apply(desired, "cli:root", base_revision=dry.base_revision)
    assert applied.items == dry.items
    assert applied.applied_revision == dry.base_revision + 3
    exported = await config.export()
    assert {k: exported[k] for k in desired} == desired
    # A kind absent from the desired state is left alone.
    assert exported["agents"] == {"1001": {"name": "Sato"}}

    emptied = await config.apply({"queues": {}}, "cli:root")
    assert [(i.operation, i.name) for i in emptied.items] == [
        ("delete", "sales"),
        ("delete", "support"),
    ]
    assert await config.list("queues") == []


async def test_apply_is_all_or_nothing(store: Store) -> None:
    def validate(kind: str, name: str, document: dict[str, Any]) -> list[str]:
        return [f"unknown flow {document['flow']!r}"] if document.get("flow") == "nowhere" else []

    store.config.validator = validate
    desired = copy.deepcopy(DESIRED)
    desired["numbers"]["0800000000"] = {"flow": "nowhere"}
    desired["numbers"]["0800000001"] = {"flow": "nowhere"}
    with pytest.raises(ConfigValidationError) as caught:
        await store.config.apply(desired, "cli:root")
    assert caught.value.problems == [
        "numbers/0800000000: unknown flow 'nowhere'",
        "numbers/0800000001: unknown flow 'nowhere'",
    ]
    with pytest.raises(ConfigValidationError):
        await store.config.apply(desired, "cli:root", dry_run=True)
    with pytest.raises(InvalidDocumentError, match=r"flows: \{\}"):
        await store.config.apply({"flows": None}, "cli:root")
    assert await store.config.current_revision() == 0


async def test_base_revision_guards_seed_and_confirmed_dry_runs(store: Store) -> None:
    # Seeding: only an empty configuration takes the YAML given to `serve`.
    seeded = await store.config.apply(DESIRED, "seed", base_revision=0)
    assert seeded.applied_revision == 5
    with pytest.raises(RevisionConflictError):
        await store.config.apply({"flows": {}}, "seed", base_revision=0)

    dry = await store.config.apply({"flows": {}}, "cli:root", dry_run=True)
    await store.config.put("queues", "late", {"strategy": "ring_all"}, "api:key1")
    with pytest.raises(RevisionConflictError, match="review the diff"):
        await store.config.apply({"flows": {}}, "cli:root", base_revision=dry.base_revision)
    assert len(await store.config.list("flows")) == 2


async def test_standby_replays_the_change_log(store: Store, empty_url: str) -> None:
    primary = store.config
    await primary.apply(DESIRED, "cli:root")
    await primary.put("flows", "main", {"entry": "closed"}, "user:alice")
    await primary.delete("numbers", "0120000000", "user:alice")

    standby = await open_store(empty_url)
    try:
        # The log travels as JSON between the sites.
        wire = json.dumps([c.to_dict() for c in await primary.changes_since(0)])
        received = [Change.from_dict(d) for d in json.loads(wire)]
        assert await standby.config.apply_replicated(received[:3]) == 3
        assert await standby.config.apply_replicated(received) == 7
        assert await standby.config.export() == await primary.export()
        assert await standby.config.changes_since(0) == await primary.changes_since(0)
        # A resend after a lost acknowledgement changes nothing.
        assert await standby.config.apply_replicated(received) == 7

        await primary.put("queues", "support", {"strategy": "ring_all"}, "user:alice")
        await primary.put("queues", "extra", {"strategy": "ring_all"}, "user:alice")
        later = await primary.changes_since(7)
        with pytest.raises(ReplicationError, match="gap"):
            await standby.config.apply_replicated(later[1:])

        # Someone edited the standby directly: the sync stops instead of overwriting.
        await standby.config.put("queues", "support", {"strategy": "local edit"}, "dr:admin")
        with pytest.raises(ReplicationError, match="edited locally"):
            await standby.config.apply_replicated(later)
        assert (await standby.config.get("queues", "support")) is not None
    finally:
        await standby.close()
