"""The contact-flow interpreter: sans-IO, one :class:`FlowRun` per call.

Why sans-IO (DESIGN "protocol cores are sans-IO", as in h11): the run never plays audio,
waits for digits or opens a socket. It returns an *action* (:class:`Play`,
:class:`CollectDigits`, :class:`CallWebhook`, …); the call-control layer performs it and
hands back a *result* (:class:`Played`, :class:`DigitsCollected`, …) with the current
time. Blocks that need no I/O (CheckHours, CheckHoliday, CheckAttribute, SetAttribute,
LoopGuard, TransferToFlow) are evaluated inside, so a whole flow can be tested in
microseconds and every branch is deterministic.

Time: ``now`` is an aware :class:`datetime.datetime`, passed to every call. Aware because
CheckHours and CheckHoliday need the wall-clock day in their own zone, and a float would
need a zone alongside it anyway. The run never reads a clock.

The runtime guard (REQUIREMENTS §4, the endless after-hours loop): whatever a flow says,
one call may execute at most ``max_steps`` blocks, stay at most ``max_duration_s`` in
flows and cross at most ``max_flow_transfers`` TransferToFlow blocks. Exceeding any of
them ends the run with ``Hangup(reason="flow_limit:<limit>")`` and a
:class:`FlowLimitExceeded` event, even for a flow that was never validated.

Versions: the run holds the :class:`~tsunagu.flows.model.Flow` object it was started with
(flows are immutable), so publishing a new version never changes a call in progress; a
TransferToFlow takes the version current at the moment of the transfer.

The action, result and event dataclasses are defined in :mod:`tsunagu.flows.actions` (the
contract call control shares with the run) and re-exported here; this module keeps the run.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from pydantic import JsonValue

from tsunagu.calendar.holidays import HolidayCalendar
from tsunagu.calendar.hours import HoursOfOperation
from tsunagu.flows import model as m
from tsunagu.flows.actions import (
    Action,
    CallbackRequested,
    CallWebhook,
    CollectDigits,
    DigitsCollected,
    DigitsTimedOut,
    EnqueueToQueue,
    FlowEnded,
    FlowError,
    FlowEvent,
    FlowLimitExceeded,
    FlowStarted,
    FlowTransferred,
    Hangup,
    PathStep,
    Play,
    Played,
    PromptFile,
    PromptItem,
    QueueRefused,
    RecordVoicemail,
    Result,
    Speech,
    TransferFailed,
    TransferToNumber,
    VoicemailRecorded,
    WebhookError,
    WebhookFailed,
    WebhookResponse,
)
from tsunagu.flows.model import (
    AttrValue,
    Flow,
    attribute_text,
    render_json,
    render_text,
    render_url,
)

__all__ = [
    "Action",
    "CallWebhook",
    "CallbackRequested",
    "CollectDigits",
    "DigitsCollected",
    "DigitsTimedOut",
    "EnqueueToQueue",
    "FlowEnded",
    "FlowEnvironment",
    "FlowError",
    "FlowEvent",
    "FlowLimitExceeded",
    "FlowLimits",
    "FlowRun",
    "FlowRunError",
    "FlowStarted",
    "FlowTransferred",
    "Hangup",
    "PathStep",
    "Play",
    "Played",
    "PromptFile",
    "PromptItem",
    "QueueRefused",
    "RecordVoicemail",
    "Result",
    "RunState",
    "Speech",
    "TransferFailed",
    "TransferToNumber",
    "VoicemailRecorded",
    "WebhookError",
    "WebhookFailed",
    "WebhookResponse",
]

log = logging.getLogger(__name__)

#: Caps on what one webhook response may add, so a misbehaving service cannot flood a call.
MAX_WEBHOOK_ATTRIBUTES = 100
MAX_ATTRIBUTE_TEXT = 1000


#: Which results may answer which action; anything else is the caller's bug.
_EXPECTED: dict[type[Any], tuple[type[Any], ...]] = {
    Play: (Played,),
    CollectDigits: (DigitsCollected, DigitsTimedOut),
    CallWebhook: (WebhookResponse, WebhookFailed),
    EnqueueToQueue: (QueueRefused,),
    TransferToNumber: (TransferFailed,),
    RecordVoicemail: (VoicemailRecorded,),
}


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """Per-call caps of the runtime guard."""

    max_steps: int = 200
    max_duration_s: float = 30 * 60
    max_flow_transfers: int = 10

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.max_duration_s <= 0 or self.max_flow_transfers < 0:
            raise ValueError("flow limits must be positive")


def _no_flows(_name: str) -> Flow | None:
    return None


@dataclass(frozen=True)
class FlowEnvironment:
    """What the blocks evaluated inside the run consult: hours and calendars by name, and
    ``resolve_flow(name)`` returning the currently published version (or ``None``)."""

    hours: Mapping[str, HoursOfOperation] = field(default_factory=dict)
    calendars: Mapping[str, HolidayCalendar] = field(default_factory=dict)
    resolve_flow: Callable[[str], Flow | None] = _no_flows


class FlowRunError(RuntimeError):
    """The driver used the run wrongly (our fault, never the caller's or the author's)."""


class RunState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    ENDED = "ended"


#: Which inputs each state accepts; any other input raises :class:`FlowRunError`.
_ACCEPTS: dict[RunState, frozenset[str]] = {
    RunState.IDLE: frozenset({"start", "end"}),
    RunState.WAITING: frozenset({"resume", "timer", "end"}),
    RunState.ENDED: frozenset({"timer", "end"}),
}


@dataclass(frozen=True, slots=True)
class _Goto:
    """Continue at ``target`` (``None``: the exit ``field`` is not set — a dead end)."""

    target: str | None
    field: str


_Step = _Goto | Action


# --------------------------------------------------------------------------- the run


class FlowRun:
    """One call's walk through its flow(s)."""

    def __init__(
        self,
        flow: Flow,
        attributes: Mapping[str, AttrValue] | None = None,
        limits: FlowLimits | None = None,
        environment: FlowEnvironment | None = None,
    ) -> None:
        self._flow = flow
        self._attributes: dict[str, AttrValue] = dict(attributes or {})
        self.limits = limits or FlowLimits()
        self._env = environment or FlowEnvironment()
        self.state = RunState.IDLE
        self._started_at: datetime | None = None
        self._steps = 0
        self._flow_transfers = 0
        self._passes: dict[tuple[str, str], int] = {}
        self._path: list[PathStep] = []
        self._events: list[FlowEvent] = []
        self._block_id = ""
        self._waiting: Action | None = None
        self._attempt = 0
        self._retrying = False
        self.end_reason: str | None = None

    # ----------------------------------------------------------------- public API

    @property
    def flow(self) -> Flow:
        """The flow (version) the run is in now."""
        return self._flow

    @property
    def attributes(self) -> Mapping[str, AttrValue]:
        return MappingProxyType(self._attributes)

    @property
    def path(self) -> tuple[PathStep, ...]:
        return tuple(self._path)

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def deadline(self) -> datetime | None:
        """When the time cap runs out; arm a timer and call :meth:`handle_timer`."""
        if self._started_at is None:
            return None
        return self._started_at + timedelta(seconds=self.limits.max_duration_s)

    def pop_events(self) -> list[FlowEvent]:
        events, self._events = self._events, []
        return events

    def start(self, now: datetime) -> Action:
        self._accept("start", now)
        self._started_at = now
        self._events.append(FlowStarted(self._flow.name, self._flow.version, now))
        return self._run(_Goto(self._flow.start, "start"), now)

    def resume(self, result: Result, now: datetime) -> Action:
        """Hand back the result of the last action; returns the next action."""
        self._accept("resume", now)
        waiting = self._waiting
        assert waiting is not None  # WAITING always has an action
        if not isinstance(result, _EXPECTED[type(waiting)]):
            raise FlowRunError(
                f"{type(result).__name__} does not answer {type(waiting).__name__}; "
                f"expected {' or '.join(t.__name__ for t in _EXPECTED[type(waiting)])}"
            )
        self._waiting = None
        limit = self._time_exceeded(now)
        if limit is not None:
            return self._emit(limit, now)
        block = self._flow.blocks[self._block_id]
        return self._run(self._on_result(self._block_id, block, result, now), now)

    def handle_timer(self, now: datetime) -> Action | None:
        """Called when :attr:`deadline` passes while an action is in progress: returns
        the :class:`Hangup` that ends the call, or ``None`` if time remains."""
        self._accept("timer", now)
        if self.state is RunState.ENDED:
            return None
        limit = self._time_exceeded(now)
        return None if limit is None else self._emit(limit, now)

    def end(self, reason: str, now: datetime) -> None:
        """The call left the flow outside the run: it was queued or transferred, or the
        caller hung up. Idempotent, so a hang-up racing a Hangup is harmless."""
        self._accept("end", now)
        if self.state is not RunState.ENDED:
            self._finish(reason, now)

    # ----------------------------------------------------------------- engine

    def _accept(self, event: str, now: datetime) -> None:
        if event not in _ACCEPTS[self.state]:
            raise FlowRunError(f"{event} is not allowed when the run is {self.state.value}")
        if now.tzinfo is None or now.utcoffset() is None:
            raise FlowRunError("now must be a timezone-aware datetime")

    def _run(self, step: _Step, now: datetime) -> Action:
        """Execute blocks until one needs the outside world."""
        while isinstance(step, _Goto):
            if step.target is None:
                message = f"block {self._block_id!r} has no {step.field!r} branch"
                return self._emit(self._error("dead_end", message, now), now)
            limit = self._time_exceeded(now) or self._steps_exceeded(now)
            if limit is not None:
                return self._emit(limit, now)
            block = self._flow.blocks.get(step.target)
            if block is None:
                message = f"no block {step.target!r}"
                return self._emit(self._error("unknown_block", message, now), now)
            self._block_id = step.target
            self._steps += 1
            self._path.append(PathStep(self._flow.name, self._flow.version, step.target, now))
            step = self._enter(step.target, block, now)
        return self._emit(step, now)

    def _emit(self, action: Action, now: datetime) -> Action:
        if isinstance(action, Hangup):
            self._finish(action.reason, now)
        else:
            self._waiting = action
            self.state = RunState.WAITING
        return action

    def _finish(self, reason: str, now: datetime) -> None:
        self.state = RunState.ENDED
        self._waiting = None
        self.end_reason = reason
        self._events.append(FlowEnded(reason, now))

    def _time_exceeded(self, now: datetime) -> Hangup | None:
        assert self._started_at is not None
        elapsed = (now - self._started_at).total_seconds()
        if elapsed >= self.limits.max_duration_s:
            return self._limit("duration", elapsed, now)
        return None

    def _steps_exceeded(self, now: datetime) -> Hangup | None:
        if self._steps >= self.limits.max_steps:
            return self._limit("steps", self._steps, now)
        return None

    def _limit(self, limit: str, value: float, now: datetime) -> Hangup:
        log.warning(
            "flow limit exceeded",
            extra={"flow": self._flow.name, "block": self._block_id, "limit": limit},
        )
        self._events.append(FlowLimitExceeded(limit, value, self._block_id, now))
        return Hangup(f"flow_limit:{limit}")

    def _error(self, kind: str, message: str, now: datetime) -> Hangup:
        log.warning(
            "flow error: %s",
            message,
            extra={"flow": self._flow.name, "block": self._block_id, "kind": kind},
        )
        self._events.append(FlowError(self._flow.name, self._block_id, kind, message, now))
        return Hangup(f"flow_error:{kind}")

    # ----------------------------------------------------------------- entering blocks

    def _enter(self, block_id: str, block: m.Block, now: datetime) -> _Step:
        if isinstance(block, m.PlayPromptBlock):
            return Play(self._items(block), block.barge_in)
        if isinstance(block, m.GetDigitsBlock):
            self._attempt = self._attempt + 1 if self._retrying else 1
            self._retrying = False
            return CollectDigits(
                self._items(block), block.max_digits, float(block.timeout_s), block.terminator
            )
        if isinstance(block, m.CheckHoursBlock):
            hours = self._env.hours.get(block.hours)
            if hours is None:
                return self._error("unknown_hours", f"no hours {block.hours!r}", now)
            is_open = hours.is_open(now)
            return _Goto(block.open, "open") if is_open else _Goto(block.closed, "closed")
        if isinstance(block, m.CheckHolidayBlock):
            return self._check_holiday(block, now)
        if isinstance(block, m.InvokeWebhookBlock):
            body = render_json(block.body, self._attributes) if block.body is not None else None
            return CallWebhook(
                render_url(block.url, self._attributes),
                block.method,
                body,
                float(block.timeout_s),
                {k: render_text(v, self._attributes) for k, v in block.headers.items()},
            )
        if isinstance(block, m.CheckAttributeBlock):
            return self._check_attribute(block)
        if isinstance(block, m.SetAttributeBlock):
            for name, value in block.attributes.items():
                self._attributes[name] = self._render_value(value)
            return _Goto(block.next, "next")
        if isinstance(block, m.TransferToQueueBlock):
            return EnqueueToQueue(block.queue)
        if isinstance(block, m.TransferToNumberBlock):
            return TransferToNumber(block.number, block.caller_id, float(block.timeout_s))
        if isinstance(block, m.TransferToFlowBlock):
            return self._transfer_to_flow(block, now)
        if isinstance(block, m.VoicemailBlock):
            return RecordVoicemail(self._items(block), block.max_seconds, block.queue)
        if isinstance(block, m.DisconnectBlock):
            return Hangup(block.reason)
        if isinstance(block, m.LoopGuardBlock):
            key = (self._flow.name, block_id)
            self._passes[key] = self._passes.get(key, 0) + 1
            if self._passes[key] <= block.max_passes:
                return _Goto(block.next, "next")
            return _Goto(block.exceeded, "exceeded")
        raise AssertionError(f"unhandled block type {type(block).__name__}")  # pragma: no cover

    def _items(
        self, block: m.PlayPromptBlock | m.GetDigitsBlock | m.VoicemailBlock
    ) -> tuple[PromptItem, ...]:
        if block.prompt is not None:
            return (PromptFile(block.prompt),)
        if block.text is not None:
            return (Speech(render_text(block.text, self._attributes), block.language),)
        return ()

    def _render_value(self, value: AttrValue) -> AttrValue:
        if not isinstance(value, str):
            return value
        rendered = render_json(value, self._attributes)
        assert rendered is None or isinstance(rendered, str | int | float | bool)
        return rendered

    def _check_holiday(self, block: m.CheckHolidayBlock, now: datetime) -> _Step:
        calendar = self._env.calendars.get(block.calendar)
        if calendar is None:
            return self._error("unknown_calendar", f"no calendar {block.calendar!r}", now)
        name = calendar.name_of(calendar.local_day(now))
        if name is None:
            return _Goto(block.not_holiday, "not_holiday")
        if block.store_name_as is not None:
            self._attributes[block.store_name_as] = name
        return _Goto(block.holiday, "holiday")

    def _check_attribute(self, block: m.CheckAttributeBlock) -> _Goto:
        present = block.attribute in self._attributes
        value = self._attributes.get(block.attribute)
        for index, condition in enumerate(block.conditions):
            if _holds(condition, present, value, self._attributes):
                return _Goto(condition.next, f"conditions[{index}].next")
        return _Goto(block.default, "default")

    def _transfer_to_flow(self, block: m.TransferToFlowBlock, now: datetime) -> _Step:
        if self._flow_transfers >= self.limits.max_flow_transfers:
            return self._limit("flow_transfers", self._flow_transfers, now)
        other = self._env.resolve_flow(block.flow)
        if other is None:
            return self._error("unknown_flow", f"no published flow {block.flow!r}", now)
        self._flow_transfers += 1
        self._events.append(FlowTransferred(self._flow.name, other.name, other.version, now))
        self._flow = other
        return _Goto(other.start, "start")

    # ----------------------------------------------------------------- results

    def _on_result(self, block_id: str, block: m.Block, result: Result, now: datetime) -> _Step:
        if isinstance(result, Played):
            assert isinstance(block, m.PlayPromptBlock)
            return _Goto(block.next, "next")
        if isinstance(result, DigitsCollected | DigitsTimedOut):
            assert isinstance(block, m.GetDigitsBlock)
            return self._on_digits(block_id, block, result)
        if isinstance(result, WebhookResponse | WebhookFailed):
            assert isinstance(block, m.InvokeWebhookBlock)
            return self._on_webhook(block_id, block, result, now)
        if isinstance(result, QueueRefused):
            assert isinstance(block, m.TransferToQueueBlock)
            if block.on_failure is None:
                return Hangup("queue_refused")
            return _Goto(block.on_failure, "on_failure")
        if isinstance(result, TransferFailed):
            assert isinstance(block, m.TransferToNumberBlock)
            if block.on_failure is None:
                return Hangup("transfer_failed")
            return _Goto(block.on_failure, "on_failure")
        assert isinstance(result, VoicemailRecorded) and isinstance(block, m.VoicemailBlock)
        self._events.append(
            CallbackRequested(
                self._flow.name,
                block_id,
                result.recording,
                result.duration_s,
                dict(self._attributes),
                now,
            )
        )
        return Hangup("voicemail") if block.next is None else _Goto(block.next, "next")

    def _on_digits(
        self, block_id: str, block: m.GetDigitsBlock, result: DigitsCollected | DigitsTimedOut
    ) -> _Goto:
        if isinstance(result, DigitsCollected) and result.digits:
            target = block.branches.get(result.digits)
            field_name = f"branches.{result.digits}"
            if target is None and block.next is not None:
                target, field_name = block.next, "next"
            if target is not None:
                if block.store_as is not None:
                    self._attributes[block.store_as] = result.digits
                return _Goto(target, field_name)
        if self._attempt <= block.retries:
            self._retrying = True
            return _Goto(block_id, "retry")
        if isinstance(result, DigitsTimedOut):
            return _Goto(block.timeout, "timeout")
        return _Goto(block.invalid, "invalid")

    def _on_webhook(
        self,
        block_id: str,
        block: m.InvokeWebhookBlock,
        result: WebhookResponse | WebhookFailed,
        now: datetime,
    ) -> _Goto:
        if isinstance(result, WebhookFailed):
            reason = result.reason
        elif not 200 <= result.status < 300:
            reason = f"HTTP {result.status}"
        elif result.json is not None and not isinstance(result.json, dict):
            reason = "the response is not a JSON object"
        else:
            if isinstance(result.json, dict):
                self._store_response(block.store_prefix, result.json)
            return _Goto(block.next, "next")
        url = render_url(block.url, self._attributes)
        log.warning("webhook failed: %s", reason, extra={"block": block_id, "url": url})
        self._events.append(WebhookError(self._flow.name, block_id, url, reason, now))
        return _Goto(block.error, "error")

    def _store_response(self, prefix: str, body: dict[str, JsonValue]) -> None:
        flat: dict[str, AttrValue] = {}
        _flatten(prefix, body, flat)
        if len(flat) > MAX_WEBHOOK_ATTRIBUTES:
            log.warning(
                "webhook response has %d fields; keeping the first %d",
                len(flat),
                MAX_WEBHOOK_ATTRIBUTES,
            )
        for name, value in list(flat.items())[:MAX_WEBHOOK_ATTRIBUTES]:
            self._attributes[name] = value


