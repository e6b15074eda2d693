"""ACD benchmarks: routing decision latency, presence update rate, simulator speed.

Figures (``run()`` returns them; the bench runner writes docs/BENCHMARKS.md):

* ``routing``: per agent count (10, 1,000, 10,000) with 1,000 callers waiting, p50/p99
  microseconds of one routing decision including the events it emits:
  - ``caller_to_agent``: a caller is queued and an available agent is chosen and offered
    (the 1,000 waiting callers sit in a second queue whose agents are all busy, so they
    are in the engine but not eligible — otherwise nobody would be available);
  - ``agent_to_caller``: an agent's call ends and the best of 1,000 waiting callers of
    its queue is chosen and offered.
* ``presence_updates_per_s``: away/available toggles applied to 10,000 agents in queues.
* ``simulated_calls_per_s``: the simulator (real engine, simulated clock) at ρ = 0.9.

The whole run takes well under two minutes on one core.
"""

from __future__ import annotations

import time

from tsunagu.acd.agents import Agent
from tsunagu.acd.engine import AcdEngine, OfferCall
from tsunagu.acd.queues import Call, QueueConfig
from tsunagu.acd.simulate import SimulationConfig, simulate

WAITING = 1_000
SAMPLES = 5_000


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "p50_us": round(ordered[n // 2] / 1000, 2),
        "p99_us": round(ordered[min(n - 1, (n * 99) // 100)] / 1000, 2),
    }


def _engine(agents: int) -> tuple[AcdEngine, list[str]]:
    engine = AcdEngine()
    ids = [f"a{i}" for i in range(agents)]
    engine.add_queue(QueueConfig("main", agent_ids=tuple(ids), ring_timeout_s=15.0))
    engine.add_queue(QueueConfig("backlog", agent_ids=("busy",), ring_timeout_s=15.0))
    for i, aid in enumerate(ids):
        engine.add_agent(Agent(aid))
        engine.login(aid, float(i) * 1e-3)
    engine.add_agent(Agent("busy"))
    engine.login("busy", 0.0)
    return engine, ids


def bench_caller_to_agent(agents: int) -> dict[str, float]:
    engine, _ids = _engine(agents)
    now = 100.0
    engine.enqueue(Call("hold", "backlog"), now)
    engine.agent_answered("busy", "hold", now)
    for n in range(WAITING):
        engine.enqueue(Call(f"w{n}", "backlog"), now)
    engine.pop_events()
    clock = time.perf_counter_ns
    samples: list[int] = []
    for n in range(SAMPLES):
        now += 0.01
        call_id = f"c{n}"
        t0 = clock()
        engine.enqueue(Call(call_id, "main"), now)
        events = engine.pop_events()
        samples.append(clock() - t0)
        offer = next(e for e in events if isinstance(e, OfferCall))
        engine.agent_answered(offer.agent_id, call_id, now)
        engine.call_ended(offer.agent_id, now)
        engine.pop_events()
    return _percentiles(samples)


def bench_agent_to_caller(agents: int) -> dict[str, float]:
    engine, ids = _engine(agents)
    now = 100.0
    for n, aid in enumerate(ids):  # everyone busy
        engine.enqueue(Call(f"first{n}", "main"), now)
        engine.agent_answered(aid, f"first{n}", now)
    for n in range(WAITING):
        engine.enqueue(Call(f"w{n}", "main", priority=n % 3), now + n * 1e-4)
    engine.pop_events()
    clock = time.perf_counter_ns
    samples: list[int] = []
    for n in range(SAMPLES):
        now += 0.01
        aid = ids[n % len(ids)]
        t0 = clock()
        engine.call_ended(aid, now)
        events = engine.pop_events()
        samples.append(clock() - t0)
        offer = next(e for e in events if isinstance(e, OfferCall))
        engine.agent_answered(aid, offer.call_id, now)
        engine.enqueue(Call(f"x{n}", "main", priority=n % 3), now)  # keep 1,000 waiting
        engine.pop_events()
    return _percentiles(samples)


def bench_presence(agents: int = 10_000, rounds: int = 10) -> float:
    engine = AcdEngine()
    ids = [f"a{i}" for i in range(agents)]
    for q in range(3):  # each agent in three queues, like a real skills mix
        engine.add_queue(QueueConfig(f"q{q}", agent_ids=tuple(ids)))
    for aid in ids:
        engine.add_agent(Agent(aid))
        engine.login(aid, 0.0)
    engine.pop_events()
    now = 1.0
    updates = 0
    started = time.perf_counter()
    for _ in range(rounds):
        for aid in ids:
            engine.set_away(aid, "break", now)
        for aid in ids:
            engine.set_available(aid, now)
        updates += 2 * agents
        engine.pop_events()
        now += 1.0
    return updates / (time.perf_counter() - started)


def bench_simulator() -> float:
    config = SimulationConfig(
        agents=50, calls_per_hour=900.0, aht_s=180.0, hours=200.0, seed=1, patience_s=300.0
    )
    return simulate(config).calls_per_wall_second


def run() -> dict[str, object]:
    routing: dict[str, object] = {}
    for agents in (10, 1_000, 10_000):
        routing[f"{agents}_agents"] = {
            "caller_to_agent": bench_caller_to_agent(agents),
            "agent_to_caller": bench_agent_to_caller(agents),
        }
    return {
        "routing_waiting_callers": WAITING,
        "routing": routing,
        "presence_updates_per_s": round(bench_presence()),
        "simulated_calls_per_s": round(bench_simulator()),
    }


def main() -> None:
    """Write the "acd" section of docs/BENCHMARKS.md (the ``python -m bench`` convention)."""
    from bench.report import table, write_section

    figures = run()
    routing = figures["routing"]
    assert isinstance(routing, dict)
    rows: list[dict[str, object]] = []
    for label, per in routing.items():
        for direction, pct in per.items():
            rows.append(
                {
                    "agents": label.removesuffix("_agents"),
                    "decision": direction.replace("_", " "),
                    "p50 µs": pct["p50_us"],
                    "p99 µs": pct["p99_us"],
                }
            )
    body = (
        table(rows)
        + f"\n\nRouting with {WAITING:,} callers waiting, {SAMPLES:,} decisions per row, one "
        "core; each decision includes the events it emits (offer, presence change).\n\n"
        f"- Presence updates sustained (10,000 agents, 3 queues each): "
        f"{figures['presence_updates_per_s']:,}/s\n"
        f"- Simulator (real engine, simulated clock, 50 agents, ρ = 0.9, patience): "
        f"{figures['simulated_calls_per_s']:,} simulated calls per wall second\n"
    )
    write_section("acd", "ACD routing, presence and simulator", body, "python -m bench acd")


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
