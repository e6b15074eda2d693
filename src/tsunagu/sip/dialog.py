"""SIP dialogs (RFC 3261 §12): the state two user agents share, and the requests built from it.

A dialog is what lets a BYE sent an hour after the INVITE find its way: the route set
recorded by proxies, the remote target (the peer's Contact), both tags and both CSeq
counters. :class:`Dialog` holds that state, builds in-dialog requests and the ACK for a 2xx
(§12.2.1.1, §13.2.2.4), and checks the in-dialog requests it receives (§12.2.2). It is
sans-IO and clock-free: it never sends anything; the INVITE machinery in
:mod:`tsunagu.sip.invite_session` and the call layer decide what to send and when.

The dialog's own life is the small table :data:`DIALOG_TRANSITIONS` (early → confirmed →
terminated, §12.1 and §12.3); asking it for a move the table lacks (confirming a dead
dialog) is a bug and raises :class:`SipLocalError`.

What the peer got wrong raises :class:`SipParseError` with the status to answer (a
dialog-creating INVITE without Contact is a 400); what *we* got wrong raises
:class:`SipLocalError`.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import NamedTuple

from tsunagu.sip.errors import SipLocalError, SipParseError
from tsunagu.sip.headers import NameAddress, Via
from tsunagu.sip.message import Headers, SipMessage, SipRequest, SipResponse, make_response
from tsunagu.sip.transaction import new_branch
from tsunagu.sip.uri import SipUri, Uri

log = logging.getLogger("tsunagu.sip.dialog")

#: Methods whose request (UAS side) or 2xx (UAC side) replaces the remote target (§12.2:
#: re-INVITE; RFC 3311 UPDATE; RFC 6665 SUBSCRIBE/NOTIFY; RFC 3515 REFER).
TARGET_REFRESH_METHODS = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))
DEFAULT_MAX_FORWARDS = 70
#: Headers holding credentials: an ACK for a 2xx carries the INVITE's (§13.2.2.4).
_CREDENTIALS = ("Authorization", "Proxy-Authorization")

#: Gives the Via sent-by ``(host, port)`` to put in a request sent over ``transport``
#: (``"UDP"``, ``"TCP"``, ``"TLS"``…): the transport adapter knows its listening sockets.
ViaProvider = Callable[[str], tuple[str, int]]


class DialogId(NamedTuple):
    """§12: Call-ID plus both tags, seen from our side (local = ours)."""

    call_id: str
    local_tag: str
    remote_tag: str


class DialogState(enum.Enum):
    """§12: a dialog is early (created by a tagged 1xx) or confirmed (by a 2xx)."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogInput(enum.Enum):
    CONFIRM = "2xx sent or received"  # §12.1.1, §13.2.2.4
    TERMINATE = "BYE, non-2xx final, 481/408, expiry"  # §12.3, §15, §12.2.1.2


class TerminationReason(enum.Enum):
    """Why a dialog ended; the call layer turns it into a hang-up cause."""

    LOCAL_HANGUP = "we hung up: BYE, or a final error to an unanswered INVITE"  # §15.1.1, §15
    REMOTE_BYE = "peer sent BYE"  # §15.1.2
    REJECTED = "non-2xx final response to the INVITE"  # §12.3, §13.2.2.3
    CANCELLED = "INVITE cancelled"  # §9
    GONE = "481, 408 or no response to an in-dialog request"  # §12.2.1.2
    TIMED_OUT = "INVITE timed out or could not be sent"  # §8.1.3.1
    NOT_CONFIRMED = "early dialog never confirmed"  # §13.2.2.4: 64*T1 after the first 2xx
    FORK = "extra 2xx from a forked INVITE"  # §13.2.2.4: ACK, then BYE


