"""RTP wire format (RFC 3550 §5), the sender's numbering, and receiver statistics (App. A)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_dtmf import read_pcap_udp_payloads
from tsunagu.media.rtcp import ntp_middle
from tsunagu.media.rtp import (
    MediaLocalError,
    MediaPeerError,
    RtpError,
    RtpExtension,
    RtpPacket,
    RtpSender,
)
from tsunagu.media.stats import MAX_DROPOUT, RtpReceiverStats

SIPP = Path("/usr/share/sip-tester")

# The first packet of SIPp's dtmf_2833_5.pcap: V=2, M=1, PT=101, seq 0x1fdb, ts 0xa8c0,
# SSRC 0x0e05384e, then the four-octet telephone-event payload.
SIPP_START = bytes.fromhex("80e51fdb0000a8c00e05384e050a0000")


# ---------------------------------------------------------------------------- parsing


def test_parse_golden_packet_from_sipp() -> None:
    packet = RtpPacket.parse(SIPP_START)
    assert packet.payload_type == 101
    assert packet.marker is True
    assert packet.sequence == 0x1FDB
    assert packet.timestamp == 0xA8C0
    assert packet.ssrc == 0x0E05384E
    assert packet.payload == bytes.fromhex("050a0000")
    assert packet.csrc == ()
    assert packet.extension is None
    assert packet.padding == 0
    assert bytes(packet) == SIPP_START


def test_serialize_matches_hand_built_header() -> None:
    packet = RtpPacket(payload_type=8, sequence=65535, timestamp=0xFFFFFFFF, ssrc=1, payload=b"ab")
    expected = bytes([0x80, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1]) + b"ab"
    assert bytes(packet) == expected


def test_csrc_extension_and_padding_golden() -> None:
    data = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0x80 | 0])  # V=2 P X CC=2, M PT=0
        + struct.pack("!HII", 7, 160, 0xDEADBEEF)
        + struct.pack("!II", 11, 22)  # CSRCs
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xaa\x00\x00"  # one word of extension data
        + b"payload"
        + b"\x00\x00\x03"  # three padding octets, the last one counting them
    )
    packet = RtpPacket.parse(data)
    assert packet.csrc == (11, 22)
    assert packet.extension == RtpExtension(0xBEDE, b"\x10\xaa\x00\x00")
    assert packet.payload == b"payload"
    assert packet.padding == 3
    assert packet.marker
    assert bytes(packet) == data


def test_parse_accepts_memoryview_and_bytearray() -> None:
    assert RtpPacket.parse(memoryview(SIPP_START)) == RtpPacket.parse(bytearray(SIPP_START))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than"),
        (SIPP_START[:11], "shorter than"),
        (bytes([0x40]) + SIPP_START[1:], "version 1"),
        (bytes([0x00]) + SIPP_START[1:], "version 0"),
        (bytes([0x83]) + SIPP_START[1:12] + b"\x00" * 8, "CSRC count 3"),
        (bytes([0x90]) + SIPP_START[1:12] + b"\x00\x00", "no extension header"),
        (bytes([0x90]) + SIPP_START[1:12] + b"\x00\x00\x00\x02" + b"\x00" * 4, "extension of 2"),
        (bytes([0xA0]) + SIPP_START[1:12] + b"ab\x00", "padding length 0"),
        (bytes([0xA0]) + SIPP_START[1:12] + b"ab\x04", "padding length 4"),
    ],
)
def test_parse_rejects_invalid(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message) as caught:
        RtpPacket.parse(data)
    assert isinstance(caught.value, MediaPeerError)
    assert caught.value.status == 400


def test_padding_may_cover_the_whole_payload() -> None:
    data = bytes([0xA0]) + SIPP_START[1:12] + b"\x00\x00\x00\x04"
    packet = RtpPacket.parse(data)
    assert packet.payload == b""
    assert packet.padding == 4


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(128, 0, 0, 0),
        RtpPacket(0, 1 << 16, 0, 0),
        RtpPacket(0, 0, 1 << 32, 0),
        RtpPacket(0, 0, 0, -1),
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))),
        RtpPacket(0, 0, 0, 0, extension=RtpExtension(1, b"abc")),
        RtpPacket(0, 0, 0, 0, padding=256),
    ],
)
def test_serialize_refuses_invalid_fields(packet: RtpPacket) -> None:
    with pytest.raises(MediaLocalError):
        bytes(packet)


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    ),
    padding=st.integers(0, 255),
)


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(packet)) == packet


@given(st.binary(max_size=80))
def test_garbage_raises_only_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    # Whatever parses serialises back to the same length (padding content aside).
    assert len(bytes(packet)) == len(data)


def test_every_packet_of_a_real_capture_round_trips() -> None:
    capture = SIPP / "g711a.pcap"
    assert capture.exists(), "install sip-tester (scripts/install-test-packages.sh)"
    datagrams = [payload for _, payload in read_pcap_udp_payloads(capture)]
    assert len(datagrams) > 100
    for datagram in datagrams:
        assert bytes(RtpPacket.parse(datagram)) == datagram


def test_real_capture_statistics_show_no_loss() -> None:
    records = read_pcap_udp_payloads(SIPP / "g711a.pcap")
    parsed = [(at, RtpPacket.parse(payload)) for at, payload in records]
    assert {packet.payload_type for _, packet in parsed} == {8}
    first = parsed[0][1]
    stats = RtpReceiverStats(first.ssrc, first.sequence)
    valid = [stats.update(p.sequence, p.timestamp, at) for at, p in parsed]
    # A.1 probation: the first packet only starts the source.
    assert valid[0] is False
    assert all(valid[1:])
    assert stats.expected == stats.received == len(parsed) - 1
    assert stats.lost == 0
    # Paced by a real clock: well under one 30 ms frame of jitter.
    assert 0 < stats.jitter_ms < 30


# ---------------------------------------------------------------------------- sender


class RecordingBits:
    """A deterministic stand-in for ``secrets.randbits`` that records what is asked."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.requests: list[int] = []

    def __call__(self, bits: int) -> int:
        self.requests.append(bits)
        return self.values.pop(0)


