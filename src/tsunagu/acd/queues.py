"""Queues: configuration, the callers waiting in them, and the figures routing needs.

A queue orders its callers by priority (higher first), then by arrival (FIFO), in a heap
(:class:`CallerLane`) with the same lazy deletion as the agent pools: a caller who is
answered, abandons or moves to another lane just bumps a generation number and its old
entry is skipped when it surfaces. The queue also keeps what announcements and overflow
rules ask about: callers waiting, the longest wait, a sliding-window service level and a
running average handle time.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from tsunagu.acd.presence import AcdError
from tsunagu.acd.strategies import AgentPool, Strategy, make_pool

_heappush = heapq.heappush
_heappop = heapq.heappop
_MIN_COMPACT = 64


class UnknownQueueError(AcdError, KeyError):
    def __str__(self) -> str:
        return f"unknown queue {self.args[0]!r}"


class UnknownCallError(AcdError, KeyError):
    def __str__(self) -> str:
        return f"no call {self.args[0]!r} is waiting"


@dataclass(frozen=True, slots=True)
class OverflowTrigger:
    """When an overflow group joins: any one configured threshold crossed."""

    waiting_at_least: int | None = None
    longest_wait_at_least_s: float | None = None
    #: Fraction (0..1) of callers answered within the queue's threshold, over its window.
    service_level_below: float | None = None


@dataclass(frozen=True, slots=True)
class OverflowRelease:
    """When an active group leaves: every configured threshold back to normal *and* the
    group active for at least ``min_active_s`` (hysteresis, so a group does not flap in
    and out around one threshold). Unset thresholds default to half the trigger's
    waiting/longest-wait and the trigger's service level + 0.05."""

    waiting_at_most: int | None = None
    longest_wait_at_most_s: float | None = None
    service_level_at_least: float | None = None
    min_active_s: float = 60.0


@dataclass(frozen=True, slots=True)
class OverflowGroup:
    """Agents (listed, or whole teams) pre-approved to help a queue in a surge
    (REQUIREMENTS §5 item 13: "add the complaints team to the public queue ... release
    them when volume normalises"). ``auto=False`` groups join only by manual activation."""

    group_id: str
    agent_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()
    trigger: OverflowTrigger = OverflowTrigger()
    release: OverflowRelease = OverflowRelease()
    auto: bool = True

    def __post_init__(self) -> None:
        t, r = self.trigger, self.release
        bad = (
            (t.waiting_at_least, r.waiting_at_most, "waiting"),
            (t.longest_wait_at_least_s, r.longest_wait_at_most_s, "longest wait"),
        )
        for on, off, name in bad:
            if on is not None and off is not None and off >= on:
                raise ValueError(f"overflow {self.group_id}: release {name} must be < trigger")
        on_sl, off_sl = t.service_level_below, r.service_level_at_least
        if on_sl is not None and off_sl is not None and off_sl <= on_sl:
            raise ValueError(f"overflow {self.group_id}: release service level must be > trigger")

    def activation_reason(self, waiting: int, longest_wait: float, sl: float | None) -> str | None:
        """Why the group should join now, or ``None``."""
        t = self.trigger
        if t.waiting_at_least is not None and waiting >= t.waiting_at_least:
            return f"waiting {waiting} >= {t.waiting_at_least}"
        if t.longest_wait_at_least_s is not None and longest_wait >= t.longest_wait_at_least_s:
            return f"longest wait {longest_wait:.0f}s >= {t.longest_wait_at_least_s:g}s"
        if t.service_level_below is not None and sl is not None and sl < t.service_level_below:
            return f"service level {sl:.2f} < {t.service_level_below:g}"
        return None

    def release_reason(
        self, waiting: int, longest_wait: float, sl: float | None, active_for: float
    ) -> str | None:
        """Why the group may leave now (everything normal again), or ``None``."""
        t, r = self.trigger, self.release
        if active_for < r.min_active_s:
            return None
        if t.waiting_at_least is not None:
            limit = r.waiting_at_most
            if limit is None:
                limit = t.waiting_at_least // 2
            if waiting > limit:
                return None
        if t.longest_wait_at_least_s is not None:
            wait_limit = r.longest_wait_at_most_s
            if wait_limit is None:
                wait_limit = t.longest_wait_at_least_s / 2
            if longest_wait > wait_limit:
                return None
        if t.service_level_below is not None and sl is not None:
            sl_limit = r.service_level_at_least
            if sl_limit is None:
                sl_limit = min(1.0, t.service_level_below + 0.05)
            if sl < sl_limit:
                return None
        return f"normal for {active_for:.0f}s: waiting {waiting}, longest wait {longest_wait:.0f}s"


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """How one queue routes. Times in seconds.

    ``ring_timeout_s``: how long one offer rings before it counts as ring-no-answer.
    ``max_wait_s``: after this the engine emits ``MaxWaitExceeded`` and the call layer
    sends the caller to a fallback flow (``None``: wait forever). ``rep_timeout_s`` and
    ``team_timeout_s`` are the preferred-agent steps: during the first only the caller's
    rep may be offered the call, during the second only the rep's team, then anyone.
    ``skill``/``min_skill_level`` filter members for skills-based routing.
    """

    queue_id: str
    strategy: Strategy = Strategy.LONGEST_IDLE
    agent_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()
    ring_timeout_s: float | None = 15.0
    max_wait_s: float | None = None
    wrap_up_s: float = 0.0
    skill: str | None = None
    min_skill_level: int = 1
    rep_timeout_s: float = 20.0
    team_timeout_s: float = 30.0
    sl_threshold_s: float = 20.0
    sl_window_s: float = 900.0
    #: Handle-time estimate used for estimated wait until real calls have been measured.
    expected_aht_s: float = 180.0
    overflow_groups: tuple[OverflowGroup, ...] = ()
    overflow_check_s: float = 5.0

    def __post_init__(self) -> None:
        if self.strategy is Strategy.SKILLS_BASED and self.skill is None:
            raise ValueError(f"queue {self.queue_id!r}: skills_based routing needs a skill")
        ids = [g.group_id for g in self.overflow_groups]
        if len(ids) != len(set(ids)):
            raise ValueError(f"queue {self.queue_id!r}: duplicate overflow group ids")


