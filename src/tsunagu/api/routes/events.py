"""``GET /api/v1/events``: the live event stream over WebSocket (RFC 6455), JSON text
frames, filtered by role.

Authentication, in this order (docs/API.md "Event stream"):

* ``Authorization: Bearer <key>`` (or Basic) on the upgrade request, for programs; or
* a first text message ``{"token": "<key>"}`` within :data:`AUTH_TIMEOUT_S` seconds, for
  browsers (which cannot set headers on a WebSocket).

A key in the query string is refused: URLs end up in proxy and access logs. Every refusal
is an ``{"type": "error", "error_id", "message", "details"}`` frame, then a close with a
reason; the same :class:`~tsunagu.api.auth.Authenticator` as every other route decides
(failure limits, per-role IP allow-lists, rate limit).

What each role sees: admin and supervisor everything; an agent only events that concern
them (their own ``agent.state``; calls offered to or answered by them, including the
screen-pop ``call.offered``; see :meth:`~tsunagu.events.types.DomainEvent.concerns`).
``{"subscribe": ["call.offered", ...]}`` narrows the stream (``["*"]``: everything the
role may see). Control frames are ``hello``, ``subscribed``, ``dropped`` and ``error``;
everything else is an event (``tsunagu.events.types``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tsunagu.api.auth import Principal, client_address
from tsunagu.api.context import ApiContext
from tsunagu.api.errors import ApiError
from tsunagu.api.users import Role
from tsunagu.events import EventBus, Subscription, UnknownEventTypeError
from tsunagu.events.types import DomainEvent

log = logging.getLogger("tsunagu.api")

router = APIRouter(tags=["events"])

#: A browser must send ``{"token": ...}`` within this long after the upgrade.
AUTH_TIMEOUT_S = 5.0
#: The largest client message read (subscribe lists are short).
MAX_MESSAGE_CHARS = 4_096
#: Query parameters that carry credentials in other APIs: refused with a clear reason.
CREDENTIAL_PARAMS = frozenset(
    {"token", "access_token", "key", "api_key", "apikey", "auth", "authorization", "password"}
)

# Close codes (RFC 6455 §7.4: 1008 policy violation; 4000-4999 are the application's).
CLOSE_POLICY = 1008
CLOSE_UNAVAILABLE = 1013
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4429
_CLOSE_FOR_STATUS = {401: CLOSE_UNAUTHENTICATED, 403: CLOSE_FORBIDDEN, 429: CLOSE_RATE_LIMITED}


class _RefusedError(Exception):
    def __init__(
        self, code: int, error_id: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.error_id, self.message = code, error_id, message
        self.details = details or {}


def close_reason(refused: _RefusedError) -> str:
    """``error_id: message`` cut to the 123 bytes a close frame's reason may hold
    (RFC 6455 §5.5: control frame payloads are at most 125 bytes, 2 of them the code)."""
    text = f"{refused.error_id}: {refused.message}".encode()[:123]
    return text.decode("utf-8", errors="ignore")


def _frame(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def role_filter(principal: Principal) -> Any:
    """The bus predicate for ``principal``'s role (``None``: everything)."""
    if principal.role != Role.AGENT:
        return None
    agent = principal.agent

    def concerns(event: DomainEvent) -> bool:
        return agent is not None and event.concerns(agent)

    return concerns


@router.websocket("/events")
async def event_stream(websocket: WebSocket) -> None:
    context = websocket.app.state.tsunagu
    assert isinstance(context, ApiContext)
    await websocket.accept()
    try:
        _refuse_query(websocket)
        bus = context.services.events
        if bus is None:
            raise _RefusedError(CLOSE_UNAVAILABLE, "events.unavailable", "no event stream here")
        principal = await _authenticate(context, websocket)
        await _stream(websocket, bus, principal)
    except _RefusedError as refused:
        await _close(websocket, refused)
    except WebSocketDisconnect:
        pass


def _refuse_query(websocket: WebSocket) -> None:
    names = set(websocket.query_params.keys())
    if not names:
        return
    if names & CREDENTIAL_PARAMS:
        raise _RefusedError(
            CLOSE_POLICY,
            "auth.token_in_query",
            "credentials in the URL are refused (they reach access logs): send "
            'Authorization: Bearer <key>, or a first message {"token": "<key>"}',
            {"parameters": sorted(names & CREDENTIAL_PARAMS)},
        )
    raise _RefusedError(
        CLOSE_BAD_REQUEST,
        "request.invalid",
        "this endpoint takes no query parameters; narrow the stream with a "
        '{"subscribe": [...]} message',
        {"parameters": sorted(names)},
    )


