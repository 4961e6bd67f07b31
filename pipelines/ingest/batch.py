"""The loader's working model: a batch's files (``_Item``), what loading them needs
(``_Job``), its temporary tables, the checks of a file's columns (schema drift,
expressions), grouping files for one reader call, and unreadable files.

A *batch* is a list of partitions loaded in one transaction. Its files are read in
*groups*: the files of a group are read by one DuckDB reader call over the list of files
(the reader's ``file_index`` tells them apart: column ``__f`` of the stage), typed by one
``CREATE TEMP TABLE … AS``, and copied by one insert into raw and one into quarantine.
Files with the same columns form one group (usually every file of the batch). Per-file
lineage (file, sha256, delivery date) comes from a small table joined on ``__f``. A file
whose rows do not add up to its lines (or Parquet row count) in a group read is read
again on its own, as the single-file loader reads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from pipelines.ingest.files import _FileScan
from pipelines.ingest.mapping import MappingError, SourceMapping
from pipelines.ingest.results import EXTRA_COLUMNS, FileResult
from pipelines.ingest.sql import _ident, _lit

# temp tables used while loading a group of files (dropped afterwards)
T_STAGE, T_REJ, T_REJ_SCAN = "__ingest_stage", "__ingest_rej", "__ingest_rej_scan"


T_LR, T_LREJ, T_LREJ_SCAN = "__ingest_lr", "__ingest_lrej", "__ingest_lrej_scan"


T_PLINES, T_REC, T_THR = "__ingest_plines", "__ingest_rec", "__ingest_thr"


T_LRJ, T_RECMAP, T_SKIPS = "__ingest_lrj", "__ingest_recmap", "__ingest_skips"


T_LTHR = "__ingest_lthr"


T_PQ = "__ingest_pq"  # a Parquet file with a column named like the reader's row number


READER_COLUMNS = ("file_index", "file_row_number")  # virtual columns of DuckDB's readers


T_FILES = "__ingest_files"  # the files of a group: f -> lineage


FILE_COLUMNS = (("f", "integer"), ("file", "varchar"), ("delivery", "date"), ("sha256", "varchar"))


TEMP_TABLES = (
    T_STAGE,
    T_REJ,
    T_REJ_SCAN,
    T_LR,
    T_LREJ,
    T_LREJ_SCAN,
    T_PLINES,
    T_REC,
    T_THR,
    T_LRJ,
    T_RECMAP,
    T_SKIPS,
    T_LTHR,
    T_FILES,
    T_PQ,
)


def _unique_names(names: list[str], keep: Iterable[str] = ()) -> list[str]:
    """Column names DuckDB can tell apart: it compares names case-insensitively, so a name
    repeated in any case gets ``_1``, ``_2``; an empty name becomes ``column<i>``. The
    first occurrence of a name in ``keep`` (the columns the mapping reads) keeps its name
    whatever comes before it."""
    names = [name or f"column{i}" for i, name in enumerate(names)]
    kept: dict[str, int] = {}
    wanted = set(keep)
    for i, name in enumerate(names):
        if name in wanted:
            kept.setdefault(name.lower(), i)
    out: list[str] = []
    seen: set[str] = set(kept)
    for i, name in enumerate(names):
        if kept.get(name.lower()) == i:
            out.append(name)
            continue
        base, n = name, 1
        while name.lower() in seen:
            name = f"{base}_{n}"
            n += 1
        seen.add(name.lower())
        out.append(name)
    return out


def _dedupe_names(names: list[str], keep: Iterable[str] = ()) -> list[str]:
    return _unique_names([raw.strip() for raw in names], keep)


# A *batch* is a list of partitions loaded in one transaction. Its files are read in
# *groups*: the files of a group are read by one DuckDB reader call over the list of files
# (the reader's ``file_index`` tells them apart: column ``__f`` of the stage), typed by one
# ``CREATE TEMP TABLE … AS``, and copied by one insert into raw and one into quarantine.
# Files with the same columns form one group (usually every file of the batch). Per-file
# lineage (file, sha256, delivery date) comes from a small table joined on ``__f``. A file
# whose rows do not add up to its lines (or Parquet row count) in a group read is read
# again on its own, as the single-file loader reads it.
@dataclass
class _Item:
    """One delivered file of a batch."""

    delivery: date
    path: Path
    scan: _FileScan
    result: FileResult
    own_seconds: float  # hashing and transcoding this file alone
    read_path: Path | None = None  # the file DuckDB reads (maybe a transcoded copy)
    columns: list[str] | None = None
    reader_columns: list[str] | None = None  # Parquet: the reader's names of ``columns``

    @property
    def rel(self) -> str:
        return self.result.file


@dataclass
class _Job:
    """What loading the files of one batch needs besides the files."""

    con: duckdb.DuckDBPyConnection
    mapping: SourceMapping
    loaded_at: datetime
    currency: str
    keep_values: bool
    inspect: Callable[[duckdb.DuckDBPyConnection, list[FileResult]], None] | None
    expr_checks: dict[tuple[str, ...], tuple[str, str] | None]  # columns -> (field, error)
    tmp: Path  # the batch's scratch folder
    insertion_order: bool = True  # the connection's preserve_insertion_order


def _drop_temps(con) -> None:
    found = con.execute(
        f"SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name IN "
        f"({', '.join(_lit(t) for t in TEMP_TABLES)})"
    ).fetchall()
    for (t,) in found:
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _drift(mapping: SourceMapping, item: _Item, columns: list[str]) -> None:
    """A file lacking a mapped source column is unreadable (quarantined as a file). The
    reason names the mapping's columns and fields only: the file's own first line may be a
    record (a file without its header), so it is never quoted."""
    missing = [c for c in mapping.source_columns if c not in columns]
    if missing:
        users = [
            f"fields.{name} <- {c!r}"
            for name, spec in mapping.fields.items()
            for c in spec.source_columns
            if c in missing
        ]
        raise _Unreadable(
            item,
            f"lacks source column(s) {', '.join(repr(c) for c in missing)} "
            f"(used by {', '.join(users)})",
            drift=True,
        )
    extra = [c for c in columns if c not in mapping.source_columns]
    if extra and mapping.format.columns is None:
        item.result.warnings.append(f"{EXTRA_COLUMNS}{', '.join(extra)}")


def _check_expressions(job: _Job, item: _Item, columns: list[str]) -> None:
    """Bind every expression against the file's columns so errors name the field (bound
    once per distinct list of columns)."""
    key = tuple(columns)
    if key not in job.expr_checks:
        failure = None
        probe = ", ".join(f"NULL::VARCHAR AS {_ident(c)}" for c in columns) or "1 AS __x"
        for name, spec in job.mapping.fields.items():
            if spec.expr is None:
                continue
            try:
                job.con.execute(
                    f"SELECT CAST({spec.expr.sql} AS VARCHAR) FROM (SELECT {probe}) LIMIT 0"
                ).fetchall()
            except duckdb.Error as exc:
                failure = (name, str(exc).splitlines()[0])
                break
        job.expr_checks[key] = failure
    failure = job.expr_checks[key]
    if failure is not None:
        name, message = failure
        expr = job.mapping.fields[name].expr
        assert expr is not None
        raise MappingError(
            f"{job.mapping.label}: fields.{name}: expression {expr.source!r} "
            f"does not work on data file {item.rel} (source columns are VARCHAR; "
            f"cast them, e.g. col::date): {message}"
        )


def _check(job: _Job, item: _Item, columns: list[str]) -> None:
    """Schema drift, then the expressions, against one file's columns."""
    item.columns = columns
    _drift(job.mapping, item, columns)
    _check_expressions(job, item, columns)


