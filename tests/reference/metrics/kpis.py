"""The KPI tables: ``compute_kpis`` (one row per month, segment and KPI, the shape of
``marts.fct_kpi_monthly``) and ``compute_weekly_kpis`` (``fct_kpi_weekly``)."""

from __future__ import annotations

from datetime import date

import pandas as pd

from reference.metrics.customers import (
    _days,
    customer_quadrants,
    expected_purchases_by_key,
    profile_field_dates,
    valid_orders,
)
from reference.metrics.maturity import MATURITY_DAYS, _sla_clocks
from reference.metrics.months import Kpis, Month, _count, _ratio, month_ends
from reference.metrics.orders import (
    channel_kpis,
    channels,
    churn_kpis,
    order_kpis,
    profile_kpis,
    reactivation_kpis,
)
from reference.metrics.segments import QUADRANTS, RFM_SEGMENTS, SEGMENTS, segment_members, vip_at
from reference.metrics.service import service_kpis, social_kpis
from reference.metrics.staging import Prepared


def kpis_for_month(
    p: Prepared,
    m: Month,
    segment: str,
    dates: pd.DataFrame | None = None,
    quadrants: pd.Series | None = None,
) -> Kpis:
    """Every KPI the segment publishes for month M; a segment without customers in M
    publishes nothing; service and social KPIs start with the first month that has
    tickets / interactions. Flow KPIs take the segment as of start(M), point-in-time
    KPIs (active_customers) as of end(M) (metrics.md, "Segments"):

    - vip: the order family; active_customers of the VIPs as of end(M)
    - lifecycle stage: the order family (no repurchase_rate for prospect: nobody had
      ordered), churn_rate for new and active, dormant_reactivation_rate for dormant;
      active_customers of the stage as of end(M), new and active only
    - quadrant (month of D only): the order family, churn_rate, dormant_reactivation_rate
    - RF segment: the order family but new_customers and active_customers, churn_rate,
      dormant_reactivation_rate
    - a channel: CHANNEL_KPIS"""
    if segment == "all":
        out = order_kpis(p, m, None, orders_of_all=True)
        out |= churn_kpis(p, m, None) | reactivation_kpis(p, m, None)
        out["vip_customers"] = _count(len(vip_at(p, m.end)))
        dates = profile_field_dates(p) if dates is None else dates
        out |= profile_kpis(p, m, dates)
        first_ticket = p.tickets["created_date"].min()
        if not pd.isna(first_ticket) and first_ticket.replace(day=1) <= m.month:
            out |= service_kpis(p, m)
        first_social = p.social["occurred_date"].min()
        if not pd.isna(first_social) and first_social.replace(day=1) <= m.month:
            out |= social_kpis(p, m)
        return out
    if segment not in SEGMENTS and segment in channels(p):
        return channel_kpis(p, m, segment)
    members = segment_members(p, m, segment, quadrants)
    assert members is not None
    out: Kpis = {}
    if len(members):
        out = order_kpis(p, m, members)
        del out["active_customers"]
        if segment in RFM_SEGMENTS:
            del out["new_customers"]
        if segment == "prospect":
            del out["repurchase_rate"]
        if segment in ("new", "active") or segment in QUADRANTS or segment in RFM_SEGMENTS:
            out |= churn_kpis(p, m, members)
        if segment == "dormant" or segment in QUADRANTS or segment in RFM_SEGMENTS:
            out |= reactivation_kpis(p, m, members)
    if segment in ("vip", "new", "active") or segment in QUADRANTS:
        at_end = segment_members(p, m, segment, quadrants, as_of="end")
        assert at_end is not None
        if len(at_end):
            out["active_customers"] = order_kpis(p, m, at_end)["active_customers"]
    return out


def first_data_month(p: Prepared) -> date:
    dates = [p.orders["order_date"].min(), p.tickets["created_date"].min(),
             p.social["occurred_date"].min()]  # fmt: skip
    dates = [x for x in dates if x is not None and not pd.isna(x)]
    return min(dates).date() if dates else p.config.as_of


