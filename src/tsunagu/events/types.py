"""Domain events: what happened in the contact center, as typed, immutable values.

The call layer builds these and publishes them on the :class:`~tsunagu.events.bus.EventBus`;
the WebSocket stream and the outbound webhooks subscribe (docs/ARCHITECTURE.md, "Events").
Nothing here reads a clock: the wall-clock time ``at`` (Unix seconds) is given by whoever
saw the thing happen, and ``seq`` is stamped by the bus when the event is published.

Every event has a stable ``type`` name (``call.offered``...) that clients filter and switch
on; renaming one is a breaking change of the API (docs/API.md lists them). ``to_json()``
gives the one wire shape used by the WebSocket stream and the webhook bodies::

    {"type": "call.offered", "id": "<uuid>", "seq": 42, "at": "2025-12-06T03:55:00.123+00:00",
     "data": {...the event's own fields...}}

Who may see an event is decided by :meth:`DomainEvent.concerns`: an agent's stream carries
only events about that agent (their own state, calls offered to or answered by them).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar


def new_event_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """Fields every event carries. Subclasses set ``type`` and add their own fields."""

    type: ClassVar[str] = ""
    #: Wall-clock time the thing happened, Unix seconds (given, never read here).
    at: float
    id: str = field(default_factory=new_event_id)
    #: Position in the bus's stream (0 until published; gaps mean events were dropped).
    seq: int = 0

    def data(self) -> dict[str, Any]:
        """The event's own fields (everything but id, at and seq), JSON-ready."""
        return {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("at", "id", "seq")
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "seq": self.seq,
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds"),
            "data": self.data(),
        }

    def concerns(self, agent_id: str) -> bool:
        """Whether the agent ``agent_id`` may see this event on their own stream."""
        del agent_id
        return False


def _plain(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


# -- calls --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(DomainEvent):
    """A call reached us and a contact flow (or an internal call) starts."""

    type: ClassVar[str] = "call.started"
    interaction_id: str
    direction: str
    caller: str
    dialled: str
    trunk: str | None = None
    flow: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerRecord:
    """What the configuration knows of the caller (``customers:``): their number, name
    and assigned rep. A CRM looks its own record up by ``number``."""

    number: str
    name: str
    rep: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOffered(DomainEvent):
    """The screen-pop: an agent's phone is ringing with this caller (issue #5 item 7).

    ``attributes`` are the contact flow's attributes at the time of the offer (what the
    caller chose in menus, what a flow webhook looked up), so a CRM can open the right
    record before the agent says hello.
    """

    type: ClassVar[str] = "call.offered"
    interaction_id: str
    agent_id: str
    caller: str
    dialled: str
    queue: str | None
    customer: CustomerRecord | None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def concerns(self, agent_id: str) -> bool:
        return agent_id == self.agent_id


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(DomainEvent):
    """The caller is bridged to ``agent_id`` (an agent id, or ``external:<number>`` when a
    flow or a transfer connected an outside number)."""

    type: ClassVar[str] = "call.answered"
    interaction_id: str
    agent_id: str
    caller: str
    queue: str | None
    wait_s: float | None

    def concerns(self, agent_id: str) -> bool:
        return agent_id == self.agent_id


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransferred(DomainEvent):
    """The caller now talks to ``to`` (an agent id or a number) instead of ``from_agent``."""

    type: ClassVar[str] = "call.transferred"
    interaction_id: str
    from_agent: str | None
    to: str
    #: Every agent the call was offered to so far.
    agents: tuple[str, ...] = ()

    def concerns(self, agent_id: str) -> bool:
        return agent_id in (self.from_agent, self.to) or agent_id in self.agents


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(DomainEvent):
    type: ClassVar[str] = "call.ended"
    interaction_id: str
    disposition: str
    duration_s: float
    #: Every agent the call was offered to.
    agents: tuple[str, ...] = ()

    def concerns(self, agent_id: str) -> bool:
        return agent_id in self.agents


# -- agents and queues --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged(DomainEvent):
    """An agent's presence changed (``available``, ``reserved``, ``on_call``...)."""

    type: ClassVar[str] = "agent.state"
    agent_id: str
    old: str
    new: str
    reason: str | None = None

    def concerns(self, agent_id: str) -> bool:
        return agent_id == self.agent_id


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueFigures:
    queue: str
    waiting: int
    oldest_wait_s: float
    agents_available: int
    agents_busy: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats(DomainEvent):
    """Live figures of every queue (published only when they changed)."""

    type: ClassVar[str] = "queue.stats"
    queues: tuple[QueueFigures, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowWebhookFailed(DomainEvent):
    """A contact flow's webhook (InvokeWebhook) failed; the flow took its error branch."""

    type: ClassVar[str] = "flow.webhook_failed"
    interaction_id: str
    reason: str


#: Every event type by its ``type`` name (what subscriptions and the config may name).
EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.type: cls
    for cls in (
        CallStarted,
        CallOffered,
        CallAnswered,
        CallTransferred,
        CallEnded,
        AgentStateChanged,
        QueueStats,
        FlowWebhookFailed,
    )
}


def unknown_types(names: object) -> list[str]:
    """The names in ``names`` that are not event types (``"*"`` means all and is known)."""
    if not isinstance(names, list | tuple | set | frozenset):
        return [repr(names)]
    return [str(n) for n in names if n != "*" and n not in EVENT_TYPES]
