"""Outbound webhooks: the asyncio adapter that runs :mod:`.webhook_delivery` with httpx.

Each configured webhook subscribes to the bus for its event types. Every event becomes one
:class:`~tsunagu.events.webhook_delivery.Delivery`, run in its own task: at most
:data:`IN_FLIGHT` requests per webhook at a time, retries sleeping in between without
holding a slot. Deliveries run side by side, so a receiver may see events out of order
while it is retrying; ``seq`` and ``at`` in the body put them back in order.

Nothing is lost silently: a delivery that gives up is written to the store's dead letters;
so is one still waiting when the server stops, and one that finds the backlog full
(:data:`MAX_BACKLOG` deliveries not done: the receiver has been down for long). The
operator redelivers them through the API once the receiver works again.

Log lines name the webhook and the delivery, never the secret or the URL's query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tsunagu.events.bus import EventBus, Subscription
from tsunagu.events.types import DomainEvent
from tsunagu.events.webhook_delivery import (
    Delivery,
    DeliveryState,
    HttpAnswer,
    Outcome,
    RetryPolicy,
    TransportFailure,
    Verdict,
    request_headers,
)
from tsunagu.settings import WebhookSettings
from tsunagu.store.dead_letters import DeadLetter, DeadLetters

log = logging.getLogger("tsunagu.webhooks")

#: Requests in flight at once per webhook.
IN_FLIGHT = 4
#: Deliveries not yet done per webhook before new ones go straight to the dead letters.
MAX_BACKLOG = 1_000


class UnknownWebhookError(LookupError):
    """The dead letter's webhook is no longer in the configuration."""


class DeadLetterNotFoundError(LookupError):
    pass


