"""Presence: the transition table, and the engine keeping agent states true."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsunagu.acd.agents import Agent, AgentRoster
from tsunagu.acd.engine import AcdEngine, CancelOffer, OfferCall
from tsunagu.acd.presence import (
    TRANSITIONS,
    AcdError,
    AgentState,
    AgentStateChanged,
    PresenceEvent,
    PresenceMachine,
    PresenceTransitionError,
)
from tsunagu.acd.queues import Call, QueueConfig

S = AgentState
E = PresenceEvent


def _agent(state: AgentState, reason: str | None = None) -> Agent:
    return Agent("1001", state=state, reason=reason, version=7, state_since=1.0)


@given(
    state=st.sampled_from(AgentState),
    event=st.sampled_from(PresenceEvent),
    reason=st.one_of(st.none(), st.sampled_from(["lunch", "training"])),
    rna=st.sampled_from([S.AWAY, S.AVAILABLE]),
)
def test_every_state_event_pair_moves_per_table_or_is_refused(
    state: AgentState, event: PresenceEvent, reason: str | None, rna: AgentState
) -> None:
    machine = PresenceMachine(ring_no_answer_to=rna)
    agent = _agent(state, "before")
    expected = TRANSITIONS.get((state, event))
    if (state, event) == (S.RESERVED, E.RING_NO_ANSWER):
        expected = rna
    if expected is None:
        with pytest.raises(PresenceTransitionError) as info:
            machine.apply(agent, event, 50.0, reason)
        assert info.value.state is state and info.value.event is event
        # A refused move changes nothing at all.
        assert (agent.state, agent.reason, agent.version, agent.state_since) == (
            state,
            "before",
            7,
            1.0,
        )
        return
    change = machine.apply(agent, event, 50.0, reason)
    assert agent.state is expected
    assert change is not None  # reason "before" never equals the new one
    assert change == AgentStateChanged("1001", state, expected, agent.reason, 50.0)
    assert agent.version == 8 and agent.state_since == 50.0
    if expected is S.AWAY:
        assert agent.reason  # away always carries a reason code


def test_table_has_no_dead_ends() -> None:
    """From every state an agent can get back to work and can log out."""
    graph: dict[AgentState, set[AgentState]] = {s: set() for s in AgentState}
    for (old, _event), new in TRANSITIONS.items():
        graph[old].add(new)

    def reachable(start: AgentState) -> set[AgentState]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for state in AgentState:
        assert {S.AVAILABLE, S.OFFLINE} <= reachable(state), state


def test_self_move_with_same_reason_is_silent_and_keeps_version() -> None:
    machine = PresenceMachine()
    agent = _agent(S.AWAY, "lunch")
    assert machine.apply(agent, E.SET_AWAY, 2.0, "lunch") is None
    assert agent.version == 7
    change = machine.apply(agent, E.SET_AWAY, 3.0, "training")
    assert change is not None and change.reason == "training" and agent.version == 8


def test_ring_no_answer_goes_away_by_default_with_reason() -> None:
    agent = _agent(S.RESERVED)
    PresenceMachine().apply(agent, E.RING_NO_ANSWER, 1.0)
    assert (agent.state, agent.reason) == (S.AWAY, "ring_no_answer")
    agent = _agent(S.RESERVED)
    PresenceMachine(ring_no_answer_to=S.AVAILABLE).apply(agent, E.RING_NO_ANSWER, 1.0)
    assert agent.state is S.AVAILABLE
    with pytest.raises(ValueError):
        PresenceMachine(ring_no_answer_to=S.ON_CALL)


def test_roster_reservation_is_compare_and_set() -> None:
    outbox: list[AgentStateChanged] = []
    roster = AgentRoster(PresenceMachine(), outbox)
    roster.add(Agent("1001", state=S.AVAILABLE))
    seen = roster.get("1001").version
    assert roster.try_reserve("1001", seen, "call-1", 1.0)
    # A second node that read the same version loses: one agent, one call.
    assert not roster.try_reserve("1001", seen, "call-2", 1.0)
    assert roster.get("1001").offer_call_id == "call-1"
    # Even with the fresh version, a reserved agent cannot be reserved again.
    assert not roster.try_reserve("1001", roster.get("1001").version, "call-2", 1.0)
    assert [(c.old, c.new) for c in outbox] == [(S.AVAILABLE, S.RESERVED)]


# --------------------------------------------------------------------------- engine level


def _engine(**queue: object) -> AcdEngine:
    engine = AcdEngine()
    engine.add_queue(QueueConfig("q", agent_ids=("1001", "1002"), **queue))  # type: ignore[arg-type]
    engine.add_agent(Agent("1001", team_id="t"))
    engine.add_agent(Agent("1002", team_id="t"))
    return engine


def _changes(engine: AcdEngine) -> list[tuple[str, AgentState, AgentState, str | None]]:
    return [
        (e.agent_id, e.old, e.new, e.reason)
        for e in engine.pop_events()
        if isinstance(e, AgentStateChanged)
    ]


def test_login_logout_and_away_emit_typed_changes() -> None:
    engine = _engine()
    engine.login("1001", 1.0)
    engine.set_away("1001", "lunch", 2.0)
    engine.set_available("1001", 3.0)
    engine.logout("1001", 4.0)
    assert _changes(engine) == [
        ("1001", S.OFFLINE, S.AVAILABLE, None),
        ("1001", S.AVAILABLE, S.AWAY, "lunch"),
        ("1001", S.AWAY, S.AVAILABLE, None),
        ("1001", S.AVAILABLE, S.OFFLINE, "logout"),
    ]
    with pytest.raises(AcdError):
        engine.set_agent_state("1001", E.ANSWER, 5.0)  # call facts have their own methods
    with pytest.raises(PresenceTransitionError):
        engine.set_available("1001", 5.0)  # offline: log in first


def test_wrap_up_ends_by_timer_or_by_the_agent() -> None:
    engine = _engine(wrap_up_s=30.0)
    engine.login("1001", 0.0)
    engine.enqueue(Call("c1", "q"), 1.0)
    assert engine.agent_answered("1001", "c1", 2.0)
    engine.call_ended("1001", 62.0)
    assert engine.agent("1001").state is S.WRAP_UP
    assert engine.next_timer() == 92.0
    engine.handle_timer(91.9)
    assert engine.agent("1001").state is S.WRAP_UP
    engine.handle_timer(92.0)
    assert engine.agent("1001").state is S.AVAILABLE
    # Second call: the agent ends wrap-up early; the old timer must not fire later.
    engine.enqueue(Call("c2", "q"), 100.0)
    engine.agent_answered("1001", "c2", 101.0)
    engine.call_ended("1001", 110.0)
    engine.set_available("1001", 115.0)
    engine.set_away("1001", "coffee", 120.0)
    engine.handle_timer(140.0)
    assert (engine.agent("1001").state, engine.agent("1001").reason) == (S.AWAY, "coffee")
    assert engine.next_timer() is None


def test_registration_lost_while_ringing_withdraws_and_reoffers() -> None:
    engine = _engine()
    engine.login("1001", 0.0)
    engine.login("1002", 1.0)
    engine.pop_events()
    engine.enqueue(Call("c1", "q"), 5.0)
    offers = [e for e in engine.pop_events() if isinstance(e, OfferCall)]
    assert [o.agent_id for o in offers] == ["1001"]  # longest idle
    engine.set_agent_state("1001", E.REGISTRATION_LOST, 6.0)
    events = engine.pop_events()
    assert CancelOffer("c1", "1001", "registration_lost") in events
    assert OfferCall("c1", "1002", "q") in events
    assert engine.agent("1001").state is S.OFFLINE
    assert engine.agent("1001").offer_call_id is None


def test_registration_lost_during_call_goes_offline_when_call_ends() -> None:
    engine = _engine(wrap_up_s=10.0)
    engine.login("1001", 0.0)
    engine.enqueue(Call("c1", "q"), 1.0)
    engine.agent_answered("1001", "c1", 2.0)
    engine.set_agent_state("1001", E.REGISTRATION_LOST, 3.0)
    assert engine.agent("1001").state is S.ON_CALL  # the dialog is still up
    engine.call_ended("1001", 40.0)
    assert engine.agent("1001").state is S.OFFLINE
    # The phone comes back: the agent was logged in, so back to work.
    engine.set_agent_state("1001", E.REGISTRATION_RESTORED, 50.0)
    assert engine.agent("1001").state is S.AVAILABLE


def test_registration_restored_does_not_log_in_a_logged_out_agent() -> None:
    engine = _engine()
    engine.login("1001", 0.0)
    engine.logout("1001", 1.0)
    engine.set_agent_state("1001", E.REGISTRATION_LOST, 2.0)
    engine.set_agent_state("1001", E.REGISTRATION_RESTORED, 3.0)
    assert engine.agent("1001").state is S.OFFLINE
    assert engine.agent("1001").reason == "logout"


def test_logout_refused_on_call() -> None:
    engine = _engine()
    engine.login("1001", 0.0)
    engine.enqueue(Call("c1", "q"), 1.0)
    engine.agent_answered("1001", "c1", 2.0)
    with pytest.raises(PresenceTransitionError):
        engine.logout("1001", 3.0)
    assert engine.agent("1001").state is S.ON_CALL
