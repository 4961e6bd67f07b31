"""The mapping-driven loader: landing files -> ``raw.<entity>`` tables in DuckDB.

One engine for every source; a source is described by its mapping (see mapping.py and
docs/ingestion.md). Everything is read by DuckDB's own readers as text and typed in SQL
(TRY_CAST / try_strptime). The files of a partition, or of a whole range of partitions
(``load_partitions``), are read by one reader call over the list of files, typed by one
``CREATE TABLE AS`` and copied by one insert into raw and one into quarantine; Python only
hashes files (and transcodes GB18030/GBK to UTF-8 in streaming chunks).

Public API: ``ensure_raw_schema``, ``load_partition``, ``load_partitions``,
``discover_partitions``, ``partition_files``, ``partition_is_unchanged``, ``check_mapping``,
``format_check_report``.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import mmap
import os
import re
import shutil
import string
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from duckdb.sqltypes import VARCHAR

from pipelines.ingest.canonical import (
    ENTITIES,
    KEY_PREFILTERS,
    LINEAGE_COLUMNS,
    LOAD_LOG_COLUMNS,
    NATURAL_KEYS,
    QUARANTINE_COLUMNS,
    RAW_SCHEMA,
    CanonicalField,
    raw_table,
)
from pipelines.ingest.mapping import (
    FieldSpec,
    MappingError,
    SchemaDriftError,
    SourceMapping,
    load_mapping,
)

__all__ = [
    "FileResult",
    "MappingError",
    "PartitionResult",
    "RangeResult",
    "SchemaDriftError",
    "SourceCounts",
    "check_mapping",
    "discover_partitions",
    "ensure_raw_schema",
    "format_check_report",
    "load_partition",
    "load_partitions",
    "partition_files",
    "partition_is_unchanged",
    "source_counts",
    "stale_deliveries",
]

DATE_DIR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CHUNK = 1 << 22
LINE_DELIM = "\x01"  # the line reader's "delimiter": a line containing it is still kept
MAX_LINE = 8 << 20
VALUE_IN_REASON = 80  # characters of a bad value quoted in a quarantine reason
BATCH_BYTES = 128 << 20  # load_partitions: files of up to this many bytes per transaction

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
# the natural keys a batch deletes or inserts, and the files holding them (not in TEMP_TABLES:
# they outlive the reads of the batch)
T_KEYS, T_HIT, T_CAND = "__ingest_keys", "__ingest_hit", "__ingest_cand"
T_CHECK = "__ingest_check"  # check_mapping: the stage rows of every file (not in TEMP_TABLES)
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

REJECT_REASONS = {
    "MISSING COLUMNS": "wrong column count",
    "TOO MANY COLUMNS": "wrong column count",
    "UNQUOTED VALUE": "unterminated quote",
    "INVALID ENCODING": "invalid UTF-8",
    "LINE SIZE OVER MAXIMUM": f"line longer than {MAX_LINE} bytes",
}


def _line_too_long() -> str:
    """The reason of a line over the readers' ``max_line_size`` (MAX_LINE bytes)."""
    return f"line longer than {MAX_LINE} bytes"


# --------------------------------------------------------------------------- results
@dataclass
class FileResult:
    """What happened to one delivered file."""

    file: str  # path relative to the landing folder
    sha256: str
    bytes: int
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    # rows (of this or earlier files) that a later row of this file replaces: staging keeps
    # one row per natural key, the latest; identical rows are duplicates, others superseded
    rows_duplicate: int = 0
    rows_superseded: int = 0
    status: str = "loaded"  # loaded | duplicate
    duplicate_of: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class PartitionResult:
    """What one ``load_partition`` call did: one entry per file, in file-name order."""

    source: str
    entity: str
    delivery_date: date
    files: list[FileResult]
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rows_duplicate(self) -> int:
        return sum(f.rows_duplicate for f in self.files)

    @property
    def rows_superseded(self) -> int:
        return sum(f.rows_superseded for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def warnings(self) -> list[str]:
        return [f"{f.file}: {w}" for f in self.files for w in f.warnings]


# --------------------------------------------------------------------------- SQL helpers
def _lit(value: object) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _list_lit(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_lit(v) for v in values) + "]"


def _struct_lit(names: list[str], sql_type: str = "VARCHAR") -> str:
    return "{" + ", ".join(f"{_lit(n)}: {_lit(sql_type)}" for n in names) + "}"


# --------------------------------------------------------------------------- schema
def _create_table_sql(name: str, columns: list[tuple[str, str]]) -> str:
    cols = ", ".join(f"{_ident(c)} {t}" for c, t in columns)
    return f"CREATE TABLE IF NOT EXISTS {name} ({cols})"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema ``raw`` with all four entity tables, ``quarantine`` and ``load_log``.

    Every entity table exists even when no source delivers it (empty), so that a
    deployment with only some sources works downstream. Idempotent.
    """
    wanted = [*ENTITIES, "quarantine", "load_log"]
    found = con.execute(
        f"SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        f"AND schema_name = {_lit(RAW_SCHEMA)} AND NOT temporary "
        f"AND table_name IN ({', '.join(_lit(t) for t in wanted)})"
    ).fetchall()[0][0]
    if found == len(wanted):
        _add_missing_columns(con, f"{RAW_SCHEMA}.load_log", LOAD_LOG_COLUMNS)
        return
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    for entity, fields in ENTITIES.items():
        cols = [(f.name, f.sql_type) for f in fields] + list(LINEAGE_COLUMNS)
        con.execute(_create_table_sql(raw_table(entity), cols))
    con.execute(_create_table_sql(f"{RAW_SCHEMA}.quarantine", list(QUARANTINE_COLUMNS)))
    con.execute(_create_table_sql(f"{RAW_SCHEMA}.load_log", list(LOAD_LOG_COLUMNS)))


def _add_missing_columns(con, table: str, columns: tuple[tuple[str, str], ...]) -> None:
    """Columns added to a table after it was created (a warehouse of an earlier version)."""
    # the columns of an empty result (duckdb_columns() costs ~70 ms on every load)
    have = {d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description}
    for col, sql_type in columns:
        if col not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {_ident(col)} {sql_type}")


# --------------------------------------------------------------------------- discovery
def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _resolve_timezone(mapping: SourceMapping, business_timezone: str | None) -> SourceMapping:
    """The mapping with its timezone resolved: its own, else ``business_timezone``, else the
    project's setting (CRM_TIMEZONE, default Asia/Shanghai)."""
    if mapping.timezone:
        return mapping
    if business_timezone is None:
        from pipelines.lib.settings import get_settings

        business_timezone = get_settings().timezone
    return mapping.with_timezone(business_timezone)


def discover_partitions(landing_dir: str | Path, mapping: SourceMapping) -> list[date]:
    """Delivery dates present for a mapping: folders ``<landing>/<name>/YYYY-MM-DD``."""
    root = Path(landing_dir) / mapping.name
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and DATE_DIR_RE.match(p.name):
            try:
                found.append(date.fromisoformat(p.name))
            except ValueError:
                continue
    return sorted(found)


def partition_files(
    landing_dir: str | Path, mapping: SourceMapping, delivery_date: date | str
) -> list[Path]:
    """The files of one partition matching the mapping's glob, sorted by name.

    A symbolic link is listed (it is never followed: the loader quarantines it as a file),
    as is a file reached through a linked folder outside the delivery folder.
    """
    folder = Path(landing_dir) / mapping.name / _as_date(delivery_date).isoformat()
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.glob(mapping.files)
        if (p.is_symlink() or p.is_file()) and not p.name.startswith((".", "_"))
    )


def _not_plain(path: Path, landing: Path) -> str | None:
    """Why a delivered path is not read at all (a symbolic link, or a path that leads out of
    the delivery folder), else None."""
    if path.is_symlink():
        return "a symbolic link (links are not followed)"
    source, day = path.relative_to(landing).parts[:2]
    folder = (landing / source / day).resolve()
    if not path.resolve().is_relative_to(folder):
        return "the path leads outside the delivery folder"
    if not path.is_file():
        return "not a regular file"
    return None


# --------------------------------------------------------------------------- file scan
@dataclass
class _FileScan:
    sha256: str
    size: int
    lines: int  # physical lines ('\n'-terminated, plus a last unterminated one)


def _scan_file(path: Path) -> _FileScan:
    """sha256, size and lines of a file; of a symbolic link, of the link itself (its target
    is never read)."""
    if path.is_symlink():
        target = os.fsencode(os.readlink(path))
        return _FileScan(hashlib.sha256(target).hexdigest(), len(target), 0)
    digest = hashlib.sha256()
    size = newlines = 0
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    lines = newlines + (1 if size and last != b"\n" else 0)
    return _FileScan(digest.hexdigest(), size, lines)


def _transcode(src: Path, encoding: str, tmpdir: Path, prefix: str = "") -> Path:
    """Decode a GB18030/GBK file into a UTF-8 temp file, chunk by chunk.

    Invalid byte sequences become U+FFFD (the rows holding one are quarantined with the
    reason "invalid <encoding> byte sequence"); line breaks are kept, so line numbers are
    those of the original file.
    """
    dst = tmpdir / (prefix + src.name + ".utf8")
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    first = True
    with src.open("rb") as fin, dst.open("w", encoding="utf-8", newline="") as fout:
        while chunk := fin.read(CHUNK):
            text = decoder.decode(chunk)
            if first and text:
                text = text.removeprefix("\ufeff")
                first = False
            fout.write(text)
        fout.write(decoder.decode(b"", final=True))
    return dst


def _first_line(path: Path) -> str:
    head = b""
    with path.open("rb") as fh:  # up to 1 MB, 64 KB at a time until a line break
        while len(head) < 1 << 20 and (chunk := fh.read(1 << 16)):
            head += chunk
            if b"\n" in chunk:
                break
    head = head[: 1 << 20]
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    # the reader ends a record at LF, CRLF or a lone CR (a file with CR line breaks)
    return re.split(r"\r\n?|\n", text, maxsplit=1)[0]


def _csv_options(fmt) -> dict:
    return dict(
        delimiter=fmt.delimiter,
        quotechar=fmt.quote or None,
        quoting=csv.QUOTE_MINIMAL if fmt.quote else csv.QUOTE_NONE,
        doublequote=fmt.escape == fmt.quote,
        escapechar=None if fmt.escape in ("", fmt.quote) else fmt.escape,
    )


def _split_header(line: str, fmt) -> list[str]:
    if fmt.whitespace:
        return line.split()
    if len(fmt.delimiter) == 1:
        try:
            return next(csv.reader([line], **_csv_options(fmt)), [])
        except csv.Error:  # e.g. a name longer than the csv module's field size limit
            pass
    parts = line.split(fmt.delimiter)
    q = fmt.quote
    return [p[1:-1] if q and len(p) >= 2 and p[0] == q and p[-1] == q else p for p in parts]


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


# --------------------------------------------------------------------------- typing SQL
def _tz_to_utc(naive_sql: str, tz: str) -> str:
    return f"timezone('UTC', timezone({_lit(tz)}, {naive_sql}))"


