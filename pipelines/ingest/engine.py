"""The mapping-driven loader: landing files -> ``raw.<entity>`` tables in DuckDB.

One engine for every source; a source is described by its mapping (see mapping.py and
docs/ingestion.md). Everything is read by DuckDB's own readers as text and typed in SQL
(TRY_CAST / try_strptime), one ``CREATE TABLE AS`` per file plus two inserts; Python only
hashes files (and transcodes GB18030/GBK to UTF-8 in streaming chunks).

Public API: ``ensure_raw_schema``, ``load_partition``, ``discover_partitions``,
``partition_files``, ``check_mapping``, ``format_check_report``.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from pipelines.ingest.canonical import (
    ENTITIES,
    LINEAGE_COLUMNS,
    LOAD_LOG_COLUMNS,
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
    "SchemaDriftError",
    "check_mapping",
    "discover_partitions",
    "ensure_raw_schema",
    "format_check_report",
    "load_partition",
    "partition_files",
    "partition_is_unchanged",
]

DATE_DIR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CHUNK = 1 << 22
LINE_DELIM = "\x01"  # the line reader's "delimiter": a line containing it is still kept
MAX_LINE = 8 << 20
VALUE_IN_REASON = 80  # characters of a bad value quoted in a quarantine reason

# temp tables used while loading one file (dropped afterwards)
T_STAGE, T_REJ, T_REJ_SCAN = "__ingest_stage", "__ingest_rej", "__ingest_rej_scan"
T_LR, T_LREJ, T_LREJ_SCAN = "__ingest_lr", "__ingest_lrej", "__ingest_lrej_scan"
T_PLINES, T_REC, T_THR = "__ingest_plines", "__ingest_rec", "__ingest_thr"
T_LRJ, T_RECMAP, T_SKIPS = "__ingest_lrj", "__ingest_recmap", "__ingest_skips"
T_LTHR = "__ingest_lthr"
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
)

REJECT_REASONS = {
    "MISSING COLUMNS": "wrong column count",
    "TOO MANY COLUMNS": "wrong column count",
    "UNQUOTED VALUE": "unterminated quote",
    "INVALID ENCODING": "invalid UTF-8",
    "LINE SIZE OVER MAXIMUM": f"line longer than {MAX_LINE} bytes",
}


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
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    for entity, fields in ENTITIES.items():
        cols = [(f.name, f.sql_type) for f in fields] + list(LINEAGE_COLUMNS)
        con.execute(_create_table_sql(raw_table(entity), cols))
    con.execute(_create_table_sql(f"{RAW_SCHEMA}.quarantine", list(QUARANTINE_COLUMNS)))
    con.execute(_create_table_sql(f"{RAW_SCHEMA}.load_log", list(LOAD_LOG_COLUMNS)))


# --------------------------------------------------------------------------- discovery
def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


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
    """The files of one partition matching the mapping's glob, sorted by name."""
    folder = Path(landing_dir) / mapping.name / _as_date(delivery_date).isoformat()
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob(mapping.files) if p.is_file() and not p.name.startswith((".", "_"))
    )


# --------------------------------------------------------------------------- file scan
@dataclass
class _FileScan:
    sha256: str
    size: int
    lines: int  # physical lines ('\n'-terminated, plus a last unterminated one)


def _scan_file(path: Path) -> _FileScan:
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


def _transcode(src: Path, encoding: str, tmpdir: Path) -> Path:
    """Decode a GB18030/GBK file into a UTF-8 temp file, chunk by chunk.

    Invalid byte sequences become U+FFFD (the rows holding one are quarantined with the
    reason "invalid <encoding> byte sequence"); line breaks are kept, so line numbers are
    those of the original file.
    """
    dst = tmpdir / (src.name + ".utf8")
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
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return text.split("\n", 1)[0].rstrip("\r")


def _split_header(line: str, fmt) -> list[str]:
    if fmt.whitespace:
        return line.split()
    if len(fmt.delimiter) == 1:
        reader = csv.reader(
            [line],
            delimiter=fmt.delimiter,
            quotechar=fmt.quote or None,
            quoting=csv.QUOTE_MINIMAL if fmt.quote else csv.QUOTE_NONE,
            doublequote=fmt.escape == fmt.quote,
            escapechar=None if fmt.escape in ("", fmt.quote) else fmt.escape,
        )
        return next(reader, [])
    parts = line.split(fmt.delimiter)
    q = fmt.quote
    return [p[1:-1] if q and len(p) >= 2 and p[0] == q and p[-1] == q else p for p in parts]


