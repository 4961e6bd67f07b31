"""The business calendar of mainland China: one row per date, working day or not, written
into the warehouse table `calendar.business_days` before each dbt build (the dbt source
`calendar.business_days`, read by the business-hours SLA clocks; docs/warehouse.md, "SLA
clocks").

Public holidays and their make-up working days (调休) come from the maintained `holidays`
library (pinned in requirements.lock), never from a hand-typed list: `date in cn` is a
public holiday (including the weekdays given off in exchange), `cn.is_working_day(date)`
knows the weekend days worked in exchange. The State Council publishes each year's
schedule in November or December; for a year the library has no published schedule for
(its table `ChinaStaticHolidays.special_public_holidays`), the holidays are its rule-based
estimate, without make-up working days: those rows say `is_calendar_confirmed = false`,
and upgrading `holidays` once the schedule is out corrects them on the next run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from importlib.metadata import version
from typing import Any

import holidays
from holidays.countries.china import ChinaStaticHolidays

from pipelines.lib.duck import replace_table

#: Where the pipeline writes the calendar (the dbt source `calendar.business_days`).
SCHEMA = "calendar"
TABLE = "business_days"
#: The warehouse table's columns and types (macro create_calendar_placeholder creates the
#: same, empty, for a bare `dbt build`).
TABLE_COLUMNS: dict[str, str] = {
    "calendar_date": "date",
    "iso_weekday": "integer",
    "is_weekend": "boolean",
    "is_public_holiday": "boolean",
    "is_working_day": "boolean",
    "day_kind": "varchar",
    "holiday_name_zh": "varchar",
    "holiday_name_en": "varchar",
    "is_calendar_confirmed": "boolean",
    "calendar_source": "varchar",
}
#: day_kind values.
WORKDAY, WEEKEND, HOLIDAY, MAKEUP_WORKDAY = "workday", "weekend", "holiday", "makeup_workday"


@dataclass(frozen=True)
class BusinessDay:
    calendar_date: date
    iso_weekday: int
    is_weekend: bool
    is_public_holiday: bool
    is_working_day: bool
    day_kind: str
    holiday_name_zh: str | None
    holiday_name_en: str | None
    is_calendar_confirmed: bool
    calendar_source: str

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in TABLE_COLUMNS)


def last_confirmed_year() -> int:
    """The last year whose official holiday schedule (with its make-up working days) the
    installed `holidays` knows."""
    return max(ChinaStaticHolidays.special_public_holidays)


def business_days(years: Iterable[int]) -> Iterator[BusinessDay]:
    """Every date of `years` (ascending), classified: `holiday` (a public holiday or a day
    off given in exchange, whatever the weekday), `makeup_workday` (a Saturday or Sunday
    worked in exchange), `weekend`, `workday`."""
    wanted = sorted(set(years))
    if not wanted:
        return
    # The make-up day of a holiday early in a year may fall in the previous December, and
    # it is recorded with the following year's schedule: load one year more.
    loaded = range(wanted[0], wanted[-1] + 2)
    zh = holidays.China(years=loaded, language="zh_CN")
    en = holidays.China(years=loaded, language="en_US")
    confirmed_until = last_confirmed_year()
    source = f"holidays {version('holidays')} China"
    for year in wanted:
        day = date(year, 1, 1)
        while day.year == year:
            weekend = day.isoweekday() >= 6
            holiday = day in zh
            working = zh.is_working_day(day)
            if holiday:
                kind = HOLIDAY
            elif weekend:
                kind = MAKEUP_WORKDAY if working else WEEKEND
            else:
                kind = WORKDAY
            yield BusinessDay(
                calendar_date=day,
                iso_weekday=day.isoweekday(),
                is_weekend=weekend,
                is_public_holiday=holiday,
                is_working_day=working,
                day_kind=kind,
                holiday_name_zh=zh.get(day),
                holiday_name_en=en.get(day),
                is_calendar_confirmed=year <= confirmed_until,
                calendar_source=source,
            )
            day += timedelta(days=1)


def calendar_years(first: date | None, last: date | None, as_of: date) -> range:
    """The years the data needs: from the first ticket event's year (else D's) to the year
    after the last of D and the last event, so that a clock still running at the end of
    a year finds the next year's working days."""
    start = min(d.year for d in (first, as_of) if d is not None)
    end = max(d.year for d in (last, as_of) if d is not None) + 1
    return range(start, end + 1)


def data_years(con: Any, as_of: date) -> range:
    """calendar_years over the ticket events of the warehouse (`raw.service_events`, absent
    before the first ingestion). `con`: a DuckDB connection to the warehouse."""
    present = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'raw' and table_name = 'service_events'"
    ).fetchone()[0]
    first = last = None
    if present:
        first_at, last_at = con.execute(
            "select min(event_at), max(event_at) from raw.service_events"
        ).fetchone()
        first = first_at.date() if first_at is not None else None
        last = last_at.date() if last_at is not None else None
    return calendar_years(first, last, as_of)


def load_business_days(con: Any, years: Iterable[int]) -> int:
    """Replace the rows of `calendar.business_days` by the calendar of `years`, in one
    transaction. `con`: a DuckDB connection. Returns rows written."""
    rows = [day.row() for day in business_days(years)]
    return replace_table(con, SCHEMA, TABLE, TABLE_COLUMNS, rows)