OFFSET_RE = r"\d:\d\d(:\d\d(\.\d+)?)?\s*([zZ]|(UTC|GMT)?[+-]\d\d(:?\d\d)?)$"
# a UTC offset at the end of a value that no clock shows: hours past 23 or minutes past 59
# (DuckDB's readers take +08:61 as +09:01 and +25:00 as a day and an hour)
BAD_OFFSET_RE = r"[+-]([2][4-9]|[3-9][0-9])(:?[0-9]{2})?$|[+-][0-9]{2}:?[6-9][0-9]$"
STRPTIME_SPEC_RE = re.compile(r"%-?.")


def _format_literals(fmt: str) -> list[str]:
    """The punctuation a strptime format matches literally (outside its % directives)."""
    literal = STRPTIME_SPEC_RE.sub("", fmt.replace("%%", "\x00")).replace("\x00", "%")
    return sorted({c for c in literal if c in string.punctuation})


def _zoned(fmt: str) -> bool:
    return "%z" in fmt or "%Z" in fmt


def _strptime_one(x: str, fmt: str) -> str:
    """``try_strptime(x, 'fmt')`` with one format given as a string: DuckDB checks the
    calendar then (the list form ``try_strptime(x, ['…%z'])`` rolls 2025-02-30 over to
    03-02). A format ending in ``%z`` refuses an offset no clock shows."""
    parse = f"try_strptime({x}, {_lit(fmt)})"
    if fmt.endswith("%z"):
        return f"CASE WHEN NOT regexp_matches({x}, {_lit(BAD_OFFSET_RE)}) THEN {parse} END"
    return parse


def _strptime_sql(x: str, formats: tuple[str, ...] | list[str]) -> str:
    """The first of ``formats`` that parses ``x`` (each with ``_strptime_one``). With several
    formats each is only tried on values holding its literal punctuation ('-', '/', ':'
    ...): without it a format cannot match, so the result is the same, with fewer failed
    parses (a failed try_strptime costs as much as a successful one)."""
    if len(formats) == 1:
        return _strptime_one(x, formats[0])
    tries = []
    for f in formats:
        parse = _strptime_one(x, f)
        needs = " AND ".join(f"contains({x}, {_lit(c)})" for c in _format_literals(f))
        tries.append(f"CASE WHEN {needs} THEN {parse} END" if needs else parse)
    return f"coalesce({', '.join(tries)})"


def _iso_sql(x: str, cast: str) -> str:
    """``TRY_CAST(x AS cast)`` of an ISO 8601 value, NULL when the cast would roll the value
    over to the next day (DuckDB reads ``24:00:00`` as midnight of the next day): the date
    of the value read as a timestamp must be the date it is written with."""
    same_day = f"CAST(TRY_CAST({x} AS TIMESTAMP) AS DATE) = TRY_CAST({x} AS DATE)"
    return f"CASE WHEN {same_day} THEN TRY_CAST({x} AS {cast}) END"


def _typed_sql(v: str, spec: FieldSpec | None, canon: CanonicalField, tz: str) -> str:
    """SQL typing the varchar value ``v`` to the canonical type; NULL when it fails.

    An impossible calendar date or time (2025-02-30, 25:61, 24:00, an offset of +08:61)
    gives NULL in every form (ISO, each strptime format with or without ``%z``), never a
    rolled-over value."""
    kind = canon.kind
    formats = spec.formats if spec is not None else ()
    if kind == "varchar":
        return v
    if kind in ("integer",):
        return (
            f"CASE WHEN regexp_full_match(trim({v}), '[+-]?[0-9]+(\\.0*)?') "
            f"THEN TRY_CAST(TRY_CAST(trim({v}) AS DECIMAL(38,0)) AS INTEGER) END"
        )
    if kind == "decimal" or kind == "boolean":
        return f"TRY_CAST(trim({v}) AS {canon.sql_type.upper()})"
    x = f"trim({v})"
    if kind == "date":
        if formats:
            return f"CAST({_strptime_sql(x, formats)} AS DATE)"
        return _iso_sql(x, "DATE")
    if kind == "timestamp":
        if formats:
            zoned = [f for f in formats if _zoned(f)]
            plain = [f for f in formats if f not in zoned]
            parts = []
            if plain:
                parts.append(_tz_to_utc(_strptime_sql(x, plain), tz))
            if zoned:
                parts.append(f"timezone('UTC', {_strptime_sql(x, zoned)})")
            return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"
        return (
            f"CASE WHEN regexp_matches({x}, {_lit(OFFSET_RE)}) "
            f"THEN CASE WHEN NOT regexp_matches({x}, {_lit(BAD_OFFSET_RE)}) "
            f"THEN timezone('UTC', {_iso_sql(x, 'TIMESTAMPTZ')}) END "
            f"ELSE {_tz_to_utc(_iso_sql(x, 'TIMESTAMP'), tz)} END"
        )
    raise AssertionError(kind)


NFKC_FUNCTION = "crm_nfkc"


def _nfkc(values: pa.Array) -> pa.Array:
    """NFKC of a batch of strings (Arrow's utf8proc): full-width digits, '＠' and spaces
    become ASCII, as every other compatibility character becomes its plain form."""
    return pc.utf8_normalize(values, "NFKC")


def _register_nfkc(con: duckdb.DuckDBPyConnection) -> None:
    """``crm_nfkc(varchar)`` on this connection (DuckDB has NFC, not NFKC)."""
    found = con.execute(
        f"SELECT count(*) FROM duckdb_functions() WHERE function_name = {_lit(NFKC_FUNCTION)}"
    ).fetchall()[0][0]
    if not found:
        con.create_function(
            NFKC_FUNCTION, _nfkc, [VARCHAR], VARCHAR, type="arrow", side_effects=False
        )


def _nfkc_sql(v: str) -> str:
    """NFKC of ``v``, computed only for the values that are not plain ASCII (ASCII is its
    own NFKC; a byte count larger than the character count means a non-ASCII character)."""
    return f"CASE WHEN strlen({v}) <> length({v}) THEN {NFKC_FUNCTION}({v}) ELSE {v} END"


def _failure_sql(name: str, v: str, spec: FieldSpec, canon: CanonicalField) -> str | None:
    kind = canon.kind
    shown = f"'''' || left({v}, {VALUE_IN_REASON}) || ''''"
    if kind == "varchar":
        return None
    if kind in ("timestamp", "date"):
        if spec.formats:
            tail = f"' with formats [{', '.join(spec.formats)}]'"
        else:
            tail = f"' as an ISO 8601 {'date' if kind == 'date' else 'timestamp'}'"
        return f"{_lit(name + ': cannot parse ')} || {shown} || {_lit(tail[1:-1])}"
    what = {"integer": "an integer", "decimal": "a number", "boolean": "a boolean"}[kind]
    return f"{_lit(name + ': ')} || {shown} || {_lit(' is not ' + what)}"


def _value_sql(spec: FieldSpec) -> str:
    if spec.column is not None:
        v = _ident(spec.column)
    else:
        assert spec.expr is not None
        v = f"CAST({spec.expr.sql} AS VARCHAR)"
    if spec.values:
        whens = " ".join(
            f"WHEN {_lit(k)} THEN {_lit(val) if val != '' else 'NULL'}" for k, val in spec.values
        )
        v = f"CASE {v} {whens} ELSE {v} END"
    return v


def _default_sql(entity: str, fname: str, mapping: SourceMapping, currency: str) -> str | None:
    if entity == "orders":
        return {
            # a mapped line id left empty; an unmapped one is numbered (_insert_rows)
            "line_no": "1",
            "discount_amount": "0",
            "refunded_amount": "0",
            "currency": _lit(currency),
            "source_system": _lit(mapping.name),
        }.get(fname)
    if entity == "service_events" and fname == "event_id":
        return "md5(__rowtext)"
    return None


def _stage_sql(
    mapping: SourceMapping,
    source_sql: str,
    currency: str,
    keep_values: bool,
    *,
    raw_sql: str = "__raw",
    rowtext_sql: str = "__rowtext",
) -> str:
    """L0 source -> L1 values -> L2 typed -> L3 reasons; the stage of a group of files
    (``__f``: which file of the group).

    The source columns are passed through every layer, so ``raw_sql`` (the raw text kept
    for a quarantined row) and ``rowtext_sql`` (the row text of an ``md5`` default) are
    expressions over them computed only for the rows that need them; the reason string is
    only built for a row that fails a check.
    """
    entity = mapping.entity
    canon = ENTITIES[entity]
    assert mapping.timezone is not None, "resolved by load_partition(s)"
    l1: list[str] = []
    l2: list[str] = []
    checks: list[tuple[str, str]] = []  # (condition, reason)
    final = [
        "__f",
        "__pos",
        f"CASE WHEN __reason IS NOT NULL THEN {raw_sql} END AS __raw",
        "__reason",
    ]
    for i, cf in enumerate(canon):
        spec = mapping.fields.get(cf.name)
        default = _default_sql(entity, cf.name, mapping, currency)
        if default is not None:
            default = default.replace("__rowtext", f"({rowtext_sql})")
        vcol, tcol = f"__v{i}", f"__t{i}"
        if spec is not None:
            l1.append(f"{_value_sql(spec)} AS {vcol}")
            typed = _typed_sql(vcol, spec, cf, mapping.timezone)
            if cf.nfkc:
                typed = _nfkc_sql(typed)
            l2.append(f"{typed} AS {tcol}")
            fail = _failure_sql(cf.name, vcol, spec, cf)
            if fail is not None:
                checks.append((f"({vcol} IS NOT NULL AND {tcol} IS NULL)", fail))
            if cf.required:
                checks.append((f"{vcol} IS NULL", _lit("missing required field " + cf.name)))
            out = tcol if default is None else f"coalesce({tcol}, {default})"
            final.append(f"CAST({out} AS {cf.sql_type}) AS {_ident(cf.name)}")
            if keep_values:
                final.append(vcol)
        else:
            out = "NULL" if default is None else default
            final.append(f"CAST({out} AS {cf.sql_type}) AS {_ident(cf.name)}")
    if keep_values:  # check_mapping shows each source value beside what it maps to
        final.extend(
            f"CAST({_ident(col)} AS VARCHAR) AS __s{j}"
            for j, col in enumerate(mapping.source_columns)
        )
    # a structural problem (column count, JSON, encoding) is the whole story of its row
    checks_sql = "NULL"
    if checks:
        parts = ", ".join(f"CASE WHEN {cond} THEN {msg} END" for cond, msg in checks)
        checks_sql = (
            f"CASE WHEN {' OR '.join(cond for cond, _ in checks)} THEN "
            f"nullif(concat_ws('; ', {parts}), '') END"
        )
    reason = f"coalesce(__pre, {checks_sql}) AS __reason"
    # each layer's own columns come before the source columns (*): DuckDB binds a name to
    # its first column, so a source column named __reason or __v0 cannot stand in for them
    l1_sql = f"SELECT {''.join(c + ', ' for c in l1)}* FROM ({source_sql}) AS __l0"
    l2_sql = f"SELECT {''.join(c + ', ' for c in l2)}* FROM ({l1_sql}) AS __l1"
    return f"SELECT {', '.join(final)} FROM (SELECT {reason}, * FROM ({l2_sql}) AS __l2) AS __l3"


# --------------------------------------------------------------------------- loader
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


