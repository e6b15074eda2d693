"""The vocabulary between a flow run and call control: actions, results, events.

A :class:`~tsunagu.flows.interpreter.FlowRun` is sans-IO: it returns an *action*
(:class:`Play`, :class:`CollectDigits`, :class:`CallWebhook`, …) for the call-control
layer to perform, takes back a *result* (:class:`Played`, :class:`DigitsCollected`, …)
and emits *events* (:class:`FlowStarted`, :class:`FlowEnded`, …) and :class:`PathStep`
records for the interaction history. These are plain frozen dataclasses.

Why they live apart from the interpreter: they are the contract both sides import
(``calls/flow_driver.py``, ``calls/webhooks.py``, ``calls/call.py`` and the tests), and
they change when a block gains an I/O need, while the interpreter changes when a block's
logic does. Which result may answer which action is the interpreter's rule
(``_EXPECTED`` there). Every name here is re-exported by :mod:`tsunagu.flows.interpreter`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import JsonValue

from tsunagu.flows.model import AttrValue

__all__ = [
    "Action",
    "CallWebhook",
    "CallbackRequested",
    "CollectDigits",
    "DigitsCollected",
    "DigitsTimedOut",
    "EnqueueToQueue",
    "FlowEnded",
    "FlowError",
    "FlowEvent",
    "FlowLimitExceeded",
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
    "Speech",
    "TransferFailed",
    "TransferToNumber",
    "VoicemailRecorded",
    "WebhookError",
    "WebhookFailed",
    "WebhookResponse",
]


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class PromptFile:
    """A recorded prompt, by name (the media layer resolves it)."""

    name: str


@dataclass(frozen=True, slots=True)
class Speech:
    """Text to speak with TTS, attributes already filled in."""

    text: str
    language: str


PromptItem = PromptFile | Speech


@dataclass(frozen=True, slots=True)
class Play:
    items: tuple[PromptItem, ...]
    barge_in: bool = False


@dataclass(frozen=True, slots=True)
class CollectDigits:
    """Play ``prompt`` (barge-in allowed) and collect up to ``max_digits`` DTMF digits;
    ``timeout_s`` runs from the end of the prompt and between digits."""

    prompt: tuple[PromptItem, ...]
    max_digits: int
    timeout_s: float
    terminator: str | None


@dataclass(frozen=True, slots=True)
class CallWebhook:
    url: str
    method: str
    body: JsonValue | None
    timeout_s: float
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EnqueueToQueue:
    """Hand the call to the ACD. On success call :meth:`FlowRun.end`; on refusal resume
    with :class:`QueueRefused`."""

    queue: str


@dataclass(frozen=True, slots=True)
class TransferToNumber:
    """Call ``number`` presenting ``caller_id`` (``None``: the caller's own number) and
    bridge. On success call :meth:`FlowRun.end`; on failure resume with
    :class:`TransferFailed`."""

    number: str
    caller_id: str | None
    timeout_s: float


@dataclass(frozen=True, slots=True)
class RecordVoicemail:
    prompt: tuple[PromptItem, ...]
    max_seconds: int
    #: The block's queue for the callback task (``None``: the queue the caller last
    #: waited in, decided by the call layer, which knows it).
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call. The run is over; nothing may be resumed."""

    reason: str


Action = (
    Play
    | CollectDigits
    | CallWebhook
    | EnqueueToQueue
    | TransferToNumber
    | RecordVoicemail
    | Hangup
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Played:
    pass


@dataclass(frozen=True, slots=True)
class DigitsCollected:
    """Digits entered, without the terminator."""

    digits: str


@dataclass(frozen=True, slots=True)
class DigitsTimedOut:
    pass


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """An HTTP response; ``json`` is the decoded body, ``None`` when there was none."""

    status: int
    json: JsonValue | None = None


@dataclass(frozen=True, slots=True)
class WebhookFailed:
    """No usable response: timeout, connection refused, TLS or decoding error."""

    reason: str


@dataclass(frozen=True, slots=True)
class QueueRefused:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TransferFailed:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class VoicemailRecorded:
    recording: str
    duration_s: float


Result = (
    Played
    | DigitsCollected
    | DigitsTimedOut
    | WebhookResponse
    | WebhookFailed
    | QueueRefused
    | TransferFailed
    | VoicemailRecorded
)
# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class FlowStarted:
    flow: str
    version: int
    at: datetime


@dataclass(frozen=True, slots=True)
class FlowTransferred:
    from_flow: str
    to_flow: str
    to_version: int
    at: datetime


@dataclass(frozen=True, slots=True)
class WebhookError:
    flow: str
    block: str
    url: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CallbackRequested:
    """A voicemail was left: someone should call back (the ACD makes it a task)."""

    flow: str
    block: str
    recording: str
    duration_s: float
    attributes: Mapping[str, AttrValue]
    at: datetime


@dataclass(frozen=True, slots=True)
class FlowLimitExceeded:
    limit: str
    value: float
    block: str
    at: datetime


@dataclass(frozen=True, slots=True)
class FlowError:
    """The flow could not go on (an unvalidated flow, or config removed since)."""

    flow: str
    block: str
    kind: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class FlowEnded:
    reason: str
    at: datetime


FlowEvent = (
    FlowStarted
    | FlowTransferred
    | WebhookError
    | CallbackRequested
    | FlowLimitExceeded
    | FlowError
    | FlowEnded
)


@dataclass(frozen=True, slots=True)
class PathStep:
    """One block executed, for the interaction record."""

    flow: str
    version: int
    block: str
    at: datetime
