"""Holiday calendars: Japanese public holidays from the law, plus custom closures."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tsunagu.calendar.holidays import (
    HolidayCalendar,
    HolidayConfigError,
    load_calendar,
)

JP: dict[str, Any] = {
    "name": "jp",
    "language": "ja",
    "closures": [
        {"from": "12-29", "to": "01-03", "name": "年末年始"},
        {"date": "2026-08-14", "name": "夏季休業"},
    ],
}


@pytest.fixture
def jp() -> HolidayCalendar:
    return load_calendar(JP)


def test_new_years_day(jp: HolidayCalendar) -> None:
    assert jp.is_holiday(date(2026, 1, 1))
    assert jp.name_of(date(2026, 1, 1)) == "元日"  # the public name wins over the closure


def test_coming_of_age_day_2026(jp: HolidayCalendar) -> None:
    # Second Monday of January: 2026-01-12, not the old fixed 15 January.
    assert jp.name_of(date(2026, 1, 12)) == "成人の日"
    assert not jp.is_holiday(date(2026, 1, 15))


def test_substitute_holiday(jp: HolidayCalendar) -> None:
    # 2026-05-03 (憲法記念日) is a Sunday, so the next non-holiday day, 05-06, is 振替休日.
    assert date(2026, 5, 3).weekday() == 6
    assert jp.name_of(date(2026, 5, 6)) == "振替休日"


def test_citizens_holiday_between_two_holidays(jp: HolidayCalendar) -> None:
    assert jp.name_of(date(2026, 9, 22)) == "国民の休日"


def test_regular_weekday_is_not_a_holiday(jp: HolidayCalendar) -> None:
    assert not jp.is_holiday(date(2026, 1, 13))
    assert jp.name_of(date(2026, 1, 13)) is None


def test_yearly_closure_wraps_the_year_end(jp: HolidayCalendar) -> None:
    for day in (date(2026, 12, 29), date(2026, 12, 31), date(2027, 1, 2), date(2027, 1, 3)):
        assert jp.is_holiday(day), day
    assert jp.name_of(date(2026, 12, 30)) == "年末年始"
    assert not jp.is_holiday(date(2026, 12, 28))
    assert not jp.is_holiday(date(2027, 1, 4))


def test_one_off_closure(jp: HolidayCalendar) -> None:
    assert jp.name_of(date(2026, 8, 14)) == "夏季休業"
    assert not jp.is_holiday(date(2027, 8, 14))  # a one-off date does not repeat


def test_instant_is_judged_on_the_local_day(jp: HolidayCalendar) -> None:
    # 23:30 UTC on the 11th is 08:30 on 2026-01-12 (成人の日) in Tokyo.
    assert jp.is_holiday_at(datetime(2026, 1, 11, 23, 30, tzinfo=UTC))
    assert not jp.is_holiday_at(datetime(2026, 1, 11, 14, 30, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        jp.is_holiday_at(datetime(2026, 1, 12, 10, 0))


def test_datetime_is_not_a_day(jp: HolidayCalendar) -> None:
    with pytest.raises(TypeError):
        jp.is_holiday(datetime(2026, 1, 12, 10, 0, tzinfo=UTC))


def test_closures_only() -> None:
    cal = load_calendar(
        {"name": "own", "public_holidays": False, "closures": [{"date": "2026-03-02"}]}
    )
    assert not cal.is_holiday(date(2026, 1, 1))
    assert cal.name_of(date(2026, 3, 2)) == "closure"


def test_other_country_with_subdivision() -> None:
    cal = load_calendar(
        {"name": "ny", "country": "US", "subdivision": "NY", "time_zone": "America/New_York"}
    )
    assert cal.is_holiday(date(2026, 7, 4)) or cal.is_holiday(date(2026, 7, 3))  # observed
    assert not cal.is_holiday(date(2026, 1, 12))


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"country": "XX"}, "country", "unknown country"),
        (
            {"country": "US", "subdivision": "ZZ", "time_zone": "America/New_York"},
            "subdivision",
            "no subdivision",
        ),
        ({"country": "US"}, "(top)", "time_zone is required"),
        ({"time_zone": "Mars/Base"}, "time_zone", "unknown time zone"),
        ({"closures": [{"from": "2026-12-29", "to": "01-03"}]}, "closures.0", "both be full dates"),
        ({"closures": [{"from": "2026-12-29", "to": "2026-12-01"}]}, "closures.0", "swap"),
        ({"closures": [{"date": "02-30"}]}, "closures.0", "not a day of the year"),
        ({"closures": [{"date": "2026-02-30"}]}, "closures.0", "not a calendar date"),
        ({"closures": [{"date": "tomorrow"}]}, "closures.0", "MM-DD"),
        ({"closures": [{"name": "nothing"}]}, "closures.0", "give 'date'"),
    ],
)
def test_bad_config_names_the_field(change: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(HolidayConfigError) as caught:
        load_calendar({"name": "bad", **change})
    assert any(p.startswith(path) for p, _ in caught.value.problems), caught.value.problems
    assert message in str(caught.value)


def test_docs_calendar_example_loads() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "FLOWS.md").read_text(encoding="utf-8")
    snippet = next(
        p.split("```", 1)[0] for p in docs.split("```yaml\n") if p.startswith("calendars:")
    )
    (config,) = yaml.safe_load(snippet)["calendars"]
    cal = load_calendar(config)
    assert cal.name_of(date(2026, 5, 6)) == "振替休日"
    assert cal.name_of(date(2026, 12, 31)) == "年末年始"
    assert cal.name_of(date(2026, 8, 14)) == "夏季休業"