def _pick(values: list[str], index_sql: str) -> str:
    """SQL for ``values[index]`` (0-based) out of SQL literals; the literal if only one,
    the index itself if the values are 0, 1, 2, ..."""
    if len(values) == 1:
        return values[0]
    if values == [str(i) for i in range(len(values))]:
        return f"CAST({index_sql} AS INTEGER)"
    return f"[{', '.join(values)}][CAST({index_sql} AS BIGINT) + 1]"


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
        item.result.warnings.append(f"extra column(s) ignored: {', '.join(extra)}")


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


def _thresholds(con, skips_table: str, header: int, target: str = T_THR) -> None:
    """target(f, t, c): ordinal k of a kept row of file f maps to position k + header + c
    (ASOF on f and k >= t).

    ``skips_table(f, pos)`` lists the positions (lines or records) the kept rows skip over.
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {target} AS "
        f"SELECT f, pos - {header} - j AS t, max(j) + 1 AS c FROM ("
        f"SELECT f, pos, row_number() OVER (PARTITION BY f ORDER BY pos) - 1 AS j "
        f"FROM {skips_table} WHERE pos > {header}) GROUP BY f, t"
    )


def _ordinal(con, table: str, fcol: str) -> str:
    """SQL for the 1-based ordinal of a row of ``table`` (alias ``s``) within its file.

    The table keeps the reader's row order (insertion order is preserved), so the rows of
    a file have contiguous rowids: ordinal = rowid - first rowid of the file + 1 (cheaper
    than a row_number() window during the parallel scan). Otherwise a window adds __ord.
    """
    counts = con.execute(
        f"SELECT {fcol}, count(*), min(rowid), max(rowid) FROM {table} GROUP BY ALL"
    ).fetchall()
    if all(hi - lo + 1 == n for _, n, lo, hi in counts):
        if not counts:  # no rows (a row-less expression would not do in an ASOF join)
            return "(s.rowid + 1)"
        los = [0] * (max(f for f, *_ in counts) + 1)
        for f, _, lo, _ in counts:
            los[f] = lo
        return f"(s.rowid - {_pick([str(v) for v in los], f's.{fcol}')} + 1)"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT *, "
        f"row_number() OVER (PARTITION BY {fcol} ORDER BY rowid) AS __ord FROM {table}"
    )
    return "s.__ord"


def _read_lines(job: _Job, items: list[_Item], fids: list[int]) -> None:
    """Every physical line of the files as (f, line_no, text, bad) in T_PLINES, f = fids[i].

    A single-column ``read_csv`` without quoting over the list of files; lines it cannot
    take (invalid UTF-8) come from its rejects table, and the row numbers of the others
    are shifted past them.
    """
    con = job.con
    ids = [str(f) for f in fids]
    paths = [str(it.read_path) for it in items]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_LR} AS SELECT {_pick(ids, 'file_index')} AS f, "
        f"line AS text FROM read_csv({_list_lit(paths)}, columns={{'line': 'VARCHAR'}}, "
        f"header=false, delim={_lit(LINE_DELIM)}, quote='', escape='', auto_detect=false, "
        f"max_line_size={MAX_LINE}, store_rejects=true, rejects_table={_lit(T_LREJ)}, "
        f"rejects_scan={_lit(T_LREJ_SCAN)})"
    )
    k = _ordinal(con, T_LR, "f")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_LRJ} AS SELECT {_pick(ids, 'file_id')} AS f, "
        f"line AS pos, string_agg(DISTINCT error_type, ',') AS et, "
        f"any_value(csv_line) AS text FROM {T_LREJ} GROUP BY file_id, line"
    )
    lines = f"SELECT s.f, {k} AS line_no, s.text, NULL::VARCHAR AS bad FROM {T_LR} AS s"
    if con.execute(f"SELECT count(*) FROM {T_LRJ}").fetchall()[0][0]:
        _thresholds(con, T_LRJ, 0, T_LTHR)
        lines = (
            f"SELECT s.f, {k} + coalesce(thr.c, 0) AS line_no, s.text, NULL::VARCHAR AS bad "
            f"FROM {T_LR} AS s ASOF LEFT JOIN {T_LTHR} AS thr ON s.f = thr.f AND {k} >= thr.t "
            f"UNION ALL SELECT f, pos, rtrim(text, chr(10) || chr(13)), "
            f"CASE WHEN et LIKE '%INVALID ENCODING%' THEN 'invalid UTF-8' "
            f"WHEN et LIKE '%LINE SIZE%' THEN {_lit(_line_too_long())} "
            f"END FROM {T_LRJ}"
        )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {T_PLINES} AS {lines}")
    for t in (T_LR, T_LRJ, T_LTHR, T_LREJ, T_LREJ_SCAN):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _null_tokens_sql(col: str, tokens: tuple[str, ...]) -> str:
    if not tokens:
        return col
    return f"CASE WHEN {col} IN ({', '.join(_lit(t) for t in tokens)}) THEN NULL ELSE {col} END"


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


def _lineage(job: _Job, files: list[_Item], alias: str) -> tuple[str, str, str, str]:
    """SQL for the file, delivery date and sha256 of the row ``alias`` (its ``__f`` indexes
    ``files``), and the join that provides them: literals for one file, else a join on a
    small table of the files (cheaper than picking from constant lists row by row)."""
    if len(files) == 1:
        it = files[0]
        return _lit(it.rel), f"DATE {_lit(it.delivery.isoformat())}", _lit(it.scan.sha256), ""
    job.con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_FILES} "
        f"(f INTEGER, file VARCHAR, delivery DATE, sha256 VARCHAR)"
    )
    rows = [[f, it.rel, it.delivery, it.scan.sha256] for f, it in enumerate(files)]
    _insert_values(job.con, T_FILES, FILE_COLUMNS, rows, job.tmp)
    join = f"JOIN {T_FILES} AS fl ON fl.f = {alias}.__f"
    return "fl.file", "fl.delivery", "fl.sha256", join


def _insert_rows(job: _Job, files: list[_Item], rows_sql: str) -> None:
    """Rows of ``rows_sql`` (stage columns + __line) without a reason into raw.<entity>."""
    mapping = job.mapping
    canon_cols = [f.name for f in ENTITIES[mapping.entity]]
    cols = ", ".join(_ident(c) for c in canon_cols + [c for c, _ in LINEAGE_COLUMNS])
    file, delivery, sha, join = _lineage(job, files, "s")
    lineage = [
        _lit(mapping.name),
        file,
        "s.__line",
        delivery,
        f"TIMESTAMP {_lit(job.loaded_at.isoformat(sep=' '))}",
        _lit(mapping.version),
        sha,
    ]
    values = [f"s.{_ident(c)}" for c in canon_cols]
    if _numbers_lines(mapping):
        # line_no unmapped: the row's position among the rows of its order_id in its file
        # (quarantined rows keep their place), so that distinct lines never collapse
        values[canon_cols.index("line_no")] = "s.__line_pos"
        rows_sql = (
            f"SELECT *, CAST(row_number() OVER (PARTITION BY __f, trim(order_id) "
            f"ORDER BY __line) AS INTEGER) AS __line_pos FROM ({rows_sql}) AS __numbered"
        )
    select = ", ".join(values + lineage)
    with _unordered(job):  # the order of raw rows means nothing
        job.con.execute(
            f"INSERT INTO {raw_table(mapping.entity)} ({cols}) SELECT {select} "
            f"FROM ({rows_sql}) AS s {join} WHERE s.__reason IS NULL"
        )


def _numbers_lines(mapping: SourceMapping) -> bool:
    """True when the loader numbers the order lines (an orders mapping without line_no)."""
    return mapping.entity == "orders" and "line_no" not in mapping.fields


def _insert_quarantine(job: _Job, files: list[_Item], rows_sql: str) -> None:
    """Rows (__f, __line, __text, __reason) of ``rows_sql`` into raw.quarantine."""
    mapping = job.mapping
    file, delivery, sha, join = _lineage(job, files, "q")
    job.con.execute(
        f"INSERT INTO {RAW_SCHEMA}.quarantine SELECT {_lit(mapping.name)}, "
        f"{_lit(mapping.entity)}, {file}, q.__line, q.__text, q.__reason, {delivery}, "
        f"TIMESTAMP {_lit(job.loaded_at.isoformat(sep=' '))}, {sha} FROM ({rows_sql}) AS q {join}"
    )


def _stage_counts(con) -> dict[int, tuple[int, int]]:
    """f -> (stage rows, rows with a reason)."""
    return {
        f: (n, bad)
        for f, n, bad in con.execute(
            f"SELECT __f, count(*), count(__reason) FROM {T_STAGE} GROUP BY __f"
        ).fetchall()
    }


# ---- delimited text
def _unterminated_quote(line: str, fmt) -> bool:
    """The line opens a quote that it does not close."""
    if not fmt.quote:
        return False
    if len(fmt.delimiter) > 1 or fmt.escape not in ("", fmt.quote):
        return line.count(fmt.quote) % 2 == 1
    try:  # strict: an open quote at the end of the line raises
        next(csv.reader([line], strict=True, **_csv_options(fmt)), [])
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _csv_columns(mapping: SourceMapping, item: _Item) -> list[str]:
    fmt = mapping.format
    if fmt.columns is not None:
        return list(fmt.columns)
    assert item.read_path is not None
    first = _first_line(item.read_path)
    if fmt.header:
        if _unterminated_quote(first, fmt):
            # the reader would take every following line into the header record
            raise _Unreadable(item, "the header line has an unterminated quote")
        return _dedupe_names(_split_header(first, fmt), mapping.source_columns)
    return [f"column{i}" for i in range(len(_split_header(first, fmt)))]


def _csv_rowtext(mapping: SourceMapping, columns: list[str]) -> str:
    """The row's fields joined by the delimiter (the text behind an ``md5`` default)."""
    fields = [f"coalesce(CAST({_ident(c)} AS VARCHAR), '')" for c in columns]
    return "concat_ws(" + ", ".join([_lit(mapping.format.delimiter), *fields]) + ")"


def _csv_source(mapping: SourceMapping, group: list[_Item], columns: list[str]) -> str:
    fmt = mapping.format
    cols = ", ".join(_ident(c) for c in columns)
    pre = "NULL::VARCHAR"
    if fmt.encoding != "utf-8":  # transcoded: U+FFFD marks an undecodable byte sequence
        pre = (
            f"CASE WHEN contains(concat_ws(chr(1), {cols}), chr(65533)) THEN "
            f"{_lit('invalid ' + fmt.encoding.upper() + ' byte sequence')} END"
        )
    paths = [str(it.read_path) for it in group]
    reader = (
        f"read_csv({_lit(paths[0]) if len(paths) == 1 else _list_lit(paths)}, "
        f"columns={_struct_lit(columns)}, "
        f"header={'true' if fmt.header else 'false'}, delim={_lit(fmt.delimiter)}, "
        f"quote={_lit(fmt.quote)}, escape={_lit(fmt.escape)}, "
        f"nullstr={_list_lit(list(fmt.null_tokens))}, auto_detect=false, strict_mode=true, "
        f"max_line_size={MAX_LINE}, store_rejects=true, rejects_table={_lit(T_REJ)}, "
        f"rejects_scan={_lit(T_REJ_SCAN)})"
    )
    f = "CAST(file_index AS INTEGER)" if len(group) > 1 else "0"
    return f"SELECT {f} AS __f, NULL::BIGINT AS __pos, {pre} AS __pre, * FROM {reader}"


