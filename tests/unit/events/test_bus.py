"""The event bus: fan-out, filters, bounded queues that drop the oldest, and a publish
that never raises into the call path."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tsunagu.events import (
    AgentStateChanged,
    CallEnded,
    CallOffered,
    CustomerRecord,
    DomainEvent,
    EventBus,
    QueueFigures,
    QueueStats,
    UnknownEventTypeError,
)

AT = 1_765_000_000.25


def state(agent: str, new: str = "available", at: float = AT) -> AgentStateChanged:
    return AgentStateChanged(at=at, agent_id=agent, old="offline", new=new)


def offered(agent: str) -> CallOffered:
    return CallOffered(
        at=AT,
        interaction_id="i-1",
        agent_id=agent,
        caller="0901234567",
        dialled="0312345678",
        queue="support",
        customer=CustomerRecord(number="+81901234567", name="Tanaka", rep="1001"),
        attributes={"menu": "2"},
    )


def test_every_subscriber_gets_every_event_in_order_with_a_sequence() -> None:
    bus = EventBus()
    a, b = bus.subscribe(name="a"), bus.subscribe(name="b")
    published = [bus.publish(state(str(n))) for n in range(3)]
    assert [e.seq for e in published if e is not None] == [1, 2, 3]
    for sub in (a, b):
        got = [sub.get_nowait() for _ in range(3)]
        assert [e.agent_id for e in got if isinstance(e, AgentStateChanged)] == ["0", "1", "2"]
        assert [e.seq for e in got if e is not None] == [1, 2, 3]
        assert sub.get_nowait() is None


def test_subscribers_filter_by_type_and_by_predicate() -> None:
    bus = EventBus()
    states = bus.subscribe(["agent.state"])
    mine = bus.subscribe(accept=lambda e: e.concerns("1001"))
    everything = bus.subscribe(["*"])
    bus.publish(offered("1001"))
    bus.publish(offered("1002"))
    bus.publish(state("1002"))
    assert [e.type for e in _drain(states)] == ["agent.state"]
    assert [(e.type, getattr(e, "agent_id", None)) for e in _drain(mine)] == [
        ("call.offered", "1001")
    ]
    assert len(_drain(everything)) == 3


def test_an_unknown_type_is_refused_naming_it() -> None:
    bus = EventBus()
    with pytest.raises(UnknownEventTypeError, match=r"call\.ofered"):
        bus.subscribe(["call.ofered"])
    sub = bus.subscribe()
    with pytest.raises(UnknownEventTypeError, match="nope"):
        sub.narrow(["nope"])


def test_narrow_changes_the_stream_and_removes_queued_misfits() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(state("1001"))
    bus.publish(offered("1001"))
    sub.narrow(["call.offered"])
    bus.publish(state("1002"))
    assert [e.type for e in _drain(sub)] == ["call.offered"]


def test_a_slow_subscriber_loses_the_oldest_events_and_counts_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    slow = bus.subscribe(name="slow", maxsize=3)
    fast = bus.subscribe(name="fast", maxsize=100)
    with caplog.at_level(logging.INFO, logger="tsunagu.events"):
        for n in range(10):
            bus.publish(state(str(n)))
        assert slow.dropped == 7 and fast.dropped == 0
        kept = _drain(slow)
    assert [e.agent_id for e in kept if isinstance(e, AgentStateChanged)] == ["7", "8", "9"]
    assert len(_drain(fast)) == 10
    warnings = [r for r in caplog.records if "too slow" in r.getMessage()]
    assert len(warnings) == 1  # once per burst, not once per event
    assert any("caught up" in r.getMessage() for r in caplog.records)
    # A second burst is logged again.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tsunagu.events"):
        for n in range(5):
            bus.publish(state(str(n)))
    assert slow.dropped == 9
    assert len([r for r in caplog.records if "too slow" in r.getMessage()]) == 1


def test_publish_never_raises_when_a_subscriber_filter_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()

    def broken(event: DomainEvent) -> bool:
        raise RuntimeError("bug in a filter")

    bus.subscribe(accept=broken, name="broken")
    healthy = bus.subscribe(name="healthy")
    with caplog.at_level(logging.ERROR, logger="tsunagu.events"):
        stamped = bus.publish(state("1001"))
    assert stamped is not None and stamped.seq == 1
    assert len(_drain(healthy)) == 1
    assert bus.errors == 1
    assert any("subscriber failed" in r.getMessage() for r in caplog.records)


def test_publish_never_raises_for_a_malformed_event() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    # An object dataclasses.replace cannot copy is logged and dropped, not raised.
    assert bus.publish(object()) is None  # type: ignore[arg-type]
    assert bus.errors == 1 and len(sub) == 0


async def test_closed_subscriptions_get_nothing_and_wake_their_reader() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    reader = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(EOFError):
        await reader
    assert bus.subscribers == 0
    bus.publish(state("1001"))
    assert len(sub) == 0


async def test_get_waits_for_the_next_event() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        reader = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        assert not reader.done()
        bus.publish(state("1003"))
        event = await asyncio.wait_for(reader, 1)
        assert isinstance(event, AgentStateChanged) and event.agent_id == "1003"


def test_to_json_has_the_documented_shape() -> None:
    bus = EventBus()
    event = bus.publish(offered("1001"))
    assert event is not None
    doc = json.loads(json.dumps(event.to_json()))
    assert doc["type"] == "call.offered" and doc["seq"] == 1
    assert doc["at"] == "2025-12-06T05:46:40.250+00:00"
    assert len(doc["id"]) == 36
    assert doc["data"] == {
        "interaction_id": "i-1",
        "agent_id": "1001",
        "caller": "0901234567",
        "dialled": "0312345678",
        "queue": "support",
        "customer": {"number": "+81901234567", "name": "Tanaka", "rep": "1001"},
        "attributes": {"menu": "2"},
    }
    stats = QueueStats(
        at=AT,
        queues=(
            QueueFigures(
                queue="support", waiting=2, oldest_wait_s=4.0, agents_available=1, agents_busy=2
            ),
        ),
    )
    assert stats.to_json()["data"]["queues"][0]["agents_busy"] == 2


def test_agents_see_only_what_concerns_them() -> None:
    ended = CallEnded(
        at=AT, interaction_id="i", disposition="answered", duration_s=3, agents=("1001",)
    )
    assert ended.concerns("1001") and not ended.concerns("1002")
    assert offered("1002").concerns("1002") and not offered("1002").concerns("1001")
    assert state("1001").concerns("1001") and not state("1001").concerns("1002")
    assert not QueueStats(at=AT, queues=()).concerns("1001")


def _drain(sub: object) -> list[DomainEvent]:
    from tsunagu.events import Subscription

    assert isinstance(sub, Subscription)
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append(event)
    return out