def _dedupe_names(names: list[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(names):
        name = raw.strip() or f"column{i}"
        base, n = name, 1
        while name in seen:
            name = f"{base}_{n}"
            n += 1
        seen.add(name)
        out.append(name)
    return out


# --------------------------------------------------------------------------- typing SQL
def _tz_to_utc(naive_sql: str, tz: str) -> str:
    return f"timezone('UTC', timezone({_lit(tz)}, {naive_sql}))"


OFFSET_RE = r"\d:\d\d(:\d\d(\.\d+)?)?\s*([zZ]|(UTC|GMT)?[+-]\d\d(:?\d\d)?)$"


def _typed_sql(v: str, spec: FieldSpec | None, canon: CanonicalField, tz: str) -> str:
    """SQL typing the varchar value ``v`` to the canonical type; NULL when it fails."""
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
    if kind == "date":
        if formats:
            return f"CAST(try_strptime(trim({v}), {_list_lit(formats)}) AS DATE)"
        return f"TRY_CAST(trim({v}) AS DATE)"
    if kind == "timestamp":
        if formats:
            zoned = [f for f in formats if "%z" in f or "%Z" in f]
            plain = [f for f in formats if f not in zoned]
            parts = []
            if plain:
                parts.append(_tz_to_utc(f"try_strptime(trim({v}), {_list_lit(plain)})", tz))
            if zoned:
                parts.append(f"timezone('UTC', try_strptime(trim({v}), {_list_lit(zoned)}))")
            return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"
        return (
            f"CASE WHEN regexp_matches(trim({v}), {_lit(OFFSET_RE)}) "
            f"THEN timezone('UTC', TRY_CAST(trim({v}) AS TIMESTAMPTZ)) "
            f"ELSE {_tz_to_utc(f'TRY_CAST(trim({v}) AS TIMESTAMP)', tz)} END"
        )
    raise AssertionError(kind)


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
            "line_no": "1",
            "discount_amount": "0",
            "refunded_amount": "0",
            "currency": _lit(currency),
            "source_system": _lit(mapping.name),
        }.get(fname)
    if entity == "service_events" and fname == "event_id":
        return "md5(__rowtext)"
    return None


def _stage_sql(mapping: SourceMapping, source_sql: str, currency: str, keep_values: bool) -> str:
    """L0 source -> L1 values -> L2 typed -> L3 reasons; the stage of one file."""
    entity = mapping.entity
    canon = ENTITIES[entity]
    l1 = ["__pos", "__raw", "__pre"]
    l2 = ["__pos", "__raw", "__pre"]
    checks: list[str] = []
    final = ["__pos", "CASE WHEN __reason IS NOT NULL THEN __raw END AS __raw", "__reason"]
    for i, cf in enumerate(canon):
        spec = mapping.fields.get(cf.name)
        default = _default_sql(entity, cf.name, mapping, currency)
        vcol, tcol = f"__v{i}", f"__t{i}"
        if spec is not None:
            l1.append(f"{_value_sql(spec)} AS {vcol}")
            l2.append(vcol)
            l2.append(f"{_typed_sql(vcol, spec, cf, mapping.timezone)} AS {tcol}")
            fail = _failure_sql(cf.name, vcol, spec, cf)
            if fail is not None:
                checks.append(f"CASE WHEN {vcol} IS NOT NULL AND {tcol} IS NULL THEN {fail} END")
            if cf.required:
                checks.append(
                    f"CASE WHEN {vcol} IS NULL THEN {_lit('missing required field ' + cf.name)} END"
                )
            out = tcol if default is None else f"coalesce({tcol}, {default})"
            if default is not None and "__rowtext" in default:
                l1.append("__rowtext")
                l2.append("__rowtext")
            final.append(f"CAST({out} AS {cf.sql_type}) AS {_ident(cf.name)}")
            if keep_values:
                final.append(vcol)
        else:
            out = "NULL" if default is None else default
            if "__rowtext" in out:
                l1.append("__rowtext")
                l2.append("__rowtext")
            final.append(f"CAST({out} AS {cf.sql_type}) AS {_ident(cf.name)}")
    l1 = list(dict.fromkeys(l1))
    l2 = list(dict.fromkeys(l2))
    # a structural problem (column count, JSON, encoding) is the whole story of its row
    checks_sql = f"nullif(concat_ws('; ', {', '.join(checks)}), '')" if checks else "NULL"
    reason = f"coalesce(__pre, {checks_sql}) AS __reason"
    return (
        f"SELECT {', '.join(final)} FROM ("
        f"SELECT *, {reason} FROM ("
        f"SELECT {', '.join(l2)} FROM ("
        f"SELECT {', '.join(l1)} FROM ({source_sql}) AS __l0) AS __l1) AS __l2) AS __l3"
    )


# --------------------------------------------------------------------------- loader
class _Ctx:
    """Per-file state shared by the reading steps."""

    def __init__(self, con, mapping: SourceMapping, path: Path, rel: str, scan: _FileScan):
        self.con = con
        self.mapping = mapping
        self.path = path  # the file DuckDB reads (maybe transcoded)
        self.rel = rel
        self.scan = scan
        self.warnings: list[str] = []

    def drift(self, columns: list[str]) -> None:
        m = self.mapping
        missing = [c for c in m.source_columns if c not in columns]
        if missing:
            users = [
                f"{name} <- {c!r}"
                for name, spec in m.fields.items()
                for c in spec.source_columns
                if c in missing
            ]
            raise SchemaDriftError(
                f"{m.label}: data file {self.rel} lacks source column(s) "
                f"{', '.join(repr(c) for c in missing)} (used by {', '.join(users)}); "
                f"the file has {columns}. Fix the mapping or the export; nothing was loaded "
                f"for {m.name} on this delivery date."
            )
        extra = [c for c in columns if c not in m.source_columns]
        if extra and m.format.columns is None:
            self.warnings.append(f"extra column(s) ignored: {', '.join(extra)}")

    def check_expressions(self, columns: list[str]) -> None:
        """Bind every expression against the file's columns so errors name the field."""
        probe = ", ".join(f"NULL::VARCHAR AS {_ident(c)}" for c in columns) or "1 AS __x"
        for name, spec in self.mapping.fields.items():
            if spec.expr is None:
                continue
            try:
                self.con.execute(
                    f"SELECT CAST({spec.expr.sql} AS VARCHAR) FROM (SELECT {probe}) LIMIT 0"
                ).fetchall()
            except duckdb.Error as exc:
                raise MappingError(
                    f"{self.mapping.label}: fields.{name}: expression {spec.expr.source!r} "
                    f"does not work on data file {self.rel} (source columns are VARCHAR; "
                    f"cast them, e.g. col::date): {str(exc).splitlines()[0]}"
                ) from exc


def _drop_temps(con) -> None:
    for t in TEMP_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _read_lines(ctx: _Ctx) -> None:
    """Every physical line of the file as (line_no, text, bad) in T_PLINES.

    A single-column ``read_csv`` without quoting; lines it cannot take (invalid UTF-8)
    come from its rejects table, and the row numbers of the others are shifted past them.
    """
    con = ctx.con
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_LR} AS SELECT row_number() OVER () AS k, line AS text "
        f"FROM read_csv({_lit(ctx.path)}, columns={{'line': 'VARCHAR'}}, header=false, "
        f"delim={_lit(LINE_DELIM)}, quote='', escape='', auto_detect=false, "
        f"max_line_size={MAX_LINE}, store_rejects=true, rejects_table={_lit(T_LREJ)}, "
        f"rejects_scan={_lit(T_LREJ_SCAN)})"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_LRJ} AS SELECT line AS pos, "
        f"string_agg(DISTINCT error_type, ',') AS et, any_value(csv_line) AS text "
        f"FROM {T_LREJ} GROUP BY line"
    )
    _thresholds(con, T_LRJ, 0, T_LTHR)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_PLINES} AS "
        f"SELECT k + coalesce(thr.c, 0) AS line_no, text, NULL::VARCHAR AS bad "
        f"FROM {T_LR} ASOF LEFT JOIN {T_LTHR} AS thr ON k >= thr.t "
        f"UNION ALL SELECT pos, rtrim(text, chr(10) || chr(13)), "
        f"CASE WHEN et LIKE '%INVALID ENCODING%' THEN 'invalid UTF-8' "
        f"WHEN et LIKE '%LINE SIZE%' THEN {_lit(REJECT_REASONS['LINE SIZE OVER MAXIMUM'])} "
        f"END FROM {T_LRJ}"
    )
    for t in (T_LR, T_LRJ, T_LTHR, T_LREJ, T_LREJ_SCAN):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _thresholds(con, skips_table: str, header: int, target: str = T_THR) -> None:
    """target(t, c): ordinal k of a kept row maps to position k + header + c (ASOF k >= t).

    ``skips_table(pos)`` lists the positions (lines or records) the kept rows skip over.
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {target} AS "
        f"SELECT pos - {header} - j AS t, max(j) + 1 AS c FROM ("
        f"SELECT pos, row_number() OVER (ORDER BY pos) - 1 AS j FROM {skips_table} "
        f"WHERE pos > {header}) GROUP BY 1"
    )


def _source_csv(ctx: _Ctx, transcoded: bool) -> tuple[str, list[str]]:
    fmt = ctx.mapping.format
    first = _first_line(ctx.path)
    if fmt.columns is not None:
        columns = list(fmt.columns)
    elif fmt.header:
        columns = _dedupe_names(_split_header(first, fmt))
    else:
        columns = [f"column{i}" for i in range(len(_split_header(first, fmt)))]
    return _csv_read_sql(ctx, columns, transcoded), columns


def _csv_read_sql(ctx: _Ctx, columns: list[str], transcoded: bool) -> str:
    fmt = ctx.mapping.format
    cols = ", ".join(_ident(c) for c in columns)
    pre = "NULL::VARCHAR"
    if transcoded:
        pre = (
            f"CASE WHEN contains(concat_ws(chr(1), {cols}), chr(65533)) THEN "
            f"{_lit('invalid ' + fmt.encoding.upper() + ' byte sequence')} END"
        )
    rowtext = (
        "concat_ws("
        + ", ".join([_lit(fmt.delimiter)] + [f"coalesce({_ident(c)}, '')" for c in columns])
        + ")"
    )
    reader = (
        f"read_csv({_lit(ctx.path)}, columns={_struct_lit(columns)}, "
        f"header={'true' if fmt.header else 'false'}, delim={_lit(fmt.delimiter)}, "
        f"quote={_lit(fmt.quote)}, escape={_lit(fmt.escape)}, "
        f"nullstr={_list_lit(list(fmt.null_tokens))}, auto_detect=false, strict_mode=true, "
        f"max_line_size={MAX_LINE}, store_rejects=true, rejects_table={_lit(T_REJ)}, "
        f"rejects_scan={_lit(T_REJ_SCAN)})"
    )
    return (
        f"SELECT NULL::BIGINT AS __pos, NULL::VARCHAR AS __raw, {pre} AS __pre, "
        f"{rowtext} AS __rowtext, * FROM {reader}"
    )


def _null_tokens_sql(col: str, tokens: tuple[str, ...]) -> str:
    if not tokens:
        return col
    return f"CASE WHEN {col} IN ({', '.join(_lit(t) for t in tokens)}) THEN NULL ELSE {col} END"


def _source_lines(ctx: _Ctx, transcoded: bool) -> tuple[str, list[str]]:
    """Whitespace-delimited text and JSON Lines: parsed in SQL from the physical lines."""
    con, fmt = ctx.con, ctx.mapping.format
    _read_lines(ctx)
    enc_bad = (
        f"WHEN contains(text, chr(65533)) THEN "
        f"{_lit('invalid ' + fmt.encoding.upper() + ' byte sequence')} "
        if transcoded
        else ""
    )
    text = "CASE WHEN line_no = 1 THEN ltrim(text, chr(65279)) ELSE text END"
    nonblank = "bad IS NOT NULL OR (text IS NOT NULL AND trim(text, ' \t\r') <> '')"
    if fmt.type == "jsonl":
        keys = con.execute(
            f"SELECT DISTINCT unnest(json_keys(t)) FROM (SELECT {text} AS t FROM {T_PLINES} "
            f"WHERE bad IS NULL AND json_valid(t)) WHERE json_type(t) = 'OBJECT'"
        ).fetchall()
        seen = {k[0] for k in keys}
        columns = [c for c in ctx.mapping.source_columns if c in seen]
        columns += sorted(seen - set(columns))
        paths = _list_lit(['$."' + c.replace('"', '\\"') + '"' for c in columns])
        pre = (
            f"CASE WHEN bad IS NOT NULL THEN bad {enc_bad}"
            f"WHEN NOT json_valid(t) THEN 'invalid JSON' "
            f"WHEN json_type(t) <> 'OBJECT' THEN 'not a JSON object' END"
        )
        extract = (
            f"CASE WHEN bad IS NULL AND json_valid(t) AND json_type(t) = 'OBJECT' "
            f"THEN json_extract_string(t, {paths}) END"
        )
        projected = ", ".join(
            f"{_null_tokens_sql(f'__j[{i + 1}]', fmt.null_tokens)} AS {_ident(c)}"
            for i, c in enumerate(columns)
        )
        sql = (
            f"SELECT __pos, __raw, __pre, __rowtext{', ' + projected if projected else ''} "
            f"FROM (SELECT line_no AS __pos, t AS __raw, t AS __rowtext, {pre} AS __pre, "
            f"{extract} AS __j FROM (SELECT line_no, bad, {text} AS t FROM {T_PLINES} "
            f"WHERE {nonblank}))"
        )
        return sql, columns
    # whitespace-delimited
    first = con.execute(
        f"SELECT {text} FROM {T_PLINES} WHERE {nonblank} ORDER BY line_no LIMIT 1"
    ).fetchall()
    first_line = first[0][0] if first else ""
    header_line = con.execute(f"SELECT min(line_no) FROM {T_PLINES} WHERE {nonblank}").fetchall()[
        0
    ][0]
    if fmt.columns is not None:
        columns = list(fmt.columns)
    elif fmt.header:
        columns = _dedupe_names((first_line or "").split())
    else:
        columns = [f"column{i}" for i in range(len((first_line or "").split()))]
    n = len(columns)
    skip_header = f"AND line_no > {header_line}" if fmt.header and header_line else ""
    pre = (
        f"CASE WHEN bad IS NOT NULL THEN bad {enc_bad}"
        f"WHEN len(__a) <> {n} THEN 'wrong column count (expected {n}, got ' "
        f"|| len(__a) || ')' END"
    )
    projected = ", ".join(
        f"CASE WHEN len(__a) = {n} THEN "
        f"{_null_tokens_sql(f'__a[{i + 1}]', fmt.null_tokens)} END AS {_ident(c)}"
        for i, c in enumerate(columns)
    )
    sql = (
        f"SELECT __pos, __raw, {pre} AS __pre, __raw AS __rowtext, {projected} FROM ("
        f"SELECT line_no AS __pos, t AS __raw, bad, "
        f"regexp_split_to_array(trim(t, ' \t\r'), '[ \t]+') AS __a FROM ("
        f"SELECT line_no, bad, {text} AS t FROM {T_PLINES} WHERE ({nonblank}) {skip_header}))"
    )
    return sql, columns


def _source_parquet(ctx: _Ctx) -> tuple[str, list[str]]:
    fmt = ctx.mapping.format
    described = ctx.con.execute(f"DESCRIBE SELECT * FROM read_parquet({_lit(ctx.path)})").fetchall()
    columns = [r[0] for r in described]
    projected = ", ".join(
        f"{_null_tokens_sql(f'CAST({_ident(c)} AS VARCHAR)', fmt.null_tokens)} AS {_ident(c)}"
        for c in columns
    )
    struct = ", ".join(f"{_ident(c)} := {_ident(c)}" for c in columns)
    sql = (
        f"SELECT __pos, CAST(to_json(struct_pack({struct})) AS VARCHAR) AS __raw, "
        f"NULL::VARCHAR AS __pre, CAST(to_json(struct_pack({struct})) AS VARCHAR) AS __rowtext, "
        f"* EXCLUDE (__pos) FROM (SELECT file_row_number + 1 AS __pos, {projected} "
        f"FROM read_parquet({_lit(ctx.path)}, file_row_number=true))"
    )
    return sql, columns


def _load_file(
    ctx: _Ctx,
    *,
    transcoded: bool,
    delivery: date,
    loaded_at: datetime,
    currency: str,
    keep_values: bool,
    inspect: Callable[[duckdb.DuckDBPyConnection, FileResult], None] | None,
    result: FileResult,
) -> None:
    con, mapping, fmt = ctx.con, ctx.mapping, ctx.mapping.format
    if ctx.scan.size == 0:
        return
    csv_mode = fmt.type == "csv" and not fmt.whitespace
    if csv_mode:
        source, columns = _source_csv(ctx, transcoded)
    elif fmt.type == "parquet":
        source, columns = _source_parquet(ctx)
    else:
        source, columns = _source_lines(ctx, transcoded)
    ctx.drift(columns)
    ctx.check_expressions(columns)
    stage_sql = _stage_sql(mapping, source, currency, keep_values)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {T_STAGE} AS {stage_sql}")
    n_stage, n_bad = con.execute(f"SELECT count(*), count(__reason) FROM {T_STAGE}").fetchall()[0]

    table = raw_table(mapping.entity)
    canon_cols = [f.name for f in ENTITIES[mapping.entity]]
    lineage_vals = [
        _lit(mapping.name),
        _lit(result.file),
        "__line",
        f"DATE {_lit(delivery.isoformat())}",
        f"TIMESTAMP {_lit(loaded_at.isoformat(sep=' '))}",
        _lit(mapping.version),
        _lit(result.sha256),
    ]
    q_prefix = f"{_lit(mapping.name)}, {_lit(mapping.entity)}, {_lit(result.file)}"
    q_suffix = (
        f"DATE {_lit(delivery.isoformat())}, TIMESTAMP {_lit(loaded_at.isoformat(sep=' '))}, "
        f"{_lit(result.sha256)}"
    )
    n_rej = 0
    header = 1 if fmt.header else 0
    if csv_mode:
        # Rows the CSV reader refused (structure, encoding): one per reported line.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {T_REC} AS SELECT line AS pos, "
            f"string_agg(DISTINCT error_type, ',') AS et, "
            f"any_value(error_message) AS msg, any_value(csv_line) AS text "
            f"FROM {T_REJ} GROUP BY line"
        )
        n_rej = con.execute(f"SELECT count(*) FROM {T_REC}").fetchall()[0][0]
        fast = ctx.scan.lines == header + n_stage + n_rej
        # The stage keeps the reader's row order (insertion order is preserved), so its
        # rowids, contiguous, give the ordinal of each row among the rows the reader
        # accepted (cheaper than a row_number() window during the parallel scan).
        ordinal = _stage_ordinal(con, n_stage)
        if n_rej:
            _thresholds(con, T_REC, header)
            pos_sql = f"({ordinal} + {header} + coalesce(thr.c, 0))"
            join = f"ASOF LEFT JOIN {T_THR} AS thr ON {ordinal} >= thr.t"
        else:
            pos_sql, join = f"({ordinal} + {header})", ""
        if fast:
            line_sql, rec_join, rej_line, rej_join = pos_sql, "", "rj.pos", ""
        else:
            _record_map(ctx, header, n_stage, n_rej)
            line_sql = "rm.line_no"
            rec_join = f"LEFT JOIN {T_RECMAP} AS rm ON rm.rec = {pos_sql}"
            rej_line = "coalesce(rm.line_no, rj.pos)"
            rej_join = f"LEFT JOIN {T_RECMAP} AS rm ON rm.rec = rj.pos"
    else:
        line_sql, join, rec_join = "s.__pos", "", ""

    cols = ", ".join(_ident(c) for c in canon_cols + [c for c, _ in LINEAGE_COLUMNS])
    select_vals = ", ".join([f"s.{_ident(c)}" for c in canon_cols] + lineage_vals)
    con.execute(
        f"INSERT INTO {table} ({cols}) SELECT {select_vals} FROM "
        f"(SELECT s.*, {line_sql} AS __line FROM {T_STAGE} AS s {join} {rec_join} "
        f"WHERE s.__reason IS NULL) AS s"
    )
    if n_bad:
        if csv_mode:
            if not con.execute(
                f"SELECT count(*) FROM duckdb_tables() WHERE table_name = {_lit(T_PLINES)}"
            ).fetchall()[0][0]:
                _read_lines(ctx)
            raw_sql = (
                f"(SELECT string_agg(p.text, chr(10) ORDER BY p.line_no) FROM {T_PLINES} AS p "
                f"WHERE p.line_no BETWEEN q.__line AND coalesce(q.__end, q.__line))"
            )
            end_sql = "rm.end_line" if rec_join else "NULL"
        else:
            raw_sql, end_sql = "q.__raw", "NULL"
        con.execute(
            f"INSERT INTO {RAW_SCHEMA}.quarantine SELECT {q_prefix}, q.__line, {raw_sql}, "
            f"q.__reason, {q_suffix} FROM (SELECT s.__reason, s.__raw, {line_sql} AS __line, "
            f"{end_sql} AS __end FROM {T_STAGE} AS s {join} {rec_join} "
            f"WHERE s.__reason IS NOT NULL) AS q"
        )
    if n_rej:
        reason = (
            "CASE WHEN rj.et LIKE '%COLUMNS%' THEN 'wrong column count (expected "
            f"{len(columns)}, got ' || coalesce(regexp_extract(rj.msg, 'Found: (\\d+)', 1), '?')"
            " || ')' "
            + " ".join(
                f"WHEN rj.et LIKE {_lit('%' + k + '%')} THEN {_lit(v)}"
                for k, v in REJECT_REASONS.items()
                if "COLUMNS" not in k
            )
            + " ELSE lower(rj.et) || ': ' || rj.msg END"
        )
        con.execute(
            f"INSERT INTO {RAW_SCHEMA}.quarantine SELECT {q_prefix}, {rej_line}, "
            f"trim(rj.text, chr(10) || chr(13)), {reason}, {q_suffix} "
            f"FROM {T_REC} AS rj {rej_join}"
        )
    result.rows_read = n_stage + n_rej
    result.rows_loaded = n_stage - n_bad
    result.rows_quarantined = n_bad + n_rej
    result.warnings.extend(ctx.warnings)
    if inspect is not None:
        inspect(con, result)


def _stage_ordinal(con, n_stage: int) -> str:
    """SQL for the 1-based ordinal of a stage row (alias ``s``)."""
    lo, hi = con.execute(f"SELECT min(rowid), max(rowid) FROM {T_STAGE}").fetchall()[0]
    if n_stage == 0 or hi - lo + 1 == n_stage:
        return f"(s.rowid - {lo or 0} + 1)"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_STAGE} AS SELECT * REPLACE "
        f"(row_number() OVER (ORDER BY rowid) AS __pos) FROM {T_STAGE}"
    )
    return "s.__pos"


def _record_map(ctx: _Ctx, header: int, n_stage: int, n_rej: int) -> None:
    """Slow path (blank lines or fields spanning lines): map record index -> physical line.

    The CSV reader numbers records, not lines, once a quoted field spans lines. Records are
    rebuilt from the physical lines by quote parity (a line continues a record while the
    quotes seen so far are unbalanced); blank lines are records the reader skips.
    """
    con, fmt = ctx.con, ctx.mapping.format
    _read_lines(ctx)
    q = fmt.quote
    qcount = (
        f"(length(coalesce(text, '')) - length(replace(coalesce(text, ''), {_lit(q)}, '')))"
        if q
        else "0"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_RECMAP} AS "
        f"WITH l AS (SELECT line_no, text, coalesce(sum({qcount}) OVER (ORDER BY line_no "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) % 2 = 0 AS starts "
        f"FROM {T_PLINES}), s AS (SELECT line_no, text, "
        f"row_number() OVER (ORDER BY line_no) AS rec, "
        f"lead(line_no) OVER (ORDER BY line_no) - 1 AS end_line FROM l WHERE starts) "
        f"SELECT rec, line_no, coalesce(end_line, {ctx.scan.lines}) AS end_line, "
        f"(text IS NULL OR text = '') AS blank FROM s"
    )
    n_blank, n_records = con.execute(
        f"SELECT count(*) FILTER (WHERE blank AND rec > {header}), "
        f"count(*) FILTER (WHERE rec > {header}) FROM {T_RECMAP}"
    ).fetchall()[0]
    if n_records - n_blank != n_stage + n_rej:
        ctx.warnings.append(
            "line numbers are approximate (records spanning lines could not be matched)"
        )
    if n_blank:
        ctx.warnings.append(f"{n_blank} blank line(s) skipped")
    # blank records are skipped by the reader without a reject: add them to the skips
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_SKIPS} AS SELECT pos FROM {T_REC} "
        f"UNION SELECT rec FROM {T_RECMAP} WHERE blank"
    )
    _thresholds(con, f"{T_SKIPS}", header)
    con.execute(f"DROP TABLE {T_SKIPS}")


def load_partition(
    con: duckdb.DuckDBPyConnection,
    mapping: SourceMapping,
    landing_dir: str | Path,
    delivery_date: date | str,
    *,
    reporting_currency: str = "CNY",
    loaded_at: datetime | None = None,
    keep_values: bool = False,
    inspect: Callable[[duckdb.DuckDBPyConnection, FileResult], None] | None = None,
) -> PartitionResult:
    """Load (or re-load) one partition ``(mapping, delivery date)`` into ``raw``.

    In one transaction: delete what this partition loaded before (rows, quarantine,
    load_log), then load every file of ``<landing>/<mapping.name>/<date>/`` matching the
    mapping's glob. A file whose bytes were already loaded for this mapping (in this or
    another partition) is logged as ``duplicate`` and not loaded again.

    Raises SchemaDriftError (a mapped source column is missing from a file) or
    MappingError (an expression does not fit the file); the transaction is rolled back and
    the warehouse is left as it was.
    """
    started = time.perf_counter()
    landing = Path(landing_dir)
    delivery = _as_date(delivery_date)
    loaded_at = loaded_at or datetime.now(UTC).replace(tzinfo=None)
    files = partition_files(landing, mapping, delivery)
    ensure_raw_schema(con)
    results: list[FileResult] = []
    with tempfile.TemporaryDirectory(prefix="crm_ingest_") as tmp:
        con.execute("BEGIN TRANSACTION")
        try:
            key = f"_source_name = {_lit(mapping.name)} AND _delivery_date = DATE {_lit(delivery)}"
            for t in (raw_table(mapping.entity), f"{RAW_SCHEMA}.quarantine"):
                con.execute(f"DELETE FROM {t} WHERE {key}")
            con.execute(f"DELETE FROM {RAW_SCHEMA}.load_log WHERE {key}")
            for path in files:
                results.append(
                    _load_one(
                        con,
                        mapping,
                        landing,
                        path,
                        Path(tmp),
                        delivery,
                        loaded_at,
                        reporting_currency,
                        keep_values,
                        inspect,
                    )
                )
            _drop_temps(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return PartitionResult(
        source=mapping.name,
        entity=mapping.entity,
        delivery_date=delivery,
        files=results,
        seconds=time.perf_counter() - started,
    )


def _load_one(
    con,
    mapping,
    landing: Path,
    path: Path,
    tmp: Path,
    delivery: date,
    loaded_at: datetime,
    currency: str,
    keep_values: bool,
    inspect,
) -> FileResult:
    t0 = time.perf_counter()
    scan = _scan_file(path)
    rel = _relative(path, landing)
    result = FileResult(file=rel, sha256=scan.sha256, bytes=scan.size)
    dup = con.execute(
        f"SELECT _source_file FROM {RAW_SCHEMA}.load_log WHERE _source_name = ? "
        f"AND _file_sha256 = ? AND status = 'loaded' ORDER BY _delivery_date, _source_file "
        f"LIMIT 1",
        [mapping.name, scan.sha256],
    ).fetchall()
    if dup:
        result.status, result.duplicate_of = "duplicate", dup[0][0]
    else:
        transcoded = mapping.format.encoding != "utf-8" and mapping.format.type != "parquet"
        read_path = _transcode(path, mapping.format.encoding, tmp) if transcoded else path
        ctx = _Ctx(con, mapping, read_path, rel, scan)
        try:
            _load_file(
                ctx,
                transcoded=transcoded,
                delivery=delivery,
                loaded_at=loaded_at,
                currency=currency,
                keep_values=keep_values,
                inspect=inspect,
                result=result,
            )
        except duckdb.Error as exc:
            raise MappingError(
                f"{mapping.label}: data file {rel} could not be read: {exc}"
            ) from exc
        finally:
            if transcoded:
                read_path.unlink(missing_ok=True)
        _drop_temps(con)
    result.seconds = time.perf_counter() - t0
    con.execute(
        f"INSERT INTO {RAW_SCHEMA}.load_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            mapping.name,
            mapping.entity,
            delivery,
            rel,
            scan.sha256,
            scan.size,
            result.rows_read,
            result.rows_loaded,
            result.rows_quarantined,
            result.status,
            result.duplicate_of,
            mapping.version,
            loaded_at,
            result.seconds,
            "; ".join(result.warnings) or None,
        ],
    )
    return result


def partition_is_unchanged(
    con: duckdb.DuckDBPyConnection,
    mapping: SourceMapping,
    landing_dir: str | Path,
    delivery_date: date | str,
) -> bool:
    """True when the partition's files (names and sha256) and the mapping version are those
    of its last load, so loading it again would change nothing. Hashes the files."""
    delivery = _as_date(delivery_date)
    landing = Path(landing_dir)
    ensure_raw_schema(con)
    logged = con.execute(
        f"SELECT _source_file, _file_sha256, _mapping_version FROM {RAW_SCHEMA}.load_log "
        f"WHERE _source_name = ? AND _delivery_date = ?",
        [mapping.name, delivery],
    ).fetchall()
    files = partition_files(landing, mapping, delivery)
    if not logged:
        return not files
    if any(v != mapping.version for _, _, v in logged):
        return False
    current = {(_relative(p, landing), _scan_file(p).sha256) for p in files}
    return current == {(f, h) for f, h, _ in logged}


def _relative(path: Path, landing: Path) -> str:
    try:
        return path.resolve().relative_to(landing.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------- dry run
@dataclass
class FieldCheck:
    field: str
    source: str  # "column 'x'", "expr ...", or "default ..."/"not mapped"
    samples: list[tuple[str | None, object]]  # (raw value, typed value)
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


def check_mapping(
    mapping_path: str | Path,
    landing_dir: str | Path,
    *,
    sample: int = 5,
    delivery_date: date | str | None = None,
    reporting_currency: str = "CNY",
) -> CheckReport:
    """Dry run of a mapping on one delivery (default: the latest) in a scratch in-memory
    DuckDB: what each field reads, sample raw -> typed values, null shares, and the rows
    that would be quarantined and why. Nothing is written to the warehouse."""
    mapping = load_mapping(mapping_path)
    dates = discover_partitions(landing_dir, mapping)
    day = _as_date(delivery_date) if delivery_date is not None else (dates[-1] if dates else None)
    report = CheckReport(mapping.name, str(mapping_path), day, [], [], [], [])
    if day is None:
        report.error = f"no delivery folders under {Path(landing_dir) / mapping.name}"
        return report
    canon = ENTITIES[mapping.entity]
    stats: dict[str, list] = {cf.name: [[], 0, 0, 0] for cf in canon}

    def inspect(con, result: FileResult) -> None:
        for i, cf in enumerate(canon):
            st = stats[cf.name]
            col = _ident(cf.name)
            if cf.name in mapping.fields:
                rows = con.execute(
                    f"SELECT __v{i}, {col} FROM {T_STAGE} WHERE __v{i} IS NOT NULL "
                    f"LIMIT {int(sample)}"
                ).fetchall()
                if len(st[0]) < sample:
                    st[0].extend(rows[: sample - len(st[0])])
            total, nulls = con.execute(
                f"SELECT count(*), count(*) - count({col}) FROM {T_STAGE}"
            ).fetchall()[0]
            st[1] += total
            st[2] += nulls
            st[3] += con.execute(
                f"SELECT count(*) FROM {T_STAGE} WHERE __reason LIKE {_lit(cf.name + ':%')} "
                f"OR __reason LIKE {_lit('%; ' + cf.name + ':%')} "
                f"OR __reason LIKE {_lit('%missing required field ' + cf.name)} "
                f"OR __reason LIKE {_lit('%missing required field ' + cf.name + ';%')}"
            ).fetchall()[0][0]

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
        for cf in canon:
            samples, total, nulls, fails = stats[cf.name]
            spec = mapping.fields.get(cf.name)
            if spec is not None:
                source = spec.describe()
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


def format_check_report(report: CheckReport) -> str:
    """The dry-run report as text for a terminal."""
    out = [f"mapping {report.mapping} ({report.mapping_file}), delivery {report.delivery_date}"]
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
    out.append("fields:")
    for fc in report.fields:
        out.append(
            f"  {fc.field:<20} {fc.source}  (null {fc.null_share:.0%}, failed {fc.failures})"
        )
        for raw, typed in fc.samples:
            out.append(f"      {raw!r:<40} -> {typed!r}")
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
