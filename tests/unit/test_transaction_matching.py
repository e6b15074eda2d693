"""Matching messages to transactions: RFC 3261 §17.1.3, §17.2.3 (with the RFC 2543
fallback), §9.2 CANCEL, and RFC 4475 §3.2.1's bare magic cookie."""

from __future__ import annotations

import re

import pytest

from tsunagu.sip.errors import SipLocalError
from tsunagu.sip.message import SipRequest, SipResponse, make_response, parse_message
from tsunagu.sip.peer import Peer
from tsunagu.sip.transaction import (
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    StrayResponse,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TxKind,
    TxState,
    build_cancel,
    new_branch,
)

PHONE = Peer("UDP", "192.0.2.10", 5060)
OTHER = Peer("UDP", "192.0.2.99", 5060)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKm1",
    host: str = "192.0.2.10",
    port: int | None = 5060,
    uri: str = "sip:bob@example.com",
    to_tag: str | None = None,
    from_tag: str = "f1",
    call_id: str = "call-m",
    cseq: int = 1,
    cseq_method: str | None = None,
) -> SipRequest:
    sent_by = f"{host}:{port}" if port is not None else host
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch is not None else ""),
        "Max-Forwards: 70",
        f"From: <sip:alice@example.com>;tag={from_tag}",
        "To: <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def layer_without_100() -> TransactionLayer:
    return TransactionLayer(TimerConfig(trying_delay=None))


def new_tx(events: list[Event]) -> str:
    (received,) = [e for e in events if isinstance(e, RequestReceived)]
    return received.tx_id


def state_of(layer: TransactionLayer, tx_id: str) -> TxState | None:
    tx = layer.get(tx_id)
    return tx.state if tx is not None else None


def answer(layer: TransactionLayer, tx_id: str, req: SipRequest, status: int) -> SipResponse:
    response = make_response(req, status, to_tag="uas1")
    layer.send_response(tx_id, response, 0.0)
    return response


# -- RFC 3261 server matching (§17.2.3) ---------------------------------------------------
def test_retransmission_is_absorbed_and_the_same_last_response_resent() -> None:
    layer = layer_without_100()
    tx_id = new_tx(layer.receive_request(request("OPTIONS"), PHONE, 0.0))
    ok = answer(layer, tx_id, request("OPTIONS"), 200)
    again = layer.receive_request(request("OPTIONS"), PHONE, 0.5)
    assert again == [SendMessage(ok, PHONE, tx_id)]
    assert isinstance(again[0], SendMessage) and again[0].message is ok  # the very object
    assert len(layer) == 1 and layer.stats["retransmissions_absorbed"] == 1


def test_retransmission_answers_where_it_came_from() -> None:
    layer = layer_without_100()
    tx_id = new_tx(layer.receive_request(request("OPTIONS"), PHONE, 0.0))
    ok = answer(layer, tx_id, request("OPTIONS"), 200)
    moved = Peer("UDP", "192.0.2.10", 40000)
    assert layer.receive_request(request("OPTIONS"), moved, 0.5) == [SendMessage(ok, moved, tx_id)]


@pytest.mark.parametrize(
    "change",
    [
        {"branch": "z9hG4bKm2"},  # another branch
        {"host": "192.0.2.11"},  # same branch from another sent-by host (§17.2.3)
        {"port": 5070},  # ... or port
        {"method": "OPTIONS"},  # same branch, another method
    ],
)
def test_different_key_opens_a_new_transaction(change: dict[str, str]) -> None:
    layer = layer_without_100()
    first = new_tx(layer.receive_request(request(), PHONE, 0.0))
    second = new_tx(layer.receive_request(request(**change), PHONE, 0.1))  # type: ignore[arg-type]
    assert first != second and len(layer) == 2


