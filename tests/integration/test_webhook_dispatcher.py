"""The webhook dispatcher against a real HTTP receiver on loopback and a real SQLite store:
signed deliveries, retries with backoff, dead letters, redelivery with the same delivery
id, and nothing lost when the server stops mid-retry. (With real phones driving the
events: tests/integration/test_events.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.peers.http_receiver import WebhookReceiver
from tsunagu.events import AgentStateChanged, CallEnded, EventBus
from tsunagu.events.webhooks import UnknownWebhookError, WebhookDispatcher
from tsunagu.settings import WebhookSettings
from tsunagu.store import Store, open_store

SECRET = "whsec-dispatcher-test-0123"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def hook(url: str, **overrides: object) -> WebhookSettings:
    values: dict[str, object] = {
        "name": "crm",
        "url": url,
        "secret": SECRET,
        "events": ["call.ended"],
        "timeout_s": 2,
        "max_attempts": 3,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
    }
    values.update(overrides)
    return WebhookSettings.model_validate(values)


def ended(n: int = 1) -> CallEnded:
    return CallEnded(
        at=time.time(), interaction_id=f"i-{n}", disposition="answered", duration_s=12.5
    )


async def until(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


def signed_correctly(headers: dict[str, str], body: bytes) -> bool:
    fields = dict(part.split("=", 1) for part in headers["x-tsunagu-signature"].split(","))
    expected = hmac.new(
        SECRET.encode(), fields["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(fields["v1"], expected) and abs(time.time() - int(fields["t"])) < 60


async def test_delivers_signed_events_of_the_subscribed_types(
    store: Store, receiver: WebhookReceiver
) -> None:
    bus = EventBus()
    dispatcher = WebhookDispatcher([hook(receiver.url)], bus, store.dead_letters)
    dispatcher.start()
    try:
        bus.publish(AgentStateChanged(at=time.time(), agent_id="1001", old="a", new="b"))
        published = bus.publish(ended())
        assert published is not None
        (request,) = await asyncio.to_thread(receiver.wait_for)
        assert request.path == "/hooks/tsunagu"
        assert request.headers["x-tsunagu-event"] == "call.ended"
        assert request.headers["content-type"] == "application/json"
        assert signed_correctly(request.headers, request.body)
        assert json.loads(request.body) == published.to_json()
        await until(lambda: dispatcher.status()[0]["delivered"] == 1)
        (status,) = dispatcher.status()
        assert status["retrying"] == 0 and status["dead"] == 0 and status["last_status"] == 200
        assert SECRET not in json.dumps(status)
    finally:
        await dispatcher.close()
    assert len(receiver.received()) == 1  # the agent.state event was not subscribed


async def test_retries_then_a_dead_letter_then_redelivery_with_the_same_id(
    store: Store, receiver: WebhookReceiver
) -> None:
    receiver.status = 500
    bus = EventBus()
    dispatcher = WebhookDispatcher([hook(receiver.url)], bus, store.dead_letters)
    dispatcher.start()
    try:
        bus.publish(ended())
        await until(lambda: dispatcher.status()[0]["dead"] == 1)
        attempts = receiver.received()
        assert len(attempts) == 3 and all(a.status == 500 for a in attempts)
        ids = {a.headers["x-tsunagu-delivery"] for a in attempts}
        assert len(ids) == 1  # the same delivery id on every retry
        page = await store.dead_letters.list()
        (letter,) = page.items
        assert letter.id in ids and letter.attempts == 3 and letter.last_status == 500
        assert letter.last_error == "HTTP 500 (gave up: max attempts)"

        receiver.status = 204
        await dispatcher.redeliver(letter.id)
        (again,) = await asyncio.to_thread(receiver.wait_for, lambda r: r.status == 204)
        assert again.headers["x-tsunagu-delivery"] == letter.id
        assert json.loads(again.body) == letter.payload
        assert signed_correctly(again.headers, again.body)
        await until(lambda: dispatcher.status()[0]["delivered"] == 1)
        stored = await store.dead_letters.get(letter.id)
        assert stored is not None and stored.redelivered_at is not None
    finally:
        await dispatcher.close()


async def test_a_retry_timer_that_fires_early_by_the_wall_clock_still_retries(
    store: Store, receiver: WebhookReceiver
) -> None:
    """The loop's timers run on the monotonic clock, deliveries on the wall clock: a
    timer that fires before the retry is due by the wall clock (seen on loaded machines)
    must wait again, not fail the delivery. This clock runs 20 % slow on purpose."""
    receiver.status = 500
    started, origin = time.monotonic(), time.time()

    def slow_wall() -> float:
        return origin + (time.monotonic() - started) * 0.8

    bus = EventBus()
    dispatcher = WebhookDispatcher(
        [hook(receiver.url)], bus, store.dead_letters, clock=slow_wall, jitter=lambda: 1.0
    )
    dispatcher.start()
    try:
        bus.publish(ended())
        await until(lambda: dispatcher.status()[0]["dead"] == 1)
        assert len(receiver.received()) == 3
        (letter,) = (await store.dead_letters.list()).items
        assert letter.last_error == "HTTP 500 (gave up: max attempts)"
    finally:
        await dispatcher.close()


async def test_a_gone_receiver_is_dead_at_once_and_retry_after_is_waited_for(
    store: Store, receiver: WebhookReceiver
) -> None:
    receiver.status = 410
    bus = EventBus()
    dispatcher = WebhookDispatcher([hook(receiver.url)], bus, store.dead_letters)
    dispatcher.start()
    try:
        bus.publish(ended())
        await until(lambda: dispatcher.status()[0]["dead"] == 1)
        assert len(receiver.received()) == 1
        receiver.status, receiver.retry_after = 503, "1"
        bus.publish(ended(2))
        await asyncio.to_thread(receiver.wait_for, lambda r: r.status == 503)
        first = time.monotonic()
        receiver.status, receiver.retry_after = 200, None
        await asyncio.to_thread(receiver.wait_for, lambda r: r.status == 200)
        # Our own backoff is at most 0.2 s here; the receiver asked for a second.
        assert time.monotonic() - first >= 0.9
    finally:
        await dispatcher.close()


async def test_unreachable_receivers_and_stopping_keep_dead_letters(store: Store) -> None:
    bus = EventBus()
    slow = hook(
        "http://127.0.0.1:9/nothing-listens", name="slow", backoff_base_s=30, backoff_max_s=60
    )
    dispatcher = WebhookDispatcher([slow], bus, store.dead_letters)
    dispatcher.start()
    bus.publish(ended())
    await until(lambda: dispatcher.status()[0]["failed_attempts"] >= 1)
    assert dispatcher.status()[0]["retrying"] == 1
    assert "ConnectError" in (dispatcher.status()[0]["last_error"] or "")
    await dispatcher.close()  # waiting 15-30 s for the next attempt: kept, not lost
    (letter,) = (await store.dead_letters.list()).items
    assert letter.webhook == "slow" and letter.attempts == 1
    assert letter.last_error is not None and letter.last_error.endswith("(server stopped)")

    other = WebhookDispatcher([], EventBus(), store.dead_letters)
    other.start()
    try:
        with pytest.raises(UnknownWebhookError):
            await other.redeliver(letter.id)
    finally:
        await other.close()