#: The dialog life cycle. Confirming twice is fine (a re-INVITE's 2xx); terminating twice
#: is fine (crossing BYEs); confirming a terminated dialog is a bug.
DIALOG_TRANSITIONS: dict[tuple[DialogState, DialogInput], DialogState] = {
    (DialogState.EARLY, DialogInput.CONFIRM): DialogState.CONFIRMED,
    (DialogState.EARLY, DialogInput.TERMINATE): DialogState.TERMINATED,
    (DialogState.CONFIRMED, DialogInput.CONFIRM): DialogState.CONFIRMED,
    (DialogState.CONFIRMED, DialogInput.TERMINATE): DialogState.TERMINATED,
    (DialogState.TERMINATED, DialogInput.TERMINATE): DialogState.TERMINATED,
}


def new_tag() -> str:
    """A From/To tag with 64 random bits (§19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def new_call_id(host: str) -> str:
    """A globally unique Call-ID (§8.1.1.4): 120 random bits ``@`` our host."""
    return f"{secrets.token_hex(15)}@{host}"


def _first_cseq() -> int:
    """§8.1.1.5/§12.2.1.1: a random start below 2**31, small enough never to wrap."""
    return secrets.randbelow(2**16) + 1


def transport_for(uri: Uri) -> str:
    """Transport towards ``uri`` (§19.1.1, §26.2: a SIPS URI means TLS)."""
    if not isinstance(uri, SipUri):
        return "UDP"
    transport = uri.transport
    if uri.scheme == "sips":
        return "WSS" if transport in ("WS", "WSS") else "TLS"
    return transport


def next_hop(request: SipRequest) -> Uri:
    """Where a request goes first (§8.1.2): the top Route URI, else the Request-URI.

    The call layer resolves it (§26 / RFC 3263) to a transport address; an ACK for a 2xx
    goes out the same way, without a transaction.
    """
    routes = request.headers.get_list("Route")
    if routes:
        return NameAddress.parse(routes[0], what="Route").uri
    return request.uri


def _party(value: NameAddress) -> NameAddress:
    """A From/To value reduced to display name and URI: tags are the dialog id's job."""
    return NameAddress(value.uri, value.display_name, {})


def _with_tag(party: NameAddress, tag: str) -> str:
    params: dict[str, str | None] = {"tag": tag} if tag else {}
    return str(NameAddress(party.uri, party.display_name, params))


def _request_uri(uri: Uri) -> Uri:
    """``uri`` made fit for a Request-URI: no ``method`` parameter, no headers (§19.1.1)."""
    if not isinstance(uri, SipUri) or ("method" not in uri.params and not uri.headers):
        return uri
    out = uri.copy()
    out.params.pop("method", None)
    out.headers = {}
    return out


def _record_route(message: SipMessage) -> list[NameAddress]:
    return [
        NameAddress.parse(item, what="Record-Route")
        for item in message.headers.get_list("Record-Route")
    ]


def _as_contact(value: NameAddress | Uri | str) -> NameAddress:
    if isinstance(value, NameAddress):
        return value
    if isinstance(value, str):
        return NameAddress.parse(value, what="Contact")
    return NameAddress(value)


def _fixed_via(host: str, port: int) -> ViaProvider:
    def provider(_transport: str) -> tuple[str, int]:
        return host, port

    return provider


