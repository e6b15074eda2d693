"""Delivering one event to one webhook: signing, and a retry machine as a table (sans-IO).

The asyncio adapter (:mod:`tsunagu.events.webhooks`) does the HTTP; this module decides.
Time (wall-clock Unix seconds) and jitter (a number in [0, 1)) are passed in, so a day of
retries is tested in microseconds.

States and inputs (:data:`TRANSITIONS`; an input not in the table is a loud
:class:`DeliveryStateError`)::

    pending ──send──► in_flight ──delivered──► delivered
                         │   ├──refused────► dead      (4xx other than 408/429: the
                         │   │                          receiver will never take it)
                         │   ├──exhausted──► dead      (max attempts or max age reached)
                         │   └──retry──────► retry_wait
    retry_wait ──send──► in_flight

Outcomes (:func:`classify`): 2xx is delivered; 408 and 429 and every 5xx, a timeout or a
connection error are retried; any other status (3xx, since redirects are not followed, and
4xx such as 400, 401, 404, 410) is refused. ``Retry-After`` (RFC 9110 §10.2.3, seconds or
an HTTP-date) is honoured as a minimum delay.

Signing follows Stripe's scheme so receivers can reuse what they know::

    X-Tsunagu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>

The timestamp is inside the signed string, so a receiver rejects a replayed request by
its age; the ``X-Tsunagu-Delivery`` id stays the same across retries (and redelivery of a
dead letter) so a receiver that got a request but whose answer was lost de-duplicates.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import math
from dataclasses import dataclass
from enum import StrEnum

SIGNATURE_HEADER = "X-Tsunagu-Signature"
EVENT_HEADER = "X-Tsunagu-Event"
DELIVERY_HEADER = "X-Tsunagu-Delivery"


class DeliveryState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    RETRY_WAIT = "retry_wait"
    DELIVERED = "delivered"
    DEAD = "dead"


class Verdict(StrEnum):
    """What one attempt's outcome means (the machine's inputs besides ``send``)."""

    SEND = "send"
    DELIVERED = "delivered"
    REFUSED = "refused"
    RETRY = "retry"
    EXHAUSTED = "exhausted"


S, V = DeliveryState, Verdict

TRANSITIONS: dict[tuple[DeliveryState, Verdict], DeliveryState] = {
    (S.PENDING, V.SEND): S.IN_FLIGHT,
    (S.RETRY_WAIT, V.SEND): S.IN_FLIGHT,
    (S.IN_FLIGHT, V.DELIVERED): S.DELIVERED,
    (S.IN_FLIGHT, V.REFUSED): S.DEAD,
    (S.IN_FLIGHT, V.EXHAUSTED): S.DEAD,
    (S.IN_FLIGHT, V.RETRY): S.RETRY_WAIT,
}

FINAL_STATES = frozenset({S.DELIVERED, S.DEAD})


class DeliveryStateError(RuntimeError):
    """An input the table does not allow in the current state (a bug in the adapter)."""


# -- outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """The receiver answered with ``status`` (and maybe a ``Retry-After`` header)."""

    status: int
    retry_after: str | None = None


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """No answer: a timeout, a refused connection, a TLS error..."""

    reason: str


Outcome = HttpAnswer | TransportFailure

#: 4xx statuses that mean "try again later" rather than "never".
RETRYABLE_4XX = frozenset({408, 429})


def classify(outcome: Outcome) -> Verdict:
    if isinstance(outcome, TransportFailure):
        return Verdict.RETRY
    status = outcome.status
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status >= 500 or status in RETRYABLE_4XX:
        return Verdict.RETRY
    return Verdict.REFUSED


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date);
    ``None`` when absent or unreadable (then our own backoff applies)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


# -- policy -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often to try. The delay before attempt ``n + 1`` is
    ``min(max_delay_s, base_delay_s * 2**(n-1))``, of which the upper half is scaled by
    the jitter (so many receivers failing at once are not retried in lock-step)."""

    max_attempts: int = 8
    max_age_s: float = 24 * 3600.0
    base_delay_s: float = 2.0
    max_delay_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_age_s <= 0 or self.base_delay_s <= 0:
            raise ValueError("max_attempts >= 1, max_age_s > 0 and base_delay_s > 0 needed")
        if self.max_delay_s < self.base_delay_s:
            raise ValueError("max_delay_s must be at least base_delay_s")

    def backoff(self, attempts: int, jitter: float) -> float:
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], not {jitter}")
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(0, attempts - 1))
        return ceiling / 2 + ceiling / 2 * jitter


