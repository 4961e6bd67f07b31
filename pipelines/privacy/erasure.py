"""Erasure of a person (PIPL / GDPR right to be forgotten): `crm forget`.

What `forget()` does, in the warehouse with the restricted store attached:

1. **Finds the person.** The request names a phone, an e-mail or an account
   (`source_system:customer_ref`), normalised like the warehouse normalises them. Identity
   resolution gives the person's customer(s) and with them every identifier of every record
   that was linked to them (other phones, e-mails, union ids, accounts, social accounts);
   identifiers shared by too many records (super-nodes, e.g. a shop's front-desk phone)
   are not the person's and are left alone.
2. **Removes the raw rows** (restricted store) that carry any of those identifiers, and the
   whole order or ticket they belong to; each removed row is replaced by a quarantine row
   with no content and the reason `erased (request ...)`, so that the load log still
   reconciles (rows read = loaded + quarantined). Quarantined rows whose raw text carries
   one of the person's identifiers (phones by their digits, e-mails, union ids, social ids,
   account references such as member numbers as whole words; not names: a name alone does
   not tell people apart) lose their raw text.
3. **Suppresses re-deliveries.** The person's identifiers are kept as keyed pseudonyms only
   (`privacy.erased_identifiers`); after every load, `purge_erased()` removes new raw rows
   that carry one of them, the same way, so an old file delivered again brings nobody back.
4. **Clears the warehouse.** The person's rows of the tables dbt derives into the
   restricted store (identifiers, golden record) are deleted, its staging tables dropped
   (the next build makes them again), and rows of the person's
   customer_id are deleted from every warehouse table that has one (as `customer_id`, or as
   `old_customer_id` in the identity models' build state), and the next dbt build is a full refresh
   (`privacy.full_refresh_requests`), so the next publication neither counts nor shows
   them. The published files change at the next publication (the next night, or
   `crm run --date D` at once).
5. **Clears the kept releases.** Every release under `serving/.releases` (current and
   previous) is rewritten without the person's rows (serving.duckdb, Parquet, Hyper,
   manifest): `pipelines.publish.erasure.erase_from_releases`.
6. **Audits.** `privacy.erasure_requests`: request id, when, by whom, the kind of
   identifier and the counts. No personal data.
7. **Compacts** the restricted store and the warehouse (`compact`): DuckDB keeps deleted
   values in freed blocks until the file is rewritten.

Resumable: the restricted store's changes are one transaction with the request's progress
(`privacy.erasure_progress`); a request stopped midway is finished by running it again with
the same request id, and the audit holds the counts of the whole request.

Everything lives in the restricted store except the deletions in the warehouse. When the
Spark target is used, its Parquet copies of the sources are rewritten and the tables Spark
built are dropped (pipelines/spark: refresh_after_erasure).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.lib.duck import (
    RESTRICTED,
    connect,
    connect_restricted,
    connect_warehouse,
    duckdb_config,
)
from pipelines.lib.identifiers import normalise_email, normalise_phone
from pipelines.lib.pseudonym import (
    all_keys,
    key_fingerprint,
    pseudonym,
    register_pseudonym,
)
from pipelines.lib.settings import Settings
from pipelines.publish.erasure import erase_from_releases
from pipelines.publish.releases import request_whole_publication

SCHEMA = f"{RESTRICTED}.privacy"
RAW_ENTITIES = ("customers", "orders", "service_events", "social_interactions")
#: The dbt view with every raw row's normalised identifiers.
RAW_IDENTIFIERS_VIEW = "intermediate.int_raw_row_identifiers"
#: Identifier types whose clear value is searched in quarantined raw text (long enough not
#: to match by accident; accounts like `crm:C1` are not).
TEXT_SEARCHED_TYPES = ("phone", "email", "unionid", "social")
#: Account references (member numbers, shop buyer ids) shorter than this are not searched in
#: quarantined raw text: they would match other text by accident.
MIN_REF_LENGTH = 6


class ErasureError(RuntimeError):
    """The request cannot be carried out; the message says why and what to do."""


@dataclass
class ErasureResult:
    request_id: str
    identifier_kind: str
    customers: int = 0
    identifiers: int = 0
    raw_rows: dict[str, int] = field(default_factory=dict)
    quarantine_rows: int = 0
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    spark_refreshed: bool = False
    #: a request stopped midway earlier, finished now (or already done)
    resumed: bool = False
    seconds: float = 0.0

    @property
    def found(self) -> bool:
        return bool(self.customers or sum(self.raw_rows.values()))

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        if self.resumed:
            verb = "resumed; removed"
        raw = ", ".join(f"{k} {v}" for k, v in self.raw_rows.items() if v) or "none"
        wh = sum(self.warehouse_rows.values())
        return (
            f"request {self.request_id} ({self.identifier_kind}): {self.customers} customer(s), "
            f"{self.identifiers} identifier(s); {verb} raw rows: {raw}; quarantined rows "
            f"with their data: {self.quarantine_rows}; warehouse rows: {wh}"
            + ("; Spark copies rewritten, Spark tables dropped" if self.spark_refreshed else "")
        )


def _ensure_tables(con: duckdb.DuckDBPyConnection, schema: str = SCHEMA) -> None:
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


def _last_loaded_at(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the last raw row was loaded (any entity)."""
    parts = " union all ".join(
        f"select max(_loaded_at) as t from {RESTRICTED}.raw.{e}" for e in RAW_ENTITIES
    )
    return con.execute(f"select max(t) from ({parts})").fetchone()[0]


