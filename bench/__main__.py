"""Run benchmarks: ``python -m bench`` (all) or ``python -m bench parser register``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "parser": "bench.bench_parser",
    "register": "bench.bench_register",
    "acd": "bench.bench_acd",
    "media": "bench.bench_media",
    "b2bua": "bench.bench_b2bua",
    "search": "bench.bench_search",
    "api": "bench.bench_api",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        module.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
