"""The in-process :class:`~tsunagu.media.interface.MediaLeg`: one RTP session and what it does.

A leg ties together an :class:`~tsunagu.media.session.RtpSession` (sockets, latching,
stats, RTCP), SDP negotiation for its dialog, prompt playback, DTMF in and out, recording
taps and, when bridged, the :class:`~tsunagu.media.bridge.Bridge`. It is a
:class:`~tsunagu.media.clock.Ticker`: while it is playing or sending DTMF it is served by
the engine's shared 20 ms clock, and it unsubscribes as soon as it has nothing to send.

Digits: every key press (RFC 4733 or SIP INFO) goes to one bounded queue that
``collect_digits()`` and ``digits()`` read. Digits typed before anyone listens are kept
(type-ahead) up to :data:`MAX_TYPE_AHEAD`, oldest dropped first. A barge-in playback ends
on the first digit *without consuming it*, so the menu's next ``collect_digits()`` sees
it; a barge-in playback started while digits are already waiting ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tsunagu.media.bridge import Bridge
from tsunagu.media.clock import FRAME_MS, MediaClock, Tick
from tsunagu.media.dtmf import DigitReceived, event_for_digit, parse_info_dtmf
from tsunagu.media.g711 import transcode_alaw_to_ulaw, transcode_ulaw_to_alaw
from tsunagu.media.interface import (
    Channel,
    DtmfMode,
    LegQuality,
    MediaLeg,
    PlayEnd,
    PlayItem,
    PlayOutcome,
    Recording,
)
from tsunagu.media.player import Playback, Playout, resolve_items, silence_code
from tsunagu.media.recorder import Recorder
from tsunagu.media.rtp import MediaError, MediaLocalError, RtpPacket
from tsunagu.media.sdp import (
    Direction,
    LocalSdpSession,
    NegotiatedMedia,
    SessionDescription,
    accept_answer,
    build_offer,
    negotiate_answer,
)
from tsunagu.media.session import RtpSession

if TYPE_CHECKING:
    from tsunagu.media.engine import LocalMediaEngine

__all__ = ["MAX_TYPE_AHEAD", "DigitBuffer", "LocalMediaLeg"]

logger = logging.getLogger(__name__)

MAX_TYPE_AHEAD = 32
#: Pause between digits we send (RFC 4733 leaves it to the sender; 50 ms like most phones).
INTER_DIGIT_GAP_S = 0.05
DEFAULT_EVENT_PT = 101

Tap = tuple[Recorder, Channel]


class DigitBuffer:
    """Key presses waiting for a reader: bounded (oldest dropped), closable, peekable."""

    def __init__(self, maxlen: int = MAX_TYPE_AHEAD) -> None:
        self._items: deque[DigitReceived] = deque(maxlen=maxlen)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, digit: DigitReceived) -> None:
        self._items.append(digit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def peek(self) -> DigitReceived | None:
        return self._items[0] if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def close(self) -> None:
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> DigitReceived | None:
        """The oldest digit, waiting for one; None once closed and empty."""
        while not self._items:
            if self.closed:
                return None
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                # Cancelled (a timeout): pass a wake-up we may have taken to the next reader.
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake()
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        return self._items.popleft()


@dataclass(slots=True)
class _DtmfJob:
    digits: deque[str]
    duration_ms: int
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class LocalMediaLeg:
    """A leg of the in-process engine; see :class:`~tsunagu.media.interface.MediaLeg`."""

    def __init__(
        self,
        engine: LocalMediaEngine,
        interaction_id: str,
        leg_id: str,
        session: RtpSession,
        clock: MediaClock,
    ) -> None:
        self._engine = engine
        self._interaction_id = interaction_id
        self._leg_id = leg_id
        self.session = session
        self._clock = clock
        self._sdp = LocalSdpSession(engine.advertised_address)
        self._offer: SessionDescription | None = None
        self._negotiated: NegotiatedMedia | None = None
        self._direction = Direction.SENDRECV
        self._playback: Playback | None = None
        self._play_generation = 0
        self._digits = DigitBuffer()
        self._dtmf_jobs: deque[_DtmfJob] = deque()
        self._dtmf_next_start = 0.0
        self._bridge: Bridge | None = None
        self._recording: Recorder | None = None
        self.taps_in: list[Tap] = []
        self.taps_out: list[Tap] = []
        self.closed = False
        session.on_audio = self._on_audio
        session.on_event = self._on_event
        session.on_digit = self._on_digit

    def __repr__(self) -> str:
        return f"<LocalMediaLeg {self._interaction_id}/{self._leg_id} port {self.local_port}>"

    # --- identity ---------------------------------------------------------------------------

    @property
    def interaction_id(self) -> str:
        return self._interaction_id

    @property
    def leg_id(self) -> str:
        return self._leg_id

    @property
    def local_address(self) -> str:
        return self._engine.advertised_address

    @property
    def local_port(self) -> int:
        return self.session.local_port

    @property
    def negotiated(self) -> NegotiatedMedia | None:
        return self._negotiated

    # --- SDP --------------------------------------------------------------------------------

    def _apply(self, media: NegotiatedMedia) -> None:
        self._negotiated = media
        self.session.configure(media)
        logger.debug(
            "%r: %s pt %d, events %s, %s, peer %s:%d",
            self,
            media.codec.name,
            media.codec.payload_type,
            media.telephone_event,
            media.direction.value,
            media.remote_address,
            media.remote_port,
        )

    async def answer(
        self, offer: SessionDescription, *, direction: Direction = Direction.SENDRECV
    ) -> SessionDescription:
        self._check_open()
        result = negotiate_answer(
            offer,
            self.local_address,
            self.local_port,
            self._engine.config.codecs,
            True,
            direction=direction,
            session=self._sdp,
        )
        self._direction = direction
        self._apply(result.media)
        return result.sdp

    async def offer(self, *, direction: Direction = Direction.SENDRECV) -> SessionDescription:
        self._check_open()
        self._offer = build_offer(
            self.local_address,
            self.local_port,
            self._engine.config.codecs,
            DEFAULT_EVENT_PT,
            direction=direction,
            session=self._sdp,
        )
        self._direction = direction
        return self._offer

    async def accept_answer(self, answer: SessionDescription) -> NegotiatedMedia:
        self._check_open()
        if self._offer is None:
            raise MediaLocalError("accept_answer() without a previous offer()")
        media = accept_answer(self._offer, answer)
        self._apply(media)
        return media

    async def update_remote(self, offer: SessionDescription) -> SessionDescription:
        """A re-INVITE's offer: hold (``sendonly``/``inactive``/``c=0.0.0.0``), resume, or a
        new address (which unlatches). Our own wish (the last ``direction`` we asked for)
        is kept."""
        return await self.answer(offer, direction=self._direction)

    # --- playback ---------------------------------------------------------------------------

    async def play(
        self, items: Sequence[PlayItem], *, barge_in: bool = False, loop: bool = False
    ) -> PlayOutcome:
        if self.closed:
            return PlayOutcome(PlayEnd.CLOSED)
        if self._bridge is not None:
            raise MediaLocalError(f"{self!r} is bridged: unbridge it before playing to it")
        self.stop_playback()
        generation = self._play_generation
        codec = self.session.codec
        engine = self._engine
        try:
            clips = await resolve_items(
                items,
                codec,
                prompts=engine.prompts,
                prompt_dir=engine.config.prompt_dir,
                render=engine.tts.render if engine.tts is not None else None,
            )
        except MediaError as exc:
            logger.warning("%r: cannot play %r: %s", self, list(items), exc)
            return PlayOutcome(PlayEnd.FAILED, error=str(exc))
        if self._is_closed():
            return PlayOutcome(PlayEnd.CLOSED)
        if generation != self._play_generation or self._bridge is not None:
            return PlayOutcome(PlayEnd.STOPPED)
        playout = Playout(clips, loop=loop, silence=silence_code(codec))
        playback = Playback(playout, codec, barge_in=barge_in)
        self._playback = playback
        waiting = self._digits.peek()
        if barge_in and waiting is not None:  # typed ahead: barge in at once, keep the digit
            playback.finish(PlayEnd.BARGE_IN, digit=waiting.digit)
        self.session.sender.start_talkspurt()
        self._clock.subscribe(self)
        try:
            return await asyncio.shield(playback.outcome)
        except asyncio.CancelledError:
            playback.finish(PlayEnd.STOPPED)
            raise
        finally:
            if self._playback is playback:
                self._playback = None

    def stop_playback(self) -> None:
        self._play_generation += 1
        playback = self._playback
        if playback is not None:
            playback.finish(PlayEnd.STOPPED)
            self._playback = None

    def _send_played(self, frame: bytes, codec_name: str, now: float) -> None:
        session = self.session
        current = session.codec.name
        if codec_name != current:  # a re-INVITE changed the law mid-prompt
            frame = (
                transcode_ulaw_to_alaw(frame)
                if current == "PCMA"
                else transcode_alaw_to_ulaw(frame)
            )
        for recorder, channel in self.taps_out:
            recorder.feed(
                channel,
                session.sender.ssrc,
                session.sender.timestamp,
                frame,
                codec=current,
                now=now,
            )
        session.send_audio(frame)

    def on_tick(self, tick: Tick) -> None:
        """Served by the shared clock: DTMF to send, then the next prompt frame(s)."""
        session = self.session
        dtmf_busy = bool(self._dtmf_jobs) and self._tick_dtmf(tick.now)
        playback = self._playback
        if playback is not None:
            if playback.done:
                self._playback = playback = None
            elif session.dtmf_sender is None or not session.dtmf_sender.active:
                codec_name = playback.codec.name
                now = tick.now

                def send(frame: bytes) -> None:
                    self._send_played(frame, codec_name, now)

                if not playback.advance(tick.frames, tick.skipped, send):
                    self._playback = playback = None
                elif tick.skipped:
                    session.sender.skip(tick.skipped * 8 * FRAME_MS)
        if playback is None and not dtmf_busy:
            self._clock.unsubscribe(self)

    # --- DTMF out ---------------------------------------------------------------------------

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> None:
        self._check_open()
        if self.session.dtmf_sender is None:
            raise MediaLocalError(f"{self!r}: no telephone-event was negotiated (RFC 4733)")
        for digit in digits:
            event_for_digit(digit)  # raises MediaLocalError for a non-digit, before sending
        if not digits:
            return
        job = _DtmfJob(deque(digits), duration_ms)
        self._dtmf_jobs.append(job)
        self._clock.subscribe(self)
        await asyncio.shield(job.done)

    def _queue_relayed_digit(self, digit: str) -> None:
        """A digit from the bridged leg's SIP INFO, re-sent here as RFC 4733 events."""
        if self.session.dtmf_sender is None or self.closed:
            return
        job = _DtmfJob(deque(digit), 100)
        job.done.add_done_callback(_retrieve)  # nobody awaits a relayed digit
        self._dtmf_jobs.append(job)
        self._clock.subscribe(self)

    def _tick_dtmf(self, now: float) -> bool:
        """Advance outgoing DTMF; whether there is more to send."""
        sender = self.session.dtmf_sender
        if sender is None:
            for job in self._dtmf_jobs:
                if not job.done.done():
                    job.done.set_exception(MediaLocalError("telephone-event no longer negotiated"))
            self._dtmf_jobs.clear()
            return False
        if sender.busy:
            if not self.session.poll_dtmf(now):  # that was the last packet of the digit
                self._dtmf_next_start = now + INTER_DIGIT_GAP_S
            return True
        while self._dtmf_jobs and not self._dtmf_jobs[0].digits:
            job = self._dtmf_jobs.popleft()
            if not job.done.done():
                job.done.set_result(None)
        if not self._dtmf_jobs:
            return False
        if now + 1e-9 >= self._dtmf_next_start:
            job = self._dtmf_jobs[0]
            digit = job.digits.popleft()
            for packet in sender.start(digit, now, job.duration_ms):
                self.session.send_packet(packet)
        return True

    # --- DTMF in ----------------------------------------------------------------------------

    def _on_digit(self, digit: DigitReceived) -> None:
        bridge = self._bridge
        if bridge is not None:
            if digit.method == "info" and bridge.dtmf.relays:
                bridge.other(self)._queue_relayed_digit(digit.digit)
            if not bridge.dtmf.surfaces:
                return
        self._digits.put(digit)
        playback = self._playback
        if playback is not None and playback.barge_in and not playback.done:
            playback.finish(PlayEnd.BARGE_IN, digit=digit.digit)

    def _on_event(self, packet: RtpPacket, now: float) -> None:
        bridge = self._bridge
        if bridge is not None:
            bridge.forward_event(self, packet)

    def feed_info_dtmf(self, content_type: str, body: str | bytes) -> DigitReceived:
        digit = parse_info_dtmf(content_type, body, self._clock.time())
        if not self.closed:
            self._on_digit(digit)
        return digit

    async def collect_digits(
        self,
        max_digits: int,
        timeout_s: float,
        *,
        terminator: str | None = "#",
        inter_digit_timeout_s: float | None = None,
    ) -> str:
        collected: list[str] = []
        timeout = timeout_s
        while len(collected) < max_digits and not self.closed:
            try:
                digit = await asyncio.wait_for(self._digits.get(), timeout)
            except TimeoutError:
                break
            if digit is None:  # the leg closed
                break
            if terminator is not None and digit.digit == terminator:
                break
            collected.append(digit.digit)
            timeout = timeout_s if inter_digit_timeout_s is None else inter_digit_timeout_s
        return "".join(collected)

    async def digits(self) -> AsyncIterator[DigitReceived]:
        while (digit := await self._digits.get()) is not None:
            yield digit

    def flush_digits(self) -> None:
        self._digits.clear()

    # --- audio in, recording and bridging ---------------------------------------------------

    def _on_audio(self, packet: RtpPacket, now: float) -> None:
        taps = self.taps_in
        if taps:
            codec = self.session.codec.name
            for recorder, channel in taps:
                recorder.feed(
                    channel, packet.ssrc, packet.timestamp, packet.payload, codec=codec, now=now
                )
        bridge = self._bridge
        if bridge is not None:
            bridge.forward_audio(self, packet, now)

    def _update_taps(self) -> None:
        taps_in: list[Tap] = []
        taps_out: list[Tap] = []
        bridge = self._bridge
        shared = bridge.recorder if bridge is not None else None
        if shared is not None and bridge is not None:
            taps_in.append((shared, bridge.channel_of(self)))
        own = self._recording
        if own is not None and not own.closed and own is not shared:
            taps_in.append((own, Channel.LEFT))
            taps_out.append((own, Channel.RIGHT))
        self.taps_in = taps_in
        self.taps_out = taps_out

    async def record(self, name: str) -> Recording:
        self._check_open()
        recorder = await self._engine.recorder(name)
        previous = self._recording
        self._recording = recorder
        self._update_taps()
        if previous is not None:
            await previous.stop()
        return recorder

    async def bridge(
        self,
        other: MediaLeg,
        recorder: Recording | None = None,
        *,
        dtmf: DtmfMode = DtmfMode.RELAY,
    ) -> None:
        self._check_open()
        if not isinstance(other, LocalMediaLeg) or other is self or other.closed:
            raise MediaLocalError(f"cannot bridge {self!r} to {other!r}")
        if recorder is not None and not isinstance(recorder, Recorder):
            raise MediaLocalError("the local engine records only with its own Recorder")
        await self.unbridge()
        await other.unbridge()
        self.stop_playback()
        other.stop_playback()
        bridge = Bridge(self, other, recorder, dtmf)
        self._bridge = other._bridge = bridge
        self._update_taps()
        other._update_taps()
        for leg in (self, other):
            leg.session.sender.start_talkspurt()
        logger.info("bridged %r and %r (dtmf %s)", self, other, dtmf.value)

    async def unbridge(self) -> None:
        bridge = self._bridge
        if bridge is None:
            return
        bridge.a._bridge = None
        bridge.b._bridge = None
        bridge.a._update_taps()
        bridge.b._update_taps()
        logger.info("unbridged %r and %r", bridge.a, bridge.b)

    @property
    def bridged_to(self) -> LocalMediaLeg | None:
        bridge = self._bridge
        return None if bridge is None else bridge.other(self)

    async def quality(self) -> LegQuality:
        return self.session.quality()

    # --- closing ----------------------------------------------------------------------------

    def _is_closed(self) -> bool:
        # A method, not the attribute, where an await may have closed the leg meanwhile.
        return self.closed

    def _check_open(self) -> None:
        if self.closed:
            raise MediaLocalError(f"{self!r} is closed")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._play_generation += 1
        if self._playback is not None:
            self._playback.finish(PlayEnd.CLOSED)
            self._playback = None
        for job in self._dtmf_jobs:
            if not job.done.done():
                job.done.set_exception(MediaLocalError(f"{self!r} closed while sending DTMF"))
                job.done.exception()
        self._dtmf_jobs.clear()
        await self.unbridge()
        self._clock.unsubscribe(self)
        self._digits.close()
        self.session.close()
        await self.session.wait_closed()
        if self._recording is not None:
            await self._recording.stop()
        self._engine._forget(self)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a future's exception as retrieved (nobody awaits it)."""
    if not future.cancelled():
        future.exception()
