"""Erasure end to end (`crm forget`): a real person of the small e2e dataset is forgotten
by phone (typed in another format), then the night runs again, then one of their old
files is delivered again. Checked independently of the erasure code: the raw tables are
scanned for the person's phones, e-mails and accounts (as identity resolution found them
before the erasure), the published marts for their customer_id, October's revenue
against the revenue of their orders. Also checked: a quarantined line carrying only their
member number and name, every kept release (current and previous, every format), the
restricted store's bytes (free space included), and a request killed midway and retried."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from support.e2e import END, crm, crm_env

from pipelines.privacy import erasure as erasure_module
from pipelines.publish.layout import RELEASES_DIR, WHOLE_MARKER
from pipelines.publish.releases import open_serving, restore_previous
from pipelines.publish.serving import publish

pytestmark = pytest.mark.xdist_group("e2e_erasure")

REQUEST = "DSR-2026-0042"
REDELIVERY = date(2026, 11, 1)


def _warehouse(home: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=read_only)
    mode = " (read_only)" if read_only else ""
    con.execute(f"attach '{home / 'restricted' / 'restricted.duckdb'}' as restricted{mode}")
    return con


def _october_revenue(con: duckdb.DuckDBPyConnection, schema: str = "marts") -> float:
    return float(
        con.execute(
            f"select value from {schema}.fct_kpi_monthly where month_label = '2026-10' "
            "and segment = 'all' and kpi = 'net_revenue'"
        ).fetchone()[0]
    )


def _person_rows(con: duckdb.DuckDBPyConnection, ids: dict[str, set[str]]) -> dict[str, int]:
    """Raw rows carrying one of the person's phones, e-mails or accounts, found by plain
    text comparison on the raw columns (digits of phone fields, lower-cased e-mails)."""
    phones = sorted(p.removeprefix("+86") for p in ids.get("phone", ()))
    emails = sorted(e.lower() for e in ids.get("email", ()))
    accounts = sorted(ids.get("account", ()))

    def any_of(column: str, values: list[str], digits: bool) -> str:
        if not values:
            return "false"
        expr = (
            f"regexp_replace(coalesce({column}, ''), '[^0-9]', '', 'g')"
            if digits
            else f"lower(trim(coalesce({column}, '')))"
        )
        if digits:
            return " or ".join(f"{expr} like '%{v}'" for v in values)
        return f"{expr} in ({', '.join(repr(v) for v in values)})"

    account_sql = (
        f"trim(source_system) || ':' || trim(customer_ref) in ({', '.join(repr(a) for a in accounts)})"
        if accounts
        else "false"
    )
    checks = {
        "customers": f"{any_of('phone', phones, True)} or {any_of('email', emails, False)} or {account_sql}",
        "orders": f"{any_of('buyer_phone', phones, True)} or {any_of('buyer_email', emails, False)} "
        f"or {account_sql}",
        "service_events": f"{any_of('phone', phones, True)} or {any_of('email', emails, False)}",
        "social_interactions": any_of("phone", phones, True),
    }
    return {
        table: con.execute(f"select count(*) from restricted.raw.{table} where {where}").fetchone()[
            0
        ]
        for table, where in checks.items()
    }


def _release_rows(serving: Path, customer_id: str) -> dict[str, tuple[dict, dict]]:
    """Per release kept under `serving`: (rows per table, the customer's rows per table and
    format), read from its serving.duckdb, Parquet files and Hyper extracts."""
    from tableauhyperapi import Connection, HyperProcess, Telemetry

    out = {}
    with HyperProcess(Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU) as hyper:
        for release in sorted((serving / RELEASES_DIR).iterdir()):
            if not release.is_dir():
                continue
            rows, theirs = {}, {}
            with duckdb.connect(str(release / "serving.duckdb"), read_only=True) as con:
                tables = [
                    r[0]
                    for r in con.execute(
                        "select table_name from duckdb_columns() where column_name = 'customer_id'"
                    ).fetchall()
                ]
                for table in tables:
                    rows[table] = con.execute(f"select count(*) from {table}").fetchone()[0]
                    theirs[(table, "duckdb")] = con.execute(
                        f"select count(*) from {table} where customer_id = ?", [customer_id]
                    ).fetchone()[0]
                    parquet = release / "parquet" / f"{table}.parquet"
                    theirs[(table, "parquet")] = con.execute(
                        "select count(*) from read_parquet(?) where customer_id = ?",
                        [str(parquet), customer_id],
                    ).fetchone()[0]
            for table in tables:
                with Connection(hyper.endpoint, release / "tableau" / f"{table}.hyper") as con:
                    theirs[(table, "hyper")] = con.execute_scalar_query(
                        'select count(*) from "Extract"."Extract" where customer_id = '
                        + "'"
                        + customer_id.replace("'", "''")
                        + "'"
                    )
            out[release.name] = (rows, {k: v for k, v in theirs.items() if v})
    return out


def _store_hits(home: Path, ids: dict[str, set[str]]) -> set[str]:
    """The person's phones (national digits), e-mails and accounts found in the raw bytes
    of the restricted store's file (free space included)."""
    data = (home / "restricted" / "restricted.duckdb").read_bytes()
    values = {p.removeprefix("+86") for p in ids.get("phone", ())}
    values |= set(ids.get("email", ())) | {
        a.split(":", 1)[1] for a in ids.get("account", ()) if ":" in a
    }
    return {v for v in values if v.encode() in data}


