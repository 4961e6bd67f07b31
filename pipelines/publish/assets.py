"""Publication as the last Dagster asset of the night.

It depends on every mart, so the blocking quality checks on those marts (asset checks,
pipelines/quality/checks.py) stop it when they fail. As a last guard it runs the whole
quality gate again against the warehouse as of D (so a publication materialised alone, from
the UI, is guarded too) and refuses to publish when any blocking expectation fails: the
serving files, the extracts and the report then keep the previous night's version.
"""

import json
import shutil
import time
from datetime import date
from pathlib import Path

import dagster as dg

from pipelines.lib.duck import connect_warehouse
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.settings import Settings
from pipelines.transform.project import ensure_manifest, run_dbt


def mart_asset_keys() -> list[dg.AssetKey]:
    """Every dbt model under models/marts (the published tables), from the dbt manifest."""
    manifest = json.loads(ensure_manifest().read_text())
    keys = [
        dg.AssetKey(["marts", node["name"]])
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and "marts" in node.get("fqn", [])
    ]
    return sorted(keys, key=lambda k: k.to_user_string())


def generate_dbt_docs(settings: Settings, as_of: date) -> Path:
    """`dbt docs generate --static` against the warehouse; a single self-contained page at
    $CRM_HOME/docs/dbt/index.html (column descriptions, lineage, the catalog)."""
    target = settings.home / "docs" / "dbt"
    work = settings.warehouse / "dbt_docs_target"
    run_dbt(
        ["docs", "generate", "--static", "--target-path", str(work),
         "--vars", json.dumps({"as_of_date": as_of.isoformat()})],
        settings=settings,
    )  # fmt: skip
    target.mkdir(parents=True, exist_ok=True)
    page = target / "index.html"
    shutil.copyfile(work / "static_index.html", page)
    return page


def build_publish_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["serving", "publication"]),
        deps=mart_asset_keys(),
        group_name="publish",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="warehouse",
        kinds={"duckdb", "parquet", "tableau", "html"},
    )
    def publication(
        context: dg.AssetExecutionContext, crm: CrmSettingsResource
    ) -> dg.MaterializeResult:
        """The serving DuckDB file analysts open (never the warehouse), Parquet and Tableau
        Hyper extracts of every mart, the KPI review for managers and the dbt docs; only
        when every blocking quality expectation passes as of D."""
        from pipelines.publish import publish, render_kpi_review
        from pipelines.quality.runner import run_gate

        settings = crm.settings
        as_of = date.fromisoformat(
            context.partition_key_range.end
            if context.has_partition_key_range
            else context.partition_key
        )
        started = time.monotonic()
        context.log.info(
            f"publication as of {as_of}: last quality gate, KPI review, serving files, dbt docs"
        )
        with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
            gate = run_gate(
                con,
                as_of,
                context.run.run_id,
                docs_dir=settings.reports / "data_docs",
                timezone=settings.timezone,
            )
        if gate.blocking_failed:
            raise dg.Failure(
                description=(
                    f"quality gate failed as of {as_of}: {len(gate.blocking_failed)} blocking "
                    "expectation(s) failed; nothing was published. Failed: "
                    + ", ".join(gate.blocking_failed)
                    + f". See the Data Docs under {settings.reports / 'data_docs'}."
                ),
                allow_retries=False,
            )
        gate_seconds = time.monotonic() - started
        # The report first: a report that cannot be rendered stops the publication too.
        report = render_kpi_review(
            settings.warehouse_db, settings.reports, as_of, settings.report_language
        )
        context.log.info(f"KPI review: {report.latest_path}")
        result = publish(settings.warehouse_db, settings.serving, as_of=as_of)
        context.log.info(
            f"published {len(result.row_counts)} tables, {result.total_rows:,} rows to {settings.serving}"
        )
        docs_page: str = "not generated"
        try:
            docs_page = str(generate_dbt_docs(settings, as_of))
        except (RuntimeError, OSError) as exc:  # docs are a convenience: never block publication
            context.log.warning(f"dbt docs not generated: {exc}")
        return dg.MaterializeResult(
            metadata={
                **result.metadata(),
                "quality_gate_seconds": round(gate_seconds, 3),
                "report": report.metadata()["latest_path"],
                "report_bytes": report.bytes,
                "dbt_docs": docs_page,
            }
        )

    return publication
