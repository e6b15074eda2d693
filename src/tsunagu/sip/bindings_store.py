"""Persistence of registrar bindings, so a restart does not log every agent out.

A write-behind journal: the registrar's changes are queued in memory and written to a
SQLite file in the data directory in one transaction per flush (the server flushes about
once a second and at shutdown). A crash loses at most the last flush interval of
refreshes, which phones repeat on their next refresh; a registration storm never waits on
the disk per REGISTER. The general store (SQLAlchemy, PostgreSQL) arrives with the storage
issue; bindings are location-service state, local to the node that holds the phone's
connection, which is why they live in their own small file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, fields
from pathlib import Path

from tsunagu.sip.registrar import Binding, BindingChange

_COLUMNS = [f.name for f in fields(Binding)]
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS bindings (
    {", ".join(_COLUMNS)},
    PRIMARY KEY (aor, contact)
)
"""


class BindingJournal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._upserts: dict[tuple[str, str], Binding] = {}
        self._deletes: set[tuple[str, str]] = set()

    def load(self) -> list[Binding]:
        # Column names come from the Binding dataclass, never from input.
        rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM bindings").fetchall()  # noqa: S608
        return [Binding(*row) for row in rows]

    def record(self, change: BindingChange) -> None:
        """Queue a change (called from the registrar's ``on_change``)."""
        for binding in (*change.added, *change.refreshed):
            key = (binding.aor, binding.contact)
            self._deletes.discard(key)
            self._upserts[key] = binding
        for binding in change.removed:
            key = (binding.aor, binding.contact)
            self._upserts.pop(key, None)
            self._deletes.add(key)

    @property
    def pending(self) -> int:
        return len(self._upserts) + len(self._deletes)

    def flush(self) -> int:
        """Write queued changes in one transaction; returns how many rows changed."""
        if not self.pending:
            return 0
        upserts, deletes = list(self._upserts.values()), list(self._deletes)
        self._upserts.clear()
        self._deletes.clear()
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR REPLACE INTO bindings ({', '.join(_COLUMNS)}) VALUES ({placeholders})",  # noqa: S608
                [astuple(b) for b in upserts],
            )
            self._db.executemany("DELETE FROM bindings WHERE aor = ? AND contact = ?", deletes)
        return len(upserts) + len(deletes)

    def close(self) -> None:
        self.flush()
        self._db.close()
