"""The dbt project's nightly runs on a copy of the tiny build (tests/support/dbt_tiny.py):
merges and splits of customers rekey their rows, late orders and maturing months are
recomputed, each like a `--full-refresh` build row for row.

The tests share the xdist group
"dbt" and the session fixture `dbt_tiny_build` (tests/conftest.py): one build per worker.
"""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from support.dbt_tiny import (
    C1,
    C2,
    build_vars,
    copy_stores,
    insert,
    kpi,
    quadrant_rows,
    query,
    run_dbt,
    ts,
)
from support.pseudonyms import expected_customer_id

pytestmark = pytest.mark.xdist_group("dbt_nightly")


@pytest.fixture(scope="module")
def built(dbt_tiny_build: dict) -> dict:
    """The tiny dataset built by the two halves of `dbt build` (once per session and worker)."""
    return dbt_tiny_build


FACT_CUSTOMERS = {
    "fct_orders": "order_id",
    "fct_order_lines": "order_line_id",
    "fct_service_tickets": "ticket_id",
    "fct_social_interactions": "interaction_id",
}


MONTHLY_TABLES = ("intermediate.int_kpi_social_monthly", "intermediate.int_customer_months")
KPI_MONTHS_FROM = "2026-10-01"
IDENTITY_TABLES = (
    "intermediate.int_identity_records",
    "intermediate.int_identity_edges",
    "intermediate.int_identity_components_resolved",
    "intermediate.int_customers_resolved",
    "intermediate.int_source_records_resolved",
    # restricted store: attached as `restricted` (nightly) and `full_restricted`
    "restricted.identity.int_identity_identifiers",
    "restricted.golden.int_customer_profiles_merged",
)


#: The facts built delete+insert, with the unique_key their builds log (macro keep_written_keys).
WRITTEN_KEYS = {
    "fct_orders": "order_id",
    "fct_order_lines": "order_id",
    "fct_service_tickets": "ticket_id",
    "fct_social_interactions": "interaction_id",
}


def _assert_written_keys_cover_the_changes(before_db: Path, nightly_db: Path, full_db: Path):
    """What the publication relies on: every fact row the nightly build added, removed or
    changed (EXCEPT ALL both ways against the build before) has its key in the log of the
    keys the build wrote, a build after the one before; a first build and a --full-refresh
    log a single whole marker, later than any build before."""
    con = duckdb.connect(str(nightly_db), read_only=True)
    try:
        con.execute(f"attach '{before_db}' as before (read_only)")
        con.execute(f"attach '{full_db}' as full_build (read_only)")
        counts = {}
        for fact, key in WRITTEN_KEYS.items():
            log = f"main.{fact}__written_keys"
            before = con.execute(f"select build, whole from before.{log}").fetchall()
            assert len(before) == 1 and before[0][1], (fact, before)  # the first build
            through = before[0][0]
            full = con.execute(f"select build, whole from full_build.{log}").fetchall()
            assert len(full) == 1 and full[0][1] and full[0][0] > through, (fact, full)
            builds = con.execute(
                f"select build, count(*) filter (where whole), count(*) from {log} "
                "where build > ? group by build",
                [through],
            ).fetchall()
            # one build at most (one that wrote no key leaves none), not whole
            assert len(builds) <= 1 and not any(whole for _, whole, _ in builds), (fact, builds)
            logged = {k for (k,) in con.execute(f"select {key} from {log} where build > ?",
                                                [through]).fetchall()}  # fmt: skip
            changed = {k for (k,) in con.execute(
                f"select {key} from (from marts.{fact} except all from before.marts.{fact}) "
                f"union select {key} from (from before.marts.{fact} except all from marts.{fact})"
            ).fetchall()}  # fmt: skip
            assert changed <= logged, (fact, changed - logged)
            (rows,) = con.execute(f"select count(distinct {key}) from marts.{fact}").fetchone()
            counts[fact] = (len(changed), len(logged), rows)
        # rows changed in two facts at least; fewer keys logged than the facts hold
        assert sum(bool(c) for c, _, _ in counts.values()) >= 2, counts
        assert sum(n for _, n, _ in counts.values()) < sum(r for _, _, r in counts.values()), counts
    finally:
        con.close()