def test_sender_draws_random_ssrc_sequence_and_timestamp() -> None:
    bits = RecordingBits(0xCAFEBABE, 0xFFFE, 0xFFFFFF00)
    sender = RtpSender(0, randbits=bits)
    # RFC 3550 §5.1/§8.1: 32 random bits of SSRC, 16 of sequence, 32 of timestamp.
    assert sorted(bits.requests) == [16, 32, 32]
    assert (sender.ssrc, sender.sequence, sender.timestamp) == (0xCAFEBABE, 0xFFFE, 0xFFFFFF00)


def test_default_randomness_varies_between_streams() -> None:
    starts = {(s.ssrc, s.sequence, s.timestamp) for s in (RtpSender(0) for _ in range(8))}
    assert len(starts) == 8


def test_sender_numbers_20ms_frames_and_wraps() -> None:
    sender = RtpSender(0, ssrc=7, sequence=0xFFFE, timestamp=0xFFFFFF00)
    frames = [sender.audio_frame(bytes([0xFF]) * 160) for _ in range(4)]
    assert [f.sequence for f in frames] == [0xFFFE, 0xFFFF, 0, 1]
    assert [f.timestamp for f in frames] == [0xFFFFFF00, 0xFFFFFFA0, 0x40, 0xE0]
    assert [f.marker for f in frames] == [True, False, False, False]
    assert {f.ssrc for f in frames} == {7}
    assert sender.samples_for(20) == 160


def test_talkspurt_marker_and_skip() -> None:
    sender = RtpSender(8, ssrc=1, sequence=10, timestamp=1000)
    sender.audio_frame(b"\xd5" * 160)
    sender.skip(800)  # 100 ms of silence suppressed
    sender.start_talkspurt()
    frame = sender.audio_frame(b"\xd5" * 160)
    assert frame.marker
    assert frame.timestamp == 1000 + 160 + 800
    assert frame.sequence == 11  # §5.1: sequence counts packets, not time


def test_packet_of_another_type_keeps_the_media_clock() -> None:
    sender = RtpSender(0, ssrc=1, sequence=5, timestamp=480)
    event = sender.packet(101, 480, b"\x05\x0a\x00\x00", marker=True)
    assert (event.payload_type, event.sequence, event.timestamp, event.marker) == (
        101,
        5,
        480,
        True,
    )
    assert sender.timestamp == 480
    assert sender.audio_frame(b"\xff" * 160).sequence == 6


def test_sender_refuses_invalid_payload_type() -> None:
    with pytest.raises(MediaLocalError):
        RtpSender(200)


# ---------------------------------------------------------------------------- statistics


def feed(stats: RtpReceiverStats, sequences: list[int], start: float = 0.0) -> list[bool]:
    return [
        stats.update(seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, start + i * 0.02)
        for i, seq in enumerate(sequences)
    ]


def test_probation_needs_two_in_sequence() -> None:
    stats = RtpReceiverStats(1, 100)
    assert feed(stats, [100]) == [False]
    assert (stats.valid, stats.expected) == (False, 0)
    assert feed(stats, [101, 102]) == [True, True]
    assert stats.valid
    assert (stats.expected, stats.received, stats.lost) == (2, 2, 0)


def test_probation_restarts_on_a_gap() -> None:
    stats = RtpReceiverStats(1, 100)
    assert feed(stats, [100, 105, 106]) == [False, False, True]
    assert stats.base_seq == 106


def test_trusted_source_counts_its_first_packet_even_at_zero() -> None:
    stats = RtpReceiverStats(1, 0, probation=0)
    assert feed(stats, [0, 1, 2]) == [True, True, True]
    assert (stats.expected, stats.received, stats.extended_max) == (3, 3, 2)


