"""Our initial INVITE (RFC 3261 §13.2, §9.1): early dialogs, ACK for every 2xx, forks,
CANCEL and its races — on a simulated clock, with the real transaction layer where the
path through it matters (2xx retransmissions as ``ResponseReceived`` and later as
``StrayResponse``)."""

from __future__ import annotations

import random
from typing import TypeVar

import pytest

from tsunagu.sip.dialog import DialogState, TerminationReason, build_invite
from tsunagu.sip.dialog_table import DialogTable
from tsunagu.sip.errors import SipLocalError
from tsunagu.sip.headers import NameAddress
from tsunagu.sip.invite_client import UacInvite, UacState
from tsunagu.sip.invite_events import (
    Answered,
    AnsweredAfterCancel,
    DialogTerminated,
    EarlyDialog,
    ForkAnswered,
    InviteCompleted,
    InviteFailed,
    InviteFailure,
    Provisional,
    SendAck,
    SendCancel,
    SendRequest,
    SessionEvent,
)
from tsunagu.sip.invite_session import InviteSession, SessionState
from tsunagu.sip.message import SipRequest, SipResponse, make_response, parse_message
from tsunagu.sip.peer import Peer
from tsunagu.sip.transaction import (
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TimerConfig,
    TransactionLayer,
)
from tsunagu.sip.uri import parse_uri

T = TypeVar("T")
SDP = b"v=0\r\no=- 7 7 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
AGENT = Peer("UDP", "203.0.113.40", 5062)


def our_invite(*, body: bytes = SDP) -> SipRequest:
    invite = build_invite(
        parse_uri("sip:agent7@203.0.113.40:5062"),
        from_=NameAddress.parse('"Queue" <sip:queue@tsunagu.example>'),
        to=NameAddress.parse("<sip:agent7@tsunagu.example>"),
        local_contact=NameAddress.parse("<sip:tsunagu@192.0.2.10:5060>"),
        sent_by=("192.0.2.10", 5060),
        call_id="leg-b@192.0.2.10",
        from_tag="ourtag",
        cseq=1,
        routes=[NameAddress.parse("<sip:198.51.100.50;lr>")],
        body=body,
        content_type="application/sdp" if body else None,
    )
    msg = parse_message(bytes(invite))
    assert isinstance(msg, SipRequest)
    return msg


def answer(
    invite: SipRequest,
    status: int,
    *,
    tag: str | None = "phoneA",
    record_route: tuple[str, ...] = ("<sip:198.51.100.50;lr>",),
    body: bytes = b"",
) -> SipResponse:
    extra = [("Record-Route", rr) for rr in record_route]
    if tag is not None and 100 < status < 300:
        extra.append(("Contact", f"<sip:agent7@203.0.113.40:5062;{tag}>"))
    if body:
        extra.append(("Content-Type", "application/sdp"))
    msg = parse_message(bytes(make_response(invite, status, to_tag=tag, extra=extra, body=body)))
    assert isinstance(msg, SipResponse)
    return msg


def new_uac(invite: SipRequest | None = None, **kwargs: object) -> UacInvite:
    return UacInvite(invite or our_invite(), rng=random.Random(5), **kwargs)  # type: ignore[arg-type]


