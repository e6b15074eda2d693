"""``/api/v1/config``: the revisioned configuration, read by supervisors, written by admins.

Writes are validated exactly as ``tsunagu config apply`` validates them (the store's
validator hook, plus ``ApiServices.validator`` and the rules for users and ACLs) and are
recorded in the change log with the API user as actor. Optimistic concurrency follows
HTTP (RFC 9110 §13.1): ``GET`` gives the entity's revision as its ``ETag``; ``PUT`` and
``DELETE`` with ``If-Match: "<revision>"`` fail with 412 if anyone changed it meanwhile,
and ``If-None-Match: *`` creates only if it does not exist.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response

from tsunagu.api.auth import Principal
from tsunagu.api.context import Admin, ApiContext, Context, Supervisor
from tsunagu.api.errors import ApiError
from tsunagu.api.schemas import (
    ApplyIn,
    ChangeOut,
    ChangesOut,
    ConfigEntityOut,
    ConfigExportOut,
    ConfigKind,
    ConfigListOut,
    DeletedOut,
    DiffOut,
    ErrorBody,
)
from tsunagu.api.users import (
    ACLS,
    USERS,
    Role,
    address_allowed,
    hash_user_secrets,
    parse_allow_list,
    prepare_user_document,
    redact,
    validate_auth_document,
)
from tsunagu.config_kinds import (
    CENTER_KINDS,
    SECRET_FIELDS,
    redact_pair,
    restore_secret_fields,
    restore_secrets,
)
from tsunagu.store import ConfigValidationError, RevisionConflictError
from tsunagu.store.config_diff import Diff, DiffItem

router = APIRouter(prefix="/config", tags=["configuration"])

Name = Annotated[str, Path(min_length=1, max_length=200, description="entity name")]
Kind = Annotated[ConfigKind, Path(description="configuration kind")]
_ETAG_PATTERN = r'^(?:\*|(?:W/)?"?(\d{1,18})"?)$'
_ETAG = re.compile(_ETAG_PATTERN)
_CONFLICT: dict[int | str, dict[str, Any]] = {
    412: {"model": ErrorBody, "description": "If-Match / If-None-Match failed"}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such entity"}
}


def _expected_revision(if_match: str | None, if_none_match: str | None) -> int | None:
    """The store's ``expected_revision`` from the precondition headers (``None``: any)."""
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise ApiError(
                422,
                "request.invalid",
                'If-None-Match supports only "*" (create if absent)',
                {"fields": [{"field": "header.if-none-match", "problem": "must be *"}]},
            )
        return 0
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.match(if_match.strip())
    if match is None:
        raise ApiError(
            422,
            "request.invalid",
            'If-Match must be the ETag given by GET, e.g. "12"',
            {"fields": [{"field": "header.if-match", "problem": "not an ETag"}]},
        )
    return int(match.group(1))


def _precondition_failed(exc: RevisionConflictError) -> ApiError:
    return ApiError(412, exc.error_id, exc.message, exc.details)


def _etag(revision: int) -> str:
    return f'"{revision}"'


def _show(kind: str, document: Mapping[str, Any] | None) -> dict[str, Any]:
    return redact(kind, document) or {}


async def _prepare(
    ctx: ApiContext, principal: Principal, kind: str, name: str, document: dict[str, Any]
) -> dict[str, Any]:
    """Hash user secrets, then collect every validation problem before the store is asked."""
    problems: list[str] = []
    if kind == USERS:
        stored = await ctx.services.store.config.get(kind, name)
        document = await asyncio.to_thread(
            prepare_user_document, name, document, None if stored is None else stored.document
        )
    elif kind in SECRET_FIELDS:
        stored = await ctx.services.store.config.get(kind, name)
        document, kept = restore_secret_fields(
            kind, document, None if stored is None else stored.document
        )
        problems += [f"{kind}/{name}.{p}" for p in kept]
    problems += [f"{kind}/{name}: {p}" for p in validate_auth_document(kind, name, document)]
    if ctx.services.validator is not None and not problems:
        problems += [f"{kind}/{name}: {p}" for p in ctx.services.validator(kind, name, document)]
    if problems:
        raise ConfigValidationError(problems)
    if kind in CENTER_KINDS:
        await _check_whole(ctx, {kind: {name: document}}, set())
    if kind == ACLS and name == principal.role:
        _refuse_lockout(principal, document)
    return document


