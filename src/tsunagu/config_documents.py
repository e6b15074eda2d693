"""The contact-center sections of the YAML as configuration-store documents, and back.

Why this module exists: the YAML given to ``serve`` only *seeds* an empty store; after that
the revisioned store is the source of truth (the DR site replicates its change log), and
the running :class:`~tsunagu.center.Center` is built from it. Both directions must agree
exactly, and every way into the store (YAML seeding, ``tsunagu config apply``, the REST
API) must be validated by the same models — so all of it lives here.

One document per entity, ``{kind: {name: document}}``:

=========  ===============================  =============================================
kind       name                             document
=========  ===============================  =============================================
agents     agent id                         ``AgentSettings`` without ``id``
teams      team id                          ``TeamSettings`` without ``id``
trunks     trunk name                       ``TrunkSettings`` without ``name``
numbers    the number in E.164              ``NumberSettings`` (``number`` kept only when
                                            written otherwise, e.g. national form)
flows      flow name                        the flow document itself (docs/FLOWS.md)
queues     queue id                         ``QueueSettings`` without ``id``
hours      hours name                       ``HoursConfig`` without ``name``
calendars  calendar name                    ``HolidayCalendarConfig`` without ``name``
customers  the customer's number in E.164   ``CustomerSettings`` (as numbers)
=========  ===============================  =============================================

Fields equal to their default are left out, so a document says only what was chosen.
Relative paths (a queue's ``music_on_hold``) are made absolute against the config file's
directory when seeding: a document in the store has no file to be relative to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tsunagu.calendar.holidays import HolidayCalendarConfig
from tsunagu.calendar.hours import HoursConfig
from tsunagu.calls.numbers import NumberError, to_e164
from tsunagu.center import Center, build_center
from tsunagu.config_kinds import CENTER_KINDS
from tsunagu.flows.model import FlowParseError, flow_from_mapping, parse_flow
from tsunagu.settings import (
    AgentSettings,
    ConfigError,
    CustomerSettings,
    FlowFileSettings,
    NumberSettings,
    QueueSettings,
    Settings,
    TeamSettings,
    TrunkSettings,
    validation_problems,
)

Documents = dict[str, dict[str, dict[str, Any]]]

#: The settings model and the field that is the entity's name, per kind (flows aside).
_MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "agents": (AgentSettings, "id"),
    "teams": (TeamSettings, "id"),
    "trunks": (TrunkSettings, "name"),
    "numbers": (NumberSettings, "number"),
    "queues": (QueueSettings, "id"),
    "hours": (HoursConfig, "name"),
    "calendars": (HolidayCalendarConfig, "name"),
    "customers": (CustomerSettings, "number"),
}
#: Kinds named by a telephone number in E.164.
_NUMBER_KINDS = frozenset({"numbers", "customers"})

# --- settings -> documents ------------------------------------------------------------


def settings_to_documents(settings: Settings, source: str = "<config>") -> Documents:
    """The contact-center sections of ``settings`` as store documents (every kind, even
    empty). Flow files are read and stored as their documents; :class:`ConfigError` if one
    cannot be read or parsed."""
    docs: Documents = {kind: {} for kind in CENTER_KINDS}
    for kind, (_model, key) in _MODELS.items():
        for item in getattr(settings, kind):
            name, doc = _item_document(kind, key, item, settings.base_dir)
            docs[kind][name] = doc
    problems: list[tuple[str, str]] = []
    for i, entry in enumerate(settings.flows):
        flow = _flow_entry_document(entry, settings.base_dir, f"flows[{i}]", problems)
        if flow is not None:
            docs["flows"][str(flow["name"])] = flow
    if problems:
        raise ConfigError(source, problems)
    return {kind: dict(sorted(entities.items())) for kind, entities in docs.items()}


def _item_document(
    kind: str, key: str, item: BaseModel, base_dir: Path
) -> tuple[str, dict[str, Any]]:
    doc = item.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    raw_name = str(doc.pop(key))
    name = raw_name
    if kind in _NUMBER_KINDS:
        name = to_e164(raw_name)
        if raw_name != name:
            doc = {key: raw_name, **doc}
    if kind == "queues" and isinstance(doc.get("music_on_hold"), str):
        path = Path(doc["music_on_hold"])
        doc["music_on_hold"] = str(path if path.is_absolute() else (base_dir / path).resolve())
    return name, doc


def _flow_entry_document(
    entry: FlowFileSettings, base_dir: Path, where: str, problems: list[tuple[str, str]]
) -> dict[str, Any] | None:
    if entry.flow is not None:
        data: Any = entry.flow
        where += ".flow"
    else:
        assert entry.file is not None
        path = entry.file if entry.file.is_absolute() else base_dir / entry.file
        where += ".file"
        try:
            text = path.read_text(encoding="utf-8")
            parse_flow(text)  # the strict checks of a file (duplicate keys, octal digits)
        except OSError as exc:
            problems.append((where, f"cannot read {path}: {exc.strerror}"))
            return None
        except FlowParseError as exc:
            problems += [(where, f"{path.name}: {p}") for p in exc.problems]
            return None
        data = _string_keys(yaml.safe_load(text))
    try:
        flow_from_mapping(data)
    except FlowParseError as exc:
        problems += [(where, str(p)) for p in exc.problems]
        return None
    return dict(data)


def _string_keys(value: Any) -> Any:
    """YAML reads a menu branch ``1:`` as an int; a JSON document has string keys only."""
    if isinstance(value, dict):
        return {str(k) if isinstance(k, int) else k: _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value


def documents_to_config(docs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The YAML sections (lists, as in the config file) holding ``docs``: what
    ``tsunagu config export`` writes and ``config apply`` (or ``serve``) reads back. Flows
    are written inline (``- flow: {...}``)."""
    out: dict[str, Any] = {}
    for kind in CENTER_KINDS:
        entities = docs.get(kind)
        if entities is None:
            continue
        if kind == "flows":
            out[kind] = [{"flow": dict(doc)} for _name, doc in sorted(entities.items())]
            continue
        key = _MODELS[kind][1]
        items = []
        for name, doc in sorted(entities.items()):
            rest = {k: v for k, v in doc.items() if k != key}
            items.append({key: doc.get(key, name), **rest})
        out[kind] = items
    return out


