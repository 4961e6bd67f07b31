"""Quality gates: GX suites run by pipelines.quality.runner on a small hand-made warehouse.

Every expected number below is computed by hand from the rows in `build_warehouse`.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.quality.runner import run_gate, run_suite
from pipelines.quality.suites import load_suites, runtime_parameters

AS_OF = date(2024, 3, 31)

WAREHOUSE_SQL = """
create schema raw; create schema intermediate; create schema marts;

create table raw.load_log (
    _source_name varchar, entity varchar, _delivery_date date, _source_file varchar,
    _file_sha256 varchar, bytes bigint, rows_read bigint, rows_loaded bigint,
    rows_quarantined bigint, status varchar, duplicate_of varchar, _mapping_version varchar,
    _loaded_at timestamp, seconds double, warnings varchar);
insert into raw.load_log values
    ('crm', 'customers', '2024-03-31', 'crm/2024-03-31/c.csv', 'a', 1, 5, 4, 1, 'loaded', null, '1', now(), 0.1, null),
    ('shop', 'orders', '2024-03-31', 'shop/2024-03-31/o.csv', 'b', 1, 5, 5, 0, 'loaded', null, '1', now(), 0.1, null),
    ('shop', 'orders', '2024-03-31', 'shop/2024-03-31/o2.csv', 'b', 1, 0, 0, 0, 'duplicate', 'o.csv', '1', now(), 0.1, null),
    ('desk', 'service_events', '2024-03-31', 'desk/2024-03-31/s.csv', 'c', 1, 4, 4, 0, 'loaded', null, '1', now(), 0.1, null),
    ('wx', 'social_interactions', '2024-03-31', 'wx/2024-03-31/w.jsonl', 'd', 1, 2, 2, 0, 'loaded', null, '1', now(), 0.1, null);

create table raw.customers (
    source_system varchar, customer_ref varchar, updated_at timestamp, registered_at timestamp,
    name varchar, gender varchar, birth_date date, phone varchar, email varchar,
    province varchar, city varchar, address varchar, member_level varchar,
    marketing_consent boolean, unionid varchar,
    _source_name varchar, _source_file varchar, _source_line bigint, _delivery_date date);
insert into raw.customers values
    ('crm', 'c1', '2024-03-30 02:00', null, 'Li Lei', 'M', '1990-01-01', '13800138000', 'a@x.cn', null, 'Shanghai', null, null, true, null, 'crm', 'crm/2024-03-31/c.csv', 2, '2024-03-31'),
    ('crm', 'c2', '2024-03-30 02:00', null, 'Han Meimei', 'F', '1991-01-01', '13800138001', 'b@x.cn', null, 'Beijing', null, null, true, null, 'crm', 'crm/2024-03-31/c.csv', 3, '2024-03-31'),
    ('crm', 'c3', '2024-03-30 02:00', null, 'Wang Wu', 'M', '1992-01-01', '13800138002', 'c@x.cn', null, 'Hangzhou', null, null, true, null, 'crm', 'crm/2024-03-31/c.csv', 4, '2024-03-31'),
    ('crm', 'c4', '2024-03-30 02:00', null, 'Zhao Liu', 'F', '1993-01-01', '13800138003', 'd@x.cn', null, 'Suzhou', null, null, true, null, 'crm', 'crm/2024-03-31/c.csv', 5, '2024-03-31');

create table raw.orders (
    order_id varchar, line_no integer, ordered_at timestamp, status varchar, channel varchar,
    source_system varchar, customer_ref varchar, quantity decimal(18, 4), unit_price decimal(18, 2),
    _source_name varchar, _source_file varchar, _source_line bigint, _delivery_date date);
