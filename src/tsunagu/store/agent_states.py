"""Agent state history: the intervals behind the "time per agent state" report.

Why intervals and not a log of moves: the report asks "how long was each agent available,
on a call, in wrap-up, away, between 9:00 and 17:00", and an interval row answers that by
clipping to the window — no replay of a day's moves. Each move closes the agent's open row
and opens the next one **in one transaction**, so the rows of one agent never overlap and
never leave a gap (as long as the server runs).

A graceful shutdown closes every open row at the stop (:meth:`AgentStates.close_all`). A
crash cannot; at the next start-up :meth:`AgentStates.close_open_on_startup` closes what
this node left open at the start-up instant and marks it ``interrupted``: the time between
the crash and the restart is counted in the last known state (nobody knows better), and
the report says how many intervals were interrupted so an analyst can discount them.

Times are wall-clock UTC, passed in by the caller (the store never reads a clock here).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, insert, or_, select, update

from tsunagu.store.db import Database
from tsunagu.store.errors import StoreRequestError
from tsunagu.store.models import agent_state_intervals as t
from tsunagu.store.types import require_utc

NAME_MAX = 64


@dataclass(frozen=True, slots=True)
class AgentTime:
    """One agent's time in a window: seconds per state, and interval counts."""

    agent: str
    seconds: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, int] = field(default_factory=dict)
    interrupted: int = 0

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class AgentStates:
    def __init__(self, db: Database, node: str = "local") -> None:
        self._db = db
        self._node = node

    async def record(self, agent: str, state: str, reason: str | None, at: datetime) -> None:
        """The agent entered ``state`` at ``at``: close their open interval, open this one."""
        if not agent or len(agent) > NAME_MAX or not state or len(state) > 16:
            raise StoreRequestError("agent state: agent (≤64) and state (≤16) are required")
        at = require_utc(at, "at")
        async with self._db.write() as conn:
            await conn.execute(
                update(t)
                .where(t.c.agent == agent, t.c.node == self._node, t.c.ended_at.is_(None))
                .values(ended_at=at)
            )
            await conn.execute(
                insert(t).values(
                    node=self._node,
                    agent=agent,
                    state=state,
                    reason=None if reason is None else reason[:NAME_MAX],
                    started_at=at,
                    ended_at=None,
                    interrupted=False,
                )
            )

    async def close_all(self, at: datetime) -> int:
        """Close every open interval of this node at ``at`` (a graceful shutdown)."""
        return await self._close_open(require_utc(at, "at"), interrupted=False)

    async def close_open_on_startup(self, now: datetime) -> int:
        """Close what a crash left open, at ``now``, marked interrupted (module docstring)."""
        return await self._close_open(require_utc(now, "now"), interrupted=True)

    async def _close_open(self, at: datetime, *, interrupted: bool) -> int:
        async with self._db.write() as conn:
            result = await conn.execute(
                update(t)
                .where(t.c.node == self._node, t.c.ended_at.is_(None))
                .values(ended_at=at, interrupted=interrupted)
            )
        return int(result.rowcount or 0)

    async def time_per_state(
        self, start: datetime, end: datetime, now: datetime, agent: str | None = None
    ) -> list[AgentTime]:
        """Seconds per agent per state within ``[start, end)``, intervals clipped to the
        window; an interval still open counts until ``now`` (never past ``end``)."""
        start, end, now = require_utc(start, "start"), require_utc(end, "end"), require_utc(now)
        if end <= start:
            raise StoreRequestError("the window's end must be after its start")
        query = select(t).where(
            t.c.started_at < end,
            or_(t.c.ended_at.is_(None), t.c.ended_at > start),
        )
        if agent is not None:
            query = query.where(and_(t.c.agent == agent))
        async with self._db.read() as conn:
            rows = (await conn.execute(query.order_by(t.c.agent, t.c.started_at))).all()
        seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        interrupted: dict[str, int] = defaultdict(int)
        for row in rows:
            stop = row.ended_at if row.ended_at is not None else now
            length = (min(stop, end) - max(row.started_at, start)).total_seconds()
            if length <= 0:
                continue
            seconds[row.agent][row.state] += length
            counts[row.agent][row.state] += 1
            interrupted[row.agent] += int(row.interrupted)
        return [
            AgentTime(
                name,
                {k: round(v, 3) for k, v in seconds[name].items()},
                dict(counts[name]),
                interrupted[name],
            )
            for name in sorted(seconds)
        ]
