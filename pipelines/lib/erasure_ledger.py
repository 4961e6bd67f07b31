"""The erasure ledger in the restricted store, and the removal of raw rows that `crm forget`
(pipelines/privacy/erasure.py) and the re-delivery purge after every load
(pipelines/lib/erasure_guards.py) share.

The privacy tables (`privacy.*` of the restricted store): `erasure_requests` (the audit),
`erased_identifiers` (the erased people's identifiers as keyed pseudonyms),
`purge_state` (how far the re-delivery purge has checked), `erasure_progress` (a request
stopped midway) and `full_refresh_requests` (the next dbt build is a full refresh).

A removed raw row becomes an empty quarantine row, its order or ticket goes whole, and the
load log is adjusted so that it still reconciles (rows read = loaded + quarantined).
`compact` rewrites a DuckDB file without the free blocks that still hold deleted values.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import duckdb

from pipelines.lib.duck import RESTRICTED, connect, duckdb_config

#: The privacy tables, seen from a warehouse connection with the restricted store attached.
SCHEMA = f"{RESTRICTED}.privacy"
RAW_ENTITIES = ("customers", "orders", "service_events", "social_interactions")
#: The dbt view with every raw row's normalised identifiers.
RAW_IDENTIFIERS_VIEW = "intermediate.int_raw_row_identifiers"


class ErasureError(RuntimeError):
    """The request cannot be carried out; the message says why and what to do."""


def ensure_tables(con: duckdb.DuckDBPyConnection, schema: str = SCHEMA) -> None:
    """The privacy tables; `schema` is `privacy` on a direct connection to the store."""
    con.execute(f"create schema if not exists {schema}")
    con.execute(
        f"""create table if not exists {schema}.erasure_requests (
            request_id varchar, requested_at timestamp, requested_by varchar,
            identifier_kind varchar, customers integer, identifiers integer,
            raw_rows_removed bigint, quarantine_rows_removed bigint,
            warehouse_rows_removed bigint, details varchar, key_fingerprint varchar)"""
    )
    con.execute(
        f"""create table if not exists {schema}.erased_identifiers (
            request_id varchar, identifier_type varchar, pseudonym varchar)"""
    )
    con.execute(
        f"""create table if not exists {schema}.purge_state (
            checked_until timestamp, purged_at timestamp, rows_purged bigint)"""
    )
    con.execute(
        f"""create table if not exists {schema}.erasure_progress (
            request_id varchar, state varchar, details varchar, updated_at timestamp)"""
    )
    con.execute(
        f"""create table if not exists {schema}.full_refresh_requests (
            request_id varchar, requested_at timestamp)"""
    )


def last_loaded_at(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the last raw row was loaded (any entity)."""
    parts = " union all ".join(
        f"select max(_loaded_at) as t from {RESTRICTED}.raw.{e}" for e in RAW_ENTITIES
    )
    return con.execute(f"select max(t) from ({parts})").fetchone()[0]


