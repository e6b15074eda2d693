"""The INVITE session on the answering side (RFC 3261 §13.3, §14.2, §15) on a simulated clock.

Nothing sleeps: ``now`` is a number the test advances, and ``run_until`` fires every timer
the session asks for, the way the asyncio adapter will.
"""

from __future__ import annotations

import itertools
import random
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsunagu.sip.ack_wait import AckWait, AckWaitState
from tsunagu.sip.dialog import DialogState, TerminationReason
from tsunagu.sip.errors import SipLocalError
from tsunagu.sip.invite_events import (
    AckTimeout,
    DialogTerminated,
    InDialogRequest,
    InviteAcknowledged,
    ReinviteAccepted,
    ReinviteGlare,
    ReinviteReceived,
    ReinviteRejected,
    ReinviteRetryDue,
    SendAck,
    SendRequest,
    SendResponse,
    SessionEvent,
)
from tsunagu.sip.invite_session import InviteSession, SessionState
from tsunagu.sip.message import SipRequest, SipResponse, make_response, parse_message
from tsunagu.sip.peer import Peer
from tsunagu.sip.transaction import AckReceived as AckReceivedEvent
from tsunagu.sip.transaction import (
    RequestReceived,
    SendMessage,
    TimerConfig,
    TransactionLayer,
)

