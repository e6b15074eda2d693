"""Column types and values that must mean the same on SQLite and PostgreSQL.

* :class:`UtcDateTime` — every instant is stored and returned as a UTC-aware
  ``datetime``. PostgreSQL keeps ``timestamptz``; SQLite has no time type, so the value is
  stored as naive UTC text in one fixed format (which also sorts correctly). A naive
  ``datetime`` is refused on the way in: guessing its zone is how reports end up an hour
  (or nine) off.
* :data:`JSON_TYPE` — ``JSONB`` on PostgreSQL (indexable, containment operator), JSON text
  on SQLite. SQL ``NULL`` and JSON ``null`` are kept apart (``none_as_null``).
* :func:`new_id` — a ULID: 48 bits of milliseconds then 80 random bits, Crockford
  base32. Ids sort roughly by creation time, which keeps B-tree inserts local.
* :func:`normalize_document` — the one place that decides what a stored document may
  hold, so equality ("did anything change?") is decided on identical representations.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from tsunagu.store.errors import InvalidDocumentError, StoreRequestError

JSON_TYPE: TypeEngine[Any] = JSON(none_as_null=True).with_variant(
    JSONB(none_as_null=True), "postgresql"
)


def require_utc(value: datetime, what: str = "time") -> datetime:
    """Return ``value`` in UTC; refuse a naive datetime (its zone would be a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreRequestError(
            f"{what} must be timezone-aware (got naive {value.isoformat()})", field=what
        )
    return value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC-aware timestamp on both backends (see the module docstring)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = require_utc(value)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(at: datetime) -> str:
    """A ULID for ``at`` (26 characters, sortable by time to the millisecond)."""
    millis = int(require_utc(at).timestamp() * 1000)
    if not 0 <= millis < 1 << 48:
        raise StoreRequestError(f"time {at.isoformat()} cannot be encoded in an id")
    value = (millis << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def normalize_document(document: object, *, where: str = "") -> dict[str, Any]:
    """A deep copy of ``document`` holding only JSON values, or :class:`InvalidDocumentError`.

    Dates and datetimes become ISO 8601 strings (YAML loads ``2025-01-01`` as a ``date``;
    the configuration models accept the string form), tuples become lists. Everything
    else that JSON cannot carry — non-string keys, NaN, bytes, objects — is refused with
    the path of the offending value, rather than silently converted.
    """
    if not isinstance(document, Mapping):
        raise InvalidDocumentError(
            f"{where or 'document'}: must be a JSON object (mapping), "
            f"not {type(document).__name__}",
            path=where or "$",
        )
    out = _normalize(document, "$")
    assert isinstance(out, dict)
    return out


def _normalize(value: object, path: str) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidDocumentError(f"{path}: {value} is not a JSON number", path=path)
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidDocumentError(
                    f"{path}: key {key!r} must be a string (quote it in YAML)", path=path
                )
            result[key] = _normalize(item, f"{path}.{key}")
        return result
    if isinstance(value, list | tuple):
        return [_normalize(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidDocumentError(
        f"{path}: a {type(value).__name__} cannot be stored in a JSON document", path=path
    )
