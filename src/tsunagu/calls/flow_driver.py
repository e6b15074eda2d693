"""Runs a contact flow on a call: the sans-IO :class:`~tsunagu.flows.interpreter.FlowRun`
decides, this driver does — plays prompts and collects digits on the caller's media leg,
calls webhooks, and hands queue and transfer decisions to the call.

The run's time cap is enforced here too: every action is awaited no longer than the run's
deadline, and when it passes the run says how to end (REQUIREMENTS §4: an off-hook caller
must never loop forever, whatever the flow says).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tsunagu.calls.webhooks import WebhookClient
from tsunagu.flows.interpreter import (
    Action,
    CallWebhook,
    CollectDigits,
    DigitsCollected,
    DigitsTimedOut,
    EnqueueToQueue,
    FlowEvent,
    FlowRun,
    Hangup,
    Play,
    Played,
    PromptFile,
    PromptItem,
    QueueRefused,
    RecordVoicemail,
    Result,
    TransferFailed,
    TransferToNumber,
    VoicemailRecorded,
)
from tsunagu.media.interface import MediaLeg, PlayEnd, PlayItem, Say

log = logging.getLogger("tsunagu.flows")


class FlowHost(Protocol):
    """What the call offers a flow beyond media."""

    async def enqueue(self, queue: str) -> str | None:
        """Queue the caller; ``None`` if accepted, else the refusal reason."""

    async def transfer_to_number(
        self, number: str, caller_id: str | None, timeout_s: float
    ) -> str | None:
        """Call ``number`` and bridge; ``None`` if connected, else why not."""

    async def record_voicemail(
        self, prompt: list[PlayItem], max_seconds: int, queue: str | None
    ) -> VoicemailRecorded | None:
        """Record a message and leave a callback task for ``queue`` (``None``: the queue
        the caller last waited in); ``None`` if the caller left before saying anything."""

    def flow_events(self, events: list[FlowEvent]) -> None:
        """Timeline entries for the interaction record."""


@dataclass(frozen=True, slots=True)
class FlowOutcome:
    """How the caller left the flow: ``hangup`` (with the flow's reason), ``queued`` or
    ``transferred``."""

    kind: str
    detail: str


def prompt_items(items: tuple[PromptItem, ...]) -> list[PlayItem]:
    out: list[PlayItem] = []
    for item in items:
        if isinstance(item, PromptFile):
            out.append(item.name)
        else:
            out.append(Say(item.text, item.language))
    return out


class FlowDriver:
    def __init__(
        self,
        run: FlowRun,
        leg: MediaLeg,
        host: FlowHost,
        webhooks: WebhookClient,
        clock: Callable[[], datetime],
    ) -> None:
        self.run = run
        self.leg = leg
        self.host = host
        self.webhooks = webhooks
        self.clock = clock

    async def drive(self) -> FlowOutcome:
        action: Action = self.run.start(self.clock())
        while True:
            self.host.flow_events(self.run.pop_events())
            if isinstance(action, Hangup):
                return FlowOutcome("hangup", action.reason)
            if isinstance(action, EnqueueToQueue):
                refusal = await self.host.enqueue(action.queue)
                if refusal is None:
                    self.run.end("queued", self.clock())
                    self.host.flow_events(self.run.pop_events())
                    return FlowOutcome("queued", action.queue)
                action = self.run.resume(QueueRefused(refusal), self.clock())
                continue
            if isinstance(action, TransferToNumber):
                failure = await self.host.transfer_to_number(
                    action.number, action.caller_id, action.timeout_s
                )
                if failure is None:
                    self.run.end("transferred", self.clock())
                    self.host.flow_events(self.run.pop_events())
                    return FlowOutcome("transferred", action.number)
                action = self.run.resume(TransferFailed(failure), self.clock())
                continue
            result = await self._within_deadline(self._perform(action))
            if result is None:  # the run's time cap passed during the action
                final = self.run.handle_timer(self.clock())
                if final is not None:
                    action = final
                    continue
                result = await self._perform(action)
            action = self.run.resume(result, self.clock())

    async def _within_deadline(self, work: Coroutine[Any, Any, Result]) -> Result | None:
        deadline = self.run.deadline
        if deadline is None:
            result: Result = await work
            return result
        remaining = (deadline - self.clock()).total_seconds()
        try:
            return await asyncio.wait_for(work, timeout=max(remaining, 0.0))
        except TimeoutError:
            self.leg.stop_playback()
            return None

    async def _perform(self, action: Action) -> Result:
        if isinstance(action, Play):
            outcome = await self.leg.play(prompt_items(action.items), barge_in=action.barge_in)
            if outcome.end is PlayEnd.FAILED:
                log.warning("prompt failed", extra={"error": outcome.error})
            return Played()
        if isinstance(action, CollectDigits):
            if action.prompt:
                await self.leg.play(prompt_items(action.prompt), barge_in=True)
            digits = await self.leg.collect_digits(
                action.max_digits,
                action.timeout_s,
                terminator=action.terminator,
                inter_digit_timeout_s=action.timeout_s,
            )
            return DigitsCollected(digits) if digits else DigitsTimedOut()
        if isinstance(action, CallWebhook):
            return await self.webhooks.call(action)
        if isinstance(action, RecordVoicemail):
            recorded = await self.host.record_voicemail(
                prompt_items(action.prompt), action.max_seconds, action.queue
            )
            return recorded if recorded is not None else VoicemailRecorded("", 0.0)
        raise AssertionError(f"unexpected flow action {action!r}")
