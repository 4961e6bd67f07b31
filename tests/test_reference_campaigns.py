"""End to end: the pandas reference (tests/reference/metrics/campaigns.py) recomputes every
row of ``marts.fct_campaign_performance`` from the landing files of the e2e backfill: the
same (campaign, segment) rows, counts exactly, rates, amounts and confidence bounds within
1e-9 relative (NULL on both sides is equal). The demo's win-back campaigns keep a random
hold-out, so their dormant rows have a hold-out and an uplift.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from reference.metrics.campaigns import campaign_performance
from support.reference_demo import prepared_reference, same

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def reference(crm_home: Path) -> pd.DataFrame:
    return campaign_performance(prepared_reference(crm_home))


@pytest.fixture(scope="module")
def warehouse(crm_home: Path) -> pd.DataFrame:
    path = crm_home / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        df = con.sql("select * from marts.fct_campaign_performance").df()
    df["campaign_date"] = pd.to_datetime(df["campaign_date"]).dt.date
    return df


def test_reference_recomputes_fct_campaign_performance(reference, warehouse) -> None:
    assert set(warehouse["campaign_segment_id"]) == set(reference["campaign_segment_id"])
    columns = [c for c in reference.columns if c not in ("campaign_segment_id",)]
    merged = warehouse.merge(reference, on="campaign_segment_id", suffixes=("_wh", "_ref"))
    bad = [
        (row["campaign_segment_id"], c, row[f"{c}_wh"], row[f"{c}_ref"])
        for _, row in merged.iterrows()
        for c in columns
        if not (
            row[f"{c}_wh"] == row[f"{c}_ref"]
            if c in ("campaign_id", "segment", "campaign_date", "is_small_base")
            else same(row[f"{c}_wh"], row[f"{c}_ref"])
        )
    ]
    assert bad == [], f"{len(bad)} values disagree, e.g. {bad[:10]}"


def test_the_demo_has_attributed_orders_and_a_winback_uplift(warehouse) -> None:
    every = warehouse[warehouse["segment"].eq("all")]
    assert every["attributed_orders"].sum() > 0 and every["pushes"].sum() > 0
    winback = warehouse[
        warehouse["campaign_id"].str.endswith("-WB") & warehouse["segment"].eq("dormant")
    ]
    assert len(winback) and (winback["holdout_customers"] > 0).all()
    assert winback["uplift"].notna().all()
    assert (winback["reactivated_customers"] > 0).any()
