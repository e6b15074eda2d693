"""Internal calls: one registered extension dialling another (the first thing an on-call
engineer tests, REQUIREMENTS §1). Both agents are busy in the ACD while it lasts.

A mixin of :class:`~tsunagu.calls.controller.CallController` (see :mod:`.host` for why).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tsunagu.acd.presence import AcdError
from tsunagu.calls.call import Call
from tsunagu.calls.early_media import accept_early
from tsunagu.calls.host import ControllerHost
from tsunagu.calls.legs import SipLeg, first_of
from tsunagu.logs import call_context
from tsunagu.media.sdp import SessionDescription
from tsunagu.sip.message import SipRequest, SipResponse, make_response
from tsunagu.store.interactions import Disposition, LegRole


class InternalCalls(ControllerHost):
    # -- internal calls -----------------------------------------------------------------
    async def _run_internal(self, call: Call, leg: SipLeg, invite: SipRequest, target: str) -> None:
        with call_context(invite.call_id):
            try:
                self._begin_direct_call(call, (call.caller_number, target))
                leg.media = await self.media.open_leg(call.id, leg.leg_id)
                call.log_leg(leg, LegRole.CALLER)
                agent_leg = await self._ring_agent(call, target)
                if agent_leg is None:
                    leg.respond(make_response(invite, 480, "Not registered"))
                    call.disposition = Disposition.FAILED
                    return
                call.log_leg(agent_leg, LegRole.AGENT)
                answered = asyncio.ensure_future(agent_leg.answered)
                early = await self._relay_progress(call, leg, invite, agent_leg, answered=answered)
                response = answered.result() if answered.done() else None
                if leg.ended.done() or response is None:
                    agent_leg.hangup()
                    if not leg.ended.done():
                        end = agent_leg.ended.result() if agent_leg.ended.done() else None
                        status = 486 if end is not None and end.status == 486 else 480
                        leg.respond(make_response(invite, status))
                    call.disposition = (
                        Disposition.ABANDONED if leg.ended.done() else (Disposition.FAILED)
                    )
                    call.offers[target] = agent_leg
                    return
                await agent_leg.media.accept_answer(SessionDescription.parse(response.body))
                if not await call.answer_caller(leg, invite, early):
                    agent_leg.hangup()
                    return
                await call.bridge(target, agent_leg)
                await call.talk_until_hangup()
            finally:
                self._end_direct_call(call)
                await call.finish()
                self.calls.pop(call.id, None)

    async def _relay_progress(
        self,
        call: Call,
        leg: SipLeg,
        invite: SipRequest,
        callee: SipLeg,
        *,
        answered: asyncio.Future[SipResponse | None],
        timeout_s: float = 30.0,
    ) -> SessionDescription | None:
        """While the callee rings: relay its ringing (180) and its early media (183 with
        SDP: our own 183 with our answer, and the two media legs bridged) to the caller,
        until it answers, fails, the caller hangs up, or ``timeout_s`` passes. A 180 after
        early media is not relayed (it could make the caller's phone switch to its own
        ringback over the callee's audio, RFC 3960 §3). Returns the SDP answer sent in a
        183, which the 200 must repeat."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        ringing = asyncio.ensure_future(callee.ringing.wait())
        early = asyncio.ensure_future(asyncio.shield(callee.early))
        sent: SessionDescription | None = None
        early_tried = ringing_relayed = False
        try:
            while not (answered.done() or leg.ended.done()) and loop.time() < deadline:
                waits: list[asyncio.Future[Any]] = [answered, leg.ended]
                if not early_tried:
                    waits.append(early)
                if sent is None and not ringing_relayed:
                    waits.append(ringing)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(first_of(*waits), deadline - loop.time())
                if answered.done() or leg.ended.done():
                    break
                if early.done() and not early_tried:
                    early_tried = True
                    if await accept_early(callee):
                        sent = await leg.media.answer(SessionDescription.parse(invite.body))
                        sdp = [("Content-Type", "application/sdp")]
                        leg.respond(make_response(invite, 183, body=bytes(sent), extra=sdp))
                        await leg.media.bridge(callee.media)
                        call.record.event("early_media", callee=callee.agent_id)
                if ringing.done() and sent is None and not ringing_relayed:
                    ringing_relayed = True
                    leg.respond(make_response(invite, 180))
        finally:
            ringing.cancel()
            early.cancel()
        return sent

    def _begin_direct_call(self, call: Call, agent_ids: tuple[str, ...]) -> None:
        """Both extensions of an internal call are busy while it lasts: the ACD must not
        offer either of them a queue call on top (the phone would ring mid-conversation)."""
        now = self._now()
        call.busy_agents = [
            a
            for a in agent_ids
            if a in self.agent_ids and self.acd.begin_direct_call(a, call.id, now)
        ]
        self._pump()

    def _end_direct_call(self, call: Call) -> None:
        now = self._now()
        for agent_id in call.busy_agents:
            with contextlib.suppress(AcdError):
                self.acd.end_direct_call(agent_id, call.id, now)
        call.busy_agents = []
        self._pump()
