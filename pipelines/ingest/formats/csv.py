"""Delimited text: read by DuckDB's CSV reader over a group of files, records mapped to
physical lines (fast path: one line per record; slow path: by quote parity), rejected
records quarantined with the reader's reason.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import duckdb

from pipelines.ingest import line_reader
from pipelines.ingest.batch import (
    T_PLINES,
    T_REC,
    T_RECMAP,
    T_REJ,
    T_REJ_SCAN,
    T_SKIPS,
    T_STAGE,
    T_THR,
    _check,
    _dedupe_names,
    _drop_temps,
    _groups,
    _Item,
    _Job,
    _Unreadable,
    _unreadable,
)
from pipelines.ingest.canonical import QUARANTINE_COLUMNS, RAW_SCHEMA
from pipelines.ingest.files import _line_texts
from pipelines.ingest.line_reader import _line_too_long, _read_lines, _thresholds
from pipelines.ingest.mapping import SourceMapping
from pipelines.ingest.rows import _insert_quarantine, _insert_rows, _insert_values
from pipelines.ingest.sql import _ident, _list_lit, _lit, _pick, _struct_lit
from pipelines.ingest.stage import _stage_sql

REJECT_REASONS = {
    "MISSING COLUMNS": "wrong column count",
    "TOO MANY COLUMNS": "wrong column count",
    "UNQUOTED VALUE": "unterminated quote",
    "INVALID ENCODING": "invalid UTF-8",
    "LINE SIZE OVER MAXIMUM": f"line longer than {line_reader.MAX_LINE} bytes",
}


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
        f"max_line_size={line_reader.MAX_LINE}, store_rejects=true, rejects_table={_lit(T_REJ)}, "
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
