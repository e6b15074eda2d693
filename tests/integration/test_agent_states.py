"""Time per agent state from real presence moves: a real agent takes a real call."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.integration.peers.baresip import BaresipUA
from tests.integration.peers.tsunagu import TsunaguServer
from tests.integration.test_calls import (
    agent_phone,
    caller_phone,
    demo_center,
    is_available,
    login,
    wait_records,
)

__all__ = ["agent_phone", "caller_phone", "login"]  # fixtures used by name


def test_report_shows_time_available_on_call_and_in_wrap_up(
    tsunagu_factory: Callable[..., TsunaguServer],
    login: Callable[..., BaresipUA],
    caller_phone: BaresipUA,
) -> None:
    server = tsunagu_factory(config=demo_center(ring_timeout_s=4, wrap_up_s=2))
    start = datetime.now(UTC) - timedelta(seconds=1)
    agent = login(server, "1001")
    time.sleep(1)
    caller_phone.call_and_wait(f"sip:0312345678@127.0.0.1:{server.sip_port}")
    agent.wait_event("CALL_ESTABLISHED", timeout=30)
    time.sleep(3)
    mark = server.log_mark()
    caller_phone.hangup()
    agent.wait_event("CALL_CLOSED", timeout=10)
    server.wait_log(is_available("1001"), since=mark, timeout=10)  # wrap-up ended
    (record,) = wait_records(server, 1)
    time.sleep(0.5)
    end = datetime.now(UTC) + timedelta(seconds=1)

    window = f"from={start:%Y-%m-%dT%H:%M:%S}Z&to={end:%Y-%m-%dT%H:%M:%S}Z"
    report = server.api(f"/api/v1/reports/agent-states?{window}")
    (row,) = report["agents"]
    seconds = row["seconds"]
    assert row["agent"] == "1001"
    assert {"available", "reserved", "on_call", "wrap_up"} <= set(seconds), seconds
    # The on-call time is the call's talk time as the interaction record saw it.
    interaction = record.interaction
    assert interaction.answered_at is not None and interaction.ended_at is not None
    talk = (interaction.ended_at - interaction.answered_at).total_seconds()
    assert abs(seconds["on_call"] - talk) < 1.0, (seconds, talk)
    assert 1.5 <= seconds["wrap_up"] <= 4.0
    # Intervals never overlap: the states add up to no more than the window.
    assert sum(seconds.values()) <= (end - start).total_seconds() + 0.01
    assert row["interrupted_intervals"] == 0