def _load_csv(job: _Job, items: list[_Item], per_file: bool) -> None:
    if per_file:
        for it in items:
            try:
                _check(job, it, _csv_columns(job.mapping, it))
                _load_csv_group(job, [it])
            except duckdb.Error as exc:
                raise _unreadable(job.mapping, it, exc) from exc
        return
    for it in items:
        _check(job, it, _csv_columns(job.mapping, it))
    for group in _groups(items):
        _load_csv_group(job, group)


def _load_csv_group(job: _Job, group: list[_Item]) -> None:
    con, mapping = job.con, job.mapping
    columns = group[0].columns or []
    header = 1 if mapping.format.header else 0
    fids = list(range(len(group)))
    for t in (T_REJ, T_REJ_SCAN):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    stage = _stage_sql(
        mapping,
        _csv_source(mapping, group, columns),
        job.currency,
        job.keep_values,
        raw_sql="NULL::VARCHAR",
        rowtext_sql=_csv_rowtext(mapping, columns),
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {T_STAGE} AS {stage}")
    counts = {
        f: (n, bad, lo, hi)
        for f, n, bad, lo, hi in con.execute(
            f"SELECT __f, count(*), count(__reason), min(rowid), max(rowid) FROM {T_STAGE} "
            f"GROUP BY __f"
        ).fetchall()
    }
    n_stage = [counts.get(f, (0, 0))[0] for f in fids]
    n_bad = [counts.get(f, (0, 0))[1] for f in fids]
    # Rows the CSV reader refused (structure, encoding): one per reported line.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_REC} AS SELECT "
        f"{_pick([str(f) for f in fids], 'file_id')} AS f, line AS pos, "
        f"string_agg(DISTINCT error_type, ',') AS et, "
        f"any_value(error_message) AS msg, any_value(csv_line) AS text "
        f"FROM {T_REJ} GROUP BY file_id, line"
    )
    n_rej = [0] * len(group)
    for f, n in con.execute(f"SELECT f, count(*) FROM {T_REC} GROUP BY f").fetchall():
        n_rej[f] = n
    # Fast path: every record is one line, no blank line (physical lines = header +
    # accepted + rejected); otherwise records are mapped to lines from the physical lines.
    slow = [f for f in fids if group[f].scan.lines != header + n_stage[f] + n_rej[f]]
    alone: list[int] = []
    if slow and len(group) > 1:
        # Such a file is read again on its own, as the single-file loader reads it: its
        # counts cannot be checked against its lines, and a reader call over many files
        # has been seen to drop a reject (an unterminated quote at the end of a file).
        alone, slow = slow, []
        listed = ", ".join(str(f) for f in alone)
        con.execute(f"DELETE FROM {T_STAGE} WHERE __f IN ({listed})")
        con.execute(f"DELETE FROM {T_REC} WHERE f IN ({listed})")
        for f in alone:
            counts.pop(f, None)
            n_stage[f] = n_bad[f] = n_rej[f] = 0
    if slow:
        _read_lines(job, [group[f] for f in slow], slow)
        _record_map(job, group, slow, header, n_stage, n_rej)
    rows = _csv_rows_sql(job, group, counts, n_rej, slow, header)
    _insert_rows(job, group, rows)
    if sum(n_bad):
        _quarantine_csv_rows(job, group, rows, slow)
    if sum(n_rej):
        # an over-long line is also reported as missing columns (the reader cut it): the
        # line size goes first; a count the message does not give is '?'
        reason = (
            f"CASE WHEN rj.et LIKE '%LINE SIZE%' THEN {_lit(_line_too_long())} "
            "WHEN rj.et LIKE '%COLUMNS%' THEN 'wrong column count (expected "
            f"{len(columns)}, got ' || coalesce(nullif(regexp_extract(rj.msg, "
            "'Found: (\\d+)', 1), ''), '?') || ')' "
            + " ".join(
                f"WHEN rj.et LIKE {_lit('%' + k + '%')} THEN {_lit(v)}"
                for k, v in REJECT_REASONS.items()
                if "COLUMNS" not in k and "LINE SIZE" not in k
            )
            + " ELSE lower(rj.et) || ': ' || rj.msg END"
        )
        rej_line, rej_join = "rj.pos", ""
        if slow:
            rej_line = "coalesce(rm.line_no, rj.pos)"
            rej_join = f"LEFT JOIN {T_RECMAP} AS rm ON rm.f = rj.f AND rm.rec = rj.pos"
        _insert_quarantine(
            job,
            group,
            f"SELECT rj.f AS __f, {rej_line} AS __line, trim(rj.text, chr(10) || chr(13)) "
            f"AS __text, {reason} AS __reason FROM {T_REC} AS rj {rej_join}",
        )
    done = [it for f, it in enumerate(group) if f not in alone]
    for f, it in enumerate(group):
        if f not in alone:
            it.result.rows_read = n_stage[f] + n_rej[f]
            it.result.rows_loaded = n_stage[f] - n_bad[f]
            it.result.rows_quarantined = n_bad[f] + n_rej[f]
    if job.inspect is not None:
        job.inspect(con, [it.result for it in done])
    _drop_temps(con)
    for f in alone:
        _load_csv_group(job, [group[f]])


def _csv_rows_sql(
    job: _Job,
    group: list[_Item],
    counts: dict[int, tuple[int, int, int, int]],
    n_rej: list[int],
    slow: list[int],
    header: int,
) -> str:
    """SQL for the stage rows with ``__line``: the first physical line of the record.

    The stage keeps the reader's row order, so the rows of a file have contiguous rowids
    and the ordinal k of a row within its file is rowid - first rowid of the file + 1 (a
    window otherwise). With nothing skipped the line is k + header, computed in the insert.
    Otherwise one UPDATE writes each row's line into ``__pos`` from a narrow ASOF join of
    the ordinals against thresholds built from the skipped positions (rejected records;
    blank records of slow files, whose lines come from the record map): the wide rows are
    never joined or sorted, and the inserts read plain columns.
    """
    con = job.con
    spans = [(n, lo, hi) for n, _, lo, hi in counts.values() if n]
    contiguous = all(hi - lo + 1 == n for n, lo, hi in spans)
    los = [0] * len(group)
    for f, (n, _, lo, _) in counts.items():
        los[f] = lo if n else 0
    if contiguous and not sum(n_rej) and not slow:
        return (
            f"SELECT s.*, s.rowid - {_pick([str(v) for v in los], 's.__f')} + 1 + {header} "
            f"AS __line FROM {T_STAGE} AS s"
        )
    if contiguous:
        k = f"rowid - {_pick([str(v) for v in los], '__f')} + 1"
    else:
        k = "row_number() OVER (PARTITION BY __f ORDER BY rowid)"
    _thresholds(con, T_SKIPS if slow else T_REC, header)
    pos = f"x.k + {header} + coalesce(thr.c, 0)"
    line, rm_join = pos, ""
    if slow:
        line = (
            f"CASE WHEN x.f IN ({', '.join(str(f) for f in slow)}) THEN rm.line_no ELSE {pos} END"
        )
        rm_join = f"LEFT JOIN {T_RECMAP} AS rm ON rm.f = x.f AND rm.rec = {pos}"
    con.execute(
        f"UPDATE {T_STAGE} SET __pos = u.line FROM (SELECT x.rid, {line} AS line FROM "
        f"(SELECT rowid AS rid, __f AS f, {k} AS k FROM {T_STAGE}) AS x "
        f"ASOF LEFT JOIN {T_THR} AS thr ON x.f = thr.f AND x.k >= thr.t {rm_join}) AS u "
        f"WHERE {T_STAGE}.rowid = u.rid"
    )
    return f"SELECT s.*, s.__pos AS __line FROM {T_STAGE} AS s"


def _quarantine_csv_rows(job: _Job, group: list[_Item], rows: str, slow: list[int]) -> None:
    """Quarantine the stage rows with a reason; raw text = the physical line(s) of the
    record: read back from the file in Python (one-line records), or the lines of the
    line reader (slow files)."""
    bad = f"SELECT __f, __line, __reason FROM ({rows}) AS s WHERE __reason IS NOT NULL"
    if slow:
        in_slow = ", ".join(str(f) for f in slow)
        _insert_quarantine(
            job,
            group,
            f"SELECT b.__f, b.__line, (SELECT string_agg(p.text, chr(10) ORDER BY p.line_no) "
            f"FROM {T_PLINES} AS p WHERE p.f = b.__f AND p.line_no BETWEEN b.__line AND "
            f"coalesce(rm.end_line, b.__line)) AS __text, b.__reason FROM ({bad}) AS b "
            f"LEFT JOIN {T_RECMAP} AS rm ON rm.f = b.__f AND rm.line_no = b.__line "
            f"WHERE b.__f IN ({in_slow})",
        )
        bad += f" AND __f NOT IN ({in_slow})"
    found = job.con.execute(bad).fetchall()
    wanted: dict[int, list[int]] = {}
    for f, line, _ in found:
        if line is not None:
            wanted.setdefault(f, []).append(line)
    texts = {
        f: _line_texts(group[f].read_path or group[f].path, lines) for f, lines in wanted.items()
    }
    mapping, at = job.mapping, job.loaded_at
    rows_out = [
        [
            mapping.name,
            mapping.entity,
            group[f].rel,
            line,
            texts.get(f, {}).get(line),
            reason,
            group[f].delivery,
            at,
            group[f].scan.sha256,
        ]
        for f, line, reason in found
    ]
    _insert_values(job.con, f"{RAW_SCHEMA}.quarantine", QUARANTINE_COLUMNS, rows_out, job.tmp)


def _insert_values(
    con, table: str, columns: tuple[tuple[str, str], ...], rows: list[list], tmp: Path
) -> None:
    """Insert Python rows (in the table's column order): a few with bound parameters, more
    through a JSON Lines file read by ``read_json`` (much faster than parameters then)."""
    if not rows:
        return
    if len(rows) <= 20:
        values = ", ".join(["(" + ", ".join(["?"] * len(columns)) + ")"] * len(rows))
        con.execute(f"INSERT INTO {table} VALUES {values}", [v for row in rows for v in row])
        return
    path = tmp / f"values_{time.perf_counter_ns()}.jsonl"
    names = [f"c{i}" for i in range(len(columns))]

    def plain(v: object) -> object:
        if isinstance(v, datetime):
            return v.isoformat(sep=" ")
        return v.isoformat() if isinstance(v, date) else v

    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(dict(zip(names, map(plain, row), strict=True))) + "\n")
    types = ", ".join(
        f"{_lit(n)}: {_lit(t.upper())}" for n, (_, t) in zip(names, columns, strict=True)
    )
    try:
        con.execute(
            f"INSERT INTO {table} SELECT {', '.join(names)} FROM read_json({_lit(str(path))}, "
            f"format='newline_delimited', columns={{{types}}})"
        )
    finally:
        path.unlink(missing_ok=True)


