"""SIP dialogs (RFC 3261 §12): construction, in-dialog requests, ACK for 2xx, the table.

Golden messages are compared byte for byte after replacing the two values that are random
by design: the Via branch (§8.1.1.7) and, for a UAS dialog, the first local CSeq (§12.2.1.1).
"""

from __future__ import annotations

import re

import pytest

from tsunagu.sip.dialog import (
    Dialog,
    DialogId,
    DialogState,
    TerminationReason,
    build_ack_for_2xx,
    build_invite,
    next_hop,
    transport_for,
)
from tsunagu.sip.dialog_table import DialogTable, request_dialog_id, unknown_dialog_response
from tsunagu.sip.errors import SipLocalError, SipParseError
from tsunagu.sip.headers import NameAddress
from tsunagu.sip.message import SipRequest, SipResponse, make_response, parse_message
from tsunagu.sip.uri import SipUri, parse_uri

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

#: A baresip INVITE as it reaches us through two record-routing proxies: the top
#: Record-Route is the proxy next to us (it handled the request last).
BARESIP_INVITE = (
    "INVITE sip:1001@192.0.2.10:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bKp2a1\r\n"
    "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKp1a1\r\n"
    "Via: SIP/2.0/UDP 203.0.113.5:5080;received=203.0.113.5;rport=5080;branch=z9hG4bK6e3a1f\r\n"
    "Record-Route: <sip:198.51.100.2;lr>\r\n"
    "Record-Route: <sip:198.51.100.1;lr;ftag=a94c>\r\n"
    "Contact: <sip:alice-0x55f1@203.0.113.5:5080;transport=udp>\r\n"
    "Max-Forwards: 68\r\n"
    "To: <sip:1001@tsunagu.example>\r\n"
    'From: "Alice" <sip:alice@tsunagu.example>;tag=a94c0b6e8b7d11\r\n'
    "Call-ID: 5b8e2a8b7d3c4e1f\r\n"
    "CSeq: 31337 INVITE\r\n"
    "User-Agent: baresip v3.10.1 (x86_64/Linux)\r\n"
    "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n"
    "Supported: replaces,norefersub\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n"
).encode() + SDP