def _drop_staging_tables(con: duckdb.DuckDBPyConnection) -> None:
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


def _has_relation(con: duckdb.DuckDBPyConnection, catalog_sql: str, schema: str, name: str) -> bool:
    row = con.execute(
        "select count(*) from duckdb_tables() where database_name = "
        f"{catalog_sql} and schema_name = ? and table_name = ? union all "
        "select count(*) from duckdb_views() where database_name = "
        f"{catalog_sql} and schema_name = ? and view_name = ?",
        [schema, name, schema, name],
    ).fetchall()
    return sum(r[0] for r in row) > 0


def _request_identifiers(
    phone: str | None, email: str | None, customer_ref: str | None
) -> tuple[str, list[tuple[str, str]]]:
    given = [
        (k, v) for k, v in (("phone", phone), ("email", email), ("account", customer_ref)) if v
    ]
    if len(given) != 1:
        raise ErasureError("name exactly one of --phone, --email, --customer-ref")
    kind, value = given[0]
    if kind == "phone":
        normalised = normalise_phone(value)
        if normalised is None:
            raise ErasureError(
                f"--phone: {value!r} is not a phone number the warehouse knows how to read"
            )
    elif kind == "email":
        normalised = normalise_email(value)
        if normalised is None:
            raise ErasureError(f"--email: {value!r} is not a valid e-mail address")
    else:
        system, sep, ref = value.partition(":")
        if not sep or not system.strip() or not ref.strip():
            raise ErasureError(
                f"--customer-ref: {value!r}: write SOURCE_SYSTEM:CUSTOMER_REF, e.g. crm:M10000011"
            )
        normalised = f"{system.strip()}:{ref.strip()}"
    return kind, [(kind, normalised)]