def redacted_url(url: str) -> str:
    """``url`` without user info, query or fragment (where tokens tend to hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def body_of(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(eq=False)
class _Hook:
    settings: WebhookSettings
    policy: RetryPolicy
    subscription: Subscription
    slots: asyncio.Semaphore
    active: dict[str, Delivery] = field(default_factory=dict)
    delivered: int = 0
    dead: int = 0
    failed_attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_delivered_at: float | None = None


class WebhookDispatcher:
    def __init__(
        self,
        webhooks: Sequence[WebhookSettings],
        bus: EventBus,
        dead_letters: DeadLetters,
        *,
        user_agent: str = "Tsunagu",
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = list(webhooks)
        self._bus = bus
        self._dead_letters = dead_letters
        self._clock = clock
        self._jitter = jitter
        self._client = httpx.AsyncClient(
            headers={"User-Agent": user_agent},
            follow_redirects=False,
            transport=transport,
        )
        self._hooks: dict[str, _Hook] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        for settings in self._settings:
            hook = _Hook(
                settings=settings,
                policy=RetryPolicy(
                    max_attempts=settings.max_attempts,
                    max_age_s=settings.max_age_s,
                    base_delay_s=settings.backoff_base_s,
                    max_delay_s=settings.backoff_max_s,
                ),
                subscription=self._bus.subscribe(settings.events, name=f"webhook:{settings.name}"),
                slots=asyncio.Semaphore(IN_FLIGHT),
            )
            self._hooks[settings.name] = hook
            self._spawn(self._pump(hook), f"webhook-{settings.name}")
        if self._hooks:
            log.info(
                "webhooks started",
                extra={"webhooks": [h.settings.name for h in self._hooks.values()]},
            )

    async def close(self) -> None:
        """Stop; deliveries not done yet become dead letters (redeliverable later)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for hook in self._hooks.values():
            hook.subscription.close()
            for delivery in list(hook.active.values()):
                delivery.last_error = f"{delivery.last_error or 'not sent'} (server stopped)"
                await self._bury(hook, delivery)
            hook.active.clear()
        await self._client.aclose()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook task failed", exc_info=task.exception())

    # -- delivering -------------------------------------------------------------------
    async def _pump(self, hook: _Hook) -> None:
        while True:
            event = await hook.subscription.get()
            delivery = self._new_delivery(hook, event)
            if len(hook.active) >= MAX_BACKLOG:
                delivery.last_error = f"backlog of {MAX_BACKLOG} deliveries full (not sent)"
                await self._bury(hook, delivery)
                continue
            hook.active[delivery.id] = delivery
            self._spawn(self._deliver(hook, delivery), f"delivery-{delivery.id}")

    def _new_delivery(self, hook: _Hook, event: DomainEvent) -> Delivery:
        return Delivery(
            id=str(uuid.uuid4()),
            webhook=hook.settings.name,
            event_type=event.type,
            event_id=event.id,
            body=body_of(event.to_json()),
            created_at=self._clock(),
            policy=hook.policy,
        )

    async def _deliver(self, hook: _Hook, delivery: Delivery) -> None:
        try:
            while not delivery.done:
                # The loop's timers run on the monotonic clock and may fire a hair early
                # (within its resolution) by the wall clock the machine is driven with;
                # sleep again until the retry is really due rather than trip the table.
                await asyncio.sleep(delivery.delay(self._clock()))
                if delivery.delay(self._clock()) > 0:
                    continue
                async with hook.slots:
                    now = self._clock()
                    delivery.send(now)
                    outcome = await self._attempt(hook, delivery, now)
                verdict = delivery.result(outcome, self._clock(), self._jitter())
                self._account(hook, delivery, verdict)
            hook.active.pop(delivery.id, None)
            if delivery.state is DeliveryState.DEAD:
                await self._bury(hook, delivery)
        except asyncio.CancelledError:
            raise  # close() buries what is still active
        except Exception:
            hook.active.pop(delivery.id, None)
            log.exception("webhook delivery failed", extra={"delivery": delivery.id})
            delivery.last_error = "internal error while delivering"
            await self._bury(hook, delivery)

    async def _attempt(self, hook: _Hook, delivery: Delivery, now: float) -> Outcome:
        settings = hook.settings
        headers = request_headers(delivery, settings.secret, now)
        try:
            async with asyncio.timeout(settings.timeout_s):
                async with self._client.stream(
                    "POST",
                    settings.url,
                    content=delivery.body,
                    headers=headers,
                    timeout=settings.timeout_s,
                ) as reply:
                    # The body is not read: a receiver cannot make us buffer anything.
                    return HttpAnswer(reply.status_code, reply.headers.get("retry-after"))
        except (TimeoutError, httpx.TimeoutException):
            return TransportFailure(f"timeout after {settings.timeout_s:g} s")
        except (httpx.HTTPError, OSError) as exc:
            return TransportFailure(f"{type(exc).__name__}: {exc}"[:300])

    def _account(self, hook: _Hook, delivery: Delivery, verdict: Verdict) -> None:
        hook.last_status, hook.last_error = delivery.last_status, delivery.last_error
        extra = {
            "webhook": hook.settings.name,
            "delivery": delivery.id,
            "event_type": delivery.event_type,
            "attempt": delivery.attempts,
            "status": delivery.last_status,
        }
        if verdict is Verdict.DELIVERED:
            hook.delivered += 1
            hook.last_delivered_at = delivery.finished_at
            log.info("webhook delivered", extra=extra)
            return
        hook.failed_attempts += 1
        extra["error"] = delivery.last_error
        if verdict is Verdict.RETRY:
            extra["retry_in_s"] = round(delivery.delay(self._clock()), 2)
            log.info("webhook attempt failed; will retry", extra=extra)
        else:
            log.warning("webhook delivery dead", extra=extra)

    async def _bury(self, hook: _Hook, delivery: Delivery) -> None:
        """Keep a delivery that gave up as a dead letter. ``dead`` counts it once the
        store has answered (kept or not), so a status that says dead can be followed by a
        read of the dead letters that finds it."""
        try:
            await self._dead_letters.record(
                delivery_id=delivery.id,
                webhook=delivery.webhook,
                event_type=delivery.event_type,
                event_id=delivery.event_id,
                payload=json.loads(delivery.body),
                attempts=delivery.attempts,
                last_status=delivery.last_status,
                last_error=delivery.last_error,
                created_at=datetime.fromtimestamp(delivery.created_at, UTC),
                dead_at=datetime.fromtimestamp(self._clock(), UTC),
            )
        except Exception:
            log.exception(
                "could not keep a dead webhook delivery",
                extra={"webhook": delivery.webhook, "delivery": delivery.id},
            )
        finally:
            hook.dead += 1

    # -- for the API --------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """Per webhook: counts since start and the last outcome (never the secret)."""
        out = []
        for hook in self._hooks.values():
            settings = hook.settings
            last = hook.last_delivered_at
            out.append(
                {
                    "name": settings.name,
                    "url": redacted_url(settings.url),
                    "events": list(settings.events),
                    "delivered": hook.delivered,
                    "retrying": len(hook.active),
                    "dead": hook.dead,
                    "failed_attempts": hook.failed_attempts,
                    "dropped": hook.subscription.dropped,
                    "last_status": hook.last_status,
                    "last_error": hook.last_error,
                    "last_delivered_at": (
                        None if last is None else datetime.fromtimestamp(last, UTC).isoformat()
                    ),
                }
            )
        return out

    async def redeliver(self, letter_id: str) -> DeadLetter:
        """Send a dead letter again (same delivery id, fresh attempts and max age).

        Raises :class:`DeadLetterNotFoundError`, :class:`UnknownWebhookError`, or the
        store's :class:`~tsunagu.store.InvalidStateError` when it was already redelivered.
        """
        letter = await self._dead_letters.get(letter_id)
        if letter is None:
            raise DeadLetterNotFoundError(letter_id)
        hook = self._hooks.get(letter.webhook)
        if hook is None:
            raise UnknownWebhookError(letter.webhook)
        now = self._clock()
        marked = await self._dead_letters.mark_redelivered(
            letter_id, datetime.fromtimestamp(now, UTC)
        )
        delivery = Delivery(
            id=letter.id,
            webhook=letter.webhook,
            event_type=letter.event_type,
            event_id=letter.event_id,
            body=body_of(letter.payload),
            created_at=now,
            policy=hook.policy,
        )
        hook.active[delivery.id] = delivery
        self._spawn(self._deliver(hook, delivery), f"redelivery-{delivery.id}")
        log.info(
            "webhook redelivery started",
            extra={"webhook": letter.webhook, "delivery": letter.id},
        )
        return marked
