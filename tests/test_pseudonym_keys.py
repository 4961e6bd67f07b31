"""The warehouse's pseudonymisation key (pipelines/lib/key_check.py, its rotation in
pipelines/privacy/keys.py), without dbt: recorded on the first run, checked before every
run, a missing key file of an existing warehouse is an error, rotation re-records it in one
step. The fingerprints are recomputed here with hmac (not read back from the code under
test)."""

from __future__ import annotations

import hashlib
import hmac
import stat
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from pipelines.lib.pseudonym import KEY_ENV, load_key
from pipelines.lib.settings import Settings
from pipelines.privacy import KeyMismatchError, rotate_key, verify_key
from pipelines.publish.layout import WHOLE_MARKER

OLD = "old-key-of-the-warehouse-0123456789"
NEW = "new-key-after-a-change-9876543210"


def _fingerprint(key: str) -> str:
    digest = hmac.new(key.encode(), b"crm-pseudonym-key-fingerprint", hashlib.sha256)
    return digest.hexdigest()[:12]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("CRM_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("CRM_HOME", str(tmp_path / "home"))
    return Settings.from_env().ensure_dirs()


def _with_key(settings: Settings, key: str) -> Settings:
    """The deployment with $CRM_PSEUDONYM_KEY set to `key` (Settings.pseudonym_key)."""
    return replace(settings, pseudonym_key=key)


def _key_state(settings: Settings) -> list[tuple]:
    with duckdb.connect(str(settings.restricted_db), read_only=True) as con:
        return con.execute(
            "select fingerprint, event, previous_fingerprint from privacy.key_state "
            "order by recorded_at"
        ).fetchall()


def _with_raw_rows(settings: Settings) -> None:
    with duckdb.connect(str(settings.restricted_db)) as con:
        con.execute("create schema if not exists raw")
        con.execute("create table raw.customers as select 'C1' as customer_ref")


def test_a_key_file_readable_by_others_is_reset_to_0600(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "pseudonym.key"
    path.write_text(OLD + "\n", encoding="utf-8")
    path.chmod(0o644)
    assert load_key(path) == OLD.encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_first_run_records_the_key_and_a_changed_key_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert verify_key(_with_key(settings, OLD)) == OLD.encode()
    assert _key_state(settings) == [(_fingerprint(OLD), "first use", None)]
    assert verify_key(_with_key(settings, OLD)) == OLD.encode()  # the same key again: fine
    with pytest.raises(KeyMismatchError) as raised:
        verify_key(_with_key(settings, NEW))
    message = str(raised.value)
    assert _fingerprint(NEW) in message and _fingerprint(OLD) in message
    assert "crm rotate-key --old-key-file" in message
    assert NEW not in message and OLD not in message  # never the key itself


def test_a_new_warehouse_gets_a_key_file_but_an_existing_one_never_a_new_key(
    settings: Settings,
) -> None:
    key = verify_key(settings)  # new warehouse: key file created, mode 0600
    assert stat.S_IMODE(settings.pseudonym_key_file.stat().st_mode) == 0o600
    assert settings.pseudonym_key_file.read_text(encoding="utf-8").strip().encode() == key
    settings.pseudonym_key_file.unlink()
    with pytest.raises(KeyMismatchError, match="does not exist.*restore the key file"):
        verify_key(settings)
    assert not settings.pseudonym_key_file.exists()  # no silent new random key


def test_a_warehouse_from_before_the_key_record_with_data_and_no_key_file_is_refused(
    settings: Settings,
) -> None:
    _with_raw_rows(settings)
    with pytest.raises(KeyMismatchError, match="does not exist"):
        verify_key(settings)
    assert not settings.pseudonym_key_file.exists()


def test_a_warehouse_from_before_the_key_record_is_checked_against_its_erasures(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_raw_rows(settings)
    with duckdb.connect(str(settings.restricted_db)) as con:
        con.execute("create schema privacy")
        con.execute(
            "create table privacy.erasure_requests as select 'R1' as request_id, "
            f"now()::timestamp as requested_at, '{_fingerprint(OLD)}' as key_fingerprint"
        )
    with pytest.raises(KeyMismatchError):
        verify_key(_with_key(settings, NEW))
    verify_key(_with_key(settings, OLD))
    assert _key_state(settings) == [(_fingerprint(OLD), "adopted", None)]


def test_rotate_key_records_the_new_key_retires_the_old_and_asks_for_a_full_rebuild(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings.pseudonym_key_file.parent.mkdir(parents=True, exist_ok=True)
    settings.pseudonym_key_file.write_text(OLD + "\n", encoding="utf-8")
    settings.pseudonym_key_file.chmod(0o600)
    verify_key(settings)
    # the wrong old key: refused, nothing changed
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key-of-this-warehouse-42", encoding="utf-8")
    with pytest.raises(KeyMismatchError, match="--old-key-file"):
        rotate_key(settings, old_key_file=wrong)
    assert _key_state(settings) == [(_fingerprint(OLD), "first use", None)]
    # the new key from the environment, the old one from the key file
    rotation = rotate_key(_with_key(settings, NEW), rotated_by="dpo")
    assert (rotation.old_fingerprint, rotation.new_fingerprint) == (
        _fingerprint(OLD),
        _fingerprint(NEW),
    )
    assert _key_state(settings)[-1] == (_fingerprint(NEW), "rotated", _fingerprint(OLD))
    retired = rotation.retired_key_file
    assert retired is not None and retired.read_text(encoding="utf-8").strip() == OLD
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert not settings.pseudonym_key_file.exists()  # the stale old key is not left behind
    with duckdb.connect(str(settings.restricted_db), read_only=True) as con:
        assert con.execute("select count(*) from privacy.full_refresh_requests").fetchone() == (1,)
    assert (settings.serving / WHOLE_MARKER).read_text(encoding="utf-8").startswith("key rotation")
    assert verify_key(_with_key(settings, NEW)) == NEW.encode()  # now the warehouse's key
    with pytest.raises(KeyMismatchError):
        verify_key(_with_key(settings, OLD))


def test_rotate_key_generates_a_new_key_file(settings: Settings) -> None:
    old = verify_key(settings)
    rotation = rotate_key(settings)
    new = settings.pseudonym_key_file.read_text(encoding="utf-8").strip()
    assert new.encode() != old and len(new) == 64
    assert rotation.new_fingerprint == _fingerprint(new)
    assert stat.S_IMODE(settings.pseudonym_key_file.stat().st_mode) == 0o600
    assert verify_key(settings) == new.encode()
    assert not settings.pseudonym_key_file.with_name("pseudonym.key.new").exists()
