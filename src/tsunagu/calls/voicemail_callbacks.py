"""Voicemail callback tasks: a message left in a Voicemail block becomes a task that an
agent of a queue calls back — agent first, then the customer (docs/FLOWS.md "Voicemail").

The path: the call that recorded the message stores the task (:meth:`voicemail_left`,
written through the call's own record queue so it lands before the call's record is
closed) and puts it in the ACD as a callback entry (:meth:`AcdEngine.enqueue` with a
``callback_number``). When its turn comes the agent's phone rings; on answer the agent
hears the message (the recorder's file, played on their leg), then the customer is dialled
through the trunk with the queue's caller ID, and the two are bridged and recorded. Each
attempt is its own interaction (direction outbound, disposition ``callback`` when the
customer answered) whose ``callback_for`` attribute and event name the voicemail
interaction; the voicemail interaction's timeline gets ``callback.created`` and
``callback.completed`` / ``callback.attempt_failed`` / ``callback.failed`` /
``callback.cancelled``. An unanswered customer is tried again after the queue's
``callback_retry_s``, at most ``callback_attempts`` times in all.

Why the ACD entry's id is the attempt's interaction id (made up when the task is queued,
the interaction only opened when an agent is first rung): the controller's ring, answer
and reconcile code all speak of one call id, so a task attempt is just another call to it.
Tasks live in the store (:mod:`tsunagu.store.callback_tasks`); :meth:`restore_callback_tasks`
puts the open ones back in the ACD at start-up, so a restart loses none. What may happen
to a task is the table in :mod:`.callback_task`.

A mixin of :class:`~tsunagu.calls.controller.CallController` (see :mod:`.host` for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tsunagu.acd.engine import CallbackOffered
from tsunagu.acd.presence import AcdError
from tsunagu.acd.queues import Call as QueuedCall
from tsunagu.calls.call import Call, utcnow
from tsunagu.calls.callback_task import (
    CallbackTaskError,
    RetryPolicy,
    TaskInput,
    TaskState,
    TaskStep,
    customer_missed,
    step,
)
from tsunagu.calls.host import ControllerHost
from tsunagu.calls.legs import SipLeg, first_of
from tsunagu.media.interface import PlayItem, Say
from tsunagu.store.callback_tasks import CallbackTask
from tsunagu.store.errors import InvalidStateError, NotFoundError, StoreError
from tsunagu.store.history import History
from tsunagu.store.interactions import AgentStage, Disposition, LegRole

log = logging.getLogger("tsunagu.calls")

#: How long the customer's phone rings on a callback before the attempt counts as missed.
CUSTOMER_RING_S = 30.0
#: A number we can dial back (an anonymous caller's "number" is the trunk's name).
_DIALLABLE = re.compile(r"^\+?[0-9]{3,20}$")


@dataclass(eq=False)
class LiveTask:
    """A task this process is working on: the store's row as last written, the ACD
    entry of the current attempt, its retry timer, and the attempt's call once rung."""

    task: CallbackTask
    attempt_id: str | None = None
    timer: asyncio.TimerHandle | None = None
    call: Call | None = None


