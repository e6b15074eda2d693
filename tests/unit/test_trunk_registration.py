"""Trunk registration (RFC 3261 §10.2) driven without sockets, on a simulated clock.

The carrier in these tests checks our credentials with Tsunagu's server-side digest
verifier (:class:`DigestAuthenticator`), an independent computation of the same RFC, so a
wrong Authorization header fails the test rather than being taken on trust. Every
request the client builds goes through ``bytes()`` and the SIP parser before the carrier
reads it, as it would on the wire.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsunagu.calls.trunk_registration import (
    RETRY_BASE_S,
    RETRY_CAP_S,
    TRANSITIONS,
    Outbound,
    TrunkInput,
    TrunkRegistration,
    TrunkRegistrations,
    TrunkState,
    TrunkStateChanged,
    TrunkTransitionError,
)
from tsunagu.settings import TrunkSettings
from tsunagu.sip.digest import AuthOutcome, DigestAuthenticator, parse_credentials
from tsunagu.sip.message import SipRequest, SipResponse, make_response, parse_message
from tsunagu.sip.uri import SipUri

S = TrunkState
LOCAL = ("192.0.2.10", 5070)
CARRIER = "203.0.113.5"
PASSWORD = "s3cret-Pa55"
REALM = "carrier.example"


def trunk(
    name: str = "carrier",
    *,
    password: str = PASSWORD,
    expires: int = 600,
    transport: Literal["udp", "tcp"] = "udp",
    port: int = 5060,
) -> TrunkSettings:
    return TrunkSettings(
        name=name,
        kind="register",
        host=CARRIER,
        port=port,
        transport=transport,
        username="acct",
        password=password,
        register_expires=expires,
    )


def make() -> TrunkRegistration:
    return TrunkRegistration(trunk(), *LOCAL, user_agent="Tsunagu/test")


def wire(out: Outbound) -> SipRequest:
    """The request as the carrier parses it off the wire."""
    parsed = parse_message(bytes(out.request))
    assert isinstance(parsed, SipRequest)
    return parsed


class Carrier:
    """A registrar at the carrier: digest-checks REGISTERs and binds our Contact.

    ``grant`` overrides the expiry granted (default: what was asked); ``grant_in`` says
    where the 2xx tells it (Contact parameter or Expires header). ``refuse_with`` is what
    wrong credentials get: 403 (Tsunagu, Kamailio) or a fresh 401 (Asterisk-style).
    """

    def __init__(
        self,
        *,
        password: str = PASSWORD,
        algorithms: Sequence[str] = ("MD5",),
        nonce_ttl: float = 300.0,
        grant: int | None = None,
        grant_in: Literal["contact", "header", "nowhere"] = "contact",
        refuse_with: int = 403,
        proxy: bool = False,
    ) -> None:
        self.auth = DigestAuthenticator(
            REALM, {"acct": password}.get, algorithms=algorithms, nonce_ttl=nonce_ttl
        )
        self.grant = grant
        self.grant_in = grant_in
        self.refuse_with = refuse_with
        self.proxy = proxy
        self.received: list[SipRequest] = []
        self.outcomes: list[AuthOutcome] = []
        self.bound_until: float | None = None

    def answer(self, out: Outbound, now: float) -> SipResponse:
        request = wire(out)
        self.received.append(request)
        header = "Proxy-Authorization" if self.proxy else "Authorization"
        result = self.auth.verify("REGISTER", str(request.uri), request.headers.values(header), now)
        self.outcomes.append(result.outcome)
        if result.outcome is AuthOutcome.OK:
            return self._bind(request, now)
        if result.outcome is AuthOutcome.FAILED and self.refuse_with == 403:
            return make_response(request, 403, to_tag="c")
        stale = result.outcome is AuthOutcome.STALE
        status = 407 if self.proxy else 401
        name = "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"
        extra = [(name, value) for value in self.auth.challenges(now, stale=stale)]
        return make_response(request, status, to_tag="c", extra=extra)

    def _bind(self, request: SipRequest, now: float) -> SipResponse:
        asked = request.expires()
        assert asked is not None
        contacts = request.contacts
        assert contacts is not None and len(contacts) == 1
        if asked == 0:
            self.bound_until = None
            return make_response(request, 200, to_tag="c")
        granted = self.grant if self.grant is not None else asked
        self.bound_until = now + granted
        contact = str(contacts[0])
        extra = []
        if self.grant_in == "contact":
            extra.append(("Contact", f"{contact};expires={granted}"))
        elif self.grant_in == "header":
            extra += [("Contact", contact), ("Expires", str(granted))]
        else:
            extra.append(("Contact", contact))
        return make_response(request, 200, to_tag="c", extra=extra)


def drive(reg: TrunkRegistration, carrier: Carrier, outs: list[Outbound], now: float) -> None:
    """Let the carrier answer everything the client sends until it stops sending."""
    while outs:
        out = outs.pop(0)
        outs += reg.on_response(carrier.answer(out, now), now)


def response(out: Outbound, status: int, extra: list[tuple[str, str]] | None = None) -> SipResponse:
    return make_response(wire(out), status, to_tag="c", extra=extra)


def registered(carrier: Carrier | None = None, now: float = 0.0) -> TrunkRegistration:
    reg = make()
    drive(reg, carrier or Carrier(), reg.start(now), now)
    assert state_of(reg) is S.REGISTERED
    reg.pop_events()
    return reg


def state_of(reg: TrunkRegistration) -> TrunkState:
    """The state, read through a call so that mypy does not narrow it across inputs."""
    return reg.state


def moves(reg: TrunkRegistration) -> list[tuple[str, str]]:
    return [(e.old.value, e.new.value) for e in reg.pop_events()]


# --------------------------------------------------------------------------- register


def test_first_register_is_well_formed_rfc3261_10_2() -> None:
    reg = make()
    [out] = reg.start(0.0)
    request = wire(out)
    assert (out.transport, out.host, out.port) == ("UDP", CARRIER, 5060)
    assert out.peer.reliable is False
    assert request.method == "REGISTER"
    assert str(request.uri) == f"sip:{CARRIER}"  # the domain, no user part
    assert str(request.to.uri) == f"sip:acct@{CARRIER}"
    assert str(request.from_.uri) == f"sip:acct@{CARRIER}"
    assert request.from_.tag and request.to.tag is None
    assert request.contacts is not None
    assert [str(c) for c in request.contacts] == ["<sip:acct@192.0.2.10:5070>"]
    assert request.expires() == 600
    assert request.cseq.method == "REGISTER"
    assert request.call_id == reg.call_id
    via = request.top_via
    assert (via.transport, via.host, via.port) == ("UDP", *LOCAL)
    assert via.is_rfc3261_branch and "rport" in via.params
    assert request.max_forwards == 70
    assert request.headers.get("User-Agent") == "Tsunagu/test"
    assert "Authorization" not in request.headers
    assert state_of(reg) is S.REGISTERING
    assert moves(reg) == [("unregistered", "registering")]


def test_register_port_and_tcp_transport_show_in_uri_and_contact() -> None:
    reg = TrunkRegistration(trunk(transport="tcp", port=5080), *LOCAL)
    [out] = reg.start(0.0)
    request = wire(out)
    assert (out.transport, out.port) == ("TCP", 5080)
    assert out.peer.reliable
    assert str(request.uri) == f"sip:{CARRIER}:5080"
    assert request.top_via.transport == "TCP"
    assert request.contacts is not None
    assert str(request.contacts[0].uri) == "sip:acct@192.0.2.10:5070;transport=tcp"
    assert "User-Agent" not in request.headers


@pytest.mark.parametrize("algorithms", [("MD5",), ("SHA-256", "MD5")])
def test_challenge_answered_with_credentials_then_registered(algorithms: tuple[str, ...]) -> None:
    carrier = Carrier(algorithms=algorithms)
    reg = make()
    drive(reg, carrier, reg.start(10.0), 10.0)
    assert carrier.outcomes == [AuthOutcome.MISSING, AuthOutcome.OK]
    first, second = carrier.received
    credentials = parse_credentials(second.headers.values("Authorization")[0])
    assert credentials.username == "acct" and credentials.realm == REALM
    assert credentials.algorithm == algorithms[0]  # the carrier's preferred one (RFC 8760)
    assert credentials.uri == str(second.uri)
    # §8.1.3.5: the retry is a new transaction with the same Call-ID, From, To; CSeq + 1.
    assert second.call_id == first.call_id
    assert second.from_.tag == first.from_.tag
    assert second.cseq.number == first.cseq.number + 1
    assert second.top_via.branch != first.top_via.branch
    assert state_of(reg) is S.REGISTERED
    status = reg.status()
    assert status["state"] == "registered" and status["since"] == 10.0
    assert status["granted_expires"] == 600
    assert status["next_refresh"] == 10.0 + 300
    assert reg.next_timer() == 10.0 + 300
    events = reg.pop_events()
    assert [(e.old, e.new) for e in events] == [
        (S.UNREGISTERED, S.REGISTERING),
        (S.REGISTERING, S.REGISTERED),
    ]
    assert events[-1] == TrunkStateChanged(
        "carrier", S.REGISTERING, S.REGISTERED, "registered for 600 s", 10.0, 200
    )


def test_proxy_challenge_answered_with_proxy_authorization() -> None:
    carrier = Carrier(proxy=True)
    reg = make()
    drive(reg, carrier, reg.start(0.0), 0.0)
    assert state_of(reg) is S.REGISTERED
    assert carrier.outcomes == [AuthOutcome.MISSING, AuthOutcome.OK]
    assert "Authorization" not in carrier.received[1].headers
    assert "Proxy-Authorization" in carrier.received[1].headers


@pytest.mark.parametrize(
    ("grant_in", "grant", "expected"),
    [("contact", 120, 120), ("header", 90, 90), ("nowhere", 45, 600), ("contact", 7200, 7200)],
)
def test_granted_expiry_and_refresh_at_half(grant_in: str, grant: int, expected: int) -> None:
    carrier = Carrier(grant=grant, grant_in=grant_in)  # type: ignore[arg-type]
    reg = make()
    drive(reg, carrier, reg.start(100.0), 100.0)
    assert reg.status()["granted_expires"] == expected
    assert reg.status()["bound_until"] == 100.0 + expected
    assert reg.next_timer() == 100.0 + expected / 2


def test_contact_expires_beats_expires_header_and_foreign_contacts_are_ignored() -> None:
    reg = make()
    [out] = reg.start(0.0)
    answer = response(
        out,
        200,
        [
            ("Contact", "<sip:other@198.51.100.1:5060>;expires=3000"),
            ("Contact", "<sip:acct@192.0.2.10:5070>;expires=80"),
            ("Expires", "999"),
        ],
    )
    assert reg.on_response(answer, 1.0) == []
    assert reg.status()["granted_expires"] == 80
    # Granted time counts from when the REGISTER left, not when the answer came.
    assert reg.next_timer() == 0.0 + 40
    assert reg.status()["bound_until"] == 0.0 + 80


def test_2xx_that_binds_no_time_is_a_failure() -> None:
    reg = make()
    [out] = reg.start(0.0)
    reg.on_response(response(out, 200, [("Contact", "<sip:acct@192.0.2.10:5070>;expires=0")]), 0)
    assert state_of(reg) is S.FAILED
    assert "bound no time" in str(reg.status()["last_error"])


# --------------------------------------------------------------------------- refresh


def test_refresh_is_due_at_half_and_reuses_call_id_with_cached_credentials() -> None:
    carrier = Carrier()
    reg = make()
    drive(reg, carrier, reg.start(0.0), 0.0)
    reg.pop_events()
    assert reg.handle_timer(299.9) == []
    assert state_of(reg) is S.REGISTERED
    outs = reg.handle_timer(300.0)
    assert state_of(reg) is S.REFRESHING
    assert reg.next_timer() is None  # nothing timed while a request is in flight
    drive(reg, carrier, outs, 300.0)
    # §22.3: the cached credentials (nonce count 2) are accepted without a new challenge.
    assert carrier.outcomes == [AuthOutcome.MISSING, AuthOutcome.OK, AuthOutcome.OK]
    refresh = carrier.received[-1]
    assert parse_credentials(refresh.headers.values("Authorization")[0]).nc == "00000002"
    cseqs = [r.cseq.number for r in carrier.received]
    assert cseqs == list(range(cseqs[0], cseqs[0] + 3))
    assert {r.call_id for r in carrier.received} == {reg.call_id}
    assert {r.from_.tag for r in carrier.received} == {carrier.received[0].from_.tag}
    assert state_of(reg) is S.REGISTERED
    assert reg.next_timer() == 600.0
    assert moves(reg) == [("registered", "refreshing"), ("refreshing", "registered")]
    # And again, many times: the binding never lapses at the carrier.
    for cycle in range(2, 20):
        now = cycle * 300.0
        assert carrier.bound_until is not None and carrier.bound_until > now
        drive(reg, carrier, reg.handle_timer(now), now)
        assert state_of(reg) is S.REGISTERED
    assert len({r.cseq.number for r in carrier.received}) == len(carrier.received)


def test_stale_nonce_on_refresh_is_answered_again() -> None:
    carrier = Carrier(nonce_ttl=200.0)
    reg = make()
    drive(reg, carrier, reg.start(0.0), 0.0)
    drive(reg, carrier, reg.handle_timer(300.0), 300.0)
    assert carrier.outcomes == [
        AuthOutcome.MISSING,
        AuthOutcome.OK,
        AuthOutcome.STALE,  # cached credentials on an expired nonce -> 401 stale=true
        AuthOutcome.OK,
    ]
    assert state_of(reg) is S.REGISTERED


def test_stale_after_our_own_answer_is_still_answered() -> None:
    carrier = Carrier()
    reg = make()
    [out] = reg.start(0.0)
    [with_credentials] = reg.on_response(carrier.answer(out, 0.0), 0.0)
    stale = carrier.auth.challenges(1.0, stale=True)
    [again] = reg.on_response(response(with_credentials, 401, [("WWW-Authenticate", stale[0])]), 1)
    assert state_of(reg) is S.REGISTERING
    assert wire(again).cseq.number == wire(with_credentials).cseq.number + 1
    drive(reg, carrier, [again], 1.0)
    assert state_of(reg) is S.REGISTERED


def test_a_new_challenge_to_cached_credentials_is_answered_not_taken_as_refusal() -> None:
    # Some carriers forget nonces without saying stale=true: the refresh's cached
    # credentials were not an answer given in this attempt, so they prove nothing yet.
    carrier = Carrier()
    reg = registered(carrier)
    [refresh] = reg.handle_timer(300.0)
    fresh = Carrier().auth.challenges(300.0)[0]
    [answer] = reg.on_response(response(refresh, 401, [("WWW-Authenticate", fresh)]), 300.0)
    assert state_of(reg) is S.REFRESHING
    assert parse_credentials(wire(answer).headers.values("Authorization")[0]).nc == "00000001"


def test_a_carrier_that_keeps_saying_stale_is_given_up_on() -> None:
    carrier = Carrier()
    reg = make()
    outs = reg.start(0.0)
    sent = 0
    while outs:
        sent += 1
        challenges = carrier.auth.challenges(0.0, stale=True)
        outs = reg.on_response(response(outs[0], 401, [("WWW-Authenticate", challenges[0])]), 0)
    assert state_of(reg) is S.FAILED
    assert sent == 5  # the first REGISTER and four resends, not forever


def test_refresh_failure_keeps_binding_and_retries_before_it_lapses() -> None:
    reg = registered()
    [refresh] = reg.handle_timer(300.0)
    reg.on_response(response(refresh, 503, [("Retry-After", "45 (maintenance);duration=60")]), 300)
    assert state_of(reg) is S.FAILED
    assert reg.status()["bound_until"] == 600.0
    assert reg.next_timer() == 300.0 + 45  # Retry-After is longer than the first back-off
    assert reg.status()["last_status"] == 503


# --------------------------------------------------------------------------- refusals


def test_wrong_password_403_fails_with_the_reason() -> None:
    carrier = Carrier(password="the-real-one")
    reg = make()
    drive(reg, carrier, reg.start(5.0), 5.0)
    assert carrier.outcomes == [AuthOutcome.MISSING, AuthOutcome.FAILED]
    assert state_of(reg) is S.FAILED
    status = reg.status()
    assert status["last_status"] == 403
    assert "403" in str(status["last_error"])
    assert status["next_retry"] == 5.0 + RETRY_BASE_S
    assert moves(reg)[-1] == ("registering", "failed")


def test_wrong_password_rechallenged_with_a_new_nonce_fails_instead_of_looping() -> None:
    carrier = Carrier(password="the-real-one", refuse_with=401)
    reg = make()
    drive(reg, carrier, reg.start(0.0), 0.0)
    assert carrier.outcomes == [AuthOutcome.MISSING, AuthOutcome.FAILED]
    assert state_of(reg) is S.FAILED
    assert "refused our credentials" in str(reg.status()["last_error"])
    assert reg.status()["last_status"] == 401


@pytest.mark.parametrize(
    "challenge",
    [
        None,
        'Basic realm="carrier"',
        'Digest realm="carrier", nonce="n1", algorithm=SHA-512-256',
        'Digest realm="carrier", nonce="n1", qop="auth-int"',
        "Digest garbage",
    ],
)
def test_challenge_we_cannot_answer_fails(challenge: str | None) -> None:
    reg = make()
    [out] = reg.start(0.0)
    extra = [("WWW-Authenticate", challenge)] if challenge else []
    assert reg.on_response(response(out, 401, extra), 0.0) == []
    assert state_of(reg) is S.FAILED
    assert "cannot answer" in str(reg.status()["last_error"])


def test_423_raises_expires_to_min_expires_and_keeps_it_for_refreshes() -> None:
    reg = make()
    [out] = reg.start(0.0)
    [retry] = reg.on_response(response(out, 423, [("Min-Expires", "1800")]), 0.0)
    request = wire(retry)
    assert request.expires() == 1800
    assert request.cseq.number == wire(out).cseq.number + 1
    assert state_of(reg) is S.REGISTERING
    drive(reg, Carrier(), [retry], 0.0)
    assert state_of(reg) is S.REGISTERED
    assert reg.next_timer() == 900.0
    [refresh] = reg.handle_timer(900.0)
    assert wire(refresh).expires() == 1800


@pytest.mark.parametrize("min_expires", [None, "600", "300", "soon"])
def test_423_without_a_higher_min_expires_fails(min_expires: str | None) -> None:
    reg = make()
    [out] = reg.start(0.0)
    extra = [("Min-Expires", min_expires)] if min_expires else []
    assert reg.on_response(response(out, 423, extra), 0.0) == []
    assert state_of(reg) is S.FAILED
    assert reg.status()["last_status"] == 423


@pytest.mark.parametrize("status", [403, 404, 480, 500, 503, 603, 302])
def test_other_final_responses_fail(status: int) -> None:
    reg = make()
    [out] = reg.start(0.0)
    reg.on_response(response(out, status), 0.0)
    assert state_of(reg) is S.FAILED
    assert reg.status()["last_status"] == status
    assert reg.next_timer() == RETRY_BASE_S


def test_timer_f_fails_with_408_and_back_off() -> None:
    reg = make()
    reg.start(0.0)
    assert reg.on_timeout(32.0) == []
    assert state_of(reg) is S.FAILED
    status = reg.status()
    assert status["last_status"] == 408 and "Timer F" in str(status["last_error"])
    assert reg.next_timer() == 32.0 + RETRY_BASE_S
    assert reg.on_timeout(40.0) == []  # nothing in flight: a late timeout changes nothing
    assert state_of(reg) is S.FAILED


def test_back_off_doubles_up_to_the_cap_and_success_resets_it() -> None:
    reg = make()
    now = 0.0
    [out] = reg.start(now)
    delays = []
    for _ in range(8):
        reg.on_response(response(out, 503), now)
        retry_at = reg.next_timer()
        assert retry_at is not None
        delays.append(retry_at - now)
        assert reg.handle_timer(retry_at - 0.001) == []
        now = retry_at
        [out] = reg.handle_timer(now)
        assert state_of(reg) is S.REGISTERING
    assert delays == [30, 60, 120, 240, 480, RETRY_CAP_S, RETRY_CAP_S, RETRY_CAP_S]
    assert reg.status()["failures"] == 8
    drive(reg, Carrier(), [out], now)
    assert state_of(reg) is S.REGISTERED and reg.status()["failures"] == 0
    [refresh] = reg.handle_timer(now + 300)
    reg.on_response(response(refresh, 500), now + 300)
    assert reg.next_timer() == now + 300 + RETRY_BASE_S


def test_retry_after_is_capped() -> None:
    reg = make()
    [out] = reg.start(0.0)
    reg.on_response(response(out, 503, [("Retry-After", "86400")]), 0.0)
    assert reg.next_timer() == RETRY_CAP_S


def test_start_from_failed_retries_now() -> None:
    reg = make()
    [out] = reg.start(0.0)
    reg.on_response(response(out, 503), 0.0)
    [again] = reg.start(5.0)
    assert state_of(reg) is S.REGISTERING
    assert wire(again).cseq.number == wire(out).cseq.number + 1
    assert reg.next_timer() is None


# --------------------------------------------------------------------------- stop


def test_stop_sends_expires_0_for_our_contact_with_credentials() -> None:
    carrier = Carrier()
    reg = registered(carrier)
    [out] = reg.stop(50.0)
    request = wire(out)
    assert request.expires() == 0
    assert request.contacts is not None
    assert [str(c) for c in request.contacts] == ["<sip:acct@192.0.2.10:5070>"]
    assert request.call_id == reg.call_id
    assert request.cseq.number == carrier.received[-1].cseq.number + 1
    assert state_of(reg) is S.UNREGISTERING and reg.next_timer() is None
    drive(reg, carrier, [out], 50.0)
    assert carrier.outcomes[-1] is AuthOutcome.OK  # cached credentials, no new challenge
    assert carrier.bound_until is None
    assert state_of(reg) is S.UNREGISTERED
    assert moves(reg) == [("registered", "unregistering"), ("unregistering", "unregistered")]
    assert reg.status()["bound_until"] is None
    assert reg.stop(51.0) == []  # stopping twice is harmless
    assert reg.pop_events() == []


def test_stop_while_registering_waits_for_the_answer_then_removes_rfc3261_10_2() -> None:
    carrier = Carrier()
    reg = make()
    [first] = reg.start(0.0)
    assert reg.stop(0.1) == []  # no new REGISTER while one is in flight
    assert state_of(reg) is S.UNREGISTERING
    [removal] = reg.on_response(carrier.answer(first, 0.2), 0.2)  # 401
    assert wire(removal).expires() == 0
    assert "Authorization" in wire(removal).headers
    drive(reg, carrier, [removal], 0.2)
    assert state_of(reg) is S.UNREGISTERED
    assert carrier.bound_until is None


def test_stop_while_refreshing_removes_the_binding_the_refresh_made() -> None:
    carrier = Carrier()
    reg = registered(carrier)
    [refresh] = reg.handle_timer(300.0)
    assert reg.stop(300.5) == []
    [removal] = reg.on_response(carrier.answer(refresh, 301.0), 301.0)  # 200 for refresh
    assert carrier.bound_until is not None
    assert wire(removal).expires() == 0
    drive(reg, carrier, [removal], 301.0)
    assert state_of(reg) is S.UNREGISTERED and carrier.bound_until is None


def test_stop_when_the_registration_in_flight_fails_is_done() -> None:
    reg = make()
    [first] = reg.start(0.0)
    reg.stop(0.1)
    assert reg.on_response(response(first, 403), 0.2) == []
    assert state_of(reg) is S.UNREGISTERED


def test_stop_gives_up_when_the_removal_is_not_answered() -> None:
    reg = registered()
    reg.stop(10.0)
    reg.on_timeout(42.0)
    assert state_of(reg) is S.UNREGISTERED
    assert reg.status()["last_status"] == 408


def test_stop_in_failed_removes_only_a_binding_that_may_still_live() -> None:
    reg = registered()  # bound until 600
    [refresh] = reg.handle_timer(300.0)
    reg.on_response(response(refresh, 500), 300.0)
    [removal] = reg.stop(400.0)
    assert wire(removal).expires() == 0 and state_of(reg) is S.UNREGISTERING
    lapsed = registered()
    [refresh] = lapsed.handle_timer(300.0)
    lapsed.on_timeout(332.0)
    assert lapsed.stop(700.0) == []  # the binding has lapsed: nothing to remove
    assert state_of(lapsed) is S.UNREGISTERED
    never = make()
    [out] = never.start(0.0)
    never.on_response(response(out, 403), 0.0)
    assert never.stop(1.0) == [] and state_of(never) is S.UNREGISTERED


def test_stop_before_start_and_restart_after_stop() -> None:
    reg = make()
    assert reg.stop(0.0) == [] and state_of(reg) is S.UNREGISTERED
    assert reg.pop_events() == []
    carrier = Carrier()
    drive(reg, carrier, reg.start(1.0), 1.0)
    drive(reg, carrier, reg.stop(2.0), 2.0)
    drive(reg, carrier, reg.start(3.0), 3.0)
    assert state_of(reg) is S.REGISTERED
    assert {r.call_id for r in carrier.received} == {reg.call_id}  # one boot cycle, §10.2


# --------------------------------------------------------------------------- matching


def test_responses_not_for_the_request_in_flight_are_ignored() -> None:
    reg = make()
    [out] = reg.start(0.0)
    request = wire(out)
    old = response(out, 200)
    old.headers.set("CSeq", f"{request.cseq.number - 1} REGISTER")
    other_call = response(out, 200)
    other_call.headers.set("Call-ID", "someone-else@x")
    other_method = response(out, 200)
    other_method.headers.set("CSeq", f"{request.cseq.number} OPTIONS")
    for ignored in (old, other_call, other_method, response(out, 100), response(out, 183)):
        assert reg.on_response(ignored, 1.0) == []
        assert state_of(reg) is S.REGISTERING
    reg.on_response(response(out, 403), 1.0)
    assert state_of(reg) is S.FAILED
    assert reg.on_response(response(out, 200), 2.0) == []  # retransmission, nothing pending
    assert state_of(reg) is S.FAILED


def test_inputs_outside_the_table_are_loud() -> None:
    reg = registered()
    with pytest.raises(TrunkTransitionError, match="start"):
        reg.start(1.0)
    reg.handle_timer(300.0)
    with pytest.raises(TrunkTransitionError):
        reg.start(301.0)


def test_every_state_accepts_stop_or_drop() -> None:
    for state in TrunkState:
        assert (state, TrunkInput.STOP) in TRANSITIONS or (state, TrunkInput.DROP) in TRANSITIONS


def test_configuration_errors_are_ours() -> None:
    ip = TrunkSettings(name="ip", kind="ip", allow=["198.51.100.0/24"], host=CARRIER)
    with pytest.raises(ValueError, match="not a register trunk"):
        TrunkRegistration(ip, *LOCAL)
    with pytest.raises(ValueError, match="retry_base"):
        TrunkRegistration(trunk(), *LOCAL, retry_base=60, retry_cap=30)


# --------------------------------------------------------------------------- property


_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("respond"), st.sampled_from([100, 200, 401, 403, 423, 503])),
        st.tuples(st.just("timeout"), st.just(0)),
        st.tuples(st.just("timer"), st.integers(0, 700)),
        st.tuples(st.just("start"), st.just(0)),
        st.tuples(st.just("stop"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_ACTIONS)
def test_any_input_sequence_keeps_the_rfc_rules(actions: list[tuple[str, int]]) -> None:
    """Over state x input: CSeq only grows, one Call-ID, one request in flight at most,
    timers only where the state has one, and events chain old -> new."""
    carrier = Carrier()
    reg = make()
    now = 0.0
    in_flight: Outbound | None = None
    sent: list[SipRequest] = []

    def take(outs: list[Outbound]) -> None:
        nonlocal in_flight
        assert len(outs) <= 1
        if outs:
            assert in_flight is None, "a new REGISTER before the previous one ended (§10.2)"
            in_flight = outs[0]
            sent.append(wire(outs[0]))

    for action, value in actions:
        now += 1.0
        if action == "respond" and in_flight is not None:
            out = in_flight
            if value >= 200:
                in_flight = None
            answer = carrier.answer(out, now) if value in (200, 401) else response(out, value)
            if value == 423:
                answer.headers.add("Min-Expires", "1200")
            take(reg.on_response(answer, now))
        elif action == "timeout" and in_flight is not None:
            in_flight = None
            take(reg.on_timeout(now))
        elif action == "timer":
            due = reg.next_timer()
            if due is not None:
                now = max(now, due + value - 350)
            take(reg.handle_timer(now))
        elif action == "start" and reg.state in (S.UNREGISTERED, S.FAILED):
            take(reg.start(now))
        elif action == "stop":
            take(reg.stop(now))
        has_timer = reg.next_timer() is not None
        assert has_timer == (reg.state in (S.REGISTERED, S.FAILED))
        busy = reg.state in (S.REGISTERING, S.REFRESHING, S.UNREGISTERING)
        assert (in_flight is not None) == busy
    numbers = [r.cseq.number for r in sent]
    assert numbers == sorted(set(numbers))
    assert {r.call_id for r in sent} <= {reg.call_id}
    events = reg.pop_events()
    for before, after in itertools.pairwise(events):
        assert before.new is after.old
    for event in events:
        assert event.old is not event.new


# --------------------------------------------------------------------------- manager


class Sender:
    """Stands in for the SIP core's ``send_request``: records and numbers transactions."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, SipRequest, str, str, int]] = []

    def __call__(self, request: SipRequest, transport: str, host: str, port: int) -> str:
        tx_id = f"tx{len(self.sent)}"
        self.sent.append((tx_id, request, transport, host, port))
        return tx_id

    def last(self, trunk_user: str) -> tuple[str, SipRequest]:
        for tx_id, request, *_ in reversed(self.sent):
            uri = request.to.uri
            assert isinstance(uri, SipUri)
            if uri.user == trunk_user:
                return tx_id, request
        raise AssertionError(f"nothing sent for {trunk_user}")


