"""The erasure guards the load and every dbt run call, so that an erased person stays erased:

- `purge_erased()`, after every load (and before every dbt run, in case a crash came
  between a load and its purge): raw rows loaded since the last purge that carry an erased
  person's identifier (an old file delivered again) are removed like `crm forget` removes
  them, and quarantined lines of the same loads that carry one lose their raw text;
- the full-refresh flag (`privacy.full_refresh_requests`): `crm forget`, a key rotation or
  a purge that reached rows of earlier loads ask for it, the next dbt build reads it
  (`full_refresh_requested`) and clears it when it succeeded (`clear_full_refresh`).

The key check that runs before them is pipelines/lib/key_check.py; `crm forget` itself is
pipelines/privacy/erasure.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import duckdb

from pipelines.lib.duck import RESTRICTED, connect_restricted, connect_warehouse
from pipelines.lib.erasure_ledger import (
    GROUP_KEY,
    RAW_IDENTIFIERS_VIEW,
    SCHEMA,
    ErasureError,
    compact,
    drop_staging_tables,
    ensure_tables,
    has_relation,
    last_loaded_at,
    remove_raw_rows,
    rows_and_their_groups,
)
from pipelines.lib.identifiers import normalise_email, normalise_phone
from pipelines.lib.pseudonym import all_keys, key_fingerprint, pseudonym
from pipelines.lib.settings import Settings
from pipelines.lib.whole_publication import request_whole_publication

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


def _earlier_rows_of_matched_groups(con: duckdb.DuckDBPyConnection, since: datetime) -> int:
    """Raw rows loaded before `since` that belong to an order / ticket of a row in
    `purge_matches` (removed with it, see remove_raw_rows)."""
    total = 0
    for entity in GROUP_KEY:
        table = f"{RESTRICTED}.raw.{entity}"
        where = rows_and_their_groups(entity, table, "purge_matches")
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
        if not has_relation(con, f"'{RESTRICTED}'", "privacy", "erased_identifiers"):
            return 0
        if not con.execute(f"select count(*) from {SCHEMA}.erased_identifiers").fetchone()[0]:
            return 0
        if not has_relation(con, "current_database()", "intermediate", "int_raw_row_identifiers"):
            raise ErasureError(
                "erasures are recorded but the warehouse has no int_raw_row_identifiers view: "
                "run `dbt run --select int_raw_row_identifiers` (the pipeline does it before dbt)"
            )
        since = con.execute(f"select max(checked_until) from {SCHEMA}.purge_state").fetchone()[0]
        until = last_loaded_at(con)
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
        counts = remove_raw_rows(con, "select * from purge_matches", reason)
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
            drop_staging_tables(con)
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
        ensure_tables(con, "privacy")
        con.execute(
            "insert into privacy.full_refresh_requests values (?, ?)",
            [request_id, datetime.now(UTC).replace(tzinfo=None)],
        )
