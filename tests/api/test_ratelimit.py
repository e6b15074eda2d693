"""The token bucket, sans-IO: time is passed in."""

from __future__ import annotations

import pytest

from tsunagu.api import RateLimit
from tsunagu.api.ratelimit import RateLimiter, TokenBucket


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(per_second=2.0, burst=3, tokens=3, stamp=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.peek(100.25) == pytest.approx(0.25)
    assert bucket.take(100.5) == 0.0
    # Refill never exceeds the burst, however long the pause.
    assert bucket.take(1_000.0) == 0.0
    assert bucket.tokens == pytest.approx(2.0)


def test_a_clock_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(per_second=1.0, burst=1, tokens=0, stamp=50.0)
    assert bucket.take(10.0) == pytest.approx(1.0)
    assert bucket.take(50.5) == pytest.approx(0.5)
    assert bucket.take(51.0) == 0.0


def test_limiter_keeps_one_bucket_per_key_and_is_bounded() -> None:
    limiter = RateLimiter(RateLimit(per_second=1.0, burst=1), max_buckets=2)
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) == pytest.approx(1.0)
    assert limiter.take("b", 0.0) == 0.0
    assert limiter.blocked_for("a", 0.0) == pytest.approx(1.0)
    assert limiter.blocked_for("never-seen", 0.0) == 0.0
    limiter.take("c", 0.0)  # evicts "a", the least recently used
    assert len(limiter) == 2
    assert limiter.blocked_for("a", 0.0) == 0.0


def test_rate_limit_values_are_checked() -> None:
    with pytest.raises(ValueError, match="per_second"):
        RateLimit(per_second=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        RateLimit(per_second=1, burst=0)
