"""Keyed pseudonyms: the key's sources and precedence, the key file's permissions, retired
keys, and HMAC-SHA256 values checked against the standard library computed here."""

from __future__ import annotations

import hashlib
import hmac
import stat

import duckdb
import pytest

from pipelines.lib.pseudonym import (
    KEY_ENV,
    PseudonymKeyError,
    all_keys,
    ensure_key_file,
    key_fingerprint,
    load_key,
    pseudonym,
    pseudonymiser,
    register_pseudonym,
)
from pipelines.lib.settings import Settings


def test_pseudonym_is_hmac_sha256_cut_to_32_hex() -> None:
    key = b"k" * 32
    expected = hmac.new(key, b"account:crm:C1", hashlib.sha256).hexdigest()[:32]
    assert pseudonym("account:crm:C1", key) == expected
    assert pseudonym(None, key) is None
    assert pseudonym("account:crm:C1", b"j" * 32) != expected
    # not the unkeyed hash the warehouse used before
    assert expected != hashlib.md5(b"account:crm:C1").hexdigest()


def test_key_file_is_created_owner_only_and_read_back(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "restricted" / "pseudonym.key"
    key = load_key(path, create=True)
    assert len(key) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_key(path) == key  # stable
    ensure_key_file(path)  # an existing key is never overwritten
    assert load_key(path) == key


def test_environment_key_wins_and_short_keys_are_refused(tmp_path, monkeypatch) -> None:
    """The key of $CRM_PSEUDONYM_KEY (`Settings.pseudonym_key`, passed as `key`) wins over
    the key file; the library itself never reads the environment."""
    path = tmp_path / "pseudonym.key"
    path.write_text("f" * 40)
    assert load_key(path, key="from-the-secret-store-123") == b"from-the-secret-store-123"
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        load_key(path, key="short")
    monkeypatch.setenv(KEY_ENV, "set-in-the-environment-only")
    assert load_key(path) == b"f" * 40  # not read from the environment here
    with pytest.raises(PseudonymKeyError, match="does not exist"):
        load_key(tmp_path / "missing.key")
    settings = Settings.from_env({"CRM_HOME": str(tmp_path), KEY_ENV: "from-the-secret-store-123"})
    assert settings.pseudonym_key == "from-the-secret-store-123"
    assert "from-the-secret-store" not in repr(settings)  # never printed


def test_retired_keys_follow_the_current_one(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "pseudonym.key"
    path.write_text("n" * 40)
    (tmp_path / "pseudonym.key.retired-2026-01-01").write_text("o" * 40)
    assert all_keys(path) == [b"n" * 40, b"o" * 40]
    assert key_fingerprint(b"n" * 40) != key_fingerprint(b"o" * 40)


def test_the_duckdb_function_equals_the_python_one() -> None:
    key = b"q" * 32
    con = duckdb.connect()
    register_pseudonym(con, key)
    rows = con.execute(
        "select v, crm_pseudonym(v) from (values ('a'), ('phone:+8613800138000'), (null)) t(v)"
    ).fetchall()
    assert rows == [(v, pseudonym(v, key)) for v, _ in rows]


@pytest.mark.parametrize("key", [b"q" * 16, b"k" * 64, b"long key " * 20, bytes(range(65))])
def test_the_precomputed_pads_give_the_standard_hmac(key: bytes) -> None:
    """`pseudonymiser` (the key's pads hashed once) equals hmac.new for keys shorter than,
    as long as and longer than SHA-256's 64-byte block (hashed first), on any text."""
    apply = pseudonymiser(key)
    for value in ("", "a", "account:crm:C1", "social:wechat:ö-账号", "x" * 200):
        expected = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
        assert apply(value) == expected == pseudonym(value, key)
    assert apply(None) is None
