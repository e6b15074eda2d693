"""Fixtures for media tests: an engine on real loopback sockets and RTP peers."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.integration.media.peer import RtpPeer
from tests.integration.peers.audio import make_tone_wav
from tsunagu.media.engine import LocalMediaEngine, MediaConfig

EngineFactory = Callable[..., Awaitable[LocalMediaEngine]]


@pytest.fixture
async def make_engine(tmp_path: Path) -> AsyncIterator[EngineFactory]:
    """``await make_engine(**MediaConfig overrides)``; every engine is closed after the test."""
    engines: list[LocalMediaEngine] = []

    async def make(**overrides: object) -> LocalMediaEngine:
        base = random.randrange(20000, 60000, 2)  # the allocator skips pairs in use
        options: dict[str, object] = {
            "data_dir": tmp_path / f"data{len(engines)}",
            "port_min": base,
            "port_max": base + 400,
            "rtcp_min_interval_s": 1.0,
        }
        options.update(overrides)
        engine = LocalMediaEngine(MediaConfig(**options))  # type: ignore[arg-type]
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


@pytest.fixture
async def engine(make_engine: EngineFactory) -> LocalMediaEngine:
    return await make_engine()


@pytest.fixture
async def make_peer() -> AsyncIterator[Callable[..., Awaitable[RtpPeer]]]:
    peers: list[RtpPeer] = []

    async def make(**kwargs: object) -> RtpPeer:
        peer = await RtpPeer(**kwargs).start()  # type: ignore[arg-type]
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        await peer.close()


@pytest.fixture(scope="session")
def tone_1k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 kHz prompt recorded the way operators do: 44.1 kHz (converted by the engine)."""
    return make_tone_wav(tmp_path_factory.mktemp("prompts") / "tone1k.wav", 1000.0, 1.0, rate=44100)
