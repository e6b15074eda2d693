"""Prompt audio: WAV files of any common format, converted once to 8 kHz G.711 and cached.

Operators record prompts with whatever they have: 44.1 kHz stereo from an editor, 16 kHz
mono from a TTS service, 8 kHz μ-law from an old PBX. Everything a call hears is 8 kHz mono
G.711 (RFC 3551 §4.5.14), so each file is read, mixed down, resampled and encoded *once*
and the encoded bytes are kept in memory keyed by ``(path, mtime, size, codec)``: the
thousandth caller to hear "thank you for calling" costs a dictionary look-up, and an
operator who replaces the file is heard on the next call without a restart.

Reading is done with a small RIFF reader rather than :mod:`wave` because :mod:`wave`
refuses WAVE_FORMAT_EXTENSIBLE (what sox writes for 24-bit or multichannel files) and the
G.711 format tags (6 = A-law, 7 = μ-law) that telephony prompts often use.

Resampling is a windowed-sinc low-pass (cut-off below the 4 kHz Nyquist of the target, so
a 48 kHz recording does not alias into the telephone band) followed by linear
interpolation at the target instants: O(n), good enough for speech and music on hold,
and free of any dependency beyond numpy.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tsunagu.media import g711
from tsunagu.media.rtp import MediaLocalError
from tsunagu.media.sdp import Codec

__all__ = [
    "TELEPHONY_RATE",
    "PromptCache",
    "PromptError",
    "WavAudio",
    "encode_for_codec",
    "read_wav",
    "resample",
    "to_telephony",
    "write_wav_mono",
]

logger = logging.getLogger(__name__)

TELEPHONY_RATE = 8000
_PCM = 1
_FLOAT = 3
_ALAW = 6
_ULAW = 7
_EXTENSIBLE = 0xFFFE
#: Low-pass cut-off as a fraction of the target rate: 3.6 kHz of the 4 kHz band.
_CUTOFF = 0.45

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]


class PromptError(MediaLocalError):
    """A prompt cannot be played: missing, unreadable or in a format we do not read.

    A local error: prompts are configuration, so a bad one is the operator's to fix, not
    the caller's fault.
    """


@dataclass(frozen=True, slots=True)
class WavAudio:
    """Decoded WAV content: ``samples`` as float in [-1, 1), shape (frames, channels)."""

    rate: int
    samples: FloatArray

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.rate if self.rate else 0.0


def _decode(data: bytes, tag: int, bits: int, name: str) -> FloatArray:
    if tag == _PCM:
        if bits == 8:  # 8-bit WAV is unsigned with a 128 offset
            return (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
        if bits == 16:
            return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
        if bits == 24:
            raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
            value = np.where(value >= 1 << 23, value - (1 << 24), value)
            return value.astype(np.float64) / float(1 << 23)
        if bits == 32:
            return np.frombuffer(data, dtype="<i4").astype(np.float64) / float(1 << 31)
    elif tag == _FLOAT and bits in (32, 64):
        floats = np.frombuffer(data, dtype=f"<f{bits // 8}").astype(np.float64)
        return np.asarray(np.clip(floats, -1.0, 1.0), dtype=np.float64)
    elif tag in (_ALAW, _ULAW) and bits == 8:
        linear = g711.alaw_decode(data) if tag == _ALAW else g711.ulaw_decode(data)
        return linear.astype(np.float64) / 32768.0
    raise PromptError(f"{name}: WAV format tag {tag:#x} with {bits}-bit samples is not supported")


def read_wav(path: Path | str) -> WavAudio:
    """Read a RIFF/WAVE file: PCM 8/16/24/32-bit, float, A-law or μ-law, any rate/channels.

    A data chunk whose size field is 0 or runs past the end of the file (a recording cut
    short) is read to the end of the file.
    """
    name = str(path)
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise PromptError(f"{name}: cannot read prompt: {exc.strerror or exc}") from exc
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise PromptError(f"{name}: not a RIFF/WAVE file")
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    data: bytes | None = None
    while offset + 8 <= len(blob):
        chunk = blob[offset : offset + 4]
        (size,) = struct.unpack_from("<I", blob, offset + 4)
        start = offset + 8
        if chunk == b"fmt ":
            if size < 16 or start + 16 > len(blob):
                raise PromptError(f"{name}: fmt chunk is truncated")
            tag, channels, rate = struct.unpack_from("<HHI", blob, start)
            (bits,) = struct.unpack_from("<H", blob, start + 14)
            if tag == _EXTENSIBLE and size >= 40 and start + 26 <= len(blob):
                (tag,) = struct.unpack_from("<H", blob, start + 24)  # sub-format GUID head
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            end = start + size
            if size == 0 or end > len(blob):
                end = len(blob)
            data = blob[start:end]
            break
        offset = start + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None or data is None:
        raise PromptError(f"{name}: missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or rate < 1 or bits < 1:
        raise PromptError(f"{name}: invalid format ({channels} channels, {rate} Hz, {bits} bits)")
    frame = channels * ((bits + 7) // 8)
    data = data[: len(data) - len(data) % frame]
    samples = _decode(data, tag, bits, name)
    return WavAudio(rate, samples.reshape(-1, channels))


def _lowpass_kernel(cutoff: float, taps: int) -> FloatArray:
    """Windowed-sinc FIR with ``cutoff`` in cycles per sample (Blackman window)."""
    n = np.arange(taps) - (taps - 1) / 2
    kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.blackman(taps)
    result: FloatArray = kernel / kernel.sum()
    return result


def resample(samples: FloatArray, rate: int, target: int = TELEPHONY_RATE) -> FloatArray:
    """Resample mono ``samples`` from ``rate`` to ``target`` Hz (band-limited when reducing)."""
    if rate == target or samples.size == 0:
        return samples.astype(np.float64, copy=False)
    ratio = rate / target
    if ratio > 1:
        # Filter at the *source* rate below the target's Nyquist frequency, then pick.
        taps = int(16 * ratio) | 1
        kernel = _lowpass_kernel(_CUTOFF / ratio, taps)
        samples = np.convolve(samples, kernel, mode="same")
    count = int(samples.size / ratio)
    positions = np.arange(count) * ratio
    result: FloatArray = np.interp(positions, np.arange(samples.size), samples)
    return result


def to_telephony(audio: WavAudio) -> Int16Array:
    """Mix down to mono and resample to 8 kHz 16-bit linear PCM."""
    mono = audio.samples.mean(axis=1) if audio.channels > 1 else audio.samples[:, 0]
    resampled = resample(mono, audio.rate, TELEPHONY_RATE)
    return np.clip(np.round(resampled * 32768.0), -32768, 32767).astype(np.int16)


def encode_for_codec(pcm: Int16Array, codec: Codec) -> bytes:
    """Encode 8 kHz linear PCM in the leg's G.711 law (by name: payload types are dynamic)."""
    name = codec.name.upper()
    if name == "PCMU":
        return g711.ulaw_encode(pcm)
    if name == "PCMA":
        return g711.alaw_encode(pcm)
    raise PromptError(f"cannot play prompts in {codec.name}: only PCMU and PCMA")


