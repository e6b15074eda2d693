"""``/api/v1/interactions``: search, pagination, CSV, one record, recording download."""

from __future__ import annotations

import csv
import io
import json
import logging
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ADMIN, AGENT, SUPERVISOR, Api
from tsunagu.store import History

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


async def call(
    history: History,
    *,
    start: float,
    caller: str = "0312345678",
    dialled: str = "0501234567",
    queue: str | None = "sales",
    wait: float = 10.0,
    talk: float | None = 60.0,
    agent: str | None = "1001",
    disposition: str = "answered",
    attributes: dict[str, Any] | None = None,
) -> str:
    """One finished conversation started ``start`` seconds after T0."""
    begin = T0 + timedelta(seconds=start)
    record = await history.start_interaction(
        direction="inbound", caller=caller, dialled=dialled, started_at=begin, attributes=attributes
    )
    leg = await history.add_leg(record.id, role="caller", call_id=f"c-{start}@x", started_at=begin)
    end = begin + timedelta(seconds=wait + (talk or 0))
    if queue is not None:
        await history.update(record.id, queue=queue, queued_at=begin)
    if agent is not None:
        await history.add_agent(record.id, agent, "offered", at=begin + timedelta(seconds=1))
    if talk is not None and agent is not None:
        answered = begin + timedelta(seconds=wait)
        await history.add_agent(record.id, agent, "answered", at=answered)
        await history.update(record.id, answered_at=answered)
        await history.add_leg(record.id, role="agent", call_id=f"a-{start}@x", started_at=answered)
    await history.update_leg(leg.id, answered_at=begin, ended_at=end, end_reason="bye")
    await history.finish(record.id, disposition, ended_at=end)
    return record.id


@pytest.fixture
async def calls(api: Api) -> list[str]:
    h = api.store.history
    return [
        await call(h, start=0, attributes={"customer": "C-1"}),
        await call(h, start=60, caller="09011112222", agent="1002"),
        await call(h, start=120, queue="support", talk=None, disposition="abandoned"),
        await call(
            h,
            start=180,
            dialled="0120000000",
            queue=None,
            agent=None,
            talk=None,
            disposition="after_hours",
        ),
        await call(h, start=240, caller='=HYPERLINK("http://evil")', agent="1001"),
    ]


async def test_search_filters(api: Api, calls: list[str]) -> None:
    async def ids(query: str) -> list[str]:
        r = await api.client.get(f"/api/v1/interactions?{query}", headers=SUPERVISOR)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert await ids("") == calls[::-1]
    assert await ids("order=asc") == calls
    assert await ids("from=2025-04-01T09:01:00Z&to=2025-04-01T09:03:00Z") == [calls[2], calls[1]]
    # The same instant written in Japan time.
    assert await ids("from=2025-04-01T18:01:00%2B09:00&to=2025-04-01T18:02:00%2B09:00") == [
        calls[1]
    ]
    assert await ids("caller=09011112222") == [calls[1]]
    assert await ids("dialled=0120000000") == [calls[3]]
    assert await ids("number=0120000000") == [calls[3]]
    assert await ids("queue=support") == [calls[2]]
    assert await ids("agent=1002") == [calls[1]]
    assert await ids("agent=1001&agent_stage=answered") == [calls[4], calls[0]]
    assert await ids("disposition=abandoned&disposition=after_hours") == [calls[3], calls[2]]
    assert await ids("status=active") == []
    assert await ids("direction=outbound") == []
    assert await ids("attribute=customer=C-1") == [calls[0]]
    assert await ids("attribute=customer=C-2") == []


async def test_search_result_shape(api: Api, calls: list[str]) -> None:
    r = await api.client.get("/api/v1/interactions?order=asc&limit=1", headers=SUPERVISOR)
    item = r.json()["items"][0]
    assert item["id"] == calls[0]
    assert item["direction"] == "inbound"
    assert item["started_at"] == "2025-04-01T09:00:00Z"
    assert item["answered_at"] == "2025-04-01T09:00:10Z"
    assert item["wait_seconds"] == 10.0
    assert item["disposition"] == "answered"
    assert item["agents_offered"] == ["1001"]
    assert item["agents_answered"] == ["1001"]
    assert item["attributes"] == {"customer": "C-1"}