@dataclass(frozen=True, slots=True)
class Call:
    """A caller the call layer hands to the ACD.

    ``preferred_agent_id`` is the customer's own rep, looked up by the call layer (customer
    table or webhook) before queueing; ``priority``: higher is served first.
    """

    call_id: str
    queue_id: str
    priority: int = 0
    preferred_agent_id: str | None = None


class CallState(IntEnum):
    WAITING = 0  # in a lane, nobody ringing (or ring-all: may be ringing, still in lane)
    OFFERING = 1  # at least one agent reserved and ringing
    DONE = 2  # answered, abandoned or sent to the fallback: the queue forgot it


class Step(IntEnum):
    """Preferred-agent routing step (``ANYONE`` for every other strategy)."""

    ANYONE = 0
    REP = 1
    TEAM = 2


class QueuedCall:
    """A call while it is in the ACD (runtime record; the engine's, not the API's)."""

    __slots__ = (
        "arrived_at",
        "call_id",
        "callback",
        "callback_number",
        "declined",
        "gen",
        "neg_prio",
        "offers",
        "preferred_agent_id",
        "priority",
        "queue",
        "seq",
        "state",
        "step",
    )

    def __init__(self, call: Call, queue: QueueRuntime, seq: int, now: float) -> None:
        self.call_id = call.call_id
        self.queue = queue
        self.priority = call.priority
        self.neg_prio = -call.priority
        self.preferred_agent_id = call.preferred_agent_id
        self.seq = seq
        self.arrived_at = now
        self.state = CallState.WAITING
        self.step = Step.ANYONE
        self.gen = 0
        #: agent id -> None: agents ringing now (a dict for deterministic order).
        self.offers: dict[str, None] = {}
        #: agents that did not answer this call; never offered it again.
        self.declined: set[str] | None = None
        self.callback = False
        self.callback_number: str | None = None

    def __repr__(self) -> str:
        return f"QueuedCall({self.call_id!r}, {self.state.name}, step={self.step.name})"


_LaneEntry = tuple[int, int, int, QueuedCall]


