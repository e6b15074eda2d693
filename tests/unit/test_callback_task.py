"""The callback task machine: every allowed move, every refused one, attempts counted only
for calls to the customer, the retry delay from the time passed in, and the last attempt
ending in failed."""

from __future__ import annotations

import itertools

import pytest

from tsunagu.calls.callback_task import (
    FINAL_STATES,
    TRANSITIONS,
    CallbackTaskError,
    RetryPolicy,
    TaskInput,
    TaskState,
    TaskStep,
    customer_missed,
    step,
)

S, E = TaskState, TaskInput
POLICY = RetryPolicy(max_attempts=3, retry_after_s=120.0)


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (S.PENDING, E.TAKEN, TaskStep(S.DIALLING, 1, None)),
        (S.PENDING, E.CANCEL, TaskStep(S.CANCELLED, 1, None)),
        (S.DIALLING, E.CONNECTED, TaskStep(S.DONE, 1, None)),
        (S.DIALLING, E.NO_ANSWER, TaskStep(S.PENDING, 2, 1120.0)),
        (S.DIALLING, E.EXHAUSTED, TaskStep(S.FAILED, 2, None)),
        (S.DIALLING, E.AGENT_LOST, TaskStep(S.PENDING, 1, None)),
        (S.DIALLING, E.INTERRUPTED, TaskStep(S.PENDING, 1, None)),
    ],
)
def test_allowed_moves(state: TaskState, event: TaskInput, expected: TaskStep) -> None:
    assert step(state, 1, event, 1000.0, POLICY) == expected


def test_everything_else_is_refused_loudly() -> None:
    refused = [
        (s, e) for s, e in itertools.product(TaskState, TaskInput) if (s, e) not in TRANSITIONS
    ]
    assert (S.DIALLING, E.CANCEL) in refused  # the agent is on the line: hang up instead
    for state in FINAL_STATES:
        assert all((state, e) in refused for e in TaskInput)  # final means final
    for state, event in refused:
        with pytest.raises(CallbackTaskError, match=state.value):
            step(state, 0, event, 0.0, POLICY)


def test_three_unanswered_attempts_fail_the_task() -> None:
    state, attempts, now = S.PENDING, 0, 0.0
    seen = []
    while state not in FINAL_STATES:
        state = step(state, attempts, E.TAKEN, now, POLICY).state
        moved = step(state, attempts, customer_missed(attempts, POLICY), now, POLICY)
        state, attempts = moved.state, moved.attempts
        seen.append((state, moved.not_before))
        now = moved.not_before or now
    assert seen == [(S.PENDING, 120.0), (S.PENDING, 240.0), (S.FAILED, None)]
    assert attempts == 3


def test_one_attempt_policy_fails_at_once() -> None:
    assert customer_missed(0, RetryPolicy(max_attempts=1)) is E.EXHAUSTED
