"""RTP packets as wire types (RFC 3550 §5) and a sender that numbers them (§5.1).

This is the hot path of the media engine: a relayed G.711 call is 100 packets/s in each
direction and a core should carry hundreds of calls, so parsing and serialising use
precompiled :class:`struct.Struct` formats, a slotted dataclass, and no allocation beyond
the packet object and its payload slice.

The media layer's two error families live here, at the bottom of the import graph, so that
:mod:`~tsunagu.media.rtcp`, :mod:`~tsunagu.media.sdp` and :mod:`~tsunagu.media.dtmf` share
them (after h11's ``RemoteProtocolError`` / ``LocalProtocolError`` split):

* :class:`MediaPeerError` — the *peer* sent something we cannot accept. It carries the SIP
  status a signalling layer would answer with (400 for a malformed body, 488 for an
  unacceptable offer) and a reason that names the problem.
* :class:`MediaLocalError` — *we* tried to build something invalid; a bug in Tsunagu.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "RTP_VERSION",
    "MediaError",
    "MediaLocalError",
    "MediaParseError",
    "MediaPeerError",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "RtpSender",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQUENCE_MODULO = 1 << 16
TIMESTAMP_MODULO = 1 << 32

# V(2) P(1) X(1) CC(4) | M(1) PT(7) | sequence(16) | timestamp(32) | SSRC(32) — §5.1.
_HEADER = struct.Struct("!BBHII")
# Header extension: profile-defined 16 bits, then length in 32-bit words (§5.3.1).
_EXTENSION_HEADER = struct.Struct("!HH")
_CSRC = tuple(struct.Struct(f"!{n}I") for n in range(16))


class MediaError(Exception):
    """Base of every error raised by :mod:`tsunagu.media` wire and negotiation code."""


class MediaPeerError(MediaError):
    """The peer sent media or a description we cannot accept (its fault, not ours).

    ``status`` is the SIP status a signalling layer answers with when the problem arrived
    in a SIP body (RFC 3261 §21.4.1 400 Bad Request, §21.4.26 488 Not Acceptable Here).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class MediaParseError(MediaPeerError):
    """Bytes or text from the network are malformed."""


class RtpError(MediaParseError):
    """An RTP packet is truncated or violates RFC 3550 §5.1."""


class MediaLocalError(MediaError):
    """Tsunagu itself tried to build an invalid packet or description (a bug)."""


