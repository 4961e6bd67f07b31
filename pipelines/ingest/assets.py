"""Ingest assets: one partitioned asset per canonical entity, loading every source mapping of
that entity through the one loader engine (`pipelines.ingest.engine`); a run over many
delivery dates (a backfill) loads each mapping's dates with one `load_partitions` call."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import dagster as dg
import duckdb

from pipelines.ingest.canonical import raw_table
from pipelines.ingest.engine import load_partitions, partition_is_unchanged
from pipelines.ingest.load_log import SourceCounts, source_counts, stale_deliveries
from pipelines.ingest.mapping import ENTITIES, MappingError, SourceMapping, load_mappings
from pipelines.ingest.results import PartitionResult, summarize_warnings
from pipelines.ingest.schema import ensure_raw_schema
from pipelines.lib.duck import connect_restricted
from pipelines.lib.erasure_guards import purge_erased
from pipelines.lib.key_check import verify_key
from pipelines.lib.pseudonym import PseudonymKeyError
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.retry import TRANSIENT_RETRY
from pipelines.lib.settings import Settings

#: The blocking check of every ingest asset (CRM_MAX_QUARANTINE_SHARE).
QUARANTINE_CHECK = "quarantine_share"
#: The alerting check of a night: a source's quarantined share jumped (CRM_QUARANTINE_SPIKE_FACTOR).
SPIKE_CHECK = "quarantine_spike"
#: The nights a night's quarantined share is compared with, and the share below which a
#: night is never a spike (1 % of rows read).
SPIKE_TRAILING_DAYS = 7
SPIKE_FLOOR = 0.01

#: Pool that serialises every step writing the warehouse file (DuckDB: one writer per file).
WAREHOUSE_POOL = "warehouse"


#: Writes raw rows as Parquet for Spark: (restricted store connection, settings, entity,
#: delivery dates) -> (rows, files). Passed in by the composition layer
#: (pipelines/definitions.py), so that the load does not depend on pipelines/spark.
RawExport = Callable[[duckdb.DuckDBPyConnection, Settings, str, list[date]], tuple[int, int]]


def build_ingest_asset(
    entity: str, partitions_def: dg.PartitionsDefinition, spark_export: RawExport | None = None
) -> dg.AssetsDefinition:
    @dg.asset(
        name=entity,
        key_prefix="raw",
        group_name="ingest",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        pool=WAREHOUSE_POOL,
        kinds={"duckdb"},
        check_specs=[
            dg.AssetCheckSpec(
                QUARANTINE_CHECK,
                asset=dg.AssetKey(["raw", entity]),
                blocking=True,
                description=(
                    "No source quarantines more than CRM_MAX_QUARANTINE_SHARE of the rows it "
                    "delivered in the run's delivery dates"
                ),
            ),
            dg.AssetCheckSpec(
                SPIKE_CHECK,
                asset=dg.AssetKey(["raw", entity]),
                blocking=False,
                description=(
                    "A night's quarantined share of each source is below "
                    "CRM_QUARANTINE_SPIKE_FACTOR times its share over the 7 nights before "
                    "(or below 1 %); a spike warns and sends an alert (CRM_ALERT_WEBHOOK_URL, "
                    "CRM_ALERT_EMAIL_TO)"
                ),
            ),
        ],
        description=(
            f"Raw `{entity}` rows of every source mapping with entity `{entity}`, typed, with "
            "lineage columns; rows that cannot be typed go to `raw.quarantine`. One partition "
            "per delivery date; a partition whose files are unchanged is skipped, a changed "
            "one is replaced."
        ),
    )
    def _ingest(
        context: dg.AssetExecutionContext, crm: CrmSettingsResource
    ) -> dg.MaterializeResult:
        settings = crm.settings
        mappings = _mappings_of(entity, settings, context)
        started = time.monotonic()
        keys = context.partition_keys
        force = context.run.tags.get("crm/force") == "true"
        outcomes, skipped = _load_changed(context, entity, mappings, keys, settings, force)
        tally = _tally(outcomes, context)
        seconds = round(time.monotonic() - started, 3)
        _fail_on(entity, tally.failures)
        for w in tally.warnings:
            context.log.warning(w)
        assert tally.rows_read == tally.rows_loaded + tally.rows_quarantined
        # Rows of people erased earlier (`crm forget`) in files delivered again: removed now,
        # before anything downstream reads them (counted as quarantined in the load log).
        erased = purge_erased(settings) if tally.rows_loaded else 0
        if erased:
            context.log.warning(
                f"raw: {erased} row(s) of erased people delivered again were removed"
            )
        spark_rows = _export_for_spark(context, entity, keys, settings, spark_export)
        per_source = _per_source(context, entity, mappings, keys, settings)
        check = quarantine_check(per_source, settings)
        if not check.passed:
            context.log.error(str(check.description))
        spike = _spike_check(context, entity, keys, settings)
        table_rows = _table_rows(settings, entity)
        return dg.MaterializeResult(
            check_results=[check, spike],
            metadata={
                "dagster/row_count": table_rows,  # the table's, every delivery date
                "dagster/table_name": f"restricted.{raw_table(entity)}",
                "mappings": ", ".join(m.name for m in mappings) or "(none)",
                "delivery_dates": len(keys),
                "files": tally.files,
                "bytes": tally.bytes,
                "rows_read": tally.rows_read,
                "rows_loaded": tally.rows_loaded,
                "rows_quarantined": tally.rows_quarantined,
                "duplicate_files": len(tally.duplicates),
                "rows_duplicate": sum(c.rows_duplicate for c in per_source),
                "rows_superseded": sum(c.rows_superseded for c in per_source),
                "per_source": dg.MetadataValue.md(counts_table(per_source)),
                "unchanged_partitions_skipped": len(skipped),
                "warnings": dg.MetadataValue.md(
                    "\n".join(f"- {w}" for w in tally.warnings) or "none"
                ),
                "rows_erased_on_redelivery": erased,
                **({"spark_parquet_rows": spark_rows} if spark_rows is not None else {}),
                "seconds": seconds,
            },
        )

    return _ingest


def _mappings_of(entity: str, settings: Settings, context) -> list[SourceMapping]:
    """The entity's source mappings, once the pseudonym key is the warehouse's."""
    try:
        # before anything is loaded: the key is the warehouse's (an erased person's rows
        # are recognised, and every customer keeps its id), pipelines/lib/key_check.py
        verify_key(settings)
    except PseudonymKeyError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    try:
        mappings = [m for m in load_mappings(settings.mappings_dir) if m.entity == entity]
    except MappingError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    if not mappings:
        context.log.info(f"no source mapping for {entity}: raw.{entity} stays empty")
    return mappings


Outcomes = dict[tuple[int, int], PartitionResult | MappingError]


def _load_changed(
    context,
    entity: str,
    mappings: list[SourceMapping],
    keys: list[str],
    settings: Settings,
    force: bool,
) -> tuple[Outcomes, list[str]]:
    """Load each mapping's changed partitions in one go (load_partitions reads the files
    of many delivery dates at once); the outcomes keyed (delivery date, mapping) so that
    they are taken in that order, as if each partition had been loaded on its own. Also
    returns the partitions skipped as unchanged."""
    outcomes: Outcomes = {}
    skipped: list[str] = []
    with connect_restricted(settings.restricted_db) as con:
        ensure_raw_schema(con)
        for m_index, mapping in enumerate(mappings):
            todo: list[tuple[int, date]] = []
            for k_index, key in enumerate(keys):
                delivery = date.fromisoformat(key)
                if not force and partition_is_unchanged(
                    con, mapping, settings.landing, delivery, settings.timezone
                ):
                    skipped.append(f"{mapping.name}/{key}")
                    continue
                todo.append((k_index, delivery))
            if not todo:
                continue
            loaded = load_partitions(
                con,
                mapping,
                settings.landing,
                [delivery for _, delivery in todo],
                reporting_currency=settings.currency,
                business_timezone=settings.timezone,
            )
            by_date = {r.delivery_date: r for r in loaded.partitions}
            for k_index, delivery in todo:
                outcomes[(k_index, m_index)] = loaded.failures.get(delivery) or by_date[delivery]
            context.log.info(
                f"raw.{entity}: {mapping.name}: {len(todo)} delivery date(s) loaded in "
                f"{loaded.seconds:.1f} s, {len(loaded.failures)} failed"
            )
    return outcomes, skipped


@dataclass
class _Tally:
    """The files of a run's loads added up, with their warnings and the failures."""

    files: int = 0
    bytes: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    duplicates: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _tally(outcomes: Outcomes, context) -> _Tally:
    tally = _Tally()
    files = []
    for key in sorted(outcomes):
        outcome = outcomes[key]
        if isinstance(outcome, MappingError):
            tally.failures.append(str(outcome))
            context.log.error(str(outcome))
            continue
        for f in outcome.files:
            tally.files += 1
            tally.bytes += f.bytes
            tally.rows_read += f.rows_read
            tally.rows_loaded += f.rows_loaded
            tally.rows_quarantined += f.rows_quarantined
            if f.status == "duplicate":
                tally.duplicates.append(f.file)
            files.append(f)
    tally.warnings = summarize_warnings(files)  # one line per source for extra columns
    return tally


