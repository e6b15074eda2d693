"""Which configuration kinds make up the contact center, and which of their fields are
secrets — kept apart from :mod:`tsunagu.config_documents` so the REST API can redact
without importing the call layer.

Secrets (an agent's ``sip_password``, a trunk's ``password``) are never shown in a diff,
a log or an API read: they read ``<redacted>``, a changed one shows as changed, and a
document written back with ``<redacted>`` keeps the stored secret (so a redacted export,
or a document read through the API, can be applied back as no change).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tsunagu.store.config_store import KINDS

#: Store kinds that are not the contact center itself (the API's users and access lists,
#: prompt audio): ``config apply/export`` and the running center leave them alone.
NOT_CENTER_KINDS = frozenset({"prompts", "users", "acls"})
#: The store kinds that make up the contact center, in the store's order.
CENTER_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k not in NOT_CENTER_KINDS)

#: Fields that hold secrets, per kind.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {"agents": ("sip_password",), "trunks": ("password",)}
#: What is shown (and exported without ``--include-secrets``) in a secret's place.
REDACTED = "<redacted>"
REDACTED_CHANGED = "<redacted, changed>"


def redact_document(kind: str, document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``document`` with its secrets replaced by :data:`REDACTED`."""
    if document is None:
        return None
    out = dict(document)
    for field in SECRET_FIELDS.get(kind, ()):
        if field in out and out[field] is not None:
            out[field] = REDACTED
    return out


def redact_pair(
    kind: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Both sides of a change with secrets hidden, yet a changed secret still shows as a
    change (``<redacted>`` -> ``<redacted, changed>``), with nothing derived from it."""
    shown_before, shown_after = redact_document(kind, before), redact_document(kind, after)
    if before is not None and after is not None and shown_after is not None:
        for field in SECRET_FIELDS.get(kind, ()):
            if field in after and before.get(field) != after.get(field):
                shown_after[field] = REDACTED_CHANGED
    return shown_before, shown_after


def restore_secrets(
    desired: Mapping[str, Mapping[str, Mapping[str, Any]] | None],
    current: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> tuple[dict[str, Any], list[str]]:
    """``desired`` with each :data:`REDACTED` secret replaced by the stored one (so a
    redacted export applies back as no change); problems where nothing is stored."""
    out: dict[str, Any] = dict(desired)
    problems: list[str] = []
    for kind, fields in SECRET_FIELDS.items():
        entities = desired.get(kind)
        if not isinstance(entities, Mapping):
            continue
        held = current.get(kind) or {}
        restored: dict[str, Any] = {}
        for name, doc in entities.items():
            new = dict(doc) if isinstance(doc, Mapping) else doc
            for field in fields:
                if isinstance(new, dict) and new.get(field) == REDACTED:
                    stored = (held.get(name) or {}).get(field)
                    if stored is None:
                        problems.append(
                            f"{kind}/{name}.{field}: the export left it out ({REDACTED}) and "
                            "nothing is stored to keep; write the secret"
                        )
                    else:
                        new[field] = stored
            restored[name] = new
        out[kind] = restored
    return out, problems


def restore_secret_fields(
    kind: str, document: Mapping[str, Any], stored: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """One document's :data:`REDACTED` secrets replaced by ``stored``'s (see
    :func:`restore_secrets`)."""
    restored, problems = restore_secrets(
        {kind: {"_": document}}, {kind: {"_": dict(stored)} if stored is not None else {}}
    )
    return dict(restored[kind]["_"]), [p.replace(f"{kind}/_.", "", 1) for p in problems]
