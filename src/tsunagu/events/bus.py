"""The in-process event bus: the call path publishes, the stream and webhooks subscribe.

Why this shape (DESIGN.md: subscribers are never called from the call path):

* :meth:`EventBus.publish` is synchronous, never blocks and never raises. A call must not
  wait for a browser or a CRM, and a bug in a subscriber's filter must not end a call: every
  failure inside is logged and swallowed.
* Each subscriber has its own bounded queue. A subscriber that does not keep up loses its
  *oldest* events (the newest state is what a wallboard or a screen-pop needs), counts them
  in ``dropped``, and the loss is logged once per burst (the first drop after the queue was
  last drained), not once per event, so a stuck client cannot flood the log.
* Filtering happens at publish time (event types, and an optional predicate for role
  scoping), so a subscriber's queue only holds what it will use.

The bus stamps ``seq`` (1, 2, 3... per bus); a subscriber that sees a gap knows it lost
events. Everything runs on the event loop's thread; the bus has no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable

from tsunagu.events.types import EVENT_TYPES, DomainEvent

log = logging.getLogger("tsunagu.events")

DEFAULT_QUEUE_SIZE = 1_000

Predicate = Callable[[DomainEvent], bool]


class UnknownEventTypeError(ValueError):
    """A subscription named a type that is not in :data:`~tsunagu.events.types.EVENT_TYPES`."""


def _types(types: Iterable[str] | None) -> frozenset[str] | None:
    if types is None:
        return None
    wanted = frozenset(types)
    if "*" in wanted:
        return None
    unknown = sorted(wanted - EVENT_TYPES.keys())
    if unknown:
        raise UnknownEventTypeError(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return wanted


class Subscription:
    """One subscriber's bounded queue. Read it with :meth:`get` (async) or
    :meth:`get_nowait`; :meth:`close` it when done (or use ``with``)."""

    def __init__(
        self,
        bus: EventBus,
        name: str,
        types: frozenset[str] | None,
        accept: Predicate | None,
        maxsize: int,
    ) -> None:
        if maxsize < 1:
            raise ValueError("a subscription queue holds at least one event")
        self.name = name
        self.types = types
        self.accept = accept
        self.maxsize = maxsize
        #: Events this subscriber lost because its queue was full (oldest first).
        self.dropped = 0
        self.closed = False
        self._bus = bus
        self._queue: deque[DomainEvent] = deque()
        self._ready = asyncio.Event()
        self._in_burst = False
        self._burst = 0

    def __len__(self) -> int:
        return len(self._queue)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def narrow(self, types: Iterable[str] | None) -> None:
        """Change the event types wanted (``None`` or ``["*"]``: all). Events already
        queued that no longer match are removed."""
        self.types = _types(types)
        if self.types is not None:
            wanted = self.types
            self._queue = deque(e for e in self._queue if e.type in wanted)

    def wants(self, event: DomainEvent) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        return self.accept is None or self.accept(event)

    def put(self, event: DomainEvent) -> None:
        """Queue ``event``, dropping the oldest one if the queue is full."""
        if self.closed:
            return
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.dropped += 1
            self._burst += 1
            if not self._in_burst:
                self._in_burst = True
                log.warning(
                    "event subscriber too slow: dropping its oldest events",
                    extra={"subscriber": self.name, "queue_size": self.maxsize},
                )
        self._queue.append(event)
        self._ready.set()

    def get_nowait(self) -> DomainEvent | None:
        if not self._queue:
            return None
        event = self._queue.popleft()
        if not self._queue:
            self._ready.clear()
            self._end_burst()
        return event

    async def get(self) -> DomainEvent:
        """The next event, waiting for one if none is queued. Raises
        :class:`asyncio.CancelledError` only when cancelled; a closed subscription with an
        empty queue raises :class:`EOFError`."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self.closed:
                raise EOFError("subscription closed")
            await self._ready.wait()

    def _end_burst(self) -> None:
        if self._in_burst:
            self._in_burst = False
            log.info(
                "event subscriber caught up",
                extra={"subscriber": self.name, "dropped": self._burst},
            )
            self._burst = 0

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ready.set()  # wake a reader so it sees the end
            self._bus.unsubscribe(self)


class EventBus:
    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscriptions: list[Subscription] = []
        self._seq = itertools.count(1)
        #: Events published, and failures swallowed (a bug somewhere if not zero).
        self.published = 0
        self.errors = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(
        self,
        types: Iterable[str] | None = None,
        *,
        accept: Predicate | None = None,
        name: str = "subscriber",
        maxsize: int | None = None,
    ) -> Subscription:
        """A new subscription to events of ``types`` (``None`` or ``["*"]``: all) that
        ``accept`` (if given) returns true for. Unknown types raise
        :class:`UnknownEventTypeError` (a typo would otherwise be silence)."""
        subscription = Subscription(self, name, _types(types), accept, maxsize or self.queue_size)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def publish(self, event: DomainEvent) -> DomainEvent | None:
        """Stamp ``event`` with the next sequence number and queue it for every subscriber
        that wants it; the stamped event, or ``None`` if something went wrong (logged).
        Never raises, never blocks."""
        try:
            stamped = dataclasses.replace(event, seq=next(self._seq))
            self.published += 1
        except Exception:
            self.errors += 1
            log.exception(
                "could not publish an event",
                extra={"event_type": getattr(event, "type", repr(event)[:80])},
            )
            return None
        for subscription in tuple(self._subscriptions):
            try:
                if subscription.wants(stamped):
                    subscription.put(stamped)
            except Exception:
                self.errors += 1
                log.exception(
                    "event subscriber failed; event skipped for it",
                    extra={"subscriber": subscription.name, "event_type": stamped.type},
                )
        return stamped