def _wall(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class VoicemailCallbacks(ControllerHost):
    # -- a message becomes a task ---------------------------------------------------------
    def voicemail_left(self, call: Call, recording: str, queue: str | None) -> None:
        """The caller of ``call`` left a message in ``recording``: keep a task for
        ``queue`` (the block's), else the queue the caller last waited in or was refused
        by, else none (unassigned: kept and listed for supervisors, never dialled)."""
        store = self.callback_tasks
        number = call.caller_number
        queue = queue or call.queue or call.last_queue
        reason = None
        if store is None:
            reason = "no store"
        elif call.direction != "inbound":
            reason = "not a call from outside"  # an agent's phone: nothing to dial back
        elif not recording or not _DIALLABLE.match(number or ""):
            reason = "no number to call back"
        if reason is not None or store is None:
            call.record.event("callback.not_created", reason=reason)
            return

        async def create(history: History) -> None:
            task = await store.create(
                voicemail_interaction_id=call.id, caller=number, queue=queue, recording=recording
            )
            data = {"task": task.id, "queue": queue, "number": number}
            await history.add_event(call.id, "callback.created", data)
            log.info("callback task created", extra={"task": task.id, "queue": queue})
            self._adopt(task)

        call.record.post(create)

    async def restore_callback_tasks(self) -> int:
        """At start-up: every open task back in the ACD (one cut mid-dial by the last
        stop is pending again, its attempt not counted). Returns how many."""
        store = self.callback_tasks
        if store is None:
            return 0
        tasks = await store.open_tasks()
        for task in tasks:
            live = LiveTask(task)
            if task.state == TaskState.DIALLING:
                with contextlib.suppress(StoreError, CallbackTaskError):
                    await self._advance(live, TaskInput.INTERRUPTED, last_error="interrupted")
            self._adopt(live.task)
        if tasks:
            log.info("callback tasks restored", extra={"tasks": len(tasks)})
        return len(tasks)

    def stop_callback_timers(self) -> None:
        """At shutdown: no retry fires into a closing loop (the tasks stay stored)."""
        for live in self.live_tasks.values():
            if live.timer is not None:
                live.timer.cancel()
                live.timer = None

    def _adopt(self, task: CallbackTask) -> None:
        live = LiveTask(task)
        self.live_tasks[task.id] = live
        self._schedule_task(live)

    def _policy(self, queue: str | None) -> RetryPolicy:
        settings = self.center.queues.get(queue or "")
        if settings is None:
            return RetryPolicy()
        return RetryPolicy(settings.callback_attempts, settings.callback_retry_s)

    def _schedule_task(self, live: LiveTask) -> None:
        task = live.task
        if task.queue is None:
            return  # unassigned: supervisors see it in GET /api/v1/callbacks
        if task.queue not in self.center.queues:
            log.warning("callback task for an unknown queue", extra={"task": task.id})
            return
        delay = 0.0 if task.not_before is None else task.not_before.timestamp() - time.time()
        if delay > 0:
            loop = asyncio.get_running_loop()
            live.timer = loop.call_later(delay, self._enqueue_task, live)
        else:
            self._enqueue_task(live)

    def _enqueue_task(self, live: LiveTask) -> None:
        live.timer = None
        if self.live_tasks.get(live.task.id) is not live or live.task.queue is None:
            return
        live.attempt_id = str(uuid.uuid4())
        self.task_attempts[live.attempt_id] = live
        entry = QueuedCall(live.attempt_id, live.task.queue)
        self.acd.enqueue(entry, self._now(), callback_number=live.task.caller)
        self._pump()

    def _drop_task(self, live: LiveTask) -> None:
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if live.attempt_id is not None:
            self.task_attempts.pop(live.attempt_id, None)
        if self.live_tasks.get(live.task.id) is live:
            del self.live_tasks[live.task.id]

    async def _advance(self, live: LiveTask, event: TaskInput, **fields: Any) -> TaskStep:
        """One move of the task's machine, stored as a compare-and-set on its state."""
        assert self.callback_tasks is not None
        task = live.task
        moved = step(
            TaskState(task.state), task.attempts, event, time.time(), self._policy(task.queue)
        )
        live.task = await self.callback_tasks.move(
            task.id,
            expected=[task.state],
            state=moved.state.value,
            attempts=moved.attempts,
            not_before=_wall(moved.not_before),
            **fields,
        )
        return moved

    async def _thread_event(self, task: CallbackTask, kind: str, **data: Any) -> None:
        """A timeline entry on the voicemail interaction (so an analyst can follow the
        thread from the message to its callbacks)."""
        if self.history is None:
            return
        try:
            await self.history.add_event(task.voicemail_interaction_id, kind, data)
        except Exception:
            log.exception("could not write the voicemail's timeline", extra={"task": task.id})

    # -- the task's turn ------------------------------------------------------------------
    def _task_offered(self, event: CallbackOffered) -> bool:
        """The ACD offers a task attempt: ring the agent (``False``: not a task)."""
        live = self.task_attempts.get(event.call_id)
        if live is None:
            return False
        self._spawn(self._dial_task(live, event.agent_id), f"vm-callback-{event.agent_id}")
        return True

    def _attempt_call(self, live: LiveTask) -> Call:
        """The attempt's interaction: outbound, caller and dialled both the customer's
        number (a search by that number finds the voicemail and its callbacks)."""
        task = live.task
        assert live.attempt_id is not None
        call = self._new_call("outbound", task.caller, task.caller, live.attempt_id)
        call.queue = task.queue
        call.callback_requested = True
        iid = call.id
        link = {"callback_for": task.voicemail_interaction_id, "callback_task": task.id}
        call.record.post(lambda h: h.update(iid, queue=task.queue, set_attributes=link))
        call.record.event(
            "callback_for",
            interaction=task.voicemail_interaction_id,
            task=task.id,
            attempt=task.attempts + 1,
        )
        return call

    async def _dial_task(self, live: LiveTask, agent_id: str) -> None:
        call = live.call
        if call is None:
            call = live.call = self._attempt_call(live)
        leg = await self._ring_agent(call, agent_id)
        answered = None
        if leg is not None:
            call.offers[agent_id] = leg
            call.log_leg(leg, LegRole.AGENT)
            iid = call.id
            call.record.post(lambda h: h.add_agent(iid, agent_id, AgentStage.OFFERED))
            answered = await leg.wait_answer()
            call.offers.pop(agent_id, None)
        if leg is None or answered is None or not self.agent_answered(call, agent_id):
            if leg is not None and answered is not None:
                leg.hangup()  # the offer was withdrawn while the answer was on its way
            self._no_answer(call, agent_id)  # the ACD offers the task to the next agent
            return
        # The agent won the offer: the ACD entry is done; whatever happens now ends this call.
        if live.attempt_id is not None:
            self.task_attempts.pop(live.attempt_id, None)
        live.call = None
        call.agent_leg = leg
        try:
            try:
                await self._advance(
                    live, TaskInput.TAKEN, last_agent=agent_id, last_interaction_id=call.id
                )
            except (StoreError, CallbackTaskError):
                # Cancelled while the agent's phone rang (or the store failed): let them go.
                log.info("callback task taken after it was cancelled", extra={"task": live.task.id})
                call.record.event("callback.cancelled", by="before the answer")
                call.disposition = Disposition.FAILED
                leg.hangup()
                self._agent_done(call)
                return
            await self._call_back(live, call, agent_id, leg)
        finally:
            await call.finish()
            self.calls.pop(call.id, None)

    async def _agent_lost(self, live: LiveTask) -> None:
        with contextlib.suppress(StoreError, CallbackTaskError):
            await self._advance(live, TaskInput.AGENT_LOST)

    async def _call_back(self, live: LiveTask, call: Call, agent_id: str, leg: SipLeg) -> None:
        task = live.task
        # The reconciler counts the agent as talking while they hear the message and the
        # customer's phone rings, though nothing is bridged yet.
        call.busy_agents = [agent_id]
        iid = call.id
        call.record.post(lambda h: h.add_agent(iid, agent_id, AgentStage.ANSWERED))
        call.record.event("callback.message_played", recording=task.recording)
        await first_of(asyncio.ensure_future(self._play_message(leg, task)), leg.ended)
        if leg.ended.done():
            call.record.event("callback.agent_left", during="message")
            call.disposition = Disposition.FAILED
            call.busy_agents = []
            self._agent_done(call)
            await self._agent_lost(live)
            self._schedule_task(live)
            return
        settings = self.center.queues.get(task.queue or "")
        caller_id = settings.caller_id if settings is not None else None
        customer = await self._dial_out(
            call, task.caller, caller_id, CUSTOMER_RING_S, "callback", early_to=leg
        )
        call.busy_agents = []
        if isinstance(customer, str):
            await self._customer_missed(live, call, customer)
            leg.hangup()
            self._agent_done(call)
            return
        call.caller_leg = customer
        await call.bridge(agent_id, leg)
        call.disposition = Disposition.CALLBACK
        with contextlib.suppress(StoreError, CallbackTaskError):
            await self._advance(live, TaskInput.CONNECTED)
        self._drop_task(live)
        await self._thread_event(task, "callback.completed", interaction=call.id, agent=agent_id)
        await call.talk_until_hangup()
        self._agent_done(call)

    async def _play_message(self, leg: SipLeg, task: CallbackTask) -> None:
        settings = self.center.queues.get(task.queue or "")
        language = settings.announce_language if settings is not None else "ja"
        intro = (
            f"{task.caller}様からの留守番電話です。"
            if language == "ja"
            else f"A voicemail from {' '.join(task.caller)}."
        )
        items: list[PlayItem] = [Say(intro, language), task.recording]
        try:
            await leg.media.play(items)
        except Exception:  # a missing file must not keep the customer from their callback
            log.exception("could not play the voicemail to the agent", extra={"task": task.id})

    async def _customer_missed(self, live: LiveTask, call: Call, reason: str) -> None:
        task = live.task
        call.disposition = Disposition.FAILED
        try:
            moved = await self._advance(
                live, customer_missed(task.attempts, self._policy(task.queue)), last_error=reason
            )
        except (StoreError, CallbackTaskError):
            log.exception("could not store a missed callback", extra={"task": task.id})
            return
        final = moved.state is TaskState.FAILED
        call.record.event("callback.failed", reason=reason, attempt=moved.attempts, final=final)
        await self._thread_event(
            task,
            "callback.failed" if final else "callback.attempt_failed",
            interaction=call.id,
            reason=reason,
            attempts=moved.attempts,
        )
        if final:
            self._drop_task(live)
        else:
            self._schedule_task(live)  # after the queue's callback_retry_s

    # -- supervisors ----------------------------------------------------------------------
    async def cancel_callback(self, task_id: str, by: str) -> CallbackTask:
        """Cancel a task still waiting (:class:`InvalidStateError` once an agent is being
        rung for it or it is over; :class:`NotFoundError` if there is none)."""
        store = self.callback_tasks
        if store is None:
            raise NotFoundError(f"callback task {task_id} does not exist", id=task_id)
        live = self.live_tasks.get(task_id)
        task = live.task if live is not None else await store.get(task_id)
        if task is None:
            raise NotFoundError(f"callback task {task_id} does not exist", id=task_id)
        if live is None:
            live = LiveTask(task)
        try:
            await self._advance(live, TaskInput.CANCEL, last_error=f"cancelled by {by}")
        except CallbackTaskError:
            raise InvalidStateError(
                f"callback task {task_id} is {task.state}: only a pending task can be cancelled",
                id=task_id,
                state=task.state,
            ) from None
        if live.attempt_id is not None:
            with contextlib.suppress(AcdError):
                self.acd.abandon(live.attempt_id, self._now())
            self._pump()
        call = live.call
        if call is not None:  # rung before, waiting for another agent: that attempt ends
            for leg in list(call.offers.values()):
                leg.hangup()
            call.disposition = Disposition.FAILED
            call.record.event("callback.cancelled", by=by)
            self.calls.pop(call.id, None)
            await call.finish()
        self._drop_task(live)
        await self._thread_event(live.task, "callback.cancelled", by=by, at=utcnow().isoformat())
        return live.task
