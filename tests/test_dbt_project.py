"""The dbt project (dbt_project/): conventions, a build on a tiny hand-made raw dataset
with hand-computed numbers, and the SQL lint.

(a) `dbt parse` and the manifest: names per folder, descriptions, contracts, data types,
    primary-key tests (house style, ../shared/style.md).
(b) `dbt build` in its two halves (`--exclude source:clv+`, then `--select source:clv+`)
    on a temporary DuckDB file holding the raw tables below; every expected number in
    the asserts was computed by hand from these rows (see the comments).
(c) `sqlfluff lint` of the models and the singular tests.

Every dbt call writes its target/ and logs/ into a temporary folder, so parallel pytest
workers never collide; the tests share one xdist group.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from support.pseudonyms import expected_customer_id

from pipelines.ingest.schema import ensure_raw_schema

REPO = Path(__file__).resolve().parents[1]
DBT_DIR = REPO / "dbt_project"
AS_OF = "2026-10-31"

pytestmark = pytest.mark.xdist_group("dbt")


# --------------------------------------------------------------------------- helpers
def _bin(name: str) -> str:
    """The executable next to the running interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def run_dbt(
    args: list[str], work: Path, db: Path, check: bool = True
) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        CRM_WAREHOUSE_DB=str(db),
        CRM_RESTRICTED_DB=str(db.with_name(db.stem + "_restricted.duckdb")),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    cmd = [
        _bin("dbt"),
        *args,
        "--profiles-dir",
        str(DBT_DIR),
        "--project-dir",
        str(DBT_DIR),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
    ]
    proc = subprocess.run(cmd, cwd=DBT_DIR, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
        )
    return proc


def build_vars(as_of: str = AS_OF) -> str:
    return json.dumps({"as_of_date": as_of})


