"""Agent presence: the states an agent can be in and the only moves allowed between them.

Why a table: the most common complaint about Asterisk queues and FreeSWITCH mod_callcenter
is agents stuck "reserved" or "paused" forever, because state changes are scattered over
many code paths that each assume something about the current state. Here every change goes
through one dictionary ``(state, event) -> next state`` (the shape of h11's ``_state.py``);
an input that is not in the table raises :class:`PresenceTransitionError` instead of
silently doing something. Every successful change yields a typed :class:`AgentStateChanged`
event and increments the agent's ``version``, which is what makes reservation a
compare-and-set (see :meth:`tsunagu.acd.agents.AgentRoster.try_reserve`).

The table is pure data: it never reads a clock (time is passed in) and never decides
*whether* an event should be fed (the engine does: e.g. a phone that registers again only
puts the agent back to work if they were logged in when it dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class AcdError(Exception):
    """A request to the ACD was refused (unknown id, move not allowed): the caller's fault.

    The API layer answers these with a 4xx and the message; they never mean the engine's
    state is damaged.
    """


class AcdInvariantError(RuntimeError):
    """Our fault: the engine found its own bookkeeping inconsistent. Never expected."""


class AgentState(Enum):
    """What an agent is doing, as routing sees it."""

    OFFLINE = "offline"  # logged out, or their phone lost its registration
    AVAILABLE = "available"  # may be offered a call
    RESERVED = "reserved"  # a call is being offered (their phone rings)
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"  # after-call work; ends by timer or by the agent
    AWAY = "away"  # logged in but not taking calls; always carries a reason code


class PresenceEvent(Enum):
    """Inputs to the presence table: agent commands and facts reported by the call layer."""

    LOGIN = "login"
    LOGOUT = "logout"
    REGISTRATION_LOST = "registration_lost"  # every endpoint of the agent unregistered
    REGISTRATION_RESTORED = "registration_restored"
    RESERVE = "reserve"  # a call is offered (only through the compare-and-set)
    ANSWER = "answer"  # the offered call was answered
    RING_NO_ANSWER = "ring_no_answer"  # ring timeout, or the phone refused (486/603)
    RESERVATION_CANCELLED = "reservation_cancelled"  # caller left, or another agent won
    CALL_ENDED = "call_ended"
    WRAP_UP_DONE = "wrap_up_done"  # the wrap-up timer fired
    SET_AWAY = "set_away"
    SET_AVAILABLE = "set_available"
    #: The agent's own call (extension to extension), not offered by a queue: busy while
    #: it lasts, straight back to available after (no wrap-up: there is no customer work).
    DIRECT_CALL = "direct_call"
    DIRECT_CALL_ENDED = "direct_call_ended"


S = AgentState
E = PresenceEvent

#: The presence table. Self-moves (``AWAY --set_away--> AWAY``) are listed on purpose: they
#: are accepted (a new reason code, a repeated logout) where refusing would only make an
#: API call flaky. Notes on the less obvious rows:
#:
#: * ``ON_CALL --registration_lost--> ON_CALL``: a dialog outlives the registration
#:   (RFC 3261 §10 and §12 are independent), so the agent is still truly on the call; the
#:   engine remembers the loss and takes the agent offline when the call ends.
#: * ``RESERVED`` accepts logout/away/registration loss: the engine withdraws the offer and
#:   re-offers the call, so nobody stays reserved for a phone that cannot answer.
#: * ``ON_CALL`` refuses logout and away: the call must end first (the agent is on it).
TRANSITIONS: Mapping[tuple[AgentState, PresenceEvent], AgentState] = {
    (S.OFFLINE, E.LOGIN): S.AVAILABLE,
    (S.OFFLINE, E.LOGOUT): S.OFFLINE,
    (S.OFFLINE, E.REGISTRATION_LOST): S.OFFLINE,
    (S.OFFLINE, E.REGISTRATION_RESTORED): S.AVAILABLE,
    (S.AVAILABLE, E.LOGOUT): S.OFFLINE,
    (S.AVAILABLE, E.REGISTRATION_LOST): S.OFFLINE,
    (S.AVAILABLE, E.RESERVE): S.RESERVED,
    (S.AVAILABLE, E.SET_AWAY): S.AWAY,
    (S.AVAILABLE, E.SET_AVAILABLE): S.AVAILABLE,
    (S.AVAILABLE, E.DIRECT_CALL): S.ON_CALL,
    (S.RESERVED, E.ANSWER): S.ON_CALL,
    (S.RESERVED, E.RING_NO_ANSWER): S.AWAY,
    (S.RESERVED, E.RESERVATION_CANCELLED): S.AVAILABLE,
    (S.RESERVED, E.REGISTRATION_LOST): S.OFFLINE,
    (S.RESERVED, E.LOGOUT): S.OFFLINE,
    (S.RESERVED, E.SET_AWAY): S.AWAY,
    (S.ON_CALL, E.CALL_ENDED): S.WRAP_UP,
    (S.ON_CALL, E.REGISTRATION_LOST): S.ON_CALL,
    (S.ON_CALL, E.DIRECT_CALL_ENDED): S.AVAILABLE,
    (S.WRAP_UP, E.WRAP_UP_DONE): S.AVAILABLE,
    (S.WRAP_UP, E.SET_AVAILABLE): S.AVAILABLE,
    (S.WRAP_UP, E.SET_AWAY): S.AWAY,
    (S.WRAP_UP, E.LOGOUT): S.OFFLINE,
    (S.WRAP_UP, E.REGISTRATION_LOST): S.OFFLINE,
    (S.AWAY, E.SET_AVAILABLE): S.AVAILABLE,
    (S.AWAY, E.SET_AWAY): S.AWAY,
    (S.AWAY, E.LOGOUT): S.OFFLINE,
    (S.AWAY, E.REGISTRATION_LOST): S.OFFLINE,
}

#: Reason codes the engine itself writes; operators add their own for ``SET_AWAY``.
REASON_RING_NO_ANSWER = "ring_no_answer"
REASON_LOGOUT = "logout"
REASON_REGISTRATION_LOST = "registration_lost"

#: States in which an agent counts as staffed (working the queue, busy or not).
WORKING_STATES = frozenset({S.AVAILABLE, S.RESERVED, S.ON_CALL, S.WRAP_UP})


class PresenceTransitionError(AcdError):
    """The event is not allowed in the agent's current state (not in :data:`TRANSITIONS`)."""

    def __init__(self, agent_id: str, state: AgentState, event: PresenceEvent) -> None:
        self.agent_id = agent_id
        self.state = state
        self.event = event
        super().__init__(f"agent {agent_id}: {event.value} is not allowed while {state.value}")


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """An agent moved from ``old`` to ``new`` at ``at`` (seconds, the engine's clock)."""

    agent_id: str
    old: AgentState
    new: AgentState
    reason: str | None
    at: float


