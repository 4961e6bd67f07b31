"""The dbt project (dbt_project/): conventions, a build on a tiny hand-made raw dataset
with hand-computed numbers, and the SQL lint.

(a) `dbt parse` and the manifest: names per folder, descriptions, contracts, data types,
    primary-key tests (house style, ../shared/style.md).
(b) `dbt build` in its two halves (`--exclude source:clv+`, then `--select source:clv+`)
    on a temporary DuckDB file holding the raw tables below; every expected number in
    the asserts was computed by hand from these rows (see the comments).
(c) `sqlfluff lint` of the models and the singular tests.

The nightly runs on copies of the build: tests/test_dbt_nightly.py. The dataset and the dbt
calls: tests/support/dbt_tiny.py. Every dbt call writes its target/ and logs/ into a
temporary folder, so parallel pytest workers never collide; the tests share the xdist group
"dbt" and the session fixture `dbt_tiny_build` (tests/conftest.py): one build per worker.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from support.dbt_tiny import (
    C1,
    C2,
    DBT_DIR,
    build_vars,
    copy_stores,
    kpi,
    quadrant_rows,
    query,
    run_dbt,
    venv_bin,
)

pytestmark = pytest.mark.xdist_group("dbt")


@pytest.fixture(scope="module")
def built(dbt_tiny_build: dict) -> dict:
    """The tiny dataset built by the two halves of `dbt build` (once per session and worker)."""
    return dbt_tiny_build


# --------------------------------------------------------------------------- (a) conventions
@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("dbt_parse")
    run_dbt(["parse"], work, work / "unused.duckdb")
    return json.loads((work / "target" / "manifest.json").read_text(encoding="utf-8"))


PREFIXES = {"staging": ("stg_",), "intermediate": ("int_",), "marts": ("dim_", "fct_", "rpt_"),
            "state": ("crm_builds_",)}  # fmt: skip


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
    models = {n["name"]: n for n in _models(manifest)}
    for node in models.values():
        by_column = tests.get(node["unique_id"], {})
        keys = [c for c, names in by_column.items() if c and {"unique", "not_null"} <= names]
        tested_in = (node["config"].get("meta") or {}).get("tested_in")
        if tested_in is not None:
            # a view stored whole by one model, whose tests cover its rows: only a view,
            # read by that model alone, whose key the model tests
            reader = models[tested_in]
            readers = [m["name"] for m in models.values()
                       if node["unique_id"] in m["depends_on"]["nodes"]]  # fmt: skip
            assert node["config"]["materialized"] == "view", node["name"]
            assert readers == [tested_in], (node["name"], readers)
            stored = tests.get(reader["unique_id"], {})
            keys = [c for c, names in stored.items()
                    if c in node["columns"] and {"unique", "not_null"} <= names]  # fmt: skip
        assert keys, f"{node['name']}: no column with both unique and not_null"


def test_non_trivial_logic_has_unit_tests(manifest):
    tested = {n["model"] for n in manifest.get("unit_tests", {}).values()}
    for model in ("int_customers_rfm_scored", "int_customers_order_summarised",
                  "int_customer_months", "int_kpi_customers_monthly",
                  "int_service_tickets_sla_clocked", "int_identity_components_resolved",
                  "int_identity_identifiers", "int_identity_edges", "rpt_kpi_review",
                  "stg_raw__customers", "int_customers_quadrant_assigned",
                  "fct_kpi_monthly", "fct_customer_cohorts", "fct_product_pairs",
                  "dim_products", "fct_customer_segments_monthly",
                  "fct_segment_transitions", "int_customers_preferred"):  # fmt: skip
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


#: The build record models (models/state) and the dbt step of the night that builds each:
#: the warehouse step builds everything not downstream of the CLV scores
#: (pipelines/transform/assets.py, AFTER_CLV).
BUILD_RECORDS = {"crm_builds_warehouse": False, "crm_builds_customer_marts": True}
#: The macros that read the build records (macros/incremental.sql).
READS_BUILD_RECORDS = {"last_built_as_of", "last_built_at", "last_tested_build", "recorded_build",
                       "build_record_relations"}  # fmt: skip


def test_every_model_reading_its_last_build_is_recorded_by_its_step(manifest):
    """No side table: what a model's last build was lives in a declared build record model
    (a child of the models it records, so dbt writes it after them and their tests). Every
    model whose SQL calls a macro that reads the records (directly or through other macros),
    and every model a macro reads by name (fct_kpi_monthly, read by its building blocks), is
    a parent of the record model of the dbt step that builds it, and of no other."""
    macros = manifest["macros"]
    own = {m["name"]: m for m in macros.values() if m["package_name"] == "crm_warehouse"}

    def reads(name: str, seen: frozenset = frozenset()) -> bool:
        if name in READS_BUILD_RECORDS:
            return True
        calls = own[name]["depends_on"]["macros"] if name in own else []
        return any(
            reads(c.split(".")[-1], seen | {name})
            for c in calls
            if c.startswith("macro.crm_warehouse.") and c.split(".")[-1] not in seen
        )

    readers_macros = {name for name in own if reads(name)} - {"build_record_rows"}
    assert {"incremental_cutoff_date", "recomputed_months_from", "keys_with_changed_customer",
            "delivered_since_build", "restated_from"} <= readers_macros  # fmt: skip
    call = re.compile(r"\b(" + "|".join(sorted(readers_macros)) + r")\s*\(")
    # where each of those macros takes the name of the model whose record it reads
    position = {}
    for name in readers_macros:
        signature = re.search(rf"macro {name}\(([^)]*)\)", own[name]["macro_sql"]).group(1)
        params = [p.split("=")[0].strip() for p in signature.split(",") if p.strip()]
        if "model_name" in params:
            position[name] = params.index("model_name")
    assert {"restated_from", "incremental_cutoff_date", "last_built_as_of"} <= set(position)
    models = {n["name"]: n for n in _models(manifest)}
    readers = {name for name, node in models.items() if call.search(node["raw_code"])}
    texts = [n["raw_code"] for n in models.values()] + [m["macro_sql"] for m in own.values()]
    texts += [json.dumps(n["config"]) for n in models.values()]  # hooks set in YAML
    for text in texts:
        for match in call.finditer(text):
            readers |= set(_model_name_arguments(text, match.end(), position.get(match[1])))
    readers -= set(BUILD_RECORDS)
    assert {"fct_orders", "int_customer_months", "fct_kpi_monthly"} <= readers, readers
    after_clv = set()
    frontier = [k for k in manifest["sources"] if k.split(".")[2] == "clv"]
    while frontier:
        for child in manifest["child_map"].get(frontier.pop(), []):
            if child not in after_clv:
                after_clv.add(child)
                frontier.append(child)
    recorded: dict[str, list[str]] = {}
    for record, is_after_clv in BUILD_RECORDS.items():
        node = models[record]
        assert (node["unique_id"] in after_clv) == is_after_clv, record
        assert node["config"]["materialized"] == "incremental", record
        assert node["config"]["incremental_strategy"] == "append", record
        for parent in node["depends_on"]["nodes"]:
            recorded.setdefault(parent.split(".")[-1], []).append(record)
    assert set(recorded) == readers, set(recorded) ^ readers
    # the records name the model (this.identifier is looked up): no alias
    assert [r for r in readers | set(BUILD_RECORDS) if models[r]["alias"] != r] == []
    for reader in readers:
        uid = models[reader]["unique_id"]
        expected = next(r for r, a in BUILD_RECORDS.items() if (uid in after_clv) == a)
        assert recorded[reader] == [expected], (reader, recorded[reader])


def _model_name_arguments(text: str, start: int, position: int | None) -> list[str]:
    """The literal model names given as `model_name` (by keyword, or at `position`) in the
    call whose arguments start at `start` of `text`."""
    depth, args, current = 0, [], ""
    for char in text[start:]:
        if char == ")" and depth == 0:
            break
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            args.append(current)
            current = ""
        else:
            current += char
    args.append(current)
    names = []
    for index, arg in enumerate(a.strip() for a in args):
        keyword, _, value = arg.partition("=")
        if value and keyword.strip() == "model_name":
            arg = value.strip()
        elif value or index != position:
            continue
        literal = re.fullmatch(r"""(['"])(\w+)\1""", arg.replace("\\", ""))
        if literal:
            names.append(literal[2])
    return names


def test_no_hook_writes_a_table_no_model_declares():
    """The build records and the tested builds are models: no on-run hook or post-hook of
    the project creates them."""
    project = (DBT_DIR / "dbt_project.yml").read_text(encoding="utf-8")
    assert "on-run-end" not in project
    for gone in ("crm_build_log", "crm_tested_builds", "record_build", "create_build_log"):
        assert gone not in project, gone
        for path in [*(DBT_DIR / "macros").rglob("*.sql"), *(DBT_DIR / "models").rglob("*.sql")]:
            assert gone not in path.read_text(encoding="utf-8"), (gone, path)


# --------------------------------------------------------------------------- (b) the build
def test_both_halves_build_and_run_every_test(built):
    assert "Completed successfully" in built["logs"]
    assert "unit test" in built["logs"]


def test_each_step_records_the_builds_its_models_read_next(built):
    """The two halves of `dbt build` (the night's two dbt steps) append one row per recorded
    model: the run's D, and for each fact (a written-keys log, every data test of it alone
    run in the build) the build its tests checked, the log's last; none for the other
    models."""
    rows = query(built["db"], """
        select 'crm_builds_warehouse', * from main.crm_builds_warehouse
        union all select 'crm_builds_customer_marts', * from main.crm_builds_customer_marts
        order by all""")  # fmt: skip
    by_model = {r[3]: r for r in rows}
    assert len(by_model) == len(rows)
    assert {m for m, r in by_model.items() if r[0] == "crm_builds_warehouse"} == {
        "fct_orders", "fct_order_lines", "fct_service_tickets", "fct_social_interactions",
        "int_customer_months", "int_kpi_social_monthly", "fct_campaign_performance",
    }  # fmt: skip
    assert {m for m, r in by_model.items() if r[0] == "crm_builds_customer_marts"} == {
        "fct_kpi_monthly", "fct_customer_segments_monthly", "fct_segment_transitions",
    }  # fmt: skip
    invocations = {r[0]: r[2] for r in rows}
    assert len(set(invocations.values())) == 2  # one dbt invocation per step
    for _record, build_id, invocation, model, as_of, built_at, tested in rows:
        assert build_id == f"{invocation}:{model}" and as_of == date(2026, 10, 31), model
        assert isinstance(built_at, datetime)
        if model in ("fct_orders", "fct_order_lines", "fct_service_tickets",
                     "fct_social_interactions"):  # fmt: skip
            (last,) = query(built["db"], f"select max(build) from main.{model}__written_keys")[0]
            assert tested == last, model
        else:
            assert tested is None, model


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
                                "last_closed_at", "last_event_at", "csat_at", "converted_at",
                                "first_assigned_at"],
        "fct_social_interactions": ["occurred_at"],
    }.items():  # fmt: skip
        for column in columns:
            ((rows, wrong),) = query(
                db,
                f"select count({column}), count(*) filter (where {column}_local is distinct "
                f"from {column} + interval 8 hour) from marts.{table}",
            )
            assert wrong == 0, (table, column)
            # the tiny data has no closed, surveyed, converted or assigned ticket
            assert rows > 0 or column in (
                "last_closed_at", "csat_at", "converted_at", "first_assigned_at"
            )  # fmt: skip
    # and no mart publishes a UTC timestamp without its business-time twin
    stamps = query(
        db,
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'marts' and data_type like 'TIMESTAMP%'",
    )
    names = set(stamps)
    assert [
        (t, c) for t, c in stamps if not c.endswith("_local") and (t, f"{c}_local") not in names
    ] == []


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
    # order channels: the customers' segment as of start(M); the service KPIs are broken
    # down by the ticket's own channel (segment_as_of = 'event')
    kpis = query(db, "select distinct kpi from marts.fct_kpi_monthly "
                     "where segment_type = 'channel' and segment_as_of <> 'event' "
                     "order by kpi")  # fmt: skip
    assert kpis == [("aov",), ("net_revenue",), ("orders",), ("purchasing_customers",)]
    service = query(db, "select distinct segment from marts.fct_kpi_monthly "
                        "where segment_type = 'channel' and segment_as_of = 'event'")  # fmt: skip
    assert service and {s for (s,) in service}.isdisjoint({"online_store", "offline_store"})


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


