"""Call set-ups through the B2BUA: SIPp UAC → server → SIPp UAS, Tsunagu beside sippy.

Tsunagu runs a one-block contact flow that transfers every call straight out through a
trunk to the SIPp UAS, so each call crosses the whole real path: trunk trust, number
lookup, flow, two RTP legs opened and bridged, a stereo recording file, one interaction
record in SQLite. sippy's ``b2bua_simple`` relays the same SIPp scenario with no media.
For each rate we record completed and failed calls and the post-dial delay (INVITE sent →
200 received, from SIPp's ``-trace_rtt``); the sustained rate is the highest rung with
under 0.1 % failures and at least 95 % of the asked rate achieved. Both servers are one
process on the same 2-core machine as the two SIPp processes.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.procs import free_port, stop, tree_cpu_seconds, wait_for_options
from bench.report import table, write_section

RATES = [10, 25, 50, 100, 150, 200, 300]
SECONDS_PER_RUNG = 8
FLOW = """\
name: straight-through
version: 1
start: out
blocks:
  out:
    type: TransferToNumber
    number: "0399990000"
    caller_id: "0312340000"
    timeout_s: 10
    on_failure: bye
  bye:
    type: Disconnect
"""


@dataclass
class Rung:
    rate: int
    completed: int
    failed: int
    achieved: float
    pdd_p50_ms: float | None
    pdd_p99_ms: float | None
    cpu_ms_per_call: float

    @property
    def clean(self) -> bool:
        total = self.completed + self.failed
        return total > 0 and self.failed / total < 0.001 and self.achieved >= 0.95 * self.rate


def _uas(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-nostdin", "-bg"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=folder,
        start_new_session=True,
    )
    proc.wait(10)  # -bg: the parent returns once the daemon is up
    return proc, port


def _tsunagu(folder: Path, uas_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (folder / "flow.yaml").write_text(FLOW)
    config = {
        "server": {
            "bind": "127.0.0.1",
            "sip_port": port,
            "http_port": free_port(),
            "data_dir": str(folder / "var"),
            "domain": "127.0.0.1",
        },
        "security": {"ban": {"allow": ["127.0.0.0/8"]}},
        "logging": {"level": "WARNING"},
        "trunks": [
            {
                "name": "carrier",
                "kind": "ip",
                "allow": ["127.0.0.1/32"],
                "host": "127.0.0.1",
                "port": uas_port,
            }
        ],
        "flows": [{"file": str(folder / "flow.yaml")}],
        "numbers": [{"number": "0312340000", "flow": "straight-through"}],
        "media": {"rtp_port_min": 20000, "rtp_port_max": 29999, "tts": False},
    }
    path = folder / "tsunagu.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsunagu", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "tsunagu.log").open("wb"),
        start_new_session=True,
    )
    return proc, port


def _sippy(folder: Path, uas_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    exe = Path(sys.executable).parent / "b2bua_simple"
    proc = subprocess.Popen(
        [str(exe), "-l", "127.0.0.1", "-p", str(port), "-n", f"127.0.0.1:{uas_port}", "-f"],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "sippy.log").open("wb"),
        start_new_session=True,
    )
    return proc, port


def _rung(folder: Path, port: int, pid: int, rate: int, label: str) -> Rung:
    total = rate * SECONDS_PER_RUNG
    run_dir = folder / f"{label}-{rate}"
    run_dir.mkdir()
    cpu0 = tree_cpu_seconds(pid)
    start = time.monotonic()
    subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{port}",
            "-sn",
            "uac",
            "-s",
            "0312340000",
            "-r",
            str(rate),
            "-m",
            str(total),
            "-l",
            str(max(rate * 4, 50)),
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-nostdin",
            "-trace_stat",
            "-stf",
            "stat.csv",
            "-fd",
            "1",
            "-trace_rtt",
            "-rtt_freq",
            "1",
            "-timeout",
            str(SECONDS_PER_RUNG * 5),
            "-timeout_error",
            "-recv_timeout",
            "10000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=run_dir,
        check=False,
        timeout=SECONDS_PER_RUNG * 8,
    )
    elapsed = time.monotonic() - start
    cpu = tree_cpu_seconds(pid) - cpu0
    header, *rows = (run_dir / "stat.csv").read_text().splitlines()
    last = dict(zip(header.split(";"), rows[-1].split(";"), strict=False))
    completed = int(last["SuccessfulCall(C)"])
    failed = total - completed
    rtts: list[float] = []
    for rtt_file in run_dir.glob("*_rtt.csv"):
        for line in rtt_file.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    rtts.append(float(parts[1]))
                except ValueError:
                    continue
    p50 = statistics.median(rtts) if rtts else None
    p99 = statistics.quantiles(rtts, n=100)[98] if len(rtts) >= 100 else None
    return Rung(
        rate, completed, failed, completed / elapsed, p50, p99, 1000 * cpu / max(completed, 1)
    )


def _ladder(label: str, folder: Path) -> list[Rung]:
    uas, uas_port = _uas(folder)
    start = _tsunagu if label == "Tsunagu" else _sippy
    server, port = start(folder, uas_port)
    rungs: list[Rung] = []
    try:
        if label == "Tsunagu":
            wait_for_options(port, timeout=30)
        else:
            time.sleep(2)
        for rate in RATES:
            rung = _rung(folder, port, server.pid, rate, label)
            rungs.append(rung)
            print(f"{label}: {rung}", file=sys.stderr)
            if not rung.clean:
                break
    finally:
        stop(server)
        subprocess.run(["pkill", "-f", f"-p {uas_port} "], check=False)
        stop(uas)
    return rungs


def main() -> None:
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed: apt-get install sip-tester")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results: dict[str, list[Rung]] = {}
        for label in ("Tsunagu", "sippy"):
            (folder / label).mkdir()
            results[label] = _ladder(label, folder / label)
    rows: list[dict[str, object]] = []
    sustained: dict[str, int] = {}
    for label, rungs in results.items():
        sustained[label] = max((r.rate for r in rungs if r.clean), default=0)
        for r in rungs:
            rows.append(
                {
                    "server": label,
                    "asked /s": r.rate,
                    "achieved /s": f"{r.achieved:.0f}",
                    "completed": r.completed,
                    "failed": r.failed,
                    "PDD p50 ms": "-" if r.pdd_p50_ms is None else f"{r.pdd_p50_ms:.1f}",
                    "PDD p99 ms": "-" if r.pdd_p99_ms is None else f"{r.pdd_p99_ms:.1f}",
                    "server CPU ms / call": f"{r.cpu_ms_per_call:.1f}",
                }
            )
    ours, theirs = sustained["Tsunagu"], sustained["sippy"]
    ratio = f"{ours / theirs:.2f}" if theirs else "n/a"
    body = (
        f"Sustained call set-up rate at < 0.1 % failures: **Tsunagu {ours}/s**, sippy "
        f"b2bua_simple {theirs}/s (ratio {ratio}; target ≥ 2). The ladder stops at "
        f"{RATES[-1]}/s. Tsunagu's calls each open and bridge two RTP legs and write a "
        "stereo recording and an interaction record; sippy relays signalling only.\n\n"
        f"Each rung is {SECONDS_PER_RUNG} s of SIPp's built-in `uac` scenario against a "
        "SIPp `uas`; PDD is INVITE sent → 200 OK received at the UAC.\n\n" + table(rows)
    )
    write_section(
        "b2bua", "Call set-ups through the B2BUA (vs sippy)", body, "python -m bench b2bua"
    )


if __name__ == "__main__":
    main()
