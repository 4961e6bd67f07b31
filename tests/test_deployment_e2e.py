"""End to end: a deployment with only an orders export, in US dollars, with its own VIP
threshold (`crm run` in a subprocess, the real night: ingest, dbt, CLV, quality gates,
publication).

The landing data is written here by hand (one delivery of the demo shop_orders format),
so that every published number below is computed by hand:

| customer | order | date | lines | currency | net, local | net, USD (rate_to_cny 7.1) |
|---|---|---|---|---|---|---|
| M001 | O1 | 2026-10-05 | 2 x 5,000 - 200 | CNY | 9,800 | 1,380.28 |
| M002 | O2 | 2026-10-10 | 1 x 6,000 | CNY | 6,000 | 845.07 |
| M002 | O3 | 2026-10-11 | 1 x 100 | USD | 100 | 100.00 |
| M003 | O4 | 2026-09-15 | 1 x 500 | USD | 500 | 500.00 |
| M003 | O5 | 2026-10-20 | 1 x 4,000 - 100 | CNY | 3,900 | 549.30 |
| M004 | O6 | 2026-10-25 | 1 x 10,000 (cancelled) | USD | - | - |
| M005 | O7 | 2026-10-28 | 3 x 300 | EUR (7.8) | 900 | 988.73 |

With CRM_VIP_REVENUE_365D=1000 (USD), the VIPs as of D = 2026-10-31 are M001 (1,380.28)
and M003 (1,049.30): 2 (M005 at 988.73 and M002 at 945.07 are below; the default 50,000
would give none). October's net revenue: 1,380.28 + 845.07 + 100 + 549.30 + 988.73 USD.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_MAPPINGS = REPO / "pipelines" / "ingest" / "mappings" / "demo"
D = "2026-10-31"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e_orders_only")]

HEADER = (
    "order_no,line_no,order_time,status,channel,member_id,buyer_nick,buyer_name,buyer_phone,"
    "buyer_email,sku,item_name,category,qty,unit_price,discount,refund_amt,currency"
)
# order, customer, time, status, qty, unit price, discount, currency
ORDERS = [
    ("O1", "M001", "2026-10-05 10:00:00", "DONE", 2, "5000.00", "200.00", ""),
    ("O2", "M002", "2026-10-10 12:00:00", "DONE", 1, "6000.00", "0", "CNY"),
    ("O3", "M002", "2026-10-11 09:30:00", "PAID", 1, "100.00", "0", "USD"),
    ("O4", "M003", "2026-09-15 15:30:00", "DONE", 1, "500.00", "0", "USD"),
    ("O5", "M003", "2026-10-20 20:00:00", "SHIPPED", 1, "4000.00", "100.00", "CNY"),
    ("O6", "M004", "2026-10-25 11:00:00", "CANCEL", 1, "10000.00", "0", "USD"),
    ("O7", "M005", "2026-10-28 08:15:00", "DONE", 3, "300.00", "0", "EUR"),
]
RATE_TO_CNY = {"CNY": Decimal("1"), "USD": Decimal("7.1"), "EUR": Decimal("7.8")}


def _net_usd(qty: int, price: str, discount: str, currency: str) -> Decimal:
    local = qty * Decimal(price) - Decimal(discount)
    return local * RATE_TO_CNY[currency or "CNY"] / RATE_TO_CNY["USD"]


@pytest.fixture(scope="module")
def orders_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("orders_only")
    mappings = home / "mappings"
    mappings.mkdir()
    shutil.copy(DEMO_MAPPINGS / "shop_orders.yaml", mappings)
    delivery = home / "landing" / "shop_orders" / D
    delivery.mkdir(parents=True)
    lines = [HEADER]
    for order, member, at, status, qty, price, discount, currency in ORDERS:
        lines.append(
            f"{order},1,{at},{status},WEB,{member},,,,,SKU1,item,shoes,{qty},{price},"
            f"{discount},0,{currency}"
        )
    (delivery / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = os.environ | {
        "CRM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "CRM_MAPPINGS_DIR": str(mappings),
        "CRM_CURRENCY": "USD",
        "CRM_VIP_REVENUE_365D": "1000",
    }
    env.pop("CRM_LANDING_DIR", None)
    env.pop("CRM_MEMBER_SYSTEM", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--date", D],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    return home, output


def test_an_orders_only_deployment_publishes(orders_only: tuple[Path, str]) -> None:
    home, _ = orders_only
    serving = home / "serving"
    for mart in ("fct_orders", "dim_customers", "fct_kpi_monthly", "rpt_kpi_review"):
        assert (serving / "parquet" / f"{mart}.parquet").stat().st_size > 0
        assert (serving / "tableau" / f"{mart}.hyper").stat().st_size > 0
    assert (home / "reports" / "latest" / "kpi_review.en.html").exists()
    assert (home / "reports" / "latest" / "kpi_review.zh.html").exists()
    with duckdb.connect(str(serving / "serving.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from fct_orders").fetchone()[0] == 7
        assert con.execute("select count(*) from fct_service_tickets").fetchone()[0] == 0


def test_checks_of_entities_without_a_mapping_are_reported_skipped(
    orders_only: tuple[Path, str],
) -> None:
    home, output = orders_only
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select suite, expectation, success, details from quality.dq_results"
        ).fetchall()
    skipped = {
        (suite, check) for suite, check, _, details in rows if json.loads(details).get("skipped")
    }
    suites = {suite for suite, _ in skipped}
    assert suites == {
        "fct_agent_daily",
        "fct_campaign_performance",
        "fct_service_tickets",
        "fct_ticket_backlog_daily",
        "fct_social_interactions",
        "raw_customers",
        "raw_service_events",
        "raw_social_interactions",
    }
    # the blocking checks that failed before on the absent facts are skipped, not passed
    assert ("fct_service_tickets", "has_rows") in skipped
    assert ("fct_service_tickets", "created_date_not_after_as_of") in skipped
    assert ("fct_social_interactions", "has_rows") in skipped
    evaluated = {
        suite for suite, check, _, details in rows if not json.loads(details).get("skipped")
    }
    assert {"fct_orders", "raw_orders", "dim_customers", "fct_kpi_monthly"} <= evaluated
    assert "no source mapping for service_events in this deployment" in output


def test_amounts_and_their_unit_follow_the_reporting_currency(
    orders_only: tuple[Path, str],
) -> None:
    home, _ = orders_only
    october = sum(
        _net_usd(qty, price, discount, currency)
        for order, _, at, status, qty, price, discount, currency in ORDERS
        if at.startswith("2026-10") and status != "CANCEL"
    )
    with duckdb.connect(str(home / "serving" / "serving.duckdb"), read_only=True) as con:
        units = dict(
            con.execute(
                "select kpi, any_value(unit) from fct_kpi_monthly "
                "where kpi in ('net_revenue', 'aov', 'orders') group by kpi"
            ).fetchall()
        )
        value, orders = con.execute(
            "select max(value) filter (where kpi = 'net_revenue'), "
            "max(value) filter (where kpi = 'orders') from fct_kpi_monthly "
            "where month = date '2026-10-01' and segment = 'all'"
        ).fetchone()
    assert units == {"net_revenue": "USD", "aov": "USD", "orders": "orders"}
    assert orders == 5
    # each line is rounded to cents after conversion: at most half a cent each
    assert abs(Decimal(str(value)) - october) <= Decimal("0.025")


def test_the_vip_threshold_is_a_setting(orders_only: tuple[Path, str]) -> None:
    home, _ = orders_only
    expected_vips = 2  # M001 and M003 (module docstring)
    with duckdb.connect(str(home / "serving" / "serving.duckdb"), read_only=True) as con:
        vips = con.execute("select count(*) from dim_customers where is_vip").fetchone()[0]
        kpi = con.execute(
            "select value from fct_kpi_monthly where kpi = 'vip_customers' "
            "and month = date '2026-10-01' and segment = 'all'"
        ).fetchone()[0]
    assert vips == expected_vips
    assert kpi == expected_vips