def drop_staging_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the staging tables (and their build logs) of the restricted store, and the
    source identifiers int_identity_identifiers keeps for its incremental builds (clear
    values, and a record of the staging state): the next dbt build makes them again from
    the raw rows."""
    for schema, table in con.execute(
        "select schema_name, table_name from duckdb_tables() "
        "where database_name = ? and (schema_name = 'staging' or (schema_name = 'identity' "
        "and starts_with(table_name, 'int_identity_identifiers__')))",
        [RESTRICTED],
    ).fetchall():
        con.execute(f'drop table {RESTRICTED}."{schema}"."{table}"')


def has_relation(con: duckdb.DuckDBPyConnection, catalog_sql: str, schema: str, name: str) -> bool:
    row = con.execute(
        "select count(*) from duckdb_tables() where database_name = "
        f"{catalog_sql} and schema_name = ? and table_name = ? union all "
        "select count(*) from duckdb_views() where database_name = "
        f"{catalog_sql} and schema_name = ? and view_name = ?",
        [schema, name, schema, name],
    ).fetchall()
    return sum(r[0] for r in row) > 0


#: Rows that belong together: an order's lines, a ticket's events. A match on one row
#: removes the whole order / ticket.
GROUP_KEY = {
    "orders": "coalesce(nullif(trim(source_system), ''), _source_name) || ':' || trim(order_id)",
    "service_events": "_source_name || ':' || trim(ticket_id)",
}


def rows_and_their_groups(entity: str, table: str, rows_table: str) -> str:
    """A condition on `table` selecting the rows listed in `rows_table` (entity,
    _source_file, _source_line) for `entity`, and the other rows of their orders /
    tickets (an order or ticket is removed whole)."""
    where = (
        "(_source_file, _source_line) in (select _source_file, _source_line "
        f"from {rows_table} where entity = '{entity}')"
    )
    if entity in GROUP_KEY:
        key = GROUP_KEY[entity]
        where = f"{key} in (select {key} from {table} where {where})"
    return where


def remove_raw_rows(
    con: duckdb.DuckDBPyConnection, matched_sql: str, reason: str, *, transaction: bool = True
) -> dict[str, int]:
    """Delete the raw rows listed by `matched_sql` (entity, _source_file, _source_line) and
    their orders / tickets; each becomes an empty quarantine row and the load log is
    adjusted so that it still reconciles. One transaction on the restricted store (its own
    unless `transaction` is False: the caller's)."""
    con.execute(f"create or replace temp table erase_rows as {matched_sql}")
    counts: dict[str, int] = {}
    if transaction:
        con.execute("begin transaction")
    try:
        for entity in RAW_ENTITIES:
            table = f"{RESTRICTED}.raw.{entity}"
            where = rows_and_their_groups(entity, table, "erase_rows")
            con.execute(
                f"create or replace temp table erase_raw_{entity} as "
                f"select _source_name, _source_file, _source_line, _delivery_date, _file_sha256 "
                f"from {table} where {where}"
            )
            n = con.execute(f"select count(*) from erase_raw_{entity}").fetchone()[0]
            counts[entity] = n
            if not n:
                continue
            con.execute(
                f"delete from {table} where (_source_file, _source_line) in "
                f"(select _source_file, _source_line from erase_raw_{entity})"
            )
            con.execute(
                f"""insert into {RESTRICTED}.raw.quarantine
                    (_source_name, entity, _source_file, _source_line, raw_text, reason,
                     _delivery_date, _loaded_at, _file_sha256)
                select _source_name, '{entity}', _source_file, _source_line, null, ?,
                       _delivery_date, cast(now() as timestamp), _file_sha256
                from erase_raw_{entity}""",
                [reason],
            )
            con.execute(
                f"""update {RESTRICTED}.raw.load_log as log
                set rows_loaded = log.rows_loaded - removed.n,
                    rows_quarantined = coalesce(log.rows_quarantined, 0) + removed.n
                from (select _source_file, count(*) as n from erase_raw_{entity} group by all) as removed
                where log.entity = '{entity}' and log.status = 'loaded'
                  and log._source_file = removed._source_file"""
            )
        if transaction:
            con.execute("commit")
    except Exception:
        if transaction:
            con.execute("rollback")
        raise
    return counts


def _same_content(con: duckdb.DuckDBPyConnection, a: str, b: str) -> bool:
    """Databases `a` and `b` hold the same tables and views, each table with as many rows."""

    def content(db: str) -> list:
        objects = con.execute(
            "select schema_name, table_name, 'table' from duckdb_tables() where database_name = ? "
            "union all select schema_name, view_name, 'view' from duckdb_views() "
            "where database_name = ? and not internal order by all",
            [db, db],
        ).fetchall()
        return [
            (schema, name, kind)
            + (
                con.execute(f'select count(*) from "{db}"."{schema}"."{name}"').fetchone()
                if kind == "table"
                else ()
            )
            for schema, name, kind in objects
        ]

    return content(a) == content(b)


def compact(path: Path, attach: dict[str, Path] | None = None) -> None:
    """Rewrite the DuckDB file `path` without its free blocks: DuckDB keeps deleted values in
    the blocks it freed until they are reused, so after an erasure the file is CHECKPOINTed,
    copied into a new file (COPY FROM DATABASE: tables and views, no free space) and the
    copy renamed over it while the old file is still held (no writer slips in between).
    `attach`: other stores its views read (alias -> path), attached read-only."""
    if not path.exists():
        return
    with connect(path) as con:
        con.execute("checkpoint")
    alias = path.stem
    fresh = path.with_name(f".{path.name}.compact")
    for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(config=duckdb_config())
    try:
        con.execute(f"attach '{str(path).replace(chr(39), chr(39) * 2)}' as {alias} (read_only)")
        for name, other in (attach or {}).items():
            con.execute(
                f"attach '{str(other).replace(chr(39), chr(39) * 2)}' as {name} (read_only)"
            )
        con.execute(f"attach '{str(fresh).replace(chr(39), chr(39) * 2)}' as compacted")
        con.execute(f"copy from database {alias} to compacted")
        if not _same_content(con, alias, "compacted"):
            raise ErasureError(f"{path}: its compacted copy differs; the file was left as it is")
        con.execute("checkpoint compacted")
        con.execute("detach compacted")
        os.chmod(fresh, path.stat().st_mode & 0o777)
        fd = os.open(fresh, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(fresh, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        con.close()
