"""The Tableau route: one Hyper extract per mart.

Each `tableau/<mart>.hyper` holds one table, `"Extract"."Extract"`, the name Tableau gives
its own single-table extracts, so a file can also replace the data of a published extract.
The data sources (.tds) that read them are written by pipelines/publish/tds.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.publish.tds import HYPER_SCHEMA, HYPER_TABLE

#: No hyperd.log in the working directory.
HYPER_PARAMETERS = {"log_config": ""}


def hyper_table_name() -> Any:
    from tableauhyperapi import TableName

    return TableName(HYPER_SCHEMA, HYPER_TABLE)


def write_hyper(parquet: Path, path: Path) -> None:
    """Write the Parquet file `parquet` as a Hyper extract at `path`.

    Hyper reads the Parquet file itself (`external(...)`): exact types (DECIMAL stays
    NUMERIC(p, s), DATE, TIMESTAMP, BIGINT, BOOL, TEXT) and no row passes through Python.
    (pantab 5.3's Arrow route mis-writes negative decimals between -0.1 and 0, e.g. a
    refund of -0.05; tests/test_publish_serving.py guards the values.)"""
    from tableauhyperapi import Connection, CreateMode, HyperProcess, Telemetry

    path.parent.mkdir(parents=True, exist_ok=True)
    source = str(Path(parquet).resolve()).replace("'", "''")
    with (
        HyperProcess(
            Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU, parameters=HYPER_PARAMETERS
        ) as hyper,
        Connection(hyper.endpoint, path, CreateMode.CREATE_AND_REPLACE) as con,
    ):
        con.execute_command(f'create schema "{HYPER_SCHEMA}"')
        con.execute_command(
            f'create table "{HYPER_SCHEMA}"."{HYPER_TABLE}" as '
            f"(select * from external('{source}', format => 'parquet'))"
        )


def patch_hyper(path: Path, key: str, changed_keys: Path, rows: Path) -> int:
    """Patch the extract at `path` in place: delete the rows whose `key` is in the Parquet file
    `changed_keys` (one column, named `key`), insert the rows of the Parquet file `rows` (the
    table's columns, in order). Returns the extract's row count afterwards."""
    from tableauhyperapi import Connection, CreateMode, HyperProcess, Telemetry

    def external(parquet: Path) -> str:
        source = str(Path(parquet).resolve()).replace("'", "''")
        return f"external('{source}', format => 'parquet')"

    table = f'"{HYPER_SCHEMA}"."{HYPER_TABLE}"'
    column = '"' + key.replace('"', '""') + '"'
    with (
        HyperProcess(
            Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU, parameters=HYPER_PARAMETERS
        ) as hyper,
        Connection(hyper.endpoint, path, CreateMode.NONE) as con,
    ):
        con.execute_command(
            f"delete from {table} where {column} in (select {column} from {external(changed_keys)})"
        )
        con.execute_command(f"insert into {table} select * from {external(rows)}")
        return int(con.execute_scalar_query(f"select count(*) from {table}"))


def read_hyper(path: Path, *, return_type: str = "pandas") -> Any:
    import pantab

    return pantab.frame_from_hyper(path, table=hyper_table_name(), return_type=return_type)
