"""Publish the marts for BI: serving.duckdb, Parquet, Hyper, a manifest — swapped in atomically.

```
$CRM_HOME/serving/
  serving.duckdb  -> current/serving.duckdb   the published tables (schema main) + _publication,
                                              _publication_tables
  parquet         -> current/parquet          one file per table (zstd, level 1)
  tableau         -> current/tableau          <table>.hyper ("Extract"."Extract") and .tds
  manifest.json   -> current/manifest.json    what was published, when, as of which date, rows
  current         -> .releases/<publication id>   THE one link that changes
  .releases/<publication id>/                 the current and the previous publication,
                                              each with its KPI review (reports/, see
                                              pipelines/publish/release.py)
```

How a publication happens (docs/publishing.md explains why):

1. Under an exclusive lock (`serving/.publish.lock`), the new publication is built in its own
   release folder `serving/.releases/<publication id>/`: the warehouse is ATTACHed READ_ONLY
   to an in-memory DuckDB, each table is copied into a new DuckDB file written with a fixed
   storage version (`STORAGE_VERSION`, so older DuckDB and JDBC clients can open it),
   CHECKPOINTed and closed; Parquet and Hyper files are written from that staged copy, so all
   formats hold the same rows (the Hyper extracts by a worker thread beside DuckDB's work,
   `_HyperWorker`). Everything is fsynced.
2. Then one atomic step publishes all of it: a new symbolic link to the release replaces
   `serving/current` (`os.replace`, atomic on POSIX). The fixed links `serving.duckdb`,
   `parquet/`, `tableau/` and `manifest.json` point through `current`, so a reader sees
   either the whole old publication or the whole new one, at every instant, even if the
   process is killed at any point: there is no state in which some files are new and
   others old. A reader that has the old serving.duckdb open keeps reading it (the previous
   release stays on disk until the next publication).
3. A publication killed before step 2 leaves an unfinished release folder, which the next
   publication deletes; the previous publication stays current. Releases older than the
   previous one are deleted after the swap. `restore_previous()` points `current` back at
   the previous release (docs/operations.md).

**By difference.** The large facts (`ROW_KEYS`) change in a small share of their rows each
night. When the current release was written by the same DuckDB version in the same storage
version, the new release starts from a copy of its serving.duckdb (and of its Hyper
extracts) and each of those facts is patched: the rows whose key is new, gone, or whose
content hash (DuckDB `hash()` of every column) differs from the warehouse's are deleted and
inserted again; the row count is checked against the warehouse. Every other table is
written whole, and so is a fact whose columns changed, whose rows patched since its last
whole write pass `PATCH_LIMIT` of its rows (deleted rows keep their space until a file is
rewritten), or when `.publish-whole` is present in the serving folder (written by an
erasure, so that no file of the new release keeps the person's deleted rows; removed after
the next publication). Parquet files are always written whole. The manifest records, per
table, how it was written.

**Only the keys the builds wrote.** dbt keeps, beside each fact, the keys every build of it
wrote (`main.<fact>__written_keys`, macro `keep_written_keys`): a fact built `delete+insert`
by its dbt `unique_key` changes no other row. The manifest records the last build the
release saw (`written_keys_through`); the next publication compares only the rows whose
`unique_key` was written after it, on both sides. It compares every row when the log is
missing, when it no longer holds that build (a warehouse older than the release, or
pruned), or when a whole build (first build, `--full-refresh`) came after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines.lib.duck import duckdb_config
from pipelines.publish import tableau
from pipelines.publish.columns import COLUMNS
from pipelines.publish.pii import check_no_pii

# The on-disk format of serving.duckdb. v1.0.0 files open in every DuckDB since 1.0 (CLI,
# Python, the JDBC driver Tableau uses); newer versions would force analysts onto DuckDB
# >= that version for a small gain in compression. Change only together with docs/publishing.md.
STORAGE_VERSION = "v1.0.0"
MARTS_SCHEMA = "marts"
#: Tables published next to the marts (every table and view of schema `marts`), with the
#: schemas dbt and the pipeline build them in: the KPI definitions and the SLA targets
#: (seeds), the managers' SMART targets as validated and loaded (pipelines/targets).
EXTRA_TABLES: dict[str, tuple[str, ...]] = {
    "kpi_definitions": ("seeds",),
    "kpi_targets": ("targets",),
    "sla_targets": ("seeds",),
}
PUBLICATION_TABLE = "_publication"
PUBLICATION_TABLES_TABLE = "_publication_tables"
SERVING_DB = "serving.duckdb"
MANIFEST = "manifest.json"
PARQUET_DIR = "parquet"
#: zstd at level 1: at the large preset, with the row order not kept (below), DuckDB writes
#: the interactions' 22.5 M rows in 10 s instead of 23 s at its default level 3 in order,
#: for a file of the same size (1.07 GB); level 1 alone: 14 s
PARQUET_OPTIONS = "format parquet, compression zstd, compression_level 1"
TABLEAU_DIR = "tableau"
RELEASES_DIR = ".releases"
#: The KPI review of a release (`publish(review=...)`): `<release>/reports/kpi_review.html`.
#: `$CRM_HOME/reports/latest` is a link to `serving/current/reports`, so the review and the
#: tables change in the same swap of `current`, and `restore_previous` restores both.
REVIEW_DIR = "reports"
REVIEW_FILE = "kpi_review.html"
CURRENT = "current"
#: The fixed entry points analysts use, each a link through `current`.
ENTRY_POINTS = (SERVING_DB, PARQUET_DIR, TABLEAU_DIR, MANIFEST)
FORMATS = ("duckdb", "parquet", "hyper")
#: The tables published by difference (see the module docstring), each with its unique key
#: (dbt tests and the quality gate hold it unique and not null before anything is
#: published). The other marts are small, or change whole every night (dim_customers'
#: recency moves with D).
ROW_KEYS: dict[str, str] = {
    "fct_orders": "order_id",
    "fct_order_lines": "order_line_id",
    "fct_service_tickets": "ticket_id",
    "fct_social_interactions": "interaction_id",
}
#: A table is written whole again once the keys patched since its last whole write (rows
#: replaced, added or removed) exceed this share of its rows.
PATCH_LIMIT = 0.10
#: DuckDB's memory limit while the publication's files are written (Parquet copies stream),
#: below the pipeline's (`CRM_DUCKDB_MEMORY_LIMIT`, 4GB) used for the comparisons: the Hyper
#: server works beside it.
WRITE_MEMORY_LIMIT = "2GB"
#: Present in the serving folder: the next publication writes every table whole.
WHOLE_MARKER = ".publish-whole"
#: The keys each build of a fact wrote, in the warehouse's schema `main` (dbt macro
#: keep_written_keys): columns build, whole and the model's unique_key.
WRITTEN_KEYS_SUFFIX = "__written_keys"


class PublishError(RuntimeError):
    """The publication could not be built; the previous one is still in place."""


@dataclass(frozen=True)
class PublishResult:
    """What one publication wrote (for the Dagster materialization metadata)."""

    publication_id: str
    published_at: datetime
    as_of_date: date | None
    serving_dir: Path
    serving_db: Path
    manifest_path: Path
    storage_version: str
    row_counts: dict[str, int]
    files: dict[str, int]  # path relative to serving_dir -> bytes
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)
    #: tables published by difference -> keys whose row was replaced, added or removed (the
    #: others were written whole)
    patched: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def metadata(self) -> dict[str, Any]:
        """Plain JSON-able values: pass to `dg.MaterializeResult(metadata=...)`."""
        return {
            "publication_id": self.publication_id,
            "published_at": self.published_at.isoformat(),
            "as_of_date": self.as_of_date.isoformat() if self.as_of_date else None,
            "serving_db": str(self.serving_db),
            "storage_version": self.storage_version,
            "tables": len(self.row_counts),
            "total_rows": self.total_rows,
            "total_bytes": self.total_bytes,
            "seconds": round(self.seconds, 3),
            **{f"rows.{name}": rows for name, rows in sorted(self.row_counts.items())},
            **{f"seconds.{step}": round(s, 3) for step, s in self.step_seconds.items()},
            **{f"patched_rows.{name}": rows for name, rows in sorted(self.patched.items())},
        }


# --------------------------------------------------------------------------------------------
# Helpers


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _publish_lock(serving_dir: Path) -> Iterator[None]:
    """One publication at a time per serving folder (a second one waits)."""
    with open(serving_dir / ".publish.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _discover(con: duckdb.DuckDBPyConnection, marts: list[str] | None) -> dict[str, str]:
    """published name -> schema in the warehouse (attached as `wh`)."""
    found = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = 'wh' "
        "union all select schema_name, view_name from duckdb_views() "
        "where database_name = 'wh' and not internal"
    ).fetchall()
    by_schema: dict[str, set[str]] = {}
    for schema, table in found:
        by_schema.setdefault(schema, set()).add(table)
    available = {table: MARTS_SCHEMA for table in by_schema.get(MARTS_SCHEMA, set())}
    for table, schemas in EXTRA_TABLES.items():
        for schema in schemas:
            if table not in available and table in by_schema.get(schema, set()):
                available[table] = schema
    if marts is None:
        if not available:
            raise PublishError(
                f"the warehouse has no table in schema {MARTS_SCHEMA!r}: run `dbt build` first"
            )
        return dict(sorted(available.items()))
    missing = [name for name in marts if name not in available]
    if missing:
        raise PublishError(
            f"not in the warehouse: {', '.join(missing)} "
            f"(available: {', '.join(sorted(available)) or 'none'})"
        )
    return {name: available[name] for name in marts}


def _as_of(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> date | None:
    if "rpt_kpi_review" not in tables:
        return None
    column = COLUMNS["rpt_kpi_review"]["as_of_date"]
    try:
        (value,) = con.execute(
            f"select max({_ident(column)})::date from srv.main.rpt_kpi_review"
        ).fetchone()
    except duckdb.Error:
        return None
    return value


def storage_version_of(con: duckdb.DuckDBPyConnection, database: str) -> str:
    """The storage version DuckDB reports for an attached database, e.g. 'v1.0.0+'."""
    (tags,) = con.execute(
        "select tags from duckdb_databases() where database_name = ?", [database]
    ).fetchone()
    return dict(tags).get("storage_version", "unknown")


# --------------------------------------------------------------------------------------------
# Publish


def publish(
    warehouse_db: Path,
    serving_dir: Path,
    *,
    marts: list[str] | None = None,
    as_of: date | None = None,
    storage_version: str = STORAGE_VERSION,
    formats: tuple[str, ...] = FORMATS,
    by_difference: bool = True,
    review: Path | None = None,
) -> PublishResult:
    """Publish the marts of `warehouse_db` under `serving_dir` (see the module docstring).

    `marts`: the tables to publish (default: every table and view in schema `marts`, plus
    `EXTRA_TABLES`: kpi_definitions, kpi_targets, sla_targets). `as_of`: the as-of date
    recorded in the manifest (default: the `as_of_date` of rpt_kpi_review). `formats`: a subset of ("duckdb", "parquet", "hyper");
    serving.duckdb is always written. `by_difference`: patch the `ROW_KEYS` tables of a copy
    of the current release where possible (False: every table whole). `review`: the rendered
    KPI review (a file, or a folder of files), copied into the release under `reports/`
    before the swap (None:
    the release has an empty `reports/`, and no review is shown beside its tables). Raises
    `PiiColumnError` before writing anything if a column looks like personal data,
    `PublishError` if a table is missing.
    """
    started = time.perf_counter()
    warehouse_db = Path(warehouse_db)
    serving_dir = Path(serving_dir)
    if not warehouse_db.exists():
        raise PublishError(f"{warehouse_db} does not exist: run the pipeline first")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise PublishError(f"unknown format(s) {sorted(unknown)}; use {FORMATS}")
    serving_dir.mkdir(parents=True, exist_ok=True)
    published_at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    publication_id = f"{published_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    steps: dict[str, float] = {}

    with _publish_lock(serving_dir):
        releases = serving_dir / RELEASES_DIR
        releases.mkdir(exist_ok=True)
        for stale in serving_dir.glob(".staging-*"):  # older layouts, left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        keep = {_current_release(serving_dir), *_previous(serving_dir)}
        for unfinished in releases.iterdir():  # killed before its swap; we hold the lock
            if unfinished.is_dir() and unfinished.name not in keep:
                shutil.rmtree(unfinished, ignore_errors=True)
        staging = releases / publication_id
        staging.mkdir()
        whole_request = _whole_request(serving_dir)
        current = _current_release(serving_dir)
        base = (
            releases / current
            if by_difference and whole_request is None and current and (releases / current).is_dir()
            else None
        )
        try:
            built = _build(
                warehouse_db,
                staging,
                marts,
                as_of,
                storage_version,
                formats,
                publication_id,
                published_at,
                steps,
                base,
            )
            t = time.perf_counter()
            review_files = _stage_review(staging, review)
            files = _swap(staging, serving_dir, [*built["files"], *review_files])
            steps["swap"] = time.perf_counter() - t
            # only the request this publication saw: one written meanwhile (an erasure
            # while the files were written) stays for the next publication
            if whole_request is not None and _whole_request(serving_dir) == whole_request:
                (serving_dir / WHOLE_MARKER).unlink(missing_ok=True)
        except BaseException:
            if _current_release(serving_dir) != staging.name:  # not if it was swapped in
                shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):  # nothing was ever published here
                releases.rmdir()
            raise

    return PublishResult(
        publication_id=publication_id,
        published_at=published_at,
        as_of_date=built["as_of"],
        serving_dir=serving_dir,
        serving_db=serving_dir / SERVING_DB,
        manifest_path=serving_dir / MANIFEST,
        storage_version=built["storage_version"],
        row_counts=built["row_counts"],
        files=files,
        seconds=time.perf_counter() - started,
        step_seconds=steps,
        patched=built["patched"],
    )


def request_whole_publication(serving_dir: Path, reason: str) -> None:
    """Make the next publication write every table whole (no copy of the current release):
    after an erasure, so that the new files hold no deleted rows of the person."""
    serving_dir = Path(serving_dir)
    serving_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ} {uuid.uuid4().hex[:8]}"
    (serving_dir / WHOLE_MARKER).write_text(f"{reason}\n{stamp}\n", encoding="utf-8")


def _whole_request(serving_dir: Path) -> str | None:
    """The content of the whole-publication request (None: none)."""
    try:
        return (serving_dir / WHOLE_MARKER).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _build(
    warehouse_db: Path,
    staging: Path,
    marts: list[str] | None,
    as_of: date | None,
    storage_version: str,
    formats: tuple[str, ...],
    publication_id: str,
    published_at: datetime,
    steps: dict[str, float],
    base: Path | None,
) -> dict[str, Any]:
    """Write every file of the publication into `staging` (patching a copy of the release
    `base` where possible); return what was written."""
    t = time.perf_counter()
    staged_db = staging / SERVING_DB
    base_manifest = _patch_base(base, storage_version)
    base_extracts = None
    if base is not None and base_manifest is not None:
        shutil.copyfile(base / SERVING_DB, staged_db)
        base_extracts = base / TABLEAU_DIR
        steps["copy_base"] = time.perf_counter() - t
        t = time.perf_counter()
    # The Hyper extracts are written by one worker thread while DuckDB works (the Hyper server
    # is a process of its own, and a copy waits on the disk, not the cores): the copies of the
    # base extracts of the facts while DuckDB compares the facts, then, once DuckDB is down to
    # WRITE_MEMORY_LIMIT, the patches of the facts and each other table as soon as its
    # Parquet file exists.
    hyper = _HyperWorker(staging / TABLEAU_DIR, staged_db) if "hyper" in formats else None
    # in memory: spills go next to the warehouse, not into the publication
    con = duckdb.connect(
        config={**duckdb_config(), "temp_directory": str(warehouse_db.parent / "publish.tmp")}
    )
    try:
        con.execute(f"attach {_literal(str(warehouse_db))} as wh (read_only)")
        tables = _discover(con, marts)
        columns = {
            name: [
                row[0]
                for row in con.execute(
                    "select column_name from duckdb_columns() where database_name = 'wh' "
                    "and schema_name = ? and table_name = ? order by column_index",
                    [schema, name],
                ).fetchall()
            ]
            for name, schema in tables.items()
        }
        check_no_pii(columns)  # before anything is written
        if hyper is not None and base_extracts:
            for name in tables:
                if name in ROW_KEYS and (base_extracts / f"{name}.hyper").exists():
                    hyper.copy(base_extracts / f"{name}.hyper", name)

        con.execute(
            f"attach {_literal(str(staged_db))} as srv "
            f"(storage_version {_literal(storage_version)})"
        )
        row_counts: dict[str, int] = {}
        written: dict[str, dict[str, Any]] = {}
        # facts whose extract is patched from its changes -> (changed keys, changed rows)
        patched_extracts: dict[str, tuple[Path, Path]] = {}
        patchable: set[str] = set()
        if base_manifest is not None:
            patchable = _keep_patchable(con, tables, base_manifest)
        for name, schema in tables.items():
            source = f"wh.{_ident(schema)}.{_ident(name)}"
            target = f"srv.main.{_ident(name)}"
            state = None
            log = _written_keys(con, name) if name in ROW_KEYS else None
            if base_manifest is not None and name in patchable:
                state = _patch(
                    con, name, source, target, columns[name], base_manifest["tables"][name], log
                )
            if state is None:
                con.execute(f"drop table if exists {target}")
                con.execute(f"create table {target} as select * from {source}")
                state = {"written": "whole", "patched_rows_since_whole": 0}
            if log is not None:
                state["written_keys_through"] = log.through
            written[name] = state
            (row_counts[name],) = con.execute(f"select count(*) from {target}").fetchone()
            if state["written"] == "patched" and hyper is not None and hyper.copied(name):
                key = _ident(ROW_KEYS[name])
                keys_file = staging / f".{name}.changed-keys.parquet"
                rows_file = staging / f".{name}.changed-rows.parquet"
                con.execute(
                    f"copy (select k as {key} from __changes) to {_literal(str(keys_file))} "
                    "(format parquet)"
                )
                con.execute(
                    f"copy (select * from {target} where {key} in "
                    f"(select k from __changes where not removed)) to {_literal(str(rows_file))} "
                    "(format parquet, compression zstd)"
                )
                patched_extracts[name] = (keys_file, rows_file)
        con.execute("detach wh")
        resolved_as_of = as_of or _as_of(con, tables)
        version = storage_version_of(con, "srv")
        for bookkeeping in (PUBLICATION_TABLE, PUBLICATION_TABLES_TABLE):
            con.execute(f"drop table if exists srv.main.{bookkeeping}")
        con.execute(
            f"create table srv.main.{PUBLICATION_TABLE} as select ?::varchar as publication_id, "
            "?::timestamp as published_at, ?::date as as_of_date, ?::varchar as storage_version, "
            "?::varchar as duckdb_version, ?::varchar as source",
            [
                publication_id,
                published_at,
                resolved_as_of,
                version,
                duckdb.__version__,
                warehouse_db.name,
            ],
        )
        con.execute(
            f"create table srv.main.{PUBLICATION_TABLES_TABLE} "
            "(publication_id varchar, table_name varchar, row_count bigint, column_count integer)"
        )
        con.executemany(
            f"insert into srv.main.{PUBLICATION_TABLES_TABLE} values (?, ?, ?, ?)",
            [[publication_id, name, rows, len(columns[name])] for name, rows in row_counts.items()],
        )
        con.execute("checkpoint srv")
        steps["duckdb"] = time.perf_counter() - t
        # What is left for DuckDB (copies to Parquet) streams: its buffers from the
        # comparisons are given back before the Hyper server patches and writes beside it
        _lower_memory_limit(con, WRITE_MEMORY_LIMIT)
        if hyper is not None:
            for name, (keys_file, rows_file) in patched_extracts.items():
                hyper.patch(name, ROW_KEYS[name], keys_file, rows_file, row_counts[name])

        files = [SERVING_DB]
        t = time.perf_counter()
        if "parquet" in formats:
            (staging / PARQUET_DIR).mkdir()
        if "parquet" in formats or hyper is not None:
            # the files' row order is not part of the contract: DuckDB writes a file with
            # both threads when it need not keep the table's order
            con.execute("set preserve_insertion_order = false")
            # the tables whose extract is written from this Parquet file first, smallest first,
            # so that the Hyper worker has work while the large facts are written
            for name in sorted(tables, key=lambda n: (n in patched_extracts, row_counts[n])):
                if "parquet" in formats:
                    target = staging / PARQUET_DIR / f"{name}.parquet"
                elif name in patched_extracts:
                    continue
                else:  # Hyper reads Parquet: a temporary file
                    target = staging / f"{name}.hyper-source.parquet"
                con.execute(
                    f"copy (select * from srv.main.{_ident(name)}) to {_literal(str(target))} "
                    f"({PARQUET_OPTIONS})"
                )
                if hyper is not None and name not in patched_extracts:
                    hyper.write(name, target, temporary="parquet" not in formats)
            if "parquet" in formats:
                files += [f"{PARQUET_DIR}/{name}.parquet" for name in tables]
            steps["parquet" if "parquet" in formats else "hyper_sources"] = time.perf_counter() - t
        con.execute("detach srv")
    except BaseException:
        if hyper is not None:
            hyper.cancel()
        raise
    finally:
        con.close()
    if hyper is not None:
        t = time.perf_counter()
        hyper.wait()  # raises the worker's error, if any
        steps["hyper_wait"] = time.perf_counter() - t
        steps["hyper"] = hyper.seconds
        for name in tables:
            files += [f"{TABLEAU_DIR}/{name}.hyper", f"{TABLEAU_DIR}/{name}.tds"]
    if staged_db.with_name(staged_db.name + ".wal").exists():
        raise PublishError(f"{staged_db} still has a write-ahead log after CHECKPOINT")

    sizes = {rel: (staging / rel).stat().st_size for rel in files}
    manifest = {
        "publication_id": publication_id,
        "published_at": published_at.isoformat() + "Z",
        "as_of_date": resolved_as_of.isoformat() if resolved_as_of else None,
        "storage_version": version,
        "storage_version_requested": storage_version,
        "written_by_duckdb": duckdb.__version__,
        "tables": {
            name: {
                "rows": row_counts[name],
                "columns": columns[name],
                "source": f"{tables[name]}.{name}",
                **written[name],
            }
            for name in tables
        },
        "files": sizes,
    }
    (staging / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    files.append(MANIFEST)
    for rel in files:
        _fsync(staging / rel)
    return {
        "files": files,
        "row_counts": row_counts,
        "as_of": resolved_as_of,
        "storage_version": version,
        "patched": {
            name: state["patched_rows"]
            for name, state in written.items()
            if state["written"] == "patched"
        },
    }


class _HyperWorker:
    """Writes the Hyper extracts of a publication, one task after the other, in a thread.

    The tasks run in the order they are given: `copy` a base extract (before the `patch` of
    that table), `patch` a copied extract from a fact's changed keys and rows, `write` an
    extract whole from a Parquet file. Each extract gets its .tds file and the mode of
    serving.duckdb. After a task fails, the others are skipped. `wait` returns when every
    task is done and raises the first error;
    `cancel` drops the tasks not started and waits for the running one (the caller then
    deletes the release folder)."""

    def __init__(self, folder: Path, staged_db: Path) -> None:
        self.folder = folder
        self.staged_db = staged_db
        self.seconds = 0.0
        self._copied: set[str] = set()
        self._failed = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hyper")
        self._tasks: list[Future] = []

    def _submit(self, task: Any, *args: Any) -> None:
        def timed() -> None:
            if self._failed:  # the publication fails anyway: write nothing more
                return
            started = time.perf_counter()
            try:
                task(*args)
            except BaseException:
                self._failed = True
                raise
            finally:
                self.seconds += time.perf_counter() - started

        self._tasks.append(self._pool.submit(timed))

    def _extract(self, name: str) -> Path:
        return self.folder / f"{name}.hyper"

    def _finish(self, name: str) -> None:
        tableau.write_tds(name, self.folder / f"{name}.tds")
        # Hyper creates its files owner-only; give them the mode of the other files
        os.chmod(self._extract(name), self.staged_db.stat().st_mode & 0o777)

    def copied(self, name: str) -> bool:
        return name in self._copied

    def copy(self, base_extract: Path, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._copied.add(name)
        self._submit(shutil.copyfile, base_extract, self._extract(name))

    def patch(self, name: str, key: str, keys_file: Path, rows_file: Path, rows: int) -> None:
        def task() -> None:
            extract = self._extract(name)
            patched = tableau.patch_hyper(extract, key, keys_file, rows_file)
            keys_file.unlink()
            rows_file.unlink()
            if patched != rows:
                raise PublishError(
                    f"{extract}: {patched:,} rows after the patch, {rows:,} in serving.duckdb; "
                    f"nothing was published. Create serving/{WHOLE_MARKER} (the next "
                    "publication writes every file whole) and publish again"
                )
            self._finish(name)

        self._submit(task)

    def write(self, name: str, parquet: Path, *, temporary: bool) -> None:
        def task() -> None:
            tableau.write_hyper(parquet, self._extract(name))
            if temporary:
                parquet.unlink()
            self._finish(name)

        self._submit(task)

    def wait(self) -> None:
        try:
            for done in self._tasks:
                done.result()
        except BaseException:
            self.cancel()
            raise
        self._pool.shutdown()

    def cancel(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def size_in_bytes(text: str) -> int:
    """A DuckDB memory size ('4GB', '3.7 GiB', '512MB') in bytes; ValueError otherwise."""
    number, _, unit = text.strip().lower().partition(" ")
    if not unit:  # '4gb': the unit follows the number without a space
        digits = number.rstrip("kmgtib")
        number, unit = digits, number[len(digits) :]
    if unit not in _SIZE_UNITS:
        raise ValueError(f"not a memory size: {text!r}")
    return int(float(number) * _SIZE_UNITS[unit])


def _lower_memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """Set the connection's memory limit to `limit` when that is below its current one (a
    smaller CRM_DUCKDB_MEMORY_LIMIT stays)."""
    (current,) = con.execute("select current_setting('memory_limit')").fetchone()
    try:
        lower = size_in_bytes(limit) < size_in_bytes(current)
    except ValueError:
        return
    if lower:
        con.execute(f"set memory_limit = {_literal(limit)}")


def _patch_base(base: Path | None, storage_version: str) -> dict[str, Any] | None:
    """The manifest of the release `base` when a new release can start from a copy of its
    serving.duckdb: same DuckDB version, same requested storage version, complete."""
    if base is None or not (base / SERVING_DB).is_file() or not (base / MANIFEST).is_file():
        return None
    try:
        manifest = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same_writer = manifest.get("written_by_duckdb") == duckdb.__version__
    same_version = manifest.get("storage_version_requested") == storage_version
    has_tables = isinstance(manifest.get("tables"), dict)
    return manifest if same_writer and same_version and has_tables else None


def _column_types(con: duckdb.DuckDBPyConnection, database: str, schema: str, name: str) -> list:
    return con.execute(
        "select column_name, data_type from duckdb_columns() where database_name = ? "
        "and schema_name = ? and table_name = ? order by column_index",
        [database, schema, name],
    ).fetchall()


def _keep_patchable(
    con: duckdb.DuckDBPyConnection, tables: dict[str, str], base_manifest: dict[str, Any]
) -> set[str]:
    """Drop from the copied serving.duckdb (attached as `srv`) every table that will not be
    patched; return the ones that will: `ROW_KEYS` tables with the warehouse's columns and
    types, published in the base release."""
    patchable = set()
    for (name,) in con.execute(
        "select table_name from duckdb_tables() where database_name = 'srv' "
        "and schema_name = 'main'"
    ).fetchall():
        if (
            name in tables
            and name in ROW_KEYS
            and name in base_manifest["tables"]
            and ROW_KEYS[name] in base_manifest["tables"][name].get("columns", [])
            and _column_types(con, "srv", "main", name)
            == _column_types(con, "wh", tables[name], name)
        ):
            patchable.add(name)
        else:
            con.execute(f"drop table srv.main.{_ident(name)}")
    return patchable


@dataclass(frozen=True)
class _WrittenKeys:
    """The log of the keys a fact's builds wrote (`<fact>__written_keys` in `wh.main`)."""

    table: str  # the log, qualified
    key: str  # the fact's dbt unique_key (fct_order_lines: order_id, not its row key)
    through: int  # the last build logged

    def since(self, con: duckdb.DuckDBPyConnection, build: Any) -> str | None:
        """A query of the keys written after `build` (a release's `written_keys_through`),
        or None when the log cannot tell: no such build, or a whole build after it."""
        if not isinstance(build, int) or isinstance(build, bool):
            return None
        present, whole_after = con.execute(
            f"select count(*) filter (where build = ?), count(*) filter (where whole and build > ?) "
            f"from {self.table}",
            [build, build],
        ).fetchone()
        if not present or whole_after:
            return None
        return (
            f"select distinct {_ident(self.key)} from {self.table} "
            f"where build > {build} and not whole"
        )


