"""``/api/v1/interactions``: search, CSV export, one record, its recording.

An agent sees only the interactions they were offered, rung or answered by (the search
is narrowed to them; any other record is "not found", so its existence is not revealed).
Reading one record, downloading a recording and exporting CSV are audited (module
:mod:`tsunagu.api.audit`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import AwareDatetime, StringConstraints

from tsunagu.api.auth import Principal
from tsunagu.api.context import AnyUser, Context, Supervisor
from tsunagu.api.errors import ApiError
from tsunagu.api.reports import talk_time
from tsunagu.api.schemas import ErrorBody, InteractionDetailOut, InteractionOut, InteractionPageOut
from tsunagu.api.services import resolve
from tsunagu.api.users import Role
from tsunagu.store import (
    AgentStage,
    Direction,
    Disposition,
    History,
    Interaction,
    InteractionFilter,
    InteractionRecord,
    Status,
)

router = APIRouter(tags=["interactions"])

InteractionId = Annotated[str, Path(min_length=1, max_length=64, description="interaction id")]
Order = Literal["asc", "desc"]
DispositionName = Literal[
    "answered",
    "abandoned",
    "short_abandoned",
    "after_hours",
    "voicemail",
    "callback",
    "failed",
    "interrupted",
]
StatusName = Literal["active", "ended", "interrupted"]
_ATTRIBUTE_PATTERN = r"^([A-Za-z0-9_.-]{1,64})=([^\r\n]{0,200})$"
_ATTRIBUTE = re.compile(_ATTRIBUTE_PATTERN)
AttributeQuery = Annotated[str, StringConstraints(pattern=_ATTRIBUTE_PATTERN)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such interaction"}
}
CSV_PAGE = 1000
CSV_COLUMNS = (
    "id",
    "direction",
    "caller",
    "dialled",
    "started_at",
    "queued_at",
    "answered_at",
    "ended_at",
    "queue",
    "wait_seconds",
    "talk_seconds",
    "status",
    "disposition",
    "agents_offered",
    "agents_answered",
    "transfers",
    "recordings",
    "attributes",
)


def interaction_filter(
    *,
    from_: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="started at or after (ISO 8601 with zone)"),
    ] = None,
    to: Annotated[AwareDatetime | None, Query(description="started before")] = None,
    caller: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    dialled: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    number: Annotated[
        str | None, Query(min_length=1, max_length=128, description="caller or dialled")
    ] = None,
    agent: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    agent_stage: Annotated[Literal["offered", "rung", "answered"] | None, Query()] = None,
    queue: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    disposition: Annotated[list[DispositionName] | None, Query(description="repeatable")] = None,
    status: Annotated[list[StatusName] | None, Query(description="repeatable")] = None,
    direction: Annotated[Literal["inbound", "outbound", "internal"] | None, Query()] = None,
    attribute: Annotated[
        list[AttributeQuery] | None,
        Query(description="key=value, repeatable; flow attributes equal to the value"),
    ] = None,
) -> InteractionFilter:
    attributes: dict[str, str] = {}
    for i, item in enumerate(attribute or ()):
        match = _ATTRIBUTE.match(item)
        if match is None:
            raise ApiError(
                422,
                "request.invalid",
                "attribute must be key=value (key: letters, digits, _ . -)",
                {"fields": [{"field": f"query.attribute[{i}]", "problem": "not key=value"}]},
            )
        attributes[match.group(1)] = match.group(2)
    return InteractionFilter(
        started_from=from_,
        started_to=to,
        caller=caller,
        dialled=dialled,
        number=number,
        agent=agent,
        agent_stage=None if agent_stage is None else AgentStage(agent_stage),
        queue=queue,
        dispositions=tuple(Disposition(d) for d in disposition or ()),
        statuses=tuple(Status(s) for s in status or ()),
        direction=None if direction is None else Direction(direction),
        attributes=attributes,
    )


Filter = Annotated[InteractionFilter, Depends(interaction_filter)]


def _scoped(principal: Principal, f: InteractionFilter) -> InteractionFilter:
    """An agent's search is narrowed to their own interactions."""
    if principal.role != Role.AGENT:
        return f
    if f.agent is not None and f.agent != principal.agent:
        raise ApiError(
            403,
            "auth.forbidden",
            "agents may search only their own interactions",
            {"agent": principal.agent},
        )
    return InteractionFilter(**{**_fields(f), "agent": principal.agent})


def _fields(f: InteractionFilter) -> dict[str, Any]:
    return {name: getattr(f, name) for name in InteractionFilter.__dataclass_fields__}


def _involves(principal: Principal, i: Interaction) -> bool:
    if principal.role != Role.AGENT:
        return True
    return principal.agent in (*i.agents_offered, *i.agents_rung, *i.agents_answered)


async def _record(history: History, principal: Principal, interaction_id: str) -> InteractionRecord:
    record = await history.get(interaction_id)
    if record is None or not _involves(principal, record.interaction):
        raise ApiError(
            404,
            "store.not_found",
            f"interaction {interaction_id} does not exist",
            {"interaction_id": interaction_id},
        )
    return record


