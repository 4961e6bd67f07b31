"""The dbt project as Dagster assets: `dbt build` (models, seeds, snapshots, and dbt tests as
asset checks), split in two around the CLV model:

1. everything that does not depend on the CLV scores (staging → identity → facts),
2. the CLV Python asset (pipelines/models) reads `fct_orders` and writes `clv.customer_scores`,
3. everything downstream of `source('clv', 'customer_scores')` (dim_customers → KPI marts).
"""

import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.retry import TRANSIENT_RETRY
from pipelines.transform.project import ensure_manifest

AFTER_CLV = "source:clv+"


class CrmDbtTranslator(DagsterDbtTranslator):
    """dbt sources map onto the assets that produce them, so lineage is one graph."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn") or []
        if dbt_resource_props["resource_type"] == "seed":
            return "seeds"
        return fqn[1] if len(fqn) > 2 else "warehouse"


TRANSLATOR = CrmDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def dbt_vars(crm: CrmSettingsResource, as_of: str) -> dict[str, Any]:
    s = crm.settings
    return {
        "as_of_date": as_of,
        "business_timezone": s.timezone,
        "reporting_currency": s.currency,
        "supernode_threshold": s.supernode_threshold,
    }


def run_dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource, crm: CrmSettingsResource):
    """`dbt build` for the selected models, with D = the last delivery date of the run."""
    as_of = context.partition_key_range.end if context.has_partition_key_range else context.partition_key
    os.environ["CRM_WAREHOUSE_DB"] = str(crm.settings.warehouse_db)
    context.log.info(f"dbt build as of {as_of} on {crm.settings.warehouse_db}")
    yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars(crm, as_of))], context=context).stream()


def build_dbt_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    manifest = ensure_manifest()

    @dbt_assets(
        manifest=manifest,
        exclude=AFTER_CLV,
        name="dbt_warehouse",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=TRANSLATOR,
        retry_policy=TRANSIENT_RETRY,
        pool="warehouse",
    )
    def dbt_warehouse(context: dg.AssetExecutionContext, dbt: DbtCliResource, crm: CrmSettingsResource):
        """Staging, identity resolution and facts (everything not downstream of the CLV scores)."""
        yield from run_dbt_build(context, dbt, crm)

    @dbt_assets(
        manifest=manifest,
        select=AFTER_CLV,
        name="dbt_customer_marts",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=TRANSLATOR,
        retry_policy=TRANSIENT_RETRY,
        pool="warehouse",
    )
    def dbt_customer_marts(context: dg.AssetExecutionContext, dbt: DbtCliResource, crm: CrmSettingsResource):
        """dim_customers and the KPI marts, built after the CLV scores."""
        yield from run_dbt_build(context, dbt, crm)

    return [dbt_warehouse, dbt_customer_marts]
