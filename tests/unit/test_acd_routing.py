"""Routing: strategies, preferred-agent steps, re-offers, overflow, callbacks, max wait."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tsunagu.acd.agents import Agent, Team
from tsunagu.acd.engine import (
    AcdEngine,
    AcdEvent,
    CallbackOffered,
    CancelOffer,
    MaxWaitExceeded,
    OfferCall,
    OverflowActivated,
    OverflowReleased,
)
from tsunagu.acd.presence import (
    AcdError,
    AgentState,
    AgentStateChanged,
    PresenceEvent,
    PresenceTransitionError,
)
from tsunagu.acd.queues import (
    Call,
    CallState,
    OverflowGroup,
    OverflowRelease,
    OverflowTrigger,
    QueueConfig,
    Step,
    UnknownCallError,
)
from tsunagu.acd.strategies import Strategy

S = AgentState


def offers(events: Iterable[AcdEvent]) -> list[tuple[str, str]]:
    return [(e.call_id, e.agent_id) for e in events if isinstance(e, OfferCall)]


def cancels(events: Iterable[AcdEvent]) -> list[tuple[str, str, str]]:
    return [(e.call_id, e.agent_id, e.reason) for e in events if isinstance(e, CancelOffer)]


def build(
    agents: Iterable[str | Agent],
    *,
    login: bool = True,
    ring_no_answer_to: AgentState = S.AWAY,
    **queue: object,
) -> AcdEngine:
    """One queue "q" with the given agents, logged in at t=0,1,2,... (so longest idle is
    the first listed)."""
    engine = AcdEngine(ring_no_answer_to=ring_no_answer_to)
    records = [a if isinstance(a, Agent) else Agent(a) for a in agents]
    queue.setdefault("agent_ids", tuple(a.agent_id for a in records))
    engine.add_queue(QueueConfig("q", **queue))  # type: ignore[arg-type]
    for i, agent in enumerate(records):
        engine.add_agent(agent)
        if login:
            engine.login(agent.agent_id, float(i))
    engine.pop_events()
    return engine


def answer_and_finish(engine: AcdEngine, agent: str, call: str, t0: float, talk: float) -> None:
    assert engine.agent_answered(agent, call, t0)
    engine.call_ended(agent, t0 + talk)


# ----------------------------------------------------------------------------- strategies


def test_longest_idle_offers_agent_whose_last_call_ended_first() -> None:
    engine = build(["a", "b", "c"])
    engine.enqueue(Call("c1", "q"), 10.0)
    assert offers(engine.pop_events()) == [("c1", "a")]
    answer_and_finish(engine, "a", "c1", 10.0, 5.0)  # a idle since 15
    engine.pop_events()
    engine.enqueue(Call("c2", "q"), 20.0)
    engine.enqueue(Call("c3", "q"), 20.0)
    engine.enqueue(Call("c4", "q"), 20.0)
    assert offers(engine.pop_events()) == [("c2", "b"), ("c3", "c"), ("c4", "a")]


def test_round_robin_takes_turns_and_wraps_around() -> None:
    engine = build(["a", "b", "c"], strategy=Strategy.ROUND_ROBIN)
    picked = []
    for n in range(7):
        engine.enqueue(Call(f"c{n}", "q"), 10.0 + n)
        ((call, agent),) = offers(engine.pop_events())
        picked.append(agent)
        # "a" finishes at once each time: round robin must still move on.
        answer_and_finish(engine, agent, call, 10.0 + n, 0.1)
        engine.pop_events()
    assert picked == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_skips_busy_agents_then_gives_them_their_turn() -> None:
    engine = build(["a", "b", "c"], strategy=Strategy.ROUND_ROBIN)
    engine.enqueue(Call("c0", "q"), 10.0)
    engine.agent_answered("a", "c0", 10.0)
    engine.enqueue(Call("c1", "q"), 11.0)
    engine.enqueue(Call("c2", "q"), 12.0)
    assert offers(engine.pop_events()) == [("c0", "a"), ("c1", "b"), ("c2", "c")]
    engine.call_ended("a", 13.0)
    engine.agent_answered("b", "c1", 13.0)
    engine.call_ended("b", 14.0)
    engine.pop_events()
    engine.enqueue(Call("c3", "q"), 15.0)
    # After c: the turn wraps to a (available), not b.
    assert offers(engine.pop_events()) == [("c3", "a")]


def test_ring_all_first_answer_wins_and_the_rest_are_cancelled() -> None:
    engine = build(["a", "b", "c"], strategy=Strategy.RING_ALL)
    engine.enqueue(Call("c1", "q"), 10.0)
    assert sorted(offers(engine.pop_events())) == [("c1", "a"), ("c1", "b"), ("c1", "c")]
    assert all(engine.agent(x).state is S.RESERVED for x in "abc")
    assert engine.agent_answered("b", "c1", 12.0)
    events = engine.pop_events()
    assert sorted(cancels(events)) == [
        ("c1", "a", "answered_elsewhere"),
        ("c1", "c", "answered_elsewhere"),
    ]
    # An answer that crossed the cancel is refused; the agent is untouched.
    assert not engine.agent_answered("a", "c1", 12.1)
    assert [engine.agent(x).state for x in "abc"] == [S.AVAILABLE, S.ON_CALL, S.AVAILABLE]


def test_ring_all_head_caller_rings_agents_who_free_up_and_next_caller_waits() -> None:
    engine = build(["a", "b"], strategy=Strategy.RING_ALL)
    engine.enqueue(Call("c0", "q"), 1.0)
    engine.agent_answered("a", "c0", 2.0)
    engine.enqueue(Call("c1", "q"), 3.0)
    engine.enqueue(Call("c2", "q"), 4.0)
    assert offers(engine.pop_events()) == [("c0", "a"), ("c0", "b"), ("c1", "b")]
    engine.call_ended("a", 5.0)  # a frees up while c1 rings b: a joins c1's ring
    assert offers(engine.pop_events()) == [("c1", "a")]
    engine.agent_answered("a", "c1", 6.0)
    # b is released and now rings for c2
    events = engine.pop_events()
    assert cancels(events) == [("c1", "b", "answered_elsewhere")]
    assert offers(events) == [("c2", "b")]


def test_skills_based_filters_by_min_level_then_highest_level_then_longest_idle() -> None:
    agents = [
        Agent("low", skills={"es": 1}),
        Agent("mid1", skills={"es": 3}),
        Agent("mid2", skills={"es": 3}),
        Agent("top", skills={"es": 5}),
        Agent("none", skills={"fr": 5}),
    ]
    engine = build(
        agents,
        strategy=Strategy.SKILLS_BASED,
        skill="es",
        min_skill_level=2,
        agent_ids=("low", "mid1", "mid2", "top", "none"),
    )
    for n in range(4):
        engine.enqueue(Call(f"c{n}", "q"), 10.0)
    assert offers(engine.pop_events()) == [("c0", "top"), ("c1", "mid1"), ("c2", "mid2")]
    # c3 waits: "low" (level 1) and "none" (no Spanish) are free but not eligible.
    assert engine.agent("low").state is S.AVAILABLE
    assert engine.agent("none").state is S.AVAILABLE
    assert engine.waiting_calls() == ["c0", "c1", "c2", "c3"]  # ringing ones included


def test_priority_first_then_arrival_order() -> None:
    engine = build(["a"])
    engine.enqueue(Call("busy", "q"), 0.0)
    engine.agent_answered("a", "busy", 0.0)
    engine.enqueue(Call("p0-first", "q"), 1.0)
    engine.enqueue(Call("p5-first", "q", priority=5), 2.0)
    engine.enqueue(Call("p0-second", "q"), 3.0)
    engine.enqueue(Call("p5-second", "q", priority=5), 4.0)
    assert [engine.position(c) for c in ("p5-first", "p5-second", "p0-first", "p0-second")] == [
        1,
        2,
        3,
        4,
    ]
    engine.pop_events()
    served = []
    t = 10.0
    for _ in range(4):
        engine.call_ended("a", t)
        ((call, _agent),) = offers(engine.pop_events())
        served.append(call)
        engine.agent_answered("a", call, t)
        t += 10
    assert served == ["p5-first", "p5-second", "p0-first", "p0-second"]


# ------------------------------------------------------------------------ preferred agent


def _preferred_engine() -> AcdEngine:
    engine = AcdEngine()
    engine.add_team(Team("sales"))
    engine.add_queue(
        QueueConfig(
            "q",
            strategy=Strategy.PREFERRED_AGENT,
            team_ids=("sales", "support"),
            rep_timeout_s=20.0,
            team_timeout_s=30.0,
            ring_timeout_s=15.0,
        )
    )
    for aid, team in [("rep", "sales"), ("mate", "sales"), ("other", "support")]:
        engine.add_agent(Agent(aid, team_id=team))
    return engine


def test_preferred_rep_available_gets_the_call_even_if_not_longest_idle() -> None:
    engine = _preferred_engine()
    for i, aid in enumerate(["other", "mate", "rep"]):
        engine.login(aid, float(i))
    engine.pop_events()
    engine.enqueue(Call("c1", "q", preferred_agent_id="rep"), 10.0)
    assert offers(engine.pop_events()) == [("c1", "rep")]


def test_preferred_steps_rep_then_team_then_anyone() -> None:
    engine = _preferred_engine()
    for i, aid in enumerate(["rep", "mate", "other"]):
        engine.login(aid, float(i))
    # rep and mate are busy; "other" (another team) is free.
    engine.enqueue(Call("x1", "q"), 5.0)
    engine.enqueue(Call("x2", "q"), 5.0)
    engine.agent_answered("rep", "x1", 5.0)
    engine.agent_answered("mate", "x2", 5.0)
    engine.pop_events()
    engine.enqueue(Call("c1", "q", preferred_agent_id="rep"), 10.0)
    assert offers(engine.pop_events()) == []  # only the rep may take it for 20 s
    engine.handle_timer(29.9)
    assert offers(engine.pop_events()) == []
    engine.handle_timer(30.0)  # rep step over: the team, still busy; "other" may not
    assert offers(engine.pop_events()) == []
    engine.handle_timer(60.0)  # team step over: anyone
    assert offers(engine.pop_events()) == [("c1", "other")]


def test_preferred_rep_freeing_up_during_rep_step_gets_the_call() -> None:
    engine = _preferred_engine()
    for i, aid in enumerate(["rep", "mate", "other"]):
        engine.login(aid, float(i))
    engine.enqueue(Call("x1", "q"), 5.0)
    engine.agent_answered("rep", "x1", 5.0)
    engine.pop_events()
    engine.enqueue(Call("c1", "q", preferred_agent_id="rep"), 10.0)
    assert offers(engine.pop_events()) == []
    engine.call_ended("rep", 15.0)
    assert offers(engine.pop_events()) == [("c1", "rep")]


def test_preferred_team_member_freeing_up_during_team_step_gets_the_call() -> None:
    engine = _preferred_engine()
    for i, aid in enumerate(["rep", "mate", "other"]):
        engine.login(aid, float(i))
    engine.enqueue(Call("x1", "q"), 5.0)
    engine.enqueue(Call("x2", "q"), 5.0)
    engine.agent_answered("rep", "x1", 5.0)
    engine.agent_answered("mate", "x2", 5.0)
    engine.enqueue(Call("c1", "q", preferred_agent_id="rep"), 10.0)
    engine.handle_timer(30.0)
    engine.pop_events()
    engine.call_ended("mate", 40.0)
    assert offers(engine.pop_events()) == [("c1", "mate")]


def test_preferred_rep_away_skips_to_team_and_whole_team_away_skips_to_anyone() -> None:
    engine = _preferred_engine()
    for i, aid in enumerate(["rep", "mate", "other"]):
        engine.login(aid, float(i))
    engine.set_away("rep", "lunch", 3.0)
    engine.pop_events()
    engine.enqueue(Call("c1", "q", preferred_agent_id="rep"), 10.0)
    assert offers(engine.pop_events()) == [("c1", "mate")]
    engine.set_away("mate", "meeting", 11.0)  # withdraws c1 from mate; team now all away
    events = engine.pop_events()
    assert cancels(events) == [("c1", "mate", "set_away")]
    assert offers(events) == [("c1", "other")]


def test_preferred_rep_ring_no_answer_moves_to_team_at_once() -> None:
    engine = _preferred_engine()
    for i, aid in enumerate(["rep", "mate", "other"]):
        engine.login(aid, float(i))
    engine.pop_events()
    engine.enqueue(Call("c1", "q", preferred_agent_id="rep"), 10.0)
    assert offers(engine.pop_events()) == [("c1", "rep")]
    engine.handle_timer(25.0)  # ring timeout
    events = engine.pop_events()
    assert cancels(events) == [("c1", "rep", "ring_no_answer")]
    assert offers(events) == [("c1", "mate")]
    assert (engine.agent("rep").state, engine.agent("rep").reason) == (S.AWAY, "ring_no_answer")


# ---------------------------------------------------------------- ring-no-answer, re-offer


def test_ring_no_answer_reoffers_to_next_agent_and_parks_the_silent_one() -> None:
    engine = build(["a", "b", "c"], ring_timeout_s=15.0)
    engine.enqueue(Call("c1", "q"), 10.0)
    assert offers(engine.pop_events()) == [("c1", "a")]
    assert engine.next_timer() == 25.0
    engine.handle_timer(25.0)
    events = engine.pop_events()
    assert cancels(events) == [("c1", "a", "ring_no_answer")]
    assert offers(events) == [("c1", "b")]
    assert engine.agent("a").state is S.AWAY
    # b refuses explicitly (486) before the timeout: on to c.
    assert engine.agent_no_answer("b", "c1", 27.0)
    assert offers(engine.pop_events()) == [("c1", "c")]
    assert engine.agent_answered("c", "c1", 30.0)
    assert not engine.agent_no_answer("c", "c1", 31.0)  # no longer an offer


def test_ring_no_answer_to_available_never_reoffers_same_call_to_same_agent() -> None:
    engine = build(["a", "b"], ring_no_answer_to=S.AVAILABLE, ring_timeout_s=10.0)
    engine.enqueue(Call("c1", "q"), 10.0)
    engine.enqueue(Call("c2", "q"), 10.0)
    assert offers(engine.pop_events()) == [("c1", "a"), ("c2", "b")]
    engine.agent_no_answer("a", "c1", 11.0)
    # a is available again but declined c1; c1 waits (b is busy), a stays free.
    assert offers(engine.pop_events()) == []
    assert engine.agent("a").state is S.AVAILABLE
    engine.agent_no_answer("b", "c2", 12.0)
    # c1 goes to b (who has not declined it), c2 to a
    assert sorted(offers(engine.pop_events())) == [("c1", "b"), ("c2", "a")]


def test_abandon_while_ringing_frees_the_agent_for_the_next_caller() -> None:
    engine = build(["a"])
    engine.enqueue(Call("c1", "q"), 1.0)
    engine.enqueue(Call("c2", "q"), 2.0)
    engine.pop_events()
    assert engine.abandon("c1", 3.0)
    events = engine.pop_events()
    assert cancels(events) == [("c1", "a", "abandoned")]
    assert offers(events) == [("c2", "a")]
    assert not engine.abandon("c1", 4.0)  # already gone


# --------------------------------------------------------------------- atomic reservation


def test_reserved_agent_is_never_offered_a_second_call() -> None:
    engine = build(["a"])
    engine.enqueue(Call("c1", "q"), 1.0)
    engine.enqueue(Call("c2", "q"), 1.0)
    assert offers(engine.pop_events()) == [("c1", "a")]
    agent = engine.agent("a")
    assert not engine.try_reserve("a", agent.version, "c2", 1.5)  # reserved: refused
    engine.agent_answered("a", "c1", 2.0)
    assert not engine.try_reserve("a", agent.version, "c2", 2.5)  # on a call: refused
    engine.call_ended("a", 3.0)
    assert offers(engine.pop_events()) == [("c2", "a")]


def test_try_reserve_with_stale_version_loses() -> None:
    engine = build(["a"])
    seen = engine.agent("a").version
    engine.set_away("a", "x", 1.0)
    engine.set_available("a", 2.0)  # same state as when read, but a new version
    assert not engine.try_reserve("a", seen, "remote-call", 3.0)
    assert engine.try_reserve("a", engine.agent("a").version, "remote-call", 3.0)


# ------------------------------------------------------------------------------- max wait


def test_max_wait_sends_caller_to_fallback_and_stops_ringing() -> None:
    engine = build(["a"], max_wait_s=60.0, ring_timeout_s=None)
    engine.enqueue(Call("c0", "q"), 0.0)
    engine.agent_answered("a", "c0", 0.0)
    engine.enqueue(Call("c1", "q"), 10.0)
    engine.pop_events()
    engine.handle_timer(69.0)
    assert engine.pop_events() == []
    engine.call_ended("a", 69.5)  # a is offered c1 ...
    assert offers(engine.pop_events()) == [("c1", "a")]
    engine.handle_timer(70.0)  # ... but c1's 60 s are up while it rings
    events = engine.pop_events()
    assert MaxWaitExceeded("c1", "q", 60.0) in events
    assert cancels(events) == [("c1", "a", "max_wait")]
    assert engine.agent("a").state is S.AVAILABLE
    assert not engine.agent_answered("a", "c1", 70.1)
    with pytest.raises(UnknownCallError):
        engine.position("c1")


# ------------------------------------------------------------------------------- callback


def test_queued_callback_keeps_place_and_is_offered_to_an_agent_first() -> None:
    engine = build(["a"], max_wait_s=120.0)
    engine.enqueue(Call("c0", "q"), 0.0)
    engine.agent_answered("a", "c0", 0.0)
    engine.enqueue(Call("c1", "q"), 1.0)
    engine.enqueue(Call("c2", "q"), 2.0)
    engine.request_callback("c1", 5.0, number="+81312345678")
    assert engine.position("c1") == 1
    engine.pop_events()
    engine.handle_timer(300.0)  # max wait no longer applies to c1; c2 goes to fallback
    events = engine.pop_events()
    assert [e.call_id for e in events if isinstance(e, MaxWaitExceeded)] == ["c2"]
    engine.call_ended("a", 400.0)
    events = engine.pop_events()
    assert CallbackOffered("c1", "a", "q", "+81312345678") in events
    assert offers(events) == []
    assert engine.agent_answered("a", "c1", 405.0)  # agent took it: now dial customer
    assert engine.agent("a").state is S.ON_CALL


def test_a_callback_task_is_a_callback_from_the_start() -> None:
    # A voicemail's task enters with an agent free: the very first offer is a callback
    # (the agent is rung first), never an OfferCall, and max wait does not apply.
    engine = build(["a"], max_wait_s=60.0)
    engine.enqueue(Call("t1", "q"), 0.0, callback_number="0908880000")
    events = engine.pop_events()
    assert CallbackOffered("t1", "a", "q", "0908880000") in events
    assert offers(events) == []
    assert engine.agent_no_answer("a", "t1", 1.0)
    engine.handle_timer(100.0)
    assert not [e for e in engine.pop_events() if isinstance(e, MaxWaitExceeded)]
    assert engine.position("t1") == 1  # still waiting for the next agent


def test_callback_refused_while_already_ringing() -> None:
    engine = build(["a"])
    engine.enqueue(Call("c1", "q"), 0.0)
    with pytest.raises(AcdError):
        engine.request_callback("c1", 1.0)
    with pytest.raises(UnknownCallError):
        engine.request_callback("nope", 1.0)


# ------------------------------------------------------------------------------- overflow


def _overflow_engine(**group: object) -> AcdEngine:
    engine = AcdEngine()
    defaults: dict[str, object] = {
        "team_ids": ("complaints",),
        "trigger": OverflowTrigger(waiting_at_least=3),
        "release": OverflowRelease(waiting_at_most=0, min_active_s=60.0),
    }
    defaults.update(group)
    engine.add_queue(
        QueueConfig(
            "q",
            agent_ids=("a",),
            ring_timeout_s=None,
            overflow_groups=(OverflowGroup("surge", **defaults),),  # type: ignore[arg-type]
        )
    )
    engine.add_agent(Agent("a"))
    engine.add_agent(Agent("x", team_id="complaints"))
    engine.add_agent(Agent("y", team_id="complaints"))
    for i, aid in enumerate("axy"):
        engine.login(aid, float(i))
    engine.pop_events()
    return engine


def test_overflow_group_joins_at_threshold_and_takes_calls() -> None:
    engine = _overflow_engine()
    engine.enqueue(Call("c0", "q"), 10.0)
    engine.agent_answered("a", "c0", 10.0)
    engine.enqueue(Call("c1", "q"), 11.0)
    engine.enqueue(Call("c2", "q"), 12.0)
    events = engine.pop_events()
    assert offers(events) == [("c0", "a")]  # below the threshold x and y are not used
    assert not [e for e in events if isinstance(e, OverflowActivated)]
    engine.enqueue(Call("c3", "q"), 13.0)
    events = engine.pop_events()
    activated = [e for e in events if isinstance(e, OverflowActivated)]
    assert [(e.group_id, e.manual) for e in activated] == [("surge", False)]
    assert "waiting 3 >= 3" in activated[0].reason
    assert offers(events) == [("c1", "x"), ("c2", "y")]


def test_overflow_release_has_hysteresis_and_minimum_time() -> None:
    engine = _overflow_engine()
    engine.enqueue(Call("c0", "q"), 10.0)
    engine.agent_answered("a", "c0", 10.0)
    for n in (1, 2, 3):
        engine.enqueue(Call(f"c{n}", "q"), 10.0 + n)
    engine.pop_events()  # active since 13; x has c1, y has c2, c3 waits
    engine.agent_answered("x", "c1", 14.0)
    engine.agent_answered("y", "c2", 14.0)
    engine.call_ended("x", 20.0)  # x takes c3: nobody waiting, but only 7 s active
    engine.agent_answered("x", "c3", 20.0)
    engine.handle_timer(30.0)
    assert not [e for e in engine.pop_events() if isinstance(e, OverflowReleased)]
    engine.handle_timer(80.0)  # 60 s active and nobody waiting: release
    released = [e for e in engine.pop_events() if isinstance(e, OverflowReleased)]
    assert [(e.group_id, e.manual) for e in released] == [("surge", False)]
    # Overflow agents finish their calls but get no more from this queue.
    engine.call_ended("x", 90.0)
    engine.call_ended("y", 90.0)
    engine.enqueue(Call("c4", "q"), 91.0)
    assert offers(engine.pop_events()) == []
    assert engine.queue_snapshot("q", 91.0).waiting == 1


def test_overflow_does_not_flap_between_thresholds() -> None:
    engine = _overflow_engine(
        trigger=OverflowTrigger(waiting_at_least=3),
        release=OverflowRelease(waiting_at_most=1, min_active_s=0.0),
    )
    engine.logout("x", 5.0)
    engine.logout("y", 5.0)  # group members offline: joining does not drain the queue
    engine.enqueue(Call("c0", "q"), 10.0)
    engine.agent_answered("a", "c0", 10.0)
    for n in (1, 2, 3):
        engine.enqueue(Call(f"c{n}", "q"), 10.0 + n)
    engine.abandon("c3", 20.0)  # 2 waiting: between release (1) and trigger (3)
    engine.enqueue(Call("c4", "q"), 21.0)  # 3 again, still active
    engine.abandon("c4", 22.0)
    engine.handle_timer(100.0)
    kinds = [type(e).__name__ for e in engine.pop_events() if "Overflow" in type(e).__name__]
    assert kinds == ["OverflowActivated"]
    engine.abandon("c2", 101.0)  # 1 waiting: now released
    kinds = [type(e).__name__ for e in engine.pop_events() if "Overflow" in type(e).__name__]
    assert kinds == ["OverflowReleased"]


def test_overflow_longest_wait_trigger_fires_from_the_periodic_check() -> None:
    engine = _overflow_engine(
        trigger=OverflowTrigger(longest_wait_at_least_s=30.0),
        release=OverflowRelease(longest_wait_at_most_s=5.0, min_active_s=0.0),
    )
    engine.logout("x", 5.0)
    engine.enqueue(Call("c0", "q"), 10.0)
    engine.agent_answered("a", "c0", 10.0)
    engine.enqueue(Call("c1", "q"), 11.0)
    engine.pop_events()
    engine.handle_timer(40.0)
    assert not [e for e in engine.pop_events() if isinstance(e, OverflowActivated)]
    engine.handle_timer(45.0)  # checks every 5 s: 34 s >= 30 s at t=45
    events = engine.pop_events()
    assert [e.reason for e in events if isinstance(e, OverflowActivated)] == [
        "longest wait 34s >= 30s"
    ]
    assert offers(events) == [("c1", "y")]


def test_manual_overflow_stays_until_manual_release() -> None:
    engine = _overflow_engine()
    engine.activate_overflow("q", "surge", 10.0, actor="lead@example.com")
    events = engine.pop_events()
    assert [
        (type(e).__name__, e.reason)
        for e in events
        if isinstance(e, (OverflowActivated, OverflowReleased))
    ] == [("OverflowActivated", "manual by lead@example.com")]
    engine.handle_timer(500.0)  # quiet for long: a manual activation is not auto-released
    assert not [e for e in engine.pop_events() if isinstance(e, OverflowReleased)]
    engine.enqueue(Call("c1", "q"), 501.0)
    engine.enqueue(Call("c2", "q"), 501.0)
    assert offers(engine.pop_events()) == [("c1", "a"), ("c2", "x")]
    engine.release_overflow("q", "surge", 502.0, actor="lead@example.com")
    assert [e.manual for e in engine.pop_events() if isinstance(e, OverflowReleased)] == [True]
    with pytest.raises(AcdError):
        engine.activate_overflow("q", "nope", 503.0, actor="lead")


def test_overflow_config_refuses_release_thresholds_without_hysteresis() -> None:
    with pytest.raises(ValueError):
        OverflowGroup(
            "g",
            trigger=OverflowTrigger(waiting_at_least=5),
            release=OverflowRelease(waiting_at_most=5),
        )


# ------------------------------------------------------------------ announcements, scale


def test_position_and_estimated_wait_from_staffing_and_handle_time() -> None:
    engine = build(["a", "b"], expected_aht_s=120.0)
    for n in range(5):
        engine.enqueue(Call(f"c{n}", "q"), float(n))
    # c0 and c1 ring a and b; they count ahead until answered.
    assert [engine.position(f"c{n}") for n in (2, 3, 4)] == [3, 4, 5]
    engine.agent_answered("a", "c0", 5.0)
    engine.agent_answered("b", "c1", 5.0)
    assert [engine.position(f"c{n}") for n in (2, 3, 4)] == [1, 2, 3]
    assert engine.estimated_wait("c3") == pytest.approx(2 * 120.0 / 2)
    engine.call_ended("b", 6.0)  # b (1 s call) is offered c2 ...
    engine.set_away("b", "x", 7.0)  # ... and walks away: c2 waits again, 1 agent staffed
    assert engine.position("c2") == 1
    # The configured 120 s counts as one call next to the measured 1 s one.
    assert engine.estimated_wait("c3") == pytest.approx(2 * (120.0 + 1.0) / 2 / 1)
    engine.call_ended("a", 65.0)  # 60 s call
    engine.agent_answered("a", "c2", 65.0)
    assert engine.estimated_wait("c3") == pytest.approx(1 * (120.0 + 1.0 + 60.0) / 3 / 1)
    with pytest.raises(UnknownCallError):
        engine.estimated_wait("c0")


def test_pools_and_lanes_stay_small_over_many_calls() -> None:
    """Lazy deletion must not leak: 20,000 calls through 3 overlapping queues."""
    engine = AcdEngine()
    ids = [f"a{i}" for i in range(30)]
    for qid in ("q1", "q2", "q3"):
        engine.add_queue(QueueConfig(qid, agent_ids=tuple(ids), ring_timeout_s=10.0))
    for i, aid in enumerate(ids):
        engine.add_agent(Agent(aid))
        engine.login(aid, float(i))
    t = 100.0
    for n in range(20_000):
        t += 1.0
        engine.enqueue(Call(f"c{n}", f"q{n % 3 + 1}"), t)
        for call, agent in offers(engine.pop_events()):
            engine.agent_answered(agent, call, t)
            engine.call_ended(agent, t + 0.5)
        engine.handle_timer(t)
    for qid in ("q1", "q2", "q3"):
        q = engine._queues[qid]
        assert len(q.pool) <= 2 * len(ids) + 64
        assert len(q.lane) <= 64
    assert len(engine._timers) <= 64


def test_estimated_wait_is_none_when_nobody_is_staffed() -> None:
    engine = build(["a"], login=False)
    engine.enqueue(Call("c1", "q"), 1.0)
    assert engine.estimated_wait("c1") is None
    engine.login("a", 2.0)
    assert engine.estimated_wait("c1") is not None


# -------------------------------------------------------------- random operations (stateful)

_AGENTS = [f"a{i}" for i in range(6)]
_COMMANDS = [
    PresenceEvent.LOGIN,
    PresenceEvent.LOGOUT,
    PresenceEvent.SET_AWAY,
    PresenceEvent.SET_AVAILABLE,
    PresenceEvent.REGISTRATION_LOST,
    PresenceEvent.REGISTRATION_RESTORED,
]


class EngineMachine(RuleBasedStateMachine):
    """Random interleavings of everything the call layer and agents can do; after each
    step the engine's bookkeeping must agree with itself and with the events it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = AcdEngine()
        self.engine.add_queue(QueueConfig("li", agent_ids=tuple(_AGENTS[:4]), max_wait_s=300))
        self.engine.add_queue(
            QueueConfig("ra", strategy=Strategy.RING_ALL, agent_ids=tuple(_AGENTS[2:]))
        )
        self.engine.add_queue(
            QueueConfig(
                "pa",
                strategy=Strategy.PREFERRED_AGENT,
                team_ids=("t0", "t1"),
                rep_timeout_s=60.0,
                team_timeout_s=60.0,
                overflow_groups=(
                    OverflowGroup(
                        "g",
                        agent_ids=("a0",),
                        trigger=OverflowTrigger(waiting_at_least=3),
                        release=OverflowRelease(min_active_s=10.0),
                    ),
                ),
            )
        )
        for i, aid in enumerate(_AGENTS):
            self.engine.add_agent(Agent(aid, team_id=f"t{i // 3}"))
            self.engine.login(aid, 0.0)
        self.engine.pop_events()
        self.now = 0.0
        self.n = 0
        self.offers: set[tuple[str, str]] = set()
        self.live: set[str] = set()
        self.seen_state = {aid: S.AVAILABLE for aid in _AGENTS}

    def _absorb(self) -> None:
        for ev in self.engine.pop_events():
            if isinstance(ev, (OfferCall, CallbackOffered)):
                assert ev.call_id in self.live
                assert (ev.call_id, ev.agent_id) not in self.offers
                self.offers.add((ev.call_id, ev.agent_id))
            elif isinstance(ev, CancelOffer):
                self.offers.remove((ev.call_id, ev.agent_id))
            elif isinstance(ev, MaxWaitExceeded):
                self.live.remove(ev.call_id)
            elif isinstance(ev, AgentStateChanged):
                assert self.seen_state[ev.agent_id] is ev.old
                self.seen_state[ev.agent_id] = ev.new

    @rule(dt=st.floats(0.0, 25.0))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.engine.handle_timer(self.now)
        self._absorb()
        nxt = self.engine.next_timer()
        assert nxt is None or nxt > self.now

    @rule(
        queue=st.sampled_from(["li", "ra", "pa", "pa"]),
        priority=st.integers(0, 2),
        rep=st.one_of(st.none(), st.sampled_from(_AGENTS), st.sampled_from(_AGENTS)),
    )
    def enqueue(self, queue: str, priority: int, rep: str | None) -> None:
        self.n += 1
        call_id = f"c{self.n}"
        self.live.add(call_id)
        self.engine.enqueue(Call(call_id, queue, priority, rep), self.now)
        self._absorb()

    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        if not self.live:
            return
        call_id = data.draw(st.sampled_from(sorted(self.live)))
        assert self.engine.abandon(call_id, self.now)
        self.live.remove(call_id)
        self._absorb()

    @rule(data=st.data(), stale=st.booleans())
    def answer(self, data: st.DataObject, stale: bool) -> None:
        if stale or not self.offers:
            call_id = f"c{data.draw(st.integers(1, self.n + 1))}"
            agent_id = data.draw(st.sampled_from(_AGENTS))
        else:
            call_id, agent_id = data.draw(st.sampled_from(sorted(self.offers)))
        expected = (call_id, agent_id) in self.offers
        assert self.engine.agent_answered(agent_id, call_id, self.now) is expected
        if expected:
            self.offers.discard((call_id, agent_id))
            self.live.remove(call_id)
        self._absorb()

    @rule(data=st.data())
    def no_answer(self, data: st.DataObject) -> None:
        if not self.offers:
            return
        call_id, agent_id = data.draw(st.sampled_from(sorted(self.offers)))
        assert self.engine.agent_no_answer(agent_id, call_id, self.now)
        self.offers.discard((call_id, agent_id))
        self._absorb()

    @rule(agent_id=st.sampled_from(_AGENTS))
    def end_call(self, agent_id: str) -> None:
        agent = self.engine.agent(agent_id)
        if agent.state is not S.ON_CALL:
            with pytest.raises(PresenceTransitionError):
                self.engine.call_ended(agent_id, self.now)
            return
        self.engine.call_ended(agent_id, self.now)
        self._absorb()

    @rule(agent_id=st.sampled_from(_AGENTS), event=st.sampled_from(_COMMANDS))
    def command(self, agent_id: str, event: PresenceEvent) -> None:
        agent = self.engine.agent(agent_id)
        before = (agent.state, agent.version)
        try:
            self.engine.set_agent_state(agent_id, event, self.now, "break")
        except PresenceTransitionError:
            assert (agent.state, agent.version) == before
        self._absorb()

    @rule(data=st.data())
    def callback(self, data: st.DataObject) -> None:
        if not self.live:
            return
        call_id = data.draw(st.sampled_from(sorted(self.live)))
        try:
            self.engine.request_callback(call_id, self.now)
        except AcdError:
            assert any(c == call_id for c, _ in self.offers)

    @rule(on=st.booleans())
    def overflow(self, on: bool) -> None:
        if on:
            self.engine.activate_overflow("pa", "g", self.now, "test")
        else:
            self.engine.release_overflow("pa", "g", self.now, "test")
        self._absorb()

    @invariant()
    def bookkeeping_agrees(self) -> None:
        engine = self.engine
        assert set(engine.waiting_calls()) == self.live
        by_agent: dict[str, str] = {}
        for call_id, agent_id in self.offers:
            assert agent_id not in by_agent, "one agent, two offers"
            by_agent[agent_id] = call_id
        for aid in _AGENTS:
            agent = engine.agent(aid)
            assert self.seen_state[aid] is agent.state
            assert (agent.state is S.RESERVED) == (aid in by_agent)
            assert agent.offer_call_id == by_agent.get(aid)
            assert (agent.state is S.ON_CALL) == (agent.current_call_id is not None)
        for call_id in self.live:
            call = engine._calls[call_id]
            ringing = {a for c, a in self.offers if c == call_id}
            assert set(call.offers) == ringing
            assert call.state is (CallState.OFFERING if ringing else CallState.WAITING)

    @invariant()
    def nobody_idle_while_an_eligible_caller_waits(self) -> None:
        engine = self.engine
        for call_id in self.live:
            call = engine._calls[call_id]
            if call.offers:
                continue
            if call.step is Step.REP:
                assert call.preferred_agent_id is not None
                eligible: Iterable[str] = [call.preferred_agent_id]
            elif call.step is Step.TEAM:
                assert call.preferred_agent_id is not None
                team = engine.agent(call.preferred_agent_id).team_id
                eligible = [a for a in _AGENTS if engine.agent(a).team_id == team]
            else:
                eligible = call.queue.members
            for aid in eligible:
                if engine.agent(aid).state is S.AVAILABLE:
                    assert call.declined is not None and aid in call.declined, (call_id, aid)


