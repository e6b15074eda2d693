"""Media plane under load: N bridged and recorded G.711 calls, Tsunagu vs rtpengine.

Three processes per run, so that the measured process does nothing but relay media:

* the **relay**: Tsunagu's :class:`~tsunagu.media.engine.LocalMediaEngine` on uvloop
  (``python -m bench.bench_media serve``), or rtpengine in userspace mode
  (``rtpengine --table=-1``) driven over its ng control protocol (bencode over UDP:
  ``offer``/``answer``/``delete``, with ``record call`` so it writes pcap recordings);
* the **peers** (``python -m bench.bench_media peers``): for each call a caller and an
  agent endpoint that each send 50 packets/s of PCMU, paced from absolute due times on one
  shared timer, and count what they receive; plus a few listeners that Tsunagu plays a
  looping prompt to, whose packet inter-arrival times measure prompt pacing;
* this orchestrator, which sets calls up, reads the relay's CPU time from ``/proc`` at
  the start and end of the measurement window, and writes docs/BENCHMARKS.md.

Loss is counted end to end (packets a peer sent vs packets its partner received, after
a drain). CPU per call is relay CPU seconds / calls / window seconds. Both relays record
every call (Tsunagu: stereo WAV; rtpengine: pcap), so the comparison is like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from bench.procs import cpu_seconds, free_port, stop
from bench.report import table, write_section

STEPS = (50, 100, 200, 300)
WINDOW_S = 20.0
WARMUP_S = 2.0
DRAIN_S = 0.5
PROMPT_LISTENERS = 10
FRAME = 160
PCMU_PT = 0
LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- plumbing


def _json_line(data: object) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _install_uvloop() -> str:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:
        return "asyncio"


class Child:
    """A helper process spoken to in JSON lines over stdin/stdout."""

    def __init__(self, mode: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_media", mode, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )

    def send(self, data: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(data) + "\n").encode())
        self.proc.stdin.flush()

    def read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench helper exited with {self.proc.wait()}")
        return json.loads(line)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# ----------------------------------------------------------------------------- Tsunagu relay


def _write_prompt(path: Path, tone: npt.NDArray[np.int16]) -> None:
    from tsunagu.media.prompts import write_wav_mono

    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav_mono(path, tone)


async def _serve(data_dir: Path) -> None:
    from tsunagu.media.engine import LocalMediaEngine, MediaConfig
    from tsunagu.media.leg import LocalMediaLeg
    from tsunagu.media.recorder import Recorder
    from tsunagu.media.sdp import PCMU, build_offer

    t = np.arange(8000 * 2) / 8000
    prompt = data_dir / "moh.wav"
    tone = np.round(8000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16)
    await asyncio.to_thread(_write_prompt, prompt, tone)
    engine = LocalMediaEngine(
        MediaConfig(data_dir=data_dir, port_min=20000, port_max=29999, tts_enabled=False)
    )
    reader = await _stdin_lines()
    legs: list[LocalMediaLeg] = []
    recordings: list[Recorder] = []
    plays: list[asyncio.Task[object]] = []
    call_id = 0
    while line := await reader.readline():
        command = json.loads(line)
        if command["op"] == "calls":
            relay_ports: list[list[int]] = []
            for caller_port, agent_port in command["calls"]:
                call_id += 1
                caller = await engine.open_leg(f"c{call_id}", "caller")
                agent = await engine.open_leg(f"c{call_id}", "agent")
                await caller.answer(build_offer(LOOPBACK, caller_port, (PCMU,), 101))
                await agent.answer(build_offer(LOOPBACK, agent_port, (PCMU,), 101))
                recording = await engine.recorder(f"c{call_id}")
                await caller.bridge(agent, recording)
                legs += [caller, agent]
                recordings.append(recording)
                relay_ports.append([caller.local_port, agent.local_port])
            prompt_ports: list[int] = []
            for listener_port in command["prompts"]:
                call_id += 1
                leg = await engine.open_leg(f"p{call_id}", "caller")
                await leg.answer(build_offer(LOOPBACK, listener_port, (PCMU,), 101))
                plays.append(asyncio.ensure_future(leg.play([prompt], loop=True)))
                legs.append(leg)
                prompt_ports.append(leg.local_port)
            _json_line({"calls": relay_ports, "prompts": prompt_ports})
        elif command["op"] == "close":
            written = 0.0
            for finished in recordings:
                path = await finished.stop()
                written += path.stat().st_size / 32000
                path.unlink()
            for leg in legs:
                await leg.close()
            for play in plays:
                await play
            stats = {
                "recorded_s": written,
                "clock_skipped_frames": engine.clock.skipped_frames,
                "clock_late_max_ms": engine.clock.late_max * 1000,
            }
            legs, recordings, plays = [], [], []
            engine.clock.skipped_frames = 0
            engine.clock.late_max = 0.0
            _json_line(stats)
        elif command["op"] == "exit":
            break
    await engine.close()


# ----------------------------------------------------------------------------- peers


class _Endpoint(asyncio.DatagramProtocol):
    __slots__ = ("arrivals", "keep_arrivals", "port", "received", "sent", "transport")

    def __init__(self, keep_arrivals: bool) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.sent = 0
        self.received = 0
        self.keep_arrivals = keep_arrivals
        self.arrivals: list[float] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's own class

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) < 2 or 192 <= data[1] <= 223:
            return  # RTCP for a neighbouring port (ours are ephemeral): not media
        self.received += 1
        if self.keep_arrivals:
            self.arrivals.append(time.monotonic())


async def _peers() -> None:
    loop = asyncio.get_running_loop()
    reader = await _stdin_lines()
    endpoints: list[_Endpoint] = []
    listeners: list[_Endpoint] = []
    payload = bytes(range(0, 256, 2))[:80] * 2  # 160 octets of "audio"
    while line := await reader.readline():
        command = json.loads(line)
        if command["op"] == "open":
            endpoints, listeners = [], []
            for index in range(2 * command["calls"] + command["prompts"]):
                keep = index >= 2 * command["calls"] or index < 8  # a few bridged ones too
                transport, endpoint = await loop.create_datagram_endpoint(
                    partial(_Endpoint, keep), local_addr=(LOOPBACK, 0)
                )
                endpoint.port = int(transport.get_extra_info("sockname")[1])
                (endpoints if index < 2 * command["calls"] else listeners).append(endpoint)
            _json_line(
                {
                    "calls": [
                        [endpoints[i].port, endpoints[i + 1].port]
                        for i in range(0, len(endpoints), 2)
                    ],
                    "prompts": [e.port for e in listeners],
                }
            )
        elif command["op"] == "run":
            targets = [
                (endpoint, (LOOPBACK, port))
                for pair, (caller_target, agent_target) in zip(
                    _pairs(endpoints), command["targets"], strict=True
                )
                for endpoint, port in zip(pair, (caller_target, agent_target), strict=True)
            ]
            await _send_load(targets, command, payload, listeners + endpoints[:8])
            report = _peer_report(endpoints, listeners)
            for endpoint in endpoints + listeners:
                if endpoint.transport is not None:
                    endpoint.transport.close()
            _json_line(report)
        elif command["op"] == "exit":
            break


def _pairs(endpoints: list[_Endpoint]) -> Iterator[tuple[_Endpoint, _Endpoint]]:
    for i in range(0, len(endpoints), 2):
        yield endpoints[i], endpoints[i + 1]


async def _send_load(
    targets: list[tuple[_Endpoint, tuple[str, int]]],
    command: dict[str, Any],
    payload: bytes,
    timed: list[_Endpoint],
) -> None:
    """Send one packet per endpoint every 20 ms from absolute due times until the end."""
    loop = asyncio.get_running_loop()
    warmup, window = float(command["warmup"]), float(command["seconds"])
    start = loop.time()
    total = int((warmup + window) / 0.02)
    sequence = 0
    window_started = False
    for tick in range(total):
        due = start + tick * 0.02
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if not window_started and tick * 0.02 >= warmup:
            window_started = True
            for endpoint in timed:
                endpoint.arrivals.clear()
            _json_line({"event": "window-start"})
        sequence = (sequence + 1) & 0xFFFF
        header = (
            bytes((0x80, PCMU_PT)) + sequence.to_bytes(2, "big") + (tick * FRAME).to_bytes(4, "big")
        )
        for endpoint, target in targets:
            transport = endpoint.transport
            if transport is not None:
                transport.sendto(header + endpoint.port.to_bytes(4, "big") + payload, target)
                endpoint.sent += 1
    _json_line({"event": "window-end"})
    await asyncio.sleep(DRAIN_S)


def _intervals(endpoints: list[_Endpoint]) -> dict[str, float]:
    gaps = np.concatenate(
        [np.diff(e.arrivals) for e in endpoints if len(e.arrivals) > 2] or [np.zeros(0)]
    )
    if gaps.size == 0:
        return {}
    gaps_ms = gaps * 1000
    return {
        "p50": float(np.percentile(gaps_ms, 50)),
        "p99": float(np.percentile(gaps_ms, 99)),
        "max": float(gaps_ms.max()),
        "packets": int(gaps.size + len(endpoints)),
    }


def _peer_report(endpoints: list[_Endpoint], listeners: list[_Endpoint]) -> dict[str, Any]:
    sent = received = 0
    for caller, agent in _pairs(endpoints):
        sent += caller.sent + agent.sent
        received += caller.received + agent.received
    return {
        "sent": sent,
        "received": received,
        "relay_intervals": _intervals(endpoints[:8]),
        "prompt_intervals": _intervals(listeners),
        "peer_cpu_s": time.process_time(),
    }


# ----------------------------------------------------------------------------- rtpengine


def _bencode(value: object) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(_bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(_bencode(k) + _bencode(v) for k, v in sorted(value.items())) + b"e"
    raise TypeError(type(value))


def _bdecode(data: bytes, index: int = 0) -> tuple[Any, int]:
    kind = data[index : index + 1]
    if kind == b"i":
        end = data.index(b"e", index)
        return int(data[index + 1 : end]), end + 1
    if kind in (b"l", b"d"):
        index += 1
        items: list[Any] = []
        while data[index : index + 1] != b"e":
            item, index = _bdecode(data, index)
            items.append(item)
        if kind == b"l":
            return items, index + 1
        return {items[i].decode(): items[i + 1] for i in range(0, len(items), 2)}, index + 1
    colon = data.index(b":", index)
    length = int(data[index:colon])
    return data[colon + 1 : colon + 1 + length], colon + 1 + length


class NgClient:
    """rtpengine's ng control protocol: ``<cookie> <bencoded dict>`` over UDP."""

    def __init__(self, port: int) -> None:
        self.address = (LOOPBACK, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2.0)
        self.counter = 0

    def call(self, command: dict[str, object]) -> dict[str, Any]:
        self.counter += 1
        cookie = f"{os.getpid()}_{self.counter}".encode()
        for _ in range(5):
            self.sock.sendto(cookie + b" " + _bencode(command), self.address)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            reply, _ = _bdecode(data.partition(b" ")[2])
            if reply.get("result") != b"ok" and command["command"] != "ping":
                raise RuntimeError(f"rtpengine {command['command']}: {reply}")
            return dict(reply)
        raise TimeoutError("rtpengine does not answer on its ng port")

    def close(self) -> None:
        self.sock.close()