class Dialog:
    """One dialog, seen from our side (§12).

    Build one with :meth:`from_uas` (we answered an INVITE) or :meth:`from_uac` (we sent
    it and a tagged 1xx/2xx came back). ``is_uac`` records which: the UAC generated the
    Call-ID, which decides the 491 back-off (§14.1).
    """

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_party: NameAddress,
        remote_party: NameAddress,
        local_contact: NameAddress,
        remote_target: Uri,
        route_set: Sequence[NameAddress],
        local_cseq: int | None,
        remote_cseq: int | None,
        secure: bool,
        is_uac: bool,
        state: DialogState,
        local_via: ViaProvider,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_party = _party(local_party)
        self.remote_party = _party(remote_party)
        self.local_contact = local_contact
        self.remote_target = remote_target
        self.route_set = list(route_set)
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.secure = secure
        self.is_uac = is_uac
        self.state = state
        self.local_via = local_via
        self.ended_by: TerminationReason | None = None

    def __repr__(self) -> str:
        role = "uac" if self.is_uac else "uas"
        return (
            f"<Dialog {role} {self.call_id} {self.local_tag}/{self.remote_tag} {self.state.value}>"
        )

    # -- construction (§12.1) -------------------------------------------------------------
    @classmethod
    def from_uas(
        cls,
        invite: SipRequest,
        response: SipResponse,
        local_contact: NameAddress | Uri | str,
        *,
        local_via: ViaProvider | None = None,
        tls: bool = False,
    ) -> Dialog:
        """The dialog our tagged 101-299 ``response`` to ``invite`` creates (§12.1.1).

        The response is completed in place as §12.1.1 requires of it: the request's
        Record-Route lines are copied (same order, every parameter) and our Contact is
        added, unless the caller already put them there. ``tls`` says the INVITE arrived
        over TLS (with a SIPS Request-URI that makes the dialog secure).
        """
        if not 100 < response.status < 300:
            raise SipLocalError(f"a {response.status} does not create a dialog (§12.1)")
        local_tag = response.to.tag
        if not local_tag:
            raise SipLocalError("a dialog-creating response needs our To tag (§12.1.1)")
        dialog = cls.uas(invite, local_tag, local_contact, local_via=local_via, tls=tls)
        dialog.prepare_response(invite, response)
        if response.status >= 200:
            dialog.confirm()
        return dialog

    @classmethod
    def uas(
        cls,
        invite: SipRequest,
        local_tag: str,
        local_contact: NameAddress | Uri | str,
        *,
        local_via: ViaProvider | None = None,
        tls: bool = False,
    ) -> Dialog:
        """The early dialog we are about to create by answering ``invite`` with
        ``local_tag`` (§12.1.1); the responses are stamped with :meth:`prepare_response`.

        Raises :class:`SipParseError` (400) if the INVITE has no Contact: it then gives us
        no target for BYE (§8.1.1.8 makes Contact mandatory in a dialog-creating request).
        """
        contacts = invite.contacts
        if not contacts:
            raise SipParseError("a dialog-creating request needs exactly one Contact (§8.1.1.8)")
        contact = _as_contact(local_contact)
        if local_via is None:
            local_via = _fixed_via(*_contact_hostport(contact))
        uri = invite.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",  # RFC 2543 peers send no From tag
            local_party=invite.to,
            remote_party=invite.from_,
            local_contact=contact,
            remote_target=contacts[0].uri,
            route_set=_record_route(invite),  # request order (§12.1.1)
            local_cseq=None,
            remote_cseq=invite.cseq.number,
            secure=tls and isinstance(uri, SipUri) and uri.scheme == "sips",
            is_uac=False,
            state=DialogState.EARLY,
            local_via=local_via,
        )

    @classmethod
    def from_uac(
        cls,
        invite: SipRequest,
        response: SipResponse,
        *,
        local_via: ViaProvider | None = None,
    ) -> Dialog:
        """The dialog a tagged 101-299 ``response`` to our ``invite`` creates (§12.1.2).

        The route set is the response's Record-Route reversed; the remote target its
        Contact. ``local_via`` defaults to the sent-by of the INVITE's own Via.
        """
        if not 100 < response.status < 300:
            raise SipLocalError(f"a {response.status} does not create a dialog (§12.1)")
        remote_tag = response.to.tag
        local_tag = invite.from_.tag
        if not remote_tag:
            raise SipLocalError("no dialog without the UAS's To tag (§12.1.2)")
        if not local_tag:
            raise SipLocalError("our INVITE must carry a From tag (§8.1.1.3)")
        our_contacts = invite.contacts
        if not our_contacts:
            raise SipLocalError("our INVITE must carry a Contact (§8.1.1.8)")
        if local_via is None:
            local_via = _fixed_via(*invite.top_via.sent_by)
        uri = invite.uri
        dialog = cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=invite.from_,
            remote_party=invite.to,
            local_contact=our_contacts[0],
            remote_target=_remote_target(response, invite.uri),
            route_set=list(reversed(_record_route(response))),
            local_cseq=invite.cseq.number,
            remote_cseq=None,
            secure=isinstance(uri, SipUri) and uri.scheme == "sips",
            is_uac=True,
            state=DialogState.EARLY,
            local_via=local_via,
        )
        if response.status >= 200:
            dialog.confirm()
        return dialog

    # -- state ----------------------------------------------------------------------------
    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def is_early(self) -> bool:
        return self.state is DialogState.EARLY

    @property
    def is_confirmed(self) -> bool:
        return self.state is DialogState.CONFIRMED

    @property
    def is_terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    def _move(self, what: DialogInput) -> None:
        state = DIALOG_TRANSITIONS.get((self.state, what))
        if state is None:
            raise SipLocalError(f"dialog {self.id} is {self.state.value}: cannot {what.value}")
        if state is not self.state:
            log.debug(
                "dialog state",
                extra={"dialog": self.local_tag, "from": self.state.value, "to": state.value},
            )
        self.state = state

    def confirm(self, response: SipResponse | None = None) -> None:
        """A 2xx was sent (UAS, §12.1.1) or received (UAC, ``response``, §13.2.2.4).

        On the UAC side an early dialog's route set is recomputed from the 2xx
        (§13.2.2.4) and the remote target taken from its Contact (§12.2.1.2).
        """
        was_early = self.is_early
        self._move(DialogInput.CONFIRM)
        if response is not None and self.is_uac:
            if was_early:
                self.route_set = list(reversed(_record_route(response)))
            self.refresh_target(response)

    def terminate(self, reason: TerminationReason) -> None:
        """End the dialog (§12.3); the first reason given is kept."""
        if self.ended_by is None:
            self.ended_by = reason
        self._move(DialogInput.TERMINATE)

    def refresh_target(self, message: SipRequest | SipResponse) -> None:
        """Take the remote target from ``message``'s Contact, if it has one (§12.2)."""
        try:
            contacts = message.contacts
        except SipParseError:
            return
        if contacts:
            self.remote_target = contacts[0].uri

    # -- requests we send (§12.2.1.1, §13.2.2.4) ------------------------------------------
    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        transport: str | None = None,
    ) -> SipRequest:
        """A new request within this dialog, with the next local CSeq (§12.2.1.1).

        ACK (for a 2xx: :meth:`build_ack`) and CANCEL (``build_cancel`` on the INVITE)
        are not built here because they reuse the CSeq of the request they belong to.
        ``transport`` overrides the one derived from the next hop (for the Via).
        """
        if method in ("ACK", "CANCEL"):
            raise SipLocalError(f"{method} reuses another request's CSeq; not create_request")
        if self.is_terminated:
            raise SipLocalError(f"dialog {self.id} is terminated: no more requests (§12.3)")
        self.local_cseq = _first_cseq() if self.local_cseq is None else self.local_cseq + 1
        if self.local_cseq >= 2**31:
            raise SipLocalError("local CSeq exhausted (§8.1.1.5: below 2**31)")
        contact = method in TARGET_REFRESH_METHODS  # §12.2.1.1: SHOULD in target refreshes
        return self._build(
            method,
            self.local_cseq,
            body=body,
            content_type=content_type,
            extra=extra,
            transport=transport,
            contact=contact,
        )

    def build_ack(
        self,
        invite: SipRequest,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        transport: str | None = None,
    ) -> SipRequest:
        """The ACK for a 2xx to ``invite`` (§13.2.2.4).

        Built like any in-dialog request (route set, remote target, tags, a new branch)
        but with the INVITE's CSeq number and its credentials; a 2xx that carried an offer
        needs the answer as ``body``. Works on a terminated dialog too: a 2xx arriving
        after our BYE must still be acknowledged.
        """
        if invite.method != "INVITE":
            raise SipLocalError("only an INVITE's 2xx is acknowledged end to end")
        extra = [(name, value) for name in _CREDENTIALS for value in invite.headers.values(name)]
        return self._build(
            "ACK",
            invite.cseq.number,
            body=body,
            content_type=content_type,
            extra=extra,
            transport=transport,
            contact=False,
        )

    def _build(
        self,
        method: str,
        cseq: int,
        *,
        body: bytes,
        content_type: str | None,
        extra: Sequence[tuple[str, str]],
        transport: str | None,
        contact: bool,
    ) -> SipRequest:
        if body and not content_type:
            raise SipLocalError("a body needs a Content-Type (§7.4.1)")
        request_uri, routes = self._routing()
        first_hop = routes[0].uri if routes else request_uri
        transport = (transport or transport_for(first_hop)).upper()
        host, port = self.local_via(transport)
        headers = Headers()
        headers.add("Via", str(Via(transport, host, port, {"branch": new_branch(), "rport": None})))
        headers.add("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
        for route in routes:
            headers.add("Route", str(route))
        headers.add("From", _with_tag(self.local_party, self.local_tag))
        headers.add("To", _with_tag(self.remote_party, self.remote_tag))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if contact:
            headers.add("Contact", str(self.local_contact))
        if body and content_type:
            headers.add("Content-Type", content_type)
        for name, value in extra:
            headers.add(name, value)
        return SipRequest(method, request_uri, headers, body)

    def _routing(self) -> tuple[Uri, list[NameAddress]]:
        """Request-URI and Route set per §12.2.1.1 (loose vs strict first route)."""
        if not self.route_set:
            return _request_uri(self.remote_target), []
        first = self.route_set[0]
        if isinstance(first.uri, SipUri) and "lr" not in first.uri.params:
            # A strict router (RFC 2543): its URI becomes the Request-URI and the remote
            # target rides at the end of the Route set.
            return _request_uri(first.uri), [*self.route_set[1:], NameAddress(self.remote_target)]
        return _request_uri(self.remote_target), list(self.route_set)

    # -- requests and responses we receive ------------------------------------------------
    def receive_request(
        self, request: SipRequest, *, refresh_target: bool = True
    ) -> SipResponse | None:
        """Check an in-dialog request (§12.2.2); a response to send means "refused".

        481 once the dialog is terminated; 500 for a CSeq lower than the last one
        (out of order, §12.2.2). ACK carries its INVITE's CSeq and is not checked. With
        ``refresh_target`` a target-refresh request replaces the remote target at once
        (§12.2.2); the INVITE session passes ``False`` and refreshes only when it accepts
        the re-INVITE rather than refusing it with 491 or 500.
        """
        if request.call_id != self.call_id or request.to.tag != self.local_tag:
            raise SipLocalError(f"request for another dialog given to {self.id}")
        if self.is_terminated:
            return make_response(request, 481)
        if request.method == "ACK":
            return None
        number = request.cseq.number
        if self.remote_cseq is not None and number < self.remote_cseq:
            log.info(
                "in-dialog request out of order",
                extra={"dialog": self.local_tag, "cseq": number, "last": self.remote_cseq},
            )
            return make_response(request, 500, "CSeq out of order")
        self.remote_cseq = number
        if refresh_target and request.method in TARGET_REFRESH_METHODS:
            self.refresh_target(request)
        return None

    def receive_response(self, response: SipResponse) -> None:
        """A final response to a request we sent in this dialog (§12.2.1.2).

        A 2xx to a target refresh replaces the remote target; a 481 or 408 ends the dialog
        (the peer has forgotten it, or cannot be reached).
        """
        if response.status < 200:
            return
        method = response.cseq.method
        if response.status < 300:
            if method in TARGET_REFRESH_METHODS and not self.is_terminated:
                self.refresh_target(response)
        elif response.status in (408, 481) and method != "BYE":
            self.terminate(TerminationReason.GONE)

    def prepare_response(self, request: SipRequest, response: SipResponse) -> SipResponse:
        """Complete our response to ``request`` for this dialog, in place.

        Adds our To tag (§8.2.6.2) if missing, our Contact to a 101-299 answer of a
        target refresh (§12.1.1, §13.3.1.4 make it mandatory in an INVITE's 2xx), and, on
        an answer to the dialog-creating request (no To tag in it), the request's
        Record-Route lines in order (§12.1.1). A To tag other than ours is a bug.
        """
        if response.status == 100:
            return response
        tag = response.to.tag
        if tag is None:
            to = response.to
            to.params["tag"] = self.local_tag
            response.headers.set("To", str(to))
        elif tag != self.local_tag:
            raise SipLocalError(f"response tagged {tag!r} for dialog {self.id}")
        if 100 < response.status < 300 and request.method in TARGET_REFRESH_METHODS:
            if "Contact" not in response.headers:
                response.headers.add("Contact", str(self.local_contact))
            if request.to.tag is None and "Record-Route" not in response.headers:
                for value in request.headers.values("Record-Route"):
                    response.headers.add("Record-Route", value)
        return response


def _contact_hostport(contact: NameAddress) -> tuple[str, int]:
    uri = contact.uri
    if not isinstance(uri, SipUri):
        raise SipLocalError("our Contact must be a SIP or SIPS URI")
    return uri.host, uri.port or (5061 if uri.scheme == "sips" else 5060)


def _remote_target(response: SipResponse, fallback: Uri) -> Uri:
    contacts = response.contacts
    if contacts:
        return contacts[0].uri
    # A 2xx without Contact breaks §13.3.1.4; keep the call usable on the Request-URI.
    log.warning(
        "dialog-creating response without Contact",
        extra={"status": response.status, "call_id": response.call_id},
    )
    return fallback


def build_ack_for_2xx(
    invite: SipRequest,
    response: SipResponse,
    *,
    dialog: Dialog | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """The ACK for a 2xx to ``invite`` (§13.2.2.4), sent outside any transaction.

    For the initial INVITE the dialog state comes from ``invite`` and ``response``
    (§12.1.2); for a re-INVITE pass the existing ``dialog`` (its route set is fixed).
    """
    if not 200 <= response.status < 300:
        raise SipLocalError("a non-2xx is acknowledged by the INVITE transaction (§17.1.1.3)")
    if dialog is None:
        dialog = Dialog.from_uac(invite, response)
    return dialog.build_ack(invite, body=body, content_type=content_type)


def build_invite(
    target: Uri,
    *,
    from_: NameAddress,
    to: NameAddress,
    local_contact: NameAddress,
    sent_by: tuple[str, int],
    transport: str | None = None,
    call_id: str | None = None,
    from_tag: str | None = None,
    cseq: int | None = None,
    routes: Sequence[NameAddress] = (),
    body: bytes = b"",
    content_type: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> SipRequest:
    """A dialog-creating INVITE (§8.1.1) for an outbound leg.

    ``routes`` is a preloaded route set (e.g. an outbound proxy, §8.1.2). Call-ID, From
    tag and CSeq are generated when not given.
    """
    if body and not content_type:
        raise SipLocalError("a body needs a Content-Type (§7.4.1)")
    first_hop = routes[0].uri if routes else target
    transport = (transport or transport_for(first_hop)).upper()
    host, port = sent_by
    headers = Headers()
    headers.add("Via", str(Via(transport, host, port, {"branch": new_branch(), "rport": None})))
    headers.add("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
    for route in routes:
        headers.add("Route", str(route))
    headers.add("From", _with_tag(_party(from_), from_tag or new_tag()))
    headers.add("To", str(_party(to)))
    headers.add("Call-ID", call_id or new_call_id(host))
    headers.add("CSeq", f"{cseq if cseq is not None else _first_cseq()} INVITE")
    headers.add("Contact", str(local_contact))
    if body and content_type:
        headers.add("Content-Type", content_type)
    for name, value in extra:
        headers.add(name, value)
    return SipRequest("INVITE", _request_uri(target), headers, body)
