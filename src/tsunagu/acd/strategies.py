"""Routing strategies: which available agent a queue offers its next call to.

Each queue keeps an *agent pool* of its available agents ordered by the strategy, so a
decision is a heap pop (O(log n)) rather than a scan of every agent: with 10,000 agents
and 1,000 callers waiting, a scan per event is what makes an ACD fall over (REQUIREMENTS
§3: the Twilio deployment collapsed at ~200 agents).

Pools use lazy deletion. An entry remembers the agent's ``version`` when it was pushed;
any presence change bumps the version, so an entry for an agent who has since been
reserved (by this queue or another), gone away, or left the queue is simply skipped when
it reaches the top. Nothing has to be found and removed from the middle of a heap, which
is what lets one agent sit in many queues' pools at once. A pool is rebuilt when stale
entries outnumber live ones, so memory stays proportional to membership.
"""

from __future__ import annotations

import heapq
from collections.abc import Container
from enum import Enum

from tsunagu.acd.agents import Agent
from tsunagu.acd.presence import AgentState

_AVAILABLE = AgentState.AVAILABLE
_heappush = heapq.heappush
_heappop = heapq.heappop
_MIN_COMPACT = 64


class Strategy(Enum):
    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    #: Offer the call to every available agent; the first to answer wins and the engine
    #: withdraws the other offers.
    RING_ALL = "ring_all"
    #: Agents with the queue's skill at or above its minimum level; highest level first,
    #: then longest idle.
    SKILLS_BASED = "skills_based"
    #: The caller's own rep, then the rep's team, then anyone (longest idle), each step
    #: with its timeout (see :class:`tsunagu.acd.queues.QueueConfig`).
    PREFERRED_AGENT = "preferred_agent"


# An entry: (key, seq, agent, version). ``seq`` is unique within a pool, so the tuple
# comparison never reaches the agent object.
_Entry = tuple[object, int, Agent, int]


