"""The in-process media engine: RTP port pairs, the shared clock, prompt and TTS caches.

:class:`LocalMediaEngine` satisfies :class:`~tsunagu.media.interface.MediaEngine`. It owns
what all legs share: the 20 ms :class:`~tsunagu.media.clock.MediaClock`, the
:class:`~tsunagu.media.prompts.PromptCache`, the :class:`~tsunagu.media.tts.TextToSpeech`
renderer and the :class:`PortAllocator`.

Port allocation (:class:`PortAllocator`, sans-IO): RTP on an even port, RTCP on the next
odd one (RFC 3550 §11). Freed pairs go to the *back* of the free list, so a port is
reused only after every other pair has been, which keeps late packets of a call that just
ended from landing in a new one. A pair another program holds is skipped (its bind fails)
and retried later; the engine runs out only when every pair in the range is busy.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from tsunagu.media.clock import MediaClock
from tsunagu.media.leg import LocalMediaLeg
from tsunagu.media.prompts import PromptCache
from tsunagu.media.recorder import Recorder
from tsunagu.media.rtp import MediaLocalError
from tsunagu.media.sdp import PCMA, PCMU, Codec
from tsunagu.media.session import DEFAULT_RELATCH_AFTER_S, RTCP_MIN_INTERVAL_S, RtpSession
from tsunagu.media.tts import OpenJTalk, TextToSpeech

__all__ = ["LocalMediaEngine", "MediaConfig", "PortAllocator"]

logger = logging.getLogger(__name__)

_RECORDING_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Settings of the in-process engine (a ``media:`` settings section maps onto this).

    ``advertised_address`` is what SDP ``c=`` lines say (defaults to ``bind_address``,
    which must then not be a wildcard). Directories default to ``<data_dir>/prompts``,
    ``<data_dir>/recordings`` and ``<data_dir>/tts``.
    """

    bind_address: str = "127.0.0.1"
    advertised_address: str | None = None
    port_min: int = 16384
    port_max: int = 32767
    data_dir: Path = Path("./var")
    prompt_dir: Path | None = None
    recordings_dir: Path | None = None
    tts_cache_dir: Path | None = None
    codecs: tuple[Codec, ...] = (PCMU, PCMA)
    relatch_after_s: float = DEFAULT_RELATCH_AFTER_S
    #: RFC 3550 §6.2 recommends 5 s; tests shorten it to see reports quickly.
    rtcp_min_interval_s: float = RTCP_MIN_INTERVAL_S
    prompt_cache_bytes: int = 64 * 1024 * 1024
    tts_enabled: bool = True
    tts_timeout_s: float = 20.0
    open_jtalk_voice: Path | None = None
    recording_header_interval_s: float = 1.0
    recording_flush_interval_s: float = 0.2
    cname_domain: str = field(default="tsunagu")

    def __post_init__(self) -> None:
        if not 1024 <= self.port_min < self.port_max <= 65535:
            raise MediaLocalError(f"RTP port range {self.port_min}-{self.port_max} is invalid")
        if self.advertised_address is None and self.bind_address in ("0.0.0.0", "::"):  # noqa: S104
            raise MediaLocalError("set media advertised_address when binding to a wildcard")
        for codec in self.codecs:
            if codec.name.upper() not in ("PCMU", "PCMA"):
                raise MediaLocalError(f"codec {codec.name} is not supported (PCMU, PCMA only)")


class PortAllocator:
    """Even RTP ports in ``[low, high]`` (RTCP on port + 1), least recently used first."""

    def __init__(self, low: int, high: int) -> None:
        first = low + (low & 1)
        self._free: deque[int] = deque(range(first, high, 2))  # port + 1 must be <= high
        self._used: set[int] = set()
        self.capacity = len(self._free)

    def acquire(self) -> int:
        if not self._free:
            raise MediaLocalError(f"all {self.capacity} RTP port pairs are in use")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self._used:
            self._used.remove(port)
            self._free.append(port)

    @property
    def in_use(self) -> int:
        return len(self._used)

    @property
    def free(self) -> int:
        return len(self._free)


