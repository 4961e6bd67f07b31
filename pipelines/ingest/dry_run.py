"""The dry run of a mapping (``check_mapping``): one delivery loaded into a scratch
in-memory DuckDB, what each field reads and makes of it, and the rows that would be
quarantined; ``format_check_report`` renders it for a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from pipelines.ingest.batch import T_STAGE
from pipelines.ingest.canonical import ENTITIES, RAW_SCHEMA
from pipelines.ingest.discovery import _as_date, _resolve_timezone, discover_partitions
from pipelines.ingest.engine import load_partition
from pipelines.ingest.mapping import MappingError, load_mapping
from pipelines.ingest.results import FileResult
from pipelines.ingest.sql import _ident, _lit
from pipelines.ingest.stage import _default_sql, _numbers_lines

T_CHECK = "__ingest_check"  # check_mapping: the stage rows of every file (not in TEMP_TABLES)


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
