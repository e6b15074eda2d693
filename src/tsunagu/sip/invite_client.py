"""The initial INVITE we send on an outbound leg (RFC 3261 §13.2, §9.1), sans-IO.

One INVITE can come back as several dialogs: a forking proxy relays a tagged 1xx from
each phone it rings (early dialogs) and possibly more than one 2xx. :class:`UacInvite`
sorts the responses by To tag into :class:`~tsunagu.sip.invite_session.InviteSession`
objects and applies the rules of the UAC core:

* the first 2xx answers the call; every 2xx is ACKed outside the transaction, and a 2xx
  from another branch is ACKed and then BYEd (§13.2.2.4);
* CANCEL only after some provisional response arrived (§9.1): a cancel asked for earlier
  waits for the first 1xx (or is made moot by a final response);
* the 200-to-CANCEL / 487-to-INVITE race: a 2xx that still arrives after we cancelled is
  ACKed and BYEd; without any final response 64*T1 after the CANCEL, the INVITE is given up
  (§9.1 — the call layer then destroys the client transaction);
* 64*T1 after the first 2xx the INVITE is complete: early dialogs never confirmed end
  (§13.2.2.4), and so does this object (:class:`InviteCompleted`).

The moves are the table :data:`UAC_TRANSITIONS`; network inputs missing from it are
absorbed, TU and timer inputs missing from it are bugs (:class:`SipLocalError`).
"""

from __future__ import annotations

import enum
import logging
import random

from tsunagu.sip.dialog import TerminationReason, ViaProvider
from tsunagu.sip.errors import SipLocalError, SipParseError
from tsunagu.sip.invite_events import (
    Answered,
    AnsweredAfterCancel,
    EarlyDialog,
    ForkAnswered,
    InviteCompleted,
    InviteFailed,
    InviteFailure,
    Provisional,
    SendCancel,
    SessionEvent,
)
from tsunagu.sip.invite_session import AckAnswer, InviteSession
from tsunagu.sip.message import SipRequest, SipResponse
from tsunagu.sip.txn_events import TimerConfig
from tsunagu.sip.txn_machines import build_cancel

log = logging.getLogger("tsunagu.sip.dialog")


class UacState(enum.Enum):
    CALLING = "no response yet"
    PROCEEDING = "a provisional response arrived"
    CANCEL_PENDING = "cancel asked for before any provisional"
    CANCELLING = "CANCEL sent"
    ANSWERED = "answered"
    FAILED = "failed"
    COMPLETED = "completed"


class UacInput(enum.Enum):
    PROVISIONAL = "1xx"  # network
    SUCCESS = "2xx"  # network
    FAILURE = "300-699"  # network
    TX_FAILED = "Timer B or transport error"  # from the transaction layer
    CANCEL = "TU cancels"  # TU
    CANCEL_EXPIRED = "64*T1 after CANCEL without a final response"  # timer
    LINGER_EXPIRED = "64*T1 after the first 2xx or the failure"  # timer


_FROM_NETWORK = frozenset(
    (UacInput.PROVISIONAL, UacInput.SUCCESS, UacInput.FAILURE, UacInput.TX_FAILED)
)


class UacAction(enum.Enum):
    REPORT_PROVISIONAL = "create or update the early dialog; report the 1xx"
    SEND_CANCEL = "send CANCEL (§9.1) and start its 64*T1 guard"
    ANSWER = "confirm the branch, ACK, report the answer (§13.2.2.4)"
    ANSWER_AND_BYE = "ACK and BYE a 2xx we no longer want (§9.1 race)"
    EXTRA_2XX = "re-ACK a retransmission; ACK and BYE another branch (§13.2.2.4)"
    HANGUP_WINNER = "BYE the answered branch"
    FAIL = "end the early dialogs; report the failure (§13.2.2.3)"
    START_LINGER = "keep 64*T1 for 2xx retransmissions and forks (§13.2.2.4)"
    EXPIRE_EARLY = "end unconfirmed early dialogs; report completion (§13.2.2.4)"


_U = UacState
_I = UacInput
_X = UacAction
Step = tuple[UacState, tuple[UacAction, ...]]

