"""Writing records as things happen, without making the call wait.

Each call gets an :class:`InteractionLog`: writes are queued and applied in order by one
task, each as its own short transaction (REQUIREMENTS §3: one record per conversation,
written as the call progresses, so a crash leaves everything up to the crash). A failing
write is logged and skipped — the caller keeps talking whatever the database does — and
:meth:`QueuedWriter.close` waits for the queue to drain. The agent state history
(:class:`~tsunagu.store.agent_states.AgentStates`) is written the same way, through one
:class:`QueuedWriter` for the whole server, so each agent's moves land in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from tsunagu.store.history import History

log = logging.getLogger("tsunagu.calls.record")

T = TypeVar("T")
Write = Callable[[History], Awaitable[Any]]


class QueuedWriter(Generic[T]):
    """Applies ``post``-ed writes to ``target`` one at a time, in order; with no target
    (no store configured) writes are dropped."""

    def __init__(self, target: T | None, what: str, context: dict[str, Any]) -> None:
        self.target = target
        self._what = what
        self._context = context
        self._queue: asyncio.Queue[Callable[[T], Awaitable[Any]] | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run()) if target else None
        self.failures = 0

    def post(self, write: Callable[[T], Awaitable[Any]]) -> None:
        if self._task is not None:
            self._queue.put_nowait(write)

    async def _run(self) -> None:
        assert self.target is not None
        while True:
            write = await self._queue.get()
            if write is None:
                return
            try:
                await write(self.target)
            except Exception:
                self.failures += 1
                log.exception(f"could not write the {self._what}", extra=self._context)

    async def close(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None


class InteractionLog(QueuedWriter[History]):
    def __init__(self, history: History | None, interaction_id: str) -> None:
        super().__init__(history, "interaction record", {"interaction": interaction_id})
        self.history = history
        self.interaction_id = interaction_id

    def event(self, kind: str, **data: Any) -> None:
        iid = self.interaction_id
        self.post(lambda h: h.add_event(iid, kind, data))
