"""What ``tsunagu config apply`` would change, computed without a database.

:func:`compute_diff` compares the stored configuration with a desired one. Its rule for
what "desired" covers: a kind that appears in ``desired`` is *authoritative* — entities of
that kind that are not listed are deleted — while a kind that does not appear is left
alone. So ``apply`` of a file holding only ``flows:`` replaces the flows and cannot wipe
the numbers by accident; ``flows: {}`` deletes every flow, on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Operation = Literal["create", "update", "delete"]
Documents = Mapping[str, Mapping[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One value that differs between two documents; ``path`` is JSONPath-like
    (``$.blocks[2].prompt``). A missing side is reported as ``None`` with ``present``."""

    path: str
    before: Any
    after: Any
    before_present: bool = True
    after_present: bool = True


@dataclass(frozen=True, slots=True)
class DiffItem:
    operation: Operation
    kind: str
    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def field_changes(self) -> list[FieldChange]:
        """The changed values of an update (empty for create and delete)."""
        if self.before is None or self.after is None:
            return []
        return document_changes(self.before, self.after)


@dataclass(frozen=True, slots=True)
class Diff:
    """Creates, updates and deletes, each sorted by kind then name.

    ``base_revision`` is the configuration revision the diff was computed against;
    ``applied_revision`` the revision after it was written (``None`` for a dry run or
    an empty diff).
    """

    items: tuple[DiffItem, ...]
    base_revision: int
    dry_run: bool
    applied_revision: int | None = None

    @property
    def creates(self) -> list[DiffItem]:
        return [i for i in self.items if i.operation == "create"]

    @property
    def updates(self) -> list[DiffItem]:
        return [i for i in self.items if i.operation == "update"]

    @property
    def deletes(self) -> list[DiffItem]:
        return [i for i in self.items if i.operation == "delete"]

    @property
    def empty(self) -> bool:
        return not self.items

    def summary(self) -> str:
        return (
            f"{len(self.creates)} to create, {len(self.updates)} to update, "
            f"{len(self.deletes)} to delete"
        )

    def render(self) -> str:
        """Human-readable lines for the CLI: ``+`` create, ``~`` update (with each changed
        value), ``-`` delete, then the summary."""
        lines: list[str] = []
        for item in self.items:
            ref = f"{item.kind}/{item.name}"
            if item.operation == "create":
                lines.append(f"+ {ref}")
            elif item.operation == "delete":
                lines.append(f"- {ref}")
            else:
                lines.append(f"~ {ref}")
                for change in item.field_changes():
                    old = _show(change.before) if change.before_present else "(absent)"
                    new = _show(change.after) if change.after_present else "(absent)"
                    lines.append(f"    {change.path}: {old} -> {new}")
        lines.append(("would apply: " if self.dry_run else "") + self.summary())
        return "\n".join(lines)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def document_changes(before: Any, after: Any, path: str = "$") -> list[FieldChange]:
    """Every leaf that differs between ``before`` and ``after``. Objects are compared key by
    key; lists of equal length item by item; anything else as a whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[FieldChange] = []
        for key in sorted(before.keys() | after.keys()):
            sub = f"{path}.{key}"
            if key not in after:
                out.append(FieldChange(sub, before[key], None, after_present=False))
            elif key not in before:
                out.append(FieldChange(sub, None, after[key], before_present=False))
            else:
                out.extend(document_changes(before[key], after[key], sub))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out.extend(document_changes(b, a, f"{path}[{i}]"))
        return out
    if _same(before, after):
        return []
    return [FieldChange(path, before, after)]


def _same(a: Any, b: Any) -> bool:
    # ``True == 1`` in Python but not in JSON: a flag turned into a count is a change.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def same_document(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two stored documents are equal as JSON (so writing ``b`` over ``a`` is no
    change)."""
    if a is None or b is None:
        return a is b
    return not document_changes(dict(a), dict(b))


def compute_diff(
    current: Documents,
    desired: Documents,
    *,
    kind_order: tuple[str, ...],
    base_revision: int,
    dry_run: bool,
) -> Diff:
    """The changes that turn ``current`` into ``desired`` (see the module docstring for
    which kinds ``desired`` covers). Documents must already be normalized."""
    order = {kind: i for i, kind in enumerate(kind_order)}
    items: list[DiffItem] = []
    for kind in sorted(desired, key=lambda k: (order.get(k, len(order)), k)):
        have = current.get(kind, {})
        want = desired[kind]
        for name in sorted(have.keys() | want.keys()):
            old, new = have.get(name), want.get(name)
            if old is None and new is not None:
                items.append(DiffItem("create", kind, name, None, dict(new)))
            elif old is not None and new is None:
                items.append(DiffItem("delete", kind, name, dict(old), None))
            elif old is not None and new is not None and not same_document(old, new):
                items.append(DiffItem("update", kind, name, dict(old), dict(new)))
    return Diff(tuple(items), base_revision=base_revision, dry_run=dry_run)
