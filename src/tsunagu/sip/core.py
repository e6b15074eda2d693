"""The SIP core: what Tsunagu does with each message, as a sans-IO object.

Bytes and the address they came from go in; bytes and where to send them come out. In
between, in this order (each step cites the rule it applies):

1. parse; a malformed request is answered with the parser's status and a reason saying
   what is wrong (400, 505, 513), a malformed response is dropped (§18.1.2, RFC 4475);
2. source defence: scanners dropped silently, flooding or brute-forcing sources banned;
3. ``received``/``rport`` stamped on the top Via (§18.2.1, RFC 3581) so answers reach
   phones behind NAT;
4. the transaction layer absorbs retransmissions and owns timers (§17);
5. request checks shared by every method: scheme (416), Max-Forwards (483), Require
   (420), method (501/405 with Allow), body type (415), Accept (406) — §8.2;
6. the method: OPTIONS answered, REGISTER authenticated (§22) and given to the registrar
   (§10.3), INVITE authenticated and handed to call routing (a later layer).

Two clocks are passed in: ``now`` (monotonic, for timers and rate windows) and ``wall``
(epoch seconds, for things that must survive a restart: bindings and nonces).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from tsunagu import __version__
from tsunagu.logs import call_context
from tsunagu.settings import Settings
from tsunagu.sip.digest import AuthOutcome, DigestAuthenticator
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.guard import SourceGuard, Verdict
from tsunagu.sip.headers import Via, iter_tokens
from tsunagu.sip.message import (
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
    response_for_parse_error,
)
from tsunagu.sip.peer import Peer
from tsunagu.sip.registrar import Registrar, aor_for
from tsunagu.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TimerConfig,
    TransactionLayer,
    TransactionTimeout,
)
from tsunagu.sip.uri import SipUri

log = logging.getLogger("tsunagu.sip")
security_log = logging.getLogger("tsunagu.security")

#: Methods this server implements (answered in Allow, §20.5). INFO (DTMF relay) and
#: REFER (blind transfer, RFC 3515) are accepted inside dialogs only.
ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "REFER")
#: Methods we know of but do not accept here: 405 rather than 501 (§21.4.6 vs §21.5.2).
KNOWN_METHODS = frozenset(("SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "PRACK", "UPDATE"))
#: Option tags we support (§19.2); anything else in Require gets 420. ``replaces``:
#: RFC 3891 (calls/replaces_invite.py, calls/attended_transfer.py).
SUPPORTED_OPTIONS = frozenset(("path", "outbound", "replaces"))
ACCEPTED_BODIES = frozenset(("application/sdp",))


@dataclass(frozen=True, slots=True)
class Outgoing:
    peer: Peer
    data: bytes


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent an INVITE: a carrier trunk trusted by source address, or an agent's phone
    that passed digest authentication (REQUIREMENTS: no toll fraud from anyone else)."""

    kind: Literal["trunk", "agent"]
    name: str


class CallControl(Protocol):
    """The transaction user for calls (the B2BUA in :mod:`tsunagu.calls`).

    The core hands it what belongs to calls and it answers through :meth:`SipCore.respond`,
    :meth:`SipCore.send_request` and :meth:`SipCore.send_stateless`, now or later.
    """

    def on_invite(
        self, tx_id: str, request: SipRequest, peer: Peer, caller: Caller, now: float
    ) -> None: ...

    def on_in_dialog(
        self, tx_id: str, request: SipRequest, peer: Peer, now: float
    ) -> SipResponse | None: ...

    def on_cancel(self, tx_id: str, request: SipRequest, invite_tx_id: str, now: float) -> None: ...

    def on_ack(self, request: SipRequest, peer: Peer, now: float) -> None: ...

    def on_response(self, tx_id: str, response: SipResponse, now: float) -> None: ...

    def on_stray_response(self, response: SipResponse, peer: Peer, now: float) -> None: ...

    def on_timeout(self, tx_id: str, timer: str, now: float) -> None: ...


#: Source address -> trunk name, for trunks trusted by IP (or ``None``).
TrunkLookup = Callable[[str], str | None]


