"""Prompt loading (WAV formats, resampling, cache keyed by mtime) and the player's framing."""

from __future__ import annotations

import asyncio
import os
import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tsunagu.media import g711
from tsunagu.media.interface import PlayEnd
from tsunagu.media.player import Playback, Playout, silence_code
from tsunagu.media.prompts import (
    PromptCache,
    PromptError,
    encode_for_codec,
    read_wav,
    resample,
    to_telephony,
)
from tsunagu.media.sdp import PCMA, PCMU


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> npt.NDArray[np.float64]:
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def dominant(samples: npt.NDArray[np.float64] | npt.NDArray[np.int16], rate: int) -> float:
    x = np.asarray(samples, dtype=np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(power[1:])) + 1])


def write_pcm_wav(
    path: Path, samples: npt.NDArray[np.float64], rate: int, channels: int = 1, width: int = 2
) -> Path:
    data = np.repeat(samples[:, None], channels, axis=1)
    if width == 1:
        raw = np.round(data * 127 + 128).astype(np.uint8).tobytes()
    else:
        raw = np.round(data * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def write_raw_wav(
    path: Path,
    data: bytes,
    *,
    tag: int,
    channels: int,
    rate: int,
    bits: int,
    extensible: bool = False,
) -> Path:
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + bytes(14)
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize(
    ("rate", "channels", "width"),
    [(8000, 1, 2), (16000, 1, 2), (44100, 2, 2), (48000, 1, 2), (22050, 1, 1), (11025, 2, 1)],
)
def test_common_wavs_become_8k_mono_with_the_same_tone(
    tmp_path: Path, rate: int, channels: int, width: int
) -> None:
    path = write_pcm_wav(tmp_path / "p.wav", sine(700.0, 1.0, rate), rate, channels, width)
    pcm = to_telephony(read_wav(path))
    assert pcm.dtype == np.int16
    assert abs(pcm.size - 8000) <= 2
    assert abs(dominant(pcm, 8000) - 700.0) < 5
    level = float(np.sqrt(np.mean((pcm / 32768.0) ** 2)))
    assert 0.3 < level < 0.4  # a 0.5-amplitude sine has RMS 0.354; mixing did not halve it


def test_24_bit_extensible_and_ulaw_wavs(tmp_path: Path) -> None:
    samples = sine(500.0, 0.5, 16000)
    ints = np.round(samples * (2**23 - 1)).astype(np.int32)
    raw24 = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in ints)
    path = write_raw_wav(
        tmp_path / "x.wav", raw24, tag=1, channels=1, rate=16000, bits=24, extensible=True
    )
    assert abs(dominant(to_telephony(read_wav(path)), 8000) - 500) < 5
    ulaw = g711.ulaw_encode(np.round(sine(900.0, 0.5, 8000) * 32767).astype(np.int16))
    path = write_raw_wav(tmp_path / "u.wav", ulaw, tag=7, channels=1, rate=8000, bits=8)
    assert abs(dominant(to_telephony(read_wav(path)), 8000) - 900) < 5


