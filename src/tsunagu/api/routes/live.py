"""``/api/v1/agents`` and ``/api/v1/calls``: what is happening now, and acting on it.

These go to the call layer through the callables of :class:`~tsunagu.api.services.ApiServices`.
Agents may see and change only their own state and see only their own calls; supervisors
see everything, change any agent's state, and hang up or transfer calls. Every change is
audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from tsunagu.api.auth import Principal
from tsunagu.api.context import AnyUser, Context, Supervisor
from tsunagu.api.errors import ApiError
from tsunagu.api.schemas import (
    AgentOut,
    AgentStateIn,
    CallActionOut,
    CallOut,
    ErrorBody,
    TransferIn,
)
from tsunagu.api.services import resolve
from tsunagu.api.users import Role

router = APIRouter(tags=["live"])

AgentId = Annotated[str, Path(min_length=1, max_length=64, description="ACD agent id")]
InteractionId = Annotated[str, Path(min_length=1, max_length=64, description="interaction id")]


def _own_agent(principal: Principal, agent_id: str) -> None:
    if principal.role == Role.AGENT and principal.agent != agent_id:
        raise ApiError(
            403,
            "auth.forbidden",
            "agents may change only their own state",
            {"agent": principal.agent},
        )


def _call_not_found(interaction_id: str) -> ApiError:
    return ApiError(
        404,
        "call.not_found",
        f"no call in progress for interaction {interaction_id}",
        {"interaction_id": interaction_id},
    )


@router.get("/agents", response_model=list[AgentOut], summary="Agents and their states")
async def list_agents(ctx: Context, principal: AnyUser) -> list[AgentOut]:
    agents: list[dict[str, Any]] = await resolve(ctx.services.agents())
    shown = [AgentOut.model_validate(a) for a in agents]
    if principal.role == Role.AGENT:
        shown = [a for a in shown if a.id == principal.agent]
    return shown


@router.put(
    "/agents/{agent_id}/state",
    response_model=AgentOut,
    summary="Set an agent's state (available, away, offline)",
    responses={
        404: {"model": ErrorBody, "description": "unknown agent"},
        409: {"model": ErrorBody, "description": "not allowed now (e.g. on a call)"},
    },
)
async def set_agent_state(
    ctx: Context, principal: AnyUser, agent_id: AgentId, body: AgentStateIn
) -> AgentOut:
    _own_agent(principal, agent_id)
    try:
        await resolve(ctx.services.set_agent_state(agent_id, body.state, body.reason))
    except KeyError:
        raise ApiError(
            404, "agent.not_found", f"no agent {agent_id}", {"agent_id": agent_id}
        ) from None
    except ValueError as exc:
        raise ApiError(
            409, "agent.state_refused", str(exc) or "state change refused", {"agent_id": agent_id}
        ) from None
    await ctx.audit_action(
        principal, "agent.state", f"agents/{agent_id}", state=body.state, reason=body.reason
    )
    for agent in await resolve(ctx.services.agents()):
        if agent.get("id") == agent_id:
            return AgentOut.model_validate(agent)
    return AgentOut(id=agent_id, state=body.state, reason=body.reason)


@router.get("/calls", response_model=list[CallOut], summary="Calls in progress")
async def list_calls(ctx: Context, principal: AnyUser) -> list[CallOut]:
    calls: list[dict[str, Any]] = await resolve(ctx.services.calls())
    shown = [CallOut.model_validate(c) for c in calls]
    if principal.role == Role.AGENT:
        shown = [c for c in shown if c.agent is not None and c.agent == principal.agent]
    return shown


@router.post(
    "/calls/{interaction_id}/hangup",
    response_model=CallActionOut,
    summary="Hang up a call in progress",
    responses={404: {"model": ErrorBody, "description": "no such call in progress"}},
)
async def hangup_call(
    ctx: Context, principal: Supervisor, interaction_id: InteractionId
) -> CallActionOut:
    if not await resolve(ctx.services.hangup(interaction_id)):
        raise _call_not_found(interaction_id)
    await ctx.audit_action(
        principal, "call.hangup", f"calls/{interaction_id}", interaction_id=interaction_id
    )
    return CallActionOut(interaction_id=interaction_id, action="hangup")


@router.post(
    "/calls/{interaction_id}/transfer",
    response_model=CallActionOut,
    summary="Transfer a call in progress",
    responses={
        404: {"model": ErrorBody, "description": "no such call in progress"},
        409: {"model": ErrorBody, "description": "the target was refused"},
    },
)
async def transfer_call(
    ctx: Context, principal: Supervisor, interaction_id: InteractionId, body: TransferIn
) -> CallActionOut:
    try:
        done = await resolve(ctx.services.transfer(interaction_id, body.target))
    except ValueError as exc:
        raise ApiError(
            409,
            "call.transfer_refused",
            str(exc) or "transfer refused",
            {"interaction_id": interaction_id, "target": body.target},
        ) from None
    if not done:
        raise _call_not_found(interaction_id)
    await ctx.audit_action(
        principal,
        "call.transfer",
        f"calls/{interaction_id}",
        interaction_id=interaction_id,
        transfer_to=body.target,
    )
    return CallActionOut(interaction_id=interaction_id, action="transfer", target=body.target)


class OverflowIn(BaseModel):
    """``active: true`` brings the group in now; ``false`` releases it."""

    model_config = ConfigDict(extra="forbid")
    active: bool


class OverflowOut(BaseModel):
    queue: str
    group: str
    active: bool


@router.put(
    "/queues/{queue_id}/overflow/{group_id}",
    response_model=OverflowOut,
    summary="Activate or release an overflow group by hand",
    responses={404: {"model": ErrorBody, "description": "unknown queue or group"}},
)
async def set_overflow(
    ctx: Context,
    principal: Supervisor,
    queue_id: Annotated[str, Path(max_length=64)],
    group_id: Annotated[str, Path(max_length=64)],
    body: OverflowIn,
) -> OverflowOut:
    try:
        await resolve(ctx.services.set_overflow(queue_id, group_id, body.active, principal.actor))
    except (KeyError, ValueError):
        raise ApiError(
            404,
            "queue.overflow_not_found",
            f"no overflow group {group_id} on queue {queue_id}",
            {"queue": queue_id, "group": group_id},
        ) from None
    await ctx.audit_action(
        principal, "queue.overflow", f"queues/{queue_id}/overflow/{group_id}", active=body.active
    )
    return OverflowOut(queue=queue_id, group=group_id, active=body.active)