def _line_texts(path: Path, wanted: list[int]) -> dict[int, str]:
    """Physical lines (1-based) of a UTF-8 file as DuckDB's line reader gives them: without
    the line break (``\\n`` or ``\\r\\n``), and without a BOM on line 1."""
    want = sorted(set(wanted))
    out: dict[int, str] = {}
    size = path.stat().st_size
    if not want or not size:
        return out

    def text(raw: bytes, line: int) -> str:
        s = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
        return s.removeprefix("\ufeff") if line == 1 else s

    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        data = np.frombuffer(mm, dtype=np.uint8)
        try:
            j, done, prev = 0, 0, -1  # next wanted, lines ended so far, last '\n' offset
            for off in range(0, size, CHUNK):
                ends = np.flatnonzero(data[off : off + CHUNK] == 10) + off
                while j < len(want) and want[j] <= done + len(ends):
                    i = want[j] - done - 1
                    start = prev + 1 if i == 0 else int(ends[i - 1]) + 1
                    out[want[j]] = text(mm[start : int(ends[i])], want[j])
                    j += 1
                if len(ends):
                    prev = int(ends[-1])
                done += len(ends)
                if j == len(want):
                    break
            if j < len(want) and want[j] == done + 1 and prev + 1 < size:  # no final '\n'
                out[want[j]] = text(mm[prev + 1 : size], want[j])
        finally:
            del data
    return out


def _record_map(
    job: _Job, group: list[_Item], slow: list[int], header: int, n_stage, n_rej
) -> None:
    """Slow path (blank lines or fields spanning lines): map record index -> physical line.

    The CSV reader numbers records, not lines, once a quoted field spans lines. Records are
    rebuilt from the physical lines by quote parity (a line continues a record while the
    quotes seen so far are unbalanced); blank lines are records the reader skips.
    """
    con, q = job.con, job.mapping.format.quote
    qcount = (
        f"(length(coalesce(text, '')) - length(replace(coalesce(text, ''), {_lit(q)}, '')))"
        if q
        else "0"
    )
    n_lines = _pick([str(it.scan.lines) for it in group], "f")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_RECMAP} AS "
        f"WITH l AS (SELECT f, line_no, text, coalesce(sum({qcount}) OVER (PARTITION BY f "
        f"ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) % 2 = 0 "
        f"AS starts FROM {T_PLINES} WHERE f IN ({', '.join(str(f) for f in slow)})), "
        f"s AS (SELECT f, line_no, text, row_number() OVER (PARTITION BY f ORDER BY line_no) "
        f"AS rec, lead(line_no) OVER (PARTITION BY f ORDER BY line_no) - 1 AS end_line "
        f"FROM l WHERE starts) "
        f"SELECT f, rec, line_no, coalesce(end_line, {n_lines}) AS end_line, "
        f"(text IS NULL OR text = '') AS blank FROM s"
    )
    found = {
        f: (n_blank, n_records)
        for f, n_blank, n_records in con.execute(
            f"SELECT f, count(*) FILTER (WHERE blank AND rec > {header}), "
            f"count(*) FILTER (WHERE rec > {header}) FROM {T_RECMAP} GROUP BY f"
        ).fetchall()
    }
    for f in slow:
        n_blank, n_records = found.get(f, (0, 0))
        warnings = group[f].result.warnings
        if n_records - n_blank != n_stage[f] + n_rej[f]:
            warnings.append(
                "line numbers are approximate (records spanning lines could not be matched)"
            )
        if n_blank:
            warnings.append(f"{n_blank} blank line(s) skipped")
    # blank records are skipped by the reader without a reject: add them to the skips
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_SKIPS} AS SELECT f, pos FROM {T_REC} "
        f"UNION SELECT f, rec FROM {T_RECMAP} WHERE blank"
    )


# ---- whitespace-delimited text and JSON Lines: parsed in SQL from the physical lines
LINE_TEXT = "CASE WHEN line_no = 1 THEN ltrim(text, chr(65279)) ELSE text END"
# not a blank line (only spaces, tabs, CR); a regex stops at the first other character,
# where trim() would walk the whole line
BLANK_RE = re.compile("[ \t\r]*")  # the same test in Python
NONBLANK = "bad IS NOT NULL OR (text IS NOT NULL AND NOT regexp_full_match(text, '[ \t\r]*'))"


def _load_lines(job: _Job, items: list[_Item], per_file: bool) -> None:
    if not per_file:
        _load_lines_batch(job, items)
        return
    for it in items:
        try:
            _load_lines_batch(job, [it])
        except duckdb.Error as exc:
            raise _unreadable(job.mapping, it, exc) from exc


def _load_lines_batch(job: _Job, items: list[_Item]) -> None:
    con, mapping = job.con, job.mapping
    fmt = mapping.format
    _read_lines(job, items, list(range(len(items))))
    alone: list[_Item] = []
    if len(items) > 1:
        # every physical line of a file is a row of the line reader; a file where that
        # does not add up is read again on its own (as the single-file loader reads it)
        found = dict(con.execute(f"SELECT f, count(*) FROM {T_PLINES} GROUP BY f").fetchall())
        odd = [f for f, it in enumerate(items) if found.get(f, 0) != it.scan.lines]
        if odd:
            con.execute(f"DELETE FROM {T_PLINES} WHERE f IN ({', '.join(map(str, odd))})")
            alone = [items[f] for f in odd]
    active = [(f, it) for f, it in enumerate(items) if it not in alone]
    # a transcoded line holding U+FFFD had an undecodable byte sequence
    enc_bad = (
        f"WHEN contains(t, chr(65533)) THEN "
        f"{_lit('invalid ' + fmt.encoding.upper() + ' byte sequence')} "
        if fmt.encoding != "utf-8"
        else ""
    )
    if fmt.type == "jsonl":
        seen: dict[int, set[str]] = {f: set() for f in range(len(items))}
        for f, key in con.execute(
            f"SELECT DISTINCT f, unnest(json_keys(t)) FROM (SELECT f, {LINE_TEXT} AS t "
            f"FROM {T_PLINES} WHERE bad IS NULL AND json_valid(t)) "
            f"WHERE json_type(t) = 'OBJECT'"
        ).fetchall():
            seen[f].add(key)
        # an absent key is NULL, like an explicit null (exporters omit empty keys): no file
        # lacks a source column; a required field left NULL quarantines its row
        for f, it in active:
            _check(
                job, it, [*mapping.source_columns, *sorted(seen[f] - set(mapping.source_columns))]
            )
            absent = [c for c in mapping.source_columns if c not in seen[f]]
            if absent and seen[f]:
                it.result.warnings.append(f"key(s) in no line, read as NULL: {', '.join(absent)}")
        columns = list(mapping.source_columns)
        paths = _list_lit(['$."' + c.replace('"', '\\"') + '"' for c in columns])
        # jt: the JSON type of a readable valid line (parsed once for it)
        pre = (
            f"CASE WHEN bad IS NOT NULL THEN bad {enc_bad}"
            f"WHEN jt IS NULL THEN 'invalid JSON' "
            f"WHEN jt <> 'OBJECT' THEN 'not a JSON object' END"
        )
        extract = f"CASE WHEN jt = 'OBJECT' THEN json_extract_string(t, {paths}) END"
        projected = "".join(
            f", {_null_tokens_sql(f'__j[{i + 1}]', fmt.null_tokens)} AS {_ident(c)}"
            for i, c in enumerate(columns)
        )
        source = (
            f"SELECT __f, __pos, __raw, __pre, __rowtext{projected} "
            f"FROM (SELECT f AS __f, line_no AS __pos, t AS __raw, t AS __rowtext, "
            f"{pre} AS __pre, {extract} AS __j FROM (SELECT *, CASE WHEN bad IS NULL AND "
            f"json_valid(t) THEN json_type(t) END AS jt FROM (SELECT f, line_no, bad, "
            f"{LINE_TEXT} AS t FROM {T_PLINES} WHERE {NONBLANK})))"
        )
        _stage_lines(job, items, [it for _, it in active], source)
    else:
        _load_whitespace(job, items, active, enc_bad)
    _drop_temps(con)
    for it in alone:
        _load_lines_batch(job, [it])


def _load_whitespace(
    job: _Job, items: list[_Item], active: list[tuple[int, _Item]], enc_bad: str
) -> None:
    """Whitespace-delimited text from T_PLINES; ``f`` indexes ``items``."""
    con, fmt = job.con, job.mapping.format
    enc_bad = enc_bad.replace("contains(t,", "contains(__raw,")
    # whitespace-delimited: the header is the first non-blank line of each file
    firsts = {
        f: (text, line_no)
        for f, text, line_no in con.execute(
            f"SELECT f, arg_min({LINE_TEXT}, line_no), min(line_no) FROM {T_PLINES} "
            f"WHERE {NONBLANK} GROUP BY f"
        ).fetchall()
    }
    for f, it in active:
        first_line = firsts.get(f, ("", None))[0] or ""
        if fmt.columns is not None:
            columns = list(fmt.columns)
        elif fmt.header:
            columns = _dedupe_names(first_line.split(), job.mapping.source_columns)
        else:
            columns = [f"column{i}" for i in range(len(first_line.split()))]
        _check(job, it, columns)
    index = {id(it): f for f, it in enumerate(items)}
    for group in _groups([it for _, it in active]):
        fids = [index[id(it)] for it in group]
        columns = group[0].columns or []
        n = len(columns)
        where = f"f IN ({', '.join(str(f) for f in fids)}) AND ({NONBLANK})"
        if fmt.header:
            hdr = [str(firsts.get(f, (None, 0))[1] or 0) for f in range(len(items))]
            where += f" AND line_no > {_pick(hdr, 'f')}"
        pre = (
            f"CASE WHEN bad IS NOT NULL THEN bad {enc_bad}"
            f"WHEN len(__a) <> {n} THEN 'wrong column count (expected {n}, got ' "
            f"|| len(__a) || ')' END"
        )
        projected = "".join(
            f", CASE WHEN len(__a) = {n} THEN "
            f"{_null_tokens_sql(f'__a[{i + 1}]', fmt.null_tokens)} END AS {_ident(c)}"
            for i, c in enumerate(columns)
        )
        source = (
            f"SELECT __f, __pos, __raw, {pre} AS __pre, __raw AS __rowtext{projected} FROM ("
            f"SELECT f AS __f, line_no AS __pos, t AS __raw, bad, "
            f"regexp_split_to_array(trim(t, ' \t\r'), '[ \t]+') AS __a FROM ("
            f"SELECT f, line_no, bad, {LINE_TEXT} AS t FROM {T_PLINES} WHERE {where}))"
        )
        _stage_lines(job, items, group, source)