def test_loss_and_fraction_lost() -> None:
    stats = RtpReceiverStats(1, 0, probation=0)
    sequences = [s for s in range(100) if s % 10 != 3]  # ten lost
    feed(stats, sequences)
    assert stats.expected == 100
    assert stats.lost == 10
    # A.3: (lost_interval << 8) / expected_interval = 2560 // 100.
    assert stats.interval_fraction_lost() == 25
    # A new interval with no loss reports zero.
    feed(stats, list(range(100, 150)), start=2.0)
    assert stats.interval_fraction_lost() == 0
    assert stats.lost == 10


def test_sequence_wraparound_extends_the_count() -> None:
    stats = RtpReceiverStats(1, 65530, probation=0)
    feed(stats, list(range(65530, 65550)))
    assert stats.cycles == 1 << 16
    assert stats.extended_max == 65549
    assert (stats.expected, stats.lost) == (20, 0)


def test_duplicates_make_loss_negative_but_fraction_zero() -> None:
    stats = RtpReceiverStats(1, 0, probation=0)
    feed(stats, [0, 1, 1, 2, 2, 3])
    assert stats.lost == -2
    assert stats.interval_fraction_lost() == 0


def test_reordering_within_misorder_window_is_counted() -> None:
    stats = RtpReceiverStats(1, 0, probation=0)
    assert feed(stats, [0, 1, 3, 2, 4]) == [True] * 5
    assert (stats.expected, stats.lost, stats.max_seq) == (5, 0, 4)


def test_one_huge_jump_is_dropped_two_resynchronise() -> None:
    stats = RtpReceiverStats(1, 0, probation=0)
    feed(stats, [0, 1, 2])
    jump = 2 + MAX_DROPOUT + 10
    assert stats.update(jump, 0, 1.0) is False
    assert stats.max_seq == 2
    # The sender restarted: the next packet after the jump confirms it (A.1 bad_seq).
    assert stats.update(jump + 1, 160, 1.02) is True
    assert stats.base_seq == jump + 1
    assert (stats.expected, stats.received) == (1, 1)


def test_jitter_is_zero_for_perfect_pacing_even_across_timestamp_wrap() -> None:
    stats = RtpReceiverStats(1, 0, probation=0)
    base = 0xFFFFFFFF - 800
    for i in range(50):
        stats.update(i, (base + 160 * i) & 0xFFFFFFFF, 10.0 + 0.02 * i)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_jitter_follows_the_a8_estimator() -> None:
    stats = RtpReceiverStats(1, 0, probation=0, clock_rate=8000)
    # Every packet arrives 10 ms early or late in turn: |D| = 20 ms = 160 units.
    for i in range(40):
        skew = 0.01 if i % 2 else -0.01
        stats.update(i, 160 * i, 0.02 * i + skew)
    # J_n = 160 * (1 - (15/16)^n) after n differences (the first packet has none).
    assert stats.jitter == pytest.approx(160 * (1 - (15 / 16) ** 39))
    assert stats.jitter_ms == pytest.approx(stats.jitter / 8)


def test_jitter_can_be_skipped_for_event_packets() -> None:
    stats = RtpReceiverStats(1, 0, probation=0)
    stats.update(0, 0, 0.0)
    stats.update(1, 0, 0.5, jitter=False)  # same timestamp 500 ms later: an RFC 4733 event
    stats.update(2, 320, 0.04)
    assert stats.jitter == 0.0


def test_report_block_carries_lsr_and_dlsr() -> None:
    stats = RtpReceiverStats(0x1234, 0, probation=0)
    feed(stats, [0, 1, 2, 4])
    seconds, fraction = 3_900_000_000, 0x80000000
    stats.on_sender_report(seconds, fraction, arrival=10.0)
    block = stats.report_block(now=12.5)
    assert block.ssrc == 0x1234
    assert block.last_sr == ntp_middle(seconds, fraction)
    assert block.delay_since_last_sr == int(2.5 * 65536)
    assert block.cumulative_lost == 1
    assert block.fraction_lost == 256 // 5
    assert block.highest_sequence == 4


def test_report_block_without_sr_has_zero_lsr() -> None:
    stats = RtpReceiverStats(9, 0, probation=0)
    feed(stats, [0, 1])
    block = stats.report_block(now=1.0)
    assert (block.last_sr, block.delay_since_last_sr) == (0, 0)


def test_snapshot_does_not_consume_the_interval() -> None:
    stats = RtpReceiverStats(9, 0, probation=0)
    feed(stats, [0, 2])
    snapshot = stats.snapshot()
    assert (snapshot.expected, snapshot.received, snapshot.lost, snapshot.valid) == (3, 2, 1, True)
    assert stats.interval_fraction_lost() == 256 // 3


@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=200))
def test_statistics_never_crash_and_stay_consistent(sequences: list[int]) -> None:
    stats = RtpReceiverStats(1, sequences[0])
    for i, seq in enumerate(sequences):
        stats.update(seq, seq * 160, i * 0.02)
    assert stats.received >= 0
    assert 0 <= stats.interval_fraction_lost() <= 255
    block = stats.report_block(now=5.0)
    assert -0x800000 <= block.cumulative_lost <= 0x7FFFFF
    bytes(block)  # always encodable