class AgentPool:
    """Available agents best-first by ``idle_since`` (longest idle first).

    ``queue_id`` is the membership the pool belongs to (``None`` for team pools, whose
    membership is fixed); an agent that left the queue is skipped like a stale entry.
    """

    __slots__ = ("_compact_at", "_heap", "_seq", "queue_id")

    def __init__(self, queue_id: str | None) -> None:
        self.queue_id = queue_id
        self._heap: list[_Entry] = []
        self._seq = 0
        self._compact_at = _MIN_COMPACT

    def _key(self, agent: Agent) -> object:
        return agent.idle_since

    def _valid(self, entry: _Entry) -> bool:
        agent = entry[2]
        qid = self.queue_id
        return (
            agent.version == entry[3]
            and agent.state is _AVAILABLE
            and (qid is None or qid in agent.queues)
        )

    def __len__(self) -> int:
        """Entries held, live or stale (for tests and compaction)."""
        return len(self._heap)

    def add(self, agent: Agent) -> None:
        """The agent is available now (at its current version)."""
        self._seq += 1
        _heappush(self._heap, (self._key(agent), self._seq, agent, agent.version))
        if len(self._heap) >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Drop stale and duplicate entries; next time when the pool has doubled.

        Amortised O(1) per push: after compacting to L live entries, at least L more
        pushes happen before the next O(L) pass.
        """
        live: dict[int, _Entry] = {}
        for entry in self._take_entries():
            if self._valid(entry):
                live.setdefault(id(entry[2]), entry)
        for entry in live.values():
            self._push_back(entry)
        self._compact_at = max(_MIN_COMPACT, 2 * len(live))

    def pop_best(self, declined: Container[str] | None = None) -> Agent | None:
        """Remove and return the best available agent not in ``declined``."""
        heap = self._heap
        aside: list[_Entry] | None = None
        found: Agent | None = None
        qid = self.queue_id
        while heap:
            entry = _heappop(heap)
            agent = entry[2]
            if (
                agent.version != entry[3]
                or agent.state is not _AVAILABLE
                or (qid is not None and qid not in agent.queues)
            ):
                continue
            if declined is not None and agent.agent_id in declined:
                if aside is None:
                    aside = []
                aside.append(entry)
                continue
            found = agent
            break
        if aside is not None:
            for entry in aside:
                self._push_back(entry)
        return found

    def _push_back(self, entry: _Entry) -> None:
        _heappush(self._heap, entry)

    def pop_all(self, declined: Container[str] | None = None) -> list[Agent]:
        """Remove and return every available agent not in ``declined``, best first (ring-all).

        One pass over the pool (ring-all offers to everyone, so it is O(n) by nature).
        """
        entries = self._take_entries()
        entries.sort()  # (key, unique seq, ...): never compares agents
        out: list[Agent] = []
        seen: set[int] = set()
        keep: list[_Entry] = []
        for entry in entries:
            if not self._valid(entry):
                continue
            agent = entry[2]
            if declined is not None and agent.agent_id in declined:
                keep.append(entry)
            elif id(agent) not in seen:
                seen.add(id(agent))
                out.append(agent)
        for entry in keep:
            self._push_back(entry)
        return out

    def _take_entries(self) -> list[_Entry]:
        entries, self._heap = self._heap, []
        return entries


class SkillPool(AgentPool):
    """Highest level of ``skill`` first, then longest idle."""

    __slots__ = ("skill",)

    def __init__(self, queue_id: str | None, skill: str) -> None:
        super().__init__(queue_id)
        self.skill = skill

    def _key(self, agent: Agent) -> object:
        return (-agent.skills.get(self.skill, 0), agent.idle_since)


class RoundRobinPool(AgentPool):
    """Agents in a fixed order (when they joined the queue), taking turns.

    Two heaps keyed by position: ``_heap`` holds agents after the last one picked,
    ``_behind`` the rest. Picking pops ``_heap``; when it runs dry the turn wraps around
    and ``_behind`` becomes ``_heap``. Both operations are O(log n).
    """

    __slots__ = ("_behind", "_last", "_positions")

    def __init__(self, queue_id: str | None) -> None:
        super().__init__(queue_id)
        self._behind: list[_Entry] = []
        self._last = -1
        self._positions: dict[str, int] = {}

    def _key(self, agent: Agent) -> object:
        pos = self._positions.get(agent.agent_id)
        if pos is None:
            pos = self._positions[agent.agent_id] = len(self._positions)
        return pos

    def __len__(self) -> int:
        return len(self._heap) + len(self._behind)

    def add(self, agent: Agent) -> None:
        self._seq += 1
        entry = (self._key(agent), self._seq, agent, agent.version)
        self._push_back(entry)
        if len(self) >= self._compact_at:
            self._compact()

    def _push_back(self, entry: _Entry) -> None:
        pos = entry[0]
        assert isinstance(pos, int)
        _heappush(self._heap if pos > self._last else self._behind, entry)

    def _take_entries(self) -> list[_Entry]:
        entries = self._heap + self._behind
        self._heap, self._behind = [], []
        return entries

    def pop_best(self, declined: Container[str] | None = None) -> Agent | None:
        found = super().pop_best(declined)
        if found is None and self._behind:
            # Wrap around: everyone behind the pointer is now ahead of it.
            self._heap, self._behind = self._heap + self._behind, []
            heapq.heapify(self._heap)
            self._last = -1
            found = super().pop_best(declined)
        if found is not None:
            self._last = self._positions[found.agent_id]
        return found


def make_pool(strategy: Strategy, queue_id: str, skill: str | None) -> AgentPool:
    """The agent pool a queue with ``strategy`` routes from."""
    if strategy is Strategy.ROUND_ROBIN:
        return RoundRobinPool(queue_id)
    if strategy is Strategy.SKILLS_BASED:
        if skill is None:
            raise ValueError(f"queue {queue_id!r}: skills_based routing needs a skill")
        return SkillPool(queue_id, skill)
    return AgentPool(queue_id)
