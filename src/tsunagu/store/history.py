"""Interactions written as the call progresses, read back whole, searched by page.

Why every method is its own short transaction: the record must survive a ``kill -9`` in
the middle of a call with everything that had happened up to then. Nothing is buffered in
memory; when the process starts again :meth:`History.mark_interrupted_on_startup` closes
what the dead process left ``active``, so the record is consistent (ended, legs closed,
an ``interrupted`` event) rather than forever "in progress".

Timeline events written automatically (callers add the rest with :meth:`add_event`):
``started``, ``queued``, ``answered``, ``agent_offered`` / ``agent_rung`` /
``agent_answered``, ``leg_started`` / ``leg_answered`` / ``leg_ended``, ``transfer``,
``ended``, ``interrupted``.

Times are given by the caller (the call layer knows when a thing happened); when omitted,
the store's clock stamps them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    String,
    column,
    exists,
    insert,
    literal,
    or_,
    select,
    table,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from tsunagu.store.db import Database
from tsunagu.store.errors import InvalidStateError, NotFoundError, StoreRequestError
from tsunagu.store.interactions import (
    AgentStage,
    Direction,
    Disposition,
    Event,
    Interaction,
    InteractionFilter,
    InteractionRecord,
    Leg,
    LegRole,
    Order,
    Page,
    Status,
    decode_cursor,
    encode_cursor,
)
from tsunagu.store.models import (
    SQLITE_ATTRIBUTE_INDEX,
    interaction_agents,
    interaction_events,
    interaction_legs,
    interactions,
)
from tsunagu.store.types import UtcDateTime, new_id, normalize_document, require_utc

log = logging.getLogger("tsunagu.store")

SEARCH_LIMIT_MAX = 1_000
_ATTRIBUTE_KEY_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
)
_E = TypeVar("_E", bound=StrEnum)
_ATTRS = table(SQLITE_ATTRIBUTE_INDEX, column("key"), column("value"), column("interaction_id"))


def _enum(cls: type[_E], value: object, what: str) -> _E:
    try:
        return cls(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise StoreRequestError(f"{what} must be one of {allowed}, not {value!r}") from None


def _clip(value: str | None, limit: int) -> str | None:
    """Values a remote peer chose (numbers, Call-ID, peer address) are cut to the column
    size rather than refused: a call must be recorded whatever the peer sent."""
    return None if value is None else value[:limit]


def _name(value: str, what: str, limit: int) -> str:
    """Values we chose (agent ids, queue names, event types) must fit; a misfit is a bug."""
    if not value or len(value) > limit:
        raise StoreRequestError(f"{what} must be 1 to {limit} characters: {value[:40]!r}")
    return value


def _interaction(row: Row[Any], agents: Mapping[str, dict[str, list[str]]]) -> Interaction:
    mine = agents.get(row.id, {})
    return Interaction(
        id=row.id,
        node=row.node,
        direction=Direction(row.direction),
        caller=row.caller,
        dialled=row.dialled,
        started_at=row.started_at,
        queued_at=row.queued_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        queue=row.queue,
        wait_seconds=row.wait_seconds,
        status=Status(row.status),
        disposition=None if row.disposition is None else Disposition(row.disposition),
        flow_path=tuple(row.flow_path),
        transfers=tuple(row.transfers),
        recordings=tuple(row.recordings),
        attributes=row.attributes,
        agents_offered=tuple(mine.get(AgentStage.OFFERED, ())),
        agents_rung=tuple(mine.get(AgentStage.RUNG, ())),
        agents_answered=tuple(mine.get(AgentStage.ANSWERED, ())),
    )


def _leg(row: Row[Any]) -> Leg:
    return Leg(
        id=row.id,
        interaction_id=row.interaction_id,
        role=LegRole(row.role),
        call_id=row.call_id,
        peer=row.peer,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
    )


class History:
    """The interaction history of one node (``node`` tells apart the records of several
    Tsunagu nodes sharing one PostgreSQL, so a restart only closes its own calls)."""

    def __init__(self, db: Database, node: str = "local") -> None:
        self._db = db
        self.node = _name(node, "node", 64)

    def _at(self, value: datetime | None, what: str = "time") -> datetime:
        return self._db.now() if value is None else require_utc(value, what)

    # --- writes as the call progresses ----------------------------------------------

    async def start_interaction(
        self,
        *,
        direction: Direction | str,
        caller: str,
        dialled: str,
        started_at: datetime | None = None,
        interaction_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Interaction:
        """Open the record of a new conversation (status ``active``)."""
        at = self._at(started_at, "started_at")
        new = _name(interaction_id or new_id(at), "interaction id", 36)
        values: dict[str, Any] = {
            "id": new,
            "node": self.node,
            "direction": _enum(Direction, direction, "direction").value,
            "caller": _clip(caller, 128),
            "dialled": _clip(dialled, 128),
            "started_at": at,
            "status": Status.ACTIVE.value,
            "flow_path": [],
            "transfers": [],
            "recordings": [],
            "attributes": normalize_document(attributes or {}, where="attributes"),
        }
        async with self._db.write() as conn:
            await conn.execute(insert(interactions).values(**values))
            await self._event(
                conn,
                new,
                at,
                "started",
                {"direction": values["direction"], "caller": caller, "dialled": dialled},
            )
            row = await self._row(conn, new)
        return _interaction(row, {})

    async def update(
        self,
        interaction_id: str,
        *,
        queue: str | None = None,
        queued_at: datetime | None = None,
        answered_at: datetime | None = None,
        wait_seconds: float | None = None,
        set_attributes: Mapping[str, Any] | None = None,
        append_flow_step: Mapping[str, Any] | None = None,
        append_transfer: Mapping[str, Any] | None = None,
        append_recording: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record progress. ``None`` leaves a field as it is (a given value replaces the
        stored one); attributes are merged; flow steps, transfers and recording references
        are appended. ``at`` stamps the ``transfer`` event. Attributes, transfers and
        recordings may still be added after :meth:`finish` (wrap-up, a recording finalized
        late)."""
        async with self._db.write() as conn:
            row = await self._row(conn, interaction_id, lock=True)
            values: dict[str, Any] = {}
            closed = row.status != Status.ACTIVE
            if closed and any(
                v is not None
                for v in (queue, queued_at, answered_at, wait_seconds, append_flow_step)
            ):
                raise InvalidStateError(
                    f"interaction {interaction_id} is {row.status}; only attributes, "
                    "transfers and recordings can still be added",
                    interaction_id=interaction_id,
                    status=row.status,
                )
            if queue is not None:
                values["queue"] = _name(queue, "queue", 200)
            if queued_at is not None:
                values["queued_at"] = require_utc(queued_at, "queued_at")
                await self._event(
                    conn,
                    interaction_id,
                    values["queued_at"],
                    "queued",
                    {"queue": values.get("queue", row.queue)},
                )
            if answered_at is not None:
                values["answered_at"] = require_utc(answered_at, "answered_at")
                await self._event(conn, interaction_id, values["answered_at"], "answered", {})
            if wait_seconds is not None:
                values["wait_seconds"] = float(wait_seconds)
            if set_attributes is not None:
                values["attributes"] = {
                    **row.attributes,
                    **normalize_document(set_attributes, where="attributes"),
                }
            if append_flow_step is not None:
                step = normalize_document(append_flow_step, where="flow step")
                values["flow_path"] = [*row.flow_path, step]
            if append_transfer is not None:
                transfer = normalize_document(append_transfer, where="transfer")
                values["transfers"] = [*row.transfers, transfer]
                await self._event(conn, interaction_id, self._at(at), "transfer", transfer)
            if append_recording is not None:
                reference = normalize_document(append_recording, where="recording")
                values["recordings"] = [*row.recordings, reference]
            if values:
                await conn.execute(
                    update(interactions).where(interactions.c.id == interaction_id).values(**values)
                )

    async def add_agent(
        self,
        interaction_id: str,
        agent: str,
        stage: AgentStage | str,
        at: datetime | None = None,
    ) -> None:
        """Record that ``agent`` was offered / rung / answered this conversation."""
        when = self._at(at)
        stage_value = _enum(AgentStage, stage, "stage")
        async with self._db.write() as conn:
            await self._row(conn, interaction_id, lock=True)
            await conn.execute(
                insert(interaction_agents).values(
                    interaction_id=interaction_id,
                    agent=_name(agent, "agent", 64),
                    stage=stage_value.value,
                    at=when,
                )
            )
            await self._event(
                conn, interaction_id, when, f"agent_{stage_value.value}", {"agent": agent}
            )

    async def add_leg(
        self,
        interaction_id: str,
        *,
        role: LegRole | str,
        call_id: str | None = None,
        peer: str | None = None,
        started_at: datetime | None = None,
        leg_id: str | None = None,
    ) -> Leg:
        """Attach a SIP leg (one dialog, named by its Call-ID) to the conversation."""
        at = self._at(started_at, "started_at")
        values = {
            "id": _name(leg_id or new_id(at), "leg id", 36),
            "interaction_id": interaction_id,
            "role": _enum(LegRole, role, "role").value,
            "call_id": _clip(call_id, 255),
            "peer": _clip(peer, 255),
            "started_at": at,
        }
        async with self._db.write() as conn:
            await self._row(conn, interaction_id, lock=True)
            await conn.execute(insert(interaction_legs).values(**values))
            await self._event(
                conn,
                interaction_id,
                at,
                "leg_started",
                {"leg": values["id"], "role": values["role"], "call_id": call_id, "peer": peer},
            )
            row = (
                await conn.execute(
                    select(interaction_legs).where(interaction_legs.c.id == values["id"])
                )
            ).one()
        return _leg(row)

    async def update_leg(
        self,
        leg_id: str,
        *,
        answered_at: datetime | None = None,
        ended_at: datetime | None = None,
        end_reason: str | None = None,
        peer: str | None = None,
        call_id: str | None = None,
    ) -> Leg:
        """Record a leg's answer or end (``None`` leaves a field as it is)."""
        async with self._db.write() as conn:
            leg = (
                await conn.execute(select(interaction_legs).where(interaction_legs.c.id == leg_id))
            ).first()
            if leg is None:
                raise NotFoundError(f"leg {leg_id} does not exist", leg_id=leg_id)
            await self._row(conn, leg.interaction_id, lock=True)
            values: dict[str, Any] = {}
            if peer is not None:
                values["peer"] = _clip(peer, 255)
            if call_id is not None:
                values["call_id"] = _clip(call_id, 255)
            if answered_at is not None:
                values["answered_at"] = require_utc(answered_at, "answered_at")
                await self._event(
                    conn, leg.interaction_id, values["answered_at"], "leg_answered", {"leg": leg_id}
                )
            if ended_at is not None:
                values["ended_at"] = require_utc(ended_at, "ended_at")
            if end_reason is not None:
                values["end_reason"] = _clip(end_reason, 64)
            if ended_at is not None:
                await self._event(
                    conn,
                    leg.interaction_id,
                    values["ended_at"],
                    "leg_ended",
                    {"leg": leg_id, "reason": end_reason},
                )
            if values:
                await conn.execute(
                    update(interaction_legs).where(interaction_legs.c.id == leg_id).values(**values)
                )
            row = (
                await conn.execute(select(interaction_legs).where(interaction_legs.c.id == leg_id))
            ).one()
        return _leg(row)

    async def add_event(
        self,
        interaction_id: str,
        type: str,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> Event:
        """Append a timeline entry (flow block entered, DTMF, hold, note…)."""
        when = self._at(at)
        payload = normalize_document(data or {}, where="event data")
        async with self._db.write() as conn:
            await self._row(conn, interaction_id, lock=True)
            event_id = await self._event(
                conn, interaction_id, when, _name(type, "type", 64), payload
            )
        return Event(event_id, interaction_id, when, type, payload)

    async def finish(
        self,
        interaction_id: str,
        disposition: Disposition | str,
        *,
        ended_at: datetime | None = None,
        wait_seconds: float | None = None,
    ) -> Interaction:
        """Close the conversation. Legs still open are closed at ``ended_at`` with reason
        ``interaction_ended``. If no wait was recorded and the caller was queued, the wait
        is the time from queueing to answer (or to the end, for an abandoned call)."""
        end = self._at(ended_at, "ended_at")
        value = _enum(Disposition, disposition, "disposition")
        async with self._db.write() as conn:
            row = await self._row(conn, interaction_id, lock=True)
            if row.status != Status.ACTIVE:
                raise InvalidStateError(
                    f"interaction {interaction_id} is already {row.status}",
                    interaction_id=interaction_id,
                    status=row.status,
                )
            wait = wait_seconds if wait_seconds is not None else row.wait_seconds
            if wait is None and row.queued_at is not None:
                wait = max(((row.answered_at or end) - row.queued_at).total_seconds(), 0.0)
            await conn.execute(
                update(interaction_legs)
                .where(
                    interaction_legs.c.interaction_id == interaction_id,
                    interaction_legs.c.ended_at.is_(None),
                )
                .values(ended_at=end, end_reason="interaction_ended")
            )
            await conn.execute(
                update(interactions)
                .where(interactions.c.id == interaction_id)
                .values(
                    status=Status.ENDED.value,
                    disposition=value.value,
                    ended_at=end,
                    wait_seconds=wait,
                )
            )
            await self._event(conn, interaction_id, end, "ended", {"disposition": value.value})
            done = await self._row(conn, interaction_id)
            agents = await self._agents(conn, [interaction_id])
        return _interaction(done, agents)

    async def mark_interrupted_on_startup(self, now: datetime | None = None) -> list[str]:
        """Close every interaction this node left ``active`` (the process died during it).

        The record ends at its last known activity (the latest time written for it, its
        legs or its timeline) — a lower bound, honest about what is known — with disposition
        and status ``interrupted``, open legs closed with reason ``interrupted``, and an
        ``interrupted`` event carrying when the restart detected it. Returns the ids.
        """
        detected = self._at(now)
        closed: list[str] = []
        async with self._db.write() as conn:
            rows = (
                await conn.execute(
                    select(interactions)
                    .where(
                        interactions.c.status == Status.ACTIVE.value,
                        interactions.c.node == self.node,
                    )
                    .with_for_update()
                )
            ).all()
            for row in rows:
                last = await self._last_activity(conn, row)
                await conn.execute(
                    update(interaction_legs)
                    .where(
                        interaction_legs.c.interaction_id == row.id,
                        interaction_legs.c.ended_at.is_(None),
                    )
                    .values(ended_at=last, end_reason="interrupted")
                )
                await conn.execute(
                    update(interactions)
                    .where(interactions.c.id == row.id)
                    .values(
                        status=Status.INTERRUPTED.value,
                        disposition=Disposition.INTERRUPTED.value,
                        ended_at=last,
                    )
                )
                await self._event(
                    conn,
                    row.id,
                    last,
                    "interrupted",
                    {
                        "detected_at": detected.isoformat(),
                        "reason": "the process stopped while the interaction was active",
                    },
                )
                closed.append(row.id)
        if closed:
            log.warning(
                "closed interactions left active by a previous process",
                extra={"count": len(closed), "node": self.node},
            )
        return closed

    # --- reads ----------------------------------------------------------------------

    async def get(self, interaction_id: str) -> InteractionRecord | None:
        """The whole record: interaction, legs and timeline."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(interactions).where(interactions.c.id == interaction_id))
            ).first()
            if row is None:
                return None
            agents = await self._agents(conn, [interaction_id])
            legs = await conn.execute(
                select(interaction_legs)
                .where(interaction_legs.c.interaction_id == interaction_id)
                .order_by(interaction_legs.c.started_at, interaction_legs.c.id)
            )
            events = await conn.execute(
                select(interaction_events)
                .where(interaction_events.c.interaction_id == interaction_id)
                .order_by(interaction_events.c.at, interaction_events.c.id)
            )
            return InteractionRecord(
                interaction=_interaction(row, agents),
                legs=tuple(_leg(leg) for leg in legs),
                events=tuple(Event(e.id, e.interaction_id, e.at, e.type, e.data) for e in events),
            )

    async def find_leg(self, call_id: str) -> Leg | None:
        """The most recent leg with this SIP Call-ID."""
        query = (
            select(interaction_legs)
            .where(interaction_legs.c.call_id == call_id)
            .order_by(interaction_legs.c.started_at.desc())
            .limit(1)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _leg(row)

    async def search(
        self,
        filters: InteractionFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        order: Order = "desc",
    ) -> Page:
        """Interactions matching ``filters``, ordered by ``(started_at, id)`` — newest
        first by default — ``limit`` per page. Keyset pagination: a page never repeats or
        skips a record because of rows added meanwhile."""
        if not 1 <= limit <= SEARCH_LIMIT_MAX:
            raise StoreRequestError(f"limit must be between 1 and {SEARCH_LIMIT_MAX}")
        if order not in ("asc", "desc"):
            raise StoreRequestError(f"order must be asc or desc, not {order!r}")
        f = filters or InteractionFilter()
        conditions = self._conditions(f)
        key = tuple_(interactions.c.started_at, interactions.c.id)
        if cursor is not None:
            stamp, last_id = decode_cursor(cursor)
            position = tuple_(literal(stamp, UtcDateTime()), literal(last_id, String()))
            conditions.append(key < position if order == "desc" else key > position)
        ordering = (
            (interactions.c.started_at.desc(), interactions.c.id.desc())
            if order == "desc"
            else (interactions.c.started_at, interactions.c.id)
        )
        query = select(interactions).where(*conditions).order_by(*ordering).limit(limit + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            agents = await self._agents(conn, [r.id for r in rows])
        items = tuple(_interaction(r, agents) for r in rows)
        next_cursor = encode_cursor(rows[-1].started_at, rows[-1].id) if more else None
        return Page(items, next_cursor)

    # --- internals ------------------------------------------------------------------

    def _conditions(self, f: InteractionFilter) -> list[ColumnElement[bool]]:
        c = interactions.c
        out: list[ColumnElement[bool]] = []
        if f.started_from is not None:
            out.append(c.started_at >= require_utc(f.started_from, "started_from"))
        if f.started_to is not None:
            out.append(c.started_at < require_utc(f.started_to, "started_to"))
        if f.caller is not None:
            out.append(c.caller == f.caller)
        if f.dialled is not None:
            out.append(c.dialled == f.dialled)
        if f.number is not None:
            out.append(or_(c.caller == f.number, c.dialled == f.number))
        if f.queue is not None:
            out.append(c.queue == f.queue)
        if f.direction is not None:
            out.append(c.direction == _enum(Direction, f.direction, "direction").value)
        if f.dispositions:
            values = [_enum(Disposition, d, "disposition").value for d in f.dispositions]
            out.append(c.disposition.in_(values))
        if f.statuses:
            out.append(c.status.in_([_enum(Status, s, "status").value for s in f.statuses]))
        if f.agent is not None:
            a = interaction_agents.c
            sub = exists().where(a.interaction_id == c.id, a.agent == f.agent)
            if f.agent_stage is not None:
                stage = _enum(AgentStage, f.agent_stage, "agent_stage").value
                sub = exists().where(a.interaction_id == c.id, a.agent == f.agent, a.stage == stage)
            out.append(sub)
        if f.attributes:
            for k, v in f.attributes.items():
                if not k or len(k) > 64 or not set(k) <= _ATTRIBUTE_KEY_CHARS:
                    raise StoreRequestError(f"attribute name {k!r} is not searchable")
                if not isinstance(v, str):
                    raise StoreRequestError(f"attribute {k!r}: only string values match")
            if self._db.is_postgresql:
                # JSONB containment, served by the GIN index of migration 0002.
                out.append(type_coerce(c.attributes, JSONB).contains(dict(f.attributes)))
            else:
                # The trigger-kept side table of migration 0006: one b-tree lookup per
                # attribute instead of reading every row's JSON.
                out.extend(
                    c.id.in_(
                        select(_ATTRS.c.interaction_id).where(
                            _ATTRS.c.key == k, _ATTRS.c.value == v
                        )
                    )
                    for k, v in f.attributes.items()
                )
        return out

    @staticmethod
    async def _row(conn: AsyncConnection, interaction_id: str, *, lock: bool = False) -> Row[Any]:
        query = select(interactions).where(interactions.c.id == interaction_id)
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFoundError(
                f"interaction {interaction_id} does not exist", interaction_id=interaction_id
            )
        return row

    @staticmethod
    async def _event(
        conn: AsyncConnection,
        interaction_id: str,
        at: datetime,
        type_: str,
        data: dict[str, Any],
    ) -> int:
        result = await conn.execute(
            insert(interaction_events)
            .values(interaction_id=interaction_id, at=at, type=type_, data=data)
            .returning(interaction_events.c.id)
        )
        return int(result.scalar_one())

    @staticmethod
    async def _agents(conn: AsyncConnection, ids: list[str]) -> dict[str, dict[str, list[str]]]:
        if not ids:
            return {}
        a = interaction_agents.c
        rows = await conn.execute(
            select(a.interaction_id, a.agent, a.stage)
            .where(a.interaction_id.in_(ids))
            .order_by(a.interaction_id, a.at, a.id)
        )
        out: dict[str, dict[str, list[str]]] = {}
        for row in rows:
            stages = out.setdefault(row.interaction_id, {})
            agents = stages.setdefault(row.stage, [])
            if row.agent not in agents:
                agents.append(row.agent)
        return out

    @staticmethod
    async def _last_activity(conn: AsyncConnection, row: Row[Any]) -> datetime:
        times = [t for t in (row.started_at, row.queued_at, row.answered_at) if t is not None]
        legs = await conn.execute(
            select(
                interaction_legs.c.started_at,
                interaction_legs.c.answered_at,
                interaction_legs.c.ended_at,
            ).where(interaction_legs.c.interaction_id == row.id)
        )
        for leg in legs:
            times.extend(t for t in leg if t is not None)
        events = await conn.execute(
            select(interaction_events.c.at).where(interaction_events.c.interaction_id == row.id)
        )
        times.extend(e.at for e in events)
        latest: datetime = max(times)
        return latest
