"""The segment history and its movement, recomputed in pandas (docs/warehouse.md, "Segment
history"): each customer's lifecycle stage, RF segment and VIP flag as of the last day of
every complete month, from the month of the customer's first order, and the from -> to
counts month over month per segment type (``marts.fct_segment_transitions``).

The quadrant is left out: the CLV scores behind it exist only as of the night they were
computed, so only the warehouse keeps its history."""

from __future__ import annotations

from datetime import date

import pandas as pd

from reference.metrics.customers import lifecycle_stage, order_summary, rfm_scores, valid_orders
from reference.metrics.months import month_ends
from reference.metrics.staging import Prepared

SEGMENT_TYPES = ("lifecycle_stage", "rfm_segment", "vip")


def segment_history(p: Prepared) -> pd.DataFrame:
    """One row per customer with an order on or before end(M) and complete month M:
    customer_key, month (first day), lifecycle_stage, rfm_segment, vip."""
    orders = valid_orders(p)
    orders = orders[orders["customer_key"].notna()]
    if orders.empty:
        return pd.DataFrame(columns=["customer_key", "month", *SEGMENT_TYPES])
    first = pd.Timestamp(orders["order_date"].min()).date()
    parts = []
    for month, _start, end, complete in month_ends(first, p.config.as_of):
        if not complete:
            continue
        # the customers with an order on or before end(M), as dim_customers as of end(M)
        state = order_summary(orders, end, p.config)
        state["recency_days"] = (pd.Timestamp(end) - state["last_order_date"]).dt.days
        state["is_vip"] = state["net_revenue_365d"] >= p.config.vip_revenue_365d
        state["lifecycle_stage"] = lifecycle_stage(state, end, p.config)
        state = state.join(rfm_scores(state, p.config.rfm_buckets))
        parts.append(
            pd.DataFrame(
                {
                    "customer_key": state.index,
                    "month": pd.Timestamp(month),
                    "lifecycle_stage": state["lifecycle_stage"].to_numpy(),
                    "rfm_segment": state["rfm_segment"].fillna("unsegmented").to_numpy(),
                    "vip": state["is_vip"].map({True: "vip", False: "not_vip"}).to_numpy(),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def transitions(history: pd.DataFrame) -> pd.DataFrame:
    """month, segment_type, from_segment, to_segment, customers: each customer of M by its
    segment in M - 1 (``none`` without a row then) and in M; the customers of M - 1
    without a row in M go to ``none``."""
    rows = []
    months = sorted(history["month"].unique())
    by_month = {m: history[history["month"] == m].set_index("customer_key") for m in months}
    for m in months:
        prev_month = pd.Timestamp(m) - pd.DateOffset(months=1)
        cur = by_month[m]
        prev = by_month.get(prev_month, history.iloc[0:0].set_index("customer_key"))
        keys = cur.index.union(prev.index)
        for segment_type in SEGMENT_TYPES:
            pairs = pd.DataFrame(
                {
                    "from_segment": prev[segment_type].reindex(keys).fillna("none"),
                    "to_segment": cur[segment_type].reindex(keys).fillna("none"),
                }
            )
            counts = pairs.value_counts().rename("customers").reset_index()
            counts["month"] = pd.Timestamp(m)
            counts["segment_type"] = segment_type
            rows.append(counts)
    out = pd.concat(rows, ignore_index=True)
    out["share_of_from"] = out["customers"] / out.groupby(
        ["month", "segment_type", "from_segment"]
    )["customers"].transform("sum")
    return out[
        ["month", "segment_type", "from_segment", "to_segment", "customers", "share_of_from"]
    ]


def transitions_as_of(p: Prepared, as_of: date | None = None) -> pd.DataFrame:
    """The transitions of the history as of p's D (``as_of`` only checks it)."""
    assert as_of is None or as_of == p.config.as_of
    return transitions(segment_history(p))
