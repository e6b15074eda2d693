"""SIPp runs for tests and load: built-in or XML scenarios, bounded, with parsed results.

A :class:`Sipp` is one bounded SIPp process on 127.0.0.1: the number of calls (``-m``) is
always given and a global ``-timeout`` always applies, so a run ends by itself even when
the system under test goes silent. Results come from SIPp's own statistics file
(``-trace_stat``; the last row holds the cumulative counters) plus the exit status:
0 = every call succeeded, 1 = at least one failed, 97/99 = stopped early or no calls,
255/254 = fatal error (e.g. the ``-timeout`` ran out, or the port could not be bound).

Scenarios of our own live in ``scenarios/`` next to this file:

* ``register_auth.xml`` (UAC): REGISTER -> 401/407 -> REGISTER with digest -> 200, one
  user per call from ``users.csv`` (``user;password``). SIPp 3.6 only substitutes CSV
  fields inside ``[authentication]`` when they are quoted:
  ``[authentication username="[field0]" password="[field1]"]`` (unquoted, the first
  ``]`` ends the keyword and the header comes out garbled).
* ``registrar_auth.xml`` (UAS): a digest-checking registrar to test REGISTER clients
  without Tsunagu; it looks passwords up in ``users.csv`` by user name. The file name is
  fixed inside the scenario, which is why :class:`Sipp` always writes ``users.csv``. Run
  it with ``users_index=True`` and ``forget_ended_calls=True``: SIPp otherwise remembers
  a finished call's Call-ID and swallows the client's refresh or un-REGISTER, which
  reuses it (RFC 3261 §10.2.4), leaving the client retransmitting until it gives up.

Mind the built-in ``uas`` scenario: it waits 4 s (``timewait``) after the last BYE
before it ends, so a UAS run lasts at least 4 s longer than its UAC.
"""

from __future__ import annotations

import csv
import errno
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from tests.integration.peers import (
    LOOPBACK,
    PeerError,
    PeerTimeoutError,
    free_port,
    log_tail,
    stop_process,
)

SCENARIOS = Path(__file__).with_name("scenarios")
BUILTIN = {"uac", "uas", "regexp", "3pcc-C-A", "3pcc-C-B", "3pcc-A", "3pcc-B", "branchc", "branchs",
           "uac_pcap"}  # fmt: skip
Transport = Literal["udp", "tcp", "u1", "un", "t1", "tn"]
_TRANSPORT_FLAG = {"udp": "u1", "tcp": "t1", "u1": "u1", "un": "un", "t1": "t1", "tn": "tn"}


@dataclass(frozen=True)
class SippResult:
    """What a finished SIPp run reports."""

    returncode: int
    successful: int
    failed: int
    created: int
    retransmissions: int
    stats: dict[str, str] = field(repr=False)
    errors: str = field(repr=False)
    screen: str = field(repr=False)
    run_dir: Path = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0

    def explain(self) -> str:
        """A readable account for assertion messages: counters, errors, final screen."""
        return (
            f"sipp exit {self.returncode}: {self.successful} ok, {self.failed} failed, "
            f"{self.created} created, {self.retransmissions} retransmissions "
            f"(files in {self.run_dir})\n--- errors ---\n{self.errors[-3000:]}\n"
            f"--- screen ---\n{self.screen[-3000:]}"
        )


def _int(stats: Mapping[str, str], key: str) -> int:
    try:
        return int(float(stats.get(key, "0") or "0"))
    except ValueError:
        return 0