# -- the machine --------------------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    """One event on its way to one webhook. ``body`` is the exact JSON bytes signed and
    sent; it never changes across attempts."""

    id: str
    webhook: str
    event_type: str
    event_id: str
    body: bytes
    created_at: float
    policy: RetryPolicy
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    next_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def _go(self, verdict: Verdict) -> None:
        target = TRANSITIONS.get((self.state, verdict))
        if target is None:
            raise DeliveryStateError(f"{verdict} is not allowed in state {self.state}")
        self.state = target

    def send(self, now: float) -> None:
        """An attempt starts now (pending, or retry_wait once due)."""
        due = self.next_attempt_at
        if self.state is S.RETRY_WAIT and due is not None and now < due:
            raise DeliveryStateError(f"retry is due at {due}, not yet at {now}")
        self._go(Verdict.SEND)
        self.attempts += 1
        self.next_attempt_at = None

    def result(self, outcome: Outcome, now: float, jitter: float) -> Verdict:
        """Apply the outcome of the attempt in flight; returns the verdict taken."""
        if self.state is not S.IN_FLIGHT:
            raise DeliveryStateError(f"no attempt in flight (state {self.state})")
        verdict = classify(outcome)
        if isinstance(outcome, HttpAnswer):
            self.last_status, self.last_error = outcome.status, None
            if verdict is not Verdict.DELIVERED:
                self.last_error = f"HTTP {outcome.status}"
        else:
            self.last_status, self.last_error = None, outcome.reason[:500]
        if verdict is Verdict.RETRY:
            delay = self.policy.backoff(self.attempts, jitter)
            if isinstance(outcome, HttpAnswer):
                asked = retry_after_s(outcome.retry_after, now)
                if asked is not None:
                    delay = max(delay, asked)
            too_old = now + delay > self.created_at + self.policy.max_age_s
            if self.attempts >= self.policy.max_attempts or too_old:
                verdict = Verdict.EXHAUSTED
                why = "max attempts" if self.attempts >= self.policy.max_attempts else "max age"
                self.last_error = f"{self.last_error} (gave up: {why})"
            else:
                self.next_attempt_at = now + delay
        self._go(verdict)
        if self.done:
            self.finished_at = now
        return verdict

    def delay(self, now: float) -> float:
        """Seconds until the next attempt is due (0 when due, or pending)."""
        if self.next_attempt_at is None:
            return 0.0
        return max(0.0, self.next_attempt_at - now)


# -- signing ------------------------------------------------------------------------------


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Tsunagu-Signature`` value for ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300.0
) -> bool:
    """What a receiver does (docs/API.md has a standalone copy): parse ``t`` and every
    ``v1``, recompute, compare in constant time, refuse timestamps older than
    ``tolerance_s`` (replays) or as far in the future."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    candidates = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not candidates:
        return False
    timestamp = int(stamps[0])
    if not math.isfinite(now) or abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def request_headers(delivery: Delivery, secret: str, now: float) -> dict[str, str]:
    """Headers of one attempt (signed afresh at each attempt: ``t`` is the send time)."""
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: delivery.event_type,
        DELIVERY_HEADER: delivery.id,
        SIGNATURE_HEADER: signature(secret, delivery.body, int(now)),
    }
