"""RTCP packets as wire types (RFC 3550 §6): SR, RR, SDES, BYE, compound packets, RTT.

Why we speak RTCP at all: the loss and jitter a peer reports about *our* stream, and the
round-trip time from its LSR/DLSR fields (§6.4.1), are how the platform tells "the
carrier's network is bad" from "our server is slow" when audio quality drops (REQUIREMENTS
§5, "audio quality from RTCP loss/jitter").

RTCP arrives from the network unauthenticated, so :func:`parse_compound` raises
:class:`RtcpError` — and only that — for any malformed input. Packet types we do not model
(APP, XR, feedback) are kept as :class:`RtcpUnknown` so a relay can forward them intact.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from tsunagu.media.rtp import MediaLocalError, MediaParseError

__all__ = [
    "NTP_UNIX_OFFSET",
    "Goodbye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "RtcpPacketType",
    "RtcpUnknown",
    "SdesChunk",
    "SdesItemType",
    "SenderReport",
    "SourceDescription",
    "compound_report",
    "is_rtcp",
    "ntp_middle",
    "ntp_timestamp",
    "parse_compound",
    "round_trip_time",
    "serialize_compound",
]

# Seconds from the NTP epoch (1900) to the Unix epoch (1970), for §4 timestamps.
NTP_UNIX_OFFSET = 2_208_988_800

_COMMON = struct.Struct("!BBH")  # V P RC/SC | PT | length in words minus one (§6.4.1)
_SSRC = struct.Struct("!I")
_SENDER_INFO = struct.Struct("!IIIIII")  # SSRC, NTP sec, NTP frac, RTP ts, packets, octets
_BLOCK = struct.Struct("!IIIIII")  # SSRC, fraction<<24 | lost, highest, jitter, LSR, DLSR


class RtcpError(MediaParseError):
    """An RTCP packet is truncated or violates RFC 3550 §6."""


class RtcpPacketType(IntEnum):
    """RTCP packet types of RFC 3550 §12.1."""

    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204


class SdesItemType(IntEnum):
    """SDES item types of RFC 3550 §6.5 (0 ends a chunk's item list)."""

    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


@dataclass(slots=True)
class ReportBlock:
    """Reception report about one source (§6.4.1).

    ``fraction_lost`` is in 1/256 units; ``cumulative_lost`` is signed 24-bit;
    ``last_sr`` and ``delay_since_last_sr`` are in 1/65536 s and give the RTT (§6.4.1).
    """

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    last_sr: int = 0
    delay_since_last_sr: int = 0

    @classmethod
    def _parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, loss, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = loss & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, loss >> 24, lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        if not 0 <= self.fraction_lost <= 255:
            raise MediaLocalError(f"fraction lost {self.fraction_lost} is outside 0..255")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise MediaLocalError(f"cumulative lost {self.cumulative_lost} exceeds 24 bits")
        loss = (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF)
        try:
            return _BLOCK.pack(
                self.ssrc,
                loss,
                self.highest_sequence,
                self.jitter,
                self.last_sr,
                self.delay_since_last_sr,
            )
        except struct.error as exc:
            raise MediaLocalError(f"report block field out of range: {exc}") from exc


def _header(packet_type: int, count: int, body_length: int) -> bytes:
    if body_length % 4:
        raise MediaLocalError("RTCP packet body must be whole 32-bit words")
    if count > 31:
        raise MediaLocalError(f"RTCP count {count} exceeds the 5-bit field (at most 31)")
    return _COMMON.pack(0x80 | count, packet_type, body_length // 4)


def _blocks_bytes(reports: list[ReportBlock]) -> bytes:
    return b"".join(bytes(block) for block in reports)


def _parse_blocks(body: bytes, offset: int, count: int, kind: str) -> list[ReportBlock]:
    end = offset + 24 * count
    if end > len(body):
        raise RtcpError(f"RTCP {kind} announces {count} report blocks but is too short")
    return [ReportBlock._parse(body, offset + 24 * i) for i in range(count)]


@dataclass(slots=True)
class SenderReport:
    """SR (§6.4.1): sender info about what ``ssrc`` sent, plus reception reports."""

    ssrc: int
    ntp_seconds: int
    ntp_fraction: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""  # profile-specific extension (§6.4.1), kept opaque

    packet_type = RtcpPacketType.SR

    @classmethod
    def _parse(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < 24:
            raise RtcpError("RTCP SR is shorter than its 24-byte sender info")
        ssrc, seconds, fraction, timestamp, packets, octets = _SENDER_INFO.unpack_from(body)
        reports = _parse_blocks(body, 24, count, "SR")
        return cls(
            ssrc, seconds, fraction, timestamp, packets, octets, reports, body[24 + 24 * count :]
        )

    def __bytes__(self) -> bytes:
        try:
            info = _SENDER_INFO.pack(
                self.ssrc,
                self.ntp_seconds,
                self.ntp_fraction,
                self.rtp_timestamp,
                self.packet_count,
                self.octet_count,
            )
        except struct.error as exc:
            raise MediaLocalError(f"SR field out of range: {exc}") from exc
        body = info + _blocks_bytes(self.reports) + self.extension
        return _header(RtcpPacketType.SR, len(self.reports), len(body)) + body


@dataclass(slots=True)
class ReceiverReport:
    """RR (§6.4.2): reception reports from a participant that is not sending."""

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    packet_type = RtcpPacketType.RR

    @classmethod
    def _parse(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtcpError("RTCP RR is shorter than its reporter SSRC")
        (ssrc,) = _SSRC.unpack_from(body)
        reports = _parse_blocks(body, 4, count, "RR")
        return cls(ssrc, reports, body[4 + 24 * count :])

    def __bytes__(self) -> bytes:
        try:
            head = _SSRC.pack(self.ssrc)
        except struct.error as exc:
            raise MediaLocalError(f"RR SSRC out of range: {exc}") from exc
        body = head + _blocks_bytes(self.reports) + self.extension
        return _header(RtcpPacketType.RR, len(self.reports), len(body)) + body


@dataclass(slots=True)
class SdesChunk:
    """One SDES chunk (§6.5): a source and its (type, text) items, e.g. the CNAME."""

    ssrc: int
    items: list[tuple[int, str]] = field(default_factory=list)

    @property
    def cname(self) -> str | None:
        """The canonical name (§6.5.1), which ties a source to a participant."""
        for kind, value in self.items:
            if kind == SdesItemType.CNAME:
                return value
        return None


def _text(raw: bytes) -> str:
    # SDES text is UTF-8 (§6.5); surrogateescape keeps any bytes and round-trips them.
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(slots=True)
class SourceDescription:
    """SDES (§6.5): descriptions of sources, one chunk per SSRC."""

    chunks: list[SdesChunk] = field(default_factory=list)

    packet_type = RtcpPacketType.SDES

    @classmethod
    def _parse(cls, count: int, body: bytes) -> SourceDescription:
        chunks: list[SdesChunk] = []
        offset = 0
        size = len(body)
        for _ in range(count):
            if offset + 4 > size:
                raise RtcpError(f"RTCP SDES announces {count} chunks but is too short")
            (ssrc,) = _SSRC.unpack_from(body, offset)
            offset += 4
            items: list[tuple[int, str]] = []
            while True:
                if offset >= size:
                    raise RtcpError("RTCP SDES chunk has no terminating null item")
                kind = body[offset]
                if kind == 0:
                    # §6.5: the list ends with a null octet, then pad to a 32-bit boundary.
                    offset = (offset + 4) & ~3
                    break
                if offset + 2 > size:
                    raise RtcpError("RTCP SDES item is truncated")
                length = body[offset + 1]
                end = offset + 2 + length
                if end > size:
                    raise RtcpError("RTCP SDES item runs past the packet")
                items.append((kind, _text(body[offset + 2 : end])))
                offset = end
            chunks.append(SdesChunk(ssrc, items))
        return cls(chunks)

    def __bytes__(self) -> bytes:
        parts: list[bytes] = []
        for chunk in self.chunks:
            try:
                data = [_SSRC.pack(chunk.ssrc)]
            except struct.error as exc:
                raise MediaLocalError(f"SDES SSRC out of range: {exc}") from exc
            for kind, value in chunk.items:
                raw = _raw(value)
                if not 1 <= kind <= 255 or len(raw) > 255:
                    raise MediaLocalError(f"SDES item {kind} with {len(raw)} octets is invalid")
                data.append(bytes((kind, len(raw))) + raw)
            length = sum(map(len, data))
            data.append(bytes(4 - length % 4))  # at least one null octet, then pad (§6.5)
            parts.extend(data)
        body = b"".join(parts)
        return _header(RtcpPacketType.SDES, len(self.chunks), len(body)) + body


@dataclass(slots=True)
class Goodbye:
    """BYE (§6.6): the listed sources leave, optionally saying why."""

    ssrcs: list[int] = field(default_factory=list)
    reason: str | None = None

    packet_type = RtcpPacketType.BYE

    @classmethod
    def _parse(cls, count: int, body: bytes) -> Goodbye:
        end = 4 * count
        if end > len(body):
            raise RtcpError(f"RTCP BYE announces {count} sources but is too short")
        ssrcs = [_SSRC.unpack_from(body, 4 * i)[0] for i in range(count)]
        reason = None
        if end < len(body):
            length = body[end]
            if end + 1 + length > len(body):
                raise RtcpError("RTCP BYE reason runs past the packet")
            reason = _text(body[end + 1 : end + 1 + length])
        return cls(ssrcs, reason)

    def __bytes__(self) -> bytes:
        try:
            body = b"".join(_SSRC.pack(ssrc) for ssrc in self.ssrcs)
        except struct.error as exc:
            raise MediaLocalError(f"BYE SSRC out of range: {exc}") from exc
        if self.reason is not None:
            raw = _raw(self.reason)
            if len(raw) > 255:
                raise MediaLocalError("BYE reason is longer than 255 octets")
            body += bytes((len(raw),)) + raw
            body += bytes(-len(body) % 4)
        return _header(RtcpPacketType.BYE, len(self.ssrcs), len(body)) + body


@dataclass(slots=True)
class RtcpUnknown:
    """Any other RTCP packet (APP, XR, feedback…), kept byte-for-byte for relaying."""

    packet_type: int
    count: int
    body: bytes

    def __bytes__(self) -> bytes:
        if not 0 <= self.packet_type <= 255:
            raise MediaLocalError(f"RTCP packet type {self.packet_type} is outside 0..255")
        return _header(self.packet_type, self.count, len(self.body)) + self.body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye | RtcpUnknown


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram into its packets (§6.1), or raise :class:`RtcpError`.

    Checks follow A.2: every packet is version 2, the length fields tile the datagram
    exactly, and padding (the P bit) is consistent. We do not insist that the first
    packet is an SR or RR, since RFC 5506 reduced-size RTCP relaxes that.
    """
    data = bytes(data)
    size = len(data)
    if size < 4:
        raise RtcpError(f"RTCP datagram of {size} bytes is shorter than a header")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < size:
        if offset + 4 > size:
            raise RtcpError("RTCP compound packet ends inside a header")
        first, packet_type, words = _COMMON.unpack_from(data, offset)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP version {first >> 6}, expected 2")
        end = offset + 4 * (words + 1)
        if end > size:
            raise RtcpError(f"RTCP packet type {packet_type} length runs past the datagram")
        body_end = end
        if first & 0x20:
            padding = data[end - 1]
            if padding == 0 or padding > end - offset - 4:
                raise RtcpError(f"RTCP padding length {padding} is invalid")
            body_end = end - padding
        body = data[offset + 4 : body_end]
        count = first & 0x1F
        packet: RtcpPacket
        if packet_type == RtcpPacketType.SR:
            packet = SenderReport._parse(count, body)
        elif packet_type == RtcpPacketType.RR:
            packet = ReceiverReport._parse(count, body)
        elif packet_type == RtcpPacketType.SDES:
            packet = SourceDescription._parse(count, body)
        elif packet_type == RtcpPacketType.BYE:
            packet = Goodbye._parse(count, body)
        else:
            packet = RtcpUnknown(packet_type, count, body)
        packets.append(packet)
        offset = end
    return packets


def serialize_compound(packets: list[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound datagram (§6.1)."""
    if not packets:
        raise MediaLocalError("a compound RTCP packet needs at least one packet")
    return b"".join(bytes(packet) for packet in packets)


def compound_report(
    ssrc: int,
    cname: str,
    reports: list[ReportBlock],
    sender: tuple[int, int, int, int, int] | None = None,
) -> bytes:
    """Our periodic report: an SR if we sent media (``sender`` = NTP seconds, NTP
    fraction, RTP timestamp, packet count, octet count), else an RR, followed by the SDES
    CNAME that §6.1 requires in every compound packet.
    """
    first: RtcpPacket
    if sender is None:
        first = ReceiverReport(ssrc, reports)
    else:
        first = SenderReport(ssrc, *sender, reports=reports)
    sdes = SourceDescription([SdesChunk(ssrc, [(SdesItemType.CNAME, cname)])])
    return serialize_compound([first, sdes])


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on a multiplexed port is RTCP rather than RTP (RFC 5761 §4).

    RTCP packet types 192–223 cannot be RTP payload types once the marker bit is added,
    as long as RTP payload types 64–95 are not used.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def ntp_timestamp(unix_time: float) -> tuple[int, int]:
    """The 64-bit NTP timestamp (§4) of a Unix time: (seconds, 2^-32 fractions)."""
    seconds = int(unix_time)
    fraction = int((unix_time - seconds) * (1 << 32))
    return (seconds + NTP_UNIX_OFFSET) & 0xFFFFFFFF, min(fraction, 0xFFFFFFFF)


def ntp_middle(seconds: int, fraction: int) -> int:
    """The middle 32 bits of an NTP timestamp, as carried in LSR (§6.4.1)."""
    return ((seconds & 0xFFFF) << 16) | (fraction >> 16)


def round_trip_time(arrival: float, last_sr: int, delay_since_last_sr: int) -> float | None:
    """Round-trip time in seconds from a report block received at Unix time ``arrival``.

    §6.4.1: RTT = A - LSR - DLSR, all in 1/65536 s, where A is the arrival time as the
    middle 32 bits of NTP. Returns ``None`` when the peer has not yet seen our SR
    (LSR = 0) or when clock steps make the result negative.
    """
    if last_sr == 0:
        return None
    arrived = ntp_middle(*ntp_timestamp(arrival))
    units = (arrived - last_sr - delay_since_last_sr) & 0xFFFFFFFF
    if units >= 1 << 31:
        return None
    return units / 65536.0
