"""The same dbt project on Apache Spark (dbt-spark): export the sources as Parquet, build.

DuckDB stays the engine of the nightly pipeline. This module lets a team run the dbt
project on Spark over the same inputs: `crm spark export` writes the raw tables (one
Parquet file per table and delivery date) and the CLV scores, `crm spark build` runs
`dbt build --target spark` over them (profiles.yml, target `spark`, `method: session`:
PySpark in the dbt process, `local[2]` unless CRM_SPARK_MASTER says otherwise).

Everything Spark reads and writes holds personal data (raw rows, the identity tables),
so it lives in the restricted store's folder: `$CRM_HOME/restricted/spark/`
(`sources/`, `warehouse/` with the tables dbt builds, `metastore_db/`). docs/spark.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from pipelines.lib.child_env import child_env
from pipelines.lib.duck import RESTRICTED, connect_warehouse
from pipelines.lib.pseudonym import PseudonymKeyError, load_key
from pipelines.lib.settings import DBT_PROJECT_DIR, Settings, SettingsError

#: The dbt sources Spark reads, by schema: what `crm spark export` writes.
RAW_TABLES = ("customers", "orders", "service_events", "social_interactions")
CLV_TABLE = "customer_scores"
#: HMAC block size of SHA-256.
_BLOCK = 64


class SparkBuildError(RuntimeError):
    """A Spark export or build that cannot run or failed; the message says why."""


@dataclass(frozen=True)
class SparkPaths:
    root: Path
    sources_override: Path | None = None

    @property
    def sources(self) -> Path:
        """Parquet files of the dbt sources: sources/raw/<table>/, sources/clv/customer_scores/;
        $CRM_SPARK_SOURCES_DIR (a local or mounted folder) when set."""
        return self.sources_override or self.root / "sources"

    @property
    def warehouse(self) -> Path:
        """spark.sql.warehouse.dir: the tables dbt builds, <schema>.db/<table>/ (Parquet)."""
        return self.root / "warehouse"

    @property
    def metastore(self) -> Path:
        return self.root / "metastore_db"

    def table(self, schema: str, name: str) -> Path:
        return self.warehouse / f"{schema}.db" / name


def spark_paths(settings: Settings) -> SparkPaths:
    return SparkPaths(settings.restricted / "spark", settings.spark_sources_dir)


def _partial(target: Path) -> Path:
    """Where `target` is written before the rename: a hidden name, which neither Spark nor
    the `*.parquet` globs read, so a crash mid-write leaves nothing they would pick up."""
    return target.with_name(f".{target.name}.partial")


def hmac_pads(key: bytes) -> tuple[str, str]:
    """The inner and outer padded keys of HMAC-SHA256 (RFC 2104), hex: what the Spark
    macro `pseudonym` needs to compute the same pseudonyms as pipelines.lib.pseudonym."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key).hex(), bytes(b ^ 0x5C for b in key).hex()


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def export_raw_table(
    con: duckdb.DuckDBPyConnection,
    paths: SparkPaths,
    table: str,
    deliveries: list[date] | None = None,
    *,
    catalog: str = "",
) -> tuple[int, int]:
    """Write raw.<table> as one Parquet file per delivery date,
    `sources/raw/<table>/<YYYY-MM-DD>.parquet`. `deliveries`: the dates to (re)write (a
    night), None = every date, and files of dates no longer in the table are removed (after
    an erasure, say). `con` holds the raw tables (the restricted store, or a connection
    where it is attached as `catalog`). Each file is written beside its final name and
    renamed into place. Returns (rows, files) written."""
    source = f'{catalog + "." if catalog else ""}raw."{table}"'
    folder = paths.sources / "raw" / table
    folder.mkdir(parents=True, exist_ok=True)
    present = [
        row[0]
        for row in con.execute(
            f"select distinct _delivery_date from {source} order by 1"
        ).fetchall()
    ]
    todo = present if deliveries is None else [d for d in present if d in set(deliveries)]
    for gone in set(deliveries or []) - set(present):
        # a requested delivery with no rows left (erased, purged): its old file goes
        (folder / f"{gone.isoformat()}.parquet").unlink(missing_ok=True)
    rows = 0
    for delivery in todo:
        target = folder / f"{delivery.isoformat()}.parquet"
        partial = _partial(target)
        con.execute(
            f"copy (select * from {source} where _delivery_date = ?) "
            f"to {_sql_text(str(partial))} (format parquet, compression zstd)",
            [delivery],
        )
        os.replace(partial, target)
        rows += con.execute(
            f"select count(*) from {source} where _delivery_date = ?", [delivery]
        ).fetchone()[0]
    if deliveries is None:
        keep = {f"{d.isoformat()}.parquet" for d in present}
        for stale in folder.glob("*.parquet"):
            if stale.name not in keep:
                stale.unlink()
    if not present and not any(folder.glob("*.parquet")):
        # Spark needs a file to know the columns: an empty one
        con.execute(
            f"copy (select * from {source} limit 0) to "
            f"{_sql_text(str(folder / 'empty.parquet'))} (format parquet)"
        )
    elif present:
        (folder / "empty.parquet").unlink(missing_ok=True)
    _restrict(paths.root)
    return rows, len(todo)


