"""What happens when a run fails under the Dagster daemon (the nightly schedule, the
delivery sensor, a run launched from the UI), as `crm run` does for its own runs
(pipelines/orchestrate.py): the night is recorded for the KPI reviews (the review managers
open then says that its data is older than the last night), and an alert goes to the
configured webhook / e-mail (pipelines/lib/alerts.py)."""

from __future__ import annotations

from datetime import date

import dagster as dg

from pipelines.lib.alerts import Alert, notify
from pipelines.lib.resources import CrmSettingsResource

PARTITION_TAG = "dagster/partition"


def build_failed_night_sensor(job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="failed_night_banner",
        monitored_jobs=[job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When a nightly run fails, the KPI reviews say that their data is older "
        "than the last night (reports/night_status.js).",
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


#: The tag of the runs `crm` launches (pipelines/orchestrate.py, PROCESS_TAG): `crm` alerts
#: for them itself, also when no daemon runs; this sensor alerts for the others only.
CRM_PROCESS_TAG = "crm/process"


def failure_alert(run: dg.DagsterRun, message: str | None) -> Alert:
    """The alert of a failed run: job, run id, the run's failure message (which names the
    failed steps) and its delivery date."""
    return Alert(
        alert="run_failure",
        job=run.job_name,
        run_id=run.run_id,
        reason=(message or "the run failed").split("\n\n", 1)[0],
        delivery_date=run.tags.get(PARTITION_TAG),
    )


def build_failed_run_alert_sensor(jobs: list) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="failed_run_alert",
        monitored_jobs=jobs,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When a run of the pipeline fails, sends an alert to CRM_ALERT_WEBHOOK_URL "
        "and/or CRM_ALERT_EMAIL_TO (job, run id, reason, delivery date; no personal data). "
        "Runs started by `crm` are alerted by `crm` itself.",
    )
    def failed_run_alert(
        context: dg.RunFailureSensorContext, crm: CrmSettingsResource
    ) -> dg.SkipReason | None:
        run = context.dagster_run
        if CRM_PROCESS_TAG in run.tags:
            return dg.SkipReason(f"run {run.run_id} was started by crm, which alerted")
        settings = crm.settings
        if not (settings.alert_webhook_url or settings.alert_email_to):
            return dg.SkipReason("no alert channel (CRM_ALERT_WEBHOOK_URL, CRM_ALERT_EMAIL_TO)")
        errors = notify(settings, failure_alert(run, context.failure_event.message))
        if errors:
            raise RuntimeError("; ".join(errors))  # the sensor's tick shows it failed
        return None

    return failed_run_alert
