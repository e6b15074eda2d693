"""Text-to-speech for prompts: Open JTalk for Japanese when a voice is installed, else espeak-ng.

Flows say things nobody recorded ("you are caller number 3", a balance read from a
webhook). Both engines run offline as subprocesses (never on the event loop thread:
:func:`asyncio.create_subprocess_exec` with a timeout), and every rendering is cached on
disk under the data directory by a content hash of (engine, engine version, voice,
language, text), so a prompt is synthesised once and then served like a recorded file.

Engine choice (docs/MEDIA.md has the measurements):

* **Open JTalk** (Debian ``open-jtalk`` + ``open-jtalk-mecab-naist-jdic``) speaks natural
  Japanese, but Debian 12 ships no HTS voice for it (``hts-voice-nitech-jp-atr503-m001``
  is not in bookworm main or non-free). It is used for ``ja`` only when a ``.htsvoice``
  file is found (configured path, ``<data>/voices/``, ``/usr/share/hts-voice/``).
* **espeak-ng** (Debian ``espeak-ng``) is always the fallback: English and Japanese
  (kana-level, robotic but intelligible for digits and short phrases).

If the preferred engine fails at run time, the prompt is rendered with espeak-ng and the
failing engine is not tried again by this process (logged once), so a broken voice file
costs one log line, not every call's prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tsunagu.media.interface import Say
from tsunagu.media.prompts import (
    TELEPHONY_RATE,
    PromptError,
    read_wav,
    to_telephony,
    write_wav_mono,
)
from tsunagu.media.rtp import MediaLocalError

__all__ = [
    "EspeakNg",
    "OpenJTalk",
    "Say",
    "TextToSpeech",
    "TtsCommand",
    "TtsEngine",
    "TtsError",
    "cache_key",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 20.0
OPEN_JTALK_DICTIONARY = Path("/var/lib/mecab/dic/open-jtalk/naist-jdic")
VOICE_DIRECTORIES = (Path("/usr/share/hts-voice"), Path("/usr/share/open-jtalk/voices"))


class TtsError(MediaLocalError):
    """Speech could not be rendered (engine missing, failed or timed out)."""


def cache_key(engine: str, version: str, voice: str, language: str, text: str) -> str:
    """The content hash a rendering is cached under (SHA-256, hex).

    Everything that changes the audio is in the key, so upgrading espeak-ng or swapping a
    voice file renders afresh instead of serving stale audio.
    """
    material = json.dumps(
        {
            "engine": engine,
            "version": version,
            "voice": voice,
            "language": language,
            "text": text,
            "rate": TELEPHONY_RATE,
        },
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class TtsCommand:
    """How to run an engine: its argv and the bytes to feed on stdin."""

    argv: list[str]
    stdin: bytes


class TtsEngine(Protocol):
    """A speech synthesiser run as a subprocess that writes a WAV file."""

    @property
    def name(self) -> str: ...

    def available(self) -> bool: ...

    def supports(self, language: str) -> bool: ...

    def voice_for(self, language: str, voice: str | None) -> str:
        """What identifies the voice in the cache key (a change renders afresh)."""

    def version(self) -> str: ...

    def command(self, text: str, language: str, voice: str | None, out: Path) -> TtsCommand: ...


@dataclass(slots=True)
class EspeakNg:
    """espeak-ng: ``espeak-ng -v VOICE --stdin -w OUT`` (22.05 kHz WAV, converted after)."""

    binary: str = "espeak-ng"
    name: str = "espeak-ng"
    voices: dict[str, str] = field(default_factory=lambda: {"ja": "ja", "en": "en-us"})

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def supports(self, language: str) -> bool:
        return True  # espeak-ng has a voice for nearly every language; unknown ones error

    def voice_for(self, language: str, voice: str | None) -> str:
        return voice or self.voices.get(language, language)

    def version(self) -> str:
        out = _run_quietly([self.binary, "--version"])
        # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/..." -> "1.51"
        head = out.split("Data at", 1)[0]
        return head.rsplit(":", 1)[-1].strip() or "unknown"

    def command(self, text: str, language: str, voice: str | None, out: Path) -> TtsCommand:
        # Text goes through stdin, never argv: it may start with "-" or be long.
        return TtsCommand(
            [self.binary, "-v", self.voice_for(language, voice), "--stdin", "-w", str(out)],
            text.encode("utf-8"),
        )


@dataclass(slots=True)
class OpenJTalk:
    """Open JTalk: ``open_jtalk -x DIC -m VOICE -ow OUT`` reading UTF-8 text on stdin."""

    voice_file: Path
    binary: str = "open_jtalk"
    dictionary: Path = OPEN_JTALK_DICTIONARY
    name: str = "open-jtalk"

    @classmethod
    def discover(
        cls, data_dir: Path | None = None, voice_file: Path | None = None
    ) -> OpenJTalk | None:
        """An Open JTalk engine if the binary, dictionary and a voice are all installed."""
        if shutil.which("open_jtalk") is None or not OPEN_JTALK_DICTIONARY.is_dir():
            return None
        candidates: list[Path] = []
        if voice_file is not None:
            candidates.append(voice_file)
        search = [*([data_dir / "voices"] if data_dir else []), *VOICE_DIRECTORIES]
        for directory in search:
            if directory.is_dir():
                candidates.extend(sorted(directory.rglob("*.htsvoice")))
        for candidate in candidates:
            if _is_hts_voice(candidate):
                return cls(candidate)
        return None

    def available(self) -> bool:
        return (
            shutil.which(self.binary) is not None
            and self.dictionary.is_dir()
            and self.voice_file.is_file()
        )

    def supports(self, language: str) -> bool:
        return language.split("-", 1)[0].lower() == "ja"

    def voice_for(self, language: str, voice: str | None) -> str:
        stat = self.voice_file.stat()
        return f"{self.voice_file.name}:{stat.st_size}:{stat.st_mtime_ns}"

    def version(self) -> str:
        out = _run_quietly([self.binary])  # prints its usage, version included
        for line in out.splitlines():
            if line.strip().startswith("Version"):
                return line.split()[1]
        return "unknown"

    def command(self, text: str, language: str, voice: str | None, out: Path) -> TtsCommand:
        argv = [
            self.binary,
            "-x",
            str(self.dictionary),
            "-m",
            str(self.voice_file),
            "-ow",
            str(out),
        ]
        return TtsCommand(argv, text.encode("utf-8"))


def _is_hts_voice(path: Path) -> bool:
    """Whether ``path`` is an HTS voice (it begins with ``[GLOBAL]``), not e.g. the licence
    text that voice packages ship beside it under a ``*.htsvoice`` name."""
    try:
        with path.open("rb") as file:
            return file.read(8) == b"[GLOBAL]"
    except OSError:
        return False


def _run_quietly(argv: list[str]) -> str:
    """stdout+stderr of a short informational command (start-up only, not on a call path)."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).decode("utf-8", "replace")