def _assert_same_identity_and_facts(nightly_db: Path, full_db: Path) -> None:
    """The nightly build's identity tables and facts hold exactly the rows of the
    --full-refresh build (EXCEPT ALL both ways)."""
    con = duckdb.connect(str(nightly_db))
    try:
        con.execute(f"attach '{full_db}' as full_build (read_only)")
        for name, db in (("restricted", nightly_db), ("full_restricted", full_db)):
            con.execute(
                f"attach '{db.with_name(db.stem + '_restricted.duckdb')}' as {name} (read_only)"
            )
        pairs = [
            (t, t.replace("restricted.", "full_restricted.", 1) if t.startswith("restricted.")
             else f"full_build.{t}")
            for t in IDENTITY_TABLES
        ]  # fmt: skip
        pairs += [(f"marts.{t}", f"full_build.marts.{t}") for t in FACT_CUSTOMERS]
        # the months a night recomputes (from the month of D - 7 days: October) of the
        # models incremental by month; older months stay as they were computed
        pairs += [
            (f"(from {t} where month >= '{KPI_MONTHS_FROM}')",
             f"(from full_build.{t} where month >= '{KPI_MONTHS_FROM}')")
            for t in MONTHLY_TABLES
        ]  # fmt: skip
        for nightly, full in pairs:
            assert con.execute(f"select count(*) from {nightly}").fetchone()[0] > 0, nightly
            for left, right in ((nightly, full), (full, nightly)):
                diff = con.execute(
                    f"select * from {left} except all select * from {right}"
                ).fetchall()
                assert diff == [], (left, diff)
    finally:
        con.close()


def _walk_in_orders(prefix: str, ordered_at: str, delivered: date, **identifier: str) -> list:
    """21 walk-in orders (one more than supernode_threshold) typed with one identifier."""
    return [
        dict(order_id=f"{prefix}{k:02d}", line_no=1, source_system="crm", status="completed",
             channel="offline_store", product_id="P", quantity=1, unit_price=10,
             discount_amount=0, refunded_amount=0, ordered_at=ts(ordered_at),
             _delivery_date=delivered, _source_file=f"orders/{delivered.isoformat()}.csv",
             **identifier)
        for k in range(21)
    ]  # fmt: skip


def _recomputed_records(output: str) -> tuple[int, int, int]:
    """(changed source keys, recomputed records, of all records with identifiers) from the
    identifiers model's log line."""
    found = re.search(
        r"identity identifiers: (\d+) source keys changed \([^)]*\), recomputing (\d+) of (\d+) "
        r"records",
        output,
    )
    assert found, output[-3000:]
    return int(found[1]), int(found[2]), int(found[3])


def _recomputed_nodes(output: str) -> tuple[int, int, int]:
    """(recomputed, of all nodes, no longer nodes) from the components model's log line."""
    found = re.search(
        r"identity components: recomputing (\d+) of (\d+) nodes, (\d+) no longer nodes", output
    )
    assert found, output[-3000:]
    return int(found[1]), int(found[2]), int(found[3])