insert into raw.orders values
    ('o1', 1, '2024-03-01 02:00', 'paid', 'tmall', 'shop', 'c1', 1, 100.00, 'shop', 'shop/2024-03-31/o.csv', 2, '2024-03-31'),
    ('o2', 1, '2024-03-02 02:00', 'paid', 'tmall', 'shop', 'c2', 2, 50.00, 'shop', 'shop/2024-03-31/o.csv', 3, '2024-03-31'),
    ('o3', 1, '2024-03-03 02:00', 'cancelled', 'jd', 'shop', 'c3', 1, 80.00, 'shop', 'shop/2024-03-31/o.csv', 4, '2024-03-31'),
    ('o4', 1, '2024-03-04 02:00', 'completed', 'jd', 'shop', 'c1', 3, 10.00, 'shop', 'shop/2024-03-31/o.csv', 5, '2024-03-31'),
    ('o5', 1, '2024-03-05 02:00', 'completed', 'jd', 'shop', null, 1, 20.00, 'shop', 'shop/2024-03-31/o.csv', 6, '2024-03-31');

create table raw.service_events (
    ticket_id varchar, event_id varchar, event_at timestamp, event_type varchar,
    csat_score integer, nps_score integer,
    _source_name varchar, _source_file varchar, _source_line bigint, _delivery_date date);
insert into raw.service_events values
    ('t1', 'e1', '2024-03-01 01:00', 'created', null, null, 'desk', 'desk/2024-03-31/s.csv', 2, '2024-03-31'),
    ('t1', 'e2', '2024-03-01 01:10', 'agent_reply', null, null, 'desk', 'desk/2024-03-31/s.csv', 3, '2024-03-31'),
    ('t1', 'e3', '2024-03-02 01:00', 'csat', 5, null, 'desk', 'desk/2024-03-31/s.csv', 4, '2024-03-31'),
    ('t2', 'e4', '2024-03-03 01:00', 'created', null, null, 'desk', 'desk/2024-03-31/s.csv', 5, '2024-03-31');

create table raw.social_interactions (
    interaction_id varchar, occurred_at timestamp, platform varchar, account_id varchar,
    direction varchar, interaction_type varchar,
    _source_name varchar, _source_file varchar, _source_line bigint, _delivery_date date);
insert into raw.social_interactions values
    ('i1', '2024-03-01 01:00', 'wechat', 'wx1', 'inbound', 'message', 'wx', 'wx/2024-03-31/w.jsonl', 1, '2024-03-31'),
    ('i2', '2024-03-01 02:00', 'wechat', 'wx1', 'outbound', 'message', 'wx', 'wx/2024-03-31/w.jsonl', 2, '2024-03-31');

create table intermediate.int_customers_resolved as select * from (values
    ('account:crm:c1', 'account', 'crm', 'C1'),
    ('account:crm:c2', 'account', 'crm', 'C2'),
    ('account:crm:c3', 'account', 'crm', 'C3'),
    ('account:crm:c4', 'account', 'crm', 'C4'),
    ('ticket:t1', 'ticket', 'desk', 'C1')
) as t(record_id, record_type, source_system, customer_id);

create table intermediate.int_order_lines_converted as select * from (values
    ('shop:o1', date '2024-03-01', false, 100.00::decimal(18, 2)),
    ('shop:o2', date '2024-03-02', false, 100.00::decimal(18, 2)),
    ('shop:o3', date '2024-03-03', true, 80.00::decimal(18, 2)),
    ('shop:o4', date '2024-03-04', false, 30.00::decimal(18, 2)),
    ('shop:o5', date '2024-03-05', false, 20.00::decimal(18, 2))
) as t(order_id, order_date, is_cancelled, net_revenue);

create table marts.fct_orders as select * from (values
    ('shop:o1', 'shop', 'o1', 'C1', date '2024-03-01', false, 1.0, 100.00::decimal(18, 2)),
    ('shop:o2', 'shop', 'o2', 'C2', date '2024-03-02', false, 2.0, 100.00::decimal(18, 2)),
    ('shop:o3', 'shop', 'o3', 'C3', date '2024-03-03', true, 0.0, 0.00::decimal(18, 2)),
    ('shop:o4', 'shop', 'o4', 'C1', date '2024-03-04', false, 3.0, 30.00::decimal(18, 2)),
    ('shop:o5', 'shop', 'o5', 'C4', date '2024-03-05', false, 1.0, 20.00::decimal(18, 2))
) as t(order_id, source_system, source_order_id, customer_id, order_date, is_cancelled, items, net_revenue);

