"""DTMF: RFC 4733 telephone-event payloads, the receiver's once-per-press rule, the
sender's packet sequence, SIP INFO bodies, and SIPp's real captures."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsunagu.media.dtmf import (
    DTMF_DIGITS,
    DigitReceived,
    DtmfParseError,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    parse_info_dtmf,
)
from tsunagu.media.rtp import MediaLocalError, RtpPacket, RtpSender

SIPP = Path("/usr/share/sip-tester")
SIPP_CAPTURES = {
    **{str(n): f"dtmf_2833_{n}.pcap" for n in range(10)},
    "*": "dtmf_2833_star.pcap",
    "#": "dtmf_2833_pound.pcap",
}


# ---------------------------------------------------------------------------- pcap reader


def read_pcap_udp_payloads(path: Path) -> list[tuple[float, bytes]]:
    """(capture time, UDP payload) of every IPv4/UDP packet in a classic pcap file.

    Just enough of the format for SIPp's captures: the 24-byte global header (either byte
    order, micro- or nanosecond stamps), 16-byte record headers, Ethernet II (with an
    optional 802.1Q tag) or Linux cooked framing, IPv4 with options, UDP.
    """
    data = path.read_bytes()
    magic = data[:4]
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    assert magic in formats, f"{path} is not a classic pcap file"
    order, tick = formats[magic]
    (link_type,) = struct.unpack_from(order + "I", data, 20)
    record = struct.Struct(order + "IIII")
    offset = 24
    out: list[tuple[float, bytes]] = []
    while offset + record.size <= len(data):
        seconds, fraction, captured, _original = record.unpack_from(data, offset)
        offset += record.size
        frame = data[offset : offset + captured]
        offset += captured
        if link_type == 1:  # Ethernet II
            ether_type, ip = struct.unpack_from("!H", frame, 12)[0], 14
            if ether_type == 0x8100:  # 802.1Q VLAN tag
                ether_type, ip = struct.unpack_from("!H", frame, 16)[0], 18
        elif link_type == 113:  # Linux cooked capture
            ether_type, ip = struct.unpack_from("!H", frame, 14)[0], 16
        else:
            raise AssertionError(f"unsupported link type {link_type}")
        if ether_type != 0x0800 or frame[ip] >> 4 != 4 or frame[ip + 9] != 17:
            continue  # not IPv4/UDP
        udp = ip + (frame[ip] & 0x0F) * 4
        (length,) = struct.unpack_from("!H", frame, udp + 4)
        out.append((seconds + fraction * tick, frame[udp + 8 : udp + length]))
    return out


def sipp_packets(digit: str) -> list[tuple[float, RtpPacket]]:
    path = SIPP / SIPP_CAPTURES[digit]
    assert path.exists(), f"{path} missing: install sip-tester (scripts/install-test-packages.sh)"
    return [(at, RtpPacket.parse(payload)) for at, payload in read_pcap_udp_payloads(path)]


# ---------------------------------------------------------------------------- payload


def test_event_payload_golden_bytes() -> None:
    # SIPp's end packet for '5': event 5, E=1, volume 10, duration 2240 (280 ms).
    event = TelephoneEvent.parse(bytes.fromhex("058a08c0"))
    assert event == TelephoneEvent(event=5, end=True, volume=10, duration=2240)
    assert event.digit == "5"
    assert bytes(event) == bytes.fromhex("058a08c0")
    assert bytes(TelephoneEvent(11, False, 63, 0xFFFF)) == bytes.fromhex("0b3fffff")


def test_reserved_bit_is_ignored() -> None:
    assert TelephoneEvent.parse(bytes.fromhex("05ca0100")) == TelephoneEvent(5, True, 10, 256)


def test_short_payload_is_a_parse_error() -> None:
    with pytest.raises(DtmfParseError):
        TelephoneEvent.parse(b"\x05\x8a\x08")


@pytest.mark.parametrize(
    "event",
    [TelephoneEvent(256), TelephoneEvent(1, volume=64), TelephoneEvent(1, duration=1 << 16)],
)
def test_invalid_event_fields_are_our_bug(event: TelephoneEvent) -> None:
    with pytest.raises(MediaLocalError):
        bytes(event)


def test_flash_and_other_events_are_not_digits() -> None:
    assert TelephoneEvent(16).digit is None
    assert [TelephoneEvent(n).digit for n in range(16)] == list(DTMF_DIGITS)


# ---------------------------------------------------------------------------- SIPp captures


@pytest.mark.parametrize("digit", sorted(SIPP_CAPTURES))
def test_sipp_capture_yields_its_digit_exactly_once(digit: str) -> None:
    packets = sipp_packets(digit)
    # The capture really holds one start, updates and three (identical) end packets.
    events = [TelephoneEvent.parse(p.payload) for _, p in packets]
    assert sum(e.end for e in events) == 3
    receiver = DtmfReceiver(payload_type=101)
    digits: list[DigitReceived] = []
    for at, packet in packets:
        digits.extend(receiver.on_packet(packet, at))
    digits.extend(receiver.on_timer(packets[-1][0] + 10))
    assert [d.digit for d in digits] == [digit]
    assert digits[0].duration_ms == events[-1].duration // 8
    assert digits[0].at == packets[-3][0]  # recognised on the first end packet
    assert receiver.next_deadline() is None


def test_sipp_capture_with_lost_start_packets() -> None:
    packets = sipp_packets("7")[3:]
    assert not any(p.marker for _, p in packets)
    receiver = DtmfReceiver(payload_type=101)
    digits = [d for at, p in packets for d in receiver.on_packet(p, at)]
    assert [d.digit for d in digits] == ["7"]


def test_sipp_capture_with_all_end_packets_lost_times_out_once() -> None:
    packets = sipp_packets("9")[:-3]
    receiver = DtmfReceiver(payload_type=101, timeout=0.25)
    digits = [d for at, p in packets for d in receiver.on_packet(p, at)]
    assert digits == []
    last = packets[-1][0]
    deadline = receiver.next_deadline()
    assert deadline == pytest.approx(last + 0.25)
    assert receiver.on_timer(last + 0.1) == []
    timed_out = receiver.on_timer(last + 0.3)
    assert [d.digit for d in timed_out] == ["9"]
    assert timed_out[0].duration_ms == 1920 // 8  # the last duration that arrived
    assert receiver.on_timer(last + 1.0) == []
    # A straggling end packet of the closed event is not a second press.
    late = sipp_packets("9")[-1][1]
    assert receiver.on_packet(late, last + 1.1) == []


def test_two_sipp_presses_in_a_row() -> None:
    receiver = DtmfReceiver(payload_type=101)
    stream = sipp_packets("1") + sipp_packets("#")
    digits = [d.digit for at, p in stream for d in receiver.on_packet(p, at)]
    assert digits == ["1", "#"]


# ---------------------------------------------------------------------------- receiver rules


def event_packet(timestamp: int, event: int, duration: int, *, end: bool = False) -> RtpPacket:
    payload = bytes(TelephoneEvent(event, end, 10, duration))
    return RtpPacket(101, 0, timestamp, 42, payload)


def test_unended_event_is_reported_when_the_next_one_starts() -> None:
    receiver = DtmfReceiver(101)
    assert receiver.on_packet(event_packet(1000, 3, 400), 0.0) == []
    digits = receiver.on_packet(event_packet(3000, 4, 0), 0.3)
    assert [(d.digit, d.duration_ms, d.at) for d in digits] == [("3", 50, 0.3)]
    ended = receiver.on_packet(event_packet(3000, 4, 800, end=True), 0.4)
    assert [d.digit for d in ended] == ["4"]


def test_same_digit_twice_is_two_presses() -> None:
    receiver = DtmfReceiver(101)
    out = []
    for timestamp in (1000, 5000):
        for _ in range(3):
            out += receiver.on_packet(event_packet(timestamp, 5, 800, end=True), 0.0)
    assert [d.digit for d in out] == ["5", "5"]


def test_reordered_update_after_end_is_ignored() -> None:
    receiver = DtmfReceiver(101)
    out = receiver.on_packet(event_packet(1000, 2, 800, end=True), 0.1)
    out += receiver.on_packet(event_packet(1000, 2, 400), 0.11)
    out += receiver.on_packet(event_packet(1000, 2, 800, end=True), 0.12)
    assert [d.digit for d in out] == ["2"]
    assert receiver.next_deadline() is None


def test_other_payload_types_are_ignored() -> None:
    receiver = DtmfReceiver(101)
    audio = RtpPacket(0, 1, 1000, 42, b"\x05\x8a\x08\xc0")
    assert receiver.on_packet(audio, 0.0) == []


def test_non_digit_events_are_not_reported() -> None:
    receiver = DtmfReceiver(101)
    assert receiver.on_packet(event_packet(1000, 16, 800, end=True), 0.0) == []


def test_long_event_in_segments_is_one_press() -> None:
    # RFC 4733 §2.5.1.3: past 65535 units the sender starts a new segment whose
    # timestamp is the old one plus the old duration.
    receiver = DtmfReceiver(101)
    out = receiver.on_packet(event_packet(0, 1, 0xFFFF), 0.0)
    out += receiver.on_packet(event_packet(0xFFFF, 1, 8000, end=True), 9.0)
    assert [(d.digit, d.duration_ms) for d in out] == [("1", (0xFFFF + 8000) // 8)]


def test_different_ssrc_with_same_timestamp_is_a_new_press() -> None:
    receiver = DtmfReceiver(101)
    first = receiver.on_packet(event_packet(1000, 1, 800, end=True), 0.0)
    other = RtpPacket(101, 0, 1000, 43, bytes(TelephoneEvent(1, True, 10, 800)))
    second = receiver.on_packet(other, 0.1)
    assert len(first) == len(second) == 1


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 17), st.booleans(), st.integers(0, 0xFFFF)),
        max_size=60,
    )
)
def test_never_more_digits_than_distinct_events(
    stream: list[tuple[int, int, bool, int]],
) -> None:
    receiver = DtmfReceiver(101)
    digits: list[DigitReceived] = []
    for i, (slot, event, end, duration) in enumerate(stream):
        digits += receiver.on_packet(
            event_packet(slot * 10_000, event, duration, end=end), i * 0.02
        )
    digits += receiver.on_timer(1e9)
    assert len(digits) <= len({slot for slot, *_ in stream})
    assert all(d.digit in DTMF_DIGITS for d in digits)


# ---------------------------------------------------------------------------- sender


def make_sender() -> tuple[RtpSender, DtmfSender]:
    rtp = RtpSender(0, ssrc=0x11223344, sequence=100, timestamp=8000)
    return rtp, DtmfSender(rtp, 101)


def test_sender_packet_sequence_for_one_digit() -> None:
    rtp, sender = make_sender()
    schedule = sender.packets_for_digit("5", duration_ms=100)
    offsets = [round(at, 3) for at, _ in schedule]
    assert offsets == [0.0, 0.05, 0.1, 0.15, 0.2]
    packets = [packet for _, packet in schedule]
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True, False, False, False, False]
    assert {p.timestamp for p in packets} == {8000}
    assert {p.payload_type for p in packets} == {101}
    assert [p.sequence for p in packets] == [100, 101, 102, 103, 104]
    assert [(e.duration, e.end) for e in events] == [
        (0, False),
        (400, False),
        (800, True),
        (800, True),
        (800, True),
    ]
    assert bytes(packets[0]) == bytes.fromhex("80e5006400001f4011223344050a0000")
    # The media clock moved on by the event's length; audio resumes after it.
    assert rtp.timestamp == 8800
    assert rtp.audio_frame(b"\xff" * 160).sequence == 105


def test_sender_is_active_until_the_first_end_packet() -> None:
    rtp, sender = make_sender()
    first = sender.start("#", now=10.0, duration_ms=60)
    assert len(first) == 1 and first[0].marker
    assert (sender.active, sender.busy) == (True, True)
    assert sender.next_deadline() == pytest.approx(10.05)
    assert sender.poll(10.01) == []
    assert len(sender.poll(10.05)) == 1
    ends = sender.poll(10.06)
    assert [TelephoneEvent.parse(p.payload).end for p in ends] == [True]
    assert (sender.active, sender.busy) == (False, True)
    # Audio may now flow between the end retransmissions, with later sequence numbers.
    audio = rtp.audio_frame(b"\xff" * 160)
    retransmits = sender.poll(10.2)
    assert len(retransmits) == 2
    assert audio.sequence < retransmits[0].sequence < retransmits[1].sequence
    assert not sender.busy
    assert sender.next_deadline() is None


def test_sender_refuses_overlap_and_bad_input() -> None:
    _, sender = make_sender()
    sender.start("1", 0.0)
    with pytest.raises(MediaLocalError):
        sender.start("2", 0.01)
    _, idle = make_sender()
    for digit, duration in (("X", 100), ("12", 100), ("1", 0), ("1", 9000)):
        with pytest.raises(MediaLocalError):
            idle.start(digit, 0.0, duration)


@pytest.mark.parametrize("digit", [*DTMF_DIGITS, "a", "d"])
def test_sender_to_receiver_round_trip(digit: str) -> None:
    _, sender = make_sender()
    receiver = DtmfReceiver(101)
    digits = [
        d
        for at, packet in sender.packets_for_digit(digit, duration_ms=120)
        for d in receiver.on_packet(RtpPacket.parse(bytes(packet)), at)
    ]
    assert [(d.digit, d.duration_ms) for d in digits] == [(digit.upper(), 120)]


# ---------------------------------------------------------------------------- SIP INFO


@pytest.mark.parametrize(
    ("content_type", "body", "digit", "duration"),
    [
        ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", "5", 160),
        ("Application/DTMF-Relay; charset=utf-8", b"Signal= *\nDuration= 250", "*", 250),
        ("application/dtmf-relay", "signal=#\r\n", "#", 0),
        ("application/dtmf-relay", "Signal=10\r\nDuration=100", "*", 100),
        ("application/dtmf-relay", "Signal=11", "#", 0),
        ("application/dtmf-relay", "Signal=a", "A", 0),
        ("application/dtmf", "7", "7", 0),
        ("application/dtmf", b"#\r\n", "#", 0),
    ],
)
def test_info_bodies(content_type: str, body: str | bytes, digit: str, duration: int) -> None:
    event = parse_info_dtmf(content_type, body, now=3.5)
    assert event == DigitReceived(digit, duration, 3.5, "info")


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/dtmf-relay", "Duration=160", 400),
        ("application/dtmf-relay", "Signal=E", 400),
        ("application/dtmf-relay", "Signal=16", 400),
        ("application/dtmf-relay", "Signal=5\nDuration=-1", 400),
        ("application/dtmf-relay", b"Signal=\xff", 400),
        ("application/dtmf", "", 400),
        ("application/dtmf", "55", 400),
        ("text/plain", "Signal=5", 415),
    ],
)
def test_bad_info_bodies(content_type: str, body: str | bytes, status: int) -> None:
    with pytest.raises(DtmfParseError) as caught:
        parse_info_dtmf(content_type, body, now=0.0)
    assert caught.value.status == status
