"""The business calendar (pipelines/lib/business_calendar.py) against the State Council's
published 2025 schedule (国办发明电〔2024〕12号), read by hand: the Spring Festival
holidays 01-28..02-04 with the make-up working days Sun 01-26 and Sat 02-08; National Day
and Mid-Autumn 10-01..10-08 with Sun 09-28 and Sat 10-11 worked."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from pipelines.lib.business_calendar import (
    business_days,
    calendar_years,
    last_confirmed_year,
    load_business_days,
)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def test_2025_spring_festival_and_national_day() -> None:
    kinds = {day.calendar_date: day for day in business_days([2025])}
    assert len(kinds) == 365
    for holiday in _days(date(2025, 1, 28), date(2025, 2, 4)) + _days(
        date(2025, 10, 1), date(2025, 10, 8)
    ):
        assert not kinds[holiday].is_working_day, holiday
        # the Saturdays and Sundays inside the period are weekend days the notice leaves
        # as they are; every weekday of it is a holiday (statutory or given in exchange)
        if holiday.isoweekday() <= 5:
            assert kinds[holiday].day_kind == "holiday", holiday
            assert kinds[holiday].holiday_name_zh
    for makeup in (date(2025, 1, 26), date(2025, 2, 8), date(2025, 9, 28), date(2025, 10, 11)):
        assert kinds[makeup].day_kind == "makeup_workday", makeup
        assert kinds[makeup].is_working_day and kinds[makeup].is_weekend
    assert kinds[date(2025, 1, 27)].day_kind == "workday"  # Monday before the holidays
    assert kinds[date(2025, 2, 9)].day_kind == "weekend"  # an ordinary Sunday
    # 2025: 261 weekdays - 18 weekdays off (New Year 1, Spring Festival 6, Qingming 1,
    # Labour Day 3, Dragon Boat 1, National Day 6) + 5 make-up days (01-26, 02-08, 04-27,
    # 09-28, 10-11) = 248 working days
    assert sum(day.is_working_day for day in kinds.values()) == 248
    assert all(day.is_calendar_confirmed for day in kinds.values())


def test_a_year_without_a_published_schedule_is_flagged() -> None:
    year = last_confirmed_year() + 1
    days = list(business_days([year]))
    assert not any(day.is_calendar_confirmed for day in days)
    assert not any(day.day_kind == "makeup_workday" for day in days)
    assert any(day.day_kind == "holiday" for day in days)  # rule-based estimate


def test_years_and_load() -> None:
    assert calendar_years(date(2025, 12, 30), date(2026, 3, 1), date(2026, 2, 28)) == range(
        2025, 2028
    )
    assert calendar_years(None, None, date(2026, 10, 31)) == range(2026, 2028)
    with duckdb.connect() as con:
        assert load_business_days(con, range(2025, 2027)) == 730
        rows = con.execute(
            "select day_kind, count(*) from calendar.business_days "
            "where year(calendar_date) = 2025 group by 1 order by 1"
        ).fetchall()
    assert dict(rows) == {"holiday": 19, "makeup_workday": 5, "weekend": 98, "workday": 243}
