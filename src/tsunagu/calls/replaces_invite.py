"""An incoming INVITE with Replaces (RFC 3891): an agent's other phone takes over the
agent's call (the desk phone's call moved to the softphone, or a phone finishing an
attended transfer by itself).

The INVITE names one of our dialogs. We are its recipient, so the tags are read from our
side (``to-tag`` ours, RFC 3891 §3). What we accept, and why so little: only a confirmed
dialog that is the *agent's* leg of a conversation, replaced by a phone authenticated as
that same agent (RFC 3891 §6: a Replaces must be authorized; another agent taking a call
over is a supervisor feature with rules of its own). The new dialog is answered from a new
media leg that is bridged to the customer in place of the old one — the recording goes
on in the same file, the conversation's record gets a ``transfer`` entry of kind
``replaces`` — and the old dialog gets BYE (§3). No dialog of ours: 481; a dialog that is
early: 481 (we do not replace unanswered calls); ``early-only`` on a confirmed dialog: 486;
a dialog that is not the caller's own agent leg: 403.

A mixin of :class:`~tsunagu.calls.controller.CallController` (see :mod:`.host` for why).
"""

from __future__ import annotations

import logging

from tsunagu.calls.call import Call
from tsunagu.calls.host import ControllerHost
from tsunagu.calls.legs import SipLeg, reject
from tsunagu.media.sdp import SessionDescription
from tsunagu.sip.core import Caller
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.message import SipRequest, make_response
from tsunagu.sip.peer import Peer
from tsunagu.sip.replaces import Replaces
from tsunagu.store.interactions import LegRole

log = logging.getLogger("tsunagu.calls")


class ReplacingInvites(ControllerHost):
    def _invite_replaces(
        self, tx_id: str, request: SipRequest, peer: Peer, caller: Caller, now: float
    ) -> bool:
        """Handle ``request`` if it carries Replaces (answered here, ``True``); ``False``
        if it does not (an ordinary new call)."""
        text = request.headers.get("Replaces")
        if text is None:
            return False
        try:
            replaces = Replaces.parse(text)
        except SipParseError as exc:
            reject(self.core, tx_id, request, 400, now, reason=exc.reason[:100])
            return True
        old = self.legs.dialogs.get(replaces.dialog_id)
        call = next(
            (c for c in self.calls.values() if old is not None and old is c.agent_leg), None
        )
        session = old.session if old is not None else None
        if old is None or session is None or not session.dialog.is_confirmed:
            # No such dialog, or an early one (§3: we do not replace unanswered calls).
            reject(self.core, tx_id, request, 481, now)
            return True
        if replaces.early_only:
            reject(self.core, tx_id, request, 486, now)
            return True
        if (
            call is None
            or caller.kind != "agent"
            or old.agent_id != caller.name
            or not call.bridged.is_set()
            or old.ended.done()
        ):
            reject(self.core, tx_id, request, 403, now, reason="Not your call")
            return True
        new = self._leg(call, "agent", peer)
        new.agent_id = caller.name
        try:
            new.accept_invite(tx_id, request, self.contact(peer.transport))
        except Exception:
            reject(self.core, tx_id, request, 400, now, reason="Missing Contact")
            return True
        self._spawn(self._replace_agent_leg(call, old, new, request), f"replaces-{call.id}")
        return True

    async def _replace_agent_leg(
        self, call: Call, old: SipLeg, new: SipLeg, invite: SipRequest
    ) -> None:
        """Answer ``new``, put it in ``old``'s place in ``call``, then BYE ``old``."""
        new.media = await self.media.open_leg(call.id, new.leg_id)
        call.log_leg(new, LegRole.AGENT)
        try:
            answer = await new.media.answer(SessionDescription.parse(invite.body))
        except Exception as exc:  # no offer, or no codec in common: the phone's problem
            log.info("INVITE with Replaces refused", extra={"error": str(exc)})
            new.respond(make_response(invite, 488))
            call.offers[f"replaces:{new.leg_id}"] = new  # closed with the call
            return
        sdp = [("Content-Type", "application/sdp")]
        new.respond(make_response(invite, 200, body=bytes(answer), extra=sdp))
        if old.ended.done() or call.caller_leg is None or call.caller_leg.ended.done():
            new.hangup()  # the call ended while we answered
            call.offers[f"replaces:{new.leg_id}"] = new
            return
        await call.swap_agent_leg(new, new.agent_id, kind="replaces")
        log.info("agent leg replaced", extra={"interaction": call.id, "agent": new.agent_id})
        old.hangup()
