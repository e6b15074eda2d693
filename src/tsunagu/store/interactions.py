"""One record per conversation: the interaction, its legs, agents and timeline.

REQUIREMENTS §3: on Twilio one conversation became many call logs (caller → platform,
platform → each agent rung) and could not be analysed. Here a conversation is ONE
:class:`Interaction`; the SIP legs that carried it hang below it as :class:`Leg` rows, each
with its SIP Call-ID, so both the analyst's view ("one call, answered by agent 1002 after
34 s") and the engineer's view ("which INVITE was that?") come from the same record.

These are plain values; :class:`tsunagu.store.history.History` reads and writes them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from tsunagu.store.errors import StoreRequestError
from tsunagu.store.types import require_utc


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Status(StrEnum):
    """``active`` while the call is in progress; ``ended`` once finished normally;
    ``interrupted`` when the process died during it (set at the next start-up)."""

    ACTIVE = "active"
    ENDED = "ended"
    INTERRUPTED = "interrupted"


class Disposition(StrEnum):
    """How the conversation ended, for reports (issue 5 item 3)."""

    ANSWERED = "answered"
    ABANDONED = "abandoned"
    #: Abandoned within the short-abandon threshold (usually excluded from abandon rate).
    SHORT_ABANDONED = "short_abandoned"
    AFTER_HOURS = "after_hours"
    VOICEMAIL = "voicemail"
    CALLBACK = "callback"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    #: The contact flow ended the call itself (self-service, an information message).
    COMPLETED = "completed"


class LegRole(StrEnum):
    CALLER = "caller"
    AGENT = "agent"
    EXTERNAL = "external"


class AgentStage(StrEnum):
    """``offered``: the ACD chose the agent; ``rung``: their phone rang; ``answered``:
    they took the call."""

    OFFERED = "offered"
    RUNG = "rung"
    ANSWERED = "answered"


@dataclass(frozen=True, slots=True)
class Interaction:
    id: str
    node: str
    direction: Direction
    caller: str
    dialled: str
    started_at: datetime
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    queue: str | None
    wait_seconds: float | None
    status: Status
    disposition: Disposition | None
    flow_path: tuple[dict[str, Any], ...]
    transfers: tuple[dict[str, Any], ...]
    recordings: tuple[dict[str, Any], ...]
    attributes: dict[str, Any]
    agents_offered: tuple[str, ...] = ()
    agents_rung: tuple[str, ...] = ()
    agents_answered: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Leg:
    """One SIP dialog of the conversation (RFC 3261 §12: identified by its Call-ID)."""

    id: str
    interaction_id: str
    role: LegRole
    call_id: str | None
    peer: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the interaction's timeline."""

    id: int
    interaction_id: str
    at: datetime
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    """An interaction with its legs (by start) and timeline (by time, then write order)."""

    interaction: Interaction
    legs: tuple[Leg, ...]
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class InteractionFilter:
    """Search criteria; every given criterion must hold (AND).

    Times are a half-open range on ``started_at``: ``started_from <= t < started_to``.
    ``number`` matches caller OR dialled number. ``agent`` matches an agent at any stage
    unless ``agent_stage`` narrows it. ``attributes`` match string values exactly.
    """

    started_from: datetime | None = None
    started_to: datetime | None = None
    caller: str | None = None
    dialled: str | None = None
    number: str | None = None
    agent: str | None = None
    agent_stage: AgentStage | None = None
    queue: str | None = None
    dispositions: Collection[Disposition] = ()
    statuses: Collection[Status] = ()
    direction: Direction | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of search results; pass ``next_cursor`` back to get the next page
    (``None`` when this is the last)."""

    items: tuple[Interaction, ...]
    next_cursor: str | None


Order = Literal["asc", "desc"]


def encode_cursor(started_at: datetime, interaction_id: str) -> str:
    """An opaque cursor naming the position just after ``(started_at, id)``."""
    raw = json.dumps([require_utc(started_at).isoformat(), interaction_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Parse :func:`encode_cursor` output; a damaged cursor is the caller's error."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, interaction_id = json.loads(raw)
        if not isinstance(stamp, str) or not isinstance(interaction_id, str):
            raise ValueError("wrong shape")
        return require_utc(datetime.fromisoformat(stamp), "cursor"), interaction_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise StoreRequestError("invalid pagination cursor", cursor=cursor[:100]) from None
