"""Pacing maths: due times from t0, no accumulated drift, bounded catch-up — and the shared
clock adapter serving many tickers from one timer (driven by a fake loop, no sleeping)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsunagu.media.clock import MAX_CATCH_UP, MediaClock, Tick, TickSchedule


def test_due_times_are_computed_from_start_not_accumulated() -> None:
    schedule = TickSchedule(t0=100.0, period=0.02)
    assert schedule.due(0) == 100.0
    # 0.02 is not exact in binary; 50,000 additions would drift, one multiplication does not.
    assert schedule.due(50_000) == pytest.approx(1100.0, abs=1e-9)
    accumulated = 100.0
    for _ in range(50_000):
        accumulated += 0.02
    assert abs(accumulated - 1100.0) > abs(schedule.due(50_000) - 1100.0)


def test_late_wakeups_do_not_shift_later_ticks() -> None:
    schedule = TickSchedule(t0=0.0, period=0.02)
    lateness = [0.0, 0.004, 0.011, 0.0, 0.019, 0.002]
    fired: list[Tick] = []
    for n, late in enumerate(lateness, start=0):
        tick = schedule.fire(schedule.due(n) + late)
        assert tick is not None
        fired.append(tick)
        # Whatever the lateness, the next timer is armed for the exact next due time.
        assert schedule.next_due == pytest.approx(0.02 * (n + 1))
    assert [t.index for t in fired] == list(range(len(lateness)))
    assert all(t.frames == 1 and t.skipped == 0 for t in fired)


def test_early_timer_serves_nothing() -> None:
    schedule = TickSchedule(t0=0.0, period=0.02)
    assert schedule.fire(0.0) is not None
    assert schedule.fire(0.019) is None
    assert schedule.next_due == pytest.approx(0.02)


def test_stall_owes_frames_capped_then_skips() -> None:
    schedule = TickSchedule(t0=0.0, period=0.02, max_catch_up=3)
    schedule.fire(0.0)
    tick = schedule.fire(0.02 * 2 + 0.001)  # one tick missed
    assert tick is not None and (tick.frames, tick.skipped) == (2, 0)
    tick = schedule.fire(0.02 * 12 + 0.001)  # ten periods since the last firing
    assert tick is not None and (tick.frames, tick.skipped) == (3, 7)
    assert tick.index == 12


@given(st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1, max_size=200))
def test_frames_plus_skips_equal_elapsed_periods(delays: list[float]) -> None:
    """Whatever the wake-up times, the stream accounts for every period exactly once."""
    schedule = TickSchedule(t0=5.0, period=0.02, max_catch_up=MAX_CATCH_UP)
    now = 5.0
    accounted = 0
    for delay in delays:
        now += delay
        tick = schedule.fire(now)
        if tick is not None:
            assert 1 <= tick.frames <= MAX_CATCH_UP
            accounted += tick.frames + tick.skipped
    assert accounted == schedule.index_at(now) + 1


class FakeLoop:
    """Just enough of an event loop for MediaClock: a settable time and call_at."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        self.timers.append((when, callback))

        def cancel() -> None:
            self.timers = [t for t in self.timers if t[1] is not callback]

        return SimpleNamespace(cancel=cancel)

    def run_until(self, until: float, jitter: Callable[[], float] = lambda: 0.0) -> None:
        while self.timers and min(t[0] for t in self.timers) <= until:
            self.timers.sort(key=lambda t: t[0])
            when, callback = self.timers.pop(0)
            self.now = max(self.now, when + jitter())
            callback()


class Counter:
    def __init__(self, stop_after: int | None = None, clock: MediaClock | None = None) -> None:
        self.ticks: list[Tick] = []
        self.stop_after = stop_after
        self.clock = clock

    def on_tick(self, tick: Tick) -> None:
        self.ticks.append(tick)
        if self.stop_after is not None and len(self.ticks) >= self.stop_after and self.clock:
            self.clock.unsubscribe(self)


def test_one_timer_serves_every_subscriber() -> None:
    loop = FakeLoop()
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    tickers = [Counter() for _ in range(300)]
    for ticker in tickers:
        clock.subscribe(ticker)
    assert len(loop.timers) == 1  # one timer, whatever the number of streams
    loop.run_until(1000.0 + 1.0 + 1e-6)
    assert clock.ticks == 50
    assert all(len(t.ticks) == 50 for t in tickers)
    assert len(loop.timers) == 1


def test_clock_with_random_lateness_never_drifts() -> None:
    loop = FakeLoop()
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    ticker = Counter()
    clock.subscribe(ticker)
    rng = random.Random(7)
    loop.run_until(1000.0 + 60.0, jitter=lambda: rng.uniform(0.0, 0.015))
    frames = sum(t.frames + t.skipped for t in ticker.ticks)
    # 60 s is 3000 periods; lateness below one period never loses or gains a frame.
    assert frames == pytest.approx(3000, abs=1)
    assert clock.skipped_frames == 0
    assert all(t.due == pytest.approx(1000.0 + 0.02 * t.index) for t in ticker.ticks)


def test_clock_stops_when_idle_and_restarts() -> None:
    loop = FakeLoop()
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    ticker = Counter(stop_after=3, clock=clock)
    clock.subscribe(ticker)
    loop.run_until(1010.0)
    assert len(ticker.ticks) == 3
    assert loop.timers == []  # idle: no timer at all
    again = Counter()
    loop.now = 1020.0
    clock.subscribe(again)
    loop.run_until(1020.0 + 0.1 + 1e-6)
    assert len(again.ticks) == 5


def test_a_failing_ticker_is_dropped_and_others_continue() -> None:
    loop = FakeLoop()
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))

    class Broken:
        def on_tick(self, tick: Tick) -> None:
            raise RuntimeError("boom")

    good = Counter()
    clock.subscribe(Broken())
    clock.subscribe(good)
    loop.run_until(1000.0 + 0.1 + 1e-6)
    assert len(good.ticks) == 5
    assert len(clock) == 1
