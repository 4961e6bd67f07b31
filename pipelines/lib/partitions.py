"""The daily partitions: one partition per delivery date (business timezone)."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

#: First delivery date the partitions cover (CRM_PARTITIONS_START, default 2024-01-01).
DEFAULT_PARTITIONS_START = "2024-01-01"


def partitions_start() -> str:
    value = os.environ.get("CRM_PARTITIONS_START", DEFAULT_PARTITIONS_START)
    date.fromisoformat(value)  # fail early with a clear ValueError
    return value


def daily_partitions(timezone: str) -> dg.DailyPartitionsDefinition:
    """Delivery-date partitions. `end_offset=1` admits today's delivery folder."""
    return dg.DailyPartitionsDefinition(
        start_date=partitions_start(), timezone=timezone, end_offset=1
    )