class SipCore:
    def __init__(
        self,
        settings: Settings,
        *,
        authenticator: DigestAuthenticator,
        guard: SourceGuard,
        registrar: Registrar,
        call_control: CallControl | None = None,
        trunk_for_source: TrunkLookup | None = None,
    ) -> None:
        timers = settings.sip.timers
        self.settings = settings
        self.authenticator = authenticator
        self.guard = guard
        self.registrar = registrar
        self.transactions = TransactionLayer(
            TimerConfig(t1=timers.t1_ms / 1000, t2=timers.t2_ms / 1000, t4=timers.t4_ms / 1000)
        )
        self.call_control = call_control
        self.trunk_for_source = trunk_for_source
        #: Where outputs produced outside :meth:`receive` go (set by the app); without it
        #: they wait in the outbox for :meth:`drain`.
        self.on_output: Callable[[list[Outgoing]], None] | None = None
        self._outbox: list[Outgoing] = []
        self._receiving = False
        self.server_header = f"{settings.sip.user_agent}/{__version__}"
        self.max_size = settings.sip.transport.max_message_bytes
        self._md5_only = [m.lower() for m in settings.security.auth.md5_only_user_agents]
        self.stats: dict[str, int] = {"requests": 0, "responses": 0, "malformed": 0, "dropped": 0}

    # -- entry points --------------------------------------------------------------------
    def receive(self, data: bytes, peer: Peer, now: float, wall: float) -> list[Outgoing]:
        """Handle one datagram or one framed stream message; returns what to send."""
        self._receiving = True
        try:
            out = self._receive(data, peer, now, wall)
        finally:
            self._receiving = False
        return out + self.drain()

    def drain(self) -> list[Outgoing]:
        out, self._outbox = self._outbox, []
        return out

    # -- for the transaction user ------------------------------------------------------
    def respond(self, tx_id: str, response: SipResponse, now: float) -> None:
        """Send ``response`` on server transaction ``tx_id`` (also a 2xx retransmission)."""
        if "Server" not in response.headers:
            response.headers.add("Server", self.server_header)
        self._emit(self._send_events(self.transactions.send_response(tx_id, response, now)))

    def send_request(self, request: SipRequest, peer: Peer, now: float) -> str:
        """Open a client transaction for ``request`` (its top Via branch already set)."""
        tx_id, events = self.transactions.send_request(request, peer, now)
        self._emit(self._send_events(events))
        return tx_id

    def send_stateless(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        """Send outside any transaction: the ACK for a 2xx (§13.2.2.4)."""
        self._emit([Outgoing(peer, bytes(message))])

    def _emit(self, out: list[Outgoing]) -> None:
        if not out:
            return
        if self.on_output is not None and not self._receiving:
            self.on_output(out)
        else:
            self._outbox.extend(out)

    def _receive(self, data: bytes, peer: Peer, now: float, wall: float) -> list[Outgoing]:
        if not data.strip(b"\r\n"):
            return []  # keep-alive CRLFs on UDP (RFC 5626 §3.5.1); nothing to answer
        try:
            message = parse_message(data, stream=peer.reliable, max_size=self.max_size)
        except SipParseError as exc:
            return self._malformed(exc, peer, now)
        if isinstance(message, SipResponse):
            self.stats["responses"] += 1
            with call_context(message.call_id):
                events = self.transactions.receive_response(message, peer, now)
                self._to_call_control(events, now)
                return self._send_events(events)
        self.stats["requests"] += 1
        with call_context(message.call_id):
            verdict = self.guard.check_request(peer.host, message.headers.get("User-Agent"), now)
            self._log_security_events()
            if verdict is not Verdict.ALLOW:
                self.stats["dropped"] += 1
                return []
            return self._request(message, peer, now, wall)

    def framing_error(self, exc: SipParseError, peer: Peer, now: float) -> bytes | None:
        """A stream could not be framed; answer if the head allows it (the caller closes)."""
        answers = self._malformed(exc, peer, now)
        return answers[0].data if answers else None

    def handle_timer(self, now: float) -> list[Outgoing]:
        return self._send_events(self.transactions.handle_timer(now))

    def next_timer(self) -> float | None:
        return self.transactions.next_timer()

    # -- steps ---------------------------------------------------------------------------
    def _malformed(self, exc: SipParseError, peer: Peer, now: float) -> list[Outgoing]:
        self.stats["malformed"] += 1
        # Garbage counts toward the flood window too, so a fuzzer gets banned like a flood.
        verdict = self.guard.check_request(peer.host, None, now)
        self._log_security_events()
        answer = response_for_parse_error(exc) if verdict is Verdict.ALLOW else None
        log.info(
            "refused malformed message",
            extra={
                "peer": str(peer),
                "status": exc.status,
                "reason": exc.reason,
                "answered": answer is not None,
            },
        )
        if answer is None:
            return []
        answer.headers.add("Server", self.server_header)
        return [Outgoing(peer, bytes(answer))]

    def _request(self, request: SipRequest, peer: Peer, now: float, wall: float) -> list[Outgoing]:
        top = request.top_via
        _stamp_received(request, top, peer)
        reply_to = _response_peer(top, peer)
        events = self.transactions.receive_request(request, reply_to, now)
        out = self._send_events(events)
        for event in events:
            if isinstance(event, RequestReceived):
                response = self._dispatch(event.tx_id, request, peer, now, wall)
                if response is not None:
                    response.headers.add("Server", self.server_header)
                    out += self._send_events(
                        self.transactions.send_response(event.tx_id, response, now)
                    )
            elif isinstance(event, CancelReceived):
                control = self.call_control
                if event.invite_tx_id is not None and control is not None:
                    # §9.2: call control answers the CANCEL (200) and the INVITE (487).
                    control.on_cancel(event.tx_id, event.request, event.invite_tx_id, now)
                else:
                    response = make_response(event.request, 481)
                    out += self._send_events(
                        self.transactions.send_response(event.tx_id, response, now)
                    )
            elif isinstance(event, AckReceived) and self.call_control is not None:
                # The ACK for a 2xx is end to end (§13.2.2.4): it belongs to a dialog.
                self.call_control.on_ack(event.request, peer, now)
        self._to_call_control(events, now)
        return out

    def _to_call_control(self, events: Sequence[object], now: float) -> None:
        control = self.call_control
        if control is None:
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                control.on_response(event.tx_id, event.response, now)
            elif isinstance(event, StrayResponse):
                assert isinstance(event.peer, Peer)
                control.on_stray_response(event.response, event.peer, now)
            elif isinstance(event, TransactionTimeout):
                control.on_timeout(event.tx_id, event.timer, now)

    def _dispatch(
        self, tx_id: str, request: SipRequest, peer: Peer, now: float, wall: float
    ) -> SipResponse | None:
        to_tag = secrets.token_hex(5)
        refusal = self._check(request, to_tag)
        if refusal is not None:
            return refusal
        method = request.method
        if method == "OPTIONS":
            return self._options(request, to_tag)
        if method == "REGISTER":
            return self._register(request, peer, now, wall, to_tag)
        control = self.call_control
        if request.to.tag is not None:  # in a dialog (§12.2.2)
            if control is None:
                return make_response(request, 481)
            return control.on_in_dialog(tx_id, request, peer, now)
        if method != "INVITE":
            return make_response(request, 481, to_tag=to_tag)  # BYE, INFO, REFER: no dialog
        # A new call: a trusted trunk, or else an authenticated agent (no toll fraud). A
        # registered phone's own address is never taken for a trunk.
        trunk = self.trunk_for_source(peer.host) if self.trunk_for_source else None
        if trunk is not None and self.registrar.registered_from(
            peer.transport, peer.host, peer.port, wall
        ):
            trunk = None
        if trunk is not None:
            caller = Caller("trunk", trunk)
        else:
            user = self._authenticate(request, peer, now, wall, to_tag)
            if isinstance(user, SipResponse):
                return user
            caller = Caller("agent", user)
        if control is None:
            return make_response(request, 480, "No call routing configured", to_tag=to_tag)
        control.on_invite(tx_id, request, peer, caller, now)
        return None

    def _check(self, request: SipRequest, to_tag: str) -> SipResponse | None:
        """Checks every request passes before its method runs (§8.2.1-§8.2.3)."""
        if not isinstance(request.uri, SipUri):
            return make_response(request, 416, to_tag=to_tag)
        method = request.method
        if method not in ALLOWED_METHODS:
            status = 405 if method in KNOWN_METHODS else 501
            return make_response(
                request, status, to_tag=to_tag, extra=[("Allow", ", ".join(ALLOWED_METHODS))]
            )
        if request.max_forwards == 0 and not (
            method in ("OPTIONS", "REGISTER") and self._is_local(request.uri)
        ):
            return make_response(request, 483, to_tag=to_tag)
        unsupported = sorted(
            {opt for opt in iter_tokens(request.headers.values("Require"))} - SUPPORTED_OPTIONS
        )
        if unsupported and method != "ACK":
            return make_response(
                request, 420, to_tag=to_tag, extra=[("Unsupported", ", ".join(unsupported))]
            )
        if request.body and method == "INVITE":
            if request.content_type not in ACCEPTED_BODIES:
                return make_response(
                    request,
                    415,
                    to_tag=to_tag,
                    extra=[("Accept", ", ".join(sorted(ACCEPTED_BODIES)))],
                )
            accept = [a.split(";")[0].strip().lower() for a in request.headers.get_list("Accept")]
            if accept and not {"application/sdp", "application/*", "*/*"} & set(accept):
                return make_response(request, 406, to_tag=to_tag)
        return None

    def _is_local(self, uri: SipUri) -> bool:
        host = uri.host.lower()
        server = self.settings.server
        return host in (server.domain.lower(), server.bind, "localhost", "127.0.0.1")

    def _options(self, request: SipRequest, to_tag: str) -> SipResponse:
        return make_response(
            request,
            200,
            to_tag=to_tag,
            extra=[
                ("Allow", ", ".join(ALLOWED_METHODS)),
                ("Accept", "application/sdp"),
                ("Supported", ", ".join(sorted(SUPPORTED_OPTIONS))),
            ],
        )

    def _authenticate(
        self, request: SipRequest, peer: Peer, now: float, wall: float, to_tag: str
    ) -> str | SipResponse:
        """Digest-authenticate ``request``: the user name, or the response to send instead.

        REGISTER uses 401/WWW-Authenticate; INVITE uses 401 as well because we are the
        UAS the phone talks to (§22.2), and phones handle both.
        """
        result = self.authenticator.verify(
            request.method, str(request.uri), request.headers.values("Authorization"), wall
        )
        if result.outcome is AuthOutcome.OK:
            assert result.username is not None
            self.guard.record_auth_success(peer.host, now)
            return result.username
        if result.outcome is AuthOutcome.FAILED:
            self.guard.record_auth_failure(peer.host, now)
            security_log.warning(
                "authentication failed",
                extra={
                    "event": "auth_failure",
                    "peer": str(peer),
                    "user": result.username,
                    "method": request.method,
                    "reason": result.reason,
                },
            )
            self._log_security_events()
            return make_response(request, 403, to_tag=to_tag)
        stale = result.outcome is AuthOutcome.STALE
        agent = (request.headers.get("User-Agent") or "").lower()
        legacy = any(marker in agent for marker in self._md5_only)
        challenges = self.authenticator.challenges(wall, stale=stale, legacy_client=legacy)
        extra = [("WWW-Authenticate", v) for v in challenges]
        return make_response(request, 401, to_tag=to_tag, extra=extra)

    def _register(
        self, request: SipRequest, peer: Peer, now: float, wall: float, to_tag: str
    ) -> SipResponse:
        user = self._authenticate(request, peer, now, wall, to_tag)
        if isinstance(user, SipResponse):
            return user
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri):
            return make_response(request, 416, to_tag=to_tag)
        aor = aor_for(to_uri)
        if aor != user:  # §10.3 step 3: may this user change this AOR's bindings?
            security_log.warning(
                "REGISTER for another user's address refused",
                extra={"event": "register_forbidden", "peer": str(peer), "user": user, "aor": aor},
            )
            return make_response(
                request, 403, "Not allowed to register this address", to_tag=to_tag
            )
        outcome = self.registrar.register(
            request, aor, (peer.transport, peer.host, peer.port), wall, to_tag=to_tag
        )
        change = outcome.change
        if change is not None:
            for binding in change.added:
                log.info(
                    "registered",
                    extra={
                        "aor": aor,
                        "contact": binding.contact,
                        "expires": binding.remaining(wall),
                        "peer": str(peer),
                    },
                )
            for binding in change.refreshed:
                log.debug("registration refreshed", extra={"aor": aor, "contact": binding.contact})
            for binding in change.removed:
                log.info(
                    "unregistered",
                    extra={"aor": aor, "contact": binding.contact, "peer": str(peer)},
                )
        return outcome.response

    # -- plumbing ------------------------------------------------------------------------
    def _send_events(self, events: Sequence[object]) -> list[Outgoing]:
        out = []
        for event in events:
            if isinstance(event, SendMessage):
                peer = event.peer
                assert isinstance(peer, Peer)
                out.append(Outgoing(peer, bytes(event.message)))
        return out

    def _log_security_events(self) -> None:
        for event in self.guard.drain_events():
            security_log.warning(
                f"security: {event.kind}",
                extra={"event": event.kind, "source": event.source, "detail": event.detail},
            )


def _stamp_received(request: SipRequest, top: Via, peer: Peer) -> None:
    """§18.2.1: add ``received`` when sent-by differs from the source; RFC 3581 §4 rport."""
    changed = False
    if top.host != peer.host:
        top.params["received"] = peer.host
        changed = True
    if "rport" in top.params and top.params["rport"] is None:
        top.params["rport"] = str(peer.port)
        top.params.setdefault("received", peer.host)
        changed = True
    if changed:
        # One comma-separated Via line is equivalent to several lines (§7.3.1).
        request.headers.set("Via", ", ".join(str(via) for via in request.vias))


def _response_peer(top: Via, peer: Peer) -> Peer:
    """Where responses go (§18.2.2, RFC 3581 §4).

    On TCP: back on the same connection. On UDP: the source address, with the rport port
    if the client asked for it, else the port in sent-by.
    """
    if peer.reliable or "rport" in top.params:
        return peer
    # ``received`` is always stamped when sent-by differs from the source, so the
    # source host is where the response goes; only the port comes from sent-by.
    return Peer("UDP", peer.host, top.sent_by[1])
