"""A key change on a real warehouse (the small e2e dataset, `crm` in subprocesses): after
`crm forget`, a run with another key and the person's old file delivered again refuses to
start and loads nothing; a run without the key file refuses too; after `crm rotate-key`
the person stays erased and every published customer is under the new key. Expected ids
are recomputed here with hmac from the identity components (not read back from the code
under test)."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest
from support.e2e import END, REPO, crm, crm_env
from test_privacy_erasure import _person_rows, _their_lines, _warehouse

pytestmark = pytest.mark.xdist_group("e2e_key_rotation")

REDELIVERY = date(2026, 11, 1)
NEW_KEY = "the-new-key-after-a-change-0123456789"


def _hmac(key: str, value: str) -> str:
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def _crm(home: Path, *args: str, key: str | None) -> subprocess.CompletedProcess:
    """`crm ARGS` with CRM_PSEUDONYM_KEY = key (None: unset, the key file is used)."""
    env = crm_env(home)
    env.pop("CRM_PSEUDONYM_KEY", None)
    if key is not None:
        env["CRM_PSEUDONYM_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def _published_customers(home: Path) -> set[str]:
    with duckdb.connect(str(home / "serving" / "serving.duckdb"), read_only=True) as con:
        return {r[0] for r in con.execute("select customer_id from dim_customers").fetchall()}


@pytest.fixture(scope="module")
def changed_key(crm_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A forgotten person, then the key changed and their old file delivered again."""
    old_key = os.environ["CRM_PSEUDONYM_KEY"]
    home = tmp_path_factory.mktemp("keys") / "home"
    shutil.copytree(crm_home, home, symlinks=True)
    with _warehouse(home) as con:
        customer_id, phone = con.execute(
            """select components.customer_id, min(identifiers.identifier_value)
            from restricted.identity.int_identity_identifiers as identifiers
            inner join intermediate.int_identity_components_resolved as components using (record_id)
            inner join marts.dim_customers as customers using (customer_id)
            where identifiers.identifier_type = 'phone' and not identifiers.is_supernode
              and customers.orders_lifetime >= 2 and customers.source_record_count >= 3
            group by all order by components.customer_id limit 1"""
        ).fetchone()
        ids: dict[str, set[str]] = {}
        for kind, value in con.execute(
            """select identifier_type, identifier_value
            from restricted.identity.int_identity_identifiers
            inner join intermediate.int_identity_components_resolved using (record_id)
            where customer_id = ? and not is_supernode""",
            [customer_id],
        ).fetchall():
            ids.setdefault(kind, set()).add(value)
        # each customer's component (the record its id is the keyed pseudonym of)
        components = dict(
            con.execute(
                "select distinct customer_id, component_record_id "
                "from intermediate.int_identity_components_resolved"
            ).fetchall()
        )
    published = _published_customers(home)
    # the ids are the HMAC of the component under the old key (independent check)
    assert all(_hmac(old_key, components[c]) == c for c in published)
    proc = crm(home, "forget", "--phone", phone, "--request-id", "DSR-KEY-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 customer(s)" in proc.stdout
    # their old orders file delivered again, with other customers' lines
    landing = home / "landing"
    phones = [p.removeprefix("+86") for p in ids["phone"]]
    refs = [a.split(":", 1)[1] for a in ids.get("account", ()) if ":" in a]
    old = next(f for f in sorted(landing.glob("shop_orders/*/*")) if _their_lines(f, phones, refs))
    target = landing / "shop_orders" / REDELIVERY.isoformat() / old.name
    target.parent.mkdir(parents=True)
    header, *lines = old.read_bytes().splitlines(keepends=True)
    theirs = _their_lines(old, phones, refs)
    others = [ln for ln in lines if ln not in theirs][:20]
    target.write_bytes(header + b"".join(others + theirs))
    return {
        "home": home,
        "old_key": old_key,
        "customer_id": customer_id,
        "ids": ids,
        "components": components,
        "published": published,
    }


def _nothing_of_them_loaded(home: Path, ids: dict[str, set[str]]) -> None:
    with _warehouse(home) as con:
        assert set(_person_rows(con, ids).values()) == {0}


def test_a_run_with_another_key_refuses_to_start_and_loads_nothing(changed_key: dict) -> None:
    home = changed_key["home"]
    proc = _crm(home, "run", "--date", REDELIVERY.isoformat(), key=NEW_KEY)
    assert proc.returncode != 0
    assert "crm rotate-key --old-key-file" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert NEW_KEY not in proc.stdout + proc.stderr
    _nothing_of_them_loaded(home, changed_key["ids"])
    with _warehouse(home) as con:
        assert con.execute(
            "select count(*) from restricted.raw.orders where _delivery_date = ?", [REDELIVERY]
        ).fetchone() == (0,)
    # not republished: the release as `crm forget` left it (the person removed from it)
    assert _published_customers(home) == changed_key["published"] - {changed_key["customer_id"]}
    # crm forget refuses the other key too
    proc = _crm(home, "forget", "--phone", "13800138000", "--request-id", "X", key=NEW_KEY)
    assert proc.returncode != 0 and "crm rotate-key" in proc.stderr


def test_a_missing_key_file_of_an_existing_warehouse_is_an_error(changed_key: dict) -> None:
    home = changed_key["home"]
    key_file = home / "restricted" / "pseudonym.key"
    assert not key_file.exists()  # the e2e warehouse was built with $CRM_PSEUDONYM_KEY
    proc = _crm(home, "run", "--date", REDELIVERY.isoformat(), key=None)
    assert proc.returncode != 0
    assert f"{key_file} does not exist" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not key_file.exists()  # no new random key
    _nothing_of_them_loaded(home, changed_key["ids"])


def test_after_rotate_key_the_person_stays_erased_and_every_customer_has_a_new_id(
    changed_key: dict, tmp_path: Path
) -> None:
    home = changed_key["home"]
    old_file = tmp_path / "old.key"
    old_file.write_text(changed_key["old_key"] + "\n", encoding="utf-8")
    proc = _crm(home, "rotate-key", "--old-key-file", str(old_file), key=NEW_KEY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _crm(home, "run", "--date", REDELIVERY.isoformat(), key=NEW_KEY)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "--full-refresh" in proc.stdout + proc.stderr
    _nothing_of_them_loaded(home, changed_key["ids"])
    with _warehouse(home) as con:
        assert (
            con.execute(
                "select count(*) from restricted.raw.quarantine "
                "where reason like 'erased%delivered again%' and _delivery_date = ?",
                [REDELIVERY],
            ).fetchone()[0]
            >= 1
        )
    after = _published_customers(home)
    components = changed_key["components"]
    expected = {
        _hmac(NEW_KEY, components[c])
        for c in changed_key["published"]
        if c != changed_key["customer_id"]
    }
    assert after == expected  # every customer, none under the old key, the person gone
    assert len(after) == len(changed_key["published"]) - 1
    serving = home / "serving" / "serving.duckdb"
    with duckdb.connect(str(serving), read_only=True) as con:
        for table in ("fct_orders", "fct_service_tickets", "rpt_campaign_audiences"):
            ids = {
                r[0] for r in con.execute(f"select distinct customer_id from {table}").fetchall()
            }
            assert ids - {None} <= after, table
    assert changed_key["old_key"] not in (proc.stdout + proc.stderr)
    # the same night again with the old key: refused
    proc = crm(home, "run", "--date", REDELIVERY.isoformat())
    assert proc.returncode != 0 and "crm rotate-key" in proc.stderr
    assert END < REDELIVERY