def test_a_merge_of_two_customers_rekeys_their_old_rows_in_a_nightly_run(built, tmp_path):
    """Night 11-01 delivers crm:A9, who carries P1's e-mail and P2's phone: P1 and P2
    become one customer, keyed by A9's record (the smallest of the component). Their rows
    dated before the nightly window (orders of September and October 5-21, tickets of
    October 6 and 15, the WeChat interactions of October 10-12) are recomputed through the
    customer-change log (int_source_records_logged) and point at the new customer_id, like
    a --full-refresh build of a copy; nobody else's rows are touched."""
    nightly = tmp_path / "nightly"
    full = tmp_path / "full"
    nightly.mkdir()
    full.mkdir()
    merged = expected_customer_id("account:crm:A9")
    for work in (nightly, full):
        db = copy_stores(built, work)
        con = duckdb.connect(str(db))
        insert(con, "customers", [dict(source_system="crm", customer_ref="A9",
                                       updated_at=ts("2026-10-31 20:00"), email="a@x.com",
                                       phone="13900000002", _delivery_date=date(2026, 11, 1),
                                       _source_file="customers/2026-11-01.csv")])  # fmt: skip
        con.close()
    before = dict(query(built["db"], "select order_id, customer_id from marts.fct_orders"))
    assert before["crm:O2"] == C1 and before["crm:O3"] == C2  # P1's and P2's

    nightly_db = nightly / "warehouse.duckdb"
    night = ""
    for half in ("--exclude", "--select"):
        night += run_dbt(
            ["build", half, "source:clv+", "--vars", build_vars("2026-11-01")], nightly, nightly_db
        ).stdout
    full_db = full / "warehouse.duckdb"
    run_dbt(["build", "--full-refresh", "--vars", build_vars("2026-11-01")], full, full_db)
    # every component is recomputed here: P1's (accounts C1 and M1, ticket T1, WeChat o1)
    # and P2's (account C2, orders O3 and O4, ticket T3) hold records at either end of the
    # new edges, A9 and C3 (first seen on 11-01 in Shanghai) are new nodes: 10 of 10 (the
    # walk-in orders share a super-node phone and are no nodes; the split test below
    # leaves components alone)
    assert _recomputed_nodes(night) == (10, 10, 0)
    # the tiny dataset has no load log (no newest load kept): every staged row counts as
    # new, so every source key changed and every record with identifiers is recomputed
    con = duckdb.connect()
    con.execute(f"attach '{nightly_db.with_name('warehouse_restricted.duckdb')}' as store")
    keys = con.execute("""
        select (select count(distinct customer_key) from store.staging.stg_raw__customers)
             + (select count(distinct order_id) from store.staging.stg_raw__orders)
             + (select count(distinct ticket_id) from store.staging.stg_raw__service_events)
             + (select count(distinct social_account_key)
                from store.staging.stg_raw__social_interactions),
               (select count(distinct record_id) from store.identity.int_identity_identifiers)
        """).fetchone()  # fmt: skip
    con.close()
    changed, recomputed, _ = _recomputed_records(night)
    assert (changed, recomputed) == keys
    _assert_same_identity_and_facts(nightly_db, full_db)
    _assert_written_keys_cover_the_changes(built["db"], nightly_db, full_db)

    # the night logged exactly the records whose customer changed (P1's and P2's) and, as
    # new records (not changes), those new as of 11-01 (A9, C3 updated on 11-01, order O8
    # delivered and order O9 placed on 11-01)
    changed = query(nightly_db, """
        select entity, record_key, customer_id, changed_at > first_logged_at as is_change
        from intermediate.int_source_records_logged
        where changed_at > (select min(built_at) from main.crm_builds_warehouse
                            where model = 'fct_orders' and as_of_date = date '2026-10-31')
        order by entity, record_key""")  # fmt: skip
    assert changed == [
        ("customers", "crm:A9", merged, False),
        ("customers", "crm:C1", merged, True),
        ("customers", "crm:C2", merged, True),
        ("customers", "crm:C3", expected_customer_id("account:crm:C3"), False),
        ("customers", "mall:M1", merged, True),
        ("orders", "crm:O1", merged, True),
        ("orders", "crm:O2", merged, True),
        ("orders", "crm:O3", merged, True),
        ("orders", "crm:O4", merged, True),
        ("orders", "crm:O8", merged, False),
        ("orders", "crm:O9", merged, False),
        ("service_events", "T1", merged, True),
        ("service_events", "T3", merged, True),
        ("social_interactions", "wechat:o1", merged, True),
    ]
    after = dict(query(nightly_db, "select order_id, customer_id from marts.fct_orders"))
    assert {k for k, v in after.items() if v == merged} == {
        "crm:O1", "crm:O2", "crm:O3", "crm:O4", "crm:O8", "crm:O9"}  # fmt: skip
    assert {k: v for k, v in after.items() if v != merged} == {
        k: v for k, v in before.items() if v not in (C1, C2)}  # fmt: skip
    assert query(nightly_db, "select distinct customer_id from marts.fct_social_interactions") == [
        (merged,)
    ]
    con = duckdb.connect(str(nightly_db))
    try:
        con.execute(f"attach '{full_db}' as full_build (read_only)")
        for table, key in FACT_CUSTOMERS.items():
            rows = con.execute(f"select count(*) from marts.{table}").fetchone()[0]
            assert rows > 0
            for left, right in (("marts", "full_build.marts"), ("full_build.marts", "marts")):
                diff = con.execute(
                    f"select {key}, customer_id from {left}.{table} "
                    f"except all select {key}, customer_id from {right}.{table}"
                ).fetchall()
                assert diff == [], (table, left, diff)
            orphans = con.execute(
                f"select count(*) from marts.{table} where customer_id is not null and customer_id "
                "not in (select customer_id from marts.dim_customers)"
            ).fetchone()[0]
            assert orphans == 0, table
    finally:
        con.close()


