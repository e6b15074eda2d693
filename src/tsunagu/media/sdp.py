"""SDP offer/answer for audio (RFC 3264), on the session descriptions of RFC 4566.

Every call Tsunagu answers or places agrees its media here: which G.711 law, which
payload type carries DTMF (RFC 4733), where to send RTP, and whether the peer has put us
on hold.

The description types themselves (parse/``__bytes__``, RFC 4566/8866) live in
:mod:`tsunagu.media.sdp_description`: they say what a body contains, this module decides
what we agree to. Every public name of that module is re-exported here, so
``from tsunagu.media.sdp import X`` works for both halves.

Errors: :class:`SdpParseError` (a malformed body; answer 400) and
:class:`SdpNegotiationError` (a well-formed offer we cannot accept; answer 488, RFC 3261
§21.4.26, with a reason naming what was offered so the peer's engineer can see why).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from tsunagu.media.rtp import MediaLocalError, MediaPeerError
from tsunagu.media.sdp_description import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SdpParseError,
    SessionDescription,
    _uint,
)

__all__ = [
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Answer",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "LocalSdpSession",
    "MediaDescription",
    "NegotiatedMedia",
    "Origin",
    "RtpMap",
    "SdpNegotiationError",
    "SdpParseError",
    "SessionDescription",
    "accept_answer",
    "build_offer",
    "negotiate_answer",
    "offers_hold",
]

TELEPHONE_EVENT = "telephone-event"
DEFAULT_PTIME = 20
# RTP profiles we can answer (plain RTP; AVPF only adds feedback we may ignore).
_RTP_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF"})
_SUPPORTED_EVENTS = range(17)  # RFC 4733 §3.2: DTMF 0-15 and flash (16)


class SdpNegotiationError(MediaPeerError):
    """An offer or answer is well-formed but has nothing we can use (RFC 3264 §6).

    ``status`` is 488 Not Acceptable Here (RFC 3261 §21.4.26); ``reason`` names what was
    offered, for a Warning header or the logs.
    """

    def __init__(self, reason: str, status: int = 488) -> None:
        super().__init__(reason, status)


@dataclass(frozen=True, slots=True)
class Codec:
    """An audio encoding we can speak, and the payload type it goes by."""

    name: str
    clock_rate: int
    payload_type: int

    def matches(self, rtpmap: RtpMap) -> bool:
        # RFC 4566 §6 / RFC 3551 §3: encoding names are case-insensitive.
        return (
            rtpmap.encoding.casefold() == self.name.casefold()
            and rtpmap.clock_rate == self.clock_rate
            and rtpmap.mono
        )


PCMU = Codec("PCMU", 8000, 0)
PCMA = Codec("PCMA", 8000, 8)


# --- Offer/answer (RFC 3264) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """What an offer/answer exchange agreed for the audio stream, from our side.

    ``direction`` is what *we* do (``sends``: we may send RTP; ``receives``: the peer
    will send to us). ``remote_hold`` says the peer asked us to stop sending to it
    (``a=sendonly``/``a=inactive`` or ``c=0.0.0.0``, RFC 3264 §8.4).
    """

    codec: Codec
    telephone_event: int | None
    remote_address: str
    remote_port: int
    remote_rtcp_port: int
    direction: Direction
    remote_hold: bool
    ptime: int
    media_index: int
    events: str | None = None  # the RFC 4733 event list agreed, e.g. "0-16"


@dataclass(frozen=True, slots=True)
class Answer:
    """Our answer to an offer: the SDP to send and what it commits us to."""

    sdp: SessionDescription
    media: NegotiatedMedia


def _random_bits(bits: int) -> int:
    return secrets.randbits(bits)


class LocalSdpSession:
    """Our ``o=`` line across the offers and answers of one dialog (RFC 3264 §8).

    Each description we emit keeps the same origin; the version increments by one
    exactly when the content changes, so a re-INVITE that only refreshes the session
    repeats the previous version and a hold re-offer gets the next one.
    """

    def __init__(
        self,
        address: str,
        *,
        username: str = "tsunagu",
        session_name: str = "Tsunagu",
        session_id: str | None = None,
        randbits: Callable[[int], int] = _random_bits,
    ) -> None:
        # RFC 4566 §5.2 asks for a session id unlikely to repeat; 62 random bits will do.
        identifier = str(randbits(62)) if session_id is None else session_id
        self.origin = Origin(
            username, identifier, 1, address, "IN", "IP6" if ":" in address else "IP4"
        )
        self.session_name = session_name
        self._last: str | None = None

    def describe(self, media: list[MediaDescription]) -> SessionDescription:
        """A description of ``media`` with our origin, versioned per RFC 3264 §8."""
        description = SessionDescription(
            origin=replace(self.origin),
            session_name=self.session_name,
            connection=Connection.for_address(self.origin.address),
            media=media,
        )
        content = str(description)
        if self._last is not None and content != self._last:
            self.origin = self.origin.next_version()
            description.origin = replace(self.origin)
            content = str(description)
        self._last = content
        return description


def _event_set(fmtp: str | None) -> set[int]:
    """Events named by a telephone-event fmtp such as ``0-15,66`` (RFC 4733 §2.4.1)."""
    if fmtp is None:
        return set(range(16))  # §2.4.1: no fmtp means DTMF events 0-15
    events: set[int] = set()
    for part in fmtp.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        try:
            first = _uint(low, "event")
            last = _uint(high, "event") if dash else first
        except SdpParseError:
            continue  # an odd entry costs the peer that entry, not the call
        events.update(range(first, min(last, 255) + 1))
    return events


def _event_ranges(events: Iterable[int]) -> str:
    ordered = sorted(events)
    ranges: list[str] = []
    start = previous = ordered[0]
    for event in [*ordered[1:], None]:
        if event is not None and event == previous + 1:
            previous = event
            continue
        ranges.append(str(start) if start == previous else f"{start}-{previous}")
        if event is not None:
            start = previous = event
    return ",".join(ranges)


def _telephone_event(media: MediaDescription, clock_rate: int) -> tuple[int, str] | None:
    """The offered telephone-event payload type at ``clock_rate`` and the events we share."""
    for payload_type in _numeric_formats(media):
        rtpmap = _encoding(media, payload_type)
        if (
            rtpmap is not None
            and rtpmap.encoding.casefold() == TELEPHONE_EVENT
            and rtpmap.clock_rate == clock_rate
        ):
            shared = _event_set(media.fmtp(payload_type)) & set(_SUPPORTED_EVENTS)
            if shared:
                return payload_type, _event_ranges(shared)
    return None


def _encoding(media: MediaDescription, payload_type: int) -> RtpMap | None:
    """The encoding of an offered format; a malformed rtpmap makes just that format unknown.

    Refusing the whole call over an unparseable rtpmap of a codec we would not pick anyway
    would punish the caller for a detail that does not matter to us.
    """
    try:
        return media.rtpmap(payload_type)
    except SdpParseError:
        return None


def _numeric_formats(media: MediaDescription) -> list[int]:
    return [int(fmt) for fmt in media.formats if fmt.isascii() and fmt.isdigit() and int(fmt) < 128]


def _describe_format(media: MediaDescription, payload_type: int) -> str:
    rtpmap = _encoding(media, payload_type)
    return f"{payload_type}" if rtpmap is None else f"{rtpmap.encoding}/{rtpmap.clock_rate}"


def _rejected(media: MediaDescription) -> MediaDescription:
    """RFC 3264 §6: a rejected stream is answered with port zero and the offer's formats."""
    return MediaDescription(media.media, 0, media.proto, list(media.formats) or ["0"])


