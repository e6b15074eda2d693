"""Dual-channel call recording: caller LEFT, agent RIGHT, aligned by RTP timing, crash-safe.

Why stereo: transcription and quality review need to know who said what. Each party on
its own channel makes that trivial and keeps cross-talk analysable.

Alignment (:class:`RecordingTimeline`, sans-IO): the recording has one timeline in samples
(8 kHz) starting at the recording's start. The first packet of each source (channel,
SSRC) is placed at its arrival time on that timeline; later packets are placed by their
RTP timestamp relative to that first one (RFC 3550 §5.1: the timestamp is the sampling
instant), so network jitter does not smear the audio. Everything not covered by a packet —
loss, DTX, hold, a party not yet connected — stays silence. When a source's timestamps
disagree with its arrival times by more than ``reanchor_s`` (a sender restart, a large
clock drift over a long call), it is re-anchored at its arrival time.

Samples are kept as μ-law octets until written (a PCMA leg is translated with one
``bytes.translate``), so the per-packet cost on the hot path is a slice assignment; the
decode to 16-bit PCM happens in bulk, a few times a second, on the shared clock.
Audio is written ``latency_s`` behind real time so packets delayed by jitter still land;
anything later than that is dropped (it would be behind what is already on disk).

Pause (card numbers, PCI DSS): from the pause instant, buffered audio past that instant
is wiped, incoming audio is discarded, and silence is written until resume; audio whose
timestamps fall inside the pause but arrives after resume is discarded too.

Crash safety (:class:`WavWriter`): data goes to the file with unbuffered ``os.write``
calls, so everything written survives the process being killed (the kernel holds it).
The RIFF and data sizes in the header are rewritten (``os.pwrite``) every
``header_interval_s`` of audio and on close, so a file cut by ``kill -9`` is a valid WAV
that plays up to at most that interval before the crash; readers that trust the file
length rather than the header get the rest as well.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tsunagu.media import g711
from tsunagu.media.clock import MediaClock, Tick
from tsunagu.media.interface import Channel
from tsunagu.media.rtp import MediaLocalError

__all__ = ["Recorder", "RecordingTimeline", "WavWriter"]

logger = logging.getLogger(__name__)

RATE = 8000
_ULAW_SILENCE_BYTE = bytes((g711.ULAW_SILENCE,))
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_HEADER_SIZE = _HEADER.size  # 44


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class WavWriter:
    """A 16-bit PCM WAV file written as a stream whose header is kept valid as it grows."""

    def __init__(
        self,
        path: Path,
        *,
        channels: int = 2,
        rate: int = RATE,
        header_interval_s: float = 1.0,
    ) -> None:
        self.path = path
        self.channels = channels
        self.rate = rate
        self.block_align = 2 * channels
        self._header_every = max(self.block_align, int(header_interval_s * rate) * self.block_align)
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(path, flags, 0o640)
        self.data_bytes = 0
        self._header_bytes = -1
        self._write_header()

    def _header(self) -> bytes:
        return _HEADER.pack(
            b"RIFF",
            36 + self.data_bytes,
            b"WAVE",
            b"fmt ",
            16,
            1,  # WAVE_FORMAT_PCM
            self.channels,
            self.rate,
            self.rate * self.block_align,
            self.block_align,
            16,
            b"data",
            self.data_bytes,
        )

    def _write_header(self) -> None:
        if self._fd is None:
            return
        os.pwrite(self._fd, self._header(), 0)
        self._header_bytes = self.data_bytes

    def write(self, frames: bytes) -> None:
        """Append interleaved 16-bit little-endian frames; refresh the header when due."""
        fd = self._fd
        if fd is None:
            raise MediaLocalError(f"recording {self.path} is closed")
        if len(frames) % self.block_align:
            raise MediaLocalError("WAV data must be whole frames")
        view = memoryview(frames)
        while view:
            written = os.pwrite(fd, view, _HEADER_SIZE + self.data_bytes)
            self.data_bytes += written
            view = view[written:]
        if self.data_bytes - self._header_bytes >= self._header_every:
            self._write_header()

    @property
    def seconds(self) -> float:
        return self.data_bytes / (self.rate * self.block_align)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self._write_header()
        finally:
            os.close(self._fd)
            self._fd = None


@dataclass(slots=True)
class _Anchor:
    ssrc: int
    timestamp: int
    position: int


class RecordingTimeline:
    """Places 8 kHz μ-law audio of two channels on one timeline and releases PCM frames.

    Times are seconds on one monotonic clock (the loop's), passed in. ``start`` is when the
    recording began: sample 0.
    """

    def __init__(
        self,
        start: float,
        *,
        latency_s: float = 0.3,
        window_s: float = 4.0,
        reanchor_s: float = 0.5,
        rate: int = RATE,
    ) -> None:
        if not 0 < latency_s < window_s or reanchor_s <= 0:
            raise ValueError("need 0 < latency < window and a positive re-anchor threshold")
        self.start = start
        self.rate = rate
        self.latency = round(latency_s * rate)
        self.capacity = round(window_s * rate)
        self.reanchor = round(reanchor_s * rate)
        # _buffers[c][i] is the μ-law octet at timeline position flushed + i.
        self._buffers = [bytearray(_ULAW_SILENCE_BYTE * self.capacity) for _ in Channel]
        self._anchors: list[_Anchor | None] = [None for _ in Channel]
        self.flushed = 0  # positions before this are on disk
        self.high_water = 0  # one past the last position any packet covered
        self.paused = False
        self._floor = 0  # nothing below this position may be written (a pause ended here)
        self.dropped_late = 0
        self.reanchors = 0

    def position(self, now: float) -> int:
        """The timeline position (samples) of the instant ``now``."""
        return round((now - self.start) * self.rate)

    def feed(self, channel: Channel, ssrc: int, timestamp: int, ulaw: bytes, now: float) -> None:
        """Place one packet's μ-law payload (one octet per sample) on ``channel``."""
        if self.paused or not ulaw:
            return
        arrival = self.position(now)
        anchor = self._anchors[channel]
        if anchor is None or anchor.ssrc != ssrc:
            anchor = self._anchors[channel] = _Anchor(ssrc, timestamp, arrival)
            position = arrival
        else:
            position = anchor.position + _signed32(timestamp - anchor.timestamp)
            if abs(position - arrival) > self.reanchor:
                self.reanchors += 1
                anchor.timestamp, anchor.position = timestamp, arrival
                position = arrival
        end = position + len(ulaw)
        first = max(position, self.flushed, self._floor)
        if first >= end:
            self.dropped_late += 1
            return
        if first > position:
            ulaw = ulaw[first - position :]
        index = first - self.flushed
        if index + len(ulaw) > self.capacity:
            # Cannot happen while reanchor < window - latency; never overrun the buffer.
            ulaw = ulaw[: max(0, self.capacity - index)]
        self._buffers[channel][index : index + len(ulaw)] = ulaw
        self.high_water = max(self.high_water, first + len(ulaw))

    def pause(self, now: float) -> None:
        """Silence from ``now`` on: wipe buffered audio at or after this instant."""
        if self.paused:
            return
        self.paused = True
        cut = max(0, self.position(now) - self.flushed)
        for buffer in self._buffers:
            if cut < len(buffer):
                buffer[cut:] = _ULAW_SILENCE_BYTE * (len(buffer) - cut)

    def resume(self, now: float) -> None:
        """Accept audio again, but only audio whose place is at or after ``now``."""
        if not self.paused:
            return
        self.paused = False
        self._floor = max(self._floor, self.position(now))

    def take(self, now: float, *, final: bool = False) -> bytes:
        """Interleaved 16-bit PCM frames that are complete by ``now`` (minus the latency).

        With ``final`` everything up to ``now`` (and any audio already buffered past it)
        is released: the recording is being stopped.
        """
        horizon = self.position(now)
        if final:
            horizon = max(horizon, self.high_water)
        else:
            horizon -= self.latency
        count = horizon - self.flushed
        if count <= 0:
            return b""
        in_buffer = min(count, self.capacity)
        stereo = np.empty(2 * count, dtype="<i2")
        for channel, buffer in enumerate(self._buffers):
            codes = bytes(buffer[:in_buffer])
            del buffer[:in_buffer]
            buffer.extend(_ULAW_SILENCE_BYTE * in_buffer)
            if count > in_buffer:  # a long stall: the rest was never buffered, so silence
                codes += _ULAW_SILENCE_BYTE * (count - in_buffer)
            stereo[channel::2] = g711.ulaw_decode(codes)
        self.flushed = horizon
        return stereo.tobytes()


class Recorder:
    """A stereo recording on the shared clock (a :class:`~tsunagu.media.interface.Recording`).

    Legs and bridges call :meth:`feed` with each audio packet they see; the clock flushes
    completed audio to disk every ``flush_interval_s``.
    """

    def __init__(
        self,
        path: Path,
        clock: MediaClock,
        *,
        flush_interval_s: float = 0.2,
        header_interval_s: float = 1.0,
        latency_s: float = 0.3,
    ) -> None:
        self._clock = clock
        self._writer = WavWriter(path, header_interval_s=header_interval_s)
        self.timeline = RecordingTimeline(clock.time(), latency_s=latency_s)
        self._flush_every = max(1, round(flush_interval_s / clock.period))
        self._ticks = 0
        clock.subscribe(self)
        logger.info("recording to %s", path)

    @property
    def path(self) -> Path:
        return self._writer.path

    @property
    def paused(self) -> bool:
        return self.timeline.paused

    @property
    def closed(self) -> bool:
        return self._writer.closed

    @property
    def seconds(self) -> float:
        """Audio written to disk so far."""
        return self._writer.seconds

    def feed(
        self,
        channel: Channel,
        ssrc: int,
        timestamp: int,
        payload: bytes,
        *,
        codec: str,
        now: float,
    ) -> None:
        """One packet's G.711 payload (``codec`` "PCMU" or "PCMA") for ``channel``."""
        if self._writer.closed:
            return
        ulaw = g711.transcode_alaw_to_ulaw(payload) if codec == "PCMA" else payload
        self.timeline.feed(channel, ssrc, timestamp, ulaw, now)

    def on_tick(self, tick: Tick) -> None:
        self._ticks += 1
        if self._ticks % self._flush_every == 0:
            self._flush(tick.now)

    def _flush(self, now: float, *, final: bool = False) -> None:
        frames = self.timeline.take(now, final=final)
        if frames:
            try:
                self._writer.write(frames)
            except OSError:
                logger.exception("recording %s: write failed; stopping it", self.path)
                self._close()

    async def pause(self) -> None:
        self.timeline.pause(self._clock.time())

    async def resume(self) -> None:
        self.timeline.resume(self._clock.time())

    def _close(self) -> None:
        self._clock.unsubscribe(self)
        self._writer.close()

    async def stop(self) -> Path:
        if not self._writer.closed:
            self._flush(self._clock.time(), final=True)
            self._close()
            logger.info("recording %s stopped after %.1f s", self.path, self._writer.seconds)
        return self.path
