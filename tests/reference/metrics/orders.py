"""The customer and order KPIs of a month: orders, revenue, purchasing, new and active
customers, repurchase, churn, reactivation, per channel; profile completeness."""

from __future__ import annotations

import pandas as pd

from reference.metrics.customers import _days, profile_completeness_at, valid_orders
from reference.metrics.months import Kpis, Month, _count, _ratio
from reference.metrics.staging import Prepared


def _active(last: pd.Series, d: pd.Timestamp, days: int) -> pd.Index:
    return last.index[(last >= d - _days(days)) & (last <= d)]


def _last_order_dates(orders: pd.DataFrame, d: pd.Timestamp) -> pd.Series:
    o = orders[orders["order_date"] <= d]
    return o.groupby("customer_key")["order_date"].max()


def order_kpis(
    p: Prepared, m: Month, members: pd.Index | None, orders_of_all: bool = False
) -> Kpis:
    """The customer-order family for the customers in ``members`` (None: every resolved
    customer). ``orders_of_all``: orders / net_revenue / aov count every order, also
    those of no resolved customer (segment ``all``). repurchase_rate is the cohort rate:
    of the members with an order on or before start(M), the share who order in M;
    returning_customer_rate: of the members buying in M, the share with two or more
    orders to date at end(M)."""
    cfg = p.config
    co = resolved_orders(p)
    if members is not None:
        co = co[co["customer_key"].isin(members)]
    in_m = co[(co["order_date"] >= m.month) & (co["order_date"] <= m.end)]
    buyers = pd.Index(in_m["customer_key"].unique())
    first = co.groupby("customer_key")["order_date"].min()
    out: Kpis = {}
    out["purchasing_customers"] = _count(len(buyers))
    out["new_customers"] = _count(int(((first >= m.month) & (first <= m.end)).sum()))
    active_end = _active(_last_order_dates(co, m.end), m.end, cfg.lifecycle_active_days)
    out["active_customers"] = _count(len(active_end))
    src = valid_orders(p) if orders_of_all else co
    month_orders = src[(src["order_date"] >= m.month) & (src["order_date"] <= m.end)]
    rev, n = int(month_orders["net_cents"].sum()) / 100, len(month_orders)
    out["net_revenue"] = (rev, rev, None)
    out["orders"] = _count(n)
    out["aov"] = (_ratio(rev, n), rev, float(n))
    cohort = pd.Index(first.index[first <= m.start])
    back = len(cohort.intersection(buyers))
    out["repurchase_rate"] = (_ratio(back, len(cohort)), back, len(cohort))
    lifetime = co[co["order_date"] <= m.end].groupby("customer_key").size()
    ret = int((lifetime.reindex(buyers).fillna(0) >= 2).sum())
    out["returning_customer_rate"] = (_ratio(ret, len(buyers)), ret, len(buyers))
    return out


def channels(p: Prepared) -> tuple[str, ...]:
    """The channel segments: every channel of a valid order ('unknown' without one)."""
    return tuple(sorted(valid_orders(p)["channel"].fillna("unknown").unique()))


def channel_kpis(p: Prepared, m: Month, channel: str) -> Kpis:
    """orders / net_revenue / aov of every valid order of the channel in M (also those of
    no resolved customer) and purchasing_customers = resolved customers with such an
    order; nothing when the channel has no order in M."""
    vo = valid_orders(p)
    vo = vo[vo["channel"].fillna("unknown").eq(channel)]
    in_m = vo[(vo["order_date"] >= m.month) & (vo["order_date"] <= m.end)]
    if in_m.empty:
        return {}
    rev, n = int(in_m["net_cents"].sum()) / 100, len(in_m)
    return {
        "purchasing_customers": _count(in_m["customer_key"].dropna().nunique()),
        "orders": _count(n),
        "net_revenue": (rev, rev, None),
        "aov": (_ratio(rev, n), rev, float(n)),
    }


def churn_kpis(p: Prepared, m: Month, members: pd.Index | None) -> Kpis:
    cfg = p.config
    co = resolved_orders(p)
    if members is not None:
        co = co[co["customer_key"].isin(members)]
    last_start = _last_order_dates(co, m.start)
    last_end = _last_order_dates(co, m.end)
    active_start = _active(last_start, m.start, cfg.lifecycle_active_days)
    active_end = _active(last_end, m.end, cfg.lifecycle_active_days)
    churned = len(active_start.difference(active_end))
    return {"churn_rate": (_ratio(churned, len(active_start)), churned, len(active_start))}


def reactivation_kpis(p: Prepared, m: Month, members: pd.Index | None) -> Kpis:
    cfg = p.config
    co = resolved_orders(p)
    if members is not None:
        co = co[co["customer_key"].isin(members)]
    last_start = _last_order_dates(co, m.start)
    dormant = last_start.index[
        (last_start >= m.start - _days(cfg.lifecycle_dormant_days))
        & (last_start <= m.start - _days(cfg.lifecycle_active_days + 1))
    ]
    in_m = co[(co["order_date"] >= m.month) & (co["order_date"] <= m.end)]
    react = len(dormant.intersection(pd.Index(in_m["customer_key"].unique())))
    return {"dormant_reactivation_rate": (_ratio(react, len(dormant)), react, len(dormant))}


def resolved_orders(p: Prepared) -> pd.DataFrame:
    """Valid orders of resolved customers."""
    if "resolved_orders" not in p.cache:
        vo = valid_orders(p)
        p.cache["resolved_orders"] = vo[vo["customer_key"].notna()]
    return p.cache["resolved_orders"]


def profile_kpis(p: Prepared, m: Month, dates: pd.DataFrame) -> Kpis:
    completeness = profile_completeness_at(p, m.end, dates)
    known = len(completeness)
    total = float(completeness.sum())
    full = int((completeness >= 1.0 - 1e-12).sum())
    prof = p.profiles[p.profiles["customer_key"].notna()]
    first = prof.groupby("record_id").agg(d=("updated_date", "min"), c=("customer_key", "first"))
    first = first[first["d"] <= m.end]
    n_recs = len(first)
    merged = n_recs - first["c"].nunique()
    return {
        "profile_completeness": (_ratio(total, known), total, known),
        "full_profile_rate": (_ratio(full, known), full, known),
        "duplicate_record_rate": (_ratio(merged, n_recs), merged, n_recs),
    }