def of_type(events: list[SessionEvent], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def session_state(session: InviteSession) -> SessionState:
    return session.state  # read through a call: mypy would keep an earlier narrowing


def uac_state(uac: UacInvite) -> UacState:
    return uac.state


def kinds(events: list[SessionEvent]) -> list[type]:
    return [type(e) for e in events]


# -- early dialogs and the answer ---------------------------------------------------------
def test_tagged_180_creates_an_early_dialog_and_the_200_confirms_it() -> None:
    uac = new_uac()
    assert kinds(uac.receive_response(answer(uac.invite, 100, tag=None), 0.1)) == [Provisional]
    events = uac.receive_response(answer(uac.invite, 180), 0.3)
    (early,) = of_type(events, EarlyDialog)
    session = early.session
    assert session.dialog.state is DialogState.EARLY and session.state is SessionState.UAC_EARLY
    assert kinds(uac.receive_response(answer(uac.invite, 183), 0.4)) == [Provisional]
    events = uac.receive_response(answer(uac.invite, 200, body=SDP), 2.0)
    assert kinds(events) == [SendAck, Answered]
    assert of_type(events, Answered)[0].session is session and uac.winner is session
    assert session.dialog.is_confirmed and session_state(session) is SessionState.IDLE
    ack = of_type(events, SendAck)[0].request
    assert ack.method == "ACK" and ack.cseq.number == 1 and ack.cseq.method == "ACK"
    assert ack.top_via.branch != uac.invite.top_via.branch
    assert ack.headers.values("Route") == ["<sip:198.51.100.50;lr>"]
    assert str(ack.uri) == "sip:agent7@203.0.113.40:5062;phonea"
    assert uac.state is UacState.ANSWERED


def test_each_2xx_retransmission_gets_the_very_same_ack() -> None:
    uac = new_uac()
    ok = answer(uac.invite, 200)
    (first,) = of_type(uac.receive_response(ok, 1.0), SendAck)
    for t in (1.5, 2.5, 4.5):
        assert uac.receive_response(answer(uac.invite, 200), t) == [first]
    assert uac.winner is not None and uac.winner.acked_cseq == 1


def test_2xx_retransmission_through_the_transaction_layer_before_and_after_timer_m() -> None:
    layer = TransactionLayer()
    invite = our_invite()
    tx_id, _ = layer.send_request(invite, AGENT, 0.0)
    uac = new_uac(invite)
    table: DialogTable[InviteSession, UacInvite] = DialogTable()
    table.add_pending(uac.key, uac)

    def deliver(response: SipResponse, now: float) -> list[SessionEvent]:
        out: list[SessionEvent] = []
        for event in layer.receive_response(response, AGENT, now):
            if isinstance(event, ResponseReceived):
                assert event.tx_id == tx_id
                out += uac.receive_response(event.response, now)
            elif isinstance(event, StrayResponse):
                pending = table.match_pending(event.response)
                if pending is not None:
                    out += pending.receive_response(event.response, now)
                elif (session := table.match_response(event.response)) is not None:
                    out += session.receive_response(event.response, now)
        return out

    events = deliver(answer(invite, 200), 0.2)
    (answered,) = of_type(events, Answered)
    table.add(answered.session.dialog, answered.session)
    (ack,) = of_type(events, SendAck)
    assert deliver(answer(invite, 200), 0.7) == [ack]  # ResponseReceived (Accepted)
    while (t := layer.next_timer()) is not None:
        layer.handle_timer(t)  # Timer M ends the transaction at 32.2
    assert layer.get(tx_id) is None
    assert deliver(answer(invite, 200), 33.0) == [ack]  # StrayResponse → pending UacInvite
    events = []
    while (t := uac.next_timer()) is not None:
        events += uac.handle_timer(t)
    assert of_type(events, InviteCompleted) == [InviteCompleted("leg-b@192.0.2.10", "ourtag")]
    table.remove_pending(uac.key)
    assert deliver(answer(invite, 200), 40.0) == [ack]  # StrayResponse → the dialog


def test_offer_in_the_2xx_is_answered_in_the_ack_through_the_hook() -> None:
    seen: list[SipResponse] = []

    def answer_offer(response: SipResponse) -> tuple[bytes, str]:
        seen.append(response)
        return b"v=0\r\nanswer\r\n", "application/sdp"

    uac = new_uac(our_invite(body=b""), ack_answer=answer_offer)
    (ack,) = of_type(uac.receive_response(answer(uac.invite, 200, body=SDP), 1.0), SendAck)
    assert ack.request.body == b"v=0\r\nanswer\r\n"
    assert ack.request.headers.get("Content-Type") == "application/sdp"
    assert len(seen) == 1 and seen[0].body == SDP
    # Without the hook the ACK still goes (empty), so the UAS stops retransmitting.
    plain = new_uac(our_invite(body=b""))
    (bare,) = of_type(plain.receive_response(answer(plain.invite, 200, body=SDP), 1.0), SendAck)
    assert bare.request.body == b""


# -- forking (§13.2.2.4) ------------------------------------------------------------------
def test_forked_2xx_is_acked_then_byed_and_its_retransmissions_re_acked() -> None:
    uac = new_uac()
    uac.receive_response(answer(uac.invite, 180, tag="phoneA"), 0.1)
    uac.receive_response(answer(uac.invite, 180, tag="phoneB"), 0.2)
    assert set(uac.sessions) == {"phoneA", "phoneB"}
    winner_events = uac.receive_response(answer(uac.invite, 200, tag="phoneA"), 3.0)
    assert kinds(winner_events) == [SendAck, Answered]
    fork_ok = answer(uac.invite, 200, tag="phoneB", record_route=("<sip:198.51.100.77;lr>",))
    events = uac.receive_response(fork_ok, 3.1)
    assert kinds(events) == [SendAck, SendRequest, DialogTerminated, ForkAnswered]
    ack = of_type(events, SendAck)[0].request
    bye = of_type(events, SendRequest)[0].request
    assert ack.to.tag == "phoneB" and bye.to.tag == "phoneB" and bye.method == "BYE"
    # The fork's own dialog: its 2xx recomputed the route set (§13.2.2.4).
    assert bye.headers.values("Route") == ["<sip:198.51.100.77;lr>"]
    assert bye.cseq.number == 2
    assert of_type(events, DialogTerminated)[0].reason is TerminationReason.FORK
    # A retransmission of the forked 2xx: the same ACK, no second BYE.
    assert uac.receive_response(answer(uac.invite, 200, tag="phoneB"), 3.6) == [
        of_type(events, SendAck)[0]
    ]
    assert uac.winner is not None and uac.winner.dialog.remote_tag == "phoneA"
    assert uac.winner.state is SessionState.IDLE


def test_fork_without_an_early_dialog_is_also_acked_and_byed() -> None:
    uac = new_uac()
    uac.receive_response(answer(uac.invite, 200, tag="phoneA"), 1.0)
    events = uac.receive_response(answer(uac.invite, 200, tag="phoneC"), 1.2)
    assert kinds(events) == [SendAck, SendRequest, DialogTerminated, ForkAnswered]


def test_unconfirmed_early_dialogs_end_64_t1_after_the_first_2xx() -> None:
    uac = new_uac()
    events = uac.receive_response(answer(uac.invite, 180, tag="phoneB"), 0.5)
    loser = of_type(events, EarlyDialog)[0].session
    uac.receive_response(answer(uac.invite, 200, tag="phoneA"), 2.0)
    assert uac.next_timer() == 34.0
    assert uac.handle_timer(33.9) == []
    events = uac.handle_timer(34.0)
    assert kinds(events) == [DialogTerminated, InviteCompleted]
    assert of_type(events, DialogTerminated)[0] == DialogTerminated(
        loser.id, TerminationReason.NOT_CONFIRMED
    )
    assert uac.done and uac.next_timer() is None
    assert uac.winner is not None and uac.winner.dialog.is_confirmed


def test_2xx_on_an_expired_early_dialog_is_acked_and_byed() -> None:
    uac = new_uac()
    uac.receive_response(answer(uac.invite, 180, tag="phoneB"), 0.5)
    uac.receive_response(answer(uac.invite, 200, tag="phoneA"), 2.0)
    uac.handle_timer(34.0)  # phoneB's early dialog ended on our side only
    events = uac.receive_response(answer(uac.invite, 200, tag="phoneB"), 35.0)
    assert kinds(events) == [SendAck, SendRequest, DialogTerminated, ForkAnswered]
    assert uac.sessions["phoneB"].bye_sent


# -- failures ------------------------------------------------------------------------------
def test_final_error_ends_every_early_dialog() -> None:
    uac = new_uac()
    uac.receive_response(answer(uac.invite, 180, tag="phoneA"), 0.1)
    uac.receive_response(answer(uac.invite, 180, tag="phoneB"), 0.2)
    busy = answer(uac.invite, 486, tag="phoneB")
    events = uac.receive_response(busy, 5.0)
    assert kinds(events) == [DialogTerminated, DialogTerminated, InviteFailed]
    assert {e.reason for e in of_type(events, DialogTerminated)} == {TerminationReason.REJECTED}
    assert of_type(events, InviteFailed) == [InviteFailed(InviteFailure.REJECTED, busy)]
    assert of_type(events, InviteFailed)[0].status == 486
    assert all(s.dialog.is_terminated for s in uac.sessions.values())


def test_timer_b_fails_the_invite() -> None:
    uac = new_uac()
    events = uac.failed(32.0)
    assert events == [InviteFailed(InviteFailure.TIMED_OUT, None)]
    assert uac.state is UacState.FAILED
    assert uac.cancel(33.0) == []  # nothing left to cancel


# -- CANCEL (§9.1) -------------------------------------------------------------------------
def test_cancel_before_any_provisional_waits_for_one() -> None:
    uac = new_uac()
    assert uac.cancel(0.1) == []
    assert uac.state is UacState.CANCEL_PENDING and uac.cancel_request is None
    assert uac.cancel(0.2) == []  # asked twice
    events = uac.receive_response(answer(uac.invite, 100, tag=None), 0.3)
    assert kinds(events) == [Provisional, SendCancel]
    cancel = of_type(events, SendCancel)[0].request
    # §9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via branch.
    assert cancel.method == "CANCEL" and str(cancel.uri) == str(uac.invite.uri)
    assert (cancel.cseq.number, cancel.cseq.method) == (1, "CANCEL")
    assert cancel.top_via.branch == uac.invite.top_via.branch and len(cancel.vias) == 1
    assert cancel.headers.get("To") == uac.invite.headers.get("To")
    assert cancel.headers.values("Route") == uac.invite.headers.values("Route")
    assert uac_state(uac) is UacState.CANCELLING


def test_cancel_after_a_provisional_goes_at_once() -> None:
    uac = new_uac()
    uac.receive_response(answer(uac.invite, 180), 0.5)
    assert kinds(uac.cancel(4.0)) == [SendCancel]


def test_cancel_then_200_to_cancel_then_487() -> None:
    uac = new_uac()
    early = of_type(uac.receive_response(answer(uac.invite, 180), 0.5), EarlyDialog)[0].session
    cancel = of_type(uac.cancel(4.0), SendCancel)[0].request
    ok_cancel = parse_message(bytes(make_response(cancel, 200, to_tag="phoneA")))
    assert isinstance(ok_cancel, SipResponse)
    assert uac.receive_response(ok_cancel, 4.1) == []  # the INVITE's final decides
    events = uac.receive_response(answer(uac.invite, 487), 4.2)
    assert kinds(events) == [DialogTerminated, InviteFailed]
    assert of_type(events, DialogTerminated)[0] == DialogTerminated(
        early.id, TerminationReason.CANCELLED
    )
    assert of_type(events, InviteFailed)[0].reason is InviteFailure.CANCELLED


def test_2xx_after_cancel_is_acked_and_byed() -> None:
    uac = new_uac()
    uac.receive_response(answer(uac.invite, 180), 0.5)
    uac.cancel(4.0)
    events = uac.receive_response(answer(uac.invite, 200), 4.05)  # the race lost
    assert kinds(events) == [SendAck, SendRequest, DialogTerminated, AnsweredAfterCancel]
    assert of_type(events, SendRequest)[0].request.method == "BYE"
    assert of_type(events, DialogTerminated)[0].reason is TerminationReason.CANCELLED
    assert uac.winner is None
    # The 487 never comes now; a retransmitted 2xx gets the ACK again, nothing else.
    again = uac.receive_response(answer(uac.invite, 200), 4.5)
    assert again == [of_type(events, SendAck)[0]]


def test_2xx_after_a_cancel_asked_before_any_provisional() -> None:
    uac = new_uac()
    uac.cancel(0.1)
    events = uac.receive_response(answer(uac.invite, 200), 0.4)
    assert kinds(events) == [SendAck, SendRequest, DialogTerminated, AnsweredAfterCancel]
    assert uac.cancel_request is None  # §9.1: no CANCEL without a provisional


def test_no_final_response_64_t1_after_cancel_gives_up_and_a_late_2xx_is_byed() -> None:
    uac = new_uac()
    uac.receive_response(answer(uac.invite, 180), 0.5)
    uac.cancel(4.0)
    assert uac.next_timer() == 36.0
    events = uac.handle_timer(36.0)
    assert events[-1] == InviteFailed(InviteFailure.CANCEL_UNANSWERED, None)
    assert of_type(events, DialogTerminated)[0].reason is TerminationReason.CANCELLED
    late = uac.receive_response(answer(uac.invite, 200), 40.0)
    assert kinds(late) == [SendAck, SendRequest, DialogTerminated, AnsweredAfterCancel]
    assert uac.next_timer() == 68.0
    assert kinds(uac.handle_timer(68.0)) == [InviteCompleted]


def test_cancel_after_answer_hangs_up_the_answered_branch() -> None:
    uac = new_uac()
    uac.receive_response(answer(uac.invite, 200), 1.0)
    events = uac.cancel(1.1)
    assert kinds(events) == [SendRequest, DialogTerminated]
    assert of_type(events, SendRequest)[0].request.method == "BYE"


def test_uac_early_dialog_can_be_byed_by_the_caller() -> None:
    uac = new_uac()
    early = of_type(uac.receive_response(answer(uac.invite, 180), 0.5), EarlyDialog)[0].session
    events = early.hangup(1.0)  # §15: the caller MAY BYE an early dialog
    assert kinds(events) == [SendRequest, DialogTerminated]
    # If its 2xx still comes, it is ACKed (no second BYE) — the INVITE was pending.
    late = uac.receive_response(answer(uac.invite, 200), 1.2)
    assert kinds(late) == [SendAck, Answered]
    assert early.state is SessionState.TERMINATED


def test_responses_for_other_requests_are_refused_or_handed_to_their_session() -> None:
    uac = new_uac()
    other_call = answer(our_invite(), 200)
    other_call.headers.set("Call-ID", "someone-else")
    with pytest.raises(SipLocalError):
        uac.receive_response(other_call, 1.0)
    # A re-INVITE's 2xx arriving as a stray while the UacInvite lingers: its session ACKs.
    (answered,) = of_type(uac.receive_response(answer(uac.invite, 200), 1.0), Answered)
    (reinvite,) = of_type(answered.session.reinvite(2.0), SendRequest)
    reinvite_ok = answer(reinvite.request, 200)
    (ack,) = of_type(uac.receive_response(reinvite_ok, 2.1), SendAck)
    assert ack.request.cseq.number == reinvite.request.cseq.number == 2
    unknown = answer(reinvite.request, 200)
    unknown.headers.set("To", "<sip:agent7@tsunagu.example>;tag=nobody")
    assert uac.receive_response(unknown, 2.2) == []
    with pytest.raises(SipLocalError):
        UacInvite(build_bye_like(uac.invite))
    untagged = answer(uac.invite, 200, tag=None)
    assert uac.receive_response(untagged, 1.0) == []


def build_bye_like(invite: SipRequest) -> SipRequest:
    raw = bytes(invite).replace(b"INVITE sip", b"BYE sip", 1).replace(b"1 INVITE", b"1 BYE")
    msg = parse_message(raw)
    assert isinstance(msg, SipRequest)
    return msg


def test_cancel_goes_through_its_own_client_transaction() -> None:
    layer = TransactionLayer(TimerConfig())
    uac = new_uac()
    invite_tx, _ = layer.send_request(uac.invite, AGENT, 0.0)
    uac.receive_response(answer(uac.invite, 180), 0.2)
    (send,) = of_type(uac.cancel(1.0), SendCancel)
    cancel_tx, events = layer.send_request(send.request, AGENT, 1.0)
    assert cancel_tx != invite_tx
    assert [e.message for e in events if isinstance(e, SendMessage)] == [send.request]