create table marts.fct_order_lines as select * from (values
    ('shop:o1:1', 'shop:o1', 'shop', 1, 'paid'), ('shop:o2:1', 'shop:o2', 'shop', 1, 'paid'),
    ('shop:o3:1', 'shop:o3', 'shop', 1, 'cancelled'), ('shop:o4:1', 'shop:o4', 'shop', 1, 'paid'),
    ('shop:o5:1', 'shop:o5', 'shop', 1, 'paid')
) as t(order_line_id, order_id, source_system, line_no, status);
create table marts.dim_customers as select *, true as has_name, true as has_phone,
    true as has_email, true as has_birth_date, customer_id <> 'C3' as is_marketing_contactable
    from (values
    ('C1', 'active', 'Champions', 'high_value_high_potential', false, 1.0),
    ('C2', 'new', 'New Customers', 'low_value_high_potential', false, 1.0),
    ('C3', 'new', 'New Customers', 'low_value_low_potential', false, 1.0),
    ('C4', 'new', 'Promising', 'low_value_low_potential', false, 1.0)
) as t(customer_id, lifecycle_stage, rfm_segment, quadrant, is_vip, profile_completeness);

create table marts.fct_service_tickets as select * from (values
    ('t1', 'P2', 'P2', timestamp '2024-03-01 01:00', date '2024-03-01', 5, 'inquiry', 'C1'),
    ('t2', 'P3', 'P3', timestamp '2024-03-03 01:00', date '2024-03-03', null, 'complaint', 'C2')
) as t(ticket_id, priority, sla_priority, created_at, created_date, csat_score, category,
       customer_id);

create table marts.fct_social_interactions as select * from (values
    ('i1', 'inbound', 'wechat', 'C1', timestamp '2024-03-01 01:00', date '2024-03-01'),
    ('i2', 'outbound', 'wechat', 'C1', timestamp '2024-03-01 02:00', date '2024-03-01')
) as t(interaction_id, direction, platform, customer_id, occurred_at, occurred_date);

create table marts.fct_kpi_monthly as select * from (values
    ('k1', date '2024-02-01', 'all', 'all', 'repurchase_rate', 'ratio', 0.0, 0.0, 0.0, true, 0, null, true),
    ('k2', date '2024-03-01', 'all', 'all', 'repurchase_rate', 'ratio', 0.5, 1.0, 2.0, true, 0, null, true),
    ('k3', date '2024-03-01', 'all', 'all', 'duplicate_record_rate', 'ratio', 0.0, 0.0, 4.0, true, 0, null, true),
    ('k4', date '2024-03-01', 'all', 'all', 'profile_completeness', 'ratio', 1.0, 4.0, 4.0, true, 0, null, true),
    ('k5', date '2024-03-01', 'all', 'all', 'net_revenue', 'CNY', 250.0, null, null, true, 0, null, false),
    -- March at D = 03-31: still maturing (03-31 + 30), 3 inquiries pending
    ('k6', date '2024-03-01', 'all', 'all', 'demand_conversion_rate', 'ratio', 0.5, 1.0, 2.0, false, 30, 3.0, true),
    ('k7', date '2024-02-01', 'all', 'all', 'demand_conversion_rate', 'ratio', 0.5, 20.0, 40.0, true, 30, 0.0, false)
) as t(kpi_monthly_id, month, segment_type, segment, kpi, unit, value, numerator, denominator,
       is_complete, maturity_days, pending, is_small_base);

create table marts.fct_kpi_weekly as select * from (values
    ('2024-W12|orders', date '2024-03-18', date '2024-03-24', true, 'orders', 'orders', 4.0, 4.0, null, 0, null),
    ('2024-W12|first_response_sla_rate', date '2024-03-18', date '2024-03-24', true,
     'first_response_sla_rate', 'ratio', 0.5, 1.0, 2.0, 1, 0.0),
    ('2024-W13|orders', date '2024-03-25', date '2024-03-31', true, 'orders', 'orders', 2.0, 2.0, null, 0, null),
    ('2024-W13|first_response_sla_rate', date '2024-03-25', date '2024-03-31', false,
     'first_response_sla_rate', 'ratio', 1.0, 1.0, 1.0, 1, 1.0)
) as t(kpi_weekly_id, week, end_date, is_complete, kpi, unit, value, numerator, denominator,
       maturity_days, pending);

