"""pjsua2 user agents for tests, each group of accounts in its own process.

:class:`PjsuaAgent` starts ``pjsua_agent.py`` with the project's Python and talks to it in
JSON lines (see that module for the protocol and for why pjsua2 is set up the way it
is). One agent process holds at most 8 accounts and 4 calls; start more agents for more.

Typical use::

    with PjsuaAgent(tmp_path, name="agents") as agent:
        acc = agent.add_account("1001", password="demo-1001", registrar=f"127.0.0.1:{port}",
                                auto_answer=200, play=tone1000, record_dir=tmp_path)
        acc.wait_registered()
        call = acc.wait_incoming()
        call.wait_confirmed()
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from tests.integration.peers import PeerError, PeerTimeoutError, free_port, log_tail, stop_process

log = logging.getLogger(__name__)

AGENT_SCRIPT = Path(__file__).with_name("pjsua_agent.py")
Event = dict[str, Any]


class PjsuaAgent:
    """One pjsua2 process. Use as a context manager so it always stops."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "pjsua",
        sip_port: int | None = None,
        log_level: int = 4,
        python: str = sys.executable,
    ) -> None:
        self.name = name
        self.dir = workdir / name
        self.log_path = self.dir / "pjsua.log"
        self.sip_port = sip_port or free_port()
        self.log_level = log_level
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._consumed: set[int] = set()
        self._results: dict[int, Event] = {}
        self._req = 0
        self._eof = False

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 15.0) -> Self:
        if self._proc is not None:
            raise PeerError(f"{self.name} already started")
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.python,
            str(AGENT_SCRIPT),
            "--sip-port",
            str(self.sip_port),
            "--log-level",
            str(self.log_level),
        ]
        with self.log_path.open("wb") as err:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=self.dir,
                start_new_session=True,
            )
        self._reader = threading.Thread(
            target=self._read_loop, name=f"{self.name}-out", daemon=True
        )
        self._reader.start()
        try:
            self.wait_event("ready", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the agent to quit (hang up, unregister, flush recordings), then make sure."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.write(b'{"cmd": "quit"}\n')
                proc.stdin.flush()
                proc.stdin.close()
                proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                log.warning("%s did not quit in %.1f s; terminating", self.name, timeout)
        stop_process(proc)
        if self._reader is not None:
            self._reader.join(timeout=timeout)
            self._reader = None
        if proc.stdout is not None:
            proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL: the phones vanish without BYE or unREGISTER."""
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

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    # ------------------------------------------------------------------ protocol

    def _read_loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                event: Event = json.loads(line)
            except ValueError:
                log.warning("%s: not a protocol line: %r", self.name, line)
                continue
            with self._cond:
                if event.get("event") == "result":
                    self._results[int(event.get("req") or 0)] = event
                else:
                    log.debug("%s event %s", self.name, event)
                    self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _dead(self) -> PeerError:
        code = self._proc.poll() if self._proc else None
        return PeerError(f"{self.name}: agent exited (status {code})\n{self.log_tail()}")

    def command(self, cmd: str, timeout: float = 10.0, **params: Any) -> Any:
        """Send one command and return its ``value``; a refusal raises :class:`PeerError`."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise PeerError(f"{self.name} is not started")
        with self._cond:
            self._req += 1
            req = self._req
        line = json.dumps({"cmd": cmd, "req": req, **params}) + "\n"
        try:
            proc.stdin.write(line.encode())
            proc.stdin.flush()
        except OSError as exc:
            raise self._dead() from exc
        deadline = time.monotonic() + timeout
        with self._cond:
            while req not in self._results:
                if self._eof:
                    raise self._dead()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerTimeoutError(
                        f"{self.name}: no answer to {cmd!r} within {timeout:.1f} s\n"
                        + self.log_tail()
                    )
                self._cond.wait(remaining)
            result = self._results.pop(req)
        if not result.get("ok"):
            raise PeerError(f"{self.name}: {cmd} failed: {result.get('error')}")
        return result.get("value")

    def mark(self) -> int:
        """A position in the event stream, for ``wait_event(since=...)``."""
        with self._cond:
            return len(self._events)

    def events(self) -> list[Event]:
        with self._cond:
            return list(self._events)

    def wait_event(
        self,
        kind: str,
        timeout: float = 10.0,
        *,
        match: dict[str, Any] | None = None,
        predicate: Callable[[Event], bool] | None = None,
        fail_on: Callable[[Event], bool] | None = None,
        since: int = 0,
    ) -> Event:
        """Return (and consume) the oldest unconsumed event of ``kind`` matching ``match``.

        Events received before the call count. ``fail_on`` turns a matching unconsumed
        event (e.g. the call's DISCONNECTED while waiting for CONFIRMED) into an
        immediate :class:`PeerError`.
        """
        want = match or {}
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, event in enumerate(self._events):
                    if index < since or index in self._consumed:
                        continue
                    if fail_on is not None and fail_on(event):
                        self._consumed.add(index)
                        raise PeerError(
                            f"{self.name}: got {event} while waiting for {kind} {want}\n"
                            f"{self.log_tail()}"
                        )
                    if event.get("event") != kind:
                        continue
                    if any(event.get(k) != v for k, v in want.items()):
                        continue
                    if predicate is not None and not predicate(event):
                        continue
                    self._consumed.add(index)
                    return event
                if self._eof:
                    raise self._dead()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    recent = [e.get("event") for e in self._events[-10:]]
                    raise PeerTimeoutError(
                        f"{self.name}: no {kind} {want} within {timeout:.1f} s "
                        f"(recent events: {recent})\n{self.log_tail()}"
                    )
                self._cond.wait(min(remaining, 0.5))

    # ------------------------------------------------------------------- helpers

    def contact_uri(self, user: str, transport: Literal["udp", "tcp"] = "udp") -> str:
        """Where to call an account of this agent directly (no registrar)."""
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"sip:{user}@127.0.0.1:{self.sip_port}{suffix}"

    def add_account(
        self,
        user: str,
        *,
        password: str | None = None,
        registrar: str | None = None,
        transport: Literal["udp", "tcp"] = "udp",
        reg_timeout: int = 300,
        register: bool = True,
        auto_answer: int | None = None,
        play: Path | None = None,
        record_dir: Path | None = None,
        auth_user: str | None = None,
        name: str | None = None,
    ) -> PjsuaAccount:
        """Add an account; with ``registrar`` ("host:port") it registers at once.

        ``reg_timeout`` is the Expires asked for (pjsua refreshes before it runs out).
        ``auto_answer`` answers every incoming call with that status. ``play`` is looped
        to every call; with ``record_dir`` each call is recorded to
        ``<record_dir>/<account>-<call>.wav``.
        """
        value = self.command(
            "add_account",
            account=name or user,
            user=user,
            password=password,
            registrar=registrar,
            transport=transport,
            reg_timeout=reg_timeout,
            register=register,
            auto_answer=auto_answer,
            play=str(play) if play else None,
            record_dir=str(record_dir) if record_dir else None,
            auth_user=auth_user,
        )
        return PjsuaAccount(self, str(value["account"]), user, transport)


class PjsuaAccount:
    def __init__(self, agent: PjsuaAgent, name: str, user: str, transport: str) -> None:
        self.agent = agent
        self.name = name
        self.user = user
        self.transport = transport

    @property
    def contact_uri(self) -> str:
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{self.user}@127.0.0.1:{self.agent.sip_port}{suffix}"

    def register(self) -> None:
        self.agent.command("register", account=self.name)

    def unregister(self) -> None:
        self.agent.command("unregister", account=self.name)

    def wait_reg_state(self, timeout: float = 10.0, since: int = 0) -> Event:
        return self.agent.wait_event(
            "reg_state", timeout, match={"account": self.name}, since=since
        )

    def wait_registered(self, timeout: float = 10.0, since: int = 0) -> Event:
        """Wait for a 2xx registration that left the binding active; failure raises."""
        event = self.wait_reg_state(timeout, since)
        if not (200 <= int(event["code"]) < 300 and event["active"]):
            raise PeerError(f"{self.agent.name}/{self.name}: registration failed: {event}")
        return event

    def wait_unregistered(self, timeout: float = 10.0, since: int = 0) -> Event:
        return self.agent.wait_event(
            "reg_state",
            timeout,
            match={"account": self.name, "active": False},
            since=since,
        )

    def call(
        self,
        uri: str,
        *,
        play: Path | None = None,
        record: Path | None = None,
        call_id: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> PjsuaCall:
        """Place a call; ``play``/``record`` override the account's defaults; ``headers``
        are added to the INVITE."""
        value = self.agent.command(
            "call",
            account=self.name,
            uri=uri,
            play=str(play) if play else None,
            record=str(record) if record else None,
            call_id=call_id,
            headers=[list(h) for h in headers or []],
        )
        return PjsuaCall(self.agent, str(value["call"]), str(value["call_id"]), record)

    def wait_incoming(self, timeout: float = 10.0, since: int = 0) -> PjsuaCall:
        event = self.agent.wait_event(
            "incoming_call", timeout, match={"account": self.name}, since=since
        )
        return PjsuaCall(self.agent, str(event["call"]), str(event["call_id"]), None)


class PjsuaCall:
    def __init__(self, agent: PjsuaAgent, name: str, call_id: str, record: Path | None) -> None:
        self.agent = agent
        self.name = name
        #: The SIP Call-ID of this leg.
        self.call_id = call_id
        self.record_path = record
        self.digits = ""

    def answer(
        self, code: int = 200, *, play: Path | None = None, record: Path | None = None
    ) -> None:
        if record:
            self.record_path = record
        self.agent.command(
            "answer",
            call=self.name,
            code=code,
            play=str(play) if play else None,
            record=str(record) if record else None,
        )

    def hangup(self, code: int = 0) -> None:
        self.agent.command("hangup", call=self.name, code=code)

    def send_dtmf(self, digits: str, method: Literal["rfc2833", "info"] = "rfc2833") -> None:
        self.agent.command("dtmf", call=self.name, digits=digits, method=method)

    def play(self, wav: Path, loop: bool = True) -> None:
        self.agent.command("play", call=self.name, file=str(wav), loop=loop)

    def record(self, wav: Path) -> None:
        self.record_path = wav
        self.agent.command("record", call=self.name, file=str(wav))

    def stop_record(self) -> Path | None:
        value = self.agent.command("stop_record", call=self.name)
        return Path(value["file"]) if value and value.get("file") else None

    def hold(self) -> None:
        self.agent.command("hold", call=self.name)

    def unhold(self) -> None:
        self.agent.command("unhold", call=self.name)

    def xfer(self, uri: str) -> None:
        """REFER this call to ``uri``, exactly as given."""
        self.agent.command("xfer", call=self.name, uri=uri)

    def xfer_replaces(self, dest: PjsuaCall) -> None:
        """Attended transfer: REFER this call to ``dest``'s peer, replacing ``dest``."""
        self.agent.command("xfer_replaces", call=self.name, dest=dest.name)

    def wait_transfer_final(self, timeout: float = 15.0) -> Event:
        """The final NOTIFY of the REFER sent on this call (its sipfrag status)."""
        return self.agent.wait_event(
            "transfer_status", timeout, match={"call": self.name, "final": True}
        )

    def dialog_tags(self) -> tuple[str, str]:
        """(this phone's tag, the far end's tag) of this call's dialog, read from the 200
        OK to the INVITE in pjsua's message log (pjsua2 does not expose dialog tags)."""
        for block in self.agent.log_path.read_text(errors="replace").split("--end msg--"):
            if "SIP/2.0 200 OK" not in block or f"Call-ID: {self.call_id}" not in block:
                continue
            if not re.search(r"^CSeq: \d+ INVITE", block, re.M):
                continue
            to_tag = re.search(r"^To: .*;tag=([^;\s>]+)", block, re.M)
            from_tag = re.search(r"^From: .*;tag=([^;\s>]+)", block, re.M)
            if to_tag and from_tag:
                mine_is_to = "TX " in block.split("SIP/2.0 200 OK")[0]
                if mine_is_to:
                    return to_tag.group(1), from_tag.group(1)
                return from_tag.group(1), to_tag.group(1)
        raise PeerError(f"{self.agent.name}: no 200 OK for {self.call_id} in the log")

    def _is_end(self, event: Event) -> bool:
        return (
            event.get("event") == "call_state"
            and event.get("call") == self.name
            and event.get("state") == "DISCONNECTED"
        )

    def wait_state(
        self, states: str | Iterable[str], timeout: float = 10.0, since: int = 0
    ) -> Event:
        wanted = {states} if isinstance(states, str) else set(states)
        fail = None if "DISCONNECTED" in wanted else self._is_end
        return self.agent.wait_event(
            "call_state",
            timeout,
            match={"call": self.name},
            predicate=lambda e: e.get("state") in wanted,
            fail_on=fail,
            since=since,
        )

    def wait_confirmed(self, timeout: float = 10.0) -> Event:
        """Wait until the call is answered; an early end raises with its status."""
        return self.wait_state("CONFIRMED", timeout)

    def wait_media(self, timeout: float = 10.0) -> Event:
        return self.agent.wait_event(
            "media_state", timeout, match={"call": self.name, "active": True}, fail_on=self._is_end
        )

    def wait_disconnected(self, timeout: float = 10.0) -> Event:
        return self.wait_state("DISCONNECTED", timeout)

    def wait_recording_closed(self, timeout: float = 10.0) -> Path:
        """Wait until the recorder has written its WAV header; returns the file."""
        event = self.agent.wait_event("recording_closed", timeout, match={"call": self.name})
        return Path(str(event["file"]))

    def wait_dtmf(self, count: int, timeout: float = 10.0) -> str:
        """Wait until ``count`` more digits have arrived on this call; returns them."""
        got = ""
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = max(0.0, deadline - time.monotonic())
            event = self.agent.wait_event("dtmf_received", remaining, match={"call": self.name})
            got += str(event["digit"])
        self.digits += got
        return got