def _audio_section(
    port: int,
    codecs: Sequence[Codec],
    *,
    proto: str = "RTP/AVP",
    telephone_event: int | None,
    events: str = "0-16",
    ptime: int,
    direction: Direction,
) -> MediaDescription:
    formats = [str(codec.payload_type) for codec in codecs]
    attributes = [Attribute("rtpmap", f"{c.payload_type} {c.name}/{c.clock_rate}") for c in codecs]
    if telephone_event is not None:
        formats.append(str(telephone_event))
        attributes.append(Attribute("rtpmap", f"{telephone_event} {TELEPHONE_EVENT}/8000"))
        attributes.append(Attribute("fmtp", f"{telephone_event} {events}"))
    attributes.append(Attribute("ptime", str(ptime)))
    attributes.append(Attribute(direction.value))
    return MediaDescription("audio", port, proto, formats, attributes=attributes)


def build_offer(
    local_address: str,
    local_port: int,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephone_event: int | None = 101,
    *,
    direction: Direction = Direction.SENDRECV,
    ptime: int = DEFAULT_PTIME,
    session: LocalSdpSession | None = None,
) -> SessionDescription:
    """An audio offer (RFC 3264 §5) listing ``codecs`` in our order of preference.

    Pass the dialog's ``session`` for re-offers (hold, resume) so the origin is kept and
    its version increments (RFC 3264 §8).
    """
    if not codecs:
        raise MediaLocalError("an offer needs at least one codec")
    session = session or LocalSdpSession(local_address)
    media = _audio_section(
        local_port, codecs, telephone_event=telephone_event, ptime=ptime, direction=direction
    )
    return session.describe([media])


