"""The four SIP transaction state machines (RFC 3261 §17, amended by RFC 6026) as tables.

Each table maps ``(state, input)`` to ``(next state, actions)`` and reads like the figures
of §17.1.1.2 (Figure 5), §17.1.2.2 (Figure 6), §17.2.1 (Figure 7) and §17.2.2 (Figure 8),
with RFC 6026 §7.1/§7.2 adding the INVITE "Accepted" state and Timers L and M: a 2xx no
longer ends the transaction, so retransmitted INVITEs are absorbed instead of reaching the
TU as new requests, and retransmitted 2xx still reach the TU so it can re-ACK them.

An input missing from a table is handled by who sent it (h11's split): from the network
(responses, retransmitted requests, ACKs, transport errors) it is absorbed, as §17 says of
every message it does not list; from the TU or a timer it is our bug and raises
:class:`SipLocalError`.

Timers live in ``STATE_TIMERS``: the timers that run in a state. Entering a state cancels
every other timer and starts the listed ones not already running, so the non-INVITE
client's E and F keep running from Trying into Proceeding (§17.1.2.2). A timer that is
zero on a reliable transport (D, I, J, K) fires at once, inline.
"""

from __future__ import annotations

import enum
import logging

from tsunagu.sip.errors import SipLocalError, SipParseError
from tsunagu.sip.headers import split_list
from tsunagu.sip.message import Headers, SipRequest, SipResponse, make_response
from tsunagu.sip.txn_events import (
    AckReceived,
    Event,
    PeerLike,
    ResponseReceived,
    SendMessage,
    TimerConfig,
    TransactionTerminated,
    TransactionTimeout,
    TransportErrorReported,
    TxKind,
)

log = logging.getLogger("tsunagu.sip.transaction")


class TxState(enum.Enum):
    """State names exactly as in RFC 3261 §17 and RFC 6026."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TxInput(enum.Enum):
    # From the network: absorbed when the table has no row for them.
    PROVISIONAL = "1xx received"
    SUCCESS = "2xx received"
    FAILURE = "300-699 received"
    REQUEST = "request retransmission"
    ACK = "ACK received"
    TRANSPORT_ERROR = "transport error"
    # From the TU: a missing row is a TU bug.
    TU_PROVISIONAL = "1xx from TU"
    TU_SUCCESS = "2xx from TU"
    TU_FAILURE = "300-699 from TU"


NETWORK_INPUTS = frozenset(
    (
        TxInput.PROVISIONAL,
        TxInput.SUCCESS,
        TxInput.FAILURE,
        TxInput.REQUEST,
        TxInput.ACK,
        TxInput.TRANSPORT_ERROR,
    )
)


class Timer(enum.Enum):
    """RFC 3261 Table 4 timers plus RFC 6026's L and M, and the §17.2.1 200 ms rule."""

    A = "A"  # INVITE request retransmit (unreliable), doubles without cap
    B = "B"  # INVITE transaction timeout, 64*T1
    D = "D"  # wait for response retransmissions, >= 32 s unreliable, 0 reliable
    E = "E"  # non-INVITE request retransmit (unreliable), doubles up to T2
    F = "F"  # non-INVITE transaction timeout, 64*T1
    G = "G"  # INVITE final response retransmit (unreliable), doubles up to T2
    H = "H"  # wait for ACK, 64*T1
    I = "I"  # noqa: E741  # wait for ACK retransmissions, T4 unreliable, 0 reliable
    J = "J"  # wait for non-INVITE request retransmissions, 64*T1 unreliable, 0 reliable
    K = "K"  # wait for response retransmissions, T4 unreliable, 0 reliable
    L = "L"  # RFC 6026: server, Accepted, wait for INVITE retransmissions, 64*T1
    M = "M"  # RFC 6026: client, Accepted, wait for 2xx retransmissions, 64*T1
    TRYING = "100"  # §17.2.1: send 100 Trying if the TU is silent for 200 ms


