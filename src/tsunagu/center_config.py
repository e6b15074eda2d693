"""The running server's contact center, kept equal to the revisioned store.

Why the store and not the YAML: the DR site replicates the store's change log, and the
API and ``tsunagu config apply`` write to the store; a server that kept running the YAML's
contact center would disagree with both. So:

* **Seeding.** The YAML given to ``serve`` seeds a store that holds no contact-center
  configuration (one conditional ``apply``: if another node seeds first, its state is
  used). Once seeded, the YAML's contact-center sections are only compared with the
  store: a difference is logged as a warning naming ``tsunagu config apply FILE``, and
  the store is never overwritten by a restart.
* **Live reload.** When the store's revision moves — a write by this process (the
  store's change listener) or by another one (``config apply``, another node; polled every
  housekeeping second) — the center is rebuilt from the store and swapped in. A state that
  fails the whole-picture checks is never swapped in: the running center stays and the
  problems are logged as an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from tsunagu.center import Center
from tsunagu.config_documents import (
    Documents,
    center_documents,
    center_from_documents,
    settings_to_documents,
)
from tsunagu.config_kinds import CENTER_KINDS
from tsunagu.settings import ConfigError, Settings
from tsunagu.store import Change, RevisionConflictError, Store
from tsunagu.store.config_diff import same_document

log = logging.getLogger("tsunagu.config")

SEED_ACTOR = "system:seed-yaml"


class CenterConfig:
    """Loads the center from the store at start-up and reloads it when the store moves.

    ``use_center`` installs a new center and returns what waits for a restart."""

    def __init__(self, settings: Settings, use_center: Callable[[Center], list[str]]) -> None:
        self.settings = settings
        self._use_center = use_center
        self._store: Store | None = None
        #: The store revision the running center was built from (or last judged at).
        self.revision = 0
        self._documents: Documents | None = None
        self._lock = asyncio.Lock()
        self._pending: asyncio.Task[None] | None = None

    async def load(self, store: Store) -> Center:
        """Seed an empty store from the YAML, warn when a seeded store differs from it,
        and build the center from the store. :class:`ConfigError` if the store's state
        cannot run (start-up stops, as for a bad YAML)."""
        self._store = store
        yaml_docs = settings_to_documents(self.settings)
        for _attempt in range(3):
            revision = await store.config.current_revision()
            stored = center_documents(await store.config.export())
            if any(stored.values()):
                self._warn_if_different(yaml_docs, stored)
                break
            try:
                diff = await store.config.apply(yaml_docs, SEED_ACTOR, base_revision=revision)
            except RevisionConflictError:
                continue  # someone else wrote meanwhile (another node seeding): look again
            log.info(
                "configuration store seeded from the YAML",
                extra={"entities": len(diff.creates), "revision": diff.applied_revision},
            )
        revision = await store.config.current_revision()
        stored = center_documents(await store.config.export())
        center = center_from_documents(self.settings, stored)
        self.revision, self._documents = revision, stored
        return center

    def _warn_if_different(self, yaml_docs: Documents, stored: Documents) -> None:
        differs = _differences(yaml_docs, stored)
        if differs:
            log.warning(
                "the YAML's contact-center sections differ from the configuration store; the "
                "store is the source of truth and is used. To load the file into the store "
                "run: tsunagu config apply FILE (--dry-run shows the diff first)",
                extra={"differs": ", ".join(differs[:50]), "count": len(differs)},
            )

    def changed(self, changes: list[Change]) -> None:
        """The store's change listener (this process's own writes): reload soon, without
        waiting for the next poll."""
        if not any(c.kind in CENTER_KINDS for c in changes):
            return
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._poll_logged())

    async def _poll_logged(self) -> None:
        try:
            await self.poll()
        except Exception:
            log.exception("could not reload the configuration after a change")

    async def poll(self) -> None:
        """Rebuild and swap the center if the store's revision moved (housekeeping)."""
        store = self._store
        if store is None:
            return
        async with self._lock:
            revision = await store.config.current_revision()
            if revision == self.revision:
                return
            stored = center_documents(await store.config.export())
            if self._documents is not None and not _differences(self._documents, stored):
                self.revision = revision  # users, ACLs or prompts moved: nothing to rebuild
                return
            try:
                center = center_from_documents(self.settings, stored)
            except ConfigError as exc:
                log.error(
                    "the configuration store's state cannot run; keeping the running "
                    "contact center until it is fixed",
                    extra={
                        "revision": revision,
                        "running_revision": self.revision,
                        "problems": "; ".join(f"{path}: {msg}" for path, msg in exc.problems),
                    },
                )
                self.revision = revision  # judged: retry when the store moves again
                return
            changed = _differences(self._documents or {}, stored)
            waits = self._use_center(center)
            previous, self.revision, self._documents = self.revision, revision, stored
            log.info(
                "configuration reloaded",
                extra={
                    "revision": revision,
                    "previous": previous,
                    "changed": ", ".join(changed[:50]),
                },
            )
            for line in waits:
                log.warning("configuration change waits for a restart: %s", line)


def _differences(
    a: Mapping[str, Mapping[str, Mapping[str, Any]]],
    b: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> list[str]:
    """``kind/name`` of every entity that differs (never the values: they hold secrets)."""
    out: list[str] = []
    for kind in CENTER_KINDS:
        left, right = a.get(kind) or {}, b.get(kind) or {}
        for name in sorted(left.keys() | right.keys()):
            if not same_document(left.get(name), right.get(name)):
                out.append(f"{kind}/{name}")
    return out