def write_users_csv(path: Path, users: Iterable[Sequence[str]], order: str = "SEQUENTIAL") -> Path:
    """Write a SIPp injection file: first line the order, then ``f0;f1;...`` per user."""
    lines = [order] + [";".join(fields) for fields in users]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Sipp:
    """One bounded SIPp process. ``scenario`` is a built-in name (``"uac"``, ``"uas"``), the
    stem of a file in ``scenarios/`` (``"register_auth"``) or a path to an XML file.

    ``users`` rows become ``users.csv`` (``-inf``; SEQUENTIAL), ``variables`` become
    ``-set`` globals (``register_auth`` needs ``{"expires": "300"}``). ``transport`` is
    ``udp``/``tcp`` (one socket) or SIPp's ``un``/``tn`` (one socket per call, i.e. many
    source ports, like many phones).
    """

    def __init__(
        self,
        workdir: Path,
        scenario: str | Path,
        *,
        remote: str | None = None,
        name: str | None = None,
        local_port: int | None = None,
        transport: Transport = "udp",
        calls: int = 1,
        rate: float | None = None,
        rate_period_ms: int | None = None,
        limit: int | None = None,
        duration_ms: int | None = None,
        users: Iterable[Sequence[str]] | None = None,
        users_index: bool = False,
        variables: Mapping[str, str] | None = None,
        service: str | None = None,
        timeout_s: float = 60.0,
        trace_msg: bool = False,
        forget_ended_calls: bool = False,
        extra_args: Sequence[str] = (),
        binary: str = "sipp",
    ) -> None:
        self.scenario = scenario
        self.name = name or f"sipp-{Path(str(scenario)).stem}"
        self.dir = workdir / self.name
        self.remote = remote
        self.local_port = local_port or free_port()
        self.transport = _TRANSPORT_FLAG[transport]
        self.calls = calls
        self.rate = rate
        self.rate_period_ms = rate_period_ms
        self.limit = limit
        self.duration_ms = duration_ms
        self.users = [list(u) for u in users] if users is not None else None
        self.users_index = users_index
        self.variables = dict(variables or {})
        if scenario == "register_auth":
            self.variables.setdefault("expires", "3600")
        self.service = service
        self.timeout_s = timeout_s
        self.trace_msg = trace_msg
        self.forget_ended_calls = forget_ended_calls
        self.extra_args = list(extra_args)
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.stat_path = self.dir / "stat.csv"
        self.error_path = self.dir / "errors.log"
        self.screen_path = self.dir / "screen.log"
        self.stdout_path = self.dir / "stdout.log"
        self.message_path = self.dir / "messages.log"

    def _scenario_args(self) -> list[str]:
        scenario = self.scenario
        if isinstance(scenario, Path):
            return ["-sf", str(scenario)]
        if scenario in BUILTIN:
            return ["-sn", scenario]
        path = SCENARIOS / f"{scenario}.xml"
        if path.exists():
            return ["-sf", str(path)]
        raise PeerError(f"no SIPp scenario {scenario!r}: not built in and not in {SCENARIOS}")

    def command_line(self) -> list[str]:
        exe = shutil.which(self.binary)
        if exe is None:
            raise PeerError(f"{self.binary} not found: apt-get install sip-tester")
        args = [exe, *self._scenario_args()]
        if self.remote:
            args.append(self.remote)
        args += ["-i", LOOPBACK, "-p", str(self.local_port), "-t", self.transport]
        args += ["-m", str(self.calls), "-nostdin"]
        if self.rate is not None:
            args += ["-r", f"{self.rate:g}"]
        if self.rate_period_ms is not None:
            args += ["-rp", str(self.rate_period_ms)]
        if self.limit is not None:
            args += ["-l", str(self.limit)]
        if self.duration_ms is not None:
            args += ["-d", str(self.duration_ms)]
        if self.service is not None:
            args += ["-s", self.service]
        if self.users is not None:
            args += ["-inf", "users.csv"]
            if self.users_index:
                args += ["-infindex", "users.csv", "0"]
        for key, value in self.variables.items():
            args += ["-set", key, value]
        args += ["-timeout", f"{self.timeout_s:g}s", "-timeout_error"]
        args += ["-trace_stat", "-stf", str(self.stat_path), "-fd", "1"]
        args += ["-trace_err", "-error_file", str(self.error_path)]
        args += ["-trace_screen", "-screen_file", str(self.screen_path)]
        if self.trace_msg:
            args += ["-trace_msg", "-message_file", str(self.message_path)]
        if self.forget_ended_calls:
            args += ["-deadcall_wait", "0"]
        if self.transport in ("un", "tn"):
            args += ["-max_socket", str(max(64, min(self.calls, 50_000) + 16))]
        return args + self.extra_args

    def start(self) -> Self:
        if self._proc is not None:
            raise PeerError(f"{self.name} already started")
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.users is not None:
            write_users_csv(self.dir / "users.csv", self.users)
        args = self.command_line()
        (self.dir / "command.txt").write_text(" ".join(args) + "\n", encoding="utf-8")
        with self.stdout_path.open("wb") as out:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
            )
        return self

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Block until SIPp owns its port (start a UAS before its UAC)."""
        deadline = time.monotonic() + timeout
        while not self._port_taken():
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise PeerError(f"{self.name} exited before listening\n{self._tails()}")
            if time.monotonic() > deadline:
                raise PeerTimeoutError(
                    f"{self.name}: port {self.local_port} not bound in {timeout} s"
                )
            time.sleep(0.02)

    def _port_taken(self) -> bool:
        kind = socket.SOCK_DGRAM if self.transport.startswith("u") else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((LOOPBACK, self.local_port))
            except OSError as exc:
                return exc.errno == errno.EADDRINUSE
        return False

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to finish (its own ``-timeout`` bounds this) and parse results."""
        proc = self._proc
        if proc is None:
            raise PeerError(f"{self.name} is not started")
        limit = timeout if timeout is not None else self.timeout_s + 15.0
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            raise PeerTimeoutError(
                f"{self.name}: still running after {limit:.1f} s\n{self._tails()}"
            ) from None
        return self.result(code)

    def run(self, timeout: float | None = None) -> SippResult:
        return self.start().wait(timeout)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)

    def __enter__(self) -> Self:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _tails(self) -> str:
        return "\n".join(log_tail(p, 30) for p in (self.stdout_path, self.error_path) if p.exists())

    def result(self, returncode: int) -> SippResult:
        stats: dict[str, str] = {}
        if self.stat_path.exists():
            with self.stat_path.open(encoding="utf-8", errors="replace", newline="") as fh:
                rows = list(csv.reader(fh, delimiter=";"))
            if len(rows) >= 2:
                stats = dict(zip(rows[0], rows[-1], strict=False))

        def text(path: Path) -> str:
            return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

        return SippResult(
            returncode=returncode,
            successful=_int(stats, "SuccessfulCall(C)"),
            failed=_int(stats, "FailedCall(C)"),
            created=_int(stats, "OutgoingCall(C)") + _int(stats, "IncomingCall(C)"),
            retransmissions=_int(stats, "Retransmissions(C)"),
            stats=stats,
            errors=text(self.error_path),
            screen=text(self.screen_path) or text(self.stdout_path),
            run_dir=self.dir,
        )
