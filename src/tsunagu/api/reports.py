"""Contact-center figures over interactions: pure functions, no database, no clock.

Definitions (docs/API.md repeats them for report readers):

* Only **finished** interactions count (``status`` ended or interrupted); calls still in
  progress have no outcome yet.
* **Outcome** of an interaction, from its disposition:
  ``answered``; ``abandoned`` / ``short_abandoned`` — recomputed here with the report's own
  ``short_abandon_s`` from the caller's wait (``wait_seconds``, else queue or start to
  end), so the threshold can be changed after the fact; everything else (after hours,
  voicemail, callback, failed, interrupted) is ``other``: offered, not answered live,
  not abandoned.
* **Offered** = every counted interaction. Short abandons are excluded from every rate:
  ``base = offered − short_abandoned``.
* **Service level** = answered within ``service_level_s`` of waiting / base.
  **Abandon rate** = abandoned / base. **Reach rate** (応答率) = answered / base.
* **ASA** = mean wait of answered interactions (``wait_seconds``; if the call was never
  queued, start → answer). **AHT** = mean answer → end of answered interactions (talk
  time; after-call work is not recorded in the interaction).
* **Groups**: ``queue`` (interactions that never queued are left out), ``number`` (the
  number dialled; for outbound calls the caller-ID used), ``interval`` (15-minute slots
  of ``started_at`` in UTC — every real time zone offset is a multiple of 15 minutes, so
  the slots are the local ones too), ``agent`` (each interaction counts for every agent
  it was offered, rung or answered by; it is *answered* for the agent who answered it and
  ``other`` for the agents who did not — unless the caller abandoned, which shows for
  all of them), ``none`` (one group, ``all``).

Time per agent state is not computed here: the interaction history has no presence
timeline (docs/API.md, "Reports").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from tsunagu.store import Direction, Disposition, Interaction, Status

GroupBy = Literal["none", "queue", "agent", "number", "interval"]
ALL = "all"


class Outcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    SHORT_ABANDONED = "short_abandoned"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ReportParams:
    service_level_s: float = 20.0
    short_abandon_s: float = 5.0
    interval_minutes: int = 15


def caller_wait(i: Interaction) -> float | None:
    """How long the caller waited for an agent (to the answer, or to hanging up)."""
    if i.wait_seconds is not None:
        return max(i.wait_seconds, 0.0)
    start = i.queued_at or i.started_at
    end = i.answered_at or i.ended_at
    return None if end is None else max((end - start).total_seconds(), 0.0)


def talk_time(i: Interaction) -> float | None:
    if i.answered_at is None or i.ended_at is None:
        return None
    return max((i.ended_at - i.answered_at).total_seconds(), 0.0)


def outcome(i: Interaction, params: ReportParams) -> Outcome | None:
    """The interaction's outcome, or ``None`` if it is not finished (not counted)."""
    if i.status == Status.ACTIVE or i.disposition is None:
        return None
    if i.disposition == Disposition.ANSWERED:
        return Outcome.ANSWERED
    if i.disposition in (Disposition.ABANDONED, Disposition.SHORT_ABANDONED):
        wait = caller_wait(i)
        if wait is None:
            return Outcome(i.disposition.value)
        return Outcome.SHORT_ABANDONED if wait < params.short_abandon_s else Outcome.ABANDONED
    return Outcome.OTHER


def _ratio(part: int, whole: int) -> float | None:
    return None if whole <= 0 else part / whole


def _mean(total: float, count: int) -> float | None:
    return None if count == 0 else total / count


@dataclass(frozen=True, slots=True)
class GroupReport:
    key: str
    offered: int
    answered: int
    answered_within_threshold: int
    abandoned: int
    short_abandoned: int
    other: int
    service_level: float | None
    abandon_rate: float | None
    reach_rate: float | None
    asa_seconds: float | None
    aht_seconds: float | None
    talk_seconds: float


