"""The nightly schedule: 02:00 business time, yesterday's delivery, everything downstream."""

from datetime import timedelta

import dagster as dg


def build_nightly_schedule(job, timezone: str) -> dg.ScheduleDefinition:
    """`job`: the nightly asset job (partitioned by delivery date)."""

    @dg.schedule(
        job=job,
        name="nightly_schedule",
        cron_schedule="0 2 * * *",
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Every night at 02:00 business time: ingest yesterday's delivery and run "
        "everything downstream (dbt, CLV, quality gates, publication).",
    )
    def nightly_schedule(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time
        delivery = (tick.date() - timedelta(days=1)).isoformat()
        return dg.RunRequest(run_key=f"nightly-{delivery}", partition_key=delivery)

    return nightly_schedule