@pytest.fixture(scope="module")
def erasure(crm_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("erasure") / "home"
    shutil.copytree(crm_home, home, symlinks=True)
    with _warehouse(home) as con:
        # a person with a phone of their own (not a super-node), orders in October and more
        # than one linked record
        customer_id, phone = con.execute(
            """with october as (
                select customer_id, sum(net_revenue) as revenue from marts.fct_orders
                where not is_cancelled and order_date >= date '2026-10-01'
                group by all having sum(net_revenue) > 0
            )
            select components.customer_id, min(identifiers.identifier_value)
            from restricted.identity.int_identity_identifiers as identifiers
            inner join intermediate.int_identity_components_resolved as components using (record_id)
            inner join marts.dim_customers as customers using (customer_id)
            inner join october using (customer_id)
            -- with a golden record (a member profile), whose erasure is checked too
            inner join restricted.golden.int_customer_profiles_merged as golden using (customer_id)
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
        their_october = float(
            con.execute(
                """select coalesce(sum(net_revenue), 0) from marts.fct_orders
                where customer_id = ? and not is_cancelled
                  and order_date between date '2026-10-01' and date '2026-10-31'""",
                [customer_id],
            ).fetchone()[0]
        )
        october_before = _october_revenue(con)
        rows_before = _person_rows(con, ids)
        # the source identifiers int_identity_identifiers keeps for its nightly builds
        kept_before = con.execute(
            "select count(*) from restricted.identity.int_identity_identifiers__by_source "
            "where identifier_type = 'phone' and identifier_value = ?",
            [phone],
        ).fetchone()[0]
        name = con.execute(
            "select customer_name from restricted.golden.int_customer_profiles_merged "
            "where customer_id = ?",
            [customer_id],
        ).fetchone()[0]
    # a line of theirs quarantined with only their member number and name (a bad date):
    # nothing in it but the member number links it to them
    refs = sorted(a.split(":", 1)[1] for a in ids.get("account", ()) if a.startswith("crm:"))
    assert refs, ids
    with _warehouse(home, read_only=False) as con:
        con.execute(
            "insert into restricted.raw.quarantine (_source_name, entity, _source_file, "
            "_source_line, raw_text, reason, _delivery_date, _loaded_at, _file_sha256) values "
            "('crm_members', 'customers', 'crm_members/2026-10-31/members_extra.csv', 2, ?, "
            "'registered_at: cannot parse', date '2026-10-31', now()::timestamp, 'x')",
            [f"{refs[0]},{name},女,,,,,,,普通会员,是,,2026-02-30 25:61:00,2026-02-30 25:61:00"],
        )
    # a second publication: the first one is kept as the previous release
    publish(home / "warehouse" / "warehouse.duckdb", home / "serving")
    releases_before = _release_rows(home / "serving", customer_id)
    assert len(releases_before) == 2
    assert all(theirs for _, theirs in releases_before.values()), releases_before
    store_bytes_before = _store_hits(home, ids)
    national = phone.removeprefix("+86")
    typed = f"{national[:3]}-{national[3:7]}-{national[7:]}"  # e.g. 138-0013-8000
    proc = crm(home, "forget", "--phone", typed, "--request-id", REQUEST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the next publication is written whole, not patched from a copy of the current one
    assert (home / "serving" / WHOLE_MARKER).read_text(encoding="utf-8").startswith("erasure")
    return {
        "home": home,
        "customer_id": customer_id,
        "phone": phone,
        "ids": ids,
        "their_october": their_october,
        "october_before": october_before,
        "rows_before": rows_before,
        "kept_before": kept_before,
        "output": proc.stdout,
        "refs": refs,
        "releases_before": releases_before,
        "store_bytes_before": store_bytes_before,
    }


def test_forget_removes_every_raw_row_of_the_person(erasure: dict) -> None:
    assert sum(erasure["rows_before"].values()) >= 3, erasure["rows_before"]
    assert "1 customer(s)" in erasure["output"]
    with _warehouse(erasure["home"]) as con:
        assert _person_rows(con, erasure["ids"]) == dict.fromkeys(erasure["rows_before"], 0)
        # nothing lost: the load log still reconciles file by file and with the tables
        bad = con.execute(
            "select count(*) from restricted.raw.load_log where status = 'loaded' "
            "and rows_read <> rows_loaded + rows_quarantined"
        ).fetchone()[0]
        assert bad == 0
        for table in erasure["rows_before"]:
            in_table = con.execute(f"select count(*) from restricted.raw.{table}").fetchone()[0]
            logged = con.execute(
                "select sum(rows_loaded) from restricted.raw.load_log "
                "where status = 'loaded' and entity = ?",
                [table],
            ).fetchone()[0]
            assert in_table == logged, table
        erased_rows = con.execute(
            "select count(*), count(raw_text) from restricted.raw.quarantine where reason = ?",
            [f"erased (request {REQUEST})"],
        ).fetchone()
        assert erased_rows[0] >= sum(erasure["rows_before"].values()) and erased_rows[1] == 0
        # nor do the tables dbt derives into the restricted store (not only after the next
        # build): the identifiers of their records, their golden record
        ids = [(kind, value) for kind, values in erasure["ids"].items() for value in values]
        left = con.execute(
            "select count(*) from restricted.identity.int_identity_identifiers "
            "where (identifier_type, identifier_value) in (select * from (values "
            + ", ".join("(?, ?)" for _ in ids)
            + "))",
            [x for pair in ids for x in pair],
        ).fetchone()[0]
        assert left == 0
        # the source identifiers kept for the nightly builds held the phone: dropped (the
        # next build, a full refresh, makes them again)
        assert erasure["kept_before"] > 0
        kept = con.execute(
            "select count(*) from duckdb_tables() where database_name = 'restricted' "
            "and schema_name = 'identity' and starts_with(table_name, 'int_identity_identifiers__')"
        ).fetchone()[0]
        assert kept == 0
        golden = con.execute(
            "select count(*) from restricted.golden.int_customer_profiles_merged "
            "where customer_id = ?",
            [erasure["customer_id"]],
        ).fetchone()[0]
        assert golden == 0
        # the warehouse no longer holds the customer, in any table or column (the identity
        # models' build state keeps the customer a record had before a build)
        for schema, table, column in con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() "
            "where database_name = current_database() and column_name like '%customer_id' "
            "and table_name in (select table_name from duckdb_tables() "
            "where database_name = current_database())"
        ).fetchall():
            held = con.execute(
                f'select count(*) from "{schema}"."{table}" where "{column}" = ?',
                [erasure["customer_id"]],
            ).fetchone()[0]
            assert held == 0, (schema, table, column)


def test_the_audit_record_holds_no_personal_data(erasure: dict) -> None:
    with _warehouse(erasure["home"]) as con:
        rows = con.execute(
            "select * from restricted.privacy.erasure_requests where request_id = ?", [REQUEST]
        ).fetchall()
    assert len(rows) == 1
    text = " ".join(str(v) for v in rows[0])
    assert "phone" in text and REQUEST in text
    digits = re.sub(r"\D", "", text)
    for phone in erasure["ids"]["phone"]:
        assert phone.removeprefix("+86") not in digits
    for value in erasure["ids"].get("email", ()) | erasure["ids"].get("account", set()):
        assert value not in text


def test_a_quarantined_line_with_only_their_member_number_is_removed(erasure: dict) -> None:
    with _warehouse(erasure["home"]) as con:
        left = con.execute(
            "select count(*) from restricted.raw.quarantine where raw_text like ?",
            [f"%{erasure['refs'][0]}%"],
        ).fetchone()[0]
    assert left == 0


def test_every_kept_release_loses_their_rows_in_every_format(erasure: dict, tmp_path: Path) -> None:
    """At once, not at the next publication: the current and the previous release (the
    one `restore_previous` would bring back) hold every other row and none of theirs.
    (Before `republished`: the next night publishes a new release.)"""
    after = _release_rows(erasure["home"] / "serving", erasure["customer_id"])
    assert after.keys() == erasure["releases_before"].keys()
    for release, (rows, theirs) in after.items():
        rows_before, theirs_before = erasure["releases_before"][release]
        assert theirs == {}, release
        expected = {
            table: n - theirs_before.get((table, "duckdb"), 0) for table, n in rows_before.items()
        }
        assert rows == expected, release
        manifest = json.loads((erasure["home"] / "serving" / RELEASES_DIR / release /
                               "manifest.json").read_text())  # fmt: skip
        assert {t: manifest["tables"][t]["rows"] for t in rows} == rows
    serving = tmp_path / "serving"
    shutil.copytree(erasure["home"] / "serving", serving, symlinks=True)
    restore_previous(serving)
    con = open_serving(serving)
    try:
        assert con.execute(
            "select count(*) from dim_customers where customer_id = ?", [erasure["customer_id"]]
        ).fetchone() == (0,)
    finally:
        con.close()


def test_the_restricted_store_keeps_nothing_of_them_in_its_free_space(erasure: dict) -> None:
    """The file's raw bytes: the values the scan found before the erasure are gone (DuckDB
    keeps deleted values in freed blocks until the file is rewritten)."""
    assert len(erasure["store_bytes_before"]) >= 3, erasure["store_bytes_before"]
    assert _store_hits(erasure["home"], erasure["ids"]) == set()
    assert not list((erasure["home"] / "restricted").glob(".*compact*"))


@pytest.fixture(scope="module")
def republished(erasure: dict) -> dict:
    proc = crm(erasure["home"], "run", "--date", END.isoformat())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "--full-refresh" in proc.stdout + proc.stderr
    return erasure


def test_the_next_publication_neither_counts_nor_shows_them(republished: dict) -> None:
    serving = republished["home"] / "serving" / "serving.duckdb"
    with duckdb.connect(str(serving), read_only=True) as con:
        for table in ("dim_customers", "fct_orders", "fct_order_lines", "fct_service_tickets",
                      "fct_social_interactions", "rpt_campaign_audiences"):  # fmt: skip
            n = con.execute(
                f"select count(*) from {table} where customer_id = ?", [republished["customer_id"]]
            ).fetchone()[0]
            assert n == 0, table
        october_after = _october_revenue(con, "main")
    assert republished["their_october"] > 0
    assert october_after == pytest.approx(
        republished["october_before"] - republished["their_october"], abs=0.01
    )
    manifest = json.loads((republished["home"] / "serving" / "manifest.json").read_text())
    assert {table["written"] for table in manifest["tables"].values()} == {"whole"}
    assert not (republished["home"] / "serving" / WHOLE_MARKER).exists()
    with _warehouse(republished["home"]) as con:
        # the full refresh was done once: the request is cleared
        assert con.execute(
            "select count(*) from restricted.privacy.full_refresh_requests"
        ).fetchone() == (0,)


def _their_lines(path: Path, phones: list[str], refs: list[str]) -> list[bytes]:
    """Lines of `path` with one of the phones (digits in any format) or account refs."""
    ref = (
        re.compile(rb"\b(" + b"|".join(re.escape(r.encode()) for r in refs) + rb")\b")
        if refs
        else None
    )
    out = []
    for line in path.read_bytes().splitlines(keepends=True):
        digits = re.sub(rb"\D", b"", line).decode()
        if any(p in digits for p in phones) or (ref is not None and ref.search(line)):
            out.append(line)
    return out


def test_an_old_file_delivered_again_brings_nobody_back(republished: dict) -> None:
    home = republished["home"]
    landing = home / "landing"
    phones = [p.removeprefix("+86") for p in republished["ids"]["phone"]]
    refs = [a.split(":", 1)[1] for a in republished["ids"].get("account", ()) if ":" in a]
    files = [f for f in sorted(landing.glob("shop_orders/*/*")) if _their_lines(f, phones, refs)]
    assert files, "the person's orders are in no shop_orders file"
    old = files[0]
    target = landing / old.parent.parent.name / REDELIVERY.isoformat() / old.name
    target.parent.mkdir(parents=True)
    # the same rows again, but not the same bytes (identical bytes are skipped as a
    # duplicate file): the header, the first 20 other lines and the person's lines
    header, *lines = old.read_bytes().splitlines(keepends=True)
    theirs = _their_lines(old, phones, refs)
    others = [ln for ln in lines if ln not in theirs][:20]
    target.write_bytes(header + b"".join(others + theirs))
    proc = crm(home, "run", "--date", REDELIVERY.isoformat())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    with _warehouse(home) as con:
        assert _person_rows(con, republished["ids"]) == dict.fromkeys(republished["rows_before"], 0)
        again = con.execute(
            "select count(*) from restricted.raw.quarantine "
            "where reason like 'erased%delivered again%' and _delivery_date = ?",
            [REDELIVERY],
        ).fetchone()[0]
        loaded = con.execute(
            "select count(*) from restricted.raw.orders where _delivery_date = ?", [REDELIVERY]
        ).fetchone()[0]
    assert again >= 1
    assert loaded >= 1  # the file's other rows are loaded as usual
    serving = home / "serving" / "serving.duckdb"
    with duckdb.connect(str(serving), read_only=True) as con:
        assert (
            con.execute(
                "select count(*) from dim_customers where customer_id = ?",
                [republished["customer_id"]],
            ).fetchone()[0]
            == 0
        )


def test_an_erased_phone_on_a_line_of_an_old_order_removes_the_whole_order_everywhere(
    republished: dict, tmp_path: Path
) -> None:
    """A line delivered again with an erased phone typed on it belongs to an order whose
    other lines were loaded (and built) long before: the purge removes the whole order
    from the raw tables, and the next build must not keep it in staging or the facts
    (the staging tables are dropped and the build is a full refresh)."""
    home = tmp_path / "home"
    shutil.copytree(republished["home"], home, symlinks=True)
    with _warehouse(home) as con:
        order_no, delivered = con.execute(
            """select trim(order_id), min(_delivery_date) from restricted.raw.orders
            where _source_name = 'shop_orders' and ordered_at < timestamp '2026-09-01'
            group by all having count(*) >= 2 order by 1 limit 1"""
        ).fetchone()
        assert (
            con.execute(
                "select count(*) from marts.fct_orders where source_order_id = ?", [order_no]
            ).fetchone()[0]
            == 1
        )
    source = next(
        f
        for f in sorted((home / "landing" / "shop_orders" / delivered.isoformat()).glob("*.csv"))
        if order_no in f.read_text(encoding="utf-8-sig")
    )
    header, *rows = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8-sig"))))
    row = next(r for r in rows if r[0] == order_no)
    national = next(iter(republished["ids"]["phone"])).removeprefix("+86")
    row[header.index("buyer_phone")] = f"{national[:3]} {national[3:7]} {national[7:]}"
    day = date(2026, 11, 2)
    target = home / "landing" / "shop_orders" / day.isoformat() / f"orders_{day:%Y%m%d}.csv"
    target.parent.mkdir(parents=True)
    with target.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, row])
    proc = crm(home, "run", "--date", day.isoformat())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "--full-refresh" in proc.stdout + proc.stderr
    with _warehouse(home) as con:
        for table, column in (("restricted.raw.orders", "trim(order_id)"),
                              ("restricted.staging.stg_raw__orders", "source_order_id"),
                              ("marts.fct_orders", "source_order_id"),
                              ("marts.fct_order_lines", "split_part(order_id, ':', 2)")):  # fmt: skip
            n = con.execute(f"select count(*) from {table} where {column} = ?", [order_no])
            assert n.fetchone()[0] == 0, table
        assert con.execute(
            "select count(*) from restricted.privacy.full_refresh_requests"
        ).fetchone() == (0,)


def test_a_request_killed_midway_and_retried_audits_the_true_counts(
    crm_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after the restricted store was cleared, before the warehouse: the retry (same
    request id) finishes the job, and its audit equals that of an uninterrupted request on
    a copy of the same warehouse."""
    from pipelines.lib.settings import Settings

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for home in (reference, killed):
        shutil.copytree(crm_home, home, symlinks=True)
    with _warehouse(killed) as con:
        customer_id, email = con.execute(
            """select customer_id, min(identifier_value)
            from restricted.identity.int_identity_identifiers
            inner join intermediate.int_identity_components_resolved using (record_id)
            inner join marts.dim_customers using (customer_id)
            where identifier_type = 'email' and not is_supernode and orders_lifetime >= 2
            group by all order by customer_id limit 1"""
        ).fetchone()
    proc = crm(reference, "forget", "--email", email, "--request-id", REQUEST)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def killed_here(*args: object) -> None:
        raise KeyboardInterrupt("killed midway")

    for name, value in crm_env(killed).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(erasure_module, "_warehouse_tables_with_customer_id", killed_here)
    with pytest.raises(KeyboardInterrupt):
        erasure_module.forget(Settings.from_env(), email=email, request_id=REQUEST)
    monkeypatch.undo()
    proc = crm(killed, "forget", "--email", email, "--request-id", REQUEST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing matched" not in proc.stdout

    def audit(home: Path) -> list[tuple]:
        with _warehouse(home) as con:
            return con.execute(
                "select identifier_kind, customers, identifiers, raw_rows_removed, "
                "quarantine_rows_removed, warehouse_rows_removed, details "
                "from restricted.privacy.erasure_requests"
            ).fetchall()

    assert audit(killed) == audit(reference)
    assert audit(killed)[0][1:4] >= (1, 1, 1)
    with _warehouse(killed) as con:
        assert con.execute(
            "select count(*) from marts.fct_orders where customer_id = ?", [customer_id]
        ).fetchone() == (0,)
