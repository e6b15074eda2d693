"""Discrete-event simulation of a queue, driving the real ACD engine under a simulated clock.

This is not a formula: every caller is enqueued in :class:`~tsunagu.acd.engine.AcdEngine`,
every agent is offered, answers, wraps up and becomes available through the same presence
table, agent pools and timers as live calls. The simulator only plays the outside world:

* arrivals are a Poisson process (exponential gaps, rate ``calls_per_hour``/3600);
* handle times are exponential with mean ``aht_s``;
* with ``patience_s`` each caller hangs up after an exponential patience unless answered;
* an offered agent answers after ``ring_s`` seconds (0 by default: at once).

Everything random comes from one ``random.Random(seed)``, so a seed gives the same result
on every run. The queue starts empty with every agent logged in; callers who arrive during
``warmup_hours`` are served but not counted, so the figures describe steady state (with
long runs the start-up bias is small anyway). Arrivals stop at ``hours`` and the run goes
on until every counted caller has been answered or has abandoned, so each one has an
outcome. Figures (the definitions match :class:`~tsunagu.acd.erlang.QueueMetrics`):

* ``service_level``: answered within ``sl_threshold_s`` ÷ offered (abandons count against);
* ``asa_seconds``: mean wait of answered callers;
* ``occupancy``: agent time handling calls (talk + wrap-up) ÷ agent time, over the
  counted period.

``batches`` > 0 also reports each figure for consecutive equal slices of the counted
period (batch means), from which tests estimate the run's standard error honestly.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from dataclasses import asdict, dataclass, field

from tsunagu.acd.agents import Agent
from tsunagu.acd.engine import AcdEngine, CallbackOffered, OfferCall
from tsunagu.acd.queues import Call, QueueConfig
from tsunagu.acd.strategies import Strategy

_END, _ABANDON, _ANSWER = 0, 1, 2
_QUEUE = "sim"


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    agents: int
    calls_per_hour: float
    aht_s: float
    hours: float
    seed: int = 1
    sl_threshold_s: float = 20.0
    patience_s: float | None = None
    ring_s: float = 0.0
    wrap_up_s: float = 0.0
    warmup_hours: float = 0.0
    strategy: Strategy = Strategy.LONGEST_IDLE
    batches: int = 0

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError("agents must be >= 1")
        if self.calls_per_hour < 0 or self.aht_s <= 0 or self.hours <= 0:
            raise ValueError("calls per hour must be >= 0, handle time and hours > 0")
        if self.patience_s is not None and self.patience_s <= 0:
            raise ValueError("patience must be > 0")
        if not 0 <= self.warmup_hours < self.hours:
            raise ValueError("warm-up must be shorter than the run")
        if self.ring_s < 0 or self.wrap_up_s < 0:
            raise ValueError("ring and wrap-up times must be >= 0")
        if self.strategy is Strategy.PREFERRED_AGENT:
            raise ValueError("the simulator's callers carry no preferred agent")


@dataclass(frozen=True, slots=True)
class SimulationResult:
    offered: int
    answered: int
    abandoned: int
    service_level: float
    asa_seconds: float
    abandon_rate: float
    occupancy: float
    calls_per_wall_second: float
    simulated_calls: int
    batches: tuple[dict[str, float], ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        if not self.batches:
            del out["batches"]
        else:
            out["batches"] = [dict(b) for b in self.batches]
        return out


class _Tally:
    __slots__ = ("abandoned", "answered", "offered", "wait_sum", "within")

    def __init__(self) -> None:
        self.offered = self.answered = self.abandoned = self.within = 0
        self.wait_sum = 0.0

    def figures(self, busy: float | None, capacity: float) -> dict[str, float]:
        offered = self.offered
        return {
            "offered": offered,
            "answered": self.answered,
            "abandoned": self.abandoned,
            "service_level": self.within / offered if offered else math.nan,
            "asa_seconds": self.wait_sum / self.answered if self.answered else math.nan,
            "abandon_rate": self.abandoned / offered if offered else math.nan,
            "occupancy": busy / capacity if busy is not None and capacity > 0 else math.nan,
        }


def simulate(config: SimulationConfig) -> SimulationResult:
    """Run one simulation; see the module docstring."""
    rng = random.Random(config.seed)  # noqa: S311 - reproducible simulation, not secrets
    expo = rng.expovariate
    engine = AcdEngine()
    agent_ids = [f"a{i:05d}" for i in range(config.agents)]
    skilled = config.strategy is Strategy.SKILLS_BASED
    engine.add_queue(
        QueueConfig(
            _QUEUE,
            strategy=config.strategy,
            agent_ids=tuple(agent_ids),
            wrap_up_s=config.wrap_up_s,
            skill="sim" if skilled else None,
            sl_threshold_s=config.sl_threshold_s,
            ring_timeout_s=max(15.0, 2 * config.ring_s),
        )
    )
    for i, aid in enumerate(agent_ids):
        engine.add_agent(Agent(aid, skills={"sim": 1 + i % 3} if skilled else {}))
        engine.login(aid, 0.0)
    engine.pop_events()

    horizon = config.hours * 3600.0
    warm = config.warmup_hours * 3600.0
    span = horizon - warm
    rate = config.calls_per_hour / 3600.0
    mu = 1.0 / config.aht_s
    theta = 1.0 / config.patience_s if config.patience_s is not None else 0.0
    ring_s = config.ring_s
    wrap = config.wrap_up_s
    threshold = config.sl_threshold_s
    nbatch = config.batches
    batch_len = span / nbatch if nbatch else math.inf
    total = _Tally()
    tallies = [_Tally() for _ in range(nbatch)]
    batch_busy = [0.0] * nbatch
    busy = 0.0

    heap: list[tuple[float, int, int, str, str]] = []
    push = heapq.heappush
    seq = 0
    waiting: dict[str, float] = {}  # call id -> arrival time, until answered or abandoned
    inf = math.inf
    next_arrival = expo(rate) if rate > 0 else inf
    count = 0
    now = 0.0

    def busy_overlap(start: float, end: float) -> None:
        nonlocal busy
        lo, hi = max(start, warm), min(end, horizon)
        if hi > lo:
            busy += hi - lo
            if nbatch:
                first = int((lo - warm) / batch_len)
                last = min(nbatch - 1, int((hi - warm) / batch_len))
                for b in range(first, last + 1):
                    b_lo = warm + b * batch_len
                    part = min(hi, b_lo + batch_len) - max(lo, b_lo)
                    if part > 0:
                        batch_busy[b] += part

    def answer(agent_id: str, call_id: str) -> None:
        nonlocal seq
        if not engine.agent_answered(agent_id, call_id, now):
            return  # ring-all: someone else answered first
        arrived = waiting.pop(call_id)
        if arrived >= warm:
            wait = now - arrived
            total.answered += 1
            total.wait_sum += wait
            ok = wait <= threshold
            if ok:
                total.within += 1
            if nbatch:
                tally = tallies[min(nbatch - 1, int((arrived - warm) / batch_len))]
                tally.answered += 1
                tally.wait_sum += wait
                if ok:
                    tally.within += 1
        hold = expo(mu)
        seq += 1
        push(heap, (now + hold, seq, _END, agent_id, call_id))
        if now + hold + wrap > warm and now < horizon:
            busy_overlap(now, now + hold + wrap)

    def drain() -> None:
        nonlocal seq
        events = engine.pop_events()
        while events:
            for ev in events:
                if type(ev) is OfferCall or type(ev) is CallbackOffered:
                    if ring_s == 0:
                        answer(ev.agent_id, ev.call_id)
                    else:
                        seq += 1
                        push(heap, (now + ring_s, seq, _ANSWER, ev.agent_id, ev.call_id))
            events = engine.pop_events()

    next_timer = engine.next_timer
    started = time.perf_counter()
    while True:
        t_timer = next_timer()
        t_heap = heap[0][0] if heap else inf
        t_arrival = next_arrival if next_arrival < horizon else inf
        if t_timer is not None and t_timer <= t_heap and t_timer <= t_arrival:
            now = t_timer
            engine.handle_timer(now)
        elif t_heap <= t_arrival:
            if t_heap == inf:
                break
            now, _, kind, agent_id, call_id = heapq.heappop(heap)
            if kind == _END:
                engine.call_ended(agent_id, now)
            elif kind == _ANSWER:
                answer(agent_id, call_id)
            elif call_id in waiting:  # abandon, unless answered meanwhile
                arrived = waiting.pop(call_id)
                engine.abandon(call_id, now)
                if arrived >= warm:
                    total.abandoned += 1
                    if nbatch:
                        tallies[min(nbatch - 1, int((arrived - warm) / batch_len))].abandoned += 1
        else:
            now = t_arrival
            count += 1
            call_id = f"c{count}"
            waiting[call_id] = now
            if now >= warm:
                total.offered += 1
                if nbatch:
                    tallies[min(nbatch - 1, int((now - warm) / batch_len))].offered += 1
            if theta:
                seq += 1
                push(heap, (now + expo(theta), seq, _ABANDON, "", call_id))
            next_arrival = now + expo(rate)
            engine.enqueue(Call(call_id, _QUEUE), now)
        drain()
    wall = time.perf_counter() - started

    figures = total.figures(busy, config.agents * span)
    per_batch = tuple(
        t.figures(batch_busy[b], config.agents * batch_len) for b, t in enumerate(tallies)
    )
    return SimulationResult(
        offered=total.offered,
        answered=total.answered,
        abandoned=total.abandoned,
        service_level=figures["service_level"],
        asa_seconds=figures["asa_seconds"],
        abandon_rate=figures["abandon_rate"],
        occupancy=figures["occupancy"],
        calls_per_wall_second=count / wall if wall > 0 else math.inf,
        simulated_calls=count,
        batches=per_batch,
    )
