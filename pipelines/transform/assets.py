"""The dbt project as Dagster assets: `dbt build` (models, seeds, snapshots, and dbt tests as
asset checks), split in two around the CLV model:

1. everything that does not depend on the CLV scores (staging → identity → facts),
2. the CLV Python asset (pipelines/models) reads `fct_orders` and writes `clv.customer_scores`,
3. everything downstream of `source('clv', 'customer_scores')` (dim_customers → KPI marts).
"""

import csv
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    dbt_assets,
)

from pipelines.lib.duck import connect_warehouse
from pipelines.lib.erasure_guards import clear_full_refresh, full_refresh_requested
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.retry import TRANSIENT_RETRY
from pipelines.lib.settings import Settings, SettingsError
from pipelines.transform.dbt_cli import CrmDbtCliResource
from pipelines.transform.project import DBT_PROJECT_DIR, ensure_manifest, prepare_warehouse

AFTER_CLV = "source:clv+"
#: dbt's saved parse of the project (see keep_partial_parse).
PARTIAL_PARSE = "partial_parse.msgpack"
#: Dagster's target folders kept per dbt step (see prune_invocation_folders).
KEPT_INVOCATIONS = 20
#: ... and only once they are this old (another deployment may share the project's target/).
KEPT_INVOCATION_DAYS = 2


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

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> dg.AssetSpec:
        """dagster-dbt's spec, with the table's name in the warehouse (the manifest's reads
        `parse_only.<schema>.<table>`: the database of the profile it was parsed with) and
        the owner the model's `meta.owner` names."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec
        owner = dbt_owner(props)
        return spec.replace_attributes(
            owners=[owner] if owner else spec.owners,
            metadata={**spec.metadata, TABLE_NAME: storage_name(props)},
        )


#: Dagster's metadata keys of a table's name and row count (the UI shows both).
TABLE_NAME = "dagster/table_name"
ROW_COUNT = "dagster/row_count"
#: The catalog name of the warehouse DuckDB file (warehouse.duckdb) as the pipeline opens it.
WAREHOUSE_CATALOG = "warehouse"
#: dbt materializations stored as tables (views and ephemeral models hold no rows).
STORED = ("table", "incremental", "seed", "snapshot")


#: The database of the profile the manifest is parsed with (pipelines/transform/project.py).
PARSE_DATABASE = "parse_only"


def storage_name(props: Mapping[str, Any]) -> str:
    """`<catalog>.<schema>.<table>`: where a dbt node is stored; the catalog is the
    warehouse, or the restricted store for the models configured with `database:
    restricted` (the ones holding clear personal data)."""
    database = props.get("database") or PARSE_DATABASE
    catalog = WAREHOUSE_CATALOG if database == PARSE_DATABASE else database
    return f"{catalog}.{props['schema']}.{props.get('alias') or props['name']}"


class EagerTestNotices(logging.Filter):
    """Counts, instead of printing, dagster-dbt's warning for each dbt test that dbt's eager
    indirect selection runs beside a step's models (a `relationships` test from a fact to
    `dim_customers`, built by another step): every row stays tested, the result is recorded
    as an asset observation, and the step says so once (see `run_dbt_build`)."""

    PREFIX = "Logging an `AssetObservation` instead of an `AssetCheckResult`"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._logger = logging.getLogger("dagster.builtin")

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(self.PREFIX):
            self.count += 1
            return False
        return True

    def __enter__(self) -> "EagerTestNotices":
        self._logger.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeFilter(self)


def dbt_owner(props: Mapping[str, Any]) -> str | None:
    """The owner a dbt node's `meta.owner` names, as Dagster writes owners (an e-mail
    address, else `team:<name>`)."""
    meta = {**(props.get("meta") or {}), **((props.get("config") or {}).get("meta") or {})}
    owner = str(meta.get("owner") or "").strip()
    if not owner:
        return None
    return owner if "@" in owner or owner.startswith("team:") else f"team:{owner}"


def _quoted(parts: list[str]) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def with_row_counts(events: list, manifest: Mapping[str, Any], settings: Settings) -> list:
    """The dbt step's events, each output of a stored model or seed with its table's row
    count after the build (`SELECT count(*)` on the warehouse, read-only, once dbt has
    exited: dagster-dbt's `fetch_row_counts()` would query while dbt still writes the
    file, and DuckDB has one writer per file) and its name in the warehouse."""
    nodes = manifest.get("nodes", {})
    stored = {}
    for event in events:
        uid = event.metadata.get("unique_id") if isinstance(event, dg.Output) else None
        props = nodes.get(getattr(uid, "text", uid)) if uid is not None else None
        if props and (props.get("config") or {}).get("materialized") in STORED:
            stored[id(event)] = storage_name(props)
    counts: dict[str, int] = {}
    if stored:
        try:
            with connect_warehouse(
                settings.warehouse_db, settings.restricted_db, read_only=True, wait_seconds=30
            ) as con:
                for name in set(stored.values()):
                    catalog, relation = name.split(".", 1)
                    # the warehouse file is the connection's main catalog
                    parts = relation.split(".") if catalog == WAREHOUSE_CATALOG else name.split(".")
                    try:
                        (n,) = con.execute(f"select count(*) from {_quoted(parts)}").fetchone()
                    except duckdb.Error:  # a table the build did not create: no count
                        continue
                    counts[name] = int(n)
        except RuntimeError:  # the warehouse is busy (WarehouseBusyError): no counts
            pass
    out = []
    for event in events:
        name = stored.get(id(event))
        if name is not None:
            extra = {TABLE_NAME: name}
            if name in counts:
                extra[ROW_COUNT] = counts[name]
            event = event.with_metadata({**event.metadata, **extra})
        out.append(event)
    return out


TRANSLATOR = CrmDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def settings_vars(settings: Settings) -> dict[str, Any]:
    """The dbt vars that come from the deployment's settings and mappings (every build of
    the project, DuckDB or Spark, passes them): business timezone, reporting currency, VIP
    threshold, identity settings, and the system each help desk's customer_ref belongs to
    (pipelines/ingest/deployment.py). Raises MappingError when a mapping cannot be used,
    SettingsError when the reporting currency has no rate in seed currency_rates."""
    from pipelines.ingest.deployment import customer_ref_systems, member_system
    from pipelines.ingest.mapping import load_mappings

    rates = DBT_PROJECT_DIR / "seeds" / "currency_rates.csv"
    with rates.open(encoding="utf-8") as handle:
        known = {row["currency"].strip().upper() for row in csv.DictReader(handle)}
    if settings.currency not in known:
        # int_order_lines_converted would convert nothing (no rate of the reporting currency)
        raise SettingsError(
            f"CRM_CURRENCY={settings.currency}: no rate for it in {rates} (known: "
            f"{', '.join(sorted(known))}); add its rate_to_cny there"
        )
    mappings = load_mappings(settings.mappings_dir)
    member = member_system(mappings, settings.member_system)
    return {
        "business_timezone": settings.timezone,
        "reporting_currency": settings.currency,
        "vip_revenue_365d": settings.vip_revenue_365d,
        "supernode_threshold": settings.supernode_threshold,
        # no member system and no help desk pointing at one: a name no customer has
        "member_system": member or "",
        "customer_ref_systems": customer_ref_systems(mappings, settings.member_system),
    }


#: The environment variables that carry the run's dates to dbt (macros/as_of_date.sql).
AS_OF_ENV = "CRM_AS_OF_DATE"
CHECKS_FROM_ENV = "CRM_CHECKS_FROM_DATE"


def dbt_vars(crm: CrmSettingsResource) -> dict[str, Any]:
    """The vars of a pipeline's dbt build: the deployment's settings only. They stay the
    same from night to night, so dbt's saved parse stays valid; the run's dates go in the
    environment (`run_dates_env`)."""
    from pipelines.ingest.mapping import MappingError

    try:
        return settings_vars(crm.settings)
    except (MappingError, SettingsError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def run_dates_env(as_of: str, checks_from: str | None = None) -> dict[str, str]:
    """The run's D and first delivery date for the dbt process (read while the build runs,
    not while dbt parses)."""
    return {AS_OF_ENV: as_of, CHECKS_FROM_ENV: checks_from or as_of}


def run_dbt_build(
    context: dg.AssetExecutionContext,
    dbt: CrmDbtCliResource,
    crm: CrmSettingsResource,
    *,
    last_build: bool = False,
):
    """`dbt build` for the selected models, with D = the last delivery date of the run.

    After an erasure (`crm forget`) both builds are full refreshes, so that no incremental
    mart or frozen KPI month still counts the erased person; `last_build` clears the
    request once the second build succeeded."""
    if context.has_partition_key_range:
        checks_from, as_of = context.partition_key_range.start, context.partition_key_range.end
    else:
        checks_from = as_of = context.partition_key
    # dbt runs as a subprocess of this process: the profile reads these variables.
    profile_env = {**prepare_warehouse(crm.settings), **run_dates_env(as_of, checks_from)}
    refresh_for = full_refresh_requested(crm.settings)
    # Unit tests test the SQL, not the data: `make test` runs them; the night skips them.
    args = [
        "build",
        "--exclude-resource-type",
        "unit_test",
        "--vars",
        json.dumps(dbt_vars(crm)),
    ]
    if refresh_for:
        args.append("--full-refresh")
        context.log.warning(
            f"dbt build --full-refresh: requested by erasure request(s) {', '.join(refresh_for)}"
        )
    context.log.info(f"dbt build as of {as_of} on {crm.settings.warehouse_db}")
    invocation = dbt.cli(args, context=context, raise_on_error=False, env=profile_env)
    # the outputs wait for the build's end, when their tables' rows can be counted
    with EagerTestNotices() as eager:
        events = list(invocation.stream())
    if eager.count:
        context.log.info(
            f"{eager.count} dbt test(s) relating this step's models to other steps' models "
            "ran (dbt's eager indirect selection) and are recorded as asset observations"
        )
    yield from with_row_counts(events, invocation.manifest, crm.settings)
    if not invocation.is_successful():
        error = invocation.get_error()
        raise dg.Failure(
            description=describe_dbt_failure(invocation, crm.settings, error),
            # Only a locked warehouse file is worth retrying; a failing test or a SQL error
            # fails the same way again.
            allow_retries=is_transient(str(error)),
        )
    if last_build and refresh_for:
        clear_full_refresh(crm.settings, refresh_for)
    # housekeeping: a failure here must not fail a step whose build succeeded
    try:
        keep_partial_parse(invocation.target_path)
        prune_invocation_folders()
    except OSError as exc:
        context.log.warning(f"dbt target folder housekeeping skipped: {exc}")


def keep_partial_parse(target_path: Path) -> None:
    """Leave a dbt step's parsed project where the next step finds it.

    Dagster gives every dbt invocation a new target folder and copies into it the
    `partial_parse.msgpack` of the project's `target/` when there is one; without it each
    step parsed the whole project again (about 3.5 s). Every step runs with the same vars
    (the run's dates are in the environment, `run_dates_env`), profile and files, so dbt
    reuses this parse night after night; when anything of those differs (a changed setting,
    an edited model, another dbt version), dbt sees it and parses in full. Written under a
    temporary name and renamed, so a step never copies half a file."""
    parsed = Path(target_path) / PARTIAL_PARSE
    if not parsed.is_file():
        return
    kept = DBT_PROJECT_DIR / "target" / PARTIAL_PARSE
    kept.parent.mkdir(parents=True, exist_ok=True)
    scratch = kept.with_name(f".{PARTIAL_PARSE}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(parsed, scratch)
        os.replace(scratch, kept)
    finally:
        scratch.unlink(missing_ok=True)


#: Messages of failures that a retry can cure (another process holds the DuckDB file).
TRANSIENT_MARKERS = ("Could not set lock on file", "Conflicting lock is held", "database is locked")


def is_transient(message: str) -> bool:
    return any(marker in message for marker in TRANSIENT_MARKERS)


def failing_rows(settings: Settings, relation: str, limit: int = 5) -> list[dict[str, Any]]:
    """The first rows of a failed test's stored failures (a view in schema `audit`)."""
    try:
        with connect_warehouse(
            settings.warehouse_db, settings.restricted_db, read_only=True, wait_seconds=5
        ) as con:
            cursor = con.execute(f"select * from {relation} limit {int(limit)}")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except (duckdb.Error, RuntimeError):  # WarehouseBusyError is a RuntimeError
        return []


def describe_dbt_failure(invocation: Any, settings: Settings, error: Exception | None) -> str:
    """Which models and tests failed, and for each failed test its first failing rows."""
    try:
        results = invocation.get_artifact("run_results.json").get("results", [])
    except (OSError, ValueError):
        results = []
    lines = []
    for result in results:
        if result.get("status") not in ("fail", "error"):
            continue
        kind, _, rest = result["unique_id"].partition(".")
        name = rest.split(".")[1] if rest.count(".") >= 1 else rest
        message = (result.get("message") or "").strip()
        lines.append(f"- {kind} {name}: {result['status']} ({message})")
        relation = result.get("relation_name")
        if kind == "test" and relation:
            for row in failing_rows(settings, relation):
                shown = ", ".join(f"{k}={v}" for k, v in row.items())
                lines.append(f"    failing row: {shown}")
            lines.append(f"    all failing rows: select * from {relation}")
    if not lines:
        return f"dbt build failed: {error}"
    return "dbt build failed:\n" + "\n".join(lines)


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
    def dbt_warehouse(
        context: dg.AssetExecutionContext, dbt: CrmDbtCliResource, crm: CrmSettingsResource
    ):
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
    def dbt_customer_marts(
        context: dg.AssetExecutionContext, dbt: CrmDbtCliResource, crm: CrmSettingsResource
    ):
        """dim_customers and the KPI marts, built after the CLV scores."""
        yield from run_dbt_build(context, dbt, crm, last_build=True)

    return [dbt_warehouse, dbt_customer_marts]


def prune_invocation_folders(
    keep: int = KEPT_INVOCATIONS, min_age_days: float = KEPT_INVOCATION_DAYS
) -> list[Path]:
    """Delete the target folders of each dbt step beyond its `keep` newest, once untouched
    for `min_age_days` (returns them).

    Dagster writes every dbt invocation into a new folder `target/<step>-<run>-<hash>`
    (manifest, run results, compiled SQL and a debug log: about 12 MB), two a night: left
    alone they grow by gigabytes a year. The project's target/ is shared by every deployment
    run from this checkout (tests, benchmarks, a dev home), so a folder is deleted only when
    nothing was written to it (folder or log) for days: never one in use, nor one whose run
    results a benchmark still reads."""
    target = DBT_PROJECT_DIR / "target"
    cutoff = time.time() - min_age_days * 86_400
    removed: list[Path] = []
    for step in ("dbt_warehouse", "dbt_customer_marts"):
        touched: list[tuple[float, Path]] = []
        for path in target.glob(f"{step}-*"):
            try:
                if path.is_dir():
                    times = [path.stat().st_mtime]
                    log = path / "dbt.log"
                    if log.exists():
                        times.append(log.stat().st_mtime)
                    touched.append((max(times), path))
            except FileNotFoundError:  # removed meanwhile by another process
                continue
        touched.sort(reverse=True)
        for when, old in touched[keep:]:
            if when < cutoff:
                shutil.rmtree(old, ignore_errors=True)
                removed.append(old)
    return removed
