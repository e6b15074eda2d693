"""What the API needs from the rest of the server, as plain values and callables.

The API does not import the call layer, the ACD or the registrar: the server fills an
:class:`ApiServices` with the store and a few callables and hands it to
:func:`tsunagu.api.app.create_app`. That keeps this layer testable with a fake call layer
(and the real store), and keeps the call path free of HTTP concerns.

Every call-layer callable may be a plain function or a coroutine function (the API awaits
whatever is awaitable), so the server can pass ``controller.hangup`` whichever it is.
Callables that are not supplied answer as an idle server would (no agents, no calls,
nothing to hang up), so the API can be served before the call layer is wired.

The dictionaries exchanged (see docs/API.md for examples):

* ``agents()`` → ``[{"id", "name", "team", "state", "reason", "since"}, …]`` — ``state``
  one of the presence states (``available``, ``away``, ``offline``, ``reserved``,
  ``on_call``, ``wrap_up``); ``since`` a UTC ``datetime`` (or ISO string) or ``None``.
* ``set_agent_state(agent_id, state, reason)`` with ``state`` in ``available``, ``away``,
  ``offline``; raises :class:`KeyError` for an unknown agent and :class:`ValueError` when
  the change is not allowed now (the message is shown to the client).
* ``calls()`` → ``[{"interaction_id", "caller", "dialled", "queue", "agent", "state",
  "started_at"}, …]`` for calls in progress.
* ``hangup(interaction_id)`` / ``transfer(interaction_id, target)`` → ``True`` if done,
  ``False`` if no such call is in progress; ``transfer`` raises :class:`ValueError` for a
  target it refuses.
* ``recording_path(interaction_id)`` → the WAV file of the conversation, or ``None``.
* ``webhooks()`` → ``[{"name", "url", "events", "delivered", "retrying", "dead", …}, …]``
  (never a secret); ``redeliver(letter_id)`` starts a dead letter's redelivery, raising
  :class:`LookupError` for an unknown letter or webhook and the store's
  ``InvalidStateError`` when it was already redelivered.
* ``cancel_callback(task_id, actor)`` → the cancelled task; raises the store's
  ``NotFoundError`` or ``InvalidStateError`` (a task being dialled or already over).
* ``events`` — the domain event bus the WebSocket stream subscribes to.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast

from tsunagu.events import EventBus
from tsunagu.store import CallbackTask, Store, Validator, system_clock

T = TypeVar("T")

#: A value, or an awaitable of it (the callables below may be sync or async).
MaybeAwaitable: TypeAlias = T | Awaitable[T]
JsonDict = dict[str, Any]


async def resolve(value: MaybeAwaitable[T]) -> T:
    """Await ``value`` if it is awaitable (the callable was a coroutine function)."""
    if inspect.isawaitable(value):
        return cast(T, await value)
    return value


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, refilled at ``per_second``."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")


@dataclass(frozen=True, slots=True)
class ReportDefaults:
    """Thresholds used when a report request does not give its own.

    ``service_level_s``: answered within this many seconds of queueing counts towards the
    service level (80/20 is the classic target, hence 20). ``short_abandon_s``: callers who
    hang up within this many seconds are short abandons, excluded from the abandon rate
    (they usually misdialled or heard the greeting and left).
    """

    service_level_s: float = 20.0
    short_abandon_s: float = 5.0


def _health() -> JsonDict:
    return {"status": "ok"}


def _no_agents() -> list[JsonDict]:
    return []


def _unknown_agent(agent_id: str, state: str, reason: str | None) -> None:
    raise KeyError(agent_id)


def _no_calls() -> list[JsonDict]:
    return []


def _no_call(interaction_id: str) -> bool:
    return False


def _no_transfer(interaction_id: str, target: str) -> bool:
    return False


def _no_recording(interaction_id: str) -> Path | None:
    return None


def _no_webhooks() -> list[JsonDict]:
    return []


def _no_redelivery(letter_id: str) -> None:
    raise LookupError(letter_id)


def _no_overflow(queue_id: str, group_id: str, active: bool, actor: str) -> None:
    raise KeyError(queue_id)


@dataclass(slots=True)
class ApiServices:
    """Everything the API uses; only ``store`` is required."""

    store: Store
    #: The full health document (``status`` is also shown, alone, on ``GET /health``).
    health: Callable[[], Mapping[str, Any]] = _health
    agents: Callable[[], MaybeAwaitable[list[JsonDict]]] = _no_agents
    set_agent_state: Callable[[str, str, str | None], MaybeAwaitable[None]] = _unknown_agent
    calls: Callable[[], MaybeAwaitable[list[JsonDict]]] = _no_calls
    hangup: Callable[[str], MaybeAwaitable[bool]] = _no_call
    transfer: Callable[[str, str], MaybeAwaitable[bool]] = _no_transfer
    recording_path: Callable[[str], MaybeAwaitable[Path | None]] = _no_recording
    #: Activate or release a queue's overflow group by hand (REQUIREMENTS §5 item 13);
    #: raises :class:`KeyError` for an unknown queue or group.
    set_overflow: Callable[[str, str, bool, str], MaybeAwaitable[None]] = _no_overflow
    #: Outbound webhooks: their status, and redelivering a dead letter.
    webhooks: Callable[[], MaybeAwaitable[list[JsonDict]]] = _no_webhooks
    redeliver: Callable[[str], MaybeAwaitable[object]] = _no_redelivery
    #: Cancel a voicemail callback task (``task_id, actor``): also takes it out of the ACD.
    #: ``None``: no call layer, the route moves the task in the store alone.
    cancel_callback: Callable[[str, str], MaybeAwaitable[CallbackTask]] | None = None
    #: The domain events streamed on ``GET /api/v1/events`` (``None``: no stream).
    events: EventBus | None = None
    #: Extra configuration validation run before every API write (the YAML models). The
    #: store's own ``validator`` hook runs too; pass it here only if the store has none.
    validator: Validator | None = None
    #: The whole-picture check of a would-be configuration ``{kind: {name: document}}``
    #: (a number pointing at an unknown flow...): ``"kind/name.field: message"`` problems.
    #: Writes to contact-center kinds that would add a problem are refused.
    check_center: Callable[[Mapping[str, Mapping[str, dict[str, Any]]]], list[str]] | None = None
    #: Wall-clock UTC now: stamps audit entries and API keys, drives the rate limiter.
    clock: Callable[[], datetime] = system_clock
    #: Per user (or integration) request budget.
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(per_second=20.0, burst=100))
    #: Per client address budget of *failed* authentications (guessing passwords or keys).
    auth_failure_limit: RateLimit = field(
        default_factory=lambda: RateLimit(per_second=0.2, burst=10)
    )
    reports: ReportDefaults = field(default_factory=ReportDefaults)
    #: Append every audit entry to this JSON-lines file as well (see :mod:`.audit`).
    audit_path: Path | None = None
