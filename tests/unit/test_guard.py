"""Per-source defence: scanners, floods, password guessing, bounds."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tsunagu.settings import BanSettings
from tsunagu.sip.guard import SecurityEvent, SourceGuard, Verdict

ATTACKER = "203.0.113.7"
PHONE = "198.51.100.20"


def settings(**overrides: Any) -> BanSettings:
    base: dict[str, Any] = {
        "auth_failures": 3,
        "auth_failure_window_s": 60.0,
        "requests_per_window": 5,
        "request_window_s": 2.0,
        "ban_s": 100.0,
    }
    base.update(overrides)
    return BanSettings(**base)


def kinds(events: list[SecurityEvent]) -> list[str]:
    return [event.kind for event in events]


@pytest.mark.parametrize(
    "user_agent", ["friendly-scanner", "SIPVicious 0.3", "x FRIENDLY-SCANNER y", "sipcli/v1.8"]
)
def test_scanner_user_agents_are_dropped(user_agent: str) -> None:
    guard = SourceGuard(settings())
    assert guard.check_request(ATTACKER, user_agent, 0.0) is Verdict.DROP_SCANNER
    assert guard.check_request(PHONE, "Linphone/5.2 (belle-sip)", 0.0) is Verdict.ALLOW
    assert guard.check_request(PHONE, None, 0.0) is Verdict.ALLOW
    assert guard.check_request(PHONE, "", 0.0) is Verdict.ALLOW


def test_scanner_events_are_rate_limited_per_source() -> None:
    guard = SourceGuard(settings(requests_per_window=1000))
    for t in range(10):
        assert guard.check_request(ATTACKER, "friendly-scanner", float(t)) is Verdict.DROP_SCANNER
    events = guard.drain_events()
    assert kinds(events) == ["scanner_dropped"]
    assert (events[0].source, events[0].at) == (ATTACKER, 0.0)
    guard.check_request(ATTACKER, "friendly-scanner", 100.0)  # one ban_s later
    assert kinds(guard.drain_events()) == ["scanner_dropped"]
    assert guard.drain_events() == []


def test_flood_bans_then_expires(caplog: pytest.LogCaptureFixture) -> None:
    guard = SourceGuard(settings())
    for _ in range(5):
        assert guard.check_request(ATTACKER, None, 10.0) is Verdict.ALLOW
    with caplog.at_level(logging.WARNING, logger="tsunagu.sip.guard"):
        assert guard.check_request(ATTACKER, None, 10.5) is Verdict.DROP_BANNED
    assert any(r.getMessage() == "source banned" for r in caplog.records)
    assert guard.is_banned(ATTACKER, 50.0)
    assert guard.check_request(ATTACKER, None, 50.0) is Verdict.DROP_BANNED
    assert guard.check_request(PHONE, None, 50.0) is Verdict.ALLOW  # others unaffected
    [ban] = guard.bans(50.0)
    assert (ban.source, ban.since, ban.until) == (ATTACKER, 10.5, 110.5)
    assert ban.reason.startswith("flood")
    # Expiry uses the passed-in time only.
    assert guard.is_banned(ATTACKER, 110.0)
    assert not guard.is_banned(ATTACKER, 110.5)
    assert guard.check_request(ATTACKER, None, 111.0) is Verdict.ALLOW
    assert guard.bans(111.0) == []
    events = guard.drain_events()
    assert kinds(events) == ["banned", "unbanned"]
    assert events[1].at == 110.5
    assert events[1].detail == "expired"


def test_steady_rate_below_limit_is_never_banned() -> None:
    guard = SourceGuard(settings())  # 5 per 2 s
    t = 0.0
    while t < 600.0:
        assert guard.check_request(PHONE, None, t) is Verdict.ALLOW, t
        t += 0.5  # 4 per 2 s
    assert guard.bans(t) == []


def test_flood_spread_across_a_bucket_boundary_is_caught() -> None:
    guard = SourceGuard(settings())  # 5 per 2 s
    assert guard.check_request(ATTACKER, None, 0.0) is Verdict.ALLOW  # bucket [0, 2)
    for _ in range(3):
        assert guard.check_request(ATTACKER, None, 1.9) is Verdict.ALLOW
    # 3 requests at 1.9 and 3 at 2.1 are 6 within 0.2 s; a plain fixed window would
    # see 4 in [0, 2) then 3 in [2, 4) and let them through.
    verdicts = [guard.check_request(ATTACKER, None, 2.1) for _ in range(3)]
    assert Verdict.DROP_BANNED in verdicts


def test_auth_failure_threshold_bans() -> None:
    guard = SourceGuard(settings())
    guard.record_auth_failure(ATTACKER, 1.0)
    guard.record_auth_failure(ATTACKER, 2.0)
    assert not guard.is_banned(ATTACKER, 2.0)
    assert guard.check_request(ATTACKER, None, 2.0) is Verdict.ALLOW
    guard.record_auth_failure(ATTACKER, 3.0)
    assert guard.is_banned(ATTACKER, 3.0)
    assert guard.check_request(ATTACKER, None, 4.0) is Verdict.DROP_BANNED
    assert kinds(guard.drain_events()) == ["auth_failure"] * 3 + ["banned"]
    [ban] = guard.bans(4.0)
    assert "auth failures" in ban.reason


def test_auth_failure_window_slides() -> None:
    guard = SourceGuard(settings())  # 3 within 60 s
    guard.record_auth_failure(ATTACKER, 0.0)
    guard.record_auth_failure(ATTACKER, 30.0)
    guard.record_auth_failure(ATTACKER, 61.0)  # the one at 0 is forgotten
    assert not guard.is_banned(ATTACKER, 61.0)
    guard.record_auth_failure(ATTACKER, 80.0)  # 30, 61, 80 are within 60 s
    assert guard.is_banned(ATTACKER, 80.0)


def test_auth_success_does_not_forgive_failures() -> None:
    guard = SourceGuard(settings())
    guard.record_auth_failure(ATTACKER, 1.0)
    guard.record_auth_failure(ATTACKER, 2.0)
    guard.record_auth_success(ATTACKER, 2.5)
    guard.record_auth_failure(ATTACKER, 3.0)
    assert guard.is_banned(ATTACKER, 3.0)


def test_allow_list_is_never_banned_nor_dropped() -> None:
    guard = SourceGuard(settings(allow=["10.0.0.0/8", "2001:db8::1"]))
    for source in ["10.1.2.3", "::ffff:10.9.9.9", "2001:db8::1", "[2001:db8::1]"]:
        for _ in range(50):
            assert guard.check_request(source, "sipsak 0.9.8", 0.0) is Verdict.ALLOW
        for t in range(10):
            guard.record_auth_failure(source, float(t))
        assert not guard.is_banned(source, 10.0)
        assert not guard.ban(source, 10.0)
    assert guard.tracked_sources == 0
    assert guard.bans(10.0) == []
    # Not in the list: the same traffic is banned.
    for _ in range(6):
        verdict = guard.check_request("11.0.0.1", None, 0.0)
    assert verdict is Verdict.DROP_BANNED


def test_disabled_guard_is_inert() -> None:
    guard = SourceGuard(settings(enabled=False))
    for _ in range(1000):
        assert guard.check_request(ATTACKER, "friendly-scanner", 0.0) is Verdict.ALLOW
    for t in range(100):
        guard.record_auth_failure(ATTACKER, float(t))
    assert not guard.is_banned(ATTACKER, 100.0)
    assert guard.drain_events() == []
    assert guard.tracked_sources == 0


def test_manual_ban_and_unban() -> None:
    guard = SourceGuard(settings())
    assert guard.ban(ATTACKER, 5.0, duration_s=10.0, reason="operator")
    assert guard.check_request(ATTACKER, None, 6.0) is Verdict.DROP_BANNED
    assert guard.unban(ATTACKER, now=7.0)
    assert not guard.unban(ATTACKER)
    assert guard.check_request(ATTACKER, None, 7.0) is Verdict.ALLOW
    events = guard.drain_events()
    assert [(e.kind, e.at, e.detail) for e in events] == [
        ("banned", 5.0, "operator"),
        ("unbanned", 7.0, "lifted"),
    ]


def test_unban_forgets_counters_so_the_source_is_not_rebanned_at_once() -> None:
    guard = SourceGuard(settings())
    guard.record_auth_failure(PHONE, 1.0)
    guard.record_auth_failure(PHONE, 2.0)
    guard.record_auth_failure(PHONE, 3.0)
    assert guard.unban(PHONE)
    guard.record_auth_failure(PHONE, 4.0)
    assert not guard.is_banned(PHONE, 4.0)
    unbanned = [e for e in guard.drain_events() if e.kind == "unbanned"]
    assert [e.at for e in unbanned] == [3.0]  # unban without now: latest time seen


def test_memory_bound_under_distinct_source_flood(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="tsunagu.sip.guard")  # 100k ban warnings
    guard = SourceGuard(settings(requests_per_window=1), max_sources=1_000, max_bans=500)
    peak_sources = peak_bans = 0
    for i in range(100_000):
        source = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        guard.check_request(source, None, 0.0)
        guard.check_request(source, None, 0.0)  # second request: over the limit, banned
        guard.record_auth_failure(source, 0.0)
        peak_sources = max(peak_sources, guard.tracked_sources)
        peak_bans = max(peak_bans, len(guard.bans(0.0)) if i % 997 == 0 else 0)
    assert peak_sources <= 1_000
    assert len(guard.bans(0.0)) == 500
    assert peak_bans <= 500
    assert len(guard.drain_events()) <= 1_024


def test_idle_sources_are_forgotten_lazily() -> None:
    guard = SourceGuard(settings())  # idle after max(2 * 2 s, 60 s)
    for i in range(100):
        guard.check_request(f"192.0.2.{i}", None, 0.0)
    assert guard.tracked_sources == 100
    for step in range(10):
        guard.check_request(PHONE, None, 61.0 + step)
    assert guard.tracked_sources == 1
    guard.check_request(PHONE, None, 62.0)
    assert guard.tracked_sources == 1


def test_events_queue_is_bounded_and_drained() -> None:
    guard = SourceGuard(settings(auth_failures=10_000), max_events=10)
    for t in range(25):
        guard.record_auth_failure(ATTACKER, float(t))
    events = guard.drain_events()
    assert len(events) == 10
    assert [e.at for e in events] == [float(t) for t in range(15, 25)]  # newest kept
    assert all(e.kind == "auth_failure" and e.source == ATTACKER for e in events)
    assert guard.drain_events() == []


def test_constructor_refuses_zero_bounds() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SourceGuard(settings(), max_sources=0)
