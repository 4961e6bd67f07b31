"""Which pseudonymisation key built the warehouse, checked before anything runs; rotation.

Every pseudonym of the warehouse (`customer_id`, `social_account_key`) and every entry of
the erasure suppression list (`privacy.erased_identifiers`) depends on the key. A run with
another key would mix two sets of ids in the marts and would not recognise erased people
delivered again, so:

- `privacy.key_state` (restricted store) records the fingerprint of the warehouse's key
  (`key_fingerprint`: an HMAC of a constant, never the key) on the first run, and one row
  per rotation (the audit: when, by whom, old and new fingerprint);
- `verify_key()` runs before every night, ingest, dbt build and `crm forget`: a key whose
  fingerprint differs from the recorded one, or a missing key file for a warehouse that
  has data, stops everything with one line saying what to do (KeyMismatchError);
- `rotate_key()` (`crm rotate-key`) is the one way to change the key: it keeps the old key
  as a retired key file (the suppression list holds HMACs of identifiers whose clear
  values were deleted, so they cannot be recomputed under a new key: the re-delivery
  purge tries the retired keys too), records the new fingerprint, asks for a full dbt
  refresh and a whole publication in one transaction, and puts the new key in place.
  The next night rebuilds every table with customer ids and publishes them all under the
  new key.
"""

from __future__ import annotations

import getpass
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.lib.duck import connect_restricted
from pipelines.lib.pseudonym import (
    KEY_ENV,
    RETIRED_SUFFIX,
    PseudonymKeyError,
    _checked,
    ensure_key_file,
    key_fingerprint,
    read_key_file,
)
from pipelines.lib.settings import Settings
from pipelines.publish.releases import request_whole_publication

ROTATE_HINT = (
    "restore the key this warehouse was built with, or change it with "
    "`crm rotate-key --old-key-file FILE` (docs/operations.md, "
    '"Rotating the pseudonymisation key")'
)
#: Suffix of the new key file written by a rotation before it is committed.
PENDING_SUFFIX = ".new"


class KeyMismatchError(PseudonymKeyError):
    """The key is not the warehouse's, or it is missing; the message says what to do."""


def _ensure_key_state(con: duckdb.DuckDBPyConnection) -> None:
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
            _ensure_key_state(con)
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


@dataclass
class Rotation:
    old_fingerprint: str
    new_fingerprint: str
    new_key_source: str
    retired_key_file: Path | None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    path.chmod(0o600)


def rotate_key(
    settings: Settings,
    *,
    old_key_file: Path | None = None,
    new_key_file: Path | None = None,
    rotated_by: str | None = None,
) -> Rotation:
    """Change the warehouse's key. Old key: `old_key_file`, else the key file. New key:
    $CRM_PSEUDONYM_KEY, else `new_key_file`, else 32 random bytes written to the key file.
    Raises KeyMismatchError when the old key is not the warehouse's."""
    key_file = settings.pseudonym_key_file
    source = old_key_file or key_file
    if not source.exists():
        raise KeyMismatchError(
            f"old key file {source} does not exist: give the key the warehouse was built "
            "with as --old-key-file FILE"
        )
    old_text = read_key_file(source).strip()
    old = _checked(old_text, str(source))
    if settings.pseudonym_key:
        new_text, new_source = settings.pseudonym_key.strip(), f"${KEY_ENV}"
    elif new_key_file is not None:
        new_text, new_source = read_key_file(new_key_file).strip(), str(new_key_file)
    else:
        new_text, new_source = secrets.token_hex(32), f"{key_file} (generated)"
    new = _checked(new_text, new_source)
    old_fp, new_fp = key_fingerprint(old), key_fingerprint(new)
    if old_fp == new_fp:
        raise KeyMismatchError(f"the new key (from {new_source}) is the old key: nothing to do")
    settings.ensure_dirs()
    with connect_restricted(settings.restricted_db) as con:
        recorded = recorded_fingerprint(con)
        if recorded is not None and recorded != old_fp:
            raise KeyMismatchError(
                f"the old key (from {source}, fingerprint {old_fp}) is not the key of the "
                f"warehouse under {settings.home} (fingerprint {recorded}): give that key as "
                "--old-key-file FILE"
            )
        # the files first (none of them is read as the current key yet): the old key as a
        # retired key for the suppression list, the new key beside the key file
        retired = key_file.with_name(f"{key_file.name}{RETIRED_SUFFIX}{old_fp}")
        if not retired.exists():
            _write_private(retired, old_text)
        pending = key_file.with_name(key_file.name + PENDING_SUFFIX)
        if not settings.pseudonym_key:
            _write_private(pending, new_text)
        request_whole_publication(settings.serving, f"key rotation {old_fp} -> {new_fp}")
        _ensure_key_state(con)
        con.execute(
            "create table if not exists privacy.full_refresh_requests "
            "(request_id varchar, requested_at timestamp)"
        )
        now = _now()
        con.execute("begin transaction")
        try:
            # staging tables (clear values, rebuilt from the raw rows by the full refresh)
            for schema, table in con.execute(
                "select schema_name, table_name from duckdb_tables() "
                "where database_name = current_database() and (schema_name = 'staging' or "
                "(schema_name = 'identity' and starts_with(table_name, 'int_identity_identifiers__')))"
            ).fetchall():
                con.execute(f'drop table "{schema}"."{table}"')
            con.execute(
                "insert into privacy.full_refresh_requests values (?, ?)",
                [f"key rotation {old_fp} -> {new_fp}", now],
            )
            con.execute(
                "insert into privacy.key_state values (?, ?, ?, 'rotated', ?)",
                [new_fp, now, rotated_by or getpass.getuser(), old_fp],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    # committed: the new key in place (verify_key finishes this step if interrupted here)
    if not settings.pseudonym_key:
        os.replace(pending, key_file)
    elif key_file.exists() and key_fingerprint(_checked(read_key_file(key_file), "")) == old_fp:
        key_file.unlink()  # the old key is kept as the retired file
    return Rotation(old_fp, new_fp, new_source, retired)
