"""The nightly schedule: 02:00 business time, the latest complete delivery date, everything."""

from __future__ import annotations

import dagster as dg


def build_nightly_schedule(job: dg.UnresolvedAssetJobDefinition, timezone: str) -> dg.ScheduleDefinition:
    return dg.build_schedule_from_partitioned_job(
        job,
        name="nightly_schedule",
        hour_of_day=2,
        minute_of_hour=0,
        execution_timezone=timezone,
        description="Every night at 02:00 business time: ingest yesterday's delivery and "
        "run everything downstream (dbt, CLV, quality gates, publication).",
    )
