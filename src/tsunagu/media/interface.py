"""The media interface call control uses: engines open legs; legs negotiate, play, listen,
record and bridge.

Why a Protocol: the in-process engine (:class:`tsunagu.media.engine.LocalMediaEngine`)
carries a few hundred calls per core. Past that the media plane moves to rtpengine, driven
over its ng control protocol, and call control must not notice. So everything call
control may ask of media is here, in terms an rtpengine-backed implementation can satisfy
too: SDP in and out (rtpengine's ``offer``/``answer`` rewrite SDP), play a list of prompts
(``play media``), DTMF as events (its DTMF logging / ``block DTMF``), recording to a named
file (``start recording``), and bridging two legs (``offer``/``answer`` on one call-id).
No method exposes sockets, packets or codecs' byte layouts.

Conventions:

* Anything an external engine would do with a control-protocol round trip is ``async``
  (negotiation, recording control, bridging, quality queries), even where the local engine
  answers at once.
* Every awaitable is cancellable; cancelling ``play()`` stops the playback.
* Digits a caller presses while nobody is collecting are kept (type-ahead, up to a bound)
  and handed to the next ``collect_digits()`` or ``digits()`` reader, as IVR users expect.
* A leg's recording and a bridge's recording are the same kind of object
  (:class:`Recording`), so a call recorded from its IVR part continues in the same file
  once it is bridged to an agent: caller on the LEFT channel, agent (or our prompts) on the
  RIGHT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from tsunagu.media.dtmf import DigitReceived
from tsunagu.media.sdp import Direction, NegotiatedMedia, SessionDescription

__all__ = [
    "Channel",
    "DigitReceived",
    "DtmfMode",
    "LegQuality",
    "MediaEngine",
    "MediaLeg",
    "PlayEnd",
    "PlayItem",
    "PlayOutcome",
    "Recording",
    "Say",
]


@dataclass(frozen=True, slots=True)
class Say:
    """Text to be spoken by TTS, e.g. ``Say("3", "ja")`` after a recorded prompt."""

    text: str
    language: str = "ja"
    voice: str | None = None


#: A prompt: a WAV path (relative paths are looked up in the engine's prompt directory)
#: or text to speak.
PlayItem = str | Path | Say


class PlayEnd(StrEnum):
    """Why a playback ended."""

    COMPLETED = "completed"  # every item played to the end
    STOPPED = "stopped"  # stop_playback(), a newer play(), a bridge, or cancellation
    BARGE_IN = "barge_in"  # the caller pressed a digit and barge-in was asked for
    CLOSED = "closed"  # the leg was closed
    FAILED = "failed"  # a prompt could not be loaded or rendered (see ``error``)


@dataclass(frozen=True, slots=True)
class PlayOutcome:
    """How a ``play()`` ended; ``digit`` is the barge-in digit (it stays in the digit queue
    for the next collector), ``played_s`` how much audio was sent."""

    end: PlayEnd
    played_s: float = 0.0
    digit: str | None = None
    error: str | None = None


class Channel(IntEnum):
    """Stereo recording channels: the caller is always LEFT, the agent (or IVR) RIGHT."""

    LEFT = 0
    RIGHT = 1


class DtmfMode(Enum):
    """What a bridge does with RFC 4733 / INFO digits arriving on one leg.

    RELAY: re-sent as RFC 4733 events to the other leg (an agent's phone hears them, and an
    IVR beyond it can act on them). SURFACE: delivered to this leg's digit queue for call
    control (e.g. a "press * for supervisor" feature) and not forwarded. BOTH: both.
    """

    RELAY = "relay"
    SURFACE = "surface"
    BOTH = "both"

    @property
    def relays(self) -> bool:
        return self is not DtmfMode.SURFACE

    @property
    def surfaces(self) -> bool:
        return self is not DtmfMode.RELAY


@dataclass(frozen=True, slots=True)
class LegQuality:
    """Audio quality of one leg, for dashboards and "unstable audio" alerts.

    ``received``/``expected``/``lost``/``jitter_ms``: what *we* measure of the peer's
    stream (RFC 3550 A.3, A.8). ``remote_*``: what the peer reports about *our* stream in
    its RTCP report blocks (§6.4.1); ``rtt_ms`` from LSR/DLSR. ``None`` until known.
    """

    packets_received: int
    packets_expected: int
    packets_lost: int
    fraction_lost: float
    jitter_ms: float
    packets_sent: int
    octets_sent: int
    remote_fraction_lost: float | None
    remote_cumulative_lost: int | None
    remote_jitter_ms: float | None
    rtt_ms: float | None
    latched_to: tuple[str, int] | None
    seconds_since_last_packet: float | None


@runtime_checkable
class Recording(Protocol):
    """A stereo recording in progress (caller LEFT, agent or IVR RIGHT)."""

    @property
    def path(self) -> Path: ...

    @property
    def paused(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    async def pause(self) -> None:
        """Record silence from now on, never audio (e.g. while a card number is read)."""

    async def resume(self) -> None: ...

    async def stop(self) -> Path:
        """Finish the file (all buffered audio written, header final) and return its path."""


class MediaLeg(Protocol):
    """One call leg's media: one RTP stream to one peer (a caller, an agent, a trunk)."""

    @property
    def interaction_id(self) -> str: ...

    @property
    def leg_id(self) -> str: ...

    @property
    def local_address(self) -> str:
        """The address we advertise in SDP ``c=``."""

    @property
    def local_port(self) -> int:
        """Our RTP port (RTCP is on the next port)."""

    @property
    def negotiated(self) -> NegotiatedMedia | None:
        """What the last offer/answer agreed, or None before negotiation."""

    # --- SDP offer/answer (RFC 3264) -----------------------------------------------------

    async def answer(
        self, offer: SessionDescription, *, direction: Direction = Direction.SENDRECV
    ) -> SessionDescription:
        """Answer the peer's (re-)offer; raises ``SdpNegotiationError`` (answer 488)."""

    async def offer(self, *, direction: Direction = Direction.SENDRECV) -> SessionDescription:
        """Our (re-)offer, for legs we originate or for hold/resume re-INVITEs."""

    async def accept_answer(self, answer: SessionDescription) -> NegotiatedMedia:
        """Apply the peer's answer to our last offer; ``SdpNegotiationError`` if unusable."""

    async def update_remote(self, offer: SessionDescription) -> SessionDescription:
        """Apply a re-INVITE's offer (hold, resume, new address) and return our answer."""

    # --- Prompts and digits --------------------------------------------------------------

    async def play(
        self, items: Sequence[PlayItem], *, barge_in: bool = False, loop: bool = False
    ) -> PlayOutcome:
        """Play items in order (``loop``: again and again, e.g. music on hold)."""

    def stop_playback(self) -> None: ...

    async def collect_digits(
        self,
        max_digits: int,
        timeout_s: float,
        *,
        terminator: str | None = "#",
        inter_digit_timeout_s: float | None = None,
    ) -> str:
        """Up to ``max_digits`` digits, without the terminator; "" if none came in time."""

    def digits(self) -> AsyncIterator[DigitReceived]:
        """Every digit as it arrives (RFC 4733 or SIP INFO), until the leg closes."""

    def flush_digits(self) -> None:
        """Forget digits typed ahead (e.g. before a menu that must not be pre-empted)."""

    def feed_info_dtmf(self, content_type: str, body: str | bytes) -> DigitReceived:
        """A SIP INFO digit (``application/dtmf-relay``); raises ``DtmfParseError`` (415/400)."""

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> None:
        """Send digits as RFC 4733 events (raises if none was negotiated)."""

    # --- Recording and bridging ----------------------------------------------------------

    async def record(self, name: str) -> Recording:
        """Record this leg: what the peer sends LEFT, what we play RIGHT."""

    async def bridge(
        self,
        other: MediaLeg,
        recorder: Recording | None = None,
        *,
        dtmf: DtmfMode = DtmfMode.RELAY,
    ) -> None:
        """Relay media between this leg (the caller, LEFT) and ``other`` (RIGHT)."""

    async def unbridge(self) -> None: ...

    @property
    def bridged_to(self) -> MediaLeg | None: ...

    async def quality(self) -> LegQuality: ...

    async def close(self) -> None:
        """Stop everything, send RTCP BYE, free the ports. Safe to call twice."""


class MediaEngine(Protocol):
    """Where legs and recordings come from."""

    async def open_leg(self, interaction_id: str, leg_id: str) -> MediaLeg:
        """A leg with its own RTP/RTCP ports; raises ``MediaLocalError`` if none is free."""

    async def recorder(self, name: str) -> Recording:
        """A new stereo recording named ``name`` (typically the interaction id)."""

    async def close(self) -> None: ...