def _fail_on(entity: str, failures: list[str]) -> None:
    if failures:
        raise dg.Failure(
            description=f"raw.{entity}: {len(failures)} source partition(s) failed; nothing "
            "partial was loaded for them:\n" + "\n".join(failures),
            metadata={"errors": dg.MetadataValue.md("\n".join(f"- {e}" for e in failures))},
            allow_retries=False,
        )


def _export_for_spark(
    context, entity: str, keys: list[str], settings: Settings, export: RawExport | None
) -> int | None:
    """The same rows as Parquet for the Spark target (pipelines/spark), when it is on."""
    if not settings.spark_export:
        return None
    if export is None:
        raise RuntimeError(
            "CRM_SPARK_EXPORT is on but the ingest assets were built without a Spark export "
            "(build_ingest_assets(..., spark_export=...), as pipelines/definitions.py does)"
        )
    with connect_restricted(settings.restricted_db, read_only=True) as con:
        spark_rows, files = export(con, settings, entity, [date.fromisoformat(k) for k in keys])
    context.log.info(f"raw.{entity}: {spark_rows:,} rows in {files} Parquet file(s) for Spark")
    return spark_rows


def _per_source(
    context, entity: str, mappings: list[SourceMapping], keys: list[str], settings: Settings
) -> list[SourceCounts]:
    """The load log of the run's delivery dates per source; a warning for each mapping whose
    earlier deliveries were loaded with another version of it."""
    first, last = date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])
    with connect_restricted(settings.restricted_db, read_only=True) as con:
        per_source = source_counts(con, first, last, entity)
        for mapping in mappings:
            stale = stale_deliveries(con, mapping, business_timezone=settings.timezone)
            if stale:
                context.log.warning(
                    f"{mapping.name}: {len(stale)} delivery date(s) from {stale[0]} to "
                    f"{stale[-1]} were loaded with another version of {mapping.label}; "
                    "load them again (crm backfill --force --full-refresh) to apply it"
                )
    return per_source