def _expand(con: duckdb.DuckDBPyConnection, seeds: list[tuple[str, str]]) -> tuple[list[str], int]:
    """The customers behind the seed identifiers and every identifier of theirs: fills the
    temp table `erase_identifiers`; returns (customer_ids, identifiers)."""
    con.execute(
        "create or replace temp table erase_seeds (identifier_type varchar, identifier_value varchar)"
    )
    con.executemany("insert into erase_seeds values (?, ?)", seeds)
    con.execute(
        f"""create or replace temp table erase_people as
        select distinct components.customer_id
        from {RESTRICTED}.identity.int_identity_identifiers as identifiers
        inner join erase_seeds using (identifier_type, identifier_value)
        inner join intermediate.int_identity_components_resolved as components using (record_id)
        where not coalesce(identifiers.is_supernode, false) and components.customer_id is not null"""
    )
    con.execute(
        f"""create or replace temp table erase_identifiers as
        select identifier_type, identifier_value from erase_seeds
        union
        select identifiers.identifier_type, identifiers.identifier_value
        from {RESTRICTED}.identity.int_identity_identifiers as identifiers
        inner join intermediate.int_identity_components_resolved as components using (record_id)
        inner join erase_people using (customer_id)
        where not coalesce(identifiers.is_supernode, false)"""
    )
    customers = [r[0] for r in con.execute("select customer_id from erase_people").fetchall()]
    identifiers = con.execute("select count(*) from erase_identifiers").fetchone()[0]
    return customers, identifiers


#: Rows that belong together: an order's lines, a ticket's events. A match on one row
#: removes the whole order / ticket.
_GROUP_KEY = {
    "orders": "coalesce(nullif(trim(source_system), ''), _source_name) || ':' || trim(order_id)",
    "service_events": "_source_name || ':' || trim(ticket_id)",
}


def _rows_and_their_groups(entity: str, table: str, rows_table: str) -> str:
    """A condition on `table` selecting the rows listed in `rows_table` (entity,
    _source_file, _source_line) for `entity`, and the other rows of their orders /
    tickets (an order or ticket is removed whole)."""
    where = (
        "(_source_file, _source_line) in (select _source_file, _source_line "
        f"from {rows_table} where entity = '{entity}')"
    )
    if entity in _GROUP_KEY:
        key = _GROUP_KEY[entity]
        where = f"{key} in (select {key} from {table} where {where})"
    return where


