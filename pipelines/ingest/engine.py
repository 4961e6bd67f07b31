"""The mapping-driven loader: landing files -> ``raw.<entity>`` tables in DuckDB.

One engine for every source; a source is described by its mapping (see mapping.py and
docs/ingestion.md). Everything is read by DuckDB's own readers as text and typed in SQL
(TRY_CAST / try_strptime). The files of a partition, or of a whole range of partitions
(``load_partitions``), are read by one reader call over the list of files, typed by one
``CREATE TABLE AS`` and copied by one insert into raw and one into quarantine; Python only
hashes files (and transcodes GB18030/GBK to UTF-8 in streaming chunks).

This module runs a batch (one transaction) through its steps; the steps live beside it:
discovery.py (which files), files.py (hashing, transcoding), schema.py (DDL), stage.py and
typed_sql.py (typing SQL), formats/ (the readers), rows.py (inserts), quarantine.py,
load_log.py; the dry run is dry_run.py.

Public API: ``load_partition``, ``load_partitions``, ``partition_is_unchanged``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from pipelines.ingest.batch import (
    _drop_temps,
    _insertion_order,
    _Item,
    _Job,
    _set_insertion_order,
    _Unreadable,
)
from pipelines.ingest.canonical import RAW_SCHEMA, raw_table
from pipelines.ingest.discovery import (
    _as_date,
    _not_plain,
    _relative,
    _resolve_timezone,
    partition_files,
)
from pipelines.ingest.files import _not_text, _scan_all, _scan_file, _scratch, _transcode
from pipelines.ingest.formats.csv import _load_csv
from pipelines.ingest.formats.lines import _load_lines
from pipelines.ingest.formats.parquet import _load_parquet
from pipelines.ingest.load_log import (
    T_CAND,
    T_HIT,
    T_KEYS,
    _count_replaced,
    _insert_load_log,
    _mark_duplicates,
    _remember_keys,
)
from pipelines.ingest.mapping import MappingError, SourceMapping
from pipelines.ingest.quarantine import _no_file_readable, _quarantine_file, _quarantine_whole
from pipelines.ingest.results import FileResult, PartitionResult, RangeResult
from pipelines.ingest.schema import ensure_raw_schema
from pipelines.ingest.sql import _lit
from pipelines.ingest.typed_sql import _register_nfkc

BATCH_BYTES = 128 << 20  # load_partitions: files of up to this many bytes per transaction


def _load_items(job: _Job, items: list[_Item], per_file: bool) -> None:
    fmt = job.mapping.format
    if fmt.type == "csv" and not fmt.whitespace:
        _load_csv(job, items, per_file)
    elif fmt.type == "parquet":
        _load_parquet(job, items, per_file)
    else:
        _load_lines(job, items, per_file)


def _run_batch(
    con,
    mapping: SourceMapping,
    landing: Path,
    partitions: list[tuple[date, list[Path]]],
    *,
    unreadable: dict[Path, _Unreadable],
    **kwargs,
) -> list[PartitionResult]:
    """``_load_batch``; a file the reader cannot read (raising ``_Unreadable``) is set aside
    in ``unreadable`` (path -> reason) and the batch loaded again, that file quarantined
    whole."""
    while True:
        try:
            return _load_batch(con, mapping, landing, partitions, unreadable=unreadable, **kwargs)
        except _Unreadable as exc:
            assert exc.path not in unreadable, exc
            unreadable[exc.path] = exc


def _load_batch(
    con,
    mapping: SourceMapping,
    landing: Path,
    partitions: list[tuple[date, list[Path]]],
    *,
    per_file: bool,
    currency: str,
    loaded_at: datetime,
    keep_values: bool,
    inspect,
    expr_checks: dict,
    scans: dict,
    unreadable: dict[Path, _Unreadable],
) -> list[PartitionResult]:
    """Load partitions in one transaction: delete what they loaded before, then load their
    files (grouped reads, or one file at a time with ``per_file``); rolled back on error.
    The files in ``unreadable`` are not read but quarantined whole."""
    started = time.perf_counter()
    plan = _plan(partitions, landing, scans)
    every = [it for _, items in plan for it in items]
    _set_aside_unreadable(mapping, landing, every, unreadable)
    _register_nfkc(con)
    order = _insertion_order(con)
    with _scratch(con) as tmp:
        job = _Job(con, mapping, loaded_at, currency, keep_values, inspect, expr_checks, tmp, order)
        con.execute("BEGIN TRANSACTION")
        try:
            _mark_duplicates(con, mapping, plan)
            key = _replace_partitions(con, mapping, plan)
            todo = [it for it in every if it.result.status == "loaded" and it.scan.size > 0]
            _no_file_readable(mapping, plan, todo, unreadable)
            _quarantine_unreadable(job, todo, unreadable)
            todo = [it for it in todo if it.path not in unreadable]
            _transcode_all(job, todo)
            _read_all(job, todo, every, per_file)
            _insert_load_log(con, mapping, every, loaded_at, tmp)
            _count_rows_replaced(con, mapping, key, every)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            _set_insertion_order(con, order)
            raise
    return _partition_results(mapping, plan, time.perf_counter() - started)


def _plan(
    partitions: list[tuple[date, list[Path]]], landing: Path, scans: dict
) -> list[tuple[date, list[_Item]]]:
    """The batch's files by delivery date, hashed (on every core; ``scans`` caches them)."""
    _scan_all([p for _, paths in partitions for p in paths], scans)
    plan: list[tuple[date, list[_Item]]] = []
    for day, paths in partitions:
        items = []
        for path in paths:
            scan, seconds = scans[path]
            result = FileResult(file=_relative(path, landing), sha256=scan.sha256, bytes=scan.size)
            items.append(_Item(day, path, scan, result, seconds))
        plan.append((day, items))
    return plan