def _stage_lines(
    job: _Job,
    files: list[_Item],
    group: list[_Item],
    source: str,
    expected: dict[int, int] | None = None,
    **stage_options: str,
) -> list[_Item]:
    """Stage, insert and count the files of ``group``; ``__f`` indexes ``files``.

    With ``expected`` (f -> rows the file holds), a file whose staged rows differ is left
    out and returned, to be read again on its own.
    """
    con = job.con
    stage = _stage_sql(job.mapping, source, job.currency, job.keep_values, **stage_options)
    with _unordered(job):  # every row carries its own position (__pos)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {T_STAGE} AS {stage}")
    counts = _stage_counts(con)
    index = {id(it): f for f, it in enumerate(files)}
    alone = []
    if expected is not None and len(group) > 1:
        alone = [
            it for it in group if counts.get(index[id(it)], (0, 0))[0] != expected[index[id(it)]]
        ]
        if alone:
            listed = ", ".join(str(index[id(it)]) for it in alone)
            con.execute(f"DELETE FROM {T_STAGE} WHERE __f IN ({listed})")
    _insert_rows(job, files, f"SELECT s.*, s.__pos AS __line FROM {T_STAGE} AS s")
    if any(bad for f, (_, bad) in counts.items() if files[f] not in alone):
        _insert_quarantine(
            job,
            files,
            f"SELECT __f, __pos AS __line, __raw AS __text, __reason FROM {T_STAGE} "
            f"WHERE __reason IS NOT NULL",
        )
    done = [it for it in group if it not in alone]
    for it in done:
        n, bad = counts.get(index[id(it)], (0, 0))
        it.result.rows_read, it.result.rows_loaded, it.result.rows_quarantined = n, n - bad, bad
    if job.inspect is not None:
        job.inspect(con, [it.result for it in done])
    for t in (T_STAGE, T_FILES):  # the caller drops the others (T_PLINES is shared)
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return alone


# ---- Parquet
def _parquet_rows(con, items: list[_Item]) -> dict[int, int]:
    """Rows of each file, from the footers (one ``parquet_file_metadata`` call)."""
    rows = dict(
        con.execute(
            f"SELECT file_name, num_rows FROM parquet_file_metadata("
            f"{_list_lit([str(it.read_path) for it in items])})"
        ).fetchall()
    )
    return {f: rows.get(str(it.read_path), -1) for f, it in enumerate(items)}


def _parquet_columns(con, items: list[_Item]) -> dict[int, list[tuple[str, str, str]]]:
    """(name, type, reader's name) of the top-level columns of each file: one
    ``parquet_schema`` call for flat files, ``DESCRIBE`` for a file with nested columns or
    with names the reader renames (repeated in any case, empty)."""
    by_path: dict[str, list[tuple[str, int | None, str | None]]] = {}
    for file, name, children, dtype in con.execute(
        f"SELECT file_name, name, num_children, duckdb_type FROM parquet_schema("
        f"{_list_lit([str(it.read_path) for it in items])}) ORDER BY file_name, column_id"
    ).fetchall():
        by_path.setdefault(file, []).append((name, children, dtype))
    out = {}
    for f, it in enumerate(items):
        schema = by_path.get(str(it.read_path), [])[1:]  # [0] is the root
        if schema and not any(children for _, children, _ in schema):
            names = [name for name, _, _ in schema]
            reader = names
            if _unique_names(names) != names:
                reader = [c for c, _ in _describe_parquet(con, it)]
            out[f] = [
                (name, dtype or "", r) for (name, _, dtype), r in zip(schema, reader, strict=True)
            ]
        else:
            out[f] = [(c, t, c) for c, t in _describe_parquet(con, it)]
    return out


def _describe_parquet(con, item: _Item) -> list[tuple[str, str]]:
    described = con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({_lit(str(item.read_path))})"
    ).fetchall()
    return [(r[0], r[1]) for r in described]


def _check_parquet(job: _Job, item: _Item, schema: list[tuple[str, str, str]]) -> None:
    item.reader_columns = [r for _, _, r in schema]
    _check(job, item, _unique_names([c for c, _, _ in schema], job.mapping.source_columns))


def _load_parquet(job: _Job, items: list[_Item], per_file: bool) -> None:
    if per_file:
        for it in items:
            try:
                _check_parquet(job, it, _parquet_columns(job.con, [it])[0])
                _load_parquet_group(job, [it], None)
            except duckdb.Error as exc:
                raise _unreadable(job.mapping, it, exc) from exc
        return
    schemas = _parquet_columns(job.con, items)
    for f, it in enumerate(items):
        _check_parquet(job, it, schemas[f])
    index = {id(it): f for f, it in enumerate(items)}
    # a group: the same column names and types
    for group in _groups(items, key=lambda it: tuple(schemas[index[id(it)]])):
        rows = _parquet_rows(job.con, group) if len(group) > 1 else None
        for it in _load_parquet_group(job, group, rows):  # rows that do not add up
            _load_parquet_group(job, [it], None)


def _load_parquet_group(job: _Job, group: list[_Item], rows: dict[int, int] | None = None):
    fmt = job.mapping.format
    columns = group[0].columns or []
    names = group[0].reader_columns or columns  # the reader's names (renamed repeats)
    paths = [str(it.read_path) for it in group]
    files = _lit(paths[0]) if len(paths) == 1 else _list_lit(paths)
    reader, pos = f"read_parquet({files}, file_row_number=true)", "file_row_number + 1"
    if any(r.lower() == "file_row_number" for r in names):
        # the file has a column of that name (read alone, see _groups): a copy of it in
        # file order (insertion order preserved), numbered by rowid; its columns renamed
        # by position, so that none (say, one named rowid) shadows the rowid
        assert len(group) == 1
        copied = ", ".join(f"{_ident(r)} AS __c{i}" for i, r in enumerate(names))
        with _insertion_order_as(job, True):
            job.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {T_PQ} AS SELECT {copied} FROM read_parquet({files})"
            )
        first = job.con.execute(f"SELECT min(rowid) FROM {T_PQ}").fetchall()[0][0] or 0
        reader, pos = T_PQ, f"rowid - {first} + 1"
        names = [f"__c{i}" for i in range(len(names))]
    projected = ", ".join(
        f"{_null_tokens_sql(f'CAST({_ident(r)} AS VARCHAR)', fmt.null_tokens)} AS {_ident(c)}"
        for c, r in zip(columns, names, strict=True)
    )
    struct = ", ".join(f"{_ident(c)} := {_ident(c)}" for c in columns)
    as_json = f"CAST(to_json(struct_pack({struct})) AS VARCHAR)"
    f = "CAST(file_index AS INTEGER)" if len(group) > 1 else "0"
    source = f"SELECT {f} AS __f, {pos} AS __pos, NULL::VARCHAR AS __pre, {projected} FROM {reader}"
    alone = _stage_lines(job, group, group, source, rows, raw_sql=as_json, rowtext_sql=as_json)
    _drop_temps(job.con)
    return alone


# ---- batches
def _load_items(job: _Job, items: list[_Item], per_file: bool) -> None:
    fmt = job.mapping.format
    if fmt.type == "csv" and not fmt.whitespace:
        _load_csv(job, items, per_file)
    elif fmt.type == "parquet":
        _load_parquet(job, items, per_file)
    else:
        _load_lines(job, items, per_file)


def _mark_duplicates(con, mapping: SourceMapping, plan: list[tuple[date, list[_Item]]]) -> None:
    """A file whose bytes this mapping already loaded (in any partition) is a duplicate.

    Decided as if the partitions were loaded one after the other, each first deleting what
    it loaded before: the original is the first (delivery date, file) holding the bytes.
    """
    holders: dict[str, set[tuple[date, str]]] = {}
    old: dict[date, list[tuple[str, str]]] = {}
    for day, file, sha in con.execute(
        f"SELECT _delivery_date, _source_file, _file_sha256 FROM {RAW_SCHEMA}.load_log "
        f"WHERE _source_name = ? AND status = 'loaded'",
        [mapping.name],
    ).fetchall():
        holders.setdefault(sha, set()).add((day, file))
        old.setdefault(day, []).append((file, sha))
    for day, items in plan:
        for file, sha in old.pop(day, []):
            holders[sha].discard((day, file))
        for it in items:
            found = holders.get(it.scan.sha256)
            if found:
                it.result.status, it.result.duplicate_of = "duplicate", min(found)[1]
            else:
                holders.setdefault(it.scan.sha256, set()).add((day, it.rel))


def _insert_load_log(
    con, mapping: SourceMapping, items: list[_Item], loaded_at: datetime, tmp: Path
) -> None:
    rows = [
        [
            mapping.name,
            mapping.entity,
            it.delivery,
            it.rel,
            it.scan.sha256,
            it.scan.size,
            it.result.rows_read,
            it.result.rows_loaded,
            it.result.rows_quarantined,
            it.result.status,
            it.result.duplicate_of,
            mapping.version,
            loaded_at,
            it.result.seconds,
            "; ".join(it.result.warnings) or None,
            it.result.rows_duplicate,
            it.result.rows_superseded,
            mapping.fingerprint,
        ]
        for it in items
    ]
    _insert_values(con, f"{RAW_SCHEMA}.load_log", LOAD_LOG_COLUMNS, rows, tmp)


def _content_sql(entity: str) -> str:
    """A 64-bit hash of a raw row's canonical values (lineage aside), compared only between
    rows of one natural key: equal for exact duplicates. A service event's id may be a hash
    of the delivered row, so it is left out."""
    names = [f.name for f in ENTITIES[entity] if (entity, f.name) != ("service_events", "event_id")]
    return f"hash(struct_pack({', '.join(f'{_ident(n)} := {_ident(n)}' for n in names)}))"


def _remember_keys(con, mapping: SourceMapping, where: str, *, first: bool) -> None:
    """Add the key prefilter values (KEY_PREFILTERS) of the raw rows ``where`` selects to
    T_KEYS (a new table when ``first``): the keys whose rows a batch deletes or inserts."""
    table, pre = raw_table(mapping.entity), KEY_PREFILTERS[mapping.entity]
    select = f"SELECT DISTINCT {pre} AS p FROM {table} WHERE {where}"
    if first:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {T_KEYS} AS {select}")
    else:
        con.execute(f"INSERT INTO {T_KEYS} {select}")