@dataclass(slots=True)
class Tally:
    """Counts for one group; :meth:`add` one interaction at a time."""

    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    other: int = 0
    wait_total: float = 0.0
    wait_count: int = 0
    talk_total: float = 0.0
    talk_count: int = 0

    def add(self, i: Interaction, result: Outcome, params: ReportParams) -> None:
        self.offered += 1
        if result == Outcome.ANSWERED:
            self.answered += 1
            wait = caller_wait(i)
            if wait is not None:
                self.wait_total += wait
                self.wait_count += 1
                if wait <= params.service_level_s:
                    self.answered_within += 1
            talk = talk_time(i)
            if talk is not None:
                self.talk_total += talk
                self.talk_count += 1
        elif result == Outcome.ABANDONED:
            self.abandoned += 1
        elif result == Outcome.SHORT_ABANDONED:
            self.short_abandoned += 1
        else:
            self.other += 1

    def report(self, key: str) -> GroupReport:
        base = self.offered - self.short_abandoned
        return GroupReport(
            key=key,
            offered=self.offered,
            answered=self.answered,
            answered_within_threshold=self.answered_within,
            abandoned=self.abandoned,
            short_abandoned=self.short_abandoned,
            other=self.other,
            service_level=_ratio(self.answered_within, base),
            abandon_rate=_ratio(self.abandoned, base),
            reach_rate=_ratio(self.answered, base),
            asa_seconds=_mean(self.wait_total, self.wait_count),
            aht_seconds=_mean(self.talk_total, self.talk_count),
            talk_seconds=self.talk_total,
        )


def interval_start(at: datetime, minutes: int) -> datetime:
    """The start of the ``minutes``-long slot holding ``at`` (UTC)."""
    utc = at.astimezone(UTC)
    midnight = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    slot = int((utc - midnight).total_seconds() // (minutes * 60))
    return midnight + timedelta(minutes=slot * minutes)


def group_keys(i: Interaction, group_by: GroupBy, params: ReportParams) -> list[str]:
    """The groups ``i`` counts in (none, one, or — by agent — several)."""
    if group_by == "none":
        return [ALL]
    if group_by == "queue":
        return [] if i.queue is None else [i.queue]
    if group_by == "number":
        return [i.caller if i.direction == Direction.OUTBOUND else i.dialled]
    if group_by == "interval":
        return [interval_start(i.started_at, params.interval_minutes).isoformat()]
    seen: list[str] = []
    for agent in (*i.agents_offered, *i.agents_rung, *i.agents_answered):
        if agent not in seen:
            seen.append(agent)
    return seen


@dataclass(frozen=True, slots=True)
class Report:
    group_by: GroupBy
    params: ReportParams
    groups: tuple[GroupReport, ...]
    total: GroupReport


@dataclass(slots=True)
class ReportBuilder:
    """Accumulates a report over interactions fed in any order (one pass, memory bounded
    by the number of groups, so a month of calls can be streamed through it)."""

    group_by: GroupBy
    params: ReportParams = field(default_factory=ReportParams)
    _groups: dict[str, Tally] = field(default_factory=dict)
    _total: Tally = field(default_factory=Tally)

    def add(self, i: Interaction) -> None:
        result = outcome(i, self.params)
        if result is None:
            return
        self._total.add(i, result, self.params)
        for key in group_keys(i, self.group_by, self.params):
            mine = result
            if self.group_by == "agent" and result == Outcome.ANSWERED:
                mine = Outcome.ANSWERED if key in i.agents_answered else Outcome.OTHER
            self._groups.setdefault(key, Tally()).add(i, mine, self.params)

    def add_all(self, interactions: Iterable[Interaction]) -> ReportBuilder:
        for i in interactions:
            self.add(i)
        return self

    def build(self) -> Report:
        return Report(
            group_by=self.group_by,
            params=self.params,
            groups=tuple(self._groups[k].report(k) for k in sorted(self._groups)),
            total=self._total.report(ALL),
        )


def summarize(
    interactions: Iterable[Interaction], group_by: GroupBy, params: ReportParams | None = None
) -> Report:
    """The report of ``interactions`` grouped by ``group_by``."""
    return ReportBuilder(group_by, params or ReportParams()).add_all(interactions).build()
