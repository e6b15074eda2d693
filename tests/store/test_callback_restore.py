"""Start-up restore of voicemail callback tasks, against the real store (SQLite and
PostgreSQL) with the ACD stood in for: every open task is adopted; a task cut mid-dial by
the last stop is pending again with its attempts unchanged; a task waiting for its retry
time enters the ACD only then; an unassigned task is kept but never queued."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from tsunagu.calls.voicemail_callbacks import VoicemailCallbacks
from tsunagu.store import Store


class FakeAcd:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str | None]] = []

    def enqueue(self, call: Any, now: float, *, callback_number: str | None = None) -> None:
        self.entries.append((call.call_id, call.queue_id, callback_number))


class Host(VoicemailCallbacks):
    """The mixin with only what restoring uses (the controller provides it for real)."""

    def __init__(self, store: Store) -> None:
        self.callback_tasks = store.callback_tasks
        self.live_tasks = {}
        self.task_attempts = {}
        self.history = None
        self.center = SimpleNamespace(  # type: ignore[assignment]
            queues={"support": SimpleNamespace(callback_attempts=3, callback_retry_s=60.0)}
        )
        self.acd = FakeAcd()  # type: ignore[assignment]

    @staticmethod
    def _now() -> float:
        return 0.0

    def _pump(self) -> None:
        pass


async def _task(store: Store, caller: str, queue: str | None = "support") -> str:
    created = await store.callback_tasks.create(
        voicemail_interaction_id=f"vm-{caller}",
        caller=caller,
        queue=queue,
        recording="/r.wav",
        created_at=datetime.now(UTC),
    )
    return created.id


async def test_open_tasks_return_to_the_acd_at_start_up(store: Store) -> None:
    waiting = await _task(store, "0900000001")
    cut = await _task(store, "0900000002")
    await store.callback_tasks.move(cut, expected=["pending"], state="dialling", attempts=1)
    later = await _task(store, "0900000003")
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    await store.callback_tasks.move(later, expected=["pending"], state="pending", not_before=soon)
    unassigned = await _task(store, "0900000004", queue=None)
    over = await _task(store, "0900000005")
    await store.callback_tasks.move(over, expected=["pending"], state="cancelled")

    host = Host(store)
    assert await host.restore_callback_tasks() == 4
    assert set(host.live_tasks) == {waiting, cut, later, unassigned}
    acd = host.acd
    assert isinstance(acd, FakeAcd)
    assert [(q, n) for _, q, n in acd.entries] == [
        ("support", "0900000001"),
        ("support", "0900000002"),
    ]
    restored = await store.callback_tasks.get(cut)
    assert restored is not None
    assert (restored.state, restored.attempts, restored.last_error) == ("pending", 1, "interrupted")
    # The ACD entry of an attempt is the attempt's id, which finds the task again.
    assert {host.task_attempts[i].task.id for i, _, _ in acd.entries} == {waiting, cut}
    timer = host.live_tasks[later].timer
    assert timer is not None
    for _ in range(200):  # bounded (10 s): the retry time is 0.3 s away
        if len(acd.entries) == 3:
            break
        await asyncio.sleep(0.05)
    assert [n for _, _, n in acd.entries][2] == "0900000003"
    host.stop_callback_timers()
