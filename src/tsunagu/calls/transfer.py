"""Transfers: blind transfer by the agent's phone (REFER, RFC 3515) or through the API,
and calls to outside numbers through a trunk (TransferToNumber, callbacks' customer leg).
A REFER whose Refer-To carries Replaces is an attended transfer (:mod:`.attended_transfer`);
an INVITE with Replaces takes an agent's call over to another phone (:mod:`.replaces_invite`).

A mixin of :class:`~tsunagu.calls.controller.CallController` (see :mod:`.host` for why).
Caller ID goes out in the trunk's number format in From and P-Asserted-Identity (RFC 3325).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tsunagu.acd.presence import AcdError
from tsunagu.calls import call_events
from tsunagu.calls.attended_transfer import AttendedTransfers
from tsunagu.calls.call import Call
from tsunagu.calls.early_media import end_early_media, relay_early_media
from tsunagu.calls.host import ControllerHost
from tsunagu.calls.legs import SipLeg
from tsunagu.calls.numbers import to_e164, to_national
from tsunagu.calls.replaces_invite import ReplacingInvites
from tsunagu.sip.dialog import build_invite
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.headers import NameAddress
from tsunagu.sip.message import SipRequest, make_response
from tsunagu.sip.peer import Peer
from tsunagu.sip.replaces import Replaces
from tsunagu.sip.uri import SipUri
from tsunagu.store.interactions import AgentStage, LegRole

log = logging.getLogger("tsunagu.calls")


class TransferControl(AttendedTransfers, ReplacingInvites, ControllerHost):
    # -- blind transfer (RFC 3515) --------------------------------------------------------
    def _call_of(self, leg: SipLeg) -> Call | None:
        for call in self.calls.values():
            if leg in call.handed_over:
                continue
            if leg is call.agent_leg or leg is call.caller_leg:
                return call
        return None

    def _refer(self, leg: SipLeg, tx_id: str, request: SipRequest) -> None:
        """The agent's phone transfers the caller: 202, then NOTIFYs with the outcome.
        With Replaces in the Refer-To (RFC 5589 §7) it is an attended transfer."""
        now = self._now()
        call = self._call_of(leg)
        target: str | None = None
        replaces: Replaces | None = None
        try:
            refer_to = NameAddress.parse(request.headers.get("Refer-To") or "", what="Refer-To")
            uri = refer_to.uri
            target = uri.user if isinstance(uri, SipUri) else None
            replaces = Replaces.from_uri(uri) if isinstance(uri, SipUri) else None
        except SipParseError as exc:
            if target is not None:  # the Replaces is the broken part
                self.core.respond(tx_id, make_response(request, 400, exc.reason[:100]), now)
                return
        if target is None:
            self.core.respond(tx_id, make_response(request, 400, "Refer-To missing"), now)
            return
        if replaces is not None and call is not None:
            self._attended_refer(call, leg, tx_id, request, replaces)
            return
        if call is None or leg is not call.agent_leg or not call.bridged.is_set():
            self.core.respond(tx_id, make_response(request, 403, "Nothing to transfer"), now)
            return
        self.core.respond(tx_id, make_response(request, 202), now)
        self._spawn(self._blind_transfer(call, leg, target), f"transfer-{call.id}")

    async def _blind_transfer(
        self, call: Call, transferor: SipLeg, target: str, *, referred: bool = True
    ) -> bool:
        """Connect the caller to ``target``, then let ``transferor`` go. ``referred``: the
        transferor's phone asked (REFER) and gets NOTIFYs; a transfer through the API
        has no subscription to notify (a NOTIFY would be answered 481 and end the dialog)."""

        def notify(sipfrag: str, *, final: bool) -> None:
            if referred:
                self._notify(transferor, sipfrag, final=final)

        notify("SIP/2.0 100 Trying", final=False)
        call.record.event("transfer.requested", by=transferor.agent_id, to=target)
        direct = transferor.agent_id in call.busy_agents  # an extension-to-extension call
        result: SipLeg | str
        held = False
        if target in self.agent_ids:
            held = self._hold_transfer_target(call, target)
            leg: SipLeg | None = None
            response = None
            try:
                leg = await self._ring_agent(call, target)
                if leg is not None:
                    call.offers[f"transfer:{target}"] = leg
                    call.log_leg(leg, LegRole.AGENT)
                    response = await leg.wait_answer(30.0)
                    if response is not None:
                        call.offers.pop(f"transfer:{target}", None)
                result = leg if leg is not None and response is not None else "not answered"
            finally:
                if held and not (leg is not None and response is not None):
                    self._release_transfer_target(call, target)
        else:
            result = await self._dial_out(call, target, None, 30.0, "transfer")
        if isinstance(result, str):
            notify("SIP/2.0 480 Temporarily Unavailable", final=True)
            call.record.event("transfer.failed", to=target, reason=result)
            return False
        notify("SIP/2.0 200 OK", final=True)
        if target in self.agent_ids:
            iid = call.id
            call.record.post(lambda h: h.add_agent(iid, target, AgentStage.ANSWERED))
            if held and not direct:
                # A queue call: the target leaves the direct-call hold and takes the call
                # over, so its end brings the queue's wrap-up (as an attended transfer).
                call.busy_agents.remove(target)
                with contextlib.suppress(AcdError):
                    self.acd.take_over_call(target, call.id, call.id, call.queue, self._now())
        old = await call.swap_agent_leg(result, target)
        self._transferor_leaves(call, old, direct=direct)
        return True

    def _hold_transfer_target(self, call: Call, target: str) -> bool:
        """An available agent rung for a transfer is busy from the first ring: the ACD must
        not offer them a queue call on top, and the reconciler sees them on this call
        (``busy_agents``). An agent who is away or talking keeps their state (the transfer
        rings them anyway: the transferor chose them). ``True`` if the agent was held."""
        held = False
        with contextlib.suppress(AcdError):
            held = self.acd.begin_direct_call(target, call.id, self._now())
        if held:
            call.busy_agents.append(target)
        self._pump()
        return held

    def _release_transfer_target(self, call: Call, target: str) -> None:
        """The transfer did not reach ``target``: available again at once."""
        with contextlib.suppress(ValueError):
            call.busy_agents.remove(target)
        with contextlib.suppress(AcdError):
            self.acd.end_direct_call(target, call.id, self._now())
        self._pump()

    def _notify(self, leg: SipLeg, sipfrag: str, *, final: bool) -> None:
        """Progress of a REFER as a NOTIFY with a message/sipfrag body (RFC 3515 §2.4.4)."""
        session = leg.session
        if session is None or session.dialog.is_terminated:
            return
        state = "terminated;reason=noresource" if final else "active;expires=60"
        request = session.dialog.create_request(
            "NOTIFY",
            body=(sipfrag + "\r\n").encode(),
            content_type="message/sipfrag;version=2.0",
            extra=[("Event", "refer"), ("Subscription-State", state)],
        )
        tx_id = self.core.send_request(request, leg.peer, self._now())
        self.legs.client_txs[tx_id] = leg

    # -- transfers to outside numbers -----------------------------------------------------
    async def transfer_to_number(
        self, call: Call, number: str, caller_id: str | None, timeout_s: float
    ) -> str | None:
        leg_or_reason = await self._dial_out(
            call, number, caller_id, timeout_s, "transfer", early_to=call.caller_leg
        )
        if isinstance(leg_or_reason, str):
            return leg_or_reason
        await call.bridge(f"external:{number}", leg_or_reason)
        iid = call.id
        call.record.post(lambda h: h.update(iid, append_transfer={"to": number}))
        self.events.publish(call_events.transferred(call, None, number))
        return None

    async def _dial_out(
        self,
        call: Call,
        number: str,
        caller_id: str | None,
        timeout_s: float,
        why: str,
        *,
        early_to: SipLeg | None = None,
    ) -> SipLeg | str:
        """Call ``number`` through the first trunk that has a host; the answered leg, or
        why not. Caller ID in the trunk's number format, in From and P-Asserted-Identity.
        ``early_to``: an answered leg that hears the far end's early media (ringback, the
        carrier's announcements) while it rings; it is unbridged again if the call fails.
        A blind transfer passes none: its caller is still talking to the transferor."""
        trunk = next((t for t in self.center.trunks.values() if t.host), None)
        if trunk is None or trunk.host is None:
            return "no trunk to call out through"
        render = to_e164 if trunk.number_format == "e164" else to_national
        presented = render(caller_id or trunk.caller_id or call.caller_number or "anonymous")
        peer = Peer(trunk.transport.upper(), trunk.host, trunk.port)
        leg = self._leg(call, "external", peer)
        leg.media = await self.media.open_leg(call.id, leg.leg_id)
        offer = await leg.media.offer()
        identity = NameAddress(SipUri(self.local_host, user=presented))
        invite = build_invite(
            SipUri(trunk.host, user=render(number), port=trunk.port),
            from_=identity,
            to=NameAddress(SipUri(trunk.host, user=render(number))),
            local_contact=NameAddress.parse(self.contact(trunk.transport)),
            sent_by=(self.local_host, self.local_port),
            transport=trunk.transport.upper(),
            body=bytes(offer),
            content_type="application/sdp",
            extra=[
                ("P-Asserted-Identity", f"<sip:{presented}@{self.local_host}>"),
                ("X-Tsunagu-Interaction", call.id),
            ],
        )
        leg.send_invite(invite)
        call.log_leg(leg, LegRole.EXTERNAL)
        call.record.event(f"{why}.dialled", number=number, caller_id=presented, trunk=trunk.name)
        early = (
            None if early_to is None else asyncio.ensure_future(relay_early_media(leg, early_to))
        )
        answered = await leg.wait_answer(timeout_s)
        if early is not None and not early.done():
            early.cancel()
        if answered is None:
            if early_to is not None:
                await end_early_media(leg, early_to)
            end = leg.ended.result() if leg.ended.done() else None
            call.offers[f"external:{number}:{leg.leg_id}"] = leg  # closed with the call
            return f"not answered ({end.status if end and end.status else 'timeout'})"
        return leg