@pytest.mark.parametrize("build_kept", [True, False], ids=["build-kept", "no-build-kept"])
def test_a_phone_turning_into_a_super_node_splits_a_customer_in_a_nightly_run(
    built, tmp_path, build_kept
):
    """Night 11-01 delivers 21 walk-in orders typed with P2's phone (first seen in
    November: more than supernode_threshold = 20 in one month), so the phone links nothing
    any more: the orders O3, O4 and the ticket T3, which only P2's phone tied to P2's
    account, stop being identity nodes (no customer), the 21 orders never become nodes, and
    the nightly build equals a --full-refresh build of a copy. Also without the record of
    the components' last build (and so of the edges build it read): every component is
    computed and the records that are no nodes any more are still deleted."""
    nightly = tmp_path / "nightly"
    full = tmp_path / "full"
    walk_ins = _walk_in_orders(
        "X", "2026-10-31 18:00", date(2026, 11, 1), buyer_phone="13900000002"
    )
    for work in (nightly, full):
        work.mkdir()
        con = duckdb.connect(str(copy_stores(built, work)))
        insert(con, "orders", walk_ins)
        con.close()
    before = dict(query(built["db"], "select record_id, customer_id from "
                                     "intermediate.int_identity_components_resolved"))  # fmt: skip
    assert before["order:crm:O3"] == before["ticket:T3"] == C2

    nightly_db = nightly / "warehouse.duckdb"
    if not build_kept:
        con = duckdb.connect(str(nightly_db))
        con.execute("drop table intermediate.int_identity_components_resolved__last_build")
        con.close()
    night = run_dbt(
        ["build", "--exclude", "source:clv+", "--vars", build_vars("2026-11-01")],
        nightly,
        nightly_db,
    ).stdout
    full_db = full / "warehouse.duckdb"
    run_dbt(
        ["build", "--exclude", "source:clv+", "--full-refresh", "--vars", build_vars("2026-11-01")],
        full,
        full_db,
    )
    # P2's component (C2, O3, O4, T3) is recomputed: what is left of it, account C2, and
    # the new node C3 (first seen on 11-01 in Shanghai); P1's four records are left alone
    if build_kept:
        recomputed, nodes, removed = _recomputed_nodes(night)
        assert (recomputed, nodes, removed) == (2, 6, 3)
    else:
        assert "identity components: every component computed (no earlier build kept)" in night
        nodes = 6
    after = dict(query(nightly_db, "select record_id, customer_id from "
                                   "intermediate.int_identity_components_resolved"))  # fmt: skip
    assert {"order:crm:O3", "order:crm:O4", "ticket:T3"}.isdisjoint(after)
    assert not any(r.startswith("order:crm:X") for r in after)
    assert after["account:crm:C2"] == C2
    assert {r: c for r, c in after.items() if r != "account:crm:C3"} == {
        r: c for r, c in before.items() if r not in ("order:crm:O3", "order:crm:O4", "ticket:T3")
    }
    assert nodes == len(after)
    _assert_same_identity_and_facts(nightly_db, full_db)
    _assert_written_keys_cover_the_changes(built["db"], nightly_db, full_db)


