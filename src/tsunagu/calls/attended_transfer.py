"""Attended (consult) transfer: the agent's phone REFERs the customer to the colleague it
has just consulted (RFC 5589 §7), naming that consultation with Replaces (RFC 3891).

What the agent does: put the customer on hold, call the colleague (an internal call,
:mod:`.internal`), talk, press "transfer". The phone then sends, on the *customer's*
dialog, ``REFER`` with ``Refer-To: <sip:B@…?Replaces=<consult dialog>>`` (some phones
send it on the consultation instead, naming the customer's dialog; same outcome). Between phones
the customer's phone would INVITE B with that Replaces and B would swap the dialogs; here
both dialogs end at Tsunagu (a B2BUA), so we do what B and the customer's phone would
have done, without a new INVITE to anyone: the colleague's already-answered leg of the
consultation is unbridged from the agent and bridged to the customer (who leaves hold),
the agent's two legs get BYE, and the agent's phone hears the outcome as NOTIFYs with
sipfrag bodies (RFC 3515 §2.4.4: 100, then 200).

One record per conversation: the customer's interaction goes on (same recording file, a
``transfer`` entry with ``attended: true``, the colleague as an answering agent); the
colleague's leg is re-registered on it. The consultation's own interaction ends
``answered`` (it was a completed internal call) with its colleague leg ended
``transferred``. In the ACD the colleague goes from their own call to the customer's
(:meth:`~tsunagu.acd.engine.AcdEngine.take_over_call`), the agent to wrap-up as after a
blind transfer.

Failures, and why through the NOTIFY rather than a 4xx to the REFER: RFC 3515 makes the
REFER's answer say whether the request to refer was *accepted*, and the outcome of the
referred request arrive as NOTIFY. Had the phones done this between themselves, the
customer's phone would have accepted the REFER (202) and B would have answered its INVITE
with Replaces 481 (RFC 3891 §3: no such dialog, or an early dialog the recipient did not
initiate — our consultation legs to the agent are answered only once the colleague
answers), so the agent's phone sees exactly that: 202, then ``NOTIFY`` ``SIP/2.0 481``. A
consultation that is not the transferor's own is ``403`` (RFC 3891 §6: Replaces must be
authorized). Nothing is dropped on failure: the customer stays on hold with the agent, the
consultation stays up. A malformed Replaces is a 400 to the REFER itself (the request is
broken, not its outcome).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from tsunagu.acd.presence import AcdError
from tsunagu.calls.call import Call
from tsunagu.calls.host import ControllerHost
from tsunagu.calls.legs import LegEnd, SipLeg
from tsunagu.sip.message import SipRequest, make_response
from tsunagu.sip.replaces import Replaces
from tsunagu.store.interactions import AgentStage, LegRole

log = logging.getLogger("tsunagu.calls")


class ConsultRefusedError(Exception):
    """The Replaces names no consultation the transferor may hand over: ``status`` is
    what an INVITE with that Replaces would have got (RFC 3891 §3, §6)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class AttendedTransfers(ControllerHost):
    if TYPE_CHECKING:

        def _notify(self, leg: SipLeg, sipfrag: str, *, final: bool) -> None: ...
        def _call_of(self, leg: SipLeg) -> Call | None: ...

    def _attended_refer(
        self, call: Call, leg: SipLeg, tx_id: str, request: SipRequest, replaces: Replaces
    ) -> None:
        """REFER with Replaces from an agent's phone, on ``leg`` of ``call``: 202, then
        the hand-over runs as a task and reports through NOTIFY on ``leg``.

        Phones send it on either dialog (RFC 5589 §7 shows the REFER to the transferee;
        some phones REFER the transfer target instead, naming the customer's dialog in
        Replaces): on the customer's dialog, the Replaces names the consultation; on the
        consultation, it names the customer's dialog. Either way the customer meets the
        colleague. A REFER on a leg that is neither is a 403, as for a blind transfer."""
        now = self._now()
        named = self.legs.dialogs.get(replaces.dialog_id)
        on_customer = leg is call.agent_leg and call.bridged.is_set()
        if not on_customer and not _consult(call):
            self.core.respond(tx_id, make_response(request, 403, "Nothing to transfer"), now)
            return
        self.core.respond(tx_id, make_response(request, 202), now)
        self._notify(leg, "SIP/2.0 100 Trying", final=False)
        # (customer's call, transferor's leg of it, transferor's leg of the consultation)
        orientations: list[tuple[Call, SipLeg, SipLeg]] = []
        if on_customer and named is not None:
            orientations.append((call, leg, named))
        named_call = self._call_of(named) if named is not None else None
        if _consult(call) and named is not None and named_call is not None:
            orientations.append((named_call, named, leg))  # the REFER came on the consultation
        refused: ConsultRefusedError | None = None
        for customer, transferor, replaced in orientations:
            if transferor is not customer.agent_leg or not customer.bridged.is_set():
                continue
            try:
                consult, kept = self._find_consult(customer, transferor, replaced, replaces)
            except ConsultRefusedError as exc:
                refused = refused or exc
                continue
            self._spawn(
                self._attended_transfer(customer, transferor, consult, replaced, kept, notify=leg),
                f"attended-transfer-{customer.id}",
            )
            return
        refused = refused or ConsultRefusedError(481, "Call/Transaction Does Not Exist")
        log.info(
            "attended transfer refused",
            extra={"interaction": call.id, "status": refused.status, "reason": refused.reason},
        )
        call.record.event(
            "transfer.failed", attended=True, status=refused.status, reason=refused.reason
        )
        self._notify(leg, f"SIP/2.0 {refused.status} {refused.reason}", final=True)

    def _find_consult(
        self, call: Call, transferor: SipLeg, replaced: SipLeg, replaces: Replaces
    ) -> tuple[Call, SipLeg]:
        """The consultation holding ``replaced`` (the transferor's leg of it, to be hung
        up) and its colleague's leg (kept, to meet the customer of ``call``)."""
        consult = next(
            (c for c in self.calls.values() if replaced in (c.caller_leg, c.agent_leg)), None
        )
        if consult is None or consult is call:
            raise ConsultRefusedError(481, "Call/Transaction Does Not Exist")
        session = replaced.session
        if (
            session is None
            or not session.dialog.is_confirmed
            or not consult.bridged.is_set()
            or replaced.ended.done()
        ):
            # An early consultation: our leg to the transferor is answered only when the
            # colleague answers, so it is an early dialog we did not initiate (§3: 481).
            raise ConsultRefusedError(481, "Call/Transaction Does Not Exist")
        if replaces.early_only:  # the dialog is confirmed; early-only forbids it (§3)
            raise ConsultRefusedError(486, "Busy Here")
        if replaced is consult.caller_leg:
            kept, owner = consult.agent_leg, consult.caller_number
            colleague = kept.agent_id if kept is not None else ""
        else:
            kept, owner = consult.caller_leg, replaced.agent_id
            colleague = consult.caller_number
        if owner != transferor.agent_id:
            raise ConsultRefusedError(403, "Forbidden")
        if kept is None or kept.ended.done() or not _consult(consult):
            raise ConsultRefusedError(488, "Not Acceptable Here")
        if colleague not in self.agent_ids:
            raise ConsultRefusedError(488, "Not Acceptable Here")
        if not kept.agent_id:
            kept.agent_id = colleague
        return consult, kept

    async def _attended_transfer(
        self,
        call: Call,
        transferor: SipLeg,
        consult: Call,
        replaced: SipLeg,
        kept: SipLeg,
        *,
        notify: SipLeg,
    ) -> None:
        """Move ``kept`` from ``consult`` to ``call``, then let the transferor's legs go;
        ``notify`` is the leg the REFER came on (its subscription gets the outcome)."""
        target = kept.agent_id
        now = self._now()
        if kept.ended.done() or replaced.ended.done() or call.caller_leg is None:
            # The consultation ended between the REFER and this task (a BYE crossed it).
            self._notify(notify, "SIP/2.0 481 Call/Transaction Does Not Exist", final=True)
            return
        if call.caller_leg.ended.done():  # the customer hung up meanwhile
            self._notify(notify, "SIP/2.0 487 Request Terminated", final=True)
            return
        call.record.event("transfer.requested", by=transferor.agent_id, to=target, attended=True)
        # The consultation lets go of the colleague's leg: it will not hang it up nor
        # close its media when the transferor's leg ends below.
        consult.handed_over.append(kept)
        consult.log_leg_end(kept, LegEnd("transferred", by="local"))
        consult.record.event("transferred", to=call.id, agent=target)
        if target in consult.busy_agents:
            consult.busy_agents.remove(target)
        # The customer's call may itself be an extension-to-extension call (a colleague
        # called the agent): then both agents' ACD states follow it as a direct call.
        direct = transferor.agent_id in call.busy_agents
        took = False
        with contextlib.suppress(AcdError):
            took = self.acd.take_over_call(target, consult.id, call.id, call.queue, now)
        if direct and took:
            call.busy_agents.append(target)
        await replaced.media.unbridge()
        # The leg joins the customer's record under a new id (ids are the store's keys).
        kept.leg_id = call.new_leg_id("agent")
        call.log_leg(kept, LegRole.AGENT)
        iid = call.id
        call.record.post(lambda h: h.add_agent(iid, target, AgentStage.ANSWERED))
        old = await call.swap_agent_leg(kept, target, kind="attended")
        log.info(
            "attended transfer",
            extra={"interaction": call.id, "from": transferor.agent_id, "to": target},
        )
        self._notify(notify, "SIP/2.0 200 OK", final=True)
        replaced.hangup()
        self._transferor_leaves(call, old, direct=direct)

    def _transferor_leaves(self, call: Call, old: SipLeg | None, *, direct: bool) -> None:
        """After any transfer (blind ones too): the transferring agent's leg gets BYE and
        their ACD state moves on — available at once from an extension call (``direct``),
        wrap-up after a queue call."""
        if old is not None:
            old.hangup()
            with contextlib.suppress(AcdError, ValueError):
                if direct:
                    call.busy_agents.remove(old.agent_id)
                    self.acd.end_direct_call(old.agent_id, call.id, self._now())
                else:
                    self.acd.call_ended(old.agent_id, self._now())
        self._pump()


def _consult(call: Call) -> bool:
    """Whether ``call`` can be a consultation: an extension-to-extension call (no queue),
    both legs present."""
    return (
        call.direction == "internal"
        and call.queue is None
        and call.caller_leg is not None
        and call.agent_leg is not None
        and bool(call.busy_agents or call.agent_leg.agent_id)
    )