# --------------------------------------------------------------------------- (c) lint
def test_the_unique_test_reports_every_duplicated_value_and_its_count(built, tmp_path):
    """The `unique` test (macros/test_unique.sql: grouped by a hash first on DuckDB) fails
    with the rows dbt's own SQL gives: one per duplicated value, with its number of rows,
    counted here in Python."""
    db = copy_stores(built, tmp_path)
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
    # rows copied by hand, not written by a build: the weekly run checks every row (a
    # night checks the keys written since the last tested build; see test_late_corrections)
    every_row = json.dumps({**json.loads(build_vars()), "whole_data_tests_weekday": 6})
    assert date.fromisoformat(json.loads(build_vars())["as_of_date"]).isoweekday() == 6
    proc = run_dbt(
        ["test", "--select", "unique_fct_orders_order_id", "--vars", every_row],
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
    # the test is dbt's own `unique` (tooling reads primary keys from it); only its DuckDB SQL
    # is the project's (dispatched to the root project first)
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    (node,) = (n for n in manifest["nodes"].values() if n["name"] == "unique_fct_orders_order_id")
    assert node["test_metadata"]["name"] == "unique" and not node["test_metadata"]["namespace"]
    assert "macro.dbt.test_unique" in node["depends_on"]["macros"]
    assert "macro.crm_warehouse.test_unique" not in manifest["macros"]
    # a model built as a view would be computed twice by the hashed form: it gets dbt's SQL
    view_test = " ".join(
        path.read_text()
        for path in (built["work"] / "target" / "compiled").rglob(
            "unique_int_order_lines_converted_order_line_id.sql"
        )
    )
    assert "order_line_id" in view_test and "hash(" not in view_test
    # ... on the lines of the deliveries the build covers (checks_from_date; this build
    # sets none: every delivery)
    assert "delivery_date >= cast('1900-01-01' as date)" in view_test


def test_sqlfluff_lint_is_clean():
    proc = subprocess.run(
        [venv_bin("sqlfluff"), "lint", "models", "tests", "--disable-progress-bar"],
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