def test_two_accounts_split_when_the_e_mail_they_share_turns_into_a_super_node(built, tmp_path):
    """Night 11-01 delivers accounts B7 and B8 with one e-mail: one customer. Night 11-02
    delivers 21 walk-in orders typed with that e-mail (a super-node from then on): B7 and
    B8 are two customers again. Both stay identity nodes, so only the edge that
    disappeared tells the nightly build to recompute their component; it equals a
    --full-refresh build of a copy."""
    work = tmp_path / "nightly"
    work.mkdir()
    db = copy_stores(built, work)
    accounts = [
        dict(source_system="crm", customer_ref=ref, updated_at=ts("2026-10-31 10:00"),
             email="shared@x.com", _delivery_date=date(2026, 11, 1),
             _source_file="customers/2026-11-01.csv")
        for ref in ("B7", "B8")
    ]  # fmt: skip
    con = duckdb.connect(str(db))
    insert(con, "customers", accounts)
    con.close()
    run_dbt(["build", "--exclude", "source:clv+", "--vars", build_vars("2026-11-01")], work, db)
    first = dict(query(db, "select record_id, customer_id from "
                           "intermediate.int_identity_components_resolved"))  # fmt: skip
    assert first["account:crm:B7"] == first["account:crm:B8"]

    con = duckdb.connect(str(db))
    insert(con, "orders", _walk_in_orders("Y", "2026-11-01 10:00", date(2026, 11, 2),
                                          buyer_email="shared@x.com"))  # fmt: skip
    con.close()
    full = tmp_path / "full"
    full.mkdir()
    full_db = copy_stores({"db": db}, full)
    night = run_dbt(
        ["build", "--exclude", "source:clv+", "--vars", build_vars("2026-11-02")], work, db
    ).stdout
    run_dbt(
        ["build", "--exclude", "source:clv+", "--full-refresh", "--vars", build_vars("2026-11-02")],
        full,
        full_db,
    )
    assert _recomputed_nodes(night) == (2, 11, 0)  # B7 and B8 only, of 11 nodes
    after = dict(query(db, "select record_id, customer_id from "
                           "intermediate.int_identity_components_resolved"))  # fmt: skip
    assert after["account:crm:B7"] == expected_customer_id("account:crm:B7")
    assert after["account:crm:B8"] == expected_customer_id("account:crm:B8")
    _assert_same_identity_and_facts(db, full_db)


def test_nights_recompute_the_social_kpis_of_their_months_like_a_full_refresh(built, tmp_path):
    """int_kpi_social_monthly is incremental by month. Night 11-01 delivers an inbound
    WeChat message of October 30: the night recomputes October (the month of D - 7 days)
    from all of its interactions, not only those after its cutoff. Night 11-02 delivers
    November's only interaction; night 11-03 delivers it again, dated October 31: November
    has no interaction left, and its rows of night 11-02 are gone. After each night the
    months from October equal those of a --full-refresh build of a copy."""
    social = dict(platform="wechat", account_id="o1", unionid="U1", direction="inbound",
                  interaction_type="message")  # fmt: skip
    nights = {
        "2026-11-01": dict(interaction_id="i9", occurred_at=ts("2026-10-30 02:00")),
        "2026-11-02": dict(interaction_id="i10", occurred_at=ts("2026-11-01 10:00")),
        "2026-11-03": dict(interaction_id="i10", occurred_at=ts("2026-10-31 02:00")),
    }
    nightly, full = tmp_path / "nightly", tmp_path / "full"
    nightly.mkdir()
    nightly_db = copy_stores(built, nightly)
    rows = "select month, kpi, numerator, denominator from intermediate.int_kpi_social_monthly "
    from_october = rows + "where month >= '2026-10-01' order by month, kpi"
    for night, row in nights.items():
        delivered = date.fromisoformat(night)
        con = duckdb.connect(str(nightly_db))
        insert(con, "social_interactions", [
            {**social, **row, "_delivery_date": delivered,
             "_loaded_at": datetime.combine(delivered, datetime.min.time()),
             "_source_file": f"social_interactions/{night}.csv"},
        ])  # fmt: skip
        con.close()
        run_dbt(["build", "--exclude", "source:clv+", "--vars", build_vars(night)],
                nightly, nightly_db)  # fmt: skip
        if full.exists():
            shutil.rmtree(full)
        full.mkdir()
        full_db = copy_stores({"db": nightly_db}, full)
        run_dbt(
            ["build", "--exclude", "source:clv+", "--full-refresh", "--vars", build_vars(night)],
            full,
            full_db,
        )
        assert query(nightly_db, from_october) == query(full_db, from_october), night
        months = {str(m)[:7] for m, *_ in query(nightly_db, from_october)}
        if night == "2026-11-01":
            october = {
                kpi: (n, d)
                for m, kpi, n, d in query(nightly_db, from_october)
                if str(m).startswith("2026-10")
            }
            assert october["message_reply_rate"][1] == 2  # inbound messages i1, i9 (i3: a comment)
            assert october["social_engaged_customers"][0] == 1
        # November has rows only while i10 is dated in November
        assert ("2026-11" in months) == (night == "2026-11-02"), (night, months)
    _assert_same_identity_and_facts(nightly_db, full_db)


