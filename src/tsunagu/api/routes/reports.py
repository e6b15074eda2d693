"""``/api/v1/reports``: figures computed by :mod:`tsunagu.api.reports` over the history.

The interactions of the period are streamed page by page (oldest first) into a
:class:`~tsunagu.api.reports.ReportBuilder`, so memory stays bounded by the number of
groups however long the period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from tsunagu.api.context import AnyUser, Context, Supervisor
from tsunagu.api.errors import ApiError
from tsunagu.api.reports import GroupBy, GroupReport, ReportBuilder, ReportParams
from tsunagu.api.schemas import ErrorBody
from tsunagu.api.users import Role
from tsunagu.store import AgentTime, InteractionFilter

router = APIRouter(prefix="/reports", tags=["reports"])

PAGE = 1000
MAX_PERIOD = timedelta(days=366)


class GroupOut(BaseModel):
    key: str
    offered: int
    answered: int
    answered_within_threshold: int
    abandoned: int
    short_abandoned: int
    other: int
    service_level: float | None
    abandon_rate: float | None
    reach_rate: float | None
    asa_seconds: float | None
    aht_seconds: float | None
    talk_seconds: float

    @classmethod
    def of(cls, g: GroupReport) -> GroupOut:
        return cls(
            key=g.key,
            offered=g.offered,
            answered=g.answered,
            answered_within_threshold=g.answered_within_threshold,
            abandoned=g.abandoned,
            short_abandoned=g.short_abandoned,
            other=g.other,
            service_level=g.service_level,
            abandon_rate=g.abandon_rate,
            reach_rate=g.reach_rate,
            asa_seconds=g.asa_seconds,
            aht_seconds=g.aht_seconds,
            talk_seconds=g.talk_seconds,
        )


def _check_period(from_: datetime, to: datetime) -> None:
    if to <= from_ or to - from_ > MAX_PERIOD:
        raise ApiError(
            422,
            "report.invalid_period",
            f"the period must be non-empty and at most {MAX_PERIOD.days} days",
            {"from": from_.isoformat(), "to": to.isoformat()},
        )


class SummaryOut(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    group_by: str
    service_level_s: float
    short_abandon_s: float
    interval_minutes: int
    groups: list[GroupOut]
    total: GroupOut


@router.get(
    "/summary",
    response_model=SummaryOut,
    summary="Service level, ASA, AHT, abandon and reach rates per group",
    responses={422: {"model": ErrorBody, "description": "invalid period or parameters"}},
)
async def summary(
    *,
    ctx: Context,
    principal: Supervisor,
    from_: Annotated[AwareDatetime, Query(alias="from", description="period start (inclusive)")],
    to: Annotated[AwareDatetime, Query(description="period end (exclusive)")],
    group_by: GroupBy = "none",
    queue: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    service_level_s: Annotated[float | None, Query(ge=0, le=3600)] = None,
    short_abandon_s: Annotated[float | None, Query(ge=0, le=3600)] = None,
    interval_minutes: Literal[5, 10, 15, 30, 60] = 15,
) -> SummaryOut:
    _check_period(from_, to)
    defaults = ctx.services.reports
    params = ReportParams(
        service_level_s=defaults.service_level_s if service_level_s is None else service_level_s,
        short_abandon_s=defaults.short_abandon_s if short_abandon_s is None else short_abandon_s,
        interval_minutes=interval_minutes,
    )
    builder = ReportBuilder(group_by, params)
    history = ctx.services.store.history
    filters = InteractionFilter(started_from=from_, started_to=to, queue=queue)
    cursor: str | None = None
    while True:
        page = await history.search(filters, limit=PAGE, cursor=cursor, order="asc")
        builder.add_all(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    report = builder.build()
    return SummaryOut(
        from_=from_,
        to=to,
        group_by=group_by,
        service_level_s=params.service_level_s,
        short_abandon_s=params.short_abandon_s,
        interval_minutes=params.interval_minutes,
        groups=[GroupOut.of(g) for g in report.groups],
        total=GroupOut.of(report.total),
    )


class AgentStateTimeOut(BaseModel):
    agent: str
    #: Seconds per presence state (offline, available, reserved, on_call, wrap_up, away).
    seconds: dict[str, float]
    #: ``seconds`` divided by the length of the period.
    share: dict[str, float]
    intervals: dict[str, int]
    #: Intervals closed at a start-up after a crash: their end is the restart, not a move.
    interrupted_intervals: int

    @classmethod
    def of(cls, t: AgentTime, period_s: float) -> AgentStateTimeOut:
        return cls(
            agent=t.agent,
            seconds=t.seconds,
            share={k: round(v / period_s, 4) for k, v in t.seconds.items()},
            intervals=t.intervals,
            interrupted_intervals=t.interrupted,
        )


class AgentStatesOut(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    agents: list[AgentStateTimeOut]


@router.get(
    "/agent-states",
    response_model=AgentStatesOut,
    summary="Time per agent state (available, on a call, wrap-up, away …) in a period",
    responses={
        403: {"model": ErrorBody, "description": "an agent asking for another agent"},
        422: {"model": ErrorBody, "description": "invalid period"},
    },
)
async def agent_states(
    *,
    ctx: Context,
    principal: AnyUser,
    from_: Annotated[AwareDatetime, Query(alias="from", description="period start (inclusive)")],
    to: Annotated[AwareDatetime, Query(description="period end (exclusive)")],
    agent: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> AgentStatesOut:
    """Supervisors and admins see every agent; an agent sees only their own figures (the
    agent parameter defaults to them). Time in a state still going on counts until now."""
    _check_period(from_, to)
    if not principal.role.at_least(Role.SUPERVISOR):
        if principal.agent is None or agent not in (None, principal.agent):
            raise ApiError(
                403,
                "auth.forbidden",
                "an agent may read only their own state times",
                {"agent": agent},
            )
        agent = principal.agent
    rows = await ctx.services.store.agent_states.time_per_state(
        from_, to, now=ctx.services.clock(), agent=agent
    )
    period_s = (to - from_).total_seconds()
    return AgentStatesOut(
        from_=from_, to=to, agents=[AgentStateTimeOut.of(r, period_s) for r in rows]
    )