def two_trunks() -> list[TrunkSettings]:
    second = TrunkSettings(
        name="backup",
        kind="register",
        host="198.51.100.9",
        username="other",
        password="pw",
        register_expires=120,
    )
    ip = TrunkSettings(name="ip", kind="ip", allow=["198.51.100.0/24"], host="198.51.100.1")
    return [trunk(), second, ip]


def test_manager_owns_one_registration_per_register_trunk_and_routes_by_transaction() -> None:
    send = Sender()
    trunks = TrunkRegistrations(two_trunks(), *LOCAL, send, user_agent="Tsunagu/x")
    assert sorted(r.name for r in trunks) == ["backup", "carrier"] and len(trunks) == 2
    trunks.start(0.0)
    assert len(send.sent) == 2
    assert {(t, h, p) for _, _, t, h, p in send.sent} == {
        ("UDP", CARRIER, 5060),
        ("UDP", "198.51.100.9", 5060),
    }
    tx_carrier, req_carrier = send.last("acct")
    tx_backup, req_backup = send.last("other")
    assert trunks.owns(tx_carrier) and trunks.owns(tx_backup) and not trunks.owns("tx-other")
    trunks.on_response("tx-other", make_response(req_carrier, 200), 0.0)  # not ours: ignored
    trunks.on_response(tx_backup, make_response(req_backup, 100), 0.0)
    assert trunks.owns(tx_backup)  # provisional: the transaction goes on
    trunks.on_response(
        tx_backup,
        make_response(req_backup, 200, extra=[("Contact", "<sip:other@x>;expires=100")]),
        1.0,
    )
    assert not trunks.owns(tx_backup)
    assert state_of(trunks["backup"]) is S.REGISTERED
    assert state_of(trunks["carrier"]) is S.REGISTERING
    assert trunks.next_timer() == 50.0
    trunks.on_timeout(tx_carrier, 32.0)
    assert state_of(trunks["carrier"]) is S.FAILED
    assert trunks.next_timer() == 50.0  # backup refresh before carrier retry (62)
    trunks.handle_timer(50.0)
    tx_refresh, refresh = send.last("other")
    assert tx_refresh != tx_backup and refresh.cseq.number == req_backup.cseq.number + 1
    assert state_of(trunks["backup"]) is S.REFRESHING
    trunks.handle_timer(62.0)
    assert state_of(trunks["carrier"]) is S.REGISTERING
    status = trunks.status()
    assert status["carrier"]["state"] == "registering"
    assert status["backup"]["state"] == "refreshing"
    events = trunks.pop_events()
    assert {e.trunk for e in events} == {"carrier", "backup"}
    assert trunks.pop_events() == []