async def _check_whole(
    ctx: ApiContext,
    put: Mapping[str, Mapping[str, Mapping[str, Any]]],
    deleted: set[tuple[str, str]],
    *,
    replace_kinds: bool = False,
) -> None:
    """Refuse a write that would give the contact center a problem it does not have now
    (the checks ``serve`` makes at start-up: references between kinds, flow loops).
    Problems already present are not blamed on this write, so a store can be repaired one
    document at a time. ``replace_kinds``: each kind in ``put`` replaces the stored one
    (an apply)."""
    check = ctx.services.check_center
    if check is None:
        return
    current = await ctx.services.store.config.export()
    would_be: dict[str, dict[str, dict[str, Any]]] = {
        kind: dict(entities) for kind, entities in current.items()
    }
    for kind, entities in put.items():
        target = {} if replace_kinds else would_be.get(kind, {})
        would_be[kind] = {**target, **{n: dict(d) for n, d in entities.items()}}
    for kind, name in deleted:
        would_be.get(kind, {}).pop(name, None)
    before = set(await asyncio.to_thread(check, current))
    new = [p for p in await asyncio.to_thread(check, would_be) if p not in before]
    if not new:
        return
    if deleted and not put:
        (kind, name), *_ = sorted(deleted)
        raise ApiError(
            409,
            "config.in_use",
            f"{kind}/{name} is still in use; change or delete what refers to it first",
            {"problems": new},
        )
    raise ConfigValidationError(new)


def _refuse_lockout(principal: Principal, document: Mapping[str, Any]) -> None:
    if not address_allowed(principal.client, parse_allow_list(document)):
        raise ApiError(
            409,
            "config.acl_lockout",
            f"this allow-list for {principal.role} excludes the address you are connecting "
            "from; you would lock yourself out",
            {"client": principal.client},
        )


@router.get("", response_model=ConfigExportOut, summary="Export the whole configuration")
async def export_config(ctx: Context, principal: Supervisor) -> ConfigExportOut:
    config = ctx.services.store.config
    revision = await config.current_revision()
    exported = await config.export()
    shown = {
        kind: {name: _show(kind, doc) for name, doc in entities.items()}
        for kind, entities in exported.items()
    }
    return ConfigExportOut(revision=revision, config=shown)


