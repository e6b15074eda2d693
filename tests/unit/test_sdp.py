"""SDP (RFC 4566) parsing/serialising and audio offer/answer (RFC 3264)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsunagu.media.rtp import MediaLocalError
from tsunagu.media.sdp import (
    PCMA,
    PCMU,
    Attribute,
    Codec,
    Connection,
    Direction,
    LocalSdpSession,
    MediaDescription,
    Origin,
    RtpMap,
    SdpNegotiationError,
    SdpParseError,
    SessionDescription,
    accept_answer,
    build_offer,
    negotiate_answer,
    offers_hold,
)


def sdp(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()


# Shaped after what these peers send (baresip 1.x, pjsua 2.x, SIPp 3.6 uac / pcap play).
BARESIP_OFFER = sdp(
    "v=0",
    "o=- 1781410931 1462291468 IN IP4 192.0.2.10",
    "s=-",
    "c=IN IP4 192.0.2.10",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 10602 RTP/AVP 9 0 8 101",
    "b=AS:88",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=rtcp-rsize",
    "a=ptime:20",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:1424516346 cname:f8d0a1c2-7b31-4c1d-9a5e-0c1f3a2b4d5e",
)
PJSUA_OFFER = sdp(
    "v=0",
    "o=- 3912345678 3912345678 IN IP4 127.0.0.1",
    "s=pjmedia",
    "b=AS:84",
    "t=0 0",
    "a=X-nat:0",
    "m=audio 4000 RTP/AVP 96 97 98 99 3 0 8 9 120 121 122",
    "c=IN IP4 127.0.0.1",
    "b=TIAS:64000",
    "a=rtcp:4001 IN IP4 127.0.0.1",
    "a=sendrecv",
    "a=rtpmap:96 speex/16000",
    "a=rtpmap:97 speex/8000",
    "a=rtpmap:98 speex/32000",
    "a=rtpmap:99 iLBC/8000",
    "a=fmtp:99 mode=30",
    "a=rtpmap:120 telephone-event/16000",
    "a=fmtp:120 0-16",
    "a=rtpmap:121 telephone-event/8000",
    "a=fmtp:121 0-16",
    "a=rtpmap:122 telephone-event/32000",
    "a=fmtp:122 0-16",
    "a=ssrc:1198286543 cname:6c2f1a0b3e7d4c58",
)
SIPP_UAC_OFFER = sdp(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
)
SIPP_PCAP_OFFER = sdp(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6002 RTP/AVP 8 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-11,16",
)


def fixed_session(address: str = "203.0.113.5") -> LocalSdpSession:
    return LocalSdpSession(address, session_id="4242")


# ---------------------------------------------------------------------------- parsing


def test_parse_baresip_offer() -> None:
    offer = SessionDescription.parse(BARESIP_OFFER)
    assert offer.origin == Origin("-", "1781410931", 1462291468, "192.0.2.10")
    assert offer.connection == Connection("192.0.2.10")
    assert offer.attributes == [Attribute("tool", "baresip 1.0.0")]
    (audio,) = offer.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 10602, "RTP/AVP")
    assert audio.payload_types() == [9, 0, 8, 101]
    assert audio.bandwidths == ["AS:88"]
    assert audio.rtpmap(101) == RtpMap(101, "telephone-event", 8000)
    assert audio.fmtp(101) == "0-15"
    assert audio.ptime == 20
    assert audio.direction is Direction.SENDRECV
    assert audio.attribute("rtcp-rsize") == ""
    assert audio.attribute("missing") is None
    # Every attribute is kept, in order.
    assert [a.name for a in audio.attributes] == [
        "rtpmap",
        "rtpmap",
        "rtpmap",
        "rtpmap",
        "fmtp",
        "rtcp-rsize",
        "ptime",
        "sendrecv",
        "label",
        "ssrc",
    ]


@pytest.mark.parametrize("body", [BARESIP_OFFER, PJSUA_OFFER, SIPP_UAC_OFFER, SIPP_PCAP_OFFER])
def test_real_offers_round_trip_byte_for_byte(body: bytes) -> None:
    assert bytes(SessionDescription.parse(body)) == body


def test_lf_only_and_trailing_blank_lines_are_accepted() -> None:
    text = SIPP_UAC_OFFER.decode().replace("\r\n", "\n") + "\n\n"
    parsed = SessionDescription.parse(text)
    assert bytes(parsed) == SIPP_UAC_OFFER


def test_static_payload_types_need_no_rtpmap() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 5004 RTP/AVP 18 8 0",
        )
    )
    audio = offer.media[0]
    assert audio.rtpmap(0) == RtpMap(0, "PCMU", 8000)
    assert audio.rtpmap(18) == RtpMap(18, "G729", 8000)
    assert audio.rtpmap(96) is None
    answer = negotiate_answer(offer, "203.0.113.5", 30000)
    assert answer.media.codec == PCMA


def test_session_and_media_level_connection_and_direction() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "a=sendonly",
            "m=audio 5004 RTP/AVP 0",
            "m=audio 5006 RTP/AVP 0",
            "c=IN IP4 10.0.0.2",
            "a=recvonly",
        )
    )
    first, second = offer.media
    assert offer.direction is Direction.SENDONLY
    assert offer.effective_direction(first) is Direction.SENDONLY
    assert offer.effective_direction(second) is Direction.RECVONLY
    assert offer.effective_connection(first) == Connection("10.0.0.1")
    assert offer.effective_connection(second) == Connection("10.0.0.2")


def test_other_lines_are_kept_in_rfc_order() -> None:
    body = sdp(
        "v=0",
        "o=alice 2890844526 2890844526 IN IP6 2001:db8::1",
        "s=Call",
        "i=info",
        "u=http://example.com/",
        "e=a@example.com",
        "p=+81 3 0000 0000",
        "c=IN IP6 2001:db8::1",
        "b=CT:128",
        "t=2873397496 2873404696",
        "r=7d 1h 0 25h",
        "z=2882844526 -1h",
        "k=prompt",
        "a=recvonly",
        "m=audio 49170/2 RTP/AVP 0",
        "i=voice",
        "c=IN IP6 2001:db8::2",
        "b=AS:64",
        "k=prompt",
        "a=ptime:30.0",
        "a=maxptime:40",
    )
    parsed = SessionDescription.parse(body)
    assert bytes(parsed) == body
    assert parsed.timing == [("t", "2873397496 2873404696"), ("r", "7d 1h 0 25h")]
    audio = parsed.media[0]
    assert (audio.port, audio.port_count, audio.title, audio.key) == (49170, 2, "voice", "prompt")
    assert (audio.ptime, audio.maxptime) == (30, 40)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "start with a v= line"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\n", "start with a v= line"),
        (sdp("v=1", "o=- 1 1 IN IP4 1.2.3.4", "s=-"), "version '1'"),
        (sdp("v=0", "s=-"), "no o= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4"), "no s= line"),
        (sdp("v=0", "o=- 1 1 IN IP4", "s=-"), "six"),
        (sdp("v=0", "o=- x 1 IN IP4 1.2.3.4", "s=-"), "session id"),
        (sdp("v=0", "o=- 1 +1 IN IP4 1.2.3.4", "s=-"), "version"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "o=- 1 1 IN IP4 1.2.3.4", "s=-"), "more than one o="),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "s=x"), "more than one session-level s="),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "x=1"), "unexpected SDP line type x="),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "v=0"), "unexpected SDP line type v="),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "r=1"), "r= line without"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "c=IN IP4"), "three"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "garbage"), "not '<type>=<value>'"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "A=b"), "not '<type>=<value>'"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "a="), "no attribute name"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "a=x\ry"), "CR or NUL"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "m=audio"), "needs '<media>"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "m=audio 70000 RTP/AVP 0"), "exceeds"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "m=audio x RTP/AVP 0"), "port"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "m=audio ٣ RTP/AVP 0"), "port"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "m=audio 1/x RTP/AVP 0"), "port count"),
        (sdp("v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "m=audio 1 RTP/AVP 0", "s=x"), "inside m="),
        (
            sdp(
                "v=0",
                "o=- 1 1 IN IP4 1.2.3.4",
                "s=-",
                "m=audio 1 RTP/AVP 0",
                "c=IN IP4 a",
                "c=IN IP4 b",
            ),
            "more than one c=",
        ),
        (b"v=0\r\no=\xff\r\n", "not UTF-8"),
    ],
)
def test_malformed_descriptions(body: bytes, message: str) -> None:
    with pytest.raises(SdpParseError, match=message) as caught:
        SessionDescription.parse(body)
    assert caught.value.status == 400


def test_malformed_attributes_fail_when_read() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 1.2.3.4",
            "s=-",
            "m=audio 1 RTP/AVP 96 x",
            "a=rtpmap:96 opus",
            "a=ptime:abc",
            "a=rtcp:99999",
        )
    )
    audio = offer.media[0]
    for read in (lambda: audio.rtpmap(96), lambda: audio.ptime, lambda: audio.rtcp_port):
        with pytest.raises(SdpParseError):
            read()
    with pytest.raises(SdpParseError):
        audio.payload_types()


sdp_letters = st.sampled_from("vosiuepcbtrzkam" + "xV ")
sdp_lines = st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, v: f"{k}={v}", sdp_letters, st.text(max_size=30)),
)


@given(st.lists(sdp_lines, max_size=12), st.sampled_from(["\r\n", "\n"]))
def test_garbage_raises_only_parse_error(lines: list[str], newline: str) -> None:
    text = newline.join(["v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", *lines])
    try:
        parsed = SessionDescription.parse(text)
    except SdpParseError:
        return
    # Whatever parses must serialise and parse back to the same thing.
    assert SessionDescription.parse(bytes(parsed)) == parsed
    with contextlib.suppress(SdpParseError, SdpNegotiationError):
        negotiate_answer(parsed, "203.0.113.5", 30000, session=fixed_session())


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(SdpParseError):
        SessionDescription.parse(text)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(SdpParseError):
        SessionDescription.parse(data)


tokens = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8)
values = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=20
)
media_sections = st.builds(
    MediaDescription,
    media=st.sampled_from(["audio", "video", "image"]),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["RTP/AVP", "RTP/SAVP", "udptl"]),
    formats=st.lists(st.integers(0, 127).map(str), max_size=4),
    port_count=st.none() | st.integers(1, 4),
    connection=st.none() | st.builds(Connection, tokens),
    attributes=st.lists(
        st.builds(Attribute, tokens.filter(lambda t: ":" not in t), st.none() | values),
        max_size=4,
    ),
)
descriptions = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin, tokens, st.integers(0, 10**12).map(str), st.integers(0, 10**12), tokens
    ),
    session_name=values,
    connection=st.none() | st.builds(Connection, tokens),
    attributes=st.lists(st.builds(Attribute, tokens.filter(lambda t: ":" not in t)), max_size=3),
    media=st.lists(media_sections, max_size=3),
)


@given(descriptions)
def test_round_trip(description: SessionDescription) -> None:
    assert SessionDescription.parse(bytes(description)) == description


# ---------------------------------------------------------------------------- answering


def test_answer_to_baresip_picks_offerer_order() -> None:
    offer = SessionDescription.parse(BARESIP_OFFER)
    answer = negotiate_answer(offer, "203.0.113.5", 30000, session=fixed_session())
    media = answer.media
    # G722 is first but unsupported; PCMU is the first the offerer listed that we take.
    assert media.codec == Codec("PCMU", 8000, 0)
    assert media.telephone_event == 101
    assert (media.remote_address, media.remote_port, media.remote_rtcp_port) == (
        "192.0.2.10",
        10602,
        10603,
    )
    assert media.direction is Direction.SENDRECV
    assert not media.remote_hold
    assert media.ptime == 20
    assert bytes(answer.sdp) == sdp(
        "v=0",
        "o=tsunagu 4242 1 IN IP4 203.0.113.5",
        "s=Tsunagu",
        "c=IN IP4 203.0.113.5",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_answer_to_pjsua_skips_speex_and_picks_8khz_events() -> None:
    answer = negotiate_answer(SessionDescription.parse(PJSUA_OFFER), "127.0.0.1", 31000)
    media = answer.media
    assert media.codec == PCMU  # after speex, iLBC and GSM (3), which we do not speak
    assert media.telephone_event == 121  # the 8 kHz one, matching PCMU's clock
    assert media.events == "0-16"
    assert media.remote_rtcp_port == 4001  # a=rtcp (RFC 3605)
    audio = answer.sdp.media[0]
    assert audio.formats == ["0", "121"]
    assert audio.fmtp(121) == "0-16"


def test_answer_to_sipp_offers() -> None:
    plain = negotiate_answer(SessionDescription.parse(SIPP_UAC_OFFER), "127.0.0.1", 32000)
    assert plain.media.codec == PCMU
    assert plain.media.telephone_event is None
    assert plain.sdp.media[0].formats == ["0"]
    pcap = negotiate_answer(SessionDescription.parse(SIPP_PCAP_OFFER), "127.0.0.1", 32002)
    assert pcap.media.codec == PCMA
    assert pcap.media.telephone_event == 101
    assert pcap.sdp.media[0].fmtp(101) == "0-11,16"  # the events both sides know


def test_supported_order_does_not_override_offerer_order() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 5004 RTP/AVP 8 0",
        )
    )
    answer = negotiate_answer(offer, "203.0.113.5", 30000, supported=[PCMU, PCMA])
    assert answer.media.codec == PCMA
    only_ulaw = negotiate_answer(offer, "203.0.113.5", 30000, supported=[PCMU])
    assert only_ulaw.media.codec == PCMU


def test_rtpmap_names_are_case_insensitive_and_dynamic_types_work() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 5004 RTP/AVP 96 97",
            "a=rtpmap:96 pcma/8000/1",
            "a=rtpmap:97 Telephone-Event/8000",
        )
    )
    answer = negotiate_answer(offer, "203.0.113.5", 30000)
    assert answer.media.codec == Codec("PCMA", 8000, 96)
    assert answer.media.telephone_event == 97
    assert answer.media.events == "0-15"  # no fmtp means 0-15 (RFC 4733 §2.4.1)
    assert answer.sdp.media[0].formats == ["96", "97"]
    assert answer.sdp.media[0].rtpmap(96) == RtpMap(96, "PCMA", 8000)


def test_a_malformed_rtpmap_only_loses_its_own_format() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 5004 RTP/AVP 96 0",
            "a=rtpmap:96 opus",
        )
    )
    assert negotiate_answer(offer, "203.0.113.5", 30000).media.codec == PCMU


def test_stereo_pcmu_is_not_acceptable() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 5004 RTP/AVP 96",
            "a=rtpmap:96 PCMU/8000/2",
        )
    )
    with pytest.raises(SdpNegotiationError):
        negotiate_answer(offer, "203.0.113.5", 30000)


def test_telephone_event_can_be_declined() -> None:
    answer = negotiate_answer(
        SessionDescription.parse(BARESIP_OFFER), "203.0.113.5", 30000, telephone_event=False
    )
    assert answer.media.telephone_event is None
    assert answer.sdp.media[0].formats == ["0"]


def test_ptime_is_kept_and_bounded_by_maxptime() -> None:
    def offer(*extra: str) -> SessionDescription:
        return SessionDescription.parse(
            sdp(
                "v=0",
                "o=- 1 1 IN IP4 10.0.0.1",
                "s=-",
                "c=IN IP4 10.0.0.1",
                "t=0 0",
                "m=audio 5004 RTP/AVP 0",
                *extra,
            )
        )

    assert negotiate_answer(offer("a=ptime:30"), "1.1.1.1", 2).media.ptime == 30
    assert negotiate_answer(offer(), "1.1.1.1", 2).media.ptime == 20
    assert negotiate_answer(offer(), "1.1.1.1", 2, ptime=40).media.ptime == 40
    assert negotiate_answer(offer("a=maxptime:10"), "1.1.1.1", 2).media.ptime == 10
    answer = negotiate_answer(offer("a=ptime:30"), "1.1.1.1", 2)
    assert answer.sdp.media[0].ptime == 30


def test_non_audio_streams_are_rejected_with_port_zero() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=video 5010 RTP/AVP 96",
            "a=rtpmap:96 H264/90000",
            "m=audio 5004 RTP/AVP 0",
            "m=audio 5006 RTP/AVP 8",
            "m=image 5020 udptl t38",
        )
    )
    answer = negotiate_answer(offer, "203.0.113.5", 30000)
    lines = [m.media_line() for m in answer.sdp.media]
    # RFC 3264 §6: one m= line per offered stream, in order; rejected ones on port 0.
    assert lines == [
        "video 0 RTP/AVP 96",
        "audio 30000 RTP/AVP 0",
        "audio 0 RTP/AVP 8",
        "image 0 udptl t38",
    ]
    assert answer.media.media_index == 1
    assert answer.sdp.media[0].attributes == []


def test_disabled_audio_stream_is_skipped() -> None:
    offer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 0 RTP/AVP 0",
            "m=audio 5006 RTP/AVP 8",
        )
    )
    answer = negotiate_answer(offer, "203.0.113.5", 30000)
    assert answer.media.media_index == 1
    assert [m.port for m in answer.sdp.media] == [0, 30000]


@pytest.mark.parametrize(
    ("media_lines", "reason"),
    [
        (["m=audio 5004 RTP/AVP 18 4", "a=rtpmap:18 G729/8000"], "G729/8000, G723/8000"),
        (["m=audio 5004 RTP/AVP 96", "a=rtpmap:96 opus/48000/2"], "opus/48000"),
        (["m=audio 5004 RTP/SAVP 0"], "RTP/SAVP"),
        (["m=video 5004 RTP/AVP 96"], "no audio stream offered"),
        (["m=audio 0 RTP/AVP 0"], "port 0"),
        ([], "no audio stream offered"),
    ],
)
def test_nothing_acceptable_is_488_naming_the_offer(media_lines: list[str], reason: str) -> None:
    offer = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0", *media_lines)
    )
    with pytest.raises(SdpNegotiationError) as caught:
        negotiate_answer(offer, "203.0.113.5", 30000)
    assert caught.value.status == 488
    assert reason in caught.value.reason


def test_audio_without_any_connection_line_is_malformed() -> None:
    offer = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0", "m=audio 5004 RTP/AVP 0")
    )
    with pytest.raises(SdpParseError):
        negotiate_answer(offer, "203.0.113.5", 30000)


# ---------------------------------------------------------------------------- hold, re-offers


def reoffer(version: int, *extra: str, address: str = "192.0.2.10") -> SessionDescription:
    return SessionDescription.parse(
        sdp(
            "v=0",
            f"o=- 1781410931 {version} IN IP4 192.0.2.10",
            "s=-",
            f"c=IN IP4 {address}",
            "t=0 0",
            "m=audio 10602 RTP/AVP 0 101",
            "a=rtpmap:101 telephone-event/8000",
            *extra,
        )
    )


@pytest.mark.parametrize(
    ("extra", "address", "answered", "held"),
    [
        ((), "192.0.2.10", Direction.SENDRECV, False),
        (("a=sendonly",), "192.0.2.10", Direction.RECVONLY, True),
        (("a=inactive",), "192.0.2.10", Direction.INACTIVE, True),
        (("a=recvonly",), "192.0.2.10", Direction.SENDONLY, False),
        ((), "0.0.0.0", Direction.RECVONLY, True),  # RFC 2543-style hold (RFC 3264 §8.4)
        (("a=sendonly",), "0.0.0.0", Direction.RECVONLY, True),
    ],
)
def test_direction_is_mirrored(
    extra: tuple[str, ...], address: str, answered: Direction, held: bool
) -> None:
    answer = negotiate_answer(reoffer(2, *extra, address=address), "203.0.113.5", 30000)
    assert answer.media.direction is answered
    assert answer.media.remote_hold is held
    assert answer.sdp.media[0].direction is answered
    assert offers_hold(reoffer(2, *extra, address=address)) is held


def test_local_direction_combines_with_the_offer() -> None:
    # We hold the peer (we only send music on hold) while it offers sendrecv.
    answer = negotiate_answer(reoffer(2), "203.0.113.5", 30000, direction=Direction.SENDONLY)
    assert answer.media.direction is Direction.SENDONLY
    both_hold = negotiate_answer(
        reoffer(3, "a=sendonly"), "203.0.113.5", 30000, direction=Direction.SENDONLY
    )
    assert both_hold.media.direction is Direction.INACTIVE


def test_hold_and_resume_reoffers_keep_one_local_session() -> None:
    session = fixed_session()
    first = negotiate_answer(reoffer(1), "203.0.113.5", 30000, session=session)
    refresh = negotiate_answer(reoffer(1), "203.0.113.5", 30000, session=session)
    held = negotiate_answer(reoffer(2, "a=sendonly"), "203.0.113.5", 30000, session=session)
    resumed = negotiate_answer(reoffer(3), "203.0.113.5", 30000, session=session)
    versions = [a.sdp.origin.version for a in (first, refresh, held, resumed)]
    # RFC 3264 §8: unchanged description, same version; each change, plus one.
    assert versions == [1, 1, 2, 3]
    assert all(a.sdp.origin.is_same_session(first.sdp.origin) for a in (refresh, held, resumed))
    # And the peer's re-offers were the same session too.
    assert reoffer(2).origin.is_same_session(reoffer(1).origin)
    assert reoffer(2).origin == reoffer(1).origin.next_version()


def test_our_offers_and_hold_reoffer() -> None:
    session = fixed_session("198.51.100.7")
    offer = build_offer("198.51.100.7", 40000, session=session)
    assert bytes(offer) == sdp(
        "v=0",
        "o=tsunagu 4242 1 IN IP4 198.51.100.7",
        "s=Tsunagu",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    )
    hold = build_offer("198.51.100.7", 40000, direction=Direction.SENDONLY, session=session)
    assert hold.origin == offer.origin.next_version()
    assert hold.media[0].direction is Direction.SENDONLY
    again = build_offer("198.51.100.7", 40000, direction=Direction.SENDONLY, session=session)
    assert again.origin == hold.origin


def test_random_session_ids_and_ipv6() -> None:
    ids = {LocalSdpSession("10.0.0.1").origin.session_id for _ in range(8)}
    assert len(ids) == 8
    v6 = build_offer("2001:db8::5", 40000)
    assert str(v6.origin).endswith("IN IP6 2001:db8::5")
    assert v6.connection == Connection("2001:db8::5", "IN", "IP6")


def test_offer_needs_a_codec() -> None:
    with pytest.raises(MediaLocalError):
        build_offer("10.0.0.1", 4000, codecs=[])


# ---------------------------------------------------------------------------- their answers


def test_accept_a_pjsua_style_answer() -> None:
    offer = build_offer("198.51.100.7", 40000, session=fixed_session("198.51.100.7"))
    answer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 3912345679 3912345680 IN IP4 127.0.0.1",
            "s=pjmedia",
            "t=0 0",
            "m=audio 4002 RTP/AVP 8 101",
            "c=IN IP4 127.0.0.1",
            "a=rtcp:4003 IN IP4 127.0.0.1",
            "a=sendrecv",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
        )
    )
    media = accept_answer(offer, answer)
    assert media.codec == PCMA
    assert media.telephone_event == 101
    assert (media.remote_address, media.remote_port, media.remote_rtcp_port) == (
        "127.0.0.1",
        4002,
        4003,
    )
    assert media.direction is Direction.SENDRECV


def test_accept_answer_to_our_hold() -> None:
    session = fixed_session("198.51.100.7")
    offer = build_offer("198.51.100.7", 40000, direction=Direction.SENDONLY, session=session)
    answer = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.9",
            "s=-",
            "c=IN IP4 10.0.0.9",
            "t=0 0",
            "m=audio 5000 RTP/AVP 0",
            "a=recvonly",
        )
    )
    media = accept_answer(offer, answer)
    assert media.direction is Direction.SENDONLY
    assert not media.remote_hold


@pytest.mark.parametrize(
    ("media_lines", "reason"),
    [
        (["m=audio 0 RTP/AVP 0"], "rejected our audio"),
        (["m=audio 5000 RTP/AVP 18"], "G729/8000"),
        (["m=audio 5000 RTP/AVP 101", "a=rtpmap:101 telephone-event/8000"], "telephone-event"),
        (["m=audio 5000 RTP/AVP 0", "m=video 0 RTP/AVP 96"], "2 m= lines"),
    ],
)
def test_unusable_answers(media_lines: list[str], reason: str) -> None:
    offer = build_offer("198.51.100.7", 40000)
    answer = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 10.0.0.9", "s=-", "c=IN IP4 10.0.0.9", "t=0 0", *media_lines)
    )
    with pytest.raises(SdpNegotiationError, match=reason):
        accept_answer(offer, answer)


offer_fragments = st.sampled_from(
    [
        "c=IN IP4 192.0.2.1",
        "c=IN IP4 0.0.0.0",
        "c=IN IP6 ::1",
        "m=audio 5004 RTP/AVP 0 8 101",
        "m=audio 5004 RTP/AVP 96 97",
        "m=audio 0 RTP/AVP 0",
        "m=audio 5004 RTP/SAVP 0",
        "m=audio 5004 RTP/AVP x",
        "m=video 5006 RTP/AVP 96",
        "m=image 5008 udptl t38",
        "a=rtpmap:96 PCMU/8000",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:97 telephone-event/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=rtpmap:101 telephone-event",
        "a=fmtp:101 0-15",
        "a=fmtp:101 16-2,x,-",
        "a=fmtp:97 200-300",
        "a=ptime:30",
        "a=ptime:",
        "a=maxptime:10",
        "a=rtcp:5005",
        "a=rtcp:x",
        "a=sendonly",
        "a=recvonly",
        "a=inactive",
    ]
)


@given(st.lists(offer_fragments, max_size=10))
def test_negotiation_of_odd_offers_fails_only_with_our_errors(fragments: list[str]) -> None:
    text = "\r\n".join(["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", *fragments])
    try:
        offer = SessionDescription.parse(text)
        answer = negotiate_answer(offer, "203.0.113.5", 30000, session=fixed_session())
    except (SdpParseError, SdpNegotiationError):
        return
    # RFC 3264 §6: same streams in the same order, exactly one accepted.
    assert len(answer.sdp.media) == len(offer.media)
    assert [m.port != 0 for m in answer.sdp.media].count(True) == 1
    assert answer.sdp.media[answer.media.media_index].port == 30000
    assert answer.media.codec.name in {"PCMU", "PCMA"}
    assert SessionDescription.parse(bytes(answer.sdp)) == answer.sdp
