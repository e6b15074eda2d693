"""Agents, teams, and the roster that owns their presence.

The roster is the single writer of agent state: every move goes through
:meth:`AgentRoster.apply` (the presence table) and every offer through
:meth:`AgentRoster.try_reserve`, a compare-and-set on the agent's ``version``. In one
process the engine is the only caller, so the set always succeeds when the engine read the
version a moment earlier; the point is the *shape*: when several Tsunagu nodes share agents
(DESIGN "Scale past one machine"), the same decision becomes one database statement ::

    UPDATE agents SET state = 'reserved', version = version + 1, offer_call_id = :call
     WHERE agent_id = :agent AND version = :expected AND state = 'available'

and the node whose update touched one row owns the agent; every other node sees zero rows
and picks someone else. Because every presence change bumps the version, a node can never
reserve an agent on the strength of a stale read, so one agent never gets two calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tsunagu.acd.presence import (
    WORKING_STATES,
    AcdError,
    AgentState,
    AgentStateChanged,
    PresenceEvent,
    PresenceMachine,
)


class EventSink(Protocol):
    """Where the roster puts :class:`AgentStateChanged` events (the engine's outbox list)."""

    def append(self, item: AgentStateChanged, /) -> None: ...


class UnknownAgentError(AcdError, KeyError):
    """No agent with that id."""

    def __str__(self) -> str:
        return f"unknown agent {self.args[0]!r}"


@dataclass(frozen=True, slots=True)
class Team:
    """A group of agents that share customers (the preferred-agent fallback) and queues."""

    team_id: str
    name: str = ""


@dataclass(slots=True, eq=False)
class Agent:
    """One agent: who they are (configuration) and what they are doing (runtime).

    ``skills`` maps a skill name to a level (higher is better). ``endpoints`` are the SIP
    addresses of record the call layer rings. ``wrap_up_s`` overrides the queue's wrap-up.

    Runtime fields are written only by the roster and the engine. ``idle_since`` is the
    longest-idle key: when the agent's last call ended, or when they came into service if
    they have not had one since.
    """

    agent_id: str
    name: str = ""
    team_id: str | None = None
    skills: Mapping[str, int] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()
    wrap_up_s: float | None = None

    state: AgentState = AgentState.OFFLINE
    reason: str | None = None
    version: int = 0
    state_since: float = 0.0
    idle_since: float = 0.0
    last_call_ended_at: float | None = None
    registered: bool = True
    #: queue id -> number of reasons the agent is a member (base membership, each overflow
    #: group that brought them in); a dict, not a set, so iteration order is deterministic.
    queues: dict[str, int] = field(default_factory=dict)
    offer_call_id: str | None = None
    current_call_id: str | None = None
    current_queue_id: str | None = None
    answered_at: float = 0.0


class AgentRoster:
    """Owns every agent's presence; appends each change to ``outbox``."""

    __slots__ = ("_apply", "agents", "machine", "outbox", "queue_working", "team_working", "teams")

    def __init__(self, machine: PresenceMachine, outbox: EventSink) -> None:
        self.machine = machine
        self._apply = machine.apply
        self.outbox = outbox
        self.agents: dict[str, Agent] = {}
        self.teams: dict[str, Team] = {}
        #: team id -> number of its agents in a working state (preferred-agent step skip).
        self.team_working: dict[str, int] = {}
        #: queue id -> number of its members in a working state (estimated wait, wallboard);
        #: the engine adjusts it when membership changes.
        self.queue_working: dict[str, int] = {}

    def add_team(self, team: Team) -> None:
        self.teams[team.team_id] = team
        self.team_working.setdefault(team.team_id, 0)

    def add(self, agent: Agent) -> None:
        if agent.agent_id in self.agents:
            raise AcdError(f"agent {agent.agent_id!r} already exists")
        if agent.team_id is not None and agent.team_id not in self.teams:
            self.add_team(Team(agent.team_id))
        if agent.team_id is not None and agent.state in WORKING_STATES:
            self.team_working[agent.team_id] += 1
        self.agents[agent.agent_id] = agent

    def get(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise UnknownAgentError(agent_id) from None

    def apply(
        self, agent: Agent, event: PresenceEvent, now: float, reason: str | None = None
    ) -> AgentStateChanged | None:
        """Move ``agent`` through the presence table (raises if the move is not listed)."""
        old = agent.state
        change = self._apply(agent, event, now, reason)
        if change is not None:
            now_working = agent.state in WORKING_STATES
            if (old in WORKING_STATES) != now_working:
                # Only logins, logouts and breaks get here: a call's own moves
                # (reserved, on call, wrap-up, available) are all working states.
                delta = 1 if now_working else -1
                if agent.team_id is not None:
                    self.team_working[agent.team_id] += delta
                queue_working = self.queue_working
                for qid in agent.queues:
                    queue_working[qid] = queue_working.get(qid, 0) + delta
            self.outbox.append(change)
        return change

    def try_reserve(self, agent_id: str, expected_version: int, call_id: str, now: float) -> bool:
        """Reserve the agent for ``call_id`` if nothing changed since ``expected_version``.

        Compare-and-set: succeeds only when the agent is AVAILABLE *and* its version is
        still the one the caller read (the SQL form is in the module docstring). On
        success the version moves on, so a second reservation with the same expectation
        is refused: one agent never gets two calls at once.
        """
        agent = self.get(agent_id)
        if agent.version != expected_version or agent.state is not AgentState.AVAILABLE:
            return False
        self.apply(agent, PresenceEvent.RESERVE, now, None)
        agent.offer_call_id = call_id
        return True
