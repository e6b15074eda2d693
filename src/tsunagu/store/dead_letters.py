"""Webhook deliveries that gave up ("dead letters"), kept until someone redelivers them.

Why in the database and not in memory: a CRM that is down for an afternoon must not lose
the afternoon's screen-pops and call records for good; the operator fixes the receiver and
redelivers (``POST /api/v1/webhooks/dead-letters/{id}/redeliver``). A letter's ``id`` is
the delivery id the receiver saw in ``X-Tsunagu-Delivery``, so a redelivery carries the same
id and a receiver that did get it after all can de-duplicate.

Life of a row: written when a delivery is dead (:meth:`DeadLetters.record`);
``redelivered_at`` is set when a redelivery is asked for (:meth:`mark_redelivered`); if
that redelivery dies too, :meth:`record` again updates the same row (attempts added,
``dead_at`` moved, ``redelivered_at`` cleared), so one event to one webhook is one row.
Each method is one short transaction, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, insert, literal, select, tuple_, update
from sqlalchemy.engine import Row

from tsunagu.store.db import Database
from tsunagu.store.errors import InvalidStateError, NotFoundError, StoreRequestError
from tsunagu.store.interactions import Page, decode_cursor, encode_cursor
from tsunagu.store.models import webhook_dead_letters as t
from tsunagu.store.types import UtcDateTime, normalize_document, require_utc

LIST_LIMIT_MAX = 1_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    webhook: str
    event_type: str
    event_id: str
    #: The event as it was sent (``to_json()`` of the event).
    payload: dict[str, Any]
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    dead_at: datetime
    redelivered_at: datetime | None

    @property
    def pending(self) -> bool:
        """Dead and not (yet) redelivered."""
        return self.redelivered_at is None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    items: tuple[DeadLetter, ...]
    next_cursor: str | None


def _letter(row: Row[Any]) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        webhook=row.webhook,
        event_type=row.event_type,
        event_id=row.event_id,
        payload=row.payload,
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        dead_at=row.dead_at,
        redelivered_at=row.redelivered_at,
    )


def _fits(value: str, what: str, limit: int) -> str:
    if not value or len(value) > limit:
        raise StoreRequestError(f"{what} must be 1 to {limit} characters: {value[:40]!r}")
    return value


class DeadLetters:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        *,
        delivery_id: str,
        webhook: str,
        event_type: str,
        event_id: str,
        payload: dict[str, Any],
        attempts: int,
        last_status: int | None,
        last_error: str | None,
        created_at: datetime,
        dead_at: datetime | None = None,
    ) -> DeadLetter:
        """Keep a dead delivery (or, for one that died again after a redelivery, update
        its row). Returns the row as stored."""
        values = {
            "webhook": _fits(webhook, "webhook", 64),
            "event_type": _fits(event_type, "event_type", 64),
            "event_id": _fits(event_id, "event_id", 36),
            "payload": normalize_document(payload),
            "last_status": last_status,
            "last_error": None if last_error is None else last_error[:500],
            "dead_at": require_utc(dead_at, "dead_at") if dead_at else self._db.now(),
            "redelivered_at": None,
        }
        _fits(delivery_id, "delivery_id", 36)
        async with self._db.write() as conn:
            old = (await conn.execute(select(t.c.attempts).where(t.c.id == delivery_id))).first()
            if old is None:
                await conn.execute(
                    insert(t).values(
                        id=delivery_id,
                        attempts=attempts,
                        created_at=require_utc(created_at, "created_at"),
                        **values,
                    )
                )
            else:
                await conn.execute(
                    update(t)
                    .where(t.c.id == delivery_id)
                    .values(attempts=old.attempts + attempts, **values)
                )
            row = (await conn.execute(select(t).where(t.c.id == delivery_id))).one()
        return _letter(row)

    async def get(self, letter_id: str) -> DeadLetter | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(t).where(t.c.id == letter_id))).first()
        return None if row is None else _letter(row)

    async def mark_redelivered(self, letter_id: str, at: datetime | None = None) -> DeadLetter:
        """A redelivery starts: refused (:class:`InvalidStateError`) if one is already
        under way or done, so two operators clicking at once send it once."""
        when = self._db.now() if at is None else require_utc(at, "at")
        async with self._db.write() as conn:
            result = await conn.execute(
                update(t)
                .where(t.c.id == letter_id, t.c.redelivered_at.is_(None))
                .values(redelivered_at=when)
            )
            row = (await conn.execute(select(t).where(t.c.id == letter_id))).first()
        if row is None:
            raise NotFoundError(f"dead letter {letter_id} does not exist", id=letter_id)
        if result.rowcount == 0:
            raise InvalidStateError(
                f"dead letter {letter_id} was already redelivered at "
                f"{row.redelivered_at.isoformat()}",
                id=letter_id,
            )
        return _letter(row)

    async def list(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        webhook: str | None = None,
        pending: bool | None = None,
    ) -> DeadLetterPage:
        """Newest death first; ``pending`` true: only those not redelivered, false: only
        redelivered ones. ``next_cursor`` continues the listing (``None`` at the end)."""
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise StoreRequestError(f"limit must be 1 to {LIST_LIMIT_MAX}, not {limit}")
        query = select(t)
        if webhook is not None:
            query = query.where(t.c.webhook == webhook)
        if pending is True:
            query = query.where(t.c.redelivered_at.is_(None))
        elif pending is False:
            query = query.where(t.c.redelivered_at.is_not(None))
        if cursor is not None:
            stamp, last_id = decode_cursor(cursor)
            position = tuple_(literal(stamp, UtcDateTime()), literal(last_id, String()))
            query = query.where(tuple_(t.c.dead_at, t.c.id) < position)
        query = query.order_by(t.c.dead_at.desc(), t.c.id.desc()).limit(limit + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].dead_at, rows[-1].id) if more else None
        return DeadLetterPage(tuple(_letter(r) for r in rows), next_cursor)

    async def pending_counts(self) -> dict[str, int]:
        """Webhook name → dead letters not redelivered."""
        query = (
            select(t.c.webhook, func.count())
            .where(t.c.redelivered_at.is_(None))
            .group_by(t.c.webhook)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return {name: int(count) for name, count in rows}


__all__ = ["DeadLetter", "DeadLetterPage", "DeadLetters", "Page"]
