"""The audit trail: who changed what, and who looked at what, through the API.

The store has no audit table (docs/STORAGE.md), so each entry goes where it is durable and
where someone investigating will look:

* **configuration changes** are already in the configuration change log, written in the
  same transaction as the change, with the API user as ``actor`` (``user:alice``,
  ``key:crm/k3f9a…``). Nothing more is needed for them to be durable and replicated.
* **anything about one conversation** (reading its record, downloading its recording,
  hanging it up, transferring it) is appended to that interaction's timeline as an event
  of type ``audit`` — "who listened to this call?" is answered on the call itself.
* **every entry** (including the two above, agent state changes, CSV exports, API key
  creation) is logged on the ``tsunagu.audit`` logger as one structured JSON line, and
  appended to a JSON-lines file when ``ApiServices.audit_path`` is set.

Entries for things without an interaction (agent state changes, CSV exports) are therefore
durable only in that file / log stream; a dedicated audit table would be the store's to
add (see the report that accompanied this module).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tsunagu.store import History, NotFoundError, StoreError

log = logging.getLogger("tsunagu.audit")

AUDIT_EVENT = "audit"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    role: str
    client: str | None
    action: str  # e.g. "interaction.read", "recording.download", "agent.state"
    target: str  # what was acted on: "interactions/01J…", "agents/1001", "config/flows/main"
    interaction_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "client": self.client,
            "action": self.action,
            "target": self.target,
            "interaction_id": self.interaction_id,
            "details": self.details,
        }


class AuditLog:
    """Writes :class:`AuditEntry` values to their durable homes (module docstring)."""

    def __init__(self, history: History, path: Path | None = None) -> None:
        self._history = history
        self._path = path
        self._file_lock = asyncio.Lock()

    async def record(self, entry: AuditEntry) -> None:
        data = entry.to_dict()
        log.info(
            "audit %s %s by %s", entry.action, entry.target, entry.actor, extra={"audit": data}
        )
        if entry.interaction_id is not None:
            event = {k: v for k, v in data.items() if k not in ("at", "interaction_id")}
            try:
                await self._history.add_event(entry.interaction_id, AUDIT_EVENT, event, at=entry.at)
            except NotFoundError:
                pass  # a live call not (yet) in the history: the log line stands alone
            except StoreError:
                log.exception("could not write the audit event", extra={"audit": data})
        if self._path is not None:
            line = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"
            async with self._file_lock:
                await asyncio.to_thread(_append, self._path, line)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
