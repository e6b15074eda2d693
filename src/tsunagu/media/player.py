"""Prompt playback: sequences of prompts cut into 20 ms frames, served by the shared clock.

A playback is *not* a task: it is a :class:`Playback` object the leg feeds from the shared
20 ms tick (:mod:`tsunagu.media.clock`), so a hundred callers listening to music on hold
cost one timer, not a hundred. :class:`Playout` is the sans-IO core — it only knows how to
cut the next frame out of a list of encoded clips — and is what the unit tests drive.

Frames are cut across item boundaries ("you are caller number" runs straight into "3"
with no padding in between); only the very last frame of a non-looping sequence is padded
with the codec's silence code. Pacing is the clock's job: one frame per tick, up to
:data:`~tsunagu.media.clock.MAX_CATCH_UP` after a stall, and frames the clock skipped are
skipped in the audio too, so the prompt stays in real time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tsunagu.media.clock import FRAME_MS
from tsunagu.media.g711 import ALAW_SILENCE, ULAW_SILENCE
from tsunagu.media.interface import PlayEnd, PlayItem, PlayOutcome, Say
from tsunagu.media.prompts import PromptCache, PromptError
from tsunagu.media.rtp import MediaError
from tsunagu.media.sdp import Codec

__all__ = ["Playback", "Playout", "resolve_items", "silence_code"]

logger = logging.getLogger(__name__)


def silence_code(codec: Codec) -> int:
    """The G.711 octet for silence in ``codec``'s law."""
    return ALAW_SILENCE if codec.name.upper() == "PCMA" else ULAW_SILENCE


class Playout:
    """Cuts frames of ``frame_bytes`` octets out of encoded clips, in order, maybe looping."""

    __slots__ = ("_clip", "_clips", "_offset", "frame_bytes", "frames", "loop", "silence")

    def __init__(
        self,
        clips: Sequence[bytes],
        *,
        loop: bool = False,
        frame_bytes: int = 8 * FRAME_MS,
        silence: int = ULAW_SILENCE,
    ) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        # Empty clips contribute nothing; dropping them keeps the loop below simple and
        # makes "loop over nothing" finish at once instead of spinning.
        self._clips = [clip for clip in clips if clip]
        self.loop = loop
        self.frame_bytes = frame_bytes
        self.silence = silence
        self._clip = 0
        self._offset = 0
        self.frames = 0  # frames produced or skipped so far

    @property
    def finished(self) -> bool:
        return self._clip >= len(self._clips)

    @property
    def total_bytes(self) -> int:
        return sum(len(clip) for clip in self._clips)

    def _take(self, size: int) -> bytes:
        """Up to ``size`` octets from the current position, across clip boundaries."""
        parts: list[bytes] = []
        need = size
        while need and not self.finished:
            clip = self._clips[self._clip]
            chunk = clip[self._offset : self._offset + need]
            parts.append(chunk)
            need -= len(chunk)
            self._offset += len(chunk)
            if self._offset >= len(clip):
                self._clip += 1
                self._offset = 0
                if self.loop and self._clip >= len(self._clips):
                    self._clip = 0
        return b"".join(parts)

    def next_frame(self) -> bytes | None:
        """The next frame, or None once a non-looping sequence is exhausted."""
        if self.finished:
            return None
        frame = self._take(self.frame_bytes)
        self.frames += 1
        if len(frame) < self.frame_bytes:
            frame += bytes((self.silence,)) * (self.frame_bytes - len(frame))
        return frame

    def skip(self, frames: int) -> None:
        """Advance by ``frames`` frames without producing them (the clock fell behind)."""
        for _ in range(frames):
            if self.finished:
                return
            self._take(self.frame_bytes)
            self.frames += 1


class Playback:
    """One ``play()`` in progress: its :class:`Playout`, options and the outcome future.

    The leg calls :meth:`advance` on every clock tick and :meth:`finish` when something
    ends it (stop, barge-in, close). Whoever awaits :attr:`outcome` gets a
    :class:`PlayOutcome` — never an exception — so a flow can branch on how it ended.
    """

    __slots__ = ("barge_in", "codec", "outcome", "playout")

    def __init__(self, playout: Playout, codec: Codec, *, barge_in: bool) -> None:
        self.playout = playout
        self.codec = codec
        self.barge_in = barge_in
        self.outcome: asyncio.Future[PlayOutcome] = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        return self.outcome.done()

    @property
    def played_s(self) -> float:
        return self.playout.frames * FRAME_MS / 1000

    def advance(self, frames: int, skipped: int, send: Callable[[bytes], None]) -> bool:
        """Send ``frames`` frames (skip ``skipped``); returns False once the playout is over."""
        for _ in range(frames):
            frame = self.playout.next_frame()
            if frame is None:
                self.finish(PlayEnd.COMPLETED)
                return False
            send(frame)
        if skipped:
            self.playout.skip(skipped)
        if self.playout.finished:
            self.finish(PlayEnd.COMPLETED)
            return False
        return True

    def finish(self, end: PlayEnd, *, digit: str | None = None, error: str | None = None) -> None:
        if not self.outcome.done():
            self.outcome.set_result(PlayOutcome(end, self.played_s, digit, error))


async def resolve_items(
    items: Sequence[PlayItem],
    codec: Codec,
    *,
    prompts: PromptCache,
    prompt_dir: Path | None,
    render: Callable[[Say], Awaitable[Path]] | None,
) -> list[bytes]:
    """Load (and render, for :class:`Say`) every item, concurrently, as ``codec`` bytes.

    Raises :class:`~tsunagu.media.rtp.MediaError` (a :class:`PromptError` or TTS error)
    naming the first item that failed.
    """

    async def one(item: PlayItem) -> bytes:
        if isinstance(item, Say):
            if render is None:
                raise PromptError("text-to-speech is not configured")
            path = await render(item)
        else:
            path = Path(item)
            if not path.is_absolute() and prompt_dir is not None:
                path = prompt_dir / path
        return await prompts.load(path, codec)

    results = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
    clips: list[bytes] = []
    for item, result in zip(items, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, MediaError) or not isinstance(result, Exception):
                raise result  # our own errors, and cancellation, as they are
            raise PromptError(f"{item!r}: {result}") from result
        clips.append(result)
    return clips