def test_default_port_and_host_case_match_the_explicit_form() -> None:
    layer = layer_without_100()
    tx_id = new_tx(layer.receive_request(request(host="PBX.example.com", port=None), PHONE, 0.0))
    ok = answer(layer, tx_id, request(), 486)
    again = layer.receive_request(request(host="pbx.example.com", port=5060), PHONE, 0.2)
    assert again == [SendMessage(ok, PHONE, tx_id)]


def test_ack_matches_the_invite_transaction_for_a_non_2xx() -> None:
    layer = layer_without_100()
    tx_id = new_tx(layer.receive_request(request(), PHONE, 0.0))
    answer(layer, tx_id, request(), 486)
    assert layer.receive_request(request("ACK", to_tag="uas1"), PHONE, 0.1) == []
    assert state_of(layer, tx_id) is TxState.CONFIRMED


def test_ack_with_unknown_branch_goes_to_the_tu() -> None:
    layer = layer_without_100()
    ack = request("ACK", branch="z9hG4bKfor2xx", to_tag="uas1")
    assert layer.receive_request(ack, PHONE, 0.0) == [AckReceived(ack, PHONE, None)]
    assert len(layer) == 0  # an ACK never creates a transaction


def test_cancel_forms_its_own_transaction_linked_to_the_invite() -> None:
    layer = layer_without_100()
    invite = request()
    invite_tx = new_tx(layer.receive_request(invite, PHONE, 0.0))
    cancel = request("CANCEL")
    events = layer.receive_request(cancel, PHONE, 1.0)
    ((event),) = events
    assert isinstance(event, CancelReceived)
    assert event.invite_tx_id == invite_tx and event.tx_id != invite_tx
    assert layer.find_invite_for_cancel(cancel) == invite_tx
    # The TU answers both, as §9.2 says; the INVITE transaction is untouched by the CANCEL.
    ok = make_response(cancel, 200, to_tag="uas1")
    assert layer.send_response(event.tx_id, ok, 1.0)[0] == SendMessage(ok, PHONE, event.tx_id)
    terminated = answer(layer, invite_tx, invite, 487)
    assert terminated.status == 487
    # A retransmitted CANCEL is absorbed by the CANCEL transaction.
    assert layer.receive_request(request("CANCEL"), PHONE, 1.5) == [
        SendMessage(ok, PHONE, event.tx_id)
    ]
    assert layer.counts()["server_non_invite"] == 1 and layer.counts()["server_invite"] == 1


def test_cancel_without_invite_is_reported_unlinked() -> None:
    layer = layer_without_100()
    (event,) = layer.receive_request(request("CANCEL", branch="z9hG4bKnone"), PHONE, 0.0)
    assert isinstance(event, CancelReceived) and event.invite_tx_id is None


def test_cancel_does_not_link_to_a_non_invite() -> None:
    layer = layer_without_100()
    layer.receive_request(request("OPTIONS"), PHONE, 0.0)
    (event,) = layer.receive_request(request("CANCEL", cseq_method="CANCEL"), PHONE, 0.1)
    assert isinstance(event, CancelReceived) and event.invite_tx_id is None


# -- RFC 2543 fallback (§17.2.3) and RFC 4475 §3.2.1 --------------------------------------
@pytest.mark.parametrize("branch", [None, "z9hG4bK", "old-style-1234"])
def test_2543_request_retransmission_matched_by_fields(branch: str | None) -> None:
    layer = layer_without_100()
    tx_id = new_tx(layer.receive_request(request(branch=branch), PHONE, 0.0))
    ringing = answer(layer, tx_id, request(branch=branch), 180)
    assert layer.receive_request(request(branch=branch), PHONE, 0.5) == [
        SendMessage(ringing, PHONE, tx_id)
    ]
    assert len(layer) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"call_id": "other"},
        {"from_tag": "f2"},
        {"cseq": 2},
        {"uri": "sip:carol@example.com"},
        {"to_tag": "already"},
        {"port": 5070},
    ],
)
def test_2543_any_differing_field_is_a_new_transaction(change: dict[str, object]) -> None:
    layer = layer_without_100()
    first = new_tx(layer.receive_request(request(branch=None), PHONE, 0.0))
    second = new_tx(layer.receive_request(request(branch=None, **change), PHONE, 0.1))  # type: ignore[arg-type]
    assert first != second


