"""A night that fails under the Dagster daemon (the nightly schedule, the delivery sensor) is
recorded for the KPI reviews, like `crm run` does (pipelines/orchestrate.py): the review
managers open then says that its data is older than the last night."""

from __future__ import annotations

from datetime import date

import dagster as dg

from pipelines.lib.resources import CrmSettingsResource

PARTITION_TAG = "dagster/partition"


def build_failed_night_sensor(job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="failed_night_banner",
        monitored_jobs=[job],
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def failed_night_banner(
        context: dg.RunFailureSensorContext, crm: CrmSettingsResource
    ) -> dg.SkipReason | None:
        """Writes reports/night_status.js (`record_night`) for a failed nightly run."""
        from pipelines.publish.release import record_night

        partition = context.dagster_run.tags.get(PARTITION_TAG)
        try:
            night = date.fromisoformat(partition or "")
        except ValueError:
            return dg.SkipReason(f"run {context.dagster_run.run_id} has no delivery date")
        record_night(crm.settings.reports, night, "failed")
        return None

    return failed_night_banner
