"""baresip 1.0 as a scripted, headless SIP phone (an agent's phone or a caller).

Each :class:`BaresipUA` is one ``baresip`` process with a private configuration directory:
it listens on 127.0.0.1 only, sends a tone WAV as its microphone (``aufile``), throws away
what it would play (``aubridge,nil``) and dumps both directions of every call to WAV files
(``sndfile``: ``dump-<time>-dec.wav`` is what it *heard*, ``-enc.wav`` what it *sent*).

It is driven over ``ctrl_tcp``: netstring-framed JSON (``<len>:<json>,``). Commands are
``{"command": ..., "params": ..., "token": ...}`` and are answered by
``{"response": true, "ok": bool, "data": str, "token": ...}``; events arrive as
``{"event": true, "type": ..., "class": ..., "accountaor": ..., "id": ..., "param": ...}``.

Measured with baresip 1.0.0 (Debian 12):

* Registration events (class ``register``): ``REGISTERING``, ``REGISTER_OK`` (param
  ``"200 OK"``), ``REGISTER_FAIL`` (param e.g. ``"403 Forbidden"``), ``UNREGISTERING``.
* Call events (class ``call``): ``CALL_INCOMING``, ``CALL_RINGING``, ``CALL_PROGRESS``,
  ``CALL_ESTABLISHED``, ``CALL_CLOSED`` (param is the reason, e.g. ``"Connection reset
  by peer"`` or ``"486 Busy Here"``), ``CALL_DTMF_START`` (param = digit),
  ``CALL_DTMF_END``, ``CALL_RTCP``; class ``other``: ``CALL_LOCAL_SDP``,
  ``CALL_REMOTE_SDP``, ``CALL_RTPESTAB`` (first RTP packet received).
* The account is added with the ``uanew`` command *after* the control connection is up:
  an account in the ``accounts`` file starts registering before a client can connect, and
  ctrl_tcp only forwards events to connected clients, so ``REGISTER_OK`` would be lost.
* The sndfile dump name has one-second resolution: two calls that start in the same
  second on one UA write to the same file. Start calls on one UA at least a second apart
  when their recordings matter.
* baresip ends a call when its ``aufile`` WAV runs out: give it a WAV of 60 s or more.
* ``sndcode`` sends every character of its argument as an RFC 4733 event, then a key
  release; the far side reports ``CALL_DTMF_START``/``CALL_DTMF_END`` per digit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from tests.integration.peers import (
    LOOPBACK,
    PeerError,
    PeerTimeoutError,
    free_port,
    log_tail,
    stop_process,
)

log = logging.getLogger(__name__)

MODULE_PATH = Path("/usr/lib/baresip/modules")


@dataclass(frozen=True)
class BaresipAccount:
    """One SIP account; rendered as a baresip account line.

    ``registrar`` is ``"host:port"``; it becomes the host part of the address of record,
    which is where baresip sends REGISTER. Without a registrar there is no registration
    (``regint=0``) and the UA only places and takes direct calls.
    """

    user: str
    password: str | None = None
    registrar: str | None = None
    transport: Literal["udp", "tcp"] = "udp"
    answermode: Literal["auto", "manual", "early"] = "manual"
    regint: int | None = None
    audio_codecs: str = "PCMU"
    auth_user: str | None = None
    display_name: str | None = None
    extra_params: tuple[str, ...] = ()

    @property
    def effective_regint(self) -> int:
        if self.registrar is None:
            return 0
        return 3600 if self.regint is None else self.regint

    @property
    def aor(self) -> str:
        host = self.registrar or LOOPBACK
        return f"sip:{self.user}@{host}"

    def line(self) -> str:
        uri = self.aor + (";transport=tcp" if self.transport == "tcp" else "")
        name = f'"{self.display_name}" ' if self.display_name else ""
        params = [f"regint={self.effective_regint}", f"answermode={self.answermode}"]
        if self.password is not None:
            params.append(f"auth_pass={self.password}")
        if self.auth_user is not None:
            params.append(f"auth_user={self.auth_user}")
        if self.audio_codecs:
            params.append(f"audio_codecs={self.audio_codecs}")
        params.extend(self.extra_params)
        return f"{name}<{uri}>;" + ";".join(params)


@dataclass(frozen=True)
class BaresipEvent:
    """One ctrl_tcp event; ``call_id`` is baresip's call id (SIP Call-ID for calls)."""

    type: str
    klass: str
    param: str
    call_id: str
    peeruri: str
    direction: str
    accountaor: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> BaresipEvent:
        return cls(
            type=str(obj.get("type", "")),
            klass=str(obj.get("class", "")),
            param=str(obj.get("param", "")),
            call_id=str(obj.get("id", "")),
            peeruri=str(obj.get("peeruri", "")),
            direction=str(obj.get("direction", "")),
            accountaor=str(obj.get("accountaor", "")),
            raw=obj,
        )


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class BaresipUA:
    """A baresip process with one account, driven over ctrl_tcp.

    Use as a context manager (``with BaresipUA(...) as ua:``) so the process is stopped
    even when the test fails. ``tone_wav`` is what the UA sends as its voice.
    """

    def __init__(
        self,
        workdir: Path,
        account: BaresipAccount,
        tone_wav: Path,
        *,
        name: str | None = None,
        sip_port: int | None = None,
        ctrl_port: int | None = None,
        binary: str = "baresip",
        sip_trace: bool = True,
        max_lifetime_s: int = 900,
    ) -> None:
        self.account = account
        self.name = name or f"baresip-{account.user}"
        self.dir = workdir / self.name
        self.config_dir = self.dir / "config"
        self.recordings_dir = self.dir / "recordings"
        self.log_path = self.dir / "baresip.log"
        self.tone_wav = tone_wav
        self.sip_port = sip_port or free_port(with_next=True)  # TLS binds port + 1
        self.ctrl_port = ctrl_port or free_port()
        self.binary = binary
        self.sip_trace = sip_trace
        self.max_lifetime_s = max_lifetime_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[BaresipEvent] = []
        self._consumed: set[int] = set()
        self._responses: dict[str, dict[str, Any]] = {}
        self._closed_reason: str | None = None
        self._token = 0

    # ----------------------------------------------------------------- lifecycle

    @property
    def contact_uri(self) -> str:
        """Where to call this UA directly, bypassing any registrar."""
        suffix = ";transport=tcp" if self.account.transport == "tcp" else ""
        return f"sip:{self.account.user}@{LOOPBACK}:{self.sip_port}{suffix}"

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        lines = {
            "poll_method": "epoll",
            "sip_listen": f"{LOOPBACK}:{self.sip_port}",
            "net_interface": LOOPBACK,
            "call_local_timeout": "120",
            "call_max_calls": "4",
            "audio_player": "aubridge,nil",
            "audio_source": f"aufile,{self.tone_wav}",
            "audio_alert": "aubridge,nil",
            "audio_level": "no",
            "ausrc_format": "s16",
            "auplay_format": "s16",
            "auenc_format": "s16",
            "audec_format": "s16",
            "audio_buffer": "20-160",
            "rtp_tos": "0",
            "rtcp_mux": "no",
            "jitter_buffer_delay": "5-10",
            "rtp_stats": "no",
            "module_path": str(MODULE_PATH),
            "snd_path": str(self.recordings_dir),
            "ctrl_tcp_listen": f"{LOOPBACK}:{self.ctrl_port}",
            "statmode_default": "off",
            "ringback_disabled": "yes",
            "menu_bell": "no",
        }
        body = [f"{key}\t{value}" for key, value in lines.items()]
        # Order matters: codecs, then audio drivers, then filters (sndfile), then apps.
        for module in ("g711.so", "aubridge.so", "aufile.so", "sndfile.so"):
            body.append(f"module\t{module}")
        body += ["module_tmp\tuuid.so", "module_tmp\taccount.so"]
        body += ["module_app\tmenu.so", "module_app\tctrl_tcp.so"]
        (self.config_dir / "config").write_text("\n".join(body) + "\n", encoding="utf-8")
        # Empty on purpose: the account is added with `uanew` once ctrl_tcp is connected.
        (self.config_dir / "accounts").write_text("", encoding="utf-8")
        (self.config_dir / "contacts").write_text("", encoding="utf-8")

    def start(self, timeout: float = 10.0) -> Self:
        """Start baresip, connect to ctrl_tcp and add the account (registration starts)."""
        if self._proc is not None:
            raise PeerError(f"{self.name} already started")
        exe = shutil.which(self.binary)
        if exe is None:
            raise PeerError(f"{self.binary} not found: apt-get install baresip-core")
        self.write_config()
        # -t: baresip quits by itself after this long, so even a test runner killed with
        # SIGKILL cannot leave a phone running for ever.
        args = [exe, "-f", str(self.config_dir), "-t", str(self.max_lifetime_s)]
        if self.sip_trace:
            args.append("-s")
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
            )
        try:
            self._connect(timeout)
            self.command("uanew", self.account.line(), timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise self._timeout(f"ctrl_tcp on port {self.ctrl_port}", timeout) from None
                time.sleep(0.02)
        sock.settimeout(None)
        self._sock = sock
        self._reader = threading.Thread(
            target=self._read_loop, name=f"{self.name}-ctrl", daemon=True
        )
        self._reader.start()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop baresip (SIGTERM: it hangs up and unregisters, closing the WAV dumps)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            stop_process(self._proc, grace_s)
        if self._reader is not None:
            self._reader.join(timeout=grace_s)
            self._reader = None

    def kill(self) -> None:
        """SIGKILL: the phone vanishes without BYE or unREGISTER (a crashed softphone)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self.stop()

    def __enter__(self) -> Self:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    # ------------------------------------------------------------------- control

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        buf = b""
        reason = "ctrl_tcp connection closed"
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    colon = buf.find(b":")
                    if colon < 0:
                        break
                    length = int(buf[:colon])
                    if len(buf) < colon + 1 + length + 1:
                        break
                    payload = buf[colon + 1 : colon + 1 + length]
                    buf = buf[colon + 2 + length :]
                    self._dispatch(json.loads(payload))
        except (OSError, ValueError) as exc:
            reason = f"ctrl_tcp read failed: {exc}"
        with self._cond:
            self._closed_reason = reason
            self._cond.notify_all()

    def _dispatch(self, obj: dict[str, Any]) -> None:
        with self._cond:
            if obj.get("event"):
                event = BaresipEvent.parse(obj)
                log.debug("%s event %s %s", self.name, event.type, event.param)
                self._events.append(event)
            elif obj.get("response"):
                self._responses[str(obj.get("token", ""))] = obj
            self._cond.notify_all()

    def _check_alive(self) -> None:
        if self._proc is None:
            raise PeerError(f"{self.name} is not started")
        code = self._proc.poll()
        if code is not None:
            raise PeerError(f"{self.name} exited with status {code}\n{self.log_tail()}")

    def _timeout(self, what: str, timeout: float) -> PeerTimeoutError:
        return PeerTimeoutError(f"{self.name}: no {what} within {timeout:.1f} s\n{self.log_tail()}")

    def command(self, command: str, params: str = "", timeout: float = 10.0) -> str:
        """Run a baresip command; return its text output or raise :class:`PeerError`."""
        self._check_alive()
        sock = self._sock
        if sock is None:
            raise PeerError(f"{self.name}: not connected")
        with self._cond:
            self._token += 1
            token = f"t{self._token}"
        msg = {"command": command, "params": params, "token": token}
        sock.sendall(_netstring(json.dumps(msg).encode()))
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timeout(f"answer to {command!r}", timeout)
                if self._closed_reason is not None:
                    raise PeerError(f"{self.name}: {self._closed_reason}\n{self.log_tail()}")
                self._cond.wait(min(remaining, 0.2))
                self._check_alive()
            response = self._responses.pop(token)
        data = str(response.get("data", ""))
        if not response.get("ok", False):
            raise PeerError(f"{self.name}: command {command!r} failed: {data}\n{self.log_tail()}")
        return data

    # -------------------------------------------------------------------- events

    def mark(self) -> int:
        """A position in the event stream, for ``wait_event(since=...)``."""
        with self._cond:
            return len(self._events)

    def events(self) -> list[BaresipEvent]:
        """Every event received so far, consumed or not."""
        with self._cond:
            return list(self._events)

    def wait_event(
        self,
        types: str | Iterable[str],
        timeout: float = 10.0,
        *,
        call_id: str | None = None,
        predicate: Callable[[BaresipEvent], bool] | None = None,
        fail_on: Iterable[str] = (),
        since: int = 0,
    ) -> BaresipEvent:
        """Return the oldest not yet consumed event of one of ``types`` and consume it.

        Events that arrived before the call still count, so ``dial()`` then
        ``wait_event("CALL_ESTABLISHED")`` never misses a fast answer. An unconsumed event
        whose type is in ``fail_on`` (e.g. ``CALL_CLOSED`` while waiting for an answer)
        raises :class:`PeerError` at once instead of letting the wait time out. ``since``
        (from :meth:`mark`) ignores events older than the mark, e.g. the ``CALL_CLOSED`` of
        an earlier call.
        """
        wanted = {types} if isinstance(types, str) else set(types)
        fatal = set(fail_on)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, event in enumerate(self._events):
                    if index < since or index in self._consumed:
                        continue
                    if call_id is not None and event.call_id and event.call_id != call_id:
                        continue
                    if event.type in fatal:
                        self._consumed.add(index)
                        raise PeerError(
                            f"{self.name}: got {event.type} ({event.param}) while waiting for "
                            f"{sorted(wanted)}\n{self.log_tail()}"
                        )
                    if event.type in wanted and (predicate is None or predicate(event)):
                        self._consumed.add(index)
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = ", ".join(e.type for e in self._events[-15:]) or "none"
                    raise PeerTimeoutError(
                        f"{self.name}: no {sorted(wanted)} within {timeout:.1f} s "
                        f"(recent events: {seen})\n{self.log_tail()}"
                    )
                if self._closed_reason is not None:
                    raise PeerError(f"{self.name}: {self._closed_reason}\n{self.log_tail()}")
                self._cond.wait(min(remaining, 0.2))
                self._check_alive()

    # ----------------------------------------------------------------- telephony

    def register_and_wait(self, timeout: float = 10.0) -> BaresipEvent:
        """Wait for ``REGISTER_OK``; ``REGISTER_FAIL`` raises with its reason."""
        if self.account.effective_regint == 0:
            raise PeerError(f"{self.name}: account has no registrar (regint=0)")
        return self.wait_event("REGISTER_OK", timeout, fail_on=("REGISTER_FAIL",))

    def wait_register_fail(self, timeout: float = 10.0) -> BaresipEvent:
        """Wait for ``REGISTER_FAIL`` (e.g. a wrong password); its param is the status."""
        return self.wait_event("REGISTER_FAIL", timeout)

    def dial(self, uri: str) -> None:
        """Place a call; :meth:`call_and_wait` also waits for the answer."""
        self.command("dial", uri)

    def accept(self) -> None:
        """Answer the current incoming call (answermode=manual)."""
        self.command("accept")

    def hangup(self) -> None:
        """Hang up the current call."""
        self.command("hangup")

    def send_dtmf(self, digits: str) -> None:
        """Send ``digits`` as RFC 4733 telephone-events on the current call."""
        self.command("sndcode", digits)

    def call_and_wait(self, uri: str, timeout: float = 10.0) -> BaresipEvent:
        """Dial and wait until the call is established; returns the event (its call id)."""
        since = self.mark()
        self.dial(uri)
        return self.wait_event("CALL_ESTABLISHED", timeout, fail_on=("CALL_CLOSED",), since=since)

    # ---------------------------------------------------------------- recordings

    def recordings(self) -> list[Path]:
        """Every sndfile dump so far, oldest first."""
        return sorted(self.recordings_dir.glob("dump-*.wav"))

    def heard(self) -> list[Path]:
        """Dumps of decoded audio: what this phone heard, one per call, oldest first."""
        return sorted(self.recordings_dir.glob("dump-*-dec.wav"))

    def sent(self) -> list[Path]:
        """Dumps of encoded audio: what this phone sent, one per call, oldest first."""
        return sorted(self.recordings_dir.glob("dump-*-enc.wav"))