UAC_TRANSITIONS: dict[tuple[UacState, UacInput], Step] = {
    (_U.CALLING, _I.PROVISIONAL): (_U.PROCEEDING, (_X.REPORT_PROVISIONAL,)),
    (_U.CALLING, _I.SUCCESS): (_U.ANSWERED, (_X.ANSWER, _X.START_LINGER)),
    (_U.CALLING, _I.FAILURE): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.CALLING, _I.TX_FAILED): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.CALLING, _I.CANCEL): (_U.CANCEL_PENDING, ()),  # §9.1: wait for a provisional
    (_U.PROCEEDING, _I.PROVISIONAL): (_U.PROCEEDING, (_X.REPORT_PROVISIONAL,)),
    (_U.PROCEEDING, _I.SUCCESS): (_U.ANSWERED, (_X.ANSWER, _X.START_LINGER)),
    (_U.PROCEEDING, _I.FAILURE): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.PROCEEDING, _I.TX_FAILED): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.PROCEEDING, _I.CANCEL): (_U.CANCELLING, (_X.SEND_CANCEL,)),
    (_U.CANCEL_PENDING, _I.PROVISIONAL): (
        _U.CANCELLING,
        (_X.REPORT_PROVISIONAL, _X.SEND_CANCEL),
    ),
    (_U.CANCEL_PENDING, _I.SUCCESS): (_U.ANSWERED, (_X.ANSWER_AND_BYE, _X.START_LINGER)),
    (_U.CANCEL_PENDING, _I.FAILURE): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.CANCEL_PENDING, _I.TX_FAILED): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.CANCEL_PENDING, _I.CANCEL): (_U.CANCEL_PENDING, ()),
    (_U.CANCELLING, _I.PROVISIONAL): (_U.CANCELLING, (_X.REPORT_PROVISIONAL,)),
    (_U.CANCELLING, _I.SUCCESS): (_U.ANSWERED, (_X.ANSWER_AND_BYE, _X.START_LINGER)),
    (_U.CANCELLING, _I.FAILURE): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.CANCELLING, _I.TX_FAILED): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.CANCELLING, _I.CANCEL): (_U.CANCELLING, ()),
    (_U.CANCELLING, _I.CANCEL_EXPIRED): (_U.FAILED, (_X.FAIL, _X.START_LINGER)),
    (_U.ANSWERED, _I.SUCCESS): (_U.ANSWERED, (_X.EXTRA_2XX,)),
    (_U.ANSWERED, _I.CANCEL): (_U.ANSWERED, (_X.HANGUP_WINNER,)),
    (_U.ANSWERED, _I.LINGER_EXPIRED): (_U.COMPLETED, (_X.EXPIRE_EARLY,)),
    (_U.FAILED, _I.SUCCESS): (_U.FAILED, (_X.EXTRA_2XX,)),  # a 2xx after we gave up
    (_U.FAILED, _I.CANCEL): (_U.FAILED, ()),
    (_U.FAILED, _I.LINGER_EXPIRED): (_U.COMPLETED, (_X.EXPIRE_EARLY,)),
    (_U.COMPLETED, _I.SUCCESS): (_U.COMPLETED, (_X.EXTRA_2XX,)),
    (_U.COMPLETED, _I.CANCEL): (_U.COMPLETED, ()),
}


