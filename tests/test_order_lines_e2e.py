"""An order export without line ids, through the loader, dbt and the quality gate.

Two deliveries of a point-of-sale export (no line id: an order is a customer's purchases
of one day) are loaded by the loader, built by `dbt build` and checked by the fct_orders
suite. Every expected number is computed by hand from the rows below.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import duckdb
import pytest
from test_dbt_project import build_vars, run_dbt

from pipelines.ingest.engine import load_partitions
from pipelines.ingest.mapping import parse_mapping
from pipelines.lib.duck import connect_restricted, connect_warehouse
from pipelines.quality.runner import run_suites

pytestmark = pytest.mark.xdist_group("dbt_order_lines")

AS_OF = "2026-10-31"
POS = {
    "name": "pos",
    "entity": "orders",
    "version": "1",
    "files": "*.csv",
    "format": {"type": "csv"},
    "timezone": "Asia/Shanghai",
    "fields": {
        "order_id": {"expr": "cust || '-' || replace(day, '-', '')"},
        "ordered_at": {"column": "day", "formats": ["%Y-%m-%d"]},
        "status": {"expr": "'completed'"},
        "customer_ref": "cust",
        "quantity": "qty",
        "unit_price": "price",
    },
}
DELIVERIES = {
    # A bought twice on Oct 4 (two lines of order A-20261004), B once
    "2026-10-05": "cust,day,qty,price\nA,2026-10-04,1,10.00\nB,2026-10-04,2,5.00\n"
    "A,2026-10-04,3,7.50\n",
    # B's line again with a corrected price (superseded: 1), A's first line unchanged
    # (duplicate: 1)
    "2026-10-06": "cust,day,qty,price\nB,2026-10-04,2,6.00\nA,2026-10-04,1,10.00\n",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("pos_lines")
    db = work / "warehouse.duckdb"
    restricted = db.with_name(db.stem + "_restricted.duckdb")  # as run_dbt names it
    landing = work / "landing"
    for day, text in DELIVERIES.items():
        (landing / "pos" / day).mkdir(parents=True)
        (landing / "pos" / day / "pos.csv").write_text(text, encoding="utf-8")
    with connect_restricted(restricted) as con:
        result = load_partitions(con, parse_mapping(POS), landing, list(DELIVERIES))
        assert not result.failures
    with connect_warehouse(db, restricted):
        pass  # the warehouse's raw views over the restricted store
    # the two halves of the pipeline's build (tests/test_dbt_project.py)
    run_dbt(["build", "--exclude", "source:clv+", "--vars", build_vars(AS_OF)], work, db)
    run_dbt(["build", "--select", "source:clv+", "--vars", build_vars(AS_OF)], work, db)
    return {"work": work, "db": db, "restricted": restricted}


def gate(built: dict, run_id: str):
    with connect_warehouse(built["db"], built["restricted"]) as con:
        return run_suites(
            con, ["fct_orders"], date.fromisoformat(AS_OF), run_id, docs_dir=built["work"] / "docs"
        ).suites[0]


def test_two_purchases_of_one_customer_and_day_are_two_order_lines(built):
    with duckdb.connect(str(built["db"]), read_only=True) as con:
        lines = con.execute(
            "select order_id, line_no, quantity, unit_price_local, net_revenue "
            "from marts.fct_order_lines order by order_id, line_no"
        ).fetchall()
        revenue = con.execute("select sum(net_revenue) from marts.fct_orders").fetchone()[0]
    assert lines == [
        ("pos:A-20261004", 1, Decimal("1.0000"), Decimal("10.00"), Decimal("10.00")),
        ("pos:A-20261004", 2, Decimal("3.0000"), Decimal("7.50"), Decimal("22.50")),
        ("pos:B-20261004", 1, Decimal("2.0000"), Decimal("6.00"), Decimal("12.00")),
    ]
    assert revenue == Decimal("44.50")  # 1 × 10.00 + 3 × 7.50 + 2 × 6.00


def test_the_reconciliation_counts_superseded_rows_and_catches_a_lost_row(built):
    with duckdb.connect(str(built["restricted"]), read_only=True) as con:
        logged = con.execute(
            "select _delivery_date::varchar, rows_loaded, rows_duplicate, rows_superseded "
            "from raw.load_log order by 1"
        ).fetchall()
    # 5 raw rows = 3 fact rows + 1 duplicate + 1 superseded, both counted on the later file
    assert logged == [("2026-10-05", 3, 0, 0), ("2026-10-06", 2, 1, 1)]
    result = gate(built, "run-pos-green")
    assert result.outcome("order_lines_reconcile_with_raw").success
    assert result.outcome("net_revenue_reconciles_with_staging").success

    with duckdb.connect(str(built["db"])) as con:  # a fact row lost
        con.execute("delete from marts.fct_order_lines where order_id = 'pos:B-20261004'")
    result = gate(built, "run-pos-lost")
    assert [o.check for o in result.blocking_failed] == ["order_lines_reconcile_with_raw"]
    assert result.outcome("order_lines_reconcile_with_raw").sample == [
        {"raw_rows": 5, "duplicates_and_superseded": 2, "fact_rows": 2, "rows_unaccounted": 1}
    ]
