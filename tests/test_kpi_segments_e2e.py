"""End to end: per-segment customer KPIs on a real dbt build of generated data (fixture
`crm_home`, tests/conftest.py) follow metrics.md, "Segments" and repurchase_rate.

The VIP memberships are recomputed here from the published orders (marts.fct_orders):
VIP as of a date = net revenue of the orders dated in [date - 364, date] >= the VIP
threshold (dbt var vip_revenue_365d). A flow KPI's VIP row takes the VIPs as of start(M),
so a customer never enters it by the purchase being measured; vip_customers and the VIP
row of active_customers take the VIPs as of end(M)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

REPO = Path(__file__).resolve().parents[1]
VIP_REVENUE_365D = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"][
    "vip_revenue_365d"
]

# Per month, the customers VIP as of start(M) and as of end(M), and whether they order in
# M, from the published orders and months only.
VIP_MONTHS = """
with
months as (
    -- one row per month (completeness is per KPI: repurchase_rate's, maturity 0)
    select month, start_date, end_date, is_complete
    from marts.fct_kpi_monthly
    where kpi = 'repurchase_rate' and segment = 'all'
),
orders as (
    select customer_id, order_date, net_revenue
    from marts.fct_orders
    where customer_id is not null and not is_cancelled
),
vip_at as (
    select months.month, 'start' as as_of, orders.customer_id
    from months inner join orders
        on orders.order_date between months.start_date - 364 and months.start_date
    group by all
    having sum(orders.net_revenue) >= $threshold
    union all
    select months.month, 'end' as as_of, orders.customer_id
    from months inner join orders
        on orders.order_date between months.end_date - 364 and months.end_date
    group by all
    having sum(orders.net_revenue) >= $threshold
),
buyers as (
    select distinct months.month, orders.customer_id
    from months inner join orders
        on orders.order_date between months.month and months.end_date
),
members as (
    select
        vip_at.month,
        vip_at.customer_id,
        bool_or(vip_at.as_of = 'start') as is_vip_at_start,
        bool_or(vip_at.as_of = 'end') as is_vip_at_end,
        bool_or(buyers.customer_id is not null) as is_buying
    from vip_at
    left join buyers on vip_at.month = buyers.month and vip_at.customer_id = buyers.customer_id
    group by vip_at.month, vip_at.customer_id
)
select
    months.month,
    months.is_complete,
    count(*) filter (is_vip_at_start) as vip_at_start,
    count(*) filter (is_vip_at_start and is_buying) as vip_at_start_buying,
    count(*) filter (is_vip_at_end) as vip_at_end,
    count(*) filter (is_vip_at_end and is_buying and not is_vip_at_start) as entering_by_purchase
from months
left join members on months.month = members.month
group by months.month, months.is_complete
order by months.month
"""


def _published(con: duckdb.DuckDBPyConnection, segment: str, kpi: str) -> dict:
    rows = con.execute(
        "select month, value, numerator, denominator from marts.fct_kpi_monthly "
        "where segment = ? and kpi = ?",
        [segment, kpi],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_vip_rows_take_the_segment_as_of_the_month_start(crm_home: Path) -> None:
    db = crm_home / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        months = con.execute(VIP_MONTHS, {"threshold": VIP_REVENUE_365D}).fetchall()
        purchasing = _published(con, "vip", "purchasing_customers")
        repurchase = _published(con, "vip", "repurchase_rate")
        active = _published(con, "vip", "active_customers")
        vip_customers = _published(con, "all", "vip_customers")
    assert len(months) >= 3, months
    entering = 0
    for month, _complete, at_start, start_buying, at_end, entering_by_purchase in months:
        # flow KPIs: the VIPs as of start(M); a month without VIP at start has no flow row
        assert purchasing.get(month, (0.0,))[0] == start_buying, month
        if at_start:
            # cohort repurchase: of the VIPs at start(M) (all had ordered), those who order
            assert repurchase[month][1:] == (start_buying, at_start), month
        else:
            assert month not in repurchase, month
        # point in time: the VIPs as of end(M)
        assert vip_customers[month][0] == at_end, month
        if at_end:
            assert active[month][0] <= at_end, month
        # VIPs at end(M) who order in M but were not VIP at start(M): they became VIP by
        # the purchase being measured and are in no flow row (the equality above)
        entering += entering_by_purchase
    # the data set has customers entering VIP by a purchase of the month, so the check
    # above tells the two definitions apart
    assert entering > 0
    complete = [
        repurchase[m][0] for m, is_complete, at_start, *_ in months if is_complete and at_start
    ]
    assert complete, "no complete month with VIPs at its start"
    # the VIP repurchase rate is a rate that moves, not 1.0 by construction
    assert any(value < 1.0 for value in complete), complete
