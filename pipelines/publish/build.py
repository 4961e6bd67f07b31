"""Building one release: every file of a publication written into its release folder,
patching a copy of the current release where possible (see pipelines/publish/serving.py)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines.lib.duck import duckdb_config
from pipelines.publish.columns import COLUMNS
from pipelines.publish.hyper_worker import HyperWorker
from pipelines.publish.layout import (
    EXTRA_TABLES,
    MANIFEST,
    MARTS_SCHEMA,
    PARQUET_DIR,
    PARQUET_OPTIONS,
    PUBLICATION_TABLE,
    PUBLICATION_TABLES_TABLE,
    ROW_KEYS,
    SERVING_DB,
    TABLEAU_DIR,
    WRITE_MEMORY_LIMIT,
    PublishError,
    fsync,
    ident,
    literal,
)
from pipelines.publish.patching import (
    keep_patchable,
    lower_memory_limit,
    patch_base,
    patch_table,
    written_keys_of,
)
from pipelines.publish.pii import check_no_pii
from pipelines.publish.tds import (
    LANGUAGES,
    RELATED_SOURCE,
    fields_of,
    related_tds,
    table_tds,
    tds_file,
)


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
            f"select max({ident(column)})::date from srv.main.rpt_kpi_review"
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


def build_release(
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
    descriptions: dict[str, dict[str, str]],
    currency: str,
) -> dict[str, Any]:
    """Write every file of the publication into `staging` (patching a copy of the release
    `base` where possible); return what was written. `descriptions` (table -> column -> text,
    from the dbt manifest) and `currency` (the reporting currency) go into the .tds files."""
    t = time.perf_counter()
    staged_db = staging / SERVING_DB
    base_manifest = patch_base(base, storage_version)
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
    hyper = None
    # in memory: spills go next to the warehouse, not into the publication
    con = duckdb.connect(
        config={**duckdb_config(), "temp_directory": str(warehouse_db.parent / "publish.tmp")}
    )
    try:
        con.execute(f"attach {literal(str(warehouse_db))} as wh (read_only)")
        tables = _discover(con, marts)
        typed = _columns(con, tables)
        columns = {name: [column for column, _ in pairs] for name, pairs in typed.items()}
        check_no_pii(columns)  # before anything is written
        fields = {name: fields_of(name, typed[name], descriptions, currency) for name in tables}
        if "hyper" in formats:
            tds = {
                name: {
                    tds_file(name, lang): table_tds(name, fields[name], lang) for lang in LANGUAGES
                }
                for name in tables
            }
            hyper = HyperWorker(staging / TABLEAU_DIR, staged_db, tds)
        _copy_base_extracts(hyper, tables, base_extracts)
        con.execute(
            f"attach {literal(str(staged_db))} as srv (storage_version {literal(storage_version)})"
        )
        written = _write_tables(con, staging, tables, columns, base_manifest, hyper)
        con.execute("detach wh")
        resolved_as_of = as_of or _as_of(con, tables)
        version = storage_version_of(con, "srv")
        _write_bookkeeping(
            con, publication_id, published_at, resolved_as_of, version, warehouse_db.name,
            {name: (written.rows[name], len(columns[name])) for name in tables},
        )  # fmt: skip
        con.execute("checkpoint srv")
        steps["duckdb"] = time.perf_counter() - t
        # What is left for DuckDB (copies to Parquet) streams: its buffers from the
        # comparisons are given back before the Hyper server patches and writes beside it
        lower_memory_limit(con, WRITE_MEMORY_LIMIT)
        if hyper is not None:
            for name, (keys_file, rows_file) in written.extract_changes.items():
                hyper.patch(name, ROW_KEYS[name], keys_file, rows_file, written.rows[name])
        files = [SERVING_DB, *_write_parquet(con, staging, tables, formats, hyper, written, steps)]
        con.execute("detach srv")
    except BaseException:
        if hyper is not None:
            hyper.cancel()
        raise
    finally:
        con.close()
    if hyper is not None:
        files += _wait_for_hyper(hyper, tables, steps)
        for language in LANGUAGES:
            related = related_tds(fields, language)
            if related is not None:
                rel = f"{TABLEAU_DIR}/{tds_file(RELATED_SOURCE, language)}"
                (staging / rel).write_text(related, encoding="utf-8")
                files.append(rel)
    if staged_db.with_name(staged_db.name + ".wal").exists():
        raise PublishError(f"{staged_db} still has a write-ahead log after CHECKPOINT")
    manifest = {
        "publication_id": publication_id,
        "published_at": published_at.isoformat() + "Z",
        "as_of_date": resolved_as_of.isoformat() if resolved_as_of else None,
        "storage_version": version,
        "storage_version_requested": storage_version,
        "written_by_duckdb": duckdb.__version__,
        "tables": {
            name: {
                "rows": written.rows[name],
                "columns": columns[name],
                "source": f"{tables[name]}.{name}",
                **written.states[name],
            }
            for name in tables
        },
        "files": {rel: (staging / rel).stat().st_size for rel in files},
    }
    (staging / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    files.append(MANIFEST)
    for rel in files:
        fsync(staging / rel)
    return {
        "files": files,
        "row_counts": written.rows,
        "as_of": resolved_as_of,
        "storage_version": version,
        "patched": written.patched(),
    }


def _columns(
    con: duckdb.DuckDBPyConnection, tables: dict[str, str]
) -> dict[str, list[tuple[str, str]]]:
    """published name -> its (column name, DuckDB type) in the warehouse, in order."""
    return {
        name: [
            (row[0], row[1])
            for row in con.execute(
                "select column_name, data_type from duckdb_columns() where database_name = 'wh' "
                "and schema_name = ? and table_name = ? order by column_index",
                [schema, name],
            ).fetchall()
        ]
        for name, schema in tables.items()
    }


def _copy_base_extracts(
    hyper: HyperWorker | None, tables: dict[str, str], base_extracts: Path | None
) -> None:
    """Queue the copies of the base release's extracts of the facts (patched later)."""
    if hyper is None or not base_extracts:
        return
    for name in tables:
        if name in ROW_KEYS and (base_extracts / f"{name}.hyper").exists():
            hyper.copy(base_extracts / f"{name}.hyper", name)


