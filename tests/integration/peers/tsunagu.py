"""Tsunagu itself as a subprocess, the way an operator runs it.

:class:`TsunaguServer` writes a YAML configuration (the demo's agents 1001-1003 with
passwords ``demo-1001``... unless told otherwise), runs
``python -m tsunagu serve --config FILE --bind 127.0.0.1 --sip-port N --http-port M
--data-dir DIR`` and waits for the JSON log line whose ``msg`` is ``"tsunagu ready"``,
which the server writes once SIP over UDP and TCP is listening. Its stderr (one JSON
object per line) is kept in a file per run and parsed by :meth:`logs`.

Running the real entry point rather than an in-process server keeps tests honest about
start-up, signal handling and what a restart or a SIGKILL leaves on disk.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from tests.integration.peers import (
    LOOPBACK,
    PeerError,
    PeerTimeoutError,
    free_port,
    kill_group,
    log_tail,
    stop_process,
)

READY_MSG = "tsunagu ready"
LogLine = dict[str, Any]


@dataclass(frozen=True)
class Agent:
    """An agent of the test configuration and the SIP credentials of their phone."""

    id: str
    name: str
    password: str


DEMO_AGENTS = (
    Agent("1001", "Aoki", "demo-1001"),
    Agent("1002", "Baba", "demo-1002"),
    Agent("1003", "Chiba", "demo-1003"),
)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``; nested mappings merge, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out


#: The admin API key every test server accepts (``Authorization: Bearer ...``).
TEST_API_KEY = "test-admin-key-0123456789"


class TsunaguServer:
    """One Tsunagu process on 127.0.0.1 with its own ports, config file and data directory.

    ``config`` is merged over the generated configuration (e.g.
    ``{"security": {"ban": {"enabled": False}}}``); ports and paths are always the
    harness's own. Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        agents: Sequence[Agent] = DEMO_AGENTS,
        config: Mapping[str, Any] | None = None,
        sip_port: int | None = None,
        http_port: int | None = None,
        log_level: str = "DEBUG",
        python: str = sys.executable,
        extra_args: Sequence[str] = (),
        name: str = "tsunagu",
    ) -> None:
        self.name = name
        self.dir = workdir / name
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "tsunagu.yaml"
        self.agents = tuple(agents)
        self.overrides = dict(config or {})
        self.sip_port = sip_port or free_port()
        self.http_port = http_port or free_port()
        self.log_level = log_level
        self.python = python
        self.extra_args = list(extra_args)
        self.runs = 0
        self.log_path = self.dir / "stderr-0.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------- addresses

    @property
    def registrar(self) -> str:
        """``host:port`` for phones' registrar settings."""
        return f"{LOOPBACK}:{self.sip_port}"

    def sip_uri(self, user: str, transport: str = "udp") -> str:
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"sip:{user}@{LOOPBACK}:{self.sip_port}{suffix}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def api(self, path: str, method: str = "GET", body: object = None) -> Any:
        """Call the REST API as the test admin; returns the decoded JSON."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.http_url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {TEST_API_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)

    def agent(self, agent_id: str) -> Agent:
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        raise KeyError(agent_id)

    # ---------------------------------------------------------------------- config

    def config_data(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "server": {
                "bind": LOOPBACK,
                "sip_port": self.sip_port,
                "http_port": self.http_port,
                "data_dir": str(self.data_dir),
                "domain": LOOPBACK,
            },
            "security": {"auth": {"realm": "tsunagu-test"}},
            "api": {"keys": [{"name": "test-admin", "token": TEST_API_KEY, "role": "admin"}]},
            "logging": {"level": self.log_level, "format": "json"},
            "agents": [
                {"id": a.id, "name": a.name, "sip_password": a.password} for a in self.agents
            ],
        }
        return deep_merge(base, self.overrides)

    def write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.config_data(), sort_keys=False, allow_unicode=True)
        self.config_path.write_text(text, encoding="utf-8")
        return self.config_path

    # ------------------------------------------------------------------- lifecycle

    def command_line(self) -> list[str]:
        return [
            self.python,
            "-m",
            "tsunagu",
            "serve",
            "--config",
            str(self.config_path),
            "--bind",
            LOOPBACK,
            "--sip-port",
            str(self.sip_port),
            "--http-port",
            str(self.http_port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> Self:
        """Start and wait for ``tsunagu ready``; an early exit or a timeout raises."""
        if self.running:
            raise PeerError(f"{self.name} already running")
        self.write_config()
        self.runs += 1
        self.log_path = self.dir / f"stderr-{self.runs}.log"
        with (
            self.log_path.open("wb") as err,
            (self.dir / f"stdout-{self.runs}.log").open("wb") as out,
        ):
            self._proc = subprocess.Popen(
                self.command_line(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.dir,
                start_new_session=True,
            )
        try:
            self.wait_log(lambda line: line.get("msg") == READY_MSG, timeout, what=READY_MSG)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace_s`` for a clean exit, then SIGKILL; exit status."""
        if self._proc is None:
            return None
        return stop_process(self._proc, grace_s)

    def kill9(self) -> None:
        """SIGKILL the server (and anything it spawned): a crash, no clean-up at all."""
        if self._proc is not None:
            kill_group(self._proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)

    def restart(self, timeout: float = 30.0) -> Self:
        """Stop cleanly and start again on the same ports and data directory."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> Self:
        return self.start() if not self.running else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    # ------------------------------------------------------------------------ logs

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def logs(self, run: int | None = None) -> list[LogLine]:
        """Parsed JSON log lines of this run (or of run number ``run``); other lines skipped."""
        path = self.log_path if run is None else self.dir / f"stderr-{run}.log"
        out: list[LogLine] = []
        with contextlib.suppress(FileNotFoundError):
            for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
                line = raw.strip()
                if not line.startswith("{"):
                    continue
                with contextlib.suppress(ValueError):
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        out.append(obj)
        return out

    def log_mark(self) -> int:
        """How many JSON lines this run has logged so far, for ``wait_log(since=...)``."""
        return len(self.logs())

    def wait_log(
        self,
        predicate: Callable[[LogLine], bool],
        timeout: float = 10.0,
        *,
        what: str = "matching log line",
        since: int = 0,
    ) -> LogLine:
        """Poll this run's log until a line satisfies ``predicate``; return it.

        ``since`` (from :meth:`log_mark`) skips lines written before the mark.
        """
        deadline = time.monotonic() + timeout
        while True:
            for line in self.logs()[since:]:
                if predicate(line):
                    return line
            code = self.returncode()
            if code is not None:
                raise PeerError(
                    f"{self.name} exited with status {code} before {what!r}\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise PeerTimeoutError(
                    f"{self.name}: no {what!r} within {timeout:.1f} s\n{self.log_tail()}"
                )
            time.sleep(0.05)