class Action(enum.Enum):
    SEND = "send the TU's response"
    RETRANSMIT = "retransmit (client: the request; server: the last response)"
    RESTART = "restart the timer that fired with its next interval"
    SEND_ACK = "send the ACK for a non-2xx final (§17.1.1.3)"
    SEND_TRYING = "send 100 Trying (§17.2.1)"
    STOP_TRYING = "cancel the 100 Trying timer"
    TO_TU = "pass the message to the TU"
    TIMEOUT = "report a timeout to the TU"
    INFORM_TU = "report a transport error to the TU"


Input = TxInput | Timer
Step = tuple[TxState, tuple[Action, ...]]
Table = dict[tuple[TxState, Input], Step]

_S = TxState
_I = TxInput
_A = Action
_ABSORB: tuple[Action, ...] = ()

# §17.1.1.2 Figure 5, with RFC 6026 §7.2 (2xx -> Accepted, Timer M).
CLIENT_INVITE: Table = {
    (_S.CALLING, Timer.A): (_S.CALLING, (_A.RETRANSMIT, _A.RESTART)),
    (_S.CALLING, Timer.B): (_S.TERMINATED, (_A.TIMEOUT,)),
    (_S.CALLING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (_A.INFORM_TU,)),
    (_S.CALLING, _I.PROVISIONAL): (_S.PROCEEDING, (_A.TO_TU,)),
    (_S.CALLING, _I.SUCCESS): (_S.ACCEPTED, (_A.TO_TU,)),
    (_S.CALLING, _I.FAILURE): (_S.COMPLETED, (_A.SEND_ACK, _A.TO_TU)),
    (_S.PROCEEDING, _I.PROVISIONAL): (_S.PROCEEDING, (_A.TO_TU,)),
    (_S.PROCEEDING, _I.SUCCESS): (_S.ACCEPTED, (_A.TO_TU,)),
    (_S.PROCEEDING, _I.FAILURE): (_S.COMPLETED, (_A.SEND_ACK, _A.TO_TU)),
    (_S.COMPLETED, _I.FAILURE): (_S.COMPLETED, (_A.SEND_ACK,)),  # re-ACK, not to the TU
    (_S.COMPLETED, _I.PROVISIONAL): (_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_S.TERMINATED, (_A.INFORM_TU,)),
    (_S.COMPLETED, Timer.D): (_S.TERMINATED, ()),
    (_S.ACCEPTED, _I.SUCCESS): (_S.ACCEPTED, (_A.TO_TU,)),  # TU re-ACKs (RFC 6026 §8.4)
    (_S.ACCEPTED, _I.PROVISIONAL): (_S.ACCEPTED, _ABSORB),
    (_S.ACCEPTED, _I.FAILURE): (_S.ACCEPTED, _ABSORB),
    (_S.ACCEPTED, Timer.M): (_S.TERMINATED, ()),
}

# §17.1.2.2 Figure 6.
CLIENT_NON_INVITE: Table = {
    (_S.TRYING, Timer.E): (_S.TRYING, (_A.RETRANSMIT, _A.RESTART)),
    (_S.TRYING, Timer.F): (_S.TERMINATED, (_A.TIMEOUT,)),
    (_S.TRYING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (_A.INFORM_TU,)),
    (_S.TRYING, _I.PROVISIONAL): (_S.PROCEEDING, (_A.TO_TU,)),
    (_S.TRYING, _I.SUCCESS): (_S.COMPLETED, (_A.TO_TU,)),
    (_S.TRYING, _I.FAILURE): (_S.COMPLETED, (_A.TO_TU,)),
    (_S.PROCEEDING, Timer.E): (_S.PROCEEDING, (_A.RETRANSMIT, _A.RESTART)),
    (_S.PROCEEDING, Timer.F): (_S.TERMINATED, (_A.TIMEOUT,)),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (_A.INFORM_TU,)),
    (_S.PROCEEDING, _I.PROVISIONAL): (_S.PROCEEDING, (_A.TO_TU,)),
    (_S.PROCEEDING, _I.SUCCESS): (_S.COMPLETED, (_A.TO_TU,)),
    (_S.PROCEEDING, _I.FAILURE): (_S.COMPLETED, (_A.TO_TU,)),
    (_S.COMPLETED, _I.PROVISIONAL): (_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _I.SUCCESS): (_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, _I.FAILURE): (_S.COMPLETED, _ABSORB),
    (_S.COMPLETED, Timer.K): (_S.TERMINATED, ()),
}

