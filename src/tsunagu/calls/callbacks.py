"""Queued callbacks: a waiting caller keeps their place and hangs up; when their turn
comes the agent's phone rings first, then the customer is dialled (REQUIREMENTS §5).

A mixin of :class:`~tsunagu.calls.controller.CallController` (see :mod:`.host` for why).
"""

from __future__ import annotations

from tsunagu.acd.presence import AcdError
from tsunagu.calls.call import Call
from tsunagu.calls.host import ControllerHost
from tsunagu.media.interface import Say
from tsunagu.store.interactions import Disposition, LegRole


class CallbackControl(ControllerHost):
    # -- queued callbacks -----------------------------------------------------------------
    async def request_callback(self, call: Call) -> bool:
        """The waiting caller pressed 1: keep their place, say goodbye, hang up; the
        callback is dialled when their turn comes (agent first, then the customer)."""
        if call.caller_leg is None:
            return False
        try:
            self.acd.request_callback(call.id, self._now(), number=call.caller_number)
        except AcdError:
            return False  # already ringing an agent: they will be answered soon anyway
        call.callback_requested = True
        call.record.event("queue.callback_requested", number=call.caller_number)
        call.stop_music()
        settings = self.center.queues.get(call.queue or "")
        language = settings.announce_language if settings is not None else "ja"
        goodbye = (
            "順番が来ましたら、こちらからお電話いたします。"
            if language == "ja"
            else "We will call you back when it is your turn. Goodbye."
        )
        await call.caller_leg.media.play([Say(goodbye, language)])
        call.caller_leg.hangup()
        return True

    async def _callback(self, call: Call, agent_id: str, number: str | None) -> None:
        leg = await self._ring_agent(call, agent_id)
        if leg is None or not number:
            self._no_answer(call, agent_id)
            return
        call.offers[agent_id] = leg
        call.log_leg(leg, LegRole.AGENT)
        response = await leg.wait_answer()
        call.offers.pop(agent_id, None)
        if response is None:
            self._no_answer(call, agent_id)
            return
        if not self.agent_answered(call, agent_id):
            leg.hangup()
            return
        call.agent_leg = leg
        queue = self.center.queues.get(call.queue or "")
        caller_id = queue.caller_id if queue is not None else None
        # The agent is on this call while the customer's phone rings, though nothing is
        # bridged yet: without this the reconciler would "repair" them after its grace.
        call.busy_agents = [agent_id]
        customer = await self._dial_out(call, number, caller_id, 30.0, "callback", early_to=leg)
        call.busy_agents = []
        if isinstance(customer, str):
            call.record.event("callback.failed", reason=customer)
            call.disposition = Disposition.FAILED
            leg.hangup()
            self._agent_done(call)
            if not call.leave_queue.done():
                call.leave_queue.set_result("callback_failed")
            return
        call.caller_leg = customer
        await call.bridge(agent_id, leg)
        call.disposition = Disposition.CALLBACK
        if not call.leave_queue.done():
            call.leave_queue.set_result("bridged")