@dataclass(slots=True)
class RtpExtension:
    """A header extension (RFC 3550 §5.3.1): a 16-bit profile value and opaque data.

    ``data`` must be a whole number of 32-bit words because the wire length counts words.
    """

    profile: int
    data: bytes


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).

    ``padding`` is the number of padding octets (§5.1 P bit) found on parse or appended on
    serialise; ``0`` means no padding. Parsed packets keep it so that ``bytes(parse(x))``
    reproduces ``x`` up to the content of padding octets, which §5.1 leaves undefined.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one datagram; raise :class:`RtpError` if it cannot be RTP (§5.1, A.1)."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet of {size} bytes is shorter than the 12-byte header")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {first >> 6}, expected 2")
        offset = RTP_HEADER_SIZE
        count = first & 0x0F
        csrc: tuple[int, ...] = ()
        if count:
            offset += 4 * count
            if offset > size:
                raise RtpError(f"RTP CSRC count {count} runs past the {size}-byte packet")
            csrc = _CSRC[count].unpack_from(data, RTP_HEADER_SIZE)
        extension = None
        if first & 0x10:
            if offset + 4 > size:
                raise RtpError("RTP extension bit set but no extension header follows")
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            start = offset + 4
            offset = start + 4 * words
            if offset > size:
                raise RtpError(f"RTP extension of {words} words runs past the packet")
            extension = RtpExtension(profile, bytes(data[start:offset]))
        end = size
        padding = 0
        if first & 0x20:
            # §5.1: the last octet counts the padding octets, itself included.
            padding = data[size - 1]
            if padding == 0 or padding > size - offset:
                raise RtpError(f"RTP padding length {padding} is invalid for this packet")
            end = size - padding
        return cls(
            second & 0x7F,
            sequence,
            timestamp,
            ssrc,
            bytes(data[offset:end]),
            bool(second & 0x80),
            csrc,
            extension,
            padding,
        )

    def __bytes__(self) -> bytes:
        payload_type = self.payload_type
        if payload_type & ~0x7F:
            raise MediaLocalError(f"RTP payload type {payload_type} is outside 0..127")
        csrc = self.csrc
        extension = self.extension
        padding = self.padding
        if not csrc and extension is None and not padding:
            try:
                header = _HEADER.pack(
                    0x80,
                    (0x80 | payload_type) if self.marker else payload_type,
                    self.sequence,
                    self.timestamp,
                    self.ssrc,
                )
            except struct.error as exc:
                raise MediaLocalError(f"RTP header field out of range: {exc}") from exc
            return header + self.payload
        return self._serialize_slow()

    def _serialize_slow(self) -> bytes:
        """Serialise a packet with CSRCs, an extension or padding (rare in telephony)."""
        count = len(self.csrc)
        if count > 15:
            raise MediaLocalError(f"RTP packet has {count} CSRCs; at most 15 fit (§5.1)")
        if not 0 <= self.padding <= 255:
            raise MediaLocalError(f"RTP padding {self.padding} is outside 0..255")
        first = 0x80 | count
        if self.extension is not None:
            first |= 0x10
        if self.padding:
            first |= 0x20
        second = (0x80 | self.payload_type) if self.marker else self.payload_type
        try:
            parts = [_HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
            if count:
                parts.append(_CSRC[count].pack(*self.csrc))
            if self.extension is not None:
                data = self.extension.data
                if len(data) % 4:
                    raise MediaLocalError("RTP extension data must be whole 32-bit words")
                parts.append(_EXTENSION_HEADER.pack(self.extension.profile, len(data) // 4))
                parts.append(data)
        except struct.error as exc:
            raise MediaLocalError(f"RTP header field out of range: {exc}") from exc
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def _random_bits(bits: int) -> int:
    return secrets.randbits(bits)


class RtpSender:
    """Numbers outgoing packets of one RTP stream (one SSRC).

    RFC 3550 §5.1: the initial sequence number and timestamp SHOULD be random, to make
    known-plaintext attacks on encryption harder; §8.1: the SSRC is random so two sources
    in a session are unlikely to collide. ``randbits`` is injectable so tests are
    deterministic.

    The timestamp is the media clock, not the wall clock: it advances by the number of
    samples sent (:meth:`audio_frame`) or skipped (:meth:`skip`, e.g. silence or while a
    DTMF event is being sent), so the peer can play out without gaps. For G.711 one
    payload octet is one sample, so a 20 ms frame at 8000 Hz is 160 octets.
    """

    __slots__ = ("_marker_pending", "clock_rate", "payload_type", "sequence", "ssrc", "timestamp")

    def __init__(
        self,
        payload_type: int,
        clock_rate: int = 8000,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        randbits: Callable[[int], int] = _random_bits,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise MediaLocalError(f"RTP payload type {payload_type} is outside 0..127")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ssrc = randbits(32) if ssrc is None else ssrc
        self.sequence = randbits(16) if sequence is None else sequence
        self.timestamp = randbits(32) if timestamp is None else timestamp
        # RFC 3551 §4.1: the marker is set on the first packet of a talkspurt, and the
        # first packet of a stream begins one.
        self._marker_pending = True

    def samples_for(self, milliseconds: int) -> int:
        """Timestamp units in ``milliseconds`` of this stream's clock."""
        return milliseconds * self.clock_rate // 1000

    def start_talkspurt(self) -> None:
        """Mark the next audio frame as the first after silence (RFC 3551 §4.1)."""
        self._marker_pending = True

    def next_sequence(self) -> int:
        """Take the next sequence number (increments by one per packet sent, §5.1)."""
        sequence = self.sequence
        self.sequence = (sequence + 1) & 0xFFFF
        return sequence

    def audio_frame(self, payload: bytes, samples: int | None = None) -> RtpPacket:
        """Packetise one audio frame and advance the clock by its ``samples``.

        ``samples`` defaults to ``len(payload)``, right for G.711 (one octet per sample).
        """
        marker = self._marker_pending
        self._marker_pending = False
        timestamp = self.timestamp
        self.timestamp = (timestamp + (len(payload) if samples is None else samples)) & 0xFFFFFFFF
        return RtpPacket(
            self.payload_type, self.next_sequence(), timestamp, self.ssrc, payload, marker
        )

    def skip(self, samples: int) -> None:
        """Advance the media clock without sending (silence, or time covered by an event)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF

    def packet(
        self, payload_type: int, timestamp: int, payload: bytes, *, marker: bool = False
    ) -> RtpPacket:
        """A packet of another payload type on this stream (e.g. RFC 4733 events).

        It takes the next sequence number but leaves the media clock alone: an event's
        packets all carry the timestamp of the event's start (RFC 4733 §2.3.5).
        """
        return RtpPacket(payload_type, self.next_sequence(), timestamp, self.ssrc, payload, marker)
