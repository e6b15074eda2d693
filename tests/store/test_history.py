"""One record per conversation, on SQLite and PostgreSQL: written as the call goes, read
back whole with legs and timeline, searched with filters and keyset pages, and closed as
``interrupted`` after a crash."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tsunagu.store import (
    AgentStage,
    Direction,
    Disposition,
    History,
    InteractionFilter,
    InvalidStateError,
    NotFoundError,
    Status,
    Store,
    StoreRequestError,
)

from .conftest import FakeClock

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_a_queued_call_answered_by_an_agent(store: Store) -> None:
    h = store.history
    call = await h.start_interaction(
        direction="inbound",
        caller="0312345678",
        dialled="0501234567",
        started_at=at(0),
        attributes={"language": "ja"},
    )
    assert call.status is Status.ACTIVE and call.disposition is None
    caller_leg = await h.add_leg(
        call.id,
        role="caller",
        call_id="a84b4c76e66710@carrier",
        peer="203.0.113.5:5060",
        started_at=at(0),
    )
    await h.update(call.id, append_flow_step={"flow": "main", "block": "hours", "result": "open"})
    await h.update(call.id, append_flow_step={"flow": "main", "block": "menu", "digits": "2"})
    await h.add_event(call.id, "dtmf", {"digit": "2"}, at=at(8))
    await h.update(call.id, queue="support", queued_at=at(10), set_attributes={"menu": "2"})
    await h.add_agent(call.id, "1001", AgentStage.OFFERED, at(20))
    agent_leg = await h.add_leg(
        call.id, role="agent", call_id="f81d4fae-7dec@tsunagu", peer="1001", started_at=at(20)
    )
    await h.add_agent(call.id, "1001", "rung", at(20))
    await h.update_leg(agent_leg.id, answered_at=at(34))
    await h.add_agent(call.id, "1001", "answered", at(34))
    await h.update(call.id, answered_at=at(34))
    await h.update_leg(caller_leg.id, answered_at=at(2))
    await h.update(call.id, append_transfer={"to": "1002", "kind": "blind"})
    await h.update_leg(agent_leg.id, ended_at=at(90), end_reason="bye")
    finished = await h.finish(call.id, Disposition.ANSWERED, ended_at=at(95))
    # Recordings and wrap-up attributes may arrive after the call.
    await h.update(
        call.id,
        append_recording={"path": "rec/2025/04/01/x.wav", "channels": ["caller", "agent"]},
        set_attributes={"wrap_up": "resolved"},
    )

    assert finished.status is Status.ENDED and finished.disposition is Disposition.ANSWERED
    assert finished.wait_seconds == 24.0  # queued at 10 s, answered at 34 s
    record = await h.get(call.id)
    assert record is not None
    i = record.interaction
    assert (i.direction, i.caller, i.dialled, i.queue) == (
        Direction.INBOUND,
        "0312345678",
        "0501234567",
        "support",
    )
    assert (i.started_at, i.queued_at, i.answered_at, i.ended_at) == (at(0), at(10), at(34), at(95))
    assert [s["block"] for s in i.flow_path] == ["hours", "menu"]
    assert i.attributes == {"language": "ja", "menu": "2", "wrap_up": "resolved"}
    assert (i.agents_offered, i.agents_rung, i.agents_answered) == (("1001",),) * 3
    assert i.transfers == ({"to": "1002", "kind": "blind"},)
    assert i.recordings[0]["path"] == "rec/2025/04/01/x.wav"

    legs = {leg.role.value: leg for leg in record.legs}
    assert [leg.id for leg in record.legs] == [caller_leg.id, agent_leg.id]
    assert legs["caller"].call_id == "a84b4c76e66710@carrier"
    assert (legs["caller"].ended_at, legs["caller"].end_reason) == (at(95), "interaction_ended")
    assert (legs["agent"].answered_at, legs["agent"].ended_at) == (at(34), at(90))
    assert legs["agent"].end_reason == "bye"

    timeline = [(e.at, e.type) for e in record.events]
    assert timeline == sorted(timeline, key=lambda x: x[0])
    types = [e.type for e in record.events]
    for expected in (
        "started",
        "leg_started",
        "dtmf",
        "queued",
        "agent_offered",
        "agent_rung",
        "leg_answered",
        "agent_answered",
        "answered",
        "transfer",
        "leg_ended",
        "ended",
    ):
        assert expected in types
    assert types[0] == "started" and types[-1] == "ended"
    assert (await h.find_leg("f81d4fae-7dec@tsunagu")) == legs["agent"]
    assert await h.find_leg("unknown@x") is None


async def test_an_abandoned_call_gets_its_wait_from_queue_to_hang_up(store: Store) -> None:
    call = await store.history.start_interaction(
        direction="inbound", caller="09011112222", dialled="0501234567", started_at=at(0)
    )
    await store.history.update(call.id, queue="support", queued_at=at(5))
    done = await store.history.finish(call.id, "abandoned", ended_at=at(47.5))
    assert (done.wait_seconds, done.answered_at) == (42.5, None)


async def test_closed_records_refuse_call_progress(store: Store) -> None:
    h = store.history
    call = await h.start_interaction(direction="outbound", caller="1001", dialled="0312345678")
    await h.finish(call.id, "failed")
    with pytest.raises(InvalidStateError):
        await h.finish(call.id, "answered")
    with pytest.raises(InvalidStateError):
        await h.update(call.id, answered_at=at(1))
    with pytest.raises(StoreRequestError, match="disposition must be one of"):
        await h.finish(
            (await h.start_interaction(direction="inbound", caller="1", dialled="2")).id, "hung"
        )
    with pytest.raises(StoreRequestError, match="direction"):
        await h.start_interaction(direction="sideways", caller="1", dialled="2")


async def test_unknown_ids_are_not_found(store: Store) -> None:
    h = store.history
    with pytest.raises(NotFoundError):
        await h.add_event("nope", "note")
    with pytest.raises(NotFoundError):
        await h.add_leg("nope", role="caller")
    with pytest.raises(NotFoundError):
        await h.update("nope", queue="q")
    with pytest.raises(NotFoundError):
        await h.finish("nope", "answered")
    with pytest.raises(NotFoundError):
        await h.update_leg("nope", ended_at=at(1))
    with pytest.raises(NotFoundError):
        await h.add_agent("nope", "1001", "offered")
    assert await h.get("nope") is None


async def test_restart_closes_what_the_dead_process_left_active(
    store: Store, clock: FakeClock
) -> None:
    h = store.history
    talking = await h.start_interaction(
        direction="inbound", caller="0312345678", dialled="0501234567", started_at=at(0)
    )
    leg_a = await h.add_leg(talking.id, role="caller", call_id="c1@x", started_at=at(0))
    leg_b = await h.add_leg(talking.id, role="agent", call_id="c2@x", started_at=at(12))
    await h.update_leg(leg_b.id, answered_at=at(15))
    await h.add_event(talking.id, "hold", {}, at=at(40))
    ringing = await h.start_interaction(
        direction="inbound", caller="0311112222", dialled="0501234567", started_at=at(30)
    )
    finished = await h.start_interaction(
        direction="inbound", caller="0399998888", dialled="0501234567", started_at=at(1)
    )
    await h.finish(finished.id, "answered", ended_at=at(20))
    other_node = History(store.db, node="node-b")
    elsewhere = await other_node.start_interaction(
        direction="inbound", caller="0355556666", dialled="0501234567", started_at=at(5)
    )

    clock.now = at(3600)  # the restart comes an hour later
    closed = await h.mark_interrupted_on_startup()
    assert sorted(closed) == sorted([talking.id, ringing.id])
    assert await h.mark_interrupted_on_startup() == []

    record = await h.get(talking.id)
    assert record is not None
    i = record.interaction
    assert (i.status, i.disposition) == (Status.INTERRUPTED, Disposition.INTERRUPTED)
    assert i.ended_at == at(40)  # the last thing known to have happened
    assert all(leg.ended_at is not None for leg in record.legs)
    assert {leg.id: leg.end_reason for leg in record.legs} == {
        leg_a.id: "interrupted",
        leg_b.id: "interrupted",
    }
    last = record.events[-1]
    assert (last.type, last.at) == ("interrupted", at(40))
    assert last.data["detected_at"] == at(3600).isoformat()
    ring = await h.get(ringing.id)
    assert ring is not None and ring.interaction.ended_at == at(30)

    untouched = await h.get(finished.id)
    assert untouched is not None and untouched.interaction.status is Status.ENDED
    theirs = await other_node.get(elsewhere.id)
    assert theirs is not None and theirs.interaction.status is Status.ACTIVE


# --- search ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    offset: float
    caller: str
    dialled: str
    queue: str | None
    disposition: Disposition | None
    direction: str = "inbound"
    agents: dict[str, AgentStage] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)


SPECS = [
    Spec(
        0,
        "0311110000",
        "0501234567",
        "support",
        Disposition.ANSWERED,
        agents={"1001": AgentStage.ANSWERED},
        attributes={"customer": "C-1", "tier": "gold"},
    ),
    Spec(
        60,
        "0322220000",
        "0501234567",
        "support",
        Disposition.ABANDONED,
        agents={"1002": AgentStage.RUNG},
        attributes={"customer": "C-2"},
    ),
    Spec(
        120,
        "0311110000",
        "0120000000",
        "sales",
        Disposition.ANSWERED,
        agents={"1002": AgentStage.ANSWERED},
        attributes={"tier": "gold"},
    ),
    Spec(180, "0333330000", "0120000000", None, Disposition.AFTER_HOURS),
    Spec(
        240,
        "1001",
        "0311110000",
        None,
        Disposition.ANSWERED,
        direction="outbound",
        agents={"1001": AgentStage.ANSWERED},
    ),
    Spec(300, "0344440000", "0501234567", "support", Disposition.SHORT_ABANDONED),
    Spec(
        360,
        "0355550000",
        "0501234567",
        "support",
        None,
        agents={"1001": AgentStage.OFFERED},
        attributes={"customer": "C-1"},
    ),
    Spec(
        420,
        "0322220000",
        "0120000000",
        "sales",
        Disposition.VOICEMAIL,
        attributes={"tier": "silver"},
    ),
]


async def _seed(h: History) -> list[str]:
    ids = []
    for spec in SPECS:
        call = await h.start_interaction(
            direction=spec.direction,
            caller=spec.caller,
            dialled=spec.dialled,
            started_at=at(spec.offset),
            attributes=spec.attributes,
        )
        if spec.queue:
            await h.update(call.id, queue=spec.queue, queued_at=at(spec.offset + 1))
        for agent, stage in spec.agents.items():
            await h.add_agent(call.id, agent, stage, at(spec.offset + 2))
        if spec.disposition:
            await h.finish(call.id, spec.disposition, ended_at=at(spec.offset + 30))
        ids.append(call.id)
    return ids


def _expect(ids: list[str], keep: object) -> list[str]:
    assert callable(keep)
    return [i for i, spec in reversed(list(zip(ids, SPECS, strict=True))) if keep(spec)]


async def test_search_filters(store: Store) -> None:
    ids = await _seed(store.history)

    async def found(**criteria: object) -> list[str]:
        page = await store.history.search(InteractionFilter(**criteria), limit=100)  # type: ignore[arg-type]
        return [i.id for i in page.items]

    assert await found() == _expect(ids, lambda s: True)
    assert await found(started_from=at(60), started_to=at(300)) == _expect(
        ids, lambda s: 60 <= s.offset < 300
    )
    assert await found(caller="0311110000") == _expect(ids, lambda s: s.caller == "0311110000")
    assert await found(dialled="0120000000") == _expect(ids, lambda s: s.dialled == "0120000000")
    assert await found(number="0311110000") == _expect(
        ids, lambda s: "0311110000" in (s.caller, s.dialled)
    )
    assert await found(queue="support") == _expect(ids, lambda s: s.queue == "support")
    abandoned = {Disposition.ABANDONED, Disposition.SHORT_ABANDONED}
    assert await found(dispositions=abandoned) == _expect(ids, lambda s: s.disposition in abandoned)
    assert await found(statuses={Status.ACTIVE}) == _expect(ids, lambda s: s.disposition is None)
    assert await found(direction=Direction.OUTBOUND) == _expect(
        ids, lambda s: s.direction == "outbound"
    )
    assert await found(agent="1001") == _expect(ids, lambda s: "1001" in s.agents)
    assert await found(agent="1001", agent_stage=AgentStage.ANSWERED) == _expect(
        ids, lambda s: s.agents.get("1001") == AgentStage.ANSWERED
    )
    assert await found(attributes={"customer": "C-1"}) == _expect(
        ids, lambda s: s.attributes.get("customer") == "C-1"
    )
    assert await found(attributes={"customer": "C-1", "tier": "gold"}) == _expect(
        ids, lambda s: s.attributes == {"customer": "C-1", "tier": "gold"}
    )
    assert await found(queue="support", agent="1002", started_from=at(30)) == _expect(
        ids, lambda s: s.queue == "support" and "1002" in s.agents and s.offset >= 30
    )
    assert await found(caller="nobody") == []
    page = await store.history.search(InteractionFilter(agent="1002"))
    assert {i.id: i.agents_rung + i.agents_answered for i in page.items} == {
        ids[1]: ("1002",),
        ids[2]: ("1002",),
    }
    with pytest.raises(StoreRequestError):
        await found(attributes={"bad key'": "x"})
    with pytest.raises(StoreRequestError):
        await store.history.search(limit=0)


async def test_attribute_search_follows_every_write_of_the_attributes(store: Store) -> None:
    """On SQLite the search reads a side table kept by triggers (migration 0006); on
    PostgreSQL the GIN index. Either way it must follow updates, ignore values that are
    not strings, and forget deleted interactions."""
    h = store.history

    async def ids(**attributes: str) -> list[str]:
        page = await h.search(InteractionFilter(attributes=attributes))
        return sorted(i.id for i in page.items)

    one = await h.start_interaction(
        direction="inbound",
        caller="0311112222",
        dialled="0312345678",
        started_at=at(0),
        attributes={"account": "A-1", "tier": "gold", "visits": 3, "vip": True},
    )
    two = await h.start_interaction(
        direction="inbound",
        caller="0333334444",
        dialled="0312345678",
        started_at=at(5),
        attributes={"account": "A-2"},
    )
    assert await ids(account="A-1") == [one.id]
    assert await ids(visits="3") == [] and await ids(vip="true") == []
    await h.update(one.id, set_attributes={"account": "A-2", "note": "moved"})
    assert await ids(account="A-1") == []
    assert await ids(account="A-2") == sorted([one.id, two.id])
    assert await ids(account="A-2", tier="gold", note="moved") == [one.id]


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_cursor_pages_neither_repeat_nor_skip(store: Store, order: str) -> None:
    h = store.history
    # Groups of calls starting in the same microsecond: the id breaks the tie.
    made = []
    for n in range(23):
        call = await h.start_interaction(
            direction="inbound",
            caller=f"03{n:08d}",
            dialled="0501234567",
            started_at=at(n // 4),
            attributes={"even": str(n % 2 == 0)},
        )
        made.append(call)
    expected = sorted(made, key=lambda c: (c.started_at, c.id), reverse=order == "desc")

    seen: list[str] = []
    cursor = None
    pages = 0
    for pages in itertools.count(1):
        page = await h.search(limit=5, cursor=cursor, order=order)  # type: ignore[arg-type]
        seen += [i.id for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        if pages == 1 and order == "desc":
            # A call arriving while the user pages does not shift the pages.
            await h.start_interaction(
                direction="inbound", caller="late", dialled="x", started_at=at(999)
            )
    assert seen == [c.id for c in expected]
    assert pages == 5

    filtered: list[str] = []
    cursor = None
    while True:
        page = await h.search(
            InteractionFilter(attributes={"even": "True"}, started_to=at(100)),
            limit=3,
            cursor=cursor,
            order=order,  # type: ignore[arg-type]
        )
        filtered += [i.id for i in page.items]
        if not (cursor := page.next_cursor):
            break
    assert filtered == [c.id for c in expected if c.attributes["even"] == "True"]

    with pytest.raises(StoreRequestError, match="cursor"):
        await h.search(cursor="not-a-cursor")
