"""The business calendar as a Dagster asset: written into the warehouse before the dbt
build, which reads it as source `calendar.business_days`."""

from datetime import date

import dagster as dg

from pipelines.lib.business_calendar import (
    SCHEMA,
    TABLE,
    data_years,
    last_confirmed_year,
    load_business_days,
)
from pipelines.lib.duck import connect
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.retry import TRANSIENT_RETRY

ASSET_KEY = dg.AssetKey([SCHEMA, TABLE])


def build_calendar_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=ASSET_KEY,
        group_name="calendar",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        pool="warehouse",
        kinds={"python", "duckdb"},
        # the years it covers are those of the ticket events: after their ingestion
        deps=[dg.AssetKey(["raw", "service_events"])],
    )
    def calendar_business_days(
        context: dg.AssetExecutionContext, crm: CrmSettingsResource
    ) -> dg.MaterializeResult:
        """Mainland China's business calendar (public holidays and make-up working days
        from the `holidays` library), one row per date from the year of the first ticket
        event to the year after D, loaded into calendar.business_days, which replaces its
        rows. Years after the library's last published schedule are its rule-based
        estimate (is_calendar_confirmed = false)."""
        as_of = date.fromisoformat(context.partition_key_range.end)
        with connect(crm.settings.warehouse_db) as con:
            years = data_years(con, as_of)
            rows = load_business_days(con, years)
        estimated = [year for year in years if year > last_confirmed_year()]
        context.log.info(
            f"business calendar {years[0]}-{years[-1]}: {rows} days"
            + (f" (estimated, no published schedule: {estimated})" if estimated else "")
        )
        return dg.MaterializeResult(
            metadata={
                "days": rows,
                "first_year": years[0],
                "last_year": years[-1],
                "estimated_years": ", ".join(str(year) for year in estimated) or "none",
            }
        )

    return calendar_business_days
