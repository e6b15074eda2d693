"""Unit tests of the SIP message wire type: parse, typed views, serialisation, framing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conformance import EXPECTED, corpus_files
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.headers import NameAddress, Via
from tsunagu.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
    response_for_parse_error,
)
from tsunagu.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri

REGISTER = (
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bK-abc\r\n"
    b"Max-Forwards: 70\r\n"
    b'f: "Aoki" <sip:1001@127.0.0.1>;tag=f1\r\n'
    b"t: <sip:1001@127.0.0.1>\r\n"
    b"i: reg-1@10.0.0.5\r\n"
    b"CSeq: 7 REGISTER\r\n"
    b"m: <sip:1001@10.0.0.5:5062;transport=udp>;expires=120, <sip:1001@10.0.0.5:5063>\r\n"
    b"Expires: 3600\r\n"
    b"l: 0\r\n\r\n"
)


def test_register_typed_views() -> None:
    msg = parse_message(REGISTER)
    assert isinstance(msg, SipRequest)
    assert msg.method == "REGISTER"
    assert msg.call_id == "reg-1@10.0.0.5"
    assert msg.cseq.number == 7 and msg.cseq.method == "REGISTER"
    assert msg.from_.display_name == "Aoki" and msg.from_.tag == "f1"
    assert msg.to.tag is None
    via = msg.top_via
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "10.0.0.5",
        5062,
        "z9hG4bK-abc",
    )
    assert "rport" in via.params and via.params["rport"] is None
    contacts = msg.contacts
    assert contacts is not None and len(contacts) == 2
    first = contacts[0].uri
    assert isinstance(first, SipUri) and first.port == 5062 and first.transport == "UDP"
    assert contacts[0].params["expires"] == "120"
    assert msg.expires() == 3600


def test_serialise_round_trip_uses_full_names_and_recomputes_length() -> None:
    msg = parse_message(REGISTER)
    msg.body = b"hello"
    again = parse_message(bytes(msg))
    assert isinstance(again, SipRequest)
    assert again.body == b"hello"
    assert again.headers.get("Content-Length") == "5"
    assert b"\r\nCall-ID: reg-1@10.0.0.5\r\n" in bytes(msg)
    assert again.contacts == msg.contacts


def test_header_folding_and_lists_across_lines() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP h1;branch=z9hG4bK1,\r\n SIP/2.0/TCP h2;branch=z9hG4bK2\r\n"
        b"Via: SIP/2.0/UDP h3;branch=z9hG4bK3\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\n"
        b"Call-ID: c\r\nCSeq: 1 OPTIONS\r\nSupported: path,\r\n\toutbound\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert [v.host for v in msg.vias] == ["h1", "h2", "h3"]
    assert msg.headers.get_list("Supported") == ["path", "outbound"]


def test_udp_trailing_octets_ignored_and_missing_length_means_rest() -> None:
    base = REGISTER.replace(b"l: 0\r\n", b"")
    assert parse_message(base + b"abc").body == b"abc"
    assert parse_message(REGISTER + b"junk after").body == b""


def test_stream_requires_content_length() -> None:
    with pytest.raises(SipParseError, match="Content-Length"):
        parse_message(REGISTER.replace(b"l: 0\r\n", b""), stream=True)


def test_oversized_message_is_513() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(REGISTER + b"x" * 70_000)
    assert info.value.status == 513


def test_make_response_copies_headers_and_adds_to_tag() -> None:
    request = parse_message(REGISTER)
    assert isinstance(request, SipRequest)
    response = make_response(request, 200, to_tag="tt", extra=[("Expires", "60")])
    again = parse_message(bytes(response))
    assert isinstance(again, SipResponse)
    assert again.status == 200 and again.reason == "OK"
    assert again.to.tag == "tt"
    assert again.call_id == request.call_id and again.cseq == request.cseq
    assert again.top_via.branch == "z9hG4bK-abc"
    assert make_response(request, 100, to_tag="tt").headers.get("To") == "<sip:1001@127.0.0.1>"


def test_parse_error_keeps_headers_for_the_answer() -> None:
    bad = REGISTER.replace(b"CSeq: 7 REGISTER", b"CSeq: 7 INVITE")
    with pytest.raises(SipParseError) as info:
        parse_message(bad)
    answer = response_for_parse_error(info.value)
    assert answer is not None and answer.status == 400
    assert "CSeq" in answer.reason
    assert answer.headers.get("Call-ID") == "reg-1@10.0.0.5"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("sip:1001@127.0.0.1:5060;transport=tcp", SipUri),
        ("sips:alice@example.com", SipUri),
        ("tel:+81312345678;phone-context=+81", TelUri),
        ("http://www.example.com", AbsoluteUri),
    ],
)
def test_uri_kinds(text: str, kind: type) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, kind)
    assert str(uri).lower() == text.lower()


def test_uri_escapes_decoded_and_reencoded() -> None:
    uri = SipUri.parse("sip:%75se%72@example.com")
    assert uri.user == "user"
    odd = SipUri.parse("sip:I%20have%20spaces@example.net")
    assert odd.user == "I have spaces"
    assert str(odd) == "sip:I%20have%20spaces@example.net"
    semi = SipUri.parse("sip:user;par=u%40example.net@example.com")
    assert semi.user == "user;par=u@example.net" and semi.host == "example.com"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@host",
        "sip:user@",
        "sip:user@host:99999",
        "sip:a b@host",
        "sip:u@h;;x",
        "sip:u@%zz",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_via_with_lws_everywhere() -> None:
    via = Via.parse(" SIP  /   2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8 ")
    assert (via.transport, via.host, via.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")
    assert not Via.parse("SIP/2.0/UDP h;branch=z9hG4bK").is_rfc3261_branch


def test_name_address_forms() -> None:
    quoted = NameAddress.parse('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert quoted.display_name == 'J Rosenberg \\"' and quoted.tag == "98asjd8"
    bare = NameAddress.parse("sip:+19725552222@gw1.example.net;unknownparam")
    assert "unknownparam" in bare.params
    assert NameAddress.parse("caller<sip:caller@example.com>;tag=323").display_name == "caller"
    assert str(NameAddress.parse('"Mr X" <sip:x@y>;tag=1')) == '"Mr X" <sip:x@y>;tag=1'


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_rfc4475_parse_level(path: object) -> None:
    """Each torture message is accepted or refused by the parser as MANIFEST.md says."""
    from pathlib import Path

    assert isinstance(path, Path)
    expected = EXPECTED[path.name]
    data = path.read_bytes()
    if expected in ("parse", "parse-response"):
        msg = parse_message(data)
        assert isinstance(msg, SipResponse) == (expected == "parse-response")
    elif expected == "drop":
        with pytest.raises(SipParseError):
            parse_message(data)
    else:
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.status == expected


def test_corpus_complete() -> None:
    assert len(corpus_files()) == 49 == len(EXPECTED)


def test_torture_values_exposed() -> None:
    """RFC 4475 lists what a parser must see in the odd-but-legal messages."""
    by_name = {p.name: p.read_bytes() for p in corpus_files()}
    wsinv = parse_message(by_name["wsinv.dat"])
    assert wsinv.max_forwards == 68 and wsinv.cseq.number == 9
    assert len(wsinv.vias) == 3 and wsinv.vias[1].transport == "TCP"
    assert wsinv.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    esc01 = parse_message(by_name["esc01.dat"])
    assert isinstance(esc01, SipRequest) and isinstance(esc01.uri, SipUri)
    assert esc01.uri.user == "sips:user@example.com"
    intmeth = parse_message(by_name["intmeth.dat"])
    assert (
        isinstance(intmeth, SipRequest)
        and intmeth.method == "!interesting-Method0123456789_*+`.%indeed'~"
    )
    transports = parse_message(by_name["transports.dat"])
    assert [v.transport for v in transports.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    unksm2 = parse_message(by_name["unksm2.dat"])
    assert isinstance(unksm2.to.uri, AbsoluteUri)
    dblreq = parse_message(by_name["dblreq.dat"])
    assert isinstance(dblreq, SipRequest) and dblreq.method == "REGISTER" and dblreq.body == b""


def test_stream_framer_splits_and_pings() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r\n" + REGISTER[:40])
    assert list(framer.messages()) == []
    framer.feed(REGISTER[40:] + REGISTER)
    assert list(framer.messages()) == [REGISTER, REGISTER]
    assert framer.keepalive_pings == 1


def test_stream_framer_refuses_unframeable() -> None:
    framer = StreamFramer(max_size=2000)
    framer.feed(REGISTER.replace(b"l: 0\r\n", b""))
    with pytest.raises(SipParseError):
        list(framer.messages())
    big = StreamFramer(max_size=2000)
    big.feed(REGISTER.replace(b"l: 0", b"l: 5000"))
    with pytest.raises(SipParseError) as info:
        list(big.messages())
    assert info.value.status == 513


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


_LINES = st.sampled_from(
    [
        b"INVITE sip:a@b SIP/2.0",
        b"SIP/2.0 200 OK",
        b"Via: SIP/2.0/UDP h;branch=z9hG4bKx",
        b"Via: ;;,",
        b"From: <sip:a@b>;tag=1",
        b'From: "x <sip:a@b>',
        b"To: sip:a@b",
        b"Call-ID: x",
        b"CSeq: 1 INVITE",
        b"CSeq: 99999999999 INVITE",
        b"Max-Forwards: 300",
        b"Content-Length: 3",
        b"Content-Length: -1",
        b"l: 0",
        b"m: *",
        b"Contact: <sip:%zz@h>",
        b" folded",
        b"",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINES, max_size=12), st.binary(max_size=20))
def test_structured_garbage_only_raises_parse_error(lines: list[bytes], body: bytes) -> None:
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    # Lazily parsed views fail only with the parser's own error too.
    for view in ("contacts", "max_forwards", "content_type"):
        with contextlib.suppress(SipParseError):
            getattr(msg, view)
    bytes(msg)