def test_nightly_run_absorbs_a_late_order_like_a_full_refresh(built, tmp_path):
    """A late order dated in September (older than the 7-day lookback), delivered on D: the
    nightly (incremental) run re-run for D picks it up, in fct_orders and in September's
    net revenue (+70, the order's amount); every month before October equals that of a
    --full-refresh, row for row."""
    db = copy_stores(built, tmp_path)
    before = {"2026-09": kpi(db, "2026-09", "net_revenue")}
    con = duckdb.connect(str(db))
    insert(con, "orders", [dict(order_id="L1", line_no=1, ordered_at=ts("2026-09-10 04:00"),
                                status="completed", source_system="crm", customer_ref="C2",
                                quantity=1, unit_price=70, _delivery_date=date(2026, 10, 31),
                                _source_file="orders/2026-10-31.csv")])  # fmt: skip
    con.close()
    run_dbt(["build", "--exclude", "source:clv+", "--vars", build_vars()], tmp_path, db)
    run_dbt(["build", "--select", "source:clv+", "--vars", build_vars()], tmp_path, db)
    assert kpi(db, "2026-09", "net_revenue") == (before["2026-09"] or 0) + 70
    assert query(db, "select count(*) from marts.fct_orders where order_id = 'crm:L1'") == [(1,)]
    assert query(db, "select count(*) from marts.fct_order_lines where order_id = 'crm:L1'") == [
        (1,)
    ]
    nightly = query(db, "select * from marts.fct_kpi_monthly where month < date '2026-10-01' "
                        "order by kpi_monthly_id")  # fmt: skip
    run_dbt(["build", "--full-refresh", "--vars", build_vars()], tmp_path, db)
    assert kpi(db, "2026-09", "net_revenue") == (before["2026-09"] or 0) + 70
    full = query(db, "select * from marts.fct_kpi_monthly where month < date '2026-10-01' "
                     "order by kpi_monthly_id")  # fmt: skip
    assert nightly == full
    assert {month for month, _ in quadrant_rows(db)} == {"2026-10"}  # the month of D only


def test_a_month_still_maturing_is_recomputed_every_night_until_complete(built, tmp_path):
    """demand_conversion_rate matures 30 days after the month (metrics.md "Maturity").
    Inquiry T9 of P1 (no later order), created 10-20 00:00 UTC, delivered on 11-01: its
    30 days end 11-19 00:00 UTC. An inquiry is decided only once its 30 days are over:
    T1's end 11-05 00:00 UTC, T3's (converted by O3 on 10-20) 11-14 00:00 UTC. Nights (no
    other delivery) 11-01 and 11-12 recompute October within the lookback. From night
    11-13 on, D - 7 days lies in November, yet October is still maturing, so it is
    recomputed too: on 11-19 (the end of D is 11-19 16:00 UTC) T3 and T9 are decided:
    October = T3 converted of T1, T3, T9 decided, 0 pending; on 11-30 (10-31 + 30 days)
    October is complete, and every row equals a --full-refresh. (Without the maturity in
    the recomputed months, October kept the pending T3 and T9 of night 11-13 and never
    turned complete.)"""
    db = copy_stores(built, tmp_path)
    con = duckdb.connect(str(db))
    insert(con, "service_events", [
        dict(ticket_id="T9", event_id="e90", event_at=ts("2026-10-20 00:00"),
             event_type="created", priority="P3", category="inquiry", channel="phone",
             phone="13800138000", _delivery_date=date(2026, 11, 1)),
    ])  # fmt: skip
    con.close()
    october = (
        "select numerator, denominator, pending, is_complete from marts.fct_kpi_monthly "
        "where month_label = '2026-10' and segment = 'all' and kpi = 'demand_conversion_rate'"
    )
    seen = {}
    for night in ("2026-11-01", "2026-11-12", "2026-11-13", "2026-11-19", "2026-11-30"):
        run_dbt(["run", "--vars", build_vars(night)], tmp_path, db)
        seen[night] = query(db, october)[0]
    assert seen == {
        # the end of 11-01 is 11-01 16:00 UTC: the windows of T1, T3 and T9 are open
        "2026-11-01": (0, 0, 3, False),
        "2026-11-12": (0, 1, 2, False),  # T1 decided, not converted; T3, T9 pending
        "2026-11-13": (0, 1, 2, False),  # T3's window ends 11-14 00:00 UTC
        "2026-11-19": (1, 3, 0, False),  # T3 converted, T9 decided
        "2026-11-30": (1, 3, 0, True),
    }, seen
    columns = (
        "kpi_monthly_id, is_complete, value, numerator, denominator, pending, is_small_base, "
        "has_enough_history, segment_as_of"
    )
    rows = (
        f"select {columns} from marts.fct_kpi_monthly where segment_type <> 'quadrant' order by 1"
    )
    nightly = query(db, rows)
    run_dbt(["run", "--full-refresh", "--vars", build_vars("2026-11-30")], tmp_path, db)
    assert nightly == query(db, rows)


