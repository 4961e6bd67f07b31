"""The physical lines of text files, read by DuckDB (one column, no quoting) over a list
of files, and the mapping of a kept row's ordinal to its line (thresholds of skipped
positions). ``MAX_LINE``: the readers' longest line.
"""

from __future__ import annotations

import re

from pipelines.ingest.batch import (
    T_LR,
    T_LREJ,
    T_LREJ_SCAN,
    T_LRJ,
    T_LTHR,
    T_PLINES,
    T_THR,
    _Item,
    _Job,
)
from pipelines.ingest.sql import _list_lit, _lit, _pick

LINE_DELIM = "\x01"  # the line reader's "delimiter": a line containing it is still kept


MAX_LINE = 8 << 20


def _line_too_long() -> str:
    """The reason of a line over the readers' ``max_line_size`` (MAX_LINE bytes)."""
    return f"line longer than {MAX_LINE} bytes"


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


LINE_TEXT = "CASE WHEN line_no = 1 THEN ltrim(text, chr(65279)) ELSE text END"


# not a blank line (only spaces, tabs, CR); a regex stops at the first other character,
# where trim() would walk the whole line
BLANK_RE = re.compile("[ \t\r]*")  # the same test in Python


NONBLANK = "bad IS NOT NULL OR (text IS NOT NULL AND NOT regexp_full_match(text, '[ \t\r]*'))"