def test_bare_magic_cookie_is_not_a_transaction_id() -> None:
    """RFC 4475 §3.2.1: two different requests both carrying ``branch=z9hG4bK`` from one
    sent-by are two transactions, not a retransmission."""
    layer = layer_without_100()
    first = new_tx(layer.receive_request(request(branch="z9hG4bK", call_id="a"), PHONE, 0.0))
    second = new_tx(layer.receive_request(request(branch="z9hG4bK", call_id="b"), PHONE, 0.1))
    assert first != second


def test_2543_ack_matched_by_the_to_tag_of_the_response() -> None:
    layer = layer_without_100()
    tx_id = new_tx(layer.receive_request(request(branch=None), PHONE, 0.0))
    answer(layer, tx_id, request(branch=None), 486)  # To tag uas1
    # An ACK carrying another To tag is not for our response: it goes to the TU.
    stranger = request("ACK", branch=None, to_tag="someone-else")
    assert layer.receive_request(stranger, PHONE, 0.1) == [AckReceived(stranger, PHONE, None)]
    assert state_of(layer, tx_id) is TxState.COMPLETED
    # The ACK with the response's tag is absorbed by the transaction.
    assert layer.receive_request(request("ACK", branch=None, to_tag="uas1"), PHONE, 0.2) == []
    assert state_of(layer, tx_id) is TxState.CONFIRMED


def test_2543_ack_before_any_final_does_not_match() -> None:
    layer = layer_without_100()
    layer.receive_request(request(branch=None), PHONE, 0.0)
    ack = request("ACK", branch=None, to_tag="uas1")
    assert layer.receive_request(ack, PHONE, 0.1) == [AckReceived(ack, PHONE, None)]


def test_2543_cancel_linked_to_its_invite() -> None:
    layer = layer_without_100()
    invite_tx = new_tx(layer.receive_request(request(branch=None), PHONE, 0.0))
    (event,) = layer.receive_request(request("CANCEL", branch=None), PHONE, 0.5)
    assert isinstance(event, CancelReceived) and event.invite_tx_id == invite_tx
    other = request("CANCEL", branch=None, call_id="unrelated")
    assert layer.find_invite_for_cancel(other) is None


def test_2543_transactions_are_forgotten_when_they_end() -> None:
    layer = layer_without_100()
    tx_id = new_tx(layer.receive_request(request("OPTIONS", branch=None), PHONE, 0.0))
    answer(layer, tx_id, request("OPTIONS", branch=None), 200)
    while (t := layer.next_timer()) is not None:
        layer.handle_timer(t)
    assert len(layer) == 0
    assert new_tx(layer.receive_request(request("OPTIONS", branch=None), PHONE, 40.0)) != tx_id


# -- client matching (§17.1.3) ------------------------------------------------------------
def test_response_with_unknown_branch_is_dropped() -> None:
    layer = TransactionLayer()
    layer.send_request(request(branch="z9hG4bKmine"), OTHER, 0.0)
    stranger = parse_message(bytes(make_response(request(branch="z9hG4bKnotmine"), 486)))
    assert isinstance(stranger, SipResponse)
    assert layer.receive_response(stranger, OTHER, 0.1) == []
    assert layer.stats["responses_dropped"] == 1


def test_unmatched_2xx_to_invite_is_a_stray_for_the_dialog_layer() -> None:
    layer = TransactionLayer()
    ok = parse_message(bytes(make_response(request(branch="z9hG4bKgone"), 200, to_tag="x")))
    assert isinstance(ok, SipResponse)
    assert layer.receive_response(ok, OTHER, 0.0) == [StrayResponse(ok, OTHER)]
    ok_options = parse_message(bytes(make_response(request("OPTIONS"), 200, to_tag="x")))
    assert isinstance(ok_options, SipResponse)
    assert layer.receive_response(ok_options, OTHER, 0.0) == []


