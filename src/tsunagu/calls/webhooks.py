"""HTTP calls a contact flow makes (InvokeWebhook): the one place flows touch the network.

Bounded on every side, because a CRM that hangs must not hold a caller in silence: a total
timeout from the flow block, a cap on the response size, JSON only. Every failure becomes a
:class:`~tsunagu.flows.interpreter.WebhookFailed` with a reason (the flow takes its error
branch and an event is raised); nothing here raises into the call.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx

from tsunagu.flows.interpreter import CallWebhook, WebhookFailed, WebhookResponse

log = logging.getLogger("tsunagu.webhooks")

MAX_RESPONSE_BYTES = 256 * 1024


class WebhookClient:
    def __init__(self, *, user_agent: str = "Tsunagu") -> None:
        self._client = httpx.AsyncClient(
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=False,
        )

    async def call(self, action: CallWebhook) -> WebhookResponse | WebhookFailed:
        try:
            return await asyncio.wait_for(self._call(action), timeout=action.timeout_s)
        except TimeoutError:
            return WebhookFailed(f"timeout after {action.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return WebhookFailed(f"{type(exc).__name__}: {exc}"[:200])

    async def _call(self, action: CallWebhook) -> WebhookResponse | WebhookFailed:
        method = action.method.upper()
        kwargs: dict[str, object] = {"headers": dict(action.headers)}
        if action.body is not None and method not in ("GET", "HEAD"):
            kwargs["json"] = action.body
        async with self._client.stream(method, action.url, **kwargs) as reply:  # type: ignore[arg-type]
            body = bytearray()
            async for chunk in reply.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    return WebhookFailed(f"response larger than {MAX_RESPONSE_BYTES} bytes")
        if not 200 <= reply.status_code < 300:
            return WebhookFailed(f"HTTP {reply.status_code}")
        if not body.strip():
            return WebhookResponse(reply.status_code, None)
        try:
            return WebhookResponse(reply.status_code, json.loads(body))
        except ValueError:
            return WebhookFailed("response is not JSON")

    async def close(self) -> None:
        await self._client.aclose()
