"""``tsunagu simulate``: what-if staffing runs of the real ACD engine, printed as JSON.

The simulator (:mod:`tsunagu.acd.simulate`) drives the same queue, routing and presence
code as live calls; ``--compare`` adds the Erlang C (or, with ``--patience``, Erlang A)
prediction next to it so a planner sees both.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from tsunagu.acd.erlang import erlang_a_metrics, erlang_c_metrics
from tsunagu.acd.simulate import SimulationConfig, simulate
from tsunagu.acd.strategies import Strategy

_STRATEGIES = [s.value for s in Strategy if s is not Strategy.PREFERRED_AGENT]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``simulate`` on the ``tsunagu`` command line."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate a queue with the real ACD engine (Poisson arrivals, exponential times)",
        description=(
            "Run the ACD engine under a simulated clock and print offered, answered, "
            "abandoned, service_level, asa_seconds, abandon_rate and occupancy."
        ),
    )
    p.add_argument("--agents", type=int, required=True, help="agents logged in")
    p.add_argument("--calls-per-hour", type=float, required=True, help="mean arrival rate")
    p.add_argument("--aht", type=float, required=True, help="mean handle time, seconds")
    p.add_argument("--patience", type=float, help="mean caller patience, seconds (default: none)")
    p.add_argument("--hours", type=float, required=True, help="simulated hours of arrivals")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same result)")
    p.add_argument(
        "--sl-threshold", type=float, default=20.0, help="service-level threshold, seconds"
    )
    p.add_argument("--warmup-hours", type=float, default=0.0, help="hours not counted at start")
    p.add_argument("--wrap-up", type=float, default=0.0, help="wrap-up seconds after each call")
    p.add_argument("--ring", type=float, default=0.0, help="seconds an agent's phone rings")
    p.add_argument("--strategy", choices=_STRATEGIES, default=Strategy.LONGEST_IDLE.value)
    p.add_argument("--compare", action="store_true", help="add the Erlang C/A prediction")
    p.add_argument("--json", action="store_true", help="JSON output (the only format today)")
    p.set_defaults(handler=run)


def _finite(value: object) -> object:
    """JSON has no NaN/Infinity: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(args: argparse.Namespace) -> int:
    """Run the simulation described by ``args`` and print JSON; returns the exit code."""
    try:
        config = SimulationConfig(
            agents=args.agents,
            calls_per_hour=args.calls_per_hour,
            aht_s=args.aht,
            hours=args.hours,
            seed=args.seed,
            sl_threshold_s=args.sl_threshold,
            patience_s=args.patience,
            ring_s=getattr(args, "ring", 0.0),
            wrap_up_s=getattr(args, "wrap_up", 0.0),
            warmup_hours=getattr(args, "warmup_hours", 0.0),
            strategy=Strategy(getattr(args, "strategy", Strategy.LONGEST_IDLE.value)),
        )
    except ValueError as exc:
        print(f"tsunagu simulate: {exc}", file=sys.stderr)
        return 2
    out = {k: _finite(v) for k, v in simulate(config).to_dict().items()}
    if getattr(args, "compare", False):
        rate = config.calls_per_hour / 3600.0
        if config.patience_s is None:
            theory = erlang_c_metrics(config.agents, rate, config.aht_s, config.sl_threshold_s)
        else:
            theory = erlang_a_metrics(
                config.agents, rate, config.aht_s, config.patience_s, config.sl_threshold_s
            )
        out["theory"] = {
            "model": "erlang_c" if config.patience_s is None else "erlang_a",
            "service_level": _finite(theory.service_level),
            "asa_seconds": _finite(theory.asa_seconds),
            "abandon_rate": _finite(theory.p_abandon),
            "occupancy": _finite(theory.occupancy),
        }
    print(json.dumps(out, indent=2 if sys.stdout.isatty() else None, sort_keys=True))
    return 0
