"""G.711 μ-law (PCMU) and A-law (PCMA) codecs, vectorised with lookup tables.

Every call we answer, play to, record or bridge is G.711 (RFC 3551 §4.5.14, payload types
0 and 8), so these run for every sample the platform touches. Both directions are single
table look-ups built once at import: encoding indexes a 65,536-entry table with the
16-bit sample's bit pattern; decoding indexes a 256-entry table with the code. Bridging a
PCMU caller to a PCMA agent needs neither: :func:`transcode_ulaw_to_alaw` is one
``bytes.translate`` over the payload.

The tables are generated from the segment/quantisation rules of ITU-T G.711 (Tables 1a/1b
and 2a/2b), computed on 14-bit (μ-law) and 13-bit (A-law) magnitudes of the 16-bit input
and including the even-bit inversion of A-law (XOR 0x55) and the full inversion of μ-law.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from tsunagu.media.rtp import MediaLocalError

__all__ = [
    "ALAW_SILENCE",
    "PAYLOAD_TYPE_PCMA",
    "PAYLOAD_TYPE_PCMU",
    "ULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "transcode_alaw_to_ulaw",
    "transcode_ulaw_to_alaw",
    "ulaw_decode",
    "ulaw_encode",
]

PAYLOAD_TYPE_PCMU: Final = 0
PAYLOAD_TYPE_PCMA: Final = 8
ULAW_SILENCE: Final = 0xFF  # the code for linear zero (positive zero)
ALAW_SILENCE: Final = 0xD5  # decodes to +8, the smallest positive step

Int16Array = npt.NDArray[np.int16]

# Segment end points of the 8 chords (segments) of each law, on its own input scale.
_ULAW_SEGMENT_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_BIAS = 0x21  # 33 on the 14-bit scale (0x84 on the 16-bit scale)
_ULAW_CLIP = 8159


def _build_ulaw_encoder() -> npt.NDArray[np.uint8]:
    # Index i is the uint16 bit pattern of a sample; view it as int16 to get the value.
    samples = np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int32)
    value = samples >> 2  # 14-bit magnitude scale
    negative = value < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), _ULAW_CLIP) + _ULAW_BIAS
    segment = np.searchsorted(_ULAW_SEGMENT_END, magnitude, side="left")
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa) ^ mask
    return code.astype(np.uint8)


def _build_ulaw_decoder() -> npt.NDArray[np.int16]:
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((inverted & 0x0F) << 3) + 0x84) << ((inverted & 0x70) >> 4)
    linear = np.where(inverted & 0x80, 0x84 - magnitude, magnitude - 0x84)
    return linear.astype(np.int16)


def _build_alaw_encoder() -> npt.NDArray[np.uint8]:
    samples = np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int32)
    value = samples >> 3  # 13-bit scale
    negative = value < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -value - 1, value)
    segment = np.searchsorted(_ALAW_SEGMENT_END, magnitude, side="left")
    shift = np.where(segment < 2, 1, segment)
    mantissa = (magnitude >> shift) & 0x0F
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | mantissa) ^ mask
    return code.astype(np.uint8)


def _build_alaw_decoder() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    mantissa = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    magnitude = np.where(
        segment == 0,
        mantissa + 8,
        (mantissa + 0x108) << np.maximum(segment - 1, 0),
    )
    linear = np.where(code & 0x80, magnitude, -magnitude)
    return linear.astype(np.int16)


_ULAW_ENCODE = _build_ulaw_encoder()
_ULAW_DECODE = _build_ulaw_decoder()
_ALAW_ENCODE = _build_alaw_encoder()
_ALAW_DECODE = _build_alaw_decoder()
for _table in (_ULAW_ENCODE, _ULAW_DECODE, _ALAW_ENCODE, _ALAW_DECODE):
    _table.flags.writeable = False

# Code-to-code translations for the bridge's fast path. Decoding and re-encoding is exact
# where the two laws share a level and picks the nearest level elsewhere.
_ULAW_TO_ALAW: Final = _ALAW_ENCODE[_ULAW_DECODE.view(np.uint16)].tobytes()
_ALAW_TO_ULAW: Final = _ULAW_ENCODE[_ALAW_DECODE.view(np.uint16)].tobytes()


def _as_int16(samples: npt.ArrayLike) -> Int16Array:
    array = np.asarray(samples)
    if array.dtype == np.int16:
        return array.astype(np.int16, copy=False)
    if np.issubdtype(array.dtype, np.integer):
        # Wider integers are clipped, not wrapped: a wrap turns a loud peak into a click.
        clipped: npt.NDArray[np.integer] = np.clip(array, -32768, 32767)
        return clipped.astype(np.int16)
    raise MediaLocalError(f"G.711 encodes 16-bit integer PCM, got {array.dtype}")


def ulaw_encode(samples: npt.ArrayLike) -> bytes:
    """Encode 16-bit linear PCM to μ-law (PCMU) octets."""
    pcm = np.ascontiguousarray(_as_int16(samples))
    return _ULAW_ENCODE[pcm.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> Int16Array:
    """Decode μ-law (PCMU) octets to 16-bit linear PCM."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: npt.ArrayLike) -> bytes:
    """Encode 16-bit linear PCM to A-law (PCMA) octets."""
    pcm = np.ascontiguousarray(_as_int16(samples))
    return _ALAW_ENCODE[pcm.view(np.uint16)].tobytes()


def alaw_decode(data: bytes) -> Int16Array:
    """Decode A-law (PCMA) octets to 16-bit linear PCM."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def transcode_ulaw_to_alaw(data: bytes) -> bytes:
    """Translate PCMU octets to PCMA octets without going through linear PCM."""
    return data.translate(_ULAW_TO_ALAW)


def transcode_alaw_to_ulaw(data: bytes) -> bytes:
    """Translate PCMA octets to PCMU octets without going through linear PCM."""
    return data.translate(_ALAW_TO_ULAW)


def encode(payload_type: int, samples: npt.ArrayLike) -> bytes:
    """Encode for an RTP static payload type: 0 (PCMU) or 8 (PCMA) (RFC 3551 §6)."""
    if payload_type == PAYLOAD_TYPE_PCMU:
        return ulaw_encode(samples)
    if payload_type == PAYLOAD_TYPE_PCMA:
        return alaw_encode(samples)
    raise MediaLocalError(f"payload type {payload_type} is not G.711")


def decode(payload_type: int, data: bytes) -> Int16Array:
    """Decode a payload of static type 0 (PCMU) or 8 (PCMA) (RFC 3551 §6)."""
    if payload_type == PAYLOAD_TYPE_PCMU:
        return ulaw_decode(data)
    if payload_type == PAYLOAD_TYPE_PCMA:
        return alaw_decode(data)
    raise MediaLocalError(f"payload type {payload_type} is not G.711")