@router.get(
    "/changes",
    response_model=ChangesOut,
    summary="The change log after a revision (what the DR site replicates)",
)
async def list_changes(
    ctx: Context,
    principal: Supervisor,
    since: Annotated[int, Query(ge=0, le=2**62, description="changes after this revision")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> ChangesOut:
    config = ctx.services.store.config
    changes = await config.changes_since(since, limit)
    revision = await config.current_revision()
    if principal.role == Role.ADMIN:
        items = [ChangeOut.of(c, c.before, c.after) for c in changes]
    else:
        items = [
            ChangeOut.of(c, redact(c.kind, c.before), redact(c.kind, c.after)) for c in changes
        ]
    return ChangesOut(items=items, revision=revision)


@router.post(
    "/apply",
    response_model=DiffOut,
    summary="Make the configuration equal to a desired state (as `tsunagu config apply`)",
    responses={409: {"model": ErrorBody, "description": "base_revision is stale"}},
)
async def apply_config(ctx: Context, principal: Admin, body: ApplyIn) -> DiffOut:
    config = ctx.services.store.config
    desired: dict[str, Any] = {kind: entities for kind, entities in body.config.items()}
    if isinstance(desired.get(USERS), Mapping):
        current = {USERS: {e.name: e.document for e in await config.list(USERS)}}
        desired = await asyncio.to_thread(hash_user_secrets, desired, current)
    exported = await config.export()
    desired, problems = restore_secrets(desired, exported)
    for kind, entities in desired.items():
        for name, doc in (entities or {}).items():
            problems += [f"{kind}/{name}: {p}" for p in validate_auth_document(kind, name, doc)]
            if ctx.services.validator is not None and kind in config.kinds:
                problems += [f"{kind}/{name}: {p}" for p in ctx.services.validator(kind, name, doc)]
    if problems:
        raise ConfigValidationError(problems)
    center_part = {k: v for k, v in desired.items() if k in CENTER_KINDS and v is not None}
    if center_part:
        await _check_whole(ctx, center_part, set(), replace_kinds=True)
    own_acl = (desired.get(ACLS) or {}).get(str(principal.role))
    if isinstance(own_acl, Mapping):
        _refuse_lockout(principal, own_acl)
    diff = await config.apply(
        desired, principal.actor, dry_run=body.dry_run, base_revision=body.base_revision
    )
    if not body.dry_run and not diff.empty:
        await ctx.audit_action(
            principal,
            "config.apply",
            "config",
            summary=diff.summary(),
            revision=diff.applied_revision,
        )
    return DiffOut.of(_redacted_diff(diff))


def _shown_pair(
    kind: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if kind == USERS:
        return redact(kind, before), redact(kind, after)
    return redact_pair(kind, before, after)


def _redacted_diff(diff: Diff) -> Diff:
    items = tuple(
        DiffItem(i.operation, i.kind, i.name, *_shown_pair(i.kind, i.before, i.after))
        for i in diff.items
    )
    return Diff(items, diff.base_revision, diff.dry_run, diff.applied_revision)


@router.get("/{kind}", response_model=ConfigListOut, summary="Every entity of a kind")
async def list_entities(ctx: Context, principal: Supervisor, kind: Kind) -> ConfigListOut:
    config = ctx.services.store.config
    entities = await config.list(kind)
    revision = await config.current_revision()
    return ConfigListOut(
        kind=kind,
        revision=revision,
        items=[ConfigEntityOut.of(e, _show(kind, e.document)) for e in entities],
    )


@router.get(
    "/{kind}/{name}",
    response_model=ConfigEntityOut,
    summary="One entity; its revision is the ETag",
    responses=_NOT_FOUND,
)
async def get_entity(
    ctx: Context, principal: Supervisor, kind: Kind, name: Name, response: Response
) -> ConfigEntityOut:
    entity = await ctx.services.store.config.get(kind, name)
    if entity is None:
        raise ApiError(
            404, "store.not_found", f"{kind}/{name} does not exist", {"kind": kind, "name": name}
        )
    response.headers["ETag"] = _etag(entity.revision)
    return ConfigEntityOut.of(entity, _show(kind, entity.document))


@router.put(
    "/{kind}/{name}",
    response_model=ConfigEntityOut,
    summary="Create or replace an entity",
    status_code=200,
    responses={201: {"model": ConfigEntityOut, "description": "created"}, **_CONFLICT},
)
async def put_entity(
    *,
    ctx: Context,
    principal: Admin,
    kind: Kind,
    name: Name,
    response: Response,
    document: Annotated[dict[str, Any], Body(description="the entity's document")],
    if_match: Annotated[
        str | None, Header(pattern=_ETAG_PATTERN, description='"<revision>" from GET, or *')
    ] = None,
    if_none_match: Annotated[
        str | None, Header(pattern=r"^\*$", description="* : only create")
    ] = None,
) -> ConfigEntityOut:
    expected = _expected_revision(if_match, if_none_match)
    config = ctx.services.store.config
    before = await config.get(kind, name)
    if if_match is not None and if_match.strip() == "*" and before is None:
        raise ApiError(412, "config.revision_conflict", f"{kind}/{name} does not exist")
    prepared = await _prepare(ctx, principal, kind, name, document)
    try:
        entity = await config.put(kind, name, prepared, principal.actor, expected)
    except RevisionConflictError as exc:
        if if_match is None and if_none_match is None:
            raise
        raise _precondition_failed(exc) from None
    response.headers["ETag"] = _etag(entity.revision)
    if before is None:
        response.status_code = 201
    if before is None or before.revision != entity.revision:
        await ctx.audit_action(
            principal, "config.put", f"config/{kind}/{name}", revision=entity.revision
        )
    return ConfigEntityOut.of(entity, _show(kind, entity.document))


@router.delete(
    "/{kind}/{name}",
    response_model=DeletedOut,
    summary="Delete an entity",
    responses={
        **_NOT_FOUND,
        **_CONFLICT,
        409: {"model": ErrorBody, "description": "still in use (config.in_use)"},
    },
)
async def delete_entity(
    ctx: Context,
    principal: Admin,
    kind: Kind,
    name: Name,
    if_match: Annotated[
        str | None, Header(pattern=_ETAG_PATTERN, description='"<revision>" from GET, or *')
    ] = None,
) -> DeletedOut:
    expected = _expected_revision(if_match, None)
    if kind in CENTER_KINDS:
        await _check_whole(ctx, {}, {(kind, name)})
    try:
        revision = await ctx.services.store.config.delete(kind, name, principal.actor, expected)
    except RevisionConflictError as exc:
        if if_match is None:
            raise
        raise _precondition_failed(exc) from None
    await ctx.audit_action(principal, "config.delete", f"config/{kind}/{name}", revision=revision)
    return DeletedOut(kind=kind, name=name, revision=revision)
