"""The managers' SMART targets as a Dagster asset: validated and loaded into the warehouse
before the dbt build, which reads them as source `targets.kpi_targets`."""

import dagster as dg

from pipelines.lib.duck import connect
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.retry import TRANSIENT_RETRY
from pipelines.targets import SCHEMA, TABLE, TargetsError, load_targets, read_targets

ASSET_KEY = dg.AssetKey([SCHEMA, TABLE])


def build_targets_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=ASSET_KEY,
        group_name="targets",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        pool="warehouse",
        kinds={"python", "duckdb"},
    )
    def targets_kpi_targets(
        context: dg.AssetExecutionContext, crm: CrmSettingsResource
    ) -> dg.MaterializeResult:
        """The SMART targets of the managers' file (setting CRM_TARGETS_FILE), validated row
        by row and loaded into targets.kpi_targets, which replaces its rows. A bad file fails
        the night before dbt runs, with one line per bad row (`crm targets check`)."""
        settings = crm.settings
        try:
            targets = read_targets(settings.targets_file)
        except TargetsError as exc:
            raise dg.Failure(
                description=f"the targets file has errors (check it with `crm targets check`):\n"
                f"{exc}",
                allow_retries=False,
            ) from None
        with connect(settings.warehouse_db) as con:
            rows = load_targets(con, targets)
        context.log.info(f"{rows} SMART target(s) loaded from {settings.targets_file}")
        return dg.MaterializeResult(
            metadata={
                "targets": rows,
                "file": dg.MetadataValue.path(str(settings.targets_file)),
                "dagster/row_count": rows,
                "dagster/table_name": "warehouse.targets.kpi_targets",
            }
        )

    return targets_kpi_targets
