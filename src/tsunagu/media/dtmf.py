"""DTMF: RFC 4733 telephone-events over RTP, and SIP INFO digit bodies.

IVR menus branch on these digits, so each key press must become exactly one
:class:`DigitReceived` — not three (the end packet is sent three times, RFC 4733
§2.5.1.4), not zero (the start or end packets may be lost), and not two when a late
retransmission arrives after the event was closed. A key press is identified by its
SSRC and RTP timestamp, which stays at the event's start for all its packets (§2.3.5);
its sequence numbers do not help, since RFC 4733 §2.5.1.6 increments them on every
retransmission while some senders (SIPp's captures, for one) repeat them.

Sans-IO: the receiver and sender take ``now`` (seconds) and say when they next need a
call (``next_deadline``).
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass

from tsunagu.media.rtp import MediaLocalError, MediaParseError, RtpPacket, RtpSender

__all__ = [
    "DTMF_DIGITS",
    "DigitReceived",
    "DtmfParseError",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "digit_for_event",
    "event_for_digit",
    "parse_info_dtmf",
]

logger = logging.getLogger(__name__)

# RFC 4733 §3.2: events 0-15 are the DTMF digits in this order.
DTMF_DIGITS = "0123456789*#ABCD"
MAX_DURATION = 0xFFFF
_EVENT = struct.Struct("!BBH")  # event | E R volume(6) | duration (§2.3)


class DtmfParseError(MediaParseError):
    """A telephone-event payload or a SIP INFO DTMF body is malformed."""


def digit_for_event(event: int) -> str | None:
    """The DTMF digit of an RFC 4733 event code, or None for other events (e.g. flash)."""
    return DTMF_DIGITS[event] if 0 <= event < 16 else None


def event_for_digit(digit: str) -> int:
    """The RFC 4733 event code of a digit ``0-9 * # A-D`` (case-insensitive)."""
    index = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise MediaLocalError(f"{digit!r} is not a DTMF digit")
    return index


