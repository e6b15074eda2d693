"""A voicemail's callback task: the life of one "please call me back", as a table (sans-IO).

Why a machine of its own: a task outlives calls and restarts (it is a row in the store,
:mod:`tsunagu.store.callback_tasks`), is tried more than once, and can be cancelled by a
supervisor while it waits, so "what may happen next" must be decided in one place that
the call layer, the start-up restore and the API all obey. Time (``now``, wall-clock Unix
seconds, because a retry time must mean the same after a restart) is passed in.

States and inputs (:data:`TRANSITIONS`; an input not in the table is a loud
:class:`CallbackTaskError`)::

    pending ──taken──► dialling ──connected──► done       (customer answered, bridged)
      │                  ├──no_answer──► pending           (attempt counted; retry later)
      │                  ├──exhausted──► failed            (the last attempt failed)
      │                  └──agent_lost─► pending           (the agent hung up during the
      └──cancel──► cancelled                                message: not an attempt)
    dialling ──interrupted──► pending   (the server stopped mid-attempt: tried again)

``taken``: an agent answered the ACD's offer (the ACD lets one agent win, even when a
ring-all queue rings several). Agents rung who do not answer change nothing here: the task
stays ``pending`` and the ACD offers it to the next agent, as it would a caller.

``no_answer`` versus ``exhausted`` is :func:`customer_missed`'s choice: an attempt is one
call to the customer; after ``max_attempts`` of them the task is ``failed``. A task being
dialled cannot be cancelled (an agent has it on the line); hang up instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "pending"
    DIALLING = "dialling"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskInput(StrEnum):
    TAKEN = "taken"
    CONNECTED = "connected"
    NO_ANSWER = "no_answer"
    EXHAUSTED = "exhausted"
    AGENT_LOST = "agent_lost"
    CANCEL = "cancel"
    INTERRUPTED = "interrupted"


S, E = TaskState, TaskInput

TRANSITIONS: dict[tuple[TaskState, TaskInput], TaskState] = {
    (S.PENDING, E.TAKEN): S.DIALLING,
    (S.PENDING, E.CANCEL): S.CANCELLED,
    (S.DIALLING, E.CONNECTED): S.DONE,
    (S.DIALLING, E.NO_ANSWER): S.PENDING,
    (S.DIALLING, E.EXHAUSTED): S.FAILED,
    (S.DIALLING, E.AGENT_LOST): S.PENDING,
    (S.DIALLING, E.INTERRUPTED): S.PENDING,
}

FINAL_STATES = frozenset({S.DONE, S.FAILED, S.CANCELLED})


class CallbackTaskError(RuntimeError):
    """An input the table does not allow in the current state (a supervisor cancelling a
    task being dialled, or a bug in the adapter)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard we try: ``max_attempts`` calls to the customer, ``retry_after_s`` apart
    (per queue: ``callback_attempts``, ``callback_retry_s``)."""

    max_attempts: int = 3
    retry_after_s: float = 300.0


@dataclass(frozen=True, slots=True)
class TaskStep:
    """The task after one input: its new state, attempts made, and the earliest time it
    may be offered again (``None``: at once, or never for a final state)."""

    state: TaskState
    attempts: int
    not_before: float | None


def step(
    state: TaskState, attempts: int, event: TaskInput, now: float, policy: RetryPolicy
) -> TaskStep:
    """Apply ``event``; raises :class:`CallbackTaskError` if the table does not allow it."""
    new = TRANSITIONS.get((state, event))
    if new is None:
        raise CallbackTaskError(f"a {state.value} callback task cannot take {event.value!r}")
    if event in (E.NO_ANSWER, E.EXHAUSTED):
        attempts += 1
    not_before = now + policy.retry_after_s if event is E.NO_ANSWER else None
    return TaskStep(new, attempts, not_before)


def customer_missed(attempts: int, policy: RetryPolicy) -> TaskInput:
    """The customer did not answer attempt ``attempts + 1``: retry, or give up."""
    return E.EXHAUSTED if attempts + 1 >= policy.max_attempts else E.NO_ANSWER


__all__ = [
    "FINAL_STATES",
    "TRANSITIONS",
    "CallbackTaskError",
    "RetryPolicy",
    "TaskInput",
    "TaskState",
    "TaskStep",
    "customer_missed",
    "step",
]