# §17.2.1 Figure 7, with RFC 6026 §7.1 (2xx from TU -> Accepted, Timer L).
SERVER_INVITE: Table = {
    (_S.PROCEEDING, _I.REQUEST): (_S.PROCEEDING, (_A.RETRANSMIT,)),  # last provisional
    (_S.PROCEEDING, Timer.TRYING): (_S.PROCEEDING, (_A.SEND_TRYING,)),
    (_S.PROCEEDING, _I.TU_PROVISIONAL): (_S.PROCEEDING, (_A.STOP_TRYING, _A.SEND)),
    (_S.PROCEEDING, _I.TU_SUCCESS): (_S.ACCEPTED, (_A.SEND,)),
    (_S.PROCEEDING, _I.TU_FAILURE): (_S.COMPLETED, (_A.SEND,)),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (_A.INFORM_TU,)),
    (_S.COMPLETED, _I.REQUEST): (_S.COMPLETED, (_A.RETRANSMIT,)),
    (_S.COMPLETED, Timer.G): (_S.COMPLETED, (_A.RETRANSMIT, _A.RESTART)),
    (_S.COMPLETED, Timer.H): (_S.TERMINATED, (_A.TIMEOUT,)),
    (_S.COMPLETED, _I.ACK): (_S.CONFIRMED, ()),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_S.TERMINATED, (_A.INFORM_TU,)),
    (_S.CONFIRMED, _I.ACK): (_S.CONFIRMED, _ABSORB),
    (_S.CONFIRMED, _I.REQUEST): (_S.CONFIRMED, _ABSORB),
    (_S.CONFIRMED, Timer.I): (_S.TERMINATED, ()),
    (_S.ACCEPTED, _I.REQUEST): (_S.ACCEPTED, _ABSORB),  # RFC 6026 §8.7: the TU retransmits 2xx
    (_S.ACCEPTED, _I.ACK): (_S.ACCEPTED, (_A.TO_TU,)),
    (_S.ACCEPTED, _I.TU_SUCCESS): (_S.ACCEPTED, (_A.SEND,)),  # the TU's 2xx retransmission
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): (_S.ACCEPTED, (_A.INFORM_TU,)),
    (_S.ACCEPTED, Timer.L): (_S.TERMINATED, ()),
}

# §17.2.2 Figure 8.
SERVER_NON_INVITE: Table = {
    (_S.TRYING, _I.REQUEST): (_S.TRYING, _ABSORB),  # "discarded" until the TU answers
    (_S.TRYING, _I.TU_PROVISIONAL): (_S.PROCEEDING, (_A.SEND,)),
    (_S.TRYING, _I.TU_SUCCESS): (_S.COMPLETED, (_A.SEND,)),
    (_S.TRYING, _I.TU_FAILURE): (_S.COMPLETED, (_A.SEND,)),
    (_S.PROCEEDING, _I.REQUEST): (_S.PROCEEDING, (_A.RETRANSMIT,)),
    (_S.PROCEEDING, _I.TU_PROVISIONAL): (_S.PROCEEDING, (_A.SEND,)),
    (_S.PROCEEDING, _I.TU_SUCCESS): (_S.COMPLETED, (_A.SEND,)),
    (_S.PROCEEDING, _I.TU_FAILURE): (_S.COMPLETED, (_A.SEND,)),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (_A.INFORM_TU,)),
    (_S.COMPLETED, _I.REQUEST): (_S.COMPLETED, (_A.RETRANSMIT,)),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_S.TERMINATED, (_A.INFORM_TU,)),
    (_S.COMPLETED, Timer.J): (_S.TERMINATED, ()),
}

