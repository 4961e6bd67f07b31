"""JSON Lines and whitespace-delimited text, parsed in SQL from the physical lines."""

from __future__ import annotations

import duckdb

from pipelines.ingest.batch import (
    T_PLINES,
    _check,
    _dedupe_names,
    _drop_temps,
    _groups,
    _Item,
    _Job,
    _unreadable,
)
from pipelines.ingest.line_reader import LINE_TEXT, NONBLANK, _read_lines
from pipelines.ingest.results import ABSENT_KEYS
from pipelines.ingest.rows import _stage_lines
from pipelines.ingest.sql import _ident, _list_lit, _lit, _null_tokens_sql, _pick


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
                it.result.warnings.append(f"{ABSENT_KEYS}{', '.join(absent)}")
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
