"""Serve the API with uvicorn inside the server's own running event loop.

Why not ``uvicorn.run``: Tsunagu runs SIP, media and HTTP in one loop, so the HTTP server
must be a task of that loop. And why a subclass: ``uvicorn.Server.serve()`` called from the
main thread replaces the process's SIGINT/SIGTERM handlers with its own (and re-raises the
signal when it stops), which would take shutdown away from the server. Here the server
keeps its handlers and stops the API itself with :meth:`ApiServer.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("tsunagu.api")

START_TIMEOUT_S = 10.0
#: uvicorn's own loggers (they log request targets, query string included).
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_QUERY = re.compile(r"(/[^\s\"?]*)\?[^\s\"]*")


class RedactQueryStrings(logging.Filter):
    """Cut query strings out of uvicorn's log lines.

    uvicorn logs each WebSocket upgrade (``"WebSocket /api/v1/events?..." [accepted]``)
    and, at debug level, request lines, before any handler of ours runs. A client that
    puts its API key in the URL, which the event stream refuses, would otherwise still
    have it written to the log (secrets are never logged).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _QUERY.sub(r"\1?<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _install_redaction() -> None:
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueryStrings) for f in logger.filters):
            logger.addFilter(RedactQueryStrings())


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the host process owns the signals


class ApiServer:
    """A running uvicorn server; :meth:`start` it, later :meth:`stop` it."""

    def __init__(self, app: FastAPI, host: str, port: int, *, proxy_headers: bool = False) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # keep Tsunagu's logging set-up
            access_log=False,
            proxy_headers=proxy_headers,  # True only behind a trusted reverse proxy
            server_header=False,
            lifespan="off",
            # The sans-IO websockets implementation (the legacy one is deprecated).
            ws="websockets-sansio",
        )
        self._server = _EmbeddedServer(config)
        _install_redaction()
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        sockets = self._server.servers[0].sockets if self._server.servers else ()
        return int(sockets[0].getsockname()[1]) if sockets else 0

    async def start(self) -> None:
        """Bind and start serving; raises if the port cannot be bound."""
        self._task = asyncio.create_task(self._serve(), name="tsunagu-api")
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        # uvicorn offers no "started" event to wait on.
        while not self._server.started:
            if self._task.done():
                self._task.result()  # the bind error, if any
                raise OSError("the API server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the API server did not start")
            await asyncio.sleep(0.01)
        log.info("REST API listening", extra={"port": self.port})

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot bind; a task must not do that.
            config = self._server.config
            raise OSError(
                f"the API server could not listen on {config.host}:{config.port} "
                "(address in use, or not allowed)"
            ) from None

    async def stop(self) -> None:
        """Stop accepting, finish requests in flight, and return."""
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None