def _choose_codec(media: MediaDescription, supported: Sequence[Codec]) -> Codec | None:
    """The first format in the *offerer's* order that we support (RFC 3264 §6.1)."""
    for payload_type in _numeric_formats(media):
        rtpmap = _encoding(media, payload_type)
        if rtpmap is None:
            continue
        for codec in supported:
            if codec.matches(rtpmap):
                return Codec(codec.name, codec.clock_rate, payload_type)
    return None


def _agree(
    peer: SessionDescription,
    media: MediaDescription,
    index: int,
    codec: Codec,
    *,
    local: Direction,
    ptime: int,
) -> NegotiatedMedia:
    """Combine the peer's view of stream ``index`` with ours (RFC 3264 §6.1, §8.4)."""
    connection = peer.effective_connection(media)
    if connection is None:
        raise SdpParseError(f"m={media.media} (stream {index}) has no c= line (RFC 4566 §5.7)")
    theirs = peer.effective_direction(media)
    if connection.is_hold:
        # c=0.0.0.0 (RFC 3264 §8.4): the peer wants nothing sent to it.
        theirs = Direction.from_flags(send=theirs.sends, receive=False)
    event = _telephone_event(media, codec.clock_rate)
    return NegotiatedMedia(
        codec=codec,
        telephone_event=None if event is None else event[0],
        remote_address=connection.host,
        remote_port=media.port,
        remote_rtcp_port=media.rtcp_port or media.port + 1,
        # We send only if the peer receives, and receive only if it sends (§6.1).
        direction=Direction.from_flags(
            send=theirs.receives and local.sends, receive=theirs.sends and local.receives
        ),
        remote_hold=not theirs.receives,
        ptime=ptime,
        media_index=index,
        events=None if event is None else event[1],
    )


def offers_hold(offer: SessionDescription) -> bool:
    """Whether ``offer`` puts us on hold: its first active audio stream will not receive
    (``a=sendonly``/``a=inactive``, or the RFC 2543 ``c=0.0.0.0``; RFC 3264 §8.4)."""
    for media in offer.media:
        if media.media != "audio" or media.port == 0:
            continue
        connection = offer.effective_connection(media)
        return not offer.effective_direction(media).receives or (
            connection is not None and connection.is_hold
        )
    return False


