"""Registration-based carrier trunks: Tsunagu registers to the carrier (RFC 3261 §10.2).

A ``kind: register`` trunk is an account at the carrier. Tsunagu is then a registering UA:
it sends REGISTER to the carrier's ``host``:``port`` with ``username``/``password``,
answers the digest challenge, refreshes the binding before it lapses and removes it at
shutdown, so that the carrier knows where to send our inbound calls.

What an operator sees
---------------------
Each trunk is in one of six states. Health views show :meth:`TrunkRegistration.status`
(state, since when, granted expiry, next refresh or retry, consecutive failures, and the
last error with its SIP status and time, kept after recovery as history); every change is
a :class:`TrunkStateChanged` event and a log line on ``tsunagu.trunks`` (a warning when a
trunk fails; refreshes log at debug level).

``unregistered``
    Not started, or stopped and the carrier confirmed the removal (or could not be asked).
``registering``
    A REGISTER is on its way; a 401/407 challenge is answered within this state.
``registered``
    The carrier accepted the binding. ``granted_expires`` is the time it granted (from the
    2xx's Contact ``expires`` parameter or Expires header, §10.2.4; what we asked for if
    it says neither) and ``next_refresh`` when we refresh: at half the granted time, so
    a refresh that is refused or lost still leaves the other half of the binding to retry
    in (``bound_until`` says when the carrier forgets us).
``refreshing``
    A refresh REGISTER is on its way: same Call-ID, CSeq one higher (§10.2, §10.2.4).
``failed``
    The carrier refused (403 wrong credentials, 404 unknown account, 5xx, a challenge
    that our credentials could not answer...) or did not answer within Timer F (64·T1,
    32 s by default, §17.1.2.2; status 408). ``last_error`` says which, ``last_status``
    is the SIP status, ``next_retry`` when we try again. Retries back off exponentially:
    30 s, 1 min, 2 min, 4 min, 8 min, then every 10 min, and never sooner than a
    Retry-After the carrier sent (§20.33, capped at 10 min). The first success resets the
    back-off. A 403 usually means the password at the carrier changed; a 408 that the
    carrier (or the path to it) is down — our side works if other trunks are
    ``registered``.
``unregistering``
    Shutdown: REGISTER with ``Expires: 0`` for our Contact is on its way (§10.2.2). If a
    REGISTER was already in flight, the removal waits for its answer: a UA sends no new
    REGISTER before the previous one got a final response or timed out (§10.2). A
    ``failed`` trunk whose last binding has lapsed goes straight to ``unregistered``.

Protocol details (each cited next to the code that applies it): the Request-URI is the
carrier's domain, To and From are the account's address of record (§10.2), one Call-ID
for every REGISTER of this run and CSeq +1 for each, including the resend after a
challenge (§10.2, §8.1.3.5); 423 raises our Expires to the carrier's Min-Expires and
retries (§10.2.8 / §10.3 step 6); credentials are cached and sent with refreshes
(§22.3), and a 401/407 that follows our own answer to the same realm means the
credentials are wrong — unless it says ``stale=true`` (RFC 7616 §3.3), in which case we
answer the fresh nonce (at most four resends per attempt, so no carrier keeps us looping).

Everything here is sans-IO: :class:`TrunkRegistration` takes responses, timeouts and the
time and returns :class:`Outbound` requests. :class:`TrunkRegistrations` owns one per
trunk and hands requests to a ``send`` callable (the SIP core's client transactions).
Times (``since``, ``next_refresh``...) are in the time base of the ``now`` passed in.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from tsunagu.settings import TrunkSettings
from tsunagu.sip.dialog import new_call_id, new_tag
from tsunagu.sip.digest import (
    SUPPORTED_ALGORITHMS,
    DigestChallenge,
    DigestError,
    build_authorization,
    parse_challenge,
)
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.headers import NameAddress, Via
from tsunagu.sip.message import Headers, SipRequest, SipResponse
from tsunagu.sip.peer import Peer
from tsunagu.sip.transaction import new_branch
from tsunagu.sip.uri import SipUri

__all__ = [
    "RETRY_BASE_S",
    "RETRY_CAP_S",
    "TRANSITIONS",
    "Outbound",
    "SendRequest",
    "TrunkInput",
    "TrunkRegistration",
    "TrunkRegistrations",
    "TrunkState",
    "TrunkStateChanged",
    "TrunkStatus",
    "TrunkTransitionError",
]

log = logging.getLogger("tsunagu.trunks")

#: First retry delay after a failure, and the cap of the exponential back-off.
RETRY_BASE_S: Final = 30.0
RETRY_CAP_S: Final = 600.0
#: Challenges and 423s answered within one attempt before giving up: a carrier that keeps
#: sending ``stale=true`` or ever higher Min-Expires must not keep us in a loop.
MAX_RESENDS: Final = 4
MAX_FORWARDS: Final = 70

#: How a 401/407 is answered (§22.2 / §22.3).
_ANSWER_HEADER: Final = {401: "Authorization", 407: "Proxy-Authorization"}
_CHALLENGE_HEADER: Final = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}


class TrunkState(Enum):
    """The registration state of one trunk (see the module docstring)."""

    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    REFRESHING = "refreshing"
    FAILED = "failed"
    UNREGISTERING = "unregistering"


class TrunkInput(Enum):
    """Inputs to :data:`TRANSITIONS`."""

    START = "start"  # register now (also "retry now" from failed)
    RESEND = "resend"  # same attempt goes on: challenge answered, 423 obeyed
    ACCEPTED = "accepted"  # 2xx for the request in flight
    REFUSED = "refused"  # a final non-2xx we cannot recover from in this attempt
    TIMED_OUT = "timed_out"  # Timer F: no final response (§17.1.2.2)
    REFRESH_DUE = "refresh_due"
    RETRY_DUE = "retry_due"
    STOP = "stop"  # remove what the carrier may have bound (Expires: 0)
    DROP = "drop"  # stop with nothing bound: no request needed


S = TrunkState
E = TrunkInput

#: ``(state, input) -> next state``; an input not listed raises
#: :class:`TrunkTransitionError`. Self-moves (RESEND, a repeated STOP/DROP) emit no event.
TRANSITIONS: Mapping[tuple[TrunkState, TrunkInput], TrunkState] = {
    (S.UNREGISTERED, E.START): S.REGISTERING,
    (S.UNREGISTERED, E.DROP): S.UNREGISTERED,
    (S.REGISTERING, E.RESEND): S.REGISTERING,
    (S.REGISTERING, E.ACCEPTED): S.REGISTERED,
    (S.REGISTERING, E.REFUSED): S.FAILED,
    (S.REGISTERING, E.TIMED_OUT): S.FAILED,
    (S.REGISTERING, E.STOP): S.UNREGISTERING,
    (S.REGISTERED, E.REFRESH_DUE): S.REFRESHING,
    (S.REGISTERED, E.STOP): S.UNREGISTERING,
    (S.REFRESHING, E.RESEND): S.REFRESHING,
    (S.REFRESHING, E.ACCEPTED): S.REGISTERED,
    (S.REFRESHING, E.REFUSED): S.FAILED,
    (S.REFRESHING, E.TIMED_OUT): S.FAILED,
    (S.REFRESHING, E.STOP): S.UNREGISTERING,
    (S.FAILED, E.RETRY_DUE): S.REGISTERING,
    (S.FAILED, E.START): S.REGISTERING,
    (S.FAILED, E.STOP): S.UNREGISTERING,  # a binding from before the failure may live on
    (S.FAILED, E.DROP): S.UNREGISTERED,
    (S.UNREGISTERING, E.RESEND): S.UNREGISTERING,
    (S.UNREGISTERING, E.ACCEPTED): S.UNREGISTERED,
    (S.UNREGISTERING, E.REFUSED): S.UNREGISTERED,
    (S.UNREGISTERING, E.TIMED_OUT): S.UNREGISTERED,
    (S.UNREGISTERING, E.STOP): S.UNREGISTERING,
}


class TrunkTransitionError(RuntimeError):
    """Our fault: an input the state does not accept (e.g. ``start`` while registered)."""

    def __init__(self, trunk: str, state: TrunkState, event: TrunkInput) -> None:
        super().__init__(f"trunk {trunk!r}: {event.value!r} not allowed in state {state.value!r}")
        self.trunk = trunk
        self.state = state
        self.event = event


@dataclass(frozen=True, slots=True)
class TrunkStateChanged:
    """A trunk's registration state changed; ``status`` is the SIP status that caused it
    (408 for a timeout), ``at`` the ``now`` it happened at."""

    trunk: str
    old: TrunkState
    new: TrunkState
    reason: str
    at: float
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Outbound:
    """A REGISTER to send in a new client transaction, and where to (the carrier)."""

    request: SipRequest
    transport: str  # "UDP" or "TCP"
    host: str
    port: int

    @property
    def peer(self) -> Peer:
        return Peer(self.transport, self.host, self.port)


#: What :meth:`TrunkRegistration.status` returns (JSON-ready).
TrunkStatus = dict[str, str | int | float | None]


@dataclass(frozen=True, slots=True)
class _Pending:
    """The REGISTER in flight: matched to its response by CSeq, timed from ``sent_at``."""

    cseq: int
    expires: int
    sent_at: float


@dataclass(slots=True)
class _Credential:
    """A challenge we answer on every request until it is replaced (§22.3 caching)."""

    header: str  # Authorization or Proxy-Authorization
    challenge: str  # the WWW-/Proxy-Authenticate value
    nc: int = 0  # nonce count already used with this challenge's nonce (RFC 7616 §3.4)


class TrunkRegistration:
    """The registration of one ``kind: register`` trunk, sans-IO (see the module docstring).

    ``local_host``/``local_port`` are the address the carrier reaches us at: they make the
    Contact ``<sip:{username}@{local_host}:{local_port}>`` and the Via sent-by.
    """

    def __init__(
        self,
        trunk: TrunkSettings,
        local_host: str,
        local_port: int,
        *,
        user_agent: str | None = None,
        retry_base: float = RETRY_BASE_S,
        retry_cap: float = RETRY_CAP_S,
    ) -> None:
        if trunk.kind != "register":
            raise ValueError(f"trunk {trunk.name!r} is not a register trunk")
        if not (trunk.host and trunk.username and trunk.password):
            raise ValueError(f"trunk {trunk.name!r} needs host, username and password")
        if not 0 < retry_base <= retry_cap:
            raise ValueError("need 0 < retry_base <= retry_cap")
        self.name = trunk.name
        self.username = trunk.username
        self._password = trunk.password
        self.transport = trunk.transport.upper()
        self.host = trunk.host
        self.port = trunk.port
        self.requested_expires = trunk.register_expires
        self.user_agent = user_agent
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.local_host = local_host
        self.local_port = local_port
        # §10.2: one Call-ID for all registrations of this boot cycle; a From tag of ours.
        self.call_id = new_call_id(local_host)
        self._from_tag = new_tag()
        self._cseq = 0
        self._aor = SipUri(self.host, user=self.username)
        # §10.2 Request-URI: the registrar's domain, without user part.
        self._request_uri = SipUri(self.host, port=self.port if self.port != 5060 else None)
        params: dict[str, str | None] = {"transport": "tcp"} if self.transport == "TCP" else {}
        self.contact_uri = SipUri(local_host, user=self.username, port=local_port, params=params)

        self.state = TrunkState.UNREGISTERED
        self.since: float | None = None  # when the current state began
        self._events: list[TrunkStateChanged] = []
        self._expires = self.requested_expires  # raised by 423 (§10.3 step 6)
        self._pending: _Pending | None = None
        self._credentials: dict[tuple[str, str], _Credential] = {}  # (header, realm)
        self._answered: set[tuple[str, str]] = set()  # answered within this attempt
        self._resends = 0
        self._granted: int | None = None
        self._bound_until: float | None = None
        self._refresh_at: float | None = None
        self._retry_at: float | None = None
        self._failures = 0
        self._last_error: str | None = None
        self._last_status: int | None = None
        self._last_error_at: float | None = None

    def __repr__(self) -> str:
        return f"<TrunkRegistration {self.name} {self.state.value}>"

    # -- inputs ----------------------------------------------------------------------------
    def start(self, now: float) -> list[Outbound]:
        """Register now: from ``unregistered``, or from ``failed`` as a "retry now"."""
        self._move(E.START, now, "started")
        self._retry_at = None
        return self._begin(now, self._expires)

    def stop(self, now: float) -> list[Outbound]:
        """Remove our binding at the carrier (REGISTER ``Expires: 0``, §10.2.2).

        With a REGISTER in flight nothing is sent yet: the removal follows its answer (§10.2).
        """
        state = self.state
        self._refresh_at = self._retry_at = None
        if state is S.UNREGISTERED or (
            state is S.FAILED and (self._bound_until is None or self._bound_until <= now)
        ):
            self._move(E.DROP, now, "stopped; nothing bound at the carrier")
            self._bound_until = None
            return []
        self._move(E.STOP, now, "stopping")
        if self._pending is not None or state is S.UNREGISTERING:
            return []
        return self._begin(now, 0)

    def on_response(self, response: SipResponse, now: float) -> list[Outbound]:
        """A response of our client transaction; returns what to send next."""
        pending = self._pending
        if pending is None or not self._matches(response, pending):
            log.debug("ignoring a response for an earlier REGISTER", extra={"trunk": self.name})
            return []
        status = response.status
        if status < 200:
            return []  # Timer F keeps running (§17.1.2.2)
        self._pending = None
        if status < 300:
            return self._accepted(response, pending, now)
        if status in _ANSWER_HEADER:
            return self._challenged(response, pending, now)
        if status == 423:
            return self._too_brief(response, pending, now)
        reason = f"carrier refused: {status} {response.reason}".rstrip()
        return self._failed(E.REFUSED, reason, status, now, _retry_after(response))

    def on_timeout(self, now: float) -> list[Outbound]:
        """Timer F fired for the REGISTER in flight (§17.1.2.2: treat as 408, §8.1.3.1)."""
        if self._pending is None:
            return []
        self._pending = None
        reason = "no answer from the carrier (Timer F, RFC 3261 §17.1.2.2)"
        return self._failed(E.TIMED_OUT, reason, 408, now, None)

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` has something to do: a refresh or a retry."""
        if self.state is S.REGISTERED:
            return self._refresh_at
        if self.state is S.FAILED:
            return self._retry_at
        return None

    def handle_timer(self, now: float) -> list[Outbound]:
        """Refresh a binding or retry after a failure, if due."""
        if self.state is S.REGISTERED and self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            self._move(E.REFRESH_DUE, now, "refresh due")
            return self._begin(now, self._expires)
        if self.state is S.FAILED and self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._move(E.RETRY_DUE, now, f"retry after {self._failures} failure(s)")
            return self._begin(now, self._expires)
        return []

    def pop_events(self) -> list[TrunkStateChanged]:
        events, self._events = self._events, []
        return events

    def status(self) -> TrunkStatus:
        """A health view of this trunk (times in the base of ``now``)."""
        return {
            "trunk": self.name,
            "state": self.state.value,
            "since": self.since,
            "registrar": str(Peer(self.transport, self.host, self.port)),
            "username": self.username,
            "requested_expires": self._expires,
            "granted_expires": self._granted,
            "bound_until": self._bound_until,
            "next_refresh": self._refresh_at if self.state is S.REGISTERED else None,
            "next_retry": self._retry_at if self.state is S.FAILED else None,
            "failures": self._failures,
            "last_error": self._last_error,
            "last_status": self._last_status,
            "last_error_at": self._last_error_at,
        }

    # -- responses ---------------------------------------------------------------------------
    def _matches(self, response: SipResponse, pending: _Pending) -> bool:
        try:
            cseq = response.cseq
            call_id = response.call_id
        except SipParseError:
            return False
        return call_id == self.call_id and cseq.method == "REGISTER" and cseq.number == pending.cseq

    def _accepted(self, response: SipResponse, pending: _Pending, now: float) -> list[Outbound]:
        if pending.expires == 0:
            self._bound_until = self._granted = None
            self._move(E.ACCEPTED, now, "binding removed at the carrier", response.status)
            return []
        granted = self._granted_expiry(response, pending.expires)
        if self.state is S.UNREGISTERING:
            # stop() came while this REGISTER was in flight: now remove what it bound.
            self._bound_until = pending.sent_at + granted
            self._move(E.RESEND, now, "removing the binding just made")
            return self._begin(now, 0)
        if granted <= 0:
            reason = f"carrier answered {response.status} but bound no time"
            return self._failed(E.REFUSED, reason, response.status, now, None)
        # The binding's clock started when the registrar got the request: count from
        # when we sent it, never later (§10.2.4 refresh before it lapses).
        self._granted = granted
        self._bound_until = pending.sent_at + granted
        self._refresh_at = pending.sent_at + granted / 2
        self._failures = 0
        self._move(E.ACCEPTED, now, f"registered for {granted} s", response.status)
        return []

    def _granted_expiry(self, response: SipResponse, requested: int) -> int:
        """§10.2.4: our Contact's ``expires`` parameter, else the Expires header.

        A registrar that rewrites our Contact (NAT handling) and lists only that one is
        taken at its word; with several foreign contacts the Expires header decides, and
        without either we keep what we asked for (§10.3 step 8 says it must send one).
        """
        try:
            contacts = response.contacts or []
        except SipParseError:
            contacts = []
        mine = [c for c in contacts if self._is_our_contact(c)]
        for contact in mine or (contacts if len(contacts) == 1 else []):
            value = (contact.params.get("expires") or "").strip()
            if value.isascii() and value.isdigit():
                return min(int(value), 2**32 - 1)
        try:
            header = response.expires()
        except SipParseError:
            header = None
        return header if header is not None else requested

    def _is_our_contact(self, contact: NameAddress) -> bool:
        uri = contact.uri
        return (
            isinstance(uri, SipUri)
            and uri.user == self.username
            and uri.host.lower() == self.local_host.lower()
            and (uri.port or 5060) == self.local_port
        )

    def _challenged(self, response: SipResponse, pending: _Pending, now: float) -> list[Outbound]:
        """Answer a 401/407 (§22.2, §22.3) — or conclude that our credentials are wrong."""
        status = response.status
        answer = _ANSWER_HEADER[status]
        usable: dict[str, tuple[str, DigestChallenge]] = {}
        problems: list[str] = []
        for value in response.headers.values(_CHALLENGE_HEADER[status]):
            try:
                challenge = parse_challenge(value)
            except DigestError as exc:
                problems.append(str(exc))
                continue
            if challenge.realm in usable:
                continue  # RFC 8760 §2.4: the first one we support, per realm
            if challenge.algorithm not in SUPPORTED_ALGORITHMS:
                problems.append(f"algorithm {challenge.algorithm} not supported")
            elif challenge.qop and "auth" not in challenge.qop:
                problems.append("only qop=auth-int offered")
            else:
                usable[challenge.realm] = (value, challenge)
        if not usable:
            detail = "; ".join(problems) or f"no {_CHALLENGE_HEADER[status]} Digest challenge"
            reason = f"cannot answer the carrier's {status} challenge ({detail})"
            return self._failed(E.REFUSED, reason, status, now, None)
        for realm, (_, challenge) in usable.items():
            # Answered already in this attempt: the carrier refused our credentials, unless
            # it only says our nonce was stale (RFC 7616 §3.3).
            if (answer, realm) in self._answered and not challenge.stale:
                reason = f"carrier refused our credentials for realm {realm!r} ({status})"
                return self._failed(E.REFUSED, reason, status, now, None)
        if self._resends >= MAX_RESENDS:
            reason = f"carrier challenged {self._resends + 1} times in one attempt"
            return self._failed(E.REFUSED, reason, status, now, None)
        for realm, (value, _) in usable.items():
            self._credentials[(answer, realm)] = _Credential(answer, value)
            self._answered.add((answer, realm))
        self._resends += 1
        self._move(E.RESEND, now, f"challenged ({status})", status)
        expires = 0 if self.state is S.UNREGISTERING else pending.expires
        return [self._send(now, expires)]

    def _too_brief(self, response: SipResponse, pending: _Pending, now: float) -> list[Outbound]:
        """423 Interval Too Brief: ask again for Min-Expires (§10.2.8, §10.3 step 6)."""
        text = (response.headers.get("Min-Expires") or "").strip()
        minimum = int(text) if text.isascii() and text.isdigit() else None
        if (
            minimum is None
            or minimum <= pending.expires
            or self._resends >= MAX_RESENDS
            or self.state is S.UNREGISTERING
        ):
            reason = f"423 Interval Too Brief without a usable Min-Expires ({text or 'none'})"
            if self.state is S.UNREGISTERING:
                reason = "423 while stopping: nothing was bound"
            return self._failed(E.REFUSED, reason, 423, now, None)
        self._expires = minimum
        self._resends += 1
        self._move(E.RESEND, now, f"carrier wants at least {minimum} s (423)", 423)
        return [self._send(now, minimum)]

    def _failed(
        self,
        event: TrunkInput,
        reason: str,
        status: int,
        now: float,
        retry_after: float | None,
    ) -> list[Outbound]:
        self._last_error, self._last_status, self._last_error_at = reason, status, now
        if self.state is S.UNREGISTERING:
            self._bound_until = self._granted = None
            self._move(event, now, f"stopped; removal not confirmed: {reason}", status)
            return []
        self._failures += 1
        delay = min(self.retry_base * 2 ** min(self._failures - 1, 32), self.retry_cap)
        if retry_after is not None:  # §20.33: not sooner than the carrier asked
            delay = max(delay, min(retry_after, self.retry_cap))
        self._retry_at = now + delay
        self._refresh_at = None
        self._move(event, now, reason, status)
        return []

    # -- requests ----------------------------------------------------------------------------
    def _begin(self, now: float, expires: int) -> list[Outbound]:
        """A new attempt: challenges answered so far no longer prove anything."""
        self._answered.clear()
        self._resends = 0
        return [self._send(now, expires)]

    def _send(self, now: float, expires: int) -> Outbound:
        """Build the next REGISTER (§10.2) and remember it as in flight."""
        self._cseq += 1  # §10.2 CSeq, §8.1.3.5: one higher for every REGISTER, resends too
        uri = str(self._request_uri)
        headers = Headers()
        via = Via(self.transport, self.local_host, self.local_port)
        via.params.update({"branch": new_branch(), "rport": None})  # RFC 3581
        headers.add("Via", str(via))
        headers.add("Max-Forwards", str(MAX_FORWARDS))
        headers.add("From", str(NameAddress(self._aor, params={"tag": self._from_tag})))
        headers.add("To", str(NameAddress(self._aor)))  # §10.2: To names the AOR
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", str(NameAddress(self.contact_uri)))
        headers.add("Expires", str(expires))  # §10.2.1.1; 0 removes the binding (§10.2.2)
        if self.user_agent:
            headers.add("User-Agent", self.user_agent)
        for credential in self._credentials.values():
            credential.nc += 1
            headers.add(
                credential.header,
                build_authorization(
                    credential.challenge,
                    "REGISTER",
                    uri,
                    self.username,
                    self._password,
                    cnonce=secrets.token_hex(8),
                    nc=credential.nc,
                ),
            )
        self._pending = _Pending(self._cseq, expires, now)
        request = SipRequest("REGISTER", self._request_uri.copy(), headers)
        return Outbound(request, self.transport, self.host, self.port)

    # -- state -------------------------------------------------------------------------------
    def _move(self, event: TrunkInput, now: float, reason: str, status: int | None = None) -> None:
        old = self.state
        new = TRANSITIONS.get((old, event))
        if new is None:
            raise TrunkTransitionError(self.name, old, event)
        if new is old:
            return
        self.state = new
        self.since = now
        self._events.append(TrunkStateChanged(self.name, old, new, reason, now, status))
        quiet = {old, new} == {S.REGISTERED, S.REFRESHING}
        level = logging.WARNING if new is S.FAILED else logging.DEBUG if quiet else logging.INFO
        log.log(
            level,
            f"trunk {self.name}: {old.value} -> {new.value}: {reason}",
            extra={"trunk": self.name, "old": old.value, "new": new.value, "status": status},
        )