def _set_aside_unreadable(
    mapping: SourceMapping, landing: Path, every: list[_Item], unreadable: dict
) -> None:
    """Files never read: links, paths out of the folder, files not text at all."""
    fmt = mapping.format
    for it in every:
        if it.path in unreadable or it.scan.size == 0:
            continue
        why = _not_plain(it.path, landing)
        if why is None and fmt.type != "parquet":
            why = _not_text(it.path, fmt.encoding)
        if why is not None:
            unreadable[it.path] = _Unreadable(it, why, whole=True)


def _replace_partitions(con, mapping: SourceMapping, plan: list[tuple[date, list[_Item]]]) -> str:
    """Delete what the batch's partitions loaded before (rows, quarantine, load log), their
    keys remembered for the recount; returns the SQL condition selecting them."""
    days = ", ".join(f"DATE {_lit(d.isoformat())}" for d, _ in plan)
    key = f"_source_name = {_lit(mapping.name)} AND _delivery_date IN ({days})"
    _remember_keys(con, mapping, key, first=True)
    for t in (raw_table(mapping.entity), f"{RAW_SCHEMA}.quarantine"):
        con.execute(f"DELETE FROM {t} WHERE {key}")
    con.execute(f"DELETE FROM {RAW_SCHEMA}.load_log WHERE {key}")
    return key


def _quarantine_unreadable(job: _Job, todo: list[_Item], unreadable: dict) -> None:
    """Quarantine the files set aside: whole, or line by line with the reader's reason."""
    for it in todo:
        if it.path not in unreadable:
            continue
        t0 = time.perf_counter()
        bad = unreadable[it.path]
        if bad.whole:
            _quarantine_whole(job, it, bad.reason)
        else:
            _quarantine_file(job, it, bad.reason)
        it.own_seconds += time.perf_counter() - t0


def _transcode_all(job: _Job, todo: list[_Item]) -> None:
    """The file DuckDB reads: the file itself, or its UTF-8 copy in the scratch folder."""
    fmt = job.mapping.format
    for i, it in enumerate(todo):
        it.read_path = it.path
        if fmt.encoding != "utf-8" and fmt.type != "parquet":
            t0 = time.perf_counter()
            it.read_path = _transcode(it.path, fmt.encoding, job.tmp, f"{i}_")
            it.own_seconds += time.perf_counter() - t0