def export_clv_scores(con: duckdb.DuckDBPyConnection, paths: SparkPaths) -> int:
    """Write clv.customer_scores (the CLV asset's output, which dbt reads) whole, as
    `sources/clv/customer_scores/scores.parquet`; an empty file with the columns when the
    model has not run. `con`: the warehouse. Returns rows written."""
    has_scores = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'clv' and table_name = ?",
        [CLV_TABLE],
    ).fetchone()[0]
    query = (
        f"select * from clv.{CLV_TABLE}"
        if has_scores
        else (
            "select cast(null as varchar) as customer_id, cast(null as double) as p_alive, "
            "cast(null as double) as expected_purchases_90d, "
            "cast(null as decimal(18, 2)) as clv_365d, cast(null as boolean) as is_stale, "
            "cast(null as date) as scored_as_of limit 0"
        )
    )
    folder = paths.sources / "clv" / CLV_TABLE
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "scores.parquet"
    partial = _partial(target)
    con.execute(f"copy ({query}) to {_sql_text(str(partial))} (format parquet)")
    os.replace(partial, target)
    _restrict(paths.root)
    return con.execute(f"select count(*) from ({query})").fetchone()[0]


def export_targets(settings: Settings, paths: SparkPaths) -> int:
    """Write the SMART targets of the targets file (validated as for the nightly run) as
    `sources/targets/kpi_targets/targets.parquet`, the table dbt reads as source
    targets.kpi_targets on Spark. Returns rows written; SparkBuildError with every bad row
    when the file is bad."""
    from pipelines.targets import TABLE, TargetsError, load_targets, read_targets

    try:
        targets = read_targets(settings.targets_file)
    except TargetsError as exc:
        raise SparkBuildError(f"the targets file has errors:\n{exc}") from None
    folder = paths.sources / "targets" / TABLE
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "targets.parquet"
    partial = _partial(target)
    with duckdb.connect() as con:
        rows = load_targets(con, targets)
        con.execute(f"copy targets.{TABLE} to {_sql_text(str(partial))} (format parquet)")
    os.replace(partial, target)
    _restrict(paths.root)
    return rows


def export_calendar(paths: SparkPaths, as_of: date) -> int:
    """Write the business calendar (pipelines/business_calendar, the years of the exported
    ticket events) as `sources/calendar/business_days/calendar.parquet`, the table dbt
    reads as source calendar.business_days on Spark. Returns rows written."""
    from pipelines.lib.business_calendar import TABLE, calendar_years, load_business_days

    events = paths.sources / "raw" / "service_events"
    with duckdb.connect() as con:
        first = last = None
        if any(events.glob("*.parquet")):
            first_at, last_at = con.execute(
                "select min(event_at), max(event_at) from read_parquet(?, union_by_name = true)",
                [str(events / "*.parquet")],
            ).fetchone()
            first = first_at.date() if first_at is not None else None
            last = last_at.date() if last_at is not None else None
        folder = paths.sources / "calendar" / TABLE
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "calendar.parquet"
        partial = _partial(target)
        rows = load_business_days(con, calendar_years(first, last, as_of))
        con.execute(f"copy calendar.{TABLE} to {_sql_text(str(partial))} (format parquet)")
    os.replace(partial, target)
    _restrict(paths.root)
    return rows


def export_sources(
    settings: Settings,
    deliveries: list[date] | None = None,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, int]:
    """`crm spark export`: every raw table (export_raw_table) and the CLV scores
    (export_clv_scores) of the deployment of `settings`. Returns rows written per table."""
    paths = spark_paths(settings)
    if not settings.restricted_db.exists():
        raise SparkBuildError(
            f"no restricted store at {settings.restricted_db}: run the pipeline first "
            "(`crm backfill` or `crm run`), then `crm spark export`"
        )
    written: dict[str, int] = {}
    with connect_warehouse(settings.warehouse_db, settings.restricted_db, read_only=True) as con:
        for table in RAW_TABLES:
            exists = con.execute(
                "select count(*) from duckdb_tables() "
                "where database_name = ? and schema_name = 'raw' and table_name = ?",
                [RESTRICTED, table],
            ).fetchone()[0]
            if not exists:
                raise SparkBuildError(
                    f"the restricted store has no table raw.{table}: run the pipeline first"
                )
            rows, files = export_raw_table(con, paths, table, deliveries, catalog=RESTRICTED)
            written[f"raw.{table}"] = rows
            progress(f"raw.{table}: {rows:,} rows in {files} delivery file(s)")
        written[f"clv.{CLV_TABLE}"] = export_clv_scores(con, paths)
        progress(f"clv.{CLV_TABLE}: {written[f'clv.{CLV_TABLE}']:,} rows")
    return written


