"""Sans-IO parts of legs and bridges: latching, RTCP timing, stream renumbering, port
allocation, the digit buffer and recording names."""

from __future__ import annotations

import asyncio
import random

import pytest

from tsunagu.media.bridge import StreamRewriter
from tsunagu.media.dtmf import DigitReceived
from tsunagu.media.engine import LocalMediaEngine, MediaConfig, PortAllocator
from tsunagu.media.interface import MediaEngine, MediaLeg, Recording
from tsunagu.media.leg import DigitBuffer, LocalMediaLeg
from tsunagu.media.recorder import Recorder
from tsunagu.media.rtp import MediaLocalError, RtpPacket, RtpSender
from tsunagu.media.session import Latch, rtcp_interval

SDP_ADDRESS = ("192.168.1.20", 4000)  # what a phone behind NAT writes in its SDP
NAT_ADDRESS = ("203.0.113.7", 61000)  # where its packets really come from


def test_latch_sends_to_sdp_until_first_packet_then_to_the_source() -> None:
    latch = Latch(SDP_ADDRESS, relatch_after=2.0)
    assert latch.destination == SDP_ADDRESS
    assert latch.accept(NAT_ADDRESS, 0xAAA, now=10.0)
    assert latch.destination == NAT_ADDRESS


def test_latch_drops_other_sources_while_the_peer_is_live() -> None:
    latch = Latch(SDP_ADDRESS, relatch_after=2.0)
    latch.accept(NAT_ADDRESS, 0xAAA, now=10.0)
    assert not latch.accept(("198.51.100.9", 5000), 0xBBB, now=10.5)  # RTP bleed attempt
    assert latch.accept(NAT_ADDRESS, 0xAAA, now=11.9)
    assert not latch.accept(("198.51.100.9", 5000), 0xBBB, now=13.8)
    assert latch.destination == NAT_ADDRESS


def test_latch_moves_after_the_latched_source_went_quiet() -> None:
    latch = Latch(SDP_ADDRESS, relatch_after=2.0)
    latch.accept(NAT_ADDRESS, 0xAAA, now=10.0)
    moved = ("203.0.113.7", 61002)  # NAT rebinding or a new SSRC after an SBC fail-over
    assert not latch.accept(moved, 0xCCC, now=11.0)
    assert latch.accept(moved, 0xCCC, now=12.0)
    assert latch.destination == moved and latch.relatches == 1
    assert not latch.accept(NAT_ADDRESS, 0xAAA, now=12.1)


def test_latch_reset_by_new_sdp() -> None:
    latch = Latch(SDP_ADDRESS)
    latch.accept(NAT_ADDRESS, 1, now=0.0)
    latch.reset(("10.0.0.5", 7000))
    assert latch.destination == ("10.0.0.5", 7000) and latch.latched is None


def test_rtcp_interval_is_randomised_around_the_minimum() -> None:
    rng = random.Random(3)
    regular = [rtcp_interval(rng, initial=False) for _ in range(2000)]
    assert min(regular) >= 2.5 and max(regular) <= 7.5
    assert 4.8 < sum(regular) / len(regular) < 5.2
    first = [rtcp_interval(rng, initial=True) for _ in range(2000)]
    assert min(first) >= 1.25 and max(first) <= 3.75


def pkt(ssrc: int, seq: int, ts: int, marker: bool = False) -> RtpPacket:
    return RtpPacket(0, seq, ts, ssrc, b"\xff" * 160, marker)


def test_rewriter_gives_one_consistent_stream_across_sources() -> None:
    sender = RtpSender(8, ssrc=0x5151, sequence=65534, timestamp=0xFFFFFF00)
    rewriter = StreamRewriter(sender)
    out = [
        rewriter.rewrite(pkt(1, 10 + n, 1000 + 160 * n), 8, b"\xd5" * 160, 160) for n in range(3)
    ]
    assert [p.ssrc for p in out] == [0x5151] * 3
    assert [p.sequence for p in out] == [65534, 65535, 0]
    assert [p.timestamp for p in out] == [0xFFFFFF00, 0xFFFFFFA0, 0x00000040]
    assert out[0].marker and not out[1].marker
    # A DTX gap of 1 s in the source stays a 1 s gap; sequence stays contiguous.
    gap = rewriter.rewrite(pkt(1, 13, 1000 + 160 * 3 + 8000), 8, b"\xd5" * 160, 160)
    assert gap.sequence == 1 and (gap.timestamp - out[2].timestamp) & 0xFFFFFFFF == 8160
    # A new incoming SSRC continues where we are, with the marker bit.
    other = rewriter.rewrite(pkt(2, 500, 77), 8, b"\xd5" * 160, 160)
    assert other.sequence == 2 and other.marker
    assert other.timestamp == (gap.timestamp + 160) & 0xFFFFFFFF
    assert rewriter.anchors == 2


