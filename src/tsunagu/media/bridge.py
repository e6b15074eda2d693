"""Bridging two legs: forward each packet on arrival, renumbered as the other leg's stream.

A bridge is what a caller and an agent talk through. It keeps no buffer — each packet is
sent on within the datagram callback that received it, so the bridge adds no delay — and
it never decodes audio except to transcode: PCMU↔PCMA is a 256-entry ``bytes.translate``
(:mod:`tsunagu.media.g711`).

Renumbering (:class:`StreamRewriter`, sans-IO): each leg has *one* outgoing RTP stream
(one SSRC, RFC 3550 §8) whether it carries our prompts, our DTMF or the other party's
voice; a phone that sees a new SSRC or a sequence jump in the middle of a call may drop
audio or reset its jitter buffer. So forwarded packets get the outgoing leg's SSRC, the
next sequence number of its :class:`~tsunagu.media.rtp.RtpSender`, and a timestamp mapped
by a fixed offset from the incoming one. The offset is fixed per incoming SSRC so gaps in
the source (DTX, loss) stay gaps; a new incoming SSRC, or a jump of the source's clock
beyond what DTX explains, re-anchors the offset at the sender's current position and
sets the marker bit (RFC 3551 §4.1: a new talkspurt).

DTMF: telephone-event packets (RFC 4733) are forwarded the same way with the other leg's
negotiated event payload type when the bridge relays DTMF; whether digits also reach
call control is the bridge's :class:`~tsunagu.media.interface.DtmfMode`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tsunagu.media import g711
from tsunagu.media.dtmf import TelephoneEvent
from tsunagu.media.interface import Channel, DtmfMode
from tsunagu.media.rtp import RtpPacket, RtpSender

if TYPE_CHECKING:
    from tsunagu.media.leg import LocalMediaLeg
    from tsunagu.media.recorder import Recorder

__all__ = ["Bridge", "StreamRewriter"]

logger = logging.getLogger(__name__)

#: A source clock moving back by more than this (1 s), or forward by more than
#: MAX_FORWARD_JUMP (30 s of silence suppression), is a restart, not a gap.
MAX_BACKWARD_JUMP = 8000
MAX_FORWARD_JUMP = 30 * 8000


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class StreamRewriter:
    """Maps packets of incoming streams onto one outgoing :class:`RtpSender`'s numbering."""

    __slots__ = ("_in_ssrc", "_offset", "anchors", "sender")

    def __init__(self, sender: RtpSender) -> None:
        self.sender = sender
        self._in_ssrc: int | None = None
        self._offset = 0
        self.anchors = 0

    def rewrite(
        self, packet: RtpPacket, payload_type: int, payload: bytes, samples: int
    ) -> RtpPacket:
        """The outgoing packet for an incoming ``packet`` carrying ``samples`` of media,
        with ``payload`` (maybe transcoded) and our ``payload_type``.

        For a telephone-event ``samples`` is its duration so far: its timestamp marks the
        event's start (RFC 4733 §2.3.5) and the stream's clock moves past it.
        """
        sender = self.sender
        ssrc = packet.ssrc
        timestamp = packet.timestamp
        marker = packet.marker
        mapped = (timestamp + self._offset) & 0xFFFFFFFF
        if self._in_ssrc != ssrc or not (
            -MAX_BACKWARD_JUMP <= _signed32(mapped - sender.timestamp) <= MAX_FORWARD_JUMP
        ):
            self._in_ssrc = ssrc
            self._offset = (sender.timestamp - timestamp) & 0xFFFFFFFF
            mapped = sender.timestamp
            marker = True
            self.anchors += 1
        end = (mapped + samples) & 0xFFFFFFFF
        if _signed32(end - sender.timestamp) > 0:
            sender.timestamp = end  # keep the media clock at the end of what was sent
        return RtpPacket(payload_type, sender.next_sequence(), mapped, sender.ssrc, payload, marker)


class Bridge:
    """Media between leg ``a`` (the caller: LEFT) and leg ``b`` (the agent: RIGHT)."""

    def __init__(
        self,
        a: LocalMediaLeg,
        b: LocalMediaLeg,
        recorder: Recorder | None,
        dtmf: DtmfMode,
    ) -> None:
        self.a = a
        self.b = b
        self.recorder = recorder
        self.dtmf = dtmf
        self._rewriters = {
            id(a): StreamRewriter(a.session.sender),
            id(b): StreamRewriter(b.session.sender),
        }
        self.forwarded = 0
        self.dropped = 0

    def channel_of(self, leg: LocalMediaLeg) -> Channel:
        return Channel.LEFT if leg is self.a else Channel.RIGHT

    def other(self, leg: LocalMediaLeg) -> LocalMediaLeg:
        return self.b if leg is self.a else self.a

    def forward_audio(self, source: LocalMediaLeg, packet: RtpPacket, now: float) -> None:
        """Relay one audio packet that ``source`` received to the other leg, on arrival."""
        target = self.b if source is self.a else self.a
        source_codec = source.session.codec.name
        for recorder, channel in target.taps_out:
            recorder.feed(
                channel, packet.ssrc, packet.timestamp, packet.payload, codec=source_codec, now=now
            )
        session = target.session
        dtmf = session.dtmf_sender
        if not session.can_send or (dtmf is not None and dtmf.active):
            self.dropped += 1
            return
        payload = packet.payload
        target_codec = session.codec.name
        if source_codec != target_codec:
            # Our legs only ever agree PCMU or PCMA (the engine offers and accepts no other).
            if target_codec == "PCMA":
                payload = g711.transcode_ulaw_to_alaw(payload)
            else:
                payload = g711.transcode_alaw_to_ulaw(payload)
        out = self._rewriters[id(target)].rewrite(packet, session.audio_pt, payload, len(payload))
        session.send_packet(out)
        self.forwarded += 1

    def forward_event(self, source: LocalMediaLeg, packet: RtpPacket) -> None:
        """Relay one RFC 4733 telephone-event packet, if this bridge relays DTMF."""
        if not self.dtmf.relays:
            return
        target = self.other(source)
        session = target.session
        if session.event_pt is None or not session.can_send:
            return
        # Advance the outgoing clock over the event's duration so far: the next event we
        # send (relayed or generated) must not reuse this one's timestamp, which is how a
        # receiver tells presses apart (RFC 4733 §2.5.2).
        duration = TelephoneEvent.parse(packet.payload).duration
        out = self._rewriters[id(target)].rewrite(
            packet, session.event_pt, packet.payload, duration
        )
        session.send_packet(out)