def _written_keys(con: duckdb.DuckDBPyConnection, name: str) -> _WrittenKeys | None:
    """The written-keys log of fact `name` in the attached warehouse, if it has one."""
    log = name + WRITTEN_KEYS_SUFFIX
    columns = [c for c, _ in _column_types(con, "wh", "main", log)]
    keys = [c for c in columns if c not in ("build", "whole")]
    if not columns or {"build", "whole"} - set(columns) or len(keys) != 1:
        return None
    table = f"wh.main.{_ident(log)}"
    (through,) = con.execute(f"select max(build) from {table}").fetchone()
    if through is None:
        return None
    return _WrittenKeys(table, keys[0], int(through))


def _patch(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source: str,
    target: str,
    columns: list[str],
    base_state: dict[str, Any],
    log: _WrittenKeys | None = None,
) -> dict[str, Any] | None:
    """Patch the copied table `target` to hold exactly the rows of `source`: the keys whose
    row is new, gone or different (hash of every column) are deleted and their current rows
    inserted. Only the rows of the keys the builds wrote since the base release are compared
    when `log` can tell them; every row otherwise. Leaves the changed keys in temp table
    `__changes` (k, removed). Returns the table's manifest state, or None when it must be
    written whole instead (too many changes since the last whole write, a NULL key, a row
    count that does not match)."""
    key = _ident(ROW_KEYS[name])
    row_hash = "hash(" + ", ".join(_ident(c) for c in columns) + ")"
    written = log.since(con, base_state.get("written_keys_through")) if log else None
    scope = ""
    if written is not None:
        con.execute(f"create or replace temp table __written as {written}")
        scope = f" where {_ident(log.key)} in (select * from __written)"
    con.execute(
        f"""create or replace temp table __changes as
        select coalesce(fresh.k, published.k) as k, fresh.k is null as removed
        from (select {key} as k, {row_hash} as h from {source}{scope}) as fresh
        full outer join (select {key} as k, {row_hash} as h from {target}{scope}) as published
            on fresh.k = published.k
        where fresh.k is null or published.k is null or fresh.h <> published.h"""
    )
    changes, null_keys = con.execute(
        "select count(*), count(*) filter (where k is null) from __changes"
    ).fetchone()
    (published_rows,) = con.execute(f"select count(*) from {target}").fetchone()
    since = int(base_state.get("patched_rows_since_whole", 0)) + changes
    if null_keys or since > PATCH_LIMIT * max(published_rows, 1):
        return None
    con.execute(f"delete from {target} where {key} in (select k from __changes)")
    con.execute(
        f"insert into {target} select * from {source} "
        f"where {key} in (select k from __changes where not removed)"
    )
    (rows,) = con.execute(f"select count(*) from {target}").fetchone()
    (expected,) = con.execute(f"select count(*) from {source}").fetchone()
    if rows != expected:  # duplicate keys: the quality gate should have stopped them
        return None
    return {
        "written": "patched",
        "patched_rows": changes,
        "patched_rows_since_whole": since,
        "compared": "written keys" if written is not None else "every row",
    }


