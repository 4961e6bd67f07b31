"""Privacy end to end: nights (one of them failing), an erasure, the person's old rows
delivered again and another night; then the raw bytes of every file the pipeline writes
outside the landing folder (CRM_HOME, the restricted store's own file, the Dagster
storage, dbt's target and logs folders) hold none of the person's phone, e-mail, name or
member number, in any of the forms they were delivered in or the warehouse writes. The
same scan run before the erasure finds every one of them: it is not blind."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from support.e2e import END, REPO, crm, crm_env

pytestmark = pytest.mark.xdist_group("e2e_privacy")

REQUEST = "DSR-2026-0077"
NEW_KEY = "rotated-key-for-the-privacy-test-0123456789"
REDELIVERY = date(2026, 11, 1)
DBT_FOLDERS = (REPO / "dbt_project" / "target", REPO / "dbt_project" / "logs")


def _crm_with_key(home: Path, key: str, *args: str) -> subprocess.CompletedProcess:
    """`crm ARGS` on CRM_HOME = home with CRM_PSEUDONYM_KEY = key."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        env={**crm_env(home), "CRM_PSEUDONYM_KEY": key},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def _scanned_files(home: Path) -> list[Path]:
    """Every file under CRM_HOME but landing/ and restricted/, the restricted store's file
    (and its write-ahead log), the Dagster storage (DAGSTER_HOME is CRM_HOME/dagster) and
    dbt's target and logs folders."""
    skipped = (home / "landing", home / "restricted")
    files = [
        p
        for p in home.rglob("*")
        if p.is_file() and not p.is_symlink() and not any(p.is_relative_to(s) for s in skipped)
    ]
    store = home / "restricted" / "restricted.duckdb"
    files += [p for p in (store, store.with_name(store.name + ".wal")) if p.exists()]
    for folder in DBT_FOLDERS:
        files += [p for p in folder.rglob("*") if p.is_file()]
    assert (home / "dagster") in {p.parent for p in files} | {
        q for p in files for q in p.parents
    }, "the Dagster storage was not scanned"
    return files


def _forms(values: dict[str, set[str]]) -> dict[bytes, str]:
    """The byte strings searched: each value in UTF-8 and as JSON writes it (\\uXXXX)."""
    out: dict[bytes, str] = {}
    for kind, texts in values.items():
        for text in texts:
            for form in (text, json.dumps(text)[1:-1], json.dumps(text)[1:-1].upper()):
                if kind == "name" or form == text:
                    out[form.encode()] = f"{kind} {text!r}"
    return out


