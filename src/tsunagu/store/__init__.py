"""Persistent state: revisioned configuration and the interaction history.

Open it once at start-up::

    store = await open_store(settings_url or default_url(data_dir), node="node-a")
    await store.history.mark_interrupted_on_startup()
    ...
    await store.close()

``open_store`` migrates the schema to the newest revision first (see
:mod:`tsunagu.store.schema`). docs/STORAGE.md describes the tables and why they look so.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from tsunagu.store.agent_states import AgentStates, AgentTime
from tsunagu.store.callback_tasks import CallbackTask, CallbackTaskPage, CallbackTasks
from tsunagu.store.config_diff import Diff, DiffItem, FieldChange
from tsunagu.store.config_store import (
    KINDS,
    Change,
    ChangeListener,
    ConfigEntity,
    ConfigStore,
    Validator,
)
from tsunagu.store.db import Clock, Database, default_url, make_engine, safe_url, system_clock
from tsunagu.store.dead_letters import DeadLetter, DeadLetterPage, DeadLetters
from tsunagu.store.errors import (
    ConfigValidationError,
    InvalidDocumentError,
    InvalidStateError,
    NotFoundError,
    ReplicationError,
    RevisionConflictError,
    SchemaError,
    StoreError,
    StoreFaultError,
    StoreRequestError,
    UnknownKindError,
)
from tsunagu.store.history import History
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
    Page,
    Status,
)
from tsunagu.store.schema import head_revision, migrate, migrate_engine


@dataclass(frozen=True, slots=True)
class Store:
    """The open database: configuration, history, webhook dead letters and callback
    tasks share one engine (one pool)."""

    db: Database
    config: ConfigStore
    history: History
    agent_states: AgentStates
    dead_letters: DeadLetters
    callback_tasks: CallbackTasks

    @property
    def engine(self) -> AsyncEngine:
        return self.db.engine

    async def close(self) -> None:
        await self.db.engine.dispose()


async def open_store(
    url: str,
    *,
    migrate_schema: bool = True,
    validator: Validator | None = None,
    node: str = "local",
    clock: Clock = system_clock,
) -> Store:
    """Connect to ``url`` (``sqlite:///…`` or ``postgresql://…``), bring the schema up to
    date unless ``migrate_schema`` is false, and return the store. ``clock`` stamps records
    written without an explicit time (tests pass a fake one)."""
    engine = make_engine(url)
    try:
        if migrate_schema:
            await migrate_engine(engine)
    except BaseException:
        await engine.dispose()
        raise
    db = Database(engine, clock)
    return Store(
        db=db,
        config=ConfigStore(db, validator),
        history=History(db, node),
        agent_states=AgentStates(db, node),
        dead_letters=DeadLetters(db),
        callback_tasks=CallbackTasks(db),
    )


__all__ = [
    "KINDS",
    "AgentStage",
    "AgentStates",
    "AgentTime",
    "CallbackTask",
    "CallbackTaskPage",
    "CallbackTasks",
    "Change",
    "ChangeListener",
    "Clock",
    "ConfigEntity",
    "ConfigStore",
    "ConfigValidationError",
    "Database",
    "DeadLetter",
    "DeadLetterPage",
    "DeadLetters",
    "Diff",
    "DiffItem",
    "Direction",
    "Disposition",
    "Event",
    "FieldChange",
    "History",
    "Interaction",
    "InteractionFilter",
    "InteractionRecord",
    "InvalidDocumentError",
    "InvalidStateError",
    "Leg",
    "LegRole",
    "NotFoundError",
    "Page",
    "ReplicationError",
    "RevisionConflictError",
    "SchemaError",
    "Status",
    "Store",
    "StoreError",
    "StoreFaultError",
    "StoreRequestError",
    "UnknownKindError",
    "Validator",
    "default_url",
    "head_revision",
    "make_engine",
    "migrate",
    "open_store",
    "safe_url",
    "system_clock",
]
