"""The ACD engine: sans-IO queueing, routing and presence, with time passed in.

The engine never touches a socket or reads a clock. The call layer (live calls, real time)
and the simulator (:mod:`tsunagu.acd.simulate`, simulated time) drive the *same* object:
they report facts (a caller queued, an agent answered, a call ended) with the current time,
call :meth:`AcdEngine.handle_timer` when :meth:`AcdEngine.next_timer` comes due (the
aioquic ``handle_timer(now)``/``get_timer()`` shape), and act on the typed events from
:meth:`AcdEngine.pop_events`: ring an agent (:class:`OfferCall`), stop ringing
(:class:`CancelOffer`), dial a callback (:class:`CallbackOffered`), send a caller to the
fallback flow (:class:`MaxWaitExceeded`), audit overflow groups and presence.

Routing decisions are heap operations (see :mod:`tsunagu.acd.strategies`): a new caller
pops the best available agent of its queue; an agent who becomes free looks only at the
head of each lane it can serve (its queues, its team, callers waiting for it as their rep).

Invariants the tests hold the engine to: an agent is RESERVED exactly while one call is
offered to it; a call being offered is never also waiting for someone else (except
ring-all, where the head caller keeps ringing every agent who frees up); a caller never
waits while an agent who could take it is available (under the strategy's rules).
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

from tsunagu.acd.agents import Agent, AgentRoster, Team
from tsunagu.acd.presence import (
    REASON_LOGOUT,
    REASON_REGISTRATION_LOST,
    WORKING_STATES,
    AcdError,
    AcdInvariantError,
    AgentState,
    AgentStateChanged,
    PresenceEvent,
    PresenceMachine,
)
from tsunagu.acd.queues import (
    Call,
    CallerLane,
    CallState,
    OverflowGroup,
    QueueConfig,
    QueuedCall,
    QueueRuntime,
    Step,
    UnknownCallError,
    UnknownQueueError,
)
from tsunagu.acd.strategies import AgentPool, Strategy

log = logging.getLogger(__name__)

_heappush = heapq.heappush
_heappop = heapq.heappop
_AVAILABLE = AgentState.AVAILABLE
_RESERVED = AgentState.RESERVED
_WRAP_UP = AgentState.WRAP_UP
_DONE = CallState.DONE
_WAITING = CallState.WAITING
_OFFERING = CallState.OFFERING
_RING_ALL = Strategy.RING_ALL
_E = PresenceEvent

# Timer kinds. A timer entry is (deadline, seq, kind, target, token); it is obsolete (and
# skipped) once the target moved on, which is checked through the token (an agent version
# or a preferred-agent step) rather than by removing entries from the heap.
_T_RING, _T_STEP, _T_MAX_WAIT, _T_WRAP_UP, _T_OVERFLOW = range(5)


@dataclass(frozen=True, slots=True)
class OfferCall:
    """Ring ``agent_id`` (every endpoint) for ``call_id``; report answer or no answer."""

    call_id: str
    agent_id: str
    queue_id: str


@dataclass(frozen=True, slots=True)
class CallbackOffered:
    """A queued callback reached the front: dial the agent first; once they answer
    (:meth:`AcdEngine.agent_answered`), dial the customer."""

    call_id: str
    agent_id: str
    queue_id: str
    callback_number: str | None


@dataclass(frozen=True, slots=True)
class CancelOffer:
    """Stop ringing ``agent_id`` for ``call_id`` (answered elsewhere, caller gone, ring
    timeout, agent went away). An answer that crosses this is refused by
    :meth:`AcdEngine.agent_answered`, and the call layer hangs up that leg."""

    call_id: str
    agent_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class MaxWaitExceeded:
    """The caller waited the queue's maximum: the call layer sends them to the fallback
    flow. The engine has already forgotten the call."""

    call_id: str
    queue_id: str
    waited_s: float


@dataclass(frozen=True, slots=True)
class OverflowActivated:
    queue_id: str
    group_id: str
    reason: str
    manual: bool
    at: float


@dataclass(frozen=True, slots=True)
class OverflowReleased:
    queue_id: str
    group_id: str
    reason: str
    manual: bool
    at: float


AcdEvent = (
    OfferCall
    | CallbackOffered
    | CancelOffer
    | MaxWaitExceeded
    | OverflowActivated
    | OverflowReleased
    | AgentStateChanged
)


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """Live figures of one queue (wallboards, overflow rules, announcements)."""

    queue_id: str
    waiting: int
    longest_wait_s: float
    service_level: float | None
    aht_s: float
    staffed: int
    available: int
    overflow_active: tuple[str, ...]


_Timer = tuple[float, int, int, object, int]
_COMMANDS = frozenset(
    {
        _E.LOGIN,
        _E.LOGOUT,
        _E.SET_AWAY,
        _E.SET_AVAILABLE,
        _E.REGISTRATION_LOST,
        _E.REGISTRATION_RESTORED,
    }
)


class AcdEngine:
    """Queues, agents and routing for one node. See the module docstring."""

    def __init__(self, *, ring_no_answer_to: AgentState = AgentState.AWAY) -> None:
        self._out: list[AcdEvent] = []
        self._roster = AgentRoster(PresenceMachine(ring_no_answer_to), self._out)
        self._agents = self._roster.agents
        self._queues: dict[str, QueueRuntime] = {}
        self._calls: dict[str, QueuedCall] = {}
        self._seq = 0
        self._timers: list[_Timer] = []
        self._tseq = 0
        self._rep_lanes: dict[str, CallerLane] = {}
        self._team_lanes: dict[str, CallerLane] = {}
        self._team_pools: dict[str, AgentPool] = {}

    # ----------------------------------------------------------------- configuration

    @property
    def roster(self) -> AgentRoster:
        return self._roster

    def agent(self, agent_id: str) -> Agent:
        return self._roster.get(agent_id)

    def add_team(self, team: Team) -> None:
        self._roster.add_team(team)

    def add_agent(self, agent: Agent, now: float = 0.0) -> None:
        """Register an agent (normally OFFLINE until they log in) and its queue memberships.
        Their current state counts from ``now`` (how long someone has been offline is only
        known from the moment we know them)."""
        agent.state_since = now
        self._roster.add(agent)
        if agent.team_id is not None:
            self._team_pools.setdefault(agent.team_id, AgentPool(None))
        for q in self._queues.values():
            if self._is_base_member(q.config, agent):
                self._join(q, agent, now)
            for group in q.config.overflow_groups:  # a surge group already helping
                listed = agent.agent_id in group.agent_ids or agent.team_id in group.team_ids
                if listed and q.overflow[group.group_id].active:
                    self._join(q, agent, now)
        if agent.state is _AVAILABLE:
            self._agent_free(agent, now)

    def add_queue(self, config: QueueConfig, now: float = 0.0) -> None:
        if config.queue_id in self._queues:
            raise AcdError(f"queue {config.queue_id!r} already exists")
        q = QueueRuntime.create(config)
        self._queues[config.queue_id] = q
        for agent in list(self._agents.values()):
            if self._is_base_member(config, agent):
                self._join(q, agent, now)
        if config.overflow_groups:
            self._push_timer(now + config.overflow_check_s, _T_OVERFLOW, q, 0)

    @staticmethod
    def _is_base_member(config: QueueConfig, agent: Agent) -> bool:
        if agent.agent_id not in config.agent_ids and agent.team_id not in config.team_ids:
            return False
        if config.strategy is Strategy.SKILLS_BASED:
            assert config.skill is not None
            return agent.skills.get(config.skill, 0) >= config.min_skill_level
        return True

    def _queue(self, queue_id: str) -> QueueRuntime:
        try:
            return self._queues[queue_id]
        except KeyError:
            raise UnknownQueueError(queue_id) from None

    def _join(self, q: QueueRuntime, agent: Agent, now: float) -> None:
        aid, qid = agent.agent_id, q.queue_id
        q.members[aid] = q.members.get(aid, 0) + 1
        count = agent.queues.get(qid, 0) + 1
        agent.queues[qid] = count
        if count == 1 and agent.state in WORKING_STATES:
            working = self._roster.queue_working
            working[qid] = working.get(qid, 0) + 1
        if count == 1 and agent.state is _AVAILABLE:
            self._agent_free(agent, now)

    def _leave(self, q: QueueRuntime, agent: Agent) -> None:
        aid, qid = agent.agent_id, q.queue_id
        if q.members.get(aid, 0) <= 1:
            q.members.pop(aid, None)
            if agent.queues.pop(qid, None) is not None and agent.state in WORKING_STATES:
                self._roster.queue_working[qid] -= 1
        else:
            q.members[aid] -= 1
            agent.queues[qid] -= 1

    # ---------------------------------------------------------------------- outputs

    def pop_events(self) -> list[AcdEvent]:
        """Events produced since the last call, oldest first."""
        events = self._out
        self._out = []
        self._roster.outbox = self._out
        return events

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (``None``: no timer pending)."""
        timers = self._timers
        while timers:
            entry = timers[0]
            if self._timer_live(entry):
                return entry[0]
            _heappop(timers)
        return None

    def _push_timer(self, deadline: float, kind: int, target: object, token: int) -> None:
        self._tseq += 1
        _heappush(self._timers, (deadline, self._tseq, kind, target, token))

    @staticmethod
    def _timer_live(entry: _Timer) -> bool:
        kind, target, token = entry[2], entry[3], entry[4]
        if kind == _T_RING:
            assert isinstance(target, Agent)
            return target.state is _RESERVED and target.version == token
        if kind == _T_WRAP_UP:
            assert isinstance(target, Agent)
            return target.state is _WRAP_UP and target.version == token
        if kind == _T_OVERFLOW:
            return True
        assert isinstance(target, QueuedCall)
        if target.state == _DONE:
            return False
        if kind == _T_STEP:
            return int(target.step) == token
        return not target.callback  # max wait

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at or before ``now``."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = _heappop(timers)
            if not self._timer_live(entry):
                continue
            kind, target = entry[2], entry[3]
            if kind == _T_RING:
                assert isinstance(target, Agent) and target.offer_call_id is not None
                self._ring_no_answer(target, self._calls[target.offer_call_id], now, True)
            elif kind == _T_WRAP_UP:
                assert isinstance(target, Agent)
                self._roster.apply(target, _E.WRAP_UP_DONE, now)
                self._agent_free(target, now)
            elif kind == _T_STEP:
                assert isinstance(target, QueuedCall)
                step = Step.TEAM if target.step is Step.REP else Step.ANYONE
                self._enter_step(target, step, now)
            elif kind == _T_MAX_WAIT:
                assert isinstance(target, QueuedCall)
                q = target.queue
                self._out.append(
                    MaxWaitExceeded(target.call_id, q.queue_id, now - target.arrived_at)
                )
                log.info(
                    "max wait exceeded", extra={"call_id": target.call_id, "queue": q.queue_id}
                )
                self._remove_call(target, now, "max_wait")
            else:
                assert isinstance(target, QueueRuntime)
                self._check_overflow(target, now)
                self._push_timer(now + target.config.overflow_check_s, _T_OVERFLOW, target, 0)

    # ------------------------------------------------------------------- presence API

    def set_agent_state(
        self, agent_id: str, event: PresenceEvent, now: float, reason: str | None = None
    ) -> None:
        """Apply an agent command or registration fact (login, logout, away, available,
        registration lost/restored). Moves not in the presence table raise
        :class:`~tsunagu.acd.presence.PresenceTransitionError`; call facts (answer, end)
        have their own methods."""
        if event not in _COMMANDS:
            raise AcdError(f"{event.value} is reported through its own engine method")
        agent = self._roster.get(agent_id)
        was = agent.state
        if event is _E.REGISTRATION_LOST:
            agent.registered = False
            if was is AgentState.OFFLINE:
                return  # a logged-out agent stays logged out (reason "logout" is kept)
            reason = REASON_REGISTRATION_LOST
        elif event is _E.REGISTRATION_RESTORED:
            agent.registered = True
            if not (was is AgentState.OFFLINE and agent.reason == REASON_REGISTRATION_LOST):
                return  # a logged-out agent's phone registering is not a login
        elif event is _E.LOGOUT:
            reason = REASON_LOGOUT
        elif event is not _E.SET_AWAY:
            reason = None
        offered = self._calls.get(agent.offer_call_id) if agent.offer_call_id else None
        self._roster.apply(agent, event, now, reason)
        if event is _E.LOGIN or event is _E.REGISTRATION_RESTORED:
            agent.idle_since = now
        if was is _RESERVED and agent.state is not _RESERVED:
            agent.offer_call_id = None
            if offered is not None:
                offered.offers.pop(agent_id, None)
                self._out.append(CancelOffer(offered.call_id, agent_id, event.value))
                self._after_offer_lost(offered, now)
        if agent.state is _AVAILABLE and was is not _AVAILABLE:
            self._agent_free(agent, now)

    def login(self, agent_id: str, now: float) -> None:
        self.set_agent_state(agent_id, _E.LOGIN, now)

    def logout(self, agent_id: str, now: float) -> None:
        self.set_agent_state(agent_id, _E.LOGOUT, now)

    def set_away(self, agent_id: str, reason: str, now: float) -> None:
        self.set_agent_state(agent_id, _E.SET_AWAY, now, reason)

    def set_available(self, agent_id: str, now: float) -> None:
        self.set_agent_state(agent_id, _E.SET_AVAILABLE, now)

    def try_reserve(self, agent_id: str, expected_version: int, call_id: str, now: float) -> bool:
        """Compare-and-set reservation (see :meth:`AgentRoster.try_reserve`)."""
        return self._roster.try_reserve(agent_id, expected_version, call_id, now)

    # ---------------------------------------------------------------------- call API

    def enqueue(self, call: Call, now: float, *, callback_number: str | None = None) -> None:
        """A caller joins a queue; offers follow at once if an agent can take them.

        ``callback_number``: the entry is a callback from the start (a voicemail's task):
        its turn is a :class:`CallbackOffered` and no maximum wait applies.
        """
        q = self._queue(call.queue_id)
        if call.call_id in self._calls:
            raise AcdError(f"call {call.call_id!r} is already queued")
        self._seq += 1
        qc = QueuedCall(call, q, self._seq, now)
        if callback_number is not None:
            qc.callback = True
            qc.callback_number = callback_number
        self._calls[call.call_id] = qc
        q.arrivals.append(qc)
        q.live += 1
        config = q.config
        if config.max_wait_s is not None:
            self._push_timer(now + config.max_wait_s, _T_MAX_WAIT, qc, 0)
        if config.strategy is Strategy.PREFERRED_AGENT and qc.preferred_agent_id is not None:
            self._enter_step(qc, Step.REP, now)
        else:
            self._route_call(qc, now)
        if q.overflow:
            self._check_overflow(q, now)

    def abandon(self, call_id: str, now: float) -> bool:
        """The caller hung up (or cancelled a callback). ``False`` if the call was no
        longer queued (already answered: a hang-up that crossed the answer)."""
        call = self._calls.get(call_id)
        if call is None:
            return False
        self._remove_call(call, now, "abandoned")
        return True

    def request_callback(self, call_id: str, now: float, number: str | None = None) -> None:
        """The caller pressed "call me back": keep their place; the call layer hangs up.

        When their turn comes the engine emits :class:`CallbackOffered` instead of
        :class:`OfferCall`; the maximum wait no longer applies (nobody is on hold).
        """
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCallError(call_id)
        if call.offers:
            raise AcdError(f"call {call_id!r} is already ringing an agent")
        call.callback = True
        call.callback_number = number

    def agent_answered(self, agent_id: str, call_id: str, now: float) -> bool:
        """The agent answered the offer. ``False`` if the offer had already been
        withdrawn (caller gone, someone else answered): the call layer hangs that leg up."""
        agent = self._roster.get(agent_id)
        call = self._calls.get(call_id)
        if call is None or agent.offer_call_id != call_id or agent_id not in call.offers:
            log.info("late answer refused", extra={"call_id": call_id, "agent": agent_id})
            return False
        del call.offers[agent_id]
        agent.offer_call_id = None
        self._roster.apply(agent, _E.ANSWER, now)
        q = call.queue
        agent.current_call_id = call_id
        agent.current_queue_id = q.queue_id
        agent.answered_at = now
        self._finish(call, now, True)
        if call.offers:  # ring-all: everyone else stops ringing
            for other_id in list(call.offers):
                self._withdraw(call, self._agents[other_id], now, "answered_elsewhere")
        return True

    def agent_no_answer(self, agent_id: str, call_id: str, now: float) -> bool:
        """The agent's phone refused the offer (busy, declined, unreachable) before the
        ring timeout. ``False`` if that offer was no longer current."""
        agent = self._roster.get(agent_id)
        call = self._calls.get(call_id)
        if call is None or agent.offer_call_id != call_id:
            return False
        self._ring_no_answer(agent, call, now, False)
        return True

    def call_ended(self, agent_id: str, now: float) -> None:
        """The agent's call ended: wrap-up (timer), then available again."""
        agent = self._roster.get(agent_id)
        self._roster.apply(agent, _E.CALL_ENDED, now)
        q = self._queues.get(agent.current_queue_id) if agent.current_queue_id else None
        agent.current_call_id = None
        agent.current_queue_id = None
        agent.last_call_ended_at = now
        agent.idle_since = now
        wrap = agent.wrap_up_s
        if wrap is None:
            wrap = q.config.wrap_up_s if q is not None else 0.0
        if q is not None:
            q.record_handle_time(now - agent.answered_at + wrap)
        if not agent.registered:
            self._roster.apply(agent, _E.REGISTRATION_LOST, now, REASON_REGISTRATION_LOST)
        elif wrap > 0:
            self._push_timer(now + wrap, _T_WRAP_UP, agent, agent.version)
        else:
            self._roster.apply(agent, _E.WRAP_UP_DONE, now)
            self._agent_free(agent, now)

    def begin_direct_call(self, agent_id: str, call_id: str, now: float) -> bool:
        """The agent is on a call of their own (an extension-to-extension call they made
        or received), so must not be offered a queue call meanwhile. Only an AVAILABLE
        agent moves (to ON_CALL); an agent who is away, ringing or already talking keeps
        their state. ``True`` if the agent moved: only then end it with
        :meth:`end_direct_call`."""
        agent = self._roster.get(agent_id)
        if agent.state is not _AVAILABLE:
            return False
        self._roster.apply(agent, _E.DIRECT_CALL, now)
        agent.current_call_id = call_id
        return True

    def end_direct_call(self, agent_id: str, call_id: str, now: float) -> None:
        """The agent's own call ``call_id`` ended: available again at once (no wrap-up),
        or offline if their phone went meanwhile. A no-op if the agent is no longer on
        that call (the reconciler repaired them, say)."""
        agent = self._roster.get(agent_id)
        if agent.state is not AgentState.ON_CALL or agent.current_call_id != call_id:
            return
        self._roster.apply(agent, _E.DIRECT_CALL_ENDED, now)
        agent.current_call_id = None
        if not agent.registered:
            self._roster.apply(agent, _E.REGISTRATION_LOST, now, REASON_REGISTRATION_LOST)
        else:
            self._agent_free(agent, now)

    def take_over_call(
        self, agent_id: str, from_call_id: str, call_id: str, queue_id: str | None, now: float
    ) -> bool:
        """Attended transfer: the agent, ON_CALL on their own call ``from_call_id`` (the
        consultation), now talks to the customer of ``call_id``. They stay ON_CALL; the
        call is theirs from ``now`` for the queue's handle time, and ending it brings
        wrap-up as after any queue call (:meth:`call_ended`). ``False`` (nothing changes)
        if the agent is not on that consultation (away when called, say)."""
        agent = self._roster.get(agent_id)
        if agent.state is not AgentState.ON_CALL or agent.current_call_id != from_call_id:
            return False
        agent.current_call_id = call_id
        agent.current_queue_id = queue_id if queue_id in self._queues else None
        agent.answered_at = now
        return True

    # ------------------------------------------------------------------------ routing

    def _offer(self, call: QueuedCall, agent: Agent, now: float) -> None:
        if not self._roster.try_reserve(agent.agent_id, agent.version, call.call_id, now):
            raise AcdInvariantError(f"agent {agent.agent_id} not reservable from a live pool")
        call.offers[agent.agent_id] = None
        call.state = _OFFERING
        q = call.queue
        if call.callback:
            self._out.append(
                CallbackOffered(call.call_id, agent.agent_id, q.queue_id, call.callback_number)
            )
        else:
            self._out.append(OfferCall(call.call_id, agent.agent_id, q.queue_id))
        ring = q.config.ring_timeout_s
        if ring is not None:
            self._push_timer(now + ring, _T_RING, agent, agent.version)

    def _route_call(self, call: QueuedCall, now: float) -> None:
        """Offer a caller who is waiting with no offer out, or park it in its lane."""
        step = call.step
        if step is Step.REP:
            pref = call.preferred_agent_id
            assert pref is not None
            rep = self._agents.get(pref)
            if rep is not None and rep.state is _AVAILABLE:
                self._offer(call, rep, now)
            else:
                self._rep_lanes.setdefault(pref, CallerLane()).push(call)
            return
        if step is Step.TEAM:
            team = self._rep_team(call)
            assert team is not None
            agent = self._team_pools[team].pop_best(call.declined)
            if agent is not None:
                self._offer(call, agent, now)
            else:
                self._team_lanes.setdefault(team, CallerLane()).push(call)
            return
        q = call.queue
        if q.config.strategy is _RING_ALL:
            agents = q.pool.pop_all(call.declined)
            q.lane.push(call)  # stays at the head, ringing whoever frees up
            for agent in agents:
                self._offer(call, agent, now)
            return
        found = q.pool.pop_best(call.declined)
        if found is not None:
            self._offer(call, found, now)
        else:
            q.lane.push(call)

    def _rep_team(self, call: QueuedCall) -> str | None:
        pref = call.preferred_agent_id
        rep = self._agents.get(pref) if pref is not None else None
        return rep.team_id if rep is not None else None

    def _enter_step(self, call: QueuedCall, step: Step, now: float) -> None:
        """Move a preferred-agent caller to ``step``; skip steps nobody could answer
        (the rep, or the rep's whole team, offline or away — REQUIREMENTS §3)."""
        config = call.queue.config
        if step is Step.REP:
            pref = call.preferred_agent_id
            rep = self._agents.get(pref) if pref is not None else None
            declined = call.declined
            if (
                rep is not None
                and rep.state in WORKING_STATES
                and not (declined and pref in declined)
            ):
                call.step = Step.REP
                self._push_timer(now + config.rep_timeout_s, _T_STEP, call, Step.REP)
                if call.state is _WAITING:
                    self._route_call(call, now)
                return
            step = Step.TEAM
        if step is Step.TEAM:
            team = self._rep_team(call)
            if team is not None and self._roster.team_working.get(team, 0) > 0:
                call.step = Step.TEAM
                self._push_timer(now + config.team_timeout_s, _T_STEP, call, Step.TEAM)
                if call.state is _WAITING:
                    self._route_call(call, now)
                return
        call.step = Step.ANYONE
        if call.state is _WAITING:
            self._route_call(call, now)

    def _agent_free(self, agent: Agent, now: float) -> None:
        """``agent`` is available: take the best caller it may serve, else join its pools."""
        aid = agent.agent_id
        best: QueuedCall | None = None
        best_lane: CallerLane | None = None
        lane = self._rep_lanes.get(aid)
        if lane is not None:
            best = lane.first_for(aid)
            best_lane = lane
        team = agent.team_id
        if team is not None:
            lane = self._team_lanes.get(team)
            if lane is not None:
                cand = lane.first_for(aid)
                if cand is not None and (
                    best is None or (cand.neg_prio, cand.seq) < (best.neg_prio, best.seq)
                ):
                    best, best_lane = cand, lane
        queues = self._queues
        for qid in agent.queues:
            lane = queues[qid].lane
            cand = lane.first_for(aid)
            if cand is not None and (
                best is None or (cand.neg_prio, cand.seq) < (best.neg_prio, best.seq)
            ):
                best, best_lane = cand, lane
        if best is None:
            for qid in agent.queues:
                queues[qid].pool.add(agent)
            if team is not None:
                self._team_pools[team].add(agent)
            return
        if best_lane is not best.queue.lane or best.queue.config.strategy is not _RING_ALL:
            best.gen += 1  # leaves its lane (ring-all callers stay while they ring)
        self._offer(best, agent, now)

    def _ring_no_answer(self, agent: Agent, call: QueuedCall, now: float, timed_out: bool) -> None:
        call.offers.pop(agent.agent_id, None)
        agent.offer_call_id = None
        if call.declined is None:
            call.declined = set()
        call.declined.add(agent.agent_id)
        if timed_out:
            self._out.append(CancelOffer(call.call_id, agent.agent_id, "ring_no_answer"))
        log.info("ring no answer", extra={"call_id": call.call_id, "agent": agent.agent_id})
        self._roster.apply(agent, _E.RING_NO_ANSWER, now)
        self._after_offer_lost(call, now)
        if agent.state is _AVAILABLE:
            self._agent_free(agent, now)

    def _after_offer_lost(self, call: QueuedCall, now: float) -> None:
        """An offer ended without an answer: re-offer the caller (to the next agent)."""
        if call.offers or call.state == _DONE:
            return  # ring-all: others are still ringing
        call.state = _WAITING
        step = call.step
        if step is Step.REP:
            self._enter_step(call, Step.TEAM, now)
        elif step is Step.TEAM and not self._roster.team_working.get(self._rep_team(call) or "", 0):
            self._enter_step(call, Step.ANYONE, now)  # the whole team went away meanwhile
        else:
            self._route_call(call, now)

    def _withdraw(self, call: QueuedCall, agent: Agent, now: float, reason: str) -> None:
        del call.offers[agent.agent_id]
        agent.offer_call_id = None
        self._out.append(CancelOffer(call.call_id, agent.agent_id, reason))
        self._roster.apply(agent, _E.RESERVATION_CANCELLED, now)
        self._agent_free(agent, now)

    def _finish(self, call: QueuedCall, now: float, answered: bool) -> None:
        call.state = _DONE
        del self._calls[call.call_id]
        q = call.queue
        q.live -= 1
        q.record_outcome(now, now - call.arrived_at, answered)
        if q.overflow:
            self._check_overflow(q, now)

    def _remove_call(self, call: QueuedCall, now: float, reason: str) -> None:
        self._finish(call, now, False)
        for agent_id in list(call.offers):
            self._withdraw(call, self._agents[agent_id], now, reason)

    # ----------------------------------------------------------------------- overflow

    def _group_agents(self, group: OverflowGroup) -> list[Agent]:
        teams = set(group.team_ids)
        out = [a for a in self._agents.values() if a.team_id is not None and a.team_id in teams]
        out += [self._agents[a] for a in group.agent_ids if a in self._agents]
        return list(dict.fromkeys(out))

    def _check_overflow(self, q: QueueRuntime, now: float) -> None:
        waiting = q.live
        longest = q.longest_wait(now)
        sl = q.service_level(now)
        for group in q.config.overflow_groups:
            state = q.overflow[group.group_id]
            if not state.active:
                if group.auto and now >= state.suppressed_until:
                    reason = group.activation_reason(waiting, longest, sl)
                    if reason is not None:
                        self._activate(q, group, now, reason, manual=False)
            elif not state.manual:
                reason = group.release_reason(waiting, longest, sl, now - state.since)
                if reason is not None:
                    self._release(q, group, now, reason, manual=False)

    def _activate(
        self, q: QueueRuntime, group: OverflowGroup, now: float, reason: str, manual: bool
    ) -> None:
        state = q.overflow[group.group_id]
        state.active, state.manual, state.since = True, manual, now
        log.info(
            "overflow group joins",
            extra={"queue": q.queue_id, "group": group.group_id, "reason": reason},
        )
        self._out.append(OverflowActivated(q.queue_id, group.group_id, reason, manual, now))
        for agent in self._group_agents(group):
            self._join(q, agent, now)

    def _release(
        self, q: QueueRuntime, group: OverflowGroup, now: float, reason: str, manual: bool
    ) -> None:
        state = q.overflow[group.group_id]
        state.active, state.manual, state.since = False, False, now
        if manual:
            # An operator's release holds for one minimum-active period before the
            # thresholds may bring the group back.
            state.suppressed_until = now + group.release.min_active_s
        log.info(
            "overflow group leaves",
            extra={"queue": q.queue_id, "group": group.group_id, "reason": reason},
        )
        self._out.append(OverflowReleased(q.queue_id, group.group_id, reason, manual, now))
        for agent in self._group_agents(group):
            self._leave(q, agent)

    def _find_group(self, q: QueueRuntime, group_id: str) -> OverflowGroup:
        for group in q.config.overflow_groups:
            if group.group_id == group_id:
                return group
        raise AcdError(f"queue {q.queue_id!r} has no overflow group {group_id!r}")

    def activate_overflow(self, queue_id: str, group_id: str, now: float, actor: str) -> None:
        """Bring an overflow group in by hand; it stays until released by hand."""
        q = self._queue(queue_id)
        group = self._find_group(q, group_id)
        state = q.overflow[group_id]
        if state.active:
            state.manual = True
            return
        self._activate(q, group, now, f"manual by {actor}", manual=True)

    def release_overflow(self, queue_id: str, group_id: str, now: float, actor: str) -> None:
        """Send an overflow group back by hand (agents finish the call they are on)."""
        q = self._queue(queue_id)
        group = self._find_group(q, group_id)
        if q.overflow[group_id].active:
            self._release(q, group, now, f"manual by {actor}", manual=True)

    # ------------------------------------------------------------------ announcements

    def _live_call(self, call_id: str) -> QueuedCall:
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCallError(call_id)
        return call

    def position(self, call_id: str) -> int:
        """1-based place in its queue (priority, then arrival). O(callers in the queue):
        asked once per announcement, not on the routing path."""
        call = self._live_call(call_id)
        key = (call.neg_prio, call.seq)
        ahead = sum(
            1
            for other in call.queue.arrivals
            if other.state != _DONE and (other.neg_prio, other.seq) < key
        )
        return ahead + 1

    def estimated_wait(self, call_id: str) -> float | None:
        """Seconds until an agent is expected: position × recent average handle time ÷
        staffed agents (each staffed agent frees up about once per handle time, so the
        k-th caller waits for about k releases). ``None`` when nobody is staffed."""
        call = self._live_call(call_id)
        q = call.queue
        staffed = self._roster.queue_working.get(q.queue_id, 0)
        if staffed == 0:
            return None
        return self.position(call_id) * q.aht_s / staffed

    def queue_snapshot(self, queue_id: str, now: float) -> QueueSnapshot:
        q = self._queue(queue_id)
        agents = self._agents
        return QueueSnapshot(
            queue_id=queue_id,
            waiting=q.live,
            longest_wait_s=q.longest_wait(now),
            service_level=q.service_level(now),
            aht_s=q.aht_s,
            staffed=self._roster.queue_working.get(queue_id, 0),
            available=sum(1 for aid in q.members if agents[aid].state is _AVAILABLE),
            overflow_active=tuple(g for g, s in q.overflow.items() if s.active),
        )

    def waiting_calls(self) -> list[str]:
        """Ids of calls the engine holds (waiting or ringing), in arrival order."""
        return [c.call_id for c in sorted(self._calls.values(), key=lambda c: c.seq)]