create table marts.rpt_campaign_audiences as select * from (values
    ('a1', 'vip_care', 'C1'),
    ('a2', 'second_purchase_new', 'C2')
) as t(audience_member_id, audience, customer_id);

create table marts.fct_agent_daily as select * from (values
    ('2024-03-01|agent|A1', date '2024-03-01', 'agent', 'A1', 'early', 2, 0.5, 1.0, 0.0, 0.5),
    ('2024-03-01|team|early', date '2024-03-01', 'team', null, 'early', 3, 0.5, 1.0, 0.0, 0.5)
) as t(agent_daily_id, activity_date, level, agent_id, team, tickets_handled,
       first_response_sla_rate, resolution_sla_rate, reopen_rate, one_touch_resolution_rate);

create table marts.fct_ticket_backlog_daily as select * from (values
    ('2024-03-01|new|P3|0d', date '2024-03-01', 'new', 'P3', '0d', 2, 1, 0)
) as t(backlog_daily_id, snapshot_date, status, priority, age_band, open_tickets,
       first_response_breached_tickets, resolution_breached_tickets);

create table marts.fct_customer_cohorts as select * from (values
    ('2024-02|web|0', date '2024-02-01', 'web', 0, date '2024-02-01', 2, 2, 1.0),
    ('2024-02|web|1', date '2024-02-01', 'web', 1, date '2024-03-01', 2, 1, 0.5),
    ('2024-02|all|0', date '2024-02-01', 'all', 0, date '2024-02-01', 2, 2, 1.0),
    ('2024-02|all|1', date '2024-02-01', 'all', 1, date '2024-03-01', 2, 1, 0.5)
) as t(cohort_month_id, cohort_month, first_order_channel, months_since_first, activity_month,
       cohort_customers, active_customers, active_share);

create table marts.dim_products as select * from (values
    ('P1', '<100'), ('P2', '1000+')
) as t(product_id, price_band);

create table marts.fct_category_monthly as select * from (values
    ('2024-03|skincare', date '2024-03-01', 2, 3)
) as t(category_month_id, month, buyers, orders);

create table marts.fct_product_pairs as select * from (values
    ('P1|P2', 'P1', 'P2', 2, 3, 4, 0.4, 2.0 / 3, 10.0 / 12),
    ('P2|P1', 'P2', 'P1', 2, 4, 3, 0.4, 0.5, 10.0 / 12)
) as t(product_pair_id, product_id, paired_product_id, pair_baskets, product_baskets,
       paired_product_baskets, support, confidence, lift);

create table marts.fct_campaign_performance as select * from (values
    ('CP1|all', 'CP1', date '2024-03-01', 'all', 4, 0.25, 0.5, 0.25, null, 0.25, 0.1, 0.4, 2),
    ('CP1|active', 'CP1', date '2024-03-01', 'active', 3, 1.0 / 3, 0.5, 0.25, null, 0.25, 0.1, 0.4, 1),
    ('CP1|dormant', 'CP1', date '2024-03-01', 'dormant', 1, 0.0, 0.5, 0.25, 0.0, 0.25, 0.1, 0.4, 1)
) as t(campaign_segment_id, campaign_id, campaign_date, segment, reached_customers,
       response_rate, conversion_rate, holdout_conversion_rate, reactivation_rate, uplift,
       uplift_ci_low, uplift_ci_high, attributed_orders);

create table marts.fct_customer_segments_monthly as select * from (values
    ('C1|2024-02', 'C1', date '2024-02-01', date '2024-02-29', 'new', false),
    ('C1|2024-03', 'C1', date '2024-03-01', date '2024-03-31', 'active', true)
) as t(customer_month_id, customer_id, month, end_date, lifecycle_stage, is_vip);

create table marts.fct_segment_transitions as select * from (values
    ('2024-03|vip|false|true', date '2024-03-01', 'vip', 'false', 'true', 1, 1.0),
    ('2024-03|lifecycle_stage|new|active', date '2024-03-01', 'lifecycle_stage', 'new', 'active', 1, 1.0)
) as t(transition_id, month, segment_type, from_segment, to_segment, customers, share_of_from);

