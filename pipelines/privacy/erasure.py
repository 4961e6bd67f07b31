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
   reconciles (rows read = loaded + quarantined). Quarantined rows whose raw text contains
   one of the person's phones, e-mails, union ids or social ids are deleted.
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
5. **Audits.** `privacy.erasure_requests`: request id, when, by whom, the kind of
   identifier and the counts. No personal data.

Everything lives in the restricted store except the deletions in the warehouse. When the
Spark target is used, its Parquet copies of the sources are rewritten and the tables Spark
built are dropped (pipelines/spark: refresh_after_erasure).
"""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from pipelines.lib.duck import RESTRICTED, connect_restricted, connect_warehouse
from pipelines.lib.pseudonym import (
    all_keys,
    key_fingerprint,
    pseudonym,
    register_pseudonym,
)
from pipelines.lib.settings import Settings
from pipelines.publish.serving import request_whole_publication
from pipelines.reference.identity import normalise_email, normalise_phone

SCHEMA = f"{RESTRICTED}.privacy"
RAW_ENTITIES = ("customers", "orders", "service_events", "social_interactions")
#: The dbt view with every raw row's normalised identifiers.
RAW_IDENTIFIERS_VIEW = "intermediate.int_raw_row_identifiers"
#: Identifier types whose clear value is searched in quarantined raw text (long enough not
#: to match by accident; accounts like `crm:C1` are not).
TEXT_SEARCHED_TYPES = ("phone", "email", "unionid", "social")


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
    seconds: float = 0.0

    @property
    def found(self) -> bool:
        return bool(self.customers or sum(self.raw_rows.values()))

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
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
    con: duckdb.DuckDBPyConnection, matched_sql: str, reason: str
) -> dict[str, int]:
    """Delete the raw rows listed by `matched_sql` (entity, _source_file, _source_line) and
    their orders / tickets; each becomes an empty quarantine row and the load log is
    adjusted so that it still reconciles. One transaction on the restricted store."""
    con.execute(f"create or replace temp table erase_rows as {matched_sql}")
    counts: dict[str, int] = {}
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
        con.execute("commit")
    except Exception:
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
    """Erase one person; see the module docstring. Raises ErasureError with what to do."""
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
    reason = f"erased (request {request_id})"
    with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
        register_pseudonym(con, key)
        if not _has_relation(con, "current_database()", "intermediate", "int_raw_row_identifiers"):
            raise ErasureError(
                "the warehouse has no identity tables yet: run the pipeline once (crm run) first"
            )
        _ensure_tables(con)
        customers, result.identifiers = _expand(con, seeds)
        result.customers = len(customers)
        matched = (
            f"select distinct rows.entity, rows._source_file, rows._source_line "
            f"from {RAW_IDENTIFIERS_VIEW} as rows inner join erase_identifiers "
            "using (identifier_type, identifier_value)"
        )
        texts = [
            (t, v)
            for t, v in con.execute("select * from erase_identifiers").fetchall()
            if t in TEXT_SEARCHED_TYPES and v
        ]
        quarantine_where = " or ".join(
            ["false"]
            + [
                "strpos(regexp_replace(raw_text, '[^0-9]', '', 'g'), ?) > 0"
                if t == "phone"
                else "strpos(lower(raw_text), ?) > 0"
                for t, _ in texts
            ]
        )
        quarantine_params = [
            (v.removeprefix("+86") if t == "phone" else v.lower()) for t, v in texts
        ]
        if not dry_run:
            # before anything is deleted: the next publication writes every file whole (a
            # file patched from a copy of the current release could keep the person's
            # deleted rows in its free space)
            request_whole_publication(settings.serving, f"erasure request {request_id}")
        if dry_run:
            for entity in RAW_ENTITIES:
                result.raw_rows[entity] = con.execute(
                    f"select count(*) from ({matched}) where entity = ?", [entity]
                ).fetchone()[0]
            result.quarantine_rows = con.execute(
                f"select count(*) from {RESTRICTED}.raw.quarantine where {quarantine_where}",
                quarantine_params,
            ).fetchone()[0]
            result.seconds = time.monotonic() - started
            return result
        result.quarantine_rows = con.execute(
            f"select count(*) from {RESTRICTED}.raw.quarantine where {quarantine_where}",
            quarantine_params,
        ).fetchone()[0]
        con.execute(
            f"delete from {RESTRICTED}.raw.quarantine where {quarantine_where}", quarantine_params
        )
        result.raw_rows = _remove_raw_rows(con, matched, reason)
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
            n = con.execute(
                f"""select count(*) from {identity}
                where record_id in (select resolved.record_id
                                    from intermediate.int_identity_components_resolved as resolved
                                    where resolved.customer_id in (select customer_id from erase_people))
                   or (identifier_type, identifier_value) in (select * from erase_identifiers)"""
            ).fetchone()[0]
            con.execute(
                f"""delete from {identity}
                where record_id in (select resolved.record_id
                                    from intermediate.int_identity_components_resolved as resolved
                                    where resolved.customer_id in (select customer_id from erase_people))
                   or (identifier_type, identifier_value) in (select * from erase_identifiers)"""
            )
            result.warehouse_rows["restricted.identity.int_identity_identifiers"] = n
        if customers and _has_relation(
            con, f"'{RESTRICTED}'", "golden", "int_customer_profiles_merged"
        ):
            golden = f"{RESTRICTED}.golden.int_customer_profiles_merged"
            n = con.execute(
                f"select count(*) from {golden} where customer_id in (select customer_id from erase_people)"
            ).fetchone()[0]
            con.execute(
                f"delete from {golden} where customer_id in (select customer_id from erase_people)"
            )
            result.warehouse_rows["restricted.golden.int_customer_profiles_merged"] = n
        # the staging tables (every raw row, normalised): dropped, the next build (a full
        # refresh) makes them again without the person
        _drop_staging_tables(con)
        # the warehouse (no clear personal data, but the person's rows and aggregates)
        if customers:
            for table, columns in _warehouse_tables_with_customer_id(con):
                where = " or ".join(
                    f"{column} in (select erase_people.customer_id from erase_people)"
                    for column in columns
                )
                n = con.execute(f"select count(*) from {table} where {where}").fetchone()[0]
                if n:
                    con.execute(f"delete from {table} where {where}")
                    result.warehouse_rows[table.replace('"', "")] = n
        now = datetime.now(UTC).replace(tzinfo=None)
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
    # the Parquet copies for the Spark target (pipelines/spark), when it is used
    from pipelines.spark import refresh_after_erasure

    result.spark_refreshed = refresh_after_erasure(settings)
    result.seconds = time.monotonic() - started
    return result


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
        keys = all_keys(settings.pseudonym_key_file)
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
        counts = _remove_raw_rows(
            con, "select * from purge_matches", "erased (an erased person's data delivered again)"
        )
        removed = sum(counts.values())
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
