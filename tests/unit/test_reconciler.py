"""The reconciler's plan for each kind of drift between presence and reality."""

from __future__ import annotations

import pytest

from tsunagu.acd.presence import REASON_REGISTRATION_LOST, AgentState
from tsunagu.acd.reconciler import AgentSnapshot, Drift, Repair, plan_repairs

S = AgentState


def agent(
    state: AgentState,
    *,
    reason: str | None = None,
    offer: str | None = None,
    call: str | None = None,
    since: float = 0.0,
) -> AgentSnapshot:
    return AgentSnapshot("1001", state, reason, offer, call, since)


@pytest.mark.parametrize(
    ("snapshot", "registered", "ringing", "talking", "expected"),
    [
        # Truthful states: nothing to do.
        (agent(S.AVAILABLE), {"1001"}, set(), set(), []),
        (agent(S.RESERVED, offer="c1"), {"1001"}, {("1001", "c1")}, set(), []),
        (agent(S.ON_CALL, call="c1"), {"1001"}, set(), {("1001", "c1")}, []),
        (agent(S.OFFLINE, reason="logout"), {"1001"}, set(), set(), []),
        (agent(S.OFFLINE), set(), set(), set(), []),
        # Drifts.
        (
            agent(S.RESERVED, offer="c1"),
            {"1001"},
            set(),
            set(),
            [Repair("1001", Drift.STALE_RESERVATION, "c1")],
        ),
        (
            agent(S.RESERVED, offer="c1"),
            {"1001"},
            {("1001", "c2")},
            set(),
            [Repair("1001", Drift.STALE_RESERVATION, "c1")],
        ),
        (
            agent(S.ON_CALL, call="c1"),
            {"1001"},
            set(),
            set(),
            [Repair("1001", Drift.STALE_CALL, "c1")],
        ),
        (agent(S.AVAILABLE), set(), set(), set(), [Repair("1001", Drift.NOT_REGISTERED)]),
        (
            agent(S.AWAY, reason="lunch"),
            set(),
            set(),
            set(),
            [Repair("1001", Drift.NOT_REGISTERED)],
        ),
        (agent(S.WRAP_UP), set(), set(), set(), [Repair("1001", Drift.NOT_REGISTERED)]),
        (
            agent(S.OFFLINE, reason=REASON_REGISTRATION_LOST),
            {"1001"},
            set(),
            set(),
            [Repair("1001", Drift.REGISTERED_AGAIN)],
        ),
        # On a call with the phone's registration gone: the dialog outlives it; no repair.
        (agent(S.ON_CALL, call="c1"), set(), set(), {("1001", "c1")}, []),
    ],
)
def test_each_drift_is_planned(
    snapshot: AgentSnapshot,
    registered: set[str],
    ringing: set[tuple[str, str]],
    talking: set[tuple[str, str]],
    expected: list[Repair],
) -> None:
    assert plan_repairs([snapshot], registered, ringing, talking, now=100.0) == expected


def test_fresh_states_get_a_grace_period() -> None:
    fresh = agent(S.RESERVED, offer="c1", since=98.0)
    assert plan_repairs([fresh], {"1001"}, set(), set(), now=100.0, grace_s=5.0) == []
    assert plan_repairs([fresh], {"1001"}, set(), set(), now=104.0, grace_s=5.0) == [
        Repair("1001", Drift.STALE_RESERVATION, "c1")
    ]