LINEAGE = ("_source_name", "_source_file", "_source_line", "_delivery_date", "_loaded_at",
           "_mapping_version", "_file_sha256")  # fmt: skip


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    """Insert rows (canonical fields by name) with default lineage columns."""
    for i, row in enumerate(rows):
        full = {
            "_source_name": table,
            "_source_file": f"{table}/file.csv",
            "_source_line": i + 2,
            "_loaded_at": datetime(2026, 11, 1, 0, 0),
            "_mapping_version": "1",
            "_file_sha256": "x",
            **row,
        }
        full.setdefault("_delivery_date", (full.get("updated_at") or full.get("ordered_at")
                                            or full.get("event_at") or full.get("occurred_at")).date())  # fmt: skip
        cols = list(full)
        con.execute(
            f"insert into raw.{table} ({', '.join(cols)}) values ({', '.join('?' for _ in cols)})",
            [full[c] for c in cols],
        )


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------- the tiny dataset
# D = 2026-10-31 (Asia/Shanghai). Persons:
#   P1: CRM member crm:C1 (full profile), mall member mall:M1 (same phone in another
#       format, unionid U1), WeChat account o1 (unionid U1), ticket T1 (phone), orders
#       crm:O1 (2 lines, 240 CNY, Oct 5) and crm:O2 (8,000 USD = 56,800 CNY, Sep 3).
#       The chain C1 -phone- M1 -unionid- o1 links transitively.
#   P2: CRM member crm:C2 (name + phone), guest order crm:O3 with the same phone (300 CNY,
#       Oct 20, delivered twice), cancelled guest order crm:O4, inquiry ticket T3 (phone).
#   Nobody: 21 walk-in orders typed with the front-desk phone in October (21 > 20 records
#       in one month: a super-node, no customer; 100 CNY each), ticket T2 without any
#       identifier.
#   Not as of D: crm:C3 updated 2026-11-01 00:30 Shanghai; order crm:O9 placed
#       2026-11-01 01:00 Shanghai; order crm:O8 dated Oct 30 but delivered Nov 1.
def create_raw(db: Path) -> None:
    con = duckdb.connect(str(db))
    ensure_raw_schema(con)
    insert(con, "customers", [
        dict(source_system="crm", customer_ref="C1", updated_at=ts("2026-01-10 02:00"),
             name="张三", gender="F", birth_date=date(1990, 5, 1), phone="138 0013 8000",
             email=" A@X.com ", city="上海", province="上海", member_level="gold",
             marketing_consent=True),
        dict(source_system="mall", customer_ref="M1", updated_at=ts("2026-03-01 02:00"),
             phone="+86-138-0013-8000", unionid="U1", gender="female",
             marketing_consent=False),
        dict(source_system="crm", customer_ref="C2", updated_at=ts("2026-02-01 02:00"),
             name="李四", phone="13900000002", marketing_consent=True),
        dict(source_system="crm", customer_ref="C3", updated_at=ts("2026-10-31 16:30"),
             name="王五", phone="13700000003"),
    ])  # fmt: skip
    line = dict(status="completed", channel="online_store", source_system="crm",
                product_id="P", quantity=1, discount_amount=0, refunded_amount=0)  # fmt: skip
    orders = [
        {**line, "order_id": "O1", "line_no": 1, "ordered_at": ts("2026-10-05 04:00"),
         "customer_ref": "C1", "quantity": 2, "unit_price": 100, "discount_amount": 10},
        {**line, "order_id": "O1", "line_no": 2, "ordered_at": ts("2026-10-05 04:00"),
         "customer_ref": "C1", "unit_price": 50},
        {**line, "order_id": "O2", "line_no": 1, "ordered_at": ts("2026-09-03 04:00"),
         "customer_ref": "C1", "unit_price": 8000, "currency": "USD"},
        {**line, "order_id": "O3", "line_no": 1, "ordered_at": ts("2026-10-20 04:00"),
         "buyer_phone": "+86 139 0000 0002", "unit_price": 300},
        {**line, "order_id": "O3", "line_no": 1, "ordered_at": ts("2026-10-20 04:00"),
         "buyer_phone": "+86 139 0000 0002", "unit_price": 300,
         "_source_file": "orders/resend.csv", "_delivery_date": date(2026, 10, 22)},
        {**line, "order_id": "O4", "line_no": 1, "ordered_at": ts("2026-10-21 04:00"),
         "buyer_phone": "13900000002", "unit_price": 500, "status": "cancelled"},
        {**line, "order_id": "O9", "line_no": 1, "ordered_at": ts("2026-10-31 17:00"),
         "customer_ref": "C2", "unit_price": 999},
        {**line, "order_id": "O8", "line_no": 1, "ordered_at": ts("2026-10-30 04:00"),
         "customer_ref": "C2", "unit_price": 999, "_delivery_date": date(2026, 11, 1)},
    ] + [
        {**line, "order_id": f"W{k:02d}", "line_no": 1, "channel": "offline_store",
         "ordered_at": ts(f"2026-10-{k:02d} 03:00"), "buyer_phone": "021-55550000",
         "unit_price": 100}
        for k in range(1, 22)
    ]  # fmt: skip
    insert(con, "orders", orders)
    insert(con, "service_events", [
        dict(ticket_id="T1", event_id="e1", event_at=ts("2026-10-06 00:00"), event_type="created",
             priority="P2", category="inquiry", channel="phone", phone="13800138000"),
        dict(ticket_id="T1", event_id="e2", event_at=ts("2026-10-06 00:30"), event_type="agent_reply"),
        dict(ticket_id="T1", event_id="e3", event_at=ts("2026-10-06 10:00"), event_type="resolved"),
        dict(ticket_id="T1", event_id="e4", event_at=ts("2026-10-07 10:00"), event_type="csat",
             csat_score=5),
        dict(ticket_id="T2", event_id="e5", event_at=ts("2026-10-20 00:00"), event_type="created",
             priority="urgent", category="complaint", channel="phone"),
        dict(ticket_id="T2", event_id="e6", event_at=ts("2026-10-20 00:20"), event_type="agent_reply"),
        dict(ticket_id="T2", event_id="e7", event_at=ts("2026-10-21 00:00"), event_type="csat",
             csat_score=2),
        dict(ticket_id="T3", event_id="e8", event_at=ts("2026-10-15 00:00"), event_type="created",
             priority="low", category="inquiry", channel="wechat", phone="139-0000-0002"),
    ])  # fmt: skip
    social = dict(platform="wechat", account_id="o1", unionid="U1")
    insert(con, "social_interactions", [
        {**social, "interaction_id": "i1", "occurred_at": ts("2026-10-10 02:00"),
         "direction": "inbound", "interaction_type": "message", "content": "hi"},
        {**social, "interaction_id": "i2", "occurred_at": ts("2026-10-10 05:00"),
         "direction": "outbound", "interaction_type": "message"},
        {**social, "interaction_id": "i3", "occurred_at": ts("2026-10-12 05:00"),
         "direction": "inbound", "interaction_type": "comment"},
    ])  # fmt: skip
    con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The tiny dataset built by the two halves of `dbt build`."""
    work = tmp_path_factory.mktemp("dbt_tiny")
    db = work / "warehouse.duckdb"
    create_raw(db)
    first = run_dbt(["build", "--exclude", "source:clv+", "--vars", build_vars()], work, db)
    second = run_dbt(["build", "--select", "source:clv+", "--vars", build_vars()], work, db)
    return {"work": work, "db": db, "logs": first.stdout + second.stdout}


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def kpi(db: Path, month: str, kpi_name: str, segment: str = "all") -> float | None:
    rows = query(db, f"select value from marts.fct_kpi_monthly where month_label = '{month}' "
                     f"and segment = '{segment}' and kpi = '{kpi_name}'")  # fmt: skip
    assert len(rows) == 1, (month, segment, kpi_name, rows)
    return rows[0][0]


C1 = expected_customer_id("account:crm:C1")  # smallest record of P1's component
C2 = expected_customer_id("account:crm:C2")


# --------------------------------------------------------------------------- (a) conventions
@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("dbt_parse")
    run_dbt(["parse"], work, work / "unused.duckdb")
    return json.loads((work / "target" / "manifest.json").read_text(encoding="utf-8"))


PREFIXES = {"staging": ("stg_",), "intermediate": ("int_",), "marts": ("dim_", "fct_", "rpt_")}


def _models(manifest: dict) -> list[dict]:
    return [n for n in manifest["nodes"].values()
            if n["resource_type"] == "model" and n["package_name"] == "crm_warehouse"]  # fmt: skip


def test_model_names_follow_their_folder(manifest):
    for node in _models(manifest):
        layer = Path(node["original_file_path"]).parts[1]
        assert node["name"].startswith(PREFIXES[layer]), node["original_file_path"]
        if layer == "staging":
            source = Path(node["original_file_path"]).parts[2]
            assert node["name"].startswith(f"stg_{source}__"), node["name"]


def test_one_models_yml_per_folder(manifest):
    folders = {Path(n["original_file_path"]).parent for n in _models(manifest)}
    for folder in folders:
        ymls = sorted(p.name for p in (DBT_DIR / folder).glob("_*__models.yml"))
        assert ymls == [f"_{folder.name}__models.yml"], (folder, ymls)
        if folder.parts[1] == "staging":
            assert (DBT_DIR / folder / f"_{folder.name}__sources.yml").exists(), folder


def test_every_model_is_described_and_marts_are_contracted(manifest):
    for node in _models(manifest):
        assert node["description"].strip(), node["name"]
        if node["original_file_path"].startswith("models/marts/"):
            assert node["config"]["contract"]["enforced"], node["name"]
            assert node["config"]["materialized"] in ("table", "incremental"), node["name"]
            assert node["columns"], node["name"]
            for col in node["columns"].values():
                assert col.get("data_type"), (node["name"], col["name"])
                assert col.get("description", "").strip(), (node["name"], col["name"])


def test_every_model_has_unique_and_not_null_on_its_primary_key(manifest):
    tests: dict[str, dict[str, set[str]]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or "test_metadata" not in node:
            continue
        column = node.get("column_name") or node["test_metadata"]["kwargs"].get("column_name")
        for parent in node["depends_on"]["nodes"]:
            tests.setdefault(parent, {}).setdefault(column, set()).add(
                node["test_metadata"]["name"]
            )
    for node in _models(manifest):
        by_column = tests.get(node["unique_id"], {})
        keys = [c for c, names in by_column.items() if c and {"unique", "not_null"} <= names]
        assert keys, f"{node['name']}: no column with both unique and not_null"


def test_non_trivial_logic_has_unit_tests(manifest):
    tested = {n["model"] for n in manifest.get("unit_tests", {}).values()}
    for model in ("int_customers_rfm_scored", "int_customers_order_summarised",
                  "int_customer_months", "int_kpi_customers_monthly",
                  "int_service_tickets_sla_clocked", "int_identity_components_resolved",
                  "int_identity_identifiers", "int_identity_edges", "rpt_kpi_review",
                  "stg_raw__customers", "int_customers_quadrant_assigned",
                  "fct_kpi_monthly"):  # fmt: skip
        assert model in tested, model


def test_sources_have_freshness(manifest):
    raw = [s for s in manifest["sources"].values() if s["source_name"] == "raw"]
    data_tables = [
        s
        for s in raw
        if s["name"] in ("customers", "orders", "service_events", "social_interactions")
    ]
    assert len(data_tables) == 4
    for source in data_tables:
        assert source["loaded_at_field"] == "_loaded_at"
        assert source["freshness"]["error_after"]["count"], source["name"]


def test_rfm_seed_is_the_map_of_metrics_md():
    seed = (DBT_DIR / "seeds" / "rfm_segment_map.csv").read_text(encoding="utf-8")
    fixture = (DBT_DIR / "tests" / "fixtures" / "rfm_segment_map_fixture.csv").read_text(
        encoding="utf-8"
    )
    assert seed == fixture


def test_no_packages_and_no_extensions():
    assert not (DBT_DIR / "packages.yml").exists()
    assert not (DBT_DIR / "dependencies.yml").exists()
    profiles = (DBT_DIR / "profiles.yml").read_text(encoding="utf-8")
    assert "extensions" not in profiles


# --------------------------------------------------------------------------- (b) the build
def test_both_halves_build_and_run_every_test(built):
    assert "Completed successfully" in built["logs"]
    assert "unit test" in built["logs"]


def test_customers_are_resolved_transitively_and_supernodes_link_nothing(built):
    db = built["db"]
    rows = dict(
        query(
            db,
            """select record_key, customer_id from intermediate.int_source_records_resolved
                             where entity in ('customers', 'social_interactions', 'service_events')""",
        )
    )
    assert rows["crm:C1"] == rows["mall:M1"] == rows["wechat:o1"] == rows["T1"] == C1
    assert rows["crm:C2"] == rows["T3"] == C2
    assert rows["T2"] is None
    assert "crm:C3" not in rows  # updated after D in the business timezone
    orders = dict(query(db, "select order_id, customer_id from marts.fct_orders"))
    assert orders["crm:O1"] == orders["crm:O2"] == C1
    assert orders["crm:O3"] == orders["crm:O4"] == C2
    assert all(orders[f"crm:W{k:02d}"] is None for k in range(1, 22))  # front-desk phone
    assert "crm:O9" not in orders and "crm:O8" not in orders  # not as of D
    assert query(db, "select count(*) from marts.dim_customers") == [(2,)]


def test_orders_revenue_in_reporting_currency(built):
    db = built["db"]
    revenue = dict(query(db, "select order_id, net_revenue from marts.fct_orders"))
    assert float(revenue["crm:O1"]) == 240.0  # 2 x 100 - 10 + 1 x 50
    assert float(revenue["crm:O2"]) == 56800.0  # 8,000 USD x 7.10
    assert float(revenue["crm:O3"]) == 300.0  # delivered twice, counted once
    assert query(db, "select count(*) from marts.fct_order_lines where order_id = 'crm:O3'") == [
        (1,)
    ]
    assert query(db, "select is_cancelled from marts.fct_orders where order_id = 'crm:O4'") == [
        (True,)
    ]


def test_business_time_beside_utc(built):
    db = built["db"]
    # O1 placed 2026-10-05 04:00 UTC = 12:00 in Shanghai (UTC+8, no daylight saving)
    assert query(
        db, "select ordered_at, ordered_at_local from marts.fct_orders where order_id = 'crm:O1'"
    ) == [(datetime(2026, 10, 5, 4), datetime(2026, 10, 5, 12))]
    assert query(
        db, "select distinct ordered_at_local from marts.fct_order_lines where order_id = 'crm:O1'"
    ) == [(datetime(2026, 10, 5, 12),)]
    # every published timestamp has its business time, 8 hours later, NULL where it is NULL
    for table, columns in {
        "fct_orders": ["ordered_at"],
        "fct_order_lines": ["ordered_at"],
        "fct_service_tickets": ["created_at", "first_agent_reply_at", "first_resolved_at",
                                "last_closed_at", "last_event_at", "csat_at", "converted_at"],
        "fct_social_interactions": ["occurred_at"],
    }.items():  # fmt: skip
        for column in columns:
            ((rows, wrong),) = query(
                db,
                f"select count({column}), count(*) filter (where {column}_local is distinct "
                f"from {column} + interval 8 hour) from marts.{table}",
            )
            assert wrong == 0, (table, column)
            assert rows > 0 or column in ("last_closed_at", "csat_at", "converted_at")


def test_dim_customers_hand_computed(built):
    db = built["db"]
    cols = ("customer_id, orders_lifetime, net_revenue_365d, recency_days, is_vip, lifecycle_stage, "
            "r_score, f_score, m_score, rfm_segment, engagement_90d, quadrant, profile_completeness, "
            "has_email, gender, birth_year, p_alive")  # fmt: skip
    rows = {r[0]: r for r in query(db, f"select {cols} from marts.dim_customers")}
    # P1: O1 + O2 = 57,040 >= 50,000 (VIP); first order Sep 3 >= D-89: new; recency 26 days.
    # n = 2: recency desc -> P1 rank 1 (r 1), P2 rank 2 (r 1 + floor(5/2) = 3); orders and
    # revenue asc -> P2 rank 1 (1), P1 rank 2 (3). Engagement: 2 inbound + 1 inquiry = 3.
    assert rows[C1][1:] == (2, 57040, 26, True, "new", 1, 3, 3, "At Risk", 3,
                            "high_value_high_potential", 1.0, True, "female", 1990, None)  # fmt: skip
    # P2: O3 (300; O4 cancelled); recency 11; name + phone = 2/6; 1 inquiry.
    assert rows[C2][1:] == (1, 300, 11, False, "new", 3, 1, 1, "About to Sleep", 1,
                            "low_value_low_potential", pytest.approx(2 / 6), False, None, None, None)  # fmt: skip
    # member tiers (seed member_tiers): crm:C1 delivered "gold", the surviving level of P1
    # (M1 has none); P2 never had a level
    tiers = {
        r[0]: r[1:]
        for r in query(db, "select customer_id, member_tier, member_tier_rank, "
                       "member_level_source from marts.dim_customers")
    }  # fmt: skip
    assert tiers[C1] == ("gold", 3, "gold")
    assert tiers[C2] == (None, None, None)


def test_consent_flag_and_campaign_audiences_hand_computed(built):
    """P1 said yes in the CRM (Jan) and no later in the mall (Mar): the latest answer wins,
    so P1 (VIP, new, high value) is in no audience. P2 said yes: new with one order, so in
    second_purchase_new only."""
    db = built["db"]
    flags = dict(query(db, "select customer_id, is_marketing_contactable from marts.dim_customers"))
    assert flags == {C1: False, C2: True}
    audiences = query(db, "select audience, customer_id from marts.rpt_campaign_audiences")
    assert audiences == [("second_purchase_new", C2)]


def test_october_kpis_hand_computed(built):
    db = built["db"]
    m = "2026-10"
    assert kpi(db, m, "orders") == 23  # O1, O3 and 21 walk-ins (O2 is September, O4 cancelled)
    assert kpi(db, m, "net_revenue") == 2640  # 240 + 300 + 21 x 100
    assert kpi(db, m, "aov") == pytest.approx(2640 / 23)
    assert kpi(db, m, "purchasing_customers") == 2
    assert kpi(db, m, "new_customers") == 1  # P2 (P1's first order was in September)
    # cohort repurchase: of the customers with an order by 09-30 (P1; P2's first order is
    # in October), the share who order in October: P1
    assert kpi(db, m, "repurchase_rate") == 1
    assert query(db, "select numerator, denominator from marts.fct_kpi_monthly where "
                     "month_label = '2026-10' and segment = 'all' and kpi = 'repurchase_rate'"
                 ) == [(1, 1)]  # fmt: skip
    assert kpi(db, m, "churn_rate") == 0  # P1 active at 09-30 and at 10-31
    assert kpi(db, m, "vip_customers") == 1  # P1: 56,800 in [2025-11-01, 10-31]
    assert kpi(db, m, "returning_customer_rate") == 0.5  # P1 has 2 orders to date, P2 one
    # P1 is VIP at 09-30 (O2, 56,800 on 09-03) and orders in October
    assert kpi(db, m, "purchasing_customers", "vip") == 1
    assert kpi(db, m, "repurchase_rate", "vip") == 1
    assert kpi(db, m, "tickets") == 3
    assert kpi(db, m, "first_response_minutes_p50") == 25  # T1 30 min, T2 20 min
    assert kpi(db, m, "first_response_minutes_p90") == pytest.approx(29)  # 20 + 0.9 x 10
    # T1 met (30 <= 60); T2 breached (20 > 15); T3 unanswered 16 days (> 1,440 min)
    assert kpi(db, m, "first_response_sla_rate") == pytest.approx(1 / 3)
    # T1 met (600 <= 1,440); T2 unresolved > 240; T3 unresolved > 10,080
    assert kpi(db, m, "resolution_sla_rate") == pytest.approx(1 / 3)
    assert kpi(db, m, "csat_avg") == 3.5  # 5 and 2
    assert kpi(db, m, "csat_satisfied_rate") == 0.5
    # T3 (created 10-15) -> O3 after 5 days: already converted, but its 30 days run to
    # 11-14, after D; T1 (created 10-06) has no later order yet, its 30 days run to 11-05:
    # both pending (an event is decided only once its window closed), no decided inquiry
    assert kpi(db, m, "demand_conversion_rate") is None
    assert query(db, "select numerator, denominator, pending, is_complete from marts.fct_kpi_monthly "
                     "where month_label = '2026-10' and segment = 'all' "
                     "and kpi = 'demand_conversion_rate'") == [(0, 0, 2, False)]  # fmt: skip
    assert kpi(db, m, "message_reply_rate") == 1  # i1 answered by i2 after 3 h
    assert kpi(db, m, "social_engaged_customers") == 1
    # records C1, M1, C2 (C3 not as of D) form 2 customers
    assert kpi(db, m, "duplicate_record_rate") == pytest.approx(1 / 3)
    assert kpi(db, m, "profile_completeness") == pytest.approx((1 + 2 / 6) / 2)
    assert kpi(db, m, "full_profile_rate") == 0.5
    assert query(db, "select is_complete, end_date from marts.fct_kpi_monthly "
                     "where month_label = '2026-10' and segment = 'all' and kpi = 'orders'"
                     ) == [(True, date(2026, 10, 31))]  # fmt: skip
    # September: P1's first order (O2), and the profile state as of 09-30
    assert kpi(db, "2026-09", "new_customers") == 1
    assert kpi(db, "2026-09", "net_revenue") == 56800
    # O2 makes P1 VIP: P1 is in the VIP rows as of end(September) (vip_customers,
    # active_customers) but not in a flow KPI's VIP row (not VIP at 08-31)
    assert kpi(db, "2026-09", "vip_customers") == 1
    assert kpi(db, "2026-09", "active_customers", "vip") == 1
    assert query(db, "select kpi from marts.fct_kpi_monthly where month_label = '2026-09' "
                     "and segment = 'vip'") == [("active_customers",)]  # fmt: skip
    assert kpi(db, "2026-09", "repurchase_rate") is None  # nobody ordered by 08-31


def test_october_rf_segment_and_channel_kpis_hand_computed(built):
    """RF segment as of 09-30: P1 is the only customer with an order by then (n = 1: r =
    f = 1 + floor(5 x 0 / 1) = 1, Hibernating); P2 has none (no RF segment). Channels:
    online_store O1 (P1, 240) and O3 (P2, 300); offline_store the 21 walk-ins (100 each,
    no customer)."""
    db = built["db"]
    m = "2026-10"
    rows = query(db, "select distinct segment from marts.fct_kpi_monthly "
                     "where month_label = '2026-10' and segment_type = 'rfm_segment'")  # fmt: skip
    assert rows == [("Hibernating",)]
    assert kpi(db, m, "purchasing_customers", "Hibernating") == 1
    assert kpi(db, m, "net_revenue", "Hibernating") == 240
    assert kpi(db, m, "repurchase_rate", "Hibernating") == 1
    assert kpi(db, m, "orders", "online_store") == 2
    assert kpi(db, m, "net_revenue", "online_store") == 540
    assert kpi(db, m, "aov", "online_store") == 270
    assert kpi(db, m, "purchasing_customers", "online_store") == 2
    assert kpi(db, m, "orders", "offline_store") == 21
    assert kpi(db, m, "net_revenue", "offline_store") == 2100
    assert kpi(db, m, "purchasing_customers", "offline_store") == 0
    kpis = query(db, "select distinct kpi from marts.fct_kpi_monthly "
                     "where segment_type = 'channel' order by kpi")  # fmt: skip
    assert kpis == [("aov",), ("net_revenue",), ("orders",), ("purchasing_customers",)]


def quadrant_rows(db: Path) -> dict[tuple[str, str], tuple[int, date]]:
    """(month, quadrant) -> (KPI rows, computed_as_of_date) of the quadrant segments."""
    rows = query(db, """
        select month_label, segment, count(*), min(computed_as_of_date), max(computed_as_of_date)
        from marts.fct_kpi_monthly where segment_type = 'quadrant'
        group by month_label, segment""")  # fmt: skip
    assert all(r[3] == r[4] for r in rows)
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_october_quadrant_kpis_hand_computed(built):
    """Quadrants as of D (CLV scores still the empty placeholder: engagement alone): P1
    high value (the larger of two positive revenues, percent_rank 1) and engagement 3:
    high_value_high_potential; P2 low_value_low_potential. Only the month of D has
    quadrant rows; each quadrant the order family plus churn and reactivation rates."""
    db = built["db"]
    assert quadrant_rows(db) == {
        ("2026-10", "high_value_high_potential"): (10, date(2026, 10, 31)),
        ("2026-10", "low_value_low_potential"): (10, date(2026, 10, 31)),
    }
    m, hh, ll = "2026-10", "high_value_high_potential", "low_value_low_potential"
    assert kpi(db, m, "orders", hh) == 1  # O1
    assert kpi(db, m, "net_revenue", hh) == 240
    assert kpi(db, m, "repurchase_rate", hh) == 1  # P1 has 2 orders to date
    assert kpi(db, m, "churn_rate", hh) == 0  # active at 09-30 (O2) and at 10-31
    assert kpi(db, m, "dormant_reactivation_rate", hh) is None  # nobody dormant at 09-30
    assert kpi(db, m, "new_customers", ll) == 1  # P2's first order O3
    assert kpi(db, m, "net_revenue", ll) == 300
    assert kpi(db, m, "repurchase_rate", ll) is None  # P2 had no order by 09-30
    assert kpi(db, m, "churn_rate", ll) is None  # not active at 09-30


def test_nightly_run_in_the_next_month_keeps_the_quadrants_of_the_month_end(built, tmp_path):
    """The next night (D = 11-01, on a copy of the warehouse) recomputes October (within
    the 7-day lookback) with the late order O8 (dated 10-30, delivered 11-01), but keeps
    October's quadrant rows as of 10-31; November gets quadrant rows as of 11-01."""
    db = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built["db"], db)
    for half in ("--exclude", "--select"):
        run_dbt(["build", half, "source:clv+", "--vars", build_vars("2026-11-01")], tmp_path, db)
    hh, ll = "high_value_high_potential", "low_value_low_potential"
    assert quadrant_rows(db) == {
        ("2026-10", hh): (10, date(2026, 10, 31)),
        ("2026-10", ll): (10, date(2026, 10, 31)),
        # as of 11-01: P1 57,040 and P2 2,298 (O3, O8, O9) in 365 days; engagement 3 / 1
        ("2026-11", hh): (10, date(2026, 11, 1)),
        ("2026-11", ll): (10, date(2026, 11, 1)),
    }
    assert kpi(db, "2026-10", "net_revenue") == 2640 + 999  # recomputed with O8
    assert kpi(db, "2026-10", "net_revenue", ll) == 300  # as of 10-31
    assert kpi(db, "2026-11", "orders", ll) == 1  # O9
    assert kpi(db, "2026-11", "purchasing_customers", hh) == 0