def _groups(items: list[_Item], key=None) -> list[list[_Item]]:
    """Items with the same columns (or ``key``) together, in order of their first item.

    ``file_index`` and ``file_row_number`` are the readers' virtual columns: a file with a
    column of that name (in any case: DuckDB names are case-insensitive) is read alone.
    """
    out: dict[object, list[_Item]] = {}
    for i, it in enumerate(items):
        cols = tuple(it.columns or ())
        virtual = any(c.lower() in READER_COLUMNS for c in cols + tuple(it.reader_columns or ()))
        k = ("alone", i) if virtual else key(it) if key else cols
        out.setdefault(k, []).append(it)
    return list(out.values())


class _Unreadable(Exception):
    """The reader cannot read this file: it is quarantined whole (see _quarantine_file).

    ``whole``: quarantined as a file (name, size, sha256, reason; never its content) -- a
    file that is not text of the declared kind at all; else line by line, each line with
    the reader's reason. ``drift``: the file lacks a mapped source column."""

    def __init__(self, item: _Item, reason: str, *, whole: bool = False, drift: bool = False):
        super().__init__(f"{item.rel}: {reason}")
        self.path, self.rel, self.reason = item.path, item.rel, reason
        self.whole, self.drift = whole or drift, drift


# errors of the machine rather than of a file: they fail the partition (re-run it)
MACHINE_ERRORS = (
    duckdb.OutOfMemoryException,
    duckdb.InterruptException,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.TransactionException,
    duckdb.ConnectionException,
)


def _unreadable(mapping: SourceMapping, item: _Item, exc: duckdb.Error) -> Exception:
    """The reader's error on one file as a quarantine reason (its first line, without temp
    paths); an error of the machine as a MappingError naming the file."""
    if isinstance(exc, MACHINE_ERRORS):
        return MappingError(f"{mapping.label}: data file {item.rel} could not be read: {exc}")
    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    for p in {str(item.read_path), str(item.path)} - {"None"}:
        message = message.replace(p, "\x00")
    # the reason goes to the load log, the run's warnings and logs: no quoted file content
    message = QUOTED_RE.sub(lambda m: m[0] if "\x00" in m[0] else "'…'", message)
    message = message.replace("\x00", item.rel)
    return _Unreadable(item, message[:300])


QUOTED_RE = re.compile(r"'[^']*'|\"[^\"]*\"")


@contextmanager
def _insertion_order_as(job: _Job, value: bool):
    """``preserve_insertion_order = value`` for a statement, then the connection's own
    setting again."""
    _set_insertion_order(job.con, value)
    try:
        yield
    finally:
        # in a failed transaction this fails too: _load_batch restores it after ROLLBACK
        with suppress(duckdb.Error):
            _set_insertion_order(job.con, job.insertion_order)


def _unordered(job: _Job):
    """For a statement whose output order does not matter (faster parallel inserts)."""
    return _insertion_order_as(job, False)


def _insertion_order(con) -> bool:
    return bool(con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0])


def _set_insertion_order(con, value: bool) -> None:
    con.execute(f"SET preserve_insertion_order = {'true' if value else 'false'}")
