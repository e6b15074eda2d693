"""A tiny RTP peer for media tests: real UDP on loopback, sends tones, keeps what it hears.

It plays the part of a phone, a trunk or an agent: it offers or answers SDP like one,
sends a G.711 tone paced at 20 ms from due times (its own clock, not the engine's), and
stores every datagram it receives with its arrival time so a test can decode what it
heard and judge it by spectrum. Deliberately independent of the code under test: it
builds packets with :mod:`struct` and encodes tones with the G.711 tables only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tsunagu.media import g711
from tsunagu.media.sdp import PCMA, PCMU, Codec, SessionDescription, build_offer

LOOPBACK = "127.0.0.1"
_HEADER = struct.Struct("!BBHII")


@dataclass(slots=True)
class Heard:
    arrival: float
    source: tuple[str, int]
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def tone(
    freq_hz: float, seconds: float, rate: int = 8000, amplitude: float = 0.4
) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, peer: RtpPeer) -> None:
        self.peer = peer

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.peer._received(data, (str(addr[0]), int(addr[1])))


@dataclass
class RtpPeer:
    """One RTP endpoint on an ephemeral loopback port (RTCP ignored)."""

    name: str = "peer"
    ssrc: int = 0x1234ABCD
    heard: list[Heard] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)
    _transport: asyncio.DatagramTransport | None = None
    _rtcp_transport: asyncio.DatagramTransport | None = None
    port: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _seq: int = 1000
    _ts: int = 50_000

    async def start(self) -> RtpPeer:
        loop = asyncio.get_running_loop()
        # An even port with port+1 free, like a real phone (RTCP goes to port + 1).
        for _ in range(50):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1] & ~1
            probe.close()
            try:
                rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rtp.bind((LOOPBACK, port))
                rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rtcp.bind((LOOPBACK, port + 1))
            except OSError:
                rtp.close()
                continue
            break
        else:
            raise RuntimeError("no free even port pair")
        self.port = port
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=rtp)
        rtcp_peer = self

        class _Rtcp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                rtcp_peer.rtcp.append(data)

        self._rtcp_transport, _ = await loop.create_datagram_endpoint(_Rtcp, sock=rtcp)
        return self

    def _received(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        _first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
        self.heard.append(
            Heard(
                asyncio.get_running_loop().time(),
                source,
                second & 0x7F,
                bool(second & 0x80),
                seq,
                ts,
                ssrc,
                data[12:],
            )
        )

    def offer(
        self, codecs: tuple[Codec, ...] = (PCMU, PCMA), telephone_event: int | None = 101
    ) -> SessionDescription:
        return build_offer(LOOPBACK, self.port, codecs, telephone_event)

    def next_sequence(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def advance(self, samples: int) -> int:
        """Move this peer's media clock on by ``samples``; returns the new timestamp."""
        self._ts = (self._ts + samples) & 0xFFFFFFFF
        return self._ts

    def packet(
        self, payload_type: int, payload: bytes, *, marker: bool = False, ts: int | None = None
    ) -> bytes:
        self._seq = (self._seq + 1) & 0xFFFF
        stamp = self._ts if ts is None else ts
        return (
            _HEADER.pack(0x80, payload_type | (0x80 if marker else 0), self._seq, stamp, self.ssrc)
            + payload
        )

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self._transport is not None
        self._transport.sendto(data, to)

    def send_tone(
        self, to: tuple[str, int], freq_hz: float, seconds: float, codec: Codec = PCMU
    ) -> asyncio.Task[None]:
        """Send a tone as 20 ms packets, paced from due times; returns the sending task."""
        pcm = tone(freq_hz, seconds)
        encoded = g711.encode(codec.payload_type, pcm)

        async def run() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for index in range(len(encoded) // 160):
                due = start + index * 0.02
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                payload = encoded[index * 160 : (index + 1) * 160]
                self.send(self.packet(codec.payload_type, payload, marker=index == 0), to)
                self._ts = (self._ts + 160) & 0xFFFFFFFF

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.append(task)
        return task

    def audio(self, payload_type: int | None = None) -> npt.NDArray[np.float64]:
        """Decoded audio heard, in sequence order (packets of other types skipped)."""
        packets = [
            h
            for h in self.heard
            if h.payload_type in (0, 8) and (payload_type is None or h.payload_type == payload_type)
        ]
        chunks = [g711.decode(h.payload_type, h.payload) for h in packets]
        if not chunks:
            return np.zeros(0)
        return np.concatenate(chunks).astype(np.float64) / 32768.0

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