@router.get(
    "/interactions",
    response_model=InteractionPageOut,
    summary="Search interactions (newest first; cursor pagination)",
)
async def search_interactions(
    *,
    ctx: Context,
    principal: AnyUser,
    filters: Filter,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    order: Order = "desc",
) -> InteractionPageOut:
    page = await ctx.services.store.history.search(
        _scoped(principal, filters), limit=limit, cursor=cursor, order=order
    )
    return InteractionPageOut(
        items=[InteractionOut.of(i) for i in page.items], next_cursor=page.next_cursor
    )


def _cell(value: str) -> str:
    """Defuse spreadsheet formulas (CSV injection): a caller ID is chosen by the caller.
    Plain numbers such as ``+81312345678`` are left as they are."""
    if value[:1] in ("=", "@", "\t", "\r") or (
        value[:1] in ("+", "-") and not re.fullmatch(r"[+-][0-9]+", value)
    ):
        return "'" + value
    return value


def _time(value: Any) -> str:
    return "" if value is None else value.isoformat()


def csv_row(i: Interaction) -> list[str]:
    talk = talk_time(i)
    return [
        i.id,
        str(i.direction),
        _cell(i.caller),
        _cell(i.dialled),
        _time(i.started_at),
        _time(i.queued_at),
        _time(i.answered_at),
        _time(i.ended_at),
        _cell(i.queue or ""),
        "" if i.wait_seconds is None else f"{i.wait_seconds:.3f}",
        "" if talk is None else f"{talk:.3f}",
        str(i.status),
        "" if i.disposition is None else str(i.disposition),
        _cell(";".join(i.agents_offered)),
        _cell(";".join(i.agents_answered)),
        _cell(json.dumps(list(i.transfers), ensure_ascii=False) if i.transfers else ""),
        str(len(i.recordings)),
        _cell(json.dumps(i.attributes, ensure_ascii=False, sort_keys=True) if i.attributes else ""),
    ]


def _csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)  # RFC 4180 §2: CRLF
    return out.getvalue()


@router.get(
    "/interactions.csv",
    summary="Export matching interactions as CSV (audited)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def export_interactions(
    *,
    ctx: Context,
    principal: AnyUser,
    filters: Filter,
    max_rows: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000,
    order: Order = "asc",
    bom: Annotated[bool, Query(description="start with a UTF-8 BOM (for Excel)")] = False,
) -> StreamingResponse:
    scoped = _scoped(principal, filters)
    history = ctx.services.store.history
    await ctx.audit_action(
        principal,
        "interactions.export",
        "interactions",
        filters={k: str(v) for k, v in _fields(scoped).items() if v not in (None, (), {})},
        max_rows=max_rows,
    )
    first = await history.search(scoped, limit=min(CSV_PAGE, max_rows), order=order)

    async def body() -> AsyncIterator[str]:
        yield ("\ufeff" if bom else "") + _csv_text([list(CSV_COLUMNS)])
        page, sent = first, 0
        while True:
            rows = [csv_row(i) for i in page.items[: max_rows - sent]]
            sent += len(rows)
            yield _csv_text(rows)
            if page.next_cursor is None or sent >= max_rows:
                return
            page = await history.search(
                scoped, limit=min(CSV_PAGE, max_rows - sent), cursor=page.next_cursor, order=order
            )

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="interactions.csv"'},
    )


@router.get(
    "/interactions/{interaction_id}",
    response_model=InteractionDetailOut,
    summary="One interaction with its legs and timeline (audited)",
    responses=_NOT_FOUND,
)
async def get_interaction(
    ctx: Context, principal: AnyUser, interaction_id: InteractionId
) -> InteractionDetailOut:
    record = await _record(ctx.services.store.history, principal, interaction_id)
    await ctx.audit_action(
        principal,
        "interaction.read",
        f"interactions/{interaction_id}",
        interaction_id=interaction_id,
    )
    return InteractionDetailOut.of_record(record)


@router.get(
    "/interactions/{interaction_id}/recording",
    summary="The conversation's recording, WAV (audited)",
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}},
        404: {"model": ErrorBody, "description": "no such interaction, or no recording"},
    },
)
async def download_recording(
    ctx: Context, principal: Supervisor, interaction_id: InteractionId
) -> FileResponse:
    await _record(ctx.services.store.history, principal, interaction_id)
    path: FilePath | None = await resolve(ctx.services.recording_path(interaction_id))
    if path is None or not await asyncio.to_thread(path.is_file):
        raise ApiError(
            404,
            "recording.not_found",
            f"interaction {interaction_id} has no recording",
            {"interaction_id": interaction_id},
        )
    await ctx.audit_action(
        principal,
        "recording.download",
        f"interactions/{interaction_id}/recording",
        interaction_id=interaction_id,
        file=path.name,
    )
    return FileResponse(path, media_type="audio/wav", filename=f"{interaction_id}.wav")