def refresh_after_erasure(settings: Settings) -> bool:
    """`crm forget` removed a person from the restricted store and the warehouse: rewrite
    the Parquet copies of the sources from them (every delivery, so files of older
    deliveries lose the person's rows too) and delete what Spark built from the old copies
    (its warehouse and metastore: `crm spark build` rebuilds everything anyway). Nothing
    to do when the Spark target was never used. Returns whether anything was done."""
    paths = spark_paths(settings)
    if not paths.sources.exists() and not paths.root.exists():
        return False
    if paths.sources.exists():
        export_sources(settings)
    for built in (paths.warehouse, paths.metastore, paths.root / "metastore_db-logs"):
        shutil.rmtree(built, ignore_errors=True)
    return True


def _restrict(root: Path) -> None:
    """Owner-only folder: the Spark area holds personal data, as the restricted store does."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)


def java_home(configured: str | None = None) -> str | None:
    """A Java runtime for PySpark: `configured` ($JAVA_HOME, `Settings.java_home`), else
    `java` on the PATH (None: neither)."""
    if configured and Path(configured, "bin", "java").exists():
        return configured
    java = shutil.which("java")
    return str(Path(java).resolve().parents[1]) if java else None


def spark_env(settings: Settings) -> dict[str, str]:
    """Environment of `dbt --target spark` for the deployment of `settings` (profiles.yml).
    The HMAC pads of the key go to the environment of the dbt process, which is the Spark
    driver, never to Spark settings (those are on the JVM's command line)."""
    paths = spark_paths(settings)
    try:
        key = load_key(settings.pseudonym_key_file, key=settings.pseudonym_key)
    except PseudonymKeyError as exc:
        raise SparkBuildError(str(exc)) from exc
    ipad, opad = hmac_pads(key)
    env = {
        "CRM_SPARK_SOURCES_DIR": str(paths.sources),
        "CRM_SPARK_WAREHOUSE_DIR": str(paths.warehouse),
        "CRM_SPARK_METASTORE_DIR": str(paths.metastore),
        "DBT_ENV_SECRET_CRM_PSEUDONYM_IPAD": ipad,
        "DBT_ENV_SECRET_CRM_PSEUDONYM_OPAD": opad,
        # the DuckDB profile is parsed too; point it at scratch files, never the warehouse
        "CRM_WAREHOUSE_DB": str(paths.root / "parse_only.duckdb"),
        "CRM_RESTRICTED_DB": str(paths.root / "parse_only_restricted.duckdb"),
    }
    home = java_home(settings.java_home)
    if home:
        env["JAVA_HOME"] = home
    return env


def build(
    settings: Settings,
    as_of: date,
    *,
    tests: bool = True,
    select: list[str] | None = None,
    stream: bool = True,
) -> float:
    """`dbt build --target spark --full-refresh` as of `as_of` over the exported sources.

    `tests`: also run the data tests (`dbt build`); else `dbt run` + seeds. dbt's output
    goes to the console (`stream`) or is kept for the error message. Returns seconds."""
    from pipelines.transform.project import dbt_executable

    if java_home(settings.java_home) is None:
        raise SparkBuildError(
            "PySpark needs a Java runtime (17 or newer) and none was found: install one "
            "(Debian: apt install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    paths = spark_paths(settings)
    missing = [
        table for table in RAW_TABLES if not any((paths.sources / "raw" / table).glob("*.parquet"))
    ]
    if not any((paths.sources / "clv" / CLV_TABLE).glob("*.parquet")):
        missing.append(f"clv.{CLV_TABLE}")
    if missing:
        raise SparkBuildError(
            f"no Parquet files for {', '.join(m if '.' in m else 'raw.' + m for m in missing)} "
            f"under {paths.sources}: run `crm spark export` first"
        )
    _restrict(paths.root)
    export_targets(settings, paths)
    export_calendar(paths, as_of)
    env = child_env(spark_env(settings))
    project = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    from pipelines.ingest.mapping import MappingError
    from pipelines.transform.assets import settings_vars

    try:
        vars_ = json.dumps({"as_of_date": as_of.isoformat(), **settings_vars(settings)})
    except (MappingError, SettingsError) as exc:
        raise SparkBuildError(str(exc)) from exc
    started = time.monotonic()
    steps = [["build"]] if tests else [["seed"], ["run"]]
    for step in steps:
        args = [
            dbt_executable(),
            *step,
            "--target",
            "spark",
            "--full-refresh",
            "--vars",
            vars_,
            "--target-path",
            str(paths.root / "dbt_target"),
            "--log-path",
            str(paths.root / "dbt_logs"),
            *project,
        ]
        if step == ["build"]:
            args += ["--exclude-resource-type", "unit_test"]
        if select:
            args += ["--select", *select]
        proc = subprocess.run(
            args,
            cwd=DBT_PROJECT_DIR,
            env=env,
            stdout=None if stream else subprocess.PIPE,
            stderr=subprocess.STDOUT if not stream else None,
            text=True,
        )
        if proc.returncode != 0:
            tail = "" if stream else "\n" + (proc.stdout or "")[-6000:]
            raise SparkBuildError(
                f"dbt {step[0]} --target spark failed (exit {proc.returncode}); "
                f"dbt's log: {paths.root / 'dbt_logs' / 'dbt.log'}{tail}"
            )
    return time.monotonic() - started
