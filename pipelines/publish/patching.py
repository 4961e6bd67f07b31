"""Publication by difference: which facts of the current release can be patched, and the
patch of one fact from the keys its builds wrote (see pipelines/publish/serving.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipelines.publish.layout import (
    MANIFEST,
    PATCH_LIMIT,
    ROW_KEYS,
    SERVING_DB,
    WRITTEN_KEYS_SUFFIX,
    ident,
    literal,
)

_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def size_in_bytes(text: str) -> int:
    """A DuckDB memory size ('4GB', '3.7 GiB', '512MB') in bytes; ValueError otherwise."""
    number, _, unit = text.strip().lower().partition(" ")
    if not unit:  # '4gb': the unit follows the number without a space
        digits = number.rstrip("kmgtib")
        number, unit = digits, number[len(digits) :]
    if unit not in _SIZE_UNITS:
        raise ValueError(f"not a memory size: {text!r}")
    return int(float(number) * _SIZE_UNITS[unit])


def lower_memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """Set the connection's memory limit to `limit` when that is below its current one (a
    smaller CRM_DUCKDB_MEMORY_LIMIT stays)."""
    (current,) = con.execute("select current_setting('memory_limit')").fetchone()
    try:
        lower = size_in_bytes(limit) < size_in_bytes(current)
    except ValueError:
        return
    if lower:
        con.execute(f"set memory_limit = {literal(limit)}")


def patch_base(base: Path | None, storage_version: str) -> dict[str, Any] | None:
    """The manifest of the release `base` when a new release can start from a copy of its
    serving.duckdb: same DuckDB version, same requested storage version, complete."""
    if base is None or not (base / SERVING_DB).is_file() or not (base / MANIFEST).is_file():
        return None
    try:
        manifest = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same_writer = manifest.get("written_by_duckdb") == duckdb.__version__
    same_version = manifest.get("storage_version_requested") == storage_version
    has_tables = isinstance(manifest.get("tables"), dict)
    return manifest if same_writer and same_version and has_tables else None


def _column_types(con: duckdb.DuckDBPyConnection, database: str, schema: str, name: str) -> list:
    return con.execute(
        "select column_name, data_type from duckdb_columns() where database_name = ? "
        "and schema_name = ? and table_name = ? order by column_index",
        [database, schema, name],
    ).fetchall()


def keep_patchable(
    con: duckdb.DuckDBPyConnection, tables: dict[str, str], base_manifest: dict[str, Any]
) -> set[str]:
    """Drop from the copied serving.duckdb (attached as `srv`) every table that will not be
    patched; return the ones that will: `ROW_KEYS` tables with the warehouse's columns and
    types, published in the base release."""
    patchable = set()
    for (name,) in con.execute(
        "select table_name from duckdb_tables() where database_name = 'srv' "
        "and schema_name = 'main'"
    ).fetchall():
        if (
            name in tables
            and name in ROW_KEYS
            and name in base_manifest["tables"]
            and ROW_KEYS[name] in base_manifest["tables"][name].get("columns", [])
            and _column_types(con, "srv", "main", name)
            == _column_types(con, "wh", tables[name], name)
        ):
            patchable.add(name)
        else:
            con.execute(f"drop table srv.main.{ident(name)}")
    return patchable


@dataclass(frozen=True)
class WrittenKeys:
    """The log of the keys a fact's builds wrote (`<fact>__written_keys` in `wh.main`)."""

    table: str  # the log, qualified
    key: str  # the fact's dbt unique_key (fct_order_lines: order_id, not its row key)
    through: int  # the last build logged

    def since(self, con: duckdb.DuckDBPyConnection, build: Any) -> str | None:
        """A query of the keys written after `build` (a release's `written_keys_through`),
        or None when the log cannot tell: no such build, or a whole build after it."""
        if not isinstance(build, int) or isinstance(build, bool):
            return None
        present, whole_after = con.execute(
            f"select count(*) filter (where build = ?), count(*) filter (where whole and build > ?) "
            f"from {self.table}",
            [build, build],
        ).fetchone()
        if not present or whole_after:
            return None
        return (
            f"select distinct {ident(self.key)} from {self.table} "
            f"where build > {build} and not whole"
        )


def written_keys_of(con: duckdb.DuckDBPyConnection, name: str) -> WrittenKeys | None:
    """The written-keys log of fact `name` in the attached warehouse, if it has one."""
    log = name + WRITTEN_KEYS_SUFFIX
    columns = [c for c, _ in _column_types(con, "wh", "main", log)]
    keys = [c for c in columns if c not in ("build", "whole")]
    if not columns or {"build", "whole"} - set(columns) or len(keys) != 1:
        return None
    table = f"wh.main.{ident(log)}"
    (through,) = con.execute(f"select max(build) from {table}").fetchone()
    if through is None:
        return None
    return WrittenKeys(table, keys[0], int(through))


def patch_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source: str,
    target: str,
    columns: list[str],
    base_state: dict[str, Any],
    log: WrittenKeys | None = None,
) -> dict[str, Any] | None:
    """Patch the copied table `target` to hold exactly the rows of `source`: the keys whose
    row is new, gone or different (hash of every column) are deleted and their current rows
    inserted. Only the rows of the keys the builds wrote since the base release are compared
    when `log` can tell them; every row otherwise. Leaves the changed keys in temp table
    `__changes` (k, removed). Returns the table's manifest state, or None when it must be
    written whole instead (too many changes since the last whole write, a NULL key, a row
    count that does not match)."""
    key = ident(ROW_KEYS[name])
    row_hash = "hash(" + ", ".join(ident(c) for c in columns) + ")"
    written = log.since(con, base_state.get("written_keys_through")) if log else None
    scope = ""
    if written is not None:
        con.execute(f"create or replace temp table __written as {written}")
        scope = f" where {ident(log.key)} in (select * from __written)"
    con.execute(
        f"""create or replace temp table __changes as
        select coalesce(fresh.k, published.k) as k, fresh.k is null as removed
        from (select {key} as k, {row_hash} as h from {source}{scope}) as fresh
        full outer join (select {key} as k, {row_hash} as h from {target}{scope}) as published
            on fresh.k = published.k
        where fresh.k is null or published.k is null or fresh.h <> published.h"""
    )
    changes, null_keys = con.execute(
        "select count(*), count(*) filter (where k is null) from __changes"
    ).fetchone()
    (published_rows,) = con.execute(f"select count(*) from {target}").fetchone()
    since = int(base_state.get("patched_rows_since_whole", 0)) + changes
    if null_keys or since > PATCH_LIMIT * max(published_rows, 1):
        return None
    con.execute(f"delete from {target} where {key} in (select k from __changes)")
    con.execute(
        f"insert into {target} select * from {source} "
        f"where {key} in (select k from __changes where not removed)"
    )
    (rows,) = con.execute(f"select count(*) from {target}").fetchone()
    (expected,) = con.execute(f"select count(*) from {source}").fetchone()
    if rows != expected:  # duplicate keys: the quality gate should have stopped them
        return None
    return {
        "written": "patched",
        "patched_rows": changes,
        "patched_rows_since_whole": since,
        "compared": "written keys" if written is not None else "every row",
    }
