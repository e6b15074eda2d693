"""Media pacing: one 20 ms tick shared by every playing stream, with drift correction.

Why one shared tick: a task per playing call that sleeps 20 ms costs a timer, a task
switch and a wake-up per call per frame; with hundreds of calls that is the event loop's
whole budget. Instead one timer fires every 20 ms and serves every stream that has
something to send (prompts, DTMF events, recordings to flush), so the cost per call is
one method call per frame.

Why absolute due times: tick *n* is due at ``t0 + n·period`` on the loop's monotonic
clock, and the timer is re-armed for that absolute instant (``loop.call_at``). A late
wake-up delays one tick but never the ones after it, so there is no accumulated error
— unlike ``await asyncio.sleep(0.020)`` in a loop, which drifts by the scheduling delay
of every iteration (the "sleep-loop" the issue forbids). When the loop was so busy that
several ticks were missed, :class:`TickSchedule` reports how many frames are owed;
subscribers send up to :data:`MAX_CATCH_UP` of them at once and skip the rest, so a
long stall does not turn into a burst that overflows the peer's jitter buffer.

:class:`TickSchedule` is the sans-IO core (time passed in); :class:`MediaClock` is the
thin asyncio adapter.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FRAME_MS",
    "FRAME_SECONDS",
    "MAX_CATCH_UP",
    "MediaClock",
    "Tick",
    "TickSchedule",
    "Ticker",
]

logger = logging.getLogger(__name__)

FRAME_MS = 20
FRAME_SECONDS = FRAME_MS / 1000
#: At most this many owed frames are sent in one tick after a stall; older ones are skipped.
MAX_CATCH_UP = 3


@dataclass(frozen=True, slots=True)
class Tick:
    """One firing of the shared clock.

    ``index`` is the number of the tick (``due = t0 + index·period``); ``frames`` is how
    many periods have passed since the previous firing that a stream should still send
    (1 normally, more after a stall, capped at :data:`MAX_CATCH_UP`); ``skipped`` is how
    many further periods were dropped to get back to real time.
    """

    index: int
    now: float
    due: float
    frames: int
    skipped: int


class TickSchedule:
    """Due times of a periodic tick, computed from the start time (never accumulated).

    ``due(n) = t0 + n·period``. :meth:`fire` is called with the time the timer actually
    ran; it returns the :class:`Tick` to serve and :attr:`next_due` is the absolute time
    to arm the timer for next.
    """

    __slots__ = ("_last", "max_catch_up", "period", "t0")

    def __init__(self, t0: float, period: float = FRAME_SECONDS, max_catch_up: int = MAX_CATCH_UP):
        if period <= 0 or max_catch_up < 1:
            raise ValueError("period and max_catch_up must be positive")
        self.t0 = t0
        self.period = period
        self.max_catch_up = max_catch_up
        self._last = -1  # index of the last tick served

    def due(self, index: int) -> float:
        """When tick ``index`` is due."""
        return self.t0 + index * self.period

    def index_at(self, now: float) -> int:
        """The index of the latest tick due at or before ``now`` (-1 before ``t0``)."""
        # A tiny epsilon so that a timer firing at exactly due(n) (float rounding) counts n.
        return math.floor((now - self.t0) / self.period + 1e-9)

    @property
    def last_index(self) -> int:
        return self._last

    @property
    def next_due(self) -> float:
        """The absolute time of the next tick not yet served."""
        return self.due(self._last + 1)

    def fire(self, now: float) -> Tick | None:
        """Serve the ticks due by ``now``; ``None`` if the timer fired early (nothing due)."""
        index = self.index_at(now)
        owed = index - self._last
        if owed <= 0:
            return None
        self._last = index
        frames = min(owed, self.max_catch_up)
        return Tick(index, now, self.due(index), frames, owed - frames)


class Ticker(Protocol):
    """Something served by the shared clock (a playing leg, a recorder, a DTMF sender)."""

    def on_tick(self, tick: Tick) -> None: ...


class MediaClock:
    """The asyncio adapter of :class:`TickSchedule`: one ``call_at`` timer for everyone.

    The timer runs only while at least one :class:`Ticker` is subscribed, and restarts with
    a fresh ``t0`` after being idle, so an idle engine costs nothing. A ticker that raises
    is logged and unsubscribed, so one broken stream cannot stop the others' audio.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, period: float = FRAME_SECONDS
    ) -> None:
        self._loop = loop
        self.period = period
        self._tickers: dict[Ticker, None] = {}  # insertion-ordered set
        self._schedule: TickSchedule | None = None
        self._handle: asyncio.TimerHandle | None = None
        #: Cumulative counts, for the benchmark and for diagnosing an overloaded loop.
        self.ticks = 0
        self.skipped_frames = 0
        self.late_max = 0.0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def time(self) -> float:
        """The loop's monotonic clock, the time base of every media timer."""
        return self.loop.time()

    def subscribe(self, ticker: Ticker) -> None:
        self._tickers[ticker] = None
        if self._handle is None:
            now = self.loop.time()
            # Tick 0 is "now" and counts as served: the first tick that runs subscribers
            # is due one period from now.
            self._schedule = TickSchedule(now, self.period)
            self._schedule.fire(now)
            self._arm()

    def unsubscribe(self, ticker: Ticker) -> None:
        self._tickers.pop(ticker, None)

    def subscribed(self, ticker: Ticker) -> bool:
        return ticker in self._tickers

    def __len__(self) -> int:
        return len(self._tickers)

    def _arm(self) -> None:
        assert self._schedule is not None
        self._handle = self.loop.call_at(self._schedule.next_due, self._run)

    def _run(self) -> None:
        self._handle = None
        schedule = self._schedule
        if schedule is None:
            return
        if not self._tickers:
            self._schedule = None
            return
        now = self.loop.time()
        tick = schedule.fire(now)
        if tick is not None:
            self.ticks += 1
            self.skipped_frames += tick.skipped
            self.late_max = max(self.late_max, now - tick.due)
            for ticker in list(self._tickers):
                try:
                    ticker.on_tick(tick)
                except Exception:
                    logger.exception("media ticker %r failed; unsubscribing it", ticker)
                    self._tickers.pop(ticker, None)
        if self._tickers:
            self._arm()
        else:
            self._schedule = None

    def close(self) -> None:
        self._tickers.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._schedule = None
