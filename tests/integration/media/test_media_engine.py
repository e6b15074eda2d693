"""The media engine on real loopback UDP sockets, against a small RTP peer.

Each test plays the part of a phone (or two) with :class:`RtpPeer` and judges what it
heard by spectrum: a prompt tone must come out at its frequency, a bridged call must carry
each party's tone to the other and into its own recording channel. Waits are bounded and
generous; nothing asserts on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import require_program
from tests.integration.media.conftest import EngineFactory
from tests.integration.media.peer import LOOPBACK, RtpPeer
from tests.integration.peers.audio import (
    band_energy_ratio,
    dominant_frequency,
    energy_between,
    read_wav,
    speech_energy_windows,
)
from tests.unit.test_dtmf import read_pcap_udp_payloads
from tsunagu.media.dtmf import DtmfReceiver, DtmfSender
from tsunagu.media.engine import LocalMediaEngine
from tsunagu.media.interface import Channel, DtmfMode, PlayEnd, Say
from tsunagu.media.rtp import MediaLocalError, RtpPacket, RtpSender
from tsunagu.media.sdp import PCMA, PCMU, Direction, build_offer
from tsunagu.media.tts import OpenJTalk

PeerFactory = Callable[..., Awaitable[RtpPeer]]
SIPP_DTMF_5 = Path("/usr/share/sip-tester/dtmf_2833_5.pcap")
HAVE_SIPP_CAPTURE = SIPP_DTMF_5.exists()


def free_block(size: int) -> int:
    """An even port with ``size`` consecutive ports free on loopback (below the ephemeral range)."""
    for _ in range(200):
        base = random.randrange(10000, 32000, 2)
        sockets = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((LOOPBACK, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise AssertionError("no free block of ports")


async def wait_until(condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met within the bounded wait")
        await asyncio.sleep(0.02)


def heard_digits(peer: RtpPeer, payload_type: int) -> str:
    receiver = DtmfReceiver(payload_type)
    digits = []
    for h in peer.heard:
        if h.payload_type == payload_type:
            packet = RtpPacket(h.payload_type, h.sequence, h.timestamp, h.ssrc, h.payload, h.marker)
            digits += receiver.on_packet(packet, h.arrival)
    digits += receiver.on_timer(1e12)
    return "".join(d.digit for d in digits)


async def send_digits(
    peer: RtpPeer, to: tuple[str, int], digits: str, payload_type: int = 101
) -> None:
    """Send RFC 4733 events like a phone: start, updates every 50 ms, three end packets."""
    # Each press needs its own timestamp (RFC 4733 §2.5.2 tells presses apart by it).
    rtp = RtpSender(0, ssrc=peer.ssrc, sequence=peer.next_sequence(), timestamp=peer.advance(8000))
    sender = DtmfSender(rtp, payload_type)
    loop = asyncio.get_running_loop()
    for digit in digits:
        start = loop.time()
        for offset, packet in sender.packets_for_digit(digit, duration_ms=120):
            delay = start + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            peer.send(bytes(packet), to)
        await asyncio.sleep(0.06)


# ---------------------------------------------------------------------------- prompts


async def test_caller_hears_a_prompt_tone_in_clean_20ms_packets(
    engine: LocalMediaEngine, make_peer: PeerFactory, tone_1k: Path
) -> None:
    peer = await make_peer()
    leg = await engine.open_leg("call-1", "caller")
    answer = await leg.answer(peer.offer(codecs=(PCMU, PCMA)))
    assert answer.media[0].port == leg.local_port
    outcome = await leg.play([tone_1k])
    assert outcome.end is PlayEnd.COMPLETED and outcome.played_s == pytest.approx(1.0)
    await wait_until(lambda: len(peer.heard) >= 50)
    audio = [h for h in peer.heard if h.payload_type == 0]
    assert len(audio) == 50  # 1 s at 20 ms, converted from 44.1 kHz once
    assert all(len(h.payload) == 160 for h in audio)
    assert audio[0].marker and not any(h.marker for h in audio[1:])
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in itertools.pairwise(audio))
    assert all(
        (b.timestamp - a.timestamp) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(audio)
    )
    assert len({h.ssrc for h in audio}) == 1
    assert dominant_frequency(peer.audio(), 8000) == pytest.approx(1000.0, abs=10)
    assert engine.prompts.conversions == 1
    await leg.play([tone_1k])
    assert engine.prompts.conversions == 1  # cached


async def test_sequence_of_tone_and_tts_has_speech_where_expected(
    engine: LocalMediaEngine, make_peer: PeerFactory, tone_1k: Path
) -> None:
    require_program("espeak-ng")
    peer = await make_peer()
    leg = await engine.open_leg("call-2", "caller")
    await leg.answer(peer.offer())
    outcome = await leg.play([tone_1k, Say("you are caller number three", "en")])
    assert outcome.end is PlayEnd.COMPLETED and outcome.played_s > 1.5
    await wait_until(lambda: len(peer.heard) >= int(outcome.played_s * 50) - 1)
    audio = peer.audio()
    assert dominant_frequency(audio[:8000], 8000) == pytest.approx(1000.0, abs=10)
    speech = audio[8000:]
    assert energy_between(speech, 8000, start_s=0.0, end_s=len(speech) / 8000) > 0.4
    spans = speech_energy_windows(speech, 8000)
    assert spans and spans[0][0] < 0.5  # speech starts right after the tone
    assert band_energy_ratio(speech, 8000, 1000.0, 30.0) < 0.5  # it is not the tone again
    # Rendered once and cached on disk under the data directory.
    assert engine.tts is not None and engine.tts.renders == 1
    await leg.play([Say("you are caller number three", "en")])
    assert engine.tts.renders == 1


async def test_japanese_tts_renders_with_the_chosen_engine(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    require_program("espeak-ng")
    peer = await make_peer()
    leg = await engine.open_leg("call-ja", "caller")
    await leg.answer(peer.offer())
    outcome = await leg.play([Say("お電話ありがとうございます", "ja")])
    assert outcome.end is PlayEnd.COMPLETED, outcome.error
    await wait_until(lambda: len(peer.heard) >= int(outcome.played_s * 50) - 1)
    assert speech_energy_windows(peer.audio(), 8000)


async def test_open_jtalk_speaks_japanese_when_a_voice_is_installed(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    require_program("open_jtalk")
    jtalk = OpenJTalk.discover(engine.config.data_dir)
    if jtalk is None:
        pytest.skip(
            "no HTS voice: Debian 12 ships none; `make test` installs mei_normal.htsvoice "
            "from the pyopenjtalk sdist into /usr/share/hts-voice/mei/"
        )
    assert engine.tts is not None and engine.tts.engine_for("ja").name == "open-jtalk"
    peer = await make_peer()
    leg = await engine.open_leg("call-jtalk", "caller")
    await leg.answer(peer.offer())
    outcome = await leg.play([Say("お電話ありがとうございます。あなたは3番目です。", "ja")])
    assert outcome.end is PlayEnd.COMPLETED, outcome.error
    assert engine.tts.renders == 1 and engine.tts.engine_for("ja").name == "open-jtalk"
    await wait_until(lambda: len(peer.heard) >= int(outcome.played_s * 50) - 1)
    spans = speech_energy_windows(peer.audio(), 8000)
    assert spans and sum(end - start for start, end in spans) > 1.5


async def test_loop_plays_until_stopped_and_missing_prompt_fails(
    engine: LocalMediaEngine, make_peer: PeerFactory, tone_1k: Path
) -> None:
    peer = await make_peer()
    leg = await engine.open_leg("call-3", "caller")
    await leg.answer(peer.offer())
    task = asyncio.ensure_future(leg.play([tone_1k], loop=True))
    await wait_until(lambda: len(peer.heard) >= 75)  # past the end of the 1 s file
    leg.stop_playback()
    outcome = await task
    assert outcome.end is PlayEnd.STOPPED and outcome.played_s >= 1.5
    failed = await leg.play(["no-such-prompt.wav"])
    assert failed.end is PlayEnd.FAILED and failed.error and "no-such-prompt" in failed.error
    # Cancelling play() stops the audio too.
    task = asyncio.ensure_future(leg.play([tone_1k], loop=True))
    await wait_until(lambda: leg._playback is not None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    count = len(peer.heard)
    await asyncio.sleep(0.2)
    assert len(peer.heard) <= count + 1


# ---------------------------------------------------------------------------- digits


async def test_rfc4733_digits_arrive_exactly_once(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    peer = await make_peer()
    leg = await engine.open_leg("call-4", "caller")
    await leg.answer(peer.offer())
    await send_digits(peer, (LOOPBACK, leg.local_port), "1234#")
    assert await leg.collect_digits(10, timeout_s=5.0, inter_digit_timeout_s=2.0) == "1234"
    assert await leg.collect_digits(1, timeout_s=0.4) == ""  # no duplicates left over


async def test_sipp_capture_replayed_at_the_session_gives_one_digit(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    if not HAVE_SIPP_CAPTURE:
        require_program("sipp")
    records = read_pcap_udp_payloads(SIPP_DTMF_5)
    assert records, "the capture holds RTP"
    payload_type = RtpPacket.parse(records[0][1]).payload_type
    peer = await make_peer()
    leg = await engine.open_leg("call-5", "caller")
    await leg.answer(peer.offer(telephone_event=payload_type))
    loop = asyncio.get_running_loop()
    start, first = loop.time(), records[0][0]
    for at, payload in records:  # replayed with the capture's own timing
        delay = start + (at - first) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        peer.send(payload, (LOOPBACK, leg.local_port))
    iterator = leg.digits()
    got = [await asyncio.wait_for(anext(iterator), 3.0)]
    assert [d.digit for d in got] == ["5"] and got[0].duration_ms > 0
    assert await leg.collect_digits(1, timeout_s=0.5) == ""


async def test_barge_in_stops_the_prompt_and_keeps_the_digit(
    engine: LocalMediaEngine, make_peer: PeerFactory, tone_1k: Path
) -> None:
    peer = await make_peer()
    leg = await engine.open_leg("call-6", "caller")
    await leg.answer(peer.offer())
    play = asyncio.ensure_future(leg.play([tone_1k, tone_1k, tone_1k], barge_in=True))
    await wait_until(lambda: len(peer.heard) >= 10)
    await send_digits(peer, (LOOPBACK, leg.local_port), "7")
    outcome = await asyncio.wait_for(play, 5.0)
    assert outcome.end is PlayEnd.BARGE_IN and outcome.digit == "7"
    assert await leg.collect_digits(1, timeout_s=1.0) == "7"
    # Without barge-in the same digit does not interrupt.
    play = asyncio.ensure_future(leg.play([tone_1k]))
    await send_digits(peer, (LOOPBACK, leg.local_port), "8")
    assert (await play).end is PlayEnd.COMPLETED


async def test_sip_info_digits_join_the_same_queue(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    peer = await make_peer()
    leg = await engine.open_leg("call-7", "caller")
    await leg.answer(peer.offer())
    leg.feed_info_dtmf("application/dtmf-relay", "Signal=9\r\nDuration=160\r\n")
    leg.feed_info_dtmf("application/dtmf-relay", "Signal=#\r\nDuration=160\r\n")
    assert await leg.collect_digits(4, timeout_s=1.0) == "9"


async def test_send_dtmf_produces_rfc4733_events(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    peer = await make_peer()
    leg = await engine.open_leg("call-8", "caller")
    await leg.answer(peer.offer(telephone_event=96))
    await asyncio.wait_for(leg.send_dtmf("12#"), 10.0)
    await asyncio.sleep(0.1)
    assert heard_digits(peer, 96) == "12#"
    with pytest.raises(MediaLocalError):
        await leg.send_dtmf("x")


# ---------------------------------------------------------------------------- latching


async def test_latching_follows_the_real_source_and_ignores_others(
    make_engine: EngineFactory, make_peer: PeerFactory, tone_1k: Path
) -> None:
    engine = await make_engine(relatch_after_s=0.5)
    phone = await make_peer(ssrc=1)
    intruder = await make_peer(ssrc=2)
    moved = await make_peer(ssrc=3)
    nowhere = await make_peer()  # the private address a NATed phone writes in its SDP
    leg = await engine.open_leg("call-9", "caller")
    await leg.answer(build_offer(LOOPBACK, nowhere.port, (PCMU,), 101))
    play = asyncio.ensure_future(leg.play([tone_1k, tone_1k, tone_1k]))
    await wait_until(lambda: len(nowhere.heard) >= 5)
    assert phone.heard == []
    phone_talks = phone.send_tone((LOOPBACK, leg.local_port), 440.0, 0.6)
    await wait_until(lambda: len(phone.heard) >= 10)
    before = len(nowhere.heard)
    intruder.send_tone((LOOPBACK, leg.local_port), 300.0, 0.3)
    await asyncio.sleep(0.4)
    assert intruder.heard == []
    assert leg.session.dropped_foreign >= 5
    assert len(nowhere.heard) <= before + 1
    quality = await leg.quality()
    assert quality.latched_to == (LOOPBACK, phone.port)
    # The phone goes quiet past relatch_after_s; a new source may then take over.
    await phone_talks
    await asyncio.sleep(0.7)
    moved.send_tone((LOOPBACK, leg.local_port), 440.0, 0.3)
    await wait_until(lambda: len(moved.heard) >= 5)
    assert (await leg.quality()).latched_to == (LOOPBACK, moved.port)
    leg.stop_playback()
    await play


# ---------------------------------------------------------------------------- bridging


async def test_bridged_call_records_caller_left_agent_right_with_transcoding(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    caller = await make_peer(ssrc=0xCA11)
    agent = await make_peer(ssrc=0xA6E7)
    caller_leg = await engine.open_leg("call-10", "caller")
    agent_leg = await engine.open_leg("call-10", "agent")
    await caller_leg.answer(caller.offer(codecs=(PCMU,)))
    await agent_leg.answer(agent.offer(codecs=(PCMA,), telephone_event=96))
    recording = await engine.recorder("call-10")
    await caller_leg.bridge(agent_leg, recording)
    assert caller_leg.bridged_to is agent_leg and agent_leg.bridged_to is caller_leg
    await asyncio.gather(
        caller.send_tone((LOOPBACK, caller_leg.local_port), 440.0, 2.0, PCMU),
        agent.send_tone((LOOPBACK, agent_leg.local_port), 1000.0, 2.0, PCMA),
    )
    await asyncio.sleep(0.2)
    path = await recording.stop()
    # Each party hears the other's tone, in its own law.
    caller_heard = [h for h in caller.heard if h.payload_type in (0, 8)]
    agent_heard = [h for h in agent.heard if h.payload_type in (0, 8)]
    assert {h.payload_type for h in caller_heard} == {0}
    assert {h.payload_type for h in agent_heard} == {8}
    assert len(caller_heard) >= 95 and len(agent_heard) >= 95
    assert dominant_frequency(caller.audio(), 8000) == pytest.approx(1000.0, abs=10)
    assert dominant_frequency(agent.audio(), 8000) == pytest.approx(440.0, abs=10)
    # Renumbered as one stream per leg (our SSRC, contiguous sequence numbers).
    assert {h.ssrc for h in agent_heard} == {agent_leg.session.sender.ssrc}
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in itertools.pairwise(agent_heard))
    rate, channels = read_wav(path)
    assert rate == 8000 and channels.shape[0] == 2
    assert dominant_frequency(channels[Channel.LEFT], rate) == pytest.approx(440.0, abs=10)
    assert dominant_frequency(channels[Channel.RIGHT], rate) == pytest.approx(1000.0, abs=10)
    assert band_energy_ratio(channels[Channel.LEFT], rate, 440.0) > 0.9
    assert band_energy_ratio(channels[Channel.RIGHT], rate, 1000.0) > 0.9
    with wave.open(str(path)) as w:
        assert w.getnframes() == channels.shape[1]  # the header is final and exact
    await caller_leg.unbridge()
    assert [leg.bridged_to for leg in (caller_leg, agent_leg)] == [None, None]


async def test_pause_leaves_silence_in_both_channels(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    caller = await make_peer(ssrc=11)
    agent = await make_peer(ssrc=22)
    caller_leg = await engine.open_leg("call-11", "caller")
    agent_leg = await engine.open_leg("call-11", "agent")
    await caller_leg.answer(caller.offer())
    await agent_leg.answer(agent.offer())
    recording = await engine.recorder("call-11")
    await caller_leg.bridge(agent_leg, recording)
    loop = asyncio.get_running_loop()
    start = recording.timeline.start
    tones = [
        caller.send_tone((LOOPBACK, caller_leg.local_port), 440.0, 3.0),
        agent.send_tone((LOOPBACK, agent_leg.local_port), 1000.0, 3.0),
    ]
    await asyncio.sleep(1.0)
    paused_at = loop.time() - start
    await recording.pause()
    await asyncio.sleep(1.0)
    resumed_at = loop.time() - start
    await recording.resume()
    tone_end = await asyncio.gather(*tones)
    del tone_end
    ended_at = loop.time() - start
    path = await recording.stop()
    rate, channels = read_wav(path)
    for channel in channels:
        assert energy_between(channel, rate, start_s=paused_at + 0.02, end_s=resumed_at) == 0.0
        assert energy_between(channel, rate, start_s=0.5, end_s=paused_at - 0.1) > 0.9
        assert energy_between(channel, rate, start_s=resumed_at + 0.1, end_s=ended_at - 0.1) > 0.9


async def test_dtmf_relay_and_surface_modes(
    engine: LocalMediaEngine, make_peer: PeerFactory
) -> None:
    caller = await make_peer(ssrc=5)
    agent = await make_peer(ssrc=6)
    caller_leg = await engine.open_leg("call-12", "caller")
    agent_leg = await engine.open_leg("call-12", "agent")
    await caller_leg.answer(caller.offer(telephone_event=101))
    await agent_leg.answer(agent.offer(telephone_event=96))
    await caller_leg.bridge(agent_leg, dtmf=DtmfMode.RELAY)
    await send_digits(caller, (LOOPBACK, caller_leg.local_port), "3")
    caller_leg.feed_info_dtmf("application/dtmf-relay", "Signal=4\nDuration=100")
    await asyncio.sleep(0.6)
    assert heard_digits(agent, 96) == "34"  # RFC 4733 forwarded, INFO turned into events
    assert await caller_leg.collect_digits(1, timeout_s=0.2) == ""  # relayed only
    agent.heard.clear()
    await caller_leg.bridge(agent_leg, dtmf=DtmfMode.SURFACE)
    await send_digits(caller, (LOOPBACK, caller_leg.local_port), "*")
    assert await caller_leg.collect_digits(1, timeout_s=2.0) == "*"
    assert heard_digits(agent, 96) == ""


async def test_hold_by_reinvite_stops_our_audio_and_resume_restarts_it(
    engine: LocalMediaEngine, make_peer: PeerFactory, tone_1k: Path
) -> None:
    peer = await make_peer()
    leg = await engine.open_leg("call-13", "caller")
    await leg.answer(peer.offer())
    hold = build_offer(LOOPBACK, peer.port, (PCMU, PCMA), 101, direction=Direction.SENDONLY)
    answer = await leg.update_remote(hold)
    assert answer.media[0].direction is Direction.RECVONLY
    await leg.play([tone_1k])
    assert peer.heard == []
    resume = build_offer(LOOPBACK, peer.port, (PCMU, PCMA), 101)
    answer = await leg.update_remote(resume)
    assert answer.media[0].direction is Direction.SENDRECV
    assert answer.origin.version == 3  # RFC 3264 §8: each changed answer is a new version
    await leg.play([tone_1k])
    await wait_until(lambda: len(peer.heard) >= 50)


async def test_legs_we_originate_and_rtcp_quality(
    make_engine: EngineFactory, tone_1k: Path
) -> None:
    engine = await make_engine(rtcp_min_interval_s=0.3)
    a = await engine.open_leg("call-14", "a")
    b = await engine.open_leg("call-14", "b")
    offer = await a.offer()
    answer = await b.answer(offer)
    media = await a.accept_answer(answer)
    assert media.codec.name == "PCMU" and media.telephone_event == 101
    await asyncio.gather(a.play([tone_1k, tone_1k]), b.play([tone_1k, tone_1k]))
    await wait_until(
        lambda: a.session._remote is not None and a.session._remote.rtt_ms is not None, 10.0
    )
    quality = await a.quality()
    assert quality.packets_received >= 95 and quality.packets_lost == 0
    assert quality.remote_fraction_lost == 0.0
    assert quality.rtt_ms is not None and 0.0 <= quality.rtt_ms < 1000.0
    assert quality.jitter_ms < 100.0


async def test_ports_are_freed_and_reused(make_engine: EngineFactory) -> None:
    base = free_block(8)
    engine = await make_engine(port_min=base, port_max=base + 7)
    legs = [await engine.open_leg("call-15", f"leg{n}") for n in range(engine.ports.capacity)]
    with pytest.raises(MediaLocalError):
        await engine.open_leg("call-15", "one-too-many")
    port = legs[0].local_port
    await legs[0].close()
    await legs[0].close()  # twice is fine
    again = await engine.open_leg("call-15", "again")
    assert again.local_port == port
    with pytest.raises(MediaLocalError):
        await engine.open_leg("call-15", "again")  # same leg id twice


# ---------------------------------------------------------------------------- crash safety

KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    from pathlib import Path
    from tsunagu.media import g711
    from tsunagu.media.clock import MediaClock
    from tsunagu.media.interface import Channel
    from tsunagu.media.recorder import Recorder

    async def main() -> None:
        clock = MediaClock()
        recorder = Recorder(Path(sys.argv[1]), clock)
        loop = asyncio.get_running_loop()
        t = np.arange(160 * 1000) / 8000
        left = g711.ulaw_encode(np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))
        start = loop.time()
        for n in range(1000):
            await asyncio.sleep(max(0.0, start + 0.02 * n - loop.time()))
            recorder.feed(Channel.LEFT, 1, 160 * n, left[160 * n : 160 * (n + 1)],
                          codec="PCMU", now=loop.time())
            if recorder.seconds >= 2.5:
                print("written", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


def test_recording_cut_by_kill_9_plays_up_to_the_crash(tmp_path: Path) -> None:
    path = tmp_path / "crash.wav"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"written", "the writer never got 2.5 s of audio on disk"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    with wave.open(str(path)) as w:  # the header alone must describe playable audio
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        frames = w.getnframes()
        data = np.frombuffer(w.readframes(frames), dtype="<i2").reshape(-1, 2)
    assert frames >= 1.5 * 8000
    left = data[:, 0].astype(np.float64) / 32768
    voiced = left[np.abs(left) > 0][:8000]
    assert dominant_frequency(voiced, 8000) == pytest.approx(440.0, abs=10)
    assert not np.any(data[:, 1])
