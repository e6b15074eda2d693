"""A pjsua2 user agent driven by JSON lines: commands on stdin, events on stdout.

Run by :mod:`tests.integration.peers.pjsua`, one process per group of at most 8 accounts,
because the pjsua2 wheel aborts the whole process on a 9th account and caps calls at 4
(TESTING.md). Keeping pjsua2 out of the test process also means a crash in the C library
fails one peer, not the pytest run.

Why this shape (facts measured on these machines, see TESTING.md):

* ``threadCnt=0`` + ``mainThreadOnly`` and polling ``libHandleEvents`` from one loop that
  also reads stdin: every pjsua2 callback runs on this thread, so no locking is needed.
* ``setNullDev()``: no sound card; the null device still clocks the conference bridge.
* SIP and media bound to 127.0.0.1 so the SDP never advertises another address.
* Only PCMU and PCMA enabled (PCMU first) and an 8 kHz bridge: recordings are 8 kHz and a
  tone keeps its exact frequency through G.711.
* No VAD and no echo canceller: both would alter the audio the tests judge.
* Every ``Call`` is deleted and ``gc.collect()`` runs before ``libDestroy()``, otherwise
  the process aborts on exit.
* pjlib logs to stdout by default; the protocol therefore owns a private copy of the
  stdout descriptor and fd 1 is pointed at stderr, so no C-level print can corrupt it.

Commands (``{"cmd": ..., "req": <id>, ...}``; each is answered by a ``result`` event with
the same ``req``): ``add_account``, ``register``, ``unregister``, ``call``, ``answer``,
``hangup``, ``dtmf``, ``play``, ``record``, ``stop_record``, ``hold``, ``unhold``,
``xfer``, ``xfer_replaces`` (attended transfer, RFC 5589 §7), ``status``, ``quit``.

Events (``{"event": ...}``): ``ready``, ``result``, ``reg_state``, ``incoming_call``,
``call_state``, ``media_state``, ``dtmf_received``, ``transfer_status`` (the NOTIFYs of a
REFER we sent, RFC 3515), ``recording_closed``, ``error``, ``bye``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import select
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any, TextIO, TypeVar

import pjsua2 as pj

MAX_ACCOUNTS = 8  # the wheel's compiled-in PJSUA_MAX_ACC; a 9th aborts the process
MAX_CALLS = 4  # the wheel's compiled-in PJSUA_MAX_CALLS

_STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}


class CommandError(Exception):
    """The host sent a command this agent cannot carry out."""


_Self = TypeVar("_Self", bound="AgentAccount | AgentCall")


def _guarded(method: Callable[[_Self, Any], None]) -> Callable[[_Self, Any], None]:
    """Report an exception in a pjsua2 callback as an ``error`` event.

    An exception escaping a SWIG director method aborts the whole process, which would
    hide the Python traceback the test author needs.
    """

    @wraps(method)
    def wrapper(self: _Self, prm: Any) -> None:
        try:
            method(self, prm)
        except Exception:
            self.agent.emit("error", where=method.__name__, message=traceback.format_exc())

    return wrapper


class _StderrLog(pj.LogWriter):  # type: ignore[misc]
    def write(self, entry: Any) -> None:
        sys.stderr.write(str(entry.msg))
        if not str(entry.msg).endswith("\n"):
            sys.stderr.write("\n")
        sys.stderr.flush()


class Agent:
    """Owns the endpoint, the accounts and the calls; runs the single event loop."""

    def __init__(self, out: TextIO, sip_port: int, log_level: int) -> None:
        self.out = out
        self.sip_port = sip_port
        self.accounts: dict[str, AgentAccount] = {}
        self.calls: dict[str, AgentCall] = {}
        self.dead_calls: list[AgentCall] = []
        self.transports: dict[str, int] = {}
        self._next_call = 0
        self.running = True
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = MAX_CALLS
        cfg.uaConfig.userAgent = "pjsua2-test-agent"
        self._log_writer = _StderrLog()
        cfg.logConfig.writer = self._log_writer
        cfg.logConfig.level = log_level
        cfg.logConfig.consoleLevel = log_level
        cfg.logConfig.msgLogging = 1
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.channelCount = 1
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        self.ep.libInit(cfg)
        for name, kind in (("udp", pj.PJSIP_TRANSPORT_UDP), ("tcp", pj.PJSIP_TRANSPORT_TCP)):
            tcfg = pj.TransportConfig()
            tcfg.port = sip_port
            tcfg.boundAddress = "127.0.0.1"
            tcfg.publicAddress = "127.0.0.1"
            self.transports[name] = self.ep.transportCreate(kind, tcfg)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        for codec in self.ep.codecEnum2():
            self.ep.codecSetPriority(codec.codecId, 0)
        self.ep.codecSetPriority("PCMU/8000/1", 255)
        self.ep.codecSetPriority("PCMA/8000/1", 254)

    # ------------------------------------------------------------------ output

    def emit(self, event: str, **fields: Any) -> None:
        fields["event"] = event
        self.out.write(json.dumps(fields) + "\n")
        self.out.flush()

    def new_call_name(self) -> str:
        self._next_call += 1
        return f"c{self._next_call}"

    # ---------------------------------------------------------------- commands

    def handle(self, msg: dict[str, Any]) -> None:
        req = msg.get("req")
        cmd = str(msg.get("cmd", ""))
        try:
            handler = getattr(self, f"cmd_{cmd}", None)
            if handler is None:
                raise CommandError(f"unknown command {cmd!r}")
            value = handler(msg)
            self.emit("result", req=req, ok=True, value=value)
        except (CommandError, pj.Error, KeyError, ValueError, TypeError) as exc:
            info = getattr(exc, "info", None)
            text = info() if callable(info) else str(exc)
            self.emit("result", req=req, ok=False, error=f"{type(exc).__name__}: {text}")

    def _account(self, msg: dict[str, Any]) -> AgentAccount:
        name = str(msg["account"])
        if name not in self.accounts:
            raise CommandError(f"no account {name!r}")
        return self.accounts[name]

    def _call(self, msg: dict[str, Any]) -> AgentCall:
        name = str(msg["call"])
        if name not in self.calls:
            raise CommandError(f"no call {name!r} (it may have ended)")
        return self.calls[name]

    def cmd_add_account(self, msg: dict[str, Any]) -> dict[str, Any]:
        if len(self.accounts) >= MAX_ACCOUNTS:
            raise CommandError(f"at most {MAX_ACCOUNTS} accounts per pjsua2 process")
        name = str(msg.get("account") or msg["user"])
        if name in self.accounts:
            raise CommandError(f"account {name!r} exists")
        transport = str(msg.get("transport", "udp"))
        if transport not in self.transports:
            raise CommandError(f"transport must be udp or tcp, not {transport!r}")
        user = str(msg["user"])
        registrar = msg.get("registrar")
        tparam = ";transport=tcp" if transport == "tcp" else ""
        acfg = pj.AccountConfig()
        if registrar:
            acfg.idUri = f"sip:{user}@{registrar}"
            acfg.regConfig.registrarUri = f"sip:{registrar}{tparam}"
            acfg.regConfig.registerOnAdd = bool(msg.get("register", True))
            acfg.regConfig.timeoutSec = int(msg.get("reg_timeout", 300))
            acfg.regConfig.retryIntervalSec = int(msg.get("retry_interval", 0))
            acfg.regConfig.unregWaitMsec = 1000
        else:
            acfg.idUri = f"sip:{user}@127.0.0.1:{self.sip_port}"
            acfg.regConfig.registerOnAdd = False
        password = msg.get("password")
        if password is not None:
            cred = pj.AuthCredInfo(
                "digest", "*", str(msg.get("auth_user") or user), 0, str(password)
            )
            acfg.sipConfig.authCreds.append(cred)
        acfg.sipConfig.transportId = self.transports[transport]
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.natConfig.sdpNatRewriteUse = 0
        acfg.natConfig.iceEnabled = False
        media = acfg.mediaConfig.transportConfig
        media.boundAddress = "127.0.0.1"
        media.publicAddress = "127.0.0.1"
        # A random RTP port in 30000-39999 rather than pjsua's fixed 4000 upwards: several
        # agents (and other test runs) then rarely race for the same ports.
        media.port = 30000
        media.portRange = 10000
        media.randomizePort = True
        acc = AgentAccount(self, name, msg)
        acc.create(acfg)
        self.accounts[name] = acc
        return {"account": name}

    def cmd_register(self, msg: dict[str, Any]) -> None:
        self._account(msg).setRegistration(True)

    def cmd_unregister(self, msg: dict[str, Any]) -> None:
        self._account(msg).setRegistration(False)

    def cmd_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        acc = self._account(msg)
        if len(self.calls) >= MAX_CALLS:
            raise CommandError(f"at most {MAX_CALLS} calls per pjsua2 process")
        name = str(msg.get("call") or self.new_call_name())
        call = AgentCall(self, acc, name, pj.PJSUA_INVALID_ID)
        call.play_file = msg.get("play") or acc.play_file
        call.record_file = msg.get("record") or acc.record_path(name)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        if msg.get("call_id"):
            prm.opt.customCallId = str(msg["call_id"])
        for header_name, header_value in msg.get("headers") or []:  # e.g. Replaces
            header = pj.SipHeader()
            header.hName = str(header_name)
            header.hValue = str(header_value)
            prm.txOption.headers.append(header)
        self.calls[name] = call
        try:
            call.makeCall(str(msg["uri"]), prm)
        except pj.Error:
            del self.calls[name]
            raise
        return {"call": name, "call_id": call.getInfo().callIdString}

    def cmd_answer(self, msg: dict[str, Any]) -> None:
        call = self._call(msg)
        if msg.get("play"):
            call.play_file = str(msg["play"])
        if msg.get("record"):
            call.record_file = str(msg["record"])
        prm = pj.CallOpParam()
        prm.statusCode = int(msg.get("code", 200))
        call.answer(prm)

    def cmd_hangup(self, msg: dict[str, Any]) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = int(msg.get("code", 0))
        self._call(msg).hangup(prm)

    def cmd_dtmf(self, msg: dict[str, Any]) -> None:
        call = self._call(msg)
        prm = pj.CallSendDtmfParam()
        prm.digits = str(msg["digits"])
        method = str(msg.get("method", "rfc2833"))
        if method == "rfc2833":
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
        elif method == "info":
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
        else:
            raise CommandError(f"DTMF method must be rfc2833 or info, not {method!r}")
        if msg.get("duration_ms"):
            prm.duration = int(msg["duration_ms"])
        call.sendDtmf(prm)

    def cmd_play(self, msg: dict[str, Any]) -> None:
        call = self._call(msg)
        call.play_file = str(msg["file"])
        call.start_player(loop=bool(msg.get("loop", True)))

    def cmd_record(self, msg: dict[str, Any]) -> None:
        call = self._call(msg)
        call.stop_recorder()
        call.record_file = str(msg["file"])
        call.start_recorder()

    def cmd_stop_record(self, msg: dict[str, Any]) -> dict[str, Any]:
        call = self._call(msg)
        return {"file": call.stop_recorder()}

    def cmd_hold(self, msg: dict[str, Any]) -> None:
        """Re-INVITE offering ``sendonly`` (RFC 3264 §8.4), as a phone's hold key does."""
        self._call(msg).setHold(pj.CallOpParam(True))

    def cmd_unhold(self, msg: dict[str, Any]) -> None:
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self._call(msg).reinvite(prm)

    def cmd_xfer_replaces(self, msg: dict[str, Any]) -> None:
        """Attended transfer: REFER on ``call`` with ``Refer-To: <dest's remote URI?
        Replaces=dest's dialog>`` (pjsua builds it: to-tag is the remote tag)."""
        call = self._call(msg)
        dest = self.calls.get(str(msg["dest"]))
        if dest is None:
            raise CommandError(f"no call {msg['dest']!r}")
        call.xferReplaces(dest, pj.CallOpParam(True))

    def cmd_xfer(self, msg: dict[str, Any]) -> None:
        """REFER on ``call`` to ``uri`` as given (a blind transfer, or a hand-made
        Replaces in the URI's headers)."""
        self._call(msg).xfer(str(msg["uri"]), pj.CallOpParam(True))

    def cmd_status(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"accounts": sorted(self.accounts), "calls": sorted(self.calls)}

    def cmd_quit(self, msg: dict[str, Any]) -> None:
        self.running = False

    # -------------------------------------------------------------------- loop

    def run(self, inp: int) -> None:
        buf = b""
        self.emit("ready", sip_port=self.sip_port, pid=os.getpid())
        while self.running:
            self.ep.libHandleEvents(10)
            self.reap()
            readable, _, _ = select.select([inp], [], [], 0)
            if not readable:
                continue
            chunk = os.read(inp, 65536)
            if not chunk:  # the host went away: shut down rather than linger
                self.running = False
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    self.handle(json.loads(line))

    def reap(self) -> None:
        """Delete ended calls outside their callbacks (pjsua2 must not free a Call in one)."""
        while self.dead_calls:
            call = self.dead_calls.pop()
            call.release_media()
            del call
        gc.collect(0)

    def shutdown(self) -> None:
        self.ep.hangupAllCalls()
        for _ in range(200):  # up to ~2 s for BYE transactions to finish
            if not self.calls:
                break
            self.ep.libHandleEvents(10)
            self.reap()
        for call in list(self.calls.values()):
            call.release_media()
        self.calls.clear()
        self.reap()
        # Unregister ourselves (RFC 3261 §10.2.2) and wait for the answers, so the network
        # part of libDestroy can be skipped: it otherwise sleeps a fixed second.
        registered = [acc for acc in self.accounts.values() if acc.reg_active]
        for acc in registered:
            acc.setRegistration(False)
        for _ in range(200):
            if not any(acc.reg_active for acc in registered):
                break
            self.ep.libHandleEvents(10)
        for acc in self.accounts.values():
            acc.shutdown()
        self.accounts.clear()
        gc.collect()
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)


class AgentAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, agent: Agent, name: str, msg: dict[str, Any]) -> None:
        super().__init__()
        self.agent = agent
        self.name = name
        self.auto_answer: int | None = msg.get("auto_answer")
        self.play_file: str | None = msg.get("play")
        self.record_dir: str | None = msg.get("record_dir")
        self.reg_active = False

    def record_path(self, call_name: str) -> str | None:
        if not self.record_dir:
            return None
        return os.path.join(self.record_dir, f"{self.name}-{call_name}.wav")

    @_guarded
    def onRegState(self, prm: Any) -> None:
        info = self.getInfo()
        self.reg_active = bool(info.regIsActive)
        self.agent.emit(
            "reg_state",
            account=self.name,
            code=int(prm.code),
            reason=str(prm.reason),
            expiration=int(prm.expiration),
            active=bool(info.regIsActive),
        )

    @_guarded
    def onIncomingCall(self, prm: Any) -> None:
        name = self.agent.new_call_name()
        call = AgentCall(self.agent, self, name, prm.callId)
        call.play_file = self.play_file
        call.record_file = self.record_path(name)
        ci = call.getInfo()
        if len(self.agent.calls) >= MAX_CALLS:
            busy = pj.CallOpParam()
            busy.statusCode = 486
            call.hangup(busy)
            self.agent.dead_calls.append(call)
            return
        self.agent.calls[name] = call
        self.agent.emit(
            "incoming_call",
            account=self.name,
            call=name,
            call_id=str(ci.callIdString),
            remote_uri=str(ci.remoteUri),
            local_uri=str(ci.localUri),
        )
        if self.auto_answer:
            op = pj.CallOpParam()
            op.statusCode = int(self.auto_answer)
            call.answer(op)


