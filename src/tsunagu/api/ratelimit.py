"""Token buckets per client, sans-IO: the caller passes the time in.

Why a token bucket: an integration may send a short burst (a CRM syncing after a restart)
but not a sustained flood; the bucket allows ``burst`` requests at once and refills at
``per_second``. When it is empty the client is told how long to wait (``Retry-After``,
RFC 9110 §10.2.3; 429 is RFC 6585 §4).

The table of buckets is bounded (least recently used evicted first): a flood from many
addresses must not grow memory without limit. An evicted bucket comes back full, which only
ever errs on the side of the client.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from tsunagu.api.services import RateLimit

MAX_BUCKETS = 10_000


@dataclass(slots=True)
class TokenBucket:
    per_second: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens at ``now`` (seconds). Returns 0 if allowed, else how many
        seconds until enough tokens will be there (nothing is spent then)."""
        elapsed = max(now - self.stamp, 0.0)  # a clock stepping back refills nothing
        self.tokens = min(self.burst, self.tokens + elapsed * self.per_second)
        self.stamp = max(now, self.stamp)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.per_second

    def peek(self, now: float, cost: float = 1.0) -> float:
        """Like :meth:`take` but spends nothing."""
        tokens = min(self.burst, self.tokens + max(now - self.stamp, 0.0) * self.per_second)
        return 0.0 if tokens >= cost else (cost - tokens) / self.per_second


class RateLimiter:
    """One :class:`TokenBucket` per key (a user name, a client address)."""

    def __init__(self, limit: RateLimit, max_buckets: int = MAX_BUCKETS) -> None:
        self.limit = limit
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.limit.per_second, self.limit.burst, self.limit.burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def take(self, key: str, now: float) -> float:
        """0 if ``key`` may go ahead now (one token spent), else seconds to wait."""
        return self._bucket(key, now).take(now)

    def blocked_for(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token again (0: it has one), spending nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.peek(now)

    def __len__(self) -> int:
        return len(self._buckets)