def test_a_night_without_build_records_recomputes_every_row_and_month(built, tmp_path):
    """With no build recorded (the build record models dropped: an upgrade from the tables
    that kept them before, or records lost), a nightly build finds every staged row
    delivered since and every month restated: each fact rewrites all its keys and the
    models incremental by month all their months. Rows deleted beforehand (the oldest order,
    the first month of the customer months and of the KPIs) are back, every fact and month
    equals a --full-refresh build, and the records are written again."""
    nightly, full = tmp_path / "nightly", tmp_path / "full"
    for work in (nightly, full):
        work.mkdir()
        copy_stores(built, work)
    nightly_db, full_db = nightly / "warehouse.duckdb", full / "warehouse.duckdb"
    con = duckdb.connect(str(nightly_db))
    for record in ("crm_builds_warehouse", "crm_builds_customer_marts"):
        con.execute(f"drop table main.{record}")
    con.execute("delete from marts.fct_orders where order_id = "
                "(select min(order_id) from marts.fct_orders)")  # fmt: skip
    for table in ("intermediate.int_customer_months", "marts.fct_kpi_monthly"):
        (deleted,) = con.execute(
            f"delete from {table} where month = (select min(month) from {table})"
        ).fetchone()
        assert deleted > 0, table
    con.close()
    for half in (["--exclude", "source:clv+"], ["--select", "source:clv+"]):
        run_dbt(["build", *half, "--vars", build_vars("2026-11-01")], nightly, nightly_db)
    run_dbt(["build", "--full-refresh", "--vars", build_vars("2026-11-01")], full, full_db)
    for fact, key in WRITTEN_KEYS.items():
        written = query(nightly_db, f"""
            select count(distinct {key}) from main.{fact}__written_keys
            where build = (select max(build) from main.{fact}__written_keys)""")  # fmt: skip
        assert written == query(nightly_db, f"select count(distinct {key}) from marts.{fact}"), fact
    kpis = "select * exclude (computed_as_of_date) from {} where segment_type <> 'quadrant'"
    con = duckdb.connect(str(nightly_db), read_only=True)
    try:
        con.execute(f"attach '{full_db}' as full_build (read_only)")
        pairs = [(f"marts.{t}", f"full_build.marts.{t}") for t in FACT_CUSTOMERS]
        pairs += [(t, f"full_build.{t}") for t in MONTHLY_TABLES]
        pairs.append(
            (f"({kpis.format('marts.fct_kpi_monthly')})",
             f"({kpis.format('full_build.marts.fct_kpi_monthly')})")
        )  # fmt: skip
        for left, right in pairs:
            assert con.execute(f"select count(*) from {left}").fetchone()[0] > 0, left
            for a, b in ((left, right), (right, left)):
                diff = con.execute(f"select * from {a} except all select * from {b}").fetchall()
                assert diff == [], (a, diff)
        recorded = con.execute("""
            select model, as_of_date from main.crm_builds_warehouse
            union all select model, as_of_date from main.crm_builds_customer_marts""").fetchall()
    finally:
        con.close()
    assert len(recorded) == 10 and {d for _, d in recorded} == {date(2026, 11, 1)}, recorded