def _sdp(port: int) -> str:
    return (
        f"v=0\r\no=bench {port} 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )


def _sdp_port(sdp: bytes) -> int:
    for line in sdp.decode().splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise RuntimeError("no m=audio in rtpengine's SDP")


class Rtpengine:
    def __init__(self, workdir: Path) -> None:
        self.ng_port = free_port()
        self.recordings = workdir / "rtpengine-rec"
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.log = (workdir / "rtpengine.log").open("wb")
        binary = shutil.which("rtpengine")
        if binary is None:
            raise FileNotFoundError("rtpengine is not installed (apt-get install rtpengine-daemon)")
        self.proc = subprocess.Popen(
            [
                binary,
                "--config-file=none",
                f"--interface={LOOPBACK}",
                f"--listen-ng={LOOPBACK}:{self.ng_port}",
                "--foreground",
                "--table=-1",
                "--log-stderr",
                "--log-level=4",
                "--port-min=30000",
                "--port-max=39999",
                "--num-threads=1",
                f"--recording-dir={self.recordings}",
                "--recording-method=pcap",
                "--delete-delay=0",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ng = NgClient(self.ng_port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.ng.call({"command": "ping"})
                break
            except TimeoutError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise
        self.calls: list[str] = []

    def setup(self, calls: list[list[int]]) -> list[list[int]]:
        targets = []
        for caller_port, agent_port in calls:
            call_id = f"bench-{caller_port}-{agent_port}-{time.monotonic_ns()}"
            offer = self.ng.call(
                {
                    "command": "offer",
                    "call-id": call_id,
                    "from-tag": "caller",
                    "sdp": _sdp(caller_port),
                    "record call": "yes",
                }
            )
            answer = self.ng.call(
                {
                    "command": "answer",
                    "call-id": call_id,
                    "from-tag": "caller",
                    "to-tag": "agent",
                    "sdp": _sdp(agent_port),
                }
            )
            # The caller sends to the port in the answer rtpengine gave back; the agent to
            # the port in the rewritten offer.
            targets.append([_sdp_port(answer["sdp"]), _sdp_port(offer["sdp"])])
            self.calls.append(call_id)
        return targets

    def teardown(self) -> None:
        for call_id in self.calls:
            with contextlib.suppress(RuntimeError, TimeoutError):
                self.ng.call({"command": "delete", "call-id": call_id, "from-tag": "caller"})
        self.calls = []
        shutil.rmtree(self.recordings, ignore_errors=True)
        self.recordings.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        self.ng.close()
        stop(self.proc)
        self.log.close()


# ----------------------------------------------------------------------------- orchestration


def _run_step(
    relay_pid: int,
    calls: int,
    setup: Any,
    teardown: Any,
    *,
    prompts: int,
    window: float,
) -> dict[str, Any]:
    peers = Child("peers")
    try:
        peers.send({"op": "open", "calls": calls, "prompts": prompts})
        ports = peers.read()
        targets, prompt_targets = setup(ports["calls"], ports["prompts"])
        del prompt_targets  # prompts are sent by the relay, the peers only listen
        peers.send({"op": "run", "targets": targets, "warmup": WARMUP_S, "seconds": window})
        event = peers.read()
        assert event == {"event": "window-start"}, event
        cpu_start, wall_start = cpu_seconds(relay_pid), time.monotonic()
        event = peers.read()
        assert event == {"event": "window-end"}, event
        cpu_end, wall_end = cpu_seconds(relay_pid), time.monotonic()
        report = peers.read()
        relay_stats = teardown()
        peers.send({"op": "exit"})
    finally:
        peers.stop()
    seconds = wall_end - wall_start
    report.update(
        calls=calls,
        seconds=seconds,
        cpu_s=cpu_end - cpu_start,
        loss=1 - report["received"] / report["sent"] if report["sent"] else 1.0,
        relay=relay_stats,
    )
    return dict(report)


def _run_tsunagu(steps: tuple[int, ...], window: float, workdir: Path) -> list[dict[str, Any]]:
    server = Child("serve", str(workdir / "tsunagu"))
    results = []
    try:
        for calls in steps:

            def setup(
                call_ports: list[list[int]], prompt_ports: list[int]
            ) -> tuple[list[list[int]], list[int]]:
                server.send({"op": "calls", "calls": call_ports, "prompts": prompt_ports})
                reply = server.read()
                return reply["calls"], reply["prompts"]

            def teardown() -> dict[str, Any]:
                server.send({"op": "close"})
                return dict(server.read())

            results.append(
                _run_step(
                    server.proc.pid,
                    calls,
                    setup,
                    teardown,
                    prompts=PROMPT_LISTENERS,
                    window=window,
                )
            )
            print(f"tsunagu {calls} calls: {_brief(results[-1])}", file=sys.stderr)
        server.send({"op": "exit"})
        server.proc.wait(30)
    finally:
        server.stop()
    return results


def _run_rtpengine(steps: tuple[int, ...], window: float, workdir: Path) -> list[dict[str, Any]]:
    engine = Rtpengine(workdir)
    results = []
    try:
        for calls in steps:

            def setup(
                call_ports: list[list[int]], prompt_ports: list[int]
            ) -> tuple[list[list[int]], list[int]]:
                return engine.setup(call_ports), []

            def teardown() -> dict[str, Any]:
                engine.teardown()
                return {}

            results.append(
                _run_step(engine.proc.pid, calls, setup, teardown, prompts=0, window=window)
            )
            print(f"rtpengine {calls} calls: {_brief(results[-1])}", file=sys.stderr)
    finally:
        engine.stop()
    return results


def _brief(result: dict[str, Any]) -> str:
    busy = 100 * result["cpu_s"] / result["seconds"]
    return (
        f"loss {100 * result['loss']:.3f} %, relay CPU {busy:.0f} % of a core, "
        f"{_per_call_ms(result):.2f} ms CPU per call-second"
    )


def _per_call_ms(result: dict[str, Any]) -> float:
    return float(1000 * result["cpu_s"] / result["calls"] / result["seconds"])


def _fmt_intervals(intervals: dict[str, float]) -> str:
    if not intervals:
        return "–"
    return f"{intervals['p50']:.2f} / {intervals['p99']:.2f}"


def _report(
    ours: list[dict[str, Any]],
    theirs: list[dict[str, Any]] | None,
    why_not: str | None,
    window: float,
) -> str:
    rows: list[dict[str, object]] = []
    by_calls = {r["calls"]: r for r in theirs or []}
    for result in ours:
        other = by_calls.get(result["calls"])
        row: dict[str, object] = {
            "calls": result["calls"],
            "packets/s relayed": f"{2 * result['calls'] * 50:,}",
            "Tsunagu loss %": f"{100 * result['loss']:.3f}",
            "Tsunagu CPU % core": f"{100 * result['cpu_s'] / result['seconds']:.0f}",
            "Tsunagu ms CPU/call·s": f"{_per_call_ms(result):.2f}",
            "prompt interval p50/p99 ms": _fmt_intervals(result["prompt_intervals"]),
            "relay interval p50/p99 ms": _fmt_intervals(result["relay_intervals"]),
        }
        if other is not None:
            row["rtpengine loss %"] = f"{100 * other['loss']:.3f}"
            row["rtpengine ms CPU/call·s"] = f"{_per_call_ms(other):.2f}"
            row["rtpengine relay p50/p99 ms"] = _fmt_intervals(other["relay_intervals"])
            ratio = (
                _per_call_ms(result) / _per_call_ms(other) if other["cpu_s"] > 0 else float("nan")
            )
            row["CPU ratio Tsunagu/rtpengine"] = f"{ratio:.1f}"
        rows.append(row)
    peers_busy = max(
        r["peer_cpu_s"] / (r["seconds"] + WARMUP_S + DRAIN_S) for r in ours + (theirs or [])
    )
    skipped = max(r["relay"].get("clock_skipped_frames", 0) for r in ours)
    note = (
        f"Each step: N calls, each a caller and an agent peer sending PCMU at 50 packets/s "
        f"through the relay (2·N·50 packets/s in and out), every call recorded; {WARMUP_S:.0f} s "
        f"warm-up, {window:.0f} s measured window. Loss is end to end over the whole run. "
        f"CPU is the relay process only (`/proc/PID/stat`), per call and per second of call. "
        f"Prompt interval: inter-arrival of a looping prompt played by Tsunagu to "
        f"{PROMPT_LISTENERS} listeners during the load (ideal 20.00 ms); relay interval: "
        f"inter-arrival of bridged packets at 8 receiving peers (the peers' own sending "
        f"jitter included). Tsunagu runs one process on uvloop with one shared 20 ms clock; "
        f"recordings are stereo WAV (Tsunagu) and pcap (rtpengine `--recording-method=pcap`, "
        f"userspace forwarding `--table=-1`, `--num-threads=1`). The load generator used up to "
        f"{100 * peers_busy:.0f} % of a core; the worst count of pacing frames Tsunagu's clock "
        f"had to skip in a step was {skipped}."
    )
    if why_not:
        note += f" rtpengine was not measured: {why_not}."
    return table(rows) + "\n\n" + note


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench media")
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "serve", "peers"])
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--seconds", type=float, default=WINDOW_S)
    parser.add_argument("--no-rtpengine", action="store_true")
    # ``python -m bench media`` calls main() with no arguments: run with the defaults.
    args = parser.parse_args([] if argv is None else argv)
    if args.mode == "serve":
        _install_uvloop()
        asyncio.run(_serve(Path(args.data_dir)))
        return
    if args.mode == "peers":
        _install_uvloop()
        asyncio.run(_peers())
        return
    steps = tuple(int(s) for s in args.steps.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        workdir = Path(tmp)
        ours = _run_tsunagu(steps, args.seconds, workdir)
        theirs: list[dict[str, Any]] | None = None
        why_not = None
        if args.no_rtpengine:
            why_not = "skipped with --no-rtpengine"
        elif shutil.which("rtpengine") is None:
            why_not = "`rtpengine` is not installed (apt-get install rtpengine-daemon)"
        else:
            try:
                theirs = _run_rtpengine(steps, args.seconds, workdir)
            except (OSError, RuntimeError, TimeoutError) as exc:
                why_not = f"it failed to run: {exc}"
    write_section(
        "media",
        "Media: bridged and recorded G.711 calls (Tsunagu vs rtpengine)",
        _report(ours, theirs, why_not, args.seconds),
        "python -m bench media",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