def _read_all(job: _Job, todo: list[_Item], every: list[_Item], per_file: bool) -> None:
    """Read the files; the time of the shared reads apportioned to the files by size."""
    t0 = time.perf_counter()
    if todo:
        _load_items(job, todo, per_file)
    _drop_temps(job.con)
    shared, total = time.perf_counter() - t0, sum(it.scan.size for it in todo)
    read = {id(it) for it in todo}
    for it in every:
        share = shared * it.scan.size / total if total and id(it) in read else 0.0
        it.result.seconds = it.own_seconds + share


def _count_rows_replaced(con, mapping: SourceMapping, key: str, every: list[_Item]) -> None:
    """Recount the rows replaced by a later row of their key, for the files of the batch."""
    _remember_keys(con, mapping, key, first=False)
    replaced = _count_replaced(con, mapping)
    for it in every:
        dup, sup = replaced.get((it.delivery, it.rel), (0, 0))
        it.result.rows_duplicate, it.result.rows_superseded = dup, sup
    for t in (T_KEYS, T_HIT, T_CAND):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _partition_results(
    mapping: SourceMapping, plan: list[tuple[date, list[_Item]]], elapsed: float
) -> list[PartitionResult]:
    """One result per partition; the batch's time apportioned by size."""
    size = sum(it.scan.size for _, items in plan for it in items)
    return [
        PartitionResult(
            source=mapping.name,
            entity=mapping.entity,
            delivery_date=day,
            files=[it.result for it in items],
            seconds=elapsed * (sum(it.scan.size for it in items) / size if size else 1 / len(plan)),
        )
        for day, items in plan
    ]


def _batches(
    partitions: list[tuple[date, list[Path]]], max_bytes: int
) -> list[list[tuple[date, list[Path]]]]:
    """Consecutive partitions up to ``max_bytes`` of files per batch (at least one)."""
    out: list[list[tuple[date, list[Path]]]] = []
    size = 0
    for part in partitions:
        part_size = sum(p.lstat().st_size for p in part[1])
        if not out or size + part_size > max_bytes:
            out.append([])
            size = 0
        out[-1].append(part)
        size += part_size
    return out


def load_partition(
    con: duckdb.DuckDBPyConnection,
    mapping: SourceMapping,
    landing_dir: str | Path,
    delivery_date: date | str,
    *,
    reporting_currency: str = "CNY",
    loaded_at: datetime | None = None,
    keep_values: bool = False,
    inspect: Callable[[duckdb.DuckDBPyConnection, list[FileResult]], None] | None = None,
    business_timezone: str | None = None,
) -> PartitionResult:
    """Load (or re-load) one partition ``(mapping, delivery date)`` into ``raw``.

    In one transaction: delete what this partition loaded before (rows, quarantine,
    load_log), then load every file of ``<landing>/<mapping.name>/<date>/`` matching the
    mapping's glob. A file whose bytes were already loaded for this mapping (in this or
    another partition) is logged as ``duplicate`` and not loaded again.

    Raises SchemaDriftError (no file of the partition is readable, one of them lacking a
    mapped source column) or MappingError (an expression does not fit the file); the
    transaction is rolled back and the warehouse is left as it was. A file that is no text
    of the declared kind, lacks a mapped column, is a symbolic link or leads out of the
    delivery folder is quarantined as a file (one row: name, size, sha256, reason; never its
    content); a file the reader gives up on is quarantined line by line with the reader's
    reason. Neither fails the partition.

    ``inspect(con, files)`` (used by ``check_mapping``) is called after each read of a group
    of files, while ``__ingest_stage`` holds their typed rows.

    Timestamps without an offset are in the mapping's ``timezone``; a mapping without one
    uses ``business_timezone`` (default: the CRM_TIMEZONE setting).
    """
    started = time.perf_counter()
    mapping = _resolve_timezone(mapping, business_timezone)
    landing = Path(landing_dir)
    delivery = _as_date(delivery_date)
    ensure_raw_schema(con)
    part = [(delivery, partition_files(landing, mapping, delivery))]
    kwargs = dict(
        currency=reporting_currency,
        loaded_at=loaded_at or datetime.now(UTC).replace(tzinfo=None),
        keep_values=keep_values,
        inspect=inspect,
        expr_checks={},
        scans={},
        unreadable={},
    )
    try:
        result = _run_batch(con, mapping, landing, part, per_file=False, **kwargs)[0]
    except (MappingError, duckdb.Error):
        # one file at a time, as the files come: the error names the first file at fault
        result = _run_batch(con, mapping, landing, part, per_file=True, **kwargs)[0]
    result.seconds = time.perf_counter() - started
    return result