class HasPresence(Protocol):
    """What the machine needs from an agent record (see :class:`~tsunagu.acd.agents.Agent`)."""

    agent_id: str
    state: AgentState
    reason: str | None
    version: int
    state_since: float


class PresenceMachine:
    """Applies :data:`TRANSITIONS` to agent records.

    ``ring_no_answer_to`` chooses where an agent goes after not answering an offer: AWAY
    (the default, reason ``ring_no_answer``: a phone that did not answer probably has no
    one behind it) or AVAILABLE (small teams that would rather re-ring than lose an agent).
    """

    __slots__ = ("table",)

    def __init__(self, ring_no_answer_to: AgentState = AgentState.AWAY) -> None:
        if ring_no_answer_to not in (AgentState.AWAY, AgentState.AVAILABLE):
            raise ValueError("ring_no_answer_to must be AWAY or AVAILABLE")
        table = dict(TRANSITIONS)
        table[(S.RESERVED, E.RING_NO_ANSWER)] = ring_no_answer_to
        self.table: dict[tuple[AgentState, PresenceEvent], AgentState] = table

    def next_state(
        self, state: AgentState, event: PresenceEvent, agent_id: str = "?"
    ) -> AgentState:
        """The state ``event`` leads to from ``state``; raises if the table has no such move."""
        new = self.table.get((state, event))
        if new is None:
            raise PresenceTransitionError(agent_id, state, event)
        return new

    def apply(
        self, agent: HasPresence, event: PresenceEvent, now: float, reason: str | None = None
    ) -> AgentStateChanged | None:
        """Move ``agent`` per the table; ``None`` when nothing visible changed.

        A self-move with the same reason changes nothing (no event, no version bump), so a
        repeated "set available" cannot invalidate a reservation in flight.
        """
        old = agent.state
        new = self.table.get((old, event))
        if new is None:
            raise PresenceTransitionError(agent.agent_id, old, event)
        if new is AgentState.AWAY and reason is None:
            reason = REASON_RING_NO_ANSWER if event is E.RING_NO_ANSWER else "away"
        if new is old and reason == agent.reason:
            return None
        agent.state = new
        agent.reason = reason
        agent.version += 1
        agent.state_since = now
        return AgentStateChanged(agent.agent_id, old, new, reason, now)