async def _authenticate(context: ApiContext, websocket: WebSocket) -> Principal:
    header = websocket.headers.get("authorization")
    if header is None:
        try:
            first = await asyncio.wait_for(_receive_json(websocket), AUTH_TIMEOUT_S)
        except TimeoutError:
            raise _RefusedError(
                CLOSE_UNAUTHENTICATED,
                "auth.required",
                f'authentication required: send {{"token": "<key>"}} within '
                f"{AUTH_TIMEOUT_S:g} s, or Authorization: Bearer <key> on the upgrade",
            ) from None
        token = first.get("token")
        if not isinstance(token, str) or not token:
            raise _RefusedError(
                CLOSE_UNAUTHENTICATED,
                "auth.required",
                'the first message must be {"token": "<api key>"}',
                {"field": "token"},
            )
        header = f"Bearer {token}"
    try:
        return await context.auth.authenticate_header(header, client_address(websocket))
    except ApiError as exc:
        code = _CLOSE_FOR_STATUS.get(exc.status, CLOSE_POLICY)
        raise _RefusedError(code, exc.error_id, exc.message, exc.details) from None


async def _receive_json(websocket: WebSocket) -> dict[str, Any]:
    """The next text message as a JSON object (a refusal for anything else)."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise _RefusedError(CLOSE_BAD_REQUEST, "request.invalid", "send JSON text frames")
    if len(text) > MAX_MESSAGE_CHARS:
        raise _RefusedError(
            CLOSE_BAD_REQUEST, "request.too_large", f"messages are at most {MAX_MESSAGE_CHARS}"
        )
    try:
        document = json.loads(text)
    except ValueError:
        raise _RefusedError(CLOSE_BAD_REQUEST, "request.invalid", "not JSON") from None
    if not isinstance(document, dict):
        raise _RefusedError(CLOSE_BAD_REQUEST, "request.invalid", "send a JSON object")
    return document


async def _stream(websocket: WebSocket, bus: EventBus, principal: Principal) -> None:
    name = f"ws:{principal.actor}@{principal.client}"
    with bus.subscribe(accept=role_filter(principal), name=name) as subscription:
        await websocket.send_text(
            _frame(
                {
                    "type": "hello",
                    "role": str(principal.role),
                    "agent": principal.agent,
                    "subscribed": ["*"],
                }
            )
        )
        log.info(
            "event stream opened", extra={"actor": principal.actor, "client": principal.client}
        )
        sender = asyncio.ensure_future(_send_events(websocket, subscription))
        reader = asyncio.ensure_future(_read_requests(websocket, subscription))
        try:
            await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, reader):
                task.cancel()
        refusal: _RefusedError | None = None
        for task in (sender, reader):
            try:
                await task
            except (asyncio.CancelledError, WebSocketDisconnect):
                pass
            except _RefusedError as exc:  # a bad message from the client: tell it, close
                refusal = exc
            except Exception:  # the connection went away mid-send
                log.info("event stream ended by an error", exc_info=True)
        log.info("event stream closed", extra={"actor": principal.actor})
        if refusal is not None:
            raise refusal


async def _send_events(websocket: WebSocket, subscription: Subscription) -> None:
    reported = 0
    while True:
        event = await subscription.get()
        if subscription.dropped > reported:
            lost, reported = subscription.dropped - reported, subscription.dropped
            await websocket.send_text(_frame({"type": "dropped", "count": lost}))
        await websocket.send_text(_frame(event.to_json()))


async def _read_requests(websocket: WebSocket, subscription: Subscription) -> None:
    while True:
        request = await _receive_json(websocket)
        if "subscribe" not in request:
            await websocket.send_text(
                _frame(
                    {
                        "type": "error",
                        "error_id": "request.invalid",
                        "message": 'unknown request; send {"subscribe": [event types]}',
                        "details": {"keys": sorted(request)[:10]},
                    }
                )
            )
            continue
        types = request["subscribe"]
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            await _error(websocket, "request.invalid", "subscribe takes a list of event types")
            continue
        try:
            subscription.narrow(types)
        except UnknownEventTypeError as exc:
            await _error(websocket, "events.unknown_type", str(exc))
            continue
        shown = sorted(subscription.types) if subscription.types is not None else ["*"]
        await websocket.send_text(_frame({"type": "subscribed", "types": shown}))


async def _error(websocket: WebSocket, error_id: str, message: str) -> None:
    await websocket.send_text(
        _frame({"type": "error", "error_id": error_id, "message": message, "details": {}})
    )


async def _close(websocket: WebSocket, refused: _RefusedError) -> None:
    if websocket.client_state is not WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        await websocket.send_text(
            _frame(
                {
                    "type": "error",
                    "error_id": refused.error_id,
                    "message": refused.message,
                    "details": refused.details,
                }
            )
        )
        await websocket.close(code=refused.code, reason=close_reason(refused))
