"""Agent state intervals on SQLite and PostgreSQL: moves, clipping, open rows, crashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tsunagu.store import Store, open_store
from tsunagu.store.errors import StoreRequestError

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def test_each_move_closes_the_previous_interval(store: Store) -> None:
    states = store.agent_states
    await states.record("1001", "available", None, at(0))
    await states.record("1001", "reserved", None, at(10))
    await states.record("1001", "on_call", None, at(10.5))
    await states.record("1001", "wrap_up", None, at(20.5))
    await states.record("1001", "available", None, at(21))
    await states.record("1002", "away", "lunch", at(5))
    report = await states.time_per_state(at(0), at(30), now=at(30))
    by_agent = {r.agent: r for r in report}
    a = by_agent["1001"]
    assert a.seconds == {
        "available": 10 * 60 + 9 * 60,
        "reserved": 30,
        "on_call": 600,
        "wrap_up": 30,
    }
    assert a.intervals == {"available": 2, "reserved": 1, "on_call": 1, "wrap_up": 1}
    assert a.total == 30 * 60  # no gap, no overlap
    assert by_agent["1002"].seconds == {"away": 25 * 60}
    assert a.interrupted == 0


async def test_window_clips_intervals_and_open_ones_count_until_now(store: Store) -> None:
    states = store.agent_states
    await states.record("1001", "available", None, at(0))
    await states.record("1001", "on_call", None, at(60))
    # Window 0:30-1:30; still on the call at 1:10 ("now"): counted up to now only.
    report = await states.time_per_state(at(30), at(90), now=at(70), agent="1001")
    assert [r.agent for r in report] == ["1001"]
    assert report[0].seconds == {"available": 30 * 60, "on_call": 10 * 60}
    # An interval entirely outside the window is not there at all.
    assert await states.time_per_state(at(-60), at(-1), now=at(70)) == []
    # One agent only.
    await states.record("1003", "available", None, at(0))
    assert [r.agent for r in await states.time_per_state(at(0), at(90), at(90), "1003")] == ["1003"]


async def test_graceful_stop_closes_and_crash_is_marked_interrupted(
    store: Store, store_url: str
) -> None:
    states = store.agent_states
    await states.record("1001", "available", None, at(0))
    await states.record("1002", "available", None, at(0))
    assert await states.close_all(at(10)) == 2
    # After a clean stop nothing is left open and nothing is interrupted.
    assert await states.close_open_on_startup(at(20)) == 0
    # A "crash": rows left open, then a new process starts on the same database.
    await states.record("1001", "on_call", None, at(30))
    restarted = await open_store(store_url)
    try:
        assert await restarted.agent_states.close_open_on_startup(at(45)) == 1
        report = await restarted.agent_states.time_per_state(at(0), at(60), now=at(60))
    finally:
        await restarted.close()
    a = {r.agent: r for r in report}["1001"]
    assert a.seconds == {"available": 600, "on_call": 15 * 60}
    assert a.interrupted == 1


async def test_bad_input_is_refused(store: Store) -> None:
    with pytest.raises(StoreRequestError):
        await store.agent_states.record("", "available", None, at(0))
    with pytest.raises(StoreRequestError, match="after its start"):
        await store.agent_states.time_per_state(at(10), at(0), now=at(10))
    with pytest.raises(StoreRequestError):
        await store.agent_states.record("1001", "available", None, datetime(2026, 1, 1))
