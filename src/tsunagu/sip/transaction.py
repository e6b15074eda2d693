"""The SIP transaction layer (RFC 3261 §17, RFC 6026), sans-IO with time passed in.

:class:`TransactionLayer` sits between the transport adapter and the transaction user (the
SIP core, later dialogs and calls). It never reads a clock and never touches a socket
(DESIGN.md, after aioquic's ``handle_timer(now)`` / ``get_timer()``):

* parsed messages go in with the ``peer`` they came from and ``now``
  (:meth:`~TransactionLayer.receive_request`, :meth:`~TransactionLayer.receive_response`);
  the TU's own messages go in the same way (:meth:`~TransactionLayer.send_request`,
  :meth:`~TransactionLayer.send_response`);
* typed events come out (:mod:`tsunagu.sip.txn_events`): ``SendMessage`` for the
  transport, the rest for the TU;
* :meth:`~TransactionLayer.next_timer` says when to call
  :meth:`~TransactionLayer.handle_timer` next, so a test runs 32 s of Timer A in
  microseconds.

The state machines are the tables in :mod:`tsunagu.sip.txn_machines`; matching rules live
in :mod:`tsunagu.sip.txn_matching`. This module routes messages to transactions, owns the
timer heap and keeps the counts metrics read.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets

from tsunagu.sip.errors import SipLocalError, SipParseError
from tsunagu.sip.message import SipRequest, SipResponse
from tsunagu.sip.txn_events import (
    AckReceived,
    CancelReceived,
    Event,
    PeerLike,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TimerConfig,
    TransactionTerminated,
    TransactionTimeout,
    TransportErrorReported,
    TxKind,
)
from tsunagu.sip.txn_machines import (
    Timer,
    Transaction,
    TxInput,
    TxState,
    build_ack,
    build_cancel,
    classify,
)
from tsunagu.sip.txn_matching import ClientKey, ServerIndex, client_key

__all__ = [
    "AckReceived",
    "CancelReceived",
    "Event",
    "PeerLike",
    "RequestReceived",
    "ResponseReceived",
    "SendMessage",
    "StrayResponse",
    "TimerConfig",
    "Transaction",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportErrorReported",
    "TxKind",
    "TxState",
    "build_ack",
    "build_cancel",
    "new_branch",
]

log = logging.getLogger("tsunagu.sip.transaction")

MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie plus 80 random bits (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(10)


class TransactionLayer:
    """Every live transaction, matched by key, with one heap of timer deadlines."""

    def __init__(self, config: TimerConfig | None = None) -> None:
        self.config = config or TimerConfig()
        self._txs: dict[str, Transaction] = {}
        self._server = ServerIndex()
        self._client: dict[ClientKey, Transaction] = {}
        self._client_key_of: dict[str, ClientKey] = {}
        # (when, sequence, tx id, timer, token); stale entries are skipped when popped.
        self._heap: list[tuple[float, int, str, Timer, int]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.stats: dict[str, int] = {
            "client_created": 0,
            "server_created": 0,
            "retransmissions_absorbed": 0,
            "stray_2xx": 0,
            "responses_dropped": 0,
            "timeouts": 0,
        }

    # -- network → layer ------------------------------------------------------------------
    def receive_request(self, request: SipRequest, peer: PeerLike, now: float) -> list[Event]:
        """A request from the network (§17.2.3 matching, then the server machines).

        ``peer`` is where responses for it must go (§18.2.2); a retransmission updates it,
        so answers follow the client if its source moved (a new TCP connection).
        """
        if request.method == "ACK":
            tx = self._server.match(request)
            if tx is None:  # an ACK for a 2xx: end-to-end, the TU's (§17.2.3, §13.3.1.4)
                return [AckReceived(request, peer, None)]
            return self._input(tx, TxInput.ACK, now, request)
        tx = self._server.match(request)
        if tx is not None:
            self.stats["retransmissions_absorbed"] += 1
            tx.peer = peer
            return self._input(tx, TxInput.REQUEST, now, request)
        kind = TxKind.SERVER_INVITE if request.method == "INVITE" else TxKind.SERVER_NON_INVITE
        tx = Transaction(self._new_id("s"), kind, request, peer, self.config)
        self._server.add(tx)
        self._txs[tx.id] = tx
        self.stats["server_created"] += 1
        event: Event
        if request.method == "CANCEL":
            invite = self._server.invite_for_cancel(request)
            event = CancelReceived(tx.id, request, peer, invite.id if invite else None)
        else:
            event = RequestReceived(tx.id, request, peer)
        return [event, *self._run(tx, tx.start(now))]

    def receive_response(self, response: SipResponse, peer: PeerLike, now: float) -> list[Event]:
        """A response from the network (§17.1.3 matching, then the client machines).

        Unmatched responses are dropped (§18.1.2) except a 2xx to INVITE, which belongs to
        a dialog that must ACK it (RFC 6026 §7.2): that comes out as :class:`StrayResponse`.
        """
        key = client_key(response)
        tx = self._client.get(key) if key is not None else None
        if tx is None:
            if 200 <= response.status < 300 and _cseq_method(response) == "INVITE":
                self.stats["stray_2xx"] += 1
                return [StrayResponse(response, peer)]
            self.stats["responses_dropped"] += 1
            log.debug("response matches no transaction", extra={"status": response.status})
            return []
        return self._input(tx, classify(response.status, from_tu=False), now, response)

    def report_transport_error(self, tx_id: str, now: float, reason: str = "") -> list[Event]:
        """The transport failed to send for ``tx_id`` (§17.1.4, §17.2.4).

        Unknown ids are ignored: the transaction may have ended since the send.
        """
        tx = self._txs.get(tx_id)
        if tx is None:
            return []
        return self._input(tx, TxInput.TRANSPORT_ERROR, now, None, detail=reason)

    # -- TU → layer -----------------------------------------------------------------------
    def send_request(
        self, request: SipRequest, peer: PeerLike, now: float
    ) -> tuple[str, list[Event]]:
        """Open a client transaction for ``request`` and send it (§17.1).

        The TU sets the top Via branch (use :func:`new_branch`). ACK is not a transaction
        (§17: an ACK for a 2xx is sent by the dialog directly, the one for a non-2xx by the
        INVITE transaction), so it is refused.
        """
        if request.method == "ACK":
            raise SipLocalError("ACK is not sent through a client transaction (§17.1.1.3)")
        try:
            cseq_method = request.cseq.method
        except SipParseError as exc:
            raise SipLocalError(f"request without a usable CSeq: {exc}") from exc
        if cseq_method != request.method:
            raise SipLocalError("CSeq method must match the request method (§8.1.1.5)")
        key = client_key(request)
        if key is None:
            raise SipLocalError("the top Via needs an RFC 3261 branch (§8.1.1.7, new_branch())")
        if key in self._client:
            raise SipLocalError(f"branch {key[0]} already used by a {key[1]} transaction")
        kind = TxKind.CLIENT_INVITE if request.method == "INVITE" else TxKind.CLIENT_NON_INVITE
        tx = Transaction(self._new_id("c"), kind, request, peer, self.config)
        self._client[key] = tx
        self._client_key_of[tx.id] = key
        self._txs[tx.id] = tx
        self.stats["client_created"] += 1
        return tx.id, self._run(tx, tx.start(now))

    def send_response(self, tx_id: str, response: SipResponse, now: float) -> list[Event]:
        """Send the TU's response on server transaction ``tx_id``.

        Raises :class:`SipLocalError` for TU misuse: an unknown or client transaction, a
        response for another method, a second final response (§17.2.1, §17.2.2), or a
        provisional after the final.
        """
        tx = self._txs.get(tx_id)
        if tx is None:
            raise SipLocalError(f"no transaction {tx_id} (terminated or never existed)")
        if tx.kind.is_client:
            raise SipLocalError(f"{tx_id} is a client transaction; responses go on servers")
        try:
            method = response.cseq.method
        except SipParseError as exc:
            raise SipLocalError(f"response without a usable CSeq: {exc}") from exc
        if method != tx.method:
            raise SipLocalError(f"a {method} response cannot answer a {tx.method} request")
        return self._input(tx, classify(response.status, from_tu=True), now, response)

    def terminate(self, tx_id: str) -> list[Event]:
        """Forget ``tx_id`` now, whatever its state (shutdown, or the TU gave up on it).

        Idempotent: an id already gone gives no events.
        """
        tx = self._txs.get(tx_id)
        if tx is None:
            return []
        tx.state = TxState.TERMINATED
        tx.deadlines.clear()
        self._forget(tx)
        return [TransactionTerminated(tx.id, tx.kind)]

    # -- time -----------------------------------------------------------------------------
    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or ``None`` if nothing runs."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``, earliest first."""
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            tx = self._txs[entry[2]]
            out += self._run(tx, tx.fire(entry[3], now))
        return out

    # -- queries --------------------------------------------------------------------------
    def find_invite_for_cancel(self, cancel: SipRequest) -> str | None:
        """The server INVITE transaction a CANCEL targets (§9.2), or ``None`` (→ 481)."""
        tx = self._server.invite_for_cancel(cancel)
        return tx.id if tx is not None else None

    def get(self, tx_id: str) -> Transaction | None:
        """The live transaction (read its ``state``, ``kind``, ``final_response``…)."""
        return self._txs.get(tx_id)

    def counts(self) -> dict[str, int]:
        """Active transactions by kind (``client_invite``, ``server_non_invite``, …)."""
        result = {kind.value: 0 for kind in TxKind}
        for tx in self._txs.values():
            result[tx.kind.value] += 1
        return result

    def __len__(self) -> int:
        return len(self._txs)

    # -- plumbing -------------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def _input(
        self,
        tx: Transaction,
        what: TxInput,
        now: float,
        message: SipRequest | SipResponse | None,
        *,
        detail: str = "",
    ) -> list[Event]:
        return self._run(tx, tx.handle(what, now, message, detail=detail))

    def _run(self, tx: Transaction, events: list[Event]) -> list[Event]:
        """After a transaction stepped: queue its new deadlines, forget it if it ended."""
        for when, timer, token in tx.scheduled:
            heapq.heappush(self._heap, (when, next(self._seq), tx.id, timer, token))
        tx.scheduled.clear()
        if tx.terminated:
            self._forget(tx)
        for event in events:
            if isinstance(event, TransactionTimeout):
                self.stats["timeouts"] += 1
        return events

    def _forget(self, tx: Transaction) -> None:
        self._txs.pop(tx.id, None)
        if tx.kind.is_client:
            key = self._client_key_of.pop(tx.id, None)
            if key is not None:
                self._client.pop(key, None)
        else:
            self._server.remove(tx)

    def _live(self, entry: tuple[float, int, str, Timer, int]) -> bool:
        when, _, tx_id, timer, token = entry
        tx = self._txs.get(tx_id)
        return tx is not None and tx.deadlines.get(timer) == (when, token)


def _cseq_method(response: SipResponse) -> str | None:
    try:
        return response.cseq.method
    except SipParseError:
        return None
