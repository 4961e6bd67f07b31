"""The daily partitions: one partition per delivery date (business timezone), from the
first delivery."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from pipelines.lib.settings import DEFAULT_PARTITIONS_START, Settings

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def delivery_dates(landing: Path) -> list[str]:
    """Every delivery date folder under `<landing>/<source>/` (sources starting with _ or . skipped)."""
    if not landing.is_dir():
        return []
    found = {
        folder.name
        for source in landing.iterdir()
        if source.is_dir() and not source.name.startswith(("_", "."))
        for folder in source.iterdir()
        if folder.is_dir() and _DATE.match(folder.name)
    }
    return sorted(found)


def partitions_start(settings: Settings) -> str:
    """The first delivery date Dagster knows: CRM_PARTITIONS_START when set, else the first
    delivery folder of the landing (so that the asset catalog counts the days since the
    first delivery, not since an arbitrary date), else DEFAULT_PARTITIONS_START."""
    if settings.partitions_start:
        return settings.partitions_start
    dates = delivery_dates(settings.landing)
    return dates[0] if dates else DEFAULT_PARTITIONS_START


def daily_partitions(
    timezone: str, start: str = DEFAULT_PARTITIONS_START
) -> dg.DailyPartitionsDefinition:
    """Delivery-date partitions from `start` (`partitions_start`). `end_offset=1` admits
    today's delivery folder."""
    return dg.DailyPartitionsDefinition(start_date=start, timezone=timezone, end_offset=1)
