"""Recording: alignment of two channels by RTP timing, gaps, pause, and the crash-safe WAV."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tsunagu.media import g711
from tsunagu.media.interface import Channel
from tsunagu.media.recorder import RecordingTimeline, WavWriter

LEFT, RIGHT = Channel.LEFT, Channel.RIGHT
RATE = 8000


def frame(level: int, samples: int = 160) -> bytes:
    """μ-law octets of a constant level (distinct levels identify packets in the output)."""
    return g711.ulaw_encode(np.full(samples, level, dtype=np.int16))


def as_stereo(data: bytes) -> npt.NDArray[np.int16]:
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2)


def decoded(level: int) -> int:
    return int(g711.ulaw_decode(frame(level, 1))[0])


def test_two_sources_align_on_one_timeline() -> None:
    timeline = RecordingTimeline(start=100.0, latency_s=0.1)
    # Left starts at 0.5 s, right at 1.0 s; each then sends 20 ms packets on time.
    for n in range(10):
        timeline.feed(LEFT, 11, 5000 + 160 * n, frame(1000), 100.5 + 0.02 * n)
        timeline.feed(RIGHT, 22, 900_000 + 160 * n, frame(-2000), 101.0 + 0.02 * n)
    out = as_stereo(timeline.take(102.0, final=True))
    left, right = out[:, 0], out[:, 1]
    assert np.all(left[:4000] == 0) and np.all(left[4000:5600] == decoded(1000))
    assert np.all(left[5600:] == 0)
    assert np.all(right[:8000] == 0) and np.all(right[8000:9600] == decoded(-2000))


def test_placement_follows_rtp_timestamps_not_arrival_jitter() -> None:
    timeline = RecordingTimeline(start=0.0, latency_s=0.2)
    # Packets 0..4 of one stream; 2 and 3 arrive late and swapped, 4 never arrives.
    arrivals = {0: 1.000, 1: 1.020, 3: 1.090, 2: 1.095}
    for n, at in arrivals.items():
        timeline.feed(LEFT, 7, 160 * n, frame(500 * (n + 1)), at)
    out = as_stereo(timeline.take(2.0, final=True))[:, 0]
    for n in range(4):
        start = 8000 + 160 * n
        assert np.all(out[start : start + 160] == decoded(500 * (n + 1))), n
    assert np.all(out[8640:8800] == 0)  # the lost packet is silence, not a repeat


def test_take_holds_back_the_latency_window_then_drops_late_packets() -> None:
    timeline = RecordingTimeline(start=0.0, latency_s=0.3)
    timeline.feed(LEFT, 1, 0, frame(800), 0.0)
    assert timeline.take(0.25) == b""  # still inside the jitter allowance
    written = as_stereo(timeline.take(1.0))
    assert written.shape[0] == round(0.7 * RATE)
    assert np.all(written[:160, 0] == decoded(800))
    # A packet 0.4 s late (its place, 0.6 s, is already on disk) cannot be written any more.
    timeline.feed(LEFT, 1, 4800, frame(900), 1.0)
    assert timeline.dropped_late == 1
    assert timeline.reanchors == 0


def test_new_ssrc_and_timestamp_jumps_reanchor_at_arrival() -> None:
    timeline = RecordingTimeline(start=0.0, latency_s=0.1, reanchor_s=0.5)
    timeline.feed(LEFT, 1, 1000, frame(100), 0.0)
    # Same SSRC, timestamp jumps 10 s ahead while only 0.02 s passed: a sender restart.
    timeline.feed(LEFT, 1, 1000 + 80_000 + 160, frame(200), 0.02)
    timeline.feed(LEFT, 2, 42, frame(300), 0.5)  # a new source
    out = as_stereo(timeline.take(1.0, final=True))[:, 0]
    assert timeline.reanchors == 1
    assert np.all(out[160:320] == decoded(200))
    assert np.all(out[4000:4160] == decoded(300))


def test_pause_writes_silence_even_for_audio_already_buffered_or_late() -> None:
    timeline = RecordingTimeline(start=0.0, latency_s=0.3)
    for n in range(150):  # 3 s of audio, packets every 20 ms
        at = 0.02 * n
        if n == 50:
            timeline.pause(at)  # at 1.0 s
        if n == 100:
            timeline.resume(at)  # at 2.0 s
        if n == 49:
            # Sent just before the pause, but its timestamp is 60 ms into it (jitter).
            timeline.feed(LEFT, 5, 160 * 53, frame(1500), at)
        timeline.feed(LEFT, 5, 160 * n, frame(1500), at)
    # A packet spoken during the pause that straggles in after resume: discarded.
    timeline.feed(LEFT, 5, 160 * 90, frame(1500), 2.05)
    out = as_stereo(timeline.take(3.5, final=True))[:, 0]
    assert np.all(out[:8000] == decoded(1500))
    assert np.all(out[8000:16000] == 0), "audio leaked into the paused section"
    assert np.all(out[16000:24000] == decoded(1500))


def test_stall_longer_than_the_buffer_is_written_as_silence() -> None:
    timeline = RecordingTimeline(start=0.0, latency_s=0.1, window_s=1.0)
    timeline.feed(LEFT, 1, 0, frame(700), 0.0)
    out = as_stereo(timeline.take(5.0))
    assert out.shape[0] == round(4.9 * RATE)
    assert np.all(out[:160, 0] == decoded(700)) and np.all(out[160:] == 0)


def test_wav_header_is_valid_while_writing_and_exact_after_close(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    writer = WavWriter(path, header_interval_s=1.0)
    second = np.arange(2 * RATE, dtype="<i2").tobytes()  # one second of stereo frames
    for _ in range(2):
        writer.write(second)
    writer.write(second[: len(second) // 2])  # 2.5 s written, the process "dies" here
    # Not closed: read it back the way a player would, trusting the header.
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        frames = w.getnframes()
        assert 2 * RATE <= frames <= 2.5 * RATE  # up to one header interval behind
        data = np.frombuffer(w.readframes(frames), dtype="<i2")
    assert np.array_equal(data[: 2 * RATE], np.arange(2 * RATE, dtype="<i2"))
    # What the header does not cover yet is on disk too (the file length tells the rest).
    assert path.stat().st_size == 44 + int(2.5 * RATE) * 4
    writer.close()
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == int(2.5 * RATE)
    writer.close()  # twice is fine


def test_writer_refuses_partial_frames(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "x.wav")
    with pytest.raises(Exception, match="whole frames"):
        writer.write(b"\x00\x01\x02")
    writer.close()