def test_resampling_rejects_what_would_alias(tmp_path: Path) -> None:
    # A 6 kHz tone in a 48 kHz file is above the telephone band: it must not fold to 2 kHz.
    out = resample(sine(6000.0, 1.0, 48000), 48000)
    assert float(np.sqrt(np.mean(out**2))) < 0.01
    kept = resample(sine(1000.0, 1.0, 48000), 48000)
    assert float(np.sqrt(np.mean(kept**2))) > 0.3


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"RIFF\x00\x00\x00\x00WAVE",
        b"not a wav file at all....",
        b"RIFF\x10\x00\x00\x00WAVEfmt \x02\x00\x00\x00",
    ],
)
def test_broken_files_raise_prompt_error(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(blob)
    with pytest.raises(PromptError):
        read_wav(path)


def test_missing_prompt_is_a_prompt_error(tmp_path: Path) -> None:
    with pytest.raises(PromptError):
        PromptCache().load_sync(tmp_path / "nope.wav", PCMU)


def test_cache_converts_once_per_file_version_and_codec(tmp_path: Path) -> None:
    path = write_pcm_wav(tmp_path / "p.wav", sine(440.0, 0.2, 16000), 16000)
    cache = PromptCache()
    first = cache.load_sync(path, PCMU)
    assert cache.load_sync(path, PCMU) is first
    assert cache.conversions == 1
    alaw = cache.load_sync(path, PCMA)
    assert cache.conversions == 2 and alaw != first
    assert alaw == encode_for_codec(to_telephony(read_wav(path)), PCMA)
    # The operator replaces the file: the next call hears the new one.
    write_pcm_wav(path, sine(880.0, 0.3, 16000), 16000)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = cache.load_sync(path, PCMU)
    assert cache.conversions == 3 and len(again) == 2400


def test_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    paths = [
        write_pcm_wav(tmp_path / f"{n}.wav", sine(300.0 + n, 0.5, 8000), 8000) for n in range(3)
    ]
    cache = PromptCache(max_bytes=9000)  # room for two 4000-byte prompts
    cache.load_sync(paths[0], PCMU)
    cache.load_sync(paths[1], PCMU)
    cache.load_sync(paths[0], PCMU)  # 0 is now the most recent
    cache.load_sync(paths[2], PCMU)  # evicts 1
    assert len(cache) == 2 and cache.size_bytes == 8000
    cache.load_sync(paths[0], PCMU)
    assert cache.conversions == 3
    cache.load_sync(paths[1], PCMU)
    assert cache.conversions == 4


async def test_concurrent_loads_share_one_conversion(tmp_path: Path) -> None:
    path = write_pcm_wav(tmp_path / "p.wav", sine(440.0, 2.0, 48000), 48000)
    cache = PromptCache()
    results = await asyncio.gather(*(cache.load(path, PCMU) for _ in range(5)))
    assert cache.conversions == 1
    assert all(r == results[0] for r in results)


# ---------------------------------------------------------------------------- player


def test_frames_run_across_items_and_only_the_end_is_padded() -> None:
    playout = Playout([b"a" * 200, b"b" * 200], frame_bytes=160, silence=0xFF)
    frames = []
    while (frame := playout.next_frame()) is not None:
        frames.append(frame)
    assert [len(f) for f in frames] == [160, 160, 160]
    assert frames[1] == b"a" * 40 + b"b" * 120  # no gap between "caller number" and "3"
    assert frames[2] == b"b" * 80 + b"\xff" * 80
    assert playout.finished and playout.frames == 3


def test_looping_wraps_seamlessly_and_never_ends() -> None:
    playout = Playout([b"xy" * 50], loop=True, frame_bytes=160)
    frames = [playout.next_frame() for _ in range(10)]
    joined = b"".join(f for f in frames if f is not None)
    assert joined == (b"xy" * 50 * 16)[:1600]
    assert not playout.finished


def test_skip_keeps_real_time_and_empty_sequences_end_at_once() -> None:
    playout = Playout([bytes(range(160)) * 5], frame_bytes=160)
    playout.skip(3)
    assert playout.frames == 3
    assert playout.next_frame() == bytes(range(160))
    assert Playout([b"", b""], loop=True).next_frame() is None


def test_silence_code_matches_the_law() -> None:
    assert g711.ulaw_decode(bytes([silence_code(PCMU)]))[0] == 0
    assert abs(int(g711.alaw_decode(bytes([silence_code(PCMA)]))[0])) <= 8


async def test_playback_reports_how_it_ended() -> None:
    sent: list[bytes] = []
    playback = Playback(Playout([b"\x01" * 400], frame_bytes=160), PCMU, barge_in=False)
    assert playback.advance(1, 0, sent.append)
    assert not playback.advance(2, 0, sent.append)
    outcome = await playback.outcome
    assert outcome.end is PlayEnd.COMPLETED and outcome.played_s == pytest.approx(0.06)
    assert len(sent) == 3

    barged = Playback(Playout([b"\x01" * 4000], frame_bytes=160), PCMU, barge_in=True)
    barged.advance(1, 0, sent.append)
    barged.finish(PlayEnd.BARGE_IN, digit="5")
    barged.finish(PlayEnd.STOPPED)  # the first ending wins
    outcome = await barged.outcome
    assert (outcome.end, outcome.digit) == (PlayEnd.BARGE_IN, "5")
