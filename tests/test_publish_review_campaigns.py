"""The review's "Campaigns" table (pipelines/publish/review_campaigns.py): the latest
campaigns first, their `all` rows and the rows of the segments they targeted, figures as the
reader sees them."""

from __future__ import annotations

from datetime import date

import duckdb

from pipelines.publish.review_campaigns import campaigns_section, load_campaigns

COLUMNS = (
    "campaign_id varchar, campaign_date date, segment varchar, reached_customers bigint, "
    "response_rate double, attributed_orders bigint, attributed_net_revenue decimal(18,2), "
    "conversion_rate double, holdout_customers bigint, holdout_conversion_rate double, "
    "uplift double, uplift_ci_low double, uplift_ci_high double, is_small_base boolean, "
    "dormant_reached_customers bigint, reactivated_customers bigint, reactivation_rate double, "
    "is_complete boolean"
)


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.sql("create schema marts")
    con.sql(f"create table marts.fct_campaign_performance ({COLUMNS})")
    con.sql("""
        insert into marts.fct_campaign_performance values
        ('CP20261001-WB', '2026-10-01', 'all', 400, 0.25, 30, 4567.80, 0.20, 380, 0.1,
         0.1, 0.05, 0.15, false, 400, 80, 0.2, true),
        ('CP20261001-WB', '2026-10-01', 'dormant', 400, 0.25, 30, 4567.80, 0.20, 380, 0.1,
         0.1, 0.05, 0.15, false, 400, 80, 0.2, true),
        ('CP20261001-WB', '2026-10-01', 'active', 3, 0.0, 0, 0, 0.0, 10, 0.0,
         0.0, 0.0, 0.0, true, 0, 0, null, true),
        ('CP20261020-NEWS', '2026-10-20', 'all', 20, 0.5, 1, 99.00, 0.05, 0, null,
         null, null, null, true, 0, 0, null, false),
        ('CP20261020-NEWS', '2026-10-20', 'active', 12, 0.5, 1, 99.00, 0.05, 0, null,
         null, null, null, true, 0, 0, null, false),
        ('CP20261020-NEW', '2026-10-20', 'all', 100, 0.3, 9, 900.00, 0.12, 40, 0.05,
         0.07, -0.02, 0.16, false, 0, 0, null, false),
        ('CP20261020-NEW', '2026-10-20', 'new', 96, 0.3, 9, 900.00, 0.12, 40, 0.05,
         0.07, -0.02, 0.16, false, 0, 0, null, false),
        ('CP20261020-NEW', '2026-10-20', 'active', 4, 0.0, 0, 0, 0.0, 9, 0.0,
         0.0, 0.0, 0.0, true, 0, 0, null, false),
        ('CP20261105-NEWS', '2026-11-05', 'all', 20, 0.5, 1, 99.00, 0.05, 0, null,
         null, null, null, true, 0, 0, null, false)
    """)  # fmt: skip
    return con


def test_latest_campaigns_first_with_all_and_targeted_rows_up_to_d() -> None:
    rows = load_campaigns(_con(), '"marts"."fct_campaign_performance"', date(2026, 10, 31))
    # the campaign of 11-05 is after D; a segment row shows when it holds >= 80 % of the
    # campaign's reach (dormant 400 of 400, new 96 of 100), not otherwise (active 12 of 20)
    assert [(r["campaign_id"], r["segment"]) for r in rows] == [
        ("CP20261020-NEWS", "all"),
        ("CP20261020-NEW", "all"),
        ("CP20261020-NEW", "new"),
        ("CP20261001-WB", "all"),
        ("CP20261001-WB", "dormant"),
    ]
    assert load_campaigns(_con(), None, date(2026, 10, 31)) == []


def test_figures_as_shown() -> None:
    rows = load_campaigns(_con(), '"marts"."fct_campaign_performance"', date(2026, 10, 31))
    section = campaigns_section(rows, "en", 30)
    news, _, new, _, dormant = section["rows"]
    # uplift 0.1 = +10.0 pp, interval [0.05, 0.15]; 80 of 400 dormant reactivated = 20.0%
    assert dormant["uplift"] == "+10.0 pp [+5.0, +15.0]"
    assert dormant["holdout"] == "10.0% (n = 380)"
    assert dormant["reactivation"] == "80 / 400 (20.0%)"
    assert dormant["revenue"] == "4,568" and not dormant["small_base"]
    assert not dormant["provisional"]
    # no hold-out: no uplift, nothing greyed; its 30 days are not over
    assert news["uplift"] == "–" and news["holdout"] == "–" and news["reactivation"] == "–"
    assert news["provisional"] and not news["small_base"]
    assert "30 customers" in section["explain"]
    zh = campaigns_section(rows, "zh", 30)
    assert new["segment_name"] == "New" and new["uplift"] == "+7.0 pp [-2.0, +16.0]"
    assert zh["rows"][4]["segment_name"] == "沉睡" and zh["rows"][2]["segment_name"] == "新客"
    assert zh["rows"][4]["uplift"] == "+10.0 个百分点 [+5.0, +15.0]"