def _bind_pair(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for offset in (0, 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setblocking(False)
            sock.bind((address, port + offset))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets[0], sockets[1]


class LocalMediaEngine:
    """The in-process media engine; see the module docstring."""

    def __init__(self, config: MediaConfig | None = None) -> None:
        self.config = config = config or MediaConfig()
        self.advertised_address = config.advertised_address or config.bind_address
        self.clock = MediaClock()
        self.ports = PortAllocator(config.port_min, config.port_max)
        self.prompts = PromptCache(config.prompt_cache_bytes)
        data = config.data_dir
        self.recordings_dir = config.recordings_dir or data / "recordings"
        self.tts: TextToSpeech | None = None
        if config.tts_enabled:
            self.tts = TextToSpeech(
                config.tts_cache_dir or data / "tts",
                open_jtalk=OpenJTalk.discover(data, config.open_jtalk_voice),
                timeout_s=config.tts_timeout_s,
            )
        self._legs: dict[tuple[str, str], LocalMediaLeg] = {}
        self._recorders: list[Recorder] = []
        self.closed = False

    @property
    def legs(self) -> list[LocalMediaLeg]:
        return list(self._legs.values())

    async def open_leg(self, interaction_id: str, leg_id: str) -> LocalMediaLeg:
        if self.closed:
            raise MediaLocalError("the media engine is closed")
        key = (interaction_id, leg_id)
        if key in self._legs:
            raise MediaLocalError(f"leg {leg_id} of {interaction_id} is already open")
        tried = 0
        limit = self.ports.free
        while True:
            port = self.ports.acquire()
            try:
                rtp, rtcp = _bind_pair(self.config.bind_address, port)
            except OSError as exc:
                self.ports.release(port)
                tried += 1
                logger.debug("RTP port pair %d/%d busy: %s", port, port + 1, exc)
                if tried >= limit:
                    raise MediaLocalError("no RTP port pair could be bound") from exc
                continue
            break
        session = RtpSession(
            rtp,
            rtcp,
            cname=f"{leg_id}.{interaction_id}@{self.config.cname_domain}",
            relatch_after_s=self.config.relatch_after_s,
            rtcp_min_interval_s=self.config.rtcp_min_interval_s,
        )
        try:
            await session.start()
        except BaseException:
            session.close()
            self.ports.release(port)
            raise
        leg = LocalMediaLeg(self, interaction_id, leg_id, session, self.clock)
        self._legs[key] = leg
        return leg

    def _forget(self, leg: LocalMediaLeg) -> None:
        """Called by a leg when it closes: its ports become reusable."""
        if self._legs.get((leg.interaction_id, leg.leg_id)) is leg:
            del self._legs[(leg.interaction_id, leg.leg_id)]
        self.ports.release(leg.local_port)

    def recording_path(self, name: str) -> Path:
        """``<recordings_dir>/<name>.wav``; the name must be a plain file name."""
        if not _RECORDING_NAME.fullmatch(name) or ".." in name:
            raise MediaLocalError(f"recording name {name!r} must be letters, digits, . _ -")
        return self.recordings_dir / f"{name}.wav"

    async def recorder(self, name: str) -> Recorder:
        recorder = Recorder(
            self.recording_path(name),
            self.clock,
            flush_interval_s=self.config.recording_flush_interval_s,
            header_interval_s=self.config.recording_header_interval_s,
        )
        self._recorders = [r for r in self._recorders if not r.closed]
        self._recorders.append(recorder)
        return recorder

    async def close(self) -> None:
        """Close every leg and finish every recording."""
        if self.closed:
            return
        self.closed = True
        await asyncio.gather(*(leg.close() for leg in list(self._legs.values())))
        for recorder in self._recorders:
            await recorder.stop()
        self.clock.close()