#: Our BYE on that dialog (§12.2.1.1): R-URI = Alice's Contact, Route = the route set in
#: request order, From/To swapped with both tags, Via from our listening socket.
GOLDEN_UAS_BYE = (
    "BYE sip:alice-0x55f1@203.0.113.5:5080;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=BRANCH;rport\r\n"
    "Max-Forwards: 70\r\n"
    "Route: <sip:198.51.100.2;lr>\r\n"
    "Route: <sip:198.51.100.1;lr;ftag=a94c>\r\n"
    "From: <sip:1001@tsunagu.example>;tag=tsunagu1\r\n"
    "To: Alice <sip:alice@tsunagu.example>;tag=a94c0b6e8b7d11\r\n"
    "Call-ID: 5b8e2a8b7d3c4e1f\r\n"
    "CSeq: N BYE\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)

OUR_CONTACT = "<sip:tsunagu@192.0.2.10:5060>"


def parse_request(data: bytes | str) -> SipRequest:
    msg = parse_message(data.encode() if isinstance(data, str) else data)
    assert isinstance(msg, SipRequest)
    return msg


def parse_response(data: bytes) -> SipResponse:
    msg = parse_message(data)
    assert isinstance(msg, SipResponse)
    return msg


def wire(msg: SipRequest | SipResponse) -> SipRequest | SipResponse:
    """Through the serializer and back, as the peer would see it."""
    return parse_message(bytes(msg))


def normalise(data: bytes) -> str:
    text = data.decode()
    text = re.sub(r"branch=z9hG4bK[0-9a-f]+", "branch=BRANCH", text)
    return re.sub(r"CSeq: \d+ ", "CSeq: N ", text)


def via_provider(transport: str) -> tuple[str, int]:
    return ("192.0.2.10", 5061 if transport == "TLS" else 5060)


def uas_dialog(invite: SipRequest | None = None, status: int = 200) -> tuple[Dialog, SipResponse]:
    invite = invite or parse_request(BARESIP_INVITE)
    response = make_response(invite, status, to_tag="tsunagu1")
    dialog = Dialog.from_uas(invite, response, OUR_CONTACT, local_via=via_provider)
    return dialog, response


# -- an INVITE we send, and the answers coming back ---------------------------------------
def our_invite(*, routes: tuple[str, ...] = (), cseq: int = 101) -> SipRequest:
    invite = build_invite(
        parse_uri("sip:agent7@203.0.113.40:5062"),
        from_=NameAddress.parse('"Tsunagu" <sip:queue@tsunagu.example>'),
        to=NameAddress.parse("<sip:agent7@tsunagu.example>"),
        local_contact=NameAddress.parse(OUR_CONTACT),
        sent_by=("192.0.2.10", 5060),
        call_id="leg-b-1@192.0.2.10",
        from_tag="ourtag",
        cseq=cseq,
        routes=[NameAddress.parse(r) for r in routes],
        body=SDP,
        content_type="application/sdp",
        extra=[("Authorization", 'Digest username="queue", response="abc"')],
    )
    return parse_request(bytes(invite))


def answer(
    invite: SipRequest,
    status: int,
    *,
    tag: str | None = "agent7tag",
    contact: str | None = "<sip:agent7@203.0.113.40:5062;transport=udp>",
    record_route: tuple[str, ...] = (),
    body: bytes = b"",
) -> SipResponse:
    extra = [("Record-Route", rr) for rr in record_route]
    if contact is not None:
        extra.append(("Contact", contact))
    if body:
        extra.append(("Content-Type", "application/sdp"))
    return parse_response(bytes(make_response(invite, status, to_tag=tag, extra=extra, body=body)))


# -- UAS dialogs (§12.1.1) ----------------------------------------------------------------
def test_uas_dialog_from_baresip_invite_keeps_record_route_order() -> None:
    dialog, response = uas_dialog()
    assert dialog.id == DialogId("5b8e2a8b7d3c4e1f", "tsunagu1", "a94c0b6e8b7d11")
    assert dialog.state is DialogState.CONFIRMED
    assert not dialog.is_uac and not dialog.secure
    assert [str(r) for r in dialog.route_set] == [
        "<sip:198.51.100.2;lr>",
        "<sip:198.51.100.1;lr;ftag=a94c>",
    ]
    assert str(dialog.remote_target) == "sip:alice-0x55f1@203.0.113.5:5080;transport=udp"
    assert dialog.remote_cseq == 31337 and dialog.local_cseq is None
    # §12.1.1: the response copies Record-Route in order and carries our Contact.
    sent = wire(response)
    assert sent.headers.values("Record-Route") == [
        "<sip:198.51.100.2;lr>",
        "<sip:198.51.100.1;lr;ftag=a94c>",
    ]
    assert sent.headers.get("Contact") == OUR_CONTACT
    assert sent.to.tag == "tsunagu1"


def test_uas_bye_matches_golden_message() -> None:
    dialog, _ = uas_dialog()
    bye = dialog.create_request("BYE")
    assert normalise(bytes(bye)) == GOLDEN_UAS_BYE
    assert bye.top_via.is_rfc3261_branch
    assert str(next_hop(bye)) == "sip:198.51.100.2;lr"


def test_uas_dialog_with_tagged_180_is_early_and_confirmed_later() -> None:
    dialog, _ = uas_dialog(status=180)
    assert dialog.state is DialogState.EARLY
    dialog.confirm()
    assert dialog.is_confirmed


def test_uas_dialog_needs_a_contact_in_the_invite() -> None:
    raw = re.sub(rb"Contact: [^\r]*\r\n", b"", BARESIP_INVITE)
    with pytest.raises(SipParseError) as info:
        uas_dialog(parse_request(raw))
    assert info.value.status == 400


def test_dialog_needs_a_tagged_1xx_or_2xx() -> None:
    invite = parse_request(BARESIP_INVITE)
    with pytest.raises(SipLocalError):
        Dialog.from_uas(invite, make_response(invite, 486, to_tag="x"), OUR_CONTACT)
    with pytest.raises(SipLocalError):
        Dialog.from_uas(invite, make_response(invite, 100), OUR_CONTACT)
    with pytest.raises(SipLocalError):
        Dialog.from_uac(our_invite(), answer(our_invite(), 180, tag=None))


def test_secure_flag_needs_sips_and_tls() -> None:
    raw = BARESIP_INVITE.replace(b"INVITE sip:1001@", b"INVITE sips:1001@")
    invite = parse_request(raw)
    plain = Dialog.from_uas(invite, make_response(invite, 200, to_tag="t1"), OUR_CONTACT)
    secure = Dialog.from_uas(invite, make_response(invite, 200, to_tag="t2"), OUR_CONTACT, tls=True)
    assert not plain.secure and secure.secure


# -- UAC dialogs (§12.1.2) ----------------------------------------------------------------
def test_uac_dialog_reverses_the_record_route_of_the_response() -> None:
    invite = our_invite()
    ok = answer(invite, 200, record_route=("<sip:198.51.100.1;lr>", "<sip:198.51.100.2;lr>"))
    dialog = Dialog.from_uac(invite, ok)
    assert dialog.id == DialogId("leg-b-1@192.0.2.10", "ourtag", "agent7tag")
    assert dialog.is_uac and dialog.state is DialogState.CONFIRMED
    assert [str(r) for r in dialog.route_set] == ["<sip:198.51.100.2;lr>", "<sip:198.51.100.1;lr>"]
    assert dialog.local_cseq == 101 and dialog.remote_cseq is None
    bye = wire(dialog.create_request("BYE"))
    assert isinstance(bye, SipRequest)
    assert bye.headers.values("Route") == ["<sip:198.51.100.2;lr>", "<sip:198.51.100.1;lr>"]
    assert str(bye.uri) == "sip:agent7@203.0.113.40:5062;transport=udp"
    assert bye.from_.tag == "ourtag" and bye.to.tag == "agent7tag"
    assert str(bye.from_.uri) == "sip:queue@tsunagu.example"
    assert bye.from_.display_name == "Tsunagu"
    assert bye.top_via.sent_by == ("192.0.2.10", 5060)  # from the INVITE's Via by default


def test_cseq_increments_by_one_per_request_and_ack_reuses_the_invite_number() -> None:
    invite = our_invite(cseq=101)
    dialog = Dialog.from_uac(invite, answer(invite, 200))
    numbers = [dialog.create_request(m).cseq for m in ("INFO", "INVITE", "BYE")]
    assert [(c.number, c.method) for c in numbers] == [(102, "INFO"), (103, "INVITE"), (104, "BYE")]
    ack = dialog.build_ack(invite)
    assert (ack.cseq.number, ack.cseq.method) == (101, "ACK")
    assert dialog.local_cseq == 104  # the ACK did not consume a number
    with pytest.raises(SipLocalError):
        dialog.create_request("ACK")
    with pytest.raises(SipLocalError):
        dialog.create_request("CANCEL")


def test_uas_dialog_starts_its_own_cseq_space_and_increments_it() -> None:
    dialog, _ = uas_dialog()
    first = dialog.create_request("INFO").cseq.number
    second = dialog.create_request("BYE").cseq.number
    assert 0 < first < 2**31 and second == first + 1


def test_only_target_refresh_requests_carry_our_contact() -> None:
    dialog, _ = uas_dialog()
    assert "Contact" not in dialog.create_request("BYE").headers
    reinvite = dialog.create_request("INVITE", body=SDP, content_type="application/sdp")
    assert reinvite.headers.get("Contact") == OUR_CONTACT
    assert reinvite.headers.get("Content-Type") == "application/sdp" and reinvite.body == SDP
    with pytest.raises(SipLocalError):
        dialog.create_request("INFO", body=b"x")  # a body without a type


def test_early_uac_dialog_recomputes_route_set_and_target_from_the_2xx() -> None:
    invite = our_invite()
    ringing = answer(
        invite, 180, record_route=("<sip:198.51.100.9;lr>",), contact="<sip:early@203.0.113.99>"
    )
    dialog = Dialog.from_uac(invite, ringing)
    assert dialog.state is DialogState.EARLY
    ok = answer(invite, 200, record_route=("<sip:198.51.100.1;lr>", "<sip:198.51.100.2;lr>"))
    dialog.confirm(ok)  # §13.2.2.4
    assert dialog.is_confirmed
    assert [str(r.uri) for r in dialog.route_set] == ["sip:198.51.100.2;lr", "sip:198.51.100.1;lr"]
    assert str(dialog.remote_target) == "sip:agent7@203.0.113.40:5062;transport=udp"
    # Once confirmed the route set is fixed (§12.2): a re-INVITE's 2xx only moves the target.
    later = answer(invite, 200, record_route=("<sip:203.0.113.250;lr>",), contact="<sip:m@h2>")
    dialog.confirm(later)
    assert [str(r.uri) for r in dialog.route_set] == ["sip:198.51.100.2;lr", "sip:198.51.100.1;lr"]
    assert str(dialog.remote_target) == "sip:m@h2"


def test_strict_router_first_in_the_route_set() -> None:
    invite = our_invite()
    ok = answer(invite, 200, record_route=("<sip:198.51.100.1;lr>", "<sip:198.51.100.7;method=X>"))
    dialog = Dialog.from_uac(invite, ok)
    bye = dialog.create_request("BYE")
    # §12.2.1.1: the strict router's URI (minus parameters a Request-URI may not carry)
    # becomes the Request-URI; the remote target is appended as the last Route.
    assert str(bye.uri) == "sip:198.51.100.7"
    assert bye.headers.values("Route") == [
        "<sip:198.51.100.1;lr>",
        "<sip:agent7@203.0.113.40:5062;transport=udp>",
    ]


def test_via_transport_follows_the_next_hop() -> None:
    invite = our_invite()
    ok = answer(invite, 200, record_route=("<sip:198.51.100.1;lr;transport=tcp>",))
    dialog = Dialog.from_uac(invite, ok, local_via=via_provider)
    assert dialog.create_request("BYE").top_via.transport == "TCP"
    assert dialog.create_request("BYE", transport="tls").top_via.sent_by == ("192.0.2.10", 5061)
    assert transport_for(parse_uri("sips:a@b")) == "TLS"
    assert transport_for(parse_uri("tel:+81312345678")) == "UDP"


# -- receiving in-dialog requests (§12.2.2) -----------------------------------------------
def peer_request(dialog: Dialog, method: str, cseq: int, contact: str | None = None) -> SipRequest:
    """A request the peer sends on ``dialog`` (its From is our To and vice versa)."""
    from_tag = f";tag={dialog.remote_tag}" if dialog.remote_tag else ""
    lines = [
        f"{method} sip:tsunagu@192.0.2.10:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 203.0.113.5:5080;branch=z9hG4bKpeer" + str(cseq),
        "Max-Forwards: 70",
        f"From: <{dialog.remote_party.uri}>{from_tag}",
        f"To: <{dialog.local_party.uri}>;tag={dialog.local_tag}",
        f"Call-ID: {dialog.call_id}",
        f"CSeq: {cseq} {method}",
        *([f"Contact: {contact}"] if contact else []),
        "Content-Length: 0",
    ]
    return parse_request("\r\n".join(lines) + "\r\n\r\n")


def test_lower_cseq_is_refused_with_500_and_equal_or_higher_accepted() -> None:
    dialog, _ = uas_dialog()
    assert dialog.receive_request(peer_request(dialog, "INFO", 31338)) is None
    assert dialog.remote_cseq == 31338
    old = dialog.receive_request(peer_request(dialog, "INFO", 31337))
    assert old is not None and old.status == 500
    assert dialog.remote_cseq == 31338  # not moved back
    assert dialog.receive_request(peer_request(dialog, "INFO", 31338)) is None
    assert dialog.receive_request(peer_request(dialog, "BYE", 40000)) is None
    assert dialog.remote_cseq == 40000
    # The ACK repeats its INVITE's number: never subject to the rule.
    assert dialog.receive_request(peer_request(dialog, "ACK", 31337)) is None


def test_first_request_sets_an_empty_remote_cseq() -> None:
    invite = our_invite()
    dialog = Dialog.from_uac(invite, answer(invite, 200))
    assert dialog.remote_cseq is None
    assert dialog.receive_request(peer_request(dialog, "INFO", 7)) is None
    assert dialog.remote_cseq == 7


def test_re_invite_refreshes_the_remote_target_but_bye_does_not() -> None:
    dialog, _ = uas_dialog()
    moved = "<sip:alice@203.0.113.77:6000>"
    assert dialog.receive_request(peer_request(dialog, "BYE", 31338, contact=moved)) is None
    assert str(dialog.remote_target).startswith("sip:alice-0x55f1@")
    assert dialog.receive_request(peer_request(dialog, "INVITE", 31339, contact=moved)) is None
    assert str(dialog.remote_target) == "sip:alice@203.0.113.77:6000"
    assert str(dialog.create_request("BYE").uri) == "sip:alice@203.0.113.77:6000"
    # refresh_target=False leaves the decision to the INVITE session.
    later = peer_request(dialog, "INVITE", 31340, contact="<sip:x@203.0.113.1>")
    assert dialog.receive_request(later, refresh_target=False) is None
    assert str(dialog.remote_target) == "sip:alice@203.0.113.77:6000"


def test_2xx_to_our_target_refresh_moves_the_target_and_481_ends_the_dialog() -> None:
    invite = our_invite()
    dialog = Dialog.from_uac(invite, answer(invite, 200))
    reinvite = dialog.create_request("INVITE")
    dialog.receive_response(answer(reinvite, 200, contact="<sip:agent7@203.0.113.41>"))
    assert str(dialog.remote_target) == "sip:agent7@203.0.113.41"
    info = dialog.create_request("INFO")
    dialog.receive_response(answer(info, 481))
    assert dialog.state is DialogState.TERMINATED
    assert dialog.ended_by is TerminationReason.GONE


def test_terminated_dialog_answers_481_and_builds_nothing_new() -> None:
    dialog, _ = uas_dialog()
    dialog.terminate(TerminationReason.REMOTE_BYE)
    refused = dialog.receive_request(peer_request(dialog, "INFO", 40000))
    assert refused is not None and refused.status == 481
    with pytest.raises(SipLocalError):
        dialog.create_request("BYE")
    with pytest.raises(SipLocalError):
        dialog.confirm()  # not in the dialog table
    dialog.terminate(TerminationReason.LOCAL_HANGUP)  # idempotent, first reason kept
    assert dialog.ended_by is TerminationReason.REMOTE_BYE


def test_request_for_another_dialog_is_a_bug() -> None:
    dialog, _ = uas_dialog()
    other = peer_request(dialog, "INFO", 40000)
    other.headers.set("To", "<sip:1001@tsunagu.example>;tag=someone-else")
    with pytest.raises(SipLocalError):
        dialog.receive_request(other)


def test_prepare_response_refuses_a_foreign_tag_and_skips_100() -> None:
    invite = parse_request(BARESIP_INVITE)
    dialog = Dialog.uas(invite, "tsunagu1", OUR_CONTACT)
    trying = make_response(invite, 100)
    assert dialog.prepare_response(invite, trying).to.tag is None
    ringing = dialog.prepare_response(invite, make_response(invite, 180))
    assert ringing.to.tag == "tsunagu1" and ringing.headers.get("Contact") == OUR_CONTACT
    with pytest.raises(SipLocalError):
        dialog.prepare_response(invite, make_response(invite, 200, to_tag="other"))


# -- ACK for a 2xx (§13.2.2.4) ------------------------------------------------------------
def test_ack_for_2xx_new_branch_same_cseq_route_set_and_credentials() -> None:
    invite = our_invite(routes=("<sip:198.51.100.50;lr>",), cseq=5)
    ok = answer(invite, 200, record_route=("<sip:198.51.100.50;lr>",))
    ack = wire(build_ack_for_2xx(invite, ok))
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK" and (ack.cseq.number, ack.cseq.method) == (5, "ACK")
    assert ack.top_via.branch != invite.top_via.branch and ack.top_via.is_rfc3261_branch
    assert len(ack.vias) == 1
    assert ack.headers.values("Route") == ["<sip:198.51.100.50;lr>"]
    assert str(ack.uri) == "sip:agent7@203.0.113.40:5062;transport=udp"
    assert ack.to.tag == "agent7tag" and ack.from_.tag == "ourtag"
    assert ack.headers.get("Authorization") == invite.headers.get("Authorization")
    assert ack.body == b"" and "Contact" not in ack.headers
    with pytest.raises(SipLocalError):
        build_ack_for_2xx(invite, answer(invite, 486))


def test_ack_can_carry_the_answer_to_an_offer_in_the_2xx() -> None:
    invite = our_invite()
    ok = answer(invite, 200, body=SDP)
    ack = build_ack_for_2xx(invite, ok, body=b"v=0\r\n", content_type="application/sdp")
    assert ack.body == b"v=0\r\n" and ack.headers.get("Content-Type") == "application/sdp"


def test_build_invite_is_a_valid_dialog_creating_request() -> None:
    invite = our_invite(routes=("<sip:198.51.100.50;lr>",))
    assert invite.method == "INVITE" and invite.from_.tag == "ourtag" and invite.to.tag is None
    assert invite.headers.get("Max-Forwards") == "70"
    assert invite.contacts == [NameAddress.parse(OUR_CONTACT)]
    assert str(next_hop(invite)) == "sip:198.51.100.50;lr"
    generated = build_invite(
        SipUri("203.0.113.40", "agent7"),
        from_=NameAddress.parse("<sip:queue@tsunagu.example>"),
        to=NameAddress.parse("<sip:agent7@tsunagu.example>"),
        local_contact=NameAddress.parse(OUR_CONTACT),
        sent_by=("192.0.2.10", 5060),
    )
    again = parse_request(bytes(generated))
    assert again.from_.tag and again.call_id.endswith("@192.0.2.10")
    assert 0 < again.cseq.number < 2**31


# -- the dialog table (§12.2.2) -----------------------------------------------------------
def test_table_matches_requests_responses_and_pending_invites() -> None:
    table: DialogTable[str, str] = DialogTable()
    uas, _ = uas_dialog()
    invite = our_invite()
    uac = Dialog.from_uac(invite, answer(invite, 180))
    table.add(uas, "inbound-leg")
    table.add(uac, "agent-leg")
    table.add_pending(("leg-b-1@192.0.2.10", "ourtag"), "agent-invite")
    assert table.match_request(peer_request(uas, "BYE", 40000)) == "inbound-leg"
    assert table.match_request(peer_request(uac, "BYE", 1)) == "agent-leg"
    forked_ok = answer(invite, 200, tag="another-phone")
    assert table.match_response(forked_ok) is None  # no dialog for that tag yet
    assert table.match_pending(forked_ok) == "agent-invite"
    assert table.match_response(answer(invite, 200)) == "agent-leg"
    assert table.counts() == {"early": 1, "confirmed": 1, "terminated": 0, "pending_invites": 1}
    uas.terminate(TerminationReason.REMOTE_BYE)
    assert table.sweep_terminated() == ["inbound-leg"]
    assert table.counts()["confirmed"] == 0 and len(table) == 1
    assert table.remove(uac.id) == "agent-leg" and table.remove(uac.id) is None
    assert table.remove_pending(("leg-b-1@192.0.2.10", "ourtag")) == "agent-invite"
    assert table.counts() == {"early": 0, "confirmed": 0, "terminated": 0, "pending_invites": 0}


def test_table_refuses_a_second_dialog_with_the_same_id() -> None:
    table: DialogTable[int, int] = DialogTable()
    first, _ = uas_dialog()
    second, _ = uas_dialog()
    table.add(first, 1)
    table.add(first, 2)  # same dialog: value replaced
    assert table.get(first.id) == 2
    with pytest.raises(SipLocalError):
        table.add(second, 3)
    table.add_pending(("c", "t"), 1)
    with pytest.raises(SipLocalError):
        table.add_pending(("c", "t"), 2)


def test_unknown_dialog_gets_481_except_ack_and_untagged_is_out_of_dialog() -> None:
    dialog, _ = uas_dialog()
    bye = peer_request(dialog, "BYE", 40000)
    table: DialogTable[str, str] = DialogTable()
    assert table.match_request(bye) is None
    refused = unknown_dialog_response(bye)
    assert refused is not None and refused.status == 481
    assert unknown_dialog_response(peer_request(dialog, "ACK", 40000)) is None
    assert request_dialog_id(parse_request(BARESIP_INVITE)) is None
    assert request_dialog_id(bye) == dialog.id


def test_rfc2543_peer_without_from_tag() -> None:
    raw = BARESIP_INVITE.replace(b";tag=a94c0b6e8b7d11", b"")
    dialog, _ = uas_dialog(parse_request(raw))
    assert dialog.remote_tag == ""
    bye = wire(dialog.create_request("BYE"))
    assert bye.to.tag is None
    table: DialogTable[str, str] = DialogTable()
    table.add(dialog, "legacy")
    request = peer_request(dialog, "BYE", 40000)
    assert request.from_.tag is None
    assert table.match_request(request) == "legacy"