def _remove_raw_rows(
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
            where = _rows_and_their_groups(entity, table, "erase_rows")
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


#: Columns that hold a customer_id: the customer, and in the identity models' build state
#: the customer a source record had before a build (int_source_records_resolved__changed_keys).
CUSTOMER_ID_COLUMNS = ("customer_id", "old_customer_id")


def _warehouse_tables_with_customer_id(
    con: duckdb.DuckDBPyConnection,
) -> list[tuple[str, list[str]]]:
    """(table, its CUSTOMER_ID_COLUMNS) of every warehouse table with one of them."""
    rows = con.execute(
        """select schema_name, table_name, list(column_name order by column_name)
        from duckdb_columns()
        where database_name = current_database() and list_contains(?, column_name)
          and table_name in (select table_name from duckdb_tables()
                             where database_name = current_database())
        group by all order by all""",
        [list(CUSTOMER_ID_COLUMNS)],
    ).fetchall()
    return [(f'"{s}"."{t}"', columns) for s, t, columns in rows]


#: A request's progress (`privacy.erasure_progress`): `restricted` once the restricted store
#: is cleared (one transaction), `warehouse` once the warehouse's counts are recorded (its
#: rows are deleted next), `done` once audited. A retried `crm forget` with the same request
#: id carries on from there and audits the counts of the whole request.
STATES = ("restricted", "warehouse", "done")


def _progress(con: duckdb.DuckDBPyConnection, request_id: str) -> tuple[str, dict] | None:
    row = con.execute(
        f"select state, details from {SCHEMA}.erasure_progress where request_id = ?",
        [request_id],
    ).fetchone()
    return None if row is None else (row[0], json.loads(row[1]))


def _set_progress(
    con: duckdb.DuckDBPyConnection, request_id: str, state: str, details: dict
) -> None:
    """Record a request's progress (one statement: atomic)."""
    values = [state, json.dumps(details, sort_keys=True), datetime.now(UTC).replace(tzinfo=None)]
    (updated,) = con.execute(
        f"update {SCHEMA}.erasure_progress set state = ?, details = ?, updated_at = ? "
        "where request_id = ?",
        [*values, request_id],
    ).fetchone()
    if not updated:
        con.execute(
            f"insert into {SCHEMA}.erasure_progress values (?, ?, ?, ?)", [request_id, *values]
        )


def _quarantine_match(con: duckdb.DuckDBPyConnection) -> tuple[str, list[str]]:
    """The condition (and its parameters) on `raw.quarantine` selecting the quarantined rows
    that carry one of the identifiers in `erase_identifiers`: phones by their digits (any
    format), e-mails, union ids and social ids as text (case-insensitive), accounts by
    their reference (member number) as a whole word. Names are not searched: a name alone
    does not tell people apart (see docs/operations.md)."""
    conditions, params = ["false"], []
    for kind, value in con.execute("select * from erase_identifiers").fetchall():
        if not value:
            continue
        if kind == "phone":
            conditions.append("strpos(regexp_replace(raw_text, '[^0-9]', '', 'g'), ?) > 0")
            params.append(value.removeprefix("+86"))
        elif kind in TEXT_SEARCHED_TYPES:
            conditions.append("strpos(lower(raw_text), ?) > 0")
            params.append(value.lower())
        elif kind == "account":
            ref = value.split(":", 1)[-1].strip()
            if len(ref) >= MIN_REF_LENGTH:
                conditions.append("regexp_matches(raw_text, ?)")
                params.append(r"(^|[^0-9A-Za-z_])" + re.escape(ref) + r"([^0-9A-Za-z_]|$)")
    return " or ".join(conditions), params


def _blank_quarantine(
    con: duckdb.DuckDBPyConnection, where: str, params: list, reason: str
) -> None:
    """Empty the quarantined rows selected by `where`: their raw text goes, the row stays
    (with `reason`), so the load log still reconciles."""
    con.execute(
        f"update {RESTRICTED}.raw.quarantine set raw_text = null, reason = ? where {where}",
        [reason, *params],
    )


#: Candidate identifiers in quarantined raw text (re-delivery purge).
_EMAIL_IN_TEXT = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_TOKEN_IN_TEXT = re.compile(r"[0-9A-Za-z_-]{6,}")


def _text_candidates(text: str, systems: list[str]) -> set[tuple[str, str]]:
    """Every (identifier type, normalised value) a quarantined line could carry: phones (each
    run of 11 digits, separators ignored), e-mails, union and social ids, and accounts
    (each token with each known source system)."""
    out: set[tuple[str, str]] = set()
    digits = re.sub(r"\D", "", text)
    for i in range(max(len(digits) - 10, 0)):
        phone = normalise_phone(digits[i : i + 11])
        if phone:
            out.add(("phone", phone))
    for found in _EMAIL_IN_TEXT.findall(text):
        email = normalise_email(found)
        if email:
            out.add(("email", email))
    for token in set(_TOKEN_IN_TEXT.findall(text)):
        out |= {("unionid", token), ("social", token)}
        out |= {("account", f"{system}:{token}") for system in systems}
    return out


def _clear_restricted(
    con: duckdb.DuckDBPyConnection,
    request_id: str,
    matched: str,
    customers: list[str],
    result: ErasureResult,
) -> None:
    """Step 1 of a request, one transaction on the restricted store: quarantined rows, raw
    rows, the erased identifiers' pseudonyms, the derived identity and golden rows, the
    staging tables, and the request's progress with its counts."""
    where, params = _quarantine_match(con)
    reason = f"erased (request {request_id})"
    con.execute("begin transaction")
    try:
        result.quarantine_rows = con.execute(
            f"select count(*) from {RESTRICTED}.raw.quarantine where {where}", params
        ).fetchone()[0]
        _blank_quarantine(con, where, params, reason)
        result.raw_rows = _remove_raw_rows(con, matched, reason, transaction=False)
        con.execute(
            f"""insert into {SCHEMA}.erased_identifiers
            select ?, identifier_type, crm_pseudonym(identifier_type || ':' || identifier_value)
            from erase_identifiers""",
            [request_id],
        )
        # the tables dbt derives into the restricted store (clear personal data): the
        # person's identifiers and golden record, now rather than at the next build
        if customers and _has_relation(
            con, f"'{RESTRICTED}'", "identity", "int_identity_identifiers"
        ):
            identity = f"{RESTRICTED}.identity.int_identity_identifiers"
            theirs = """record_id in (select resolved.record_id
                from intermediate.int_identity_components_resolved as resolved
                where resolved.customer_id in (select customer_id from erase_people))
              or (identifier_type, identifier_value) in (select * from erase_identifiers)"""
            n = con.execute(f"select count(*) from {identity} where {theirs}").fetchone()[0]
            con.execute(f"delete from {identity} where {theirs}")
            result.warehouse_rows["restricted.identity.int_identity_identifiers"] = n
        if customers and _has_relation(
            con, f"'{RESTRICTED}'", "golden", "int_customer_profiles_merged"
        ):
            golden = f"{RESTRICTED}.golden.int_customer_profiles_merged"
            theirs = "customer_id in (select customer_id from erase_people)"
            n = con.execute(f"select count(*) from {golden} where {theirs}").fetchone()[0]
            con.execute(f"delete from {golden} where {theirs}")
            result.warehouse_rows["restricted.golden.int_customer_profiles_merged"] = n
        # the staging tables (every raw row, normalised): dropped, the next build (a full
        # refresh) makes them again without the person
        _drop_staging_tables(con)
        _set_progress(con, request_id, "restricted", _details(result, customers))
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _details(result: ErasureResult, customers: list[str]) -> dict:
    """A request's progress: its counts so far, and its customers (pseudonyms, needed until
    every store is cleared; dropped once the request is done)."""
    return {
        "customers": customers,
        "identifiers": result.identifiers,
        "raw_rows_removed": result.raw_rows,
        "quarantine_rows_removed": result.quarantine_rows,
        "warehouse_rows_removed": result.warehouse_rows,
    }


def _resume(result: ErasureResult, details: dict) -> list[str]:
    customers = list(details.get("customers") or [])
    result.customers = len(customers) if customers else int(details.get("customer_count", 0))
    result.identifiers = int(details.get("identifiers", 0))
    result.raw_rows = dict(details.get("raw_rows_removed") or {})
    result.quarantine_rows = int(details.get("quarantine_rows_removed", 0))
    result.warehouse_rows = dict(details.get("warehouse_rows_removed") or {})
    return customers


def _clear_warehouse(
    con: duckdb.DuckDBPyConnection, request_id: str, customers: list[str], result: ErasureResult
) -> None:
    """Step 2: record the warehouse rows of the customers (progress `warehouse`), then delete
    them in one transaction on the warehouse (again on a retry: deleting is idempotent, the
    recorded counts stay)."""
    con.execute("create or replace temp table erase_people (customer_id varchar)")
    con.executemany("insert into erase_people values (?)", [[c] for c in customers])
    tables = _warehouse_tables_with_customer_id(con) if customers else []
    wheres = {
        table: " or ".join(
            f"{column} in (select erase_people.customer_id from erase_people)" for column in columns
        )
        for table, columns in tables
    }
    for table, where in wheres.items():
        n = con.execute(f"select count(*) from {table} where {where}").fetchone()[0]
        if n:
            result.warehouse_rows[table.replace('"', "")] = n
    _set_progress(con, request_id, "warehouse", _details(result, customers))
    _hook("warehouse_counted")
    con.execute("begin transaction")
    try:
        for table, where in wheres.items():
            con.execute(f"delete from {table} where {where}")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _hook(step: str) -> None:
    """A point where tests stop a request midway (monkeypatched); does nothing."""


def forget(
    settings: Settings,
    *,
    phone: str | None = None,
    email: str | None = None,
    customer_ref: str | None = None,
    request_id: str,
    requested_by: str | None = None,
    dry_run: bool = False,
) -> ErasureResult:
    """Erase one person; see the module docstring. Raises ErasureError with what to do.

    Resumable: a request stopped midway (killed, power cut) is finished by running it again
    with the same request id; the audit then holds the counts of the whole request. A
    request already done is reported from its audit record (its releases and stores are
    cleared and compacted again, which changes nothing else)."""
    started = time.monotonic()
    if not request_id or not request_id.strip():
        raise ErasureError("--request-id is required: the ticket or letter the request came with")
    kind, seeds = _request_identifiers(phone, email, customer_ref)
    if not settings.warehouse_db.exists() or not settings.restricted_db.exists():
        raise ErasureError(
            f"no warehouse under {settings.home}: run the pipeline once (crm run) first"
        )
    from pipelines.privacy.keys import verify_key

    key = verify_key(settings)  # the warehouse's key, or KeyMismatchError
    result = ErasureResult(request_id=request_id, identifier_kind=kind, dry_run=dry_run)
    with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
        register_pseudonym(con, key)
        if not _has_relation(con, "current_database()", "intermediate", "int_raw_row_identifiers"):
            raise ErasureError(
                "the warehouse has no identity tables yet: run the pipeline once (crm run) first"
            )
        _ensure_tables(con)
        progress = None if dry_run else _progress(con, request_id)
        if progress is None:
            customers, result.identifiers = _expand(con, seeds)
            result.customers = len(customers)
            matched = (
                f"select distinct rows.entity, rows._source_file, rows._source_line "
                f"from {RAW_IDENTIFIERS_VIEW} as rows inner join erase_identifiers "
                "using (identifier_type, identifier_value)"
            )
            if dry_run:
                for entity in RAW_ENTITIES:
                    result.raw_rows[entity] = con.execute(
                        f"select count(*) from ({matched}) where entity = ?", [entity]
                    ).fetchone()[0]
                where, params = _quarantine_match(con)
                result.quarantine_rows = con.execute(
                    f"select count(*) from {RESTRICTED}.raw.quarantine where {where}", params
                ).fetchone()[0]
                result.seconds = time.monotonic() - started
                return result
            # before anything is deleted: the next publication writes every file whole (a
            # file patched from a copy of the current release could keep the person's
            # deleted rows in its free space)
            request_whole_publication(settings.serving, f"erasure request {request_id}")
            _clear_restricted(con, request_id, matched, customers, result)
            state = "restricted"
            _hook("restricted")
        else:
            state, details = progress
            customers = _resume(result, details)
            result.resumed = True
        if state == "restricted":
            _clear_warehouse(con, request_id, customers, result)
            state = "warehouse"
            _hook("warehouse")
    if state == "warehouse":
        # every kept release (serving.duckdb, Parquet, Hyper) without the person's rows
        erase_from_releases(settings.serving, customers)
        _hook("releases")
        with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
            _audit(con, request_id, requested_by, kind, key, result, customers)
        state = "done"
    # the Parquet copies for the Spark target (pipelines/spark), when it is used
    from pipelines.spark import refresh_after_erasure

    result.spark_refreshed = refresh_after_erasure(settings)
    # the deleted values stay in the files' free blocks until they are rewritten
    compact(settings.restricted_db)
    compact(settings.warehouse_db, {RESTRICTED: settings.restricted_db})
    result.seconds = time.monotonic() - started
    return result


def _audit(
    con: duckdb.DuckDBPyConnection,
    request_id: str,
    requested_by: str | None,
    kind: str,
    key: bytes,
    result: ErasureResult,
    customers: list[str],
) -> None:
    """Step 3, one transaction on the restricted store: the next build is a full refresh,
    the re-delivery purge starts from here, the audit record, the request `done` (its
    customers forgotten, only their count kept)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    con.execute("begin transaction")
    try:
        con.execute(f"insert into {SCHEMA}.full_refresh_requests values (?, ?)", [request_id, now])
        # every raw row loaded so far was checked: the re-delivery purge starts from here
        con.execute(
            f"insert into {SCHEMA}.purge_state values (?, ?, 0)", [_last_loaded_at(con), now]
        )
        details = {
            "raw_rows_removed": result.raw_rows,
            "warehouse_rows_removed": result.warehouse_rows,
        }
        con.execute(
            f"insert into {SCHEMA}.erasure_requests values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                request_id,
                now,
                requested_by or getpass.getuser(),
                kind,
                result.customers,
                result.identifiers,
                sum(result.raw_rows.values()),
                result.quarantine_rows,
                sum(result.warehouse_rows.values()),
                json.dumps(details, sort_keys=True),
                key_fingerprint(key),
            ],
        )
        done = _details(result, [])
        done["customer_count"] = len(customers)
        _set_progress(con, request_id, "done", done)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


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


def _earlier_rows_of_matched_groups(con: duckdb.DuckDBPyConnection, since: datetime) -> int:
    """Raw rows loaded before `since` that belong to an order / ticket of a row in
    `purge_matches` (removed with it, see _remove_raw_rows)."""
    total = 0
    for entity in _GROUP_KEY:
        table = f"{RESTRICTED}.raw.{entity}"
        where = _rows_and_their_groups(entity, table, "purge_matches")
        total += con.execute(
            f"select count(*) from {table} where _loaded_at < ? and {where}", [since]
        ).fetchone()[0]
    return total


def purge_erased(settings: Settings) -> int:
    """After a load: remove raw rows loaded since the last purge that carry an erased
    person's identifier (files delivered again); returns the rows removed. Cheap when
    nothing was ever erased (one query)."""
    if not settings.restricted_db.exists() or not settings.warehouse_db.exists():
        return 0
    with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
        if not _has_relation(con, f"'{RESTRICTED}'", "privacy", "erased_identifiers"):
            return 0
        if not con.execute(f"select count(*) from {SCHEMA}.erased_identifiers").fetchone()[0]:
            return 0
        if not _has_relation(con, "current_database()", "intermediate", "int_raw_row_identifiers"):
            raise ErasureError(
                "erasures are recorded but the warehouse has no int_raw_row_identifiers view: "
                "run `dbt run --select int_raw_row_identifiers` (the pipeline does it before dbt)"
            )
        since = con.execute(f"select max(checked_until) from {SCHEMA}.purge_state").fetchone()[0]
        until = _last_loaded_at(con)
        # only the rows loaded since the last purge (`forget` records its own time): their
        # identifiers are pseudonymised here, with the current key and every retired one,
        # so that erasures recorded before a key rotation still hold
        window = "" if since is None else "where _loaded_at >= ?"
        candidates = con.execute(
            f"select entity, _source_file, _source_line, identifier_type, identifier_value "
            f"from {RAW_IDENTIFIERS_VIEW} {window}",
            [] if since is None else [since],
        ).fetchall()
        erased = set(
            con.execute(
                f"select identifier_type, pseudonym from {SCHEMA}.erased_identifiers"
            ).fetchall()
        )
        keys = all_keys(settings.pseudonym_key_file, key=settings.pseudonym_key)
        # every erasure must be checked under the key it was recorded with: refuse to load
        # when one of those keys is missing (a new key alone would let the person back)
        missing = {
            fp
            for (fp,) in con.execute(
                f"select distinct key_fingerprint from {SCHEMA}.erasure_requests "
                "where key_fingerprint is not null"
            ).fetchall()
        } - {key_fingerprint(k) for k in keys}
        if missing:
            raise ErasureError(
                f"erasures were recorded under key(s) {', '.join(sorted(missing))}, which are "
                f"neither the current key nor a retired key file next to "
                f"{settings.pseudonym_key_file}: restore them (docs/operations.md, "
                '"Rotating the pseudonymisation key")'
            )
        matched = sorted(
            {
                (entity, file, line)
                for entity, file, line, kind, value in candidates
                if any((kind, pseudonym(f"{kind}:{value}", k)) in erased for k in keys)
            }
        )
        con.execute(
            "create or replace temp table purge_matches "
            "(entity varchar, _source_file varchar, _source_line bigint)"
        )
        if matched:
            con.executemany("insert into purge_matches values (?, ?, ?)", matched)
        # the matched rows were loaded since the last purge, before any dbt build read them;
        # but an order or ticket goes whole, and its rows of earlier loads may already be
        # staged and in the facts: then the staging tables go and the next build is a full
        # refresh (as after `crm forget`)
        earlier = _earlier_rows_of_matched_groups(con, since) if matched and since else 0
        reason = "erased (an erased person's data delivered again)"
        counts = _remove_raw_rows(con, "select * from purge_matches", reason)
        removed = sum(counts.values())
        # quarantined lines of the same loads: their raw text, searched for every identifier
        # it could carry, pseudonymised like the erased ones
        systems = [
            r[0]
            for r in con.execute(
                f"select distinct trim(source_system) from {RESTRICTED}.raw.customers "
                f"where source_system is not null union select distinct trim(source_system) "
                f"from {RESTRICTED}.raw.orders where source_system is not null"
            ).fetchall()
        ]
        quarantined = con.execute(
            f"select rowid, raw_text from {RESTRICTED}.raw.quarantine "
            f"where raw_text is not null {window.replace('where', 'and')}",
            [] if since is None else [since],
        ).fetchall()
        theirs = [
            rowid
            for rowid, text in quarantined
            if any(
                (kind, pseudonym(f"{kind}:{value}", k)) in erased
                for kind, value in _text_candidates(text, systems)
                for k in keys
            )
        ]
        if theirs:
            con.execute(
                f"update {RESTRICTED}.raw.quarantine set raw_text = null, reason = ? "
                f"where rowid in (select unnest(?))",
                [reason, theirs],
            )
            removed += len(theirs)
        now = datetime.now(UTC).replace(tzinfo=None)
        if earlier:
            _drop_staging_tables(con)
            request_whole_publication(settings.serving, "re-delivery purge of earlier loads")
            con.execute(
                f"insert into {SCHEMA}.full_refresh_requests values (?, ?)",
                [f"purge-{now:%Y%m%dT%H%M%S}", now],
            )
        con.execute(
            f"insert into {SCHEMA}.purge_state values (?, ?, ?)", [until or since, now, removed]
        )
    if removed:
        # the rows just deleted stay in the file's free blocks until it is rewritten
        compact(settings.restricted_db)
    return removed


def full_refresh_requested(settings: Settings) -> list[str]:
    """Request ids that want the next dbt build to be a full refresh (empty: none)."""
    if not settings.restricted_db.exists():
        return []
    with connect_restricted(settings.restricted_db, read_only=True) as con:
        try:
            return [
                r[0]
                for r in con.execute(
                    "select request_id from privacy.full_refresh_requests"
                ).fetchall()
            ]
        except duckdb.CatalogException:
            return []


def clear_full_refresh(settings: Settings, request_ids: list[str]) -> None:
    if not request_ids:
        return
    with connect_restricted(settings.restricted_db) as con:
        con.execute(
            "delete from privacy.full_refresh_requests where request_id in "
            f"({', '.join('?' for _ in request_ids)})",
            request_ids,
        )


def request_full_refresh(settings: Settings, request_id: str) -> None:
    """Make the next dbt build a full refresh (after a key rotation, or by hand)."""
    settings.ensure_dirs()
    with connect_restricted(settings.restricted_db) as con:
        _ensure_tables(con, "privacy")
        con.execute(
            "insert into privacy.full_refresh_requests values (?, ?)",
            [request_id, datetime.now(UTC).replace(tzinfo=None)],
        )
