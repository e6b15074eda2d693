"""One RTP/RTCP leg on asyncio UDP sockets: symmetric RTP with latching, stats, RTCP, DTMF.

Symmetric RTP (RFC 4961) with latching is how media reaches callers behind NAT: the SDP
of a phone behind a home router names its private address, which we cannot reach. So we
send to the SDP address only until the first valid RTP packet arrives, then send to the
address that packet actually came from — the NAT's public mapping, which forwards to the
phone because the phone sends and receives on the same port. RTCP latches the same way,
separately (its NAT mapping is a different port).

Latching rules (:class:`Latch`):

* Before latching, the first packet that parses as RTP version 2 *and* carries a
  negotiated payload type latches, from any source address.
* After latching, packets from any other source are dropped (counted in
  ``dropped_foreign``): an attacker who guesses our port cannot inject audio into a call
  in progress ("RTP bleed").
* Re-latch: if the latched source has been silent for ``relatch_after_s`` (default 2 s),
  the next valid packet from a new source takes over. That covers a peer that restarts
  its stream with a new SSRC (an SBC fail-over, a transfer on the far side) and a NAT
  that rebinds to a new public port, while an injected stream still cannot pre-empt a
  live one.
* A re-INVITE that changes the remote address (:meth:`RtpSession.configure`) unlatches.

The sans-IO parts (:class:`Latch`, :func:`rtcp_interval`) take time as an argument; the
:class:`RtpSession` adapter reads the loop's monotonic clock once per datagram and the
wall clock only for RTCP's NTP timestamps.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from tsunagu.media.dtmf import DigitReceived, DtmfParseError, DtmfReceiver, DtmfSender
from tsunagu.media.interface import LegQuality
from tsunagu.media.rtcp import (
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SdesChunk,
    SdesItemType,
    SenderReport,
    SourceDescription,
    compound_report,
    is_rtcp,
    ntp_timestamp,
    parse_compound,
    round_trip_time,
    serialize_compound,
)
from tsunagu.media.rtp import RtpError, RtpPacket, RtpSender
from tsunagu.media.sdp import PCMU, Codec, Direction, NegotiatedMedia
from tsunagu.media.stats import RtpReceiverStats

__all__ = [
    "RTCP_MIN_INTERVAL_S",
    "Address",
    "Latch",
    "RtpSession",
    "rtcp_interval",
]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

#: RFC 3550 §6.2: the recommended minimum interval between RTCP reports.
RTCP_MIN_INTERVAL_S = 5.0
DEFAULT_RELATCH_AFTER_S = 2.0


def rtcp_interval(
    rng: random.Random, *, initial: bool, minimum: float = RTCP_MIN_INTERVAL_S
) -> float:
    """The delay before our next RTCP report (RFC 3550 §6.2, §6.3.1).

    A two-party call's RTCP bandwidth share allows far more than one report per 5 s, so the
    deterministic interval is the 5 s minimum (halved for the first report, §6.2: "the
    initial RTCP packet ... may be sent after half the minimum"). It is then randomised
    uniformly over [0.5, 1.5] times that, so that calls set up together do not report in
    lock-step (§6.3.1).
    """
    base = minimum / 2 if initial else minimum
    return base * rng.uniform(0.5, 1.5)


class Latch:
    """Where to send, and from whom to accept (symmetric RTP with latching, see module doc)."""

    __slots__ = ("expected", "last_seen", "latched", "relatch_after", "relatches", "ssrc")

    def __init__(
        self, expected: Address | None = None, relatch_after: float = DEFAULT_RELATCH_AFTER_S
    ) -> None:
        self.expected = expected
        self.relatch_after = relatch_after
        self.latched: Address | None = None
        self.ssrc: int | None = None
        self.last_seen = 0.0
        self.relatches = 0

    @property
    def destination(self) -> Address | None:
        """The latched source once known, else the address from the SDP."""
        return self.latched or self.expected

    def accept(self, source: Address, ssrc: int | None, now: float) -> bool:
        """Whether a valid packet from ``source`` is taken (latching on it if need be)."""
        latched = self.latched
        if latched is None:
            self.latched = source
        elif source != latched:
            if now - self.last_seen < self.relatch_after:
                return False
            logger.info(
                "re-latching from %s to %s (ssrc %s -> %s)", latched, source, self.ssrc, ssrc
            )
            self.latched = source
            self.relatches += 1
        self.ssrc = ssrc
        self.last_seen = now
        return True

    def reset(self, expected: Address | None) -> None:
        """Forget the latched source (the peer moved, per a new SDP)."""
        self.expected = expected
        self.latched = None
        self.ssrc = None


class _Protocol(asyncio.DatagramProtocol):
    __slots__ = ("closed", "handler")

    def __init__(self, handler: Callable[[bytes, Address], None]) -> None:
        self.handler = handler
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.handler(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the peer is not listening yet: normal at call start.
        logger.debug("RTP socket error: %s", exc)


AudioHandler = Callable[[RtpPacket, float], None]
EventHandler = Callable[[RtpPacket, float], None]
DigitHandler = Callable[[DigitReceived], None]


@dataclass(slots=True)
class _RemoteReport:
    fraction_lost: float
    cumulative_lost: int
    jitter_ms: float
    rtt_ms: float | None


class RtpSession:
    """One leg's RTP and RTCP sockets, its outgoing stream and what it hears.

    Call :meth:`configure` with the negotiated media before audio flows. Upper layers hook
    in with ``on_audio`` (every accepted audio packet and its arrival time), ``on_event``
    (every accepted telephone-event packet, for bridging) and ``on_digit`` (each key press
    once). Sending: :meth:`send_audio` (numbered by :attr:`sender`) and
    :meth:`send_packet` (already numbered, e.g. DTMF from :attr:`dtmf_sender`).
    """

    def __init__(
        self,
        rtp_socket: socket.socket,
        rtcp_socket: socket.socket,
        *,
        cname: str,
        relatch_after_s: float = DEFAULT_RELATCH_AFTER_S,
        rtcp_min_interval_s: float = RTCP_MIN_INTERVAL_S,
        rng: random.Random | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._rtp_socket = rtp_socket
        self._rtcp_socket = rtcp_socket
        self.local_port = int(rtp_socket.getsockname()[1])
        self.cname = cname
        self.rtcp_min_interval_s = rtcp_min_interval_s
        self._rng = rng or random.Random()  # noqa: S311 - RTCP timer jitter, not a secret
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._protocols: list[_Protocol] = []
        self.latch = Latch(None, relatch_after_s)
        self.rtcp_latch = Latch(None, relatch_after_s)
        self.codec: Codec = PCMU
        self.audio_pt = PCMU.payload_type
        self.event_pt: int | None = None
        self.direction = Direction.SENDRECV
        self._sends = False  # direction.sends of the negotiated media, cached for the hot path
        self.sender = RtpSender(PCMU.payload_type)
        self.dtmf_sender: DtmfSender | None = None
        self.dtmf_receiver = DtmfReceiver(None)
        self.stats: RtpReceiverStats | None = None
        self.on_audio: AudioHandler | None = None
        self.on_event: EventHandler | None = None
        self.on_digit: DigitHandler | None = None
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._remote: _RemoteReport | None = None
        self._last_sent_ts = 0
        self._last_sent_at: float | None = None
        self._sent_since_report = False
        self.configured = False
        self.closed = False
        # Counters (cumulative): what a dashboard or a test wants to see.
        self.packets_sent = 0
        self.octets_sent = 0
        self.invalid = 0
        self.dropped_foreign = 0
        self.dropped_payload_type = 0
        self.last_received_at: float | None = None

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Attach the bound sockets to the loop and start the RTCP timer."""
        loop = self._loop
        rtp, rtp_protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_rtp_datagram), sock=self._rtp_socket
        )
        self._rtp = rtp
        self._protocols.append(rtp_protocol)
        rtcp, rtcp_protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_rtcp_datagram), sock=self._rtcp_socket
        )
        self._rtcp = rtcp
        self._protocols.append(rtcp_protocol)
        self._schedule_rtcp(initial=True)

    def configure(self, media: NegotiatedMedia) -> None:
        """Apply an offer/answer outcome: codec, payload types, peer address, direction.

        Keeps our SSRC, sequence and timestamp across re-INVITEs (RFC 3264 §8: a modified
        session is the same stream); unlatches only when the peer's address changed.
        """
        expected = (media.remote_address, media.remote_port)
        rtcp_expected = (media.remote_address, media.remote_rtcp_port)
        if media.remote_port == 0 or media.remote_address in ("0.0.0.0", "::"):  # noqa: S104
            expected_or_none: Address | None = None
            rtcp_or_none: Address | None = None
        else:
            expected_or_none, rtcp_or_none = expected, rtcp_expected
        if self.latch.expected != expected_or_none:
            self.latch.reset(expected_or_none)
            self.rtcp_latch.reset(rtcp_or_none)
        self.codec = media.codec
        self.audio_pt = media.codec.payload_type
        self.event_pt = media.telephone_event
        self.direction = media.direction
        self._sends = media.direction.sends
        self.sender.payload_type = self.audio_pt
        self.sender.clock_rate = media.codec.clock_rate
        self.dtmf_receiver.payload_type = self.event_pt
        if self.event_pt is None:
            self.dtmf_sender = None
        elif self.dtmf_sender is None or self.dtmf_sender.payload_type != self.event_pt:
            self.dtmf_sender = DtmfSender(self.sender, self.event_pt)
        self.configured = True

    async def wait_closed(self) -> None:
        """Until both sockets are really closed (asyncio closes transports on a later
        loop iteration): only then may the ports be handed to another leg."""
        await asyncio.gather(*(protocol.closed for protocol in self._protocols))

    @property
    def can_send(self) -> bool:
        """Whether audio may go out now: negotiated, not on hold, and somewhere to send."""
        return self._sends and self.latch.destination is not None

    def close(self) -> None:
        """Send an RTCP BYE (§6.6) and close both sockets. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for timer in (self._rtcp_timer, self._dtmf_timer):
            if timer is not None:
                timer.cancel()
        if self._rtcp is not None and self.rtcp_latch.destination is not None and self.configured:
            try:
                bye = serialize_compound(
                    [
                        self._report_packet(),
                        SourceDescription(
                            [SdesChunk(self.sender.ssrc, [(SdesItemType.CNAME, self.cname)])]
                        ),
                        Goodbye([self.sender.ssrc]),
                    ]
                )
                self._rtcp.sendto(bye, self.rtcp_latch.destination)
            except OSError as exc:
                logger.debug("RTCP BYE not sent: %s", exc)
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        if self._rtp is None:
            self._rtp_socket.close()
        if self._rtcp is None:
            self._rtcp_socket.close()

    # --- receiving --------------------------------------------------------------------------

    def _on_rtp_datagram(self, data: bytes, source: Address) -> None:
        if is_rtcp(data):  # RTCP sent to the RTP port (RFC 5761 multiplexing)
            self._on_rtcp_datagram(data, source)
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.invalid += 1
            return
        payload_type = packet.payload_type
        is_event = payload_type == self.event_pt
        if payload_type != self.audio_pt and not is_event:
            # Comfort noise (13) or a codec we did not agree: not a reason to latch.
            self.dropped_payload_type += 1
            return
        now = self._loop.time()
        if not self.latch.accept(source, packet.ssrc, now):
            self.dropped_foreign += 1
            return
        self.last_received_at = now
        stats = self.stats
        if stats is None or stats.ssrc != packet.ssrc:
            # Signalling vouches for the stream, so no probation (A.1 with probation 0).
            stats = self.stats = RtpReceiverStats(
                packet.ssrc, packet.sequence, self.codec.clock_rate, probation=0
            )
        stats.update(packet.sequence, packet.timestamp, now, jitter=not is_event)
        if is_event:
            self._on_event_packet(packet, now)
        elif self.on_audio is not None:
            self.on_audio(packet, now)

    def _on_event_packet(self, packet: RtpPacket, now: float) -> None:
        try:
            digits = self.dtmf_receiver.on_packet(packet, now)
        except DtmfParseError:
            self.invalid += 1
            return
        if self.on_event is not None:
            self.on_event(packet, now)
        for digit in digits:
            self._deliver(digit)
        self._arm_dtmf_timer()

    def _arm_dtmf_timer(self) -> None:
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        deadline = self.dtmf_receiver.next_deadline()
        if deadline is not None and not self.closed:
            self._dtmf_timer = self._loop.call_at(deadline, self._on_dtmf_timer)

    def _on_dtmf_timer(self) -> None:
        self._dtmf_timer = None
        for digit in self.dtmf_receiver.on_timer(self._loop.time()):
            self._deliver(digit)
        self._arm_dtmf_timer()

    def _deliver(self, digit: DigitReceived) -> None:
        if self.on_digit is not None:
            self.on_digit(digit)

    def _on_rtcp_datagram(self, data: bytes, source: Address) -> None:
        try:
            packets = parse_compound(data)
        except RtcpError:
            self.invalid += 1
            return
        now = self._loop.time()
        if not self.rtcp_latch.accept(source, None, now):
            self.dropped_foreign += 1
            return
        wall = time.time()
        for packet in packets:
            if isinstance(packet, SenderReport):
                stats = self.stats
                if stats is not None and stats.ssrc == packet.ssrc:
                    stats.on_sender_report(packet.ntp_seconds, packet.ntp_fraction, now)
                self._on_report_blocks(packet.reports, wall)
            elif isinstance(packet, ReceiverReport):
                self._on_report_blocks(packet.reports, wall)
            elif isinstance(packet, Goodbye):
                logger.debug("RTCP BYE from %s: %s", source, packet.reason)

    def _on_report_blocks(self, blocks: list[ReportBlock], wall: float) -> None:
        for block in blocks:
            if block.ssrc != self.sender.ssrc:
                continue
            rtt = round_trip_time(wall, block.last_sr, block.delay_since_last_sr)
            previous = self._remote
            self._remote = _RemoteReport(
                block.fraction_lost / 256.0,
                block.cumulative_lost,
                block.jitter * 1000.0 / self.codec.clock_rate,
                rtt * 1000.0 if rtt is not None else (previous.rtt_ms if previous else None),
            )

    # --- sending ----------------------------------------------------------------------------

    def send_audio(self, payload: bytes) -> None:
        """Send one audio frame numbered by :attr:`sender`; drops it (clock still advancing)
        when we may not send (hold, no address yet, or a DTMF event in progress)."""
        dtmf = self.dtmf_sender
        if dtmf is not None and dtmf.active:
            return  # RFC 4733 §2.5.1.2: no audio during an event; its end advances the clock
        if not self.can_send:
            self.sender.skip(len(payload))
            return
        self.send_packet(self.sender.audio_frame(payload))

    def send_packet(self, packet: RtpPacket) -> None:
        """Send a numbered packet to the current destination (no-op while we may not send)."""
        destination = self.latch.destination
        if self._rtp is None or destination is None or not self._sends:
            return
        self._rtp.sendto(bytes(packet), destination)
        self.packets_sent += 1
        self.octets_sent += len(packet.payload)
        self._last_sent_ts = packet.timestamp
        self._last_sent_at = self._loop.time()
        self._sent_since_report = True

    def poll_dtmf(self, now: float) -> bool:
        """Send the DTMF packets due at ``now``; whether an event is still being sent."""
        dtmf = self.dtmf_sender
        if dtmf is None:
            return False
        for packet in dtmf.poll(now):
            self.send_packet(packet)
        return dtmf.busy

    # --- RTCP -------------------------------------------------------------------------------

    def _schedule_rtcp(self, *, initial: bool = False) -> None:
        if self.closed:
            return
        delay = rtcp_interval(self._rng, initial=initial, minimum=self.rtcp_min_interval_s)
        self._rtcp_timer = self._loop.call_later(delay, self._send_report)

    def _report_packet(self) -> SenderReport | ReceiverReport:
        now = self._loop.time()
        stats = self.stats
        blocks = [stats.report_block(now)] if stats is not None and stats.valid else []
        if self._sent_since_report and self._last_sent_at is not None:
            # §6.4.1: the RTP timestamp of the same instant as the NTP timestamp.
            elapsed = now - self._last_sent_at
            rtp_ts = (self._last_sent_ts + int(elapsed * self.codec.clock_rate)) & 0xFFFFFFFF
            seconds, fraction = ntp_timestamp(time.time())
            return SenderReport(
                self.sender.ssrc,
                seconds,
                fraction,
                rtp_ts,
                self.packets_sent & 0xFFFFFFFF,
                self.octets_sent & 0xFFFFFFFF,
                blocks,
            )
        return ReceiverReport(self.sender.ssrc, blocks)

    def _send_report(self) -> None:
        self._rtcp_timer = None
        destination = self.rtcp_latch.destination
        if self._rtcp is not None and destination is not None and self.configured:
            report = self._report_packet()
            if isinstance(report, SenderReport):
                sender = (
                    report.ntp_seconds,
                    report.ntp_fraction,
                    report.rtp_timestamp,
                    report.packet_count,
                    report.octet_count,
                )
                data = compound_report(self.sender.ssrc, self.cname, report.reports, sender)
            else:
                data = compound_report(self.sender.ssrc, self.cname, report.reports)
            self._rtcp.sendto(data, destination)
            self._sent_since_report = False
        self._schedule_rtcp()

    # --- quality ----------------------------------------------------------------------------

    def quality(self) -> LegQuality:
        now = self._loop.time()
        stats = self.stats
        snapshot = stats.snapshot() if stats is not None else None
        remote = self._remote
        expected = snapshot.expected if snapshot else 0
        lost = snapshot.lost if snapshot else 0
        return LegQuality(
            packets_received=snapshot.received if snapshot else 0,
            packets_expected=expected,
            packets_lost=lost,
            fraction_lost=max(0.0, lost / expected) if expected > 0 else 0.0,
            jitter_ms=snapshot.jitter_ms if snapshot else 0.0,
            packets_sent=self.packets_sent,
            octets_sent=self.octets_sent,
            remote_fraction_lost=remote.fraction_lost if remote else None,
            remote_cumulative_lost=remote.cumulative_lost if remote else None,
            remote_jitter_ms=remote.jitter_ms if remote else None,
            rtt_ms=remote.rtt_ms if remote else None,
            latched_to=self.latch.latched,
            seconds_since_last_packet=(
                None if self.last_received_at is None else now - self.last_received_at
            ),
        )