TABLES: dict[TxKind, Table] = {
    TxKind.CLIENT_INVITE: CLIENT_INVITE,
    TxKind.CLIENT_NON_INVITE: CLIENT_NON_INVITE,
    TxKind.SERVER_INVITE: SERVER_INVITE,
    TxKind.SERVER_NON_INVITE: SERVER_NON_INVITE,
}

INITIAL_STATE: dict[TxKind, TxState] = {
    TxKind.CLIENT_INVITE: _S.CALLING,
    TxKind.CLIENT_NON_INVITE: _S.TRYING,
    TxKind.SERVER_INVITE: _S.PROCEEDING,
    TxKind.SERVER_NON_INVITE: _S.TRYING,
}

#: The timers that run in each state (absent: none).
STATE_TIMERS: dict[tuple[TxKind, TxState], tuple[Timer, ...]] = {
    (TxKind.CLIENT_INVITE, _S.CALLING): (Timer.A, Timer.B),
    (TxKind.CLIENT_INVITE, _S.COMPLETED): (Timer.D,),
    (TxKind.CLIENT_INVITE, _S.ACCEPTED): (Timer.M,),
    (TxKind.CLIENT_NON_INVITE, _S.TRYING): (Timer.E, Timer.F),
    (TxKind.CLIENT_NON_INVITE, _S.PROCEEDING): (Timer.E, Timer.F),
    (TxKind.CLIENT_NON_INVITE, _S.COMPLETED): (Timer.K,),
    (TxKind.SERVER_INVITE, _S.PROCEEDING): (Timer.TRYING,),
    (TxKind.SERVER_INVITE, _S.COMPLETED): (Timer.G, Timer.H),
    (TxKind.SERVER_INVITE, _S.CONFIRMED): (Timer.I,),
    (TxKind.SERVER_INVITE, _S.ACCEPTED): (Timer.L,),
    (TxKind.SERVER_NON_INVITE, _S.COMPLETED): (Timer.J,),
}


def classify(status: int, *, from_tu: bool) -> TxInput:
    """The table input for a response of ``status``."""
    if status < 200:
        return TxInput.TU_PROVISIONAL if from_tu else TxInput.PROVISIONAL
    if status < 300:
        return TxInput.TU_SUCCESS if from_tu else TxInput.SUCCESS
    return TxInput.TU_FAILURE if from_tu else TxInput.FAILURE


