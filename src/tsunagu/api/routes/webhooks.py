"""``/api/v1/webhooks``: outbound webhook status, dead letters, and redelivering them.

Supervisors see the status and the dead letters (the payloads are the events they could
stream anyway); only an admin redelivers, and every redelivery is audited (on the call's
timeline too when the event was about a call). Secrets are never part of any answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from tsunagu.api.context import Admin, Context, Supervisor
from tsunagu.api.errors import ApiError
from tsunagu.api.schemas import ErrorBody
from tsunagu.api.services import resolve
from tsunagu.store import InvalidStateError
from tsunagu.store.dead_letters import DeadLetter

router = APIRouter(tags=["webhooks"])

LetterId = Annotated[str, Path(min_length=1, max_length=36, description="dead letter id")]


class WebhookStatusOut(BaseModel):
    name: str
    url: str  # without user info or query string
    events: list[str]
    delivered: int
    retrying: int
    dead: int
    failed_attempts: int
    dropped: int
    last_status: int | None = None
    last_error: str | None = None
    last_delivered_at: datetime | None = None
    #: Dead letters of this webhook in the store not redelivered (also from earlier runs).
    dead_letters: int = 0


class DeadLetterOut(BaseModel):
    id: str
    webhook: str
    event_type: str
    event_id: str
    payload: dict[str, Any]
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    dead_at: datetime
    redelivered_at: datetime | None

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterOut:
        """Read off the store's record by attribute name (the fields are named alike)."""
        return cls.model_validate(letter, from_attributes=True)


class DeadLetterPageOut(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None


@router.get("/webhooks", response_model=list[WebhookStatusOut], summary="Outbound webhooks")
async def list_webhooks(ctx: Context, principal: Supervisor) -> list[WebhookStatusOut]:
    status: list[dict[str, Any]] = await resolve(ctx.services.webhooks())
    pending = await ctx.services.store.dead_letters.pending_counts()
    return [
        WebhookStatusOut.model_validate({**item, "dead_letters": pending.get(item["name"], 0)})
        for item in status
    ]


@router.get(
    "/webhooks/dead-letters",
    response_model=DeadLetterPageOut,
    summary="Deliveries that gave up (newest first; cursor pagination)",
)
async def list_dead_letters(
    *,
    ctx: Context,
    principal: Supervisor,
    webhook: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    pending: Annotated[
        bool | None, Query(description="true: not redelivered yet; false: redelivered")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> DeadLetterPageOut:
    page = await ctx.services.store.dead_letters.list(
        limit=limit, cursor=cursor, webhook=webhook, pending=pending
    )
    return DeadLetterPageOut(
        items=[DeadLetterOut.of(x) for x in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/webhooks/dead-letters/{letter_id}/redeliver",
    status_code=202,
    response_model=DeadLetterOut,
    summary="Send a dead letter again (admin; audited)",
    responses={
        404: {"model": ErrorBody, "description": "no such dead letter"},
        409: {"model": ErrorBody, "description": "already redelivered, or webhook removed"},
    },
)
async def redeliver(ctx: Context, principal: Admin, letter_id: LetterId) -> DeadLetterOut:
    letter = await ctx.services.store.dead_letters.get(letter_id)
    if letter is None:
        raise ApiError(
            404,
            "webhook.dead_letter_not_found",
            f"dead letter {letter_id} does not exist",
            {"id": letter_id},
        )
    try:
        await resolve(ctx.services.redeliver(letter_id))
    except InvalidStateError as exc:
        raise ApiError(409, "webhook.already_redelivered", exc.message, {"id": letter_id}) from None
    except LookupError:
        raise ApiError(
            409,
            "webhook.unknown",
            f"webhook {letter.webhook!r} is no longer configured; add it to events.webhooks "
            "(same name) to redeliver its dead letters",
            {"id": letter_id, "webhook": letter.webhook},
        ) from None
    data = letter.payload.get("data")
    interaction = data.get("interaction_id") if isinstance(data, dict) else None
    await ctx.audit_action(
        principal,
        "webhook.redeliver",
        f"webhooks/dead-letters/{letter_id}",
        interaction_id=interaction if isinstance(interaction, str) else None,
        webhook=letter.webhook,
        event_type=letter.event_type,
        event_id=letter.event_id,
    )
    marked = await ctx.services.store.dead_letters.get(letter_id)
    return DeadLetterOut.of(marked or letter)
