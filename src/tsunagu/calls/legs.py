"""Call legs: one SIP dialog (and its media) of a conversation.

A leg turns the sans-IO session's events (:mod:`tsunagu.sip.invite_events`) into messages
on the wire through the core, keeps its own timer for 2xx retransmissions and glare
back-off, and tells its call what happened (answered, failed, ended) through asyncio
futures the call awaits. Requests to a leg always go to the transport address the leg
was reached at — the phone's registration source or the INVITE's source — not the
Contact it advertises, so phones behind NAT keep working (symmetric signalling, the idea
of RFC 5626 flows without the extension).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tsunagu.media.interface import MediaLeg
from tsunagu.media.sdp import SessionDescription
from tsunagu.sip.dialog import DialogId, new_tag
from tsunagu.sip.dialog_table import DialogTable
from tsunagu.sip.errors import SipLocalError
from tsunagu.sip.invite_client import UacInvite
from tsunagu.sip.invite_events import (
    AckTimeout,
    Answered,
    AnsweredAfterCancel,
    DialogTerminated,
    EarlyDialog,
    ForkAnswered,
    InDialogRequest,
    InviteAcknowledged,
    InviteCompleted,
    InviteFailed,
    Provisional,
    ReinviteReceived,
    SendAck,
    SendCancel,
    SendRequest,
    SendResponse,
    SessionEvent,
)
from tsunagu.sip.invite_session import InviteSession
from tsunagu.sip.message import SipRequest, SipResponse, make_response
from tsunagu.sip.peer import Peer

if TYPE_CHECKING:
    from tsunagu.sip.core import SipCore

log = logging.getLogger("tsunagu.calls")

Role = Literal["caller", "agent", "external"]


@dataclass(frozen=True, slots=True)
class LegEnd:
    """Why a leg ended: ``status`` is the SIP status for failed INVITEs, ``by`` who ended it."""

    reason: str
    status: int | None = None
    by: Literal["remote", "local", "timeout"] = "remote"


class Legs:
    """What every leg shares: the core, the dialog table and the client transactions."""

    def __init__(self, core: SipCore) -> None:
        self.core = core
        self.dialogs: DialogTable[SipLeg, SipLeg] = DialogTable()
        self.client_txs: dict[str, SipLeg] = {}
        self.server_invites: dict[str, SipLeg] = {}

    def now(self) -> float:
        return asyncio.get_running_loop().time()


class SipLeg:
    def __init__(
        self,
        legs: Legs,
        *,
        leg_id: str,
        role: Role,
        peer: Peer,
        media: MediaLeg | None = None,
        on_request: Callable[[SipLeg, InDialogRequest | ReinviteReceived], None],
    ) -> None:
        self.legs = legs
        self.leg_id = leg_id
        self.role = role
        self.peer = peer
        self._media = media
        self.on_request = on_request
        #: For agent legs: whose phone this is.
        self.agent_id = ""
        self.session: InviteSession | None = None
        self.uac: UacInvite | None = None
        self.call_id = ""
        self.answered: asyncio.Future[SipResponse | None] = (
            asyncio.get_running_loop().create_future()
        )
        self.ringing = asyncio.Event()
        #: For a leg we dialled: the first provisional response carrying an SDP answer
        #: (early media, RFC 3261 §13.2.1 / RFC 3960); never set if there is none.
        self.early: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[LegEnd] = asyncio.get_running_loop().create_future()
        self.started_wall = time.time()
        self.answered_wall: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<SipLeg {self.role} {self.leg_id} {self.peer}>"

    @property
    def media(self) -> MediaLeg:
        """The leg's media; opened right after the leg (the SIP side must exist at once so
        a CANCEL racing the set-up finds it)."""
        if self._media is None:
            raise SipLocalError(f"leg {self.leg_id} has no media yet")
        return self._media

    @media.setter
    def media(self, media: MediaLeg) -> None:
        self._media = media

    @property
    def has_media(self) -> bool:
        return self._media is not None

    # -- creation ---------------------------------------------------------------------
    def accept_invite(self, tx_id: str, invite: SipRequest, local_contact: str) -> None:
        """We are the UAS for ``invite`` (the caller's leg)."""
        self.call_id = invite.call_id
        self.session = InviteSession.uas(
            invite, tx_id, local_contact=local_contact, config=self.legs.core.transactions.config
        )
        self.legs.dialogs.add(self.session.dialog, self)
        self.legs.server_invites[tx_id] = self

    def send_invite(self, invite: SipRequest) -> None:
        """We are the UAC: send ``invite`` (an agent's phone, a trunk)."""
        self.call_id = invite.call_id
        self.uac = UacInvite(invite, config=self.legs.core.transactions.config)
        self.legs.dialogs.add_pending(self.uac.key, self)
        tx_id = self.legs.core.send_request(invite, self.peer, self.legs.now())
        self.legs.client_txs[tx_id] = self
        self._arm()

    async def wait_answer(self, timeout_s: float | None = None) -> SipResponse | None:
        """For a leg we dialled: the 2xx once its SDP answer is applied to our media, or
        ``None`` — the INVITE failed, ``timeout_s`` passed (then it is cancelled), or the
        answer's SDP is unusable (then it is hung up)."""
        try:
            response = await asyncio.wait_for(asyncio.shield(self.answered), timeout_s)
        except TimeoutError:
            response = None
        if response is None:
            self.hangup()
            return None
        try:
            await self.media.accept_answer(SessionDescription.parse(response.body))
        except Exception as exc:  # the peer's SDP: its fault, our call goes on without it
            log.warning("answer with unusable SDP", extra={"leg": self.leg_id, "error": str(exc)})
            self.hangup()
            return None
        return response

    # -- actions ------------------------------------------------------------------------
    def respond(self, response: SipResponse) -> None:
        if self.session is not None:
            self.process(self.session.respond(response, self.legs.now()))

    def hangup(self, *, reject_status: int = 480) -> None:
        """End the leg from our side: BYE, CANCEL or a final error, as its state needs."""
        now = self.legs.now()
        if self.session is not None and not self.ended.done():
            self.process(self.session.hangup(now, reject_status=reject_status))
        elif self.uac is not None and not self.uac.done:
            self.process(self.uac.cancel(now))
        if not self.ended.done() and self.session is None and self.uac is None:
            self._end(LegEnd("hangup before start", by="local"))

    def reinvite(self, body: bytes, content_type: str = "application/sdp") -> None:
        if self.session is not None:
            self.process(
                self.session.reinvite(self.legs.now(), body=body, content_type=content_type)
            )

    # -- input from the core --------------------------------------------------------------
    def process(self, events: Sequence[SessionEvent]) -> None:
        core = self.legs.core
        now = self.legs.now()
        for event in events:
            if isinstance(event, SendResponse):
                core.respond(event.tx_id, event.response, now)
            elif isinstance(event, SendRequest | SendCancel):
                tx_id = core.send_request(event.request, self.peer, now)
                self.legs.client_txs[tx_id] = self
            elif isinstance(event, SendAck):
                core.send_stateless(event.request, self.peer)
            elif isinstance(event, Provisional):
                self._progress(event.response)
            elif isinstance(event, EarlyDialog):
                # The first tagged 1xx opens the early dialog; it is progress too.
                self._adopt(event.session)
                self._progress(event.response)
            elif isinstance(event, Answered):
                self._adopt(event.session)
                self.answered_wall = time.time()
                if not self.answered.done():
                    self.answered.set_result(event.response)
            elif isinstance(event, ForkAnswered | AnsweredAfterCancel):
                self.legs.dialogs.add(event.session.dialog, self)
            elif isinstance(event, InviteFailed):
                if not self.answered.done():
                    self.answered.set_result(None)
                self._end(LegEnd(event.reason.value, event.status))
            elif isinstance(event, InviteCompleted):
                if self.uac is not None:
                    self.legs.dialogs.remove_pending(self.uac.key)
            elif isinstance(event, InviteAcknowledged):
                pass
            elif isinstance(event, AckTimeout):
                log.warning("no ACK for our 200 OK; hanging up", extra={"leg": self.leg_id})
                self.process(self._session_hangup(now))
            elif isinstance(event, ReinviteReceived | InDialogRequest):
                self.on_request(self, event)
            elif isinstance(event, DialogTerminated):
                self._terminated(event.dialog_id, event.reason.value)
        self._arm()

    def _progress(self, response: SipResponse) -> None:
        if response.status in (180, 183):
            self.ringing.set()
        if _carries_sdp(response) and not self.early.done():
            self.early.set_result(response)

    def _session_hangup(self, now: float) -> list[SessionEvent]:
        return self.session.hangup(now) if self.session is not None else []

    def _adopt(self, session: InviteSession) -> None:
        if self.session is None or self.session is session:
            self.session = session
            if session.dialog.id not in self.legs.dialogs:
                self.legs.dialogs.add(session.dialog, self)
        else:  # another fork: the UacInvite ACKs and BYEs it
            self.legs.dialogs.add(session.dialog, self)

    def _terminated(self, dialog_id: DialogId, reason: str) -> None:
        self.legs.dialogs.remove(dialog_id)
        if self.session is not None and self.session.dialog.id == dialog_id:
            if not self.answered.done():
                self.answered.set_result(None)
            by: Literal["remote", "local", "timeout"] = (
                "local" if reason.startswith("local") else "remote"
            )
            self._end(LegEnd(reason, by=by))

    def _end(self, end: LegEnd) -> None:
        if not self.ended.done():
            self.ended.set_result(end)

    # -- timers ---------------------------------------------------------------------------
    def next_timer(self) -> float | None:
        times = [
            t
            for t in (
                self.session.next_timer() if self.session is not None else None,
                self.uac.next_timer() if self.uac is not None else None,
            )
            if t is not None
        ]
        return min(times) if times else None

    def _arm(self) -> None:
        when = self.next_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self.legs.now()
        events: list[SessionEvent] = []
        if self.uac is not None:
            events += self.uac.handle_timer(now)
        if self.session is not None:
            events += self.session.handle_timer(now)
        self.process(events)

    def close_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _carries_sdp(response: SipResponse) -> bool:
    kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return bool(response.body) and kind == "application/sdp"


async def first_of(*waitables: asyncio.Future[Any]) -> None:
    """Wait until the first of ``waitables`` is done (the others keep running)."""
    await asyncio.wait(set(waitables), return_when=asyncio.FIRST_COMPLETED)


def reject(
    core: SipCore,
    tx_id: str,
    request: SipRequest,
    status: int,
    now: float,
    *,
    reason: str | None = None,
) -> None:
    """Answer a request we will not take part in with a final error."""
    core.respond(tx_id, make_response(request, status, reason, to_tag=new_tag()), now)