# --- one document: the store's validator hook --------------------------------------------


def document_problems(kind: str, name: str, document: Mapping[str, Any]) -> list[str]:
    """What is wrong with one document of a contact-center kind (``field: message``, the
    field as in the YAML); other kinds: nothing. The same models as the YAML file."""
    if kind == "flows":
        return _flow_problems(name, document)
    if kind not in _MODELS:
        return []
    try:
        _model_item(kind, name, document)
    except _DocumentError as exc:
        return exc.problems
    return []


class _DocumentError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _model_item(kind: str, name: str, document: Mapping[str, Any]) -> BaseModel:
    model, key = _MODELS[kind]
    data = dict(document)
    if kind in _NUMBER_KINDS:
        number = str(data.get(key, name))
        try:
            e164 = to_e164(number)
        except NumberError:
            e164 = None
        if e164 is not None and e164 != name:
            raise _DocumentError(
                [f"name: a {kind[:-1]} is named by its number in E.164, {e164!r}, not {name!r}"]
            )
        data[key] = number
    else:
        if key in data and data[key] != name:
            raise _DocumentError(
                [f"{key}: {data[key]!r} differs from the name {name!r}; leave {key} out"]
            )
        data[key] = name
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _DocumentError([f"{path}: {msg}" for path, msg in validation_problems(exc)]) from None


def _flow_problems(name: str, document: Mapping[str, Any]) -> list[str]:
    try:
        flow = flow_from_mapping(document)
    except FlowParseError as exc:
        return [str(p) for p in exc.problems]
    if flow.name != name:
        return [f"name: the flow's name {flow.name!r} differs from {name!r}"]
    return []


Validator = Callable[[str, str, dict[str, Any]], list[str]]


def make_validator(*extra: Validator) -> Validator:
    """The store's ``validator`` hook: :func:`document_problems` and then ``extra`` (the
    API's users/ACL rules), so every way into the store obeys the same rules."""

    def validate(kind: str, name: str, document: dict[str, Any]) -> list[str]:
        problems = document_problems(kind, name, document)
        for check in extra:
            problems += check(kind, name, document)
        return problems

    return validate


# --- documents -> settings -> Center: the whole picture ---------------------------------


def documents_to_settings(
    base: Settings, docs: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> tuple[Settings, dict[str, dict[str, Any]]]:
    """``base`` (the YAML: server, SIP, media... sections) with its contact-center sections
    replaced by ``docs``, and the flow documents by name. :class:`ConfigError` with every
    document problem, named ``kind/name.field``."""
    problems: list[tuple[str, str]] = []
    update: dict[str, Any] = {}
    for kind in _MODELS:
        items: list[BaseModel] = []
        for name, doc in sorted((docs.get(kind) or {}).items()):
            try:
                items.append(_model_item(kind, name, doc))
            except _DocumentError as exc:
                problems += [_split(f"{kind}/{name}", p) for p in exc.problems]
        update[kind] = items
    flows: dict[str, dict[str, Any]] = {}
    for name, doc in sorted((docs.get("flows") or {}).items()):
        found = _flow_problems(name, doc)
        problems += [_split(f"flows/{name}", p) for p in found]
        if not found:
            flows[name] = dict(doc)
    if problems:
        raise ConfigError("configuration store", problems)
    update["flows"] = []
    return base.model_copy(update=update), flows


def _split(ref: str, problem: str) -> tuple[str, str]:
    field, sep, message = problem.partition(": ")
    if sep and field and " " not in field:
        return (f"{ref}.{field}", message)
    return (ref, problem)


_INDEXED = re.compile(r"^(\w+)\[(\d+)\](.*)$")


def center_from_documents(
    base: Settings, docs: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> Center:
    """Build the contact center from store documents, with every whole-picture check of
    :func:`~tsunagu.center.build_center`; problems are named ``kind/name.field``
    (``numbers/+81312345600.flow: unknown flow 'x'``) instead of list positions."""
    settings, flows = documents_to_settings(base, docs)
    try:
        return build_center(settings, "configuration store", flow_documents=flows)
    except ConfigError as exc:
        names = {kind: sorted(docs.get(kind) or {}) for kind in CENTER_KINDS}
        raise ConfigError(
            exc.source, [(_named(path, names), message) for path, message in exc.problems]
        ) from None


def _named(path: str, names: Mapping[str, list[str]]) -> str:
    match = _INDEXED.match(path)
    if match is None:
        return path
    kind, index, rest = match.group(1), int(match.group(2)), match.group(3)
    listed = names.get(kind, [])
    if index >= len(listed):
        return path
    return f"{kind}/{listed[index]}{rest}"


def whole_picture_problems(docs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Every problem of a would-be configuration, as ``"kind/name.field: message"``
    (empty: it can run). What the API and ``config apply`` check before writing."""
    try:
        center_from_documents(Settings(), docs)
    except ConfigError as exc:
        return [f"{path}: {message}" for path, message in exc.problems]
    return []


def center_documents(docs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Documents:
    """Only the contact-center kinds of a whole export (every one present, maybe empty)."""
    return {kind: {n: dict(d) for n, d in (docs.get(kind) or {}).items()} for kind in CENTER_KINDS}