class Transaction:
    """One transaction: its state, the request that created it, and its running timers.

    The owning :class:`~tsunagu.sip.transaction.TransactionLayer` feeds it inputs and
    collects ``scheduled`` timer deadlines into its heap; a deadline is live while
    ``deadlines[timer]`` still holds the same ``(when, token)``.
    """

    def __init__(
        self,
        tx_id: str,
        kind: TxKind,
        request: SipRequest,
        peer: PeerLike,
        config: TimerConfig,
    ) -> None:
        self.id = tx_id
        self.kind = kind
        self.request = request
        self.method = request.method
        self.peer = peer
        self.reliable = bool(peer.reliable)
        self.config = config
        self.state = INITIAL_STATE[kind]
        self.last_response: SipResponse | None = None
        self.final_response: SipResponse | None = None
        self.ack: SipRequest | None = None
        self.deadlines: dict[Timer, tuple[float, int]] = {}
        self.scheduled: list[tuple[float, Timer, int]] = []
        self.retransmissions = 0
        self.absorbed = 0
        self._intervals: dict[Timer, float] = {}
        self._tokens = 0
        self._table = TABLES[kind]

    def __repr__(self) -> str:
        return f"<Transaction {self.id} {self.kind.value} {self.method} {self.state.value}>"

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    # -- inputs ---------------------------------------------------------------------------
    def start(self, now: float) -> list[Event]:
        """Start the initial state's timers; a client also sends its request (§17.1)."""
        out: list[Event] = []
        if self.kind.is_client:
            out.append(SendMessage(self.request, self.peer, self.id))
        self._start_timers(now, out)
        return out

    def fire(self, timer: Timer, now: float) -> list[Event]:
        """A timer's deadline was reached (the layer checked it is still live)."""
        self.deadlines.pop(timer, None)
        return self.handle(timer, now)

    def handle(
        self,
        what: Input,
        now: float,
        message: SipRequest | SipResponse | None = None,
        *,
        detail: str = "",
    ) -> list[Event]:
        step = self._table.get((self.state, what))
        if step is None:
            if isinstance(what, TxInput) and what in NETWORK_INPUTS:
                self.absorbed += 1
                log.debug(
                    "absorbed input not in the table",
                    extra={"tx": self.id, "state": self.state.value, "input": what.value},
                )
                return []
            source = "timer" if isinstance(what, Timer) else "TU"
            raise SipLocalError(
                f"{self.kind.value} transaction {self.id} in state {self.state.value}: "
                f"{source} input {what.value!r} is not allowed"
            )
        if what is TxInput.TU_SUCCESS and self.state is TxState.ACCEPTED:
            self._check_2xx_retransmission(message)
        next_state, actions = step
        if not actions and next_state is self.state:
            self.absorbed += 1
        out: list[Event] = []
        for action in actions:
            self._do(action, what, now, message, detail=detail, out=out)
        if next_state is not self.state:
            self._enter(next_state, now, out)
        return out

    # -- actions --------------------------------------------------------------------------
    def _do(
        self,
        action: Action,
        what: Input,
        now: float,
        message: SipRequest | SipResponse | None,
        *,
        detail: str,
        out: list[Event],
    ) -> None:
        if action is Action.SEND:
            assert isinstance(message, SipResponse)
            self.last_response = message
            if message.status >= 200:
                self.final_response = message
            out.append(SendMessage(message, self.peer, self.id))
        elif action is Action.RETRANSMIT:
            again = self.request if self.kind.is_client else self.last_response
            if again is not None:
                self.retransmissions += 1
                out.append(SendMessage(again, self.peer, self.id))
        elif action is Action.RESTART:
            assert isinstance(what, Timer)
            self._schedule(what, now, self._next_interval(what))
        elif action is Action.SEND_ACK:
            assert isinstance(message, SipResponse)
            if self.ack is None:
                self.ack = build_ack(self.request, message)
            else:
                self.retransmissions += 1
            out.append(SendMessage(self.ack, self.peer, self.id))
        elif action is Action.SEND_TRYING:
            trying = make_response(self.request, 100)
            self.last_response = trying
            out.append(SendMessage(trying, self.peer, self.id))
        elif action is Action.STOP_TRYING:
            self.deadlines.pop(Timer.TRYING, None)
        elif action is Action.TO_TU:
            if isinstance(message, SipResponse):
                out.append(ResponseReceived(self.id, message))
            else:
                assert message is not None
                out.append(AckReceived(message, self.peer, self.id))
        elif action is Action.TIMEOUT:
            assert isinstance(what, Timer)
            log.info(
                "transaction timed out",
                extra={"tx": self.id, "method": self.method, "timer": what.value},
            )
            out.append(TransactionTimeout(self.id, what.value))
        else:  # Action.INFORM_TU
            out.append(TransportErrorReported(self.id, detail))

    def _check_2xx_retransmission(self, message: SipRequest | SipResponse | None) -> None:
        """In Accepted the TU may only re-send its 2xx (§13.3.1.4), never a new answer."""
        sent = self.final_response
        assert isinstance(message, SipResponse) and sent is not None
        try:
            same = message.status == sent.status and message.to.tag == sent.to.tag
        except SipParseError as exc:
            raise SipLocalError(f"TU response without a usable To: {exc}") from exc
        if not same:
            raise SipLocalError(
                f"transaction {self.id} already answered {sent.status}; a 2xx sent while "
                "Accepted must be that same response again"
            )

    # -- states and timers ----------------------------------------------------------------
    def _enter(self, state: TxState, now: float, out: list[Event]) -> None:
        log.debug(
            "transaction state",
            extra={"tx": self.id, "from": self.state.value, "to": state.value},
        )
        self.state = state
        if state is TxState.TERMINATED:
            self.deadlines.clear()
            out.append(TransactionTerminated(self.id, self.kind))
            return
        keep = STATE_TIMERS.get((self.kind, state), ())
        for timer in list(self.deadlines):
            if timer not in keep:
                del self.deadlines[timer]
        self._start_timers(now, out)

    def _start_timers(self, now: float, out: list[Event]) -> None:
        zero: list[Timer] = []
        for timer in STATE_TIMERS.get((self.kind, self.state), ()):
            if timer in self.deadlines:
                continue
            delay = self._initial_interval(timer)
            if delay is None:
                continue
            if delay == 0:
                zero.append(timer)
            else:
                self._schedule(timer, now, delay)
        state = self.state
        for timer in zero:
            if self.state is state:  # an earlier zero timer may have moved us on
                out += self.handle(timer, now)

    def _schedule(self, timer: Timer, now: float, delay: float) -> None:
        self._tokens += 1
        when = now + delay
        self._intervals[timer] = delay
        self.deadlines[timer] = (when, self._tokens)
        self.scheduled.append((when, timer, self._tokens))

    def _initial_interval(self, timer: Timer) -> float | None:
        """Table 4 values; ``None`` means the timer does not run on this transport."""
        cfg = self.config
        unreliable = not self.reliable
        if timer in (Timer.A, Timer.E, Timer.G):  # retransmissions only on UDP
            return cfg.t1 if unreliable else None
        if timer in (Timer.B, Timer.F, Timer.H, Timer.L, Timer.M):
            return cfg.timeout
        if timer is Timer.D:
            return cfg.d if unreliable else 0.0
        if timer in (Timer.I, Timer.K):
            return cfg.t4 if unreliable else 0.0
        if timer is Timer.J:
            return cfg.timeout if unreliable else 0.0
        return cfg.trying_delay  # Timer.TRYING

    def _next_interval(self, timer: Timer) -> float:
        previous = self._intervals[timer]
        if timer is Timer.A:
            return 2 * previous  # §17.1.1.2: doubles, no T2 cap for INVITE
        if timer is Timer.E and self.state is TxState.PROCEEDING:
            return self.config.t2  # §17.1.2.2: T2 once a provisional arrived
        if timer in (Timer.E, Timer.G):
            return min(2 * previous, self.config.t2)  # §17.1.2.2, §17.2.1
        raise SipLocalError(f"timer {timer.value} is not a retransmission timer")


