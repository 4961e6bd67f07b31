"""The KPI segments (metrics.md "Segments"): which customers belong to each segment of a
month, as of start(M) or end(M)."""

from __future__ import annotations

import pandas as pd

from reference.metrics.config import RFM_SEGMENT_MAP
from reference.metrics.customers import (
    _cached,
    _days,
    customer_quadrants,
    lifecycle_stage,
    order_summary,
    rfm_scores,
)
from reference.metrics.months import Month
from reference.metrics.orders import resolved_orders
from reference.metrics.staging import Prepared

#: The customer-order family published per segment (docs/warehouse.md, kpi_segments).
ORDER_FAMILY = (
    "purchasing_customers",
    "new_customers",
    "active_customers",
    "orders",
    "net_revenue",
    "aov",
    "repurchase_rate",
    "returning_customer_rate",
)
#: Point-in-time KPIs: a segment's row takes the segment as of end(M) (metrics.md,
#: "Segments"); every other KPI is a flow KPI (segment as of start(M)).
POINT_IN_TIME_KPIS = ("active_customers", "vip_customers")
#: The KPIs of a channel segment (the order's channel).
CHANNEL_KPIS = ("purchasing_customers", "orders", "net_revenue", "aov")
LIFECYCLE_STAGES = ("prospect", "new", "active", "dormant", "churned")
#: metrics.md, value x potential; a KPI segment for the month of D only (the CLV model
#: behind "high potential" is scored as of D only)
QUADRANTS = (
    "high_value_high_potential",
    "high_value_low_potential",
    "low_value_high_potential",
    "low_value_low_potential",
)
#: the RF segments (seed rfm_segment_map), a KPI segment as of start(M)
RFM_SEGMENTS = tuple(name for name, *_ in RFM_SEGMENT_MAP)
#: Every segment known in advance; a channel segment is named by the channel of the
#: orders (``channels(p)``), 'unknown' for an order without one.
SEGMENTS = ("all", "vip", *LIFECYCLE_STAGES, *QUADRANTS, *RFM_SEGMENTS)


def vip_at(p: Prepared, d: pd.Timestamp) -> pd.Index:
    """Customers with is_vip as of d."""

    def compute() -> pd.Index:
        co = resolved_orders(p)
        lo = d - _days(p.config.revenue_window_days)
        win = co[(co["order_date"] <= d) & (co["order_date"] >= lo)]
        rev = win.groupby("customer_key")["net_cents"].sum() / 100
        return rev.index[rev >= p.config.vip_revenue_365d]

    return _cached(p, ("vip_at", d), compute)


def stage_at(p: Prepared, d: pd.Timestamp) -> pd.Series:
    """Lifecycle stage as of d of every resolved customer."""

    def compute() -> pd.Series:
        state = pd.DataFrame(index=pd.Index(p.customers, name="customer_key"))
        summary = order_summary(resolved_orders(p), d, p.config)
        state = state.join(summary[["first_order_date", "last_order_date"]])
        return lifecycle_stage(state, d, p.config)

    return _cached(p, ("stage_at", d), compute)


def rf_segment_at(p: Prepared, d: pd.Timestamp) -> pd.Series:
    """The RF segment as of d of every customer with an order on or before d: scores
    ranked among those customers (metrics.md, "RFM"; recency and orders_365d as of d)."""

    def compute() -> pd.Series:
        state = order_summary(resolved_orders(p), d, p.config)
        state["recency_days"] = (pd.Timestamp(d) - state["last_order_date"]).dt.days
        return rfm_scores(state, p.config.rfm_buckets)["rfm_segment"]

    return _cached(p, ("rf_segment_at", d), compute)


def segment_members(
    p: Prepared,
    m: Month,
    segment: str,
    quadrants: pd.Series | None = None,
    as_of: str = "start",
) -> pd.Index | None:
    """Customers of a segment in month M (None for ``all``), among the customers whose
    first order is on or before end(M) (the customer-months of the warehouse start at the
    first order). ``as_of``: "start" (flow KPIs) or "end" (point-in-time KPIs):
    ``vip`` = is_vip as of start(M) / end(M); a lifecycle stage = the stage as of
    start(M) / end(M); an RF segment = the segment as of start(M) (flow KPIs only); a
    quadrant = the quadrant as of D (``quadrants``, default ``customer_quadrants(p)``
    without CLV scores) for both, in the month of D only (empty before)."""
    if segment == "all":
        return None
    if as_of not in ("start", "end"):
        raise ValueError(f"as_of must be 'start' or 'end', not {as_of!r}")
    d = m.start if as_of == "start" else m.end
    if segment == "vip":
        return vip_at(p, d)
    first = _cached(
        p,
        ("first_order",),
        lambda: resolved_orders(p).groupby("customer_key")["order_date"].min(),
    )
    buyers = first.index[first <= m.end]
    if segment in LIFECYCLE_STAGES:
        stages = stage_at(p, d).reindex(buyers)
        return stages.index[stages == segment]
    if segment in RFM_SEGMENTS:
        if as_of == "end":
            return pd.Index([], dtype="int64")
        segments = rf_segment_at(p, m.start)
        return segments.index[segments == segment]
    if segment in QUADRANTS:
        as_of_d = pd.Timestamp(p.config.as_of)
        if m.month != as_of_d.replace(day=1):
            return pd.Index([], dtype="int64")
        quadrants = customer_quadrants(p) if quadrants is None else quadrants
        of_buyers = quadrants.reindex(buyers)
        return of_buyers.index[of_buyers == segment]
    raise ValueError(f"unknown segment {segment!r}; known: {SEGMENTS} and the channels")
