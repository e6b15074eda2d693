"""Report maths on constructed interactions, and the report route over the real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.api.conftest import AGENT, SUPERVISOR, Api
from tests.api.test_interactions import call
from tsunagu.api.reports import (
    GroupReport,
    Outcome,
    ReportParams,
    interval_start,
    outcome,
    summarize,
)
from tsunagu.store import Direction, Disposition, Interaction, Status

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


def interaction(
    name: str,
    *,
    start: float = 0.0,
    queue: str | None = "sales",
    wait: float | None = None,
    talk: float | None = None,
    disposition: str | None = "answered",
    status: str = "ended",
    direction: str = "inbound",
    caller: str = "0312345678",
    dialled: str = "0501234567",
    offered: tuple[str, ...] = (),
    answered: tuple[str, ...] = (),
) -> Interaction:
    started = T0 + timedelta(seconds=start)
    answered_at = None if talk is None else started + timedelta(seconds=wait or 0)
    ended = None
    if status != "active":
        ended = (
            (answered_at + timedelta(seconds=talk or 0))
            if answered_at
            else started + timedelta(seconds=wait or 0)
        )
    return Interaction(
        id=name,
        node="n",
        direction=Direction(direction),
        caller=caller,
        dialled=dialled,
        started_at=started,
        queued_at=started if queue else None,
        answered_at=answered_at,
        ended_at=ended,
        queue=queue,
        wait_seconds=wait,
        status=Status(status),
        disposition=None if disposition is None else Disposition(disposition),
        flow_path=(),
        transfers=(),
        recordings=(),
        attributes={},
        agents_offered=offered,
        agents_rung=(),
        agents_answered=answered,
    )


SCENARIO = [
    interaction("A", start=0, wait=10, talk=100, offered=("1001",), answered=("1001",)),
    interaction("B", start=899, wait=30, talk=200, offered=("1001", "1002"), answered=("1002",)),
    interaction("C", start=900, wait=40, disposition="abandoned", offered=("1002",)),
    interaction("D", start=901, wait=3, disposition="abandoned"),
    # The call layer said short, but with a 5 s threshold 8 s is a real abandon.
    interaction("E", start=902, wait=8, disposition="short_abandoned"),
    interaction("F", start=903, wait=60, disposition="voicemail"),
    interaction("G", start=904, status="active", disposition=None),
    interaction(
        "H",
        start=1800,
        queue="support",
        wait=5,
        talk=50,
        dialled="0120000000",
        offered=("1001",),
        answered=("1001",),
    ),
]


def group(report_groups: tuple[GroupReport, ...], key: str) -> GroupReport:
    return next(g for g in report_groups if g.key == key)


def test_per_queue() -> None:
    report = summarize(SCENARIO, "queue")
    assert [g.key for g in report.groups] == ["sales", "support"]
    sales = group(report.groups, "sales")
    assert (sales.offered, sales.answered, sales.abandoned, sales.short_abandoned, sales.other) == (
        6,
        2,
        2,
        1,
        1,
    )
    assert sales.answered_within_threshold == 1
    assert sales.service_level == pytest.approx(1 / 5)
    assert sales.abandon_rate == pytest.approx(2 / 5)
    assert sales.reach_rate == pytest.approx(2 / 5)
    assert sales.asa_seconds == pytest.approx(20.0)
    assert sales.aht_seconds == pytest.approx(150.0)
    assert sales.talk_seconds == pytest.approx(300.0)
    support = group(report.groups, "support")
    assert (support.offered, support.service_level, support.asa_seconds) == (1, 1.0, 5.0)


def test_total_counts_finished_interactions_only() -> None:
    total = summarize(SCENARIO, "none").total
    assert total.offered == 7  # G is still active
    assert total.answered == 3
    assert total.service_level == pytest.approx(2 / 6)
    assert total.abandon_rate == pytest.approx(2 / 6)
    assert total.reach_rate == pytest.approx(3 / 6)
    assert total.asa_seconds == pytest.approx(15.0)
    assert total.aht_seconds == pytest.approx(350 / 3)
    assert summarize(SCENARIO, "none").groups == (total,)


def test_thresholds_are_parameters() -> None:
    report = summarize(SCENARIO, "queue", ReportParams(service_level_s=30, short_abandon_s=10))
    sales = group(report.groups, "sales")
    assert sales.short_abandoned == 2  # D and now E
    assert sales.abandoned == 1
    assert sales.abandon_rate == pytest.approx(1 / 4)
    assert sales.service_level == pytest.approx(2 / 4)  # A (10 s) and B (30 s)


def test_per_agent() -> None:
    report = summarize(SCENARIO, "agent")
    assert [g.key for g in report.groups] == ["1001", "1002"]
    first = group(report.groups, "1001")
    # A and H answered by 1001; B offered to 1001 but answered by 1002.
    assert (first.offered, first.answered, first.other) == (3, 2, 1)
    assert first.reach_rate == pytest.approx(2 / 3)
    assert first.asa_seconds == pytest.approx(7.5)
    assert first.aht_seconds == pytest.approx(75.0)
    second = group(report.groups, "1002")
    assert (second.offered, second.answered, second.abandoned) == (2, 1, 1)
    assert second.abandon_rate == pytest.approx(0.5)
    assert report.total.offered == 7


def test_per_number_and_interval() -> None:
    outbound = interaction(
        "O",
        start=10,
        queue=None,
        wait=2,
        talk=20,
        direction="outbound",
        caller="0501234567",
        dialled="0398765432",
    )
    report = summarize([*SCENARIO, outbound], "number")
    assert [(g.key, g.offered) for g in report.groups] == [("0120000000", 1), ("0501234567", 7)]
    report = summarize(SCENARIO, "interval")
    assert [(g.key, g.offered) for g in report.groups] == [
        ("2025-04-01T09:00:00+00:00", 2),  # A and B (09:14:59)
        ("2025-04-01T09:15:00+00:00", 4),  # C, D, E, F (G is active)
        ("2025-04-01T09:30:00+00:00", 1),
    ]
    hourly = summarize(SCENARIO, "interval", ReportParams(interval_minutes=60))
    assert [(g.key, g.offered) for g in hourly.groups] == [("2025-04-01T09:00:00+00:00", 7)]


def test_empty_groups_have_no_rates() -> None:
    report = summarize([], "queue")
    assert report.groups == ()
    assert report.total.offered == 0
    assert report.total.service_level is None
    assert report.total.asa_seconds is None
    only_short = summarize([interaction("S", wait=1, disposition="abandoned")], "none").total
    assert only_short.short_abandoned == 1
    assert only_short.abandon_rate is None  # nothing left once short abandons are excluded


def test_outcomes_and_intervals() -> None:
    params = ReportParams()
    assert outcome(interaction("x", disposition="after_hours"), params) == Outcome.OTHER
    assert outcome(interaction("x", disposition="interrupted"), params) == Outcome.OTHER
    assert outcome(interaction("x", status="active", disposition=None), params) is None
    jst = timezone(timedelta(hours=9))
    assert interval_start(datetime(2025, 4, 1, 18, 29, 59, tzinfo=jst), 15) == datetime(
        2025, 4, 1, 9, 15, tzinfo=UTC
    )
    assert interval_start(datetime(2025, 4, 1, 0, 0, tzinfo=UTC), 15) == datetime(
        2025, 4, 1, 0, 0, tzinfo=UTC
    )


async def test_summary_route(api: Api) -> None:
    h = api.store.history
    await call(h, start=0, wait=10, talk=100, agent="1001")
    await call(h, start=60, wait=30, talk=200, agent="1002")
    await call(h, start=120, wait=40, talk=None, disposition="abandoned")
    await call(h, start=180, wait=2, talk=None, disposition="abandoned", queue="support")
    await call(h, start=7200, wait=1, talk=10, agent="1001")  # outside the period
    base = "/api/v1/reports/summary?from=2025-04-01T09:00:00Z&to=2025-04-01T10:00:00Z"
    r = await api.client.get(f"{base}&group_by=queue", headers=SUPERVISOR)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["from"] == "2025-04-01T09:00:00Z"
    assert (body["service_level_s"], body["short_abandon_s"]) == (20.0, 5.0)
    sales = next(g for g in body["groups"] if g["key"] == "sales")
    assert (sales["offered"], sales["answered"], sales["abandoned"]) == (3, 2, 1)
    assert sales["service_level"] == pytest.approx(1 / 3)
    assert sales["asa_seconds"] == pytest.approx(20.0)
    assert sales["aht_seconds"] == pytest.approx(150.0)
    support = next(g for g in body["groups"] if g["key"] == "support")
    assert (support["offered"], support["short_abandoned"], support["abandon_rate"]) == (1, 1, None)
    assert body["total"]["offered"] == 4
    r = await api.client.get(
        f"{base}&group_by=agent&service_level_s=30&queue=sales", headers=SUPERVISOR
    )
    agents = {g["key"]: g for g in r.json()["groups"]}
    assert agents["1001"]["answered"] == 1
    assert agents["1002"]["service_level"] == 1.0
    r = await api.client.get(
        "/api/v1/reports/summary?from=2025-04-02T00:00:00Z&to=2025-04-01T00:00:00Z",
        headers=SUPERVISOR,
    )
    assert r.status_code == 422
    assert r.json()["error_id"] == "report.invalid_period"
    r = await api.client.get(f"{base}&interval_minutes=7", headers=SUPERVISOR)
    assert r.json()["error_id"] == "request.invalid"
    assert (await api.client.get(base, headers=AGENT)).status_code == 403


async def test_agent_states_route(api: Api) -> None:
    states = api.store.agent_states
    # The fake clock is 2025-04-01 09:00; agent 1001 is the agent-role user "taro".
    await states.record("1001", "available", None, T0)
    await states.record("1001", "on_call", None, T0 + timedelta(minutes=10))
    await states.record("1002", "away", "training", T0)
    api.clock.advance(30 * 60)
    window = "from=2025-04-01T09:00:00Z&to=2025-04-01T10:00:00Z"
    r = await api.client.get(f"/api/v1/reports/agent-states?{window}", headers=SUPERVISOR)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from"].startswith("2025-04-01T09:00")
    by_agent = {a["agent"]: a for a in body["agents"]}
    # 1001 is still on the call at "now" (09:30): counted up to now, not to the end.
    assert by_agent["1001"]["seconds"] == {"available": 600.0, "on_call": 1200.0}
    assert by_agent["1001"]["share"]["on_call"] == pytest.approx(1200 / 3600, abs=1e-4)
    assert by_agent["1002"]["seconds"] == {"away": 1800.0}
    # An agent sees only their own figures, and may not ask for someone else's.
    r = await api.client.get(f"/api/v1/reports/agent-states?{window}", headers=AGENT)
    assert r.status_code == 200
    assert [a["agent"] for a in r.json()["agents"]] == ["1001"]
    r = await api.client.get(f"/api/v1/reports/agent-states?{window}&agent=1002", headers=AGENT)
    assert r.status_code == 403
    r = await api.client.get(
        "/api/v1/reports/agent-states?from=2025-04-01T10:00:00Z&to=2025-04-01T09:00:00Z",
        headers=SUPERVISOR,
    )
    assert r.json()["error_id"] == "report.invalid_period"