class TextToSpeech:
    """Renders :class:`Say` items to cached 8 kHz mono WAV files.

    ``cache_dir`` holds ``<hash[:2]>/<hash>.wav``; files are written to a temporary name
    and renamed into place, so a crash mid-render never leaves a truncated cache entry,
    and two processes rendering the same text at once both end with a whole file.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        espeak: TtsEngine | None = None,
        open_jtalk: TtsEngine | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.cache_dir = cache_dir
        self.espeak: TtsEngine = espeak or EspeakNg()
        self.open_jtalk = open_jtalk
        self.timeout_s = timeout_s
        self._versions: dict[str, str] = {}
        self._broken: set[str] = set()
        self._pending: dict[str, asyncio.Future[Path]] = {}
        self.renders = 0  # subprocess renderings actually run (for tests)

    def engine_for(self, language: str) -> TtsEngine:
        """Open JTalk for Japanese when installed and working, else espeak-ng."""
        jtalk = self.open_jtalk
        if jtalk is not None and jtalk.name not in self._broken and jtalk.supports(language):
            return jtalk
        return self.espeak

    def _version(self, engine: TtsEngine) -> str:
        version = self._versions.get(engine.name)
        if version is None:
            version = engine.version()
            self._versions[engine.name] = version
        return version

    def path_for(self, engine: TtsEngine, say: Say) -> Path:
        """Where the rendering of ``say`` by ``engine`` is (or will be) cached."""
        key = cache_key(
            engine.name,
            self._version(engine),
            engine.voice_for(say.language, say.voice),
            say.language,
            say.text,
        )
        return self.cache_dir / key[:2] / f"{key}.wav"

    async def render(self, say: Say) -> Path:
        """The cached WAV file for ``say``, rendering it first if needed."""
        if not say.text.strip():
            raise TtsError("nothing to say: the text is empty")
        engine = self.engine_for(say.language)
        try:
            return await self._render_with(engine, say)
        except TtsError as exc:
            if engine is self.espeak:
                raise
            logger.warning(
                "%s failed (%s); falling back to espeak-ng for %s", engine.name, exc, say.language
            )
            self._broken.add(engine.name)
            return await self._render_with(self.espeak, say)

    async def _render_with(self, engine: TtsEngine, say: Say) -> Path:
        if not engine.available():
            raise TtsError(f"{engine.name} is not installed")
        path = await asyncio.to_thread(self.path_for, engine, say)
        if path.exists():
            return path
        key = str(path)
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            await self._synthesise(engine, say, path)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(path)
        return path

    async def _synthesise(self, engine: TtsEngine, say: Say, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".render-") as tmp:
            raw = Path(tmp) / "raw.wav"
            command = engine.command(say.text, say.language, say.voice, raw)
            try:
                process = await asyncio.create_subprocess_exec(
                    *command.argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            except OSError as exc:
                raise TtsError(f"{engine.name} could not start: {exc}") from exc
            try:
                _, stderr = await asyncio.wait_for(
                    process.communicate(command.stdin), self.timeout_s
                )
            except TimeoutError as exc:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise TtsError(f"{engine.name} took longer than {self.timeout_s} s") from exc
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise
            if process.returncode != 0 or not raw.exists():
                detail = stderr.decode("utf-8", "replace").strip()[:200]
                raise TtsError(f"{engine.name} exited {process.returncode}: {detail}")
            self.renders += 1
            final = Path(tmp) / "final.wav"
            try:
                await asyncio.to_thread(_convert, raw, final)
            except PromptError as exc:
                raise TtsError(f"{engine.name} wrote unreadable audio: {exc}") from exc
            os.replace(final, path)
        logger.info("rendered %s speech (%s) to %s", engine.name, say.language, path.name)


def _convert(raw: Path, final: Path) -> None:
    write_wav_mono(final, to_telephony(read_wav(raw)))