def _count_replaced(con, mapping: SourceMapping) -> dict[tuple[date, str], tuple[int, int]]:
    """Recount ``rows_duplicate`` / ``rows_superseded`` in raw.load_log for every file of this
    source that may hold a row of a key in T_KEYS; returns (delivery, file) -> counts.

    Of the rows of a natural key, the latest (delivery date, load time, file, line; the
    order of the staging models) is kept downstream; every other row is counted on the file
    of the kept row, as a duplicate when its canonical values equal the kept row's, else as
    superseded. A file's counts depend on all of its keys, so the keys of the touched files
    are recounted whole. Rows are found by the key's prefilter (KEY_PREFILTERS), a plain
    column, so that whole keys and row digests are computed only for the rows that may
    share a key with the batch, not for every row of the source."""
    table, entity = raw_table(mapping.entity), mapping.entity
    pre = KEY_PREFILTERS[entity]
    parts = NATURAL_KEYS[entity]
    key_cols = ", ".join(f"{p} AS __k{i}" for i, p in enumerate(parts))
    partition = ", ".join(f"__k{i}" for i in range(len(parts)))
    src = f"_source_name = {_lit(mapping.name)}"
    # the candidate rows, materialised: the keys and digests below are computed on them only
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_CAND} AS SELECT * FROM {table} "
        f"WHERE {src} AND {pre} IN (SELECT p FROM {T_KEYS})"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_HIT} AS SELECT DISTINCT _delivery_date AS d, "
        f"_source_file AS f FROM {T_CAND}"
    )
    # the other keys of the files hit (a re-delivery's old files), and their rows
    more = f"__ingest_more_{id(con)}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {more} AS SELECT DISTINCT {pre} AS p FROM {table} AS r "
        f"SEMI JOIN {T_HIT} AS h ON r._delivery_date = h.d AND r._source_file = h.f "
        f"WHERE {src} AND {pre} NOT IN (SELECT p FROM {T_KEYS})"
    )
    if con.execute(f"SELECT count(*) FROM {more}").fetchall()[0][0]:
        con.execute(
            f"INSERT INTO {T_CAND} SELECT * FROM {table} "
            f"WHERE {src} AND {pre} IN (SELECT p FROM {more})"
        )
    con.execute(f"DROP TABLE {more}")
    counts = {
        (d, f): (int(dup), int(sup))
        for d, f, dup, sup in con.execute(
            f"WITH keyed AS (SELECT {key_cols}, {_content_sql(entity)} AS __c, _delivery_date, "
            f"_loaded_at, _source_file, _source_line FROM {T_CAND}), "
            f"ranked AS (SELECT __c, row_number() OVER w AS __rn, "
            f"first_value(_delivery_date) OVER w AS __d, first_value(_source_file) OVER w AS __f, "
            f"first_value(__c) OVER w AS __wc FROM keyed "
            f"WINDOW w AS (PARTITION BY {partition} ORDER BY _delivery_date DESC, _loaded_at DESC, "
            f"_source_file DESC, _source_line DESC)) "
            f"SELECT __d, __f, count(*) FILTER (WHERE __c = __wc), "
            f"count(*) FILTER (WHERE __c <> __wc) FROM ranked WHERE __rn > 1 GROUP BY ALL"
        ).fetchall()
    }
    log = f"{RAW_SCHEMA}.load_log"
    con.execute(
        f"UPDATE {log} AS l SET rows_duplicate = 0, rows_superseded = 0 FROM {T_HIT} AS h "
        f"WHERE l.{src} AND l._delivery_date = h.d AND l._source_file = h.f"
    )
    for (d, f), (dup, sup) in counts.items():
        con.execute(
            f"UPDATE {log} SET rows_duplicate = ?, rows_superseded = ? "
            f"WHERE {src} AND _delivery_date = ? AND _source_file = ?",
            [dup, sup, d, f],
        )
    return counts


def _timed_scan(path: Path) -> tuple[_FileScan, float]:
    t0 = time.perf_counter()
    scan = _scan_file(path)
    return scan, time.perf_counter() - t0


def _scan_all(paths: list[Path], cache: dict[Path, tuple[_FileScan, float]]) -> None:
    """Hash the files not hashed yet, on every core (hashlib releases the GIL)."""
    todo = [p for p in dict.fromkeys(paths) if p not in cache]
    if len(todo) > 1:
        with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            cache.update(zip(todo, pool.map(_timed_scan, todo), strict=True))
    else:
        cache.update((p, _timed_scan(p)) for p in todo)


