"""Fixtures for integration tests: free ports, tone files, real peers and Tsunagu.

Every fixture that starts a process also stops it, whatever the test's outcome. A test is
skipped only when a peer program is genuinely not installed, and the skip message says
how to install it; ``make test`` installs them all, so on a prepared machine nothing here
skips.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.peers import free_port
from tests.integration.peers.audio import make_tone_wav
from tests.integration.peers.baresip import BaresipAccount, BaresipUA
from tests.integration.peers.pjsua import PjsuaAgent
from tests.integration.peers.sipp import Sipp
from tests.integration.peers.tsunagu import TsunaguServer

CALLER_HZ = 440.0
AGENT_HZ = 1000.0
#: baresip 1.0 hangs up when its source WAV ends, so tones outlast any test call.
TONE_SECONDS = 90.0

_INSTALL = {
    "baresip": "apt-get install -y --no-install-recommends baresip-core",
    "sipp": "apt-get install -y --no-install-recommends sip-tester",
    "sox": "apt-get install -y --no-install-recommends sox",
    "espeak-ng": "apt-get install -y --no-install-recommends espeak-ng",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration uses real sockets: mark it so ``-m`` can select."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


def require_program(name: str) -> str:
    """The program's path, or skip the test saying how to install it."""
    path = shutil.which(name)
    if path is None:
        hint = _INSTALL.get(name, f"install {name}")
        pytest.skip(f"{name} is not installed; `make test` installs it, or run: {hint}")
    return path


def require_pjsua2() -> None:
    if importlib.util.find_spec("pjsua2") is None:
        pytest.skip("pjsua2 is not installed; run: .venv/bin/pip install pjsua2-python")


@dataclass(frozen=True)
class Tones:
    """The session's tone files: callers send 440 Hz, agents send 1000 Hz."""

    caller: Path
    agent: Path
    caller_hz: float = CALLER_HZ
    agent_hz: float = AGENT_HZ


@pytest.fixture
def free_udp_tcp_port() -> Callable[[], int]:
    """A function returning a fresh port free for both UDP and TCP on 127.0.0.1."""
    return free_port


@pytest.fixture
def peer_dir(tmp_path: Path) -> Path:
    """A directory for peers' configs, logs and recordings (kept by pytest on failure)."""
    path = tmp_path / "peers"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Tones:
    base = tmp_path_factory.mktemp("tones")
    return Tones(
        caller=make_tone_wav(base / "caller-440.wav", CALLER_HZ, TONE_SECONDS),
        agent=make_tone_wav(base / "agent-1000.wav", AGENT_HZ, TONE_SECONDS),
    )


@pytest.fixture(scope="session")
def caller_tone(tones: Tones) -> Path:
    return tones.caller


@pytest.fixture(scope="session")
def agent_tone(tones: Tones) -> Path:
    return tones.agent


@pytest.fixture
def baresip_factory(peer_dir: Path, tones: Tones) -> Iterator[Callable[..., BaresipUA]]:
    """``make(account, tone=None, **kwargs)`` -> a started :class:`BaresipUA`, stopped after.

    ``tone`` defaults to the caller tone (440 Hz).
    """
    require_program("baresip")
    with ExitStack() as stack:

        def make(account: BaresipAccount, tone: Path | None = None, **kwargs: Any) -> BaresipUA:
            ua = BaresipUA(peer_dir, account, tone or tones.caller, **kwargs)
            stack.callback(ua.stop)
            return ua.start()

        yield make


@pytest.fixture
def pjsua_factory(peer_dir: Path) -> Iterator[Callable[..., PjsuaAgent]]:
    """``make(name="pjsua", **kwargs)`` -> a started :class:`PjsuaAgent`, stopped after."""
    require_pjsua2()
    with ExitStack() as stack:

        def make(name: str = "pjsua", **kwargs: Any) -> PjsuaAgent:
            agent = PjsuaAgent(peer_dir, name=name, **kwargs)
            stack.callback(agent.stop)
            return agent.start()

        yield make


@pytest.fixture
def sipp_factory(peer_dir: Path) -> Iterator[Callable[..., Sipp]]:
    """``make(scenario, **kwargs)`` -> an unstarted :class:`Sipp`, stopped after the test."""
    require_program("sipp")
    with ExitStack() as stack:

        def make(scenario: str | Path, **kwargs: Any) -> Sipp:
            sipp = Sipp(peer_dir, scenario, **kwargs)
            stack.callback(sipp.stop)
            return sipp

        yield make


@pytest.fixture
def tsunagu_server(tmp_path: Path) -> Iterator[TsunaguServer]:
    """A started Tsunagu with the demo agents 1001-1003 (passwords ``demo-1001``...)."""
    server = TsunaguServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def tsunagu_factory(tmp_path: Path) -> Iterator[Callable[..., TsunaguServer]]:
    """``make(**kwargs)`` -> a started :class:`TsunaguServer` (custom agents or config)."""
    with ExitStack() as stack:
        count = 0

        def make(**kwargs: Any) -> TsunaguServer:
            nonlocal count
            count += 1
            kwargs.setdefault("name", f"tsunagu-{count}")
            server = TsunaguServer(tmp_path, **kwargs)
            stack.callback(server.stop)
            return server.start()

        yield make
