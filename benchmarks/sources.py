"""Where the benchmarks read a CRM_HOME's data: the one place that knows the files.

The raw tables (`raw.customers`, `raw.orders`, `raw.service_events`,
`raw.social_interactions`) live in the restricted store `$CRM_HOME/restricted/restricted.duckdb`
(catalog `restricted`, schema `raw`) when it has them, else in the warehouse file
`$CRM_HOME/warehouse/warehouse.duckdb` (schema `raw`). The marts are in the warehouse file.
Everything is attached read-only: the benchmarks never write a CRM_HOME.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

RAW_TABLES = ("customers", "orders", "service_events", "social_interactions")
WAREHOUSE = "warehouse"
RESTRICTED = "restricted"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _attach(con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> bool:
    if not path.exists():
        return False
    attached = {
        row[0] for row in con.execute("select database_name from duckdb_databases()").fetchall()
    }
    if alias not in attached:
        con.execute(f"attach {_quote(str(path))} as {alias} (read_only)")
    return True


def _has_raw_tables(con: duckdb.DuckDBPyConnection, catalog: str) -> bool:
    found = con.execute(
        "select count(*) from duckdb_tables() "
        "where database_name = ? and schema_name = 'raw' and table_name in ?",
        [catalog, list(RAW_TABLES)],
    ).fetchone()
    return bool(found and found[0] == len(RAW_TABLES))


def attach_raw(con: duckdb.DuckDBPyConnection, home: Path) -> str:
    """Attach (read-only) the DuckDB file holding the raw tables of CRM_HOME `home` and
    return the qualified schema to read them from (`restricted.raw` or `warehouse.raw`)."""
    home = Path(home)
    candidates = (
        (home / "restricted" / "restricted.duckdb", RESTRICTED),
        (home / "warehouse" / "warehouse.duckdb", WAREHOUSE),
    )
    for path, alias in candidates:
        if _attach(con, path, alias) and _has_raw_tables(con, alias):
            return f"{alias}.raw"
    raise FileNotFoundError(f"no raw tables under {home} (restricted store or warehouse file)")


def attach_warehouse(con: duckdb.DuckDBPyConnection, home: Path) -> str:
    """Attach (read-only) the warehouse file of CRM_HOME `home` (the marts) and return its
    catalog name. The restricted store is attached too when present, so that views over
    it resolve."""
    home = Path(home)
    _attach(con, home / "restricted" / "restricted.duckdb", RESTRICTED)
    if not _attach(con, home / "warehouse" / "warehouse.duckdb", WAREHOUSE):
        raise FileNotFoundError(f"no warehouse file under {home}")
    return WAREHOUSE


def relation_exists(con: duckdb.DuckDBPyConnection, catalog: str, schema: str, name: str) -> bool:
    """A table or view `catalog.schema.name` exists."""
    found = con.execute(
        "select count(*) from ("
        "  select database_name, schema_name, table_name from duckdb_tables()"
        "  union all select database_name, schema_name, view_name from duckdb_views()"
        ") where database_name = ? and schema_name = ? and table_name = ?",
        [catalog, schema, name],
    ).fetchone()
    return bool(found and found[0])
