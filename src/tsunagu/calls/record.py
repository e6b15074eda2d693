"""Writing one conversation's record as it happens, without making the call wait.

Each call gets an :class:`InteractionLog`: writes are queued and applied in order by one
task, each as its own short transaction (REQUIREMENTS §3: one record per conversation,
written as the call progresses, so a crash leaves everything up to the crash). A failing
write is logged and skipped — the caller keeps talking whatever the database does — and
:meth:`close` waits for the queue to drain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tsunagu.store.history import History

log = logging.getLogger("tsunagu.calls.record")

Write = Callable[[History], Awaitable[Any]]


class InteractionLog:
    def __init__(self, history: History | None, interaction_id: str) -> None:
        self.history = history
        self.interaction_id = interaction_id
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run()) if history else None
        self.failures = 0

    def post(self, write: Write) -> None:
        if self._task is not None:
            self._queue.put_nowait(write)

    def event(self, kind: str, **data: Any) -> None:
        iid = self.interaction_id
        self.post(lambda h: h.add_event(iid, kind, data))

    async def _run(self) -> None:
        assert self.history is not None
        while True:
            write = await self._queue.get()
            if write is None:
                return
            try:
                await write(self.history)
            except Exception:
                self.failures += 1
                log.exception(
                    "could not write the interaction record",
                    extra={"interaction": self.interaction_id},
                )

    async def close(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
