"""Retransmitting our 2xx to an INVITE until its ACK arrives (RFC 3261 §13.3.1.4).

RFC 6026 §8.1 leaves this to the TU: the server transaction, in its Accepted state, only
sends what the TU hands it. :class:`AckWait` is that TU timer, sans-IO: ``next_timer()``
says when, ``handle_timer(now)`` says what (a retransmission or the timeout), and
``ack_received(ack, now)`` stops it. Its life is the table :data:`ACK_WAIT_TRANSITIONS`.
"""

from __future__ import annotations

import enum
import logging

from tsunagu.sip.dialog import DialogId
from tsunagu.sip.errors import SipLocalError
from tsunagu.sip.invite_events import AckTimeout, SendResponse
from tsunagu.sip.message import SipRequest, SipResponse
from tsunagu.sip.txn_events import TimerConfig

log = logging.getLogger("tsunagu.sip.dialog")


class AckWaitState(enum.Enum):
    WAITING = "waiting for the ACK"
    ACKED = "ACK received"
    TIMED_OUT = "no ACK within 64*T1"
    STOPPED = "stopped"


class AckWaitInput(enum.Enum):
    RETRANSMIT = "retransmission due"
    ACK = "ACK for this 2xx"
    DEADLINE = "64*T1 passed"
    STOP = "stopped (BYE, dialog gone)"


ACK_WAIT_TRANSITIONS: dict[tuple[AckWaitState, AckWaitInput], AckWaitState] = {
    (AckWaitState.WAITING, AckWaitInput.RETRANSMIT): AckWaitState.WAITING,
    (AckWaitState.WAITING, AckWaitInput.ACK): AckWaitState.ACKED,
    (AckWaitState.WAITING, AckWaitInput.DEADLINE): AckWaitState.TIMED_OUT,
    (AckWaitState.WAITING, AckWaitInput.STOP): AckWaitState.STOPPED,
    (AckWaitState.ACKED, AckWaitInput.ACK): AckWaitState.ACKED,  # ACK retransmission
    (AckWaitState.ACKED, AckWaitInput.STOP): AckWaitState.ACKED,
    (AckWaitState.TIMED_OUT, AckWaitInput.ACK): AckWaitState.TIMED_OUT,  # too late
    (AckWaitState.TIMED_OUT, AckWaitInput.STOP): AckWaitState.TIMED_OUT,
    (AckWaitState.STOPPED, AckWaitInput.ACK): AckWaitState.STOPPED,
    (AckWaitState.STOPPED, AckWaitInput.STOP): AckWaitState.STOPPED,
}


class AckWait:
    """Retransmits our 2xx to an INVITE until its ACK arrives (§13.3.1.4).

    Started when the 2xx is first sent at ``now``: retransmissions fall due T1, 2*T1,
    4*T1… apart, the interval capped at T2, and none is sent at or after 64*T1; at 64*T1
    exactly one :class:`AckTimeout` comes out. This is the rule on every transport: the
    2xx is end to end and may cross an unreliable hop further on.

    The retransmissions go through ``TransactionLayer.send_response`` on the same server
    transaction, which RFC 6026's Accepted state keeps alive for exactly 64*T1.
    """

    def __init__(
        self,
        dialog_id: DialogId,
        tx_id: str,
        response: SipResponse,
        now: float,
        config: TimerConfig,
    ) -> None:
        if not 200 <= response.status < 300:
            raise SipLocalError("only a 2xx is retransmitted by the TU (§13.3.1.4)")
        self.dialog_id = dialog_id
        self.tx_id = tx_id
        self.response = response
        self.cseq = response.cseq.number
        self.started = now
        self.deadline = now + config.timeout
        self.state = AckWaitState.WAITING
        self.retransmissions = 0
        self._t2 = config.t2
        self._interval = config.t1
        self._due = now + config.t1

    def _move(self, what: AckWaitInput) -> None:
        state = ACK_WAIT_TRANSITIONS.get((self.state, what))
        if state is None:
            raise SipLocalError(f"2xx retransmitter is {self.state.value}: {what.value}")
        self.state = state

    def next_timer(self) -> float | None:
        if self.state is not AckWaitState.WAITING:
            return None
        return min(self._due, self.deadline)

    def handle_timer(self, now: float) -> list[SendResponse | AckTimeout]:
        """One retransmission if due, or the timeout once 64*T1 has passed."""
        if self.state is not AckWaitState.WAITING:
            return []
        if now >= self.deadline:
            self._move(AckWaitInput.DEADLINE)
            log.info(
                "no ACK for our 2xx",
                extra={"dialog": self.dialog_id.local_tag, "cseq": self.cseq},
            )
            return [AckTimeout(self.dialog_id, self.cseq)]
        if now < self._due:
            return []
        self._move(AckWaitInput.RETRANSMIT)
        self.retransmissions += 1
        self._interval = min(2 * self._interval, self._t2)
        self._due = now + self._interval
        return [SendResponse(self.tx_id, self.response, retransmission=True)]

    def ack_received(self, ack: SipRequest, now: float) -> bool:
        """True when ``ack`` acknowledges this 2xx and stopped the retransmissions.

        An ACK for an older INVITE (lower CSeq) or a repeated ACK gives ``False``. An ACK
        processed before the timer fired counts even if ``now`` is past 64*T1: the peer is
        evidently there.
        """
        if ack.cseq.number != self.cseq:
            return False
        was_waiting = self.state is AckWaitState.WAITING
        self._move(AckWaitInput.ACK)
        return was_waiting

    def stop(self) -> None:
        self._move(AckWaitInput.STOP)
