"""Audio checks for real-peer tests: tone files in, recordings out, judged by FFT.

Why tones: an honest media test must show that *each* side heard the *other* side, not
silence, not itself and not a mix. Giving every party a distinct sine (caller 440 Hz, agent
1000 Hz) turns "did audio flow the right way?" into "is the dominant frequency of this
recording the other party's tone?", which a spectrum answers without any timing
assumption. G.711 (RFC 3551 §4.5.14) keeps a pure tone's frequency exactly, so a wrong
answer here is a routing bug, never a codec artefact.

WAV files are read with a small RIFF reader rather than :mod:`wave` because recordings
are often inspected while the writer still has them open (header sizes still 0 or
0xFFFFFFFF) and because sox may write WAVE_FORMAT_EXTENSIBLE headers.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE


class WavFormatError(ValueError):
    """The file is not a WAV file this reader understands."""


def make_tone_wav(
    path: Path | str,
    freq_hz: float,
    seconds: float,
    rate: int = 8000,
    amplitude: float = 0.5,
) -> Path:
    """Write a mono 16-bit PCM sine of ``freq_hz`` lasting ``seconds``.

    ``amplitude`` is relative to full scale; 0.5 (-6 dBFS) leaves head-room so a peer that
    mixes two sources cannot clip. Use at least 60 s for baresip's aufile source: baresip
    1.0 ends the call when its WAV file runs out.
    """
    out = Path(path)
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    samples = np.round(amplitude * 32767.0 * np.sin(2.0 * np.pi * freq_hz * t)).astype("<i2")
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out


def make_speech_wav(path: Path | str, text: str, rate: int = 8000, voice: str = "en") -> Path:
    """Synthesise ``text`` with espeak-ng and resample to mono 16-bit ``rate`` Hz (sox)."""
    out = Path(path)
    espeak = shutil.which("espeak-ng")
    sox = shutil.which("sox")
    if espeak is None or sox is None:
        raise FileNotFoundError("espeak-ng and sox are needed: apt-get install espeak-ng sox")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-v", voice, "-w", str(raw), text], check=True, timeout=60)
        subprocess.run(
            [sox, str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)],
            check=True,
            timeout=60,
        )
    return out


def read_wav(path: Path | str) -> tuple[int, FloatArray]:
    """Return ``(rate, channels)`` where ``channels`` has shape (n_channels, n_frames).

    Samples are floats in [-1, 1). Integer PCM of 8/16/24/32 bits and 32/64-bit float are
    accepted, plain or WAVE_FORMAT_EXTENSIBLE. A data chunk whose declared size is 0, or
    larger than the file, is read to the end of the file (a recording still being written).
    """
    blob = Path(path).read_bytes()
    if len(blob) < 12 or blob[:4] not in (b"RIFF", b"RF64") or blob[8:12] != b"WAVE":
        raise WavFormatError(f"{path}: not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    data: bytes | None = None
    while pos + 8 <= len(blob):
        cid = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body_start = pos + 8
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack_from("<HHI", blob, body_start)
            (bits,) = struct.unpack_from("<H", blob, body_start + 14)
            if tag == _EXTENSIBLE and size >= 40:
                (tag,) = struct.unpack_from("<H", blob, body_start + 24)
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            end = body_start + size
            if size == 0 or end > len(blob):
                end = len(blob)
            data = blob[body_start:end]
            break
        pos = body_start + size + (size & 1)
    if fmt is None or data is None:
        raise WavFormatError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1:
        raise WavFormatError(f"{path}: {channels} channels")
    frame = channels * bits // 8
    data = data[: len(data) - len(data) % frame] if frame else b""
    samples = _decode(data, tag, bits, str(path))
    return rate, samples.reshape(-1, channels).T.copy()


def _decode(data: bytes, tag: int, bits: int, name: str) -> FloatArray:
    if tag == _FLOAT and bits in (32, 64):
        return np.frombuffer(data, dtype=f"<f{bits // 8}").astype(np.float64)
    if tag != _PCM:
        raise WavFormatError(f"{name}: unsupported WAV format tag {tag:#x}")
    if bits == 8:
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
    raise WavFormatError(f"{name}: unsupported PCM sample size {bits} bits")


def wav_duration(path: Path | str) -> float:
    """Seconds of audio in ``path`` so far (0.0 while the file is missing or headerless)."""
    try:
        rate, channels = read_wav(path)
    except (OSError, WavFormatError, struct.error):
        return 0.0
    return channels.shape[1] / rate if rate else 0.0


def voiced_seconds(path: Path | str, threshold_dbfs: float = -40.0) -> float:
    """Seconds of ``path`` (in 20 ms windows) louder than ``threshold_dbfs``; 0.0 if unreadable."""
    try:
        rate, channels = read_wav(path)
    except (OSError, WavFormatError, struct.error):
        return 0.0
    if not rate:
        return 0.0
    mono = channels.mean(axis=0)
    win = max(1, rate // 50)
    n = mono.size // win
    if n == 0:
        return 0.0
    levels = np.sqrt(np.mean(np.square(mono[: n * win].reshape(n, win)), axis=1))
    return float(np.count_nonzero(levels > 10.0 ** (threshold_dbfs / 20.0))) * win / rate


def wait_for_audio(
    source: Path | Callable[[], Path | None],
    seconds: float,
    timeout: float = 15.0,
    threshold_dbfs: float = -40.0,
) -> Path:
    """Wait until a recording holds ``seconds`` of sound (not silence); return its path.

    ``source`` is the file, or a function returning it once it exists (e.g.
    ``lambda: next(iter(ua.heard()), None)`` for a baresip dump). This replaces "sleep a
    second and hope": it waits for the audio itself, and a timeout says how much came.
    Silence does not count, because a stream can run for seconds carrying nothing (e.g.
    while DTMF events replace the audio, RFC 4733 §2.5.1.2).
    """
    deadline = time.monotonic() + timeout
    while True:
        path = source() if callable(source) else source
        got = voiced_seconds(path, threshold_dbfs) if path is not None else 0.0
        if path is not None and got >= seconds:
            return path
        if time.monotonic() > deadline:
            total = wav_duration(path) if path is not None else 0.0
            raise TimeoutError(
                f"recording {path or '(not created)'} holds {got:.2f} s of sound above "
                f"{threshold_dbfs} dBFS ({total:.2f} s in all), expected {seconds:.2f} s "
                f"within {timeout:.1f} s"
            )
        time.sleep(0.05)


def read_mono(path: Path | str) -> tuple[int, FloatArray]:
    """Like :func:`read_wav` but averaged down to one channel."""
    rate, channels = read_wav(path)
    return rate, channels.mean(axis=0)


def rms(samples: FloatArray) -> float:
    """Root-mean-square level; 0.0 for an empty signal."""
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples))))


def level_dbfs(samples: FloatArray) -> float:
    """RMS level in dB relative to full scale; -inf for digital silence."""
    value = rms(samples)
    return float("-inf") if value <= 0.0 else 20.0 * float(np.log10(value))


def _spectrum(samples: FloatArray, rate: int) -> tuple[FloatArray, FloatArray]:
    x = samples - np.mean(samples)
    power: FloatArray = np.square(np.abs(np.fft.rfft(x * np.hanning(x.size)))).astype(np.float64)
    freqs: FloatArray = np.fft.rfftfreq(x.size, 1.0 / rate).astype(np.float64)
    return freqs, power


def dominant_frequency(samples: FloatArray, rate: int) -> float:
    """Frequency (Hz) of the strongest spectral peak, refined by parabolic interpolation.

    Raises ``ValueError`` for a signal too short to have a spectrum. Silence returns the
    frequency of whatever noise is strongest, so check :func:`rms` first.
    """
    if samples.size < 16:
        raise ValueError(f"need at least 16 samples for a spectrum, got {samples.size}")
    freqs, power = _spectrum(samples, rate)
    power[0] = 0.0  # DC is never a tone.
    k = int(np.argmax(power))
    if 0 < k < power.size - 1:
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-30)
        denom = a - 2.0 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
        return float(freqs[k] + shift * (freqs[1] - freqs[0]))
    return float(freqs[k])


def band_energy_ratio(
    samples: FloatArray, rate: int, freq_hz: float, width_hz: float = 50.0
) -> float:
    """Share (0..1) of the signal's spectral energy within ``freq_hz ± width_hz``.

    A recording that carries only the far end's tone scores near 1; one that also carries
    the near end's own tone (echo, wrong bridge) scores visibly less.
    """
    freqs, power = _spectrum(samples, rate)
    power[0] = 0.0
    total = float(power.sum())
    if total <= 0.0:
        return 0.0
    band = (freqs >= freq_hz - width_hz) & (freqs <= freq_hz + width_hz)
    return float(power[band].sum()) / total


def active_part(samples: FloatArray, rate: int, threshold_dbfs: float = -45.0) -> FloatArray:
    """The span from the first to the last 20 ms window louder than ``threshold_dbfs``."""
    spans = speech_energy_windows(samples, rate, window_s=0.02, threshold_dbfs=threshold_dbfs)
    if not spans:
        return samples[:0]
    start = int(spans[0][0] * rate)
    end = int(spans[-1][1] * rate)
    return samples[start:end]


def speech_energy_windows(
    samples: FloatArray,
    rate: int,
    window_s: float = 0.05,
    threshold_dbfs: float = -40.0,
    max_gap_s: float = 0.3,
) -> list[tuple[float, float]]:
    """Time spans (seconds, start/end) where the windowed RMS exceeds ``threshold_dbfs``.

    Windows closer than ``max_gap_s`` are merged, so the pauses between words of a prompt
    do not split it. Use it to check that a TTS prompt was heard when the flow says it was
    played, e.g. ``any(s <= 1.0 and e >= 2.0 for s, e in spans)``.
    """
    win = max(1, round(window_s * rate))
    n = samples.size // win
    if n == 0:
        return []
    frames = samples[: n * win].reshape(n, win)
    levels = np.sqrt(np.mean(np.square(frames), axis=1))
    threshold = 10.0 ** (threshold_dbfs / 20.0)
    loud = np.flatnonzero(levels > threshold)
    spans: list[tuple[float, float]] = []
    for idx in loud:
        start = idx * win / rate
        end = (idx + 1) * win / rate
        if spans and start - spans[-1][1] <= max_gap_s:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def energy_between(
    samples: FloatArray,
    rate: int,
    *,
    start_s: float,
    end_s: float,
    threshold_dbfs: float = -40.0,
    window_s: float = 0.05,
) -> float:
    """Fraction (0..1) of windows between ``start_s`` and ``end_s`` louder than the threshold."""
    segment = samples[max(0, int(start_s * rate)) : max(0, int(end_s * rate))]
    win = max(1, round(window_s * rate))
    n = segment.size // win
    if n == 0:
        return 0.0
    frames = segment[: n * win].reshape(n, win)
    levels = np.sqrt(np.mean(np.square(frames), axis=1))
    return float(np.mean(levels > 10.0 ** (threshold_dbfs / 20.0)))


def assert_tone(
    path: Path | str, expected_hz: float, tolerance_hz: float = 15.0, min_dbfs: float = -40.0
) -> None:
    """Fail with a readable message unless ``path`` is mostly a tone at ``expected_hz``.

    Only the non-silent part is analysed, so the silence before media starts or after it
    stops does not matter.
    """
    rate, mono = read_mono(path)
    voiced = active_part(mono, rate, threshold_dbfs=min_dbfs - 10.0)
    if voiced.size < rate // 10:
        raise AssertionError(
            f"{path}: less than 100 ms of audio above {min_dbfs} dBFS "
            f"(whole file {mono.size / rate:.2f} s at {level_dbfs(mono):.1f} dBFS)"
        )
    level = level_dbfs(voiced)
    if level < min_dbfs:
        raise AssertionError(f"{path}: audio level {level:.1f} dBFS is below {min_dbfs} dBFS")
    heard = dominant_frequency(voiced, rate)
    if abs(heard - expected_hz) > tolerance_hz:
        raise AssertionError(
            f"{path}: dominant frequency {heard:.1f} Hz, expected {expected_hz:.1f} Hz "
            f"± {tolerance_hz:.1f} ({voiced.size / rate:.2f} s analysed at {level:.1f} dBFS)"
        )
