"""End to end: the pandas reference (tests/reference/metrics/segments_history.py)
recomputes the segment movement from the landing files of the e2e backfill and must agree
with ``marts.fct_segment_transitions`` row for row (counts exactly, shares within 1e-9),
for the lifecycle stage, RF segment and VIP; and the stored history holds every customer
with an order by each complete month's last day. The quadrant's history is the warehouse's
own (the CLV scores exist only as of the night they were computed).
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from reference.metrics.segments_history import segment_history, transitions
from support.reference_demo import REL_TOL, prepared_reference

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def history(crm_home: Path) -> pd.DataFrame:
    return segment_history(prepared_reference(crm_home))


def _warehouse(home: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).df()


def test_reference_recomputes_the_segment_transitions(crm_home: Path, history) -> None:
    expected = transitions(history)
    wh = _warehouse(
        crm_home,
        "select month, segment_type, from_segment, to_segment, customers, share_of_from "
        "from marts.fct_segment_transitions where segment_type <> 'quadrant'",
    )
    key = ["month", "segment_type", "from_segment", "to_segment"]
    wh["month"] = pd.to_datetime(wh["month"])
    merged = expected.merge(wh, on=key, how="outer", suffixes=("_ref", "_wh"), indicator=True)
    missing = merged[merged["_merge"] != "both"]
    assert missing.empty, missing.head(20).to_string()
    assert (merged["customers_ref"] == merged["customers_wh"]).all()
    assert all(
        math.isclose(a, b, rel_tol=REL_TOL)
        for a, b in zip(merged["share_of_from_ref"], merged["share_of_from_wh"], strict=True)
    )


def test_the_history_counts_every_customer_with_an_order_by_each_month_end(
    crm_home: Path, history
) -> None:
    expected = history.groupby("month").size()
    wh = _warehouse(
        crm_home,
        "select month, count(*) as customers, count(quadrant) as with_quadrant "
        "from marts.fct_customer_segments_monthly group by month order by month",
    ).set_index("month")
    wh.index = pd.to_datetime(wh.index)
    assert wh["customers"].to_dict() == expected.to_dict()
    # the month of the last night (D = 2026-10-31, a month end) has its quadrants
    assert (
        wh.loc[pd.Timestamp("2026-10-01"), "with_quadrant"]
        == wh.loc[pd.Timestamp("2026-10-01"), "customers"]
    )