@dataclass
class _Written:
    """What was written into serving.duckdb, per table."""

    #: rows of each table
    rows: dict[str, int] = field(default_factory=dict)
    #: how each table was written (the manifest's entry: whole or patched, ...)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: facts whose extract is patched from its changes -> (changed keys, changed rows) files
    extract_changes: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def patched(self) -> dict[str, int]:
        """tables published by difference -> keys whose row was replaced, added or removed."""
        return {
            name: state["patched_rows"]
            for name, state in self.states.items()
            if state["written"] == "patched"
        }


def _write_tables(
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    tables: dict[str, str],
    columns: dict[str, list[str]],
    base_manifest: dict[str, Any] | None,
    hyper: HyperWorker | None,
) -> _Written:
    """Copy (or patch) every table into serving.duckdb (attached as `srv`)."""
    written = _Written()
    patchable = keep_patchable(con, tables, base_manifest) if base_manifest is not None else set()
    for name, schema in tables.items():
        target = f"srv.main.{ident(name)}"
        state = _write_table(
            con, name, f"wh.{ident(schema)}.{ident(name)}", target, columns[name],
            base_manifest["tables"][name] if base_manifest is not None and name in patchable
            else None,
        )  # fmt: skip
        written.states[name] = state
        (written.rows[name],) = con.execute(f"select count(*) from {target}").fetchone()
        if state["written"] == "patched" and hyper is not None and hyper.copied(name):
            written.extract_changes[name] = _export_changes(con, staging, name, target)
    return written


def _write_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source: str,
    target: str,
    columns: list[str],
    base_entry: dict[str, Any] | None,
) -> dict[str, Any]:
    """Patch the table from the base release's copy (`base_entry`: its manifest entry, None
    when it cannot be patched) or write it whole; return how it was written."""
    log = written_keys_of(con, name) if name in ROW_KEYS else None
    state = None
    if base_entry is not None:
        state = patch_table(con, name, source, target, columns, base_entry, log)
    if state is None:
        con.execute(f"drop table if exists {target}")
        con.execute(f"create table {target} as select * from {source}")
        state = {"written": "whole", "patched_rows_since_whole": 0}
    if log is not None:
        state["written_keys_through"] = log.through
    return state


