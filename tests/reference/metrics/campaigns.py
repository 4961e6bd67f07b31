"""Reference recompute of ``marts.fct_campaign_performance`` (docs/warehouse.md "Campaign
performance"), in pandas, from the staged frames: per campaign and segment (`all`, and the
lifecycle stage of each reached customer as of her first push of the campaign)

- pushes to resolved customers, reached customers, pushes followed within 7 days by an
  inbound interaction or an order of the customer;
- last-touch attribution: each non-cancelled order of a resolved customer to the latest
  push to that customer before it, at most 30 days before (one campaign per order);
- conversion of the reached (an order within 30 days after the first push of the campaign)
  against the hold-out (customers with an account on the campaign's platform seen before
  its first push, in the same segment as of that day, not pushed by it), the uplift and
  its 95 % confidence interval (Wald: normal approximation of the difference of two
  proportions, z from scipy);
- reactivation of the customers dormant as of their push.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from reference.metrics.customers import lifecycle_stage, valid_orders
from reference.metrics.staging import Prepared

ATTRIBUTION_DAYS = 30
CONFIDENCE = 0.95
MIN_SEGMENT_BASE = 30


def _stages(frame: pd.DataFrame, orders: pd.DataFrame, cfg) -> pd.Series:  # noqa: ANN001
    """Lifecycle stage of each row (customer_key, as_of date ``d``) from the orders dated on
    or before ``d``."""
    j = frame[["customer_key", "d"]].reset_index(drop=True).reset_index(names="_row")
    j = j.merge(orders[["customer_key", "order_date"]], on="customer_key", how="left")
    j = j[j["order_date"].isna() | (j["order_date"] <= j["d"])]
    g = j.groupby("_row")["order_date"]
    state = pd.DataFrame({"first_order_date": g.min(), "last_order_date": g.max()}).reindex(
        range(len(frame))
    )
    out = []
    for d, idx in pd.Series(range(len(frame))).groupby(frame["d"].to_numpy()):
        out.append(lifecycle_stage(state.loc[idx.to_numpy()], d.date(), cfg))
    return pd.concat(out).sort_index().set_axis(frame.index)


def _converted(frame: pd.DataFrame, orders: pd.DataFrame, window: pd.Timedelta) -> pd.Series:
    """Per row (customer_key, t): an order of the customer in (t, t + window]."""
    j = frame[["customer_key", "t"]].reset_index(drop=True).reset_index(names="_row")
    j = j.merge(orders[["customer_key", "ordered_at"]], on="customer_key", how="inner")
    hit = j.loc[(j["ordered_at"] > j["t"]) & (j["ordered_at"] <= j["t"] + window), "_row"]
    return pd.Series(np.isin(np.arange(len(frame)), hit.unique()), index=frame.index)


def campaign_performance(p: Prepared) -> pd.DataFrame:
    cfg = p.config
    so = p.social
    window = pd.Timedelta(days=ATTRIBUTION_DAYS)
    orders = valid_orders(p)
    orders = orders[orders["customer_key"].notna()]
    pushes = so[
        so["direction"].eq("outbound")
        & so["interaction_type"].eq("campaign_push")
        & so["customer_key"].notna()
        & so["campaign_id"].notna()
    ].copy()
    # responses within 7 days: an inbound interaction or an order of the customer
    response = pd.Timedelta(days=cfg.campaign_response_days)
    inbound = so[so["direction"].eq("inbound") & so["customer_key"].notna()]
    trig = pushes[["customer_key", "occurred_at"]].rename(columns={"occurred_at": "t"})
    by_inbound = _converted(trig, inbound.rename(columns={"occurred_at": "ordered_at"}), response)
    pushes["responded"] = by_inbound.to_numpy() | _converted(trig, orders, response).to_numpy()

    campaigns = pushes.groupby("campaign_id").agg(
        platform=("platform", "min"),
        first_at=("occurred_at", "min"),
        campaign_date=("occurred_date", "min"),
    )
    # reached: each customer's first push of the campaign, her stage as of it
    reached = (
        pushes.groupby(["campaign_id", "customer_key"])
        .agg(t=("occurred_at", "min"), d=("occurred_date", "min"))
        .reset_index()
    )
    reached["segment"] = _stages(reached, orders, cfg).to_numpy()
    reached["converted"] = _converted(reached, orders, window).to_numpy()
    pushes = pushes.merge(
        reached[["campaign_id", "customer_key", "segment"]], on=["campaign_id", "customer_key"]
    )

    # last touch: each order to the latest push before it, within the window
    j = orders[["order_key", "customer_key", "ordered_at", "net_cents"]].merge(
        pushes[["customer_key", "occurred_at", "interaction_id", "campaign_id", "segment"]],
        on="customer_key",
    )
    j = j[(j["ordered_at"] > j["occurred_at"]) & (j["ordered_at"] <= j["occurred_at"] + window)]
    j = j.sort_values(
        ["order_key", "occurred_at", "interaction_id"], ascending=[True, False, False]
    )
    touch = j.drop_duplicates("order_key")

    # hold-out: accounts on the campaign's platform seen before its first push, not pushed
    seen = (
        so[so["customer_key"].notna()]
        .groupby(["customer_key", "platform"])["occurred_at"]
        .min()
        .rename("first_seen")
        .reset_index()
    )
    cands = campaigns.reset_index().merge(seen, on="platform")
    cands = cands[cands["first_seen"] < cands["first_at"]]
    pushed = reached[["campaign_id", "customer_key"]].assign(_pushed=True)
    cands = cands.merge(pushed, on=["campaign_id", "customer_key"], how="left")
    hold = cands[cands["_pushed"].isna()].reset_index(drop=True)
    hold = hold.assign(t=hold["first_at"], d=hold["campaign_date"])
    hold["segment"] = _stages(hold, orders, cfg).to_numpy()
    hold["converted"] = _converted(hold, orders, window).to_numpy()

    keys = ["campaign_id", "segment"]
    rows = reached.groupby(keys).agg(
        reached_customers=("customer_key", "size"), converted_customers=("converted", "sum")
    )
    rows["pushes"] = pushes.groupby(keys).size()
    rows["responded_pushes"] = pushes.groupby(keys)["responded"].sum()
    rows["attributed_orders"] = touch.groupby(keys).size()
    rows["attributed_cents"] = touch.groupby(keys)["net_cents"].sum()
    rows["holdout_customers"] = hold.groupby(keys).size()
    rows["holdout_converted_customers"] = hold.groupby(keys)["converted"].sum()
    rows = rows.fillna(0)
    dormant = rows.index.get_level_values("segment") == "dormant"
    rows["dormant_reached_customers"] = np.where(dormant, rows["reached_customers"], 0)
    rows["reactivated_customers"] = np.where(dormant, rows["converted_customers"], 0)
    rows = rows.reset_index()
    total = rows.drop(columns="segment").groupby("campaign_id").sum().reset_index()
    rows = pd.concat([rows, total.assign(segment="all")], ignore_index=True)

    z = norm.ppf(0.5 + CONFIDENCE / 2)
    n1, n0 = rows["reached_customers"], rows["holdout_customers"].replace(0, np.nan)
    p1 = rows["converted_customers"] / n1
    p0 = rows["holdout_converted_customers"] / n0
    se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    out = pd.DataFrame(
        {
            "campaign_segment_id": rows["campaign_id"] + "|" + rows["segment"],
            "campaign_id": rows["campaign_id"],
            "campaign_date": pd.to_datetime(
                rows["campaign_id"].map(campaigns["campaign_date"])
            ).dt.date,
            "segment": rows["segment"],
            "pushes": rows["pushes"].astype(int),
            "reached_customers": rows["reached_customers"].astype(int),
            "responded_pushes": rows["responded_pushes"].astype(int),
            "response_rate": rows["responded_pushes"] / rows["pushes"],
            "attributed_orders": rows["attributed_orders"].astype(int),
            "attributed_net_revenue": rows["attributed_cents"] / 100,
            "converted_customers": rows["converted_customers"].astype(int),
            "conversion_rate": p1,
            "holdout_customers": rows["holdout_customers"].astype(int),
            "holdout_converted_customers": rows["holdout_converted_customers"].astype(int),
            "holdout_conversion_rate": p0,
            "uplift": p1 - p0,
            "uplift_ci_low": p1 - p0 - z * se,
            "uplift_ci_high": p1 - p0 + z * se,
            "is_small_base": (n1 < MIN_SEGMENT_BASE)
            | (rows["holdout_customers"] < MIN_SEGMENT_BASE),
            "dormant_reached_customers": rows["dormant_reached_customers"].astype(int),
            "reactivated_customers": rows["reactivated_customers"].astype(int),
            "reactivation_rate": rows["reactivated_customers"]
            / rows["dormant_reached_customers"].replace(0, np.nan),
        }
    )
    return out.sort_values("campaign_segment_id").reset_index(drop=True)
