"""What the INVITE machinery hands the call layer: typed events (RFC 3261 §13-§15).

:class:`~tsunagu.sip.invite_session.InviteSession` and
:class:`~tsunagu.sip.invite_client.UacInvite` never send anything. They return these
events; the call layer carries out the ``Send*`` ones and reacts to the rest:

* :class:`SendRequest` — open a client transaction (``TransactionLayer.send_request``)
  towards :func:`~tsunagu.sip.dialog.next_hop` of the request (BYE, re-INVITE);
* :class:`SendCancel` — the same, but to the destination the INVITE went to (§9.1);
* :class:`SendAck` — hand the ACK for a 2xx straight to the transport, *not* to a
  transaction (§13.2.2.4, §17.1.1.3);
* :class:`SendResponse` — ``TransactionLayer.send_response(tx_id, response, now)``, for
  the first send and for the 2xx retransmissions the TU owns (§13.3.1.4, RFC 6026 §8.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tsunagu.sip.dialog import DialogId, TerminationReason
from tsunagu.sip.message import SipRequest, SipResponse

if TYPE_CHECKING:
    from tsunagu.sip.invite_session import InviteSession


# -- things to send -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send ``request`` in a new client transaction, to its next hop (§8.1.2)."""

    request: SipRequest
    dialog_id: DialogId


@dataclass(frozen=True, slots=True)
class SendCancel:
    """Send this CANCEL in a new client transaction to where the INVITE went (§9.1)."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class SendAck:
    """Send the ACK for a 2xx directly through the transport (§13.2.2.4).

    The same object comes out again for every retransmission of that 2xx.
    """

    request: SipRequest
    dialog_id: DialogId


@dataclass(frozen=True, slots=True)
class SendResponse:
    """Send ``response`` on server transaction ``tx_id``.

    ``retransmission`` marks the TU's own 2xx retransmissions (§13.3.1.4).
    """

    tx_id: str
    response: SipResponse
    retransmission: bool = False


# -- INVITE server side -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InviteAcknowledged:
    """The ACK for our 2xx arrived (§13.3.1.4). Its body, if any, is the answer to the
    offer our 2xx carried."""

    dialog_id: DialogId
    ack: SipRequest


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """No ACK for our 2xx within 64*T1 (§13.3.1.4): the dialog is confirmed but the
    session SHOULD end — the call layer sends BYE (``InviteSession.hangup``)."""

    dialog_id: DialogId
    cseq: int


@dataclass(frozen=True, slots=True)
class ReinviteReceived:
    """The peer sent a re-INVITE we may process (§14.2); answer it with
    ``InviteSession.respond``. An empty body asks for an offer in our 2xx."""

    dialog_id: DialogId
    tx_id: str
    request: SipRequest


@dataclass(frozen=True, slots=True)
class InDialogRequest:
    """Any other in-dialog request (INFO, OPTIONS, UPDATE, REFER…) that passed the dialog's
    checks (§12.2.2); the call layer answers it on ``tx_id`` itself."""

    dialog_id: DialogId
    tx_id: str
    request: SipRequest


# -- INVITE client side (re-INVITE) -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReinviteAccepted:
    """Our re-INVITE got a 2xx (ACKed already): its body is the answer, or an offer whose
    answer went in the ACK."""

    dialog_id: DialogId
    response: SipResponse


@dataclass(frozen=True, slots=True)
class ReinviteRejected:
    """Our re-INVITE failed: the session keeps its old parameters (§14.1). ``response`` is
    ``None`` when the transaction timed out (the dialog then ends as well)."""

    dialog_id: DialogId
    status: int
    response: SipResponse | None


@dataclass(frozen=True, slots=True)
class ReinviteGlare:
    """Our re-INVITE crossed the peer's (491, §14.1); a retry is allowed from ``retry_at``."""

    dialog_id: DialogId
    retry_at: float


@dataclass(frozen=True, slots=True)
class ReinviteRetryDue:
    """The 491 back-off has run out and no INVITE is in progress: re-send the re-INVITE
    now if it is still wanted (§14.1), with a fresh offer."""

    dialog_id: DialogId


# -- the initial INVITE we sent (UacInvite) -----------------------------------------------
class InviteFailure(enum.Enum):
    REJECTED = "non-2xx final response"  # §13.2.2.3
    CANCELLED = "cancelled"  # §9.1 (usually a 487)
    TIMED_OUT = "Timer B: no response"  # §17.1.1.2
    TRANSPORT_ERROR = "transport error"  # §17.1.4
    CANCEL_UNANSWERED = "no final response 64*T1 after CANCEL"  # §9.1


@dataclass(frozen=True, slots=True)
class Provisional:
    """A 1xx to our INVITE; ``dialog_id`` when it was tagged (an early dialog)."""

    response: SipResponse
    dialog_id: DialogId | None


@dataclass(frozen=True, slots=True)
class EarlyDialog:
    """A tagged 1xx created an early dialog: add ``session`` to the dialog table."""

    session: InviteSession
    response: SipResponse


@dataclass(frozen=True, slots=True)
class Answered:
    """The first 2xx: the call is up (ACK already emitted). Add ``session`` to the table
    if it is not there from an early dialog."""

    session: InviteSession
    response: SipResponse


@dataclass(frozen=True, slots=True)
class ForkAnswered:
    """Another branch of a forked INVITE answered too: it was ACKed and is being BYEd
    (§13.2.2.4). The session keeps re-ACKing that branch's 2xx retransmissions."""

    session: InviteSession
    response: SipResponse


@dataclass(frozen=True, slots=True)
class AnsweredAfterCancel:
    """A 2xx arrived although we cancelled (the 200-vs-CANCEL race, §9.1): ACKed and BYEd."""

    session: InviteSession
    response: SipResponse


@dataclass(frozen=True, slots=True)
class InviteFailed:
    """The INVITE ended without an answer; ``response`` is the final one when there was
    one. Early dialogs end with their own :class:`DialogTerminated`."""

    reason: InviteFailure
    response: SipResponse | None

    @property
    def status(self) -> int | None:
        return self.response.status if self.response is not None else None


@dataclass(frozen=True, slots=True)
class InviteCompleted:
    """64*T1 after the first 2xx or the failure (§13.2.2.4): the UacInvite can be dropped;
    later 2xx retransmissions go to the sessions through the dialog table."""

    call_id: str
    local_tag: str


# -- both sides ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DialogTerminated:
    """The dialog is over (§12.3): stop media, remove it from the dialog table."""

    dialog_id: DialogId
    reason: TerminationReason


SessionEvent = (
    SendRequest
    | SendCancel
    | SendAck
    | SendResponse
    | InviteAcknowledged
    | AckTimeout
    | ReinviteReceived
    | InDialogRequest
    | ReinviteAccepted
    | ReinviteRejected
    | ReinviteGlare
    | ReinviteRetryDue
    | Provisional
    | EarlyDialog
    | Answered
    | ForkAnswered
    | AnsweredAfterCancel
    | InviteFailed
    | InviteCompleted
    | DialogTerminated
)