T = TypeVar("T")
SDP = b"v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
OUR_CONTACT = "<sip:tsunagu@192.0.2.10:5060>"
CALLER = Peer("UDP", "203.0.113.5", 5080)
#: RFC 3261 defaults: T1 = 0.5 s, T2 = 4 s, 64*T1 = 32 s.
RETRANSMITS = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def invite_from_caller(
    cseq: int = 1, *, to_tag: str | None = None, body: bytes = SDP
) -> SipRequest:
    lines = [
        "INVITE sip:1001@192.0.2.10:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 203.0.113.5:5080;rport;branch=z9hG4bKinv{cseq}",
        "Max-Forwards: 70",
        'From: "Alice" <sip:alice@tsunagu.example>;tag=alicetag',
        "To: <sip:1001@tsunagu.example>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: call-a@203.0.113.5",
        f"CSeq: {cseq} INVITE",
        "Contact: <sip:alice@203.0.113.5:5080>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(msg, SipRequest)
    return msg


def from_caller(
    method: str, cseq: int, *, contact: str | None = None, branch: str | None = None
) -> SipRequest:
    """An in-dialog request from Alice on the dialog we answered with tag ``tsunagu1``."""
    lines = [
        f"{method} sip:tsunagu@192.0.2.10:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 203.0.113.5:5080;rport;branch={branch or f'z9hG4bK{method}{cseq}'}",
        "Max-Forwards: 70",
        'From: "Alice" <sip:alice@tsunagu.example>;tag=alicetag',
        "To: <sip:1001@tsunagu.example>;tag=tsunagu1",
        "Call-ID: call-a@203.0.113.5",
        f"CSeq: {cseq} {method}",
        *([f"Contact: {contact}"] if contact else []),
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def reply(request: SipRequest, status: int, *, contact: str | None = None) -> SipResponse:
    extra = [("Contact", contact)] if contact else []
    msg = parse_message(bytes(make_response(request, status, extra=extra)))
    assert isinstance(msg, SipResponse)
    return msg


def new_session(
    invite: SipRequest | None = None, *, seed: int = 1, config: TimerConfig | None = None
) -> tuple[InviteSession, SipRequest]:
    invite = invite or invite_from_caller()
    session = InviteSession.uas(
        invite,
        "s1",
        local_contact=OUR_CONTACT,
        local_tag="tsunagu1",
        config=config,
        rng=random.Random(seed),
    )
    return session, invite


def answered(seed: int = 1) -> tuple[InviteSession, SipRequest, SipResponse]:
    session, invite = new_session(seed=seed)
    ok = make_response(invite, 200, body=SDP, extra=[("Content-Type", "application/sdp")])
    session.respond(ok, 0.0)
    return session, invite, ok


def established(seed: int = 1) -> tuple[InviteSession, SipRequest]:
    session, invite, _ = answered(seed)
    session.receive_ack(from_caller("ACK", 1), 0.1)
    assert session.state is SessionState.IDLE
    return session, invite


def run_until(session: InviteSession, end: float) -> list[tuple[float, SessionEvent]]:
    fired: list[tuple[float, SessionEvent]] = []
    while (t := session.next_timer()) is not None and t <= end:
        fired += [(t, e) for e in session.handle_timer(t)]
    return fired


def of_type(events: list[SessionEvent], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def statuses(events: list[SessionEvent]) -> list[int]:
    return [e.response.status for e in events if isinstance(e, SendResponse)]


# -- answering the INVITE -----------------------------------------------------------------
def test_respond_stamps_tag_and_contact_and_confirms_on_2xx() -> None:
    session, invite = new_session()
    assert session.dialog.state is DialogState.EARLY
    (ringing,) = of_type(session.respond(make_response(invite, 180), 0.0), SendResponse)
    assert ringing.tx_id == "s1" and ringing.response.to.tag == "tsunagu1"
    assert ringing.response.headers.get("Contact") == OUR_CONTACT
    assert not ringing.retransmission
    events = session.respond(make_response(invite, 200), 0.2)
    assert statuses(events) == [200]
    assert session.dialog.is_confirmed
    assert session.state is SessionState.ACK_WAIT
    with pytest.raises(SipLocalError):
        session.respond(make_response(invite, 200), 0.3)  # already answered


def test_2xx_retransmitted_with_t1_doubling_capped_at_t2_until_ack() -> None:
    session, _, ok = answered()
    fired = run_until(session, 5.0)
    assert [round(t, 6) for t, _ in fired] == [0.5, 1.5, 3.5]
    assert all(isinstance(e, SendResponse) and e.retransmission for _, e in fired)
    assert all(isinstance(e, SendResponse) and e.response is ok for _, e in fired)
    ack = from_caller("ACK", 1)
    assert session.receive_ack(ack, 5.0) == [InviteAcknowledged(session.id, ack)]
    assert session.state is SessionState.IDLE
    assert session.next_timer() is None and run_until(session, 100.0) == []
    # Another copy of the ACK changes nothing.
    assert session.receive_ack(from_caller("ACK", 1), 6.0) == []


def test_no_ack_gives_one_ack_timeout_at_64_t1_and_then_bye_is_allowed() -> None:
    session, _, _ = answered()
    fired = run_until(session, 100.0)
    sends = [round(t, 6) for t, e in fired if isinstance(e, SendResponse)]
    assert sends == RETRANSMITS
    timeouts = [(t, e) for t, e in fired if isinstance(e, AckTimeout)]
    assert timeouts == [(32.0, AckTimeout(session.id, 1))]
    assert session.state is SessionState.IDLE and session.next_timer() is None
    # §13.3.1.4: the dialog is confirmed but the session should end; the call layer BYEs.
    events = session.hangup(32.0)
    (bye,) = of_type(events, SendRequest)
    assert bye.request.method == "BYE"
    assert of_type(events, DialogTerminated) == [
        DialogTerminated(session.id, TerminationReason.LOCAL_HANGUP)
    ]


def test_t1_from_settings_scales_the_schedule() -> None:
    session, invite = new_session(config=TimerConfig(t1=0.1, t2=0.4))
    session.respond(make_response(invite, 200), 10.0)
    fired = run_until(session, 100.0)
    sends = [round(t - 10.0, 6) for t, e in fired if isinstance(e, SendResponse)]
    assert sends[:4] == [0.1, 0.3, 0.7, 1.1]
    assert all(b - a <= 0.4 + 1e-9 for a, b in itertools.pairwise(sends))
    assert [round(t - 10.0, 6) for t, e in fired if isinstance(e, AckTimeout)] == [6.4]


def test_ack_for_an_older_invite_does_not_stop_the_retransmissions() -> None:
    session, _ = established()
    reinvite = from_caller("INVITE", 2)
    session.receive_request("s2", reinvite, 1.0)
    session.respond(make_response(reinvite, 200), 1.0)
    assert session.receive_ack(from_caller("ACK", 1), 1.2) == []  # the first INVITE's ACK
    assert session.state is SessionState.ACK_WAIT
    assert [round(t, 6) for t, _ in run_until(session, 2.6)] == [1.5, 2.5]
    assert of_type(session.receive_ack(from_caller("ACK", 2), 3.0), InviteAcknowledged)


def test_retransmissions_are_accepted_by_the_transaction_layer_in_accepted_state() -> None:
    """RFC 6026: the server transaction stays Accepted for 64*T1 and sends what the TU
    retransmits; every retransmission reaches the wire, none after Timer L."""
    layer = TransactionLayer()
    invite = invite_from_caller()
    events = layer.receive_request(invite, CALLER, 0.0)
    (received,) = [e for e in events if isinstance(e, RequestReceived)]
    session = InviteSession.uas(
        invite, received.tx_id, local_contact=OUR_CONTACT, local_tag="tsunagu1"
    )
    wire: list[tuple[float, int]] = []

    def carry(events: list[SessionEvent], now: float) -> None:
        for e in events:
            if isinstance(e, SendResponse):
                for out in layer.send_response(e.tx_id, e.response, now):
                    if isinstance(out, SendMessage) and isinstance(out.message, SipResponse):
                        wire.append((now, out.message.status))

    carry(session.respond(make_response(invite, 200), 0.0), 0.0)
    now = 0.0
    while True:
        due = [t for t in (layer.next_timer(), session.next_timer()) if t is not None]
        if not due:
            break
        now = min(due)
        layer.handle_timer(now)
        carry(session.handle_timer(now), now)
    assert [t for t, _ in wire] == [0.0, *RETRANSMITS]
    assert {status for _, status in wire} == {200}
    assert layer.get(received.tx_id) is None  # Timer L ended the transaction at 32 s


# -- BYE rules (§15) ----------------------------------------------------------------------
def test_our_bye_waits_for_the_ack() -> None:
    session, _, _ = answered()
    run_until(session, 1.0)
    assert session.hangup(1.0) == []
    assert session.state is SessionState.BYE_AFTER_ACK
    assert session.hangup(1.2) == []  # asking twice changes nothing
    assert [round(t, 6) for t, _ in run_until(session, 2.0)] == [1.5]  # still retransmitting
    events = session.receive_ack(from_caller("ACK", 1), 2.0)
    assert [type(e) for e in events] == [InviteAcknowledged, SendRequest, DialogTerminated]
    bye = of_type(events, SendRequest)[0].request
    assert bye.method == "BYE" and bye.to.tag == "alicetag" and bye.from_.tag == "tsunagu1"
    assert session.next_timer() is None


def test_our_bye_goes_at_the_ack_timeout_if_no_ack_comes() -> None:
    session, _, _ = answered()
    session.hangup(1.0, extra=[("Reason", 'Q.850;cause=16;text="Normal call clearing"')])
    fired = run_until(session, 100.0)
    kinds = [(round(t, 6), type(e)) for t, e in fired if not isinstance(e, SendResponse)]
    assert kinds == [(32.0, AckTimeout), (32.0, SendRequest), (32.0, DialogTerminated)]
    bye = next(e.request for _, e in fired if isinstance(e, SendRequest))
    assert bye.headers.get("Reason") == 'Q.850;cause=16;text="Normal call clearing"'


def test_callee_never_byes_an_early_dialog_but_rejects_the_invite() -> None:
    session, invite = new_session()
    session.respond(make_response(invite, 180), 0.0)
    events = session.hangup(3.0, reject_status=486)
    assert of_type(events, SendRequest) == []
    (rejected,) = of_type(events, SendResponse)
    assert (rejected.tx_id, rejected.response.status) == ("s1", 486)
    assert rejected.response.to.tag == "tsunagu1"
    assert of_type(events, DialogTerminated)[0].reason is TerminationReason.LOCAL_HANGUP
    # The call layer answering afterwards (a race) is a no-op, not a crash.
    assert session.respond(make_response(invite, 200), 3.1) == []
    with pytest.raises(SipLocalError):
        session.hangup(3.2, reject_status=200)


def test_incoming_bye_is_answered_200_and_ends_the_dialog() -> None:
    session, _ = established()
    bye = from_caller("BYE", 2)
    events = session.receive_request("s9", bye, 50.0)
    assert statuses(events) == [200]
    assert of_type(events, SendResponse)[0].tx_id == "s9"
    assert of_type(events, DialogTerminated) == [
        DialogTerminated(session.id, TerminationReason.REMOTE_BYE)
    ]
    assert session.dialog.is_terminated and session.state is SessionState.TERMINATED


@pytest.mark.parametrize("method", ["BYE", "INVITE", "INFO", "OPTIONS"])
def test_request_after_bye_gets_481(method: str) -> None:
    session, _ = established()
    session.receive_request("s9", from_caller("BYE", 2), 50.0)
    events = session.receive_request("s10", from_caller(method, 3), 51.0)
    assert statuses(events) == [481]
    assert of_type(events, DialogTerminated) == []
    assert session.hangup(52.0) == []  # already over


def test_request_after_our_bye_gets_481() -> None:
    session, _ = established()
    session.hangup(10.0)
    assert statuses(session.receive_request("s9", from_caller("BYE", 2), 10.1)) == [481]


def test_bye_before_the_ack_stops_the_retransmissions() -> None:
    session, _, _ = answered()
    run_until(session, 2.0)
    events = session.receive_request("s9", from_caller("BYE", 2), 2.0)
    assert statuses(events) == [200]
    assert session.next_timer() is None and run_until(session, 100.0) == []


def test_early_bye_from_the_caller_gets_200_and_the_invite_487() -> None:
    session, invite = new_session()
    session.respond(make_response(invite, 180), 0.0)
    events = session.receive_request("s2", from_caller("BYE", 2), 1.0)
    assert [(e.tx_id, e.response.status) for e in of_type(events, SendResponse)] == [
        ("s2", 200),
        ("s1", 487),
    ]
    assert session.dialog.is_terminated


def test_cancel_of_the_unanswered_invite() -> None:
    session, invite = new_session()
    session.respond(make_response(invite, 180), 0.0)
    raw = bytes(invite).replace(b"INVITE sip", b"CANCEL sip", 1).replace(b"1 INVITE", b"1 CANCEL")
    cancel = parse_message(raw)
    assert isinstance(cancel, SipRequest) and cancel.method == "CANCEL"
    events = session.receive_cancel("s5", cancel, 1.0, invite_tx_id="s1")
    assert [(e.tx_id, e.response.status) for e in of_type(events, SendResponse)] == [
        ("s5", 200),
        ("s1", 487),
    ]
    assert all(e.response.to.tag == "tsunagu1" for e in of_type(events, SendResponse))
    assert of_type(events, DialogTerminated)[0].reason is TerminationReason.CANCELLED
    # A CANCEL after the 2xx has no effect but its own 200 (§9.2).
    answered_session, _, _ = answered()
    late = answered_session.receive_cancel("s6", cancel, 1.0, invite_tx_id="s1")
    assert statuses(late) == [200] and answered_session.state is SessionState.ACK_WAIT


# -- re-INVITE from the peer (§14.2) ------------------------------------------------------
def test_reinvite_refreshes_the_target_and_its_2xx_waits_for_an_ack() -> None:
    session, _ = established()
    reinvite = from_caller("INVITE", 2, contact="<sip:alice@203.0.113.66:5090>")
    events = session.receive_request("s2", reinvite, 10.0)
    assert events == [ReinviteReceived(session.id, "s2", reinvite)]
    assert str(session.dialog.remote_target) == "sip:alice@203.0.113.66:5090"
    assert session.invite_in_progress
    (ok,) = of_type(session.respond(make_response(reinvite, 200), 10.5), SendResponse)
    assert ok.response.headers.get("Contact") == OUR_CONTACT
    assert "Record-Route" not in ok.response.headers
    assert [round(t, 6) for t, _ in run_until(session, 11.0)] == [11.0]
    assert of_type(session.receive_ack(from_caller("ACK", 2), 11.2), InviteAcknowledged)
    assert session.state is SessionState.IDLE


def test_failed_reinvite_answer_keeps_the_session() -> None:
    session, _ = established()
    reinvite = from_caller("INVITE", 2)
    session.receive_request("s2", reinvite, 10.0)
    assert statuses(session.respond(make_response(reinvite, 488), 10.1)) == [488]
    assert session.state is SessionState.IDLE and session.dialog.is_confirmed


def test_second_invite_while_the_first_is_unanswered_gets_500_with_retry_after() -> None:
    session, _ = established()
    session.receive_request("s2", from_caller("INVITE", 2), 10.0)
    events = session.receive_request("s3", from_caller("INVITE", 3), 10.1)
    (refusal,) = of_type(events, SendResponse)
    assert refusal.response.status == 500
    retry = refusal.response.headers.get("Retry-After")
    assert retry is not None and 0 <= int(retry) <= 10
    assert session.state is SessionState.REINVITE_RECEIVED


def test_reinvite_with_lower_cseq_gets_500_out_of_order() -> None:
    session, _ = established()
    session.receive_request("s2", from_caller("INFO", 5), 10.0)
    events = session.receive_request("s3", from_caller("INVITE", 4), 10.1)
    assert statuses(events) == [500]
    assert session.state is SessionState.IDLE


def test_other_in_dialog_requests_go_to_the_call_layer() -> None:
    session, _ = established()
    info = from_caller("INFO", 2)
    assert session.receive_request("s2", info, 5.0) == [InDialogRequest(session.id, "s2", info)]
    with pytest.raises(SipLocalError):
        session.receive_request("s3", from_caller("ACK", 1), 5.0)


def test_cancel_of_a_reinvite_leaves_the_session_up() -> None:
    session, _ = established()
    reinvite = from_caller("INVITE", 2)
    session.receive_request("s2", reinvite, 10.0)
    cancel = from_caller("CANCEL", 2, branch="z9hG4bKINVITE2")
    events = session.receive_cancel("s3", cancel, 10.2, invite_tx_id="s2")
    assert [(e.tx_id, e.response.status) for e in of_type(events, SendResponse)] == [
        ("s3", 200),
        ("s2", 487),
    ]
    assert session.state is SessionState.IDLE and session.dialog.is_confirmed


# -- glare (§14.1, §14.2) -----------------------------------------------------------------
def test_reinvite_crossing_ours_gets_491() -> None:
    session, _ = established()
    (ours,) = of_type(session.reinvite(20.0, body=SDP, content_type="application/sdp"), SendRequest)
    assert ours.request.method == "INVITE" and ours.request.body == SDP
    events = session.receive_request("s2", from_caller("INVITE", 2), 20.1)
    assert statuses(events) == [491]
    assert session.state is SessionState.REINVITE_SENT
    with pytest.raises(SipLocalError):
        session.reinvite(20.2)  # §14.1: one INVITE at a time


@pytest.mark.parametrize("seed", range(30))
def test_491_back_off_of_the_non_owner_of_the_call_id_is_0_to_2_s(seed: int) -> None:
    session, _ = established(seed)  # we answered: the caller generated the Call-ID
    (ours,) = of_type(session.reinvite(20.0), SendRequest)
    (glare,) = of_type(session.receive_response(reply(ours.request, 491), 20.3), ReinviteGlare)
    delay = glare.retry_at - 20.3
    assert 0.0 <= delay <= 2.0 + 1e-9
    assert abs(delay * 100 - round(delay * 100)) < 1e-6  # units of 10 ms
    with pytest.raises(SipLocalError):
        session.reinvite(glare.retry_at - 0.005)
    fired = run_until(session, 30.0)
    assert fired == [(glare.retry_at, ReinviteRetryDue(session.id))]
    assert of_type(session.reinvite(glare.retry_at), SendRequest)


def test_retry_waits_for_a_peer_reinvite_in_progress() -> None:
    session, _ = established(3)
    (ours,) = of_type(session.reinvite(20.0), SendRequest)
    (glare,) = of_type(session.receive_response(reply(ours.request, 491), 20.0), ReinviteGlare)
    theirs = from_caller("INVITE", 2)
    assert of_type(session.receive_request("s2", theirs, 20.0), ReinviteReceived)  # not 491
    assert session.next_timer() is None  # no retry while their INVITE is in progress
    session.respond(make_response(theirs, 200), glare.retry_at + 1)
    run_until(session, glare.retry_at + 1.2)
    events = session.receive_ack(from_caller("ACK", 2), glare.retry_at + 1.2)
    assert [type(e) for e in events] == [InviteAcknowledged, ReinviteRetryDue]


def test_our_reinvite_2xx_is_acked_and_reported() -> None:
    session, _ = established()
    (ours,) = of_type(session.reinvite(20.0), SendRequest)  # offerless: the 2xx offers
    session.receive_response(reply(ours.request, 100), 20.1)
    ok = parse_message(
        bytes(
            make_response(
                ours.request,
                200,
                extra=[("Contact", "<sip:alice@203.0.113.8>"), ("Content-Type", "application/sdp")],
                body=SDP,
            )
        )
    )
    assert isinstance(ok, SipResponse)
    events = session.receive_response(ok, 20.2)
    assert [type(e) for e in events] == [SendAck, ReinviteAccepted]
    ack = of_type(events, SendAck)[0].request
    assert ack.cseq.number == ours.request.cseq.number and ack.cseq.method == "ACK"
    assert str(ack.uri) == "sip:alice@203.0.113.8"  # the 2xx refreshed the target first
    assert session.receive_response(ok, 20.7) == [SendAck(ack, session.id)]  # same ACK again


def test_our_reinvite_rejected_or_timed_out() -> None:
    session, _ = established()
    (ours,) = of_type(session.reinvite(20.0), SendRequest)
    events = session.receive_response(reply(ours.request, 488), 20.1)
    assert [(type(e), getattr(e, "status", None)) for e in events] == [(ReinviteRejected, 488)]
    assert session.state is SessionState.IDLE and session.dialog.is_confirmed
    of_type(session.reinvite(21.0), SendRequest)
    events = session.transaction_failed("INVITE", 53.0)
    assert [type(e) for e in events] == [ReinviteRejected, DialogTerminated]
    assert of_type(events, DialogTerminated)[0].reason is TerminationReason.GONE


def test_481_to_our_reinvite_ends_the_dialog() -> None:
    session, _ = established()
    (ours,) = of_type(session.reinvite(20.0), SendRequest)
    events = session.receive_response(reply(ours.request, 481), 20.1)
    assert [type(e) for e in events] == [ReinviteRejected, DialogTerminated]


# -- property: the 2xx retransmitter under any interleaving -------------------------------
_STEP = st.one_of(
    st.tuples(st.just("tick"), st.just(0)),
    st.tuples(st.just("jump"), st.integers(min_value=0, max_value=40_000)),  # milliseconds
    st.tuples(st.just("ack"), st.just(0)),
    st.tuples(st.just("stale-ack"), st.just(0)),
    st.tuples(st.just("invite-retransmit"), st.just(0)),
    st.tuples(st.just("hangup"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(_STEP, max_size=40),
    t1=st.sampled_from([0.05, 0.5, 1.0]),
    t2=st.sampled_from([1.0, 4.0]),
)
def test_uas_2xx_retransmission_invariants(
    steps: list[tuple[str, int]], t1: float, t2: float
) -> None:
    """Random interleavings of timer ticks, late timer calls, ACKs (current and stale),
    INVITE retransmissions and our hang-up, through the real transaction layer."""
    config = TimerConfig(t1=t1, t2=max(t1, t2))
    deadline = 64 * t1
    layer = TransactionLayer(config)
    invite = invite_from_caller(cseq=7)
    (received,) = [
        e for e in layer.receive_request(invite, CALLER, 0.0) if isinstance(e, RequestReceived)
    ]
    session = InviteSession.uas(
        invite, received.tx_id, local_contact=OUR_CONTACT, local_tag="tsunagu1", config=config
    )
    now = 0.0
    sends: list[float] = []
    acked_at: float | None = None
    timeouts: list[float] = []
    byes: list[float] = []
    hangup_at: float | None = None

    def observe(events: list[SessionEvent], at: float) -> None:
        for e in events:
            if isinstance(e, SendResponse):
                assert e.retransmission and e.response.status == 200
                assert acked_at is None, "retransmitted after the ACK"
                assert at < deadline - 1e-9, "retransmitted at or after 64*T1"
                out = layer.send_response(e.tx_id, e.response, at)  # Accepted: must work
                assert [type(o) for o in out] == [SendMessage]
                sends.append(at)
            elif isinstance(e, AckTimeout):
                timeouts.append(at)
            elif isinstance(e, SendRequest):
                assert e.request.method == "BYE"
                byes.append(at)

    def fire(at: float) -> None:
        layer.handle_timer(at)
        observe(session.handle_timer(at), at)

    (first,) = session.respond(make_response(invite, 200), now)
    assert isinstance(first, SendResponse)
    layer.send_response(first.tx_id, first.response, now)
    for action, arg in steps:
        if action == "tick":
            due = session.next_timer()
            if due is not None:
                now = max(now, due)
                fire(now)
        elif action == "jump":
            now += arg / 1000
            fire(now)
        elif action in ("ack", "stale-ack"):
            ack = from_caller("ACK", 7 if action == "ack" else 6)
            (delivered,) = layer.receive_request(ack, CALLER, now)
            assert isinstance(delivered, AckReceivedEvent)
            events = session.receive_ack(delivered.request, now)
            observe(events, now)
            if of_type(events, InviteAcknowledged):
                assert action == "ack" and acked_at is None and not timeouts
                acked_at = now
        elif action == "invite-retransmit":
            # RFC 6026 Accepted: absorbed below us, nothing re-sent, nothing for the TU.
            # (A UAC stops retransmitting by its own Timer B, as Timer L ends ours.)
            if layer.get(received.tx_id) is not None:
                assert layer.receive_request(invite_from_caller(cseq=7), CALLER, now) == []
        else:
            observe(session.hangup(now), now)
            hangup_at = now if hangup_at is None else hangup_at
    while (due := session.next_timer()) is not None:  # let every remaining timer run out
        now = max(now, due)
        fire(now)
    # Exactly one ending: the ACK, or one AckTimeout no earlier than 64*T1.
    assert (acked_at is not None) + len(timeouts) == 1
    assert all(at >= deadline - 1e-9 for at in timeouts)
    # Gaps between sends never shorter than the schedule (T1, 2*T1 … capped at T2).
    previous, interval = 0.0, t1
    for at in sends:
        assert at - previous >= interval - 1e-9
        previous, interval = at, min(2 * interval, config.t2)
    # §15: our BYE only after the ACK or the ACK timeout, and only once.
    assert len(byes) == (1 if hangup_at is not None else 0)
    ended = acked_at if acked_at is not None else timeouts[0]
    assert all(at >= ended for at in byes)
    assert session.next_timer() is None


def test_2xx_schedule_is_exact_when_timers_fire_on_time() -> None:
    session, _, _ = answered()
    fired = run_until(session, 31.9)
    gaps = [
        b - a for a, b in zip([0.0, *[t for t, _ in fired]], [t for t, _ in fired], strict=False)
    ]
    assert [round(g, 6) for g in gaps] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]


def test_ack_wait_alone_follows_its_table() -> None:
    invite = invite_from_caller()
    ok = make_response(invite, 200, to_tag="t")
    wait = AckWait(("c", "t", "r"), "s1", ok, 0.0, TimerConfig())  # type: ignore[arg-type]
    assert wait.next_timer() == 0.5
    assert wait.handle_timer(0.4) == []  # early call: nothing due
    assert len(wait.handle_timer(0.5)) == 1 and wait.retransmissions == 1
    assert wait.ack_received(from_caller("ACK", 1), 0.6)
    assert wait.state is AckWaitState.ACKED and wait.next_timer() is None
    assert not wait.ack_received(from_caller("ACK", 1), 0.7)
    wait.stop()
    assert wait.state is AckWaitState.ACKED
    with pytest.raises(SipLocalError):
        AckWait(("c", "t", "r"), "s1", make_response(invite, 486), 0.0, TimerConfig())  # type: ignore[arg-type]
