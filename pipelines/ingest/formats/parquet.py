"""Parquet: columns from the footers, values cast to text, a row's raw text its JSON."""

from __future__ import annotations

import duckdb

from pipelines.ingest.batch import (
    T_PQ,
    _check,
    _drop_temps,
    _groups,
    _insertion_order_as,
    _Item,
    _Job,
    _unique_names,
    _unreadable,
)
from pipelines.ingest.rows import _stage_lines
from pipelines.ingest.sql import _ident, _list_lit, _lit, _null_tokens_sql


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
