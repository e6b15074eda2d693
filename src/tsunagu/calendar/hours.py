"""Hours of operation: when a contact center answers, in its own time zone.

Why a dedicated object rather than a cron-like rule: the after-hours loop in REQUIREMENTS §4
happened because "are we open?" was answered by a PBX timer nobody could read. Here an
hours object is plain data (a weekly schedule plus dated overrides in an IANA time zone),
validated once with messages that name the field, and asked one question with the instant
passed in (``is_open(at)``), so tests can run a year of calendar in microseconds.

Rules (documented for flow authors in docs/FLOWS.md):

* A weekday maps to a list of open intervals ``"HH:MM-HH:MM"``; a missing weekday or an
  empty list means closed all day. ``"00:00-24:00"`` is open all day.
* An interval whose end is earlier than its start crosses midnight: ``"22:00-06:00"`` on
  Friday is open from Friday 22:00 until Saturday 06:00. It belongs to the day it starts
  on, so an override that closes Friday also removes the early-Saturday tail.
* A dated override (one day or an inclusive ``from``/``to`` range) replaces the weekly
  intervals of each day it covers: ``closed: true`` or its own ``intervals``.
* Intervals of one day may not overlap (an overlap is almost always a typo).
* Times are wall-clock times in ``time_zone``; the instant passed in may be in any zone.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tsunagu.calendar.config_errors import config_problems

__all__ = [
    "WEEKDAYS",
    "HoursConfig",
    "HoursConfigError",
    "HoursOfOperation",
    "HoursOverrideConfig",
    "OpenInterval",
    "always_closed",
    "always_open",
    "load_hours",
]

#: Weekday keys in schedule order (``datetime.weekday()`` index).
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_MINUTES_PER_DAY = 24 * 60
_INTERVAL_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
#: Longest dated override range; a longer closure is better written as a weekly schedule.
_MAX_OVERRIDE_DAYS = 366
#: How far ``next_change`` looks before concluding the state never changes.
_NEXT_CHANGE_HORIZON_DAYS = 400


class HoursConfigError(ValueError):
    """An hours-of-operation configuration cannot be used (the operator's fault).

    ``problems`` lists ``(field path, message)`` pairs, e.g. ``("weekly.mon[0]", "...")``.
    """

    def __init__(self, name: str, problems: list[tuple[str, str]]) -> None:
        self.name = name
        self.problems = problems
        lines = [f"hours {name!r}: invalid configuration"]
        lines += [f"  {path}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class OpenInterval:
    """One open interval of a day in minutes after local midnight.

    ``end <= start`` never happens for a same-day interval; an interval with ``end < start``
    crosses midnight and ends on the next day.
    """

    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def span_from(self, day_start: datetime) -> tuple[datetime, datetime]:
        """Local (naive) start and end of this interval on the day beginning ``day_start``."""
        end = self.end + (_MINUTES_PER_DAY if self.crosses_midnight else 0)
        return day_start + timedelta(minutes=self.start), day_start + timedelta(minutes=end)

    def __str__(self) -> str:
        return f"{_fmt_minutes(self.start)}-{_fmt_minutes(self.end)}"

    @classmethod
    def parse(cls, text: str) -> OpenInterval:
        """Parse ``"HH:MM-HH:MM"``; ``24:00`` is accepted as an end only."""
        match = _INTERVAL_RE.match(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not an interval; write it as 'HH:MM-HH:MM', e.g. '09:00-18:00'"
            )
        sh, sm, eh, em = (int(g) for g in match.groups())
        if sm > 59 or em > 59 or sh > 23 or eh > 24 or (eh == 24 and em != 0):
            raise ValueError(
                f"{text!r} has an impossible time; hours are 00-23 (24:00 only as an end)"
            )
        start, end = sh * 60 + sm, eh * 60 + em
        if start == end:
            raise ValueError(f"{text!r} is empty; use '00:00-24:00' for a whole day")
        return cls(start, end)


def _fmt_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_intervals(values: list[str]) -> tuple[OpenInterval, ...]:
    intervals = [OpenInterval.parse(v) for v in values]
    # Same-day overlap check on the part of each interval that lies in this day.
    spans = sorted(
        (iv.start, _MINUTES_PER_DAY if iv.crosses_midnight else iv.end, iv) for iv in intervals
    )
    for (_, a_end, a), (b_start, _, b) in itertools.pairwise(spans):
        if b_start < a_end:
            raise ValueError(f"intervals {a} and {b} overlap; merge them into one interval")
    return tuple(intervals)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HoursOverrideConfig(_Config):
    """A dated exception: one ``date`` or an inclusive ``from``/``to`` range."""

    day: date | None = Field(default=None, alias="date")
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None
    closed: bool = False
    intervals: list[str] = Field(default_factory=list)
    note: str = ""

    @field_validator("intervals")
    @classmethod
    def _intervals_parse(cls, value: list[str]) -> list[str]:
        _parse_intervals(value)
        return value

    @model_validator(mode="after")
    def _shape(self) -> HoursOverrideConfig:
        if self.day is not None and (self.from_ is not None or self.to is not None):
            raise ValueError("give either 'date' or 'from'/'to', not both")
        if self.day is None and (self.from_ is None or self.to is None):
            raise ValueError("give 'date' for one day, or both 'from' and 'to' for a range")
        first, last = self.first_day, self.last_day
        if last < first:
            raise ValueError(f"'to' ({last}) is before 'from' ({first}); swap them")
        if (last - first).days >= _MAX_OVERRIDE_DAYS:
            raise ValueError(f"an override may cover at most {_MAX_OVERRIDE_DAYS} days")
        if self.closed and self.intervals:
            raise ValueError("'closed: true' and 'intervals' contradict; keep one")
        if not self.closed and not self.intervals:
            raise ValueError("say 'closed: true' or give 'intervals' for the day")
        return self

    @property
    def first_day(self) -> date:
        day = self.day if self.day is not None else self.from_
        assert day is not None  # guaranteed by _shape
        return day

    @property
    def last_day(self) -> date:
        day = self.day if self.day is not None else self.to
        assert day is not None  # guaranteed by _shape
        return day


class HoursConfig(_Config):
    """The configuration form of :class:`HoursOfOperation` (one entry under ``hours:``)."""

    name: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    ]
    time_zone: str = "Asia/Tokyo"
    weekly: dict[str, list[str]] = Field(default_factory=dict)
    overrides: list[HoursOverrideConfig] = Field(default_factory=list)

    @field_validator("time_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        _zone(value)
        return value

    @field_validator("weekly")
    @classmethod
    def _weekly_shape(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, intervals in value.items():
            if key not in WEEKDAYS:
                raise ValueError(f"unknown weekday {key!r}; use {', '.join(WEEKDAYS)}")
            try:
                _parse_intervals(intervals)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _overrides_disjoint(self) -> HoursConfig:
        seen: dict[date, int] = {}
        for index, override in enumerate(self.overrides):
            day = override.first_day
            while day <= override.last_day:
                if day in seen:
                    raise ValueError(
                        f"overrides[{seen[day]}] and overrides[{index}] both cover {day}; "
                        "keep one override per day"
                    )
                seen[day] = index
                day += timedelta(days=1)
        return self

    def build(self) -> HoursOfOperation:
        return HoursOfOperation.from_config(self)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'Asia/Tokyo'"
        ) from None


@dataclass(frozen=True)
class HoursOfOperation:
    """When a contact center is open. Immutable; ask it with an aware ``datetime``."""

    name: str
    time_zone: ZoneInfo
    #: Seven entries, Monday first.
    weekly: tuple[tuple[OpenInterval, ...], ...]
    overrides: Mapping[date, tuple[OpenInterval, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.weekly) != len(WEEKDAYS):
            raise ValueError("weekly must have seven entries, Monday first")

    @classmethod
    def from_config(cls, config: HoursConfig) -> HoursOfOperation:
        weekly = tuple(_parse_intervals(config.weekly.get(day, [])) for day in WEEKDAYS)
        overrides: dict[date, tuple[OpenInterval, ...]] = {}
        for override in config.overrides:
            intervals = () if override.closed else _parse_intervals(override.intervals)
            day = override.first_day
            while day <= override.last_day:
                overrides[day] = intervals
                day += timedelta(days=1)
        return cls(config.name, _zone(config.time_zone), weekly, overrides)

    def intervals_on(self, day: date) -> tuple[OpenInterval, ...]:
        """The open intervals that start on ``day`` (override first, then the weekly plan)."""
        found = self.overrides.get(day)
        return found if found is not None else self.weekly[day.weekday()]

    def is_open(self, at: datetime) -> bool:
        """Whether the contact center is open at the instant ``at`` (must be aware)."""
        local = self._local(at)
        today = local.date()
        for day in (today - timedelta(days=1), today):
            for start, end in self._spans(day):
                if start <= local < end:
                    return True
        return False

    def next_change(self, at: datetime) -> datetime | None:
        """The next instant after ``at`` where :meth:`is_open` flips, or ``None`` if it
        does not flip within about a year (``always_open``, ``always_closed``).

        The answer is in this object's time zone. Boundaries that fall into a DST gap are
        reported at the wall-clock time with the pre-transition offset.
        """
        local = self._local(at)
        open_now = self.is_open(at)
        merged_end: datetime | None = None
        for start, end in self._merged_spans(local.date() - timedelta(days=1)):
            if end <= local:
                continue
            if open_now:
                if start <= local:
                    merged_end = end
                    continue
                # The first span after the one we are in: the state flips at merged_end.
                break
            return start.replace(tzinfo=self.time_zone)
        if open_now and merged_end is not None and self._before_horizon(local, merged_end):
            return merged_end.replace(tzinfo=self.time_zone)
        return None

    def _before_horizon(self, local: datetime, end: datetime) -> bool:
        return end < local + timedelta(days=_NEXT_CHANGE_HORIZON_DAYS - 2)

    def _merged_spans(self, first_day: date) -> Iterator[tuple[datetime, datetime]]:
        """Open spans from ``first_day`` on, merged where they touch or overlap."""
        current: tuple[datetime, datetime] | None = None
        for offset in range(_NEXT_CHANGE_HORIZON_DAYS):
            day = first_day + timedelta(days=offset)
            for start, end in sorted(self._spans(day)):
                if current is not None and start <= current[1]:
                    current = (current[0], max(current[1], end))
                    continue
                if current is not None:
                    yield current
                current = (start, end)
        if current is not None:
            yield current

    def _spans(self, day: date) -> list[tuple[datetime, datetime]]:
        day_start = datetime.combine(day, time(0))
        return [iv.span_from(day_start) for iv in self.intervals_on(day)]

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at must be a timezone-aware datetime (the core never guesses a zone)")
        return at.astimezone(self.time_zone).replace(tzinfo=None)


def load_hours(data: Mapping[str, Any]) -> HoursOfOperation:
    """Validate one ``hours:`` entry and build it; :class:`HoursConfigError` names each field."""
    try:
        return HoursConfig.model_validate(data).build()
    except ValidationError as exc:
        raise HoursConfigError(*config_problems(data, exc)) from None


_FULL_DAY = (OpenInterval(0, _MINUTES_PER_DAY),)


def always_open(name: str = "always_open", time_zone: str = "Asia/Tokyo") -> HoursOfOperation:
    """Open every minute of every day (the demo's 24/7 line)."""
    return HoursOfOperation(name, _zone(time_zone), (_FULL_DAY,) * len(WEEKDAYS))


def always_closed(name: str = "always_closed", time_zone: str = "Asia/Tokyo") -> HoursOfOperation:
    """Never open (the demo's after-hours line, and a safe placeholder)."""
    return HoursOfOperation(name, _zone(time_zone), ((),) * len(WEEKDAYS))
