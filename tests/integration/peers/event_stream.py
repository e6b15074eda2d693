"""A client of Tsunagu's event stream (``GET /api/v1/events``) for tests: the
``websockets`` library's synchronous client, reading in a thread into a list.

``EventStream(url, header_token=...)`` authenticates with the ``Authorization`` header;
``EventStream(url, message_token=...)`` the way a browser does, with a first message.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

Frame = dict[str, Any]


class EventStream:
    def __init__(
        self, url: str, *, header_token: str | None = None, message_token: str | None = None
    ) -> None:
        self.url = url
        self._header_token = header_token
        self._message_token = message_token
        self.frames: list[Frame] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._lock = threading.Lock()
        self._ws: ClientConnection | None = None
        self._connected = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> Self:
        """Connect (in the reading thread: the client is a context manager) and return once
        the upgrade is done; a failure to connect is raised here."""
        self._thread.start()
        if not self._connected.wait(timeout=15):
            raise TimeoutError(f"no WebSocket connection to {self.url}")
        if self._error is not None:
            raise self._error
        return self

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self._header_token}"} if self._header_token else {}
        try:
            with connect(self.url, additional_headers=headers, proxy=None, open_timeout=10) as ws:
                self._ws = ws
                if self._message_token is not None:
                    ws.send(json.dumps({"token": self._message_token}))
                self._connected.set()
                try:
                    for message in ws:
                        with self._lock:
                            self.frames.append(json.loads(message))
                except ConnectionClosed:
                    pass
                self.close_code = ws.close_code
                self.close_reason = ws.close_reason
        except Exception as exc:
            self._error = exc
        finally:
            self._connected.set()

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def received(self) -> list[Frame]:
        with self._lock:
            return list(self.frames)

    def events(self, interaction_id: str | None = None) -> list[Frame]:
        """Event frames (not hello/dropped/error), optionally of one interaction."""
        return [
            f
            for f in self.received()
            if "." in str(f.get("type"))
            and (interaction_id is None or f["data"].get("interaction_id") == interaction_id)
        ]

    def wait_for(
        self, predicate: Callable[[Frame], bool], count: int = 1, timeout: float = 15.0
    ) -> list[Frame]:
        deadline = time.monotonic() + timeout
        while True:
            found = [f for f in self.received() if predicate(f)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                types = [f.get("type") for f in self.received()]
                raise TimeoutError(f"{len(found)} of {count} frames in {timeout} s; got {types}")
            time.sleep(0.05)

    def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        self._thread.join(timeout=timeout)
        return self.close_code, self.close_reason
