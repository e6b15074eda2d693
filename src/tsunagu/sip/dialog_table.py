"""Finding the dialog a message belongs to (RFC 3261 §12.2.2, §13.2.2.4).

An in-dialog request is matched by Call-ID, its To tag (ours) and its From tag (the
peer's); a response by Call-ID, From tag (ours) and To tag (the peer's). Before our INVITE
has any tagged answer there is no dialog to match, only the INVITE itself: those are kept
"pending" under (Call-ID, our From tag), which is how a forked 2xx or a 2xx retransmitted
after the transaction ended (``StrayResponse``) finds the
:class:`~tsunagu.sip.invite_client.UacInvite` that must ACK it.

For a ``StrayResponse`` ask :meth:`DialogTable.match_pending` first and the dialogs
second: while our INVITE lingers (64*T1 after its first 2xx) only the ``UacInvite`` can
tell a retransmission from a late branch that must be ACKed *and* BYEd.

The table is generic over what the call layer stores (a leg, a session…) so that one
lookup gives the call layer its own object. It keeps the :class:`Dialog` beside each value
to count dialogs by state for metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from tsunagu.sip.dialog import Dialog, DialogId, DialogState
from tsunagu.sip.errors import SipLocalError, SipParseError
from tsunagu.sip.message import SipRequest, SipResponse, make_response

T = TypeVar("T")
P = TypeVar("P")


def request_dialog_id(request: SipRequest) -> DialogId | None:
    """The id a received request names (§12.2.2), ``None`` outside any dialog (no To tag)."""
    to_tag = request.to.tag
    if not to_tag:
        return None
    return DialogId(request.call_id, to_tag, request.from_.tag or "")


def response_dialog_id(response: SipResponse) -> DialogId | None:
    """The id a response to our request names, ``None`` without a To tag."""
    to_tag = response.to.tag
    from_tag = response.from_.tag
    if not to_tag or not from_tag:
        return None
    return DialogId(response.call_id, from_tag, to_tag)


def unknown_dialog_response(request: SipRequest) -> SipResponse | None:
    """The answer to a request naming a dialog we do not have: 481 (§12.2.2), or nothing
    for an ACK (never answered)."""
    if request.method == "ACK":
        return None
    return make_response(request, 481)


class DialogTable(Generic[T, P]):
    """Dialogs by :class:`DialogId` → ``T``; pending INVITEs by (Call-ID, From tag) → ``P``."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, tuple[Dialog, T]] = {}
        self._pending: dict[tuple[str, str], P] = {}

    # -- dialogs --------------------------------------------------------------------------
    def add(self, dialog: Dialog, value: T) -> None:
        """Register ``dialog``; the same dialog again replaces the value, another dialog
        with the same id is a bug (tags are random: it means a tag was reused)."""
        key = dialog.id
        present = self._dialogs.get(key)
        if present is not None and present[0] is not dialog:
            raise SipLocalError(f"dialog id {key} already in use")
        self._dialogs[key] = (dialog, value)

    def remove(self, dialog_id: DialogId) -> T | None:
        entry = self._dialogs.pop(dialog_id, None)
        return entry[1] if entry is not None else None

    def get(self, dialog_id: DialogId) -> T | None:
        entry = self._dialogs.get(dialog_id)
        return entry[1] if entry is not None else None

    def match_request(self, request: SipRequest) -> T | None:
        """The dialog a received request (ACK, BYE, re-INVITE…) is for, if we know it."""
        try:
            key = request_dialog_id(request)
        except SipParseError:
            return None
        return self.get(key) if key is not None else None

    def match_response(self, response: SipResponse) -> T | None:
        """The dialog a response to our in-dialog request (or a stray 2xx) is for."""
        try:
            key = response_dialog_id(response)
        except SipParseError:
            return None
        return self.get(key) if key is not None else None

    def sweep_terminated(self) -> list[T]:
        """Drop every terminated dialog; returns their values."""
        gone = [key for key, (dialog, _) in self._dialogs.items() if dialog.is_terminated]
        return [self._dialogs.pop(key)[1] for key in gone]

    def values(self) -> Iterator[T]:
        for _, value in self._dialogs.values():
            yield value

    # -- INVITEs without a dialog yet -----------------------------------------------------
    def add_pending(self, key: tuple[str, str], value: P) -> None:
        """Register our INVITE under ``key`` = (Call-ID, our From tag), e.g.
        ``UacInvite.key``."""
        if key in self._pending:
            raise SipLocalError(f"an INVITE with Call-ID/From tag {key} is already pending")
        self._pending[key] = value

    def remove_pending(self, key: tuple[str, str]) -> P | None:
        return self._pending.pop(key, None)

    def match_pending(self, response: SipResponse) -> P | None:
        """Our INVITE this response answers, by Call-ID and From tag."""
        try:
            key = (response.call_id, response.from_.tag or "")
        except SipParseError:
            return None
        return self._pending.get(key)

    # -- metrics --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Dialogs by state plus pending INVITEs, for the metrics endpoint."""
        result = {state.value: 0 for state in DialogState}
        for dialog, _ in self._dialogs.values():
            result[dialog.state.value] += 1
        result["pending_invites"] = len(self._pending)
        return result

    def __len__(self) -> int:
        return len(self._dialogs)

    def __contains__(self, dialog_id: object) -> bool:
        return dialog_id in self._dialogs
