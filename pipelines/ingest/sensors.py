"""A sensor that asks for a nightly run when a new delivery folder appears."""

import dagster as dg

from pipelines.lib.partitions import delivery_dates
from pipelines.lib.resources import CrmSettingsResource

__all__ = ["build_delivery_sensor", "delivery_dates"]


def build_delivery_sensor(job, partitions_def: dg.PartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Every minute: one run of the nightly job per delivery date folder "
        "(landing/<source>/<YYYY-MM-DD>/) not seen before.",
    )
    def new_delivery_sensor(context: dg.SensorEvaluationContext, crm: CrmSettingsResource):
        """Requests one run of the nightly job per delivery date folder not seen before."""
        seen = set(filter(None, (context.cursor or "").split(",")))
        valid = set(partitions_def.get_partition_keys())
        new = [d for d in delivery_dates(crm.settings.landing) if d not in seen and d in valid]
        if not new:
            return dg.SkipReason("no new delivery folder")
        context.update_cursor(",".join(sorted(seen | set(new))))
        return [dg.RunRequest(run_key=f"delivery-{d}", partition_key=d) for d in new]

    return new_delivery_sensor
