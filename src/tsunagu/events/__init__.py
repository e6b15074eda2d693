"""Domain events: typed values on an in-process bus, streamed over WebSocket and delivered
to signed webhooks (docs/API.md "Events", docs/ARCHITECTURE.md "Events")."""

from tsunagu.events.bus import EventBus, Subscription, UnknownEventTypeError
from tsunagu.events.types import (
    EVENT_TYPES,
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallStarted,
    CallTransferred,
    CustomerRecord,
    DomainEvent,
    FlowWebhookFailed,
    QueueFigures,
    QueueStats,
)

__all__ = [
    "EVENT_TYPES",
    "AgentStateChanged",
    "CallAnswered",
    "CallEnded",
    "CallOffered",
    "CallStarted",
    "CallTransferred",
    "CustomerRecord",
    "DomainEvent",
    "EventBus",
    "FlowWebhookFailed",
    "QueueFigures",
    "QueueStats",
    "Subscription",
    "UnknownEventTypeError",
]
