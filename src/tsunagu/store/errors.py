"""The two error families of the store (the same split as :mod:`tsunagu.sip.errors`).

* :class:`StoreRequestError` — the *caller* asked for something the store cannot do: an
  unknown kind, a document that is not JSON, a stale ``expected_revision``, an interaction
  that does not exist. The REST API answers these with a 4xx and passes ``error_id``,
  the message and ``details`` through unchanged.
* :class:`StoreFaultError` — *we* cannot serve: the database schema is newer than this code, a
  migration failed, a replicated change log does not fit. An operator has to look.

Every error carries a stable ``error_id`` (what API clients match on, never the message)
and a ``details`` mapping of JSON-able values.
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base of every error raised by :mod:`tsunagu.store`."""

    error_id = "store.error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class StoreRequestError(StoreError):
    """The request cannot be honoured as asked; the caller can fix it."""

    error_id = "store.bad_request"


class NotFoundError(StoreRequestError):
    error_id = "store.not_found"


class UnknownKindError(StoreRequestError):
    error_id = "config.unknown_kind"


class InvalidDocumentError(StoreRequestError):
    """A configuration document (or name) cannot be stored: not a JSON object, bad key…"""

    error_id = "config.invalid_document"


class ConfigValidationError(StoreRequestError):
    """The validator callback found problems; nothing was written.

    ``problems`` is a list of ``"kind/name: message"`` strings, one per problem, so
    ``tsunagu config apply`` can print all of them at once.
    """

    error_id = "config.invalid"

    def __init__(self, problems: list[str]) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"configuration refused:\n{lines}", problems=problems)
        self.problems = problems


class RevisionConflictError(StoreRequestError):
    """Optimistic concurrency: the entity (or the whole configuration) changed since the
    revision the caller based its edit on. Re-read and try again."""

    error_id = "config.revision_conflict"


class InvalidStateError(StoreRequestError):
    """The record is not in a state that allows this (e.g. finishing an ended interaction)."""

    error_id = "history.invalid_state"


class StoreFaultError(StoreError):
    """The store itself cannot serve; not the caller's fault."""

    error_id = "store.fault"


class SchemaError(StoreFaultError):
    """The database schema cannot be brought to what this code needs."""

    error_id = "store.schema"


class ReplicationError(StoreFaultError):
    """A replicated change log does not fit this database (a gap, or a diverged entity)."""

    error_id = "config.replication"
