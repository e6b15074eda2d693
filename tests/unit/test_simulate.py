"""The simulator (the real engine under a simulated clock) against Erlang C and Erlang A.

Tolerance: each run reports its figures per batch of arrivals (30 consecutive slices of
the counted period, after a warm-up). Batch means absorb the strong correlation between
neighbouring callers' waits, so std(batch)/sqrt(30) is an honest standard error for the
run; a figure passes within 4 standard errors of the formula. Each test also checks the
error is small enough to mean something (a run too short to tell models apart fails) and
that the run *rejects* a neighbouring model (one agent fewer), so the comparison can fail.
Runs are deterministic per seed: these tests are not flaky, and each takes a few seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
from contextlib import redirect_stdout

import pytest

from tsunagu.acd import simulate_cli
from tsunagu.acd.erlang import QueueMetrics, erlang_a_metrics, erlang_c_metrics
from tsunagu.acd.simulate import SimulationConfig, SimulationResult, simulate
from tsunagu.acd.strategies import Strategy

Z = 4.0


def standard_error(result: SimulationResult, key: str) -> float:
    values = [b[key] for b in result.batches]
    assert len(values) >= 20
    return statistics.stdev(values) / math.sqrt(len(values))


def check_against(
    result: SimulationResult,
    theory: QueueMetrics,
    worse: QueueMetrics,
    max_rel_se: dict[str, float],
) -> None:
    pairs = {
        "service_level": (theory.service_level, worse.service_level),
        "asa_seconds": (theory.asa_seconds, worse.asa_seconds),
        "occupancy": (theory.occupancy, worse.occupancy),
        "abandon_rate": (theory.p_abandon, worse.p_abandon),
    }
    rejected = False
    for key, (expected, wrong) in pairs.items():
        got = getattr(result, key)
        se = standard_error(result, key)
        if expected == 0.0:  # no patience: nobody may abandon
            assert got == 0.0
            continue
        assert se <= max_rel_se.get(key, 0.05) * expected, f"{key}: run too short (se {se})"
        assert abs(got - expected) <= Z * se, f"{key}: sim {got} vs theory {expected} ± {se}"
        rejected = rejected or abs(got - wrong) > Z * se
    assert rejected, "the run cannot tell the model from one with an agent fewer"


@pytest.mark.parametrize(
    ("agents", "calls_per_hour", "aht", "hours", "seed"),
    [
        (10, 160.0, 180.0, 1000.0, 1),  # ρ = 0.8
        (20, 540.0, 120.0, 300.0, 2),  # ρ = 0.9, high occupancy
    ],
)
def test_simulator_matches_erlang_c(
    agents: int, calls_per_hour: float, aht: float, hours: float, seed: int
) -> None:
    config = SimulationConfig(
        agents=agents,
        calls_per_hour=calls_per_hour,
        aht_s=aht,
        hours=hours,
        seed=seed,
        sl_threshold_s=20.0,
        warmup_hours=10.0,
        batches=30,
    )
    result = simulate(config)
    rate = calls_per_hour / 3600.0
    assert result.offered > 100_000
    assert result.answered == result.offered and result.abandoned == 0
    check_against(
        result,
        erlang_c_metrics(agents, rate, aht, 20.0),
        erlang_c_metrics(agents - 1, rate, aht, 20.0),
        {"asa_seconds": 0.1, "service_level": 0.03, "occupancy": 0.01},
    )


@pytest.mark.parametrize(
    "case",
    [
        # agents, calls/hour, AHT, patience, hours, seed
        (10, 200.0, 180.0, 180.0, 700.0, 3),  # ρ = 1.0: only patience keeps it stable
        (30, 405.0, 240.0, 300.0, 350.0, 4),  # ρ = 0.9
    ],
)
def test_simulator_matches_erlang_a(case: tuple[int, float, float, float, float, int]) -> None:
    agents, calls_per_hour, aht, patience, hours, seed = case
    config = SimulationConfig(
        agents=agents,
        calls_per_hour=calls_per_hour,
        aht_s=aht,
        hours=hours,
        seed=seed,
        patience_s=patience,
        warmup_hours=10.0,
        batches=30,
    )
    result = simulate(config)
    rate = calls_per_hour / 3600.0
    assert result.offered == result.answered + result.abandoned
    assert result.abandoned > 0
    check_against(
        result,
        erlang_a_metrics(agents, rate, aht, patience, 20.0),
        erlang_a_metrics(agents - 1, rate, aht, patience, 20.0),
        {"asa_seconds": 0.05, "abandon_rate": 0.08, "service_level": 0.02, "occupancy": 0.01},
    )


def small(**kw: object) -> SimulationConfig:
    base: dict[str, object] = {
        "agents": 5,
        "calls_per_hour": 80.0,
        "aht_s": 180.0,
        "hours": 20.0,
        "seed": 7,
    }
    base.update(kw)
    return SimulationConfig(**base)  # type: ignore[arg-type]


def test_same_seed_same_result_other_seed_other_result() -> None:
    one = simulate(small(patience_s=120.0))
    two = simulate(small(patience_s=120.0))
    other = simulate(small(patience_s=120.0, seed=8))
    strip = ("calls_per_wall_second",)
    a = {k: v for k, v in one.to_dict().items() if k not in strip}
    b = {k: v for k, v in two.to_dict().items() if k not in strip}
    c = {k: v for k, v in other.to_dict().items() if k not in strip}
    assert a == b
    assert a != c


def test_ring_time_delays_every_answer_and_wrap_up_adds_occupancy() -> None:
    plain = simulate(small())
    ringing = simulate(small(ring_s=8.0))
    assert ringing.asa_seconds >= 8.0
    assert ringing.answered == ringing.offered
    wrapped = simulate(small(wrap_up_s=30.0))
    # Occupancy is handle time (talk + wrap-up) ÷ agent time: +30 s per 180 s call.
    assert wrapped.occupancy == pytest.approx(plain.occupancy * 210.0 / 180.0, rel=0.1)
    assert wrapped.asa_seconds > plain.asa_seconds


@pytest.mark.parametrize(
    "strategy", [Strategy.ROUND_ROBIN, Strategy.RING_ALL, Strategy.SKILLS_BASED]
)
def test_every_strategy_serves_every_caller_with_the_same_capacity(strategy: Strategy) -> None:
    """Routing order changes who answers, not how many agents are free (M/M/n):
    waits match Erlang C as for longest idle, within a loose tolerance for a short run."""
    result = simulate(small(strategy=strategy, hours=300.0, warmup_hours=5.0, batches=20))
    theory = erlang_c_metrics(5, 80.0 / 3600.0, 180.0, 20.0)
    assert result.answered == result.offered
    se = standard_error(result, "service_level")
    assert abs(result.service_level - theory.service_level) <= Z * se


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        small(agents=0)
    with pytest.raises(ValueError):
        small(warmup_hours=30.0)
    with pytest.raises(ValueError):
        small(strategy=Strategy.PREFERRED_AGENT)


def _cli(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="tsunagu")
    simulate_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out = io.StringIO()
    with redirect_stdout(out):
        code = simulate_cli.run(args)
    return code, out.getvalue()


def test_cli_prints_json_with_the_documented_fields() -> None:
    argv = [
        "simulate",
        *("--agents", "5", "--calls-per-hour", "80", "--aht", "180", "--patience", "120"),
        *("--hours", "10", "--seed", "3", "--sl-threshold", "20", "--json", "--compare"),
    ]
    code, out = _cli(argv)
    assert code == 0
    data = json.loads(out)
    for key in (
        "offered",
        "answered",
        "abandoned",
        "service_level",
        "asa_seconds",
        "abandon_rate",
        "occupancy",
    ):
        assert key in data
    assert data["offered"] == data["answered"] + data["abandoned"]
    assert data["theory"]["model"] == "erlang_a"
    direct = simulate(small(hours=10.0, seed=3, patience_s=120.0))
    assert data["offered"] == direct.offered and data["asa_seconds"] == direct.asa_seconds


def test_cli_refuses_bad_numbers() -> None:
    argv = ["simulate", "--agents", "0", "--calls-per-hour", "80", "--aht", "180", "--hours", "1"]
    code, out = _cli(argv)
    assert code == 2 and out == ""