class UacInvite:
    """Our initial INVITE and the dialogs it creates (see the module docstring).

    The call layer sends ``invite`` with ``TransactionLayer.send_request`` and feeds this
    object the INVITE transaction's ``ResponseReceived`` responses, the ``StrayResponse``
    2xx whose Call-ID and From tag match :attr:`key` (look the pending INVITE up *before*
    the dialogs: only it can BYE a branch it had given up on), and ``TransactionTimeout`` /
    ``TransportErrorReported`` (:meth:`failed`). ``sessions`` holds one
    :class:`InviteSession` per To tag; ``winner`` is the one that answered.
    """

    def __init__(
        self,
        invite: SipRequest,
        *,
        config: TimerConfig | None = None,
        local_via: ViaProvider | None = None,
        rng: random.Random | None = None,
        ack_answer: AckAnswer | None = None,
    ) -> None:
        if invite.method != "INVITE":
            raise SipLocalError("UacInvite drives an INVITE")
        local_tag = invite.from_.tag
        if not local_tag:
            raise SipLocalError("our INVITE needs a From tag (§8.1.1.3)")
        self.invite = invite
        self.config = config or TimerConfig()
        self.state = UacState.CALLING
        self.sessions: dict[str, InviteSession] = {}
        self.winner: InviteSession | None = None
        self.cancel_request: SipRequest | None = None
        self.cancelled = False
        self._local_via = local_via
        self._rng = rng
        self._ack_answer = ack_answer
        self._local_tag = local_tag
        self._cancel_deadline: float | None = None
        self._linger_until: float | None = None

    def __repr__(self) -> str:
        return f"<UacInvite {self.invite.call_id} {self.state.value}>"

    @property
    def key(self) -> tuple[str, str]:
        """(Call-ID, our From tag): how responses find us before a dialog exists."""
        return self.invite.call_id, self._local_tag

    @property
    def done(self) -> bool:
        return self.state is UacState.COMPLETED

    # -- inputs ---------------------------------------------------------------------------
    def receive_response(self, response: SipResponse, now: float) -> list[SessionEvent]:
        """A response to our INVITE (or to its CANCEL, which changes nothing: the INVITE's
        own final response decides, §9.1)."""
        cseq = response.cseq
        if cseq.method == "CANCEL":
            return []
        if cseq.method != "INVITE" or response.call_id != self.invite.call_id:
            raise SipLocalError(f"response {cseq} is not for our INVITE {self.invite.cseq}")
        if cseq.number != self.invite.cseq.number:
            # A later INVITE of one of our dialogs (a re-INVITE's stray 2xx found us by
            # Call-ID and From tag): its session deals with it.
            tag = _to_tag(response)
            session = self.sessions.get(tag) if tag is not None else None
            return session.receive_response(response, now) if session is not None else []
        status = response.status
        if status < 200:
            what = _I.PROVISIONAL
        elif status < 300:
            if not _to_tag(response):
                log.warning("2xx to our INVITE without a To tag: dropped (§8.2.6.2)")
                return []
            what = _I.SUCCESS
        else:
            what = _I.FAILURE
        return self._step(what, now, response)

    def cancel(self, now: float) -> list[SessionEvent]:
        """The TU gives up on the call (§9.1).

        Sends CANCEL once a provisional has arrived (now, or when the first one does).
        Answered already: BYE the answered branch. Over already: nothing.
        """
        self.cancelled = True
        return self._step(_I.CANCEL, now, None)

    def failed(
        self, now: float, reason: InviteFailure = InviteFailure.TIMED_OUT
    ) -> list[SessionEvent]:
        """The INVITE client transaction timed out (Timer B) or could not be sent."""
        return self._step(_I.TX_FAILED, now, None, failure=reason)

    # -- time -----------------------------------------------------------------------------
    def next_timer(self) -> float | None:
        if self.state is UacState.CANCELLING:
            return self._cancel_deadline
        if self.state in (UacState.ANSWERED, UacState.FAILED):
            return self._linger_until
        return None

    def handle_timer(self, now: float) -> list[SessionEvent]:
        when = self.next_timer()
        if when is None or now < when:
            return []
        if self.state is UacState.CANCELLING:
            return self._step(_I.CANCEL_EXPIRED, now, None, failure=InviteFailure.CANCEL_UNANSWERED)
        return self._step(_I.LINGER_EXPIRED, now, None)

    # -- the table ------------------------------------------------------------------------
    def _step(
        self,
        what: UacInput,
        now: float,
        response: SipResponse | None,
        *,
        failure: InviteFailure | None = None,
    ) -> list[SessionEvent]:
        step = UAC_TRANSITIONS.get((self.state, what))
        if step is None:
            if what in _FROM_NETWORK:
                log.debug(
                    "absorbed input not in the UAC INVITE table",
                    extra={"state": self.state.value, "input": what.value},
                )
                return []
            raise SipLocalError(f"UAC INVITE is {self.state.value}: {what.value!r} not allowed")
        next_state, actions = step
        previous = self.state
        self.state = next_state
        out: list[SessionEvent] = []
        for action in actions:
            self._do(action, now, previous=previous, response=response, failure=failure, out=out)
        return out

    def _do(
        self,
        action: UacAction,
        now: float,
        *,
        previous: UacState,
        response: SipResponse | None,
        failure: InviteFailure | None,
        out: list[SessionEvent],
    ) -> None:
        if action is _X.REPORT_PROVISIONAL:
            assert response is not None
            self._provisional(response, now, out)
        elif action is _X.SEND_CANCEL:
            self.cancel_request = build_cancel(self.invite)
            self._cancel_deadline = now + self.config.timeout
            out.append(SendCancel(self.cancel_request))
        elif action is _X.ANSWER:
            assert response is not None
            session = self._branch(response)
            out += session.receive_response(response, now)
            self.winner = session
            out.append(Answered(session, response))
        elif action is _X.ANSWER_AND_BYE:
            assert response is not None
            session = self._branch(response)
            out += session.receive_response(response, now)
            out += session.hangup(now, reason=TerminationReason.CANCELLED)
            out.append(AnsweredAfterCancel(session, response))
        elif action is _X.EXTRA_2XX:
            assert response is not None
            self._extra_2xx(response, now, out)
        elif action is _X.HANGUP_WINNER:
            if self.winner is not None:
                out += self.winner.hangup(now)
        elif action is _X.FAIL:
            self._fail(previous, now, response, failure, out)
        elif action is _X.START_LINGER:
            self._linger_until = now + self.config.timeout
        else:  # UacAction.EXPIRE_EARLY
            for session in self.sessions.values():
                out += session.invite_failed(now, TerminationReason.NOT_CONFIRMED)
            out.append(InviteCompleted(*self.key))

    def _branch(self, response: SipResponse) -> InviteSession:
        """The session for the response's To tag, created on first sight (§12.1.2).

        An early dialog we ended on our own (final error, CANCEL given up, never
        confirmed) that the peer now confirms with a 2xx gets a fresh dialog: the peer
        knows nothing of our ending it, so it must be ACKed and BYEd like any unwanted 2xx.
        """
        tag = _to_tag(response)
        assert tag is not None
        session = self.sessions.get(tag)
        ended_silently = (
            session is not None
            and session.dialog.is_terminated
            and not session.bye_sent
            and session.acked_cseq is None
        )
        if session is None or ended_silently:
            session = InviteSession.uac(
                self.invite,
                response,
                local_via=self._local_via,
                config=self.config,
                rng=self._rng,
                ack_answer=self._ack_answer,
            )
            self.sessions[tag] = session
        return session

    def _provisional(self, response: SipResponse, now: float, out: list[SessionEvent]) -> None:
        tag = _to_tag(response)
        if tag is None or response.status == 100:  # a 100 never creates a dialog (§12.1)
            out.append(Provisional(response, None))
            return
        if tag in self.sessions:
            session = self.sessions[tag]
            out += session.receive_response(response, now)
            out.append(Provisional(response, session.id))
            return
        session = self._branch(response)
        out.append(EarlyDialog(session, response))

    def _extra_2xx(self, response: SipResponse, now: float, out: list[SessionEvent]) -> None:
        tag = _to_tag(response)
        session = self.sessions.get(tag) if tag is not None else None
        if session is not None and session.acked_cseq == self.invite.cseq.number:
            out += session.receive_response(response, now)  # retransmission: same ACK again
            return
        session = self._branch(response)
        out += session.receive_response(response, now)
        late = self.cancelled or self.winner is None
        reason = TerminationReason.CANCELLED if late else TerminationReason.FORK
        out += session.hangup(now, reason=reason)
        log.info(
            "ACK and BYE for an unwanted 2xx",
            extra={"call_id": self.invite.call_id, "to_tag": tag, "late": late},
        )
        out.append(
            AnsweredAfterCancel(session, response) if late else ForkAnswered(session, response)
        )

    def _fail(
        self,
        previous: UacState,
        now: float,
        response: SipResponse | None,
        failure: InviteFailure | None,
        out: list[SessionEvent],
    ) -> None:
        cancelled = previous in (UacState.CANCEL_PENDING, UacState.CANCELLING)
        if failure is None:
            failure = InviteFailure.CANCELLED if cancelled else InviteFailure.REJECTED
        if failure in (InviteFailure.CANCELLED, InviteFailure.CANCEL_UNANSWERED):
            reason = TerminationReason.CANCELLED
        elif failure is InviteFailure.REJECTED:
            reason = TerminationReason.REJECTED
        else:
            reason = TerminationReason.TIMED_OUT
        for session in self.sessions.values():  # §12.3: a final error ends early dialogs
            out += session.invite_failed(now, reason)
        out.append(InviteFailed(failure, response))


def _to_tag(response: SipResponse) -> str | None:
    try:
        return response.to.tag or None
    except SipParseError:
        return None