async def test_cursor_pagination_walks_everything_once(api: Api, calls: list[str]) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = (await api.client.get(f"/api/v1/interactions?{query}", headers=SUPERVISOR)).json()
        seen += [i["id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # A call arriving meanwhile (newer than everything) does not disturb the walk.
        if pages == 1:
            await call(api.store.history, start=999)
    assert seen == calls[::-1]
    assert pages == 3


async def test_bad_queries_have_stable_errors(api: Api) -> None:
    r = await api.client.get("/api/v1/interactions?cursor=garbage!", headers=SUPERVISOR)
    assert r.status_code == 400
    assert r.json()["error_id"] == "store.bad_request"
    r = await api.client.get("/api/v1/interactions?from=2025-04-01T09:00:00", headers=SUPERVISOR)
    assert r.status_code == 422
    assert r.json()["error_id"] == "request.invalid"
    assert r.json()["details"]["fields"][0]["field"] == "query.from"
    r = await api.client.get("/api/v1/interactions?disposition=lost", headers=SUPERVISOR)
    assert r.json()["details"]["fields"][0]["field"] == "query.disposition[0]"
    r = await api.client.get("/api/v1/interactions?attribute=nokey", headers=SUPERVISOR)
    assert r.status_code == 422
    assert r.json()["details"]["fields"][0]["field"] == "query.attribute[0]"
    r = await api.client.get("/api/v1/interactions?limit=1001", headers=SUPERVISOR)
    assert r.status_code == 422


async def test_agents_see_only_their_own(api: Api, calls: list[str]) -> None:
    r = await api.client.get("/api/v1/interactions", headers=AGENT)
    # Offered (calls[2], abandoned while it rang) counts as theirs too.
    assert [i["id"] for i in r.json()["items"]] == [calls[4], calls[2], calls[0]]
    r = await api.client.get("/api/v1/interactions?agent=1002", headers=AGENT)
    assert r.status_code == 403
    assert (await api.client.get(f"/api/v1/interactions/{calls[0]}", headers=AGENT)).is_success
    r = await api.client.get(f"/api/v1/interactions/{calls[1]}", headers=AGENT)
    assert r.status_code == 404  # exists, but not theirs: not revealed
    assert r.json()["error_id"] == "store.not_found"
    r = await api.client.get("/api/v1/interactions.csv", headers=AGENT)
    rows = list(csv.reader(io.StringIO(r.text)))
    assert [row[0] for row in rows[1:]] == [calls[0], calls[2], calls[4]]


async def test_detail_has_legs_and_timeline_and_is_audited(
    api: Api, calls: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tsunagu.audit")
    r = await api.client.get(f"/api/v1/interactions/{calls[0]}", headers=SUPERVISOR)
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == calls[0]
    assert [(leg["role"], leg["call_id"]) for leg in body["legs"]] == [
        ("caller", "c-0@x"),
        ("agent", "a-0@x"),
    ]
    types = [e["type"] for e in body["events"]]
    assert types[0] == "started"
    assert "agent_answered" in types
    assert types[-1] == "ended"
    # The read itself is now on the interaction's timeline.
    record = await api.store.history.get(calls[0])
    assert record is not None
    audit = [e for e in record.events if e.type == "audit"]
    assert len(audit) == 1
    assert audit[0].data["action"] == "interaction.read"
    assert audit[0].data["actor"] == "key:boss/k1"
    assert audit[0].data["client"] == "127.0.0.1"
    assert audit[0].at == api.clock.now
    assert any(
        getattr(rec, "audit", {}).get("action") == "interaction.read" for rec in caplog.records
    )
    r = await api.client.get("/api/v1/interactions/01NOPE", headers=SUPERVISOR)
    assert r.status_code == 404
    assert r.json()["error_id"] == "store.not_found"


async def test_csv_export(api: Api, calls: list[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tsunagu.audit")
    r = await api.client.get("/api/v1/interactions.csv?queue=sales", headers=SUPERVISOR)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert "\r\n" in r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["id"] for row in rows] == [calls[0], calls[1], calls[4]]
    first = rows[0]
    assert first["caller"] == "0312345678"
    assert first["wait_seconds"] == "10.000"
    assert first["talk_seconds"] == "60.000"
    assert first["agents_answered"] == "1001"
    assert json.loads(first["attributes"]) == {"customer": "C-1"}
    # A caller-chosen formula is defused; plain numbers are not touched.
    assert rows[2]["caller"].startswith("'=HYPERLINK")
    entries = [getattr(rec, "audit", None) for rec in caplog.records]
    exports = [e for e in entries if e and e["action"] == "interactions.export"]
    assert len(exports) == 1
    assert exports[0]["details"]["filters"] == {"queue": "sales"}
    # Capped, newest first, with a BOM for Excel.
    r = await api.client.get(
        "/api/v1/interactions.csv?max_rows=2&order=desc&bom=true", headers=SUPERVISOR
    )
    assert r.text.startswith("\ufeffid,")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [row["id"] for row in rows] == [calls[4], calls[3]]


async def test_csv_export_pages_through_large_results(api: Api) -> None:
    from tsunagu.api.routes import interactions as module

    ids = [await call(api.store.history, start=i, agent=None, talk=None) for i in range(7)]
    original = module.CSV_PAGE
    module.CSV_PAGE = 3
    try:
        r = await api.client.get("/api/v1/interactions.csv", headers=SUPERVISOR)
    finally:
        module.CSV_PAGE = original
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["id"] for row in rows] == ids


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x01\x00" * 1600)
    return path


async def test_recording_download_is_audited(api: Api, calls: list[str], tmp_path: Path) -> None:
    api.calls.recordings[calls[0]] = _wav(tmp_path / "rec.wav")
    r = await api.client.get(f"/api/v1/interactions/{calls[0]}/recording", headers=SUPERVISOR)
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/wav"
    assert r.content == (tmp_path / "rec.wav").read_bytes()
    assert f"{calls[0]}.wav" in r.headers["content-disposition"]
    record = await api.store.history.get(calls[0])
    assert record is not None
    assert [e.data["action"] for e in record.events if e.type == "audit"] == ["recording.download"]
    # No recording, a vanished file, an unknown interaction, an agent.
    r = await api.client.get(f"/api/v1/interactions/{calls[1]}/recording", headers=SUPERVISOR)
    assert r.status_code == 404
    assert r.json()["error_id"] == "recording.not_found"
    api.calls.recordings[calls[1]] = tmp_path / "missing.wav"
    r = await api.client.get(f"/api/v1/interactions/{calls[1]}/recording", headers=SUPERVISOR)
    assert r.json()["error_id"] == "recording.not_found"
    r = await api.client.get("/api/v1/interactions/nope/recording", headers=ADMIN)
    assert r.json()["error_id"] == "store.not_found"
    r = await api.client.get(f"/api/v1/interactions/{calls[0]}/recording", headers=AGENT)
    assert r.status_code == 403


async def test_audit_file(api: Api, calls: list[str], tmp_path: Path) -> None:
    from tsunagu.api.audit import AuditEntry, AuditLog

    path = tmp_path / "audit" / "audit.jsonl"
    audit = AuditLog(api.store.history, path)
    await audit.record(
        AuditEntry(api.clock.now, "user:x", "admin", "192.0.2.1", "agent.state", "agents/1")
    )
    await audit.record(
        AuditEntry(api.clock.now, "user:x", "admin", None, "interaction.read", "i", calls[0])
    )
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["action"] for line in lines] == ["agent.state", "interaction.read"]
    assert lines[0]["at"] == "2025-04-01T09:00:00+00:00"
    assert lines[1]["interaction_id"] == calls[0]
