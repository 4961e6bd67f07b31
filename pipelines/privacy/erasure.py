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
   (`privacy.erased_identifiers`); after every load, `purge_erased()`
   (pipelines/lib/erasure_guards.py) removes new raw rows that carry one of them, the same
   way, so an old file delivered again brings nobody back.
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

The privacy tables, the raw-row removal and `compact` are pipelines/lib/erasure_ledger.py
(shared with the re-delivery purge).

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
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from pipelines.lib.duck import RESTRICTED, connect_warehouse
from pipelines.lib.erasure_ledger import (
    RAW_ENTITIES,
    RAW_IDENTIFIERS_VIEW,
    SCHEMA,
    ErasureError,
    compact,
    drop_staging_tables,
    ensure_tables,
    has_relation,
    last_loaded_at,
    remove_raw_rows,
)
from pipelines.lib.identifiers import normalise_email, normalise_phone
from pipelines.lib.key_check import verify_key
from pipelines.lib.pseudonym import key_fingerprint, register_pseudonym
from pipelines.lib.settings import Settings
from pipelines.lib.whole_publication import request_whole_publication
from pipelines.publish.erasure import erase_from_releases

#: Identifier types whose clear value is searched in quarantined raw text (long enough not
#: to match by accident; accounts like `crm:C1` are not).
TEXT_SEARCHED_TYPES = ("phone", "email", "unionid", "social")
#: Account references (member numbers, shop buyer ids) shorter than this are not searched in
#: quarantined raw text: they would match other text by accident.
MIN_REF_LENGTH = 6


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
        result.raw_rows = remove_raw_rows(con, matched, reason, transaction=False)
        con.execute(
            f"""insert into {SCHEMA}.erased_identifiers
            select ?, identifier_type, crm_pseudonym(identifier_type || ':' || identifier_value)
            from erase_identifiers""",
            [request_id],
        )
        # the tables dbt derives into the restricted store (clear personal data): the
        # person's identifiers and golden record, now rather than at the next build
        if customers and has_relation(
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
        if customers and has_relation(
            con, f"'{RESTRICTED}'", "golden", "int_customer_profiles_merged"
        ):
            golden = f"{RESTRICTED}.golden.int_customer_profiles_merged"
            theirs = "customer_id in (select customer_id from erase_people)"
            n = con.execute(f"select count(*) from {golden} where {theirs}").fetchone()[0]
            con.execute(f"delete from {golden} where {theirs}")
            result.warehouse_rows["restricted.golden.int_customer_profiles_merged"] = n
        # the staging tables (every raw row, normalised): dropped, the next build (a full
        # refresh) makes them again without the person
        drop_staging_tables(con)
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
    key = verify_key(settings)  # the warehouse's key, or KeyMismatchError
    result = ErasureResult(request_id=request_id, identifier_kind=kind, dry_run=dry_run)
    with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
        register_pseudonym(con, key)
        if not has_relation(con, "current_database()", "intermediate", "int_raw_row_identifiers"):
            raise ErasureError(
                "the warehouse has no identity tables yet: run the pipeline once (crm run) first"
            )
        ensure_tables(con)
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
            f"insert into {SCHEMA}.purge_state values (?, ?, 0)", [last_loaded_at(con), now]
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