TestEngineMachine = EngineMachine.TestCase
TestEngineMachine.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, database=None
)


def test_agent_added_to_a_team_of_an_active_overflow_group_joins_it() -> None:
    engine = _overflow_engine()
    engine.activate_overflow("q", "surge", 1.0, actor="lead")
    engine.add_agent(Agent("z", team_id="complaints"), 2.0)
    engine.login("z", 2.0)
    assert "q" in engine.agent("z").queues
    engine.release_overflow("q", "surge", 3.0, actor="lead")
    assert "q" not in engine.agent("z").queues


# ------------------------------------------------------------------- direct (internal) calls


def test_agents_on_a_direct_call_are_not_offered_queue_calls() -> None:
    engine = build(["a", "b", "c"])
    assert engine.begin_direct_call("a", "int1", 5.0)
    assert engine.begin_direct_call("b", "int1", 5.0)
    assert engine.agent("a").state is S.ON_CALL
    engine.pop_events()
    engine.enqueue(Call("c1", "q"), 6.0)
    engine.enqueue(Call("c2", "q"), 6.0)
    assert offers(engine.pop_events()) == [("c1", "c")]  # c2 waits: a and b are talking
    engine.end_direct_call("a", "int1", 9.0)
    events = engine.pop_events()
    assert engine.agent("b").state is S.ON_CALL
    # No wrap-up after one's own call: a is available at once and takes the waiting caller.
    assert AgentStateChanged("a", S.ON_CALL, S.AVAILABLE, None, 9.0) in events
    assert offers(events) == [("c2", "a")]


