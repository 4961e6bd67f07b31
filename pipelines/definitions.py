"""The single Definitions object of the project (workspace.yaml points here)."""

import warnings
from datetime import timedelta

import dagster as dg

from pipelines.business_calendar.assets import build_calendar_asset
from pipelines.ingest.assets import build_ingest_assets
from pipelines.ingest.jobs import check_mapping_job
from pipelines.ingest.schedules import build_nightly_schedule
from pipelines.ingest.sensors import build_delivery_sensor
from pipelines.lib.console import console_logger
from pipelines.lib.partitions import daily_partitions, partitions_start
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.settings import DBT_PROJECT_DIR, Settings
from pipelines.models.assets import build_clv_asset
from pipelines.publish.assets import build_dbt_docs_asset, build_publish_asset
from pipelines.publish.sensors import build_failed_night_sensor, build_failed_run_alert_sensor
from pipelines.quality.checks import build_quality_checks
from pipelines.targets.assets import build_targets_asset
from pipelines.transform.assets import build_dbt_assets
from pipelines.transform.dbt_cli import CrmDbtCliResource, dbt_executable

NIGHTLY_JOB = "nightly"
INGEST_JOB = "ingest"

# Backfill policies and partitioned asset checks are marked beta/preview in Dagster 1.13;
# we use them deliberately, and the warnings would bury every command's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def _spark_raw_export(con, settings: Settings, entity: str, days: list) -> tuple[int, int]:
    from pipelines.spark import export_raw_table, spark_paths

    return export_raw_table(con, spark_paths(settings), entity, days)


def _spark_scores_export(con, settings: Settings) -> int:
    from pipelines.spark import export_clv_scores, spark_paths

    return export_clv_scores(con, spark_paths(settings))


#: The owner of every asset whose dbt model names none (`meta: {owner: ...}`): the team that
#: runs the warehouse.
DEFAULT_OWNER = "team:crm-data-team"
#: The nightly run starts at 02:00 business time (pipelines/ingest/schedules.py); an asset
#: not materialized between 02:00 and 08:00 is late (Dagster's freshness: the UI flags it).
FRESHNESS_DEADLINE_CRON = "0 8 * * *"
FRESHNESS_WINDOW = timedelta(hours=6)


def catalogued(assets: list, timezone: str) -> list:
    """Every asset with an owner (DEFAULT_OWNER where it names none) and the nightly
    freshness policy."""
    policy = dg.FreshnessPolicy.cron(
        deadline_cron=FRESHNESS_DEADLINE_CRON, lower_bound_delta=FRESHNESS_WINDOW, timezone=timezone
    )
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(
            owners=spec.owners or [DEFAULT_OWNER], freshness_policy=policy
        ),
        assets,
    )


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The Definitions of the deployment of `settings` (default: `Settings.from_env()`, the
    code location's one reading of the environment). Every setting reaches the assets
    through the `crm` resource; the dbt profile's inputs are derived from it when a dbt step
    starts and passed to the dbt process only (pipelines/transform/dbt_cli.py)."""
    settings = settings or Settings.from_env()
    partitions = daily_partitions(settings.timezone, partitions_start(settings))
    dbt_assets = build_dbt_assets(partitions)
    assets: list = [
        *build_ingest_assets(partitions, spark_export=_spark_raw_export),
        build_targets_asset(partitions),
        build_calendar_asset(partitions),
        *dbt_assets,
        build_clv_asset(partitions, dbt_assets, spark_export=_spark_scores_export),
        build_publish_asset(partitions),
        build_dbt_docs_asset(partitions),
    ]
    assets = catalogued(assets, settings.timezone)
    nightly = dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.all(),
        description="One night: ingest a delivery date and run everything downstream.",
    )
    ingest = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.groups("ingest"),
        description="Ingest delivery dates into the raw tables only (the first part of a backfill).",
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=build_quality_checks(partitions_def=partitions, assets=assets),
        jobs=[nightly, ingest, check_mapping_job],
        schedules=[build_nightly_schedule(nightly, settings.timezone)],
        sensors=[
            build_delivery_sensor(nightly, partitions),
            build_failed_night_sensor(nightly),
            build_failed_run_alert_sensor([nightly, ingest]),
        ],
        resources={
            "crm": CrmSettingsResource.from_settings(settings),
            "dbt": CrmDbtCliResource(
                project_dir=str(DBT_PROJECT_DIR),
                profiles_dir=str(DBT_PROJECT_DIR),
                dbt_executable=dbt_executable(),
            ),
        },
        # the console without stack traces (pipelines/lib/console.py)
        loggers={"console": console_logger},
        # DuckDB allows one writer per file: steps of a run execute one after the other.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
