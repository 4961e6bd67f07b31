"""The daily partitions: one partition per delivery date (business timezone)."""

from __future__ import annotations

import dagster as dg

from pipelines.lib.settings import DEFAULT_PARTITIONS_START


def daily_partitions(
    timezone: str, start: str = DEFAULT_PARTITIONS_START
) -> dg.DailyPartitionsDefinition:
    """Delivery-date partitions from `start` (`Settings.partitions_start`, CRM_PARTITIONS_START).
    `end_offset=1` admits today's delivery folder."""
    return dg.DailyPartitionsDefinition(start_date=start, timezone=timezone, end_offset=1)