class CallerLane:
    """Callers eligible for one set of agents, best first: (-priority, arrival, gen)."""

    __slots__ = ("_compact_at", "_heap")

    def __init__(self) -> None:
        self._heap: list[_LaneEntry] = []
        self._compact_at = _MIN_COMPACT

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, call: QueuedCall) -> None:
        """Put ``call`` in this lane; any entry it had in another lane goes stale."""
        call.gen += 1
        _heappush(self._heap, (call.neg_prio, call.seq, call.gen, call))
        if len(self._heap) >= self._compact_at:
            live = [e for e in self._heap if e[2] == e[3].gen and e[3].state != CallState.DONE]
            heapq.heapify(live)
            self._heap = live
            self._compact_at = max(_MIN_COMPACT, 2 * len(live))

    def first_for(self, agent_id: str) -> QueuedCall | None:
        """The best caller in this lane that ``agent_id`` may take (without removing it)."""
        heap = self._heap
        aside: list[_LaneEntry] | None = None
        found: QueuedCall | None = None
        while heap:
            entry = heap[0]
            call = entry[3]
            if entry[2] != call.gen or call.state == CallState.DONE:
                _heappop(heap)
                continue
            declined = call.declined
            if (declined is not None and agent_id in declined) or agent_id in call.offers:
                if aside is None:
                    aside = []
                aside.append(_heappop(heap))
                continue
            found = call
            break
        if aside is not None:
            for entry in aside:
                _heappush(heap, entry)
        return found

    def calls(self) -> Iterator[QueuedCall]:
        """Live callers in this lane, unordered (for tests and diagnostics)."""
        for _, _, gen, call in self._heap:
            if gen == call.gen and call.state != CallState.DONE:
                yield call


@dataclass(slots=True)
class OverflowState:
    active: bool = False
    manual: bool = False
    since: float = 0.0
    #: After a manual release, automatic activation waits until this time.
    suppressed_until: float = float("-inf")


@dataclass(slots=True, eq=False)
class QueueRuntime:
    """One queue's live state: members, available agents, waiting callers, statistics."""

    config: QueueConfig
    pool: AgentPool
    lane: CallerLane = field(default_factory=CallerLane)
    #: agent id -> number of reasons the agent is a member (base, overflow groups).
    members: dict[str, int] = field(default_factory=dict)
    #: calls in the queue (waiting or ringing), in arrival order; done ones are dropped
    #: from the left lazily, so the head is the longest waiting.
    arrivals: deque[QueuedCall] = field(default_factory=deque)
    live: int = 0
    aht_s: float = 0.0
    aht_samples: int = 0
    sl_events: deque[tuple[float, bool]] = field(default_factory=deque)
    sl_ok: int = 0
    overflow: dict[str, OverflowState] = field(default_factory=dict)

    @classmethod
    def create(cls, config: QueueConfig) -> QueueRuntime:
        q = cls(config, make_pool(config.strategy, config.queue_id, config.skill))
        q.aht_s = config.expected_aht_s
        q.overflow = {g.group_id: OverflowState() for g in config.overflow_groups}
        return q

    @property
    def queue_id(self) -> str:
        return self.config.queue_id

    def longest_wait(self, now: float) -> float:
        arrivals = self.arrivals
        while arrivals and arrivals[0].state == CallState.DONE:
            arrivals.popleft()
        return now - arrivals[0].arrived_at if arrivals else 0.0

    def record_outcome(self, now: float, waited: float, answered: bool) -> None:
        """A caller left the queue: update the service-level window."""
        ok = answered and waited <= self.config.sl_threshold_s
        self.sl_events.append((now, ok))
        if ok:
            self.sl_ok += 1

    def record_handle_time(self, seconds: float) -> None:
        """Exponentially weighted average (weight 1/50, i.e. roughly the last 50 calls),
        starting as a plain mean in which the configured estimate counts as one call."""
        self.aht_samples += 1
        weight = max(1.0 / (self.aht_samples + 1), 0.02)
        self.aht_s += (seconds - self.aht_s) * weight

    def service_level(self, now: float) -> float | None:
        """Answered within the threshold ÷ callers who left the queue, over the window;
        ``None`` when nobody left during the window."""
        events = self.sl_events
        horizon = now - self.config.sl_window_s
        while events and events[0][0] < horizon:
            if events.popleft()[1]:
                self.sl_ok -= 1
        return self.sl_ok / len(events) if events else None
