"""Holiday calendars: public holidays plus the contact center's own closure days.

Why no external calendar feed: the Amazon Connect design in REQUIREMENTS §4 refreshed a
Japanese-holiday feed monthly with a scheduled job and e-mail alerts when it failed — one
more moving part that can silently go stale. The ``holidays`` package computes public
holidays (including 振替休日 substitute holidays and 国民の休日) from the law, offline, for
any year; the operator adds what the law does not know (year-end closure, a summer
break) as custom closures.

A calendar answers for a *local* day. A call at 2026-01-11T23:30Z is on 2026-01-12 in
Tokyo (成人の日), so :meth:`HolidayCalendar.is_holiday_at` converts the instant with the
calendar's time zone first; flows use that form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tsunagu.calendar.config_errors import config_problems

__all__ = [
    "Closure",
    "ClosureConfig",
    "HolidayCalendar",
    "HolidayCalendarConfig",
    "HolidayConfigError",
    "load_calendar",
]

_MONTH_DAY_RE = re.compile(r"^(\d{2})-(\d{2})$")
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Time zone used when a Japanese calendar does not name one.
_DEFAULT_ZONES = {"JP": "Asia/Tokyo"}


class HolidayConfigError(ValueError):
    """A holiday-calendar configuration cannot be used (the operator's fault)."""

    def __init__(self, name: str, problems: list[tuple[str, str]]) -> None:
        self.name = name
        self.problems = problems
        lines = [f"calendar {name!r}: invalid configuration"]
        lines += [f"  {path}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


MonthDay = tuple[int, int]


def _month_day(text: str) -> MonthDay:
    match = _MONTH_DAY_RE.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is neither a date (2026-08-14) nor a yearly day 'MM-DD' (12-29)"
        )
    month, day = int(match.group(1)), int(match.group(2))
    try:
        date(2000, month, day)  # a leap year, so 02-29 is allowed
    except ValueError:
        raise ValueError(f"{text!r} is not a day of the year") from None
    return month, day


@dataclass(frozen=True, slots=True)
class Closure:
    """A custom closure: a one-off date range, or a yearly month-day range.

    A yearly range may wrap the year end: ``12-29`` .. ``01-03`` covers 29 Dec to 3 Jan.
    Both ends are inclusive.
    """

    name: str
    first: date | MonthDay
    last: date | MonthDay

    def covers(self, day: date) -> bool:
        if isinstance(self.first, date) and isinstance(self.last, date):
            return self.first <= day <= self.last
        assert isinstance(self.first, tuple) and isinstance(self.last, tuple)
        md = (day.month, day.day)
        if self.first <= self.last:
            return self.first <= md <= self.last
        return md >= self.first or md <= self.last


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ClosureConfig(_Config):
    """One custom closure: ``date`` for one day, or ``from``/``to`` (inclusive).

    A value written ``YYYY-MM-DD`` is that date only; ``MM-DD`` (quote it in YAML) repeats
    every year.
    """

    day: date | str | None = Field(default=None, alias="date")
    from_: date | str | None = Field(default=None, alias="from")
    to: date | str | None = None
    name: Annotated[str, Field(min_length=1, max_length=100)] = "closure"

    @field_validator("day", "from_", "to", mode="before")
    @classmethod
    def _day_form(cls, value: object) -> object:
        if isinstance(value, str):
            if _ISO_DATE_RE.match(value):
                try:
                    return date.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"{value!r} is not a calendar date") from None
            _month_day(value)
        return value

    @model_validator(mode="after")
    def _shape(self) -> ClosureConfig:
        if self.day is not None and (self.from_ is not None or self.to is not None):
            raise ValueError("give either 'date' or 'from'/'to', not both")
        if self.day is None and (self.from_ is None or self.to is None):
            raise ValueError("give 'date' for one day, or both 'from' and 'to' for a range")
        if self.day is None and isinstance(self.from_, date) != isinstance(self.to, date):
            raise ValueError(
                "'from' and 'to' must both be full dates (2026-12-29) or both yearly 'MM-DD'"
            )
        if isinstance(self.from_, date) and isinstance(self.to, date) and self.to < self.from_:
            raise ValueError(f"'to' ({self.to}) is before 'from' ({self.from_}); swap them")
        return self

    def build(self) -> Closure:
        first = self.day if self.day is not None else self.from_
        last = self.day if self.day is not None else self.to
        assert first is not None and last is not None  # guaranteed by _shape
        return Closure(
            self.name,
            _month_day(first) if isinstance(first, str) else first,
            _month_day(last) if isinstance(last, str) else last,
        )