def _copy_stores(built: dict, target: Path) -> Path:
    """Copies of the built warehouse and its restricted store in `target`."""
    db = target / "warehouse.duckdb"
    shutil.copyfile(built["db"], db)
    restricted = built["db"].with_name(built["db"].stem + "_restricted.duckdb")
    shutil.copyfile(restricted, db.with_name(db.stem + "_restricted.duckdb"))
    return db


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
        db = _copy_stores(built, work)
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
        where changed_at > (select min(built_at) from main.crm_build_log
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
        con = duckdb.connect(str(_copy_stores(built, work)))
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
    db = _copy_stores(built, work)
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
    full_db = _copy_stores({"db": db}, full)
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


def test_sla_clocks_in_the_fact(built):
    rows = {r[0]: r[1:] for r in query(built["db"], """
        select ticket_id, sla_priority, first_response_sla_status, resolution_sla_status, is_converted_30d
        from marts.fct_service_tickets""")}  # fmt: skip
    assert rows == {
        "T1": ("P2", "met", "met", False),
        "T2": ("P1", "breached", "breached", None),
        "T3": ("P4", "breached", "breached", True),
    }


def test_clv_scores_flow_into_dim_customers(built):
    """Second half alone, after the CLV asset wrote scores: P2 expects >= 1 purchase in
    90 days, so it becomes high potential."""
    db = built["db"]
    con = duckdb.connect(str(db))
    con.execute("delete from clv.customer_scores")
    con.execute(
        "insert into clv.customer_scores values (?, 0.9, 1.2, 1234.50, false, date '2026-10-31')",
        [C2],
    )
    con.close()
    run_dbt(["build", "--select", "source:clv+", "--vars", build_vars()], built["work"], db)
    row = query(
        db,
        f"select quadrant, clv_365d, clv_is_stale from marts.dim_customers where customer_id = '{C2}'",
    )
    assert row == [("low_value_high_potential", pytest.approx(1234.5), False)]
    assert query(db, f"select p_alive from marts.dim_customers where customer_id = '{C1}'") == [
        (None,)
    ]
    # the KPIs of the month of D move with it (same quadrant logic as dim_customers)
    assert set(quadrant_rows(db)) == {
        ("2026-10", "high_value_high_potential"),
        ("2026-10", "low_value_high_potential"),
    }
    assert kpi(db, "2026-10", "net_revenue", "low_value_high_potential") == 300
    # ... and into the audiences: P2 (consent) now also gets the nurture campaign
    assert sorted(query(db, "select audience, customer_id from marts.rpt_campaign_audiences")) == [
        ("nurture_high_potential", C2),
        ("second_purchase_new", C2),
    ]


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
    nightly_db = _copy_stores(built, nightly)
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
        full_db = _copy_stores({"db": nightly_db}, full)
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
    db = _copy_stores(built, tmp_path)
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
    db = _copy_stores(built, tmp_path)
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


# --------------------------------------------------------------------------- (c) lint
def test_the_unique_test_reports_every_duplicated_value_and_its_count(built, tmp_path):
    """The `unique` test (macros/test_unique.sql: grouped by a hash first on DuckDB) fails
    with the rows dbt's own SQL gives: one per duplicated value, with its number of rows,
    counted here in Python."""
    db = _copy_stores(built, tmp_path)
    with duckdb.connect(str(db)) as con:
        order_ids = [
            row[0] for row in con.execute("select order_id from marts.fct_orders").fetchall()
        ]
        assert len(order_ids) >= 3
        # one order four times (2, then its 2 rows again), another twice; the rest once
        con.execute(
            "insert into marts.fct_orders select * from marts.fct_orders where order_id in (?, ?)",
            [order_ids[0], order_ids[1]],
        )
        con.execute(
            "insert into marts.fct_orders select * from marts.fct_orders where order_id = ?",
            [order_ids[0]],
        )
        rows = [row[0] for row in con.execute("select order_id from marts.fct_orders").fetchall()]
    expected = sorted((value, n) for value, n in Counter(rows).items() if n > 1)
    assert expected == sorted([(order_ids[0], 4), (order_ids[1], 2)])
    proc = run_dbt(
        ["test", "--select", "unique_fct_orders_order_id", "--vars", build_vars()],
        tmp_path,
        db,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "Got 2 results" in proc.stdout
    with duckdb.connect(str(db), read_only=True) as con:
        failing = con.execute(
            "select unique_field, n_records from audit.unique_fct_orders_order_id"
        ).fetchall()
        compiled = " ".join(
            path.read_text()
            for path in (tmp_path / "target" / "compiled").rglob("unique_fct_orders_order_id.sql")
        )
    assert sorted(failing) == expected
    assert "hash(order_id)" in compiled
    # a model built as a view would be computed twice by the hashed form: it gets dbt's SQL
    view_test = " ".join(
        path.read_text()
        for path in (built["work"] / "target" / "compiled").rglob(
            "unique_int_order_lines_converted_order_line_id.sql"
        )
    )
    assert "order_line_id" in view_test and "hash(" not in view_test
    # ... on the lines of the deliveries the build covers (var checks_from_date)
    assert "delivery_date >= '" in view_test


def test_sqlfluff_lint_is_clean():
    proc = subprocess.run(
        [_bin("sqlfluff"), "lint", "models", "tests", "--disable-progress-bar"],
        cwd=DBT_DIR, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_dbt_and_the_pipeline_cap_duckdb_memory(tmp_path: Path, monkeypatch) -> None:
    """CRM_DUCKDB_MEMORY_LIMIT bounds every DuckDB database: dbt's (profile `settings`) and
    the pipeline's connections; without it the default 4GB applies, not DuckDB's 80 % of RAM."""
    from pipelines.lib.duck import MEMORY_LIMIT_ENV, connect

    def dbt_limit() -> str:
        proc = run_dbt(
            ["show", "--inline", "select current_setting('memory_limit') as m", "--output", "json"],
            tmp_path,
            tmp_path / "memory.duckdb",
        )
        return json.loads(proc.stdout[proc.stdout.index("{") :])["show"][0]["m"]

    def pipeline_limit() -> str:
        with connect(tmp_path / "pipeline.duckdb") as con:
            return con.execute("select current_setting('memory_limit')").fetchone()[0]

    from pipelines.lib import duck
    from pipelines.lib.settings import Settings

    # the entry points settle the pipeline's limit once from the settings (`crm`: _settings,
    # a Dagster run: the settings resource); dbt reads it from its environment (dbt_env)
    monkeypatch.setattr(duck, "_memory_limit", [duck.DEFAULT_MEMORY_LIMIT])
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1GB")
    duck.set_memory_limit(Settings.from_env().duckdb_memory_limit)
    assert dbt_limit() == pipeline_limit() == "953.6 MiB"  # DuckDB shows 1GB = 10^9 bytes so
    monkeypatch.delenv(MEMORY_LIMIT_ENV)
    duck.set_memory_limit(Settings.from_env().duckdb_memory_limit)
    assert dbt_limit() == pipeline_limit() == "3.7 GiB"  # 4GB