def _scan(home: Path, values: dict[str, set[str]]) -> dict[str, set[str]]:
    """file -> the person's values found in its raw bytes."""
    forms = _forms(values)
    pattern = re.compile(b"|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
    hits: dict[str, set[str]] = {}
    for path in _scanned_files(home):
        found = {forms[m.group(0)] for m in pattern.finditer(path.read_bytes())}
        if found:
            hits[str(path)] = found
    return hits


def _person(
    con: duckdb.DuckDBPyConnection, store: bytes
) -> tuple[str, str, str, dict[str, set[str]]]:
    """A member with a phone, e-mail and name of their own, and an order placed before
    October (outside the nights' incremental window): (customer_id, e-mail, order id,
    the values to look for: phone, e-mail, name and member number, as delivered and as
    normalised). Each kind of value must show in the restricted store's bytes (DuckDB
    compresses some strings): the scan before the erasure must see them."""
    candidates = con.execute(
        """select golden.customer_id, golden.customer_name
        from restricted.golden.int_customer_profiles_merged as golden
        inner join marts.dim_customers as customers using (customer_id)
        where golden.phone is not null and golden.email is not null
          and length(golden.customer_name) >= 2 and customers.orders_lifetime >= 2
        order by golden.customer_id limit 200"""
    ).fetchall()
    for customer_id, name in candidates:
        ids: dict[str, set[str]] = {}
        for kind, value, supernode in con.execute(
            """select identifier_type, identifier_value, is_supernode
            from restricted.identity.int_identity_identifiers
            inner join intermediate.int_identity_components_resolved using (record_id)
            where customer_id = ?""",
            [customer_id],
        ).fetchall():
            ids.setdefault(kind, set()).add(value)
            if supernode:
                ids["supernode"] = {value}
        refs = {a.split(":", 1)[1] for a in ids.get("account", ()) if a.startswith("crm:")}
        if "supernode" in ids or not ids.get("email") or len(refs) != 1:
            continue
        phones = {p.removeprefix("+86") for p in ids.get("phone", ())}
        emails = ids["email"]
        # every raw row with their name, or a longer name holding it, is theirs (the scan
        # reads bytes: 唐强 would match 唐强轩, another person who rightly stays)
        named = con.execute(
            """select regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g'),
                lower(trim(coalesce(email, ''))), trim(customer_ref) from restricted.raw.customers
            where strpos(name, ?) > 0
            union all
            select regexp_replace(coalesce(buyer_phone, ''), '[^0-9]', '', 'g'),
                lower(trim(coalesce(buyer_email, ''))), trim(customer_ref)
            from restricted.raw.orders where strpos(buyer_name, ?) > 0""",
            [name, name],
        ).fetchall()
        elsewhere = con.execute(
            """select (select count(*) from restricted.raw.social_interactions
                       where strpos(content, ?) > 0)
                + (select count(*) from restricted.raw.quarantine where strpos(raw_text, ?) > 0)""",
            [name, name],
        ).fetchone()[0]
        if elsewhere or not all(
            any(d.endswith(p) for p in phones if d) or e in emails or r in refs for d, e, r in named
        ):
            continue
        order = con.execute(
            """select order_id from marts.fct_orders where customer_id = ?
            and order_date < date '2026-10-01' order by order_date limit 1""",
            [customer_id],
        ).fetchone()
        if order is None:
            continue
        delivered = con.execute(
            """select phone, email, name from restricted.raw.customers
            where source_system = 'crm' and trim(customer_ref) in (select unnest(?))
            union all select buyer_phone, buyer_email, buyer_name from restricted.raw.orders
            where regexp_replace(coalesce(buyer_phone, ''), '[^0-9]', '', 'g')
                  in (select unnest(?)) or lower(trim(buyer_email)) in (select unnest(?))""",
            [sorted(refs), sorted(phones | {"86" + p for p in phones}), sorted(emails)],
        ).fetchall()
        values = {
            "phone": phones | ids["phone"] | {r[0].strip() for r in delivered if r[0]},
            "email": emails | {r[1].strip() for r in delivered if r[1]},
            "name": {name} | {r[2].strip() for r in delivered if r[2]},
            "member number": refs,
        }
        if all(any(v.encode() in store for v in vs) for vs in values.values()):
            return customer_id, sorted(emails)[0], order[0], values
    pytest.fail("no member of the dataset fits (generator changed?)")


def _their_lines(path: Path, values: dict[str, set[str]]) -> list[bytes]:
    digits = {v for v in values["phone"] if v.isdigit() and len(v) == 11}
    out = []
    for line in path.read_bytes().splitlines(keepends=True):
        if any(d in re.sub(rb"\D", b"", line).decode() for d in digits) or any(
            e.encode() in line.lower() for e in values["email"]
        ):
            out.append(line)
    return out


def test_an_erased_person_leaves_no_byte_behind(crm_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(crm_home, home, symlinks=True)
    # night 1: a second publication (the first one stays as the previous release)
    proc = crm(home, "run", "--date", END.isoformat())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    store = (home / "restricted" / "restricted.duckdb").read_bytes()
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb")) as con:
        con.execute(f"attach '{home / 'restricted' / 'restricted.duckdb'}' as restricted")
        customer_id, email, order_id, values = _person(con, store)
        # night 2 fails: one of their old orders twice in the facts (a blocking gate)
        con.execute(
            "insert into marts.fct_orders select * from marts.fct_orders where order_id = ?",
            [order_id],
        )
    proc = crm(home, "run", "--date", END.isoformat())
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]

    # the scan sees every kind of value before the erasure
    before = _scan(home, values)
    found = {hit.split(" ", 1)[0] for hits in before.values() for hit in hits}
    assert found >= {"phone", "email", "name", "member"}, before

    proc = crm(home, "forget", "--email", email.upper(), "--request-id", REQUEST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 customer(s)" in proc.stdout

    # their old orders delivered again, among other rows
    files = [
        f for f in sorted((home / "landing").glob("shop_orders/*/*")) if _their_lines(f, values)
    ]
    assert files, "their orders are in no shop_orders file"
    header, *lines = files[0].read_bytes().splitlines(keepends=True)
    theirs = _their_lines(files[0], values)
    target = home / "landing" / "shop_orders" / REDELIVERY.isoformat() / files[0].name
    target.parent.mkdir(parents=True)
    # and one of their lines broken (a column too many): quarantined with its raw text
    broken = theirs[0].rstrip(b"\r\n") + b",x\n"
    others = [ln for ln in lines if ln not in theirs][:20]
    target.write_bytes(header + b"".join([*others, *theirs, broken]))
    proc = crm(home, "run", "--date", REDELIVERY.isoformat())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    # the key rotated, the same rows delivered once more, a night under the new key: the
    # erasure (recorded under the old key, now a retired key file) still holds
    old_key = tmp_path / "old.key"
    old_key.write_text(crm_env(home)["CRM_PSEUDONYM_KEY"] + "\n", encoding="utf-8")
    proc = _crm_with_key(home, NEW_KEY, "rotate-key", "--old-key-file", str(old_key))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    old_key.unlink()
    again = home / "landing" / "shop_orders" / (REDELIVERY + timedelta(days=1)).isoformat()
    again.mkdir(parents=True)
    # other bytes than the first re-delivery (a byte-identical file is loaded once)
    (again / target.name).write_bytes(header + b"".join(theirs))
    proc = _crm_with_key(home, NEW_KEY, "run", "--date", again.name)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    with duckdb.connect(str(home / "restricted" / "restricted.duckdb"), read_only=True) as con:
        purged = con.execute(
            "select count(*) from raw.quarantine where reason like 'erased%delivered again%'"
        ).fetchone()[0]
    assert purged >= 2 * len(theirs) + 1  # both re-deliveries, and the broken line
    with duckdb.connect(str(home / "serving" / "serving.duckdb"), read_only=True) as con:
        assert con.execute(
            "select count(*) from dim_customers where customer_id = ?", [customer_id]
        ).fetchone() == (0,)
    assert _scan(home, values) == {}
