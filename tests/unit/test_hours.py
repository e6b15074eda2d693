"""Hours of operation: JP office hours at a weekend, a weekday evening, overrides, zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tsunagu.calendar.hours import (
    HoursConfig,
    HoursConfigError,
    HoursOfOperation,
    OpenInterval,
    always_closed,
    always_open,
    load_hours,
)

TOKYO = ZoneInfo("Asia/Tokyo")

OFFICE: dict[str, Any] = {
    "name": "office",
    "time_zone": "Asia/Tokyo",
    "weekly": {
        "mon": ["09:00-18:00"],
        "tue": ["09:00-18:00"],
        "wed": ["09:00-18:00"],
        "thu": ["09:00-18:00"],
        "fri": ["09:00-18:00"],
        "sat": ["10:00-15:00"],
    },
    "overrides": [
        {"date": "2026-12-24", "intervals": ["09:00-12:00"], "note": "half day"},
        {"from": "2026-12-29", "to": "2027-01-03", "closed": True, "note": "年末年始"},
        {"date": "2026-02-01", "intervals": ["10:00-12:00"], "note": "open on a Sunday"},
    ],
}


def jst(year: int, month: int, day: int, *clock: int) -> datetime:
    """A Tokyo wall-clock instant: ``jst(2026, 1, 13, 10, 30)``."""
    hour, minute, second = (*clock, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=TOKYO)


@pytest.fixture
def office() -> HoursOfOperation:
    return load_hours(OFFICE)


def test_weekday_daytime_is_open(office: HoursOfOperation) -> None:
    assert office.is_open(jst(2026, 1, 13, 10, 0))  # Tuesday


def test_weekday_evening_is_closed(office: HoursOfOperation) -> None:
    assert not office.is_open(jst(2026, 1, 13, 19, 30))


def test_closing_time_is_exclusive(office: HoursOfOperation) -> None:
    assert office.is_open(jst(2026, 1, 13, 17, 59, 59))
    assert not office.is_open(jst(2026, 1, 13, 18, 0))
    assert office.is_open(jst(2026, 1, 13, 9, 0))
    assert not office.is_open(jst(2026, 1, 13, 8, 59, 59))


def test_sunday_is_closed_and_saturday_has_its_own_hours(office: HoursOfOperation) -> None:
    assert not office.is_open(jst(2026, 1, 18, 11, 0))  # Sunday
    assert office.is_open(jst(2026, 1, 17, 11, 0))  # Saturday 10-15
    assert not office.is_open(jst(2026, 1, 17, 16, 0))


def test_instant_in_another_zone_is_judged_in_the_hours_zone(office: HoursOfOperation) -> None:
    # Friday 16:00 UTC looks like office hours, but it is Saturday 01:00 in Tokyo.
    friday_utc = datetime(2026, 1, 16, 16, 0, tzinfo=UTC)
    assert not office.is_open(friday_utc)
    # Monday 00:30 UTC is Monday 09:30 in Tokyo.
    assert office.is_open(datetime(2026, 1, 19, 0, 30, tzinfo=UTC))


def test_override_closes_a_whole_range(office: HoursOfOperation) -> None:
    assert not office.is_open(jst(2026, 12, 29, 10, 0))  # Tuesday, normally open
    assert not office.is_open(jst(2027, 1, 1, 10, 0))
    assert not office.is_open(jst(2027, 1, 3, 10, 0))
    assert office.is_open(jst(2027, 1, 4, 10, 0))  # Monday after


def test_override_with_its_own_intervals(office: HoursOfOperation) -> None:
    assert office.is_open(jst(2026, 12, 24, 11, 0))
    assert not office.is_open(jst(2026, 12, 24, 13, 0))  # normally open until 18:00
    assert office.is_open(jst(2026, 2, 1, 11, 0))  # Sunday opened by override


def test_interval_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    night = load_hours(
        {
            "name": "night",
            "weekly": {"fri": ["22:00-06:00"]},
            "overrides": [{"date": "2026-01-23", "closed": True}],
        }
    )
    assert night.is_open(jst(2026, 1, 16, 23, 0))  # Friday
    assert night.is_open(jst(2026, 1, 17, 3, 0))  # Saturday, tail of Friday's interval
    assert not night.is_open(jst(2026, 1, 17, 6, 0))
    assert not night.is_open(jst(2026, 1, 16, 3, 0))  # Friday early: Thursday has nothing
    # Friday 2026-01-23 closed by override: its Saturday tail goes too.
    assert not night.is_open(jst(2026, 1, 24, 3, 0))


def test_naive_datetime_is_refused(office: HoursOfOperation) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        office.is_open(datetime(2026, 1, 13, 10, 0))


def test_daylight_saving_zone_uses_local_wall_clock() -> None:
    berlin = load_hours(
        {"name": "berlin", "time_zone": "Europe/Berlin", "weekly": {"mon": ["09:00-17:00"]}}
    )
    # 07:30 UTC is 08:30 CET before the March change and 09:30 CEST after it.
    assert not berlin.is_open(datetime(2026, 3, 23, 7, 30, tzinfo=UTC))
    assert berlin.is_open(datetime(2026, 3, 30, 7, 30, tzinfo=UTC))


def test_presets() -> None:
    now = jst(2026, 1, 1, 3, 0)
    assert always_open().is_open(now)
    assert not always_closed().is_open(now)
    assert always_open().next_change(now) is None
    assert always_closed().next_change(now) is None


def test_next_change_while_open_and_closed(office: HoursOfOperation) -> None:
    assert office.next_change(jst(2026, 1, 13, 10, 0)) == jst(2026, 1, 13, 18, 0)
    # Friday evening -> Saturday 10:00; Saturday after 15:00 -> Monday 09:00.
    assert office.next_change(jst(2026, 1, 16, 19, 0)) == jst(2026, 1, 17, 10, 0)
    assert office.next_change(jst(2026, 1, 17, 15, 0)) == jst(2026, 1, 19, 9, 0)
    # Across the year-end closure.
    assert office.next_change(jst(2026, 12, 28, 18, 30)) == jst(2027, 1, 4, 9, 0)


def test_next_change_merges_intervals_that_touch() -> None:
    hours = load_hours({"name": "h", "weekly": {"mon": ["00:00-24:00"], "tue": ["00:00-12:00"]}})
    assert hours.next_change(jst(2026, 1, 12, 10, 0)) == jst(2026, 1, 13, 12, 0)


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"weekly": {"mon": ["9-18"]}}, "weekly", "not an interval"),
        ({"weekly": {"mon": ["25:00-26:00"]}}, "weekly", "impossible time"),
        ({"weekly": {"mon": ["09:00-09:00"]}}, "weekly", "is empty"),
        ({"weekly": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "weekly", "overlap"),
        ({"weekly": {"monday": ["09:00-12:00"]}}, "weekly", "unknown weekday"),
        ({"time_zone": "Asia/Tokio"}, "time_zone", "unknown time zone"),
        ({"overrides": [{"date": "2026-01-01"}]}, "overrides.0", "closed: true"),
        (
            {"overrides": [{"date": "2026-01-01", "closed": True, "intervals": ["09:00-10:00"]}]},
            "overrides.0",
            "contradict",
        ),
        (
            {"overrides": [{"from": "2026-01-05", "to": "2026-01-01", "closed": True}]},
            "overrides.0",
            "swap",
        ),
        (
            {"overrides": [{"from": "2026-01-05", "closed": True}]},
            "overrides.0",
            "both 'from' and 'to'",
        ),
        (
            {
                "overrides": [
                    {"from": "2026-01-01", "to": "2026-01-05", "closed": True},
                    {"date": "2026-01-03", "closed": True},
                ]
            },
            "(top)",
            "both cover 2026-01-03",
        ),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_bad_config_names_the_field(change: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(HoursConfigError) as caught:
        load_hours({"name": "bad", **change})
    paths = [p for p, _ in caught.value.problems]
    assert any(p.startswith(path) for p in paths), caught.value.problems
    assert message in str(caught.value)


def test_interval_text_round_trips() -> None:
    assert str(OpenInterval.parse("9:05-24:00")) == "09:05-24:00"
    assert OpenInterval.parse("22:00-06:00").crosses_midnight


def test_config_model_builds_the_same_object() -> None:
    assert HoursConfig.model_validate(OFFICE).build() == load_hours(OFFICE)


_office = load_hours(OFFICE)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1)),
)
def test_next_change_agrees_with_is_open(naive: datetime) -> None:
    """Just before the reported change the state is the current one; at it, the opposite."""
    at = naive.replace(tzinfo=TOKYO)
    change = _office.next_change(at)
    assert change is not None  # the office schedule repeats weekly
    assert change > at
    state = _office.is_open(at)
    assert _office.is_open(change - timedelta(microseconds=1)) == state
    assert _office.is_open(change) != state


def test_docs_hours_example_loads() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "FLOWS.md").read_text(encoding="utf-8")
    snippet = next(p.split("```", 1)[0] for p in docs.split("```yaml\n") if p.startswith("hours:"))
    (config,) = yaml.safe_load(snippet)["hours"]
    hours = load_hours(config)
    assert hours.is_open(jst(2026, 1, 17, 5, 0))  # Saturday 05:00, Friday's night interval
    assert not hours.is_open(jst(2026, 1, 14, 12, 30))  # Wednesday lunch break
    assert not hours.is_open(jst(2026, 12, 30, 10, 0))