def test_a_direct_call_only_moves_an_available_agent() -> None:
    engine = build(["a", "b"])
    engine.set_away("a", "lunch", 1.0)
    assert not engine.begin_direct_call("a", "int1", 2.0)
    assert engine.agent("a").state is S.AWAY
    engine.enqueue(Call("c1", "q"), 3.0)
    assert offers(engine.pop_events()) == [("c1", "b")]
    assert not engine.begin_direct_call("b", "int2", 4.0)  # ringing for c1: unchanged
    engine.end_direct_call("b", "int2", 5.0)  # not on that call: nothing happens
    assert engine.agent("b").state is S.RESERVED


def test_phone_lost_during_a_direct_call_ends_offline() -> None:
    engine = build(["a"])
    assert engine.begin_direct_call("a", "int1", 1.0)
    engine.set_agent_state("a", PresenceEvent.REGISTRATION_LOST, 2.0)
    assert engine.agent("a").state is S.ON_CALL  # still talking (RFC 3261 §10 vs §12)
    engine.end_direct_call("a", "int1", 3.0)
    assert engine.agent("a").state is S.OFFLINE


def test_an_agent_added_later_counts_their_state_from_then() -> None:
    # GET /api/v1/agents shows "since"; an agent known from t=500 was not offline since 0.
    engine = AcdEngine()
    engine.add_agent(Agent("1001"), 500.0)
    assert engine.agent("1001").state_since == 500.0
    engine.login("1001", 620.0)
    assert engine.agent("1001").state_since == 620.0


