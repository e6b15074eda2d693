"""The API served by uvicorn inside the caller's event loop."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest

from tests.api.conftest import ADMIN, Api
from tsunagu.api import ApiServer


async def test_serves_in_the_running_loop_and_stops(api: Api) -> None:
    before = signal.getsignal(signal.SIGTERM)
    server = ApiServer(api.app, "127.0.0.1", 0)
    await server.start()
    try:
        assert server.port > 0
        # The host process keeps its signal handlers.
        assert signal.getsignal(signal.SIGTERM) is before
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            r = await client.get("/api/v1/me", headers=ADMIN)
            assert r.status_code == 200
            assert r.json()["name"] == "root"
            assert "server" not in r.headers
            assert (await client.get("/health")).json() == {"status": "ok"}
    finally:
        await server.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{server.port}/health")


async def test_a_busy_port_is_an_error_not_an_exit(api: Api) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = ApiServer(api.app, "127.0.0.1", port)
        with pytest.raises(OSError, match="could not listen"):
            await server.start()


def test_uvicorn_log_lines_lose_their_query_strings() -> None:
    import logging

    from tsunagu.api.serving import RedactQueryStrings

    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/api/v1/events?token=secret-key-123"),
        None,
    )
    assert RedactQueryStrings().filter(record)
    assert (
        record.getMessage() == '127.0.0.1:5000 - "WebSocket /api/v1/events?<redacted>" [accepted]'
    )
    plain = logging.LogRecord("uvicorn", logging.INFO, __file__, 1, "Started %s", ("x",), None)
    RedactQueryStrings().filter(plain)
    assert plain.getMessage() == "Started x"
