"""The single Definitions object of the project (workspace.yaml points here)."""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from pipelines.ingest.assets import build_ingest_assets
from pipelines.ingest.jobs import check_mapping_job
from pipelines.ingest.schedules import build_nightly_schedule
from pipelines.ingest.sensors import build_delivery_sensor
from pipelines.lib.partitions import daily_partitions
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.settings import DBT_PROJECT_DIR, Settings
from pipelines.transform.assets import build_dbt_assets

NIGHTLY_JOB = "nightly"


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    partitions = daily_partitions(settings.timezone)
    assets: list = [*build_ingest_assets(partitions), *build_dbt_assets(partitions)]
    nightly = dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.all(),
        partitions_def=partitions,
        description="One night: ingest a delivery date and run everything downstream.",
    )
    return dg.Definitions(
        assets=assets,
        jobs=[nightly, check_mapping_job],
        schedules=[build_nightly_schedule(nightly, settings.timezone)],
        sensors=[build_delivery_sensor(nightly, partitions)],
        resources={
            "crm": CrmSettingsResource.from_settings(settings),
            "dbt": DbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR)),
        },
        # DuckDB allows one writer per file: steps of a run execute one after the other.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
