"""RTCP wire format (RFC 3550 §6): SR, RR, SDES, BYE, compound packets and RTT."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsunagu.media.rtcp import (
    NTP_UNIX_OFFSET,
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    RtcpUnknown,
    SdesChunk,
    SdesItemType,
    SenderReport,
    SourceDescription,
    compound_report,
    is_rtcp,
    ntp_middle,
    ntp_timestamp,
    parse_compound,
    round_trip_time,
    serialize_compound,
)
from tsunagu.media.rtp import MediaLocalError, RtpPacket

# Hand-assembled from the §6.4.2 and §6.5 diagrams.
RR = bytes.fromhex(
    "81c90007"  # V=2 RC=1 PT=201 length=7 words
    "11223344"  # reporter SSRC
    "aabbccdd"  # reportee SSRC
    "1900000a"  # fraction lost 0x19, cumulative lost 10
    "0001ffff"  # extended highest sequence: one cycle, 0xffff
    "00000020"  # jitter 32
    "12345678"  # LSR
    "00020000"  # DLSR: 2 s
)
SDES = bytes.fromhex("81ca0004112233440109") + b"tsunagu@x" + b"\x00"
BYE = bytes.fromhex("81cb00031122334404") + b"gone" + b"\x00\x00\x00"
SR = bytes.fromhex(
    "80c80006"  # V=2 RC=0 PT=200 length=6
    "11223344"
    "e8d4a510"  # NTP seconds
    "80000000"  # NTP fraction: half a second
    "0001f400"  # RTP timestamp
    "00000064"  # packets sent: 100
    "00003e80"  # octets sent: 16000
)


def test_receiver_report_golden() -> None:
    (report,) = parse_compound(RR)
    assert report == ReceiverReport(
        0x11223344,
        [ReportBlock(0xAABBCCDD, 0x19, 10, 0x0001FFFF, 32, 0x12345678, 0x00020000)],
    )
    assert bytes(report) == RR


def test_sender_report_golden() -> None:
    (report,) = parse_compound(SR)
    assert isinstance(report, SenderReport)
    assert (report.ssrc, report.ntp_seconds, report.ntp_fraction) == (
        0x11223344,
        0xE8D4A510,
        0x80000000,
    )
    assert (report.rtp_timestamp, report.packet_count, report.octet_count) == (128000, 100, 16000)
    assert report.reports == []
    assert bytes(report) == SR


def test_compound_rr_sdes_bye_golden() -> None:
    packets = parse_compound(RR + SDES + BYE)
    assert [type(p) for p in packets] == [ReceiverReport, SourceDescription, Goodbye]
    sdes = packets[1]
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks == [SdesChunk(0x11223344, [(SdesItemType.CNAME, "tsunagu@x")])]
    assert sdes.chunks[0].cname == "tsunagu@x"
    assert packets[2] == Goodbye([0x11223344], "gone")
    assert serialize_compound(packets) == RR + SDES + BYE


def test_negative_cumulative_loss_from_duplicates() -> None:
    data = RR[:12] + b"\x00\xff\xff\xfe" + RR[16:]
    (report,) = parse_compound(data)
    assert isinstance(report, ReceiverReport)
    assert report.reports[0].cumulative_lost == -2
    assert bytes(report) == data


def test_sdes_with_several_items_and_chunks() -> None:
    packet = SourceDescription(
        [
            SdesChunk(1, [(SdesItemType.CNAME, "a@b"), (SdesItemType.TOOL, "Tsunagu つなぐ")]),
            SdesChunk(2, []),
        ]
    )
    data = bytes(packet)
    assert len(data) % 4 == 0
    assert parse_compound(data) == [packet]
    assert SdesChunk(2, [(SdesItemType.NOTE, "x")]).cname is None


def test_bye_without_reason_and_unknown_packets_round_trip() -> None:
    app = RtcpUnknown(204, 1, b"\x00\x00\x00\x01name" + b"data")
    xr = RtcpUnknown(207, 0, b"\x00\x00\x00\x09")
    packets: list[RtcpPacket] = [Goodbye([1, 2]), app, xr]
    assert parse_compound(serialize_compound(packets)) == packets


def test_padding_on_the_last_packet_is_stripped() -> None:
    padded = bytearray(BYE[:8] + b"\x00\x00\x00\x04")
    padded[0] |= 0x20
    padded[3] = 2  # length now covers the padding word
    (bye,) = parse_compound(bytes(padded))
    assert bye == Goodbye([0x11223344])


def test_profile_extension_after_report_blocks_is_kept() -> None:
    report = ReceiverReport(5, [ReportBlock(6)], extension=b"\x01\x02\x03\x04")
    assert parse_compound(bytes(report)) == [report]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than a header"),
        (b"\x81\xc9\x00", "shorter than a header"),
        (bytes([0x41]) + RR[1:], "version 1"),
        (RR[:-4], "runs past"),
        (RR + b"\x80", "ends inside a header"),
        (bytes([0x82]) + RR[1:], "too short"),  # RC=2 but one block
        (bytes.fromhex("80c90000"), "reporter SSRC"),
        (bytes.fromhex("80c80001") + b"\x00" * 4, "sender info"),
        (bytes.fromhex("81ca00020000000101020000"), "terminating null|runs past"),
        (bytes.fromhex("81ca000100000001"), "no terminating null"),
        (bytes.fromhex("82ca00020000000100000000"), "2 chunks"),
        (bytes.fromhex("82cb000100000001"), "2 sources"),
        (bytes.fromhex("81cb00020000000109616263"), "reason runs past"),
        (bytes.fromhex("a1cb000100000000"), "padding length 0"),
        (bytes.fromhex("a1cb000100000009"), "padding length 9"),
    ],
)
def test_malformed_packets(data: bytes, message: str) -> None:
    with pytest.raises(RtcpError, match=message) as caught:
        parse_compound(data)
    assert caught.value.status == 400


@given(st.binary(max_size=120))
def test_garbage_raises_only_rtcp_error(data: bytes) -> None:
    try:
        packets = parse_compound(data)
    except RtcpError:
        return
    assert packets


@given(st.binary(max_size=60))
def test_garbage_after_a_valid_header_raises_only_rtcp_error(tail: bytes) -> None:
    words = (len(tail) + 3) // 4
    body = tail + bytes(4 * words - len(tail))
    for packet_type in (200, 201, 202, 203):
        for count in (0, 1, 3, 31):
            data = struct.pack("!BBH", 0x80 | count, packet_type, words) + body
            with contextlib.suppress(RtcpError):
                parse_compound(data)


u32 = st.integers(0, 0xFFFFFFFF)
blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
texts = st.text(max_size=40).filter(lambda t: len(t.encode("utf-8", "surrogateescape")) <= 255)
rtcp_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_seconds=u32,
        ntp_fraction=u32,
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=st.lists(blocks, max_size=3),
    ),
    st.builds(ReceiverReport, ssrc=u32, reports=st.lists(blocks, max_size=3)),
    st.builds(
        SourceDescription,
        chunks=st.lists(
            st.builds(
                SdesChunk,
                ssrc=u32,
                items=st.lists(st.tuples(st.integers(1, 8), texts), max_size=3),
            ),
            max_size=3,
        ),
    ),
    st.builds(Goodbye, ssrcs=st.lists(u32, max_size=4), reason=st.none() | texts),
)


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_compound_round_trip(packets: list[RtcpPacket]) -> None:
    data = serialize_compound(packets)
    assert len(data) % 4 == 0
    assert parse_compound(data) == packets


@pytest.mark.parametrize(
    "packet",
    [
        ReportBlock(1, fraction_lost=256),
        ReportBlock(1, cumulative_lost=0x800000),
        ReportBlock(1 << 32),
        ReceiverReport(1, [ReportBlock(1)] * 32),
        SourceDescription([SdesChunk(1, [(0, "x")])]),
        SourceDescription([SdesChunk(1, [(1, "x" * 256)])]),
        Goodbye([1], "x" * 256),
        RtcpUnknown(300, 0, b""),
        RtcpUnknown(204, 0, b"abc"),
    ],
)
def test_invalid_fields_are_our_bug(packet: ReportBlock | RtcpPacket) -> None:
    with pytest.raises(MediaLocalError):
        bytes(packet)


def test_empty_compound_is_our_bug() -> None:
    with pytest.raises(MediaLocalError):
        serialize_compound([])


# ---------------------------------------------------------------------------- time and RTT


def test_ntp_timestamp_of_known_instants() -> None:
    assert ntp_timestamp(0.0) == (NTP_UNIX_OFFSET, 0)
    assert ntp_timestamp(1.5) == (NTP_UNIX_OFFSET + 1, 1 << 31)
    assert ntp_middle(0x12345678, 0x9ABCDEF0) == 0x56789ABC


def test_round_trip_time_from_lsr_and_dlsr() -> None:
    # §6.4.1 example shape: we sent an SR at t0, the peer held it 0.25 s, its RR
    # reached us at t0 + 0.25 + 0.080 (so the network RTT is 80 ms).
    t0 = 1_700_000_000.125
    lsr = ntp_middle(*ntp_timestamp(t0))
    dlsr = int(0.25 * 65536)
    rtt = round_trip_time(t0 + 0.25 + 0.080, lsr, dlsr)
    assert rtt == pytest.approx(0.080, abs=2 / 65536)


def test_round_trip_time_unknown_or_negative() -> None:
    assert round_trip_time(1_700_000_000.0, 0, 0) is None
    lsr = ntp_middle(*ntp_timestamp(1_700_000_000.0))
    assert round_trip_time(1_700_000_000.0, lsr, 65536) is None  # DLSR longer than elapsed


def test_compound_report_carries_cname() -> None:
    rr = parse_compound(compound_report(7, "agent@tsunagu", [ReportBlock(9)]))
    assert isinstance(rr[0], ReceiverReport)
    assert isinstance(rr[1], SourceDescription)
    assert rr[1].chunks[0].cname == "agent@tsunagu"
    sr = parse_compound(compound_report(7, "x", [], sender=(1, 2, 3, 4, 5)))
    assert sr[0] == SenderReport(7, 1, 2, 3, 4, 5)


def test_rtcp_mux_demultiplexing() -> None:
    assert is_rtcp(RR)
    assert is_rtcp(SR)
    assert not is_rtcp(bytes(RtpPacket(0, 1, 2, 3, b"x", marker=True)))
    assert not is_rtcp(bytes(RtpPacket(101, 1, 2, 3, b"x", marker=True)))
    assert not is_rtcp(b"\x80")