def test_invite_and_its_cancel_share_a_branch_but_not_a_transaction() -> None:
    layer = TransactionLayer()
    invite = request(branch=new_branch())
    invite_tx, _ = layer.send_request(invite, OTHER, 0.0)
    cancel = build_cancel(invite)
    cancel_tx, events = layer.send_request(cancel, OTHER, 0.1)
    assert [e.message for e in events if isinstance(e, SendMessage)] == [cancel]
    ok_cancel = parse_message(bytes(make_response(cancel, 200, to_tag="u")))
    terminated = parse_message(bytes(make_response(invite, 487, to_tag="u")))
    assert isinstance(ok_cancel, SipResponse) and isinstance(terminated, SipResponse)
    assert layer.receive_response(ok_cancel, OTHER, 0.2)[0] == ResponseReceived(
        cancel_tx, ok_cancel
    )
    events = layer.receive_response(terminated, OTHER, 0.3)
    assert ResponseReceived(invite_tx, terminated) in events
    layer.handle_timer(100.0)
    assert len(layer) == 0


def test_build_cancel_follows_section_9_1() -> None:
    invite = request(branch="z9hG4bKc", to_tag=None)
    invite.headers.add("Route", "<sip:edge.example.com;lr>")
    cancel = build_cancel(invite)
    assert cancel.method == "CANCEL" and str(cancel.uri) == str(invite.uri)
    assert [str(v) for v in cancel.vias] == [str(invite.top_via)]
    for name in ("From", "To", "Call-ID"):
        assert cancel.headers.get(name) == invite.headers.get(name)
    assert (cancel.cseq.number, cancel.cseq.method) == (1, "CANCEL")
    assert cancel.headers.values("Route") == ["<sip:edge.example.com;lr>"]
    with pytest.raises(SipLocalError):
        build_cancel(request("ACK"))


def test_send_request_refuses_what_cannot_be_a_client_transaction() -> None:
    layer = TransactionLayer()
    with pytest.raises(SipLocalError, match="branch"):
        layer.send_request(request(branch=None), OTHER, 0.0)
    with pytest.raises(SipLocalError, match="branch"):
        layer.send_request(request(branch="z9hG4bK"), OTHER, 0.0)
    with pytest.raises(SipLocalError, match="ACK"):
        layer.send_request(request("ACK", to_tag="t"), OTHER, 0.0)
    layer.send_request(request(branch="z9hG4bKdup"), OTHER, 0.0)
    with pytest.raises(SipLocalError, match="already used"):
        layer.send_request(request(branch="z9hG4bKdup"), OTHER, 0.0)
    assert len(layer) == 1


def test_new_branch_has_the_cookie_and_is_unique() -> None:
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(re.fullmatch(r"z9hG4bK[0-9a-f]{20}", b) for b in branches)


def test_client_and_server_transactions_with_one_branch_do_not_mix() -> None:
    """A looped request (our branch coming back) is a new server transaction (§17.2.3)."""
    layer = TransactionLayer(TimerConfig(trying_delay=None))
    invite = request(branch="z9hG4bKloop")
    client_tx, _ = layer.send_request(invite, OTHER, 0.0)
    server_tx = new_tx(layer.receive_request(request(branch="z9hG4bKloop"), PHONE, 0.1))
    assert server_tx != client_tx
    kinds = {tx.kind for tx in (layer.get(client_tx), layer.get(server_tx)) if tx is not None}
    assert kinds == {TxKind.CLIENT_INVITE, TxKind.SERVER_INVITE}
    final = make_response(invite, 482, to_tag="loop")
    events = layer.send_response(server_tx, final, 0.2)
    assert events == [SendMessage(final, PHONE, server_tx)]
    assert not any(isinstance(e, TransactionTerminated) for e in events)