def _export_changes(
    con: duckdb.DuckDBPyConnection, staging: Path, name: str, target: str
) -> tuple[Path, Path]:
    """The changed keys and the changed rows of a patched fact (`__changes`), as Parquet
    files the Hyper worker patches its extract from."""
    key = ident(ROW_KEYS[name])
    keys_file = staging / f".{name}.changed-keys.parquet"
    rows_file = staging / f".{name}.changed-rows.parquet"
    con.execute(
        f"copy (select k as {key} from __changes) to {literal(str(keys_file))} (format parquet)"
    )
    con.execute(
        f"copy (select * from {target} where {key} in "
        f"(select k from __changes where not removed)) to {literal(str(rows_file))} "
        "(format parquet, compression zstd)"
    )
    return keys_file, rows_file


def _write_bookkeeping(
    con: duckdb.DuckDBPyConnection,
    publication_id: str,
    published_at: datetime,
    as_of: date | None,
    version: str,
    source: str,
    shapes: dict[str, tuple[int, int]],
) -> None:
    """The tables `_publication` and `_publication_tables` of serving.duckdb (`shapes`:
    table -> rows, columns)."""
    for bookkeeping in (PUBLICATION_TABLE, PUBLICATION_TABLES_TABLE):
        con.execute(f"drop table if exists srv.main.{bookkeeping}")
    con.execute(
        f"create table srv.main.{PUBLICATION_TABLE} as select ?::varchar as publication_id, "
        "?::timestamp as published_at, ?::date as as_of_date, ?::varchar as storage_version, "
        "?::varchar as duckdb_version, ?::varchar as source",
        [publication_id, published_at, as_of, version, duckdb.__version__, source],
    )
    con.execute(
        f"create table srv.main.{PUBLICATION_TABLES_TABLE} "
        "(publication_id varchar, table_name varchar, row_count bigint, column_count integer)"
    )
    con.executemany(
        f"insert into srv.main.{PUBLICATION_TABLES_TABLE} values (?, ?, ?, ?)",
        [[publication_id, name, rows, width] for name, (rows, width) in shapes.items()],
    )


def _write_parquet(
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    tables: dict[str, str],
    formats: tuple[str, ...],
    hyper: HyperWorker | None,
    written: _Written,
    steps: dict[str, float],
) -> list[str]:
    """The Parquet files (kept when "parquet" is a format; otherwise temporary sources of the
    extracts written whole), each extract queued as soon as its file exists; returns the
    Parquet files of the release."""
    if "parquet" not in formats and hyper is None:
        return []
    t = time.perf_counter()
    keep = "parquet" in formats
    if keep:
        (staging / PARQUET_DIR).mkdir()
    # the files' row order is not part of the contract: DuckDB writes a file with
    # both threads when it need not keep the table's order
    con.execute("set preserve_insertion_order = false")
    patched = written.extract_changes
    # the tables whose extract is written from this Parquet file first, smallest first,
    # so that the Hyper worker has work while the large facts are written
    for name in sorted(tables, key=lambda n: (n in patched, written.rows[n])):
        if not keep and name in patched:
            continue
        # Hyper reads Parquet: a temporary file when Parquet is not published
        target = (
            staging / PARQUET_DIR / f"{name}.parquet"
            if keep
            else staging / f"{name}.hyper-source.parquet"
        )
        con.execute(
            f"copy (select * from srv.main.{ident(name)}) to {literal(str(target))} "
            f"({PARQUET_OPTIONS})"
        )
        if hyper is not None and name not in patched:
            hyper.write(name, target, temporary=not keep)
    steps["parquet" if keep else "hyper_sources"] = time.perf_counter() - t
    return [f"{PARQUET_DIR}/{name}.parquet" for name in tables] if keep else []


def _wait_for_hyper(
    hyper: HyperWorker, tables: dict[str, str], steps: dict[str, float]
) -> list[str]:
    """Wait for the Hyper worker (raises its error, if any); returns the extracts' files."""
    t = time.perf_counter()
    hyper.wait()
    steps["hyper_wait"] = time.perf_counter() - t
    steps["hyper"] = hyper.seconds
    return [
        f"{TABLEAU_DIR}/{file_name}"
        for name in tables
        for file_name in (f"{name}.hyper", *(tds_file(name, lang) for lang in LANGUAGES))
    ]
