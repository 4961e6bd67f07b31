"""End to end: the pandas reference (tests/reference/metrics/cohorts.py) recomputes the
cohort retention and the products bought together from the landing files of the e2e
backfill and must agree with the warehouse:

- every row of ``marts.fct_customer_cohorts`` (counts exactly, the share within 1e-9,
  amounts within a cent);
- every row of ``marts.fct_product_pairs`` (counts and ranks exactly, support, confidence
  and lift within 1e-9), and the generator's affinities show: the pairs of
  vocab.AFFINITIES have a lift above 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from reference.metrics.cohorts import customer_cohorts, product_pairs
from support.reference_demo import REL_TOL, prepared_reference

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def prepared(crm_home: Path):
    return prepared_reference(crm_home)


def _warehouse(home: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).df()


def _compare(wh: pd.DataFrame, ref: pd.DataFrame, key: str, exact, close, cents) -> list:
    merged = wh.merge(ref, on=key, suffixes=("_wh", "_ref"))
    bad = []
    for _, row in merged.iterrows():
        for c in exact:
            if row[f"{c}_wh"] != row[f"{c}_ref"]:
                bad.append((row[key], c, row[f"{c}_wh"], row[f"{c}_ref"]))
        for c in close:
            if not math.isclose(float(row[f"{c}_wh"]), float(row[f"{c}_ref"]), rel_tol=REL_TOL):
                bad.append((row[key], c, row[f"{c}_wh"], row[f"{c}_ref"]))
        for c in cents:
            # sums of cents are exact; a per-customer mean is rounded to the cent on both
            # sides (a half cent may round either way)
            if abs(float(row[f"{c}_wh"]) - float(row[f"{c}_ref"])) > 0.0101:
                bad.append((row[key], c, row[f"{c}_wh"], row[f"{c}_ref"]))
    return bad


def test_reference_recomputes_fct_customer_cohorts(crm_home: Path, prepared) -> None:
    ref = customer_cohorts(prepared)
    wh = _warehouse(crm_home, "select * from marts.fct_customer_cohorts")
    assert len(ref) > 100, "the demo has a year of history: cohorts of 13+ months"
    assert set(wh["cohort_month_id"]) == set(ref["cohort_month_id"])
    wh["cohort_month"] = pd.to_datetime(wh["cohort_month"]).dt.date
    wh["activity_month"] = pd.to_datetime(wh["activity_month"]).dt.date
    bad = _compare(
        wh,
        ref,
        "cohort_month_id",
        exact=["cohort_month", "activity_month", "is_month_complete", "cohort_customers",
               "active_customers", "orders"],
        close=["active_share"],
        cents=["net_revenue", "cumulative_net_revenue", "cumulative_net_revenue_per_customer"],
    )  # fmt: skip
    assert bad == [], f"{len(bad)} values disagree, e.g. {bad[:10]}"
    # retention decays: after month 0 (share 1) a cohort's share is below 1
    later = wh[wh["months_since_first"].gt(0) & wh["first_order_channel"].eq("all")]
    assert later["active_share"].lt(1).all() and later["active_share"].gt(0).any()


def test_reference_recomputes_fct_product_pairs(crm_home: Path, prepared) -> None:
    from pipelines.generate import vocab

    ref = product_pairs(prepared)
    wh = _warehouse(crm_home, "select * from marts.fct_product_pairs")
    assert len(ref) > 0
    assert set(wh["product_pair_id"]) == set(ref["product_pair_id"])
    bad = _compare(
        wh,
        ref,
        "product_pair_id",
        exact=["product_category", "baskets", "product_baskets", "paired_product_baskets",
               "pair_baskets", "category_pair_rank"],
        close=["support", "confidence", "lift"],
        cents=[],
    )  # fmt: skip
    assert bad == [], f"{len(bad)} values disagree, e.g. {bad[:10]}"
    # the generator's affinities: their pairs are published with a lift well above 1
    names = _warehouse(crm_home, "select product_name, product_id from marts.dim_products")
    by_name = dict(zip(names["product_name"], names["product_id"], strict=True))
    lifts = wh.set_index("product_pair_id")["lift"]
    found = {
        (a, b): lifts[f"{by_name[a]}|{by_name[b]}"]
        for a, b in vocab.AFFINITIES
        if f"{by_name.get(a)}|{by_name.get(b)}" in lifts.index
    }
    assert len(found) >= len(vocab.AFFINITIES) // 2, found
    assert min(found.values()) > 2, found