def _stage_review(staging: Path, review: Path | None) -> list[str]:
    """Copy the KPI review into the release `staging` (fsynced): a file as
    `reports/kpi_review.html`, a folder (the review in every language and its status file,
    pipelines/publish/release.py) file by file under `reports/`; the release's files it adds."""
    folder = staging / REVIEW_DIR
    folder.mkdir(exist_ok=True)
    written = []
    if review is not None:
        sources = (
            sorted((f, f.name) for f in Path(review).iterdir() if f.is_file())
            if Path(review).is_dir()
            else [(Path(review), REVIEW_FILE)]
        )
        for source, name in sources:
            shutil.copyfile(source, folder / name)
            _fsync(folder / name)
            written.append(f"{REVIEW_DIR}/{name}")
    _fsync(folder)
    return written


def _current_release(serving_dir: Path) -> str | None:
    link = serving_dir / CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def _previous(serving_dir: Path) -> set[str]:
    """The release published before the current one (kept for open readers and restores)."""
    marker = serving_dir / RELEASES_DIR / ".previous"
    return {marker.read_text(encoding="utf-8").strip()} if marker.exists() else set()


def _write_previous(serving_dir: Path, release: str) -> None:
    """Record `release` as the previous one, atomically: a temporary file, fsynced, renamed
    over `.previous`, then the folder fsynced. A crash leaves the old or the new name, never
    an empty or partial file (which would let the next publication delete the release a
    reader or a restore still needs)."""
    releases = serving_dir / RELEASES_DIR
    tmp = releases / f".previous.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(release)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, releases / ".previous")
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(releases)