def write_wav_mono(path: Path, pcm: Int16Array, rate: int = TELEPHONY_RATE) -> None:
    """Write 16-bit mono PCM as a plain WAV file (used for TTS output)."""
    data = pcm.astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        len(data),
    )
    path.write_bytes(header + data)


_Key = tuple[str, int, int, str]


class PromptCache:
    """Encoded prompts in memory, keyed by ``(path, mtime_ns, size, codec)``, LRU by bytes.

    Concurrent requests for the same prompt share one conversion. Conversion runs in a
    worker thread (:func:`asyncio.to_thread`) because a long music-on-hold file takes
    long enough to resample that it would stall every other call's audio.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[_Key, bytes] = OrderedDict()
        self._size = 0
        self._pending: dict[_Key, asyncio.Future[bytes]] = {}
        self.conversions = 0  # how many files were actually converted (for tests)

    @staticmethod
    def _key(path: Path, codec: Codec) -> _Key:
        try:
            stat = path.stat()
        except OSError as exc:
            raise PromptError(f"{path}: cannot read prompt: {exc.strerror or exc}") from exc
        return (str(path.resolve()), stat.st_mtime_ns, stat.st_size, codec.name.upper())

    def _convert(self, path: Path, codec: Codec) -> bytes:
        encoded = encode_for_codec(to_telephony(read_wav(path)), codec)
        self.conversions += 1
        logger.debug("converted prompt %s for %s (%d bytes)", path, codec.name, len(encoded))
        return encoded

    def _store(self, key: _Key, encoded: bytes) -> None:
        if key in self._entries:
            return
        self._entries[key] = encoded
        self._size += len(encoded)
        while self._size > self.max_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)

    def _lookup(self, key: _Key) -> bytes | None:
        encoded = self._entries.get(key)
        if encoded is not None:
            self._entries.move_to_end(key)
        return encoded

    def load_sync(self, path: Path, codec: Codec) -> bytes:
        """The encoded prompt, converting in this thread if needed (tests, tools)."""
        key = self._key(path, codec)
        encoded = self._lookup(key)
        if encoded is None:
            encoded = self._convert(path, codec)
            self._store(key, encoded)
        return encoded

    async def load(self, path: Path, codec: Codec) -> bytes:
        """The encoded prompt; converts once in a worker thread, shared by concurrent callers."""
        key = self._key(path, codec)
        encoded = self._lookup(key)
        if encoded is not None:
            return encoded
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            encoded = await asyncio.to_thread(self._convert, path, codec)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            self._pending.pop(key, None)
        self._store(key, encoded)
        future.set_result(encoded)
        return encoded

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._size
