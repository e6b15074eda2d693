"""The Replaces header (RFC 3891 §6.1), on its own and URL-escaped inside a Refer-To URI
the way phones send an attended transfer (RFC 5589 §7)."""

from __future__ import annotations

import pytest

from tsunagu.sip.dialog import DialogId
from tsunagu.sip.errors import SipParseError
from tsunagu.sip.headers import NameAddress
from tsunagu.sip.replaces import Replaces
from tsunagu.sip.uri import SipUri


def test_rfc3891_example_parses_and_renders_back() -> None:
    text = "98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff"
    replaces = Replaces.parse(text)
    assert replaces.call_id == "98732@sip.example.com"
    assert (replaces.to_tag, replaces.from_tag) == ("ff87ff", "r33th4x0r")
    assert not replaces.early_only
    assert bytes(replaces) == b"98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r"
    assert Replaces.parse(str(replaces)) == replaces


def test_the_recipient_keys_the_dialog_with_to_tag_as_its_local_tag() -> None:
    replaces = Replaces.parse("abc;to-tag=ours;from-tag=theirs")
    assert replaces.dialog_id == DialogId("abc", "ours", "theirs")


def test_early_only_and_unknown_parameters_are_kept() -> None:
    replaces = Replaces.parse("abc ; TO-TAG = 1 ; from-tag=2;early-only;x-foo=bar;flag")
    assert replaces.early_only
    assert replaces.params == (("x-foo", "bar"), ("flag", None))
    assert str(replaces) == "abc;to-tag=1;from-tag=2;early-only;x-foo=bar;flag"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",  # no tags: names no dialog (§3)
        "abc;to-tag=1",
        "abc;from-tag=2",
        "abc;to-tag=1;to-tag=3;from-tag=2",  # exactly one of each (§3)
        "abc;to-tag=;from-tag=2",
        "abc;to-tag;from-tag=2",
        "abc;to-tag=1;from-tag=2;early-only=yes",
        "ab c;to-tag=1;from-tag=2",
        "a@b@c;to-tag=1;from-tag=2",
        "abc;to-tag=1;from-tag=2;;",
        "abc;to-tag=a b;from-tag=2",
    ],
)
def test_malformed_values_are_refused_with_400(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        Replaces.parse(text)
    assert info.value.status == 400


def test_escaped_in_a_refer_to_uri_as_pjsip_sends_it() -> None:
    refer_to = NameAddress.parse(
        "<sip:1002@127.0.0.1:5060?Require=replaces&Replaces=5f2a-91%40host%3Bto-tag%3Dz9x"
        "%3Bfrom-tag%3DAb.12>",
        what="Refer-To",
    )
    uri = refer_to.uri
    assert isinstance(uri, SipUri) and uri.user == "1002"
    replaces = Replaces.from_uri(uri)
    assert replaces == Replaces("5f2a-91@host", "z9x", "Ab.12")


def test_header_name_in_a_uri_is_case_insensitive_and_optional() -> None:
    assert Replaces.from_uri(SipUri.parse("sip:1002@h?replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2"))
    assert Replaces.from_uri(SipUri.parse("sip:1002@h")) is None


def test_rendered_into_a_uri_header_it_is_escaped_and_reads_back() -> None:
    replaces = Replaces("c@h", "t1", "f2", early_only=True)
    uri = SipUri("example.com", user="1002", headers={"Replaces": str(replaces)})
    text = str(uri)
    assert "Replaces=c%40h%3Bto-tag%3Dt1%3Bfrom-tag%3Df2%3Bearly-only" in text
    assert Replaces.from_uri(SipUri.parse(text)) == replaces