def _flatten(prefix: str, value: dict[str, JsonValue], out: dict[str, AttrValue]) -> None:
    """Nested objects become dotted names (``customer.tier``); lists are kept as JSON
    text; long strings are cut to :data:`MAX_ATTRIBUTE_TEXT` characters."""
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            _flatten(name + ".", item, out)
        elif isinstance(item, list):
            out[name] = json.dumps(item, ensure_ascii=False)[:MAX_ATTRIBUTE_TEXT]
        elif isinstance(item, str):
            out[name] = item[:MAX_ATTRIBUTE_TEXT]
        else:
            out[name] = item


def _number(value: AttrValue) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(value)
        except ValueError:
            return None
    return number if math.isfinite(number) else None


def _holds(
    condition: m.Condition,
    present: bool,
    value: AttrValue,
    attributes: Mapping[str, AttrValue],
) -> bool:
    """Whether one CheckAttribute condition holds. Values compare as numbers when both
    sides are numbers (``"10"`` equals ``10``), else as text; a missing attribute equals
    nothing and is greater or less than nothing."""
    if condition.op == "exists":
        return present and value is not None
    wanted: AttrValue = condition.value
    if isinstance(wanted, str):
        wanted = render_text(wanted, attributes)
    if condition.op in ("equals", "not_equals"):
        a, b = _number(value), _number(wanted)
        if a is not None and b is not None:
            same = present and a == b
        else:
            same = present and attribute_text(value) == attribute_text(wanted)
        return same if condition.op == "equals" else not same
    if condition.op == "contains":
        return present and attribute_text(wanted) in attribute_text(value)
    a, b = _number(value), _number(wanted)
    if not present or a is None or b is None:
        return False
    return a > b if condition.op == "greater" else a < b
