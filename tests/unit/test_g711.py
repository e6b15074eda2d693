"""G.711 μ-law / A-law: ITU-T reference values, quantisation bounds, transcoding, a tone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tsunagu.media import g711
from tsunagu.media.rtp import MediaLocalError

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))

Encoder = Callable[[npt.NDArray[np.int16]], bytes]
Decoder = Callable[[bytes], npt.NDArray[np.int16]]
# (encoder, decoder, largest level): μ-law peaks at 32124, A-law at 32256.
LAWS: list[tuple[Encoder, Decoder, int]] = [
    (g711.ulaw_encode, g711.ulaw_decode, 32124),
    (g711.alaw_encode, g711.alaw_decode, 32256),
]


def pcm(*values: int) -> npt.NDArray[np.int16]:
    return np.array(values, dtype=np.int16)


# ---------------------------------------------------------------------------- reference values
# From the G.711 decision/reconstruction tables, scaled to 16-bit linear (×4 for μ-law's
# 14-bit scale, ×8 for A-law's 13-bit scale).


@pytest.mark.parametrize(
    ("code", "linear"),
    [
        (0xFF, 0),  # positive zero
        (0x7F, 0),  # negative zero
        (0xFE, 8),  # first step: 2 on the 14-bit scale
        (0x7E, -8),
        (0xEF, 132),  # first value of chord 1
        (0x80, 32124),  # largest positive
        (0x00, -32124),  # largest negative
    ],
)
def test_ulaw_reference_values(code: int, linear: int) -> None:
    assert g711.ulaw_decode(bytes([code])).tolist() == [linear]


@pytest.mark.parametrize(
    ("code", "linear"),
    [
        (0xD5, 8),  # smallest positive: 1 on the 13-bit scale
        (0x55, -8),
        (0xD4, 24),
        (0xC5, 264),  # first value of chord 1
        (0xAA, 32256),  # largest positive
        (0x2A, -32256),  # largest negative
    ],
)
def test_alaw_reference_values(code: int, linear: int) -> None:
    assert g711.alaw_decode(bytes([code])).tolist() == [linear]


def test_encoder_reference_values() -> None:
    assert g711.ulaw_encode(pcm(0, 32767, -32768, 8, -8)) == bytes([0xFF, 0x80, 0x00, 0xFE, 0x7E])
    assert g711.alaw_encode(pcm(0, 32767, -32768, 8, -8)) == bytes([0xD5, 0xAA, 0x2A, 0xD5, 0x55])
    assert g711.ulaw_encode(pcm(0))[0] == g711.ULAW_SILENCE
    assert g711.alaw_encode(pcm(0))[0] == g711.ALAW_SILENCE


# ---------------------------------------------------------------------------- whole-range laws


@pytest.mark.parametrize(("encode", "decode", "peak"), LAWS)
def test_quantisation_error_is_bounded_and_monotonic(
    encode: Encoder, decode: Decoder, peak: int
) -> None:
    restored = decode(encode(ALL_SAMPLES)).astype(np.int64)
    original = ALL_SAMPLES.astype(np.int64)
    # Four mantissa bits per chord: the error is at most half a step, about |x|/32,
    # plus half the smallest step (8) near zero; beyond the peak level it clips.
    inside = np.abs(original) <= peak
    error = np.abs(restored - original)
    assert np.all(error[inside] <= np.abs(original[inside]) / 32 + 8)
    assert np.all(np.abs(restored) <= peak)
    assert np.all(np.diff(restored) >= 0), "a louder input never decodes quieter"


def test_every_code_survives_decode_then_encode() -> None:
    ulaw = g711.ulaw_encode(g711.ulaw_decode(ALL_CODES))
    # μ-law has two zeros; negative zero re-encodes as positive zero.
    assert ulaw == ALL_CODES.replace(b"\x7f", b"\xff")
    assert g711.alaw_encode(g711.alaw_decode(ALL_CODES)) == ALL_CODES


@given(hnp.arrays(np.int16, st.integers(0, 400)))
def test_round_trip_bound_on_arbitrary_audio(samples: npt.NDArray[np.int16]) -> None:
    for encode, decode, peak in LAWS:
        data = encode(samples)
        assert len(data) == len(samples)
        restored = decode(data).astype(np.int64)
        clipped = np.clip(samples.astype(np.int64), -peak, peak)
        assert np.all(np.abs(restored - clipped) <= np.abs(clipped) / 32 + 8)


# ---------------------------------------------------------------------------- transcoding


def test_transcoding_stays_within_one_quantisation_step() -> None:
    ulaw = g711.ulaw_encode(ALL_SAMPLES)
    alaw = g711.alaw_encode(ALL_SAMPLES)
    via_alaw = g711.alaw_decode(g711.transcode_ulaw_to_alaw(ulaw)).astype(np.int64)
    via_ulaw = g711.ulaw_decode(g711.transcode_alaw_to_ulaw(alaw)).astype(np.int64)
    original = np.clip(ALL_SAMPLES.astype(np.int64), -32124, 32124)
    # Two quantisations in a row: at most twice the single-pass bound.
    assert np.all(np.abs(via_alaw - original) <= 2 * (np.abs(original) / 32 + 8))
    assert np.all(np.abs(via_ulaw - original) <= 2 * (np.abs(original) / 32 + 8))


def test_transcoding_is_a_byte_translation() -> None:
    payload = bytes([0xFF, 0x80, 0x00, 0x7F, 0x12])
    out = g711.transcode_ulaw_to_alaw(payload)
    assert len(out) == len(payload)
    assert out[:3] == bytes([0xD5, 0xAA, 0x2A])  # zero, loudest positive, loudest negative
    # Translating each byte alone gives the same result: no state across samples.
    assert b"".join(g711.transcode_ulaw_to_alaw(bytes([b])) for b in payload) == out


def test_silence_transcodes_to_silence() -> None:
    assert g711.transcode_ulaw_to_alaw(b"\xff" * 160) == b"\xd5" * 160
    assert g711.transcode_alaw_to_ulaw(b"\xd5" * 160) == g711.ulaw_encode(pcm(*[8] * 160))


# ---------------------------------------------------------------------------- a real tone


@pytest.mark.parametrize("payload_type", [0, 8])
def test_1khz_sine_survives(payload_type: int) -> None:
    rate = 8000
    t = np.arange(rate) / rate  # one second
    tone = (12000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    restored = g711.decode(payload_type, g711.encode(payload_type, tone))
    spectrum = np.abs(np.fft.rfft(restored.astype(np.float64)))
    frequencies = np.fft.rfftfreq(len(restored), 1 / rate)
    assert frequencies[np.argmax(spectrum)] == pytest.approx(1000.0)
    noise = restored.astype(np.float64) - tone
    snr_db = 10 * np.log10(np.mean(tone.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr_db > 30  # G.711 gives ~38 dB on a loud tone


# ---------------------------------------------------------------------------- inputs


def test_wider_integers_are_clipped_not_wrapped() -> None:
    wide = np.array([70000, -70000, 100], dtype=np.int32)
    assert g711.ulaw_encode(wide) == g711.ulaw_encode(pcm(32767, -32768, 100))
    assert g711.alaw_encode([1, 2, 3]) == g711.alaw_encode(pcm(1, 2, 3))


def test_non_contiguous_input() -> None:
    stereo = np.arange(20, dtype=np.int16).reshape(10, 2) * 1000
    assert g711.ulaw_encode(stereo[:, 0]) == g711.ulaw_encode(stereo[:, 0].copy())


def test_float_audio_is_refused() -> None:
    with pytest.raises(MediaLocalError):
        g711.ulaw_encode(np.zeros(4))


def test_unknown_payload_type() -> None:
    with pytest.raises(MediaLocalError):
        g711.encode(9, pcm(0))
    with pytest.raises(MediaLocalError):
        g711.decode(18, b"\x00")


def test_decoded_arrays_are_writable_copies() -> None:
    decoded = g711.ulaw_decode(b"\xff\x80")
    decoded[0] = 5  # a consumer may mix into the buffer; the table must not change
    assert g711.ulaw_decode(b"\xff").tolist() == [0]
