"""The webhook delivery machine (every transition), the outcome classes, Retry-After,
and the signature (checked against HMAC-SHA256 computed here, independently)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsunagu.events.webhook_delivery import (
    FINAL_STATES,
    TRANSITIONS,
    Delivery,
    DeliveryState,
    DeliveryStateError,
    HttpAnswer,
    RetryPolicy,
    TransportFailure,
    Verdict,
    classify,
    request_headers,
    retry_after_s,
    signature,
    verify_signature,
)

T0 = 1_765_000_000.0
POLICY = RetryPolicy(max_attempts=4, max_age_s=600.0, base_delay_s=2.0, max_delay_s=60.0)


def delivery(policy: RetryPolicy = POLICY) -> Delivery:
    return Delivery(
        id="d-1",
        webhook="crm",
        event_type="call.offered",
        event_id="e-1",
        body=b'{"type":"call.offered"}',
        created_at=T0,
        policy=policy,
    )


def state(d: Delivery) -> DeliveryState:
    """The state now (a call, so mypy does not keep a narrowed type across transitions)."""
    return d.state


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (HttpAnswer(200), Verdict.DELIVERED),
        (HttpAnswer(204), Verdict.DELIVERED),
        (HttpAnswer(299), Verdict.DELIVERED),
        (HttpAnswer(301), Verdict.REFUSED),  # redirects are not followed
        (HttpAnswer(400), Verdict.REFUSED),
        (HttpAnswer(401), Verdict.REFUSED),
        (HttpAnswer(404), Verdict.REFUSED),
        (HttpAnswer(410), Verdict.REFUSED),
        (HttpAnswer(408), Verdict.RETRY),
        (HttpAnswer(429), Verdict.RETRY),
        (HttpAnswer(500), Verdict.RETRY),
        (HttpAnswer(503), Verdict.RETRY),
        (TransportFailure("timeout after 5 s"), Verdict.RETRY),
        (TransportFailure("ConnectError: refused"), Verdict.RETRY),
    ],
)
def test_classify(outcome: HttpAnswer | TransportFailure, verdict: Verdict) -> None:
    assert classify(outcome) is verdict


def test_pending_to_in_flight_to_delivered() -> None:
    d = delivery()
    assert state(d) is DeliveryState.PENDING
    d.send(T0)
    assert state(d) is DeliveryState.IN_FLIGHT and d.attempts == 1
    assert d.result(HttpAnswer(200), T0 + 0.1, 0.5) is Verdict.DELIVERED
    assert state(d) is DeliveryState.DELIVERED and d.done and d.finished_at == T0 + 0.1
    assert d.last_status == 200 and d.last_error is None


def test_gone_is_dead_at_once() -> None:
    d = delivery()
    d.send(T0)
    assert d.result(HttpAnswer(410), T0, 0.0) is Verdict.REFUSED
    assert state(d) is DeliveryState.DEAD and d.attempts == 1
    assert d.last_status == 410 and d.last_error == "HTTP 410"


def test_5xx_waits_with_exponential_jittered_backoff_then_retries() -> None:
    d = delivery()
    d.send(T0)
    assert d.result(HttpAnswer(500), T0, 0.0) is Verdict.RETRY
    assert state(d) is DeliveryState.RETRY_WAIT
    assert d.next_attempt_at == T0 + 1.0  # ceiling 2 s, no jitter: the lower half
    assert d.delay(T0 + 0.25) == 0.75
    with pytest.raises(DeliveryStateError, match="not yet"):
        d.send(T0 + 0.5)
    d.send(T0 + 1.0)
    assert state(d) is DeliveryState.IN_FLIGHT and d.attempts == 2
    d.result(TransportFailure("timeout after 5 s"), T0 + 1.0, 1.0)
    assert d.next_attempt_at == T0 + 1.0 + 4.0  # ceiling 4 s, full jitter
    assert d.last_status is None and d.last_error == "timeout after 5 s"
    d.send(T0 + 5.0)
    d.result(HttpAnswer(200), T0 + 5.0, 0.0)
    assert state(d) is DeliveryState.DELIVERED and d.attempts == 3


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_attempts=50, max_age_s=1e9, base_delay_s=2.0, max_delay_s=60.0)
    assert policy.backoff(1, 0.0) == 1.0
    assert policy.backoff(3, 1.0) == 8.0
    assert policy.backoff(30, 1.0) == 60.0
    assert policy.backoff(30, 0.0) == 30.0
    with pytest.raises(ValueError, match="jitter"):
        policy.backoff(1, 1.5)


def test_max_attempts_makes_it_dead() -> None:
    d = delivery()
    now = T0
    for _ in range(3):
        d.send(now)
        assert d.result(HttpAnswer(503), now, 0.0) is Verdict.RETRY
        now = d.next_attempt_at or now
    d.send(now)
    assert d.result(HttpAnswer(503), now, 0.0) is Verdict.EXHAUSTED
    assert state(d) is DeliveryState.DEAD and d.attempts == 4
    assert d.last_error == "HTTP 503 (gave up: max attempts)"


def test_max_age_makes_it_dead_before_attempts_run_out() -> None:
    d = delivery(RetryPolicy(max_attempts=100, max_age_s=10.0, base_delay_s=4.0))
    d.send(T0)
    d.result(HttpAnswer(500), T0, 1.0)  # next at T0 + 4
    d.send(T0 + 4)
    d.result(HttpAnswer(500), T0 + 4, 1.0)  # next at T0 + 12 > T0 + 10: too old
    assert state(d) is DeliveryState.DEAD
    assert d.last_error == "HTTP 500 (gave up: max age)"


def test_retry_after_seconds_is_honoured_as_a_minimum() -> None:
    d = delivery()
    d.send(T0)
    d.result(HttpAnswer(429, retry_after="30"), T0, 0.0)
    assert d.next_attempt_at == T0 + 30
    # A Retry-After shorter than our backoff does not shorten it.
    d.send(T0 + 30)
    d.result(HttpAnswer(503, retry_after="0"), T0 + 30, 1.0)
    assert d.next_attempt_at == T0 + 30 + 4.0


def test_retry_after_http_date() -> None:
    when = datetime.fromtimestamp(T0 + 120, UTC)
    header = format_datetime(when, usegmt=True)
    assert retry_after_s(header, T0) == 120.0
    d = delivery()
    d.send(T0)
    d.result(HttpAnswer(503, retry_after=header), T0, 0.0)
    assert d.next_attempt_at == T0 + 120


def test_retry_after_beyond_max_age_is_dead() -> None:
    d = delivery()
    d.send(T0)
    assert d.result(HttpAnswer(503, retry_after="3600"), T0, 0.0) is Verdict.EXHAUSTED
    assert state(d) is DeliveryState.DEAD


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "Mon, 99 Foo 2025"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert retry_after_s(value, T0) is None


def test_inputs_outside_the_table_are_loud() -> None:
    d = delivery()
    with pytest.raises(DeliveryStateError, match="no attempt in flight"):
        d.result(HttpAnswer(200), T0, 0.0)
    d.send(T0)
    with pytest.raises(DeliveryStateError, match="send is not allowed in state in_flight"):
        d.send(T0)
    d.result(HttpAnswer(200), T0, 0.0)
    with pytest.raises(DeliveryStateError, match="delivered"):
        d.send(T0)


def test_the_table_has_no_way_out_of_final_states() -> None:
    assert not [key for key in TRANSITIONS if key[0] in FINAL_STATES]


@given(
    st.lists(
        st.one_of(
            st.builds(HttpAnswer, st.integers(100, 599)),
            st.builds(TransportFailure, st.text(max_size=20)),
        ),
        min_size=1,
        max_size=20,
    ),
    st.floats(0, 1),
)
def test_any_outcome_sequence_ends_within_the_policy(
    outcomes: list[HttpAnswer | TransportFailure], jitter: float
) -> None:
    d = delivery()
    now = T0
    for outcome in outcomes:
        d.send(now)
        d.result(outcome, now, jitter)
        if d.done:
            break
        assert d.next_attempt_at is not None and d.next_attempt_at > now
        now = d.next_attempt_at
    assert d.attempts <= POLICY.max_attempts
    assert now <= T0 + POLICY.max_age_s
    if d.attempts == POLICY.max_attempts or any(
        classify(o) is not Verdict.RETRY for o in outcomes[: d.attempts]
    ):
        assert d.done


# -- signing ------------------------------------------------------------------------------


def test_signature_is_stripe_style_hmac_sha256_of_timestamp_dot_body() -> None:
    secret, body, t = "whsec-test-0123", b'{"type":"call.offered","n":1}', 1765000000
    expected = hmac.new(
        b"whsec-test-0123", b'1765000000.{"type":"call.offered","n":1}', hashlib.sha256
    ).hexdigest()
    assert signature(secret, body, t) == f"t=1765000000,v1={expected}"


def test_request_headers_sign_at_send_time_and_keep_the_delivery_id() -> None:
    d = delivery()
    first = request_headers(d, "s3cret-value", T0)
    later = request_headers(d, "s3cret-value", T0 + 60)
    assert first["X-Tsunagu-Delivery"] == later["X-Tsunagu-Delivery"] == "d-1"
    assert first["X-Tsunagu-Event"] == "call.offered"
    assert first["Content-Type"] == "application/json"
    assert first["X-Tsunagu-Signature"].startswith(f"t={int(T0)},v1=")
    assert later["X-Tsunagu-Signature"].startswith(f"t={int(T0) + 60},v1=")


def test_verify_accepts_a_fresh_signature_and_refuses_replays_and_tampering() -> None:
    body = b'{"a":1}'
    header = signature("k" * 16, body, int(T0))
    assert verify_signature("k" * 16, header, body, T0 + 10)
    assert not verify_signature("k" * 16, header, body, T0 + 301)  # replayed later
    assert not verify_signature("k" * 16, header, b'{"a":2}', T0)  # body changed
    assert not verify_signature("x" * 16, header, body, T0)  # wrong secret
    assert not verify_signature("k" * 16, "v1=abc", body, T0)  # no timestamp
    # Several v1 values (a secret being rotated): any one may match.
    assert verify_signature("k" * 16, header + ",v1=00", body, T0)
