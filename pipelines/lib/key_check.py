"""Which pseudonymisation key built the warehouse, checked before anything reads or writes
pseudonyms.

Every pseudonym of the warehouse (`customer_id`, `social_account_key`) and every entry of
the erasure suppression list (`privacy.erased_identifiers`) depends on the key. A run with
another key would mix two sets of ids in the marts and would not recognise erased people
delivered again, so:

- `privacy.key_state` (restricted store) records the fingerprint of the warehouse's key
  (`key_fingerprint`: an HMAC of a constant, never the key) on the first run, and one row
  per rotation (the audit: when, by whom, old and new fingerprint; `crm rotate-key`,
  pipelines/privacy/keys.py);
- `verify_key()` runs before every night, ingest, dbt build and `crm forget`: a key whose
  fingerprint differs from the recorded one, or a missing key file for a warehouse that
  has data, stops everything with one line saying what to do (KeyMismatchError).
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime

import duckdb

from pipelines.lib.duck import connect_restricted
from pipelines.lib.pseudonym import (
    KEY_ENV,
    PseudonymKeyError,
    _checked,
    ensure_key_file,
    key_fingerprint,
    read_key_file,
)
from pipelines.lib.settings import Settings

ROTATE_HINT = (
    "restore the key this warehouse was built with, or change it with "
    "`crm rotate-key --old-key-file FILE` (docs/operations.md, "
    '"Rotating the pseudonymisation key")'
)


#: Suffix of the new key file written by a rotation before it is committed.
PENDING_SUFFIX = ".new"


class KeyMismatchError(PseudonymKeyError):
    """The key is not the warehouse's, or it is missing; the message says what to do."""


def ensure_key_state(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists privacy")
    con.execute(
        """create table if not exists privacy.key_state (
            fingerprint varchar, recorded_at timestamp, recorded_by varchar,
            event varchar, previous_fingerprint varchar)"""
    )


def _has_table(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() where database_name = current_database() "
            "and schema_name = ? and table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def recorded_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    """The fingerprint of the warehouse's key (direct connection to the restricted store):
    the last row of privacy.key_state; for a warehouse built before that table existed,
    the key of its last erasure request; None for a new warehouse."""
    if _has_table(con, "privacy", "key_state"):
        row = con.execute(
            "select fingerprint from privacy.key_state order by recorded_at desc limit 1"
        ).fetchone()
        if row:
            return row[0]
    if _has_table(con, "privacy", "erasure_requests"):
        row = con.execute(
            "select key_fingerprint from privacy.erasure_requests "
            "where key_fingerprint is not null order by requested_at desc limit 1"
        ).fetchone()
        if row:
            return row[0]
    return None


def _has_data(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the restricted store holds raw rows (a warehouse was built from them)."""
    tables = con.execute(
        "select table_name from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'raw' and table_name <> 'load_log'"
    ).fetchall()
    return any(con.execute(f'select count(*) > 0 from raw."{t}"').fetchone()[0] for (t,) in tables)


def _current_key(settings: Settings, *, create: bool) -> tuple[bytes, str]:
    """The configured key and where it comes from; the key file is created if `create`."""
    if settings.pseudonym_key:
        return _checked(settings.pseudonym_key, f"${KEY_ENV}"), f"${KEY_ENV}"
    path = settings.pseudonym_key_file
    if create:
        ensure_key_file(path)
    if not path.exists():
        raise KeyMismatchError(
            f"pseudonymisation key file {path} does not exist, but the warehouse under "
            f"{settings.home} was built with a key: a new key would give every customer a "
            f"new id and forget the erasures; restore the key file from its backup (or set "
            f"${KEY_ENV})"
        )
    return _checked(read_key_file(path), str(path)), str(path)


def _finish_pending_rotation(settings: Settings, recorded: str) -> bool:
    """A rotation committed but interrupted before its new key file was renamed into
    place: rename it now. True if done."""
    path = settings.pseudonym_key_file
    pending = path.with_name(path.name + PENDING_SUFFIX)
    if settings.pseudonym_key or not pending.exists():
        return False
    if key_fingerprint(_checked(read_key_file(pending), str(pending))) != recorded:
        return False
    os.replace(pending, path)
    return True


def verify_key(settings: Settings) -> bytes:
    """Before anything reads or writes pseudonyms: the current key, checked against the
    warehouse's. A new warehouse gets its key (the key file is created unless the key comes
    from $CRM_PSEUDONYM_KEY) and its fingerprint recorded. Raises KeyMismatchError."""
    settings.ensure_dirs()
    with connect_restricted(settings.restricted_db) as con:
        recorded = recorded_fingerprint(con)
        existing = recorded is not None or _has_data(con)
        if recorded is not None:
            _finish_pending_rotation(settings, recorded)
        key, source = _current_key(settings, create=not existing)
        current = key_fingerprint(key)
        if recorded is not None and current != recorded:
            raise KeyMismatchError(
                f"the pseudonymisation key from {source} (fingerprint {current}) is not the "
                f"key of the warehouse under {settings.home} (fingerprint {recorded}); nothing "
                f"was run: {ROTATE_HINT}"
            )
        if recorded is None or not _has_table(con, "privacy", "key_state"):
            ensure_key_state(con)
            if not con.execute("select count(*) from privacy.key_state").fetchone()[0]:
                con.execute(
                    "insert into privacy.key_state values (?, ?, ?, ?, null)",
                    [
                        current,
                        _now(),
                        getpass.getuser(),
                        "first use" if not existing else "adopted",
                    ],
                )
    return key


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
