"""Callback tasks left by voicemails, kept until they are done, failed or cancelled.

Why in the database: a message left at 19:00 is called back in the morning, after the
nightly restart; a task only in memory would be a promise broken silently. The runtime
(:mod:`tsunagu.calls.voicemail_callbacks`) restores every open task into the ACD at
start-up. What may happen to a task is decided by the table in
:mod:`tsunagu.calls.callback_task`; this module only stores its outcome, and does so as a
compare-and-set on the state (:meth:`CallbackTasks.move`), so a supervisor's cancel and
an agent's offer that cross cannot both win.

Each method is one short transaction, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, insert, literal, select, tuple_, update
from sqlalchemy.engine import Row

from tsunagu.store.db import Database
from tsunagu.store.errors import InvalidStateError, NotFoundError, StoreRequestError
from tsunagu.store.interactions import decode_cursor, encode_cursor
from tsunagu.store.models import callback_tasks as t
from tsunagu.store.types import UtcDateTime, require_utc

LIST_LIMIT_MAX = 1_000
STATES = ("pending", "dialling", "done", "failed", "cancelled")
OPEN_STATES = ("pending", "dialling")


@dataclass(frozen=True, slots=True)
class CallbackTask:
    id: str
    voicemail_interaction_id: str
    caller: str
    queue: str | None
    recording: str
    state: str
    attempts: int
    not_before: datetime | None
    created_at: datetime
    updated_at: datetime
    last_interaction_id: str | None
    last_agent: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class CallbackTaskPage:
    items: tuple[CallbackTask, ...]
    next_cursor: str | None


def _task(row: Row[Any]) -> CallbackTask:
    return CallbackTask(
        id=row.id,
        voicemail_interaction_id=row.voicemail_interaction_id,
        caller=row.caller,
        queue=row.queue,
        recording=row.recording,
        state=row.state,
        attempts=row.attempts,
        not_before=row.not_before,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_interaction_id=row.last_interaction_id,
        last_agent=row.last_agent,
        last_error=row.last_error,
    )


def _fits(value: str, what: str, limit: int) -> str:
    if not value or len(value) > limit:
        raise StoreRequestError(f"{what} must be 1 to {limit} characters: {value[:40]!r}")
    return value


def _state(value: str) -> str:
    if value not in STATES:
        raise StoreRequestError(f"state must be one of {', '.join(STATES)}, not {value!r}")
    return value


class CallbackTasks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        *,
        voicemail_interaction_id: str,
        caller: str,
        queue: str | None,
        recording: str,
        created_at: datetime | None = None,
        task_id: str | None = None,
    ) -> CallbackTask:
        """A new ``pending`` task with no attempt made."""
        at = require_utc(created_at, "created_at") if created_at else self._db.now()
        values = {
            "id": _fits(task_id or str(uuid.uuid4()), "task id", 36),
            "voicemail_interaction_id": _fits(
                voicemail_interaction_id, "voicemail_interaction_id", 36
            ),
            "caller": _fits(caller, "caller", 128),
            "queue": None if queue is None else _fits(queue, "queue", 64),
            "recording": _fits(recording, "recording", 500),
            "state": "pending",
            "attempts": 0,
            "not_before": None,
            "created_at": at,
            "updated_at": at,
        }
        async with self._db.write() as conn:
            await conn.execute(insert(t).values(**values))
            row = (await conn.execute(select(t).where(t.c.id == values["id"]))).one()
        return _task(row)

    async def get(self, task_id: str) -> CallbackTask | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(t).where(t.c.id == task_id))).first()
        return None if row is None else _task(row)

    async def move(
        self,
        task_id: str,
        *,
        expected: Collection[str],
        state: str,
        attempts: int | None = None,
        not_before: datetime | None = None,
        last_interaction_id: str | None = None,
        last_agent: str | None = None,
        last_error: str | None = None,
        at: datetime | None = None,
    ) -> CallbackTask:
        """Move the task to ``state`` if it is in one of ``expected`` (compare-and-set);
        :class:`InvalidStateError` names the state it is really in. ``not_before`` is
        replaced (``None`` clears it); the ``last_*`` fields are kept unless given."""
        values: dict[str, Any] = {
            "state": _state(state),
            "not_before": None if not_before is None else require_utc(not_before, "not_before"),
            "updated_at": require_utc(at, "at") if at else self._db.now(),
        }
        if attempts is not None:
            values["attempts"] = attempts
        if last_interaction_id is not None:
            values["last_interaction_id"] = _fits(last_interaction_id, "interaction id", 36)
        if last_agent is not None:
            values["last_agent"] = _fits(last_agent, "agent", 64)
        if last_error is not None:
            values["last_error"] = last_error[:200]
        async with self._db.write() as conn:
            result = await conn.execute(
                update(t).where(t.c.id == task_id, t.c.state.in_(list(expected))).values(**values)
            )
            row = (await conn.execute(select(t).where(t.c.id == task_id))).first()
        if row is None:
            raise NotFoundError(f"callback task {task_id} does not exist", id=task_id)
        if result.rowcount == 0:
            raise InvalidStateError(
                f"callback task {task_id} is {row.state}", id=task_id, state=row.state
            )
        return _task(row)

    async def open_tasks(self) -> list[CallbackTask]:
        """Every task still to be dialled (or cut mid-dial by a stop), oldest first: what
        start-up puts back in the ACD."""
        query = select(t).where(t.c.state.in_(list(OPEN_STATES))).order_by(t.c.created_at, t.c.id)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_task(r) for r in rows]

    async def list(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        state: str | None = None,
        queue: str | None = None,
        unassigned: bool = False,
    ) -> CallbackTaskPage:
        """Newest first; ``state``/``queue`` filter, ``unassigned`` keeps only tasks with
        no queue. ``next_cursor`` continues the listing (``None`` at the end)."""
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise StoreRequestError(f"limit must be 1 to {LIST_LIMIT_MAX}, not {limit}")
        query = select(t)
        if state is not None:
            query = query.where(t.c.state == _state(state))
        if queue is not None:
            query = query.where(t.c.queue == queue)
        if unassigned:
            query = query.where(t.c.queue.is_(None))
        if cursor is not None:
            stamp, last_id = decode_cursor(cursor)
            position = tuple_(literal(stamp, UtcDateTime()), literal(last_id, String()))
            query = query.where(tuple_(t.c.created_at, t.c.id) < position)
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
        return CallbackTaskPage(tuple(_task(r) for r in rows), next_cursor)


__all__ = ["OPEN_STATES", "STATES", "CallbackTask", "CallbackTaskPage", "CallbackTasks"]