def compute_kpis(
    p: Prepared,
    segments: tuple[str, ...] | None = None,
    first_month: date | None = None,
    clv_scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The monthly KPI table: month, segment, kpi, value, numerator, denominator,
    is_complete (the shape of marts.fct_kpi_monthly). ``clv_scores``: the CLV model's
    scores as of D (``customer_id`` of the warehouse, ``expected_purchases_90d``; e.g.
    clv.customer_scores), the one input the quadrant segments take from outside; None or
    empty: high potential is engagement alone (the warehouse's empty placeholder).
    ``segments``: default every segment (SEGMENTS and the channels of the orders)."""
    cfg = p.config
    segments = (*SEGMENTS, *channels(p)) if segments is None else segments
    first_month = first_month or first_data_month(p)
    dates = profile_field_dates(p) if "all" in segments else None
    quadrants = None
    if any(segment in QUADRANTS for segment in segments):
        quadrants = customer_quadrants(p, expected_purchases_by_key(p, clv_scores))
    rows = []
    for month, start, end, complete in month_ends(first_month, cfg.as_of):
        m = Month(pd.Timestamp(month), pd.Timestamp(start), pd.Timestamp(end), complete)
        for segment in segments:
            kpis = kpis_for_month(p, m, segment, dates, quadrants)
            for kpi, (value, num, den) in kpis.items():
                rows.append((month, segment, kpi, value, num, den, complete))
    frame = pd.DataFrame(
        rows,
        columns=["month", "segment", "kpi", "value", "numerator", "denominator", "is_complete"],
    )
    for c in ("value", "numerator", "denominator"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return frame


WEEKLY_KPIS = (
    "orders",
    "net_revenue",
    "tickets",
    "first_response_sla_rate",
    "resolution_sla_rate",
    "csat_avg",
    "csat_satisfied_rate",
)


def compute_weekly_kpis(
    p: Prepared, first_date: date | None = None, maturity_days: dict[str, int] | None = None
) -> pd.DataFrame:
    """The weekly KPI table of segment all (the shape of marts.fct_kpi_weekly): week (the
    ISO Monday), week_label, kpi, value, numerator, denominator, pending, is_complete, for
    every ISO week from the week of ``first_date`` (default: the first data date) to the
    week of D; the monthly definitions on Monday-Sunday windows."""
    cfg = p.config
    maturity_days = MATURITY_DAYS if maturity_days is None else maturity_days
    first = pd.Timestamp(first_date or first_data_month_date(p))
    as_of = pd.Timestamp(cfg.as_of)
    week = first - _days(first.weekday())
    rows = []
    vo = valid_orders(p)
    ev = p.events
    cs = ev[ev["event_type"].eq("csat") & ev["csat_score"].notna()]
    while week <= as_of:
        end = min(week + _days(6), as_of)
        o = vo[(vo["order_date"] >= week) & (vo["order_date"] <= end)]
        rev = int(o["net_cents"].sum()) / 100
        t = p.tickets[(p.tickets["created_date"] >= week) & (p.tickets["created_date"] <= end)]
        kpis: dict[str, tuple] = {
            "orders": (float(len(o)), float(len(o)), None, None),
            "net_revenue": (rev, rev, None, None),
            "tickets": (float(len(t)), float(len(t)), None, None),
        }
        for kpi, (met, pending) in _sla_clocks(p, t).items():
            num, den = int((met & ~pending).sum()), int((~pending).sum())
            kpis[kpi] = (_ratio(num, den), num, den, int(pending.sum()))
        s = cs[(cs["event_date"] >= week) & (cs["event_date"] <= end)]["csat_score"].astype(float)
        sat = int((s >= cfg.csat_satisfied_score).sum())
        kpis["csat_avg"] = (_ratio(float(s.sum()), len(s)), float(s.sum()), len(s), None)
        kpis["csat_satisfied_rate"] = (_ratio(sat, len(s)), sat, len(s), None)
        iso = week.isocalendar()
        for kpi in WEEKLY_KPIS:
            value, num, den, pending = kpis[kpi]
            days = maturity_days.get(kpi, 0)
            complete = week + _days(6 + days) <= as_of
            rows.append((week.date(), f"{iso.year}-W{iso.week:02d}", kpi, value, num, den,
                         pending if days > 0 else None, complete))  # fmt: skip
        week += _days(7)
    frame = pd.DataFrame(
        rows,
        columns=["week", "week_label", "kpi", "value", "numerator", "denominator", "pending",
                 "is_complete"],
    )  # fmt: skip
    for c in ("value", "numerator", "denominator", "pending"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return frame


def first_data_month_date(p: Prepared) -> date:
    """The first data date: the earliest order, ticket or interaction date (or D)."""
    dates = [p.orders["order_date"].min(), p.tickets["created_date"].min(),
             p.social["occurred_date"].min(), pd.Timestamp(p.config.as_of)]  # fmt: skip
    return min(x for x in dates if x is not None and not pd.isna(x)).date()
