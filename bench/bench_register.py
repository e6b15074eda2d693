"""REGISTER-with-digest throughput under SIPp, Tsunagu side by side with Kamailio.

Each server runs as one process (Kamailio with ``fork=no``) with a thousand users; SIPp
plays ``bench/peers/register_auth.xml`` (REGISTER, 401, REGISTER with MD5 credentials,
200) at a ladder of rates. For each rate we record completed and failed registrations
and the server's CPU time per registration. The sustained rate is the highest rung where
every registration succeeded and SIPp achieved at least 95 % of the asked rate.
SIPp 3.6 computes only MD5 digests, so both servers are configured for MD5 here; the
SHA-256 path is exercised by the integration tests with baresip and pjsua2.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.procs import free_port, stop, tree_cpu_seconds, wait_for_options
from bench.report import table, write_section

HERE = Path(__file__).parent
SCENARIO = HERE / "peers" / "register_auth.xml"
KAMAILIO_CFG = HERE / "peers" / "kamailio-registrar.cfg"
USERS = range(2000, 3000)
RATES = [100, 200, 400, 800, 1200, 1600, 2400, 3200]
SECONDS_PER_RUNG = 5


@dataclass
class Rung:
    rate: int
    completed: int
    failed: int
    achieved: float
    cpu_ms_per_registration: float

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.achieved >= 0.95 * self.rate


def _users_file(folder: Path) -> Path:
    path = folder / "users.csv"
    lines = ["SEQUENTIAL"]
    lines += [f"{u};[authentication username={u} password=bench-{u}]" for u in USERS]
    path.write_text("\n".join(lines) + "\n")
    return path


def _start_tsunagu(folder: Path, port: int) -> subprocess.Popen[bytes]:
    config = {
        "server": {
            "bind": "127.0.0.1",
            "sip_port": port,
            "http_port": free_port(),
            "data_dir": str(folder / "var"),
            "domain": "127.0.0.1",
        },
        "security": {"auth": {"algorithms": ["MD5"]}, "ban": {"allow": ["127.0.0.0/8"]}},
        "logging": {"level": "WARNING"},
        "agents": [{"id": str(u), "sip_password": f"bench-{u}"} for u in USERS],
    }
    path = folder / "tsunagu.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.Popen(
        [sys.executable, "-m", "tsunagu", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "tsunagu.log").open("wb"),
        start_new_session=True,
    )


def _start_kamailio(folder: Path, port: int) -> subprocess.Popen[bytes]:
    cfg = folder / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.read_text().replace("LISTEN_ADDR", f"127.0.0.1:{port}"))
    return subprocess.Popen(
        ["kamailio", "-f", str(cfg), "-DD", "-E", "-m", "64", "-M", "8"],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "kamailio.log").open("wb"),
        start_new_session=True,
    )


def _run_rung(folder: Path, users: Path, port: int, pid: int, rate: int) -> Rung:
    total = rate * SECONDS_PER_RUNG
    stat = folder / f"stat-{port}-{rate}.csv"
    cpu0 = tree_cpu_seconds(pid)
    start = time.monotonic()
    subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{port}",
            "-sf",
            str(SCENARIO),
            "-inf",
            str(users),
            "-r",
            str(rate),
            "-m",
            str(total),
            "-l",
            str(rate * 4),
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-nostdin",
            "-trace_stat",
            "-stf",
            str(stat),
            "-fd",
            "1",
            "-timeout",
            str(SECONDS_PER_RUNG * 6),
            "-timeout_error",
            "-recv_timeout",
            "5000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        timeout=SECONDS_PER_RUNG * 8,
    )
    elapsed = time.monotonic() - start
    cpu = tree_cpu_seconds(pid) - cpu0
    header, *rows = stat.read_text().splitlines()
    names = header.split(";")
    last = dict(zip(names, rows[-1].split(";"), strict=False))
    completed = int(last["SuccessfulCall(C)"])
    failed = int(last["FailedCall(C)"]) + max(0, total - completed - int(last["FailedCall(C)"]))
    return Rung(rate, completed, failed, completed / elapsed, 1000 * cpu / max(completed, 1))


def _ladder(name: str, folder: Path, users: Path) -> list[Rung]:
    port = free_port()
    proc = _start_tsunagu(folder, port) if name == "Tsunagu" else _start_kamailio(folder, port)
    rungs: list[Rung] = []
    try:
        wait_for_options(port)
        for rate in RATES:
            rung = _run_rung(folder, users, port, proc.pid, rate)
            rungs.append(rung)
            print(f"{name}: {rung}", file=sys.stderr)
            if not rung.clean:
                break
    finally:
        stop(proc)
    return rungs


def main() -> None:
    for tool in ("sipp", "kamailio"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install sip-tester kamailio")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        users = _users_file(folder)
        results = {name: _ladder(name, folder, users) for name in ("Tsunagu", "Kamailio")}
    rows: list[dict[str, object]] = []
    sustained: dict[str, int] = {}
    for name, rungs in results.items():
        clean = [r.rate for r in rungs if r.clean]
        sustained[name] = max(clean, default=0)
        for r in rungs:
            rows.append(
                {
                    "server": name,
                    "asked /s": r.rate,
                    "achieved /s": f"{r.achieved:.0f}",
                    "completed": r.completed,
                    "failed": r.failed,
                    "server CPU ms / registration": f"{r.cpu_ms_per_registration:.3f}",
                }
            )
    ours, theirs = sustained["Tsunagu"], sustained["Kamailio"]
    if theirs:
        summary = (
            f"Sustained rate at zero failures: **Tsunagu {ours}/s**, Kamailio {theirs}/s "
            f"(ratio {ours / theirs:.2f}); the ladder stops at {RATES[-1]}/s, so a figure "
            "equal to it is a floor."
        )
    else:
        summary = f"Sustained rate at zero failures: Tsunagu {ours}/s; Kamailio failed to run."
    body = (
        f"{summary}\n\nEach rung is {SECONDS_PER_RUNG} s of SIPp registrations of "
        f"{len(USERS)} users (two requests each: challenge and authenticated). One server "
        "process each; SIPp on the same 2-core machine.\n\n" + table(rows)
    )
    write_section(
        "register",
        "REGISTER with digest auth under SIPp (vs Kamailio)",
        body,
        "python -m bench register",
    )


if __name__ == "__main__":
    main()
