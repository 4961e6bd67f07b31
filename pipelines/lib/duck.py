"""DuckDB connections to the warehouse file.

DuckDB allows one writer per file and a reader blocks the writer, so the pipeline opens the
warehouse only for the duration of one step and analysts never open it (they use
`serving/serving.duckdb`, see the publish step).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipelines.lib.settings import DEFAULT_MEMORY_LIMIT

#: Memory DuckDB may use per database instance (the pipeline's connections and dbt's, via
#: dbt_env / the profile); beyond it DuckDB spills to a temporary folder next to the file.
#: DuckDB's own default is 80 % of the machine's RAM: on the large preset the dbt build then
#: reached 12.7 GB of RSS and the process tree 20.6 GB. The setting's name (dbt's profile
#: reads it from the dbt process's environment, set by `dbt_env`).
MEMORY_LIMIT_ENV = "CRM_DUCKDB_MEMORY_LIMIT"
_memory_limit = [DEFAULT_MEMORY_LIMIT]


def set_memory_limit(value: str) -> None:
    """The memory limit of the DuckDB databases this process opens from now on
    (`Settings.duckdb_memory_limit`): set once per process by the entry points (`crm`) and
    by the settings resource when a Dagster run starts (pipelines/lib/resources.py)."""
    _memory_limit[0] = value or DEFAULT_MEMORY_LIMIT


def memory_limit() -> str:
    return _memory_limit[0]


def duckdb_config() -> dict[str, str]:
    """The configuration of every DuckDB database the pipeline opens."""
    return {"memory_limit": memory_limit()}


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse file."""


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, wait_seconds: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open `path`, waiting up to `wait_seconds` while another process holds its lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise WarehouseBusyError(
                    f"{path} is in use by another process ({exc}). Only the pipeline may open "
                    "the warehouse file; analysts read serving/serving.duckdb."
                ) from exc
            time.sleep(0.5)
    try:
        yield con
    finally:
        con.close()


# The restricted store ------------------------------------------------------------------
#: Alias of the restricted store when attached to the warehouse (the same in dbt's profile).
RESTRICTED = "restricted"


def secure_restricted(path: Path) -> None:
    """Owner-only permissions on the restricted store: folder 0700, files 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    for candidate in (path, path.with_name(path.name + ".wal")):
        if candidate.exists():
            candidate.chmod(0o600)


@contextmanager
def connect_restricted(
    path: Path, *, read_only: bool = False, wait_seconds: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the restricted store (raw tables, quarantine, load log, golden record)."""
    secure_restricted(path)
    with connect(path, read_only=read_only, wait_seconds=wait_seconds) as con:
        secure_restricted(path)
        yield con


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def attach_restricted(con: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool) -> None:
    """Attach the restricted store as catalog `restricted` and, on a writable connection,
    (re)create the views `raw.<table>` over its raw tables, so that the warehouse reads
    `raw.orders` whatever file holds it. The views hold no data."""
    if read_only and not path.exists():
        return  # nothing to read yet
    secure_restricted(path)
    mode = " (READ_ONLY)" if read_only else ""
    con.execute(f"attach if not exists {_sql_text(str(path))} as {RESTRICTED}{mode}")
    secure_restricted(path)
    if read_only:
        return
    _move_raw_tables(con)
    raw_tables = [
        row[0]
        for row in con.execute(
            "select table_name from duckdb_tables() where database_name = ? and schema_name = 'raw'",
            [RESTRICTED],
        ).fetchall()
    ]
    if not raw_tables:
        return
    con.execute("create schema if not exists raw")
    existing = {
        row[0]: row[1]
        for row in con.execute(
            "select table_name, table_type from information_schema.tables "
            "where table_catalog = current_database() and table_schema = 'raw'"
        ).fetchall()
    }
    for table in raw_tables:
        if existing.get(table) == "BASE TABLE":
            raise RuntimeError(
                f"the warehouse file holds a table raw.{table} and the restricted store holds "
                "one too: raw tables live only in the restricted store "
                "(docs/operations.md, 'The restricted store')"
            )
        if table not in existing:
            con.execute(
                f'create or replace view raw."{table}" as select * from {RESTRICTED}.raw."{table}"'
            )


def _move_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Warehouses built before the restricted store kept raw tables in the warehouse file:
    move them (once) into the restricted store."""
    old = [
        row[0]
        for row in con.execute(
            "select table_name from duckdb_tables() "
            "where database_name = current_database() and schema_name = 'raw'"
        ).fetchall()
    ]
    if not old:
        return
    con.execute(f"create schema if not exists {RESTRICTED}.raw")
    for table in old:
        con.execute(f'create table {RESTRICTED}.raw."{table}" as select * from raw."{table}"')
        con.execute(f'drop table raw."{table}"')


@contextmanager
def connect_warehouse(
    warehouse_db: Path,
    restricted_db: Path,
    *,
    read_only: bool = False,
    wait_seconds: float = 30.0,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse with the restricted store attached (see attach_restricted)."""
    with connect(warehouse_db, read_only=read_only, wait_seconds=wait_seconds) as con:
        attach_restricted(con, restricted_db, read_only=read_only)
        yield con


def replace_table(con: Any, schema: str, table: str, columns: dict[str, str], rows: list) -> int:
    """`schema.table` replaced by `rows` (tuples in the order of `columns`, name -> DuckDB
    type) in one transaction: readers see the old table or the new one. Returns rows."""
    ddl = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    con.execute("begin")
    try:
        con.execute(f"create schema if not exists {schema}")
        con.execute(f"create or replace table {schema}.{table} ({ddl})")
        if rows:
            marks = ", ".join("?" for _ in columns)
            con.executemany(f"insert into {schema}.{table} values ({marks})", rows)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return len(rows)
