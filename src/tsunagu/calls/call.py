"""One conversation: its legs, its flow, its wait in a queue, its bridge — and its record.

A :class:`Call` is the B2BUA's view of what the caller experiences: the inbound leg is
answered and the contact flow runs on it; the ACD's offers become agent legs; the first
agent to answer is bridged to the caller with a stereo recording (caller left, agent
right); when either side hangs up the other is hung up too. Every leg carries the same
interaction id, and everything that happens is written to one interaction record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tsunagu.acd.queues import Call as QueuedCall
from tsunagu.calls import call_events
from tsunagu.calls.flow_driver import FlowDriver, FlowOutcome
from tsunagu.calls.legs import LegEnd, SipLeg, first_of
from tsunagu.calls.record import InteractionLog
from tsunagu.flows.interpreter import (
    FlowEnvironment,
    FlowEvent,
    FlowRun,
    VoicemailRecorded,
    WebhookError,
)
from tsunagu.flows.model import Flow
from tsunagu.media.interface import PlayItem, Recording, Say
from tsunagu.media.sdp import SdpNegotiationError, SessionDescription
from tsunagu.sip.message import SipRequest, make_response
from tsunagu.store.interactions import AgentStage, Disposition, LegRole

if TYPE_CHECKING:
    from tsunagu.calls.controller import CallController

log = logging.getLogger("tsunagu.calls")

#: A caller who hangs up within this many seconds of queueing is a short abandon.
SHORT_ABANDON_S = 5.0
#: Ringing an internal extension gives up after this.
INTERNAL_RING_S = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class Call:
    def __init__(
        self,
        controller: CallController,
        interaction_id: str,
        *,
        direction: str,
        caller: str,
        dialled: str,
    ) -> None:
        self.controller = controller
        self.id = interaction_id
        self.direction = direction
        self.caller_number = caller
        self.dialled = dialled
        self.record = InteractionLog(controller.history, interaction_id)
        self.caller_leg: SipLeg | None = None
        self.agent_leg: SipLeg | None = None
        self.offers: dict[str, SipLeg] = {}
        self.queue: str | None = None
        #: The last queue the flow sent the caller to, even one that refused them (no
        #: agent logged in): whose agents call back a voicemail left after it.
        self.last_queue: str | None = None
        self.queued_at: float | None = None
        self.disposition: Disposition | None = None
        self.recording: Recording | None = None
        self.bridged = asyncio.Event()
        self.leave_queue: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._moh: asyncio.Task[Any] | None = None
        self._leg_count = 0
        self.started_monotonic = time.monotonic()
        self.started_wall = time.time()
        self.callback_requested = False
        #: Agents this call made busy in the ACD by itself (an extension-to-extension
        #: call), released when it ends; queue calls reserve agents through the ACD.
        self.busy_agents: list[str] = []
        self.leg_swapped = asyncio.Event()
        self.on_hold = False
        #: Legs an attended transfer moved to another call (RFC 5589 §7): this call
        #: neither hangs them up nor closes their media (:mod:`.attended_transfer`).
        self.handed_over: list[SipLeg] = []
        #: The contact flow's attributes (live while it runs), for the screen-pop.
        self.attributes: Mapping[str, Any] = {}
        #: Agents this call was offered to, in order (their streams see its later events).
        self.agents_offered: list[str] = []
        self.record.post(
            lambda h: h.start_interaction(
                direction=direction, caller=caller, dialled=dialled, interaction_id=interaction_id
            )
        )

    def new_leg_id(self, role: str) -> str:
        self._leg_count += 1
        return f"{self.id[:24]}-{role[0]}{self._leg_count}"

    def log_leg(self, leg: SipLeg, role: LegRole) -> None:
        iid, leg_id, call_id, peer = self.id, leg.leg_id, leg.call_id, str(leg.peer)
        self.record.post(
            lambda h: h.add_leg(iid, role=role, call_id=call_id, peer=peer, leg_id=leg_id)
        )

    def log_leg_end(self, leg: SipLeg, end: LegEnd) -> None:
        leg_id = leg.leg_id
        answered = datetime.fromtimestamp(leg.answered_wall, UTC) if leg.answered_wall else None
        self.record.post(
            lambda h: h.update_leg(
                leg_id, answered_at=answered, ended_at=utcnow(), end_reason=end.reason
            )
        )

    # -- the inbound leg ----------------------------------------------------------------
    async def answer_caller(
        self, leg: SipLeg, invite: SipRequest, answer: SessionDescription | None = None
    ) -> bool:
        """Answer the caller's INVITE with our SDP (a 488 if no codec fits). ``answer``:
        the SDP already sent in a 183 (early media); the 200 repeats it (RFC 3264 §5)."""
        try:
            if answer is None:
                answer = await leg.media.answer(SessionDescription.parse(invite.body))
        except SdpNegotiationError as exc:
            leg.respond(make_response(invite, 488, exc.reason[:100]))
            self.disposition = Disposition.FAILED
            return False
        except Exception as exc:  # an unreadable offer is the peer's problem too
            log.info("refusing a call with unusable SDP", extra={"error": str(exc)})
            leg.respond(make_response(invite, 488))
            self.disposition = Disposition.FAILED
            return False
        leg.respond(
            make_response(
                invite, 200, body=bytes(answer), extra=[("Content-Type", "application/sdp")]
            )
        )
        return True

    async def run_flow(self, flow: Flow, attributes: dict[str, Any]) -> FlowOutcome | None:
        """Run ``flow`` on the caller's leg until it ends, queues or transfers the caller;
        ``None`` if the caller hung up first."""
        assert self.caller_leg is not None
        center = self.controller.center
        environment = FlowEnvironment(center.hours, center.calendars, center.flows.get)
        run = FlowRun(flow, attributes, environment=environment)
        self.attributes = run.attributes
        driver = FlowDriver(run, self.caller_leg.media, self, self.controller.webhooks, utcnow)
        task = asyncio.get_running_loop().create_task(driver.drive())
        try:
            await first_of(task, self.caller_leg.ended)
            if task.done():
                return task.result()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            run.end("caller_hangup", utcnow())
            self.flow_events(run.pop_events())
            return None
        finally:
            self._record_path(run)

    def _record_path(self, run: FlowRun) -> None:
        """The blocks the caller went through, and the attributes the flow gathered."""
        iid = self.id
        steps = [
            {
                "flow": step.flow,
                "version": step.version,
                "block": step.block,
                "at": step.at.isoformat(),
            }
            for step in run.path
        ]
        attributes = {k: _plain(v) for k, v in run.attributes.items()}
        for step in steps:
            self.record.post(lambda h, step=step: h.update(iid, append_flow_step=step))  # type: ignore[misc]
        self.record.post(lambda h: h.update(iid, set_attributes=attributes))

    # -- FlowHost -------------------------------------------------------------------------
    def flow_events(self, events: list[FlowEvent]) -> None:
        for event in events:
            data = {k: _plain(v) for k, v in _fields(event).items() if k != "at"}
            self.record.event(f"flow.{type(event).__name__}", **data)
            if isinstance(event, WebhookError):
                self.controller.events.publish(call_events.webhook_failed(self, event.reason))

    async def enqueue(self, queue: str) -> str | None:
        return self.controller.enqueue(self, queue)

    async def transfer_to_number(
        self, number: str, caller_id: str | None, timeout_s: float
    ) -> str | None:
        return await self.controller.transfer_to_number(self, number, caller_id, timeout_s)

    async def record_voicemail(
        self, prompt: list[PlayItem], max_seconds: int, queue: str | None = None
    ) -> VoicemailRecorded | None:
        """Record the caller's message until a key, ``max_seconds`` or their hang-up, and
        leave a callback task for ``queue`` (see :mod:`.voicemail_callbacks`)."""
        assert self.caller_leg is not None
        media = self.caller_leg.media
        if prompt:
            await media.play(prompt)
        recording = await media.record(f"{self.id}-voicemail")
        started = time.monotonic()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    media.collect_digits(1, max_seconds, terminator=None), timeout=max_seconds
                )
        finally:
            # Also when the caller hangs up mid-message, the usual way to end one: the flow
            # is cancelled then, but the message is kept and called back all the same.
            path = str(await recording.stop())
            seconds = time.monotonic() - started
            self.disposition = Disposition.VOICEMAIL
            iid = self.id
            self.record.post(
                lambda h: h.update(iid, append_recording={"kind": "voicemail", "path": path})
            )
            self.controller.voicemail_left(self, path, queue)
        return VoicemailRecorded(path, seconds)

    # -- waiting in a queue ---------------------------------------------------------------
    def start_music(self) -> None:
        assert self.caller_leg is not None
        items = self.controller.music_on_hold(self.queue)
        self._moh = asyncio.get_running_loop().create_task(
            self.caller_leg.media.play(items, loop=True)
        )

    def stop_music(self) -> None:
        if self._moh is not None:
            self._moh.cancel()
            self._moh = None
        if self.caller_leg is not None:
            self.caller_leg.media.stop_playback()

    async def wait_in_queue(self) -> None:
        """Until the caller is bridged and the conversation ends, or they leave."""
        assert self.caller_leg is not None
        caller_gone = self.caller_leg.ended
        announcer = asyncio.get_running_loop().create_task(self._announce())
        try:
            await first_of(caller_gone, self.leave_queue)
        finally:
            announcer.cancel()
        if self.callback_requested:  # the caller hung up on purpose: wait for our callback
            await self.leave_queue
            return
        if caller_gone.done() and not self.bridged.is_set():
            self.controller.abandon(self)
            waited = time.monotonic() - (self.queued_at or time.monotonic())
            self.disposition = (
                Disposition.SHORT_ABANDONED if waited < SHORT_ABANDON_S else Disposition.ABANDONED
            )
            self.record.event("queue.abandoned", queue=self.queue, waited_s=round(waited, 1))

    async def _announce(self) -> None:
        """Every ``announce_every_s``: position in the queue and estimated wait, then the
        music again (stopped for good once an agent is bridged)."""
        settings = self.controller.center.queues.get(self.queue or "")
        if settings is None or settings.announce_every_s <= 0 or self.caller_leg is None:
            return
        while True:
            await asyncio.sleep(settings.announce_every_s)
            if self.bridged.is_set() or self.leave_queue.done():
                return
            text = self.controller.position_text(self, settings.announce_language)
            if text is None:
                continue
            if settings.offer_callback:
                text += (
                    " 折り返しお電話をご希望の方は1を押してください。"
                    if settings.announce_language == "ja"
                    else " To be called back instead, press 1."
                )
            self.stop_music()
            self.record.event("queue.announced", text=text)
            outcome = await self.caller_leg.media.play(
                [Say(text, settings.announce_language)], barge_in=settings.offer_callback
            )
            if self.bridged.is_set() or self.leave_queue.done():
                return
            wants_callback = outcome.digit == "1" and settings.offer_callback
            if wants_callback and await self.controller.request_callback(self):
                return
            self.start_music()

    # -- agent legs -----------------------------------------------------------------------
    async def connect_agent(self, agent_id: str, leg: SipLeg) -> bool:
        """Ring ``agent_id`` on ``leg``; on answer bridge them to the caller.

        Returns whether the agent took the call.
        """
        self.offers[agent_id] = leg
        self.log_leg(leg, LegRole.AGENT)
        iid = self.id
        self.record.post(lambda h: h.add_agent(iid, agent_id, AgentStage.OFFERED))
        response = await leg.wait_answer()
        self.offers.pop(agent_id, None)
        if response is None:
            return False
        if not self.controller.agent_answered(self, agent_id):
            leg.hangup()  # the offer was withdrawn while the answer was on its way
            return False
        await self.bridge(agent_id, leg)
        return True

    async def bridge(self, agent_id: str, leg: SipLeg) -> None:
        assert self.caller_leg is not None
        self.stop_music()
        self.agent_leg = leg
        if self.recording is None or self.recording.closed:
            self.recording = await self.controller.media.recorder(self.id)
        await self.caller_leg.media.bridge(leg.media, self.recording)
        self.bridged.set()
        self.disposition = Disposition.ANSWERED
        waited = time.monotonic() - self.queued_at if self.queued_at else None
        iid, path = self.id, str(self.recording.path)
        self.record.post(lambda h: h.add_agent(iid, agent_id, AgentStage.ANSWERED))
        self.record.post(
            lambda h: h.update(
                iid,
                answered_at=utcnow(),
                wait_seconds=waited,
                append_recording={"kind": "call", "path": path, "left": "caller", "right": "agent"},
            )
        )
        self.record.event("bridged", agent=agent_id)
        self.controller.events.publish(call_events.answered(self, agent_id))
        log.info("call bridged", extra={"interaction": iid, "agent": agent_id})

    async def talk_until_hangup(self) -> None:
        """Both legs up: when one ends, end the other. A transfer swaps the agent's leg
        (:meth:`swap_agent_leg`) without ending the conversation."""
        limit = self.controller.settings.calls.max_duration_s
        while True:
            assert self.caller_leg is not None and self.agent_leg is not None
            caller, agent = self.caller_leg, self.agent_leg
            remaining = max(0.0, limit - (time.monotonic() - self.started_monotonic))
            swapped = asyncio.ensure_future(self.leg_swapped.wait())
            try:
                await asyncio.wait_for(first_of(caller.ended, agent.ended, swapped), remaining)
            except TimeoutError:
                self.record.event("hangup", by="max_duration", limit_s=limit)
                log.warning("maximum call duration reached", extra={"interaction": self.id})
                caller.hangup()
                agent.hangup()
                return
            finally:
                swapped.cancel()
            if self.leg_swapped.is_set() and not caller.ended.done():
                self.leg_swapped.clear()
                continue
            break
        first, other = (caller, agent) if caller.ended.done() else (agent, caller)
        self.record.event("hangup", by=first.role)
        if other in self.handed_over:
            return
        other.hangup()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(other.ended), timeout=10)

    async def set_hold(self, held: bool) -> None:
        """The agent's phone put the customer on hold (a re-offer that will not receive,
        RFC 3264 §8.4) or took them off it. A held customer hears the queue's music
        instead of dead air, which callers take for a dropped line; resume bridges the
        two legs again with the same recording, so the hold is silence in one file."""
        if held == self.on_hold or self.caller_leg is None or self.agent_leg is None:
            return
        self.on_hold = held
        if held:
            await self.caller_leg.media.unbridge()
            self.start_music()
        else:
            self.stop_music()
            await self.caller_leg.media.bridge(self.agent_leg.media, self.recording)
        self.record.event("hold" if held else "resume", by="agent")
        log.info("call held" if held else "call resumed", extra={"interaction": self.id})

    async def swap_agent_leg(
        self, new: SipLeg, target: str, *, kind: str = "blind"
    ) -> SipLeg | None:
        """A transfer: the caller now talks to ``new``; the recording goes on in the same
        file. Returns the old agent leg, which the caller of this hangs up."""
        assert self.caller_leg is not None
        old = self.agent_leg
        await self.caller_leg.media.unbridge()
        self.stop_music()  # a transfer is often made from hold: the new agent is not holding
        self.on_hold = False
        self.agent_leg = new
        await self.caller_leg.media.bridge(new.media, self.recording)
        if old is not None:
            self.offers[f"transferred:{old.leg_id}"] = old  # closed with the call
        self.leg_swapped.set()
        self.record.event("transferred", to=target)
        self.controller.events.publish(
            call_events.transferred(self, old.agent_id if old else None, target)
        )
        iid = self.id
        transfer = {
            "to": target,
            "from": old.agent_id if old is not None else None,
            "kind": kind,
            "attended": kind == "attended",
        }
        self.record.post(lambda h: h.update(iid, append_transfer=transfer))
        return old

    async def finish(self) -> None:
        """Close media, the recording and the record (the one place a call ends)."""
        if self.recording is not None and not self.recording.closed:
            with contextlib.suppress(Exception):
                await self.recording.stop()
        for leg in [self.caller_leg, self.agent_leg, *self.offers.values()]:
            if leg is None or leg in self.handed_over:
                continue
            leg.close_timers()
            with contextlib.suppress(Exception):
                await leg.media.close()
            end = leg.ended.result() if leg.ended.done() else LegEnd("call ended", by="local")
            self.log_leg_end(leg, end)
        disposition = self.disposition or Disposition.FAILED
        iid = self.id
        self.record.post(lambda h: h.finish(iid, disposition))
        self.controller.events.publish(call_events.ended(self, disposition.value))
        await self.record.close()
        log.info("call ended", extra={"interaction": iid, "disposition": disposition.value})


def _fields(event: object) -> dict[str, Any]:
    slots = getattr(type(event), "__slots__", ())
    return {name: getattr(event, name) for name in slots}


def _plain(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def queued_call(call: Call, queue: str, preferred: str | None) -> QueuedCall:
    return QueuedCall(call.id, queue, preferred_agent_id=preferred)