def test_rewriter_reanchors_when_the_source_clock_jumps_back() -> None:
    sender = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    rewriter = StreamRewriter(sender)
    rewriter.rewrite(pkt(9, 1, 100_000), 0, b"\xff" * 160, 160)
    back = rewriter.rewrite(pkt(9, 2, 50_000), 0, b"\xff" * 160, 160)
    assert back.timestamp == 160 and back.marker


def test_rewriter_keeps_event_start_timestamps_and_moves_past_them() -> None:
    sender = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    rewriter = StreamRewriter(sender)
    rewriter.rewrite(pkt(9, 1, 1000), 0, b"\xff" * 160, 160)
    payload = b"\x05\x0a\x00\xa0"  # duration 160
    events = [
        rewriter.rewrite(RtpPacket(101, 2 + n, 1160, 9, payload), 96, payload, 160)
        for n in range(3)
    ]
    assert {e.timestamp for e in events} == {160}
    assert [e.payload_type for e in events] == [96] * 3
    assert sender.timestamp == 320  # past the event, so the next one cannot share its stamp


def test_port_allocator_even_pairs_reused_last() -> None:
    ports = PortAllocator(20001, 20010)
    got = [ports.acquire() for _ in range(4)]
    assert got == [20002, 20004, 20006, 20008]  # 20010 would need 20011 for RTCP
    with pytest.raises(MediaLocalError):
        ports.acquire()
    ports.release(20004)
    ports.release(20004)  # twice is harmless
    assert ports.acquire() == 20004
    ports.release(20002)
    ports.release(20006)
    assert [ports.acquire(), ports.acquire()] == [20002, 20006]
    assert ports.in_use == 4 and ports.free == 0


def test_config_rejects_what_would_break_calls() -> None:
    with pytest.raises(MediaLocalError):
        MediaConfig(port_min=30000, port_max=20000)
    with pytest.raises(MediaLocalError):
        MediaConfig(bind_address="0.0.0.0")  # which address would SDP advertise?
    assert MediaConfig(bind_address="0.0.0.0", advertised_address="198.51.100.1")


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", ".hidden", "x" * 300, "a..b"])
def test_recording_names_cannot_escape_the_directory(name: str) -> None:
    engine = LocalMediaEngine(MediaConfig(tts_enabled=False))
    with pytest.raises(MediaLocalError):
        engine.recording_path(name)


def test_recording_name_from_interaction_id() -> None:
    engine = LocalMediaEngine(MediaConfig(tts_enabled=False))
    path = engine.recording_path("2024-05-01_abc-123.caller")
    assert path.name == "2024-05-01_abc-123.caller.wav"


def digit(d: str) -> DigitReceived:
    return DigitReceived(d, 100, 0.0)


async def test_digit_buffer_keeps_type_ahead_bounded() -> None:
    buffer = DigitBuffer(maxlen=3)
    for d in "12345":
        buffer.put(digit(d))
    assert len(buffer) == 3
    assert buffer.peek() == digit("3")
    got = [await buffer.get() for _ in range(3)]
    assert [g.digit for g in got if g] == ["3", "4", "5"]


async def test_digit_buffer_wakes_a_waiting_reader_and_ends_on_close() -> None:
    buffer = DigitBuffer()
    reader = asyncio.ensure_future(buffer.get())
    await asyncio.sleep(0)
    buffer.put(digit("7"))
    assert (await reader) == digit("7")
    # A reader that timed out does not swallow the next digit.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(buffer.get(), 0.01)
    buffer.put(digit("8"))
    assert (await buffer.get()) == digit("8")
    waiting = asyncio.ensure_future(buffer.get())
    await asyncio.sleep(0)
    buffer.close()
    assert (await waiting) is None


def test_local_engine_satisfies_the_media_interface() -> None:
    """Call control types against the Protocols; the local engine must fit them (mypy checks
    the assignments below, the runtime check covers what runtime_checkable can see)."""
    engine: MediaEngine = LocalMediaEngine(MediaConfig(tts_enabled=False))
    leg_type: type[MediaLeg] = LocalMediaLeg
    recording_type: type[Recording] = Recorder
    assert engine is not None and leg_type is LocalMediaLeg and recording_type is Recorder