# -- requests a transaction (or its TU) derives from the original ------------------------
def _top_via_text(request: SipRequest) -> str:
    values = request.headers.values("Via")
    if not values:
        raise SipLocalError("request without Via")
    return split_list(values[0], what="Via")[0]


def _derived_request(method: str, request: SipRequest, to_value: str) -> SipRequest:
    """Shared shape of ACK for non-2xx (§17.1.1.3) and CANCEL (§9.1): same Request-URI,
    Call-ID, From and CSeq number; only the top Via; Route copied."""
    headers = Headers()
    headers.add("Via", _top_via_text(request))
    headers.add("Max-Forwards", "70")  # §8.1.1.6: every request carries one
    for route in request.headers.values("Route"):
        headers.add("Route", route)
    from_value = request.headers.get("From")
    if from_value is None:
        raise SipLocalError("request without From")
    headers.add("From", from_value)
    headers.add("To", to_value)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.number} {method}")
    return SipRequest(method, request.uri, headers)


def build_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a non-2xx final (§17.1.1.3).

    To comes from the response (it carries the UAS's tag); everything else from the
    INVITE, so that the server transaction matches it (§17.2.3).
    """
    to_value = response.headers.get("To")
    if to_value is None:  # the parser guarantees To in received responses
        raise SipLocalError("response without To")
    return _derived_request("ACK", request, to_value)


def build_cancel(request: SipRequest) -> SipRequest:
    """A CANCEL for ``request`` per §9.1 (same branch, so it reaches the same server
    transaction's peer; its own client transaction because the method differs)."""
    if request.method in ("ACK", "CANCEL"):
        raise SipLocalError(f"{request.method} cannot be cancelled (§9.1)")
    to_value = request.headers.get("To")
    if to_value is None:
        raise SipLocalError("request without To")
    return _derived_request("CANCEL", request, to_value)