def negotiate_answer(
    offer: SessionDescription,
    local_address: str,
    local_port: int,
    supported: Sequence[Codec] = (PCMU, PCMA),
    telephone_event: bool = True,
    *,
    direction: Direction = Direction.SENDRECV,
    ptime: int = DEFAULT_PTIME,
    session: LocalSdpSession | None = None,
) -> Answer:
    """Answer ``offer`` with one audio stream, or raise :class:`SdpNegotiationError` (488).

    RFC 3264 §6: the answer has one ``m=`` line per offered stream, in order; the first
    usable audio stream is accepted with the first codec *in the offerer's order* that we
    support (plus telephone-event at the offered payload type); every other stream is
    rejected with port zero. ``direction`` is what we want locally (e.g. ``SENDONLY`` when
    we hold the peer); the answer's direction is that intersected with the offer's,
    mirrored (§6.1: offer sendonly → answer recvonly, inactive → inactive). The offer's
    ``a=ptime`` is kept (bounded by ``a=maxptime``); otherwise ``ptime`` is used.
    """
    session = session or LocalSdpSession(local_address)
    sections: list[MediaDescription] = []
    agreed: NegotiatedMedia | None = None
    problems: list[str] = []
    for index, media in enumerate(offer.media):
        codec = None
        if media.media != "audio":
            problems.append(f"m={media.media} {media.proto} is not audio")
        elif agreed is not None or media.port == 0:
            pass
        elif media.proto.upper() not in _RTP_PROFILES:
            problems.append(f"audio over {media.proto} is not supported (plain RTP/AVP only)")
        elif (codec := _choose_codec(media, supported)) is None:
            offered = ", ".join(_describe_format(media, pt) for pt in _numeric_formats(media))
            wanted = ", ".join(f"{c.name}/{c.clock_rate}" for c in supported)
            problems.append(f"audio codecs offered [{offered or 'none'}], we accept [{wanted}]")
        if codec is None:
            sections.append(_rejected(media))
            continue
        packetisation = media.ptime or ptime
        if media.maxptime is not None:
            packetisation = min(packetisation, media.maxptime)
        agreed = _agree(offer, media, index, codec, local=direction, ptime=packetisation)
        if not telephone_event:
            agreed = replace(agreed, telephone_event=None, events=None)
        sections.append(
            _audio_section(
                local_port,
                [codec],
                proto=media.proto,
                telephone_event=agreed.telephone_event,
                events=agreed.events or "0-15",
                ptime=packetisation,
                direction=agreed.direction,
            )
        )
    if agreed is None:
        if not any(m.media == "audio" for m in offer.media):
            problems.append("no audio stream offered")
        elif all(m.port == 0 for m in offer.media if m.media == "audio"):
            problems.append("every audio stream offered has port 0")
        raise SdpNegotiationError("; ".join(problems))
    return Answer(session.describe(sections), agreed)


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """What the peer's ``answer`` to our ``offer`` commits us to (RFC 3264 §7).

    Raises :class:`SdpNegotiationError` when the answer does not match the offer or
    rejects our audio stream; a SIP layer then ends the call it was trying to set up.
    """
    if len(answer.media) != len(offer.media):
        raise SdpNegotiationError(
            f"answer has {len(answer.media)} m= lines, the offer had {len(offer.media)}"
            " (RFC 3264 §6)"
        )
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media != "audio" or ours.port == 0:
            continue
        if theirs.port == 0:
            raise SdpNegotiationError(f"the answer rejected our audio stream {index}")
        our_codecs = [
            Codec(rtpmap.encoding, rtpmap.clock_rate, pt)
            for pt in _numeric_formats(ours)
            if (rtpmap := _encoding(ours, pt)) is not None
            and rtpmap.encoding.casefold() != TELEPHONE_EVENT
        ]
        codec = _choose_codec(theirs, our_codecs)
        if codec is None:
            offered = ", ".join(_describe_format(theirs, pt) for pt in _numeric_formats(theirs))
            raise SdpNegotiationError(f"the answer chose no codec we offered: [{offered}]")
        ptime = theirs.ptime or ours.ptime or DEFAULT_PTIME
        return _agree(
            answer, theirs, index, codec, local=offer.effective_direction(ours), ptime=ptime
        )
    raise SdpNegotiationError("our offer had no audio stream to accept")
