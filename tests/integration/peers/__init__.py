"""Real SIP peers for integration tests: baresip, pjsua2, SIPp, and Tsunagu itself.

Every helper here starts real processes on loopback (127.0.0.1) only, on ports it picks
itself, and stops them again even when a test fails. Waits are bounded; a wait that runs
out raises :class:`PeerTimeoutError` whose message ends with the tail of the peer's own log,
because "timed out" without the peer's side of the story wastes an afternoon.

Nothing here judges speed: a slow machine makes tests slower, never red.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

__all__ = [
    "LOOPBACK",
    "PeerError",
    "PeerTimeoutError",
    "free_port",
    "kill_group",
    "log_tail",
    "stop_process",
]

LOOPBACK = "127.0.0.1"

# Ports handed out by this process recently. A port is free when we probe it but the peer
# binds it later; remembering what we gave away keeps two peers started together from
# being handed the same number.
_handed_out: set[int] = set()
_lock = threading.Lock()


class PeerError(Exception):
    """A peer process failed, exited early, or answered a command with an error."""


class PeerTimeoutError(PeerError, TimeoutError):
    """A bounded wait on a peer ran out; the message carries the peer's log tail."""


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    # baresip redraws a status line with carriage returns; keep only the last redraw.
    cleaned = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    tail = cleaned[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                raise
    return True


def free_port(*, with_next: bool = False) -> int:
    """A port number free for both UDP and TCP on 127.0.0.1 (SIP listens on both).

    The kernel proposes an ephemeral TCP port; we keep it only if UDP can bind it too and
    this process has not handed it out before. ``with_next`` also requires the next port
    to be free: baresip binds its TLS transport there.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        with _lock:
            if port in _handed_out or (with_next and port + 1 in _handed_out):
                continue
            if _bindable(port) and (not with_next or _bindable(port + 1)):
                _handed_out.add(port)
                if with_next:
                    _handed_out.add(port + 1)
                return port
    raise PeerError("no port free for both UDP and TCP on 127.0.0.1 after 200 tries")


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> int | None:
    """SIGTERM ``proc`` (and its process group), wait up to ``grace_s``, then SIGKILL.

    Returns the exit status, or ``None`` if it could not be reaped. Safe to call twice.
    """
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    kill_group(proc)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        return None


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and, when it leads its own session, every child it started."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
            return
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