def load_partitions(
    con: duckdb.DuckDBPyConnection,
    mapping: SourceMapping,
    landing_dir: str | Path,
    delivery_dates: Iterable[date | str],
    *,
    reporting_currency: str = "CNY",
    loaded_at: datetime | None = None,
    batch_bytes: int = BATCH_BYTES,
    business_timezone: str | None = None,
) -> RangeResult:
    """Load (or re-load) a range of partitions of one mapping, as ``load_partition`` for
    each date in turn would, but reading the files of many partitions at once.

    Partitions are loaded in batches of up to ``batch_bytes`` of files, one transaction
    per batch. A partition that fails (SchemaDriftError, MappingError) is left as it was
    and reported in ``failures`` with the error ``load_partition`` would raise; the other
    partitions are loaded. ``business_timezone``: as for ``load_partition``.
    """
    started = time.perf_counter()
    mapping = _resolve_timezone(mapping, business_timezone)
    landing = Path(landing_dir)
    ensure_raw_schema(con)
    dates = list(dict.fromkeys(_as_date(d) for d in delivery_dates))
    parts = [(d, partition_files(landing, mapping, d)) for d in dates]
    kwargs = dict(
        currency=reporting_currency,
        loaded_at=loaded_at or datetime.now(UTC).replace(tzinfo=None),
        keep_values=False,
        inspect=None,
        expr_checks={},
        scans={},
        unreadable={},
    )
    out = RangeResult(mapping.name, mapping.entity, [], {})
    for batch in _batches(parts, batch_bytes):
        try:
            out.partitions.extend(
                _run_batch(con, mapping, landing, batch, per_file=False, **kwargs)
            )
            continue
        except (MappingError, duckdb.Error):
            pass
        # isolate the partition(s) at fault: each alone, then one file at a time
        for part in batch:
            try:
                if len(batch) > 1:
                    try:
                        out.partitions.extend(
                            _run_batch(con, mapping, landing, [part], per_file=False, **kwargs)
                        )
                        continue
                    except (MappingError, duckdb.Error):
                        pass
                out.partitions.extend(
                    _run_batch(con, mapping, landing, [part], per_file=True, **kwargs)
                )
            except MappingError as exc:
                out.failures[part[0]] = exc
    out.seconds = time.perf_counter() - started
    return out


def partition_is_unchanged(
    con: duckdb.DuckDBPyConnection,
    mapping: SourceMapping,
    landing_dir: str | Path,
    delivery_date: date | str,
    business_timezone: str | None = None,
) -> bool:
    """True when the partition's files (names and sha256) and the mapping version are those
    of its last load, so loading it again would change nothing. Hashes the files. The
    mapping is compared as it loads: its timezone resolved like ``load_partition`` does, so a
    change of the business timezone of a mapping without one loads the partition again."""
    mapping = _resolve_timezone(mapping, business_timezone)
    delivery = _as_date(delivery_date)
    landing = Path(landing_dir)
    ensure_raw_schema(con)
    logged = con.execute(
        f"SELECT _source_file, _file_sha256, _mapping_version, mapping_fingerprint "
        f"FROM {RAW_SCHEMA}.load_log WHERE _source_name = ? AND _delivery_date = ?",
        [mapping.name, delivery],
    ).fetchall()
    files = partition_files(landing, mapping, delivery)
    if not logged:
        return not files
    # a file loaded before fingerprints were logged (NULL) counts by its version alone
    if any(v != mapping.version or fp not in (None, mapping.fingerprint) for _, _, v, fp in logged):
        return False
    current = {(_relative(p, landing), _scan_file(p).sha256) for p in files}
    return current == {(f, h) for f, h, _, _ in logged}