class AgentCall(pj.Call):  # type: ignore[misc]
    def __init__(self, agent: Agent, acc: AgentAccount, name: str, call_id: int) -> None:
        super().__init__(acc, call_id)
        self.agent = agent
        self.name = name
        self.play_file: str | None = None
        self.record_file: str | None = None
        self.player: Any = None
        self.recorder: Any = None
        self.recording_to: str | None = None
        self.audio: Any = None

    @_guarded
    def onCallState(self, prm: Any) -> None:
        ci = self.getInfo()
        state = _STATE_NAMES.get(ci.state, str(ci.state))
        self.agent.emit(
            "call_state",
            call=self.name,
            state=state,
            code=int(ci.lastStatusCode),
            reason=str(ci.lastReason),
            call_id=str(ci.callIdString),
            remote_uri=str(ci.remoteUri),
        )
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.stop_recorder()
            self.agent.calls.pop(self.name, None)
            self.agent.dead_calls.append(self)

    @_guarded
    def onCallMediaState(self, prm: Any) -> None:
        ci = self.getInfo()
        active = False
        for media in ci.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                active = True
                self.audio = self.getAudioMedia(media.index)
        self.agent.emit("media_state", call=self.name, active=active)
        if active:
            if self.player is None and self.play_file:
                self.start_player(loop=True)
            elif self.player is not None:  # a re-INVITE (hold, resume) renews the stream
                self.player.startTransmit(self.audio)
            if self.recorder is None and self.record_file:
                self.start_recorder()
            elif self.recorder is not None:
                self.audio.startTransmit(self.recorder)

    @_guarded
    def onCallTransferStatus(self, prm: Any) -> None:
        self.agent.emit(
            "transfer_status",
            call=self.name,
            code=int(prm.statusCode),
            reason=str(prm.reason),
            final=bool(prm.finalNotify),
        )

    @_guarded
    def onDtmfDigit(self, prm: Any) -> None:
        self.agent.emit(
            "dtmf_received", call=self.name, digit=str(prm.digit), method=int(prm.method)
        )

    def start_player(self, loop: bool) -> None:
        if self.audio is None or not self.play_file:
            return  # started from onCallMediaState once media is up
        if self.player is not None:
            self.player.stopTransmit(self.audio)
        player = pj.AudioMediaPlayer()
        player.createPlayer(self.play_file, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(self.audio)
        self.player = player

    def start_recorder(self) -> None:
        if self.audio is None or not self.record_file:
            return
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(self.record_file)
        self.audio.startTransmit(recorder)
        self.recorder = recorder
        self.recording_to = self.record_file

    def stop_recorder(self) -> str | None:
        """Destroy the recorder, which writes the final WAV header; return its path."""
        path = self.recording_to
        if self.recorder is not None:
            self.recorder = None
            gc.collect()
            self.agent.emit("recording_closed", call=self.name, file=path)
        self.recording_to = None
        return path

    def release_media(self) -> None:
        self.stop_recorder()
        self.player = None
        self.audio = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--log-level", type=int, default=4)
    args = parser.parse_args(argv)
    # Keep a private handle on the real stdout for the protocol; send fd 1 to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    agent = Agent(proto, args.sip_port, args.log_level)
    try:
        agent.run(sys.stdin.fileno())
    except Exception:
        agent.emit("error", message=traceback.format_exc())
        raise
    finally:
        agent.shutdown()
        agent.emit("bye")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