def counts_table(counts: list) -> str:
    """A Markdown table of ``source_counts`` rows."""
    head = "| source | read | loaded | quarantined | duplicates | superseded |\n|---|---|---|---|---|---|"
    rows = [
        f"| {c.source} | {c.rows_read:,} | {c.rows_loaded:,} | {c.rows_quarantined:,} | "
        f"{c.rows_duplicate:,} | {c.rows_superseded:,} |"
        for c in counts
    ]
    return "\n".join([head, *rows]) if rows else "no source delivered"


def quarantine_check(counts: list, settings: Settings) -> dg.AssetCheckResult:
    """Fails when a source's quarantined rows exceed CRM_MAX_QUARANTINE_SHARE of its rows
    read (over the delivery dates of the run)."""
    limit = settings.max_quarantine_share
    over = [c for c in counts if c.quarantine_share > limit]
    shares = {c.source: round(c.quarantine_share, 4) for c in counts}
    if over:
        description = "quarantined share above CRM_MAX_QUARANTINE_SHARE={:g}: {}".format(
            limit,
            "; ".join(
                f"{c.source} {c.rows_quarantined - c.rows_erased:,} of {c.rows_read:,} rows "
                f"({c.quarantine_share:.1%}), see raw.quarantine"
                for c in over
            ),
        )
    else:
        description = f"every source at or below {limit:.1%} quarantined"
    return dg.AssetCheckResult(
        check_name=QUARANTINE_CHECK,
        passed=not over,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={"max_share": limit, "shares": dg.MetadataValue.json(shares)},
    )


