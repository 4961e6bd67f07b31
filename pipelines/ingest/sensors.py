"""A sensor that asks for a nightly run when a new delivery folder appears."""

import re
from pathlib import Path

import dagster as dg

from pipelines.lib.resources import CrmSettingsResource

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
