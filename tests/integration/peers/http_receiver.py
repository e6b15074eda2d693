"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 in a thread.

It records every request (path, headers, body) and answers with the status the test sets
(``receiver.status = 500`` makes it fail until set back), optionally with a
``Retry-After``. Thread-safe; waiting for requests is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from tests.integration.peers import LOOPBACK


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    status: int  # what we answered


class WebhookReceiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.retry_after: str | None = None
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    status, retry_after = receiver.status, receiver.retry_after
                    receiver.requests.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                        )
                    )
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}/hooks/tsunagu"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def wait_for(
        self,
        predicate: Callable[[Received], bool] | None = None,
        count: int = 1,
        timeout: float = 15.0,
    ) -> list[Received]:
        """Requests matching ``predicate`` (a callable on :class:`Received`), once at least
        ``count`` arrived; raises TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.received() if predicate is None or predicate(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(found)} of {count} webhook requests within {timeout} s; "
                    f"got {[r.headers.get('x-tsunagu-event') for r in self.received()]}"
                )
            time.sleep(0.05)