class HolidayCalendarConfig(_Config):
    """The configuration form of :class:`HolidayCalendar` (one entry under ``calendars:``)."""

    name: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    ]
    country: str = "JP"
    subdivision: str | None = None
    #: Language of holiday names (``ja``, ``en_US``…); the package default when omitted.
    language: str | None = None
    #: Whether the country's public holidays count; ``false`` keeps only ``closures``.
    public_holidays: bool = True
    #: Defaults to Asia/Tokyo for JP; required for any other country.
    time_zone: str | None = None
    closures: list[ClosureConfig] = Field(default_factory=list)

    @field_validator("country")
    @classmethod
    def _country_known(cls, value: str) -> str:
        supported = holidays_pkg.list_supported_countries()
        if value not in supported:
            raise ValueError(f"unknown country {value!r}; use an ISO 3166 code such as 'JP'")
        return value

    @field_validator("subdivision")
    @classmethod
    def _subdivision_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        country = info.data.get("country")
        if value is not None and country is not None:
            _public(country, value, None)
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone_known(cls, value: str | None) -> str | None:
        if value is not None:
            _zone(value)
        return value

    @model_validator(mode="after")
    def _zone_given(self) -> HolidayCalendarConfig:
        if self.time_zone is None and self.country not in _DEFAULT_ZONES:
            raise ValueError(
                f"time_zone is required for country {self.country!r} (e.g. 'Europe/Paris')"
            )
        return self

    @property
    def effective_time_zone(self) -> str:
        return self.time_zone or _DEFAULT_ZONES[self.country]

    def build(self) -> HolidayCalendar:
        return HolidayCalendar(
            name=self.name,
            country=self.country,
            subdivision=self.subdivision,
            language=self.language,
            time_zone=_zone(self.effective_time_zone),
            public_holidays=self.public_holidays,
            closures=tuple(c.build() for c in self.closures),
        )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'Asia/Tokyo'"
        ) from None


def _public(country: str, subdivision: str | None, language: str | None) -> Mapping[date, str]:
    try:
        result: Mapping[date, str] = holidays_pkg.country_holidays(
            country, subdiv=subdivision, language=language
        )
    except NotImplementedError:
        raise ValueError(
            f"country {country!r} has no subdivision {subdivision!r}; "
            "see the holidays package's list for valid codes"
        ) from None
    return result


@dataclass(frozen=True)
class HolidayCalendar:
    """Public holidays of a country (``holidays`` package) plus custom closures."""

    name: str = "jp"
    country: str = "JP"
    subdivision: str | None = None
    language: str | None = None
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Tokyo"))
    public_holidays: bool = True
    closures: tuple[Closure, ...] = ()
    _public: Mapping[date, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The package computes years lazily on first lookup and caches them; one object
        # per calendar keeps that cache for the process lifetime.
        public = (
            _public(self.country, self.subdivision, self.language) if self.public_holidays else {}
        )
        object.__setattr__(self, "_public", public)

    def is_holiday(self, day: date) -> bool:
        """Whether ``day`` (a local date) is a public holiday or a custom closure."""
        return self.name_of(day) is not None

    def name_of(self, day: date) -> str | None:
        """The holiday's name; a public holiday's name wins over a closure covering it."""
        if isinstance(day, datetime):
            raise TypeError("pass a date; use is_holiday_at() for an instant")
        public = self._public.get(day)
        if public is not None:
            return public
        for closure in self.closures:
            if closure.covers(day):
                return closure.name
        return None

    def is_holiday_at(self, at: datetime) -> bool:
        """Whether the local day of the instant ``at`` (aware) is a holiday."""
        return self.is_holiday(self.local_day(at))

    def local_day(self, at: datetime) -> date:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at must be a timezone-aware datetime (the core never guesses a zone)")
        return at.astimezone(self.time_zone).date()


def load_calendar(data: Mapping[str, Any]) -> HolidayCalendar:
    """Validate one ``calendars:`` entry and build it; errors name each field."""
    try:
        return HolidayCalendarConfig.model_validate(data).build()
    except ValidationError as exc:
        raise HolidayConfigError(*config_problems(data, exc)) from None