create table marts.rpt_kpi_review as select * from (values
    ('T1', 'profile_completeness', 'achieved'),
    ('T2', 'repurchase_rate', 'on_track')
) as t(target_id, kpi, status);
"""


def build_warehouse(path: Path) -> Path:
    con = duckdb.connect(str(path))
    con.execute(WAREHOUSE_SQL)
    con.close()
    return path


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return build_warehouse(tmp_path / "warehouse.duckdb")


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    return tmp_path / "reports" / "data_docs"


def sql_rows(path: Path, query: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def sql(path: Path, statement: str) -> None:
    con = duckdb.connect(str(path))
    con.execute(statement)
    con.close()


def test_suites_are_valid_gx_suites() -> None:
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    suites = load_suites()
    names = {s.name for s in suites}
    assert {
        "dim_customers",
        "fct_orders",
        "fct_service_tickets",
        "fct_agent_daily",
        "fct_campaign_performance",
        "fct_customer_cohorts",
        "dim_products",
        "fct_category_monthly",
        "fct_product_pairs",
        "fct_ticket_backlog_daily",
        "fct_customer_segments_monthly",
        "fct_segment_transitions",
        "fct_social_interactions",
        "fct_kpi_monthly",
        "fct_kpi_weekly",
        "rpt_kpi_review",
        "raw_customers",
        "raw_orders",
        "raw_service_events",
        "raw_social_interactions",
    } <= names
    for spec in suites:
        gx.ExpectationSuite(
            name=spec.name,
            expectations=[
                ExpectationConfiguration(type=e.type, kwargs=e.kwargs, meta=e.meta).to_domain_obj()
                for e in spec.expectations
            ],
        )
        assert all(e.severity in ("blocking", "target") for e in spec.expectations)


def test_runtime_parameters_use_business_timezone() -> None:
    # D = 2024-03-31 in Asia/Shanghai ends at 2024-04-01 00:00 +08:00 = 2024-03-31 16:00 UTC
    params = runtime_parameters(AS_OF, "Asia/Shanghai")
    assert params["as_of_end_utc"] == "2024-03-31 16:00:00"
    assert params["window_start"] == "2023-04-02"  # 2024 is a leap year


def test_all_green_fixture_passes(warehouse: Path, docs_dir: Path) -> None:
    gate = run_gate(warehouse, AS_OF, "run-green", docs_dir=docs_dir)
    failed = [f"{s.suite}.{o.describe()}" for s in gate.suites for o in s.outcomes if not o.success]
    assert gate.blocking_failed == [], failed
    assert failed == []
    assert (docs_dir / "index.html").exists()
    # hand-computed observations
    orders = next(s for s in gate.suites if s.suite == "fct_orders")
    assert orders.outcome("has_rows").observed == 5
    # 4 of 5 raw order lines carry a customer_ref
    raw_orders = next(s for s in gate.suites if s.suite == "raw_orders")
    assert raw_orders.outcome("customer_ref_completeness").observed == pytest.approx(4 / 5)
    assert raw_orders.outcome("customer_ref_completeness").threshold == pytest.approx(0.8)


def test_duplicate_order_id_blocks_and_names_the_key(warehouse: Path, docs_dir: Path) -> None:
    sql(
        warehouse,
        """
        insert into marts.fct_orders values
            ('shop:o2', 'shop', 'o2', 'C2', date '2024-03-02', false, 2.0, 0.00::decimal(18, 2)),
            ('shop:o5', 'shop', 'o5', 'C4', date '2024-03-05', false, 1.0, 0.00::decimal(18, 2)),
            ('shop:o5', 'shop', 'o5', 'C4', date '2024-03-05', false, 1.0, 0.00::decimal(18, 2))
    """,
    )
    result = run_suite(warehouse, "fct_orders", AS_OF, "run-dup", docs_dir=docs_dir)
    assert not result.passed
    assert [o.check for o in result.blocking_failed] == ["order_id_unique"]
    outcome = result.outcome("order_id_unique")
    # each duplicated key with its rows, the most repeated first
    assert outcome.sample == [
        {"order_id": "shop:o5", "rows": 3},
        {"order_id": "shop:o2", "rows": 2},
    ]
    # two duplicated order_ids: key uniqueness counts duplicated keys
    assert outcome.observed == 2
    assert outcome.threshold == 0
    assert outcome.column == "order_id"


def test_null_key_blocks_with_identifying_columns(warehouse: Path, docs_dir: Path) -> None:
    sql(
        warehouse,
        """
        insert into marts.fct_orders values
            (null, 'shop', 'o9', 'C2', date '2024-03-02', false, 1.0, 0.00::decimal(18, 2))
    """,
    )
    result = run_suite(warehouse, "fct_orders", AS_OF, "run-null", docs_dir=docs_dir)
    assert [o.check for o in result.blocking_failed] == ["order_id_not_null"]
    outcome = result.outcome("order_id_not_null")
    assert outcome.observed == pytest.approx(5 / 6)
    assert outcome.sample == [{"source_system": "shop", "source_order_id": "o9"}]


def test_load_log_mismatch_blocks(warehouse: Path, docs_dir: Path) -> None:
    sql(warehouse, "update raw.load_log set rows_quarantined = 2 where entity = 'customers'")
    result = run_suite(warehouse, "raw_customers", AS_OF, "run-log", docs_dir=docs_dir)
    assert [o.check for o in result.blocking_failed] == ["load_log_rows_reconcile"]
    outcome = result.outcome("load_log_rows_reconcile")
    assert outcome.observed == 1  # one file breaks rows_read = loaded + quarantined (5 != 4 + 2)
    assert outcome.sample[0]["_source_file"] == "crm/2024-03-31/c.csv"


def test_revenue_reconciliation_mismatch_blocks(warehouse: Path, docs_dir: Path) -> None:
    sql(warehouse, "update marts.fct_orders set net_revenue = 99.00 where order_id = 'shop:o1'")
    result = run_suite(warehouse, "fct_orders", AS_OF, "run-rev", docs_dir=docs_dir)
    assert [o.check for o in result.blocking_failed] == ["net_revenue_reconciles_with_staging"]
    row = result.outcome("net_revenue_reconciles_with_staging").sample[0]
    # mart 99 + 100 + 0 + 30 + 20 = 249; staging 100 + 100 + 30 + 20 = 250 (o3 cancelled)
    assert float(row["mart_revenue"]) == 249.0
    assert float(row["staging_revenue"]) == 250.0


def test_low_completeness_records_a_target_miss_without_blocking(
    warehouse: Path, docs_dir: Path
) -> None:
    sql(warehouse, "update raw.customers set email = null where customer_ref in ('c1', 'c2')")
    gate = run_gate(warehouse, AS_OF, "run-target", docs_dir=docs_dir)
    assert gate.passed and gate.blocking_failed == []
    suite = next(s for s in gate.suites if s.suite == "raw_customers")
    outcome = suite.outcome("email_completeness")
    assert (outcome.success, outcome.severity) == (False, "target")
    assert outcome.observed == pytest.approx(2 / 4)
    assert outcome.threshold == pytest.approx(0.9)

    con = duckdb.connect(str(warehouse))
    rows = con.execute(
        """select severity, observed, threshold, success, details ->> 'unexpected_count'
           from quality.dq_results
           where run_id = 'run-target' and suite = 'raw_customers' and expectation = 'email_completeness'"""
    ).fetchall()
    total = con.execute(
        "select count(*) from quality.dq_results where run_id = 'run-target'"
    ).fetchone()
    con.close()
    assert rows == [("target", pytest.approx(0.5), pytest.approx(0.9), False, "2")]
    assert total[0] == sum(len(s.expectations) for s in load_suites())
    assert (docs_dir / "index.html").exists()


def test_profile_completeness_gate_is_the_kpi(warehouse: Path, docs_dir: Path) -> None:
    """metrics.md: wherever the product shows "profile completeness" for a target, it is
    the KPI profile_completeness (mean over the customers with a member profile), so the
    one profile-completeness gate reads the KPI as of D, never a mean over every customer
    of dim_customers (customers without a profile would count as 0)."""
    # 3 of 4 fields' worth over 4 member profiles: 0.75 < 0.9
    sql(warehouse, "update marts.fct_kpi_monthly set value = 0.75, numerator = 3.0 "
                   "where kpi = 'profile_completeness'")  # fmt: skip
    gate = run_gate(warehouse, AS_OF, "run-profile", docs_dir=docs_dir)
    gates = [
        (s.suite, o.check, o.success, o.observed)
        for s in gate.suites
        for o in s.outcomes
        if o.severity == "target" and "profile_completeness" in o.check
    ]
    # observed: the number of months below target (the month of D)
    assert gates == [("fct_kpi_monthly", "profile_completeness_at_target", False, 1.0)]


def test_future_timestamp_in_raw_is_a_target_miss(warehouse: Path, docs_dir: Path) -> None:
    # 2024-04-01 00:30 +08:00 = 2024-03-31 16:30 UTC is after D = 2024-03-31 (Shanghai)
    sql(warehouse, "update raw.orders set ordered_at = '2024-03-31 16:30' where order_id = 'o5'")
    result = run_suite(warehouse, "raw_orders", AS_OF, "run-future", docs_dir=docs_dir)
    outcome = result.outcome("ordered_at_not_in_future")
    assert (outcome.success, outcome.observed) == (False, 1)
    assert result.passed


def test_missing_table_blocks(warehouse: Path, docs_dir: Path) -> None:
    sql(warehouse, "drop table marts.rpt_kpi_review")
    result = run_suite(warehouse, "rpt_kpi_review", AS_OF, "run-missing", docs_dir=docs_dir)
    assert [o.check for o in result.blocking_failed] == ["table_exists"]


def test_dq_results_trend_appends(warehouse: Path, docs_dir: Path) -> None:
    run_suite(warehouse, "fct_orders", AS_OF, "run-1", docs_dir=docs_dir)
    run_suite(warehouse, "fct_orders", AS_OF, "run-2", docs_dir=docs_dir)
    con = duckdb.connect(str(warehouse))
    runs = con.execute(
        "select run_id, count(*) from quality.dq_results group by run_id order by run_id"
    ).fetchall()
    details = json.loads(
        con.execute(
            "select details from quality.dq_results where expectation = 'has_rows' limit 1"
        ).fetchone()[0]
    )
    con.close()
    n = len(next(s for s in load_suites() if s.name == "fct_orders").expectations)
    assert runs == [("run-1", n), ("run-2", n)]
    assert details["observed_value"] == 5


def test_an_audience_member_without_consent_blocks(warehouse: Path, docs_dir: Path) -> None:
    """C3 has no marketing consent (is_marketing_contactable false): putting C3 into an
    audience fails the blocking consent expectation and names the row."""
    sql(
        warehouse, "insert into marts.rpt_campaign_audiences values ('a3', 'winback_dormant', 'C3')"
    )
    gate = run_gate(warehouse, AS_OF, "run-consent", docs_dir=docs_dir)
    assert gate.blocking_failed == ["rpt_campaign_audiences.members_have_marketing_consent"]
    outcome = next(s for s in gate.suites if s.suite == "rpt_campaign_audiences").outcome(
        "members_have_marketing_consent"
    )
    assert "C3" in outcome.describe()


def test_recorded_gate_reuses_the_checks_of_the_same_run(warehouse: Path, docs_dir: Path) -> None:
    """The publication reuses the results its run's asset checks recorded, only when every
    suite was validated in that run as of D; a failing blocking check is reported, and a
    later pass of the same suite in the run (a retried check) replaces it."""
    from pipelines.quality.runner import recorded_gate

    names = [s.name for s in load_suites()]
    con = duckdb.connect(str(warehouse))
    try:
        assert recorded_gate(con, "run-a", AS_OF) is None  # no dq_results table yet
        for name in names[:-1]:
            run_suite(con, name, AS_OF, "run-a", docs_dir=docs_dir)
        assert recorded_gate(con, "run-a", AS_OF) is None  # one suite not validated
        run_suite(con, names[-1], AS_OF, "run-a", docs_dir=docs_dir)
        assert recorded_gate(con, "run-a", AS_OF) == []
        assert recorded_gate(con, "run-a", date(2024, 1, 1)) is None  # another D
        assert recorded_gate(con, "run-b", AS_OF) is None  # another run

        con.execute(
            "insert into marts.fct_orders values ('shop:o2', 'shop', 'o2', 'C2', "
            "date '2024-03-02', false, 2.0, 0.00::decimal(18, 2))"
        )
        run_suite(con, "fct_orders", AS_OF, "run-a", docs_dir=docs_dir)
        assert recorded_gate(con, "run-a", AS_OF) == ["fct_orders.order_id_unique"]
        con.execute(
            "delete from marts.fct_orders where rowid = "
            "(select max(rowid) from marts.fct_orders where order_id = 'shop:o2')"
        )
        run_suite(con, "fct_orders", AS_OF, "run-a", docs_dir=docs_dir)
        assert recorded_gate(con, "run-a", AS_OF) == []
    finally:
        con.close()


def test_unexpected_rows_queries_run_once_into_memory(warehouse: Path, docs_dir: Path) -> None:
    """GX runs an `unexpected_rows_query` twice (the rows, then their count): the runner runs
    it once into a table of an in-memory database that GX reads, dropped after the suite;
    the duplicated keys are still counted and named. It works the same on a connection with
    an open transaction (GX and the tables use cursors of their own) and on a read-only one,
    and nothing is written to the warehouse file."""
    import sqlalchemy
    from sqlalchemy import event

    from pipelines.quality.runner import ROWS_DATABASE, run_suites

    sql(
        warehouse,
        "insert into marts.fct_orders values "
        "('shop:o5', 'shop', 'o5', 'C4', date '2024-03-05', false, 1.0, 0.00::decimal(18, 2))",
    )
    tables_before = sql_rows(warehouse, "select table_name from duckdb_tables() order by 1")
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", record)
    try:
        results = [run_suite(warehouse, "fct_orders", AS_OF, "run-once", docs_dir=docs_dir)]
        for read_only in (False, True):
            con = duckdb.connect(str(warehouse), read_only=read_only)
            try:
                if not read_only:
                    con.execute("begin")  # left open by the caller
                results += run_suites(con, ["fct_orders"], AS_OF, "run-con", docs_dir=docs_dir,
                                      write=False).suites  # fmt: skip
                left = con.execute(
                    f"select count(*) from duckdb_tables() where database_name = '{ROWS_DATABASE}'"
                ).fetchone()[0]
            finally:
                con.close()
            assert left == 0
    finally:
        event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", record)
    for result in results:
        outcome = result.outcome("order_id_unique")
        assert not outcome.success and outcome.observed == 1
        assert outcome.sample == [{"order_id": "shop:o5", "rows": 2}]
        assert result.outcome("net_revenue_reconciles_with_staging").success
    # GX read the computed rows; it never ran the checks' own SQL
    gx_sql = "\n".join(statements)
    assert f'"{ROWS_DATABASE}".main."fct_orders__2"' in gx_sql
    assert "hash(order_id)" not in gx_sql and "int_order_lines_converted" not in gx_sql
    # the run recorded its results; no table of computed rows reached the file
    tables_after = sql_rows(warehouse, "select table_name from duckdb_tables() order by 1")
    assert [t for t in tables_after if t not in tables_before] == [("dq_results",)]


def test_unexpected_rows_query_left_to_gx_when_it_cannot_be_computed(
    warehouse: Path, docs_dir: Path, tmp_path: Path
) -> None:
    """A query that fails (here: a table that does not exist) is run by GX, which reports the
    error on its check; the suite's other checks are computed as usual."""
    suites = tmp_path / "expectations"
    suites.mkdir()
    spec = json.loads((Path(__file__).parents[1] / "expectations" / "fct_orders.json").read_text())
    for exp in spec["expectations"]:
        if exp["meta"].get("check") == "net_revenue_reconciles_with_staging":
            exp["kwargs"]["unexpected_rows_query"] = "select * from intermediate.no_such_table"
    (suites / "fct_orders.json").write_text(json.dumps(spec))
    from pipelines.quality.runner import run_suites

    broken = run_suites(warehouse, ["fct_orders"], AS_OF, "run-broken", docs_dir=docs_dir,
                        expectations_dir=suites).suites[0]  # fmt: skip
    outcome = broken.outcome("net_revenue_reconciles_with_staging")
    assert not outcome.success and "no_such_table" in outcome.details["error"]
    assert broken.outcome("order_id_unique").success
