"""Cohort retention and products bought together (docs/warehouse.md "Cohorts" and
"Products"), written from the definitions, not from the SQL:

- ``customer_cohorts``: the shape of ``marts.fct_customer_cohorts``. A customer's cohort is
  the business month of her first order not cancelled (earliest business date, then time,
  then order key) and that order's channel, plus the row 'all'; for months 0..24 after the
  cohort month, up to the month of D: customers ordering, their share, orders, net revenue,
  cumulative net revenue in total and per customer of the cohort.
- ``product_pairs``: the shape of ``marts.fct_product_pairs``: baskets = orders not
  cancelled dated in [D - window, D], with the distinct products of their lines not
  cancelled; per ordered pair found in at least ``min_baskets`` baskets: support,
  confidence, lift and the rank in the product's category.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from reference.metrics.customers import valid_orders
from reference.metrics.staging import Prepared

COHORT_MAX_MONTHS = 24
PAIR_WINDOW_DAYS = 364
PAIR_MIN_BASKETS = 5


def _month_index(ts: pd.Series) -> pd.Series:
    return ts.dt.year * 12 + ts.dt.month - 1


def customer_cohorts(p: Prepared, max_months: int = COHORT_MAX_MONTHS) -> pd.DataFrame:
    """One row per cohort month x first-order channel (and 'all') x months since first."""
    d = pd.Timestamp(p.config.as_of)
    orders = valid_orders(p)
    orders = orders[orders["customer_key"].notna() & (orders["order_date"] <= d)].copy()
    orders["month_index"] = _month_index(orders["order_date"])
    first = orders.sort_values(
        ["order_date", "ordered_at", "order_key"], na_position="last", kind="stable"
    ).drop_duplicates("customer_key")
    members = first[["customer_key", "month_index", "channel"]].rename(
        columns={"month_index": "cohort_index", "channel": "first_order_channel"}
    )
    members["first_order_channel"] = members["first_order_channel"].fillna("unknown")
    members = pd.concat([members, members.assign(first_order_channel="all")], ignore_index=True)
    activity = orders.merge(members, on="customer_key")
    activity["months_since_first"] = activity["month_index"] - activity["cohort_index"]
    keys = ["cohort_index", "first_order_channel", "months_since_first"]
    g = activity.groupby(keys)
    active = pd.DataFrame(
        {
            "active_customers": g["customer_key"].nunique(),
            "orders": g.size(),
            "net_cents": g["net_cents"].sum(),
        }
    )
    sizes = members.groupby(["cohort_index", "first_order_channel"]).size()
    d_index = d.year * 12 + d.month - 1
    rows = []
    for (cohort, channel), size in sizes.items():
        cumulative = 0
        for m in range(0, min(max_months, d_index - cohort) + 1):
            a = active.loc[(cohort, channel, m)] if (cohort, channel, m) in active.index else None
            active_n = int(a["active_customers"]) if a is not None else 0
            n_orders = int(a["orders"]) if a is not None else 0
            cents = int(a["net_cents"]) if a is not None else 0
            cumulative += cents
            cohort_month = date(cohort // 12, cohort % 12 + 1, 1)
            activity_index = cohort + m
            activity_month = date(activity_index // 12, activity_index % 12 + 1, 1)
            next_month = date((activity_index + 1) // 12, (activity_index + 1) % 12 + 1, 1)
            rows.append(
                {
                    "cohort_month_id": f"{cohort_month:%Y-%m}|{channel}|{m}",
                    "cohort_month": cohort_month,
                    "first_order_channel": channel,
                    "months_since_first": m,
                    "activity_month": activity_month,
                    "is_month_complete": next_month - timedelta(days=1) <= d.date(),
                    "cohort_customers": int(size),
                    "active_customers": active_n,
                    "active_share": active_n / size,
                    "orders": n_orders,
                    "net_revenue": cents / 100,
                    "cumulative_net_revenue": cumulative / 100,
                    "cumulative_net_revenue_per_customer": round(cumulative / 100 / size, 2),
                }
            )
    return pd.DataFrame(rows)


def product_pairs(
    p: Prepared, window_days: int = PAIR_WINDOW_DAYS, min_baskets: int = PAIR_MIN_BASKETS
) -> pd.DataFrame:
    """One row per ordered product pair bought together in >= min_baskets baskets."""
    d = pd.Timestamp(p.config.as_of)
    lines = p.order_lines
    keep = (
        lines["product_id"].notna()
        & ~lines["status"].eq("cancelled")
        & (lines["ordered_date"] <= d)
        & (lines["ordered_date"] >= d - pd.Timedelta(days=window_days))
    )
    basket = lines.loc[keep, ["order_key", "product_id"]].drop_duplicates()
    n = basket["order_key"].nunique()
    per_product = basket.groupby("product_id").size()
    pairs = basket.merge(basket, on="order_key", suffixes=("", "_paired"))
    pairs = pairs[pairs["product_id"] != pairs["product_id_paired"]]
    counts = pairs.groupby(["product_id", "product_id_paired"]).size().rename("pair_baskets")
    out = counts[counts >= min_baskets].reset_index()
    out = out.rename(columns={"product_id_paired": "paired_product_id"})
    out["baskets"] = n
    out["product_baskets"] = out["product_id"].map(per_product).astype(int)
    out["paired_product_baskets"] = out["paired_product_id"].map(per_product).astype(int)
    out["support"] = out["pair_baskets"] / n
    out["confidence"] = out["pair_baskets"] / out["product_baskets"]
    # lift = confidence / (paired baskets / n), computed as one quotient of integers: the
    # same double both ways (so a pair's two directions tie exactly in the ranks)
    out["lift"] = (out["pair_baskets"] * n) / (
        out["product_baskets"] * out["paired_product_baskets"]
    )
    category = _latest_category(p)
    out["product_category"] = out["product_id"].map(category).fillna("unknown")
    out = out.sort_values(
        ["product_category", "lift", "pair_baskets", "product_id", "paired_product_id"],
        ascending=[True, False, False, True, True],
        kind="stable",
    )
    out["category_pair_rank"] = out.groupby("product_category").cumcount() + 1
    out["product_pair_id"] = out["product_id"] + "|" + out["paired_product_id"]
    return out.reset_index(drop=True)


def _latest_category(p: Prepared) -> pd.Series:
    """Each product's category on its latest line not cancelled dated up to D (by date)."""
    d = pd.Timestamp(p.config.as_of)
    lines = p.order_lines
    lines = lines[
        lines["product_id"].notna()
        & lines["category"].notna()
        & ~lines["status"].eq("cancelled")
        & (lines["ordered_date"] <= d)
    ]
    latest = lines.sort_values("ordered_date", kind="stable").drop_duplicates(
        "product_id", keep="last"
    )
    return latest.set_index("product_id")["category"]


__all__ = ["customer_cohorts", "product_pairs"]
