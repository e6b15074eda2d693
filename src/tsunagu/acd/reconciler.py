"""The presence reconciler: agents' states checked against what SIP and the calls say.

Why: the most common complaint about queue software (Asterisk queues, FreeSWITCH
mod_callcenter) is agents stuck "reserved" or "on a call" forever after a lost event, and
so never offered another call. Every few seconds the server compares each agent's ACD
state with the truth — is a phone registered, is there a call leg ringing or bridged to
this agent — and plans the repair. Planning is a pure function over snapshots (tested
with a table of drifts); the call layer applies the repairs and logs each one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from tsunagu.acd.presence import REASON_REGISTRATION_LOST, AgentState


class Drift(Enum):
    #: Working or away with no registered phone: nobody can reach them.
    NOT_REGISTERED = "not_registered"
    #: Offline because the phone had gone, but it is registered again.
    REGISTERED_AGAIN = "registered_again"
    #: Reserved for a call that has no ringing leg to this agent any more.
    STALE_RESERVATION = "stale_reservation"
    #: On a call that no longer has a leg bridged to this agent.
    STALE_CALL = "stale_call"


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    agent_id: str
    state: AgentState
    reason: str | None
    offer_call_id: str | None
    current_call_id: str | None
    #: When the agent entered ``state`` (same clock as ``now`` below).
    since: float


@dataclass(frozen=True, slots=True)
class Repair:
    agent_id: str
    drift: Drift
    call_id: str | None = None


def plan_repairs(
    agents: Iterable[AgentSnapshot],
    registered: set[str],
    ringing: set[tuple[str, str]],
    talking: set[tuple[str, str]],
    *,
    now: float,
    grace_s: float = 5.0,
) -> list[Repair]:
    """What to repair. ``registered``: agents with a live binding; ``ringing`` and
    ``talking``: (agent, call) pairs with a leg ringing / bridged right now. A state
    younger than ``grace_s`` is left alone: the leg for a fresh offer may still be on its
    way (media opened, INVITE being built)."""
    repairs: list[Repair] = []
    for agent in agents:
        if now - agent.since < grace_s:
            continue
        state = agent.state
        if (
            state is AgentState.RESERVED
            and (agent.agent_id, agent.offer_call_id or "") not in ringing
        ):
            repairs.append(Repair(agent.agent_id, Drift.STALE_RESERVATION, agent.offer_call_id))
        elif (
            state is AgentState.ON_CALL
            and (agent.agent_id, agent.current_call_id or "") not in talking
        ):
            repairs.append(Repair(agent.agent_id, Drift.STALE_CALL, agent.current_call_id))
        elif state in (AgentState.AVAILABLE, AgentState.WRAP_UP, AgentState.AWAY) and (
            agent.agent_id not in registered
        ):
            repairs.append(Repair(agent.agent_id, Drift.NOT_REGISTERED))
        elif (
            state is AgentState.OFFLINE
            and agent.reason == REASON_REGISTRATION_LOST
            and agent.agent_id in registered
        ):
            repairs.append(Repair(agent.agent_id, Drift.REGISTERED_AGAIN))
    return repairs
