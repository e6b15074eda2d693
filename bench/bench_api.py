"""REST API requests per second: the real Tsunagu server against a bare FastAPI app.

Tsunagu is started as an operator would (``python -m tsunagu serve``, the demo contact
center, SQLite in a fresh data directory holding 10,000 interactions), with the per-key
rate limit raised (``api.rate_limit``) so the benchmark measures serving, not the limiter.
Two endpoints are loaded with ``wrk`` (fixed connections and duration, one thread per core):

* ``GET /api/v1/interactions?limit=50`` — authentication (API key), role check, a store
  search and the JSON of 50 records: what a CRM integration polls;
* ``GET /api/v1/health`` — authentication and a small in-memory document.

The peer is a bare FastAPI app on the same uvicorn configuration and event loop (uvloop)
returning constant JSON bodies of the same sizes, with no authentication and no database:
the ratio is what Tsunagu's auth, store and serialisation cost over the framework itself.
Both servers run one at a time on the same machine with the same wrk settings.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.bench_search import fill_sqlite, generate
from bench.procs import free_port, stop
from tsunagu.store import default_url, migrate
from tsunagu.store.db import DEFAULT_FILE_NAME

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
KEY = "demo-admin-key"
DURATION_S = int(os.environ.get("BENCH_API_SECONDS", "15"))
CONNECTIONS = 32
INTERACTIONS = 10_000
ENDPOINTS = ("/api/v1/interactions?limit=50", "/api/v1/health")

PEER = """
import sys, asyncio, uvloop, uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

bodies = {p: open(f, "rb").read() for p, f in zip(("interactions", "health"), sys.argv[2:4])}
app = FastAPI()

@app.get("/api/v1/interactions")
async def interactions(limit: int = 50) -> Response:
    return Response(bodies["interactions"], media_type="application/json")

@app.get("/api/v1/health")
async def health() -> Response:
    return Response(bodies["health"], media_type="application/json")

config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None,
                        access_log=False, server_header=False, lifespan="off")
with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(uvicorn.Server(config).serve())
"""


def _get(url: str, auth: bool = True) -> bytes:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {KEY}"} if auth else {}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return bytes(response.read())


def _wait_http(url: str, auth: bool, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _get(url, auth)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _tsunagu(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    data = folder / "var"
    data.mkdir()
    asyncio.run(migrate(default_url(data)))
    fill_sqlite(data / DEFAULT_FILE_NAME, generate(INTERACTIONS, seed=11))
    config = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    config["flows"] = [{"file": str(EXAMPLES / f["file"])} for f in config["flows"]]
    port = free_port()
    config.setdefault("server", {}).update(
        {"sip_port": free_port(), "http_port": port, "data_dir": str(data)}
    )
    config.setdefault("api", {})["rate_limit"] = {"per_second": 100_000, "burst": 1_000_000}
    config["logging"] = {"level": "WARNING"}
    path = folder / "tsunagu.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsunagu", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "tsunagu.log").open("wb"),
        start_new_session=True,
    )
    return proc, port


def _peer(folder: Path, bodies: list[bytes]) -> tuple[subprocess.Popen[bytes], int]:
    files = []
    for n, body in enumerate(bodies):
        files.append(folder / f"body{n}.json")
        files[-1].write_bytes(body)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", PEER, str(port), *map(str, files)],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "peer.log").open("wb"),
        start_new_session=True,
    )
    return proc, port


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, auth: bool) -> dict[str, Any]:
    threads = max(1, min(2, os.cpu_count() or 1))
    cmd = ["wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "--latency"]
    if auth:
        cmd += ["-H", f"Authorization: Bearer {KEY}"]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, check=True, timeout=DURATION_S + 60
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    latency = {m[0]: round(float(m[1]) * _UNITS[m[2]], 2) for m in _LATENCY.findall(out)}
    if rate is None or requests is None:
        raise RuntimeError(f"wrk output not understood:\n{out}")
    failures = int(bad[1]) if bad else 0
    failures += sum(int(g) for g in errors.groups()) if errors else 0
    return {
        "rps": round(float(rate[1])),
        "requests": int(requests[1]),
        "failures": failures,
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
    }


def run() -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: run `make bench` (it installs it)")
    folder = Path(tempfile.mkdtemp(prefix="tsunagu-bench-api-"))
    results: dict[str, Any] = {"duration_s": DURATION_S, "connections": CONNECTIONS}
    try:
        proc, port = _tsunagu(folder)
        try:
            base = f"http://127.0.0.1:{port}"
            bodies = [_wait_http(base + path, auth=True) for path in ENDPOINTS]
            results["sizes"] = [len(b) for b in bodies]
            results["tsunagu"] = [_wrk(base + path, auth=True) for path in ENDPOINTS]
        finally:
            stop(proc)
        peer, peer_port = _peer(folder, bodies)
        try:
            base = f"http://127.0.0.1:{peer_port}"
            _wait_http(base + ENDPOINTS[1], auth=False)
            results["fastapi"] = [_wrk(base + path, auth=False) for path in ENDPOINTS]
        finally:
            stop(peer)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main() -> None:
    """Write the "api" section of docs/BENCHMARKS.md."""
    from bench.report import table, write_section

    r = run()
    rows: list[dict[str, object]] = []
    for n, path in enumerate(ENDPOINTS):
        ours, peer = r["tsunagu"][n], r["fastapi"][n]
        rows.append(
            {
                "endpoint": f"`GET {path}`",
                "body bytes": r["sizes"][n],
                "Tsunagu req/s": ours["rps"],
                "p50 / p99 ms": f"{ours['p50_ms']} / {ours['p99_ms']}",
                "failures": ours["failures"],
                "bare FastAPI req/s": peer["rps"],
                "peer p50 / p99 ms": f"{peer['p50_ms']} / {peer['p99_ms']}",
                "ratio": round(ours["rps"] / peer["rps"], 2) if peer["rps"] else "",
            }
        )
    body = (
        table(rows)
        + f"\n\n`wrk`, {r['connections']} connections, {r['duration_s']} s per line, the "
        "servers one after the other on the same machine. Tsunagu: `tsunagu serve` on the "
        f"demo config with {INTERACTIONS:,} stored interactions (SQLite), API key auth, rate "
        "limit raised. Peer: a bare FastAPI app on the same uvicorn settings and uvloop "
        "returning the same bodies as constants (no auth, no database). ratio = Tsunagu / "
        "peer requests per second. Failures = non-2xx answers plus socket errors.\n"
    )
    write_section("api", "REST API requests per second", body, "python -m bench api")


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
