"""One INVITE dialog usage (RFC 3261 §13, §14, §15), sans-IO with time passed in.

:class:`InviteSession` sits on one :class:`~tsunagu.sip.dialog.Dialog` and runs the
INVITE rules the transaction layer leaves to the TU:

* **2xx reliability, UAS side** (§13.3.1.4, RFC 6026 §8.1): the transaction layer does not
  retransmit a 2xx, so :class:`~tsunagu.sip.ack_wait.AckWait` does — T1, doubling, capped
  at T2 — until the ACK arrives or 64*T1 has passed, then reports ``AckTimeout``.
* **2xx reliability, UAC side** (§13.2.2.4): every 2xx gets an ACK built outside any
  transaction, and each retransmission of that 2xx gets the *same* ACK again.
* **re-INVITE** (§14): one INVITE at a time in each dialog; a re-INVITE crossing ours is
  answered 491, a second one while the first is unanswered (or its 2xx unacknowledged)
  500 with Retry-After; a 491 to ours starts the back-off of §14.1.
* **BYE** (§15): either side; the callee may not BYE before the ACK (the BYE waits for it
  or for the ACK timeout) and may not BYE an early dialog at all (it rejects the INVITE).

The usage's states and the moves between them are :data:`SESSION_TRANSITIONS`. As in the
transaction tables, an input from the network missing from the table is absorbed (logged);
one from the TU or a timer is our bug and raises :class:`SipLocalError`.

Offer/answer is only carried: bodies pass through in events, and ``ack_answer`` (a hook
set by the media code) supplies the answer an ACK must carry when our INVITE had no offer
and the 2xx brought one (§13.2.1). Reliable provisionals (100rel, PRACK, RFC 3262) and
UPDATE (RFC 3311) are not implemented: nothing here needs them and the core does not
advertise them.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tsunagu.sip.ack_wait import AckWait
from tsunagu.sip.dialog import (
    TARGET_REFRESH_METHODS,
    Dialog,
    DialogId,
    TerminationReason,
    ViaProvider,
    new_tag,
)
from tsunagu.sip.errors import SipLocalError
from tsunagu.sip.headers import NameAddress
from tsunagu.sip.invite_events import (
    AckTimeout,
    DialogTerminated,
    InDialogRequest,
    InviteAcknowledged,
    ReinviteAccepted,
    ReinviteGlare,
    ReinviteReceived,
    ReinviteRejected,
    ReinviteRetryDue,
    SendAck,
    SendRequest,
    SendResponse,
    SessionEvent,
)
from tsunagu.sip.message import SipRequest, SipResponse, make_response
from tsunagu.sip.txn_events import TimerConfig
from tsunagu.sip.uri import Uri

log = logging.getLogger("tsunagu.sip.dialog")

#: Gives the ``(body, content type)`` answer to the offer in a 2xx, for the ACK (§13.2.1).
AckAnswer = Callable[[SipResponse], tuple[bytes, str]]


# -- the INVITE usage table ---------------------------------------------------------------
class SessionState(enum.Enum):
    UAS_EARLY = "initial INVITE received, not answered"
    UAC_EARLY = "initial INVITE sent, not answered"
    ACK_WAIT = "2xx sent, waiting for the ACK"
    BYE_AFTER_ACK = "hanging up once the ACK arrives"
    IDLE = "established, no INVITE in progress"
    REINVITE_SENT = "re-INVITE sent"
    REINVITE_RECEIVED = "re-INVITE received"
    TERMINATED = "terminated"


class SessionInput(enum.Enum):
    # From the TU: a missing row is a bug.
    SEND_PROVISIONAL = "TU sends a 1xx"
    SEND_2XX = "TU sends a 2xx"
    SEND_FAILURE = "TU sends a 300-699"
    SEND_REINVITE = "TU sends a re-INVITE"
    HANGUP = "TU hangs up"
    # From the network: a missing row is absorbed.
    INVITE = "INVITE received"
    BYE = "BYE received"
    ACK = "ACK for our 2xx"
    CANCEL = "CANCEL received"
    PROVISIONAL = "1xx to our INVITE"
    SUCCESS = "2xx to our INVITE"
    GLARE = "491 to our re-INVITE"
    FAILURE = "other final error to our INVITE"
    GONE = "481/408/timeout on our in-dialog request"
    # From a timer: a missing row is a bug.
    ACK_TIMEOUT = "64*T1 without ACK"


_TU_OR_TIMER = frozenset(
    (
        SessionInput.SEND_PROVISIONAL,
        SessionInput.SEND_2XX,
        SessionInput.SEND_FAILURE,
        SessionInput.SEND_REINVITE,
        SessionInput.HANGUP,
        SessionInput.ACK_TIMEOUT,
    )
)


class Action(enum.Enum):
    SEND = "send the TU's response to the pending INVITE"
    CONFIRM = "confirm the dialog (§12.1, §13.2.2.4)"
    START_ACK_WAIT = "retransmit the 2xx until the ACK (§13.3.1.4)"
    STOP_ACK_WAIT = "stop retransmitting the 2xx"
    REPORT_ACK = "report the ACK"
    REPORT_ACK_TIMEOUT = "report the missing ACK (§13.3.1.4)"
    ANSWER_491 = "answer the INVITE 491: ours is in progress (§14.2)"
    ANSWER_500 = "answer the INVITE 500 + Retry-After: theirs is in progress (§14.2)"
    ACCEPT_REINVITE = "refresh the target, hand the re-INVITE up (§12.2.2, §14.2)"
    ANSWER_OK = "200 to the BYE (§15.1.2) or the CANCEL (§9.2)"
    ANSWER_487 = "487 to the INVITE still unanswered (§9.2, §15.1.2)"
    REJECT_INVITE = "final error to the unanswered initial INVITE (§15)"
    SEND_REINVITE = "send our re-INVITE (§14.1)"
    REFRESH_TARGET = "take the remote target from the 2xx (§12.2.1.2)"
    SEND_ACK = "ACK the 2xx (§13.2.2.4)"
    REPORT_ACCEPTED = "report the re-INVITE's 2xx"
    REPORT_REJECTED = "report the re-INVITE's failure (§14.1)"
    START_GLARE = "start the 491 back-off (§14.1)"
    SEND_BYE = "send BYE (§15.1.1)"
    END = "terminate the dialog (§12.3)"


_St = SessionState
_In = SessionInput
_A = Action
Step = tuple[SessionState, tuple[Action, ...]]

SESSION_TRANSITIONS: dict[tuple[SessionState, SessionInput], Step] = {
    # The initial INVITE we answer (§13.3).
    (_St.UAS_EARLY, _In.SEND_PROVISIONAL): (_St.UAS_EARLY, (_A.SEND,)),
    (_St.UAS_EARLY, _In.SEND_2XX): (_St.ACK_WAIT, (_A.SEND, _A.CONFIRM, _A.START_ACK_WAIT)),
    (_St.UAS_EARLY, _In.SEND_FAILURE): (_St.TERMINATED, (_A.SEND, _A.END)),
    (_St.UAS_EARLY, _In.HANGUP): (_St.TERMINATED, (_A.REJECT_INVITE, _A.END)),
    (_St.UAS_EARLY, _In.CANCEL): (_St.TERMINATED, (_A.ANSWER_OK, _A.ANSWER_487, _A.END)),
    (_St.UAS_EARLY, _In.BYE): (_St.TERMINATED, (_A.ANSWER_OK, _A.ANSWER_487, _A.END)),
    (_St.UAS_EARLY, _In.INVITE): (_St.UAS_EARLY, (_A.ANSWER_500,)),
    # The initial INVITE we sent (§13.2); UacInvite feeds the responses of this branch.
    (_St.UAC_EARLY, _In.PROVISIONAL): (_St.UAC_EARLY, ()),
    (_St.UAC_EARLY, _In.SUCCESS): (_St.IDLE, (_A.CONFIRM, _A.SEND_ACK)),
    (_St.UAC_EARLY, _In.FAILURE): (_St.TERMINATED, (_A.END,)),
    (_St.UAC_EARLY, _In.GONE): (_St.TERMINATED, (_A.END,)),
    (_St.UAC_EARLY, _In.HANGUP): (_St.TERMINATED, (_A.SEND_BYE, _A.END)),  # §15: caller may
    (_St.UAC_EARLY, _In.INVITE): (_St.UAC_EARLY, (_A.ANSWER_491,)),
    (_St.UAC_EARLY, _In.BYE): (_St.TERMINATED, (_A.ANSWER_OK, _A.END)),
    # Our 2xx is out; the ACK decides (§13.3.1.4). No BYE before it (§15).
    (_St.ACK_WAIT, _In.ACK): (_St.IDLE, (_A.STOP_ACK_WAIT, _A.REPORT_ACK)),
    (_St.ACK_WAIT, _In.ACK_TIMEOUT): (_St.IDLE, (_A.REPORT_ACK_TIMEOUT,)),
    (_St.ACK_WAIT, _In.HANGUP): (_St.BYE_AFTER_ACK, ()),
    (_St.ACK_WAIT, _In.BYE): (_St.TERMINATED, (_A.STOP_ACK_WAIT, _A.ANSWER_OK, _A.END)),
    (_St.ACK_WAIT, _In.INVITE): (_St.ACK_WAIT, (_A.ANSWER_500,)),
    (_St.ACK_WAIT, _In.CANCEL): (_St.ACK_WAIT, (_A.ANSWER_OK,)),  # §9.2: no effect now
    (_St.ACK_WAIT, _In.GONE): (_St.TERMINATED, (_A.STOP_ACK_WAIT, _A.END)),
    (_St.BYE_AFTER_ACK, _In.ACK): (
        _St.TERMINATED,
        (_A.STOP_ACK_WAIT, _A.REPORT_ACK, _A.SEND_BYE, _A.END),
    ),
    (_St.BYE_AFTER_ACK, _In.ACK_TIMEOUT): (
        _St.TERMINATED,
        (_A.REPORT_ACK_TIMEOUT, _A.SEND_BYE, _A.END),
    ),
    (_St.BYE_AFTER_ACK, _In.HANGUP): (_St.BYE_AFTER_ACK, ()),
    (_St.BYE_AFTER_ACK, _In.BYE): (_St.TERMINATED, (_A.STOP_ACK_WAIT, _A.ANSWER_OK, _A.END)),
    (_St.BYE_AFTER_ACK, _In.INVITE): (_St.BYE_AFTER_ACK, (_A.ANSWER_500,)),
    (_St.BYE_AFTER_ACK, _In.CANCEL): (_St.BYE_AFTER_ACK, (_A.ANSWER_OK,)),
    (_St.BYE_AFTER_ACK, _In.GONE): (_St.TERMINATED, (_A.STOP_ACK_WAIT, _A.END)),
    # Established.
    (_St.IDLE, _In.SEND_REINVITE): (_St.REINVITE_SENT, (_A.SEND_REINVITE,)),
    (_St.IDLE, _In.INVITE): (_St.REINVITE_RECEIVED, (_A.ACCEPT_REINVITE,)),
    (_St.IDLE, _In.HANGUP): (_St.TERMINATED, (_A.SEND_BYE, _A.END)),
    (_St.IDLE, _In.BYE): (_St.TERMINATED, (_A.ANSWER_OK, _A.END)),
    (_St.IDLE, _In.CANCEL): (_St.IDLE, (_A.ANSWER_OK,)),
    (_St.IDLE, _In.GONE): (_St.TERMINATED, (_A.END,)),
    # Our re-INVITE (§14.1).
    (_St.REINVITE_SENT, _In.PROVISIONAL): (_St.REINVITE_SENT, ()),
    (_St.REINVITE_SENT, _In.SUCCESS): (
        _St.IDLE,
        (_A.REFRESH_TARGET, _A.SEND_ACK, _A.REPORT_ACCEPTED),
    ),
    (_St.REINVITE_SENT, _In.GLARE): (_St.IDLE, (_A.START_GLARE,)),
    (_St.REINVITE_SENT, _In.FAILURE): (_St.IDLE, (_A.REPORT_REJECTED,)),
    (_St.REINVITE_SENT, _In.GONE): (_St.TERMINATED, (_A.REPORT_REJECTED, _A.END)),
    (_St.REINVITE_SENT, _In.INVITE): (_St.REINVITE_SENT, (_A.ANSWER_491,)),
    (_St.REINVITE_SENT, _In.HANGUP): (_St.TERMINATED, (_A.SEND_BYE, _A.END)),
    (_St.REINVITE_SENT, _In.BYE): (_St.TERMINATED, (_A.ANSWER_OK, _A.END)),
    (_St.REINVITE_SENT, _In.CANCEL): (_St.REINVITE_SENT, (_A.ANSWER_OK,)),
    # Their re-INVITE (§14.2).
    (_St.REINVITE_RECEIVED, _In.SEND_PROVISIONAL): (_St.REINVITE_RECEIVED, (_A.SEND,)),
    (_St.REINVITE_RECEIVED, _In.SEND_2XX): (_St.ACK_WAIT, (_A.SEND, _A.START_ACK_WAIT)),
    (_St.REINVITE_RECEIVED, _In.SEND_FAILURE): (_St.IDLE, (_A.SEND,)),
    (_St.REINVITE_RECEIVED, _In.INVITE): (_St.REINVITE_RECEIVED, (_A.ANSWER_500,)),
    (_St.REINVITE_RECEIVED, _In.CANCEL): (_St.IDLE, (_A.ANSWER_OK, _A.ANSWER_487)),
    (_St.REINVITE_RECEIVED, _In.HANGUP): (
        _St.TERMINATED,
        (_A.ANSWER_487, _A.SEND_BYE, _A.END),
    ),
    (_St.REINVITE_RECEIVED, _In.BYE): (_St.TERMINATED, (_A.ANSWER_OK, _A.ANSWER_487, _A.END)),
    (_St.REINVITE_RECEIVED, _In.GONE): (_St.TERMINATED, (_A.ANSWER_487, _A.END)),
    # Over. Late TU answers are no-ops (the INVITE already got its 487); a 2xx to an INVITE
    # that was in progress when we hung up is still ACKed (§13.2.2.4).
    (_St.TERMINATED, _In.HANGUP): (_St.TERMINATED, ()),
    (_St.TERMINATED, _In.SEND_PROVISIONAL): (_St.TERMINATED, ()),
    (_St.TERMINATED, _In.SEND_2XX): (_St.TERMINATED, ()),
    (_St.TERMINATED, _In.SEND_FAILURE): (_St.TERMINATED, ()),
    (_St.TERMINATED, _In.SUCCESS): (_St.TERMINATED, (_A.SEND_ACK,)),
    (_St.TERMINATED, _In.CANCEL): (_St.TERMINATED, (_A.ANSWER_OK,)),
}

#: Why the dialog ends, by the input that ended it (unless the caller gave a reason).
_END_REASONS = {
    _In.HANGUP: TerminationReason.LOCAL_HANGUP,
    _In.BYE: TerminationReason.REMOTE_BYE,
    _In.CANCEL: TerminationReason.CANCELLED,
    _In.SEND_FAILURE: TerminationReason.REJECTED,
    _In.FAILURE: TerminationReason.REJECTED,
    _In.GONE: TerminationReason.GONE,
}


@dataclass(slots=True)
class _Ctx:
    """What one input brings along, for the actions of its row."""

    now: float
    tx_id: str | None = None
    request: SipRequest | None = None
    response: SipResponse | None = None
    reason: TerminationReason | None = None
    reject_status: int = 480
    body: bytes = b""
    content_type: str | None = None
    extra: Sequence[tuple[str, str]] = ()


class InviteSession:
    """The INVITE usage of one dialog, from our side (see the module docstring).

    Make one with :meth:`uas` when an INVITE arrives, or let
    :class:`~tsunagu.sip.invite_client.UacInvite` make them (:meth:`uac`) as tagged
    responses to our INVITE arrive. Every method returns the events to carry out;
    :meth:`next_timer` / :meth:`handle_timer` drive the 2xx retransmissions and the 491
    back-off.
    """

    def __init__(
        self,
        dialog: Dialog,
        state: SessionState,
        *,
        config: TimerConfig | None = None,
        rng: random.Random | None = None,
        ack_answer: AckAnswer | None = None,
    ) -> None:
        self.dialog = dialog
        self.state = state
        self.config = config or TimerConfig()
        self._rng = rng or random.SystemRandom()
        self._ack_answer = ack_answer
        self._server_invite: tuple[str, SipRequest] | None = None  # INVITE we must answer
        self._client_invite: SipRequest | None = None  # INVITE awaiting its final answer
        self._ack: SipRequest | None = None  # the ACK re-sent for 2xx retransmissions
        self._ack_wait: AckWait | None = None
        self._retry_at: float | None = None  # §14.1 back-off after a 491
        self._bye_extra: Sequence[tuple[str, str]] = ()
        self._hangup_reason = TerminationReason.LOCAL_HANGUP
        self.bye_sent = False

    def __repr__(self) -> str:
        return f"<InviteSession {self.dialog.local_tag} {self.state.value}>"

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def uas(
        cls,
        invite: SipRequest,
        tx_id: str,
        *,
        local_contact: NameAddress | Uri | str,
        local_tag: str | None = None,
        local_via: ViaProvider | None = None,
        tls: bool = False,
        config: TimerConfig | None = None,
        rng: random.Random | None = None,
        ack_answer: AckAnswer | None = None,
    ) -> InviteSession:
        """The session for an INVITE we received on server transaction ``tx_id``.

        The early dialog exists from here (its tag is ``local_tag``), so a CANCEL or an
        early BYE finds it; answer with :meth:`respond`, which stamps the tag, Contact and
        Record-Route (§12.1.1). An INVITE without Contact raises
        :class:`~tsunagu.sip.errors.SipParseError` carrying 400: answer it with that.
        """
        dialog = Dialog.uas(
            invite, local_tag or new_tag(), local_contact, local_via=local_via, tls=tls
        )
        session = cls(dialog, SessionState.UAS_EARLY, config=config, rng=rng, ack_answer=ack_answer)
        session._server_invite = (tx_id, invite)
        return session

    @classmethod
    def uac(
        cls,
        invite: SipRequest,
        response: SipResponse,
        *,
        local_via: ViaProvider | None = None,
        config: TimerConfig | None = None,
        rng: random.Random | None = None,
        ack_answer: AckAnswer | None = None,
    ) -> InviteSession:
        """The session for the dialog a tagged 1xx/2xx to our ``invite`` creates (§12.1.2);
        pass ``response`` to :meth:`receive_response` next."""
        dialog = Dialog.from_uac(invite, response, local_via=local_via)
        session = cls(dialog, SessionState.UAC_EARLY, config=config, rng=rng, ack_answer=ack_answer)
        session._client_invite = invite
        return session

    # -- queries --------------------------------------------------------------------------
    @property
    def id(self) -> DialogId:
        return self.dialog.id

    @property
    def invite_in_progress(self) -> bool:
        """An INVITE transaction is open in either direction, or our 2xx is unacknowledged
        (§14.1: no new INVITE may start)."""
        return self.state not in (SessionState.IDLE, SessionState.TERMINATED)

    @property
    def retry_at(self) -> float | None:
        """When the 491 back-off ends, while it runs."""
        return self._retry_at

    @property
    def acked_cseq(self) -> int | None:
        """The CSeq of the INVITE whose 2xx we last ACKed (its retransmissions get the ACK)."""
        return self._ack.cseq.number if self._ack is not None else None

    def can_reinvite(self, now: float) -> bool:
        return self.state is SessionState.IDLE and (self._retry_at is None or now >= self._retry_at)

    # -- the TU ---------------------------------------------------------------------------
    def respond(self, response: SipResponse, now: float) -> list[SessionEvent]:
        """Answer the INVITE (initial or re-INVITE) we received.

        A 2xx confirms the dialog and starts its retransmissions (§13.3.1.4); a final error
        to the initial INVITE ends the early dialog (§12.3). After the dialog ended (a
        CANCEL or BYE beat the answer) this does nothing.
        """
        pending = self._server_invite
        if pending is None and self.state is not SessionState.TERMINATED:
            raise SipLocalError(f"session {self.id} has no INVITE to answer")
        if pending is not None and response.cseq.number != pending[1].cseq.number:
            raise SipLocalError("the response does not answer the pending INVITE")
        status = response.status
        if status < 200:
            what = _In.SEND_PROVISIONAL
        elif status < 300:
            what = _In.SEND_2XX
        else:
            what = _In.SEND_FAILURE
        tx_id, request = pending if pending is not None else (None, None)
        return self._step(what, _Ctx(now, tx_id, request, response))

    def reinvite(
        self,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> list[SessionEvent]:
        """Send a re-INVITE (§14.1); an empty body asks the peer for an offer.

        Refused (:class:`SipLocalError`) while another INVITE is in progress in either
        direction, or before the 491 back-off ends: wait for :class:`ReinviteRetryDue`.
        """
        if self._retry_at is not None and now < self._retry_at:
            raise SipLocalError(f"491 back-off runs until {self._retry_at} (§14.1)")
        self._retry_at = None
        return self._step(
            _In.SEND_REINVITE, _Ctx(now, body=body, content_type=content_type, extra=extra)
        )

    def hangup(
        self,
        now: float,
        *,
        reject_status: int = 480,
        extra: Sequence[tuple[str, str]] = (),
        reason: TerminationReason = TerminationReason.LOCAL_HANGUP,
    ) -> list[SessionEvent]:
        """End the session from our side (§15), whatever its state.

        Established: BYE. Our 2xx not yet ACKed: the BYE waits for the ACK or the ACK
        timeout (§15). The initial INVITE we received and have not answered: answer it
        ``reject_status`` instead (§15: no BYE from the callee on an early dialog). Already
        over: nothing. ``extra`` goes into the BYE (e.g. a Reason header, RFC 3326).
        """
        self._bye_extra = extra
        self._hangup_reason = reason
        if not 300 <= reject_status <= 699:
            raise SipLocalError("reject_status must be a final error status")
        return self._step(_In.HANGUP, _Ctx(now, reason=reason, reject_status=reject_status))

    # -- the network ----------------------------------------------------------------------
    def receive_request(self, tx_id: str, request: SipRequest, now: float) -> list[SessionEvent]:
        """An in-dialog request (not ACK, not CANCEL) that opened server transaction
        ``tx_id``. Checked per §12.2.2 (481 when over, 500 when out of order) before the
        INVITE and BYE rules; anything else comes out as :class:`InDialogRequest`."""
        method = request.method
        if method in ("ACK", "CANCEL"):
            raise SipLocalError(f"{method} goes to receive_ack / receive_cancel")
        refusal = self.dialog.receive_request(request, refresh_target=False)
        if refusal is not None:
            return [SendResponse(tx_id, refusal)]
        ctx = _Ctx(now, tx_id, request)
        if method == "INVITE":
            return self._step(_In.INVITE, ctx)
        if method == "BYE":
            return self._step(_In.BYE, ctx)
        if method in TARGET_REFRESH_METHODS:
            self.dialog.refresh_target(request)
        return [InDialogRequest(self.id, tx_id, request)]

    def receive_ack(self, ack: SipRequest, now: float) -> list[SessionEvent]:
        """An ACK for a 2xx (the transaction layer's ``AckReceived``). An ACK that is not
        for the 2xx being retransmitted (repeated, or for an older INVITE) is absorbed."""
        wait = self._ack_wait
        if wait is None or not wait.ack_received(ack, now):
            return []
        return self._step(_In.ACK, _Ctx(now, request=ack))

    def receive_cancel(
        self, tx_id: str, cancel: SipRequest, now: float, *, invite_tx_id: str | None = None
    ) -> list[SessionEvent]:
        """A CANCEL (server transaction ``tx_id``) for an INVITE of this dialog (§9.2).

        200 to the CANCEL; if that INVITE is still unanswered, 487 to it — which for the
        initial INVITE ends the early dialog, and for a re-INVITE leaves the session as it
        was. ``invite_tx_id`` is the transaction layer's match; a CANCEL for an INVITE other
        than the pending one only gets its 200.
        """
        ctx = _Ctx(now, tx_id, cancel)
        pending = self._server_invite
        if invite_tx_id is not None and (pending is None or pending[0] != invite_tx_id):
            return [SendResponse(tx_id, make_response(cancel, 200, to_tag=self.dialog.local_tag))]
        return self._step(_In.CANCEL, ctx)

    def receive_response(self, response: SipResponse, now: float) -> list[SessionEvent]:
        """A response to a request we sent in this dialog, or a 2xx retransmission that
        arrived as a ``StrayResponse`` (it gets the same ACK again, §13.2.2.4)."""
        cseq = response.cseq
        status = response.status
        if cseq.method != "INVITE":
            if status >= 200 and cseq.method != "BYE" and status in (408, 481):
                return self._step(_In.GONE, _Ctx(now, response=response))
            if 200 <= status < 300:
                self.dialog.receive_response(response)
            return []
        ack = self._ack
        if 200 <= status < 300 and ack is not None and cseq.number == ack.cseq.number:
            return [SendAck(ack, self.id)]
        invite = self._client_invite
        if invite is None or cseq.number != invite.cseq.number:
            log.debug(
                "response to no INVITE in progress",
                extra={"dialog": self.dialog.local_tag, "status": status, "cseq": cseq.number},
            )
            return []
        if status < 200:
            what = _In.PROVISIONAL
        elif status < 300:
            what = _In.SUCCESS
        elif self.state is SessionState.REINVITE_SENT and status == 491:
            what = _In.GLARE
        elif self.state is SessionState.REINVITE_SENT and status in (408, 481):
            what = _In.GONE  # §14.1 / §12.2.1.2: the peer lost the dialog
        else:
            what = _In.FAILURE
        return self._step(what, _Ctx(now, response=response))

    def transaction_failed(self, method: str, now: float) -> list[SessionEvent]:
        """A request we sent in this dialog timed out or could not be sent (§8.1.3.1).

        A re-INVITE or other request: the dialog ends (§12.2.1.2, §14.1). The BYE: nothing
        (the dialog ended when it was sent). The initial INVITE: the early dialog ends.
        """
        if method == "BYE":
            return []
        if self.state is SessionState.UAC_EARLY and method == "INVITE":
            return self._step(_In.FAILURE, _Ctx(now, reason=TerminationReason.TIMED_OUT))
        return self._step(_In.GONE, _Ctx(now))

    def invite_failed(self, now: float, reason: TerminationReason) -> list[SessionEvent]:
        """The initial INVITE we sent ended without confirming this early dialog: a final
        error, a timeout, a CANCEL, or 64*T1 after another branch's 2xx (§13.2.2.4)."""
        if self.state is not SessionState.UAC_EARLY:
            return []
        return self._step(_In.FAILURE, _Ctx(now, reason=reason))

    # -- time -----------------------------------------------------------------------------
    def next_timer(self) -> float | None:
        times = []
        if self._ack_wait is not None and (due := self._ack_wait.next_timer()) is not None:
            times.append(due)
        if self._retry_at is not None and self.state is SessionState.IDLE:
            times.append(self._retry_at)
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[SessionEvent]:
        out: list[SessionEvent] = []
        wait = self._ack_wait
        if wait is not None:
            for event in wait.handle_timer(now):
                if isinstance(event, AckTimeout):
                    out += self._step(_In.ACK_TIMEOUT, _Ctx(now))
                else:
                    out.append(event)
        out += self._retry_if_due(now)
        return out

    # -- the table ------------------------------------------------------------------------
    def _step(self, what: SessionInput, ctx: _Ctx) -> list[SessionEvent]:
        step = SESSION_TRANSITIONS.get((self.state, what))
        if step is None:
            if what in _TU_OR_TIMER:
                raise SipLocalError(
                    f"INVITE session {self.id} is {self.state.value}: {what.value!r} not "
                    "allowed (§14.1: one INVITE at a time)"
                )
            log.debug(
                "absorbed input not in the session table",
                extra={
                    "dialog": self.dialog.local_tag,
                    "state": self.state.value,
                    "input": what.value,
                },
            )
            return []
        next_state, actions = step
        out: list[SessionEvent] = []
        for action in actions:
            self._do(action, what, ctx, out)
        if next_state is not self.state:
            log.debug(
                "INVITE session state",
                extra={
                    "dialog": self.dialog.local_tag,
                    "from": self.state.value,
                    "to": next_state.value,
                },
            )
            self.state = next_state
            out += self._retry_if_due(ctx.now)
        return out

    def _retry_if_due(self, now: float) -> list[SessionEvent]:
        """§14.1: once the back-off has run out *and* no INVITE is in progress."""
        if self._retry_at is None or self.state is not SessionState.IDLE or now < self._retry_at:
            return []
        self._retry_at = None
        return [ReinviteRetryDue(self.id)]

    def _do(self, action: Action, what: SessionInput, ctx: _Ctx, out: list[SessionEvent]) -> None:
        dialog = self.dialog
        if action is _A.SEND:
            self._send_response(ctx, out)
        elif action is _A.CONFIRM:
            dialog.confirm(ctx.response)
        elif action is _A.START_ACK_WAIT:
            assert ctx.tx_id is not None and ctx.response is not None
            self._ack_wait = AckWait(self.id, ctx.tx_id, ctx.response, ctx.now, self.config)
        elif action is _A.STOP_ACK_WAIT:
            if self._ack_wait is not None:
                self._ack_wait.stop()
        elif action is _A.REPORT_ACK:
            assert ctx.request is not None
            out.append(InviteAcknowledged(self.id, ctx.request))
        elif action is _A.REPORT_ACK_TIMEOUT:
            assert self._ack_wait is not None
            out.append(AckTimeout(self.id, self._ack_wait.cseq))
        elif action in (_A.ANSWER_491, _A.ANSWER_500, _A.ANSWER_OK):
            self._answer(action, ctx, out)
        elif action is _A.ACCEPT_REINVITE:
            assert ctx.tx_id is not None and ctx.request is not None
            dialog.refresh_target(ctx.request)  # §12.2.2, once we take the re-INVITE on
            self._server_invite = (ctx.tx_id, ctx.request)
            out.append(ReinviteReceived(self.id, ctx.tx_id, ctx.request))
        elif action is _A.ANSWER_487:
            pending = self._server_invite
            if pending is not None:
                self._server_invite = None
                answer = make_response(pending[1], 487, to_tag=dialog.local_tag)
                out.append(SendResponse(pending[0], dialog.prepare_response(pending[1], answer)))
        elif action is _A.REJECT_INVITE:
            pending = self._server_invite
            assert pending is not None
            self._server_invite = None
            answer = make_response(pending[1], ctx.reject_status, to_tag=dialog.local_tag)
            out.append(SendResponse(pending[0], dialog.prepare_response(pending[1], answer)))
        elif action is _A.SEND_REINVITE:
            invite = dialog.create_request(
                "INVITE", body=ctx.body, content_type=ctx.content_type, extra=ctx.extra
            )
            self._client_invite = invite
            out.append(SendRequest(invite, self.id))
        elif action is _A.REFRESH_TARGET:
            assert ctx.response is not None
            dialog.receive_response(ctx.response)
        elif action is _A.SEND_ACK:
            self._send_ack(ctx, out)
        elif action is _A.REPORT_ACCEPTED:
            assert ctx.response is not None
            out.append(ReinviteAccepted(self.id, ctx.response))
        elif action is _A.REPORT_REJECTED:
            self._client_invite = None
            response = ctx.response
            status = response.status if response is not None else 408
            out.append(ReinviteRejected(self.id, status, response))
        elif action is _A.START_GLARE:
            self._client_invite = None
            # §14.1: in units of 10 ms; 2.1-4 s if we generated the Call-ID, else 0-2 s.
            ticks = self._rng.randint(210, 400) if dialog.is_uac else self._rng.randint(0, 200)
            self._retry_at = ctx.now + ticks / 100
            out.append(ReinviteGlare(self.id, self._retry_at))
        elif action is _A.SEND_BYE:
            bye = dialog.create_request("BYE", extra=self._bye_extra)
            self.bye_sent = True
            out.append(SendRequest(bye, self.id))
        else:  # Action.END
            # A BYE that waited for the ACK (or its timeout) keeps the hang-up's reason.
            reason = ctx.reason or _END_REASONS.get(what, self._hangup_reason)
            dialog.terminate(reason)
            self._retry_at = None
            assert dialog.ended_by is not None
            out.append(DialogTerminated(self.id, dialog.ended_by))

    def _send_response(self, ctx: _Ctx, out: list[SessionEvent]) -> None:
        assert ctx.tx_id is not None and ctx.request is not None and ctx.response is not None
        response = self.dialog.prepare_response(ctx.request, ctx.response)
        if response.status >= 200:
            self._server_invite = None
        out.append(SendResponse(ctx.tx_id, response))

    def _answer(self, action: Action, ctx: _Ctx, out: list[SessionEvent]) -> None:
        assert ctx.tx_id is not None and ctx.request is not None
        tag = self.dialog.local_tag
        if action is _A.ANSWER_491:
            answer = make_response(ctx.request, 491, to_tag=tag)
        elif action is _A.ANSWER_500:
            # §14.2: a random Retry-After between 0 and 10 seconds.
            retry = ("Retry-After", str(self._rng.randint(0, 10)))
            answer = make_response(
                ctx.request, 500, "INVITE in progress", to_tag=tag, extra=[retry]
            )
        else:
            answer = make_response(ctx.request, 200, to_tag=tag)
        out.append(SendResponse(ctx.tx_id, answer))

    def _send_ack(self, ctx: _Ctx, out: list[SessionEvent]) -> None:
        invite = self._client_invite
        response = ctx.response
        assert invite is not None and response is not None
        body, content_type = b"", None
        if response.body and not invite.body:  # the 2xx made the offer: the ACK answers
            if self._ack_answer is not None:
                body, content_type = self._ack_answer(response)
            else:
                log.warning(
                    "2xx carried an offer and no answer hook is set; ACK without answer",
                    extra={"dialog": self.dialog.local_tag},
                )
        ack = self.dialog.build_ack(invite, body=body, content_type=content_type)
        self._ack = ack
        self._client_invite = None
        out.append(SendAck(ack, self.id))
