"""Which transaction a message belongs to (RFC 3261 §17.1.3, §17.2.3, §9.2).

Server side, two regimes decided by the top Via's branch:

* RFC 3261 branch (magic cookie ``z9hG4bK`` plus something, §8.1.1.7): the key is branch,
  sent-by and method, where ACK counts as INVITE (it belongs to the INVITE transaction
  when it acknowledges a non-2xx) and CANCEL keeps its own method (its own transaction).
* Anything else, including a bare ``z9hG4bK`` (RFC 4475 §3.2.1: not unique), falls back to
  RFC 2543 matching: Request-URI, From tag, Call-ID, CSeq and top Via, then the To tag —
  of the request for INVITE and other methods, of the *response the transaction sent* for
  an ACK (that is how a 2543 ACK for a non-2xx is told apart from one for a 2xx).

Client side (§17.1.3) a response matches by its top Via branch plus CSeq method: we made
the branch, so it is unique, and the method separates an INVITE from its CANCEL.
"""

from __future__ import annotations

from tsunagu.sip.errors import SipLocalError, SipParseError
from tsunagu.sip.message import SipRequest, SipResponse
from tsunagu.sip.txn_events import TxKind
from tsunagu.sip.txn_machines import Transaction

#: (branch, sent-by host lower-case, sent-by port, method with ACK as INVITE)
ServerKey = tuple[str, str, int, str]
#: (Request-URI, From tag, Call-ID, CSeq number, top Via transport, host, port, branch)
LegacyKey = tuple[str, str | None, str, int, str, str, int, str | None]
#: (branch, method)
ClientKey = tuple[str, str]


def server_key(request: SipRequest, method: str | None = None) -> ServerKey | None:
    """The §17.2.3 key, or ``None`` when the branch is not an RFC 3261 one."""
    via = request.top_via
    branch = via.branch
    if branch is None or not via.is_rfc3261_branch:
        return None
    method = method or request.method
    host, port = via.sent_by
    return (branch, host.lower(), port, "INVITE" if method == "ACK" else method)


def legacy_key(request: SipRequest) -> LegacyKey:
    """The RFC 2543 fields every method shares; the To tag and method are checked after."""
    via = request.top_via
    host, port = via.sent_by
    return (
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.number,
        via.transport,
        host.lower(),
        port,
        via.branch,
    )


def client_key(message: SipRequest | SipResponse) -> ClientKey | None:
    """The §17.1.3 key of a request we send or a response we receive.

    ``None`` for a response whose branch cannot be ours (none, or not RFC 3261).
    """
    try:
        via = message.top_via
        method = message.method if isinstance(message, SipRequest) else message.cseq.method
    except SipParseError:
        return None
    branch = via.branch
    if branch is None or not via.is_rfc3261_branch:
        return None
    return (branch, method)


class ServerIndex:
    """Server transactions by §17.2.3 key and by RFC 2543 fields."""

    def __init__(self) -> None:
        self._by_key: dict[ServerKey, Transaction] = {}
        self._legacy: dict[LegacyKey, list[Transaction]] = {}
        self._key_of: dict[str, ServerKey] = {}
        self._legacy_key_of: dict[str, LegacyKey] = {}

    def add(self, tx: Transaction) -> None:
        key = server_key(tx.request)
        if key is not None:
            if key in self._by_key:
                raise SipLocalError(f"server transaction key {key} already in use")
            self._by_key[key] = tx
            self._key_of[tx.id] = key
        else:
            legacy = legacy_key(tx.request)
            self._legacy.setdefault(legacy, []).append(tx)
            self._legacy_key_of[tx.id] = legacy

    def remove(self, tx: Transaction) -> None:
        key = self._key_of.pop(tx.id, None)
        if key is not None:
            self._by_key.pop(key, None)
        legacy = self._legacy_key_of.pop(tx.id, None)
        if legacy is not None:
            bucket = [t for t in self._legacy.get(legacy, ()) if t is not tx]
            if bucket:
                self._legacy[legacy] = bucket
            else:
                self._legacy.pop(legacy, None)

    def match(self, request: SipRequest) -> Transaction | None:
        """The server transaction ``request`` belongs to (a retransmission, or an ACK)."""
        key = server_key(request)
        if key is not None:
            return self._by_key.get(key)
        candidates = self._legacy.get(legacy_key(request), ())
        to_tag = request.to.tag
        if request.method == "ACK":
            for tx in candidates:
                final = tx.final_response
                if tx.method == "INVITE" and final is not None and _tag(final) == to_tag:
                    return tx
            return None
        for tx in candidates:
            if tx.method == request.method and tx.request.to.tag == to_tag:
                return tx
        return None

    def invite_for_cancel(self, cancel: SipRequest) -> Transaction | None:
        """§9.2: match the CANCEL "assuming the method is anything but CANCEL or ACK".

        Only INVITE is worth cancelling (§9.1: non-INVITE is answered at once), so only
        server INVITE transactions are returned.
        """
        key = server_key(cancel, "INVITE")
        if key is not None:
            tx = self._by_key.get(key)
            return tx if tx is not None and tx.kind is TxKind.SERVER_INVITE else None
        to_tag = cancel.to.tag
        for tx in self._legacy.get(legacy_key(cancel), ()):
            if tx.kind is TxKind.SERVER_INVITE and tx.request.to.tag == to_tag:
                return tx
        return None

    def __len__(self) -> int:
        return len(self._key_of) + len(self._legacy_key_of)


def _tag(response: SipResponse) -> str | None:
    try:
        return response.to.tag
    except SipParseError:
        return None