def test_attended_transfer_moves_the_consulted_agent_onto_the_queue_call() -> None:
    """a answers c1, consults b (b's own call int1), transfers: b takes c1 over, still
    ON_CALL; ending it is a queue call's end (wrap-up), and int1 ending does nothing."""
    engine = build(["a", "b"], wrap_up_s=10.0)
    engine.enqueue(Call("c1", "q"), 1.0)
    assert offers(engine.pop_events()) == [("c1", "a")]
    assert engine.agent_answered("a", "c1", 2.0)
    assert engine.begin_direct_call("b", "int1", 3.0)
    assert not engine.take_over_call("b", "other", "c1", "q", 4.0)  # not on that call
    assert engine.take_over_call("b", "int1", "c1", "q", 4.0)
    engine.call_ended("a", 4.0)
    assert engine.agent("a").state is S.WRAP_UP
    engine.end_direct_call("b", "int1", 5.0)  # the consultation ends: b stays on c1
    assert engine.agent("b").state is S.ON_CALL
    assert engine.agent("b").current_call_id == "c1"
    engine.call_ended("b", 30.0)
    assert engine.agent("b").state is S.WRAP_UP  # the queue's wrap-up, not a direct call's


def test_take_over_leaves_an_agent_who_was_not_on_the_consultation_alone() -> None:
    engine = build(["a", "b"])
    engine.set_away("b", "lunch", 1.0)
    assert not engine.begin_direct_call("b", "int1", 2.0)
    assert not engine.take_over_call("b", "int1", "c1", "q", 3.0)
    assert engine.agent("b").state is S.AWAY