def _not_text(path: Path, encoding: str) -> str | None:
    """Why a delivered text file is no text in the mapping's encoding at all (binary bytes,
    UTF-16), judged on its first 64 KB; else None."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return f"UTF-16 text (the mapping declares {encoding})"
    if b"\x00" in head:
        return f"binary content (NUL bytes), not {encoding} text"
    return None


def _quarantine_whole(job: _Job, item: _Item, reason: str) -> None:
    """Quarantine a file as a file: one row naming it, its size, sha256 and the reason;
    no line and never its content (counted as one row read and quarantined)."""
    mapping = job.mapping
    reason = f"unreadable file ({item.scan.size} bytes, sha256 {item.scan.sha256}): {reason}"
    row = [mapping.name, mapping.entity, item.rel, None, None, reason]
    row += [item.delivery, job.loaded_at, item.scan.sha256]
    _insert_values(job.con, f"{RAW_SCHEMA}.quarantine", QUARANTINE_COLUMNS, [row], job.tmp)
    item.result.rows_read = item.result.rows_quarantined = 1
    item.result.rows_loaded = 0
    item.result.warnings.append(f"quarantined as a file: {reason}")


def _quarantine_file(job: _Job, item: _Item, reason: str) -> None:
    """Quarantine a file the reader cannot read, with the reader's reason: every line that
    would be a row (neither blank nor the header) as it is in the file; a Parquet file as
    one row without line or text."""
    mapping, fmt = job.mapping, job.mapping.format
    hint = _line_breaks(item.path) if fmt.type != "parquet" else ""
    reason = f"unreadable file{f' ({hint})' if hint else ''}: {reason}"
    lineage = [item.delivery, job.loaded_at, item.scan.sha256]
    rows: list[list] = []
    count = 0

    def flush() -> None:
        nonlocal count
        _insert_values(job.con, f"{RAW_SCHEMA}.quarantine", QUARANTINE_COLUMNS, rows, job.tmp)
        count += len(rows)
        rows.clear()

    if fmt.type == "parquet":
        rows.append([mapping.name, mapping.entity, item.rel, None, None, reason, *lineage])
    else:
        header = fmt.type == "csv" and fmt.header
        with item.path.open("rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                text = raw.removesuffix(b"\n").removesuffix(b"\r")
                text = text.decode(fmt.encoding, errors="replace")
                if line_no == 1:
                    text = text.removeprefix("\ufeff")
                if header and not fmt.whitespace:  # delimited text: line 1 is the header
                    header = False
                    continue
                if BLANK_RE.fullmatch(text):
                    continue
                if header:  # whitespace-delimited: the first non-blank line
                    header = False
                    continue
                rows.append(
                    [mapping.name, mapping.entity, item.rel, line_no, text, reason, *lineage]
                )
                if len(rows) >= 100_000:
                    flush()
    flush()
    item.result.rows_read = item.result.rows_quarantined = count
    item.result.rows_loaded = 0
    item.result.warnings.append(f"every row quarantined: {reason}")


def _line_breaks(path: Path) -> str:
    """'line breaks mixed: LF, CRLF' when a text file mixes kinds of line breaks (the usual
    reason the readers give up on it), else ''."""
    lf = cr = crlf = 0
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            crlf += chunk.count(b"\r\n") + (last == b"\r" and chunk[:1] == b"\n")
            lf, cr, last = lf + chunk.count(b"\n"), cr + chunk.count(b"\r"), chunk[-1:]
    kinds = [k for k, n in (("LF", lf - crlf), ("CRLF", crlf), ("CR", cr - crlf)) if n]
    return f"line breaks mixed: {', '.join(kinds)}" if len(kinds) > 1 else ""


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
    plan: list[tuple[date, list[_Item]]] = []
    _scan_all([p for _, paths in partitions for p in paths], scans)
    for day, paths in partitions:
        items = []
        for path in paths:
            scan, seconds = scans[path]
            result = FileResult(file=_relative(path, landing), sha256=scan.sha256, bytes=scan.size)
            items.append(_Item(day, path, scan, result, seconds))
        plan.append((day, items))
    every = [it for _, items in plan for it in items]
    fmt = mapping.format
    for it in every:  # never read: links, paths out of the folder, files not text at all
        if it.path in unreadable or it.scan.size == 0:
            continue
        why = _not_plain(it.path, landing)
        if why is None and fmt.type != "parquet":
            why = _not_text(it.path, fmt.encoding)
        if why is not None:
            unreadable[it.path] = _Unreadable(it, why, whole=True)
    _register_nfkc(con)
    order = _insertion_order(con)
    with _scratch(con) as tmp:
        job = _Job(con, mapping, loaded_at, currency, keep_values, inspect, expr_checks, tmp, order)
        con.execute("BEGIN TRANSACTION")
        try:
            _mark_duplicates(con, mapping, plan)
            days = ", ".join(f"DATE {_lit(d.isoformat())}" for d, _ in plan)
            key = f"_source_name = {_lit(mapping.name)} AND _delivery_date IN ({days})"
            _remember_keys(con, mapping, key, first=True)
            for t in (raw_table(mapping.entity), f"{RAW_SCHEMA}.quarantine"):
                con.execute(f"DELETE FROM {t} WHERE {key}")
            con.execute(f"DELETE FROM {RAW_SCHEMA}.load_log WHERE {key}")
            todo = [it for it in every if it.result.status == "loaded" and it.scan.size > 0]
            _no_file_readable(mapping, plan, todo, unreadable)
            for it in todo:
                if it.path in unreadable:
                    t0 = time.perf_counter()
                    bad = unreadable[it.path]
                    if bad.whole:
                        _quarantine_whole(job, it, bad.reason)
                    else:
                        _quarantine_file(job, it, bad.reason)
                    it.own_seconds += time.perf_counter() - t0
            todo = [it for it in todo if it.path not in unreadable]
            for i, it in enumerate(todo):
                it.read_path = it.path
                if fmt.encoding != "utf-8" and fmt.type != "parquet":
                    t0 = time.perf_counter()
                    it.read_path = _transcode(it.path, fmt.encoding, tmp, f"{i}_")
                    it.own_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            if todo:
                _load_items(job, todo, per_file)
            _drop_temps(con)
            # the time of the shared reads, apportioned to the files by size
            shared, total = time.perf_counter() - t0, sum(it.scan.size for it in todo)
            read = {id(it) for it in todo}
            for it in every:
                share = shared * it.scan.size / total if total and id(it) in read else 0.0
                it.result.seconds = it.own_seconds + share
            _insert_load_log(con, mapping, every, loaded_at, tmp)
            _remember_keys(con, mapping, key, first=False)
            replaced = _count_replaced(con, mapping)
            for it in every:
                dup, sup = replaced.get((it.delivery, it.rel), (0, 0))
                it.result.rows_duplicate, it.result.rows_superseded = dup, sup
            for t in (T_KEYS, T_HIT, T_CAND):
                con.execute(f"DROP TABLE IF EXISTS {t}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            _set_insertion_order(con, order)
            raise
    elapsed = time.perf_counter() - started
    size = sum(it.scan.size for it in every)
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


def _no_file_readable(
    mapping: SourceMapping,
    plan: list[tuple[date, list[_Item]]],
    todo: list[_Item],
    unreadable: dict[Path, _Unreadable],
) -> None:
    """Schema drift: a delivery none of whose files is readable, one of them for lacking a
    mapped column, fails (SchemaDriftError naming mapping, files and fields; no content)."""
    for day, items in plan:
        ids = {id(it) for it in items}
        mine = [it for it in todo if id(it) in ids]
        bad = [unreadable[it.path] for it in mine if it.path in unreadable]
        if mine and len(bad) == len(mine) and any(b.drift for b in bad):
            raise SchemaDriftError(
                f"{mapping.label}: no file of {mapping.name} delivered on {day} is readable: "
                + "; ".join(f"data file {b.rel}{' ' if b.drift else ': '}{b.reason}" for b in bad)
                + f". Fix the mapping or the export; nothing was loaded for {mapping.name} "
                "on this delivery date."
            )


SCRATCH_PREFIX = ".crm_ingest_"


@contextmanager
def _scratch(con: duckdb.DuckDBPyConnection):
    """The batch's scratch folder (transcoded copies of files: clear text), inside the
    folder of the database the connection writes (the restricted store's owner-only
    folder); the system's temporary folder only for an in-memory database. Scratch
    folders left behind by a crash are removed first (one writer per database file)."""
    path = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    parent = Path(path[0]).resolve().parent if path and path[0] else None
    if parent is not None:
        for old in parent.glob(SCRATCH_PREFIX + "*"):
            shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=parent) as tmp:
        yield Path(tmp)


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


@dataclass
class RangeResult:
    """What one ``load_partitions`` call did."""

    source: str
    entity: str
    partitions: list[PartitionResult]  # the partitions loaded, in the order asked
    failures: dict[date, MappingError]  # partitions not loaded (left as they were)
    seconds: float = 0.0


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


def stale_deliveries(
    con: duckdb.DuckDBPyConnection,
    mapping: SourceMapping,
    before: date | None = None,
    business_timezone: str | None = None,
) -> list[date]:
    """Delivery dates (before ``before``, if given) whose files this source loaded with
    another version or content of its mapping (timezone resolved as it loads): their raw
    rows do not follow the mapping as it is now until they are loaded again."""
    mapping = _resolve_timezone(mapping, business_timezone)
    where = "" if before is None else f" AND _delivery_date < DATE {_lit(before.isoformat())}"
    return [
        d
        for (d,) in con.execute(
            f"SELECT DISTINCT _delivery_date FROM {RAW_SCHEMA}.load_log WHERE _source_name = ? "
            f"AND status = 'loaded' AND (_mapping_version IS DISTINCT FROM ? OR "
            f"coalesce(mapping_fingerprint, ?) <> ?){where} ORDER BY 1",
            [mapping.name, mapping.version, mapping.fingerprint, mapping.fingerprint],
        ).fetchall()
    ]


@dataclass(frozen=True)
class SourceCounts:
    """What raw.load_log holds for one source over some delivery dates."""

    source: str
    entity: str
    files: int
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int
    rows_superseded: int
    duplicate_files: int
    # of rows_quarantined: rows of erased people delivered again (pipelines/privacy), not
    # rows that failed to load
    rows_erased: int = 0

    @property
    def quarantine_share(self) -> float:
        """The share of rows read that failed to load (erased people's rows aside)."""
        failed = self.rows_quarantined - self.rows_erased
        return failed / self.rows_read if self.rows_read else 0.0


def source_counts(
    con: duckdb.DuckDBPyConnection, first: date, last: date, entity: str | None = None
) -> list[SourceCounts]:
    """Per source (of ``entity``, or of every entity), the load log of the deliveries
    ``first`` .. ``last``: files, rows read, loaded, quarantined, duplicate and superseded
    (rows replaced by a later row of the same natural key; see ``_count_replaced``)."""
    where = "_delivery_date BETWEEN ? AND ?"
    params: list[object] = [first, last]
    if entity is not None:
        where += " AND entity = ?"
        params.append(entity)
    rows = con.execute(
        f"WITH erased AS (SELECT _source_name, count(*) AS n FROM {RAW_SCHEMA}.quarantine "
        f"WHERE _delivery_date BETWEEN ? AND ? AND reason LIKE 'erased (%' GROUP BY ALL) "
        f"SELECT l._source_name, any_value(entity), count(*), "
        f"coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0), "
        f"coalesce(sum(rows_quarantined), 0), coalesce(sum(rows_duplicate), 0), "
        f"coalesce(sum(rows_superseded), 0), count(*) FILTER (WHERE status = 'duplicate'), "
        f"coalesce(any_value(erased.n), 0) "
        f"FROM {RAW_SCHEMA}.load_log AS l LEFT JOIN erased USING (_source_name) "
        f"WHERE {where} GROUP BY l._source_name ORDER BY 2, 1",
        [first, last, *params],
    ).fetchall()
    return [SourceCounts(*(r[:2]), *(int(v) for v in r[2:])) for r in rows]


def _relative(path: Path, landing: Path) -> str:
    try:  # the path as delivered: a symbolic link is not resolved
        return (path.parent.resolve() / path.name).relative_to(landing.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------- dry run
@dataclass
class FieldCheck:
    field: str
    source: str  # "column 'x'", "expr ...", or "default ..."/"not mapped"
    # (source values by column, mapped text, typed value): the source columns the field
    # reads as delivered, what the mapping makes of them, what is loaded
    samples: list[tuple[dict[str, str | None], str | None, object]]
    null_share: float
    failures: int


@dataclass
class CheckReport:
    mapping: str
    mapping_file: str
    delivery_date: date | None
    files: list[FileResult]
    fields: list[FieldCheck]
    quarantine: list[tuple[str, int, str, str]]  # (file, line, reason, raw_text)
    reasons: list[tuple[str, int]]  # (reason, count)
    error: str | None = None
    timezone: str | None = None  # of timestamps without an offset, and where it comes from


def check_mapping(
    mapping_path: str | Path,
    landing_dir: str | Path,
    *,
    sample: int = 5,
    delivery_date: date | str | None = None,
    reporting_currency: str = "CNY",
    business_timezone: str | None = None,
) -> CheckReport:
    """Dry run of a mapping on one delivery (default: the latest) in a scratch in-memory
    DuckDB: what each field reads, sample raw -> typed values, null shares, and the rows
    that would be quarantined and why. Nothing is written to the warehouse."""
    mapping = load_mapping(mapping_path)
    own = mapping.timezone
    mapping = _resolve_timezone(mapping, business_timezone)
    dates = discover_partitions(landing_dir, mapping)
    day = _as_date(delivery_date) if delivery_date is not None else (dates[-1] if dates else None)
    report = CheckReport(mapping.name, str(mapping_path), day, [], [], [], [])
    report.timezone = (
        f"{mapping.timezone} (the mapping's)"
        if own
        else f"{mapping.timezone} (the business timezone: the mapping sets none)"
    )
    if day is None:
        report.error = f"no delivery folders under {Path(landing_dir) / mapping.name}"
        return report
    canon = ENTITIES[mapping.entity]
    mapped = [(i, cf) for i, cf in enumerate(canon) if cf.name in mapping.fields]
    source_index = {col: j for j, col in enumerate(mapping.source_columns)}
    kept = ", ".join(
        ["__f", "__pos", "__reason"]
        + [_ident(cf.name) for cf in canon]
        + [f"__v{i}" for i, _ in mapped]
        + [f"__s{j}" for j in source_index.values()]
    )

    def inspect(con, files: list[FileResult]) -> None:
        # a copy of the stage rows; created inside the load's transaction, so a load that
        # is rolled back (and retried file by file) leaves nothing behind
        con.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {T_CHECK} AS SELECT {kept} FROM {T_STAGE} LIMIT 0"
        )
        con.execute(f"INSERT INTO {T_CHECK} SELECT {kept} FROM {T_STAGE}")

    con = duckdb.connect()
    try:
        try:
            result = load_partition(
                con,
                mapping,
                landing_dir,
                day,
                reporting_currency=reporting_currency,
                keep_values=True,
                inspect=inspect,
            )
            report.files = result.files
        except MappingError as exc:
            report.error = str(exc)
            return report
        stats: dict[str, tuple[list, int, int, int]] = {}
        has_rows = con.execute(
            f"SELECT count(*) FROM duckdb_tables() WHERE table_name = {_lit(T_CHECK)}"
        ).fetchall()[0][0]
        for i, cf in enumerate(canon):
            if not has_rows:
                stats[cf.name] = ([], 0, 0, 0)
                continue
            col = _ident(cf.name)
            samples = []
            if cf.name in mapping.fields:
                cols = mapping.fields[cf.name].source_columns
                raw = ", ".join(f"__s{source_index[c]}" for c in cols) or "NULL"
                samples = [
                    (dict(zip(cols, row[2:], strict=False)), row[0], row[1])
                    for row in con.execute(
                        f"SELECT __v{i}, {col}, {raw} FROM {T_CHECK} WHERE __v{i} IS NOT NULL "
                        f"ORDER BY __f, __pos, rowid LIMIT {int(sample)}"
                    ).fetchall()
                ]
            total, nulls, fails = con.execute(
                f"SELECT count(*), count(*) - count({col}), count(*) FILTER ("
                f"WHERE __reason LIKE {_lit(cf.name + ':%')} "
                f"OR __reason LIKE {_lit('%; ' + cf.name + ':%')} "
                f"OR __reason LIKE {_lit('%missing required field ' + cf.name)} "
                f"OR __reason LIKE {_lit('%missing required field ' + cf.name + ';%')}) "
                f"FROM {T_CHECK}"
            ).fetchall()[0]
            stats[cf.name] = (samples, total, nulls, fails)
        for cf in canon:
            samples, total, nulls, fails = stats[cf.name]
            spec = mapping.fields.get(cf.name)
            if spec is not None:
                source = spec.describe()
            elif cf.name == "line_no" and _numbers_lines(mapping):
                source = "not mapped: numbered 1, 2, … per order_id in file order"
            else:
                default = _default_sql(mapping.entity, cf.name, mapping, reporting_currency)
                source = f"default {default}" if default else "not mapped (NULL)"
            report.fields.append(
                FieldCheck(cf.name, source, samples, nulls / total if total else 0.0, fails)
            )
        report.quarantine = con.execute(
            f"SELECT _source_file, _source_line, reason, raw_text FROM {RAW_SCHEMA}.quarantine "
            f"ORDER BY _source_file, _source_line LIMIT {int(sample) * 4}"
        ).fetchall()
        report.reasons = con.execute(
            f"SELECT regexp_replace(reason, '''[^'']*''', '''…''', 'g') AS r, count(*) "
            f"FROM {RAW_SCHEMA}.quarantine GROUP BY r ORDER BY 2 DESC, 1"
        ).fetchall()
    finally:
        con.close()
    return report


def _shown(value: object) -> str:
    """A value of the check report: text quoted, NULL as NULL, others as written in SQL."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") + " UTC"
    return str(value)


def format_check_report(report: CheckReport) -> str:
    """The dry-run report as text for a terminal."""
    out = [f"mapping {report.mapping} ({report.mapping_file}), delivery {report.delivery_date}"]
    if report.timezone:
        out.append(f"timestamps without an offset: {report.timezone}")
    if report.error:
        out.append(f"ERROR: {report.error}")
        return "\n".join(out)
    out.append("")
    out.append("files:")
    for f in report.files:
        line = (
            f"  {f.file}: {f.status}, {f.bytes} bytes, read {f.rows_read}, "
            f"loaded {f.rows_loaded}, quarantined {f.rows_quarantined}"
        )
        out.append(line)
        out.extend(f"    warning: {w}" for w in f.warnings)
    out.append("")
    out.append("fields (samples: source values as delivered | loaded value):")
    for fc in report.fields:
        out.append(
            f"  {fc.field:<20} {fc.source}  (null {fc.null_share:.0%}, failed {fc.failures})"
        )
        for raw, _mapped, typed in fc.samples:
            delivered = ", ".join(f"{c}={_shown(v)}" for c, v in raw.items())
            out.append(f"      {delivered:<44} | {_shown(typed)}")
    if report.reasons:
        out.append("")
        out.append("quarantine reasons:")
        out.extend(f"  {n:>8}  {r}" for r, n in report.reasons)
        out.append("")
        out.append("quarantined rows (first):")
        for file, line, reason, raw in report.quarantine:
            out.append(f"  {file}:{line}  {reason}")
            out.append(f"      {(raw or '')[:120]!r}")
    return "\n".join(out)
