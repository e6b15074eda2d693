"""Call control: the B2BUA that routes every new call and owns the calls in progress.

It is the SIP core's transaction user (:class:`~tsunagu.sip.core.CallControl`): the core
authenticates and hands over; this module decides. A call from a carrier trunk is looked
up by the number dialled (404 if it is not ours) and its contact flow runs; a call from an
agent's phone to another extension rings that agent (the internal call the on-call
engineer tests first, REQUIREMENTS §1); a call to one of our numbers from a phone runs
that number's flow too. Calls queued by a flow are routed by the ACD engine, whose offers
become INVITEs to the agents' registered phones.

Agent presence follows registrations: a phone registering logs its agent in (available),
the last binding going away is ``registration_lost`` (REQUIREMENTS §3: logged in =
available, disconnected = away).

Transfers, internal calls, queued callbacks and voicemail callback tasks live in their own
modules as mixins of this class (:mod:`.transfer`, :mod:`.internal`, :mod:`.callbacks`,
:mod:`.voicemail_callbacks`; :mod:`.host` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from tsunagu.acd.engine import (
    AcdEngine,
    CallbackOffered,
    CancelOffer,
    MaxWaitExceeded,
    OfferCall,
    OverflowActivated,
    OverflowReleased,
    QueueSnapshot,
)
from tsunagu.acd.presence import AcdError, AgentState, AgentStateChanged, PresenceEvent
from tsunagu.acd.reconciler import AgentSnapshot, Drift, Repair, plan_repairs
from tsunagu.calls import call_events
from tsunagu.calls.call import Call, queued_call, utcnow
from tsunagu.calls.callbacks import CallbackControl
from tsunagu.calls.center_swap import swap_center
from tsunagu.calls.internal import InternalCalls
from tsunagu.calls.legs import Legs, SipLeg, reject
from tsunagu.calls.numbers import to_national
from tsunagu.calls.record import QueuedWriter
from tsunagu.calls.transfer import TransferControl
from tsunagu.calls.trunk_registration import TrunkRegistrations
from tsunagu.calls.voicemail_callbacks import LiveTask, VoicemailCallbacks
from tsunagu.calls.webhooks import WebhookClient
from tsunagu.center import Center
from tsunagu.events import EventBus
from tsunagu.flows.model import Flow
from tsunagu.logs import call_context
from tsunagu.media.interface import MediaEngine, PlayItem
from tsunagu.media.sdp import SessionDescription, offers_hold
from tsunagu.settings import Settings
from tsunagu.sip.core import Caller, SipCore
from tsunagu.sip.dialog import build_invite
from tsunagu.sip.headers import NameAddress
from tsunagu.sip.invite_events import InDialogRequest, ReinviteReceived
from tsunagu.sip.message import SipRequest, SipResponse, make_response
from tsunagu.sip.peer import Peer
from tsunagu.sip.registrar import BindingChange, Registrar
from tsunagu.sip.uri import SipUri, parse_uri
from tsunagu.store.agent_states import AgentStates
from tsunagu.store.callback_tasks import CallbackTasks
from tsunagu.store.history import History
from tsunagu.store.interactions import Disposition, LegRole

log = logging.getLogger("tsunagu.calls")

#: A tone for callers waiting when a queue names no music (a soft 425 Hz is the
#: Japanese ringback frequency; any WAV can replace it via ``music_on_hold``).
DEFAULT_HOLD_PROMPT = "hold.wav"


class CallController(TransferControl, InternalCalls, CallbackControl, VoicemailCallbacks):
    def __init__(
        self,
        settings: Settings,
        *,
        center: Center,
        core: SipCore,
        registrar: Registrar,
        media: MediaEngine,
        history: History | None,
        webhooks: WebhookClient,
        agent_states: AgentStates | None = None,
        events: EventBus | None = None,
        callback_tasks: CallbackTasks | None = None,
    ) -> None:
        self.settings = settings
        self.center = center
        self.core = core
        self.registrar = registrar
        self.media = media
        self.history = history
        self.webhooks = webhooks
        #: Voicemail callback tasks (:mod:`.voicemail_callbacks`): the store, the tasks this
        #: process works on (by task id) and their current ACD entries (by attempt id).
        self.callback_tasks = callback_tasks
        self.live_tasks: dict[str, LiveTask] = {}
        self.task_attempts: dict[str, LiveTask] = {}
        #: Every presence move, for the time-per-state report (one writer keeps order).
        self.state_log = QueuedWriter(agent_states, "agent state", {})
        #: Domain events (docs/ARCHITECTURE.md "Events"); a bus nobody subscribes to is free.
        self.events = events if events is not None else EventBus()
        self.legs = Legs(core)
        self.calls: dict[str, Call] = {}
        self.acd: AcdEngine = center.build_acd(self._now())
        self._acd_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self.local_host = settings.server.bind
        self.local_port = settings.server.sip_port
        self.agent_ids = {a.id for a in settings.agents}
        self.registrations: TrunkRegistrations | None = None
        self._reg_timer: asyncio.TimerHandle | None = None

    # -- trunks we register to ------------------------------------------------------------
    def start_trunks(self) -> None:
        """Register every ``kind: register`` trunk at its carrier (RFC 3261 §10.2)."""

        def send(request: SipRequest, transport: str, host: str, port: int) -> str:
            return self.core.send_request(request, Peer(transport, host, port), self._now())

        self.registrations = TrunkRegistrations(
            self.center.trunks.values(),
            self.local_host,
            self.local_port,
            send,
            user_agent=self.core.server_header,
        )
        self.registrations.start(self._now())
        self._trunk_events()

    async def stop_trunks(self, grace_s: float = 2.0) -> None:
        registrations = self.registrations
        if registrations is None or not len(registrations):
            return
        registrations.stop(self._now())
        deadline = self._now() + grace_s
        # The un-REGISTER's answer arrives through on_response; poll briefly for it.
        while registrations.stopping() and self._now() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def trunk_status(self) -> dict[str, Any]:
        if self.registrations is None:
            return {}
        return dict(self.registrations.status())

    def _trunk_events(self) -> None:
        registrations = self.registrations
        if registrations is None:
            return
        for event in registrations.pop_events():
            level = logging.WARNING if event.new.value == "failed" else logging.INFO
            log.log(
                level,
                "trunk registration",
                extra={
                    "trunk": event.trunk,
                    "from": event.old.value,
                    "to": event.new.value,
                    "reason": event.reason,
                    "status": event.status,
                },
            )
        if self._reg_timer is not None:
            self._reg_timer.cancel()
            self._reg_timer = None
        when = registrations.next_timer()
        if when is not None:
            self._reg_timer = asyncio.get_running_loop().call_at(when, self._trunk_timer)

    def _trunk_timer(self) -> None:
        self._reg_timer = None
        if self.registrations is not None:
            self.registrations.handle_timer(self._now())
            self._trunk_events()

    # -- plumbing -------------------------------------------------------------------------
    @staticmethod
    def _now() -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    def contact(self, transport: str = "UDP") -> str:
        suffix = ";transport=tcp" if transport.upper() == "TCP" else ""
        return f"<sip:tsunagu@{self.local_host}:{self.local_port}{suffix}>"

    def _new_call(
        self, direction: str, caller: str, dialled: str, interaction_id: str | None = None
    ) -> Call:
        interaction_id = interaction_id or str(uuid.uuid4())
        call = Call(self, interaction_id, direction=direction, caller=caller, dialled=dialled)
        self.calls[interaction_id] = call
        return call

    def _leg(self, call: Call, role: str, peer: Peer) -> SipLeg:
        return SipLeg(
            self.legs,
            leg_id=call.new_leg_id(role),
            role=role,  # type: ignore[arg-type]
            peer=peer,
            on_request=self._in_dialog,
        )

    async def close(self) -> None:
        self.stop_callback_timers()
        for call in list(self.calls.values()):
            for leg in (call.caller_leg, call.agent_leg, *call.offers.values()):
                if leg is not None:
                    leg.hangup()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self.state_log.close()

    # -- CallControl: what the core hands over -----------------------------------------
    def on_invite(
        self, tx_id: str, request: SipRequest, peer: Peer, caller: Caller, now: float
    ) -> None:
        uri = request.uri
        dialled = uri.user if isinstance(uri, SipUri) and uri.user else ""
        from_uri = request.from_.uri
        caller_number = from_uri.user if isinstance(from_uri, SipUri) and from_uri.user else ""
        if self._invite_replaces(tx_id, request, peer, caller, now):  # RFC 3891
            return
        if caller.kind == "agent" and dialled in self.agent_ids:
            call = self._new_call("internal", caller.name, dialled)
            self.events.publish(call_events.started(call, caller, None))
            leg = self._caller_leg(call, tx_id, request, peer)
            self._spawn(self._run_internal(call, leg, request, dialled), f"internal-{call.id}")
            return
        number = self.center.number(dialled) if dialled else None
        if number is None:
            log.info(
                "call to a number we do not serve",
                extra={
                    "dialled": dialled,
                    "caller": caller_number,
                    "via": f"{caller.kind}:{caller.name}",
                },
            )
            reject(self.core, tx_id, request, 404, now, reason="Number not in service")
            return
        flow = self.center.flows[number.flow]
        direction = "inbound" if caller.kind == "trunk" else "internal"
        call = self._new_call(direction, caller_number or caller.name, to_national(dialled))
        call.record.event(
            "call.received",
            trunk=caller.name if caller.kind == "trunk" else None,
            flow=flow.name,
            peer=str(peer),
        )
        self.events.publish(call_events.started(call, caller, flow.name))
        leg = self._caller_leg(call, tx_id, request, peer)
        self._spawn(self._run_inbound(call, leg, request, flow), f"inbound-{call.id}")

    def on_in_dialog(
        self, tx_id: str, request: SipRequest, peer: Peer, now: float
    ) -> SipResponse | None:
        leg = self.legs.dialogs.match_request(request)
        if leg is None or leg.session is None:
            return make_response(request, 481)
        leg.process(leg.session.receive_request(tx_id, request, now))
        return None

    def on_cancel(self, tx_id: str, request: SipRequest, invite_tx_id: str, now: float) -> None:
        leg = self.legs.server_invites.get(invite_tx_id)
        if leg is None or leg.session is None:
            # The INVITE was already answered with a final error: 200, no effect (§9.2).
            self.core.respond(tx_id, make_response(request, 200), now)
            return
        leg.process(leg.session.receive_cancel(tx_id, request, now, invite_tx_id=invite_tx_id))

    def on_ack(self, request: SipRequest, peer: Peer, now: float) -> None:
        leg = self.legs.dialogs.match_request(request)
        if leg is not None and leg.session is not None:
            leg.process(leg.session.receive_ack(request, now))

    def on_response(self, tx_id: str, response: SipResponse, now: float) -> None:
        if self.registrations is not None and self.registrations.owns(tx_id):
            self.registrations.on_response(tx_id, response, now)
            self._trunk_events()
            return
        leg = self.legs.client_txs.get(tx_id)
        if leg is None:
            return
        method = response.cseq.method
        if method == "CANCEL":
            return  # the INVITE's own answer (487) is what matters
        if method == "INVITE" and leg.uac is not None and not leg.uac.done:
            leg.process(leg.uac.receive_response(response, now))
        elif leg.session is not None:
            leg.process(leg.session.receive_response(response, now))
        if response.status >= 200 and method != "INVITE":
            self.legs.client_txs.pop(tx_id, None)

    def on_stray_response(self, response: SipResponse, peer: Peer, now: float) -> None:
        leg = self.legs.dialogs.match_pending(response)
        if leg is not None and leg.uac is not None:
            leg.process(leg.uac.receive_response(response, now))
            return
        leg = self.legs.dialogs.match_response(response)
        if leg is not None and leg.session is not None:
            leg.process(leg.session.receive_response(response, now))

    def on_timeout(self, tx_id: str, timer: str, now: float) -> None:
        if self.registrations is not None and self.registrations.owns(tx_id):
            self.registrations.on_timeout(tx_id, now)
            self._trunk_events()
            return
        leg = self.legs.client_txs.pop(tx_id, None)
        if leg is None:
            return
        if leg.uac is not None and not leg.uac.done and timer == "B":
            leg.process(leg.uac.failed(now))
        elif leg.session is not None and timer in ("B", "F"):
            leg.process(leg.session.transaction_failed("BYE" if timer == "F" else "INVITE", now))

    def _in_dialog(self, leg: SipLeg, event: InDialogRequest | ReinviteReceived) -> None:
        if isinstance(event, ReinviteReceived):
            self._spawn(self._reinvite(leg, event), f"reinvite-{leg.leg_id}")
            return
        request = event.request
        now = self._now()
        if request.method == "REFER":
            self._refer(leg, event.tx_id, request)
            return
        if request.method == "INFO" and leg.has_media:
            try:
                leg.media.feed_info_dtmf(request.content_type or "", request.body)
                status = 200
            except Exception:
                status = 415
            self.core.respond(event.tx_id, make_response(request, status), now)
            return
        self.core.respond(event.tx_id, make_response(request, 501), now)

    async def _reinvite(self, leg: SipLeg, event: ReinviteReceived) -> None:
        """Hold and resume (§14, RFC 3264 §8.4): answer the new offer from the leg's media."""
        request = event.request
        try:
            offer = SessionDescription.parse(request.body)
            answer = await leg.media.update_remote(offer)
        except Exception as exc:
            log.info("re-INVITE refused", extra={"error": str(exc)})
            leg.respond(make_response(request, 488))
            return
        leg.respond(
            make_response(
                request, 200, body=bytes(answer), extra=[("Content-Type", "application/sdp")]
            )
        )
        call = self._call_of(leg)
        if call is not None and leg is call.agent_leg and call.bridged.is_set():
            await call.set_hold(offers_hold(offer))

    # -- inbound calls ------------------------------------------------------------------
    def _caller_leg(self, call: Call, tx_id: str, request: SipRequest, peer: Peer) -> SipLeg:
        leg = self._leg(call, "caller", peer)
        try:
            leg.accept_invite(tx_id, request, self.contact(peer.transport))
        except Exception:
            reject(self.core, tx_id, request, 400, self._now(), reason="Missing Contact")
            raise
        call.caller_leg = leg
        return leg

    async def _run_inbound(self, call: Call, leg: SipLeg, invite: SipRequest, flow: Flow) -> None:
        with call_context(invite.call_id):
            try:
                leg.media = await self.media.open_leg(call.id, leg.leg_id)
                call.log_leg(leg, LegRole.CALLER)
                if not await call.answer_caller(leg, invite):
                    return
                attributes = {"caller": call.caller_number, "dialled": call.dialled}
                outcome = await call.run_flow(flow, attributes)
                if outcome is None:
                    call.disposition = call.disposition or Disposition.ABANDONED
                elif outcome.kind == "hangup":
                    if call.disposition is None:
                        after_hours = "after_hours" in outcome.detail or "closed" in outcome.detail
                        call.disposition = (
                            Disposition.AFTER_HOURS if after_hours else Disposition.COMPLETED
                        )
                    call.record.event("flow.hangup", reason=outcome.detail)
                    leg.hangup()
                elif outcome.kind == "queued":
                    await call.wait_in_queue()
                    if call.bridged.is_set():
                        await call.talk_until_hangup()
                        self._agent_done(call)
                    elif not leg.ended.done():  # max wait with no fallback, or refused
                        leg.hangup()
                elif outcome.kind == "transferred":
                    await call.talk_until_hangup()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(leg.ended), timeout=10)
            finally:
                await call.finish()
                self.calls.pop(call.id, None)

    def use_center(self, center: Center) -> list[str]:
        """Route new calls with ``center`` (rebuilt from the store); what waits for a
        restart is returned (see :mod:`tsunagu.calls.center_swap`)."""
        waits = swap_center(self, center, self._now())
        self._pump()
        return waits

    # -- queues and the ACD -------------------------------------------------------------
    def enqueue(self, call: Call, queue: str) -> str | None:
        """Put ``call`` in ``queue``; a refusal reason if nobody could ever answer it."""
        settings = self.center.queues.get(queue)
        if settings is None:
            return f"unknown queue {queue!r}"
        call.last_queue = queue
        if not self._anyone_on_duty(queue):
            return "no agent of the queue is logged in"
        call.queue = queue
        call.queued_at = time.monotonic()
        preferred = self.center.rep_for(call.caller_number)
        self.acd.enqueue(queued_call(call, queue, preferred), self._now())
        iid = call.id
        call.record.post(lambda h: h.update(iid, queue=queue, queued_at=utcnow()))
        call.record.event("queue.entered", queue=queue, preferred_agent=preferred)
        call.start_music()
        self._pump()
        return None

    def _anyone_on_duty(self, queue: str) -> bool:
        settings = self.center.queues[queue]
        members = set(settings.agents)
        teams = set(settings.teams)
        for agent in self.settings.agents:
            if agent.team in teams:
                members.add(agent.id)
        return any(self.acd.agent(m).state is not AgentState.OFFLINE for m in members)

    def abandon(self, call: Call) -> None:
        with contextlib.suppress(AcdError):
            self.acd.abandon(call.id, self._now())
        for leg in list(call.offers.values()):
            leg.hangup()
        self._pump()

    def agent_answered(self, call: Call, agent_id: str) -> bool:
        took = self.acd.agent_answered(agent_id, call.id, self._now())
        self._pump()
        if took and not call.callback_requested and not call.leave_queue.done():
            call.leave_queue.set_result("bridged")
        return took

    def _agent_done(self, call: Call) -> None:
        if call.agent_leg is None:
            return
        agent_id = call.agent_leg.agent_id
        with contextlib.suppress(AcdError):
            self.acd.call_ended(agent_id, self._now())
        self._pump()

    def position_text(self, call: Call, language: str) -> str | None:
        """ "You are caller number 2; about 3 minutes" for a waiting caller."""
        try:
            position = self.acd.position(call.id)
            wait = self.acd.estimated_wait(call.id)
        except AcdError:
            return None
        minutes = max(1, round(wait / 60)) if wait is not None else None
        if language == "ja":
            text = f"ただいま{position}番目にお待ちいただいております。"
            if minutes is not None:
                text += f"おおよそ{minutes}分でおつなぎいたします。"
            return text
        text = f"You are caller number {position}."
        if minutes is not None:
            text += f" The estimated wait is about {minutes} minute{'s' if minutes > 1 else ''}."
        return text

    def music_on_hold(self, queue: str | None) -> list[PlayItem]:
        settings = self.center.queues.get(queue or "")
        if settings is not None and settings.music_on_hold is not None:
            path = settings.music_on_hold
            return [path if path.is_absolute() else self.settings.base_dir / path]
        return [DEFAULT_HOLD_PROMPT]

    def _pump(self) -> None:
        """Act on what the ACD engine decided, then re-arm its timer."""
        for event in self.acd.pop_events():
            if isinstance(event, OfferCall):
                call = self.calls.get(event.call_id)
                if call is not None:
                    self._spawn(self._offer(call, event.agent_id), f"offer-{event.agent_id}")
            elif isinstance(event, CancelOffer):
                call = self.calls.get(event.call_id)
                leg = call.offers.get(event.agent_id) if call is not None else None
                if leg is not None:
                    leg.hangup()
            elif isinstance(event, MaxWaitExceeded):
                call = self.calls.get(event.call_id)
                if call is not None:
                    call.record.event("queue.max_wait", waited_s=round(event.waited_s, 1))
                    self._spawn(self._fallback(call), f"fallback-{call.id}")
            elif isinstance(event, AgentStateChanged):
                self._record_state(event)
                log.info(
                    "agent state",
                    extra={
                        "agent": event.agent_id,
                        "from": event.old.value,
                        "to": event.new.value,
                        "reason": event.reason,
                    },
                )
                self.events.publish(call_events.agent_state(event))
            elif isinstance(event, OverflowActivated | OverflowReleased):
                # Surge playbook (REQUIREMENTS §5 item 13): every join and release is logged.
                what = "activated" if isinstance(event, OverflowActivated) else "released"
                log.warning(
                    f"overflow group {what}",
                    extra={
                        "queue": event.queue_id,
                        "group": event.group_id,
                        "reason": event.reason,
                        "manual": event.manual,
                    },
                )
            elif isinstance(event, CallbackOffered) and not self._task_offered(event):
                call = self.calls.get(event.call_id)
                if call is not None:
                    self._spawn(
                        self._callback(call, event.agent_id, event.callback_number),
                        f"callback-{event.agent_id}",
                    )
        when = self.acd.next_timer()
        if self._acd_timer is not None:
            self._acd_timer.cancel()
            self._acd_timer = None
        if when is not None:
            self._acd_timer = asyncio.get_running_loop().call_at(when, self._acd_fire)

    def _record_state(self, event: AgentStateChanged) -> None:
        agent, state, reason, when = event.agent_id, event.new.value, event.reason, utcnow()
        self.state_log.post(lambda s: s.record(agent, state, reason, when))

    def _acd_fire(self) -> None:
        self._acd_timer = None
        self.acd.handle_timer(self._now())
        self._pump()

    async def _fallback(self, call: Call) -> None:
        queue = self.center.queues.get(call.queue or "")
        call.stop_music()
        flow = self.center.flows.get(queue.fallback_flow) if queue and queue.fallback_flow else None
        if flow is None or call.caller_leg is None:
            if not call.leave_queue.done():
                call.leave_queue.set_result("max_wait")
            return
        outcome = await call.run_flow(flow, {"caller": call.caller_number})
        if (outcome is None or outcome.kind != "queued") and not call.leave_queue.done():
            call.leave_queue.set_result("fallback")

    async def _offer(self, call: Call, agent_id: str) -> None:
        leg = await self._ring_agent(call, agent_id)
        if leg is None:
            self._no_answer(call, agent_id)
            return
        took = await call.connect_agent(agent_id, leg)
        if not took:
            self._no_answer(call, agent_id)

    def _no_answer(self, call: Call, agent_id: str) -> None:
        with contextlib.suppress(AcdError):
            self.acd.agent_no_answer(agent_id, call.id, self._now())
        self._pump()

    async def _ring_agent(self, call: Call, agent_id: str) -> SipLeg | None:
        """INVITE the agent's registered phone (its newest binding)."""
        bindings = self.registrar.lookup(agent_id, time.time())
        if not bindings:
            return None
        binding = bindings[0]
        peer = Peer(binding.source_transport, binding.source_host, binding.source_port)
        leg = self._leg(call, "agent", peer)
        leg.agent_id = agent_id
        leg.media = await self.media.open_leg(call.id, leg.leg_id)
        offer = await leg.media.offer()
        display = call.caller_number or "anonymous"
        invite = build_invite(
            parse_uri(binding.contact),
            from_=NameAddress(SipUri(self.local_host, user=display or None), display),
            to=NameAddress(SipUri(self.local_host, user=agent_id)),
            local_contact=NameAddress.parse(self.contact(binding.source_transport)),
            sent_by=(self.local_host, self.local_port),
            transport=binding.source_transport,
            body=bytes(offer),
            content_type="application/sdp",
            extra=[("X-Tsunagu-Interaction", call.id)],
        )
        leg.send_invite(invite)
        self.events.publish(call_events.offered(call, agent_id))
        return leg

    # -- presence from registrations ----------------------------------------------------
    def on_binding_change(self, change: BindingChange) -> None:
        agent_id = change.aor
        if agent_id not in self.agent_ids:
            return
        now = self._now()
        live = self.registrar.lookup(agent_id, time.time())
        state = self.acd.agent(agent_id).state
        with contextlib.suppress(AcdError):
            if live and state is AgentState.OFFLINE:
                self.acd.login(agent_id, now)
            elif not live and state is not AgentState.OFFLINE:
                self.acd.set_agent_state(agent_id, PresenceEvent.REGISTRATION_LOST, now)
        self._pump()

    def reconcile(self) -> list[Repair]:
        """Compare every agent's state with SIP and the calls; repair and log any drift."""
        now = self._now()
        wall = time.time()
        snapshots = [
            AgentSnapshot(
                a.agent_id, a.state, a.reason, a.offer_call_id, a.current_call_id, a.state_since
            )
            for a in (self.acd.agent(agent_id) for agent_id in sorted(self.agent_ids))
        ]
        registered = {a for a in self.agent_ids if self.registrar.lookup(a, wall)}
        ringing = {(agent, call.id) for call in self.calls.values() for agent in call.offers}
        talking = {
            (call.agent_leg.agent_id, call.id)
            for call in self.calls.values()
            if call.agent_leg is not None and call.bridged.is_set()
        } | {(agent, call.id) for call in self.calls.values() for agent in call.busy_agents}
        repairs = plan_repairs(snapshots, registered, ringing, talking, now=now)
        for repair in repairs:
            log.warning(
                "presence repaired",
                extra={
                    "agent": repair.agent_id,
                    "drift": repair.drift.value,
                    "call": repair.call_id,
                },
            )
            with contextlib.suppress(AcdError):
                if repair.drift is Drift.STALE_RESERVATION and repair.call_id:
                    self.acd.agent_no_answer(repair.agent_id, repair.call_id, now)
                elif repair.drift is Drift.STALE_CALL:
                    self.acd.call_ended(repair.agent_id, now)
                elif repair.drift is Drift.NOT_REGISTERED:
                    self.acd.set_agent_state(repair.agent_id, PresenceEvent.REGISTRATION_LOST, now)
                elif repair.drift is Drift.REGISTERED_AGAIN:
                    self.acd.set_agent_state(
                        repair.agent_id, PresenceEvent.REGISTRATION_RESTORED, now
                    )
        if repairs:
            self._pump()
        return repairs

    # -- for the REST API -------------------------------------------------------------
    def agents_view(self) -> list[dict[str, Any]]:
        names = {a.id: (a.name, a.team) for a in self.settings.agents}
        names.update({a: ("", None) for a in self.agent_ids - names.keys()})  # deleted live
        wall, mono = time.time(), self._now()
        out = []
        for agent_id in sorted(self.agent_ids):
            agent = self.acd.agent(agent_id)
            since = datetime.fromtimestamp(wall - (mono - agent.state_since), UTC)
            out.append(
                {
                    "id": agent_id,
                    "name": names[agent_id][0],
                    "team": names[agent_id][1],
                    "state": agent.state.value,
                    "reason": agent.reason,
                    "since": since.isoformat(),
                }
            )
        return out

    def set_agent_state(self, agent_id: str, state: str, reason: str | None) -> None:
        """An operator's or agent's own change (API): available, away (with reason), offline."""
        if agent_id not in self.agent_ids:
            raise KeyError(agent_id)
        now = self._now()
        try:
            if state == "available":
                if self.acd.agent(agent_id).state is AgentState.OFFLINE:
                    self.acd.login(agent_id, now)
                else:
                    self.acd.set_available(agent_id, now)
            elif state == "away":
                self.acd.set_away(agent_id, reason or "away", now)
            elif state == "offline":
                self.acd.logout(agent_id, now)
            else:
                raise ValueError(f"unknown state {state!r}")
        except AcdError as exc:
            raise ValueError(str(exc)) from None
        self._pump()

    def queue_snapshots(self) -> list[QueueSnapshot]:
        """Live figures of every queue (the ``queue.stats`` event, wallboards)."""
        now = self._now()
        return [self.acd.queue_snapshot(queue_id, now) for queue_id in sorted(self.center.queues)]

    def calls_view(self) -> list[dict[str, Any]]:
        out = []
        for call in self.calls.values():
            state = "talking" if call.bridged.is_set() else "queued" if call.queue else "in_flow"
            out.append(
                {
                    "interaction_id": call.id,
                    "caller": call.caller_number,
                    "dialled": call.dialled,
                    "queue": call.queue,
                    "agent": call.agent_leg.agent_id if call.agent_leg else None,
                    "state": state,
                    "started_at": datetime.fromtimestamp(call.started_wall, UTC).isoformat(),
                }
            )
        return out

    def set_overflow(self, queue_id: str, group_id: str, active: bool, actor: str) -> None:
        """A supervisor brings an overflow group in (or releases it) by hand."""
        settings = self.center.queues.get(queue_id)
        if settings is None or group_id not in {g.id for g in settings.overflow}:
            raise KeyError(group_id)
        now = self._now()
        try:
            if active:
                self.acd.activate_overflow(queue_id, group_id, now, actor)
            else:
                self.acd.release_overflow(queue_id, group_id, now, actor)
        except AcdError as exc:
            raise ValueError(str(exc)) from None
        self._pump()

    def transfer_call(self, interaction_id: str, target: str) -> bool:
        """Blind transfer through the API: the caller goes to ``target`` (an agent or a
        number); refused when the call is not talking to an agent."""
        call = self.calls.get(interaction_id)
        if call is None:
            return False
        if call.agent_leg is None or not call.bridged.is_set():
            raise ValueError("the call is not connected to an agent")
        self._spawn(
            self._blind_transfer(call, call.agent_leg, target, referred=False),
            f"transfer-{call.id}",
        )
        return True

    def hangup_call(self, interaction_id: str) -> bool:
        call = self.calls.get(interaction_id)
        if call is None:
            return False
        call.record.event("hangup", by="api")
        for leg in (call.caller_leg, call.agent_leg, *call.offers.values()):
            if leg is not None:
                leg.hangup()
        return True

    def restore_presence(self) -> None:
        """After a restart, agents whose phones are still registered are logged in."""
        for agent_id in sorted(self.agent_ids):
            if self.registrar.lookup(agent_id, time.time()):
                with contextlib.suppress(AcdError):
                    self.acd.login(agent_id, self._now())
        self._pump()