def _link(target: str, path: Path) -> None:
    """Make `path` a symbolic link to `target`, atomically (a new link renamed over it)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _ensure_layout(serving_dir: Path) -> None:
    """The entry points are links through `current`. A serving folder of the earlier layout
    (plain files) is moved into a release of its own first: once, at the first publication
    after an upgrade."""
    releases = serving_dir / RELEASES_DIR
    releases.mkdir(exist_ok=True)
    plain = [
        name
        for name in ENTRY_POINTS
        if (serving_dir / name).exists() and not (serving_dir / name).is_symlink()
    ]
    if plain and not (serving_dir / CURRENT).is_symlink():
        legacy = releases / "earlier-layout"
        legacy.mkdir(exist_ok=True)
        for name in plain:
            os.replace(serving_dir / name, legacy / name)
        _link(f"{RELEASES_DIR}/{legacy.name}", serving_dir / CURRENT)
    for name in ENTRY_POINTS:
        entry = serving_dir / name
        if not entry.is_symlink():
            _link(f"{CURRENT}/{name}", entry)


def _swap(staging: Path, serving_dir: Path, files: list[str]) -> dict[str, int]:
    """Publish the release `staging` in one atomic step (the `current` link), then delete
    releases older than the previous one."""
    sizes = {rel: (staging / rel).stat().st_size for rel in files}
    for folder in (PARQUET_DIR, TABLEAU_DIR):  # every entry point resolves, whatever formats
        (staging / folder).mkdir(exist_ok=True)
    for folder in {staging, staging / PARQUET_DIR, staging / TABLEAU_DIR}:
        _fsync(folder)
    _ensure_layout(serving_dir)
    before = _current_release(serving_dir)
    _link(f"{RELEASES_DIR}/{staging.name}", serving_dir / CURRENT)
    _fsync(serving_dir)
    releases = serving_dir / RELEASES_DIR
    if before and before != staging.name:
        _write_previous(serving_dir, before)
    keep = {staging.name, before}
    for release in releases.iterdir():
        if release.is_dir() and release.name not in keep:
            shutil.rmtree(release, ignore_errors=True)
    return sizes


def restore_previous(serving_dir: Path) -> str:
    """Point `current` back at the previous publication (after a bad one was published);
    returns its publication id. The next publication replaces it as usual."""
    serving_dir = Path(serving_dir)
    with _publish_lock(serving_dir):
        previous = _previous(serving_dir)
        target = next(iter(previous), None)
        if not target or not (serving_dir / RELEASES_DIR / target).is_dir():
            raise PublishError(f"no previous publication under {serving_dir / RELEASES_DIR}")
        now = _current_release(serving_dir)
        _link(f"{RELEASES_DIR}/{target}", serving_dir / CURRENT)
        _fsync(serving_dir)
        if now:
            _write_previous(serving_dir, now)
        # the restored release may predate an erasure: the next publication starts afresh
        request_whole_publication(serving_dir, f"restore of {target}")
        return target


# --------------------------------------------------------------------------------------------
# Reading


def read_manifest(serving_dir: Path) -> dict[str, Any]:
    return json.loads((Path(serving_dir) / MANIFEST).read_text(encoding="utf-8"))


def open_serving(
    serving: Path, *, attempts: int = 5, wait_seconds: float = 0.2
) -> duckdb.DuckDBPyConnection:
    """Open the published DuckDB file read-only (the way analysts should open it).

    `serving` is the serving folder or the serving.duckdb file. The file is ATTACHed
    READ_ONLY as `serving` to a fresh in-memory database (and made the default with USE), not
    opened with `duckdb.connect(path)`: within one Python process, `duckdb.connect(path)`
    returns the already open database instance when one exists, so a second connection would
    keep showing the publication the first one opened. Opening is retried on an I/O error (no
    file yet during a first publication, a lock held by someone who opened the file
    read-write by mistake). An open connection keeps reading the publication it opened; open
    a new one to see a newer publication.
    """
    path = Path(serving)
    if path.is_dir() or path.suffix != ".duckdb":
        path = path / SERVING_DB
    last: Exception | None = None
    for attempt in range(max(1, attempts)):
        con = duckdb.connect()
        try:
            con.execute(f"attach {_literal(str(path))} as serving (read_only)")
            con.execute("use serving")
            return con
        except duckdb.IOException as exc:
            con.close()
            last = exc
            if attempt + 1 < attempts:
                time.sleep(wait_seconds * (2**attempt))
    raise PublishError(
        f"cannot open {path} read-only after {attempts} attempts ({last}). Has the pipeline "
        "published yet, and does nobody hold the file open read-write?"
    ) from last


# --------------------------------------------------------------------------------------------
# Erasure


def _customer_tables(con: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    """The tables of `database` (schema main) with a customer_id column."""
    return [
        row[0]
        for row in con.execute(
            "select table_name from duckdb_columns() where database_name = ? "
            "and schema_name = 'main' and column_name = 'customer_id' order by 1",
            [database],
        ).fetchall()
    ]


def _erase_from_release(release: Path, customer_ids: list[str]) -> int:
    """Remove the rows of `customer_ids` from one release folder: every Hyper extract and
    Parquet file of a table with a customer_id is rewritten whole without them, then
    serving.duckdb is rewritten into a new file (no deleted rows in its free space) and
    renamed over the old one; the manifest's row counts follow. Each file is replaced by an
    atomic rename. Idempotent: serving.duckdb goes last, so a rewrite killed midway is
    finished by the next call. Returns the rows removed from serving.duckdb."""
    db = release / SERVING_DB
    if not db.is_file():
        return 0
    con = duckdb.connect(config=duckdb_config())
    try:
        con.execute(f"attach {_literal(str(db))} as rel (read_only)")
        con.execute("create temp table erased (customer_id varchar)")
        con.executemany("insert into erased values (?)", [[c] for c in customer_ids])
        removed: dict[str, int] = {}
        for name in _customer_tables(con, "rel"):
            (n,) = con.execute(
                f"select count(*) from rel.main.{_ident(name)} "
                "where customer_id in (select customer_id from erased)"
            ).fetchone()
            if n:
                removed[name] = n
        if not removed:
            return 0
        # rows without a customer (guest orders) stay: NOT IN alone would drop them
        keep = "where customer_id is null or customer_id not in (select customer_id from erased)"
        for name in removed:
            source = release / f".{name}.erasure.parquet"
            con.execute(
                f"copy (select * from rel.main.{_ident(name)} {keep}) to "
                f"{_literal(str(source))} ({PARQUET_OPTIONS})"
            )
            extract = release / TABLEAU_DIR / f"{name}.hyper"
            if extract.is_file():
                fresh = extract.with_name(f".{name}.erasure.hyper")
                tableau.write_hyper(source, fresh)
                os.chmod(fresh, extract.stat().st_mode & 0o777)
                _fsync(fresh)
                os.replace(fresh, extract)
            parquet = release / PARQUET_DIR / f"{name}.parquet"
            if parquet.is_file():
                os.chmod(source, parquet.stat().st_mode & 0o777)
                _fsync(source)
                os.replace(source, parquet)
            else:
                source.unlink()
        fresh_db = release / f".{SERVING_DB}.erasure"
        fresh_db.unlink(missing_ok=True)
        version = STORAGE_VERSION
        with contextlib.suppress(OSError, ValueError, AttributeError):
            manifest = json.loads((release / MANIFEST).read_text(encoding="utf-8"))
            version = manifest.get("storage_version_requested") or STORAGE_VERSION
        con.execute(
            f"attach {_literal(str(fresh_db))} as fresh (storage_version {_literal(version)})"
        )
        for (name,) in con.execute(
            "select table_name from duckdb_tables() where database_name = 'rel' "
            "and schema_name = 'main' order by 1"
        ).fetchall():
            where = keep if name in removed else ""
            con.execute(
                f"create table fresh.main.{_ident(name)} as "
                f"select * from rel.main.{_ident(name)} {where}"
            )
        for name, n in removed.items():
            con.execute(
                f"update fresh.main.{PUBLICATION_TABLES_TABLE} set row_count = row_count - ? "
                "where table_name = ?",
                [n, name],
            )
        con.execute("checkpoint fresh")
        con.execute("detach fresh")
        con.execute("detach rel")
    finally:
        con.close()
    os.chmod(fresh_db, db.stat().st_mode & 0o777)
    _fsync(fresh_db)
    os.replace(fresh_db, db)
    manifest_path = release / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for name, n in removed.items():
            if name in manifest.get("tables", {}):
                manifest["tables"][name]["rows"] -= n
        for rel in manifest.get("files", {}):
            if (release / rel).is_file():
                manifest["files"][rel] = (release / rel).stat().st_size
        manifest["rewritten_after_erasure"] = True
        fresh_manifest = release / f".{MANIFEST}.erasure"
        fresh_manifest.write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _fsync(fresh_manifest)
        os.replace(fresh_manifest, manifest_path)
    _fsync(release)
    return sum(removed.values())


def erase_from_releases(serving_dir: Path, customer_ids: list[str]) -> dict[str, int]:
    """Remove the rows of `customer_ids` (erased people) from every release kept under
    `serving_dir` (the current and the previous one), under the publication lock: each
    release keeps its tables, minus those rows, in every format, so that
    `restore_previous()` stays useful and restores nobody. Returns release -> rows removed
    (from its serving.duckdb)."""
    serving_dir = Path(serving_dir)
    releases = serving_dir / RELEASES_DIR
    if not customer_ids or not releases.is_dir():
        return {}
    with _publish_lock(serving_dir):
        return {
            release.name: _erase_from_release(release, customer_ids)
            for release in sorted(releases.iterdir())
            if release.is_dir()
        }