@dataclass(slots=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 event payload.

    ``volume`` is the power level in -dBm0 (0..63); ``duration`` is in RTP timestamp
    units since the event began (§2.3.5).
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        if len(data) < 4:
            raise DtmfParseError(f"telephone-event payload of {len(data)} bytes, expected 4")
        event, flags, duration = _EVENT.unpack_from(data)
        # The R bit (0x40) is reserved: senders set it to zero, receivers ignore it.
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63:
            raise MediaLocalError(f"telephone-event {self.event} volume {self.volume} invalid")
        if not 0 <= self.duration <= MAX_DURATION:
            raise MediaLocalError(f"telephone-event duration {self.duration} exceeds 16 bits")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        return digit_for_event(self.event)


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """A key press, reported once.

    ``at`` is the time (as passed in) when we recognised it; ``duration_ms`` is how long
    the key was held as the sender reported it (0 when unknown, e.g. a bare
    ``application/dtmf`` INFO); ``method`` is ``"rfc4733"`` or ``"info"``.
    """

    digit: str
    duration_ms: int
    at: float
    method: str = "rfc4733"


@dataclass(slots=True)
class _OpenEvent:
    ssrc: int
    timestamp: int
    event: int
    duration: int  # of the current segment, in timestamp units
    earlier: int  # total duration of earlier segments of a long event (§2.5.1.3)
    last_seen: float


class DtmfReceiver:
    """Turns telephone-event packets of one RTP stream into :class:`DigitReceived` events.

    Rules (RFC 4733 §2.5.2): a packet with a new (SSRC, timestamp) starts a new event
    whether or not its marker is set (the first packet may be lost); the first end packet
    reports the digit and its retransmissions are ignored; if the end packets are all
    lost, the digit is reported when the next event starts or when no packet of the event
    has arrived for ``timeout`` seconds (:meth:`on_timer`).
    """

    def __init__(
        self, payload_type: int | None = None, clock_rate: int = 8000, *, timeout: float = 0.25
    ) -> None:
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.timeout = timeout
        self._open: _OpenEvent | None = None
        # Recently finished events, so late or retransmitted packets are not new presses.
        self._finished: deque[tuple[int, int]] = deque(maxlen=16)

    def on_packet(self, packet: RtpPacket, now: float) -> list[DigitReceived]:
        """Feed one RTP packet; packets of other payload types are ignored.

        Raises :class:`DtmfParseError` if a telephone-event payload is malformed; the
        caller drops that packet and carries on.
        """
        if self.payload_type is not None and packet.payload_type != self.payload_type:
            return []
        return self.on_event(
            packet.ssrc, packet.timestamp, TelephoneEvent.parse(packet.payload), now
        )

    def on_event(
        self, ssrc: int, timestamp: int, event: TelephoneEvent, now: float
    ) -> list[DigitReceived]:
        """Feed one parsed telephone-event with its packet's SSRC and timestamp."""
        key = (ssrc, timestamp)
        if key in self._finished:
            return []  # a retransmitted end packet, or a straggler of a closed event
        digits: list[DigitReceived] = []
        current = self._open
        if current is not None and (current.ssrc, current.timestamp) != key:
            if self._continues(current, ssrc, timestamp, event):
                # §2.5.1.3: a long event goes on in a new segment whose timestamp is the
                # old one plus the old duration; it is the same key press.
                self._finished.append((current.ssrc, current.timestamp))
                current.earlier += current.duration
                current.timestamp = timestamp
                current.duration = 0
            else:
                digits.extend(self._close(current, now))
                current = None
        if current is None:
            current = _OpenEvent(ssrc, timestamp, event.event, 0, 0, now)
            self._open = current
        current.duration = max(current.duration, event.duration)
        current.last_seen = now
        if event.end:
            digits.extend(self._close(current, now))
        return digits

    def _continues(
        self, current: _OpenEvent, ssrc: int, timestamp: int, event: TelephoneEvent
    ) -> bool:
        if ssrc != current.ssrc or event.event != current.event or current.duration < 0x8000:
            return False
        step = (timestamp - current.timestamp) & 0xFFFFFFFF
        return abs(step - current.duration) <= self.clock_rate // 50

    def _close(self, current: _OpenEvent, now: float) -> list[DigitReceived]:
        self._open = None
        self._finished.append((current.ssrc, current.timestamp))
        digit = digit_for_event(current.event)
        if digit is None:
            logger.debug("ignoring non-DTMF telephone-event %d", current.event)
            return []
        total = current.earlier + current.duration
        return [DigitReceived(digit, total * 1000 // self.clock_rate, now)]

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` should next run, or None if no event is open."""
        return None if self._open is None else self._open.last_seen + self.timeout

    def on_timer(self, now: float) -> list[DigitReceived]:
        """Close an event whose end packets never came (RFC 4733 §2.5.2)."""
        current = self._open
        if current is None or now < current.last_seen + self.timeout:
            return []
        return self._close(current, now)


@dataclass(slots=True)
class _Scheduled:
    due: float
    duration: int
    end: bool
    marker: bool


class DtmfSender:
    """Produces the RFC 4733 packets of one digit on an existing RTP stream.

    The first packet carries the marker bit (§2.5.1.2); updates follow every
    ``update_interval_ms`` with the duration so far, all with the event's start
    timestamp (§2.5.1.2); the final packet has the E bit and is sent three times
    (§2.5.1.4), each with a new sequence number (§2.5.1.6). Sequence numbers are taken
    from the shared :class:`RtpSender` when a packet is due, so audio sent after the event
    ends interleaves correctly with the end retransmissions.

    While :attr:`active` (between the first packet and the first end packet) the caller
    must not send audio on the stream; when the event ends the stream's clock is
    advanced by the event's duration so audio resumes at the right timestamp.
    """

    def __init__(
        self,
        rtp: RtpSender,
        payload_type: int = 101,
        *,
        volume: int = 10,
        update_interval_ms: int = 50,
        end_repeats: int = 3,
    ) -> None:
        if update_interval_ms <= 0 or end_repeats < 1:
            raise MediaLocalError("DTMF update interval and end repeats must be positive")
        self.rtp = rtp
        self.payload_type = payload_type
        self.volume = volume
        self.update_interval_ms = update_interval_ms
        self.end_repeats = end_repeats
        self._queue: deque[_Scheduled] = deque()
        self._event = 0
        self._timestamp = 0
        self._total = 0
        self._active = False

    @property
    def active(self) -> bool:
        """An event is in progress and audio must pause."""
        return self._active

    @property
    def busy(self) -> bool:
        """Packets (possibly end retransmissions) remain to be sent."""
        return bool(self._queue)

    def start(self, digit: str, now: float, duration_ms: int = 100) -> list[RtpPacket]:
        """Begin sending ``digit`` for ``duration_ms``; returns the packets due at ``now``."""
        if self._queue:
            raise MediaLocalError("the previous DTMF event is still being sent")
        if duration_ms <= 0:
            raise MediaLocalError(f"DTMF duration {duration_ms} ms must be positive")
        total = self.rtp.samples_for(duration_ms)
        if total > MAX_DURATION:
            raise MediaLocalError(f"DTMF duration {duration_ms} ms needs segments (§2.5.1.3)")
        self._event = event_for_digit(digit)
        self._timestamp = self.rtp.timestamp
        self._total = total
        self._active = True
        step = self.update_interval_ms
        elapsed = 0
        while elapsed < duration_ms:
            self._queue.append(
                _Scheduled(now + elapsed / 1000, self.rtp.samples_for(elapsed), False, elapsed == 0)
            )
            elapsed += step
        for repeat in range(self.end_repeats):
            due = now + (duration_ms + repeat * step) / 1000
            self._queue.append(_Scheduled(due, total, True, False))
        return self.poll(now)

    def next_deadline(self) -> float | None:
        """When the next packet is due, or None when idle."""
        return self._queue[0].due if self._queue else None

    def poll(self, now: float) -> list[RtpPacket]:
        """The packets due at or before ``now``."""
        packets: list[RtpPacket] = []
        while self._queue and self._queue[0].due <= now + 1e-9:
            item = self._queue.popleft()
            payload = bytes(TelephoneEvent(self._event, item.end, self.volume, item.duration))
            packets.append(
                self.rtp.packet(self.payload_type, self._timestamp, payload, marker=item.marker)
            )
            if item.end and self._active:
                self._active = False
                self.rtp.skip(self._total)
        return packets

    def packets_for_digit(
        self, digit: str, duration_ms: int = 100
    ) -> list[tuple[float, RtpPacket]]:
        """The whole packet sequence of one digit as (offset in seconds, packet) pairs."""
        schedule = [(0.0, packet) for packet in self.start(digit, 0.0, duration_ms)]
        while (deadline := self.next_deadline()) is not None:
            schedule.extend((deadline, packet) for packet in self.poll(deadline))
        return schedule


def _info_signal(value: str) -> str:
    value = value.strip()
    if len(value) == 1 and value.upper() in DTMF_DIGITS:
        return value.upper()
    # Some phones send the RFC 4733 event code instead ("Signal=10" for '*').
    if value.isascii() and value.isdigit() and int(value) < 16:
        return DTMF_DIGITS[int(value)]
    raise DtmfParseError(f"DTMF signal {value!r} is not a digit 0-9, *, #, A-D")


def parse_info_dtmf(content_type: str, body: str | bytes, now: float) -> DigitReceived:
    """A digit from a SIP INFO body (``application/dtmf-relay`` or ``application/dtmf``).

    ``application/dtmf-relay`` is the de-facto format (Cisco) of ``Signal=5`` and
    ``Duration=160`` (milliseconds) lines; ``application/dtmf`` carries the bare digit.
    Any other content type raises :class:`DtmfParseError` with status 415.
    """
    media_type = content_type.split(";", 1)[0].strip().casefold()
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DtmfParseError(f"DTMF INFO body is not UTF-8: {exc}") from exc
    else:
        text = body
    if media_type == "application/dtmf":
        return DigitReceived(_info_signal(text), 0, now, "info")
    if media_type != "application/dtmf-relay":
        raise DtmfParseError(f"content type {media_type!r} is not a DTMF INFO body", 415)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, equals, value = line.partition("=")
        if equals:
            fields[name.strip().casefold()] = value.strip()
    if "signal" not in fields:
        raise DtmfParseError("application/dtmf-relay body has no Signal= line")
    duration_text = fields.get("duration", "0")
    if not (duration_text.isascii() and duration_text.isdigit()):
        raise DtmfParseError(f"DTMF duration {duration_text!r} is not a number")
    return DigitReceived(_info_signal(fields["signal"]), int(duration_text), now, "info")
