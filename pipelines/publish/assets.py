"""The last two Dagster assets of the night: the publication, then the dbt docs.

`serving/publication` depends on every mart, so the blocking quality checks on those marts
(asset checks, pipelines/quality/checks.py) stop it when they fail. It does one job, in
three named steps:

1. `last_gate`: the gate must pass on what is published, whatever selected the
   publication. It reads what this run's checks recorded, or runs the whole quality gate
   against the warehouse as of D when they did not validate every suite (a publication
   materialised alone, from the UI), and refuses to publish when any blocking expectation
   fails: the serving files, the extracts and the review then keep the previous night's
   version. (A gate of its own, as a separate asset, would not guard a publication
   materialised alone.)
2. `publish_with_review` (pipelines/publish/release.py): the KPI review rendered, then
   published with the tables in one release, changed by one swap. The review stays in this
   asset: a review that cannot be rendered stops the publication, and `reports/latest`
   changes with the tables, at the same instant.
3. The materialization's metadata.

`docs/dbt_docs` runs after the publication (so after its gate) and regenerates the dbt docs
page when the dbt project changed; the docs are a convenience: their failure is a warning
and never fails the night.
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
from pipelines.transform.project import ensure_manifest, project_fingerprint, run_dbt


def mart_asset_keys() -> list[dg.AssetKey]:
    """Every dbt model under models/marts (the published tables), from the dbt manifest."""
    manifest = json.loads(ensure_manifest().read_text())
    keys = [
        dg.AssetKey(["marts", node["name"]])
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and "marts" in node.get("fqn", [])
    ]
    return sorted(keys, key=lambda k: k.to_user_string())


def generate_dbt_docs(settings: Settings, as_of: date) -> Path | None:
    """`dbt docs generate --static` against the warehouse; a single self-contained page at
    $CRM_HOME/docs/dbt/index.html (column descriptions, lineage, the catalog).

    The page documents the project, which changes with a deployment, not with a night: it
    is regenerated only when the project's files changed since it was written; None when
    the page is current (delete the page to force it). (Generating it took 10-25 s of every
    medium-preset night.)"""
    target = settings.home / "docs" / "dbt"
    stamp = target / ".project-sha256"
    fingerprint = project_fingerprint()
    if (
        (target / "index.html").exists()
        and stamp.exists()
        and stamp.read_text().strip() == fingerprint
    ):
        return None
    work = settings.warehouse / "dbt_docs_target"
    run_dbt(
        ["docs", "generate", "--static", "--target-path", str(work),
         "--vars", json.dumps({"as_of_date": as_of.isoformat()})],
        settings=settings,
    )  # fmt: skip
    target.mkdir(parents=True, exist_ok=True)
    page = target / "index.html"
    shutil.copyfile(work / "static_index.html", page)
    stamp.write_text(fingerprint + "\n")
    return page


DBT_DOCS_KEY = dg.AssetKey(["docs", "dbt_docs"])
PUBLICATION_KEY = dg.AssetKey(["serving", "publication"])


def _as_of(context: dg.AssetExecutionContext) -> date:
    """D: the last day of the partitions this run materialises."""
    return date.fromisoformat(
        context.partition_key_range.end
        if context.has_partition_key_range
        else context.partition_key
    )


def last_gate(context: dg.AssetExecutionContext, settings: Settings, as_of: date) -> None:
    """Raise `dg.Failure` (nothing is published) unless every blocking expectation passes as
    of D: the results this run's asset checks recorded, or the whole gate run here."""
    from pipelines.ingest.deployment import configured_entities
    from pipelines.ingest.mapping import load_mappings
    from pipelines.quality.runner import recorded_gate, run_gate

    with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
        # The asset checks of this run validated every suite as of D already (the usual
        # night): their recorded results are the gate. Otherwise (a publication
        # materialised alone, a check skipped) the whole gate runs here.
        blocking_failed = recorded_gate(con, context.run.run_id, as_of)
        if blocking_failed is None:
            blocking_failed = run_gate(
                con,
                as_of,
                context.run.run_id,
                docs_dir=settings.reports / "data_docs",
                timezone=settings.timezone,
                sources=configured_entities(load_mappings(settings.mappings_dir)),
            ).blocking_failed
            context.log.info("quality gate: every suite validated as of D")
        else:
            context.log.info("quality gate: every suite was validated by this run's checks")
    if blocking_failed:
        raise dg.Failure(
            description=(
                f"quality gate failed as of {as_of}: {len(blocking_failed)} blocking "
                "expectation(s) failed; nothing was published. Failed: "
                + ", ".join(blocking_failed)
                + f". See the Data Docs under {settings.reports / 'data_docs'}."
            ),
            allow_retries=False,
        )


def build_publish_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=PUBLICATION_KEY,
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
        Hyper extracts of every mart and the KPI review for managers, in one release; only
        when every blocking quality expectation passes as of D."""
        from pipelines.publish.release import publish_with_review

        settings = crm.settings
        as_of = _as_of(context)
        started = time.monotonic()
        context.log.info(f"publication as of {as_of}: last quality gate, KPI review, serving files")
        last_gate(context, settings, as_of)
        gate_seconds = time.monotonic() - started
        # The review is rendered first (one that cannot be rendered stops the publication
        # too) and published inside the release: one swap changes the tables and the review.
        result, reports = publish_with_review(
            settings.warehouse_db,
            settings.serving,
            settings.reports,
            as_of,
            timezone=settings.timezone,
            currency=settings.currency,
        )
        for report in reports:
            context.log.info(f"KPI review ({report.language}): {report.latest_path}")
        context.log.info(
            f"published {len(result.row_counts)} tables, {result.total_rows:,} rows to {settings.serving}"
        )
        return dg.MaterializeResult(
            metadata={
                **result.metadata(),
                # every published table's rows (each one's: rows.<table>)
                "dagster/row_count": result.total_rows,
                "quality_gate_seconds": round(gate_seconds, 3),
                **{f"report.{r.language}": str(r.latest_path) for r in reports},
                "report_bytes": sum(r.bytes for r in reports),
            }
        )

    return publication


def build_dbt_docs_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=DBT_DOCS_KEY,
        deps=[PUBLICATION_KEY],
        group_name="publish",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="warehouse",
        kinds={"dbt", "html"},
    )
    def dbt_docs(
        context: dg.AssetExecutionContext, crm: CrmSettingsResource
    ) -> dg.MaterializeResult:
        """The dbt docs page ($CRM_HOME/docs/dbt/index.html), regenerated when the dbt
        project changed (`generate_dbt_docs`); a failure is a warning, never a failed night."""
        docs_page: str = "not generated"
        try:
            page = generate_dbt_docs(crm.settings, _as_of(context))
            docs_page = str(page) if page else "unchanged (the dbt project has not changed)"
        except (RuntimeError, OSError) as exc:  # docs are a convenience: never block a night
            context.log.warning(f"dbt docs not generated: {exc}")
        return dg.MaterializeResult(metadata={"dbt_docs": docs_page})

    return dbt_docs
