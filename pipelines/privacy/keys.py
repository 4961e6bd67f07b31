"""Rotation of the pseudonymisation key (`crm rotate-key`).

The key check that runs before every night, ingest, dbt build and `crm forget` is in
pipelines/lib/key_check.py (`verify_key`, `privacy.key_state`). `rotate_key()` is the one
way to change the key: it keeps the old key as a retired key file (the suppression list
holds HMACs of identifiers whose clear values were deleted, so they cannot be recomputed
under a new key: the re-delivery purge tries the retired keys too), records the new
fingerprint, asks for a full dbt refresh and a whole publication in one transaction, and
puts the new key in place. The next night rebuilds every table with customer ids and
publishes them all under the new key.
"""

from __future__ import annotations

import getpass
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.lib.duck import connect_restricted
from pipelines.lib.key_check import (
    PENDING_SUFFIX,
    KeyMismatchError,
    ensure_key_state,
    recorded_fingerprint,
)
from pipelines.lib.pseudonym import (
    KEY_ENV,
    RETIRED_SUFFIX,
    _checked,
    key_fingerprint,
    read_key_file,
)
from pipelines.lib.settings import Settings
from pipelines.lib.whole_publication import request_whole_publication


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
        ensure_key_state(con)
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