def _retry_after(response: SipResponse) -> float | None:
    """Retry-After delta-seconds (§20.33), ignoring its comment and parameters."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    text = value.strip().split(";", 1)[0].split("(", 1)[0].strip()
    return float(text) if text.isascii() and text.isdigit() else None


#: ``send(request, transport, host, port) -> transaction id`` (the SIP core's client side).
SendRequest = Callable[[SipRequest, str, str, int], str]


class TrunkRegistrations:
    """One :class:`TrunkRegistration` per ``kind: register`` trunk, wired to transactions.

    The controller forwards client-transaction results: ``owns(tx_id)`` says whether a
    transaction is one of ours, then :meth:`on_response` / :meth:`on_timeout`. The app
    calls :meth:`start` at server start, :meth:`stop` at shutdown (and may wait while
    :meth:`stopping`), and drives :meth:`next_timer` / :meth:`handle_timer`.
    """

    def __init__(
        self,
        trunks: Iterable[TrunkSettings],
        local_host: str,
        local_port: int,
        send: SendRequest,
        *,
        user_agent: str | None = None,
        retry_base: float = RETRY_BASE_S,
        retry_cap: float = RETRY_CAP_S,
    ) -> None:
        self._send = send
        self._registrations: dict[str, TrunkRegistration] = {
            trunk.name: TrunkRegistration(
                trunk,
                local_host,
                local_port,
                user_agent=user_agent,
                retry_base=retry_base,
                retry_cap=retry_cap,
            )
            for trunk in trunks
            if trunk.kind == "register"
        }
        self._by_tx: dict[str, str] = {}  # transaction id -> trunk name
        self._in_flight: dict[str, str] = {}  # trunk name -> its transaction id

    def __iter__(self) -> Iterator[TrunkRegistration]:
        return iter(self._registrations.values())

    def __len__(self) -> int:
        return len(self._registrations)

    def __getitem__(self, name: str) -> TrunkRegistration:
        return self._registrations[name]

    def stopping(self) -> bool:
        """True while some trunk still waits for the answer to its removal."""
        return any(r.state is S.UNREGISTERING for r in self)

    def start(self, now: float) -> None:
        for registration in self:
            if registration.state is S.UNREGISTERED:
                self._dispatch(registration, registration.start(now))

    def stop(self, now: float) -> None:
        for registration in self:
            self._dispatch(registration, registration.stop(now))

    def owns(self, tx_id: str) -> bool:
        return tx_id in self._by_tx

    def on_response(self, tx_id: str, response: SipResponse, now: float) -> None:
        name = self._by_tx.get(tx_id)
        if name is None:
            return
        if response.status >= 200:
            self._forget(tx_id, name)
        registration = self._registrations[name]
        self._dispatch(registration, registration.on_response(response, now))

    def on_timeout(self, tx_id: str, now: float) -> None:
        name = self._by_tx.get(tx_id)
        if name is None:
            return
        self._forget(tx_id, name)
        registration = self._registrations[name]
        self._dispatch(registration, registration.on_timeout(now))

    def next_timer(self) -> float | None:
        deadlines = [t for t in (r.next_timer() for r in self) if t is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        for registration in self:
            self._dispatch(registration, registration.handle_timer(now))

    def pop_events(self) -> list[TrunkStateChanged]:
        return [event for registration in self for event in registration.pop_events()]

    def status(self) -> dict[str, TrunkStatus]:
        return {name: r.status() for name, r in self._registrations.items()}

    def _dispatch(self, registration: TrunkRegistration, outbound: list[Outbound]) -> None:
        name = registration.name
        for out in outbound:
            # One REGISTER in flight per trunk (§10.2): a transaction still mapped for this
            # trunk ended without telling us, and must not fail the new one later.
            previous = self._in_flight.get(name)
            if previous is not None:
                self._forget(previous, name)
            tx_id = self._send(out.request, out.transport, out.host, out.port)
            self._by_tx[tx_id] = name
            self._in_flight[name] = tx_id

    def _forget(self, tx_id: str, name: str) -> None:
        del self._by_tx[tx_id]
        if self._in_flight.get(name) == tx_id:
            del self._in_flight[name]
