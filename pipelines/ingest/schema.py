"""The ``raw`` schema: the four entity tables, ``raw.quarantine`` and ``raw.load_log``
(created once; columns added by later versions are added to an older warehouse).
"""

from __future__ import annotations

import duckdb

from pipelines.ingest.canonical import (
    ENTITIES,
    LINEAGE_COLUMNS,
    LOAD_LOG_COLUMNS,
    QUARANTINE_COLUMNS,
    RAW_SCHEMA,
    raw_table,
)
from pipelines.ingest.sql import _ident, _lit


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