def test_manager_stop_and_stopping_flag() -> None:
    send = Sender()
    trunks = TrunkRegistrations(two_trunks(), *LOCAL, send)
    trunks.start(0.0)
    for name, user in (("carrier", "acct"), ("backup", "other")):
        tx_id, request = send.last(user)
        trunks.on_response(tx_id, make_response(request, 200, extra=[("Expires", "600")]), 0.0)
        assert state_of(trunks[name]) is S.REGISTERED
    assert not trunks.stopping()
    trunks.stop(10.0)
    assert trunks.stopping()
    removals = send.sent[-2:]
    assert all(request.expires() == 0 for _, request, *_ in removals)
    for tx_id, request, *_ in removals:
        trunks.on_response(tx_id, make_response(request, 200), 10.5)
    assert not trunks.stopping()
    assert {r.state for r in trunks} == {S.UNREGISTERED}
    assert trunks.next_timer() is None


def test_manager_ignores_a_timeout_of_a_transaction_that_is_no_longer_current() -> None:
    send = Sender()
    trunks = TrunkRegistrations([trunk()], *LOCAL, send)
    trunks.start(0.0)
    tx_first, first = send.last("acct")
    challenge = Carrier().auth.challenges(0.0)[0]
    trunks.on_response(
        tx_first, make_response(first, 401, extra=[("WWW-Authenticate", challenge)]), 0
    )
    tx_second, _ = send.last("acct")
    assert tx_second != tx_first and trunks.owns(tx_second) and not trunks.owns(tx_first)
    trunks.on_timeout(tx_first, 32.0)  # finished already: nothing happens
    assert state_of(trunks["carrier"]) is S.REGISTERING
    trunks.on_timeout(tx_second, 33.0)
    assert state_of(trunks["carrier"]) is S.FAILED
    assert not trunks.owns(tx_second)


def test_manager_forgets_a_transaction_that_ended_unseen() -> None:
    send = Sender()
    trunks = TrunkRegistrations([trunk()], *LOCAL, send)
    trunks.start(0.0)
    tx_lost, _ = send.last("acct")
    trunks["carrier"].on_timeout(32.0)  # as if the core ended it without reporting
    trunks.handle_timer(62.0)
    tx_retry, _ = send.last("acct")
    assert tx_retry != tx_lost
    assert not trunks.owns(tx_lost) and trunks.owns(tx_retry)
    trunks.on_timeout(tx_lost, 64.0)  # must not fail the retry in flight
    assert state_of(trunks["carrier"]) is S.REGISTERING
