"""What the SIP transaction layer takes in and hands out: timer settings and typed events.

The layer is sans-IO (DESIGN.md, after h11 and aioquic): it never reads a clock or touches a
socket. Messages and ``now`` go in; these events come out. ``SendMessage`` is for the
transport adapter, everything else is for the transaction user (TU, RFC 3261 §17: the UA
core, the dialog layer, call logic).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from tsunagu.sip.message import SipRequest, SipResponse


class PeerLike(Protocol):
    """Where a message came from or goes to; opaque to the layer except for reliability.

    ``reliable`` (TCP, TLS, WS) switches off retransmissions and zeroes the wait timers
    D, I, J and K (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).
    :class:`tsunagu.sip.peer.Peer` satisfies it.
    """

    @property
    def reliable(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 / Table 4 timer values, in seconds.

    * ``t1`` — RTT estimate; retransmission intervals start here and transaction timeouts
      (B, F, H, J, L, M) are ``64*t1``.
    * ``t2`` — cap on the non-INVITE (E) and INVITE-response (G) retransmission interval.
    * ``t4`` — how long the network may hold a message (waits I and K).
    * ``d`` — Timer D, "at least 32 seconds" on unreliable transports (§17.1.1.2).
    * ``trying_delay`` — §17.2.1: a server INVITE transaction sends ``100 Trying`` itself if
      the TU has not answered within 200 ms. ``0`` sends it at once, ``None`` never (the TU
      then owns provisional responses entirely).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0
    trying_delay: float | None = 0.2

    def __post_init__(self) -> None:
        if not self.t1 > 0 or not self.t2 > 0 or self.t4 < 0 or self.d < 0:
            raise ValueError("SIP timers: T1 and T2 must be positive, T4 and D non-negative")
        if self.t2 < self.t1:
            # §17.1.2.2 doubles from T1 "up to T2": a T2 below T1 makes no schedule.
            raise ValueError("SIP timers: T2 must not be smaller than T1")
        if self.trying_delay is not None and self.trying_delay < 0:
            raise ValueError("SIP timers: the 100 Trying delay must be non-negative")

    @property
    def timeout(self) -> float:
        """``64*T1``: Timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1


class TxKind(enum.Enum):
    """The four transaction state machines of RFC 3261 §17."""

    CLIENT_INVITE = "client_invite"  # §17.1.1
    CLIENT_NON_INVITE = "client_non_invite"  # §17.1.2
    SERVER_INVITE = "server_invite"  # §17.2.1
    SERVER_NON_INVITE = "server_non_invite"  # §17.2.2

    @property
    def is_client(self) -> bool:
        return self in (TxKind.CLIENT_INVITE, TxKind.CLIENT_NON_INVITE)

    @property
    def is_invite(self) -> bool:
        return self in (TxKind.CLIENT_INVITE, TxKind.SERVER_INVITE)


# -- events -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendMessage:
    """Give ``message`` to the transport for ``peer`` (a first send or a retransmission).

    ``tx_id`` names the transaction that sent it (``None`` for nothing), so the adapter can
    report a failed send with :meth:`TransactionLayer.report_transport_error`.
    """

    message: SipRequest | SipResponse
    peer: PeerLike
    tx_id: str | None = None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request (not ACK, not CANCEL) opened server transaction ``tx_id``; answer it
    with :meth:`TransactionLayer.send_response`."""

    tx_id: str
    request: SipRequest
    peer: PeerLike


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL opened its own server transaction ``tx_id`` (§9.2).

    ``invite_tx_id`` is the server INVITE transaction it cancels (matched per §9.2), or
    ``None``: then the TU answers the CANCEL with 481. Otherwise 200 to the CANCEL and, if
    that INVITE has no final response yet, 487 to the INVITE.
    """

    tx_id: str
    request: SipRequest
    peer: PeerLike
    invite_tx_id: str | None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK the TU must see: the ACK for a 2xx is end-to-end (§13.3.1.4, §17.2.1).

    ``tx_id`` is the INVITE server transaction in the Accepted state it matched (RFC 6026
    §8.7), usually ``None``: an ACK for a 2xx has a branch of its own (§13.2.2.4).
    """

    request: SipRequest
    peer: PeerLike
    tx_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response a client transaction passes up to the TU (provisional and final, and
    2xx retransmissions while Accepted so the dialog layer can re-ACK, RFC 6026 §8.4)."""

    tx_id: str
    response: SipResponse


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A 2xx to INVITE matching no client transaction: a retransmission after Timer M, or
    a forked 2xx. It belongs to a dialog, which must ACK it (§13.2.2.4, RFC 6026 §7.2)."""

    response: SipResponse
    peer: PeerLike


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B or F (no final response: treat as 408, §8.1.3.1) or H (the ACK for our
    non-2xx final never came, §17.2.1)."""

    tx_id: str
    timer: str


@dataclass(frozen=True, slots=True)
class TransportErrorReported:
    """The transport could not send for ``tx_id`` (§17.1.4, §17.2.4); treat as 503."""

    tx_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """``tx_id`` reached the Terminated state and has been forgotten."""

    tx_id: str
    kind: TxKind


Event = (
    SendMessage
    | RequestReceived
    | CancelReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimeout
    | TransportErrorReported
    | TransactionTerminated
)
