"""``/api/v1/callbacks``: the callback tasks voicemails left, and cancelling one.

Supervisors and admins only: a task carries a customer's number and a pointer to their
message. Listing reads the store (so it shows tasks of earlier runs and unassigned ones,
which no queue dials); cancelling goes through the call layer when one runs, which also
takes the task out of the ACD, and is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from tsunagu.api.context import Context, Supervisor
from tsunagu.api.errors import ApiError
from tsunagu.api.schemas import ErrorBody
from tsunagu.api.services import resolve
from tsunagu.store.callback_tasks import CallbackTask

router = APIRouter(tags=["callbacks"])

TaskId = Annotated[str, Path(min_length=1, max_length=36, description="callback task id")]
TaskState = Literal["pending", "dialling", "done", "failed", "cancelled"]


class CallbackTaskOut(BaseModel):
    id: str
    #: The interaction in which the message was left.
    voicemail_interaction_id: str
    #: The customer's number, dialled back through the trunk.
    caller: str
    #: ``null``: unassigned (the caller never queued and the block named no queue).
    queue: str | None
    state: TaskState
    #: Calls made to the customer so far.
    attempts: int
    #: Not offered to an agent before this (the retry delay).
    not_before: datetime | None
    created_at: datetime
    updated_at: datetime
    #: The interaction of the latest attempt (direction outbound).
    last_interaction_id: str | None
    last_agent: str | None
    last_error: str | None

    @classmethod
    def of(cls, task: CallbackTask) -> CallbackTaskOut:
        """Read off the store's record by attribute name (the fields are named alike)."""
        return cls.model_validate(task, from_attributes=True)


class CallbackTaskPageOut(BaseModel):
    items: list[CallbackTaskOut]
    next_cursor: str | None


@router.get(
    "/callbacks",
    response_model=CallbackTaskPageOut,
    summary="Voicemail callback tasks (newest first; cursor pagination)",
)
async def list_callbacks(
    *,
    ctx: Context,
    principal: Supervisor,
    state: TaskState | None = None,
    queue: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    unassigned: Annotated[bool, Query(description="only tasks with no queue")] = False,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> CallbackTaskPageOut:
    page = await ctx.services.store.callback_tasks.list(
        limit=limit, cursor=cursor, state=state, queue=queue, unassigned=unassigned
    )
    return CallbackTaskPageOut(
        items=[CallbackTaskOut.of(x) for x in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/callbacks/{task_id}",
    response_model=CallbackTaskOut,
    summary="One voicemail callback task",
    responses={404: {"model": ErrorBody, "description": "no such task"}},
)
async def get_callback(ctx: Context, principal: Supervisor, task_id: TaskId) -> CallbackTaskOut:
    task = await ctx.services.store.callback_tasks.get(task_id)
    if task is None:
        raise ApiError(
            404, "callback.not_found", f"callback task {task_id} does not exist", {"id": task_id}
        )
    return CallbackTaskOut.of(task)


@router.delete(
    "/callbacks/{task_id}",
    response_model=CallbackTaskOut,
    summary="Cancel a pending callback task (supervisor; audited)",
    responses={
        404: {"model": ErrorBody, "description": "no such task"},
        409: {"model": ErrorBody, "description": "being dialled, or already over"},
    },
)
async def cancel_callback(ctx: Context, principal: Supervisor, task_id: TaskId) -> CallbackTaskOut:
    by = principal.name
    cancel = ctx.services.cancel_callback
    if cancel is not None:
        task = await resolve(cancel(task_id, by))
    else:  # no call layer (tests, tools): the store alone
        task = await ctx.services.store.callback_tasks.move(
            task_id, expected=["pending"], state="cancelled", last_error=f"cancelled by {by}"
        )
    await ctx.audit_action(
        principal,
        "callback.cancel",
        f"callbacks/{task_id}",
        interaction_id=task.voicemail_interaction_id,
        queue=task.queue,
    )
    return CallbackTaskOut.of(task)
