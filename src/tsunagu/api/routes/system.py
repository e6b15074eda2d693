"""Health, "who am I", and API keys.

``GET /health`` is the load balancer's probe: no authentication, and nothing but the
status (registrations and banned addresses are not for the internet). The full document is
``GET /api/v1/health``, for supervisors.

API keys belong to a user (an integration is a user with keys and no password). A key's
token is returned once, when created; only its SHA-256 is stored. A user may manage their
own keys; an admin anyone's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from tsunagu.api.auth import Principal
from tsunagu.api.context import AnyUser, ApiContext, Context, Supervisor
from tsunagu.api.credentials import key_digest, new_api_key
from tsunagu.api.errors import ApiError
from tsunagu.api.schemas import ApiKeyIn, ApiKeyOut, ErrorBody, MeOut, RevokedOut, StatusOut
from tsunagu.api.users import USERS, Role

public = APIRouter(tags=["system"])
router = APIRouter(tags=["system"])

UserName = Annotated[str, Path(min_length=1, max_length=200, description="user name")]
KeyId = Annotated[str, Path(min_length=1, max_length=64, description="key id")]


@public.get(
    "/health",
    response_model=StatusOut,
    summary="Liveness probe (no authentication)",
    responses={503: {"model": StatusOut, "description": "not healthy"}},
)
async def health_probe(ctx: Context) -> JSONResponse:
    status = str(ctx.services.health().get("status", "ok"))
    return JSONResponse({"status": status}, status_code=200 if status == "ok" else 503)


@router.get("/health", response_model=dict[str, Any], summary="Full health document")
async def health(ctx: Context, principal: Supervisor) -> dict[str, Any]:
    return dict(ctx.services.health())


@router.get("/me", response_model=MeOut, summary="The authenticated caller")
async def me(principal: AnyUser) -> MeOut:
    return MeOut(
        name=principal.name,
        role=str(principal.role),
        agent=principal.agent,
        via=principal.via,
        key_id=principal.key_id,
    )


def _may_manage(principal: Principal, user: str) -> None:
    if principal.role != Role.ADMIN and principal.name != user:
        raise ApiError(
            403,
            "auth.forbidden",
            "only an admin may manage another user's keys",
            {"user": user, "role": str(principal.role)},
        )


async def _user_document(ctx: ApiContext, user: str) -> tuple[dict[str, Any], int]:
    entity = await ctx.services.store.config.get(USERS, user)
    if entity is None:
        raise ApiError(404, "store.not_found", f"user {user} does not exist", {"user": user})
    return dict(entity.document), entity.revision


@router.post(
    "/users/{user}/keys",
    response_model=ApiKeyOut,
    status_code=201,
    summary="Create an API key (the token is shown only in this answer)",
    responses={
        404: {"model": ErrorBody, "description": "no such user"},
        409: {"model": ErrorBody, "description": "the user changed meanwhile; retry"},
    },
)
async def create_key(
    ctx: Context, principal: AnyUser, user: UserName, body: ApiKeyIn | None = None
) -> ApiKeyOut:
    _may_manage(principal, user)
    doc, revision = await _user_document(ctx, user)
    key_id, token = new_api_key()
    created = ctx.services.clock()
    label = body.label if body is not None else None
    entry: dict[str, Any] = {
        "id": key_id,
        "sha256": key_digest(token),
        "created_at": created.isoformat(),
    }
    if label is not None:
        entry["label"] = label
    doc["api_keys"] = [*(doc.get("api_keys") or ()), entry]
    await ctx.services.store.config.put(USERS, user, doc, principal.actor, revision)
    await ctx.audit_action(principal, "api_key.create", f"users/{user}/keys/{key_id}")
    return ApiKeyOut(id=key_id, user=user, label=label, created_at=created, token=token)


@router.delete(
    "/users/{user}/keys/{key_id}",
    response_model=RevokedOut,
    summary="Revoke an API key",
    responses={
        404: {"model": ErrorBody, "description": "no such user or key"},
        409: {"model": ErrorBody, "description": "the user changed meanwhile; retry"},
    },
)
async def revoke_key(ctx: Context, principal: AnyUser, user: UserName, key_id: KeyId) -> RevokedOut:
    _may_manage(principal, user)
    doc, revision = await _user_document(ctx, user)
    keys = [k for k in doc.get("api_keys") or () if isinstance(k, dict)]
    kept = [k for k in keys if k.get("id") != key_id]
    if len(kept) == len(keys):
        raise ApiError(
            404,
            "api_key.not_found",
            f"user {user} has no key {key_id}",
            {"user": user, "key_id": key_id},
        )
    doc["api_keys"] = kept
    entity = await ctx.services.store.config.put(USERS, user, doc, principal.actor, revision)
    await ctx.audit_action(principal, "api_key.revoke", f"users/{user}/keys/{key_id}")
    return RevokedOut(id=key_id, user=user, revision=entity.revision)
