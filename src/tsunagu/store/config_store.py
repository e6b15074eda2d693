"""Revisioned configuration: every write is one transaction with its change-log row.

The rules this module keeps (docs/STORAGE.md explains why):

* **One revision per change, gap-free, in commit order.** The single row of
  ``config_revision`` is locked (``SELECT … FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE``
  on SQLite) before anything is read, and advanced in the same transaction as the entity
  row and the ``config_changes`` row. A rolled-back write gives its number back; a writer
  cannot obtain revision N+1 before the holder of N has committed, so a reader that has
  seen N+1 has necessarily seen N — which is what lets DR ask for ``changes_since(last)``
  without ever missing one. (A PostgreSQL sequence gives neither property.)
* **Writing what is already there is no change**: no revision, no log row. That makes
  ``apply`` idempotent.
* **Optimistic concurrency**: ``expected_revision`` is the entity's revision the caller
  last saw (0: "must not exist"); if the entity moved on, :class:`RevisionConflictError`.
* **Documents are plain JSON objects.** What they must contain is decided by the
  configuration models, through the optional ``validator`` callback, whose problems abort
  the write.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from tsunagu.store.config_diff import Diff, Operation, compute_diff, same_document
from tsunagu.store.db import Database
from tsunagu.store.errors import (
    ConfigValidationError,
    InvalidDocumentError,
    NotFoundError,
    ReplicationError,
    RevisionConflictError,
    StoreRequestError,
    UnknownKindError,
)
from tsunagu.store.models import config_changes, config_entities, config_revision
from tsunagu.store.types import normalize_document, require_utc

log = logging.getLogger("tsunagu.store")

#: The configuration kinds, in the order ``export`` and ``apply`` present them.
KINDS: tuple[str, ...] = (
    "numbers",
    "trunks",
    "flows",
    "queues",
    "agents",
    "teams",
    "hours",
    "calendars",
    "customers",
    "prompts",
    "users",
    "acls",
)
NAME_MAX = 200
ACTOR_MAX = 200
CHANGES_LIMIT_MAX = 10_000

#: ``validate(kind, name, document) -> problems``; an empty list means valid.
Validator = Callable[[str, str, dict[str, Any]], list[str]]


@dataclass(frozen=True, slots=True)
class ConfigEntity:
    """The current state of one configured thing. ``revision`` is the configuration
    revision of its last change (use it as ``expected_revision`` / ETag); ``version``
    counts its changes (1 when first created, never reused after a delete)."""

    kind: str
    name: str
    document: dict[str, Any]
    revision: int
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the change log: what DR replicates and the audit trail shows."""

    revision: int
    kind: str
    name: str
    operation: Operation
    actor: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, for sending to a DR site."""
        return {
            "revision": self.revision,
            "kind": self.kind,
            "name": self.name,
            "operation": self.operation,
            "actor": self.actor,
            "before": self.before,
            "after": self.after,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        """Parse :meth:`to_dict` output (e.g. received from the primary site)."""
        try:
            operation = data["operation"]
            if operation not in ("create", "update", "delete"):
                raise ValueError(f"unknown operation {operation!r}")
            before, after = data["before"], data["after"]
            return cls(
                revision=int(data["revision"]),
                kind=str(data["kind"]),
                name=str(data["name"]),
                operation=operation,
                actor=str(data["actor"]),
                before=None if before is None else normalize_document(before),
                after=None if after is None else normalize_document(after),
                at=require_utc(datetime.fromisoformat(data["at"]), "at"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreRequestError(f"not a configuration change: {exc}") from None


#: Receives the changes of one committed write, oldest first.
ChangeListener = Callable[[list[Change]], None]


def _entity(row: Row[Any]) -> ConfigEntity:
    return ConfigEntity(
        kind=row.kind,
        name=row.name,
        document=row.document,
        revision=row.revision,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _change(row: Row[Any]) -> Change:
    return Change(
        revision=row.revision,
        kind=row.kind,
        name=row.name,
        operation=row.operation,
        actor=row.actor,
        before=row.before,
        after=row.after,
        at=row.at,
    )


def _check_text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidDocumentError(
            f"{what} must be a non-empty string without surrounding spaces, not {value!r}",
            field=what,
        )
    if len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidDocumentError(
            f"{what} must be at most {limit} printable characters: {value[:40]!r}", field=what
        )
    return value


class ConfigStore:
    """Revisioned configuration on top of :class:`~tsunagu.store.db.Database`."""

    def __init__(
        self,
        db: Database,
        validator: Validator | None = None,
        kinds: tuple[str, ...] = KINDS,
        on_change: ChangeListener | None = None,
    ) -> None:
        self._db = db
        #: Set by the application once the configuration models are loaded.
        self.validator = validator
        self.kinds = kinds
        #: Called after each committed write with the changes it made, in revision order:
        #: the hook for the "config changed" domain event (DR push, WebSocket, audit).
        self.on_change = on_change
        #: The newest revision this process has read or written, and when (monotonic).
        self._known: tuple[int, float] | None = None

    # --- reads ----------------------------------------------------------------------

    async def current_revision(self, *, max_age_s: float | None = None) -> int:
        """The revision of the newest change (0 for an empty configuration).

        With ``max_age_s``, an answer read (or written by this process) that recently is
        returned without asking the database. Why: the API checks the revision on every
        request to know whether users and keys changed; this process's own writes update
        the answer at once, so only another process's writes (the CLI, DR replication)
        wait up to ``max_age_s`` — one database round trip saved per request."""
        now = time.monotonic()
        if max_age_s is not None and self._known is not None:
            revision, at = self._known
            if now - at < max_age_s:
                return revision
        async with self._db.read() as conn:
            revision = int((await conn.execute(select(config_revision.c.revision))).scalar_one())
        self._learn(revision, now)
        return revision

    def _learn(self, revision: int, at: float) -> None:
        if self._known is None or revision >= self._known[0]:
            self._known = (revision, at)

    async def get(self, kind: str, name: str) -> ConfigEntity | None:
        self._check_kind(kind)
        async with self._db.read() as conn:
            row = await self._load(conn, kind, name)
        return None if row is None or row.deleted else _entity(row)

    async def list(self, kind: str) -> builtins.list[ConfigEntity]:
        """Every live entity of ``kind``, sorted by name."""
        self._check_kind(kind)
        query = (
            select(config_entities)
            .where(config_entities.c.kind == kind, config_entities.c.deleted.is_(False))
            .order_by(config_entities.c.name)
        )
        async with self._db.read() as conn:
            return [_entity(row) for row in await conn.execute(query)]

    async def export(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The whole live configuration as ``{kind: {name: document}}`` — what ``apply``
        takes, so ``apply(export())`` is always a no-op."""
        async with self._db.read() as conn:
            docs = await self._live_documents(conn, None)
        order = {kind: i for i, kind in enumerate(self.kinds)}
        return {k: docs[k] for k in sorted(docs, key=lambda k: (order.get(k, len(order)), k))}

    async def changes_since(self, revision: int, limit: int = 500) -> builtins.list[Change]:
        """Changes with a revision greater than ``revision``, oldest first, at most
        ``limit``. Call again with the last revision returned until the list is empty."""
        if revision < 0 or not 1 <= limit <= CHANGES_LIMIT_MAX:
            raise StoreRequestError(
                f"revision must be >= 0 and limit between 1 and {CHANGES_LIMIT_MAX}",
                revision=revision,
                limit=limit,
            )
        query = (
            select(config_changes)
            .where(config_changes.c.revision > revision)
            .order_by(config_changes.c.revision)
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [_change(row) for row in await conn.execute(query)]

    async def entity_changes(self, kind: str, name: str, limit: int = 100) -> builtins.list[Change]:
        """The change log of one entity, newest first (for "who changed this flow?")."""
        self._check_kind(kind)
        query = (
            select(config_changes)
            .where(config_changes.c.kind == kind, config_changes.c.name == name)
            .order_by(config_changes.c.revision.desc())
            .limit(min(max(limit, 1), CHANGES_LIMIT_MAX))
        )
        async with self._db.read() as conn:
            return [_change(row) for row in await conn.execute(query)]

    # --- writes ---------------------------------------------------------------------

    async def put(
        self,
        kind: str,
        name: str,
        document: Mapping[str, Any],
        actor: str,
        expected_revision: int | None = None,
    ) -> ConfigEntity:
        """Create or replace ``kind/name``. Writing an identical document changes nothing
        and returns the stored entity (its revision unchanged)."""
        self._check_kind(kind)
        _check_text(name, "name", NAME_MAX)
        _check_text(actor, "actor", ACTOR_MAX)
        doc = normalize_document(document, where=f"{kind}/{name}")
        self._raise_problems(self._problems(kind, name, doc))
        async with self._db.write() as conn:
            revision = await self._lock_revision(conn)
            row = await self._load(conn, kind, name)
            _check_expected(kind, name, row, expected_revision)
            live = row is not None and not row.deleted
            if live and row is not None and same_document(row.document, doc):
                return _entity(row)
            revision += 1
            operation: Operation = "update" if live else "create"
            change = await self._record(
                conn,
                revision=revision,
                operation=operation,
                kind=kind,
                name=name,
                actor=actor,
                row=row,
                after=doc,
            )
            await self._set_revision(conn, revision)
            stored = await self._load(conn, kind, name)
        assert stored is not None
        self._notify([change])
        return _entity(stored)

    async def delete(
        self, kind: str, name: str, actor: str, expected_revision: int | None = None
    ) -> int:
        """Delete ``kind/name``; return the revision of the deletion. :class:`NotFoundError` if
        it does not exist."""
        self._check_kind(kind)
        _check_text(actor, "actor", ACTOR_MAX)
        async with self._db.write() as conn:
            revision = await self._lock_revision(conn)
            row = await self._load(conn, kind, name)
            _check_expected(kind, name, row, expected_revision)
            if row is None or row.deleted:
                raise NotFoundError(f"{kind}/{name} does not exist", kind=kind, name=name)
            revision += 1
            change = await self._record(
                conn,
                revision=revision,
                operation="delete",
                kind=kind,
                name=name,
                actor=actor,
                row=row,
                after=None,
            )
            await self._set_revision(conn, revision)
        self._notify([change])
        return revision

    async def apply(
        self,
        desired: Mapping[str, Mapping[str, Mapping[str, Any]] | None],
        actor: str,
        dry_run: bool = False,
        *,
        base_revision: int | None = None,
    ) -> Diff:
        """Make the configuration equal to ``desired`` in ONE transaction.

        Kinds present in ``desired`` are authoritative (unlisted entities of that kind are
        deleted); absent kinds are untouched. Every create/update is validated first and
        all problems are reported together. ``base_revision`` makes the apply conditional
        on nobody having changed anything since (e.g. since the dry run the operator
        confirmed; or ``0`` to seed only an empty database). Applying the same state twice
        writes nothing the second time.
        """
        _check_text(actor, "actor", ACTOR_MAX)
        wanted = self._normalize_desired(desired)
        problems: builtins.list[str] = []
        for kind, entities in wanted.items():
            for name, doc in entities.items():
                problems += self._problems(kind, name, doc)
        self._raise_problems(problems)
        if dry_run:
            async with self._db.read() as conn:
                revision = int(
                    (await conn.execute(select(config_revision.c.revision))).scalar_one()
                )
                _check_base(base_revision, revision)
                current = await self._live_documents(conn, builtins.list(wanted))
            return compute_diff(
                current, wanted, kind_order=self.kinds, base_revision=revision, dry_run=True
            )
        async with self._db.write() as conn:
            base = await self._lock_revision(conn)
            _check_base(base_revision, base)
            current = await self._live_documents(conn, builtins.list(wanted))
            diff = compute_diff(
                current, wanted, kind_order=self.kinds, base_revision=base, dry_run=False
            )
            if diff.empty:
                return diff
            revision = base
            written: builtins.list[Change] = []
            for item in diff.items:
                revision += 1
                row = await self._load(conn, item.kind, item.name)
                change = await self._record(
                    conn,
                    revision=revision,
                    operation=item.operation,
                    kind=item.kind,
                    name=item.name,
                    actor=actor,
                    row=row,
                    after=item.after,
                )
                written.append(change)
            await self._set_revision(conn, revision)
        self._notify(written)
        return replace(diff, applied_revision=revision)

    async def apply_replicated(self, changes: Sequence[Change]) -> int:
        """Replay changes received from the primary site, keeping their revisions, actors
        and times; return the revision now in place.

        Changes at or below the current revision must already be in this log, identical
        (a resend after a lost acknowledgement) and are skipped. The rest must continue
        the log without a gap, and each one's ``before`` must equal what this database
        holds. Anything else means this copy has diverged (someone edited the standby,
        which also used up revision numbers) and :class:`ReplicationError` stops the sync
        rather than silently overwriting. Nothing is validated: the primary already did.
        """
        written: builtins.list[Change] = []
        async with self._db.write() as conn:
            revision = await self._lock_revision(conn)
            for change in changes:
                if change.revision <= revision:
                    await self._check_already_applied(conn, change)
                    continue
                if change.revision != revision + 1:
                    raise ReplicationError(
                        f"change log gap: have revision {revision}, received {change.revision}",
                        have=revision,
                        received=change.revision,
                    )
                row = await self._load(conn, change.kind, change.name)
                held = row.document if row is not None and not row.deleted else None
                if not same_document(held, change.before):
                    raise ReplicationError(
                        f"{change.kind}/{change.name} differs from the primary's at revision "
                        f"{change.revision}; this site's configuration was edited locally",
                        kind=change.kind,
                        name=change.name,
                        revision=change.revision,
                    )
                revision = change.revision
                applied = await self._record(
                    conn,
                    revision=revision,
                    operation=change.operation,
                    kind=change.kind,
                    name=change.name,
                    actor=change.actor,
                    row=row,
                    after=change.after,
                    at=change.at,
                )
                written.append(applied)
            await self._set_revision(conn, revision)
        self._notify(written)
        return revision

    # --- internals ------------------------------------------------------------------

    @staticmethod
    async def _check_already_applied(conn: AsyncConnection, change: Change) -> None:
        query = select(config_changes).where(config_changes.c.revision == change.revision)
        row = (await conn.execute(query)).first()
        held = None if row is None else _change(row)
        same = (
            held is not None
            and (held.kind, held.name, held.operation, held.actor)
            == (change.kind, change.name, change.operation, change.actor)
            and same_document(held.after, change.after)
        )
        if not same:
            raise ReplicationError(
                f"revision {change.revision} here is not the primary's revision "
                f"{change.revision} ({change.kind}/{change.name}); this site's configuration "
                "was edited locally",
                revision=change.revision,
                kind=change.kind,
                name=change.name,
            )

    def _check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise UnknownKindError(
                f"unknown configuration kind {kind!r}; known: {', '.join(self.kinds)}",
                kind=kind,
            )

    def _problems(self, kind: str, name: str, doc: dict[str, Any]) -> builtins.list[str]:
        if self.validator is None:
            return []
        return [f"{kind}/{name}: {problem}" for problem in self.validator(kind, name, doc)]

    @staticmethod
    def _raise_problems(problems: builtins.list[str]) -> None:
        if problems:
            raise ConfigValidationError(problems)

    def _normalize_desired(
        self, desired: Mapping[str, Mapping[str, Mapping[str, Any]] | None]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        if not isinstance(desired, Mapping):
            raise InvalidDocumentError("desired configuration must be a mapping of kinds")
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for kind, entities in desired.items():
            self._check_kind(kind)
            if not isinstance(entities, Mapping):
                raise InvalidDocumentError(
                    f"{kind}: must be a mapping of name to document, not "
                    f"{type(entities).__name__} (write `{kind}: {{}}` to delete every one)",
                    kind=kind,
                )
            out[kind] = {
                _check_text(name, "name", NAME_MAX): normalize_document(doc, where=f"{kind}/{name}")
                for name, doc in entities.items()
            }
        return out

    @staticmethod
    async def _lock_revision(conn: AsyncConnection) -> int:
        """Take the configuration write lock and return the current revision."""
        query = select(config_revision.c.revision).where(config_revision.c.id == 1)
        result = await conn.execute(query.with_for_update())
        return int(result.scalar_one())

    @staticmethod
    async def _set_revision(conn: AsyncConnection, revision: int) -> None:
        await conn.execute(
            update(config_revision).where(config_revision.c.id == 1).values(revision=revision)
        )

    @staticmethod
    async def _load(conn: AsyncConnection, kind: str, name: str) -> Row[Any] | None:
        query = select(config_entities).where(
            config_entities.c.kind == kind, config_entities.c.name == name
        )
        return (await conn.execute(query)).first()

    @staticmethod
    async def _live_documents(
        conn: AsyncConnection, kinds: builtins.list[str] | None
    ) -> dict[str, dict[str, dict[str, Any]]]:
        query = (
            select(config_entities.c.kind, config_entities.c.name, config_entities.c.document)
            .where(config_entities.c.deleted.is_(False))
            .order_by(config_entities.c.kind, config_entities.c.name)
        )
        if kinds is not None:
            query = query.where(config_entities.c.kind.in_(kinds))
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for row in await conn.execute(query):
            out.setdefault(row.kind, {})[row.name] = row.document
        return out

    async def _record(
        self,
        conn: AsyncConnection,
        *,
        revision: int,
        operation: Operation,
        kind: str,
        name: str,
        actor: str,
        row: Row[Any] | None,
        after: dict[str, Any] | None,
        at: datetime | None = None,
    ) -> Change:
        """Write one change: the entity row and its change-log row, at ``revision``."""
        when = at if at is not None else self._db.now()
        live = row is not None and not row.deleted
        before = row.document if live and row is not None else None
        deleted = operation == "delete"
        if row is None:
            await conn.execute(
                insert(config_entities).values(
                    kind=kind,
                    name=name,
                    document=after,
                    revision=revision,
                    version=1,
                    deleted=False,
                    created_at=when,
                    updated_at=when,
                )
            )
        else:
            values: dict[str, Any] = {
                "document": None if deleted else after,
                "revision": revision,
                "version": row.version + 1,
                "deleted": deleted,
                "updated_at": when,
            }
            if not live:
                values["created_at"] = when
            await conn.execute(
                update(config_entities)
                .where(config_entities.c.kind == kind, config_entities.c.name == name)
                .values(**values)
            )
        await conn.execute(
            insert(config_changes).values(
                revision=revision,
                kind=kind,
                name=name,
                operation=operation,
                actor=actor,
                before=before,
                after=None if deleted else after,
                at=when,
            )
        )
        return Change(revision, kind, name, operation, actor, before, after, when)

    def _notify(self, changes: builtins.list[Change]) -> None:
        """Tell the listener about committed changes. The write has already happened, so
        a failing listener is logged (with its traceback), not raised to the writer."""
        if changes:
            self._learn(changes[-1].revision, time.monotonic())
        if self.on_change is None or not changes:
            return
        try:
            self.on_change(changes)
        except Exception:
            log.exception("configuration change listener failed")


def _check_expected(kind: str, name: str, row: Row[Any] | None, expected: int | None) -> None:
    if expected is None:
        return
    actual = row.revision if row is not None and not row.deleted else 0
    if expected != actual:
        state = f"is at revision {actual}" if actual else "does not exist"
        raise RevisionConflictError(
            f"{kind}/{name} {state}, not at revision {expected}; re-read it and retry",
            kind=kind,
            name=name,
            expected_revision=expected,
            current_revision=actual,
        )


def _check_base(base_revision: int | None, revision: int) -> None:
    if base_revision is not None and base_revision != revision:
        raise RevisionConflictError(
            f"the configuration is at revision {revision}, not {base_revision}; "
            "review the diff again",
            expected_revision=base_revision,
            current_revision=revision,
        )
