"""SIP transaction state machines and timers (RFC 3261 §17, RFC 6026) on a simulated clock.

Nothing here sleeps: ``now`` is a number the test advances, and ``run_until`` fires every
timer the layer asks for, the way the asyncio adapter does on a real loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsunagu.sip.errors import SipLocalError
from tsunagu.sip.message import SipRequest, SipResponse, make_response, parse_message
from tsunagu.sip.peer import Peer
from tsunagu.sip.transaction import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportErrorReported,
    TxKind,
    TxState,
)

T = TypeVar("T")
UDP = Peer("UDP", "192.0.2.10", 5060)
TCP = Peer("TCP", "192.0.2.10", 5060)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKa1",
    transport: str = "UDP",
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    call_id: str = "call-1",
    routes: tuple[str, ...] = (),
) -> SipRequest:
    via_branch = f";branch={branch}" if branch is not None else ""
    lines = [
        f"{method} sip:bob@example.com SIP/2.0",
        f"Via: SIP/2.0/{transport} 192.0.2.10:5060{via_branch}",
        "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKdownstream",
        "Max-Forwards: 70",
        *(f"Route: {r}" for r in routes),
        "From: Alice <sip:alice@example.com>;tag=from1",
        "To: <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@192.0.2.10>",
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def reply(req: SipRequest, status: int, to_tag: str | None = "uas1") -> SipResponse:
    """A response as it comes back from the network (through our own serializer)."""
    msg = parse_message(bytes(make_response(req, status, to_tag=to_tag)))
    assert isinstance(msg, SipResponse)
    return msg


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Event]]:
    fired: list[tuple[float, Event]] = []
    while (t := layer.next_timer()) is not None and t <= end:
        fired += [(t, e) for e in layer.handle_timer(t)]
    return fired


def sent_at(fired: list[tuple[float, Event]]) -> list[float]:
    return [round(t, 6) for t, e in fired if isinstance(e, SendMessage)]


def sent(events: list[Event]) -> list[SipRequest | SipResponse]:
    return [e.message for e in events if isinstance(e, SendMessage)]


def statuses(events: list[Event]) -> list[int]:
    return [m.status for m in sent(events) if isinstance(m, SipResponse)]


def of_type(events: list[Event], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def geometric(first: float, cap: float | None, end: float) -> list[float]:
    """Fire times of a timer starting at ``first``, doubling, capped at ``cap``, before end."""
    times, t, interval = [], 0.0, first
    while t + interval < end:
        t += interval
        times.append(round(t, 6))
        interval = 2 * interval if cap is None else min(2 * interval, cap)
    return times


# -- client INVITE (§17.1.1) --------------------------------------------------------------
def test_invite_client_timer_a_doubles_without_cap_until_timer_b() -> None:
    layer = TransactionLayer()
    inv = request()
    tx_id, events = layer.send_request(inv, UDP, 0.0)
    assert sent(events) == [inv]
    fired = run_until(layer, 100.0)
    assert sent_at(fired) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(e.message is inv for _, e in fired if isinstance(e, SendMessage))
    timeouts = [(t, e) for t, e in fired if isinstance(e, TransactionTimeout)]
    assert timeouts == [(32.0, TransactionTimeout(tx_id, "B"))]
    assert fired[-1][1] == TransactionTerminated(tx_id, TxKind.CLIENT_INVITE)
    assert layer.get(tx_id) is None and len(layer) == 0 and layer.next_timer() is None


def test_invite_client_over_tcp_never_retransmits_but_still_times_out() -> None:
    layer = TransactionLayer()
    tx_id, _ = layer.send_request(request(transport="TCP"), TCP, 0.0)
    fired = run_until(layer, 100.0)
    assert sent_at(fired) == []
    assert [(t, e) for t, e in fired if isinstance(e, TransactionTimeout)] == [
        (32.0, TransactionTimeout(tx_id, "B"))
    ]


def test_invite_client_provisional_stops_retransmissions_and_timer_b() -> None:
    layer = TransactionLayer()
    inv = request()
    tx_id, _ = layer.send_request(inv, UDP, 0.0)
    run_until(layer, 0.6)  # one retransmission at 0.5
    ringing = reply(inv, 180)
    assert layer.receive_response(ringing, UDP, 0.7) == [ResponseReceived(tx_id, ringing)]
    tx = layer.get(tx_id)
    assert tx is not None and tx.state is TxState.PROCEEDING
    assert run_until(layer, 600.0) == []  # no A, no B: the TU decides when to CANCEL
    assert tx.state is TxState.PROCEEDING


def test_invite_client_acks_non_2xx_itself_absorbs_retransmissions_until_timer_d() -> None:
    layer = TransactionLayer()
    inv = request(routes=("<sip:proxy1.example.com;lr>", "<sip:proxy2.example.com;lr>"))
    tx_id, _ = layer.send_request(inv, UDP, 0.0)
    busy = reply(inv, 486)
    events = layer.receive_response(busy, UDP, 1.0)
    (ack_event,) = of_type(events, SendMessage)
    assert of_type(events, ResponseReceived) == [ResponseReceived(tx_id, busy)]
    ack = ack_event.message
    assert isinstance(ack, SipRequest) and ack_event.peer == UDP
    # §17.1.1.3: built from the original request, To from the response.
    assert ack.method == "ACK" and str(ack.uri) == str(inv.uri)
    assert ack.call_id == inv.call_id
    assert ack.headers.get("From") == inv.headers.get("From")
    assert ack.to.tag == "uas1" and ack.to.uri == inv.to.uri
    assert (ack.cseq.number, ack.cseq.method) == (inv.cseq.number, "ACK")
    assert [str(v) for v in ack.vias] == [str(inv.top_via)]
    assert ack.headers.values("Route") == inv.headers.values("Route")
    assert ack.max_forwards == 70 and ack.body == b""
    # Serialises and parses back: it is a real wire message.
    assert isinstance(parse_message(bytes(ack)), SipRequest)
    # A retransmitted 486 is re-ACKed with the same ACK and not passed up again.
    again = layer.receive_response(reply(inv, 486), UDP, 2.0)
    assert again == [SendMessage(ack, UDP, tx_id)]
    fired = run_until(layer, 100.0)
    assert fired == [(33.0, TransactionTerminated(tx_id, TxKind.CLIENT_INVITE))]


def test_invite_client_over_tcp_terminates_at_once_after_non_2xx() -> None:
    layer = TransactionLayer()
    inv = request(transport="TCP")
    tx_id, _ = layer.send_request(inv, TCP, 0.0)
    events = layer.receive_response(reply(inv, 404), TCP, 0.3)
    assert [type(e) for e in events] == [SendMessage, ResponseReceived, TransactionTerminated]
    assert layer.get(tx_id) is None and layer.next_timer() is None


def test_invite_client_accepted_passes_2xx_retransmissions_until_timer_m() -> None:
    """RFC 6026 §8.4: no ACK from the transaction; every 2xx reaches the TU, which ACKs."""
    layer = TransactionLayer()
    inv = request()
    tx_id, _ = layer.send_request(inv, UDP, 0.0)
    ok = reply(inv, 200)
    assert layer.receive_response(ok, UDP, 0.1) == [ResponseReceived(tx_id, ok)]
    tx = layer.get(tx_id)
    assert tx is not None and tx.state is TxState.ACCEPTED
    assert layer.receive_response(ok, UDP, 0.6) == [ResponseReceived(tx_id, ok)]
    assert layer.receive_response(reply(inv, 180), UDP, 0.7) == []  # absorbed
    assert run_until(layer, 0.1 + 32.0 - 0.001) == []  # no A retransmissions
    ((t, event),) = run_until(layer, 40.0)
    assert t == pytest.approx(32.1)
    assert event == TransactionTerminated(tx_id, TxKind.CLIENT_INVITE)
    # After Timer M a 2xx retransmission is a stray for the dialog layer to re-ACK.
    assert layer.receive_response(ok, UDP, 41.0) == [StrayResponse(ok, UDP)]


# -- client non-INVITE (§17.1.2) ----------------------------------------------------------
def test_non_invite_client_timer_e_doubles_capped_at_t2_until_timer_f() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    tx_id, _ = layer.send_request(options, UDP, 0.0)
    fired = run_until(layer, 100.0)
    assert sent_at(fired) == geometric(0.5, 4.0, 32.0)
    assert sent_at(fired)[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert [(t, e) for t, e in fired if isinstance(e, TransactionTimeout)] == [
        (32.0, TransactionTimeout(tx_id, "F"))
    ]
    assert len(layer) == 0


def test_non_invite_client_proceeding_retransmits_every_t2_and_still_times_out() -> None:
    layer = TransactionLayer()
    bye = request("BYE", to_tag="uas1")
    tx_id, _ = layer.send_request(bye, UDP, 0.0)
    run_until(layer, 0.6)  # E fired at 0.5, next at 1.5
    trying = reply(bye, 100, to_tag=None)
    assert layer.receive_response(trying, UDP, 0.7) == [ResponseReceived(tx_id, trying)]
    fired = run_until(layer, 100.0)
    # §17.1.2.2: in Proceeding, E is reset to T2 each time it fires.
    assert sent_at(fired) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert [e for _, e in fired if isinstance(e, TransactionTimeout)] == [
        TransactionTimeout(tx_id, "F")
    ]


@pytest.mark.parametrize(("peer", "wait"), [(UDP, 5.0), (TCP, 0.0)])
def test_non_invite_client_completed_absorbs_finals_until_timer_k(peer: Peer, wait: float) -> None:
    layer = TransactionLayer()
    reg = request("REGISTER", transport=peer.transport)
    tx_id, _ = layer.send_request(reg, peer, 0.0)
    ok = reply(reg, 200)
    events = layer.receive_response(ok, peer, 1.0)
    assert events[0] == ResponseReceived(tx_id, ok)
    if wait == 0:
        assert events[1:] == [TransactionTerminated(tx_id, TxKind.CLIENT_NON_INVITE)]
        return
    assert layer.receive_response(ok, peer, 2.0) == []  # a retransmission: absorbed
    assert layer.receive_response(reply(reg, 100), peer, 2.5) == []
    fired = run_until(layer, 100.0)
    assert fired == [(1.0 + wait, TransactionTerminated(tx_id, TxKind.CLIENT_NON_INVITE))]


# -- server INVITE (§17.2.1) --------------------------------------------------------------
def test_server_invite_sends_100_trying_after_200_ms_of_tu_silence() -> None:
    layer = TransactionLayer()
    inv = request()
    events = layer.receive_request(inv, UDP, 10.0)
    (received,) = of_type(events, RequestReceived)
    assert sent(events) == []
    assert layer.next_timer() == pytest.approx(10.2)
    fired = run_until(layer, 10.3)
    ((t, event),) = fired
    assert t == pytest.approx(10.2)
    assert isinstance(event, SendMessage) and event.peer == UDP
    trying = event.message
    assert isinstance(trying, SipResponse) and trying.status == 100
    assert trying.to.tag is None and trying.call_id == inv.call_id
    # A retransmitted INVITE now gets the 100 again (the last provisional).
    assert statuses(layer.receive_request(request(), UDP, 10.5)) == [100]
    assert layer.get(received.tx_id) is not None


def test_server_invite_skips_100_when_tu_answers_first() -> None:
    layer = TransactionLayer()
    inv = request()
    (received,) = of_type(layer.receive_request(inv, UDP, 0.0), RequestReceived)
    ringing = make_response(inv, 180, to_tag="t")
    assert statuses(layer.send_response(received.tx_id, ringing, 0.1)) == [180]
    assert run_until(layer, 1000.0) == []  # Proceeding has no timers left
    # Retransmitted INVITE: the most recent provisional is re-sent, nothing delivered.
    again = layer.receive_request(request(), UDP, 0.6)
    assert again == [SendMessage(ringing, UDP, received.tx_id)]


@pytest.mark.parametrize(("delay", "expect"), [(None, []), (0.0, [100])])
def test_server_invite_100_trying_is_configurable(delay: float | None, expect: list[int]) -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=delay))
    events = layer.receive_request(request(), UDP, 0.0)
    assert statuses(events) == expect
    assert statuses([e for _, e in run_until(layer, 10.0)]) == []


def test_server_invite_retransmission_before_any_response_is_absorbed() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=None))
    layer.receive_request(request(), UDP, 0.0)
    assert layer.receive_request(request(), UDP, 0.5) == []
    assert layer.stats["retransmissions_absorbed"] == 1
    assert layer.counts()["server_invite"] == 1


def _server_invite_answered(
    status: int, peer: Peer = UDP, config: TimerConfig | None = None
) -> tuple[TransactionLayer, SipRequest, str, SipResponse, list[Event]]:
    layer = TransactionLayer(config or TimerConfig(trying_delay=None))
    inv = request(transport=peer.transport)
    (received,) = of_type(layer.receive_request(inv, peer, 0.0), RequestReceived)
    final = make_response(inv, status, to_tag="uas1")
    events = layer.send_response(received.tx_id, final, 0.0)
    return layer, inv, received.tx_id, final, events


def non_2xx_ack(inv: SipRequest, to_tag: str = "uas1") -> SipRequest:
    return request("ACK", to_tag=to_tag, cseq=inv.cseq.number)


def test_server_invite_timer_g_retransmits_final_capped_at_t2_until_ack() -> None:
    layer, inv, tx_id, final, events = _server_invite_answered(486)
    assert sent(events) == [final]
    fired = run_until(layer, 12.0)
    assert sent_at(fired) == [0.5, 1.5, 3.5, 7.5, 11.5]  # 0.5, 1, 2, 4, 4 (T2 cap)
    assert all(e.message is final for _, e in fired if isinstance(e, SendMessage))
    assert layer.receive_request(non_2xx_ack(inv), UDP, 12.0) == []  # absorbed, not to TU
    tx = layer.get(tx_id)
    assert tx is not None and tx.state is TxState.CONFIRMED
    assert layer.receive_request(non_2xx_ack(inv), UDP, 13.0) == []  # ACK retransmission
    assert layer.receive_request(request(), UDP, 13.5) == []  # late INVITE copy
    fired = run_until(layer, 100.0)
    assert fired == [(17.0, TransactionTerminated(tx_id, TxKind.SERVER_INVITE))]  # I = T4


def test_server_invite_retransmitted_request_gets_the_final_again_in_completed() -> None:
    layer, _, tx_id, final, _ = _server_invite_answered(603)
    assert layer.receive_request(request(), UDP, 0.2) == [SendMessage(final, UDP, tx_id)]


def test_server_invite_timer_h_reports_missing_ack() -> None:
    layer, _, tx_id, _, _ = _server_invite_answered(500)
    fired = run_until(layer, 100.0)
    assert sent_at(fired) == geometric(0.5, 4.0, 32.0)
    assert [(t, e) for t, e in fired if not isinstance(e, SendMessage)] == [
        (32.0, TransactionTimeout(tx_id, "H")),
        (32.0, TransactionTerminated(tx_id, TxKind.SERVER_INVITE)),
    ]


def test_server_invite_over_tcp_no_g_and_zero_timer_i() -> None:
    layer, _, tx_id, _, _ = _server_invite_answered(404, TCP)
    assert layer.next_timer() == 32.0  # only H
    events = layer.receive_request(request("ACK", to_tag="uas1", transport="TCP"), TCP, 1.0)
    assert events == [TransactionTerminated(tx_id, TxKind.SERVER_INVITE)]
    assert layer.next_timer() is None and len(layer) == 0


def test_server_invite_tcp_timer_h_still_runs() -> None:
    layer, _, tx_id, _, _ = _server_invite_answered(480, TCP)
    fired = run_until(layer, 100.0)
    assert [e for _, e in fired] == [
        TransactionTimeout(tx_id, "H"),
        TransactionTerminated(tx_id, TxKind.SERVER_INVITE),
    ]


def test_server_invite_accepted_absorbs_invites_and_passes_acks_until_timer_l() -> None:
    """RFC 6026 §8.7: after a 2xx the INVITE copies are absorbed, never re-delivered."""
    layer, inv, tx_id, ok, events = _server_invite_answered(200)
    assert sent(events) == [ok]
    tx = layer.get(tx_id)
    assert tx is not None and tx.state is TxState.ACCEPTED
    assert layer.receive_request(request(), UDP, 0.5) == []
    # The TU retransmits its own 2xx (§13.3.1.4); the transaction passes it through.
    assert layer.send_response(tx_id, ok, 0.5) == [SendMessage(ok, UDP, tx_id)]
    # The ACK for a 2xx is a new transaction (new branch): end-to-end to the TU.
    ack = request("ACK", branch="z9hG4bKack2xx", to_tag="uas1")
    assert layer.receive_request(ack, UDP, 0.6) == [AckReceived(ack, UDP, None)]
    # An ACK that reuses the INVITE branch is matched and still goes to the TU.
    same_branch_ack = non_2xx_ack(inv)
    assert layer.receive_request(same_branch_ack, UDP, 0.7) == [
        AckReceived(same_branch_ack, UDP, tx_id)
    ]
    with pytest.raises(SipLocalError):  # not the same 2xx again: a second answer
        layer.send_response(tx_id, make_response(inv, 202, to_tag="uas1"), 1.0)
    with pytest.raises(SipLocalError):
        layer.send_response(tx_id, make_response(inv, 486, to_tag="uas1"), 1.0)
    assert sent_at(run_until(layer, 31.9)) == []  # no G for 2xx
    assert run_until(layer, 100.0) == [(32.0, TransactionTerminated(tx_id, TxKind.SERVER_INVITE))]
    # After L a copy of the INVITE is a new request again (RFC 6026 §8.7 accepts this).
    assert of_type(layer.receive_request(request(), UDP, 40.0), RequestReceived)


def test_server_invite_tu_misuse_is_loud_and_leaves_state_alone() -> None:
    layer, inv, tx_id, final, _ = _server_invite_answered(486)
    for bad in (make_response(inv, 200, to_tag="x"), make_response(inv, 180, to_tag="uas1")):
        with pytest.raises(SipLocalError):
            layer.send_response(tx_id, bad, 0.1)
    tx = layer.get(tx_id)
    assert tx is not None and tx.state is TxState.COMPLETED and tx.final_response is final
    with pytest.raises(SipLocalError, match="no transaction"):
        layer.send_response("s999", final, 0.1)
    bye = request("BYE", branch="z9hG4bKbye", to_tag="uas1")
    with pytest.raises(SipLocalError, match="cannot answer"):
        layer.send_response(tx_id, make_response(bye, 200), 0.1)
    client_id, _ = layer.send_request(request("OPTIONS", branch="z9hG4bKo"), UDP, 0.1)
    with pytest.raises(SipLocalError, match="client transaction"):
        layer.send_response(client_id, final, 0.1)


# -- server non-INVITE (§17.2.2) ----------------------------------------------------------
def test_server_non_invite_trying_proceeding_completed_then_timer_j() -> None:
    layer = TransactionLayer()
    reg = request("REGISTER")
    (received,) = of_type(layer.receive_request(reg, UDP, 0.0), RequestReceived)
    tx_id = received.tx_id
    assert run_until(layer, 5.0) == []  # no automatic 100 for non-INVITE
    assert layer.receive_request(request("REGISTER"), UDP, 0.5) == []  # Trying: discarded
    trying = make_response(reg, 100)
    assert layer.send_response(tx_id, trying, 0.6) == [SendMessage(trying, UDP, tx_id)]
    assert layer.receive_request(request("REGISTER"), UDP, 1.0) == [SendMessage(trying, UDP, tx_id)]
    ok = make_response(reg, 200, to_tag="r1")
    assert statuses(layer.send_response(tx_id, ok, 2.0)) == [200]
    assert layer.receive_request(request("REGISTER"), UDP, 3.0) == [SendMessage(ok, UDP, tx_id)]
    with pytest.raises(SipLocalError):
        layer.send_response(tx_id, make_response(reg, 500, to_tag="r1"), 3.0)
    fired = run_until(layer, 100.0)
    assert fired == [(34.0, TransactionTerminated(tx_id, TxKind.SERVER_NON_INVITE))]


def test_server_non_invite_over_tcp_timer_j_is_zero() -> None:
    layer = TransactionLayer()
    reg = request("REGISTER", transport="TCP")
    (received,) = of_type(layer.receive_request(reg, TCP, 0.0), RequestReceived)
    events = layer.send_response(received.tx_id, make_response(reg, 200, to_tag="r"), 0.0)
    assert [type(e) for e in events] == [SendMessage, TransactionTerminated]
    assert len(layer) == 0


# -- transport errors (§17.1.4, §17.2.4), terminate, metrics ------------------------------
def test_transport_error_terminates_calling_and_informs_tu() -> None:
    layer = TransactionLayer()
    tx_id, _ = layer.send_request(request(), UDP, 0.0)
    assert layer.report_transport_error(tx_id, 0.1, "ICMP unreachable") == [
        TransportErrorReported(tx_id, "ICMP unreachable"),
        TransactionTerminated(tx_id, TxKind.CLIENT_INVITE),
    ]
    assert layer.report_transport_error(tx_id, 0.2) == []  # already gone
    assert layer.next_timer() is None


def test_transport_error_in_accepted_informs_but_keeps_absorbing() -> None:
    layer, _, tx_id, _, _ = _server_invite_answered(200)
    assert layer.report_transport_error(tx_id, 1.0, "reset") == [
        TransportErrorReported(tx_id, "reset")
    ]
    assert layer.receive_request(request(), UDP, 1.5) == []


def test_transport_error_where_nothing_is_sent_is_ignored() -> None:
    layer = TransactionLayer()
    (received,) = of_type(layer.receive_request(request("OPTIONS"), UDP, 0.0), RequestReceived)
    assert layer.report_transport_error(received.tx_id, 0.1) == []  # Trying: not in table
    assert layer.get(received.tx_id) is not None


def test_terminate_is_immediate_and_idempotent() -> None:
    layer = TransactionLayer()
    tx_id, _ = layer.send_request(request(), UDP, 0.0)
    assert layer.terminate(tx_id) == [TransactionTerminated(tx_id, TxKind.CLIENT_INVITE)]
    assert layer.terminate(tx_id) == []
    assert layer.next_timer() is None and run_until(layer, 100.0) == []
    # The branch is free again and responses to it are no longer matched.
    assert layer.receive_response(reply(request(), 180), UDP, 1.0) == []


def test_counts_by_kind_for_metrics() -> None:
    layer = TransactionLayer()
    layer.send_request(request(branch="z9hG4bKc1"), UDP, 0.0)
    layer.send_request(request("OPTIONS", branch="z9hG4bKc2"), UDP, 0.0)
    layer.send_request(request("OPTIONS", branch="z9hG4bKc3"), UDP, 0.0)
    layer.receive_request(request(branch="z9hG4bKs1"), UDP, 0.0)
    assert layer.counts() == {
        "client_invite": 1,
        "client_non_invite": 2,
        "server_invite": 1,
        "server_non_invite": 0,
    }
    assert layer.stats["client_created"] == 3 and layer.stats["server_created"] == 1


# -- configurable T1/T2/T4 ----------------------------------------------------------------
def test_configured_t1_t2_t4_are_honoured() -> None:
    cfg = TimerConfig(t1=0.1, t2=0.4, t4=1.5, trying_delay=None)
    layer = TransactionLayer(cfg)
    inv_id, _ = layer.send_request(request(branch="z9hG4bKinv"), UDP, 0.0)
    opt = request("OPTIONS", branch="z9hG4bKopt")
    opt_id, _ = layer.send_request(opt, UDP, 0.0)
    fired = run_until(layer, 10.0)
    inv_times = [round(t, 6) for t, e in fired if isinstance(e, SendMessage) and e.tx_id == inv_id]
    opt_times = [round(t, 6) for t, e in fired if isinstance(e, SendMessage) and e.tx_id == opt_id]
    assert inv_times == geometric(0.1, None, 6.4)  # A: 0.1, 0.3, 0.7, 1.5, 3.1
    assert opt_times == geometric(0.1, 0.4, 6.4)  # E capped at T2 = 0.4
    assert {(round(t, 6), e.timer) for t, e in fired if isinstance(e, TransactionTimeout)} == {
        (6.4, "B"),
        (6.4, "F"),
    }
    # K = T4
    opt2 = request("OPTIONS", branch="z9hG4bKopt2")
    opt2_id, _ = layer.send_request(opt2, UDP, 20.0)
    layer.receive_response(reply(opt2, 200), UDP, 20.0)
    assert run_until(layer, 30.0) == [
        (21.5, TransactionTerminated(opt2_id, TxKind.CLIENT_NON_INVITE))
    ]


def test_timer_d_is_configurable() -> None:
    layer = TransactionLayer(TimerConfig(d=40.0))
    inv = request()
    tx_id, _ = layer.send_request(inv, UDP, 0.0)
    layer.receive_response(reply(inv, 500), UDP, 1.0)
    assert run_until(layer, 100.0) == [(41.0, TransactionTerminated(tx_id, TxKind.CLIENT_INVITE))]


@pytest.mark.parametrize(
    "kwargs",
    [{"t1": 0.0}, {"t2": -1.0}, {"t1": 2.0, "t2": 1.0}, {"t4": -0.1}, {"trying_delay": -0.2}],
)
def test_timer_config_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="SIP timers"):
        TimerConfig(**kwargs)


# -- property: a server INVITE transaction under any mix of inputs ------------------------
@dataclass
class _Model:
    """What the test knows: finals sent and whether the tx is still alive."""

    finals: list[int] = field(default_factory=list)
    final_at: float | None = None
    terminated_at: float | None = None
    terminations: int = 0


_STEP = st.one_of(
    st.tuples(st.just("retransmit"), st.just(0)),
    st.tuples(st.just("respond"), st.sampled_from([100, 180, 183, 200, 202, 302, 486, 503, 603])),
    st.tuples(st.just("ack"), st.just(0)),
    st.tuples(st.just("ack-2xx"), st.just(0)),
    st.tuples(st.just("wait"), st.integers(min_value=0, max_value=20_000)),  # milliseconds
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(_STEP, max_size=30),
    reliable=st.booleans(),
    t1=st.sampled_from([0.05, 0.5, 1.0]),
    t4=st.sampled_from([0.5, 5.0]),
    trying=st.sampled_from([None, 0.0, 0.2]),
)
def test_server_invite_invariants_under_random_inputs(
    steps: list[tuple[str, int]], reliable: bool, t1: float, t4: float, trying: float | None
) -> None:
    peer = TCP if reliable else UDP
    cfg = TimerConfig(t1=t1, t2=max(4.0, t1), t4=t4, trying_delay=trying)
    layer = TransactionLayer(cfg)
    inv = request(transport=peer.transport)
    model = _Model()
    now = 0.0
    (received,) = of_type(layer.receive_request(inv, peer, now), RequestReceived)
    tx_id = received.tx_id

    def observe(events: list[Event], at: float) -> None:
        for e in events:
            if isinstance(e, SendMessage):
                assert model.terminated_at is None, "sent after termination"
                msg = e.message
                assert isinstance(msg, SipResponse)
                if msg.status >= 200:
                    model.finals.append(msg.status)
            elif isinstance(e, TransactionTerminated):
                model.terminations += 1
                model.terminated_at = at
            elif isinstance(e, RequestReceived):
                raise AssertionError("a retransmission reached the TU")

    def advance(to: float) -> None:
        while (t := layer.next_timer()) is not None and t <= to:
            observe(layer.handle_timer(t), t)

    for action, arg in steps:
        if model.terminated_at is not None:
            break
        if action == "wait":
            now += arg / 1000
            advance(now)
        elif action == "retransmit":
            observe(layer.receive_request(request(transport=peer.transport), peer, now), now)
        elif action == "ack":
            ack = request("ACK", to_tag="uas1", transport=peer.transport)
            observe(layer.receive_request(ack, peer, now), now)
        elif action == "ack-2xx":
            ack = request("ACK", branch="z9hG4bKother", to_tag="uas1", transport=peer.transport)
            assert layer.receive_request(ack, peer, now) == [AckReceived(ack, peer, None)]
        else:
            status = arg
            first = model.finals[0] if model.finals else None
            # Anything before the final; after a 2xx only that 2xx again (§13.3.1.4).
            allowed = first is None or (200 <= first < 300 and status == first)
            response = make_response(inv, status, to_tag="uas1")
            try:
                observe(layer.send_response(tx_id, response, now), now)
            except SipLocalError:
                assert not allowed, f"refused a legal {status}"
            else:
                assert allowed, f"accepted {status} after final {first}"
                if status >= 200 and model.final_at is None:
                    model.final_at = now

    # The TU always answers in the end; the transaction must then finish on its own.
    if model.terminated_at is None and model.final_at is None:
        observe(layer.send_response(tx_id, make_response(inv, 487, to_tag="uas1"), now), now)
        model.final_at = now
    assert model.final_at is not None
    advance(model.final_at + 64 * t1 + t4)
    assert model.terminations == 1
    assert model.terminated_at is not None
    assert model.terminated_at <= model.final_at + 64 * t1 + t4 + 1e-9
    assert len(set(model.finals)) == 1, f"more than one final status: {model.finals}"
    assert layer.get(tx_id) is None and layer.next_timer() is None


# -- property: a client INVITE transaction under any responses ----------------------------
def _ended(events: list[Event]) -> bool:
    return any(isinstance(e, TransactionTerminated) for e in events)


@settings(max_examples=200, deadline=None)
@given(
    responses=st.lists(
        st.tuples(
            st.sampled_from([100, 180, 200, 486, 503]), st.integers(min_value=0, max_value=40_000)
        ),
        max_size=12,
    ),
    reliable=st.booleans(),
)
def test_client_invite_acks_exactly_the_non_2xx_finals(
    responses: list[tuple[int, int]], reliable: bool
) -> None:
    peer = TCP if reliable else UDP
    layer = TransactionLayer()
    inv = request(transport=peer.transport)
    tx_id, _ = layer.send_request(inv, peer, 0.0)
    now, gone, first_final = 0.0, False, None
    for status, wait_ms in responses:
        now += wait_ms / 1000
        while (t := layer.next_timer()) is not None and t <= now:
            gone |= _ended(layer.handle_timer(t))
        response = reply(inv, status)
        events = layer.receive_response(response, peer, now)
        acks = [m for m in sent(events) if isinstance(m, SipRequest) and m.method == "ACK"]
        passed = of_type(events, ResponseReceived)
        if gone:  # unmatched now: dropped, or a stray 2xx for the dialog layer
            assert not acks and not passed
            assert of_type(events, StrayResponse) == (
                [StrayResponse(response, peer)] if 200 <= status < 300 else []
            )
        elif first_final is None:  # Calling / Proceeding: everything to the TU
            assert len(passed) == 1 and len(acks) == (1 if status >= 300 else 0)
            first_final = status if status >= 200 else None
        elif first_final >= 300:  # Completed: re-ACK non-2xx, tell the TU nothing
            assert not passed and len(acks) == (1 if status >= 300 else 0)
        else:  # Accepted: every 2xx to the TU, never an ACK (RFC 6026 §8.4)
            assert not acks and len(passed) == (1 if 200 <= status < 300 else 0)
        gone |= _ended(events)
    # Every timer still armed was armed at or before ``now``; none is longer than 32 s.
    while (t := layer.next_timer()) is not None:
        assert t <= now + 32.0
        gone |= _ended(layer.handle_timer(t))
    tx = layer.get(tx_id)
    assert gone == (tx is None)
    if tx is not None:  # only Proceeding waits for the TU (it CANCELs, §9.1)
        assert tx.state is TxState.PROCEEDING and first_final is None
