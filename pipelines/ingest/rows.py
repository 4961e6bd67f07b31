"""Writing a group's rows: typed rows into ``raw.<entity>``, failed rows into
``raw.quarantine`` (with per-file lineage), Python rows through bound parameters or
JSON Lines, and the stage-insert-count step the line and Parquet readers share.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from pathlib import Path

from pipelines.ingest.batch import FILE_COLUMNS, T_FILES, T_STAGE, _Item, _Job, _unordered
from pipelines.ingest.canonical import ENTITIES, LINEAGE_COLUMNS, RAW_SCHEMA, raw_table
from pipelines.ingest.sql import _ident, _lit
from pipelines.ingest.stage import _numbers_lines, _stage_sql


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
