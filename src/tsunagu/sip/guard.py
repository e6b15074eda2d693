"""Per-source defence against floods, password guessing and scanners (sans-IO).

A SIP server on the Internet is probed within minutes: scanners (``friendly-scanner``,
SIPVicious) enumerate extensions and then guess passwords, and a misbehaving peer can
flood us with requests. :class:`SourceGuard` is the in-process equivalent of Kamailio's
``pike`` module (request rate per source) plus a fail2ban SIP jail (authentication
failures per source), consulted by the transport before a request reaches the SIP core.

Sans-IO like the rest of ``tsunagu.sip``: the caller passes ``now`` (seconds), the guard
never reads a clock, opens a socket or touches a firewall; it answers with a
:class:`Verdict` and queues typed :class:`SecurityEvent` records for the caller to log
or publish. ``source`` is the peer's IP address as text (no port): every transport and
every port of one host share one budget.

Memory is bounded whatever the traffic (see :class:`SourceGuard`).
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Literal

from tsunagu.settings import BanSettings

__all__ = ["Ban", "SecurityEvent", "SourceGuard", "Verdict"]

logger = logging.getLogger(__name__)

#: Entries inspected for idleness per call, so purging never causes a latency spike.
_PURGE_STEP = 16


class Verdict(enum.Enum):
    """What the transport does with a request."""

    ALLOW = "allow"
    #: The User-Agent names a known scanner: drop without an answer, since any answer
    #: (even 403) tells the scanner that a SIP server lives here.
    DROP_SCANNER = "drop_scanner"
    #: The source is banned: drop without an answer until the ban expires.
    DROP_BANNED = "drop_banned"


@dataclass(frozen=True, slots=True)
class Ban:
    """A source refused from ``since`` until ``until`` (seconds, the caller's time base)."""

    source: str
    since: float
    until: float
    reason: str


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """Something the operator should see; ``detail`` never holds credentials."""

    kind: Literal["banned", "unbanned", "scanner_dropped", "auth_failure"]
    source: str
    at: float
    detail: str


@dataclass(slots=True)
class _Tracked:
    """Counters for one source. The request rate uses two fixed buckets weighted into a
    sliding estimate (as Kamailio pike does with its slots): constant memory per source
    instead of one time stamp per request."""

    window_start: float
    current: int = 0
    previous: int = 0
    last_seen: float = -math.inf
    failures: deque[float] | None = None
    scanner_reported: float = -math.inf


class SourceGuard:
    """Counts requests and authentication failures per source and bans abusers.

    Rules (all from :class:`~tsunagu.settings.BanSettings`):

    - more than ``requests_per_window`` requests within ``request_window_s`` bans the
      source for ``ban_s``; the rate is the sliding-window estimate
      ``previous_bucket × (1 − elapsed fraction) + current_bucket``, which can be off by
      at most one bucket's share at a bucket boundary, never by a factor of two as a
      plain fixed window can;
    - ``auth_failures`` failures within ``auth_failure_window_s`` (an exact sliding
      window: the last ``auth_failures`` time stamps are kept) ban the source;
    - a User-Agent containing one of ``scanner_user_agents`` (case-insensitive) is
      dropped; at most one ``scanner_dropped`` event per source per ``ban_s`` so a
      scan cannot flood the log;
    - sources in ``allow`` are never banned, counted or dropped as scanners (monitoring
      probes commonly run sipsak, which is in the scanner list);
    - with ``enabled: false`` the guard is inert: every request is allowed, nothing is
      counted, no event is produced.

    ``record_auth_success`` deliberately does not forgive earlier failures: if it did,
    an attacker holding one valid account could interleave successful registrations
    with guesses against other accounts and never reach the threshold.

    Memory bound: at most ``max_sources`` tracked sources, each holding at most
    ``auth_failures`` time stamps, plus at most ``max_bans`` bans and ``max_events``
    queued events. Sources idle for longer than every window are forgotten lazily
    (a few per call); beyond ``max_sources`` the least recently seen source is
    forgotten first, and beyond ``max_bans`` the oldest ban is lifted early.
    An attacker rotating through more addresses than that evades per-source counting
    anyway; the bounds only guarantee that such a flood cannot exhaust our memory.
    """

    def __init__(
        self,
        config: BanSettings,
        *,
        max_sources: int = 65_536,
        max_bans: int = 65_536,
        max_events: int = 1_024,
    ) -> None:
        if min(max_sources, max_bans, max_events) < 1:
            raise ValueError("max_sources, max_bans and max_events must be at least 1")
        self.config = config
        self.max_sources = max_sources
        self.max_bans = max_bans
        self._allow = tuple(ipaddress.ip_network(item, strict=False) for item in config.allow)
        self._scanner_markers = tuple(ua.lower() for ua in config.scanner_user_agents if ua)
        self._idle_after = max(2 * config.request_window_s, config.auth_failure_window_s)
        # Least recently seen first; bans in insertion order, which is expiry order
        # because every ban lasts ban_s (manual bans with another length are rare and
        # only make lazy purging a little late, never wrong: expiry is checked on use).
        self._sources: OrderedDict[str, _Tracked] = OrderedDict()
        self._bans: OrderedDict[str, Ban] = OrderedDict()
        self._events: deque[SecurityEvent] = deque(maxlen=max_events)
        self._last_now = -math.inf

    # -- views ----------------------------------------------------------------------

    @property
    def tracked_sources(self) -> int:
        """Sources with live counters (for health views and the memory-bound tests)."""
        return len(self._sources)

    def is_banned(self, source: str, now: float) -> bool:
        self._tick(now)
        return self._active_ban(source, now) is not None

    def bans(self, now: float) -> list[Ban]:
        """Current bans, soonest expiry first."""
        self._tick(now)
        self._expire_bans(now, limit=None)
        return sorted(self._bans.values(), key=lambda ban: ban.until)

    def drain_events(self) -> list[SecurityEvent]:
        """Hand over queued events (oldest first) and forget them."""
        events = list(self._events)
        self._events.clear()
        return events

    def is_allowed(self, source: str) -> bool:
        """True when ``source`` is in the ``allow`` list (never banned)."""
        if not self._allow:
            return False
        try:
            address = ipaddress.ip_address(source.strip("[]"))
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allow)

    # -- inputs ---------------------------------------------------------------------

    def check_request(self, source: str, user_agent: str | None, now: float) -> Verdict:
        """Decide what to do with one request from ``source`` and count it."""
        if not self.config.enabled or self.is_allowed(source):
            return Verdict.ALLOW
        self._tick(now)
        if self._active_ban(source, now) is not None:
            return Verdict.DROP_BANNED
        tracked = self._touch(source, now)
        if self._count_request(tracked, now) > self.config.requests_per_window:
            self._ban(
                source,
                now,
                self.config.ban_s,
                f"flood: more than {self.config.requests_per_window} requests"
                f" in {self.config.request_window_s:g} s",
            )
            return Verdict.DROP_BANNED
        if user_agent and self._is_scanner(user_agent):
            if now - tracked.scanner_reported >= self.config.ban_s:
                tracked.scanner_reported = now
                self._emit("scanner_dropped", source, now, "scanner User-Agent")
            return Verdict.DROP_SCANNER
        return Verdict.ALLOW

    def record_auth_failure(self, source: str, now: float) -> None:
        """Count one failed authentication (a FAILED digest check) from ``source``."""
        if not self.config.enabled:
            return
        self._tick(now)
        self._emit("auth_failure", source, now, "digest authentication failed")
        if self.is_allowed(source) or self._active_ban(source, now) is not None:
            return
        tracked = self._touch(source, now)
        limit = self.config.auth_failures
        if tracked.failures is None:
            tracked.failures = deque(maxlen=limit)
        tracked.failures.append(now)
        window = self.config.auth_failure_window_s
        if len(tracked.failures) == limit and now - tracked.failures[0] <= window:
            tracked.failures.clear()
            self._ban(source, now, self.config.ban_s, f"{limit} auth failures in {window:g} s")

    def record_auth_success(self, source: str, now: float) -> None:
        """Noted but forgives nothing (see the class docstring for why)."""
        if self.config.enabled:
            self._tick(now)

    def ban(
        self, source: str, now: float, *, duration_s: float | None = None, reason: str = "manual"
    ) -> bool:
        """Ban ``source`` by hand (API, operator); False for an allow-listed source."""
        if self.is_allowed(source):
            return False
        self._tick(now)
        self._ban(source, now, self.config.ban_s if duration_s is None else duration_s, reason)
        return True

    def unban(self, source: str, *, now: float | None = None) -> bool:
        """Lift a ban; the event is stamped ``now`` or else the latest time seen."""
        ban = self._bans.pop(source, None)
        tracked = self._sources.get(source)
        if tracked is not None:
            tracked.current = tracked.previous = 0
            tracked.failures = None
        if ban is None:
            return False
        self._emit("unbanned", source, self._last_now if now is None else now, "lifted")
        return True

    # -- internals ------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        self._last_now = max(self._last_now, now)
        self._expire_bans(now, limit=_PURGE_STEP)
        self._forget_idle(now)

    def _is_scanner(self, user_agent: str) -> bool:
        lowered = user_agent.lower()
        return any(marker in lowered for marker in self._scanner_markers)

    def _active_ban(self, source: str, now: float) -> Ban | None:
        ban = self._bans.get(source)
        if ban is not None and ban.until <= now:
            del self._bans[source]
            self._emit("unbanned", source, ban.until, "expired")
            return None
        return ban

    def _expire_bans(self, now: float, limit: int | None) -> None:
        """Lift expired bans: the oldest ``limit`` in order, or all of them (``None``)."""
        if limit is None:
            for source in [s for s, ban in self._bans.items() if ban.until <= now]:
                self._active_ban(source, now)
            return
        for _ in range(limit):
            if not self._bans:
                return
            source, ban = next(iter(self._bans.items()))
            if ban.until > now:
                return
            self._active_ban(source, now)

    def _forget_idle(self, now: float) -> None:
        for _ in range(_PURGE_STEP):
            if not self._sources:
                return
            source, tracked = next(iter(self._sources.items()))
            if now - tracked.last_seen <= self._idle_after:
                return
            del self._sources[source]

    def _touch(self, source: str, now: float) -> _Tracked:
        tracked = self._sources.get(source)
        if tracked is None:
            while len(self._sources) >= self.max_sources:
                self._sources.popitem(last=False)
            tracked = _Tracked(window_start=now)
            self._sources[source] = tracked
        else:
            self._sources.move_to_end(source)
        tracked.last_seen = max(tracked.last_seen, now)
        return tracked

    def _count_request(self, tracked: _Tracked, now: float) -> float:
        """Add one request and return the sliding-window estimate of the rate."""
        window = self.config.request_window_s
        elapsed = now - tracked.window_start
        if elapsed >= 2 * window:
            tracked.previous, tracked.current = 0, 0
            tracked.window_start = now
        elif elapsed >= window:
            tracked.previous, tracked.current = tracked.current, 0
            tracked.window_start += window
        tracked.current += 1
        fraction = min(max((now - tracked.window_start) / window, 0.0), 1.0)
        return tracked.previous * (1.0 - fraction) + tracked.current

    def _ban(self, source: str, now: float, duration_s: float, reason: str) -> None:
        self._bans.pop(source, None)
        while len(self._bans) >= self.max_bans:
            self._bans.popitem(last=False)
        self._bans[source] = Ban(source=source, since=now, until=now + duration_s, reason=reason)
        tracked = self._sources.get(source)
        if tracked is not None:
            tracked.current = tracked.previous = 0
        logger.warning(
            "source banned",
            extra={"source": source, "ban_reason": reason, "ban_s": duration_s},
        )
        self._emit("banned", source, now, reason)

    def _emit(
        self,
        kind: Literal["banned", "unbanned", "scanner_dropped", "auth_failure"],
        source: str,
        at: float,
        detail: str,
    ) -> None:
        self._events.append(SecurityEvent(kind=kind, source=source, at=at, detail=detail))