def _table_rows(settings: Settings, entity: str) -> int:
    """The rows of raw.<entity> (every delivery date); 0 before its first load."""
    with connect_restricted(settings.restricted_db, read_only=True) as con:
        try:
            return int(con.execute(f"SELECT count(*) FROM {raw_table(entity)}").fetchone()[0])
        except duckdb.CatalogException:
            return 0


def quarantine_spikes(
    night: list[SourceCounts], trailing: list[SourceCounts], factor: float
) -> list[tuple[SourceCounts, float]]:
    """The sources whose quarantined share tonight is at least SPIKE_FLOOR and more than
    `factor` times their share over the trailing nights (`trailing`: the same sources'
    counts over those nights); with each, that trailing share. A source without rows in
    the trailing nights has nothing to compare with: never a spike."""
    before = {c.source: c for c in trailing}
    spikes = []
    for c in night:
        past = before.get(c.source)
        if past is None or not past.rows_read:
            continue
        if (
            c.quarantine_share >= SPIKE_FLOOR
            and c.quarantine_share > factor * past.quarantine_share
        ):
            spikes.append((c, past.quarantine_share))
    return spikes


def _spike_check(context, entity: str, keys: list[str], settings: Settings) -> dg.AssetCheckResult:
    """SPIKE_CHECK for a night (a run of one delivery date; a backfill's range is not a
    night and passes); a spike is logged and alerted."""
    from pipelines.lib.alerts import Alert, notify

    if len(keys) != 1:
        return dg.AssetCheckResult(
            check_name=SPIKE_CHECK, passed=True, description="not a night: a range of deliveries"
        )
    night = date.fromisoformat(keys[0])
    with connect_restricted(settings.restricted_db, read_only=True) as con:
        tonight = source_counts(con, night, night, entity)
        trailing = source_counts(
            con, night - timedelta(days=SPIKE_TRAILING_DAYS), night - timedelta(days=1), entity
        )
    factor = settings.quarantine_spike_factor
    spikes = quarantine_spikes(tonight, trailing, factor)
    shares = {c.source: round(c.quarantine_share, 4) for c in tonight}
    if not spikes:
        return dg.AssetCheckResult(
            check_name=SPIKE_CHECK,
            passed=True,
            description=f"no source above {factor:g} x its trailing {SPIKE_TRAILING_DAYS} nights",
            metadata={"shares": dg.MetadataValue.json(shares)},
        )
    reason = "; ".join(
        f"{c.source}: {c.rows_quarantined - c.rows_erased:,} of {c.rows_read:,} rows "
        f"quarantined ({c.quarantine_share:.1%}) against {past:.1%} over the "
        f"{SPIKE_TRAILING_DAYS} nights before (CRM_QUARANTINE_SPIKE_FACTOR={factor:g})"
        for c, past in spikes
    )
    context.log.warning(f"raw.{entity}: quarantine spike: {reason}; reasons in raw.quarantine")
    alert = Alert(
        "quarantine_spike", context.run.job_name, context.run_id, f"raw.{entity}: {reason}", keys[0]
    )
    for error in notify(settings, alert):
        context.log.warning(error)
    return dg.AssetCheckResult(
        check_name=SPIKE_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=reason,
        metadata={"shares": dg.MetadataValue.json(shares), "factor": factor},
    )


def build_ingest_assets(
    partitions_def: dg.PartitionsDefinition, spark_export: RawExport | None = None
) -> list[dg.AssetsDefinition]:
    """One asset per raw entity; `spark_export` writes the loaded rows for Spark when
    CRM_SPARK_EXPORT is on."""
    return [build_ingest_asset(entity, partitions_def, spark_export) for entity in ENTITIES]
