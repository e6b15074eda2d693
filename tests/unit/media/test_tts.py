"""TTS cache: content-hash keys, one rendering per prompt, timeouts, and the fallback.

The engines here are stand-ins run as real subprocesses (the Python interpreter writing a
WAV), so the subprocess, timeout and caching machinery is exercised without depending on
espeak-ng; the real engines are covered by the integration tests.
"""

from __future__ import annotations

import asyncio
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import pytest

from tsunagu.media.interface import Say
from tsunagu.media.tts import TextToSpeech, TtsCommand, TtsError, _is_hts_voice, cache_key

WRITE_WAV = """
import math, struct, sys, wave
text = sys.stdin.read()
rate = int(sys.argv[2])
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    n = rate * len(text) // 20
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 3))) for i in range(n)))
"""


@dataclass
class FakeEngine:
    """Writes len(text)/20 seconds of a 16 kHz tone, or misbehaves as told."""

    name: str = "fake"
    behaviour: str = "ok"  # ok | fail | hang | garbage
    japanese_only: bool = False
    ver: str = "1.0"

    def available(self) -> bool:
        return True

    def supports(self, language: str) -> bool:
        return language == "ja" or not self.japanese_only

    def voice_for(self, language: str, voice: str | None) -> str:
        return voice or f"default-{language}"

    def version(self) -> str:
        return self.ver

    def command(self, text: str, language: str, voice: str | None, out: Path) -> TtsCommand:
        if self.behaviour == "fail":
            return TtsCommand([sys.executable, "-c", "import sys; sys.exit(3)"], b"")
        if self.behaviour == "hang":
            return TtsCommand([sys.executable, "-c", "import time; time.sleep(30)"], b"")
        if self.behaviour == "garbage":
            script = f"open({str(out)!r}, 'wb').write(b'not a wav')"
            return TtsCommand([sys.executable, "-c", script], b"")
        return TtsCommand([sys.executable, "-c", WRITE_WAV, str(out), "16000"], text.encode())


def files(directory: Path, pattern: str) -> list[Path]:
    return list(directory.rglob(pattern))


def test_cache_key_covers_everything_that_changes_the_audio() -> None:
    base = ("espeak-ng", "1.51", "ja", "ja", "3番目")
    key = cache_key(*base)
    assert len(key) == 64 and key == cache_key(*base)
    for index in range(len(base)):
        changed = list(base)
        changed[index] += "x"
        assert cache_key(*changed) != key, f"field {index} is not in the key"


async def test_renders_once_then_serves_the_cached_file(tmp_path: Path) -> None:
    tts = TextToSpeech(tmp_path, espeak=FakeEngine())
    first = await tts.render(Say("you are caller number", "en"))
    assert first.parent.parent == tmp_path
    with wave.open(str(first)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == pytest.approx(8000 * 21 / 20, abs=2)
    again = await tts.render(Say("you are caller number", "en"))
    assert again == first and tts.renders == 1
    await tts.render(Say("you are caller number", "ja"))
    assert tts.renders == 2
    # A new process (same cache dir) finds the rendering on disk.
    fresh = TextToSpeech(tmp_path, espeak=FakeEngine())
    assert await fresh.render(Say("you are caller number", "en")) == first
    assert fresh.renders == 0
    # An engine upgrade renders afresh.
    upgraded = TextToSpeech(tmp_path, espeak=FakeEngine(ver="2.0"))
    assert await upgraded.render(Say("you are caller number", "en")) != first


async def test_concurrent_requests_share_one_rendering(tmp_path: Path) -> None:
    tts = TextToSpeech(tmp_path, espeak=FakeEngine())
    paths = await asyncio.gather(*(tts.render(Say("three", "en")) for _ in range(4)))
    assert len(set(paths)) == 1 and tts.renders == 1
    assert not files(tmp_path, ".render-*"), "temporary files left behind"


async def test_timeout_kills_the_engine_and_raises(tmp_path: Path) -> None:
    tts = TextToSpeech(tmp_path, espeak=FakeEngine(behaviour="hang"), timeout_s=0.5)
    with pytest.raises(TtsError, match="longer than"):
        await tts.render(Say("hello", "en"))
    assert not files(tmp_path, "*.wav")


@pytest.mark.parametrize("behaviour", ["fail", "garbage"])
async def test_a_broken_engine_raises_tts_error(tmp_path: Path, behaviour: str) -> None:
    tts = TextToSpeech(tmp_path, espeak=FakeEngine(behaviour=behaviour))
    with pytest.raises(TtsError):
        await tts.render(Say("hello", "en"))


async def test_japanese_engine_preferred_and_falls_back_cleanly(tmp_path: Path) -> None:
    jtalk = FakeEngine(name="jtalk", japanese_only=True)
    espeak = FakeEngine(name="espeak")
    tts = TextToSpeech(tmp_path, espeak=espeak, open_jtalk=jtalk)
    assert tts.engine_for("ja") is jtalk
    assert tts.engine_for("en") is espeak
    jtalk.behaviour = "fail"
    path = await tts.render(Say("こんにちは", "ja"))
    assert path == tts.path_for(espeak, Say("こんにちは", "ja"))
    assert tts.engine_for("ja") is espeak  # not retried on every call


async def test_empty_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TtsError):
        await TextToSpeech(tmp_path, espeak=FakeEngine()).render(Say("  ", "en"))


def test_voice_discovery_skips_licence_files_named_like_voices(tmp_path: Path) -> None:
    licence = tmp_path / "LICENSE_mei_normal.htsvoice"
    licence.write_text("# HTS Voice Mei, CC BY 3.0\n")
    voice = tmp_path / "mei_normal.htsvoice"
    voice.write_bytes(b"[GLOBAL]\nHTS_VOICE_VERSION:1.0\n")
    assert not _is_hts_voice(licence)
    assert _is_hts_voice(voice)
    assert not _is_hts_voice(tmp_path / "missing.htsvoice")
